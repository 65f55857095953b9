//! Progress as operation events (started / progress / finished / failed for each erase, write,
//! verify, read, mode change and reset), notes for the user, and the cancellation token the
//! executor checks between tasks and writes (and the YMODEM pump inside a transfer).
//!
//! The library only emits [`Event`]s to an [`Observer`]; rendering them (a progress bar, plain
//! lines, JSON lines) is the caller's business. A closure `FnMut(Event)` is an observer, and
//! [`Quiet`] ignores everything.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the device is being asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Switching the device into the mode a transport needs (DFU, listening mode).
    ModeChange,
    /// Erasing flash pages.
    Erase,
    /// Sending data to be written (DFU download, YMODEM transfer).
    Write,
    /// Checking what was written: read-back, or the device's own validation.
    Verify,
    /// Reading memory or the installed modules.
    Read,
    /// Resetting the device into its firmware and waiting for it to come back.
    Reset,
}

impl Operation {
    /// Stable lower-case name (the `operation` field of JSON events).
    pub fn name(self) -> &'static str {
        match self {
            Self::ModeChange => "mode_change",
            Self::Erase => "erase",
            Self::Write => "write",
            Self::Verify => "verify",
            Self::Read => "read",
            Self::Reset => "reset",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ModeChange => "changing mode",
            Self::Erase => "erasing",
            Self::Write => "writing",
            Self::Verify => "verifying",
            Self::Read => "reading",
            Self::Reset => "resetting",
        })
    }
}

/// How a step's result was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Every written byte was read back from the device and compared.
    ReadBack,
    /// After the write (and the device's restart) the device reports, for the module in the
    /// slot, the SHA-256 of the file that was written.
    Hash,
    /// The device validated the module itself (CRC, platform, dependencies) and accepted it.
    /// That is not proof it is installed: once the device has restarted, a reported SHA-256
    /// (`Hash`) proves it; without one it stays unproven.
    DeviceAccepted,
    /// Over DFU, the module's header and its suffix with the CRC-32 were read back and match
    /// the file; the bytes between them were not read. Not proof by itself: the device checks
    /// that CRC when its firmware runs (`DeviceCrc`).
    HeaderAndSuffix,
    /// Over DFU, the module's header and its suffix with the CRC-32 were read back and match
    /// the file, and afterwards the device, running its firmware, reported the module in its
    /// slot at the version written with its integrity checked and passed: it computed the
    /// CRC-32 over the bytes written and it matched the file's.
    DeviceCrc,
    /// Nothing was checked (the user asked not to verify).
    None,
}

impl Evidence {
    /// Stable name (the `evidence` field of JSON events and reports).
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadBack => "read_back",
            Self::Hash => "sha256",
            Self::DeviceAccepted => "device_accepted",
            Self::HeaderAndSuffix => "header_and_suffix",
            Self::DeviceCrc => "header_suffix_and_device_crc",
            Self::None => "none",
        }
    }

    /// The evidence proves the module written is the one installed.
    pub fn proves(self) -> bool {
        matches!(self, Self::ReadBack | Self::Hash | Self::DeviceCrc)
    }
}

/// How much a note matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Something the user should look at.
    Warning,
}

/// Something the library reports while it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Step `step` (1-based) of `steps` starts.
    StepStarted {
        /// Step number.
        step: usize,
        /// Steps in the plan.
        steps: usize,
        /// What the step does ("writing system part 1 version 1502 (photon-system-part1.bin)").
        label: String,
        /// Bytes the step sends.
        bytes: u64,
    },
    /// An operation starts. `total` is its size in bytes when it has one.
    Started {
        /// Which operation.
        operation: Operation,
        /// What it acts on, in words.
        what: String,
        /// Bytes it will move, when known.
        total: Option<u64>,
    },
    /// Bytes of the running operation done so far.
    Progress {
        /// Which operation.
        operation: Operation,
        /// Bytes done.
        done: u64,
        /// Bytes in all (0 when unknown).
        total: u64,
    },
    /// The operation finished successfully.
    Finished {
        /// Which operation.
        operation: Operation,
    },
    /// The operation failed (the error follows as the call's result).
    Failed {
        /// Which operation.
        operation: Operation,
        /// Why, in words.
        reason: String,
    },
    /// The step finished, with what proves it.
    StepFinished {
        /// Step number.
        step: usize,
        /// What proves the step's result.
        evidence: Evidence,
    },
    /// A diagnostic message for the user.
    Note {
        /// How much it matters.
        level: Level,
        /// The message.
        text: String,
    },
}

impl Event {
    /// An informational note.
    pub fn note(text: impl Into<String>) -> Self {
        Self::Note {
            level: Level::Info,
            text: text.into(),
        }
    }

    /// A warning.
    pub fn warning(text: impl Into<String>) -> Self {
        Self::Note {
            level: Level::Warning,
            text: text.into(),
        }
    }
}

/// Receives events.
pub trait Observer {
    /// Handles one event.
    fn event(&mut self, event: Event);
}

impl<F: FnMut(Event)> Observer for F {
    fn event(&mut self, event: Event) {
        self(event)
    }
}

/// An observer that ignores everything (dry runs, proofs on a twin).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event) {}
}

/// Runs `f` as operation `operation` on `what`: emits Started, then Finished or Failed.
pub fn operation<T, E: fmt::Display>(
    observer: &mut dyn Observer,
    operation: Operation,
    what: impl Into<String>,
    total: Option<u64>,
    f: impl FnOnce(&mut dyn Observer) -> Result<T, E>,
) -> Result<T, E> {
    observer.event(Event::Started {
        operation,
        what: what.into(),
        total,
    });
    let result = f(observer);
    match &result {
        Ok(_) => observer.event(Event::Finished { operation }),
        Err(e) => observer.event(Event::Failed {
            operation,
            reason: e.to_string(),
        }),
    }
    result
}

/// A cancellation request shared between whoever decides (a signal handler, a UI) and the
/// executor, which checks it between operations and inside transfers. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop at the next safe point.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The shared flag, for a signal handler that may only store an atomic.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// A token on an existing flag (the one a signal handler sets).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_reports_start_and_end() {
        let mut seen = Vec::new();
        let mut obs = |e: Event| seen.push(e);
        let r: Result<u8, String> = operation(&mut obs, Operation::Erase, "page", Some(4), |o| {
            o.event(Event::Progress {
                operation: Operation::Erase,
                done: 4,
                total: 4,
            });
            Ok(1)
        });
        assert_eq!(r, Ok(1));
        let _: Result<(), String> = operation(&mut obs, Operation::Write, "x", None, |_| {
            Err("stall".into())
        });
        assert!(matches!(
            seen[0],
            Event::Started {
                operation: Operation::Erase,
                ..
            }
        ));
        assert_eq!(
            seen[2],
            Event::Finished {
                operation: Operation::Erase
            }
        );
        assert_eq!(
            seen[4],
            Event::Failed {
                operation: Operation::Write,
                reason: "stall".into()
            }
        );
    }

    #[test]
    fn cancel_is_shared_by_clones() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
        assert!(a.flag().load(Ordering::SeqCst));
    }
}
