//! What differs between operating systems, in one place: the Unix calls (through `libc`) and
//! what stands in for them elsewhere. The Unix-only transports (`transport::pty`,
//! `transport::attach`) are whole modules behind `cfg(unix)`.

use std::fs::{FileType, OpenOptions};

/// Options for opening a file the user names: on Unix non-blocking, so that a file replaced
/// by a FIFO since it was looked at cannot hang the open, and never as the controlling
/// terminal.
pub fn open_input(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
    }
    #[cfg(not(unix))]
    {
        options
    }
}

/// What a file that is neither a regular file nor a directory is, in words ("a FIFO").
pub fn special_file_kind(kind: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        } else if kind.is_char_device() {
            return "a character device";
        } else if kind.is_block_device() {
            return "a block device";
        } else if kind.is_socket() {
            return "a socket";
        }
    }
    #[cfg(not(unix))]
    let _ = kind;
    "a special file"
}

/// True when process `pid` exists (also when it belongs to another user). Where that cannot
/// be asked (outside Unix) every process is taken to exist, so that nothing another process
/// may still write is removed.
pub fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
