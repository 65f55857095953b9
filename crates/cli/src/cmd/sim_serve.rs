//! `modflash sim serve NAME --serial-link PATH` (the device's USB serial port as a pty) and
//! `modflash sim serial NAME` (its listening-mode console on this terminal).

use std::io;
use std::path::Path;

use modflash::sim::{SimError, SimStore};
use modflash::transport::pty::{serve_terminal, PtyServer, SharedPort};

use crate::render::Renderer;
use crate::ui::{note, say, CmdResult, EXIT_OK};

/// Runs `sim serve`. A device `sim attach` holds is served by that process: the link goes to
/// its serial port until Ctrl-C or the attach ends.
pub fn serve(store: &SimStore, name: &str, link: &Path) -> CmdResult {
    let mut handle = match store.open(name) {
        Ok(handle) => handle,
        Err(SimError::Busy(busy)) => {
            return serve_attached(store, name, link, SimError::Busy(busy))
        }
        Err(e) => return Err(e.into()),
    };
    let server = PtyServer::open(link)?;
    let cancel = crate::signals::catch();
    say(&format!(
        "serving sim:{name} ({}, {}) on {} → {}; open it at 28800 baud for listening mode, 14400 for DFU mode; Ctrl-C stops",
        handle.device.platform().display_name,
        handle.device.state.mode.name(),
        link.display(),
        server.slave_name().display()
    ));
    let mut renderer = Renderer::new(false);
    server.serve(&mut handle, &cancel, &mut renderer)?;
    drop(server);
    note(&format!("sim serve: stopped; sim:{name} saved"));
    Ok(EXIT_OK)
}

/// `sim serve` while another process holds the device: link to the serial port a `sim attach`
/// serves, or report `busy`.
fn serve_attached(store: &SimStore, name: &str, link: &Path, busy: SimError) -> CmdResult {
    let published = store.attached_serial_port(name);
    let Some(shared) = SharedPort::open(&published, link)? else {
        return Err(busy.into());
    };
    let cancel = crate::signals::catch();
    say(&format!(
        "sim:{name} is on an emulated USB bus (sim attach), which serves its serial port: {} → {}; Ctrl-C stops",
        link.display(),
        shared.pty().display()
    ));
    shared.wait(&published, &cancel);
    drop(shared);
    note(&format!(
        "sim serve: stopped; sim:{name} stays with sim attach"
    ));
    Ok(EXIT_OK)
}

/// Runs `sim serial`: standard input goes to the console (in character mode on a terminal),
/// its output to standard output, until end of input or Ctrl-C.
pub fn serial(store: &SimStore, name: &str) -> CmdResult {
    let mut handle = store.open(name)?;
    crate::ui::note(&format!(
        "sim:{name}: its listening-mode console ({}, LED {}). Keys: i device id, m MAC address, \
         s modules (JSON), v version, f flash a module (YMODEM), w Wi-Fi, x leave listening \
         mode. Ctrl-C ends.",
        handle.device.state.mode.name(),
        handle.device.state.led
    ));
    let cancel = crate::signals::catch();
    let _mode = crate::unix::CharMode::enter();
    serve_terminal(&mut handle, libc::STDIN_FILENO, &mut io::stdout(), &cancel)?;
    Ok(EXIT_OK)
}
