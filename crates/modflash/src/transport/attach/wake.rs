//! A usbfs node whose `poll()` tells the truth: libusb waits for POLLOUT on a usbfs file
//! descriptor and then reaps URBs until EAGAIN. umockdev makes USB device nodes regular files,
//! which are always ready, so an idle open handle spun a core on REAPURBNDELAY. Here the node
//! is a FIFO this process keeps full: POLLOUT (room in the pipe) appears exactly while a URB
//! waits to be reaped (or the node went away, so the client reaps ENODEV and lets go).
//!
//! A pipe reports POLLOUT while it has a free buffer slot; it is filled in page-sized writes
//! until EAGAIN, and one page read frees one slot.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const PAGE: usize = 4096;

/// The FIFO behind one device node, held open (read and write) by this process.
pub(super) struct Wake {
    fifo: OwnedFd,
    ready: bool,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

impl Wake {
    /// Replaces the regular file umockdev made at `node` with a full FIFO (atomically: made
    /// beside it, then renamed over it), not ready.
    pub(super) fn install(node: &Path) -> io::Result<Wake> {
        let name = node
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let tmp = node.with_file_name(format!(".{}.fifo", name.to_string_lossy()));
        let _ = std::fs::remove_file(&tmp);
        let c_tmp = c_path(&tmp)?;
        // SAFETY: a NUL-terminated path; mkfifo touches no memory of ours.
        if unsafe { libc::mkfifo(c_tmp.as_ptr(), 0o666) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; O_RDWR on a FIFO never blocks, and the fd is owned below.
        let fd = unsafe {
            libc::open(
                c_tmp.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // SAFETY: a descriptor just returned by open, owned by nobody else.
        let fifo = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut wake = Wake { fifo, ready: true };
        wake.set(false);
        if let Err(e) = std::fs::rename(&tmp, node) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(wake)
    }

    /// Makes the node poll ready (POLLOUT) or not.
    pub(super) fn set(&mut self, ready: bool) {
        if ready == self.ready {
            return;
        }
        let fd = self.fifo.as_raw_fd();
        let mut page = [0u8; PAGE];
        if ready {
            // SAFETY: a valid fd and buffer; the fd is non-blocking.
            unsafe { libc::read(fd, page.as_mut_ptr().cast(), PAGE) };
        } else {
            // Fill until the pipe has no free slot (a bounded number of pages).
            for _ in 0..1024 {
                // SAFETY: as above.
                let n = unsafe { libc::write(fd, page.as_ptr().cast(), PAGE) };
                if n <= 0 {
                    break;
                }
            }
        }
        self.ready = ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pollout(path: &Path) -> bool {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 0) };
        pfd.revents & libc::POLLOUT != 0
    }

    #[test]
    fn the_node_is_ready_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("002");
        std::fs::write(&node, b"").unwrap();
        let mut wake = Wake::install(&node).unwrap();
        assert!(!pollout(&node), "idle: a client's poll must block");
        wake.set(true);
        assert!(pollout(&node));
        wake.set(true);
        wake.set(false);
        assert!(!pollout(&node));
        wake.set(true);
        assert!(pollout(&node));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
