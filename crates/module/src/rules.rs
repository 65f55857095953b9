//! Device OS rules, written once: dependency satisfaction (spec §5.3, §5.4), whether the system
//! firmware can start, the Electron's embedded bootloader, OTA acceptance and its result codes
//! (§5.7, §7.1), the MBR's bootloader staging (§6.3), which USB control requests a release
//! answers, and where DFU puts a module, what it must not write, and how alternate-setting
//! addresses map to flash (§9); whether an application's assets are there; and what Device
//! Protection lets DFU and an update do (Device OS 6.x).
//!
//! The functions are pure and read the device through [`Installed`], which the device model's
//! HAL, a device's reported inventory and the planner's model each implement, so the virtual
//! device, the pre-checks and the planner judge a module the same way.

use core::fmt;

use crate::asset::AssetRef;
use crate::header::{Dependency, ModuleFunction, ModuleInfo, ModuleRef};
use crate::platform::{
    dct, AssetStorage, Family, Layout, Location, Mcu, ModuleBounds, Platform, Store,
};
use crate::release::{platform_releases, ReleaseModule};

// ---- what is installed ----------------------------------------------------------------------

/// The version the dependency check reads from an erased region (all 0xFF). Because the check
/// does not validate the module it reads, an erased region satisfies any dependency.
pub const ERASED: u16 = 0xFFFF;

/// What the rules read from a module's header: its slot, version and dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The (function, index) slot the module occupies.
    pub slot: ModuleRef,
    /// Module version.
    pub version: u16,
    /// Both dependency fields, empty ones included (their order matters, see [`dependencies`]).
    pub dependencies: [Dependency; 2],
}

impl Header {
    /// The rules' view of a parsed header.
    pub const fn of(info: &ModuleInfo) -> Self {
        Self {
            slot: info.slot(),
            version: info.version,
            dependencies: info.dependencies,
        }
    }
}

/// What the system's start-up check finds in the running-copy region of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// No module: the region is erased or unreadable, or its header ends outside its region.
    Missing,
    /// The header there names another slot.
    Other(ModuleRef),
    /// The slot's own module.
    Present {
        /// Built for this platform.
        platform_ok: bool,
        /// Its CRC-32 matches.
        intact: bool,
    },
}

/// What is installed on a device, as Device OS' rules look at it, for the memory map in force.
pub trait Installed {
    /// Whether the device has a region for `slot` (`find_module_bounds`: the first region of
    /// that function and index, whatever its store).
    fn has_region(&self, slot: ModuleRef) -> bool;

    /// The version in the header found in `slot`'s region, read without validating that
    /// module; `None` when no header can be read there. Either way an erased region counts as
    /// [`ERASED`] (see [`installed_version`]).
    fn version(&self, slot: ModuleRef) -> Option<u16>;

    /// The header of every module in a running-copy region of the memory map in force.
    fn modules(&self) -> impl Iterator<Item = Header> + '_;

    /// What the running-copy region of `slot` holds, as the system's start-up check sees it.
    fn part(&self, slot: ModuleRef) -> Part;
}

/// The version the dependency check reads for `slot`: the header's version; [`ERASED`] when the
/// region holds none; `None` when the device has no region for `slot` (which fails any
/// dependency on it).
pub fn installed_version(installed: &impl Installed, slot: ModuleRef) -> Option<u16> {
    installed
        .has_region(slot)
        .then(|| installed.version(slot).unwrap_or(ERASED))
}

// ---- dependencies (spec §5.3, §5.4) ---------------------------------------------------------

/// A dependency that is not met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Unmet {
    /// The module whose dependency failed (for DEPENDENCIES_FULL: the installed module).
    pub module: ModuleRef,
    /// What it requires.
    pub required: Dependency,
    /// What is installed (`None` when the platform has no such module).
    pub installed: Option<u16>,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let required = ModuleRef::new(self.required.function, self.required.index);
        match self.installed {
            Some(v) => write!(
                f,
                "{} needs {required} \u{2265} {}, installed {v}",
                self.module, self.required.version
            ),
            None => write!(
                f,
                "{} needs {required} \u{2265} {}, which this platform does not have",
                self.module, self.required.version
            ),
        }
    }
}

/// One dependency of `module` as the device checks it: the installed version (read as
/// [`installed_version`] reads it) must be at least the required one. Returns the installed
/// version when met.
pub fn check_dependency(
    installed: &impl Installed,
    module: ModuleRef,
    dep: Dependency,
) -> Result<u16, Unmet> {
    match installed_version(installed, ModuleRef::new(dep.function, dep.index)) {
        Some(v) if v >= dep.version => Ok(v),
        version => Err(Unmet {
            module,
            required: dep,
            installed: version,
        }),
    }
}

/// `validate_module_dependencies(userOptional)` (spec §5.3), quirks included: when dependency 1
/// is empty, dependency 2 is not examined at all; `user_optional` skips an application's
/// dependencies and a bootloader as dependency 2; an erased region satisfies any dependency;
/// no region on the platform fails it. Not transitive.
pub fn dependencies(
    installed: &impl Installed,
    module: &Header,
    user_optional: bool,
) -> Result<(), Unmet> {
    let [first, second] = module.dependencies;
    if first.is_none() || (user_optional && module.slot.function == ModuleFunction::UserPart) {
        return Ok(());
    }
    check_dependency(installed, module.slot, first)?;
    if second.is_none() || (user_optional && second.function == ModuleFunction::Bootloader) {
        return Ok(());
    }
    check_dependency(installed, module.slot, second).map(|_| ())
}

/// `validate_module_dependencies_full` (spec §5.4): installing system part `candidate` must
/// not break an installed system part that depends on the slot it replaces. (Device OS also
/// compares start addresses to recognise the part being replaced; a part never depends on its
/// own slot, so the slot decides.)
pub fn dependencies_full(installed: &impl Installed, candidate: &Header) -> Result<(), Unmet> {
    if candidate.slot.function != ModuleFunction::SystemPart {
        return Ok(());
    }
    let broken = installed
        .modules()
        .filter(|m| m.slot.function == ModuleFunction::SystemPart && m.slot != candidate.slot)
        .find_map(|m| {
            m.dependencies
                .iter()
                .find(|d| {
                    d.function == candidate.slot.function
                        && d.index == candidate.slot.index
                        && candidate.version < d.version
                })
                .map(|&d| Unmet {
                    module: m.slot,
                    required: d,
                    installed: Some(candidate.version),
                })
        });
    broken.map_or(Ok(()), Err)
}

/// Whether every dependency `module` lists is met by a real module: unlike the device's own
/// check ([`dependencies`]) both fields are examined and an erased region does not count. This
/// is what a finished installation must satisfy.
pub fn listed_dependencies_met(installed: &impl Installed, module: &Header) -> Result<(), Unmet> {
    for &dep in module.dependencies.iter().filter(|d| !d.is_none()) {
        let version = installed_version(installed, ModuleRef::new(dep.function, dep.index));
        if !version.is_some_and(|v| v != ERASED && v >= dep.version) {
            return Err(Unmet {
                module: module.slot,
                required: dep,
                installed: version,
            });
        }
    }
    Ok(())
}

// ---- system start (spec §6) -----------------------------------------------------------------

/// Why the system firmware cannot start (it crashes: red SOS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotRunnable {
    /// A system-part region holds no module.
    Missing(&'static ModuleBounds),
    /// A system-part region holds the header of another slot.
    Other {
        /// The region.
        region: &'static ModuleBounds,
        /// The slot its header names.
        found: ModuleRef,
    },
    /// A system part fails a check the start depends on.
    Corrupt {
        /// The region.
        region: &'static ModuleBounds,
        /// It is built for another platform.
        platform: bool,
        /// Its CRC does not match (counted for the part the bootloader jumps into, and for
        /// every part on the Electron).
        integrity: bool,
    },
}

/// Whether the system firmware can start: every system-part (or monolithic) region of `layout`
/// holds its module, built for this platform; the part the bootloader jumps into is intact,
/// and on the Electron (which skips `HAL_Core_Validate_Modules`) every part. A later Photon/P1
/// part with a bad CRC is caught by that validation instead (safe mode, spec §6.2).
pub fn system_runnable(
    installed: &impl Installed,
    platform: &Platform,
    layout: &Layout,
) -> Result<(), NotRunnable> {
    let electron = platform.family == Some(Family::Electron);
    let system_regions = layout.bounds.iter().filter(|b| {
        b.store == Store::Main
            && matches!(
                b.function,
                ModuleFunction::SystemPart | ModuleFunction::MonoFirmware
            )
    });
    for region in system_regions {
        let entry = region.index == 1 || region.function == ModuleFunction::MonoFirmware;
        match installed.part(region.slot()) {
            Part::Missing => return Err(NotRunnable::Missing(region)),
            Part::Other(found) => return Err(NotRunnable::Other { region, found }),
            Part::Present {
                platform_ok,
                intact,
            } => {
                let integrity = (entry || electron) && !intact;
                if !platform_ok || integrity {
                    return Err(NotRunnable::Corrupt {
                        region,
                        platform: !platform_ok,
                        integrity,
                    });
                }
            }
        }
    }
    Ok(())
}

/// First bootloader version of the Device OS 0.7.0 line: Gen2 bootloaders from it on arm the
/// watchdog and reach the DCT through system part 2.
pub const BOOTLOADER_070: u16 = 100;

/// Whether the installed bootloader is of the 0.7.0 line or later (an erased one is not).
pub fn bootloader_from_070(installed: &impl Installed) -> bool {
    installed_version(installed, ModuleRef::new(ModuleFunction::Bootloader, 0))
        .is_some_and(|v| (BOOTLOADER_070..ERASED).contains(&v))
}

/// The bootloader an Electron's system firmware installs at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootloaderUpdate {
    /// The bootloader it carries (as the release ships it).
    pub module: ReleaseModule,
    /// Its version.
    pub version: u16,
    /// The version installed now (0 when the platform has no bootloader region).
    pub installed: u16,
}

/// Electron system firmware carries a bootloader image and installs it at start when the
/// installed bootloader is older or erased (spec §4.3); `None` when nothing is to install.
pub fn embedded_bootloader_update(
    installed: &impl Installed,
    platform: &Platform,
) -> Option<BootloaderUpdate> {
    if platform.family != Some(Family::Electron) {
        return None;
    }
    let system = installed.version(ModuleRef::new(ModuleFunction::SystemPart, 1))?;
    let release = platform_releases(platform).find(|r| r.system_version == system)?;
    let version = release.embedded_bootloader?;
    let current =
        installed_version(installed, ModuleRef::new(ModuleFunction::Bootloader, 0)).unwrap_or(0);
    if current != ERASED && current >= version {
        return None;
    }
    let module = release
        .modules_for(platform)
        .find(|m| m.function == ModuleFunction::Bootloader)?;
    Some(BootloaderUpdate {
        module,
        version,
        installed: current,
    })
}

// ---- OTA (spec §5.7, §7.1) ------------------------------------------------------------------

/// Device OS OTA result codes (−1300 … −1390), defined with every other result code in
/// `modflash-control`.
pub use modflash_control::OtaCode;

/// Why the system refuses a module arriving in the OTA region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OtaRefusal {
    /// No module header, or no region for the module's slot that its end fits (−1300).
    NotFound,
    /// Built for another platform, whose id it carries (−1360).
    Platform(u16),
    /// CRC-32 mismatch (−1330).
    Integrity,
    /// One of the module's own dependencies is not met (−1340).
    Dependencies(Unmet),
    /// Installing it would break an installed system part (DEPENDENCIES_FULL, −1340).
    DependenciesFull(Unmet),
    /// The image does not fit the OTA region (−1390).
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// Bytes available.
        max: u32,
    },
}

impl OtaRefusal {
    /// The result code the device reports.
    pub const fn code(&self) -> OtaCode {
        match self {
            Self::NotFound => OtaCode::ModuleNotFound,
            Self::Platform(_) => OtaCode::InvalidPlatform,
            Self::Integrity => OtaCode::IntegrityCheckFailed,
            Self::Dependencies(_) | Self::DependenciesFull(_) => OtaCode::DependencyCheckFailed,
            Self::TooLarge { .. } => OtaCode::Failed,
        }
    }
}

impl fmt::Display for OtaRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, code) = (self.code().name(), self.code().code());
        match self {
            Self::NotFound => write!(
                f,
                "{name} ({code}): no valid module header in the OTA region"
            ),
            Self::Integrity => write!(f, "{name} ({code}): the CRC does not match"),
            Self::Dependencies(u) | Self::DependenciesFull(u) => write!(f, "{name} ({code}): {u}"),
            Self::Platform(p) => write!(f, "{name} ({code}): the module is for platform {p}"),
            Self::TooLarge { len, max } => write!(
                f,
                "the file size is higher than the allowed space ({len} > {max} bytes)"
            ),
        }
    }
}

/// Whether an update of `len` bytes fits the OTA region of `layout` (checked before a byte
/// is received).
pub fn ota_fits(layout: &Layout, len: usize) -> Result<(), OtaRefusal> {
    if len > layout.ota.max_size as usize {
        return Err(OtaRefusal::TooLarge {
            len,
            max: layout.ota.max_size,
        });
    }
    Ok(())
}

/// `HAL_FLASH_End` (spec §7.1): the system's verdict on `module` received in the OTA region of
/// a `platform_id` device whose memory map is `layout`, with `intact` its CRC result: range,
/// platform, integrity, then [`ota_dependencies`].
pub fn ota_accepts(
    installed: &impl Installed,
    layout: &Layout,
    platform_id: u16,
    module: &ModuleInfo,
    intact: bool,
) -> Result<(), OtaRefusal> {
    if module.function == ModuleFunction::Asset {
        // `fetch_module` takes an asset module as it is, on a release that keeps assets (no
        // range, platform, integrity or dependency check: the asset store checks it when it
        // stores it); a release without an asset store finds no region for it.
        let system = installed.version(ModuleRef::new(ModuleFunction::SystemPart, 1));
        let keeps = crate::platform::platform(platform_id).is_some_and(|p| has_assets(p, system));
        return if keeps {
            Ok(())
        } else {
            Err(OtaRefusal::NotFound)
        };
    }
    let in_range = layout
        .find_bounds(module.slot())
        .is_some_and(|b| b.end_in_range(module.end_address));
    if !in_range {
        return Err(OtaRefusal::NotFound);
    }
    if module.platform_id != platform_id {
        return Err(OtaRefusal::Platform(module.platform_id));
    }
    if !intact {
        return Err(OtaRefusal::Integrity);
    }
    ota_dependencies(installed, &Header::of(module))
}

/// The dependency part of OTA validation: the module's own dependencies with user dependencies
/// optional, then DEPENDENCIES_FULL.
pub fn ota_dependencies(installed: &impl Installed, module: &Header) -> Result<(), OtaRefusal> {
    dependencies(installed, module, true).map_err(OtaRefusal::Dependencies)?;
    dependencies_full(installed, module).map_err(OtaRefusal::DependenciesFull)
}

// ---- USB control requests (Device OS `system_control.h`) -----------------------------------

/// Which USB control protocol the system firmware speaks while it runs (normal, listening or
/// safe mode; the bootloader's DFU mode answers none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlProtocol {
    /// Every vendor request stalls (Device OS before 0.6.0, the Core, no firmware running).
    None,
    /// Device OS 0.6.x: raw 0x50 requests, wIndex 0 (device id), 1 (version), 2–4 (reset, DFU,
    /// listening).
    Raw06,
    /// Device OS 0.7.x: raw 0x50 requests with request-type numbers; OUT requests are queued
    /// one at a time and their reply fetched with IN on the same wIndex.
    Raw07,
    /// Device OS 0.8.0-rc.2 and later: the service requests (INIT … RESET: module info, mode
    /// changes, firmware updates) and the raw IN 20 / 30 and OUT 40 / 302 requests.
    Service,
}

/// System part 1 versions from which Device OS speaks each protocol: 0.6.0, 0.7.0,
/// 0.8.0-rc.2.
pub const CONTROL_RAW_06: u16 = 100;
/// See [`CONTROL_RAW_06`].
pub const CONTROL_RAW_07: u16 = 200;
/// See [`CONTROL_RAW_06`].
pub const CONTROL_SERVICE: u16 = 301;

/// The control protocol of the system firmware `system_version` (system part 1) on `platform`
/// when it runs.
pub fn control_protocol(platform: &Platform, system_version: Option<u16>) -> ControlProtocol {
    if platform.mcu == Mcu::Stm32f1 {
        return ControlProtocol::None;
    }
    match system_version {
        Some(v) if v == ERASED => ControlProtocol::None,
        Some(v) if v >= CONTROL_SERVICE => ControlProtocol::Service,
        Some(v) if v >= CONTROL_RAW_07 => ControlProtocol::Raw07,
        Some(v) if v >= CONTROL_RAW_06 => ControlProtocol::Raw06,
        _ => ControlProtocol::None,
    }
}

/// First nRF52840 bootloader that takes its own update through the Nordic MBR (Device OS
/// 2.0.0-rc.1: `BOOTLOADER_MBR_UPDATE_MIN_VERSION` in `hal/src/nRF52840/ota_flash_hal.cpp`).
pub const BOOTLOADER_MBR_UPDATE_FROM: u16 = 1001;

/// Where a bootloader the system accepted over OTA is staged for the Nordic MBR's copy
/// (spec §6.3): on nRF52840 with an MBR-capable bootloader installed, the start of the legacy
/// application region (the system queues it there; the bootloader backs the application up,
/// stages the image and asks the MBR, whose copy survives power cuts). `None`: the system
/// copies it over the installed bootloader at once (Gen2, RTL872x, older nRF52840
/// bootloaders), a copy a power cut leaves torn.
pub fn bootloader_mbr_stage(
    installed: &impl Installed,
    platform: &Platform,
    layout: &Layout,
) -> Option<u32> {
    let bootloader = installed_version(installed, ModuleRef::new(ModuleFunction::Bootloader, 0));
    if !bootloader_update_survives_power_loss(platform, bootloader) {
        return None;
    }
    layout
        .main_bounds(ModuleRef::new(ModuleFunction::UserPart, 1))
        .map(|b| b.start)
}

/// Whether the system's update of the bootloader survives a power cut, given the bootloader
/// installed: only the Nordic MBR's copy does (nRF52840 with a bootloader from
/// [`BOOTLOADER_MBR_UPDATE_FROM`]). Elsewhere Device OS copies the new bootloader over the old
/// one in place, with no backup: a cut during that copy leaves the device without a
/// bootloader, which only a debugger (SWD/JTAG) brings back.
pub fn bootloader_update_survives_power_loss(
    platform: &Platform,
    installed_bootloader: Option<u16>,
) -> bool {
    platform.mcu == Mcu::Nrf52840
        && installed_bootloader.is_some_and(|v| (BOOTLOADER_MBR_UPDATE_FROM..ERASED).contains(&v))
}

// ---- DFU: alternate settings (spec §9) ------------------------------------------------------

/// The memory a DfuSe alternate setting gives access to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AltMemory {
    /// MCU internal flash; alt addresses are flash addresses.
    Internal,
    /// The application DCT; alt addresses are offsets into it.
    Dct,
    /// External flash ("External", "Serial" or "SPI" flash); the alt shows the chip from the
    /// address its name string gives.
    External,
}

/// A DfuSe alternate setting as its name string (`@Internal Flash   /0x08000000/03*016Ka,…`)
/// describes it: the memory, and the address of its first region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DfuAlt {
    /// What it gives access to.
    pub memory: AltMemory,
    /// The address of its first region.
    pub base: u32,
}

/// How an alternate setting's addresses map onto one flash memory:
/// alt address = flash address + `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AltWindow {
    /// The flash memory behind the alternate setting.
    pub location: Location,
    /// Alt address minus flash address.
    pub offset: i64,
}

impl DfuAlt {
    /// Reads an alternate setting's name string. The name decides the memory as the Particle
    /// bootloaders name them: "DCT…" (or "DCD…" before Device OS 3) is the DCT, "Internal…"
    /// internal flash, anything else external flash.
    pub fn parse(name: &str) -> Option<Self> {
        let (label, rest) = name.strip_prefix('@')?.split_once('/')?;
        let address = rest.split('/').next()?.trim();
        let hex = address
            .strip_prefix("0x")
            .or_else(|| address.strip_prefix("0X"))?;
        let base = u32::from_str_radix(hex, 16).ok()?;
        let label = label.trim();
        let starts = |word: &str| {
            label
                .get(..word.len())
                .is_some_and(|l| l.eq_ignore_ascii_case(word))
        };
        let memory = if starts("DCT") || starts("DCD") {
            AltMemory::Dct
        } else if starts("Internal") {
            AltMemory::Internal
        } else {
            AltMemory::External
        };
        Some(Self { memory, base })
    }

    /// Where its addresses land in flash on a device with memory map `layout`; `None` for the
    /// DCT and for external flash the device does not have.
    pub fn window(&self, layout: &Layout) -> Option<AltWindow> {
        match self.memory {
            AltMemory::Internal => Some(AltWindow {
                location: Location::Internal,
                offset: 0,
            }),
            AltMemory::External => Some(AltWindow {
                location: Location::External,
                offset: i64::from(self.base) - i64::from(layout.external?.base),
            }),
            AltMemory::Dct => None,
        }
    }
}

impl AltWindow {
    /// The flash address behind `alt_address`.
    pub fn flash_address(&self, alt_address: u32) -> Option<u32> {
        u32::try_from(i64::from(alt_address) - self.offset).ok()
    }

    /// The alt address showing `flash_address`.
    pub fn alt_address(&self, flash_address: u32) -> Option<u32> {
        u32::try_from(i64::from(flash_address) + self.offset).ok()
    }
}

/// The alternate setting of `layout` that shows flash memory `location`, and its window.
pub fn dfu_alt(layout: &Layout, location: Location) -> Option<(u8, AltWindow)> {
    layout.dfu_alts.iter().enumerate().find_map(|(alt, name)| {
        let window = DfuAlt::parse(name)?.window(layout)?;
        (window.location == location).then_some((u8::try_from(alt).ok()?, window))
    })
}

/// Where `address` of flash memory `location` shows up over DFU: (alt, alt address).
pub fn dfu_address(layout: &Layout, location: Location, address: u32) -> Option<(u8, u32)> {
    let (alt, window) = dfu_alt(layout, location)?;
    Some((alt, window.alt_address(address)?))
}

// ---- DFU: placement and protection (spec §9, §6.1) ------------------------------------------

/// Where a module goes over DFU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DfuPlace {
    /// Its flash image is written at `address` of alternate setting `alt`.
    Write {
        /// DfuSe alternate setting.
        alt: u8,
        /// DfuSe address.
        address: u32,
    },
    /// A bootloader: its own sectors are read-only over DFU, so the whole module is staged in
    /// the OTA region (`alt`, `address`) and the DCT OTA flag set; the system firmware installs
    /// it at the next boot (spec §6.2 step 5).
    Stage {
        /// DfuSe alternate setting of the OTA region.
        alt: u8,
        /// DfuSe address of the OTA region.
        address: u32,
    },
}

/// Where `module` goes over DFU on `platform`. `layout` is the memory map in force when it is
/// written; `final_layout` the one whose system firmware installs a staged bootloader (its OTA
/// region is where the bootloader must be). A DFU write is raw: the module may belong to
/// another memory map than the one installed (e.g. Electron system part 3 onto 0.5.x).
pub fn dfu_place(
    platform: &Platform,
    layout: &Layout,
    final_layout: &Layout,
    module: &ModuleInfo,
) -> Option<DfuPlace> {
    match (module.function, platform.family) {
        (ModuleFunction::Bootloader, Some(Family::Photon | Family::Electron | Family::Gen3)) => {
            let ota = final_layout.ota;
            let (alt, address) = dfu_address(final_layout, ota.location, ota.start)?;
            Some(DfuPlace::Stage { alt, address })
        }
        _ => {
            let region = core::iter::once(layout)
                .chain(platform.layouts())
                .find_map(|l| {
                    l.find_bounds(module.slot())
                        .filter(|b| b.end_in_range(module.end_address))
                })?;
            let (alt, address) = dfu_address(layout, region.location, module.start_address)?;
            Some(DfuPlace::Write { alt, address })
        }
    }
}

/// Where an application for the factory-reset slot goes over DFU: (alt, address).
pub fn dfu_factory_place(layout: &Layout) -> Option<(u8, u32)> {
    let factory = layout.factory_bounds()?;
    dfu_address(layout, factory.location, factory.start)
}

/// Where a platform keeps its application DCT: two copies of [`dct::AREA_SIZE`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DctArea {
    /// Flash memory.
    pub location: Location,
    /// Start of each copy.
    pub copies: [u32; 2],
}

impl DctArea {
    /// First byte of the lower copy.
    pub fn start(&self) -> u32 {
        self.copies[0].min(self.copies[1])
    }

    /// Just past the higher copy.
    pub fn end(&self) -> u32 {
        self.copies[0].max(self.copies[1]) + dct::AREA_SIZE as u32
    }
}

/// The DCT location of `platform`.
pub fn dct_area(platform: &Platform) -> DctArea {
    let (location, copies) = match platform.family {
        // Sectors 1 and 2 of the STM32F205.
        Some(Family::Photon) | Some(Family::Electron) | None => {
            (Location::Internal, [0x0800_4000, 0x0800_8000])
        }
        // Gen3 keeps the DCT as a file in the external-flash filesystem.
        Some(Family::Gen3) => (Location::External, [0x0000_0000, 0x0000_4000]),
        // RTL872x keeps it in the LittleFS area at 0x08600000.
        Some(Family::Rtl872x) => (Location::Internal, [0x0860_0000, 0x0860_4000]),
        // Core: the SST25 user area.
        Some(Family::Core) => (Location::External, [0x0008_0000, 0x0008_4000]),
    };
    DctArea { location, copies }
}

/// Gen2 bootloaders refuse DFU erase and write below this address: the bootloader, DCT and
/// EEPROM emulation sectors (`DFU_MAL_IS_PROTECTED_AREA`).
const GEN2_REFUSED_BELOW: u32 = 0x0802_0000;

/// What a protected flash range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtectedArea {
    /// A bootloader.
    Bootloader,
    /// The DCT: keys, claim code, OTA flags.
    Dct,
}

/// A flash range DFU must not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Protected {
    /// What it holds.
    pub area: ProtectedArea,
    /// Flash memory.
    pub location: Location,
    /// First byte.
    pub start: u32,
    /// Just past the last byte.
    pub end: u32,
}

/// What a DFU write must not touch on `platform` unless the user insists: its internal
/// bootloader regions (of every memory map) and the DCT. (The device may refuse more itself:
/// see [`dfu_refuses`].)
pub fn dfu_protected(platform: &Platform) -> impl Iterator<Item = Protected> {
    let layouts = platform.layouts();
    let bootloaders = layouts.iter().enumerate().flat_map(move |(i, layout)| {
        layout
            .bounds
            .iter()
            .filter(|b| {
                b.function == ModuleFunction::Bootloader && b.location == Location::Internal
            })
            // Each region once, though several memory maps list it.
            .filter(move |b| !layouts[..i].iter().any(|l| l.bounds.contains(b)))
            .map(|b| Protected {
                area: ProtectedArea::Bootloader,
                location: b.location,
                start: b.start,
                end: b.end,
            })
    });
    let dct = dct_area(platform);
    let dct_range = Protected {
        area: ProtectedArea::Dct,
        location: dct.location,
        start: dct.start(),
        end: dct.end(),
    };
    bootloaders.chain(core::iter::once(dct_range))
}

/// Whether `platform`'s bootloader itself refuses a DFU erase or write at `address` of flash
/// memory `location` (Gen2: everything below the first system part), whatever the alternate
/// setting's string allows.
pub fn dfu_refuses(platform: &Platform, location: Location, address: u32) -> bool {
    matches!(platform.family, Some(Family::Photon | Family::Electron))
        && location == Location::Internal
        && address < GEN2_REFUSED_BELOW
}

/// Whether DFU can reach the DCT: Photon/P1 bootloaders of the 0.7.0 line and later have no
/// DCT code of their own and use system part 2's, after checking the CRCs of parts 1 and 2
/// (spec §6.1) — so they need both intact.
pub fn dct_reachable(installed: &impl Installed, platform: &Platform) -> bool {
    if platform.family != Some(Family::Photon) || !bootloader_from_070(installed) {
        return true;
    }
    [1, 2].into_iter().all(|index| {
        matches!(
            installed.part(ModuleRef::new(ModuleFunction::SystemPart, index)),
            Part::Present { intact: true, .. }
        )
    })
}

// ---- assets (Device OS 5.5.0 and later) ---------------------------------------------------

/// What became of an asset an application requires, among the assets at hand (on a device, in
/// a bundle, or named on the command line). Device OS compares name and hash together; an
/// application with any asset not [`AssetVerdict::Present`] does not run: the system starts in
/// safe mode instead (`AssetManager::missingAssets`, `system/src/main.cpp` [v6.2.0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetVerdict<'a> {
    /// An asset of the same name and hash is there.
    Present,
    /// An asset of that name is there with other contents.
    OtherContents {
        /// The asset found.
        found: AssetRef<'a>,
    },
    /// No asset of that name, but one with the same contents under another name: Device OS
    /// does not take it.
    Renamed {
        /// The asset found.
        found: AssetRef<'a>,
    },
    /// Nothing of that name or contents.
    Missing,
}

impl AssetVerdict<'_> {
    /// True when the dependency is met.
    pub const fn is_met(&self) -> bool {
        matches!(self, Self::Present)
    }
}

/// Whether the asset `required` is among `available`, and if not, the nearest thing that is:
/// one of the same name (other contents), else one of the same contents (renamed).
pub fn asset_dependency<'a>(
    required: &AssetRef<'_>,
    available: impl IntoIterator<Item = AssetRef<'a>>,
) -> AssetVerdict<'a> {
    let (mut same_name, mut same_hash) = (None, None);
    for a in available {
        if a.same_as(required) {
            return AssetVerdict::Present;
        }
        if a.name == required.name {
            same_name = same_name.or(Some(a));
        } else if a.hash_type == required.hash_type && a.hash == required.hash {
            same_hash = same_hash.or(Some(a));
        }
    }
    match (same_name, same_hash) {
        (Some(found), _) => AssetVerdict::OtherContents { found },
        (None, Some(found)) => AssetVerdict::Renamed { found },
        (None, None) => AssetVerdict::Missing,
    }
}

/// Device OS 5.5.0 (module version 5501): the first release with an asset store, which checks
/// the application's assets at boot and stores asset modules received as updates.
pub const ASSETS_SINCE: u16 = 5501;

/// Whether a device of `platform` running system version `system` keeps assets: the platform
/// has an asset store and the release is [`ASSETS_SINCE`] or later.
pub fn has_assets(platform: &Platform, system: Option<u16>) -> bool {
    platform.asset_storage().is_some() && system.is_some_and(|v| v >= ASSETS_SINCE)
}

/// Why a set of asset modules does not fit a platform's asset store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetStorageRefusal {
    /// One asset module is larger than the platform takes.
    TooLarge {
        /// Its position among the modules given.
        index: usize,
        /// Its length in bytes.
        len: u64,
        /// The largest the platform takes.
        max: u32,
    },
    /// Together they need more storage than there is.
    Full {
        /// Bytes of storage they need.
        needed: u64,
        /// Bytes the store has for assets.
        capacity: u64,
    },
}

impl fmt::Display for AssetStorageRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLarge { len, max, .. } => write!(
                f,
                "an asset module of {len} bytes is larger than the {max} bytes the platform takes for one asset"
            ),
            Self::Full { needed, capacity } => write!(
                f,
                "the assets need {needed} bytes of asset storage and the platform has {capacity}"
            ),
        }
    }
}

/// Whether asset modules of the given lengths fit `storage` together, as
/// binary-version-reader's `validateAssetLimits` (which particle-cli applies to a bundle) sizes
/// them: each no larger than `max_single_asset`, all together within the capacity, each taking
/// whole blocks ([`AssetStorage::storage_size`]). Returns the bytes of storage they take.
pub fn assets_fit(
    storage: &AssetStorage,
    module_lens: impl IntoIterator<Item = u64>,
) -> Result<u64, AssetStorageRefusal> {
    let mut needed = 0u64;
    for (index, len) in module_lens.into_iter().enumerate() {
        if len > u64::from(storage.max_single_asset) {
            return Err(AssetStorageRefusal::TooLarge {
                index,
                len,
                max: storage.max_single_asset,
            });
        }
        needed = needed.saturating_add(storage.storage_size(len));
    }
    if needed > storage.capacity() {
        return Err(AssetStorageRefusal::Full {
            needed,
            capacity: storage.capacity(),
        });
    }
    Ok(needed)
}

// ---- Device Protection (Device OS 6.x) ------------------------------------------------------

/// The SECURITY_MODE extension's value for a protected module (`MODULE_INFO_SECURITY_MODE_PROTECTED`).
pub const SECURITY_MODE_PROTECTED: u8 = 1;

/// The oldest Device OS particle-cli writes to a protected device (or one in service mode):
/// 6.1.1, whose system parts carry version 6101 (`PROTECTED_MINIMUM_SYSTEM_VERSION`,
/// particle-cli `src/lib/flash-helper.js`).
pub const PROTECTED_FLOOR_RELEASE: &str = "6.1.1";
/// The system-part version of [`PROTECTED_FLOOR_RELEASE`].
pub const PROTECTED_SYSTEM_FLOOR: u16 = 6101;
/// The oldest Particle bootloader (index 0) particle-cli writes to a protected device.
pub const PROTECTED_BOOTLOADER_FLOOR: u16 = 3001;
/// The oldest system part 1 a DFU bootloader in service mode writes at system part 1's start
/// (6.0.0; `InternalFlashMal::write`, `bootloader/src/*/usbd_dfu_mal.cpp` [v6.2.0]).
pub const SERVICE_MODE_SYSTEM_FLOOR: u16 = 6000;

/// Where system part 1 started before Device OS 6.2.0 moved it to 0x28000 on nRF52840; the
/// bootloader still checks writes there (`platform_system_part1_flash_start_legacy`).
const GEN3_LEGACY_SYSTEM_START: u32 = 0x0003_0000;

/// A device's Device Protection state, as its DFU bootloader reports it in string descriptor
/// 0xFA (`sm=o`, `sm=s`, `sm=p`: `device_state_as_string`, `bootloader/src/*/usbd_device.cpp`)
/// and GetProtectedState (request 76) answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Protection {
    /// Not protected.
    Open,
    /// Protected, with protection lifted for now (service mode: security mode NONE with the
    /// override set) until the override is cleared or the device resets out of it.
    Service,
    /// Protected.
    Protected,
}

impl Protection {
    /// Reads the 0xFA string descriptor (`"sm=o"`, `"sm=s"`, `"sm=p"`).
    pub fn from_descriptor(s: &str) -> Option<Self> {
        match s {
            "sm=o" => Some(Self::Open),
            "sm=s" => Some(Self::Service),
            "sm=p" => Some(Self::Protected),
            _ => None,
        }
    }

    /// The 0xFA string descriptor.
    pub const fn descriptor(self) -> &'static str {
        match self {
            Self::Open => "sm=o",
            Self::Service => "sm=s",
            Self::Protected => "sm=p",
        }
    }

    /// Stable lower-case name for JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Service => "service",
            Self::Protected => "protected",
        }
    }
}

/// A request to a DFU bootloader, as the Device Protection checks tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DfuRequest<'a> {
    /// UPLOAD of block 0: the list of DfuSe commands.
    ListCommands,
    /// UPLOAD of data: a read at `address`.
    Read {
        /// First address.
        address: u32,
        /// Bytes.
        len: u32,
    },
    /// The DfuSe SET_ADDRESS_POINTER command.
    SetAddress,
    /// The DfuSe ERASE command for the sector at `address`.
    Erase {
        /// An address in the sector.
        address: u32,
    },
    /// DNLOAD of data: a write of `data` at `address`.
    Write {
        /// First address.
        address: u32,
        /// The bytes written (their start is read when they land on system part 1's start).
        data: &'a [u8],
    },
    /// Particle's DfuSe command 0xFA: reset into safe mode.
    EnterSafeMode,
    /// Particle's DfuSe command 0xFB: clear the security-mode override, ending service mode.
    ClearSecurityOverride,
    /// A zero-length DNLOAD: leave DFU mode.
    Leave,
}

/// Why a device's protection stops a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectionRefusal {
    /// A protected device's DFU bootloader reads, writes, erases and moves the address pointer
    /// for nobody: it answers with status errVENDOR, "Device is in protected mode"; only the
    /// command list, 0xFA, 0xFB and leaving work.
    ProtectedDfu,
    /// In service mode the RTL872x bootloader keeps the OTA staging region out of DFU's reach.
    ServiceOtaRegion {
        /// The address asked for.
        address: u32,
    },
    /// In service mode the bootloader writes system part 1's start only with a module of
    /// version [`SERVICE_MODE_SYSTEM_FLOOR`] or later (`None`: the bytes hold no module
    /// header, or too few bytes for one).
    ServiceSystemTooOld {
        /// The version the bytes carry.
        version: Option<u16>,
    },
    /// A protected device is not updated below Device OS 6.1.1 (particle-cli refuses, so does
    /// modflash): the module is older than the floor of its kind.
    BelowFloor {
        /// The module's slot.
        slot: ModuleRef,
        /// Its version.
        version: u16,
        /// The oldest version allowed there.
        floor: u16,
    },
}

impl fmt::Display for ProtectionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ProtectedDfu => f.write_str(
                "the device is protected: its DFU bootloader refuses to read, write or erase flash (\"Device is in protected mode\")",
            ),
            Self::ServiceOtaRegion { address } => write!(
                f,
                "in service mode the bootloader keeps the OTA region out of DFU's reach ({address:#010x} is in it)"
            ),
            Self::ServiceSystemTooOld { version: Some(v) } => write!(
                f,
                "in service mode the bootloader writes system part 1 only from Device OS 6.0.0 on (module version {SERVICE_MODE_SYSTEM_FLOOR}), and this one is version {v}"
            ),
            Self::ServiceSystemTooOld { version: None } => f.write_str(
                "in service mode the bootloader writes system part 1's start only with a module header of Device OS 6.0.0 or later, and these bytes hold none",
            ),
            Self::BelowFloor {
                slot,
                version,
                floor,
            } => write!(
                f,
                "a protected device is not downgraded below Device OS {PROTECTED_FLOOR_RELEASE}: this {slot} is version {version}, the oldest allowed is {floor}"
            ),
        }
    }
}

impl ProtectionRefusal {
    /// What to do about it.
    pub const fn fix(&self) -> &'static str {
        match self {
            Self::ProtectedDfu => {
                "put the device in service mode first (`particle device-protection disable`), or update it over USB control requests in normal mode"
            }
            Self::ServiceOtaRegion { .. } => {
                "write modules to their own regions; the OTA region is the device's to use"
            }
            Self::ServiceSystemTooOld { .. } | Self::BelowFloor { .. } => {
                "use Device OS 6.1.1 or later for a protected device (or remove its protection for good with `particle device-protection disable --open`)"
            }
        }
    }
}

/// What a DFU bootloader does with a request under Device Protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DfuProtectionVerdict {
    /// Carried out as on any device.
    Allowed,
    /// Accepted and not carried out: in service mode, erases inside system part 1 are
    /// ignored (a write to the start of each page erases that page instead).
    EraseIgnored,
    /// Refused.
    Refused(ProtectionRefusal),
}

/// What the DFU bootloader of `platform`, in protection state `state`, does with `request`
/// (`DfuClassDriver`, `bootloader/src/{rtl872x,nRF52840}/usbd_dfu.cpp` and `usbd_dfu_mal.cpp`
/// [v6.2.0]), with `layout` the memory map in force. A platform without Device Protection,
/// or an open device, allows everything. One thing is state the caller keeps: in service
/// mode, after a write to system part 1's start is refused, the bootloader refuses every
/// write into system part 1 until a start is accepted.
pub fn dfu_protection(
    platform: &Platform,
    layout: &Layout,
    state: Protection,
    request: &DfuRequest<'_>,
) -> DfuProtectionVerdict {
    use DfuProtectionVerdict::{Allowed, EraseIgnored, Refused};
    if !platform.has_device_protection() || state == Protection::Open {
        return Allowed;
    }
    let always = matches!(
        request,
        DfuRequest::ListCommands
            | DfuRequest::EnterSafeMode
            | DfuRequest::ClearSecurityOverride
            | DfuRequest::Leave
    );
    if always {
        return Allowed;
    }
    if state == Protection::Protected {
        return Refused(ProtectionRefusal::ProtectedDfu);
    }
    // Service mode.
    let part1 = layout.main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1));
    let in_part1 = |a: u32| part1.is_some_and(|b| a >= b.start && a < b.end);
    let in_ota = |a: u32| {
        platform.family == Some(Family::Rtl872x)
            && a >= layout.ota.start
            && a < layout.ota.start.saturating_add(layout.ota.max_size)
    };
    match *request {
        DfuRequest::Read { address, .. } | DfuRequest::Erase { address } if in_ota(address) => {
            Refused(ProtectionRefusal::ServiceOtaRegion { address })
        }
        DfuRequest::Erase { address } if in_part1(address) => EraseIgnored,
        DfuRequest::Write { address, .. } if in_ota(address) => {
            Refused(ProtectionRefusal::ServiceOtaRegion { address })
        }
        DfuRequest::Write { address, data } => {
            let starts = part1.is_some_and(|b| {
                address == b.start
                    || (platform.family == Some(Family::Gen3)
                        && address == GEN3_LEGACY_SYSTEM_START)
            });
            if !starts {
                return Allowed;
            }
            let offset = crate::parse::device_header_offset(platform.mcu, data);
            match ModuleInfo::read(data, offset) {
                Some(info) if info.version >= SERVICE_MODE_SYSTEM_FLOOR => Allowed,
                other => Refused(ProtectionRefusal::ServiceSystemTooOld {
                    version: other.map(|i| i.version),
                }),
            }
        }
        _ => Allowed,
    }
}

/// Whether a module may be written to a device in protection state `state`, as particle-cli
/// decides before it writes anything (`maintainDeviceProtection`): an open device takes any;
/// a protected one, or one in service mode, no system part below [`PROTECTED_SYSTEM_FLOOR`]
/// and no Particle bootloader below [`PROTECTED_BOOTLOADER_FLOOR`].
pub fn protected_update(state: Protection, module: &Header) -> Result<(), ProtectionRefusal> {
    if state == Protection::Open {
        return Ok(());
    }
    let floor = match (module.slot.function, module.slot.index) {
        (ModuleFunction::SystemPart, _) => PROTECTED_SYSTEM_FLOOR,
        (ModuleFunction::Bootloader, 0) => PROTECTED_BOOTLOADER_FLOOR,
        _ => return Ok(()),
    };
    if module.version < floor {
        return Err(ProtectionRefusal::BelowFloor {
            slot: module.slot,
            version: module.version,
            floor,
        });
    }
    Ok(())
}

/// Whether a module written to a device in protection state `state` must carry the
/// SECURITY_MODE "protected" extension (see `asset::protect`): the Particle bootloader
/// (index 0) of a protected device, which particle-cli wraps so the device stays protected.
pub fn needs_protected_bootloader(state: Protection, slot: ModuleRef) -> bool {
    state != Protection::Open && slot == ModuleRef::new(ModuleFunction::Bootloader, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::platform;
    use std::string::ToString;
    use std::vec::Vec;

    const BOOT: ModuleRef = ModuleRef::new(ModuleFunction::Bootloader, 0);
    const PART1: ModuleRef = ModuleRef::new(ModuleFunction::SystemPart, 1);
    const PART2: ModuleRef = ModuleRef::new(ModuleFunction::SystemPart, 2);
    const PART3: ModuleRef = ModuleRef::new(ModuleFunction::SystemPart, 3);
    const APP: ModuleRef = ModuleRef::new(ModuleFunction::UserPart, 1);

    /// A hand-made device: the regions it has, and what each holds.
    struct Fake {
        regions: Vec<ModuleRef>,
        modules: Vec<(Header, Part)>,
    }

    impl Fake {
        fn with_regions(regions: &[ModuleRef]) -> Self {
            Self {
                regions: regions.to_vec(),
                modules: Vec::new(),
            }
        }

        fn module(mut self, slot: ModuleRef, version: u16, deps: &[Dependency]) -> Self {
            let mut dependencies = [Dependency::NONE; 2];
            dependencies[..deps.len()].copy_from_slice(deps);
            let header = Header {
                slot,
                version,
                dependencies,
            };
            let part = Part::Present {
                platform_ok: true,
                intact: true,
            };
            self.modules.push((header, part));
            self
        }

        fn part(mut self, slot: ModuleRef, part: Part) -> Self {
            let at = self
                .modules
                .iter()
                .position(|(h, _)| h.slot == slot)
                .unwrap();
            self.modules[at].1 = part;
            self
        }
    }

    impl Installed for Fake {
        fn has_region(&self, slot: ModuleRef) -> bool {
            self.regions.contains(&slot)
        }

        fn version(&self, slot: ModuleRef) -> Option<u16> {
            self.modules
                .iter()
                .find(|(h, _)| h.slot == slot)
                .map(|(h, _)| h.version)
        }

        fn modules(&self) -> impl Iterator<Item = Header> + '_ {
            self.modules.iter().map(|(h, _)| *h)
        }

        fn part(&self, slot: ModuleRef) -> Part {
            self.modules
                .iter()
                .find(|(h, _)| h.slot == slot)
                .map_or(Part::Missing, |(_, p)| *p)
        }
    }

    fn dep(slot: ModuleRef, version: u16) -> Dependency {
        Dependency::new(slot.function, slot.index, version)
    }

    fn header(slot: ModuleRef, version: u16, deps: [Dependency; 2]) -> Header {
        Header {
            slot,
            version,
            dependencies: deps,
        }
    }

    const GEN2: &[ModuleRef] = &[BOOT, PART1, PART2, APP];

    #[test]
    fn dependency_satisfaction_and_its_quirks() {
        let device = Fake::with_regions(GEN2)
            .module(BOOT, 11, &[])
            .module(PART1, 17, &[])
            .module(PART2, 17, &[]);
        let part2 = header(PART2, 1502, [dep(PART1, 1502), dep(BOOT, 400)]);
        let unmet = dependencies(&device, &part2, false).unwrap_err();
        assert_eq!(
            unmet.to_string(),
            "system part 2 needs system part 1 \u{2265} 1502, installed 17"
        );
        // Dependency 2 is not examined when dependency 1 is empty.
        let skipped = header(PART2, 1502, [Dependency::NONE, dep(BOOT, 400)]);
        assert_eq!(dependencies(&device, &skipped, false), Ok(()));
        // User dependencies optional: an application's dependencies are skipped, and so is a
        // bootloader as dependency 2.
        let app = header(APP, 6, [dep(PART2, 1502), Dependency::NONE]);
        assert!(dependencies(&device, &app, false).is_err());
        assert_eq!(dependencies(&device, &app, true), Ok(()));
        let newer = Fake::with_regions(GEN2)
            .module(BOOT, 11, &[])
            .module(PART1, 1502, &[]);
        assert_eq!(dependencies(&newer, &part2, true), Ok(()));
        assert_eq!(
            dependencies(&newer, &part2, false).unwrap_err().installed,
            Some(11)
        );
        // An erased region reads 0xFFFF and satisfies any dependency.
        let erased = Fake::with_regions(GEN2).module(BOOT, 11, &[]);
        assert_eq!(installed_version(&erased, PART1), Some(ERASED));
        assert_eq!(
            check_dependency(&erased, PART2, dep(PART1, 1502)),
            Ok(ERASED)
        );
        // No region on the platform: unmet.
        let three = header(PART2, 1502, [dep(PART3, 1), Dependency::NONE]);
        let unmet = dependencies(&device, &three, false).unwrap_err();
        assert_eq!(unmet.installed, None);
        assert_eq!(
            unmet.to_string(),
            "system part 2 needs system part 3 \u{2265} 1, which this platform does not have"
        );
    }

    #[test]
    fn listed_dependencies_need_a_real_module() {
        // The finished state: both fields examined, an erased region does not count.
        let erased = Fake::with_regions(GEN2).module(BOOT, 400, &[]);
        let part2 = header(PART2, 1502, [Dependency::NONE, dep(PART1, 1502)]);
        assert_eq!(dependencies(&erased, &part2, false), Ok(()));
        let unmet = listed_dependencies_met(&erased, &part2).unwrap_err();
        assert_eq!(
            (unmet.required, unmet.installed),
            (dep(PART1, 1502), Some(ERASED))
        );
        let done = Fake::with_regions(GEN2).module(PART1, 1502, &[]);
        assert_eq!(listed_dependencies_met(&done, &part2), Ok(()));
    }

    #[test]
    fn dependencies_full_protects_installed_parts() {
        let device = Fake::with_regions(GEN2)
            .module(PART1, 1502, &[dep(PART2, 207)])
            .module(PART2, 1502, &[dep(PART1, 1502), dep(BOOT, 400)]);
        let old_part1 = header(PART1, 17, [Dependency::NONE; 2]);
        let unmet = dependencies_full(&device, &old_part1).unwrap_err();
        assert_eq!(
            unmet.to_string(),
            "system part 2 needs system part 1 \u{2265} 1502, installed 17"
        );
        // The part being replaced does not count; other functions are not checked.
        let part2 = header(PART2, 100, [Dependency::NONE; 2]);
        assert!(
            dependencies_full(&device, &part2).is_err(),
            "part 1 needs 207"
        );
        let part2 = header(PART2, 300, [dep(PART1, 1), Dependency::NONE]);
        assert_eq!(dependencies_full(&device, &part2), Ok(()));
        let boot = header(BOOT, 1, [Dependency::NONE; 2]);
        assert_eq!(dependencies_full(&device, &boot), Ok(()));
    }

    #[test]
    fn system_runnable_needs_every_part_and_an_intact_entry() {
        let photon = platform(6).unwrap();
        let layout = photon.layout_for(None).unwrap();
        let good = || {
            Fake::with_regions(GEN2)
                .module(PART1, 1502, &[])
                .module(PART2, 1502, &[])
        };
        assert_eq!(system_runnable(&good(), photon, layout), Ok(()));
        let missing = Fake::with_regions(GEN2).module(PART1, 1502, &[]);
        assert!(matches!(
            system_runnable(&missing, photon, layout),
            Err(NotRunnable::Missing(b)) if b.slot() == PART2
        ));
        let damaged = |slot| {
            good().part(
                slot,
                Part::Present {
                    platform_ok: true,
                    intact: false,
                },
            )
        };
        // A damaged part 1 crashes; a damaged later part is left to module validation.
        assert!(matches!(
            system_runnable(&damaged(PART1), photon, layout),
            Err(NotRunnable::Corrupt {
                integrity: true,
                platform: false,
                ..
            })
        ));
        assert_eq!(system_runnable(&damaged(PART2), photon, layout), Ok(()));
        let foreign = good().part(
            PART2,
            Part::Present {
                platform_ok: false,
                intact: true,
            },
        );
        assert!(matches!(
            system_runnable(&foreign, photon, layout),
            Err(NotRunnable::Corrupt { platform: true, .. })
        ));
        let other = good().part(PART2, Part::Other(PART1));
        assert!(matches!(
            system_runnable(&other, photon, layout),
            Err(NotRunnable::Other { found, .. }) if found == PART1
        ));
        // The Electron needs every part intact.
        let electron = platform(10).unwrap();
        let layout = electron.layout_for(Some(1502)).unwrap();
        let parts = || {
            Fake::with_regions(&[BOOT, PART1, PART2, PART3, APP])
                .module(PART1, 1502, &[])
                .module(PART2, 1502, &[])
                .module(PART3, 1502, &[])
        };
        assert_eq!(system_runnable(&parts(), electron, layout), Ok(()));
        let bad = parts().part(
            PART3,
            Part::Present {
                platform_ok: true,
                intact: false,
            },
        );
        assert!(system_runnable(&bad, electron, layout).is_err());
    }

    #[test]
    fn electron_installs_its_embedded_bootloader_when_older_or_erased() {
        let electron = platform(10).unwrap();
        let release = platform_releases(electron)
            .find(|r| r.embedded_bootloader.is_some())
            .unwrap();
        let embedded = release.embedded_bootloader.unwrap();
        let regions = &[BOOT, PART1, PART2, PART3, APP];
        let with_boot = |v| {
            Fake::with_regions(regions)
                .module(PART1, release.system_version, &[])
                .module(BOOT, v, &[])
        };
        let update = embedded_bootloader_update(&with_boot(embedded - 1), electron).unwrap();
        assert_eq!((update.version, update.installed), (embedded, embedded - 1));
        assert_eq!(update.module.function, ModuleFunction::Bootloader);
        assert_eq!(
            embedded_bootloader_update(&with_boot(embedded), electron),
            None
        );
        let erased = Fake::with_regions(regions).module(PART1, release.system_version, &[]);
        assert_eq!(
            embedded_bootloader_update(&erased, electron).map(|u| u.installed),
            Some(ERASED)
        );
        // Only the Electron does this, and only for releases that carry one.
        let photon = platform(6).unwrap();
        assert_eq!(embedded_bootloader_update(&with_boot(0), photon), None);
        let unknown = Fake::with_regions(regions).module(PART1, 1, &[]);
        assert_eq!(embedded_bootloader_update(&unknown, electron), None);
    }

    #[test]
    fn ota_acceptance_in_the_device_order() {
        let photon = platform(6).unwrap();
        let layout = photon.layout_for(None).unwrap();
        let device = Fake::with_regions(GEN2)
            .module(BOOT, 11, &[])
            .module(PART1, 17, &[])
            .module(PART2, 17, &[dep(PART1, 17)]);
        let mut part2 = ModuleInfo::from_bytes(&[0; 24]);
        part2.function = ModuleFunction::SystemPart;
        part2.index = 2;
        part2.version = 1502;
        part2.platform_id = 6;
        part2.start_address = 0x0806_0000;
        part2.end_address = 0x0809_0000;
        part2.dependencies = [dep(PART1, 1502), dep(BOOT, 400)];
        let refusal = ota_accepts(&device, layout, 6, &part2, true).unwrap_err();
        assert!(matches!(refusal, OtaRefusal::Dependencies(_)));
        assert_eq!(refusal.code().code(), -1340);
        assert_eq!(
            refusal.to_string(),
            "dependency check failed (-1340): system part 2 needs system part 1 \u{2265} 1502, installed 17"
        );
        // The bootloader as dependency 2 is left to the boot check.
        let mut with_part1 = part2;
        with_part1.dependencies[0] = dep(PART1, 17);
        assert_eq!(ota_accepts(&device, layout, 6, &with_part1, true), Ok(()));
        assert_eq!(
            ota_accepts(&device, layout, 6, &with_part1, false),
            Err(OtaRefusal::Integrity)
        );
        assert_eq!(
            ota_accepts(&device, layout, 10, &with_part1, false),
            Err(OtaRefusal::Platform(6))
        );
        let mut outside = with_part1;
        outside.end_address = 0x0810_0000;
        assert_eq!(
            ota_accepts(&device, layout, 10, &outside, false),
            Err(OtaRefusal::NotFound)
        );
        // DEPENDENCIES_FULL: a downgrade of part 1 would break the installed part 2.
        let mut old_part1 = with_part1;
        old_part1.index = 1;
        old_part1.version = 11;
        old_part1.start_address = 0x0802_0000;
        old_part1.end_address = 0x0805_0000;
        old_part1.dependencies = [Dependency::NONE; 2];
        assert!(matches!(
            ota_accepts(&device, layout, 6, &old_part1, true),
            Err(OtaRefusal::DependenciesFull(u)) if u.module == PART2
        ));
        // Size against the OTA region.
        assert_eq!(ota_fits(layout, 0x40000), Ok(()));
        assert_eq!(
            ota_fits(layout, 0x40001).unwrap_err().to_string(),
            "the file size is higher than the allowed space (262145 > 262144 bytes)"
        );
    }

    #[test]
    fn ota_codes_have_names_and_parse_back() {
        // The table itself is tested where it lives (modflash-control); the refusals map onto it.
        for code in OtaCode::ALL {
            assert_eq!(OtaCode::from_code(code.code()), Some(code));
        }
        assert_eq!(OtaCode::name_of(-1340), "dependency check failed");
        assert_eq!(OtaCode::name_of(-1390), "OTA error");
        assert_eq!(OtaCode::name_of(-1), "unknown error");
        assert_eq!(
            OtaRefusal::TooLarge { len: 1, max: 0 }.code(),
            OtaCode::Failed
        );
    }

    #[test]
    fn alt_settings_map_to_flash_and_back() {
        let argon = platform(12).unwrap().layout_for(None).unwrap();
        let alt = DfuAlt::parse("@External Flash   /0x80000000/1024*004Kg").unwrap();
        assert_eq!((alt.memory, alt.base), (AltMemory::External, 0x8000_0000));
        let window = alt.window(argon).unwrap();
        assert_eq!(window.flash_address(0x8028_9000), Some(0x28_9000));
        assert_eq!(window.alt_address(0x28_9000), Some(0x8028_9000));
        assert_eq!(window.flash_address(0x10), None, "below the alt's base");
        assert_eq!(
            dfu_address(argon, Location::External, 0x20_0000),
            Some((2, 0x8020_0000))
        );
        assert_eq!(
            dfu_address(argon, Location::Internal, 0xD4000),
            Some((0, 0xD4000))
        );
        let dct = DfuAlt::parse("@DCD Flash   /0x00000000/1*016Ke").unwrap();
        assert_eq!(dct.memory, AltMemory::Dct);
        assert_eq!(dct.window(argon), None);
        assert_eq!(
            DfuAlt::parse("@Internal Flash   /0x08000000/03*016Ka").map(|a| a.memory),
            Some(AltMemory::Internal)
        );
        // The Core shows its SPI flash on alt 1; the Photon has no external flash.
        let core = platform(0).unwrap().layout_for(None).unwrap();
        assert_eq!(
            dfu_address(core, Location::External, 0x2_0000),
            Some((1, 0x2_0000))
        );
        let photon = platform(6).unwrap().layout_for(None).unwrap();
        assert_eq!(dfu_alt(photon, Location::External), None);
        assert!(DfuAlt::parse("Internal").is_none());
        assert!(DfuAlt::parse("@x/0xZZ/1*1Ka").is_none());
    }

    #[test]
    fn dfu_placement_per_platform() {
        let module = |function, index, start: u32, end: u32| {
            let mut info = ModuleInfo::from_bytes(&[0; 24]);
            info.function = function;
            info.index = index;
            info.start_address = start;
            info.end_address = end;
            info
        };
        let photon = platform(6).unwrap();
        let layout = photon.layout_for(None).unwrap();
        let boot = module(ModuleFunction::Bootloader, 0, 0x0800_0000, 0x0800_3000);
        assert_eq!(
            dfu_place(photon, layout, layout, &boot),
            Some(DfuPlace::Stage {
                alt: 0,
                address: 0x080C_0000
            })
        );
        let app = module(ModuleFunction::UserPart, 1, 0x080A_0000, 0x080A_8000);
        assert_eq!(
            dfu_place(photon, layout, layout, &app),
            Some(DfuPlace::Write {
                alt: 0,
                address: 0x080A_0000
            })
        );
        assert_eq!(dfu_factory_place(layout), Some((0, 0x080E_0000)));
        // Gen3 stages through external flash; the factory slot is external too.
        let argon = platform(12).unwrap();
        let gen3 = argon.layout_for(Some(1502)).unwrap();
        let boot = module(ModuleFunction::Bootloader, 0, 0xF4000, 0xFC000);
        assert_eq!(
            dfu_place(argon, gen3, gen3, &boot),
            Some(DfuPlace::Stage {
                alt: 2,
                address: 0x8028_9000
            })
        );
        assert_eq!(dfu_factory_place(gen3), Some((2, 0x8020_0000)));
        // A module of another memory map still has its place (Electron part 3 onto 0.5.x).
        let electron = platform(10).unwrap();
        let old = electron.layout_for(Some(17)).unwrap();
        let part3 = module(ModuleFunction::SystemPart, 3, 0x0806_0000, 0x0807_0000);
        assert_eq!(
            dfu_place(electron, old, old, &part3),
            Some(DfuPlace::Write {
                alt: 0,
                address: 0x0806_0000
            })
        );
        // RTL872x bootloaders are written in place.
        let p2 = platform(32).unwrap();
        let rtl = p2.layout_for(None).unwrap();
        let boot = module(ModuleFunction::Bootloader, 0, 0x0800_4000, 0x0800_8000);
        assert!(matches!(
            dfu_place(p2, rtl, rtl, &boot),
            Some(DfuPlace::Write {
                alt: 0,
                address: 0x0800_4000
            })
        ));
    }

    #[test]
    fn dfu_protection_per_platform() {
        let photon = platform(6).unwrap();
        let ranges: Vec<Protected> = dfu_protected(photon).collect();
        let spans: Vec<(ProtectedArea, u32, u32)> =
            ranges.iter().map(|p| (p.area, p.start, p.end)).collect();
        assert_eq!(
            spans,
            [
                (ProtectedArea::Bootloader, 0x0800_0000, 0x0800_4000),
                (ProtectedArea::Dct, 0x0800_4000, 0x0800_C000),
            ]
        );
        // The Gen2 bootloader itself also refuses the EEPROM emulation sectors after them.
        assert!(dfu_refuses(photon, Location::Internal, 0x0800_C000));
        assert!(dfu_refuses(photon, Location::Internal, 0x0801_FFFF));
        assert!(!dfu_refuses(photon, Location::Internal, 0x0802_0000));
        // Gen3: the bootloader once (three memory maps list it), the DCT in external flash;
        // the bootloader code itself refuses nothing.
        let argon = platform(12).unwrap();
        let ranges: Vec<Protected> = dfu_protected(argon).collect();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[1].location, Location::External);
        assert!(!dfu_refuses(argon, Location::Internal, 0xF4000));
        // RTL872x has three bootloader regions.
        let p2 = platform(32).unwrap();
        let boots = dfu_protected(p2)
            .filter(|p| p.area == ProtectedArea::Bootloader)
            .count();
        assert_eq!(boots, 3);
    }

    #[test]
    fn the_dct_needs_intact_parts_with_a_070_photon_bootloader() {
        let photon = platform(6).unwrap();
        let device = |boot| {
            Fake::with_regions(GEN2)
                .module(BOOT, boot, &[])
                .module(PART1, 1502, &[])
                .module(PART2, 1502, &[])
        };
        let damaged = Part::Present {
            platform_ok: true,
            intact: false,
        };
        assert!(dct_reachable(&device(501), photon));
        assert!(!dct_reachable(&device(501).part(PART2, damaged), photon));
        // Older (and erased) bootloaders have their own DCT code; other platforms too.
        assert!(dct_reachable(&device(11).part(PART2, damaged), photon));
        assert!(dct_reachable(&device(ERASED).part(PART2, damaged), photon));
        let electron = platform(10).unwrap();
        assert!(dct_reachable(&device(501).part(PART2, damaged), electron));
        assert!(bootloader_from_070(&device(100)) && !bootloader_from_070(&device(99)));
    }

    #[test]
    fn control_requests_follow_the_system_version() {
        let photon = platform(6).unwrap();
        let at = |v| control_protocol(photon, Some(v));
        assert_eq!(at(7), ControlProtocol::None, "0.5.2");
        assert_eq!(at(100), ControlProtocol::Raw06);
        assert_eq!(at(207), ControlProtocol::Raw07);
        assert_eq!(at(300), ControlProtocol::Raw07, "0.8.0-rc.1");
        assert_eq!(at(301), ControlProtocol::Service, "0.8.0-rc.2");
        assert_eq!(at(1502), ControlProtocol::Service);
        assert_eq!(at(ERASED), ControlProtocol::None, "no system part");
        assert_eq!(control_protocol(photon, None), ControlProtocol::None);
        let core = platform(0).unwrap();
        assert_eq!(control_protocol(core, Some(1502)), ControlProtocol::None);
    }

    #[test]
    fn an_asset_is_there_only_with_its_name_and_contents() {
        let (h1, h2) = ([1u8; 32], [2u8; 32]);
        let want = AssetRef::sha256(b"coproc.bin", &h1);
        let same = AssetRef::sha256(b"coproc.bin", &h1);
        let changed = AssetRef::sha256(b"coproc.bin", &h2);
        let renamed = AssetRef::sha256(b"coproc-v2.bin", &h1);
        let other = AssetRef::sha256(b"sound.wav", &h2);
        assert_eq!(
            asset_dependency(&want, [other, same]),
            AssetVerdict::Present
        );
        assert_eq!(
            asset_dependency(&want, [renamed, changed]),
            AssetVerdict::OtherContents { found: changed },
            "a file of the same name says more than one of the same contents"
        );
        assert_eq!(
            asset_dependency(&want, [other, renamed]),
            AssetVerdict::Renamed { found: renamed }
        );
        assert_eq!(asset_dependency(&want, [other]), AssetVerdict::Missing);
        assert!(!AssetVerdict::Missing.is_met() && AssetVerdict::Present.is_met());
        let md5ish = AssetRef {
            hash_type: 7,
            ..same
        };
        assert_eq!(
            asset_dependency(&want, [md5ish]),
            AssetVerdict::OtherContents { found: md5ish },
            "another hash type is other contents"
        );
    }

    #[test]
    fn assets_fit_in_whole_blocks_within_capacity() {
        let p2 = crate::platform::platform(32).unwrap();
        let store = p2.asset_storage().unwrap();
        assert_eq!(assets_fit(store, [1, 4088, 4089]), Ok(4 * 4096));
        assert_eq!(
            assets_fit(store, [10, u64::from(store.max_single_asset) + 1]),
            Err(AssetStorageRefusal::TooLarge {
                index: 1,
                len: u64::from(store.max_single_asset) + 1,
                max: store.max_single_asset
            })
        );
        let full = [u64::from(store.max_single_asset); 2];
        assert!(matches!(
            assets_fit(store, full),
            Err(AssetStorageRefusal::Full { .. })
        ));
        assert!(has_assets(p2, Some(5501)) && !has_assets(p2, Some(5400)));
        assert!(!has_assets(
            crate::platform::platform(6).unwrap(),
            Some(6000)
        ));
    }

    #[test]
    fn protection_states_read_as_the_bootloader_writes_them() {
        for p in [Protection::Open, Protection::Service, Protection::Protected] {
            assert_eq!(Protection::from_descriptor(p.descriptor()), Some(p));
        }
        assert_eq!(Protection::from_descriptor("sm=x"), None);
    }

    /// A system part 1 image for `platform` at `version`, as far as the bootloader reads it.
    fn part1_image(platform: &Platform, version: u16) -> Vec<u8> {
        let layout = platform.layout_for(None).unwrap();
        let start = layout.main_bounds(PART1).unwrap().start;
        let mut image = std::vec![0u8; 0x300];
        let at = match platform.mcu {
            crate::platform::Mcu::Rtl872x => {
                image[..4]
                    .copy_from_slice(&crate::parse::REALTEK_HEADER_SIGNATURE[0].to_le_bytes());
                image[4..8]
                    .copy_from_slice(&crate::parse::REALTEK_HEADER_SIGNATURE[1].to_le_bytes());
                0x20
            }
            _ => {
                image[..4].copy_from_slice(&0x2003_FFF0u32.to_le_bytes());
                0x200
            }
        };
        let mut info = ModuleInfo::from_bytes(&[0; 24]);
        info.start_address = start;
        info.end_address = start + 0x1000;
        info.version = version;
        info.platform_id = platform.id;
        info.function = ModuleFunction::SystemPart;
        info.index = 1;
        image[at..at + 24].copy_from_slice(&info.to_bytes());
        image
    }

    #[test]
    fn a_protected_bootloader_refuses_everything_but_mode_changes() {
        let p2 = platform(32).unwrap();
        let layout = p2.layout_for(None).unwrap();
        let refused = DfuProtectionVerdict::Refused(ProtectionRefusal::ProtectedDfu);
        let image = part1_image(p2, 6200);
        let requests = [
            (
                DfuRequest::Read {
                    address: 0x0806_0000,
                    len: 64,
                },
                refused,
            ),
            (DfuRequest::SetAddress, refused),
            (
                DfuRequest::Erase {
                    address: 0x0848_0000,
                },
                refused,
            ),
            (
                DfuRequest::Write {
                    address: 0x0806_0000,
                    data: &image,
                },
                refused,
            ),
            (DfuRequest::ListCommands, DfuProtectionVerdict::Allowed),
            (DfuRequest::EnterSafeMode, DfuProtectionVerdict::Allowed),
            (
                DfuRequest::ClearSecurityOverride,
                DfuProtectionVerdict::Allowed,
            ),
            (DfuRequest::Leave, DfuProtectionVerdict::Allowed),
        ];
        for (request, verdict) in requests {
            assert_eq!(
                dfu_protection(p2, layout, Protection::Protected, &request),
                verdict,
                "{request:?}"
            );
            assert_eq!(
                dfu_protection(p2, layout, Protection::Open, &request),
                DfuProtectionVerdict::Allowed,
                "an open device: {request:?}"
            );
        }
        let photon = platform(6).unwrap();
        assert_eq!(
            dfu_protection(
                photon,
                photon.layout_for(None).unwrap(),
                Protection::Protected,
                &requests[0].0
            ),
            DfuProtectionVerdict::Allowed,
            "a platform without Device Protection"
        );
        assert!(ProtectionRefusal::ProtectedDfu
            .to_string()
            .contains("Device is in protected mode"));
    }

    #[test]
    fn service_mode_guards_system_part_1_and_the_ota_region() {
        for id in [32, 12] {
            let platform = platform(id).unwrap();
            let layout = platform.layout_for(None).unwrap();
            let start = layout.main_bounds(PART1).unwrap().start;
            let service =
                |r: &DfuRequest<'_>| dfu_protection(platform, layout, Protection::Service, r);
            let new = part1_image(platform, 6101);
            let old = part1_image(platform, 5900);
            assert_eq!(
                service(&DfuRequest::Write {
                    address: start,
                    data: &new
                }),
                DfuProtectionVerdict::Allowed,
                "{id}"
            );
            assert_eq!(
                service(&DfuRequest::Write {
                    address: start,
                    data: &old
                }),
                DfuProtectionVerdict::Refused(ProtectionRefusal::ServiceSystemTooOld {
                    version: Some(5900)
                }),
                "{id}"
            );
            assert_eq!(
                service(&DfuRequest::Write {
                    address: start,
                    data: &old[..8]
                }),
                DfuProtectionVerdict::Refused(ProtectionRefusal::ServiceSystemTooOld {
                    version: None
                }),
                "{id}: too short for a header"
            );
            assert_eq!(
                service(&DfuRequest::Erase {
                    address: start + 0x1000
                }),
                DfuProtectionVerdict::EraseIgnored,
                "{id}"
            );
            assert_eq!(
                service(&DfuRequest::Write {
                    address: start + 0x1000,
                    data: &old
                }),
                DfuProtectionVerdict::Allowed,
                "{id}"
            );
            assert_eq!(
                service(&DfuRequest::SetAddress),
                DfuProtectionVerdict::Allowed,
                "{id}"
            );
        }
        let p2 = platform(32).unwrap();
        let layout = p2.layout_for(None).unwrap();
        assert_eq!(
            dfu_protection(
                p2,
                layout,
                Protection::Service,
                &DfuRequest::Read {
                    address: 0x0830_1000,
                    len: 4
                }
            ),
            DfuProtectionVerdict::Refused(ProtectionRefusal::ServiceOtaRegion {
                address: 0x0830_1000
            })
        );
        let argon = platform(12).unwrap();
        let new_map = argon.layout_for(Some(6200)).unwrap();
        assert_eq!(new_map.main_bounds(PART1).unwrap().start, 0x28000);
        assert_eq!(
            dfu_protection(
                argon,
                new_map,
                Protection::Service,
                &DfuRequest::Write {
                    address: 0x30000,
                    data: &part1_image(argon, 5800)
                }
            ),
            DfuProtectionVerdict::Refused(ProtectionRefusal::ServiceSystemTooOld {
                version: Some(5800)
            }),
            "the legacy start of 6.2's map is checked too"
        );
    }

    #[test]
    fn a_protected_device_is_not_downgraded_below_6_1_1() {
        let module = |slot: ModuleRef, version: u16| Header {
            slot,
            version,
            dependencies: [Dependency::NONE; 2],
        };
        for state in [Protection::Protected, Protection::Service] {
            assert_eq!(
                protected_update(state, &module(PART1, 6100)),
                Err(ProtectionRefusal::BelowFloor {
                    slot: PART1,
                    version: 6100,
                    floor: 6101
                })
            );
            assert_eq!(protected_update(state, &module(PART1, 6101)), Ok(()));
            assert_eq!(
                protected_update(state, &module(BOOT, 3000)),
                Err(ProtectionRefusal::BelowFloor {
                    slot: BOOT,
                    version: 3000,
                    floor: 3001
                })
            );
            assert_eq!(protected_update(state, &module(BOOT, 3001)), Ok(()));
            let mbr = ModuleRef::new(ModuleFunction::Bootloader, 1);
            assert_eq!(
                protected_update(state, &module(mbr, 5)),
                Ok(()),
                "only the Particle bootloader"
            );
            assert_eq!(protected_update(state, &module(APP, 6)), Ok(()));
            assert!(needs_protected_bootloader(state, BOOT));
        }
        assert_eq!(
            protected_update(Protection::Open, &module(PART1, 5000)),
            Ok(())
        );
        assert!(!needs_protected_bootloader(Protection::Open, BOOT));
        let words = protected_update(Protection::Protected, &module(PART1, 5900))
            .unwrap_err()
            .to_string();
        assert!(
            words.contains("below Device OS 6.1.1") && words.contains("5900"),
            "{words}"
        );
    }
}
