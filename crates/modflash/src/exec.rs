//! The one executor: runs tasks on an open [`Session`] — DFU writes verified by read-back
//! (every byte, or a module's header and suffix when the device checks its CRC itself),
//! serial and USB control-request updates validated by the device itself, the mode changes
//! between them, the reset at the end — with operation events and a cancellation token. Plans (`plan::run`), `serial flash` and `dfu download`
//! (`direct`) and the planner's proofs all run here; each front door only turns its input
//! into [`Task`]s. The executor knows nothing of plans.

use std::borrow::Cow;

use modflash_device::console::DOWNLOAD_OK;
use modflash_module::ModuleFlags;

use crate::catalog::{Candidate, Origin};
use crate::error::Error;
use crate::inventory::{InstalledModule, Inventory};
use crate::progress::{operation, Cancel, Event, Evidence, Observer, Operation};
use crate::session::Session;
use crate::transport::control::UpdateVerdict;
use crate::transport::dfu::WriteCheck;
use crate::transport::serial::{clip, secs, FlashReport, SerialError, Verdict};
use crate::transport::{AfterLeave, DeviceLink};
use modflash_control::RequestType;

/// One DFU write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DfuWrite<'a> {
    /// Alternate setting.
    pub alt: u8,
    /// Address in that alternate setting.
    pub address: u32,
    /// The bytes.
    pub data: Cow<'a, [u8]>,
    /// How much of it to read back when verifying.
    pub read_back: ReadBack,
}

/// How much of a DFU write is read back when the executor verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// Every byte: the only proof where the device will not report its own check.
    EveryByte,
    /// A module's header and its suffix with the CRC-32, for a module the device will check
    /// and report itself afterwards ([`Evidence::HeaderAndSuffix`] until it has); every byte
    /// when the data is not a module with a readable suffix.
    HeaderAndSuffix,
}

impl ReadBack {
    /// What to read back of `data`, and what that proves.
    fn check(self, data: &[u8]) -> (WriteCheck, Evidence) {
        let every = (WriteCheck::EveryByte, Evidence::ReadBack);
        if self == Self::EveryByte {
            return every;
        }
        let Ok(module) = modflash_module::Module::parse(data) else {
            return every;
        };
        match module.suffix {
            // The module starts at the write's first byte and ends, CRC included, at its last.
            Ok(suffix) if module.file_offset == 0 && module.bytes.len() == data.len() => (
                WriteCheck::Blocks(vec![0..module.payload_offset, suffix.offset..data.len()]),
                Evidence::HeaderAndSuffix,
            ),
            _ => every,
        }
    }
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
    /// One module through Particle's USB control requests (firmware update), named `name` in
    /// messages.
    Usb {
        /// The module's name (its file).
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
            TaskAction::Serial { data, .. } | TaskAction::Usb { data, .. } => data.len() as u64,
        }
    }
}

/// How to run tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Read every DFU write back and compare.
    pub verify: bool,
    /// After DFU writes — or with no task at all, when the device is in DFU mode — leave DFU
    /// mode for the firmware at this address. (Before a serial or USB task the device leaves
    /// DFU mode in any case, for the firmware at the last DFU write's address.)
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

/// Runs `tasks` in order on `session`: the device is put in DFU mode before a DFU task and
/// sent back to its firmware before a serial or USB one.
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
    let steps = tasks.len();
    // Where the last DFU write went (the firmware a mid-plan leave starts).
    let mut last_dfu: Option<u32> = None;
    for (i, task) in tasks.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(interrupted(&task.label, i, link.in_dfu_mode()));
        }
        match &task.action {
            TaskAction::Dfu(_) => enter_dfu(link, observer)?,
            TaskAction::Serial { .. } | TaskAction::Usb { .. } if link.in_dfu_mode() => {
                leave_for_firmware(link, last_dfu.or(options.leave_at), &task.label, observer)?;
            }
            _ => {}
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
                // The weakest evidence of the task's writes.
                let mut evidence = Evidence::ReadBack;
                for (n, w) in writes.iter().enumerate() {
                    if n > 0 && cancel.is_cancelled() {
                        return Err(interrupted(&task.label, i, true));
                    }
                    let (check, proof) = if options.verify {
                        w.read_back.check(&w.data)
                    } else {
                        (WriteCheck::Nothing, Evidence::None)
                    };
                    link.dfu_write(w.alt, w.address, &w.data, &check, observer)?;
                    if evidence == Evidence::ReadBack {
                        evidence = proof;
                    }
                }
                last_dfu = writes.first().map(|w| w.address);
                TaskResult {
                    evidence,
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
            TaskAction::Usb { name, data } => {
                usb_step(link, (name, &task.label), data, observer, cancel)?;
                TaskResult {
                    evidence: Evidence::DeviceAccepted,
                    serial: None,
                }
            }
        };
        observer.event(Event::StepFinished {
            step,
            evidence: result.evidence,
        });
        report.tasks.push(result);
    }
    if let Some(address) = leave_at.filter(|_| link.in_dfu_mode()) {
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

/// Leaves DFU mode before a task the firmware carries out (`label`); the firmware must come
/// back.
fn leave_for_firmware(
    link: &mut dyn DeviceLink,
    address: Option<u32>,
    label: &str,
    observer: &mut dyn Observer,
) -> Result<(), Error> {
    let left = operation(
        observer,
        Operation::ModeChange,
        "leaving DFU mode for the device's firmware",
        None,
        |o| link.dfu_leave(address.unwrap_or(0), o),
    )?;
    if left == AfterLeave::Firmware {
        return Ok(());
    }
    Err(Error::WrongMode {
        device: link.reference(),
        mode: if left == AfterLeave::Dfu {
            "dfu".into()
        } else {
            "an unknown".into()
        },
        what: format!("run its firmware for the next step ({label})"),
        help: "its firmware did not start after leaving DFU mode: `modflash doctor` says why"
            .into(),
    })
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

/// The device's verdict in words for a refusal with result `code`; without one, what it
/// printed (`said`), or that it cancelled the transfer at the end.
pub(crate) fn refusal_verdict(code: Option<i32>, said: &str) -> String {
    match code {
        Some(c) => modflash_control::ResultCode::from_code(c).to_string(),
        None if !said.is_empty() => {
            format!("it printed {:?} without a result code", clip(said, 200))
        }
        None => "it cancelled the transfer at the end without giving a code".into(),
    }
}

/// What a device that did not confirm a transfer printed instead of its success line.
pub(crate) fn unconfirmed_words(report: &FlashReport) -> String {
    if report.device_text.is_empty() {
        format!(
            "after the transfer it printed nothing in {} s, not its success line {DOWNLOAD_OK:?}",
            secs(report.verdict_ms)
        )
    } else {
        format!(
            "after the transfer it printed {:?} instead of its success line {DOWNLOAD_OK:?}",
            clip(&report.device_text, 200)
        )
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
        Verdict::Unconfirmed => {
            return Err(Error::Unconfirmed {
                module: name.to_string(),
                said: unconfirmed_words(&report),
                help: format!(
                    "it may or may not have applied the module: see what it runs with \
                     `modflash modules --device {}`, then send the module again",
                    link.reference()
                ),
                transfer: Some(Box::new(report)),
            })
        }
        Verdict::Refused { code } => (
            refusal_verdict(code, &report.device_text),
            code,
            NOTHING_CHANGED,
        ),
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

/// One module through USB control requests; the device's refusal is an error in its own
/// words ("dependency check failed (-1340)"), and changes nothing.
fn usb_step(
    link: &mut dyn DeviceLink,
    (name, label): (&str, &str),
    data: &[u8],
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<(), Error> {
    let verdict = operation(
        observer,
        Operation::Write,
        label,
        Some(data.len() as u64),
        |o| link.usb_flash(data, o, cancel),
    )?;
    match verdict {
        UpdateVerdict::Accepted => Ok(()),
        UpdateVerdict::Refused { request, code } => Err(Error::Refused {
            module: name.to_string(),
            verdict: if request == RequestType::START_FIRMWARE_UPDATE {
                format!("{code}, before any of it was sent")
            } else {
                code.to_string()
            },
            code: Some(code.code()),
            help: NOTHING_CHANGED.into(),
            transfer: None,
        }),
        UpdateVerdict::Cancelled => Err(Error::Interrupted {
            what: label.to_string(),
            help: "the update was cancelled before it was finished, so the device applied \
                   nothing; run the same command again"
                .into(),
            source: None,
        }),
    }
}

/// How the SHA-256 a device reports for an installed module compares with a file's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashCheck {
    /// The device reports the file's SHA-256: proof.
    Same,
    /// The device reports another one: the module installed is not the file.
    Differs,
    /// The device reports none (over serial, for system parts and sometimes the app).
    NotReported,
}

/// How `installed` (the module in the slot after a write) compares with `module`, by the
/// SHA-256 the device reports.
pub(crate) fn hash_check(installed: Option<&InstalledModule>, module: &Candidate) -> HashCheck {
    match installed.and_then(|m| m.sha256.as_deref()) {
        Some(sha) if sha == module.sha_hex() => HashCheck::Same,
        Some(_) => HashCheck::Differs,
        None => HashCheck::NotReported,
    }
}

/// "written, not verified: `reason`" for `modules` that nothing proves installed (the device
/// reports no SHA-256 for them, or no CRC check); the help names the commands that can prove
/// them.
pub(crate) fn unproven_error(modules: &[&Candidate], reason: &str) -> Error {
    let commands: Vec<String> = modules
        .iter()
        .map(|m| match readback_command(m) {
            Some(c) => format!("`{c}`"),
            None => format!(
                "read {} back with `modflash dfu upload` and compare it with the file",
                m.slot()
            ),
        })
        .collect();
    let (it, them) = if modules.len() == 1 {
        ("it", "it")
    } else {
        ("them", "each")
    };
    Error::Unverified {
        what: format!("written, not verified: {reason}"),
        help: format!(
            "to verify {it}, read {them} back over USB DFU and compare: {}; or pass --no-verify \
             to accept a write the device cannot prove",
            commands.join("; ")
        ),
    }
}

/// The command that reads `module` back over USB DFU from where it is installed and compares
/// it with its file; none for images not installed as their file's bytes (compressed, or
/// without their header) or without a file.
fn readback_command(module: &Candidate) -> Option<String> {
    let flags = module.info.flags;
    if flags.contains(ModuleFlags::DROP_MODULE_INFO) || flags.contains(ModuleFlags::COMPRESSED) {
        return None;
    }
    let file = match &module.origin {
        Origin::File(p) | Origin::Catalog(p) | Origin::Home { stored: p, .. } => p,
        Origin::Release { .. } | Origin::Bundle { .. } => return None,
    };
    let name = file.file_name()?.to_string_lossy();
    Some(format!(
        "modflash dfu upload --device usb --address {:#010x} --length {} -o {name}.readback && cmp {name}.readback {}",
        module.info.start_address,
        module.bytes.len(),
        file.display()
    ))
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
