//! Ctrl-C, SIGTERM and SIGHUP (Ctrl-C and Ctrl-Break on Windows) as a cancellation: while a
//! command holds a device, the first signal only sets the command's [`Cancel`] token, so the
//! library can stop at a safe point (between operations, or by cancelling a YMODEM transfer)
//! and save a virtual device instead of the process dying mid-write. A second signal, or one
//! that comes while no command holds a device, ends the process at once. The handler is the
//! `ctrlc` crate's (its own thread), installed the first time a command asks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use modflash::progress::Cancel;

/// The exit code of a process ended by Ctrl-C, as shells report it (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// The flag the handler sets: the token's shared flag, registered once.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// True while a command wants the first signal as a cancellation.
static ARMED: AtomicBool = AtomicBool::new(false);

fn on_signal() {
    let cancelled_before = FLAG
        .get()
        .is_none_or(|flag| flag.swap(true, Ordering::SeqCst));
    if !ARMED.load(Ordering::SeqCst) || cancelled_before {
        // Asked twice, or nothing to stop safely: stop now.
        std::process::exit(EXIT_INTERRUPTED);
    }
}

/// From now on Ctrl-C (and SIGTERM, SIGHUP) cancels the returned token instead of ending the
/// process.
pub fn catch() -> Cancel {
    let cancel = Cancel::new();
    let mut installed = false;
    let flag = FLAG.get_or_init(|| {
        installed = true;
        cancel.flag()
    });
    if installed {
        // Where no handler can be installed, signals keep their default: they end the
        // process, and the token is never set.
        let _ = ctrlc::set_handler(on_signal);
    }
    ARMED.store(true, Ordering::SeqCst);
    // A second call in one process shares the first token's flag.
    if Arc::ptr_eq(flag, &cancel.flag()) {
        cancel
    } else {
        Cancel::from_flag(Arc::clone(flag))
    }
}

/// Back to the default: Ctrl-C ends the process at once.
pub fn release() {
    ARMED.store(false, Ordering::SeqCst);
}
