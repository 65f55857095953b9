//! A virtual device's USB serial port as a pty (`modflash sim serve NAME --serial-link PATH`):
//! the pty's slave is symlinked at PATH and driven by the device's listening-mode console, so
//! any serial program (particle-cli, lrzsz, screen, modflash itself) can talk to it.
//!
//! The line rate a client sets on the pty is the device's trigger, like the USB CDC line
//! coding on a real device: 28800 baud enters listening mode, 14400 baud resets into DFU
//! mode. The pty master learns about every termios change of the slave in packet mode
//! (TIOCPKT with EXTPROC set on the slave: a TIOCPKT_IOCTL status), also when a client sets
//! the same rate again on opening the port; a periodic check of the rate backs that up (a
//! client that clears every local mode, EXTPROC included — a raw terminal program — turns the
//! notices off: then, as on a real device, only a rate that changes is seen). A change is
//! acted on once the settings have been stable for a few milliseconds (opening a port sets
//! them in several steps), and input that arrives meanwhile waits, so a key written right
//! after opening at 28800 reaches the console in listening mode.

use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modflash_device::console::{Console, ConsoleConfig, ConsoleEvent, LISTENING_BAUD};
use modflash_device::{Device, Mode};

use super::sim::console_config;
use crate::error::Error;
use crate::progress::{Cancel, Event, Observer};
use crate::sim::SimHandle;

/// TIOCPKT status bit: the slave's termios changed (needs EXTPROC on the slave).
const TIOCPKT_IOCTL: u8 = 0x40;
/// `EXTPROC` local-mode flag (Linux value).
#[cfg(target_os = "linux")]
const EXTPROC: libc::tcflag_t = 0o200000;
/// How long the line settings must be stable before a rate change counts.
const SETTLE_MS: u64 = 20;
/// Fallback check of the line rate.
const RATE_POLL_MS: u64 = 100;
/// Output kept for a client that does not read (older output is dropped).
const MAX_PENDING_OUT: usize = 64 * 1024;

fn os_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Os { what, source }
}

fn last_os_error(what: &str) -> Error {
    Error::Os {
        what: what.to_string(),
        source: io::Error::last_os_error(),
    }
}

/// The slave's line rate (output speed).
fn line_rate(fd: RawFd) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: TCGETS2 fills a termios2 for a valid tty fd.
        let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(fd, libc::TCGETS2, &mut t) };
        (rc == 0).then_some(t.c_ospeed)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: tcgetattr fills a termios for a valid tty fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(fd, &mut t) };
        (rc == 0).then(|| unsafe { libc::cfgetospeed(&t) } as u32)
    }
}

/// A pty: master in packet mode, non-blocking; the slave kept open (so reads do not fail
/// with EIO when clients close) in raw mode with EXTPROC.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    slave_name: PathBuf,
}

fn open_pty() -> Result<Pty, Error> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds; the name/termios/winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(last_os_error("cannot open a pseudo-terminal (openpty)"));
    }
    // SAFETY: both fds were just returned by openpty and belong to nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: the buffer is valid for its length; ttyname_r NUL-terminates on success.
    let rc = unsafe { libc::ttyname_r(slave.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(Error::Os {
            what: "cannot name the pseudo-terminal".into(),
            source: io::Error::from_raw_os_error(rc),
        });
    }
    // SAFETY: NUL-terminated by ttyname_r.
    let slave_name = PathBuf::from(
        unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    );
    // SAFETY: termios is plain data filled by tcgetattr for a valid fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) != 0 {
            return Err(last_os_error("cannot read the pseudo-terminal settings"));
        }
        libc::cfmakeraw(&mut t);
        #[cfg(target_os = "linux")]
        {
            t.c_lflag |= EXTPROC;
        }
        if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(last_os_error("cannot set the pseudo-terminal to raw mode"));
        }
        let one: libc::c_int = 1;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCPKT as _, &one) != 0 {
            return Err(last_os_error(
                "cannot put the pseudo-terminal in packet mode",
            ));
        }
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok(Pty {
        master,
        slave,
        slave_name,
    })
}

/// True when console `events` may have changed the device (anything but a read-only key),
/// so it must be saved.
pub fn changes_device(events: &[ConsoleEvent]) -> bool {
    events.iter().any(|e| match e {
        ConsoleEvent::Command(c) => matches!(c, 'x' | 'w'),
        _ => true,
    })
}

/// The device a served console drives, and what follows when the console changed it.
pub(crate) trait ConsoleTarget {
    /// Runs one console step on the device.
    fn step(&mut self, console_step: &mut dyn FnMut(&mut Device));
    /// The console changed the device (saves a stored device).
    fn changed(&mut self) -> Result<(), Error>;
}

impl ConsoleTarget for SimHandle {
    fn step(&mut self, console_step: &mut dyn FnMut(&mut Device)) {
        console_step(&mut self.device);
    }

    fn changed(&mut self) -> Result<(), Error> {
        Ok(self.save()?)
    }
}

fn save_on(target: &mut dyn ConsoleTarget, events: &[ConsoleEvent]) -> Result<(), Error> {
    if changes_device(events) {
        target.changed()?;
    }
    Ok(())
}

fn describe_events(events: &[ConsoleEvent], observer: &mut dyn Observer) {
    for e in events {
        let line = match e {
            ConsoleEvent::ModeChanged(m) => format!("mode: {}", m.name()),
            ConsoleEvent::Transfer(t) => format!("ymodem: {t:?}"),
            ConsoleEvent::Restarted => "restarted to apply the update".to_string(),
            ConsoleEvent::Command(c) => format!("command `{c}`"),
        };
        observer.event(Event::note(format!("sim serve: {line}")));
    }
}

/// A pty serving a virtual device, with its slave linked at a path (or, on the emulated bus,
/// made a device node by the bus).
pub struct PtyServer {
    pty: Pty,
    link: Option<PathBuf>,
}

impl PtyServer {
    /// Opens a pty and links its slave at `link` (a stale symbolic link there is replaced,
    /// never a real file).
    pub fn open(link: &Path) -> Result<Self, Error> {
        let pty = open_pty()?;
        replace_link(link, &pty.slave_name)?;
        Ok(Self {
            pty,
            link: Some(link.to_path_buf()),
        })
    }

    /// A pty linked nowhere (the emulated bus makes its slave the device's tty node).
    pub(crate) fn unlinked() -> Result<Self, Error> {
        Ok(Self {
            pty: open_pty()?,
            link: None,
        })
    }

    /// The pty's slave device.
    pub fn slave_name(&self) -> &Path {
        &self.pty.slave_name
    }

    /// Serves `handle`'s console until `cancel` is set, saving the device after every change
    /// and once more at the end. With `MODFLASH_SIM_TRACE` set, reports every console event
    /// as a note.
    pub fn serve(
        &self,
        handle: &mut SimHandle,
        cancel: &Cancel,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        let result = serve_loop(handle, &self.pty, console_config(), cancel, observer);
        handle.save()?;
        result
    }

    /// Serves the console of the device `target` reaches until `cancel` is set.
    pub(crate) fn serve_target(
        &self,
        target: &mut dyn ConsoleTarget,
        cancel: &Cancel,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        serve_loop(target, &self.pty, console_config(), cancel, observer)
    }
}

impl Drop for PtyServer {
    /// Removes the link if it still points at this pty.
    fn drop(&mut self) {
        let Some(link) = &self.link else { return };
        if std::fs::read_link(link).is_ok_and(|t| t == self.pty.slave_name) {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// `sim serve` on a device `sim attach` holds: the attach process serves the device's serial
/// port itself (one process owns the device), and this links a second path to that pty until
/// [`SharedPort::wait`] ends. The link is removed when dropped, if it still points there.
pub struct SharedPort {
    link: PathBuf,
    pty: PathBuf,
}

impl SharedPort {
    /// Links `link` to the pty that `published` (the attach process's link, see
    /// [`crate::sim::SimStore::attached_serial_port`]) points at; `None` when no attach process
    /// serves one.
    pub fn open(published: &Path, link: &Path) -> Result<Option<SharedPort>, Error> {
        let Ok(pty) = std::fs::read_link(published) else {
            return Ok(None);
        };
        if !pty.exists() {
            return Ok(None);
        }
        replace_link(link, &pty)?;
        Ok(Some(SharedPort {
            link: link.to_path_buf(),
            pty,
        }))
    }

    /// The pty linked to.
    pub fn pty(&self) -> &Path {
        &self.pty
    }

    /// Waits until `cancel` is set or the attach process stops serving the port (its link
    /// goes away or points elsewhere).
    pub fn wait(&self, published: &Path, cancel: &Cancel) {
        while !cancel.is_cancelled() && std::fs::read_link(published).is_ok_and(|p| p == self.pty) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SharedPort {
    fn drop(&mut self) {
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.pty) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// Makes `link` a symbolic link to `target`, replacing a stale link there (never a real file).
fn replace_link(link: &Path, target: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(link).map_err(os_err(format!(
                "cannot replace the old link {}",
                link.display()
            )))?;
        }
        Ok(_) => {
            return Err(Error::Os {
                what: format!(
                    "{} exists and is not a symbolic link (pick another --serial-link path)",
                    link.display()
                ),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            })
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(os_err(format!(
        "cannot create the link {} → {}",
        link.display(),
        target.display()
    )))
}

fn serve_loop(
    target: &mut dyn ConsoleTarget,
    pty: &Pty,
    cfg: ConsoleConfig,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<(), Error> {
    let mut console = Console::new(cfg);
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let master = pty.master.as_raw_fd();
    let slave = pty.slave.as_raw_fd();
    let mut last_rate = line_rate(slave);
    // A rate change waiting for the settings to settle, and input held back meanwhile.
    let mut settle_at: Option<u64> = None;
    let mut held: Vec<u8> = Vec::new();
    let mut next_rate_poll = 0u64;
    let mut out: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let verbose = std::env::var_os("MODFLASH_SIM_TRACE").is_some();
    while !cancel.is_cancelled() {
        let now = now_ms();
        // Rate changes: notified, or found by the periodic check.
        if now >= next_rate_poll {
            next_rate_poll = now + RATE_POLL_MS;
            let rate = line_rate(slave);
            if rate != last_rate && settle_at.is_none() {
                settle_at = Some(now + SETTLE_MS);
            }
        }
        if settle_at.is_some_and(|t| now >= t) {
            settle_at = None;
            let rate = line_rate(slave);
            last_rate = rate;
            if let Some(rate) = rate {
                if verbose {
                    observer.event(Event::note(format!("sim serve: line rate {rate}")));
                }
                target.step(&mut |d| console.set_baud(d, rate, now));
            }
            if !held.is_empty() {
                target.step(&mut |d| console.feed(d, &held, now));
                held.clear();
            }
        }
        if console.next_deadline().is_some_and(|t| now >= t) {
            target.step(&mut |d| console.handle_timeout(d, now));
        }
        out.extend(console.drain_output());
        let events = console.take_events();
        if !events.is_empty() {
            if verbose {
                describe_events(&events, observer);
            }
            save_on(target, &events)?;
        }
        // Write what we can.
        if !out.is_empty() {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::write(master, out.as_ptr().cast(), out.len()) };
            if n > 0 {
                out.drain(..n as usize);
            }
            if out.len() > MAX_PENDING_OUT {
                let excess = out.len() - MAX_PENDING_OUT;
                out.drain(..excess);
            }
        }
        // Sleep until input, room for output, a deadline or the rate check.
        let mut wake = next_rate_poll;
        if let Some(t) = console.next_deadline() {
            wake = wake.min(t);
        }
        if let Some(t) = settle_at {
            wake = wake.min(t);
        }
        let timeout = wake.saturating_sub(now_ms()).min(1_000) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: master,
            events: libc::POLLIN | if out.is_empty() { 0 } else { libc::POLLOUT },
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if rc <= 0 || pfd.revents & libc::POLLIN == 0 {
            continue;
        }
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let packet = &buf[..n as usize];
        let now = now_ms();
        match packet.split_first() {
            Some((0, data)) => {
                if verbose {
                    observer.event(Event::note(format!("sim serve: {} bytes in", data.len())));
                }
                if settle_at.is_some() {
                    held.extend_from_slice(data);
                } else {
                    target.step(&mut |d| console.feed(d, data, now));
                }
            }
            Some((status, _)) if status & TIOCPKT_IOCTL != 0 => {
                settle_at = Some(now + SETTLE_MS);
            }
            _ => {}
        }
    }
    // Stopping: what a client wrote just before (a last `x`) still counts.
    let now = now_ms();
    if settle_at.is_some() {
        if let Some(rate) = line_rate(slave) {
            target.step(&mut |d| console.set_baud(d, rate, now));
        }
    }
    target.step(&mut |d| console.feed(d, &held, now));
    loop {
        // SAFETY: valid fd and buffer; the master is non-blocking.
        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        match buf[..n as usize].split_first() {
            Some((0, data)) => target.step(&mut |d| console.feed(d, data, now)),
            Some((status, _)) if status & TIOCPKT_IOCTL != 0 => {
                if let Some(rate) = line_rate(slave) {
                    target.step(&mut |d| console.set_baud(d, rate, now));
                }
            }
            _ => {}
        }
    }
    console.take_events();
    Ok(())
}

/// Puts `handle` in listening mode and connects its console to a terminal: bytes read from
/// `input` (a file descriptor, polled) go to the console, what it prints goes to `output`,
/// until end of input (once a pending restart is done) or `cancel`. The device is saved after
/// every change.
pub fn serve_terminal(
    handle: &mut SimHandle,
    input: RawFd,
    output: &mut dyn Write,
    cancel: &Cancel,
) -> Result<(), Error> {
    let mut console = Console::new(console_config());
    console.set_baud(&mut handle.device, LISTENING_BAUD, 0);
    if handle.device.state.mode != Mode::Listening {
        return Err(Error::WrongMode {
            device: format!("sim:{}", handle.name()),
            mode: handle.device.state.mode.name().into(),
            what: "enter listening mode".into(),
            help: format!(
                "reset it first: `modflash sim reset {}` (listening mode needs running system firmware)",
                handle.name()
            ),
        });
    }
    console.take_events();
    handle.save()?;
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut buf = [0u8; 4096];
    let mut eof = false;
    while !cancel.is_cancelled() {
        let now = now_ms();
        if console.next_deadline().is_some_and(|t| now >= t) {
            console.handle_timeout(&mut handle.device, now);
        }
        let printed = console.drain_output();
        if !printed.is_empty() {
            output
                .write_all(&printed)
                .and_then(|()| output.flush())
                .map_err(os_err("cannot write to standard output"))?;
        }
        let events = console.take_events();
        save_on(handle, &events)?;
        if eof && !console.restart_pending() {
            break;
        }
        let timeout = console
            .next_deadline()
            .map_or(1_000, |t| t.saturating_sub(now_ms()).min(1_000))
            as libc::c_int;
        if eof {
            std::thread::sleep(Duration::from_millis(timeout.max(1) as u64));
            continue;
        }
        let mut pfd = libc::pollfd {
            fd: input,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if rc <= 0 {
            continue;
        }
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            eof = true;
            continue;
        }
        console.feed(&mut handle.device, &buf[..n as usize], now_ms());
    }
    handle.save()?;
    Ok(())
}
