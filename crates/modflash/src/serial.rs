//! The serial transport: a device's USB serial console in listening mode (spec §8).
//!
//! * [`Link`] is the byte stream: a real port ([`PortLink`], the `serialport` crate), a
//!   virtual device's console in-process ([`ConsoleLink`]), or anything a test provides.
//! * [`Session`] speaks the console protocol over any link: enter listening mode (28800
//!   baud) or DFU mode (14400 baud), read the `s` module JSON until the document closes
//!   (brace matching, not a fixed silence), `i`, `v`, `m`, `x`, and flash a module by YMODEM
//!   with modflash-ymodem's [`Sender`] (1K blocks, real CRC, retransmissions) and read the
//!   device's verdict.
//! * [`discover`] finds Particle serial ports by USB vendor/product id; the device id comes
//!   from the USB serial number.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use modflash_device::console::{
    Console, ConsoleConfig, RESTARTING, TOO_BIG, VALIDATION_FAILED, YMODEM_PROMPT,
};
use modflash_device::Device;
use modflash_module::platform::{platform_by_usb, Platform};
use modflash_module::rules::OtaCode;
use modflash_ymodem::{
    File, SendError, SendStage, SendStatus, Sender, SenderConfig, SenderStats, CAN,
};

use crate::inventory::{Inventory, InventoryError};

pub use modflash_device::console::{DFU_BAUD, LISTENING_BAUD};

/// Largest `s` document accepted (a real one is a few hundred bytes).
const MAX_DESCRIBE: usize = 256 * 1024;
/// Longest text kept while waiting for a line.
const MAX_TEXT: usize = 64 * 1024;

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

    /// The port path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Closes the port and opens it again at `baud` once the device is back (after a reset
    /// the USB device goes away and comes back), trying for up to `within`. The port is
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
                return Err(last);
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

/// A virtual device's listening-mode console, in-process, on a virtual clock: waiting costs
/// no real time, so the device's 5 s timeouts are free and runs are deterministic.
#[derive(Debug)]
pub struct ConsoleLink<'d> {
    device: &'d mut Device,
    console: Console,
    now: u64,
    pending: VecDeque<u8>,
    name: String,
}

impl<'d> ConsoleLink<'d> {
    /// The console of `device` with `config` timing; `name` appears in messages
    /// ("virtual device sim:bench").
    pub fn new(device: &'d mut Device, config: ConsoleConfig, name: impl Into<String>) -> Self {
        ConsoleLink {
            device,
            console: Console::new(config),
            now: 0,
            pending: VecDeque::new(),
            name: name.into(),
        }
    }

    /// The device.
    pub fn device(&mut self) -> &mut Device {
        self.device
    }

    /// Runs the console until nothing is scheduled any more (a pending restart happens).
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            self.collect();
            match self.console.next_deadline() {
                Some(t) if self.console.restart_pending() || !self.console.is_receiving() => {
                    self.now = self.now.max(t);
                    self.console.handle_timeout(self.device, self.now);
                }
                _ => return,
            }
        }
    }

    fn collect(&mut self) {
        if self.console.has_output() {
            self.pending.extend(self.console.drain_output());
        }
    }
}

impl Link for ConsoleLink<'_> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let end = self
            .now
            .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        loop {
            self.collect();
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                for (slot, b) in buf.iter_mut().zip(self.pending.drain(..n)) {
                    *slot = b;
                }
                return Ok(n);
            }
            match self.console.next_deadline() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.console.handle_timeout(self.device, self.now);
                }
                _ => {
                    self.now = self.now.max(end);
                    return Ok(0);
                }
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.console.feed(self.device, bytes, self.now);
        Ok(())
    }

    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.console.set_baud(self.device, baud, self.now);
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.collect();
        self.pending.clear();
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// Why a serial operation failed. Every message names the port; [`SerialError::help`] says
/// what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The port could not be opened.
    #[error("cannot open serial port {port}: {reason}")]
    Open {
        /// Port path.
        port: String,
        /// The OS's reason.
        reason: String,
    },
    /// Reading or writing failed (the device went away?).
    #[error("{action} {link}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The link.
        link: String,
        /// The OS error.
        source: io::Error,
    },
    /// The device did not answer a console command.
    #[error("no answer to `{command}` from the {link} within {waited_ms} ms")]
    NoReply {
        /// The key sent.
        command: char,
        /// The link.
        link: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The device answered something unexpected.
    #[error("unexpected answer to `{command}` from the {link}: {reason} (got {excerpt:?})")]
    BadReply {
        /// The key sent.
        command: char,
        /// The link.
        link: String,
        /// What is wrong.
        reason: String,
        /// The start of what arrived.
        excerpt: String,
    },
    /// The `s` JSON could not be read as an inventory.
    #[error("the module list from the {link} is not valid: {source}")]
    Describe {
        /// The link.
        link: String,
        /// Why.
        source: InventoryError,
    },
    /// The device's firmware no longer supports YMODEM flashing (Device OS 6.x).
    #[error("the device on the {link} does not accept YMODEM transfers: {text}")]
    Unsupported {
        /// The link.
        link: String,
        /// What it said.
        text: String,
    },
    /// The YMODEM transfer failed.
    #[error("the YMODEM transfer to the {link} failed: {reason}")]
    Transfer {
        /// The link.
        link: String,
        /// The protocol error, and what the device said.
        reason: String,
        /// Counters at the time.
        stats: SenderStats,
    },
    /// Discovery found no usable port.
    #[error("{0}")]
    Discovery(String),
}

impl SerialError {
    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Self::Open { .. } => "check the port name (`ls /dev/ttyACM*`), that no other program (particle serial monitor, screen) holds it, and that you may open it (the `dialout` group)".into(),
            Self::Io { .. } => "check the USB cable and that the device did not reset; then run the command again".into(),
            Self::NoReply { .. } => "put the device in listening mode (hold SETUP until the LED blinks blue) and run the command again; a device in DFU mode (blinking yellow) has no serial console".into(),
            Self::BadReply { .. } => "make sure nothing else writes to the port and run the command again".into(),
            Self::Describe { .. } => "run the command again; if it keeps failing, report the device's `s` output".into(),
            Self::Unsupported { .. } => "flash over USB DFU instead (modflash flash FILE --device usb)".into(),
            Self::Transfer { .. } => "check the cable and run the command again: the device applies nothing unless it has received and validated the whole image".into(),
            Self::Discovery(_) => "connect the device over USB, or name the port: --device serial:/dev/ttyACM0".into(),
        })
    }
}

/// The device's identity from `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// 24 lower-case hex digits.
    pub device_id: String,
    /// Further `Name: value` lines (Device Secret, Serial Number, IMEI, ICCID, Cell Radio
    /// Version), in the order printed.
    pub fields: Vec<(String, String)>,
}

/// A transfer's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// File bytes acknowledged by the device.
    pub bytes_acked: u64,
    /// File size.
    pub bytes_total: u64,
    /// Retransmissions so far.
    pub retransmissions: u64,
}

/// What the device said about a transferred module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Validated and staged; the device restarts to apply it.
    Accepted {
        /// The name the device echoed.
        name: String,
        /// The size it reported.
        size: u64,
        /// It announced the restart.
        restarting: bool,
    },
    /// Refused after validation (`Validation failed: <code>`).
    Refused {
        /// The Device OS error code, when the device printed it.
        code: Option<i32>,
    },
    /// Refused at the header: larger than the OTA region.
    TooLarge,
}

/// The result of [`Session::flash`].
#[derive(Clone, Debug)]
pub struct FlashReport {
    /// The device's verdict.
    pub verdict: Verdict,
    /// Sender counters (round trips, bytes on the wire, retransmissions).
    pub stats: SenderStats,
    /// The device never acknowledged the end of the batch (it still printed its verdict).
    pub final_ack_missing: bool,
    /// Milliseconds on the link's clock from `f` to the verdict.
    pub elapsed_ms: u64,
    /// Text the device printed after the transfer.
    pub device_text: String,
}

/// Timeouts of the console protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for the first byte of an answer, and the longest silence inside one.
    pub reply_ms: u64,
    /// Silence that ends the variable-length `i` answer after its first line.
    pub quiet_ms: u64,
    /// Wait for the YMODEM prompt after `f`.
    pub prompt_ms: u64,
    /// Wait for the verdict text after the transfer (validation plus the 1 s pause before
    /// "Restarting system").
    pub verdict_ms: u64,
}

impl Default for Timeouts {
    /// 3 s replies, 200 ms quiet, 10 s prompt (Xenon needs more than 5 s), 10 s verdict.
    fn default() -> Self {
        Timeouts {
            reply_ms: 3_000,
            quiet_ms: 200,
            prompt_ms: 10_000,
            verdict_ms: 10_000,
        }
    }
}

/// The listening-mode console protocol over a [`Link`].
#[derive(Debug)]
pub struct Session<L: Link> {
    link: L,
    /// Timeouts in force.
    pub timeouts: Timeouts,
}

impl<L: Link> Session<L> {
    /// A session over `link` with default timeouts.
    pub fn new(link: L) -> Self {
        Session {
            link,
            timeouts: Timeouts::default(),
        }
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Gives the link back.
    pub fn into_link(self) -> L {
        self.link
    }

    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> SerialError + '_ {
        move |source| SerialError::Io {
            action,
            link: self.link.name(),
            source,
        }
    }

    /// Sets 28800 baud: a running device enters listening mode (blinking blue).
    pub fn enter_listening(&mut self) -> Result<(), SerialError> {
        let r = self.link.set_baud(LISTENING_BAUD);
        r.map_err(self.io("cannot set 28800 baud on"))
    }

    /// Sets 14400 baud: a running device resets into DFU mode (its serial port goes away).
    pub fn enter_dfu(&mut self) -> Result<(), SerialError> {
        let r = self.link.set_baud(DFU_BAUD);
        r.map_err(self.io("cannot set 14400 baud on"))
    }

    fn send_key(&mut self, key: u8) -> Result<(), SerialError> {
        let r = self.link.clear_input();
        r.map_err(self.io("cannot flush"))?;
        let r = self.link.write_all(&[key]);
        r.map_err(self.io("cannot write to"))
    }

    /// Reads into `acc` until `done(acc)` says where the answer ends, the first byte not
    /// arriving within `first_ms` or a gap longer than `gap_ms` failing the read.
    fn read_answer(
        &mut self,
        command: char,
        acc: &mut Vec<u8>,
        first_ms: u64,
        gap_ms: u64,
        limit: usize,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), SerialError> {
        let start = self.link.now_ms();
        let mut last = start;
        let mut buf = [0u8; 1024];
        loop {
            if done(acc) {
                return Ok(());
            }
            let now = self.link.now_ms();
            let wait_until = if acc.is_empty() {
                start.saturating_add(first_ms)
            } else {
                last.saturating_add(gap_ms)
            };
            if now >= wait_until {
                return Err(if acc.is_empty() {
                    SerialError::NoReply {
                        command,
                        link: self.link.name(),
                        waited_ms: first_ms,
                    }
                } else {
                    SerialError::BadReply {
                        command,
                        link: self.link.name(),
                        reason: format!("the answer stopped after {} bytes", acc.len()),
                        excerpt: excerpt(acc),
                    }
                });
            }
            let wait = Duration::from_millis((wait_until - now).min(100));
            let r = self.link.read(&mut buf, wait);
            let n = r.map_err(self.io("cannot read from"))?;
            if n > 0 {
                last = self.link.now_ms();
                acc.extend_from_slice(&buf[..n]);
                if acc.len() > limit {
                    return Err(SerialError::BadReply {
                        command,
                        link: self.link.name(),
                        reason: format!("more than {limit} bytes without the end of the answer"),
                        excerpt: excerpt(acc),
                    });
                }
            }
        }
    }

    /// `s`: the module info JSON, read until the document's outermost brace closes.
    pub fn describe(&mut self) -> Result<String, SerialError> {
        self.send_key(b's')?;
        let mut acc = Vec::new();
        let mut scan = JsonScan::default();
        let t = self.timeouts.reply_ms;
        self.read_answer('s', &mut acc, t, t, MAX_DESCRIBE, |acc| scan.feed(acc))?;
        let (start, end) = scan.span().unwrap_or((0, acc.len()));
        let doc = acc.get(start..end).unwrap_or(&[]);
        String::from_utf8(doc.to_vec()).map_err(|_| SerialError::BadReply {
            command: 's',
            link: self.link.name(),
            reason: "the JSON is not UTF-8".into(),
            excerpt: excerpt(doc),
        })
    }

    /// `s`, parsed: what is installed.
    pub fn inventory(&mut self) -> Result<Inventory, SerialError> {
        let text = self.describe()?;
        Inventory::from_describe(&text).map_err(|source| SerialError::Describe {
            link: self.link.name(),
            source,
        })
    }

    /// Listening mode, then `s`: a device needs a moment to switch (a key sent before goes to
    /// the application), so a silent first attempt is repeated once.
    pub fn listening_inventory(&mut self) -> Result<Inventory, SerialError> {
        self.enter_listening()?;
        match self.inventory() {
            Err(SerialError::NoReply { .. }) => {
                std::thread::sleep(Duration::from_millis(100));
                self.enter_listening()?;
                self.inventory()
            }
            other => other,
        }
    }

    /// `i`: the device id (both answer forms), and any further `Name: value` lines.
    pub fn identify(&mut self) -> Result<Identity, SerialError> {
        self.send_key(b'i')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('i', &mut acc, t, t, MAX_TEXT, |acc| {
            String::from_utf8_lossy(acc)
                .split_inclusive('\n')
                .any(|l| l.ends_with('\n') && find_device_id(l).is_some())
        })?;
        // The key/value form goes on for a few lines: take what follows until a short quiet.
        if String::from_utf8_lossy(&acc).contains("Device ID:") {
            let q = self.timeouts.quiet_ms;
            let mut buf = [0u8; 512];
            loop {
                let r = self.link.read(&mut buf, Duration::from_millis(q));
                let n = r.map_err(self.io("cannot read from"))?;
                if n == 0 || acc.len() > MAX_TEXT {
                    break;
                }
                acc.extend_from_slice(&buf[..n]);
            }
        }
        let text = String::from_utf8_lossy(&acc).into_owned();
        parse_identity(&text).ok_or_else(|| SerialError::BadReply {
            command: 'i',
            link: self.link.name(),
            reason: "no 24-digit device id in the answer".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// `v`: the system firmware version ("1.5.0").
    pub fn version(&mut self) -> Result<String, SerialError> {
        const PREFIX: &str = "system firmware version: ";
        self.send_key(b'v')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('v', &mut acc, t, t, MAX_TEXT, |acc| {
            let text = String::from_utf8_lossy(acc);
            text.find(PREFIX).is_some_and(|i| text[i..].contains('\n'))
        })?;
        let text = String::from_utf8_lossy(&acc);
        let line = text
            .lines()
            .find_map(|l| l.split_once(PREFIX).map(|(_, v)| v.trim().to_string()));
        line.ok_or_else(|| SerialError::BadReply {
            command: 'v',
            link: self.link.name(),
            reason: "no version line".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// `m`: the MAC address ("6c:0b:84:…").
    pub fn mac(&mut self) -> Result<String, SerialError> {
        self.send_key(b'm')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('m', &mut acc, t, t, MAX_TEXT, |acc| {
            find_mac(&String::from_utf8_lossy(acc)).is_some()
        })?;
        find_mac(&String::from_utf8_lossy(&acc)).ok_or_else(|| SerialError::BadReply {
            command: 'm',
            link: self.link.name(),
            reason: "no MAC address".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// Reads and drops input until the line has been quiet for `quiet_ms` (at most 5 s):
    /// after a failed transfer the device ignores keys until the sender has stopped.
    pub fn wait_quiet(&mut self, quiet_ms: u64) -> Result<(), SerialError> {
        let start = self.link.now_ms();
        let mut last = start;
        let mut buf = [0u8; 1024];
        loop {
            let now = self.link.now_ms();
            if now.saturating_sub(last) >= quiet_ms || now.saturating_sub(start) >= 5_000 {
                return Ok(());
            }
            let wait = quiet_ms
                .saturating_sub(now.saturating_sub(last))
                .clamp(1, 100);
            let r = self.link.read(&mut buf, Duration::from_millis(wait));
            if r.map_err(self.io("cannot read from"))? > 0 {
                last = self.link.now_ms();
            }
        }
    }

    /// `x`: leaves listening mode (the device goes back to what it was running).
    pub fn exit_listening(&mut self) -> Result<(), SerialError> {
        self.send_key(b'x')
    }

    /// `f` and a YMODEM transfer of `data` (one module) named `name`, then the device's
    /// verdict. `config` is usually [`SenderConfig::device_os`]. `progress` is called as
    /// blocks are acknowledged; returning `false` cancels the transfer (CAN CAN).
    pub fn flash(
        &mut self,
        name: &str,
        data: &[u8],
        config: SenderConfig,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<FlashReport, SerialError> {
        let started = self.link.now_ms();
        self.send_key(b'f')?;
        // The prompt line (or a `C`) says the receiver runs.
        let mut acc = Vec::new();
        let t = self.timeouts.prompt_ms;
        self.read_answer('f', &mut acc, t, t, MAX_TEXT, |acc| {
            let text = String::from_utf8_lossy(acc);
            text.contains(YMODEM_PROMPT) && text.contains('\n')
                || acc.contains(&b'C')
                || acc.windows(2).any(|w| w == [CAN, CAN])
        })?;
        if acc.windows(2).any(|w| w == [CAN, CAN]) {
            // Device OS 6: 4×CAN and "Serial/YModem flashing is no longer supported".
            let mut more = acc.clone();
            let _ = self.read_answer('f', &mut more, 500, 200, MAX_TEXT, |a| a.ends_with(b"\n"));
            return Err(SerialError::Unsupported {
                link: self.link.name(),
                text: printable(&more),
            });
        }
        let files = [File::new(name, data)];
        let sent = send_ymodem(&mut self.link, &files, config, progress)?;
        let trailing = sent.trailing;
        let stats = sent.stats;
        let status = sent.status;
        let verdict_ms = self.timeouts.verdict_ms;
        let gap = self.timeouts.reply_ms.max(1_500);
        match status {
            SendStatus::Done { warnings } => {
                // ACKed: read "Downloaded file successfully!" … "Restarting system …".
                let mut text = trailing;
                let _ = self.read_answer('f', &mut text, verdict_ms, gap, MAX_TEXT, |a| {
                    let t = String::from_utf8_lossy(a);
                    t.contains(RESTARTING) || t.contains(VALIDATION_FAILED) && t.ends_with('\n')
                });
                let printed = printable(&text);
                let verdict = if let Some(code) = validation_code(&printed) {
                    Verdict::Refused { code: Some(code) }
                } else {
                    parse_accepted(&printed)
                };
                Ok(FlashReport {
                    verdict,
                    stats,
                    final_ack_missing: warnings.final_ack_missing,
                    elapsed_ms: self.link.now_ms().saturating_sub(started),
                    device_text: printed,
                })
            }
            SendStatus::Failed(SendError::CancelledByReceiver { stage, .. }) => {
                let mut text = trailing;
                let _ = self.read_answer('f', &mut text, verdict_ms, gap, MAX_TEXT, |a| {
                    let t = String::from_utf8_lossy(a);
                    (t.contains(VALIDATION_FAILED)
                        || t.contains(TOO_BIG)
                        || t.contains("Aborted")
                        || t.contains("Failed"))
                        && t.ends_with('\n')
                });
                let printed = printable(&text);
                let elapsed_ms = self.link.now_ms().saturating_sub(started);
                let report = |verdict| {
                    Ok(FlashReport {
                        verdict,
                        stats,
                        final_ack_missing: false,
                        elapsed_ms,
                        device_text: printed.clone(),
                    })
                };
                if let Some(code) = validation_code(&printed) {
                    return report(Verdict::Refused { code: Some(code) });
                }
                if printed.contains(TOO_BIG) {
                    return report(Verdict::TooLarge);
                }
                if stage == SendStage::EndOfBatch {
                    return report(Verdict::Refused { code: None });
                }
                let said = if printed.is_empty() {
                    String::new()
                } else {
                    format!("; the device said: {printed:?}")
                };
                Err(SerialError::Transfer {
                    link: self.link.name(),
                    reason: format!(
                        "{}{said}",
                        SendError::CancelledByReceiver { file: 0, stage }
                    ),
                    stats,
                })
            }
            SendStatus::Failed(e) => Err(SerialError::Transfer {
                link: self.link.name(),
                reason: e.to_string(),
                stats,
            }),
            SendStatus::InProgress => Err(SerialError::Transfer {
                link: self.link.name(),
                reason: "the sender stopped before the end".into(),
                stats,
            }),
        }
    }
}

/// What [`send_ymodem`] ended with.
#[derive(Clone, Debug)]
pub struct SendOutcome {
    /// The sender's final status.
    pub status: SendStatus,
    /// Its counters.
    pub stats: SenderStats,
    /// Bytes read in the chunk that ended the transfer and after it (the device's text
    /// follows its final ACK or CAN CAN).
    pub trailing: Vec<u8>,
}

/// Runs a YMODEM batch send of `files` over `link` until the sender finishes: the receiver
/// is expected to be running already (`rb`, or the device after `f`). `progress` is called
/// as blocks are acknowledged; returning `false` cancels the transfer.
pub fn send_ymodem<L: Link + ?Sized>(
    link: &mut L,
    files: &[File<'_>],
    config: SenderConfig,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<SendOutcome, SerialError> {
    let io = |action: &'static str, link: &L| {
        let name = link.name();
        move |source| SerialError::Io {
            action,
            link: name,
            source,
        }
    };
    let mut tx = Sender::new(files, config).map_err(|e| SerialError::Transfer {
        link: link.name(),
        reason: e.to_string(),
        stats: SenderStats::default(),
    })?;
    let mut trailing: Vec<u8> = Vec::new();
    let mut buf = [0u8; 2048];
    let mut last_acked = u64::MAX;
    while !tx.is_finished() {
        let now = link.now_ms();
        if let Some(bytes) = tx.poll_transmit(now) {
            let r = link.write_all(bytes);
            r.map_err(io("cannot write to", link))?;
            continue;
        }
        let now = link.now_ms();
        let wait = tx
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now))
            .clamp(1, 100);
        let r = link.read(&mut buf, Duration::from_millis(wait));
        let n = r.map_err(io("cannot read from", link))?;
        let now = link.now_ms();
        if n > 0 {
            tx.handle_input(&buf[..n], now);
            if tx.is_finished() {
                trailing.extend_from_slice(&buf[..n]);
            }
        }
        tx.handle_timeout(now);
        let s = tx.stats();
        if s.bytes_acked != last_acked {
            last_acked = s.bytes_acked;
            let go_on = progress(Progress {
                bytes_acked: s.bytes_acked,
                bytes_total: s.bytes_total,
                retransmissions: s.retransmissions,
            });
            if !go_on {
                tx.cancel();
            }
        }
    }
    // A cancel sequence of our own still has to go out.
    if let Some(bytes) = tx.poll_transmit(link.now_ms()) {
        let r = link.write_all(bytes);
        r.map_err(io("cannot write to", link))?;
    }
    Ok(SendOutcome {
        status: tx.status(),
        stats: tx.stats(),
        trailing,
    })
}

/// Incremental brace matcher for the `s` answer: finds the first `{` and the `}` that closes
/// it, honouring strings and escapes. Work is linear in the input.
#[derive(Debug, Default)]
struct JsonScan {
    pos: usize,
    start: Option<usize>,
    depth: u32,
    in_string: bool,
    escape: bool,
    end: Option<usize>,
}

impl JsonScan {
    /// Scans new bytes of `acc`; true once the document has closed.
    fn feed(&mut self, acc: &[u8]) -> bool {
        while self.end.is_none() {
            let Some(&b) = acc.get(self.pos) else { break };
            let i = self.pos;
            self.pos += 1;
            if self.start.is_none() {
                if b == b'{' {
                    self.start = Some(i);
                    self.depth = 1;
                }
                continue;
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.end = Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        self.end.is_some()
    }

    fn span(&self) -> Option<(usize, usize)> {
        Some((self.start?, self.end?))
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let head = bytes.get(..bytes.len().min(120)).unwrap_or(&[]);
    String::from_utf8_lossy(head).into_owned()
}

/// The text in `bytes`, protocol bytes (ACK, CAN, `C` runs) and blank lines removed.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == 'C'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn validation_code(text: &str) -> Option<i32> {
    let i = text.find(VALIDATION_FAILED)?;
    let rest = &text[i + VALIDATION_FAILED.len()..];
    let num: String = rest
        .chars()
        .take_while(|c| *c == '-' || c.is_ascii_digit())
        .collect();
    num.parse().ok()
}

fn parse_accepted(text: &str) -> Verdict {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("Name: "))
        .unwrap_or("")
        .to_string();
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("Size: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Verdict::Accepted {
        name,
        size,
        restarting: text.contains(RESTARTING),
    }
}

/// The first run of exactly 24 hex digits in `text`, lower-cased (how particle-cli reads the
/// device id from a USB serial number or the `i` answer).
pub fn find_device_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_hexdigit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            if i - start == 24 {
                return Some(text[start..i].to_ascii_lowercase());
            }
        } else {
            i += 1;
        }
    }
    None
}

fn parse_identity(text: &str) -> Option<Identity> {
    let mut device_id = None;
    let mut fields = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Your device id is ") {
            device_id = find_device_id(rest);
        } else if let Some(rest) = line.strip_prefix("Device ID: ") {
            device_id = find_device_id(rest);
        } else if let Some((k, v)) = line.split_once(": ") {
            if device_id.is_some() && !k.is_empty() && k.len() < 40 {
                fields.push((k.to_string(), v.to_string()));
            }
        }
    }
    Some(Identity {
        device_id: device_id?,
        fields,
    })
}

fn find_mac(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace()).find_map(|w| {
        let parts: Vec<&str> = w.split(':').collect();
        (parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())))
        .then(|| w.to_ascii_lowercase())
    })
}

/// A Particle device's serial port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticlePort {
    /// The port path (`/dev/ttyACM0`).
    pub port: String,
    /// The platform its USB id names.
    pub platform: &'static Platform,
    /// The device id from the USB serial number, when it carries one.
    pub device_id: Option<String>,
}

/// Particle serial ports attached now, found by USB vendor/product id (normal-mode ids: a
/// device in DFU mode has no serial port).
pub fn discover() -> Result<Vec<ParticlePort>, SerialError> {
    // serialport's sysfs scan panics when /sys/class/tty is missing (containers).
    if cfg!(target_os = "linux") && !Path::new("/sys/class/tty").is_dir() {
        return Ok(Vec::new());
    }
    let ports = serialport::available_ports()
        .map_err(|e| SerialError::Discovery(format!("cannot list serial ports: {e}")))?;
    let mut found: Vec<ParticlePort> = ports
        .into_iter()
        .filter_map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(usb) => {
                let (platform, dfu) = platform_by_usb(usb.vid, usb.pid)?;
                (!dfu).then(|| ParticlePort {
                    port: p.port_name,
                    platform,
                    device_id: usb.serial_number.as_deref().and_then(find_device_id),
                })
            }
            _ => None,
        })
        .collect();
    found.sort_by(|a, b| a.port.cmp(&b.port));
    Ok(found)
}

/// The port of the device with `device_id`, or of the only Particle device when `None`.
pub fn find_port(device_id: Option<&str>) -> Result<ParticlePort, SerialError> {
    let ports = discover()?;
    match device_id {
        Some(id) => ports
            .into_iter()
            .find(|p| p.device_id.as_deref() == Some(id))
            .ok_or_else(|| {
                SerialError::Discovery(format!(
                    "no Particle serial port belongs to device {id} (is it in DFU mode or unplugged?)"
                ))
            }),
        None => {
            let count = ports.len();
            let names = ports
                .iter()
                .map(|p| p.port.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut ports = ports.into_iter();
            match (ports.next(), count) {
                (Some(only), 1) => Ok(only),
                (None, _) => Err(SerialError::Discovery(
                    "no Particle device found on a USB serial port".into(),
                )),
                _ => Err(SerialError::Discovery(format!(
                    "{count} Particle devices are attached ({names}); say which one"
                ))),
            }
        }
    }
}

/// Sends one module over `session` and returns once the device has accepted it and come back
/// after its restart (`reconnect` re-opens the link); a refusal is the device's verdict in
/// words. Shared by [`SerialTarget`] and the virtual device's serial path.
pub fn flash_and_wait<L: Link>(
    session: &mut Session<L>,
    name: &str,
    data: &[u8],
    progress: &mut dyn FnMut(crate::exec::Event),
    reconnect: &mut dyn FnMut(&mut Session<L>) -> Result<(), SerialError>,
) -> Result<(), crate::exec::ExecError> {
    use crate::exec::{Event, ExecError};
    let transport = |e: SerialError| ExecError::Transport(e.to_string());
    session.enter_listening().map_err(transport)?;
    let total = data.len();
    let report = session
        .flash(name, data, SenderConfig::device_os(), &mut |p| {
            progress(Event::Bytes {
                done: p.bytes_acked as usize,
                total,
            });
            true
        })
        .map_err(transport)?;
    match report.verdict {
        Verdict::Accepted { .. } => reconnect(session).map_err(transport),
        Verdict::Refused { code } => {
            let _ = session.exit_listening();
            Err(ExecError::Refused {
                module: name.to_string(),
                verdict: match code {
                    Some(c) => format!("{} ({c})", OtaCode::name_of(c)),
                    None => "it cancelled the transfer without giving a reason".into(),
                },
            })
        }
        Verdict::TooLarge => {
            let _ = session.exit_listening();
            Err(ExecError::Refused {
                module: name.to_string(),
                verdict: "the file is larger than the OTA region".into(),
            })
        }
    }
}

/// A real device on a serial port, as an executor target: listening-mode inventory and
/// YMODEM updates. DFU steps need the USB interface (`--device usb`).
pub struct SerialTarget {
    session: Session<PortLink>,
}

impl SerialTarget {
    /// A target on an open port.
    pub fn new(link: PortLink) -> Self {
        Self {
            session: Session::new(link),
        }
    }
}

/// How long a device may take to come back on its port after an update restart.
const RECONNECT_WITHIN: Duration = Duration::from_secs(30);

impl crate::exec::Target for SerialTarget {
    fn inventory(&mut self) -> Result<Inventory, crate::exec::ExecError> {
        let transport = |e: SerialError| crate::exec::ExecError::Transport(e.to_string());
        let inventory = self.session.listening_inventory().map_err(transport)?;
        let _ = self.session.exit_listening();
        Ok(inventory)
    }

    fn enter_dfu(&mut self) -> Result<(), crate::exec::ExecError> {
        Err(crate::exec::ExecError::Transport(
            "a serial port carries listening-mode updates only: use --via serial, or --device usb for DFU".into(),
        ))
    }

    fn dfu_write(
        &mut self,
        _: u8,
        _: u32,
        _: &[u8],
        _: &mut dyn FnMut(crate::exec::Event),
    ) -> Result<(), crate::exec::ExecError> {
        self.enter_dfu()
    }

    fn dfu_leave(&mut self, _: u32) -> Result<(), crate::exec::ExecError> {
        self.enter_dfu()
    }

    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        progress: &mut dyn FnMut(crate::exec::Event),
    ) -> Result<(), crate::exec::ExecError> {
        flash_and_wait(&mut self.session, name, data, progress, &mut |s| {
            s.link().reopen(LISTENING_BAUD, RECONNECT_WITHIN)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::Mode;
    use modflash_module::platform::platform;

    fn device(release: &str) -> Device {
        let mut d = Device::blank(platform(6).unwrap(), [0xab; 12]).unwrap();
        d.install_release(release, true).unwrap();
        d.power_on();
        d
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../tests/fixtures/real/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(p).unwrap()
    }

    #[test]
    fn discovery_never_panics() {
        // No Particle device is attached here; whatever is, discovery answers.
        let ports = discover().unwrap();
        assert!(ports.iter().all(|p| p.platform.usb.is_some()));
        if ports.is_empty() {
            let e = find_port(None).unwrap_err();
            assert!(e.to_string().contains("no Particle device"), "{e}");
            assert!(e.help().unwrap().contains("--device serial:"));
        }
    }

    #[test]
    fn json_scan_closes_on_the_outer_brace() {
        let mut s = JsonScan::default();
        let doc = br#"junk C{"p":6,"m":[{"u":"a}\"{","d":[]}]}\r\nmore"#;
        assert!(!s.feed(&doc[..20]));
        assert!(s.feed(doc));
        let (a, b) = s.span().unwrap();
        assert_eq!(&doc[a..b], br#"{"p":6,"m":[{"u":"a}\"{","d":[]}]}"#);
    }

    #[test]
    fn identity_both_forms_and_mac() {
        let a = parse_identity("Your device id is 3b0021001747353236343033\r\n").unwrap();
        assert_eq!(a.device_id, "3b0021001747353236343033");
        let b = parse_identity(
            "Device ID: 3B0021001747353236343033\r\nIMEI: 353162071234567\r\nICCID: 8934\r\n",
        )
        .unwrap();
        assert_eq!(b.device_id, "3b0021001747353236343033");
        assert_eq!(b.fields[0], ("IMEI".into(), "353162071234567".into()));
        assert_eq!(
            find_mac("Your device MAC address is\r\n6C:0B:84:00:11:22\r\n").as_deref(),
            Some("6c:0b:84:00:11:22")
        );
        assert!(parse_identity("garbage").is_none());
        assert_eq!(
            find_device_id("P046AB 3b0021001747353236343033x"),
            Some("3b0021001747353236343033".into())
        );
        assert_eq!(
            find_device_id("3b00210017473532363430331"),
            None,
            "25 digits"
        );
    }

    #[test]
    fn session_over_the_in_process_console() {
        let mut d = device("1.5.0");
        let mut s = Session::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
        // Not listening yet: the console is quiet.
        let err = s.describe().unwrap_err();
        assert!(
            matches!(err, SerialError::NoReply { command: 's', .. }),
            "{err}"
        );
        s.enter_listening().unwrap();
        let inv = s.inventory().unwrap();
        assert_eq!(inv.platform_id, 6);
        assert_eq!(inv.system_version(), Some(1502));
        assert_eq!(s.identify().unwrap().device_id, "ab".repeat(12));
        assert_eq!(s.version().unwrap(), "1.5.0");
        assert_eq!(s.mac().unwrap(), "02:ab:ab:ab:ab:ab");
        s.exit_listening().unwrap();
        drop(s);
        assert_eq!(d.state.mode, Mode::App);
    }

    #[test]
    fn flash_app_then_refused_part() {
        let mut d = device("0.5.2");
        let app = fixture("photon_tinker.bin");
        {
            let mut s = Session::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
            s.enter_listening().unwrap();
            let mut seen = Vec::new();
            let r = s
                .flash("binary", &app, SenderConfig::device_os(), &mut |p| {
                    seen.push(p.bytes_acked);
                    true
                })
                .unwrap();
            assert_eq!(
                r.verdict,
                Verdict::Accepted {
                    name: "binary".into(),
                    size: app.len() as u64,
                    restarting: true
                },
                "{}",
                r.device_text
            );
            assert_eq!(*seen.last().unwrap(), app.len() as u64);
            assert_eq!(r.stats.retransmissions, 0);
            // Header, 3 × 1K, 7 × 128 (the last 880 bytes), EOT, end of batch.
            assert!(r.stats.round_trips < 16, "{:?}", r.stats);
        }
        assert_eq!(d.state.mode, Mode::App, "restarted into the app");
        let part2 = fixture("photon-system-part2@1.5.0.bin");
        let before = modflash_device::describe::describe(&d);
        let mut s = Session::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
        s.enter_listening().unwrap();
        let r = s
            .flash("binary", &part2, SenderConfig::device_os(), &mut |_| true)
            .unwrap();
        assert_eq!(r.verdict, Verdict::Refused { code: Some(-1340) });
        let after = s.describe().unwrap();
        assert_eq!(after, before, "nothing changed");
    }
}
