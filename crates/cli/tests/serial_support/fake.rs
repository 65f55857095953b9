//! A scripted fake device on a pty: it plays the device's side of the listening-mode console
//! and of the YMODEM receiver byte by byte (`s`, `f`, blocks, EOT, the end of the batch) and
//! misbehaves as its [`Script`] says: log lines instead of answers, a death mid-transfer,
//! NAK after NAK, any text (or none) after the last ACK.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SOH: u8 = 0x01;
const STX: u8 = 0x02;
const EOT: u8 = 0x04;
const ACK: u8 = 0x06;
const NAK: u8 = 0x15;
const CAN: u8 = 0x18;

/// The device's prompt after `f`.
pub const PROMPT: &str = "Waiting for the binary file to be sent ... (press 'a' to abort)";

/// How the fake answers data blocks.
#[derive(Clone, Debug)]
pub enum Blocks {
    /// ACK every block at once.
    Ack,
    /// ACK this many data blocks, then hear and say nothing ever again.
    DieAfter(u32),
    /// Answer each data block `naks` times with NAK before the ACK, each answer `delay`
    /// after the block.
    NakFirst { naks: u32, delay: Duration },
}

/// What follows the end-of-batch block.
#[derive(Clone, Debug)]
pub enum End {
    /// The device's own success: ACK, "Downloaded file successfully!", name, size, and
    /// "Restarting system to apply firmware update..." a moment later.
    Success,
    /// ACK, then these bytes (possibly none).
    AckThen(Vec<u8>),
}

/// What the fake does.
#[derive(Clone, Debug)]
pub struct Script {
    /// The answer to `s` (the JSON, without the line end); `None`: `s` is never answered.
    pub describe: Option<String>,
    /// A log line printed at this period, whatever else happens (until the fake dies).
    pub log_every: Option<Duration>,
    /// Data blocks.
    pub blocks: Blocks,
    /// The end of the batch.
    pub end: End,
}

impl Script {
    /// A well-behaved device listing `describe`.
    pub fn device(describe: &str) -> Script {
        Script {
            describe: Some(describe.to_string()),
            log_every: None,
            blocks: Blocks::Ack,
            end: End::Success,
        }
    }
}

/// A fake device serving a pty until dropped.
pub struct FakeDevice {
    /// The pty's slave: the "serial port".
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDevice {
    /// Opens a pty and starts playing `script` on it.
    pub fn start(script: Script) -> FakeDevice {
        let (master, slave, path) = open_pty();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // The slave stays open here, so the master does not fail when clients close.
            let _slave = slave;
            Player::new(master, script).run(&flag);
        });
        FakeDevice {
            path,
            stop,
            thread: Some(thread),
        }
    }

    /// The `--device` argument.
    pub fn device(&self) -> String {
        format!("serial:{}", self.path.display())
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_pty() -> (OwnedFd, OwnedFd, PathBuf) {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just returned by openpty.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: the buffer is valid for its length; ttyname_r NUL-terminates on success.
    let rc = unsafe { libc::ttyname_r(slave.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ttyname_r");
    // SAFETY: NUL-terminated by ttyname_r.
    let path = PathBuf::from(
        unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    );
    // SAFETY: termios is plain data; raw mode so nothing is echoed or translated.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    (master, slave, path)
}

/// Where the fake is in the conversation.
enum State {
    Console,
    /// Receiving: the frame read so far, and whether an EOT was ACKed (the next block 0
    /// ends the batch).
    Receiving {
        frame: Vec<u8>,
        after_eot: bool,
    },
    /// Hears and says nothing.
    Dead,
}

struct Player {
    master: OwnedFd,
    script: Script,
    state: State,
    data_blocks: u32,
    /// NAKs sent for the current data block (by sequence number).
    naks: (u8, u32),
    size: String,
    started: Instant,
    next_log: Option<Instant>,
}

impl Player {
    fn new(master: OwnedFd, script: Script) -> Player {
        let now = Instant::now();
        Player {
            next_log: script.log_every.map(|p| now + p),
            master,
            script,
            state: State::Console,
            data_blocks: 0,
            naks: (0, 0),
            size: String::new(),
            started: now,
        }
    }

    fn fd(&self) -> RawFd {
        self.master.as_raw_fd()
    }

    fn write(&self, bytes: &[u8]) {
        if matches!(self.state, State::Dead) {
            return;
        }
        let mut rest = bytes;
        let until = Instant::now() + Duration::from_secs(2);
        while !rest.is_empty() && Instant::now() < until {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::write(self.fd(), rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                rest = &rest[n as usize..];
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            if let Some(at) = self.next_log {
                if Instant::now() >= at {
                    let line = format!(
                        "[log] uptime {} s, all good\r\n",
                        self.started.elapsed().as_secs()
                    );
                    self.write(line.as_bytes());
                    self.next_log = self.script.log_every.map(|p| at + p);
                }
            }
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, 20) };
            if rc <= 0 || pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for &b in &buf[..n as usize] {
                self.byte(b);
            }
        }
    }

    fn byte(&mut self, b: u8) {
        match &mut self.state {
            State::Dead => {}
            State::Console => match b {
                b's' => {
                    if let Some(json) = self.script.describe.clone() {
                        self.write(format!("{json}\r\n").as_bytes());
                    }
                }
                b'f' => {
                    self.write(format!("{PROMPT}\r\n").as_bytes());
                    self.state = State::Receiving {
                        frame: Vec::new(),
                        after_eot: false,
                    };
                }
                _ => {}
            },
            State::Receiving { frame, after_eot } => {
                if frame.is_empty() {
                    match b {
                        SOH | STX => frame.push(b),
                        EOT => {
                            *after_eot = true;
                            self.write(&[ACK]);
                        }
                        CAN => self.state = State::Console,
                        _ => {}
                    }
                    return;
                }
                frame.push(b);
                let len = if frame[0] == STX { 1024 } else { 128 };
                if frame.len() < 3 + len + 2 {
                    return;
                }
                let frame = std::mem::take(frame);
                let end_of_batch = *after_eot;
                self.frame(&frame, len, end_of_batch);
            }
        }
    }

    fn frame(&mut self, frame: &[u8], len: usize, end_of_batch: bool) {
        let seq = frame[1];
        let payload = &frame[3..3 + len];
        if seq == 0 && end_of_batch {
            self.state = State::Console;
            match self.script.end.clone() {
                End::Success => {
                    self.write(&[ACK]);
                    let text = format!(
                        "\r\nDownloaded file successfully!\r\nName: binary\r\nSize: {} bytes\r\n",
                        self.size
                    );
                    self.write(text.as_bytes());
                    std::thread::sleep(Duration::from_millis(100));
                    self.write(b"Restarting system to apply firmware update...\r\n");
                }
                End::AckThen(text) => {
                    self.write(&[ACK]);
                    self.write(&text);
                }
            }
            return;
        }
        if seq == 0 {
            // The header: `name\0size `.
            let mut fields = payload.split(|&c| c == 0);
            fields.next();
            self.size = fields
                .next()
                .map(|s| {
                    String::from_utf8_lossy(s)
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default();
            self.write(&[ACK, b'C']);
            return;
        }
        match self.script.blocks.clone() {
            Blocks::Ack => {
                self.data_blocks += 1;
                self.write(&[ACK]);
            }
            Blocks::DieAfter(n) => {
                if self.data_blocks >= n {
                    self.state = State::Dead;
                    self.next_log = None;
                    return;
                }
                self.data_blocks += 1;
                self.write(&[ACK]);
            }
            Blocks::NakFirst { naks, delay } => {
                std::thread::sleep(delay);
                let sent = if self.naks.0 == seq { self.naks.1 } else { 0 };
                if sent < naks {
                    self.naks = (seq, sent + 1);
                    self.write(&[NAK]);
                } else {
                    self.naks = (seq, 0);
                    self.data_blocks += 1;
                    self.write(&[ACK]);
                }
            }
        }
    }
}
