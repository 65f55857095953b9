//! A program on a pseudo-terminal, as a person at a terminal runs it: its standard input,
//! output and error are the terminal, what it shows is read from the other end, keys are
//! typed into it. For prompts that only appear on a terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{text, wait_within};

/// A running program and its terminal.
pub struct Terminal {
    keyboard: File,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

/// A new pseudo-terminal of 120 × 40 characters: (master, slave).
fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just returned by openpty and belong to nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

impl Terminal {
    /// Starts `cmd` with the terminal as its standard input, output and error.
    pub fn spawn(mut cmd: Command) -> Terminal {
        let (master, slave) = open_pty();
        let io = |fd: &OwnedFd| {
            Stdio::from(
                fd.try_clone()
                    .unwrap_or_else(|e| panic!("duplicate the terminal: {e}")),
            )
        };
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        // Only the child holds the terminal now: reading ends when it exits.
        drop(slave);
        let keyboard = File::from(
            master
                .try_clone()
                .unwrap_or_else(|e| panic!("duplicate the terminal: {e}")),
        );
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&screen);
        let mut display = File::from(master);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = display.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            keyboard,
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// Everything the program has shown so far (with its escape sequences).
    pub fn screen(&self) -> String {
        text(&self.screen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until the screen shows `needle` (compared with runs of whitespace as one space,
    /// escape sequences left in); the screen so far. Fails the test after `limit`.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let wanted = squeeze(needle);
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if squeeze(&screen).contains(&wanted) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear within {limit:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &[u8]) {
        self.keyboard
            .write_all(keys)
            .and_then(|()| self.keyboard.flush())
            .unwrap_or_else(|e| panic!("type into the terminal: {e}"));
    }

    /// Waits for the program to end (killing it after `limit`): its exit status and the whole
    /// screen.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let status = wait_within(&mut self.child, limit);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.screen())
    }
}
