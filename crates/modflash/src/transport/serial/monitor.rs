//! The serial monitor: what a device prints, copied to an output, surviving resets and
//! replugs (the port is opened again with back-off whenever it goes away).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{find_port, Link, PortLink};
use crate::error::Error;
use crate::progress::{Cancel, Event, Observer};
use crate::DeviceRef;

/// The port a reference names now, with the device id when discovery knows it.
fn port_of(devref: &DeviceRef) -> Result<(String, Option<String>), Error> {
    match devref {
        DeviceRef::Serial(port) => Ok((port.clone(), None)),
        DeviceRef::Usb => find_port(None)
            .map(|p| (p.port, p.device_id))
            .map_err(Error::from),
        DeviceRef::UsbId(id) => find_port(Some(id))
            .map(|p| (p.port, p.device_id))
            .map_err(Error::from),
        DeviceRef::Sim(name) => Err(Error::Unsupported {
            device: devref.to_string(),
            what: "be monitored: it has no serial port of its own".into(),
            help: format!(
                "expose it with `modflash sim serve {name} --serial-link /tmp/{name}.tty` and monitor serial:/tmp/{name}.tty"
            ),
        }),
    }
}

/// Copies what the device `devref` prints at `baud` to `out` until `cancel` is set;
/// connections, waits and reconnections are reported as notes.
pub fn monitor(
    devref: &DeviceRef,
    baud: u32,
    out: &mut dyn Write,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<(), Error> {
    // A virtual device is refused at once, not waited for.
    if matches!(devref, DeviceRef::Sim(_)) {
        port_of(devref)?;
    }
    let mut announced_wait = false;
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let opened = port_of(devref).and_then(|(port, id)| {
            PortLink::open(&port, baud)
                .map(|l| l.with_device_id(id))
                .map_err(Error::from)
        });
        let mut link = match opened {
            Ok(l) => l,
            Err(e) => {
                if !announced_wait {
                    observer.event(Event::warning(format!(
                        "monitor: {e} — waiting for the device (Ctrl-C to stop)"
                    )));
                    announced_wait = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        announced_wait = false;
        backoff = Duration::from_millis(100);
        observer.event(Event::note(format!(
            "monitor: connected to {} at {baud} baud",
            link.path()
        )));
        let mut buf = [0u8; 4096];
        while !cancel.is_cancelled() {
            match link.read(&mut buf, Duration::from_millis(250)) {
                Ok(0) => {
                    // A vanished USB device can look like silence: check the path.
                    if !Path::new(link.path()).exists() {
                        observer.event(Event::warning(format!(
                            "monitor: {} went away; reconnecting",
                            link.path()
                        )));
                        break;
                    }
                }
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                Err(e) => {
                    observer.event(Event::warning(format!(
                        "monitor: {} failed ({e}); reconnecting",
                        link.path()
                    )));
                    break;
                }
            }
        }
        drop(link);
        std::thread::sleep(backoff);
    }
    Ok(())
}
