//! The memory map a picture is drawn from (sans-IO): a platform's flash memories and their
//! regions (bootloaders, system parts, applications, factory image, OTA staging, DCT), the
//! modules placed in them with the device's verdicts, how full each region is, and every
//! dependency with its verdict — of a device model ([`DeviceMap::of_device`]), of a plan's
//! before and after ([`plan_maps`]), or of module files placed where they would go
//! ([`maps_of_files`]).

mod files;

use modflash_device::hal::flags;
use modflash_device::Device;
use modflash_module::platform::{Layout, Location, ModuleBounds, Store};
use modflash_module::release::releases_installing;
use modflash_module::rules::{self, Installed, ERASED};
use modflash_module::{Dependency, ModuleFunction, ModuleInfo, ModuleRef, Platform};
use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::plan::{Action, Plan};
use crate::precheck::module_that_fixes;
use crate::session::Session;

pub use files::{maps_of_files, maps_of_paths};

/// Where a map's sizes and verdicts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The device's own flash, read directly (a virtual device): exact.
    Flash,
    /// A model rebuilt from the module list the device reported: versions, dependencies and
    /// verdicts are the device's; sizes are those of the releases' modules, estimated for
    /// modules no release has (applications).
    ModuleList,
    /// Module files, placed where they would go on their platform.
    Files,
}

impl Basis {
    /// The basis of maps drawn from `session`'s twin: exact for a virtual device.
    pub fn of_session(session: &Session<'_>) -> Self {
        if session.observe().is_some() {
            Self::Flash
        } else {
            Self::ModuleList
        }
    }
}

/// The memory map of one device (or of the files for one platform).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceMap {
    /// Platform id.
    pub platform_id: u16,
    /// The platform's name for people ("Photon").
    pub platform: &'static str,
    /// The memory map in force (`"electron-0.5"`, `"gen3-3.1"`, ...).
    pub layout: &'static str,
    /// Where sizes and verdicts come from.
    pub basis: Basis,
    /// The system firmware in words ("Device OS 0.5.2"); none for files.
    pub system: Option<String>,
    /// The device's mode (`"app"`, `"safe_mode"`, ...); none for files.
    pub mode: Option<&'static str>,
    /// Its LED ("breathing cyan"); none for files.
    pub led: Option<String>,
    /// Internal flash first, then external flash.
    pub memories: Vec<Memory>,
    /// Every dependency of every placed module, with the device's verdict.
    pub dependencies: Vec<Edge>,
    /// Files that have no place on this platform.
    pub unplaced: Vec<Unplaced>,
}

/// One flash memory and its regions.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// `"internal"` or `"external"`.
    pub name: &'static str,
    /// First address.
    pub start: u32,
    /// Address just past the memory.
    pub end: u32,
    /// Regions in address order (the OTA region may overlap others, as on the Photon).
    pub regions: Vec<Region>,
}

/// What a region is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// A module region of the memory map.
    Module,
    /// The OTA staging area.
    Ota,
    /// The device configuration tables (two copies): keys, claim code, OTA flags.
    Dct,
}

/// One region of a memory.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    /// What it is for.
    pub kind: RegionKind,
    /// Function of the module it holds (module regions only).
    #[serde(serialize_with = "optional_function_name")]
    pub function: Option<ModuleFunction>,
    /// Index of the module it holds (module regions only).
    pub index: Option<u8>,
    /// Running copy or factory image (module regions only).
    #[serde(serialize_with = "store_name")]
    pub store: Option<Store>,
    /// First address.
    pub start: u32,
    /// Address just past the region.
    pub end: u32,
    /// Bytes the modules placed here take (the whole region for the DCT).
    pub used: u32,
    /// Modules found (or placed) here: one on a device; files may put several in one region.
    pub modules: Vec<Placed>,
}

impl Region {
    /// Its size in bytes.
    pub fn size(&self) -> u32 {
        self.end - self.start
    }

    /// The slot its modules belong to (module regions only).
    pub fn slot(&self) -> Option<ModuleRef> {
        Some(ModuleRef::new(self.function?, self.index?))
    }

    /// "system part 1", "user part 1 (factory)", "OTA staging", "DCT".
    pub fn name(&self) -> String {
        match (self.kind, self.slot()) {
            (RegionKind::Ota, _) => "OTA staging".into(),
            (RegionKind::Dct, _) => "DCT".into(),
            (RegionKind::Module, Some(slot)) => match self.store {
                Some(Store::Main) | None => slot.to_string(),
                Some(store) => format!("{slot} ({})", store.name()),
            },
            (RegionKind::Module, None) => "module region".into(),
        }
    }

    /// Every module here passes every check (and there is at least one).
    pub fn valid(&self) -> bool {
        !self.modules.is_empty() && self.modules.iter().all(|m| m.valid())
    }
}

/// A check a module can fail, as the device names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Its CRC-32 does not match.
    Integrity,
    /// It does not end inside its region (or the device finds no region for it).
    Range,
    /// It is built for another platform.
    Platform,
    /// One of its dependencies is not met.
    Dependencies,
}

impl Check {
    /// "integrity", "range", "platform", "dependencies".
    pub fn name(self) -> &'static str {
        match self {
            Self::Integrity => "integrity",
            Self::Range => "range",
            Self::Platform => "platform",
            Self::Dependencies => "dependencies",
        }
    }
}

/// A module where it sits in flash.
#[derive(Clone, Debug, Serialize)]
pub struct Placed {
    /// Its function.
    #[serde(serialize_with = "function_name")]
    pub function: ModuleFunction,
    /// Its index.
    pub index: u8,
    /// Its version.
    pub version: u16,
    /// The Device OS releases that install this module version on this platform.
    pub releases: Vec<&'static str>,
    /// The platform it is built for.
    pub platform_id: u16,
    /// First address.
    pub start: u32,
    /// Bytes it takes in flash (header to CRC, clipped to its region).
    pub size: u32,
    /// The checks it fails (empty: valid).
    pub failed: Vec<Check>,
    /// The file it comes from (maps of files).
    pub file: Option<String>,
    /// The plan writes it (the "after" map of a plan).
    pub written: bool,
}

impl Placed {
    /// Passes every check.
    pub fn valid(&self) -> bool {
        self.failed.is_empty()
    }

    /// The slot it occupies.
    pub fn slot(&self) -> ModuleRef {
        ModuleRef::new(self.function, self.index)
    }
}

/// The verdict on one dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The installed version is high enough.
    Met,
    /// The region is erased: the device's check passes though nothing is there.
    Erased,
    /// Dependency 1 is empty, so the device never examines this one.
    NotExamined,
    /// None of the files is that module (maps of files).
    NotGiven,
    /// The installed version is too low.
    Unmet,
    /// The platform has no such module.
    NoRegion,
}

impl Verdict {
    /// The device's check fails on it.
    pub fn fails(self) -> bool {
        matches!(self, Self::Unmet | Self::NoRegion)
    }
}

/// A dependency of a placed module, and what the device finds.
#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    /// The dependent module's function.
    #[serde(serialize_with = "function_name")]
    pub function: ModuleFunction,
    /// The dependent module's index.
    pub index: u8,
    /// The dependent module's region: running copy or factory image.
    #[serde(serialize_with = "store_name")]
    pub store: Option<Store>,
    /// The dependent module's version.
    pub version: u16,
    /// What it needs: function, index and lowest version.
    #[serde(serialize_with = "dependency_json")]
    pub needs: Dependency,
    /// The version the device reads in that slot (65535 for an erased region), when it has
    /// the region and something is there.
    pub installed: Option<u16>,
    /// The verdict.
    pub verdict: Verdict,
    /// For a failed dependency, the module that meets it, in words.
    pub fix: Option<String>,
}

impl Edge {
    /// The dependent module's slot.
    pub fn slot(&self) -> ModuleRef {
        ModuleRef::new(self.function, self.index)
    }

    /// The slot it needs.
    pub fn target(&self) -> ModuleRef {
        ModuleRef::new(self.needs.function, self.needs.index)
    }
}

/// A file that has no place on its platform.
#[derive(Clone, Debug, Serialize)]
pub struct Unplaced {
    /// The file.
    pub file: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// The maps a plan is drawn with: the device as it is, and as the plan leaves it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanMaps {
    /// The device before the plan (its twin).
    pub before: DeviceMap,
    /// The device after the plan, as predicted: the plan replayed on a copy of the twin.
    pub after: DeviceMap,
}

impl DeviceMap {
    /// The map of a device model: every region of its memory map in force, what the HAL
    /// finds there, and every dependency as the device checks it.
    pub fn of_device(device: &Device, basis: Basis) -> Self {
        let hal = device.hal();
        let platform = device.platform();
        let layout = hal.layout;
        let mut regions = Vec::new();
        let mut dependencies = Vec::new();
        for f in hal.system_info() {
            let found = match (f.info, hal.read_info(f.bounds)) {
                (Some(info), _) => Some((info, f.address, failed_checks(f.checked & !f.passed))),
                // A header the HAL does not accept in this region: drawn, failing range.
                (None, Some((info, start))) if plausible(&info) => {
                    let mut failed = vec![Check::Range];
                    if info.platform_id != platform.id {
                        failed.push(Check::Platform);
                    }
                    Some((info, start, failed))
                }
                (None, _) => None,
            };
            let module = found.map(|(info, start, failed)| {
                let m = placed(platform, f.bounds, &info, start, failed);
                let store = Some(f.bounds.store);
                dependencies.extend(edges(&hal, platform, store, &m, info.dependencies));
                m
            });
            regions.push((f.bounds.location, module_region(f.bounds, module)));
        }
        regions.extend(fixed_regions(platform, layout));
        DeviceMap {
            platform_id: platform.id,
            platform: platform.display_name,
            layout: layout.name,
            basis,
            system: Some(device.system_words()),
            mode: Some(device.state.mode.name()),
            led: Some(device.state.led.to_string()),
            memories: memories(layout, regions),
            dependencies,
            unplaced: Vec::new(),
        }
    }

    /// Every placed module, with the region it is in.
    pub fn modules(&self) -> impl Iterator<Item = (&Region, &Placed)> {
        self.memories
            .iter()
            .flat_map(|m| &m.regions)
            .flat_map(|r| r.modules.iter().map(move |m| (r, m)))
    }

    /// Every module passes every check.
    pub fn all_valid(&self) -> bool {
        self.modules().all(|(_, m)| m.valid())
    }
}

/// The map of the device `session` opens: its twin (an exact copy of a virtual device, a
/// model rebuilt from the module list of a real one).
pub fn map_of_session(
    session: &mut Session<'_>,
    observer: &mut dyn crate::progress::Observer,
) -> Result<DeviceMap, Error> {
    let twin = session.twin(observer)?;
    Ok(DeviceMap::of_device(&twin, Basis::of_session(session)))
}

/// The device before `plan` (its `twin`) and after it: the plan replayed on a copy of the
/// twin, as it was proven, its written modules marked.
pub fn plan_maps(twin: &Device, plan: &Plan, basis: Basis) -> Result<PlanMaps, Error> {
    let after_device = crate::plan::replay(twin, &plan.steps, plan.via)?;
    let mut after = DeviceMap::of_device(&after_device, basis);
    let store = if plan.factory {
        Store::Factory
    } else {
        Store::Main
    };
    for step in &plan.steps {
        if matches!(step.action, Action::DfuErase { .. }) {
            continue;
        }
        let written = step.module.slot();
        let regions = after.memories.iter_mut().flat_map(|m| &mut m.regions);
        for region in regions.filter(|r| r.slot() == Some(written) && r.store == Some(store)) {
            for m in &mut region.modules {
                m.written = true;
            }
        }
    }
    Ok(PlanMaps {
        before: DeviceMap::of_device(twin, basis),
        after,
    })
}

/// A header worth drawing: it ends after it starts and names a module function.
fn plausible(info: &ModuleInfo) -> bool {
    info.end_address > info.start_address && !matches!(info.function, ModuleFunction::Unknown(_))
}

/// The failed checks of a `validity_checked & !validity_result` mask.
fn failed_checks(mask: u8) -> Vec<Check> {
    [
        (flags::INTEGRITY, Check::Integrity),
        (flags::RANGE, Check::Range),
        (flags::PLATFORM, Check::Platform),
        (
            flags::DEPENDENCIES | flags::DEPENDENCIES_FULL,
            Check::Dependencies,
        ),
    ]
    .into_iter()
    .filter(|(bits, _)| mask & bits != 0)
    .map(|(_, check)| check)
    .collect()
}

/// A module at `start` in `bounds`, its size clipped to the region.
fn placed(
    platform: &Platform,
    bounds: &ModuleBounds,
    info: &ModuleInfo,
    start: u32,
    failed: Vec<Check>,
) -> Placed {
    let start = start.clamp(bounds.lowest_start(), bounds.end);
    let length = info.file_length().unwrap_or(0);
    let size = u32::try_from(length)
        .unwrap_or(u32::MAX)
        .min(bounds.end - start);
    Placed {
        function: info.function,
        index: info.index,
        version: info.version,
        releases: releases_installing(platform, info.function, info.index, info.version).collect(),
        platform_id: info.platform_id,
        start,
        size,
        failed,
        file: None,
        written: false,
    }
}

/// The region of `bounds`, holding `module` if any.
fn module_region(bounds: &ModuleBounds, module: Option<Placed>) -> Region {
    let modules: Vec<Placed> = module.into_iter().collect();
    Region {
        kind: RegionKind::Module,
        function: Some(bounds.function),
        index: Some(bounds.index),
        store: Some(bounds.store),
        start: bounds.lowest_start(),
        end: bounds.end,
        used: used(bounds.end - bounds.lowest_start(), &modules),
        modules,
    }
}

/// Bytes `modules` take, at most `size`.
fn used(size: u32, modules: &[Placed]) -> u32 {
    modules
        .iter()
        .fold(0u32, |sum, m| sum.saturating_add(m.size))
        .min(size)
}

/// The regions every device of `platform` has besides module regions: OTA staging and DCT.
fn fixed_regions(platform: &Platform, layout: &Layout) -> [(Location, Region); 2] {
    let ota = &layout.ota;
    let dct = rules::dct_area(platform);
    let region = |kind, start, end, used| Region {
        kind,
        function: None,
        index: None,
        store: None,
        start,
        end,
        used,
        modules: Vec::new(),
    };
    [
        (ota.location, region(RegionKind::Ota, ota.start, ota.end, 0)),
        (
            dct.location,
            region(
                RegionKind::Dct,
                dct.start(),
                dct.end(),
                dct.end() - dct.start(),
            ),
        ),
    ]
}

/// The regions sorted into the layout's memories, each in address order; a region in a
/// memory the layout does not have is left out.
fn memories(layout: &Layout, regions: Vec<(Location, Region)>) -> Vec<Memory> {
    let mut out = Vec::new();
    for (location, memory) in [
        (Location::Internal, Some(&layout.internal)),
        (Location::External, layout.external.as_ref()),
    ] {
        let Some(memory) = memory else { continue };
        let mut mine: Vec<Region> = regions
            .iter()
            .filter(|(l, _)| *l == location)
            .map(|(_, r)| r.clone())
            .collect();
        mine.sort_by_key(|r| (r.start, r.end));
        out.push(Memory {
            name: memory.name,
            start: memory.base,
            end: memory.end(),
            regions: mine,
        });
    }
    out
}

/// The dependencies of module `m` (listed in `dependencies`, header order) as the device
/// checks them against `installed` (spec §5.3: dependency 2 is not examined when 1 is empty).
fn edges(
    installed: &impl Installed,
    platform: &Platform,
    store: Option<Store>,
    m: &Placed,
    dependencies: [Dependency; 2],
) -> Vec<Edge> {
    let first_empty = dependencies[0].is_none();
    dependencies
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.is_none())
        .map(|(i, &dep)| {
            let (verdict, found) = if i == 1 && first_empty {
                (Verdict::NotExamined, None)
            } else {
                match rules::check_dependency(installed, m.slot(), dep) {
                    Ok(ERASED) => (Verdict::Erased, Some(ERASED)),
                    Ok(v) => (Verdict::Met, Some(v)),
                    Err(unmet) if unmet.installed.is_none() => (Verdict::NoRegion, None),
                    Err(unmet) => (Verdict::Unmet, unmet.installed),
                }
            };
            edge(platform, store, m, dep, verdict, found)
        })
        .collect()
}

fn edge(
    platform: &Platform,
    store: Option<Store>,
    m: &Placed,
    needs: Dependency,
    verdict: Verdict,
    installed: Option<u16>,
) -> Edge {
    Edge {
        function: m.function,
        index: m.index,
        store,
        version: m.version,
        needs,
        installed,
        verdict,
        fix: verdict
            .fails()
            .then(|| module_that_fixes(platform.id, &needs)),
    }
}

fn function_name<S: Serializer>(
    function: &ModuleFunction,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    function.name().serialize(serializer)
}

fn optional_function_name<S: Serializer>(
    function: &Option<ModuleFunction>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    function.map(ModuleFunction::name).serialize(serializer)
}

fn store_name<S: Serializer>(store: &Option<Store>, serializer: S) -> Result<S::Ok, S::Error> {
    store.map(Store::name).serialize(serializer)
}

fn dependency_json<S: Serializer>(dep: &Dependency, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({
        "function": dep.function.name(),
        "index": dep.index,
        "version": dep.version,
    })
    .serialize(serializer)
}
