//! Shared helpers for the serial tests: `modflash sim serve` as a child process of a private
//! home, and a raw tty client that sets line rates like a host opening a USB serial port.
#![allow(dead_code)]

pub mod fake;

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use modflash_testkit::process::wait_within;
use modflash_testkit::{text, Home};

/// YMODEM timeout of the served console (the lrzsz tests need short ones: the Device OS
/// receiver sends no `C` at start or after EOT, only on timeouts).
pub const FAST_TIMEOUT_MS: &str = "50";

/// `modflash sim serve NAME --serial-link PATH` running in the background.
pub struct Serve {
    child: Option<Child>,
    pub link: PathBuf,
}

impl Serve {
    pub fn start(home: &Home, name: &str) -> Serve {
        let link = home.path().join(format!("{name}.tty"));
        let log = fs::File::create(home.path().join(format!("{name}.serve.log"))).unwrap();
        let child = home
            .cmd()
            .args(["sim", "serve", name, "--serial-link"])
            .arg(&link)
            .env("MODFLASH_SIM_YMODEM_TIMEOUT_MS", FAST_TIMEOUT_MS)
            .env("MODFLASH_SIM_TRACE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child: Some(child),
            link,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while fs::symlink_metadata(&serve.link).is_err() {
            if let Some(status) = serve.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sim serve exited early: {status}");
            }
            assert!(Instant::now() < until, "sim serve did not create its link");
            std::thread::sleep(Duration::from_millis(10));
        }
        serve
    }

    pub fn device(&self) -> String {
        format!("serial:{}", self.link.display())
    }

    /// SIGTERM, then wait: the device is saved and the link removed.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_within(&mut child, Duration::from_secs(5))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

/// A client of a tty opened without exclusive mode or flushes: sets the line rate with
/// termios2 (any rate, like a USB CDC host), writes keys, reads answers.
pub struct Tty {
    pub fd: OwnedFd,
}

impl Tty {
    pub fn open(path: &Path, baud: u32) -> Tty {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; the returned fd is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
        assert!(
            fd >= 0,
            "open {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        // SAFETY: just opened.
        let tty = Tty {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        // SAFETY: termios is plain data; raw mode applied at once (no flush).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd, &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(fd, libc::TCSANOW, &t), 0);
        }
        tty.set_baud(baud);
        tty
    }

    pub fn set_baud(&self, baud: u32) {
        // SAFETY: TCGETS2/TCSETS2 on a valid tty fd with a termios2.
        unsafe {
            let mut t: libc::termios2 = std::mem::zeroed();
            assert_eq!(libc::ioctl(self.fd.as_raw_fd(), libc::TCGETS2, &mut t), 0);
            t.c_cflag &= !libc::CBAUD;
            t.c_cflag |= libc::BOTHER;
            t.c_ispeed = baud;
            t.c_ospeed = baud;
            assert_eq!(libc::ioctl(self.fd.as_raw_fd(), libc::TCSETS2, &t), 0);
        }
    }

    pub fn write(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            assert!(n > 0, "write: {}", io::Error::last_os_error());
            rest = &rest[n as usize..];
        }
    }

    /// Reads until `done` says so or `limit` passes; returns what arrived.
    pub fn read_until(&self, limit: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let end = Instant::now() + limit;
        let mut acc = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&acc) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            acc.extend_from_slice(&buf[..n as usize]);
        }
        acc
    }

    /// Sends a key and returns the answer up to a line containing `until`.
    pub fn ask(&self, key: &[u8], until: &str) -> String {
        self.write(key);
        let out = self.read_until(Duration::from_secs(5), |a| {
            let t = String::from_utf8_lossy(a);
            t.contains(until) && t.ends_with('\n')
        });
        text(&out)
    }

    /// Reads for `d` and returns whatever came (for "nothing answers" checks).
    pub fn drain(&self, d: Duration) -> Vec<u8> {
        self.read_until(d, |_| false)
    }
}
