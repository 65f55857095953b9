//! Running a plan: its steps as the executor's tasks, then the device read again and compared
//! with the prediction.

use std::borrow::Cow;

use modflash_device::Mode;
use modflash_module::platform::Store;
use modflash_module::ModuleFunction;

use super::types::{Action, Plan, Step, Via, OTA_FLAG_OFFSET};
use crate::error::Error;
use crate::exec::{execute, read_modules, DfuWrite, Options, Report, Task, TaskAction};
use crate::inventory::Inventory;
use crate::progress::{Cancel, Observer};
use crate::session::Session;
use crate::transport::{AfterLeave, Observation};

/// The tasks of a plan's steps.
pub fn tasks_of(steps: &[Step]) -> Vec<Task<'_>> {
    steps
        .iter()
        .map(|step| {
            let label = match step.action {
                Action::DfuErase { address, len, .. } => {
                    format!("erasing {len} bytes at {address:#010x} (the legacy app)")
                }
                _ => format!(
                    "writing {} version {} ({})",
                    step.module.slot(),
                    step.module.info.version,
                    step.module.origin
                ),
            };
            let dfu = |alt, address, data| DfuWrite { alt, address, data };
            let action = match step.action {
                Action::DfuWrite { alt, address } => TaskAction::Dfu(vec![dfu(
                    alt,
                    address,
                    Cow::Borrowed(step.module.flash_bytes()),
                )]),
                Action::DfuStageBootloader { alt, address } => TaskAction::Dfu(vec![
                    dfu(alt, address, Cow::Borrowed(&step.module.bytes[..])),
                    dfu(
                        1,
                        OTA_FLAG_OFFSET,
                        Cow::Owned(vec![modflash_module::platform::dct::OTA_UPDATE_PENDING]),
                    ),
                ]),
                // Written as 0xFF: the download erases the page first, so the result is erased.
                Action::DfuErase { alt, address, len } => TaskAction::Dfu(vec![dfu(
                    alt,
                    address,
                    Cow::Owned(vec![0xFF; len as usize]),
                )]),
                Action::Serial => TaskAction::Serial {
                    name: step.module.origin.to_string(),
                    data: &step.module.bytes[..],
                },
            };
            Task { label, action }
        })
        .collect()
}

/// Runs a plan's steps with verification; a DFU plan ends by leaving DFU mode for the last
/// module written (with nothing to write, for the application region, when the device is in
/// DFU mode).
pub fn run_steps(
    session: &mut Session<'_>,
    steps: &[Step],
    via: Via,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Report, Error> {
    let application = || {
        session
            .platform()
            .layout_for(None)
            .and_then(|l| {
                l.bounds
                    .iter()
                    .find(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
            })
            .map_or(0, |b| b.start)
    };
    let options = Options {
        verify: true,
        leave_at: (via == Via::Dfu).then(|| steps.last().map_or_else(application, Step::address)),
    };
    execute(session, &tasks_of(steps), options, observer, cancel)
}

/// A plan carried out, and what the device looks like afterwards.
#[derive(Clone, Debug)]
pub struct Flashed {
    /// What running the plan did.
    pub report: Report,
    /// What the device reports now.
    pub after: Inventory,
    /// Its observed mode, LED and log, when it can be observed.
    pub observed: Option<Observation>,
    /// How the device differs from the prediction (empty: verified).
    pub mismatches: Vec<String>,
}

/// Runs `plan` on `session`, reads the device again and compares it with the prediction.
/// An execution failure is an error; a device that ends elsewhere than predicted is a
/// [`Flashed`] with mismatches.
pub fn flash(
    session: &mut Session<'_>,
    plan: &Plan,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Flashed, Error> {
    let report = run_steps(session, &plan.steps, plan.via, observer, cancel)?;
    let after = read_modules(session, observer)?;
    let observed = session.observe();
    let mut mismatches = compare(plan, &after, observed.as_ref().map(|o| o.mode));
    if report.left == Some(AfterLeave::Dfu) && plan.prediction.mode != Mode::Dfu {
        mismatches.insert(
            0,
            "the device came back in DFU mode after the reset: its firmware is not valid".into(),
        );
    }
    Ok(Flashed {
        report,
        after,
        observed,
        mismatches,
    })
}

/// Differences between the predicted and the actual final state.
pub fn compare(plan: &Plan, after: &Inventory, mode: Option<Mode>) -> Vec<String> {
    let mut out = Vec::new();
    let prediction = &plan.prediction;
    if let Some(m) = mode {
        if m != prediction.mode {
            out.push(format!(
                "mode is {}, predicted {}",
                m.name(),
                prediction.mode.name()
            ));
        }
    }
    let words = |failing: bool| {
        if failing {
            "failing a check"
        } else {
            "passing every check"
        }
    };
    for (slot, version) in &prediction.modules {
        let predicted_failing = prediction.failing.contains(slot);
        match after.main_module(*slot) {
            Some(m) if m.version == *version && m.checks.all() != predicted_failing => {}
            Some(m) => out.push(format!(
                "{slot} is version {} ({}), predicted version {version} ({})",
                m.version,
                words(!m.checks.all()),
                words(predicted_failing)
            )),
            None => out.push(format!("{slot} is missing, predicted version {version}")),
        }
    }
    for step in &plan.steps {
        let slot = step.module.slot();
        let written = !matches!(step.action, Action::DfuErase { .. });
        if step.requested && written && step.module.info.function == ModuleFunction::UserPart {
            let installed = if plan.factory {
                after
                    .modules
                    .iter()
                    .find(|m| m.slot() == slot && !m.is_main())
            } else {
                after.main_module(slot)
            };
            let sha = installed.and_then(|m| m.sha256.clone());
            if sha.is_some_and(|s| s != step.module.sha_hex()) {
                out.push(format!(
                    "the {slot} on the device is not the file that was flashed"
                ));
            }
        }
    }
    out
}
