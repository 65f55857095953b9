//! Ctrl-C, SIGTERM and SIGHUP as a cancellation: while a command holds a device, the first
//! signal only sets the command's [`Cancel`] token, so the library can stop at a safe point
//! (between operations, or by cancelling a YMODEM transfer) and save a virtual device instead
//! of the process dying mid-write. A second signal ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use modflash::progress::Cancel;

/// The flag the handler sets: the token's shared flag, registered once.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some(flag) = FLAG.get() {
        if flag.swap(true, Ordering::SeqCst) {
            // Asked twice: stop now, the default way.
            // SAFETY: signal and raise are async-signal-safe.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
}

/// From now on Ctrl-C (and SIGTERM, SIGHUP) cancels the returned token instead of ending the
/// process. Blocking calls return EINTR (no SA_RESTART).
pub fn catch() -> Cancel {
    let cancel = Cancel::new();
    let flag = FLAG.get_or_init(|| cancel.flag());
    // A second call in one process shares the first token's flag.
    let cancel = if Arc::ptr_eq(flag, &cancel.flag()) {
        cancel
    } else {
        Cancel::from_flag(Arc::clone(flag))
    };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic is a valid,
        // async-signal-safe handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    cancel
}

/// Back to the default: Ctrl-C ends the process at once.
pub fn release() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}
