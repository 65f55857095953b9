//! Byte streams to a serial console: the [`Link`] trait and a real port ([`PortLink`]).

use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{find_port, SerialError};

/// A byte stream to a device's serial console.
pub trait Link {
    /// Reads what is available, waiting up to `timeout` for the first byte; `Ok(0)` when
    /// nothing arrived.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Sets the line rate (28800 enters listening mode, 14400 DFU mode).
    fn set_baud(&mut self, baud: u32) -> io::Result<()>;
    /// Drops input received but not read yet.
    fn clear_input(&mut self) -> io::Result<()>;
    /// Milliseconds on this link's clock (real or virtual), never going backwards.
    fn now_ms(&self) -> u64;
    /// What the link goes to, for messages: "serial port /dev/ttyACM0".
    fn name(&self) -> String;
}

impl<L: Link + ?Sized> Link for &mut L {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        (**self).read(buf, timeout)
    }
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        (**self).write_all(bytes)
    }
    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        (**self).set_baud(baud)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        (**self).clear_input()
    }
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// A serial port opened with the `serialport` crate.
pub struct PortLink {
    port: Option<Box<dyn serialport::SerialPort>>,
    path: String,
    baud: u32,
    device_id: Option<String>,
    usb_id: Option<(u16, u16)>,
    start: Instant,
}

impl fmt::Debug for PortLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortLink")
            .field("path", &self.path)
            .finish()
    }
}

impl PortLink {
    /// Opens `path` at `baud` (opening at 28800 already asks a running device for listening
    /// mode). Input left over from an earlier session is dropped.
    pub fn open(path: &str, baud: u32) -> Result<Self, SerialError> {
        let mut link = PortLink {
            port: Some(open_port(path, baud)?),
            path: path.to_string(),
            baud,
            device_id: None,
            usb_id: None,
            start: Instant::now(),
        };
        let _ = link.clear_input();
        Ok(link)
    }

    /// Remembers the device id, so [`reopen`](PortLink::reopen) can find the device again
    /// if it comes back on another port.
    pub fn with_device_id(mut self, device_id: Option<String>) -> Self {
        self.device_id = device_id;
        self
    }

    /// Remembers the USB vendor and product id of the port, which name the platform of a
    /// device whose module list does not (Device OS 0.4.x).
    pub fn with_usb_id(mut self, usb_id: Option<(u16, u16)>) -> Self {
        self.usb_id = usb_id;
        self
    }

    /// The USB vendor and product id of the port, when known.
    pub fn usb_id(&self) -> Option<(u16, u16)> {
        self.usb_id
    }

    /// The port path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Closes the port and opens it again at `baud` once the device is back (after a reset
    /// the USB device goes away and comes back), trying for up to `within` in all, then
    /// failing with [`SerialError::Deadline`] and the last attempt's reason. The port is
    /// closed first, so the device can come back under the same name.
    pub fn reopen(&mut self, baud: u32, within: Duration) -> Result<(), SerialError> {
        self.port = None;
        let until = Instant::now() + within;
        let mut backoff = Duration::from_millis(50);
        loop {
            let path = if Path::new(&self.path).exists() {
                Some(self.path.clone())
            } else {
                self.device_id
                    .as_deref()
                    .and_then(|id| find_port(Some(id)).ok())
                    .map(|p| p.port)
            };
            let last = match path {
                Some(path) => match open_port(&path, baud) {
                    Ok(port) => {
                        self.port = Some(port);
                        self.path = path;
                        self.baud = baud;
                        let _ = self.clear_input();
                        return Ok(());
                    }
                    Err(e) => e,
                },
                None => SerialError::Open {
                    port: self.path.clone(),
                    reason: "the port is gone".into(),
                },
            };
            if Instant::now() >= until {
                let reason = match last {
                    SerialError::Open { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(SerialError::Deadline {
                    step: "opening the port again after the device's restart".into(),
                    link: self.name(),
                    limit_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
                    last: format!("the last attempt failed: {reason}"),
                    help: "the device did not come back on its port: see whether it is \
                           listed by `modflash devices`, reset it and run the command again",
                    stats: None,
                });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(1_000));
        }
    }

    fn port(&mut self) -> io::Result<&mut Box<dyn serialport::SerialPort>> {
        let path = &self.path;
        self.port.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{path} is closed (waiting for the device to come back)"),
            )
        })
    }
}

fn open_port(path: &str, baud: u32) -> Result<Box<dyn serialport::SerialPort>, SerialError> {
    serialport::new(path, baud)
        .timeout(Duration::from_millis(100))
        .open()
        .map_err(|e| SerialError::Open {
            port: path.to_string(),
            reason: e.to_string(),
        })
}

impl Link for PortLink {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let timeout = timeout.max(Duration::from_millis(1));
        let port = self.port()?;
        port.set_timeout(timeout)
            .map_err(|e| io::Error::other(e.to_string()))?;
        match io::Read::read(port, buf) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let port = self.port()?;
        port.set_timeout(Duration::from_secs(5)).ok();
        io::Write::write_all(port, bytes)?;
        io::Write::flush(port)
    }

    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.baud = baud;
        self.port()?
            .set_baud_rate(baud)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.port()?
            .clear(serialport::ClearBuffer::Input)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn name(&self) -> String {
        format!("serial port {}", self.path)
    }
}
