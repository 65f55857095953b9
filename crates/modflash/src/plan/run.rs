//! Running a plan: its steps as the executor's tasks, then the device read again, compared
//! with the prediction, and each module written proven (read back over DFU — in full, or its
//! header and suffix when the firmware then reports its own CRC check — or by the SHA-256
//! the device reports after a serial or USB control-request update) or named as unproven.

use std::borrow::Cow;

use modflash_device::asset::AssetInfo;
use modflash_device::Mode;
use modflash_module::platform::Store;
use modflash_module::{ModuleFunction, ModuleRef};

use super::types::{Action, Plan, Step, Via, OTA_FLAG_OFFSET};
use crate::catalog::Candidate;
use crate::error::Error;
use crate::exec::{
    execute, hash_check, read_modules, unproven_error, DfuWrite, HashCheck, Options, ReadBack,
    Report, Task, TaskAction,
};
use crate::inventory::{InstalledModule, Inventory};
use crate::progress::{Cancel, Event, Evidence, Observer};
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
            let dfu = |alt, address, data| DfuWrite {
                alt,
                address,
                data,
                read_back: ReadBack::EveryByte,
            };
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
                Action::Usb => TaskAction::Usb {
                    name: step.module.origin.to_string(),
                    data: &step.module.bytes[..],
                },
            };
            Task { label, action }
        })
        .collect()
}

/// Runs a plan's steps with verification (every DFU write read back in full); a plan whose
/// last step is a DFU write ends by leaving DFU mode for the module written (with nothing to
/// write, for the application region, when the device is in DFU mode).
pub fn run_steps(
    session: &mut Session<'_>,
    steps: &[Step],
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Report, Error> {
    run_tasks(session, steps, &tasks_of(steps), observer, cancel)
}

fn run_tasks(
    session: &mut Session<'_>,
    steps: &[Step],
    tasks: &[Task<'_>],
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
        leave_at: match steps.last() {
            Some(last) => (last.via() == Via::Dfu).then(|| last.address()),
            None => Some(application()),
        },
    };
    execute(session, tasks, options, observer, cancel)
}

/// The plan's tasks, each DFU-written module that the device will check itself afterwards
/// read back only in its header and suffix ([`ReadBack::HeaderAndSuffix`]): the device ends
/// running its firmware, which reports the CRC check of the module it ends with in the slot
/// ([`crate::transport::DeviceLink::reports_integrity`]). Everything else is read back in
/// full.
fn tasks_checked_by_device<'p>(session: &mut Session<'_>, plan: &'p Plan) -> Vec<Task<'p>> {
    let mut tasks = tasks_of(&plan.steps);
    let prediction = &plan.prediction;
    let system = prediction
        .modules
        .iter()
        .find(|(slot, _)| *slot == ModuleRef::new(ModuleFunction::SystemPart, 1))
        .map(|&(_, version)| version);
    let firmware_runs = matches!(
        prediction.mode,
        Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
    );
    if !firmware_runs || !session.link().reports_integrity(system) {
        return tasks;
    }
    for (i, (step, task)) in plan.steps.iter().zip(&mut tasks).enumerate() {
        let slot = step.module.slot();
        let reported = matches!(step.action, Action::DfuWrite { .. })
            && last_write(plan, i)
            && !(plan.factory && step.module.info.function == ModuleFunction::UserPart)
            && !prediction.failing.contains(&slot)
            && prediction
                .modules
                .contains(&(slot, step.module.info.version));
        if let (true, TaskAction::Dfu(writes)) = (reported, &mut task.action) {
            for w in writes {
                w.read_back = ReadBack::HeaderAndSuffix;
            }
        }
    }
    tasks
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
    /// How the device differs from the prediction (empty: as predicted).
    pub mismatches: Vec<String>,
    /// The backup of what the plan replaced, when one was taken.
    pub backup: Option<crate::backup::Backup>,
    /// What proves each module the plan wrote, in step order (the last write to each slot;
    /// earlier ones were intermediate).
    pub proofs: Vec<Proof>,
}

/// What proves one module a plan wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The step (from 1) that wrote it last.
    pub step: usize,
    /// Its slot.
    pub slot: ModuleRef,
    /// The version written.
    pub version: u16,
    /// How it was written.
    pub via: Via,
    /// The asset, for an asset module (stored by name, not in a slot).
    pub asset: Option<String>,
    /// Read back over DFU, the SHA-256 the device reports after a serial or USB update, or
    /// only the device's acceptance (no SHA-256 reported: unproven).
    pub evidence: Evidence,
}

impl Flashed {
    /// The modules written that nothing proves installed.
    pub fn unproven(&self) -> impl Iterator<Item = &Proof> {
        self.proofs.iter().filter(|p| !p.evidence.proves())
    }

    /// The device is as predicted and every module written is proven.
    pub fn verified(&self) -> bool {
        self.mismatches.is_empty() && self.unproven().next().is_none()
    }

    /// "written, not verified" when a module written is not proven, naming each and the
    /// command that can prove it.
    pub fn require_proof(&self, plan: &Plan) -> Result<(), Error> {
        let (names, modules): (Vec<String>, Vec<&Candidate>) = self
            .unproven()
            .filter_map(|p| {
                let step = plan.steps.get(p.step.checked_sub(1)?)?;
                let name = format!("{} version {} (step {})", p.slot, p.version, p.step);
                Some((name, &step.module))
            })
            .unzip();
        if modules.is_empty() {
            return Ok(());
        }
        let subject = names.join(", ");
        if self
            .unproven()
            .all(|p| p.evidence == Evidence::HeaderAndSuffix)
        {
            let reason = format!(
                "only the header and suffix of {subject} were read back after the DFU write, \
                 and the device did not report its own CRC check of it"
            );
            return Err(unproven_error(&modules, &reason));
        }
        let mut vias: Vec<Via> = self.unproven().map(|p| p.via).collect();
        vias.dedup();
        let how = match vias[..] {
            [via] => via.words(),
            _ => "over serial or USB control requests",
        };
        let reason = format!("the device reports no hash for {subject} {how}");
        Err(unproven_error(&modules, &reason))
    }
}

/// How to run a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashOptions {
    /// Keep what the plan replaces under the modflash home first (`modflash backups`).
    pub backup: bool,
}

impl Default for FlashOptions {
    fn default() -> Self {
        Self { backup: true }
    }
}

/// The modules the plan writes over: every step that replaces an installed module (a staged
/// bootloader replaces the bootloader; erasing the legacy Gen3 app replaces user part 1).
fn replaced_slots(plan: &Plan) -> Vec<(ModuleRef, u16)> {
    let mut out: Vec<(ModuleRef, u16)> = Vec::new();
    for step in &plan.steps {
        let Some(version) = step.from_version else {
            continue;
        };
        let slot = match step.action {
            Action::DfuErase { .. } => ModuleRef::new(ModuleFunction::UserPart, 1),
            _ => step.module.slot(),
        };
        if !out.iter().any(|(s, _)| *s == slot) {
            out.push((slot, version));
        }
    }
    out
}

/// Keeps what `plan` will replace: the bytes where the connection can read them, the header
/// and hash otherwise.
fn back_up(
    session: &mut Session<'_>,
    plan: &Plan,
    observer: &mut dyn Observer,
) -> Result<Option<crate::backup::Backup>, Error> {
    let slots = replaced_slots(plan);
    if slots.is_empty() {
        return Ok(None);
    }
    let Some(device_id) = session.device_id() else {
        observer.event(Event::warning(
            "no backup: the device did not say its id (pass --no-backup to silence this)",
        ));
        return Ok(None);
    };
    let mut modules = Vec::new();
    let mut inventory = None;
    for (slot, version) in slots {
        let bytes = session.installed_image(slot);
        let sha256 = match &bytes {
            Some(b) => modflash_module::Module::parse(b)
                .ok()
                .and_then(|m| m.stored_sha256()),
            None => {
                if inventory.is_none() {
                    inventory = Some(session.inventory(observer)?);
                }
                inventory
                    .as_ref()
                    .and_then(|i| i.main_module(slot))
                    .and_then(|m| m.sha256.as_deref())
                    .and_then(crate::inventory::parse_sha256)
            }
        };
        modules.push(crate::backup::Replaced {
            slot,
            version,
            sha256,
            bytes,
        });
    }
    let backup = crate::backup::save(
        &session.reference(),
        &device_id,
        session.platform().id,
        &modules,
    )?;
    observer.event(Event::note(format!(
        "kept what this plan replaces in {} (`modflash restore` puts it back)",
        backup.dir.display()
    )));
    Ok(Some(backup))
}

/// Runs `plan` on `session`, reads the device again and compares it with the prediction.
/// An execution failure is an error; a device that ends elsewhere than predicted is a
/// [`Flashed`] with mismatches.
pub fn flash(
    session: &mut Session<'_>,
    plan: &Plan,
    options: FlashOptions,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<Flashed, Error> {
    let backup = if options.backup {
        back_up(session, plan, observer)?
    } else {
        None
    };
    let tasks = tasks_checked_by_device(session, plan);
    let report = run_tasks(session, &plan.steps, &tasks, observer, cancel)?;
    let after = read_modules(session, observer)?;
    // What the firmware reports, not a read-back over DFU.
    let from_firmware = !session.link().in_dfu_mode();
    let observed = session.observe();
    let mut mismatches = compare(plan, &after, observed.as_ref().map(|o| o.mode));
    if report.left == Some(AfterLeave::Dfu) && plan.prediction.mode != Mode::Dfu {
        mismatches.insert(
            0,
            "the device came back in DFU mode after the reset: its firmware is not valid".into(),
        );
    }
    // The assets the device holds now, where it can say (a virtual device: its asset store).
    let assets_after = if plan.steps.iter().any(writes_asset) && session.observe().is_some() {
        Some(session.twin(observer)?.available_assets())
    } else {
        None
    };
    let proofs = proofs(
        plan,
        &report,
        &after,
        assets_after.as_deref(),
        from_firmware,
    );
    Ok(Flashed {
        report,
        after,
        observed,
        mismatches,
        backup,
        proofs,
    })
}

/// The step writes an asset module (stored by the asset's name, not in a slot).
fn writes_asset(step: &Step) -> bool {
    step.module.info.function == ModuleFunction::Asset
}

/// The step that writes a slot last is the one whose module the device should end with (each
/// asset module a plan writes is an asset of its own).
fn last_write(plan: &Plan, index: usize) -> bool {
    let Some(step) = plan.steps.get(index) else {
        return false;
    };
    if writes_asset(step) {
        return true;
    }
    let slot = step.module.slot();
    written(step)
        && !plan
            .steps
            .iter()
            .skip(index + 1)
            .any(|s| written(s) && s.module.slot() == slot)
}

/// The step writes its module (rather than erasing a page for it).
fn written(step: &Step) -> bool {
    !matches!(step.action, Action::DfuErase { .. })
}

/// The module the device ends with in `step`'s slot (the factory slot for a factory plan).
fn installed_for<'a>(
    plan: &Plan,
    after: &'a Inventory,
    step: &Step,
) -> Option<&'a InstalledModule> {
    let slot = step.module.slot();
    if plan.factory && step.module.info.function == ModuleFunction::UserPart {
        after
            .modules
            .iter()
            .find(|m| m.slot() == slot && !m.is_main())
    } else {
        after.main_module(slot)
    }
}

/// What proves each module the plan wrote last: a DFU write's read-back (in full, or of its
/// header and suffix when the firmware, read in `after`, reports its own passed CRC check of
/// that module: `from_firmware`), or, for a serial or USB update the device accepted, the
/// SHA-256 it reports now (for an asset, the asset of that name and hash among
/// `assets_after`, the device's asset store).
fn proofs(
    plan: &Plan,
    report: &Report,
    after: &Inventory,
    assets_after: Option<&[AssetInfo]>,
    from_firmware: bool,
) -> Vec<Proof> {
    plan.steps
        .iter()
        .zip(&report.tasks)
        .enumerate()
        .filter(|(i, _)| last_write(plan, *i))
        .map(|(i, (step, task))| {
            let installed = installed_for(plan, after, step);
            let hash = if writes_asset(step) {
                asset_check(step, assets_after)
            } else {
                hash_check(installed, &step.module)
            };
            let crc_passed = installed.is_some_and(|m| {
                m.version == step.module.info.version
                    && m.checks.integrity_checked
                    && m.checks.integrity
            });
            let evidence = match task.evidence {
                Evidence::DeviceAccepted if hash == HashCheck::Same => Evidence::Hash,
                Evidence::HeaderAndSuffix
                    if from_firmware && crc_passed && hash != HashCheck::Differs =>
                {
                    Evidence::DeviceCrc
                }
                other => other,
            };
            Proof {
                step: i + 1,
                slot: step.module.slot(),
                version: step.module.info.version,
                via: step.via(),
                asset: step.module.asset_name(),
                evidence,
            }
        })
        .collect()
}

/// Whether the device holds the asset `step` wrote, by its name and hash.
fn asset_check(step: &Step, assets_after: Option<&[AssetInfo]>) -> HashCheck {
    let Some(assets) = assets_after else {
        return HashCheck::NotReported;
    };
    let Some(written) = modflash_module::Module::parse(&step.module.bytes)
        .ok()
        .and_then(|m| m.asset())
    else {
        return HashCheck::NotReported;
    };
    if assets.iter().any(|a| a.asset().same_as(&written.asset)) {
        HashCheck::Same
    } else {
        HashCheck::Differs
    }
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
    // The file's SHA-256 where the device reports one: for a requested application, and for
    // every module a serial or USB update installed last.
    for (i, step) in plan.steps.iter().enumerate() {
        let requested_app = step.requested && step.module.info.function == ModuleFunction::UserPart;
        let validated = step.via().validated_per_step() && last_write(plan, i);
        if written(step)
            && (requested_app || validated)
            && hash_check(installed_for(plan, after, step), &step.module) == HashCheck::Differs
        {
            out.push(format!(
                "the {} on the device is not the file that was flashed",
                step.module.slot()
            ));
        }
    }
    out
}
