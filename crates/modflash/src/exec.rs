//! The one executor: runs tasks on an open [`Session`] — DFU writes verified by read-back,
//! serial updates validated by the device itself, the reset at the end — with operation
//! events and a cancellation token. Plans (`plan::run`), `serial flash` and `dfu download`
//! (`direct`) and the planner's proofs all run here; each front door only turns its input
//! into [`Task`]s. The executor knows nothing of plans.

use std::borrow::Cow;

use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{operation, Cancel, Event, Evidence, Observer, Operation};
use crate::session::Session;
use crate::transport::serial::{FlashReport, SerialError, Verdict};
use crate::transport::{AfterLeave, DeviceLink};

/// One DFU write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DfuWrite<'a> {
    /// Alternate setting.
    pub alt: u8,
    /// Address in that alternate setting.
    pub address: u32,
    /// The bytes.
    pub data: Cow<'a, [u8]>,
}

/// What one task does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskAction<'a> {
    /// DFU writes, in order (a staged bootloader is its image, then the DCT's OTA flag).
    Dfu(Vec<DfuWrite<'a>>),
    /// One module through the listening-mode console (YMODEM), named `name` on the wire.
    Serial {
        /// The file name sent in the YMODEM header.
        name: String,
        /// The module.
        data: &'a [u8],
    },
}

/// One step the executor carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task<'a> {
    /// What it does, in words ("writing system part 1 version 1502 (part1.bin)").
    pub label: String,
    /// How.
    pub action: TaskAction<'a>,
}

impl Task<'_> {
    /// Bytes the task sends.
    pub fn bytes(&self) -> u64 {
        match &self.action {
            TaskAction::Dfu(writes) => writes.iter().map(|w| w.data.len() as u64).sum(),
            TaskAction::Serial { data, .. } => data.len() as u64,
        }
    }
}

/// How to run tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Read every DFU write back and compare.
    pub verify: bool,
    /// After DFU writes — or with no task at all, when the device is in DFU mode — leave DFU
    /// mode for the firmware at this address.
    pub leave_at: Option<u32>,
}

/// What a task ended with.
#[derive(Clone, Debug)]
pub struct TaskResult {
    /// What proves its result.
    pub evidence: Evidence,
    /// The device's report on a serial transfer.
    pub serial: Option<FlashReport>,
}

/// What running tasks did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One result per task, in order.
    pub tasks: Vec<TaskResult>,
    /// Where the device went after leaving DFU mode, when it was asked to.
    pub left: Option<AfterLeave>,
}

/// Runs `tasks` in order on `session`.
pub fn execute(
    session: &mut Session<'_>,
    tasks: &[Task<'_>],
    options: Options,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Report, Error> {
    let link = session.link();
    let mut report = Report::default();
    let uses_dfu = tasks.iter().any(|t| matches!(t.action, TaskAction::Dfu(_)));
    // Nothing to do but, for a device left in DFU mode by an interrupted run, the reset.
    let leave_at = options
        .leave_at
        .filter(|_| uses_dfu || tasks.is_empty() && link.in_dfu_mode());
    if tasks.is_empty() && leave_at.is_none() {
        return Ok(report);
    }
    if uses_dfu {
        enter_dfu(link, observer)?;
    }
    let steps = tasks.len();
    for (i, task) in tasks.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(interrupted(&task.label, i, uses_dfu));
        }
        let step = i + 1;
        observer.event(Event::StepStarted {
            step,
            steps,
            label: task.label.clone(),
            bytes: task.bytes(),
        });
        let result = match &task.action {
            TaskAction::Dfu(writes) => {
                for (n, w) in writes.iter().enumerate() {
                    if n > 0 && cancel.is_cancelled() {
                        return Err(interrupted(&task.label, i, uses_dfu));
                    }
                    link.dfu_write(w.alt, w.address, &w.data, options.verify, observer)?;
                }
                TaskResult {
                    evidence: if options.verify {
                        Evidence::ReadBack
                    } else {
                        Evidence::None
                    },
                    serial: None,
                }
            }
            TaskAction::Serial { name, data } => {
                let flashed = serial_step(link, (name, &task.label), data, observer, cancel)?;
                TaskResult {
                    evidence: Evidence::DeviceAccepted,
                    serial: Some(flashed),
                }
            }
        };
        observer.event(Event::StepFinished {
            step,
            evidence: result.evidence,
        });
        report.tasks.push(result);
    }
    if let Some(address) = leave_at {
        let left = operation(
            observer,
            Operation::Reset,
            "resetting the device into its firmware",
            None,
            |o| link.dfu_leave(address, o),
        )?;
        report.left = Some(left);
    }
    Ok(report)
}

/// Puts the device in DFU mode; the mode change is reported only when there is one.
pub(crate) fn enter_dfu(
    link: &mut dyn DeviceLink,
    observer: &mut dyn Observer,
) -> Result<(), Error> {
    if link.in_dfu_mode() {
        return link.enter_dfu(observer);
    }
    operation(
        observer,
        Operation::ModeChange,
        "switching the device to DFU mode",
        None,
        |o| link.enter_dfu(o),
    )
}

fn interrupted(label: &str, done: usize, dfu: bool) -> Error {
    Error::Interrupted {
        source: None,
        what: format!(
            "{label} (after {done} completed step{})",
            if done == 1 { "" } else { "s" }
        ),
        help: if dfu {
            "the device may still be in DFU mode; run the same command again to finish".into()
        } else {
            "run the same command again to finish".into()
        },
    }
}

/// What a refusal changed on the device, for its help line.
pub(crate) const NOTHING_CHANGED: &str =
    "nothing was changed on the device; check the module with `modflash inspect`";

/// The device's verdict in words for a refusal with result `code` (none: it cancelled the
/// transfer at the end without one).
pub(crate) fn refusal_verdict(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("{} ({c})", modflash_module::rules::OtaCode::name_of(c)),
        None => "it cancelled the transfer at the end without giving a code".into(),
    }
}

/// One serial transfer of the module named `name` on the wire (`label` in messages): a
/// transfer that fails on the line (the device applies nothing) is sent once more; the
/// device's refusal is an error in its own words.
fn serial_step(
    link: &mut dyn DeviceLink,
    (name, label): (&str, &str),
    data: &[u8],
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<FlashReport, Error> {
    let mut attempt = 0;
    let report = loop {
        attempt += 1;
        let sent = operation(
            observer,
            Operation::Write,
            label,
            Some(data.len() as u64),
            |o| link.serial_flash(name, data, o, cancel),
        );
        match sent {
            Err(Error::Serial(SerialError::Transfer {
                reason, cancelled, ..
            })) if attempt < 2 && !cancelled && !cancel.is_cancelled() => {
                observer.event(Event::warning(format!(
                    "the transfer failed ({reason}); nothing was applied, sending again"
                )));
            }
            Err(
                e @ Error::Serial(SerialError::Transfer {
                    cancelled: true, ..
                }),
            ) => {
                return Err(Error::Interrupted {
                    what: label.to_string(),
                    help: "the transfer was cancelled, so the device applied nothing; run the \
                           same command again"
                        .into(),
                    source: Some(Box::new(e)),
                })
            }
            other => break other?,
        }
    };
    let (verdict, code, help) = match report.verdict {
        Verdict::Accepted { .. } => return Ok(report),
        Verdict::Refused { code } => (refusal_verdict(code), code, NOTHING_CHANGED),
        Verdict::TooLarge => (
            format!(
                "the file ({} bytes) is larger than the device's update area",
                data.len()
            ),
            None,
            "check that the file is a module for this device (`modflash inspect`)",
        ),
    };
    Err(Error::Refused {
        module: name.to_string(),
        verdict,
        code,
        help: help.into(),
        transfer: Some(Box::new(report)),
    })
}

/// What is installed after a write, read as a [`Operation::Read`] operation: the evidence a
/// write is checked against.
pub fn read_modules(
    session: &mut Session<'_>,
    observer: &mut dyn Observer,
) -> Result<Inventory, Error> {
    operation(
        observer,
        Operation::Read,
        "reading the installed modules",
        None,
        |o| session.inventory(o),
    )
}
