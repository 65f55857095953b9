//! The planner: from what is installed and what the user wants, the cheapest sequence of
//! writes that the device accepts step by step and that ends with every dependency met and
//! the app running — searched on a header-level model, then proven on a `Device` twin.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;

use modflash_device::hal::Hal;
use modflash_device::{Device, Led, Mode};
use modflash_module::platform::{dct, Layout, Platform, Store};
use modflash_module::release::{platform_releases, release_name};
use modflash_module::rules::{self, DfuPlace, Header, Installed, OtaRefusal, Part, ERASED};
use modflash_module::{Dependency, ModuleFunction, ModuleRef};

use crate::catalog::{Candidate, Catalog};

/// How the plan reaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// USB DFU: writes go to flash directly; nothing is validated until the device boots.
    Dfu,
    /// Serial listening mode (YMODEM into the OTA region): every module is validated by the
    /// device before it is accepted, one module per reset.
    Serial,
}

impl Via {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dfu => "dfu",
            Self::Serial => "serial",
        }
    }
}

/// What one step writes, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the module's flash image at `address` through DFU alternate setting `alt`.
    DfuWrite {
        /// DfuSe alternate setting.
        alt: u8,
        /// DfuSe address.
        address: u32,
    },
    /// Stage a bootloader in the OTA region (`alt`, `address`) and set the DCT OTA flag (alt 1,
    /// offset 1753 = 0xA5): the system installs it at the next boot (the bootloader's own
    /// sector is read-only over DFU).
    DfuStageBootloader {
        /// DfuSe alternate setting of the OTA region.
        alt: u8,
        /// DfuSe address of the OTA region.
        address: u32,
    },
    /// Erase `len` bytes at `address` of alternate setting `alt` (written as 0xFF after the
    /// page erase): invalidates the legacy 128 KB application on Gen3 from 3.1, which would
    /// otherwise run instead of the new one. `module` is the application it makes way for.
    DfuErase {
        /// DfuSe alternate setting.
        alt: u8,
        /// DfuSe address.
        address: u32,
        /// Bytes to erase.
        len: u32,
    },
    /// Send the module over YMODEM; the device validates it and installs it at the reset.
    Serial,
}

/// One write of a plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// The module written.
    pub module: Candidate,
    /// How it is written.
    pub action: Action,
    /// Version installed in that slot before this step.
    pub from_version: Option<u16>,
    /// Why the step is there.
    pub reason: String,
}

impl Step {
    /// Bytes sent to the device for this step.
    pub fn bytes(&self) -> usize {
        match self.action {
            Action::DfuStageBootloader { .. } => self.module.bytes.len() + 1,
            Action::DfuWrite { .. } => self.module.flash_bytes().len(),
            Action::DfuErase { len, .. } => len as usize,
            Action::Serial => self.module.bytes.len(),
        }
    }

    /// "dfu" or "serial".
    pub fn transport(&self) -> &'static str {
        match self.action {
            Action::Serial => "serial",
            _ => "dfu",
        }
    }

    /// The address the data goes to.
    pub fn address(&self) -> u32 {
        match self.action {
            Action::DfuWrite { address, .. }
            | Action::DfuStageBootloader { address, .. }
            | Action::DfuErase { address, .. } => address,
            Action::Serial => self.module.info.start_address,
        }
    }
}

/// What the device will look like when the plan has run (from the twin).
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Mode after the final boot.
    pub mode: Mode,
    /// LED after the final boot.
    pub led: Led,
    /// Installed modules: slot, version.
    pub modules: Vec<(ModuleRef, u16)>,
    /// Installed modules that fail one of the device's checks (e.g. an unmet dependency
    /// when `--force dependencies` was given).
    pub failing: Vec<ModuleRef>,
    /// The twin's event log for the last boot.
    pub events: Vec<String>,
}

impl Prediction {
    /// The app runs.
    pub fn app_runs(&self) -> bool {
        self.mode == Mode::App
    }
}

/// A proven plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Transport.
    pub via: Via,
    /// Writes in order (empty = nothing to do).
    pub steps: Vec<Step>,
    /// Requested files already installed (same SHA-256), with a note each.
    pub skipped: Vec<String>,
    /// The predicted final state.
    pub prediction: Prediction,
}

impl Plan {
    /// Total bytes written.
    pub fn bytes(&self) -> usize {
        self.steps.iter().map(Step::bytes).sum()
    }
}

/// A module the plan needs and cannot find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The slot.
    pub slot: ModuleRef,
    /// Lowest acceptable version.
    pub min_version: u16,
    /// Who needs it.
    pub needed_by: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} \u{2265} {}", self.slot, self.min_version)?;
        if self.slot.function == ModuleFunction::SystemPart {
            if let Some(r) = first_release_with(self.min_version) {
                write!(f, " (e.g. Device OS {r})")?;
            }
        }
        write!(f, ", needed by {}", self.needed_by)
    }
}

fn first_release_with(version: u16) -> Option<&'static str> {
    modflash_module::release::RELEASES
        .iter()
        .find(|r| r.system_version >= version)
        .map(|r| r.name)
}

/// Why there is no plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// A requested file must not go to this device.
    #[error("{file}: {reason}")]
    #[diagnostic(code(modflash::plan::refused), help("{help}"))]
    Refused {
        /// The file.
        file: String,
        /// Why, in a sentence.
        reason: String,
        /// What to do.
        help: String,
    },
    /// Modules the plan needs are not available.
    #[error("no plan: the device needs {}", .missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    #[diagnostic(code(modflash::plan::missing), help("{help}"))]
    Missing {
        /// What is missing.
        missing: Vec<Missing>,
        /// What to do.
        help: String,
    },
    /// No order of the available modules is accepted by the device on this transport.
    #[error("no plan over {via}: {reason}")]
    #[diagnostic(code(modflash::plan::no_order), help("{help}"))]
    NoOrder {
        /// Transport.
        via: &'static str,
        /// What blocks every order.
        reason: String,
        /// What to do.
        help: String,
    },
    /// The planner's model and the device twin disagreed (a bug; nothing was written).
    #[error("the plan did not survive the dry run on the device twin: {0}")]
    #[diagnostic(
        code(modflash::plan::unproven),
        help("please report this; nothing was written")
    )]
    Unproven(String),
}

impl PlanError {
    /// Every planning failure is a failed check (exit code 1): nothing was written.
    pub fn is_check_failure(&self) -> bool {
        true
    }
}

/// Checks the user named to override (`--force CHECK`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Force {
    /// Allow a final state where dependencies are unmet (the device will be in safe mode).
    pub dependencies: bool,
}

/// Everything the planner needs.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// A twin of the device as it is now.
    pub twin: &'a Device,
    /// Modules the user asked for (in argument order).
    pub targets: Vec<Candidate>,
    /// Modules available to meet dependencies.
    pub catalog: &'a Catalog,
    /// Transport.
    pub via: Via,
    /// Overrides.
    pub force: Force,
    /// Write user parts to the factory-reset slot instead of the application slot.
    pub factory: bool,
}

// ---- header-level model ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Hdr {
    version: u16,
    deps: [Dependency; 2],
    /// Candidate id, or None for what was installed at the start.
    id: Option<usize>,
    intact: bool,
    /// Flash bytes the module occupies: `[start, end + 4)`.
    extent: (u32, u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct State {
    slots: BTreeMap<ModuleRef, Hdr>,
    /// A bootloader staged in the OTA region with the DCT flag set (DFU path).
    staged: Option<usize>,
    /// Factory slot content (candidate id).
    factory: Option<usize>,
    /// Install-order ranks written so far, as a bit set (see [`install_rank`]).
    ranks_written: u32,
}

/// The model's view of one platform.
struct Model<'a> {
    platform: &'static Platform,
    pool: &'a [Candidate],
}

/// A model state as the Device OS rules read it, under the memory map it implies.
struct View<'a> {
    state: &'a State,
    layout: &'static Layout,
}

impl Installed for View<'_> {
    fn has_region(&self, slot: ModuleRef) -> bool {
        self.layout.find_bounds(slot).is_some()
    }

    fn version(&self, slot: ModuleRef) -> Option<u16> {
        self.state.slots.get(&slot).map(|h| h.version)
    }

    fn modules(&self) -> impl Iterator<Item = Header> + '_ {
        self.state
            .slots
            .iter()
            .filter(|(slot, _)| self.layout.main_bounds(**slot).is_some())
            .map(|(&slot, h)| Header {
                slot,
                version: h.version,
                dependencies: h.deps,
            })
    }

    fn part(&self, slot: ModuleRef) -> Part {
        // The model does not track platforms: it only installs modules of this one.
        self.state
            .slots
            .get(&slot)
            .map_or(Part::Missing, |h| Part::Present {
                platform_ok: true,
                intact: h.intact,
            })
    }
}

fn hdr_of(c: &Candidate, id: usize) -> Hdr {
    Hdr {
        version: c.info.version,
        deps: c.info.dependencies,
        id: Some(id),
        intact: true,
        extent: extent_of(c.info.start_address, c.info.end_address),
    }
}

fn extent_of(start: u32, end: u32) -> (u32, u32) {
    (start, end.saturating_add(4).max(start))
}

/// True when writing `c` would overwrite a module of another slot installed in `s` (a DFU
/// write is raw: nothing stops a module built for a newer memory map from landing on a
/// module of the current one).
fn overwrites_another(s: &State, c: &Candidate) -> bool {
    let (start, end) = extent_of(c.info.start_address, c.info.end_address);
    s.slots
        .iter()
        .any(|(slot, h)| *slot != c.slot() && h.extent.0 < end && start < h.extent.1)
}

impl Model<'_> {
    fn layout(&self, s: &State) -> &'static Layout {
        let version = s
            .slots
            .get(&ModuleRef::new(ModuleFunction::SystemPart, 1))
            .map(|h| h.version);
        self.platform
            .layout_for(version)
            .expect("planned platforms have a memory map")
    }

    /// The state as the rules read it.
    fn view<'s>(&self, s: &'s State) -> View<'s> {
        View {
            state: s,
            layout: self.layout(s),
        }
    }

    /// Would the device accept `c` over serial (OTA validation, spec §7.1)? The reason in
    /// words when not.
    fn ota_accepts(&self, s: &State, id: usize) -> Result<(), String> {
        let c = &self.pool[id];
        let view = self.view(s);
        let layout = view.layout;
        let slot = c.slot();
        let refusal = rules::ota_fits(layout, c.bytes.len())
            .and_then(|()| rules::ota_accepts(&view, layout, self.platform.id, &c.info, true));
        // As the device words it, with a typographic minus: "dependency check failed (−1340)".
        let label = |r: &OtaRefusal| (r.code().name(), r.code().code().unsigned_abs());
        refusal.map_err(|r| match r {
            OtaRefusal::NotFound => {
                let (name, number) = label(&r);
                format!(
                    "the installed system firmware has no region for a {slot} ending at {:#010x} ({name}, \u{2212}{number})",
                    c.info.end_address
                )
            }
            OtaRefusal::TooLarge { .. } => format!(
                "the {slot} does not fit the {} KB OTA region",
                layout.ota.max_size / 1024
            ),
            OtaRefusal::Dependencies(u) => {
                let (name, number) = label(&r);
                let d = u.required;
                let needed = ModuleRef::new(d.function, d.index);
                let example = match (d.function, first_release_with(d.version)) {
                    (ModuleFunction::SystemPart, Some(r)) => format!(" (e.g. Device OS {r})"),
                    _ => String::new(),
                };
                format!(
                    "{name} (\u{2212}{number}): {slot} needs {needed} \u{2265} {}, installed {}; \
                     a serial plan needs a {needed} \u{2265} {}{example} in the catalogue to install first",
                    d.version,
                    u.installed.map_or("none".into(), |v| v.to_string()),
                    d.version
                )
            }
            OtaRefusal::DependenciesFull(u) => {
                let (name, number) = label(&r);
                format!(
                    "{name} (\u{2212}{number}): the installed {} needs {slot} \u{2265} {}",
                    u.module, u.required.version
                )
            }
            OtaRefusal::Platform(_) | OtaRefusal::Integrity => r.to_string(),
        })
    }

    fn install(&self, s: &State, id: usize) -> State {
        let mut n = s.clone();
        n.slots
            .insert(self.pool[id].slot(), hdr_of(&self.pool[id], id));
        n
    }

    /// Whether the system firmware starts ([`rules::system_runnable`]).
    fn system_runs(&self, s: &State) -> bool {
        let view = self.view(s);
        rules::system_runnable(&view, self.platform, view.layout).is_ok()
    }

    /// The system's part in a boot: Electron installs its embedded bootloader; a staged
    /// bootloader is applied. Returns None when the system cannot start.
    fn boot(&self, s: &State) -> Option<State> {
        if !self.system_runs(s) {
            return None;
        }
        let mut n = s.clone();
        let boot_slot = ModuleRef::new(ModuleFunction::Bootloader, 0);
        if let Some(update) = rules::embedded_bootloader_update(&self.view(&n), self.platform) {
            n.slots.insert(
                boot_slot,
                Hdr {
                    version: update.version,
                    deps: [Dependency::NONE; 2],
                    id: None,
                    intact: true,
                    extent: n.slots.get(&boot_slot).map_or((0, 0), |h| h.extent),
                },
            );
        }
        if let Some(id) = n.staged.take() {
            let h = hdr_of(&self.pool[id], id);
            let header = Header::of(&self.pool[id].info);
            if rules::dependencies(&self.view(&n), &header, true).is_ok() {
                n.slots.insert(boot_slot, h);
            }
        }
        Some(n)
    }

    /// Every module's listed dependencies hold ([`rules::listed_dependencies_met`]), also for
    /// a module the installed memory map has no region for yet (an app built for a newer map
    /// needs that map's system part).
    fn consistent(&self, s: &State) -> Result<(), Missing> {
        let view = self.view(s);
        for (&slot, h) in &s.slots {
            let header = Header {
                slot,
                version: h.version,
                dependencies: h.deps,
            };
            rules::listed_dependencies_met(&view, &header).map_err(|u| Missing {
                slot: ModuleRef::new(u.required.function, u.required.index),
                min_version: u.required.version,
                needed_by: format!("{slot} version {}", h.version),
            })?;
        }
        Ok(())
    }
}

// ---- planning -------------------------------------------------------------------------------

/// Particle's install order for a slot: its position in the module list of the platform's
/// newest known release (bootloader, radio stack, system parts in the order their
/// dependencies need — Electron: index 3, 1, 2 — then the application).
fn install_rank(platform: &Platform, slot: ModuleRef) -> u8 {
    let order = platform_releases(platform)
        .last()
        .map(|r| r.modules)
        .unwrap_or_default();
    let pos = order
        .iter()
        .position(|m| m.function == slot.function && m.index == slot.index)
        .unwrap_or(order.len());
    u8::try_from(pos + 1).unwrap_or(u8::MAX)
}

/// Finds and proves a plan.
pub fn plan(req: &Request<'_>) -> Result<Plan, PlanError> {
    let twin = req.twin;
    let platform = twin.platform();
    // Gate every requested file.
    for t in &req.targets {
        gate(platform, t, req)?;
    }
    // Candidate pool: targets first (ids 0..n), then the catalogue for this platform.
    let mut pool: Vec<Candidate> = req.targets.clone();
    for c in req.catalog.for_platform(platform.id) {
        if !req
            .targets
            .iter()
            .any(|p| p.sha256 == c.sha256 && p.info == c.info)
        {
            pool.push(c.clone());
        }
    }
    let model = Model {
        platform,
        pool: &pool,
    };
    let start = initial_state(twin);
    // Skip what is already installed (same SHA-256 in the same slot).
    let hal = twin.hal();
    let mut skipped = Vec::new();
    let mut targets = Vec::new();
    for (id, t) in req.targets.iter().enumerate() {
        let installed = hal
            .system_info()
            .into_iter()
            .find(|f| {
                f.bounds.store
                    == if req.factory {
                        Store::Factory
                    } else {
                        Store::Main
                    }
                    && f.info.is_some_and(|i| i.slot() == t.slot())
            })
            .and_then(|f| f.sha256);
        if installed == Some(t.sha256) {
            skipped.push(format!(
                "{}: already installed ({} version {}, same SHA-256)",
                t.origin,
                t.slot(),
                t.info.version
            ));
        } else {
            targets.push(id);
        }
    }
    if req.factory {
        return plan_factory(req, &pool, &targets, skipped);
    }
    let finals = choose_finals(&model, &start, &targets, req.force)?;
    let final_layout = model.layout(&final_state(&model, &start, &finals));
    let steps = search(&model, &start, &finals, req)?;
    let mut plan_steps = Vec::new();
    let mut state = start.clone();
    for id in steps {
        let c = &pool[id];
        let slot = c.slot();
        let from_version = state
            .slots
            .get(&slot)
            .map(|h| h.version)
            .filter(|&v| v != ERASED);
        let action = match req.via {
            Via::Serial => Action::Serial,
            Via::Dfu => {
                match rules::dfu_place(platform, model.layout(&state), final_layout, &c.info) {
                    Some(DfuPlace::Stage { alt, address }) => {
                        Action::DfuStageBootloader { alt, address }
                    }
                    Some(DfuPlace::Write { alt, address }) => Action::DfuWrite { alt, address },
                    None => Action::DfuWrite {
                        alt: 0,
                        address: c.info.start_address,
                    },
                }
            }
        };
        let reason = reason_for(&model, &start, &targets, &finals, id);
        state = model.install(&state, id);
        plan_steps.push(Step {
            module: c.clone(),
            action,
            from_version,
            reason,
        });
    }
    if req.via == Via::Dfu {
        invalidate_legacy_app(&mut plan_steps, &start, final_layout);
    }
    let prediction = prove(twin, &plan_steps, req.via, req.force)?;
    Ok(Plan {
        via: req.via,
        steps: plan_steps,
        skipped,
        prediction,
    })
}

fn gate(platform: &'static Platform, t: &Candidate, req: &Request<'_>) -> Result<(), PlanError> {
    let file = t.origin.to_string();
    if t.info.platform_id != platform.id {
        let theirs = modflash_module::platform(t.info.platform_id).map_or_else(
            || format!("platform {}", t.info.platform_id),
            |p| p.display_name.to_string(),
        );
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "this is a {} for the {theirs} (platform {}); the device is a {} (platform {}). Flashing it would leave the device without a working app",
                t.info.slot(),
                t.info.platform_id,
                platform.display_name,
                platform.id
            ),
            help: format!(
                "use the {} build of this firmware (--force cannot override a platform mismatch)",
                platform.display_name
            ),
        });
    }
    let has_region = platform
        .layouts()
        .iter()
        .any(|l| l.main_bounds(t.slot()).is_some());
    if !has_region {
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "the {} has no place for a {}",
                platform.display_name,
                t.slot()
            ),
            help: "check that this is the module you meant to flash".into(),
        });
    }
    if req.factory && t.info.function != ModuleFunction::UserPart {
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "only an application can go to the factory-reset slot; this is a {}",
                t.slot()
            ),
            help: "drop --factory".into(),
        });
    }
    Ok(())
}

fn initial_state(twin: &Device) -> State {
    let mut slots = BTreeMap::new();
    for f in twin.system_info() {
        if f.bounds.store != Store::Main {
            continue;
        }
        if let Some(info) = f.info {
            slots.insert(
                info.slot(),
                Hdr {
                    version: info.version,
                    deps: info.dependencies,
                    id: None,
                    intact: f.passed & modflash_device::hal::flags::INTEGRITY != 0,
                    extent: extent_of(
                        f.address,
                        f.address.saturating_add(info.module_length().unwrap_or(0)),
                    ),
                },
            );
        }
    }
    State {
        slots,
        staged: None,
        factory: None,
        ranks_written: 0,
    }
}

/// Picks the module each slot must end with: the targets, then for every unmet dependency
/// the lowest sufficient version available (preferring the dependent module's own release).
fn choose_finals(
    model: &Model<'_>,
    start: &State,
    targets: &[usize],
    force: Force,
) -> Result<BTreeMap<ModuleRef, usize>, PlanError> {
    let mut finals: BTreeMap<ModuleRef, usize> = BTreeMap::new();
    for &id in targets {
        let slot = model.pool[id].slot();
        if let Some(prev) = finals.insert(slot, id) {
            return Err(PlanError::Refused {
                file: model.pool[id].origin.to_string(),
                reason: format!(
                    "{} and this file are both a {slot}",
                    model.pool[prev].origin
                ),
                help: "name one module per slot".into(),
            });
        }
    }
    let mut missing = Vec::new();
    loop {
        let mut state = start.clone();
        for &id in finals.values() {
            state = model.install(&state, id);
        }
        let state = model.boot(&state).unwrap_or(state);
        let Err(m) = model.consistent(&state) else {
            break;
        };
        if finals.contains_key(&m.slot) {
            // A chosen module is too old for another chosen module.
            let chosen = &model.pool[finals[&m.slot]];
            return Err(PlanError::Refused {
                file: chosen.origin.to_string(),
                reason: format!(
                    "{} needs {} \u{2265} {}, but this file is version {}",
                    m.needed_by, m.slot, m.min_version, chosen.info.version
                ),
                help: "use matching modules from one Device OS release".into(),
            });
        }
        // Prefer the module of the dependent's own release (e.g. the 1.5.0 bootloader for a
        // 1.5.0 system part), then the lowest sufficient version.
        let dependent_release = m
            .needed_by
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(release_name);
        let best = model
            .pool
            .iter()
            .enumerate()
            .filter(|(_, c)| c.slot() == m.slot && c.info.version >= m.min_version)
            .min_by_key(|(id, c)| {
                let same_release = match &c.origin {
                    crate::catalog::Origin::Release { release, .. } => {
                        Some(*release) == dependent_release
                    }
                    _ => {
                        c.info.function == ModuleFunction::SystemPart
                            && release_name(c.info.version) == dependent_release
                    }
                };
                (!same_release, c.info.version, c.bytes.len(), *id)
            })
            .map(|(id, _)| id);
        match best {
            Some(id) => {
                finals.insert(m.slot, id);
            }
            None => {
                missing.push(m);
                break;
            }
        }
    }
    if !missing.is_empty() && !force.dependencies {
        return Err(PlanError::Missing {
            help: "add the module to the catalogue (`modflash catalog add FILE`, or --catalog DIR); --force dependencies flashes anyway and leaves the device in safe mode".into(),
            missing,
        });
    }
    Ok(finals)
}

/// Dijkstra over model states: cost = (bytes written, resets, steps whose result would not
/// boot, candidate ids for determinism). Serial steps must each be accepted by the device.
/// Gen3 from 3.1 runs the legacy 128 KB application (user part 1 at 0xD4000) instead of the
/// 256 KB one (user part 2) when both are valid. Over DFU nothing erases the old one, so the
/// plan erases its first page right before writing the new app (as particle-cli does); over
/// serial the device's own copy does it.
fn invalidate_legacy_app(steps: &mut Vec<Step>, start: &State, final_layout: &Layout) {
    let legacy = ModuleRef::new(ModuleFunction::UserPart, 1);
    let Some(app_at) = steps
        .iter()
        .position(|s| s.module.slot() == ModuleRef::new(ModuleFunction::UserPart, 2))
    else {
        return;
    };
    let (Some(bounds), Some(old)) = (final_layout.main_bounds(legacy), start.slots.get(&legacy))
    else {
        return;
    };
    let Some((alt, address)) = rules::dfu_address(final_layout, bounds.location, bounds.start)
    else {
        return;
    };
    if steps.iter().any(|s| s.module.slot() == legacy) {
        return;
    }
    let app = steps[app_at].module.clone();
    steps.insert(
        app_at,
        Step {
            module: app,
            action: Action::DfuErase {
                alt,
                address,
                len: 4096,
            },
            from_version: Some(old.version),
            reason: format!(
                "erase the first page of the legacy 128 KB app at {:#x} (user part 1 version {}): Device OS prefers it over the new app",
                bounds.start, old.version
            ),
        },
    );
}

/// The model state once every chosen module is installed.
fn final_state(model: &Model<'_>, start: &State, finals: &BTreeMap<ModuleRef, usize>) -> State {
    finals
        .values()
        .fold(start.clone(), |s, &id| model.install(&s, id))
}

fn search(
    model: &Model<'_>,
    start: &State,
    finals: &BTreeMap<ModuleRef, usize>,
    req: &Request<'_>,
) -> Result<Vec<usize>, PlanError> {
    const MAX_NODES: usize = 50_000;
    let final_layout = model.layout(&final_state(model, start, finals));
    // Intermediates (serial only): modules of the final slots with versions between what is
    // installed and what the slot ends with.
    let mut usable: Vec<usize> = finals.values().copied().collect();
    if req.via == Via::Serial {
        for (slot, &fid) in finals {
            let now = start.slots.get(slot).map_or(0, |h| h.version);
            let end = model.pool[fid].info.version;
            for (id, c) in model.pool.iter().enumerate() {
                if c.slot() == *slot
                    && c.info.version > now
                    && c.info.version < end
                    && !usable.contains(&id)
                {
                    usable.push(id);
                }
            }
        }
    }
    usable.sort_unstable();
    let goal = |s: &State| {
        finals.iter().all(|(slot, id)| {
            s.slots.get(slot).and_then(|h| h.id) == Some(*id) || s.staged == Some(*id)
        })
    };
    type Cost = (usize, usize, usize, usize);
    let mut best: HashMap<State, Cost> = HashMap::new();
    let mut heap = BinaryHeap::new();
    best.insert(start.clone(), (0, 0, 0, 0));
    heap.push(Reverse((
        (0usize, 0usize, 0usize, 0usize),
        Vec::<usize>::new(),
        start.clone(),
    )));
    let mut first_refusal: Option<String> = None;
    let mut nodes = 0;
    while let Some(Reverse((cost, path, s))) = heap.pop() {
        if best.get(&s).is_some_and(|c| *c < cost) {
            continue;
        }
        nodes += 1;
        if nodes > MAX_NODES {
            break;
        }
        if goal(&s) {
            let done = match req.via {
                Via::Dfu => model
                    .boot(&s)
                    .is_some_and(|b| model.consistent(&b).is_ok() || req.force.dependencies),
                Via::Serial => model.consistent(&s).is_ok() || req.force.dependencies,
            };
            if done {
                return Ok(path);
            }
        }
        for &id in &usable {
            let c = &model.pool[id];
            let slot = c.slot();
            if s.slots.get(&slot).and_then(|h| h.id) == Some(id) || s.staged == Some(id) {
                continue;
            }
            let next = match req.via {
                Via::Serial => {
                    if let Err(why) = model.ota_accepts(&s, id) {
                        first_refusal.get_or_insert(format!("{}: {why}", c.origin));
                        continue;
                    }
                    let mut installed = model.install(&s, id);
                    if slot == ModuleRef::new(ModuleFunction::UserPart, 2) {
                        // The device's copy erases the legacy app's first page (v6.2 HAL).
                        installed
                            .slots
                            .remove(&ModuleRef::new(ModuleFunction::UserPart, 1));
                    }
                    // The device resets after each module; it must come back up to take the next.
                    match model.boot(&installed) {
                        Some(b) => b,
                        None => continue,
                    }
                }
                Via::Dfu => {
                    let Some(place) =
                        rules::dfu_place(model.platform, model.layout(&s), final_layout, &c.info)
                    else {
                        continue;
                    };
                    if matches!(place, DfuPlace::Stage { .. }) {
                        // Setting the OTA flag needs the DCT.
                        let dct_reachable = rules::dct_reachable(&model.view(&s), model.platform);
                        if s.staged.is_some() || !dct_reachable {
                            continue;
                        }
                        let mut n = s.clone();
                        n.staged = Some(id);
                        n
                    } else if overwrites_another(&s, c) {
                        first_refusal.get_or_insert(format!(
                            "{}: writing it now would overwrite another installed module",
                            c.origin
                        ));
                        continue;
                    } else {
                        model.install(&s, id)
                    }
                }
            };
            let unbootable = usize::from(model.boot(&next).is_none());
            let resets = usize::from(req.via == Via::Serial);
            // Prefer Particle's install order: count the kinds already written that should
            // have come after this one.
            let rank = install_rank(model.platform, slot).min(31);
            let inversion = (s.ranks_written >> (rank + 1)).count_ones() as usize;
            let mut next = next;
            next.ranks_written |= 1 << rank;
            let ncost = (
                cost.0 + c.bytes.len(),
                cost.1 + resets,
                cost.2 + unbootable,
                cost.3 + inversion,
            );
            if best.get(&next).is_none_or(|b| ncost < *b) {
                best.insert(next.clone(), ncost);
                let mut npath = path.clone();
                npath.push(id);
                heap.push(Reverse((ncost, npath, next)));
            }
        }
    }
    Err(PlanError::NoOrder {
        via: req.via.name(),
        reason: first_refusal
            .unwrap_or_else(|| "the device would not accept any order of these modules".into()),
        help: match req.via {
            Via::Serial => {
                "add the module named above to the catalogue (`modflash catalog add FILE` or --catalog DIR), or use --via dfu, which validates nothing per step"
                    .into()
            }
            Via::Dfu => "check the catalogue".into(),
        },
    })
}

fn reason_for(
    model: &Model<'_>,
    start: &State,
    targets: &[usize],
    finals: &BTreeMap<ModuleRef, usize>,
    id: usize,
) -> String {
    let c = &model.pool[id];
    if targets.contains(&id) {
        return "requested".into();
    }
    let slot = c.slot();
    let installed = start
        .slots
        .get(&slot)
        .map(|h| h.version)
        .filter(|&v| v != ERASED);
    let needers: Vec<String> = finals
        .values()
        .filter(|&&f| f != id)
        .filter_map(|&f| {
            let fc = &model.pool[f];
            fc.info
                .listed_dependencies()
                .find(|d| {
                    d.function == slot.function
                        && d.index == slot.index
                        && d.version > installed.unwrap_or(0)
                })
                .map(|d| {
                    format!(
                        "{} {} needs {slot} \u{2265} {}",
                        fc.slot(),
                        fc.info.version,
                        d.version
                    )
                })
        })
        .collect();
    let installed_text =
        installed.map_or("none installed".to_string(), |v| format!("installed {v}"));
    if finals.values().any(|&f| f == id) {
        if needers.is_empty() {
            format!("dependency ({installed_text})")
        } else {
            format!("{} ({installed_text})", needers.join("; "))
        }
    } else {
        let release = release_name(c.info.version)
            .map(|r| format!(" (Device OS {r})"))
            .unwrap_or_default();
        format!("intermediate{release}: the device only accepts the final version once this one is installed ({installed_text})")
    }
}

fn plan_factory(
    req: &Request<'_>,
    pool: &[Candidate],
    targets: &[usize],
    skipped: Vec<String>,
) -> Result<Plan, PlanError> {
    let twin = req.twin;
    if req.via == Via::Serial {
        return Err(PlanError::NoOrder {
            via: "serial",
            reason: "the factory-reset slot cannot be written over serial".into(),
            help: "use --via dfu".into(),
        });
    }
    let layout = twin.layout();
    let mut steps = Vec::new();
    for &id in targets {
        let c = &pool[id];
        let Some((alt, address)) = rules::dfu_factory_place(layout) else {
            return Err(PlanError::Refused {
                file: c.origin.to_string(),
                reason: format!(
                    "the {} has no factory-reset slot",
                    twin.platform().display_name
                ),
                help: "drop --factory".into(),
            });
        };
        steps.push(Step {
            module: c.clone(),
            action: Action::DfuWrite { alt, address },
            from_version: None,
            reason: "requested (factory-reset image)".into(),
        });
    }
    let prediction = prove(twin, &steps, Via::Dfu, req.force)?;
    Ok(Plan {
        via: Via::Dfu,
        steps,
        skipped,
        prediction,
    })
}

/// Replays the plan on a copy of the twin exactly as the executor will run it on a virtual
/// device, and returns the final state. Any refusal or a final state without the app running
/// (unless forced) disproves the plan.
fn prove(twin: &Device, steps: &[Step], via: Via, force: Force) -> Result<Prediction, PlanError> {
    let mut device = twin.clone();
    let mut session = crate::Session::virtual_device(&mut device, "the device twin");
    crate::exec::run_steps(
        &mut session,
        steps,
        via,
        &mut crate::progress::Quiet,
        &crate::progress::Cancel::new(),
    )
    .map_err(|e| PlanError::Unproven(e.to_string()))?;
    drop(session);
    let hal: Hal<'_> = device.hal();
    let main: Vec<_> = hal
        .system_info()
        .into_iter()
        .filter(|f| f.bounds.store == Store::Main && f.info.is_some())
        .collect();
    let modules = main
        .iter()
        .filter_map(|f| f.info.map(|i| (i.slot(), i.version)))
        .collect();
    let failing = main
        .iter()
        .filter(|f| !f.is_valid())
        .filter_map(|f| f.info.map(|i| i.slot()))
        .collect();
    let prediction = Prediction {
        mode: device.state.mode,
        led: device.state.led,
        modules,
        failing,
        events: device
            .state
            .events
            .iter()
            .rev()
            .take(8)
            .rev()
            .cloned()
            .collect(),
    };
    // A device without an application may end without one when none was asked for.
    let no_app_is_fine = prediction.mode == Mode::NoApp
        && twin.state.mode == Mode::NoApp
        && !steps
            .iter()
            .any(|s| s.module.info.function == ModuleFunction::UserPart);
    if !steps.is_empty() && prediction.mode != Mode::App && !no_app_is_fine && !force.dependencies {
        return Err(PlanError::Unproven(format!(
            "the twin ends in {} ({}): {}",
            prediction.mode.name(),
            prediction.led,
            prediction.events.last().cloned().unwrap_or_default()
        )));
    }
    Ok(prediction)
}

/// The OTA flag offset, for the executor.
pub const OTA_FLAG_OFFSET: u32 = dct::OTA_UPDATE_FLAG as u32;
