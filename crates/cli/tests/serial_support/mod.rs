//! Shared helpers for the serial tests: a modflash home, `modflash sim serve` as a child
//! process, and a raw tty client that sets line rates like a host opening a USB serial port.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// YMODEM timeout of the served console (the lrzsz tests need short ones: the Device OS
/// receiver sends no `C` at start or after EOT, only on timeouts).
pub const FAST_TIMEOUT_MS: &str = "50";

/// A temporary modflash home.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modflash"));
        c.env("MODFLASH_HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("MODFLASH_SIM_TRACE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn create(&self, name: &str, release: &str) {
        let out = self.run(&[
            "sim",
            "create",
            name,
            "--platform",
            "photon",
            "--device-os",
            release,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    pub fn sim_json(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["sim", "show", name, "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn modules_json(&self, device: &str) -> serde_json::Value {
        let out = self.run(&["modules", "--device", device, "--json"]);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "{}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/real")
        .join(name)
}

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
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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

/// Finds a tool on PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The interop tools, or `None` after a loud SKIPPED notice (a failure when
/// `MODFLASH_REQUIRE_INTEROP=1`).
pub fn interop_tools(names: &[&str]) -> Option<Vec<PathBuf>> {
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_tool(n)).collect();
    if found.iter().all(Option::is_some) {
        return Some(found.into_iter().flatten().collect());
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    if std::env::var("MODFLASH_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!(
            "{} not found in PATH but MODFLASH_REQUIRE_INTEROP=1 (install lrzsz and socat)",
            missing.join(", ")
        );
    }
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!(
            "\n************************************************************\n\
             SKIPPED: {} not installed (not in PATH);\n\
             \x20        install lrzsz and socat, or set MODFLASH_REQUIRE_INTEROP=1 to fail\n\
             ************************************************************\n",
            missing.join(", ")
        )
        .as_bytes(),
    );
    None
}

/// Waits for a child with a limit, killing it when it overstays.
pub fn wait_child(child: &mut Child, limit: Duration) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
