//! Each device's USB serial port on the emulated bus: a pty served by the device's own
//! listening-mode console (the same device, behind its port's mutex, that answers the control
//! requests), shown to the child as `/dev/ttyACM<port − 1>` while the firmware runs, and
//! optionally linked at a path outside the bus (where `sim serve` finds it). The line rate is
//! the device's trigger as on hardware: 28800 baud enters listening mode, 14400 DFU mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use modflash_device::Device;

use super::{lock, Port};
use crate::error::Error;
use crate::progress::{Cancel, Quiet};
use crate::transport::pty::{ConsoleTarget, PtyServer};
use crate::transport::umockdev::{Client, IoctlHandler};

/// The tty node's ioctls (termios, TIOCEXCL, …) run on the pty itself. umockdev sends every
/// `ioctl()` call on a node in its test bed to a handler, and its default one answers ENOTTY:
/// programs calling `ioctl` directly (Rust's serialport does) could not open the port.
pub(super) struct PassThrough;

impl IoctlHandler for PassThrough {
    fn ioctl(&self, c: &mut Client<'_>) -> bool {
        match c.execute() {
            Ok((result, errno)) => c.complete(result, errno),
            Err(_) => c.complete(-1, libc::EIO),
        }
        true
    }
}

/// The console's view of a device on the bus: each step locks it, and a step that changed how
/// it shows on the bus (a reset into DFU mode) wakes the bus to replug it.
struct OnBus(Arc<Port>);

impl ConsoleTarget for OnBus {
    fn step(&mut self, console_step: &mut dyn FnMut(&mut Device)) {
        console_step(&mut lock(&self.0.device));
        self.0.check_presence();
    }

    fn changed(&mut self) -> Result<(), Error> {
        // The device is saved when the command ends.
        Ok(())
    }
}

/// A device's serial port, served on a thread until dropped.
pub(super) struct SerialPort {
    slave: PathBuf,
    cancel: Cancel,
    thread: Option<JoinHandle<()>>,
}

impl SerialPort {
    /// Opens `port`'s serial port (linked at `link` when given) and starts serving it.
    pub(super) fn start(port: &Arc<Port>, link: Option<&Path>) -> Result<SerialPort, Error> {
        let server = match link {
            Some(link) => PtyServer::open(link)?,
            None => PtyServer::unlinked()?,
        };
        let slave = server.slave_name().to_path_buf();
        let cancel = Cancel::new();
        let stop = cancel.clone();
        let mut target = OnBus(Arc::clone(port));
        let trace = port.trace;
        let number = port.number;
        let thread = std::thread::spawn(move || {
            if let Err(e) = server.serve_target(&mut target, &stop, &mut Quiet) {
                if trace {
                    eprintln!("[attach] port {number}: serial port stopped: {e}");
                }
            }
        });
        Ok(SerialPort {
            slave,
            cancel,
            thread: Some(thread),
        })
    }

    /// The pty the serial port is (`/dev/pts/N`).
    pub(super) fn slave(&self) -> &Path {
        &self.slave
    }
}

impl Drop for SerialPort {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
