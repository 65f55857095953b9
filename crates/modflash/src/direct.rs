//! Direct writes, each a one-step plan with its own checks, run by the one executor: one module
//! through the serial console (`serial flash`), one file over DFU (`dfu download`), and memory
//! read over DFU (`dfu upload`).

use std::borrow::Cow;

use modflash_module::platform::platform;
use modflash_module::rules::{self, OtaCode};
use modflash_module::ModuleInfo;

use crate::catalog::Candidate;
use crate::dfucheck::{check_upload, plan_download, DownloadPlan};
use crate::error::Error;
use crate::exec::{
    execute, hash_check, refusal_verdict, unproven_error, DfuWrite, HashCheck, Options, ReadBack,
    Task, TaskAction, NOTHING_CHANGED,
};
use crate::inventory::{InstalledModule, Inventory};
use crate::precheck::{fix_for, precheck, Precheck};
use crate::progress::{operation, Cancel, Event, Evidence, Observer, Operation};
use crate::session::Session;
use crate::transport::dfu::DfuOpError;
use crate::transport::serial::{FlashReport, SerialError, Verdict};
use crate::transport::AfterLeave;

/// What the device said about a module sent over serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialVerdict {
    /// Not sent: the pre-check refused it.
    NotSent,
    /// The device validated and installed it.
    Accepted,
    /// The device refused it (its validation).
    Refused,
    /// The device refused it at the header: larger than its update area.
    TooLarge,
    /// The transfer failed.
    Failed,
    /// The transfer ended but the device did not print its success line.
    Unconfirmed,
}

impl SerialVerdict {
    /// Stable name (`verdict` in `serial flash --json`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NotSent => "not_sent",
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::TooLarge => "too_large",
            Self::Failed => "failed",
            Self::Unconfirmed => "unconfirmed",
        }
    }
}

/// Everything `serial flash` found out, also when it failed.
#[derive(Debug)]
pub struct SerialInstall {
    /// The module's header.
    pub module: ModuleInfo,
    /// What the pre-check found (the device would refuse it, or not run it).
    pub precheck: Option<String>,
    /// The transfer, when one ran.
    pub transfer: Option<FlashReport>,
    /// The device's verdict.
    pub verdict: SerialVerdict,
    /// The Device OS result code of a refusal.
    pub error_code: Option<i32>,
    /// Why it failed, in words.
    pub reason: Option<String>,
    /// The module as the device lists it after the restart.
    pub installed: Option<InstalledModule>,
    /// The module is installed, passes every check and the device reports the file's
    /// SHA-256 for it (None: not checked).
    pub verified: Option<bool>,
    /// What the result rests on once the module was read after the restart: the SHA-256
    /// the device reports ([`Evidence::Hash`]), or only its acceptance and the slot and
    /// version it lists ([`Evidence::DeviceAccepted`]: not proof).
    pub evidence: Option<Evidence>,
    /// Success, or what went wrong.
    pub result: Result<(), Error>,
}

/// How `serial flash` sends a module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SerialOptions {
    /// Send it even when the pre-check says the device would refuse it or could not run it
    /// (a module for another platform never).
    pub force: bool,
    /// Succeed when the module is installed and passes every check but the device reports
    /// no SHA-256 that proves it is the file (`--no-verify`): reported "not verified".
    pub accept_unverified: bool,
}

/// Sends `module` through `session`'s serial console: pre-checked against what the device
/// reports (a module for another platform is never sent; one the device would refuse or
/// could not run only with `options.force`), then the device's verdict (only its success
/// line is one), then the module as the device lists it after its restart — verified when
/// the device reports the file's SHA-256 for it.
pub fn serial_install(
    session: &mut Session<'_>,
    module: &Candidate,
    options: SerialOptions,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> SerialInstall {
    let force = options.force;
    let info = module.info;
    let mut out = SerialInstall {
        module: info,
        precheck: None,
        transfer: None,
        verdict: SerialVerdict::NotSent,
        error_code: None,
        reason: None,
        installed: None,
        verified: None,
        evidence: None,
        result: Ok(()),
    };
    let file = module.origin.to_string();
    let inventory = match session.inventory(observer) {
        Ok(i) => i,
        Err(e) => {
            out.result = Err(e);
            return out;
        }
    };
    if let Err(p) = precheck(&inventory, &info) {
        out.precheck = Some(p.to_string());
        let never = matches!(p, Precheck::WrongPlatform { .. });
        if never || !force {
            // A module for another platform is never sent: the device refuses it (−1360)
            // at best.
            out.reason = Some(p.to_string());
            out.result = Err(Error::NotSent {
                file,
                reason: p.to_string(),
                help: p.help(inventory.platform_id),
            });
            return out;
        }
        observer.event(Event::warning(format!("{p} (sending anyway: --force)")));
    }
    let task = Task {
        label: format!("sending {file}"),
        action: TaskAction::Serial {
            name: "binary".into(),
            data: &module.bytes[..],
        },
    };
    let run = Options {
        verify: true,
        leave_at: None,
    };
    match execute(session, &[task], run, observer, cancel) {
        Ok(mut report) => {
            out.verdict = SerialVerdict::Accepted;
            out.transfer = report.tasks.pop().and_then(|t| t.serial);
            out.result = verify_installed(session, (&file, module), options, observer, &mut out);
        }
        Err(Error::Unconfirmed {
            said,
            help,
            transfer,
            ..
        }) => {
            out.verdict = SerialVerdict::Unconfirmed;
            out.transfer = transfer.map(|t| *t);
            out.reason = Some(said.clone());
            out.result = Err(Error::Unconfirmed {
                module: file,
                said,
                help,
                transfer: None,
            });
        }
        Err(Error::Refused {
            code,
            verdict,
            transfer,
            help,
            ..
        }) => {
            let too_large = transfer
                .as_ref()
                .is_some_and(|t| t.verdict == Verdict::TooLarge);
            out.transfer = transfer.map(|t| *t);
            out.error_code = code;
            // The pre-check knows why the device refused; say it and what fixes it.
            let unmet = precheck(&inventory, &info)
                .err()
                .and_then(|p| p.unmet().cloned());
            let said = out.transfer.as_ref().map_or("", |t| t.device_text.as_str());
            let (why, help) = if too_large {
                (verdict, help)
            } else {
                let why = match (detail(code, &inventory, &info), refusal_verdict(code, said)) {
                    (Some(d), base) => format!("{base}: {d}"),
                    (None, base) => base,
                };
                let help = match unmet {
                    Some(u) => format!(
                        "nothing was changed on the device; {} first",
                        fix_for(inventory.platform_id, &u)
                    ),
                    None => NOTHING_CHANGED.into(),
                };
                (why, help)
            };
            out.verdict = if too_large {
                SerialVerdict::TooLarge
            } else {
                SerialVerdict::Refused
            };
            out.reason = Some(why.clone());
            out.result = Err(Error::Refused {
                module: "it".into(),
                verdict: why,
                code,
                help,
                transfer: None,
            });
        }
        Err(e) => {
            out.verdict = SerialVerdict::Failed;
            out.reason = Some(e.to_string());
            out.transfer = transfer_counters(&e);
            out.result = Err(e);
        }
    }
    out
}

/// What the pre-check knows about a refusal with `code`: the unmet dependency behind −1340,
/// a damaged image behind −1330, the platform behind −1360.
fn detail(code: Option<i32>, inventory: &Inventory, info: &ModuleInfo) -> Option<String> {
    match OtaCode::from_code(code?)? {
        OtaCode::DependencyCheckFailed => precheck(inventory, info)
            .err()
            .and_then(|p| p.unmet().map(|u| u.to_string())),
        OtaCode::IntegrityCheckFailed => {
            Some("the CRC does not match (the image was damaged on the way)".into())
        }
        OtaCode::InvalidPlatform => {
            Some(format!("the module is for platform {}", info.platform_id))
        }
        _ => None,
    }
}

/// The counters of a transfer that failed or was cancelled, as a report without a verdict
/// from the device.
fn transfer_counters(e: &Error) -> Option<FlashReport> {
    let transfer = match e {
        Error::Interrupted {
            source: Some(inner),
            ..
        } => inner.as_ref(),
        other => other,
    };
    let stats = match transfer {
        Error::Serial(SerialError::Transfer { stats, .. }) => *stats,
        Error::Serial(SerialError::Deadline {
            stats: Some(stats), ..
        }) => **stats,
        _ => return None,
    };
    Some(FlashReport {
        verdict: Verdict::Refused { code: None },
        stats,
        final_ack_missing: false,
        elapsed_ms: 0,
        device_text: String::new(),
        verdict_ms: 0,
    })
}

/// Success only when the module is installed (same slot and version), passes the device's
/// checks and the device reports the file's SHA-256 for it; without a reported SHA-256, with
/// `options.accept_unverified` only ("not verified").
fn verify_installed(
    session: &mut Session<'_>,
    (file, module): (&str, &Candidate),
    options: SerialOptions,
    observer: &mut dyn Observer,
    out: &mut SerialInstall,
) -> Result<(), Error> {
    let info = &module.info;
    let after = crate::exec::read_modules(session, observer)?;
    let installed = after.main_module(info.slot()).cloned();
    out.installed = installed.clone();
    out.verified = Some(false);
    let Some(m) = installed else {
        return Err(Error::Unverified {
            what: format!(
                "the device accepted {file} but after the restart no {} is installed",
                info.slot()
            ),
            help: "run `modflash modules --device …` to see what the device runs, and flash again"
                .into(),
        });
    };
    let hash = hash_check(Some(&m), module);
    if m.version != info.version || hash == HashCheck::Differs {
        return Err(Error::Unverified {
            what: format!(
                "the device accepted {file} but after the restart its {} is version {}{}, not the file's version {}",
                info.slot(),
                m.version,
                if hash == HashCheck::Differs { " with another SHA-256" } else { "" },
                info.version
            ),
            help: "the update was not applied; run the command again".into(),
        });
    }
    if !m.checks.all() {
        let failed: Vec<String> = m
            .deps()
            .filter_map(|d| rules::check_dependency(&after, m.slot(), d).err())
            .map(|unmet| format!("{unmet}: {}", fix_for(after.platform_id, &unmet)))
            .collect();
        let why = if failed.is_empty() {
            "it fails the device's checks".to_string()
        } else {
            failed.join("; ")
        };
        out.reason = Some(why.clone());
        return Err(Error::Unverified {
            what: format!(
                "{} version {} is installed but cannot run: {why}",
                info.slot(),
                info.version
            ),
            help: "flash the missing modules (see `modflash modules --device …`)".into(),
        });
    }
    if hash == HashCheck::Same {
        out.evidence = Some(Evidence::Hash);
        out.verified = Some(true);
        return Ok(());
    }
    out.evidence = Some(Evidence::DeviceAccepted);
    if options.accept_unverified {
        return Ok(());
    }
    let reason = format!(
        "the device reports no hash for this module {}",
        crate::plan::Via::Serial.words()
    );
    let err = unproven_error(&[module], &reason);
    out.reason = Some(err.to_string());
    Err(err)
}

/// The platform's name, for messages.
pub fn platform_name(platform_id: u16) -> &'static str {
    platform(platform_id).map_or("device", |p| p.display_name)
}

/// How to download a file over DFU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Download {
    /// Where to write; default: a module's own start address.
    pub address: Option<u32>,
    /// Alternate setting; default: the one the address belongs to.
    pub alt: Option<u8>,
    /// Write even where the checks say no (never another platform's module).
    pub force: bool,
    /// Read every byte back and compare.
    pub verify: bool,
    /// Leave DFU mode afterwards for the firmware at the first write's address.
    pub leave: bool,
}

/// What a download did.
#[derive(Clone, Debug)]
pub struct Downloaded {
    /// The checked writes.
    pub plan: DownloadPlan,
    /// Where the device went after leaving DFU mode, when it was asked to.
    pub left: Option<AfterLeave>,
}

/// Writes `file` over DFU: checked against the platform's documented layout before the
/// device is switched to DFU mode (a refused request leaves it as it was), checked again
/// against what the device shows, then written (and read back) by the executor.
pub fn dfu_download(
    session: &mut Session<'_>,
    file: &[u8],
    how: Download,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Downloaded, Error> {
    let platform = session.platform();
    if let (Some(layout), Some(dfu_id)) = (
        platform.layout_for(None),
        platform.usb.and_then(|u| u.dfu.map(|d| (u.vendor, d))),
    ) {
        plan_download(
            platform,
            dfu_id,
            &mut |alt| layout.dfu_alts.get(usize::from(alt)).map(|s| s.to_string()),
            file,
            how.address,
            how.alt,
            how.force,
        )?;
    }
    enter_dfu(session, observer)?;
    let link = session.link();
    let dfu_id = link.dfu_id();
    // An alt the device does not have is the checks' business; failing to ask is not.
    let mut failure = None;
    let plan = plan_download(
        platform,
        dfu_id,
        &mut |alt| match link.dfu_alt_name(alt) {
            Ok(name) => Some(name),
            Err(Error::Dfu(DfuOpError::NoAlt { .. })) => None,
            Err(e) => {
                failure.get_or_insert(e);
                None
            }
        },
        file,
        how.address,
        how.alt,
        how.force,
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let plan = plan?;
    for f in &plan.forced {
        observer.event(Event::warning(format!("--force: {f}")));
    }
    let tasks: Vec<Task<'_>> = plan
        .writes
        .iter()
        .map(|w| Task {
            label: format!("writing {} at {:#010x} (alt {})", w.what, w.address, w.alt),
            action: TaskAction::Dfu(vec![DfuWrite {
                alt: w.alt,
                address: w.address,
                data: Cow::Borrowed(&w.data[..]),
                // A plain download: nothing but a read-back proves it.
                read_back: ReadBack::EveryByte,
            }]),
        })
        .collect();
    let options = Options {
        verify: how.verify,
        leave_at: how.leave.then(|| plan.leave_address()),
    };
    let report = execute(session, &tasks, options, observer, cancel)?;
    Ok(Downloaded {
        plan,
        left: report.left,
    })
}

/// Reads `length` bytes at `address` of alternate setting `alt` over DFU, checked against the
/// platform's documented layout before the device is switched to DFU mode (a refused request
/// leaves it as it was).
pub fn dfu_upload(
    session: &mut Session<'_>,
    alt: u8,
    address: u32,
    length: usize,
    observer: &mut dyn Observer,
) -> Result<Vec<u8>, Error> {
    if let Some(layout) = session.platform().layout_for(None) {
        check_upload(
            &mut |alt| layout.dfu_alts.get(usize::from(alt)).map(|s| s.to_string()),
            alt,
            address,
            length as u64,
        )?;
    }
    enter_dfu(session, observer)?;
    let link = session.link();
    operation(
        observer,
        Operation::Read,
        format!("{length} bytes at {address:#010x} (alt {alt})"),
        Some(length as u64),
        |o| link.dfu_read(alt, address, length, o),
    )
}

fn enter_dfu(session: &mut Session<'_>, observer: &mut dyn Observer) -> Result<(), Error> {
    crate::exec::enter_dfu(session.link(), observer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_ymodem::SenderStats;

    #[test]
    fn a_cancelled_transfer_keeps_its_counters() {
        let stats = SenderStats {
            bytes_acked: 162_816,
            ..SenderStats::default()
        };
        let cancelled = Error::Interrupted {
            what: "sending part2.bin".into(),
            help: String::new(),
            source: Some(Box::new(Error::Serial(SerialError::Transfer {
                link: "serial port /dev/x".into(),
                reason: "transfer cancelled by the sender".into(),
                stats,
                cancelled: true,
            }))),
        };
        let report = transfer_counters(&cancelled).expect("counters kept");
        assert_eq!(report.stats.bytes_acked, 162_816);
        let other = Error::BadRequest {
            what: String::new(),
            help: String::new(),
        };
        assert!(transfer_counters(&other).is_none());
    }
}
