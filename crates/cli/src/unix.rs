//! Everything the CLI does only on Unix, in one place: the default SIGPIPE, the terminal in
//! character mode for `sim serial`, and "am I root" for `udev --install`. The commands built
//! on Unix-only transports (`sim serve`, `sim serial`, `sim attach`) are compiled here only.

use std::io::{self, IsTerminal};

/// Like other Unix tools, stop quietly when the reader of our output goes away
/// (`modflash sim show x | head`) instead of panicking on a broken pipe.
pub fn default_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// True when the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Standard input in character mode (no line editing, no echo; Ctrl-C still works) while
/// alive.
pub struct CharMode {
    saved: Option<libc::termios>,
}

impl CharMode {
    /// Standard input in character mode, when it is a terminal.
    pub fn enter() -> Self {
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
