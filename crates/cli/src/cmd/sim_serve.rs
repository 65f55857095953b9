//! `modflash sim serve NAME --serial-link PATH`: a virtual device's USB serial port, as a pty
//! whose slave is symlinked at PATH, driven by the device's listening-mode console; and
//! `modflash sim serial NAME`: the same console on standard input and output.
//!
//! The line rate a client sets on the pty is the device's trigger, like the USB CDC line
//! coding on a real device: 28800 baud enters listening mode, 14400 baud resets into DFU
//! mode. The pty master learns about every termios change of the slave in packet mode
//! (TIOCPKT with EXTPROC set on the slave: a TIOCPKT_IOCTL status), also when a client sets
//! the same rate again on opening the port; a periodic check of the rate backs that up. A
//! change is acted on once the settings have been stable for a few milliseconds (opening a
//! port sets them in several steps), and input that arrives meanwhile waits, so a key written
//! right after opening at 28800 reaches the console in listening mode.

use std::ffi::CStr;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modflash::sim::{SimHandle, SimStore};
use modflash_device::console::{Console, ConsoleConfig, ConsoleEvent, LISTENING_BAUD};
use modflash_device::Mode;

use crate::source::sim_error;
use crate::ui::{CliError, CmdResult, EXIT_OK};

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

/// The console timing: the device's, unless `MODFLASH_SIM_YMODEM_TIMEOUT_MS` shortens the
/// YMODEM timeout (tests with lrzsz use ~50 ms; the pause before the restart and the quiet
/// time after a failed receive shrink with it).
pub fn console_config() -> ConsoleConfig {
    let base = ConsoleConfig::device();
    match std::env::var("MODFLASH_SIM_YMODEM_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
    {
        Some(ms) => ConsoleConfig {
            ymodem_timeout_ms: ms,
            restart_delay_ms: base.restart_delay_ms.min(ms),
            quiet_after_failure_ms: base.quiet_after_failure_ms.min(ms),
        },
        None => base,
    }
}

fn os_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CliError {
    let what = what.into();
    move |e| CliError::usage(format!("{what}: {e}"))
}

fn last_os_error(what: &str) -> CliError {
    CliError::usage(format!("{what}: {}", io::Error::last_os_error()))
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

fn open_pty() -> Result<Pty, CliError> {
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
        return Err(CliError::usage(format!(
            "cannot name the pseudo-terminal: {}",
            io::Error::from_raw_os_error(rc)
        )));
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

/// Saves the device after anything that changed it.
fn save_on(handle: &mut SimHandle, events: &[ConsoleEvent]) -> Result<(), CliError> {
    let changed = events.iter().any(|e| match e {
        ConsoleEvent::Command(c) => matches!(c, 'x' | 'w'),
        _ => true,
    });
    if changed {
        handle.save().map_err(sim_error)?;
    }
    Ok(())
}

fn describe_events(events: &[ConsoleEvent]) {
    for e in events {
        let line = match e {
            ConsoleEvent::ModeChanged(m) => format!("mode: {}", m.name()),
            ConsoleEvent::Transfer(t) => format!("ymodem: {t:?}"),
            ConsoleEvent::Restarted => "restarted to apply the update".to_string(),
            ConsoleEvent::Command(c) => format!("command `{c}`"),
        };
        crate::source::note(&format!("sim serve: {line}"));
    }
}

/// Runs `sim serve`.
pub fn serve(store: &SimStore, name: &str, link: &Path) -> CmdResult {
    let mut handle = store.open(name).map_err(sim_error)?;
    let pty = open_pty()?;
    // The link: replace a stale symlink, never a real file.
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(link).map_err(os_err(format!(
                "cannot replace the old link {}",
                link.display()
            )))?;
        }
        Ok(_) => {
            return Err(CliError::usage(format!(
                "{} exists and is not a symbolic link",
                link.display()
            ))
            .with_help("pick another --serial-link path"))
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&pty.slave_name, link).map_err(os_err(format!(
        "cannot create the link {} → {}",
        link.display(),
        pty.slave_name.display()
    )))?;
    crate::source::catch_interrupts();
    let cfg = console_config();
    crate::source::say(&format!(
        "serving sim:{name} ({}, {}) on {} → {}; open it at 28800 baud for listening mode, 14400 for DFU mode; Ctrl-C stops",
        handle.device.platform().display_name,
        handle.device.state.mode.name(),
        link.display(),
        pty.slave_name.display()
    ));
    let result = serve_loop(&mut handle, &pty, cfg);
    // Remove the link if it is still ours.
    if std::fs::read_link(link).is_ok_and(|t| t == pty.slave_name) {
        let _ = std::fs::remove_file(link);
    }
    handle.save().map_err(sim_error)?;
    result?;
    crate::source::note(&format!("sim serve: stopped; sim:{name} saved"));
    Ok(EXIT_OK)
}

fn serve_loop(handle: &mut SimHandle, pty: &Pty, cfg: ConsoleConfig) -> Result<(), CliError> {
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
    while !crate::source::interrupted() {
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
                    crate::source::note(&format!("sim serve: line rate {rate}"));
                }
                console.set_baud(&mut handle.device, rate, now);
            }
            if !held.is_empty() {
                console.feed(&mut handle.device, &held, now);
                held.clear();
            }
        }
        if console.next_deadline().is_some_and(|t| now >= t) {
            console.handle_timeout(&mut handle.device, now);
        }
        out.extend(console.drain_output());
        let events = console.take_events();
        if !events.is_empty() {
            if verbose {
                describe_events(&events);
            }
            save_on(handle, &events)?;
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
                    crate::source::note(&format!("sim serve: {} bytes in", data.len()));
                }
                if settle_at.is_some() {
                    held.extend_from_slice(data);
                } else {
                    console.feed(&mut handle.device, data, now);
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
            console.set_baud(&mut handle.device, rate, now);
        }
    }
    console.feed(&mut handle.device, &held, now);
    loop {
        // SAFETY: valid fd and buffer; the master is non-blocking.
        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        match buf[..n as usize].split_first() {
            Some((0, data)) => console.feed(&mut handle.device, data, now),
            Some((status, _)) if status & TIOCPKT_IOCTL != 0 => {
                if let Some(rate) = line_rate(slave) {
                    console.set_baud(&mut handle.device, rate, now);
                }
            }
            _ => {}
        }
    }
    console.take_events();
    Ok(())
}

/// Standard input in character mode (no line editing, no echo; Ctrl-C still works) while
/// alive.
struct CharMode {
    saved: Option<libc::termios>,
}

impl CharMode {
    fn enter() -> Self {
        let fd = libc::STDIN_FILENO;
        if !io::stdin().is_terminal() {
            return CharMode { saved: None };
        }
        // SAFETY: termios is plain data filled by tcgetattr for a valid fd.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return CharMode { saved: None };
            }
            let saved = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            CharMode { saved: Some(saved) }
        }
    }
}

impl Drop for CharMode {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring settings read from the same fd.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            }
        }
    }
}

/// Runs `sim serial`: the device is put in listening mode and its console reads standard
/// input and writes standard output, until end of input or Ctrl-C.
pub fn serial(store: &SimStore, name: &str) -> CmdResult {
    let mut handle = store.open(name).map_err(sim_error)?;
    let mut console = Console::new(console_config());
    console.set_baud(&mut handle.device, LISTENING_BAUD, 0);
    if handle.device.state.mode != Mode::Listening {
        return Err(CliError::usage(format!(
            "sim:{name} is in {} mode and cannot enter listening mode",
            handle.device.state.mode.name()
        ))
        .with_help(format!(
            "reset it first: `modflash sim reset {name}` (listening mode needs running system firmware)"
        )));
    }
    console.take_events();
    handle.save().map_err(sim_error)?;
    crate::source::catch_interrupts();
    let _mode = CharMode::enter();
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut stdout = io::stdout();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    while !crate::source::interrupted() {
        let now = now_ms();
        if console.next_deadline().is_some_and(|t| now >= t) {
            console.handle_timeout(&mut handle.device, now);
        }
        let output = console.drain_output();
        if !output.is_empty() {
            stdout
                .write_all(&output)
                .and_then(|()| stdout.flush())
                .map_err(os_err("cannot write to standard output"))?;
        }
        let events = console.take_events();
        save_on(&mut handle, &events)?;
        let busy = console.restart_pending();
        if eof && !busy {
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
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if rc <= 0 {
            continue;
        }
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            eof = true;
            continue;
        }
        console.feed(&mut handle.device, &buf[..n as usize], now_ms());
    }
    handle.save().map_err(sim_error)?;
    Ok(EXIT_OK)
}
