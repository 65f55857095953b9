//! The platform catalogue: ids, names, USB ids, flash memories, module bounds and DfuSe layouts.
//!
//! Facts from Device OS (`build/platform-id.mk`, `hal/src/*/ota_module_bounds.c`,
//! `usbd_*_if.h`) and `@particle/device-constants`, as summarised in spec/device-os.md §3, §4, §9.

use crate::header::{ModuleFunction, ModuleRef};

/// Hardware generation and flash family: decides the header rule, the memory map and boot flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Core: STM32F103, monolithic firmware, external SST25 flash.
    Core,
    /// Photon and P1: STM32F205, two system parts.
    Photon,
    /// Electron / E-series: STM32F205, two (≤ 0.5.x) or three (≥ 0.6.0) system parts.
    Electron,
    /// nRF52840 platforms (Argon, Boron, Xenon, SoMs, Tracker).
    Gen3,
    /// Realtek RTL8721D platforms (P2/Photon 2, Tracker-M, M-SoM).
    Rtl872x,
}

/// The main microcontroller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mcu {
    /// STM32F103 (Core).
    Stm32f1,
    /// STM32F205 (Photon, P1, Electron and the Gen2 development platforms).
    Stm32f2,
    /// Nordic nRF52840.
    Nrf52840,
    /// Realtek RTL8721D.
    Rtl872x,
    /// Anything else (host builds, third-party and Linux platforms).
    Other,
}

/// USB vendor/product ids in normal (CDC serial) and DFU mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UsbIds {
    /// USB vendor id.
    pub vendor: u16,
    /// Product id in normal mode.
    pub normal: u16,
    /// Product id in DFU mode, if the platform has a DFU bootloader.
    pub dfu: Option<u16>,
}

/// One platform of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Platform id as stored in module headers.
    pub id: u16,
    /// Stable lower-case name (`"photon"`), as in device-constants.
    pub name: &'static str,
    /// Name for people (`"Photon"`).
    pub display_name: &'static str,
    /// Generation as device-constants reports it, when it has one.
    pub generation: Option<u8>,
    /// Main MCU.
    pub mcu: Mcu,
    /// USB ids, when the platform enumerates over USB.
    pub usb: Option<UsbIds>,
    /// Flash family, for platforms whose memory map is known.
    pub family: Option<Family>,
    /// External flash size in bytes (Gen3 QSPI, P1 SPI, Core SST25), 0 when none.
    pub external_flash_size: u32,
    /// False for development and unreleased platforms.
    pub production: bool,
}

const PARTICLE_VID: u16 = 0x2b04;
const CORE_USB: Option<UsbIds> = Some(UsbIds {
    vendor: 0x1d50,
    normal: 0x607d,
    dfu: Some(0x607f),
});

const fn particle_usb(pid_low: u16) -> Option<UsbIds> {
    Some(UsbIds {
        vendor: PARTICLE_VID,
        normal: 0xc000 | pid_low,
        dfu: Some(0xd000 | pid_low),
    })
}

const MB: u32 = 1024 * 1024;

#[allow(clippy::too_many_arguments)]
const fn p(
    id: u16,
    name: &'static str,
    display_name: &'static str,
    generation: Option<u8>,
    mcu: Mcu,
    usb: Option<UsbIds>,
    family: Option<Family>,
    external_flash_size: u32,
    production: bool,
) -> Platform {
    Platform {
        id,
        name,
        display_name,
        generation,
        mcu,
        usb,
        family,
        external_flash_size,
        production,
    }
}

/// Every platform id Device OS and device-constants define (spec §3).
pub static PLATFORMS: &[Platform] = &[
    p(
        0,
        "core",
        "Core",
        Some(1),
        Mcu::Stm32f1,
        CORE_USB,
        Some(Family::Core),
        2 * MB,
        true,
    ),
    p(
        2,
        "core-hd",
        "Core HD",
        Some(1),
        Mcu::Stm32f1,
        CORE_USB,
        None,
        0,
        false,
    ),
    p(
        3,
        "gcc",
        "gcc (host build)",
        None,
        Mcu::Other,
        None,
        None,
        0,
        false,
    ),
    p(
        4,
        "dev-photon",
        "Photon (development)",
        Some(2),
        Mcu::Stm32f2,
        CORE_USB,
        None,
        0,
        false,
    ),
    p(
        5,
        "dev-teacup",
        "Teacup (development)",
        Some(2),
        Mcu::Stm32f2,
        CORE_USB,
        None,
        0,
        false,
    ),
    p(
        6,
        "photon",
        "Photon",
        Some(2),
        Mcu::Stm32f2,
        particle_usb(0x06),
        Some(Family::Photon),
        0,
        true,
    ),
    p(
        7,
        "teacup-bm14",
        "Teacup BM-14 (development)",
        Some(2),
        Mcu::Stm32f2,
        CORE_USB,
        None,
        0,
        false,
    ),
    p(
        8,
        "p1",
        "P1",
        Some(2),
        Mcu::Stm32f2,
        particle_usb(0x08),
        Some(Family::Photon),
        MB,
        true,
    ),
    p(
        9,
        "ethernet",
        "Ethernet (prototype)",
        Some(2),
        Mcu::Stm32f2,
        particle_usb(0x09),
        None,
        0,
        false,
    ),
    p(
        10,
        "electron",
        "Electron",
        Some(2),
        Mcu::Stm32f2,
        particle_usb(0x0a),
        Some(Family::Electron),
        0,
        true,
    ),
    p(
        12,
        "argon",
        "Argon",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x0c),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        13,
        "boron",
        "Boron",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x0d),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        14,
        "xenon",
        "Xenon",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x0e),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        15,
        "esomx",
        "E-SoM-X",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x0f),
        Some(Family::Gen3),
        8 * MB,
        true,
    ),
    p(
        20,
        "mesh-virtual",
        "Mesh virtual",
        None,
        Mcu::Other,
        None,
        None,
        0,
        false,
    ),
    p(
        22,
        "asom",
        "A-SoM",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x16),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        23,
        "bsom",
        "B-SoM",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x17),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        24,
        "xsom",
        "X-SoM",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x18),
        Some(Family::Gen3),
        4 * MB,
        true,
    ),
    p(
        25,
        "b5som",
        "B5-SoM",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x19),
        Some(Family::Gen3),
        8 * MB,
        true,
    ),
    p(
        26,
        "tracker",
        "Tracker",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x1a),
        Some(Family::Gen3),
        8 * MB,
        true,
    ),
    p(
        28,
        "trackerm",
        "Tracker-M",
        Some(3),
        Mcu::Rtl872x,
        particle_usb(0x1c),
        Some(Family::Rtl872x),
        0,
        true,
    ),
    p(
        31,
        "raspberrypi",
        "Raspberry Pi",
        None,
        Mcu::Other,
        None,
        None,
        0,
        true,
    ),
    p(
        32,
        "p2",
        "P2",
        Some(4),
        Mcu::Rtl872x,
        particle_usb(0x20),
        Some(Family::Rtl872x),
        0,
        true,
    ),
    p(
        35,
        "msom",
        "M-SoM",
        Some(4),
        Mcu::Rtl872x,
        particle_usb(0x23),
        Some(Family::Rtl872x),
        0,
        true,
    ),
    p(
        37,
        "electron2",
        "Electron 2",
        Some(3),
        Mcu::Nrf52840,
        particle_usb(0x25),
        None,
        0,
        true,
    ),
    p(
        38,
        "sulu",
        "Sulu",
        Some(4),
        Mcu::Rtl872x,
        particle_usb(0x26),
        None,
        0,
        false,
    ),
    p(
        42,
        "tachyon",
        "Tachyon",
        None,
        Mcu::Other,
        Some(UsbIds {
            vendor: PARTICLE_VID,
            normal: 0xc02a,
            dfu: None,
        }),
        None,
        0,
        true,
    ),
    p(82, "oak", "Oak", None, Mcu::Other, None, None, 0, false),
    p(
        88,
        "duo",
        "RedBear Duo",
        None,
        Mcu::Stm32f2,
        Some(UsbIds {
            vendor: PARTICLE_VID,
            normal: 0xc058,
            dfu: Some(0xd058),
        }),
        None,
        0,
        false,
    ),
    p(103, "bluz", "Bluz", None, Mcu::Other, None, None, 0, false),
    p(
        60000,
        "newhal",
        "newhal (template)",
        None,
        Mcu::Other,
        None,
        None,
        0,
        false,
    ),
];

/// Looks a platform up by id.
pub fn platform(id: u16) -> Option<&'static Platform> {
    PLATFORMS.iter().find(|p| p.id == id)
}

/// The largest module region of any platform's memory maps, in bytes: no module of any
/// platform is larger.
pub fn largest_module_region() -> u32 {
    PLATFORMS
        .iter()
        .flat_map(|p| p.layouts())
        .flat_map(|l| l.bounds)
        .map(|b| b.max_size)
        .max()
        .unwrap_or(0)
}

/// Product names sold on a platform of another name: the Photon 2 is a P2 on a development
/// board (platform 32).
const PRODUCT_NAMES: &[(&str, u16)] = &[("photon2", 32)];

/// Looks a platform up by name or id: its name, its display name or a product name sold on
/// it, ignoring case, spaces, `-` and `_` (`"photon"`, `"P2"`, `"Photon 2"`, `"electron-2"`).
pub fn platform_by_name(name: &str) -> Option<&'static Platform> {
    if let Ok(id) = name.parse::<u16>() {
        return platform(id);
    }
    fn squeezed(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_'))
            .map(|c| c.to_ascii_lowercase())
    }
    let same = |a: &str, b: &str| squeezed(a).eq(squeezed(b));
    if let Some(&(_, id)) = PRODUCT_NAMES.iter().find(|(n, _)| same(n, name)) {
        return platform(id);
    }
    PLATFORMS
        .iter()
        .find(|p| same(p.name, name) || same(p.display_name, name))
}

/// Looks a platform up by a USB vendor/product id, in either mode. Returns the platform and
/// whether the id is its DFU-mode id.
pub fn platform_by_usb(vendor: u16, product: u16) -> Option<(&'static Platform, bool)> {
    PLATFORMS.iter().filter(|p| p.production).find_map(|p| {
        let usb = p.usb?;
        if usb.vendor != vendor {
            None
        } else if usb.normal == product {
            Some((p, false))
        } else if usb.dfu == Some(product) {
            Some((p, true))
        } else {
            None
        }
    })
}

/// Where a module region lives (`module_bounds_location_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// MCU internal flash.
    Internal,
    /// External (SPI/QSPI) flash.
    External,
    /// The network co-processor's flash.
    Ncp,
}

/// What a region holds (`module_store_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Store {
    /// The running copy.
    Main,
    /// The factory-reset image.
    Factory,
    /// A backup copy.
    Backup,
    /// The OTA staging area.
    Scratchpad,
}

impl Store {
    /// The describe-JSON location code (`"l":"m"`).
    pub const fn code(self) -> char {
        match self {
            Self::Main => 'm',
            Self::Factory => 'f',
            Self::Backup => 'b',
            Self::Scratchpad => 't',
        }
    }

    /// Parses a describe-JSON location code.
    pub fn from_code(code: char) -> Option<Self> {
        [Self::Main, Self::Factory, Self::Backup, Self::Scratchpad]
            .into_iter()
            .find(|s| s.code() == code)
    }

    /// Stable lower-case name for JSON (`"main"`, `"factory"`, `"backup"`, `"scratchpad"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Factory => "factory",
            Self::Backup => "backup",
            Self::Scratchpad => "scratchpad",
        }
    }
}

/// One region of a memory map (`module_bounds_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleBounds {
    /// Largest module the region holds.
    pub max_size: u32,
    /// First address of the region.
    pub start: u32,
    /// Address just past the region.
    pub end: u32,
    /// Function of the module stored here ([`ModuleFunction::None`] for the OTA region).
    pub function: ModuleFunction,
    /// Index of the module stored here.
    pub index: u8,
    /// Running copy, factory image, backup or OTA staging.
    pub store: Store,
    /// MCU target (0 = main MCU).
    pub mcu: u8,
    /// Internal flash, external flash or NCP.
    pub location: Location,
    /// The module grows downward from a fixed end (RTL872x user part).
    pub fixed_end: bool,
}

impl ModuleBounds {
    /// The slot this region holds.
    pub const fn slot(&self) -> ModuleRef {
        ModuleRef::new(self.function, self.index)
    }

    /// The device's range rule (spec §4.6): is a module ending at `end_address` in range?
    pub const fn end_in_range(&self, end_address: u32) -> bool {
        if self.fixed_end {
            end_address >= self.end.saturating_sub(self.max_size) && end_address <= self.end
        } else {
            end_address >= self.start && end_address <= self.end
        }
    }

    /// True when `[start, end)` lies inside the region.
    pub const fn contains_range(&self, start: u32, end: u32) -> bool {
        start >= self.lowest_start() && end <= self.end && start <= end
    }

    /// Lowest address a module of this region may start at.
    pub const fn lowest_start(&self) -> u32 {
        if self.fixed_end {
            self.end.saturating_sub(self.max_size)
        } else {
            self.start
        }
    }
}

/// A run of equal-sized erase units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectorRun {
    /// Number of sectors.
    pub count: u32,
    /// Size of each sector in bytes.
    pub size: u32,
}

/// A flash memory: base address and sector geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlashMemory {
    /// Short name ("internal", "external").
    pub name: &'static str,
    /// Address of the first byte as the device addresses it.
    pub base: u32,
    /// Sector geometry, contiguous from `base`.
    pub sectors: &'static [SectorRun],
}

impl FlashMemory {
    /// Total size in bytes.
    pub fn size(&self) -> u32 {
        self.sectors.iter().map(|r| r.count * r.size).sum()
    }

    /// Address just past the memory.
    pub fn end(&self) -> u32 {
        self.base + self.size()
    }

    /// True when `[address, address+len)` lies inside the memory.
    pub fn contains(&self, address: u32, len: u32) -> bool {
        address >= self.base
            && address
                .checked_add(len)
                .is_some_and(|end| end <= self.end())
    }

    /// The sector containing `address`: (sector start, sector size).
    pub fn sector_at(&self, address: u32) -> Option<(u32, u32)> {
        self.sectors_iter()
            .find(|&(start, size)| address >= start && address - start < size)
    }

    /// Every sector as (start, size), in address order.
    pub fn sectors_iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut next = self.base;
        self.sectors.iter().flat_map(move |run| {
            let first = next;
            next += run.count * run.size;
            (0..run.count).map(move |i| (first + i * run.size, run.size))
        })
    }
}

/// A platform's asset store: a file system in external (or, on RTL872x, internal) flash
/// made of blocks, some reserved; each asset module occupies whole blocks, each block losing a
/// few bytes to the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssetStorage {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks of the store.
    pub total_blocks: u32,
    /// Blocks the file system keeps for itself.
    pub reserved_blocks: u32,
    /// The largest asset module the platform accepts, in bytes.
    pub max_single_asset: u32,
    /// Bytes of each block the file system uses for itself.
    pub per_block_overhead: u32,
    /// Bytes each asset costs besides its blocks.
    pub per_asset_overhead: u32,
}

impl AssetStorage {
    /// Bytes available to assets: the blocks that are not reserved.
    pub const fn capacity(&self) -> u64 {
        self.block_size as u64 * (self.total_blocks.saturating_sub(self.reserved_blocks)) as u64
    }

    /// Bytes of storage an asset module of `module_len` bytes takes: whole blocks of
    /// `block_size − per_block_overhead` usable bytes, plus the per-asset overhead.
    pub const fn storage_size(&self, module_len: u64) -> u64 {
        let usable = self.block_size.saturating_sub(self.per_block_overhead) as u64;
        if usable == 0 {
            return u64::MAX;
        }
        self.per_asset_overhead as u64 + module_len.div_ceil(usable) * self.block_size as u64
    }
}

const fn asset_storage(total_blocks: u32, max_single_asset: u32) -> AssetStorage {
    AssetStorage {
        block_size: 4096,
        total_blocks,
        reserved_blocks: 10,
        max_single_asset,
        per_block_overhead: 8,
        per_asset_overhead: 0,
    }
}

static ASSETS_GEN3_4MB: AssetStorage = asset_storage(288, 606_208);
static ASSETS_GEN3_8MB: AssetStorage = asset_storage(512, 1_572_864);
static ASSETS_RTL872X: AssetStorage = asset_storage(288, 1_179_648);

/// A memory map in force for a range of installed system firmware versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Short name, e.g. `"electron-0.5"`.
    pub name: &'static str,
    /// Lowest system-part version this map applies to.
    pub min_system_version: u16,
    /// Highest system-part version this map applies to.
    pub max_system_version: u16,
    /// Regions, in the order Device OS lists them (bootloader, system parts, user, factory...).
    pub bounds: &'static [ModuleBounds],
    /// OTA staging region.
    pub ota: ModuleBounds,
    /// Internal flash.
    pub internal: FlashMemory,
    /// External flash, when the platform has one.
    pub external: Option<FlashMemory>,
    /// DfuSe alternate-setting strings, alt 0 first.
    pub dfu_alts: &'static [&'static str],
}

impl Layout {
    /// The running-copy region of `slot`.
    pub fn main_bounds(&self, slot: ModuleRef) -> Option<&'static ModuleBounds> {
        self.bounds
            .iter()
            .find(|b| b.store == Store::Main && b.slot() == slot)
    }

    /// The factory-image region, if the platform has one.
    pub fn factory_bounds(&self) -> Option<&'static ModuleBounds> {
        self.bounds.iter().find(|b| b.store == Store::Factory)
    }

    /// True when this map applies to a device whose system parts have `version`.
    pub const fn applies_to(&self, system_version: u16) -> bool {
        system_version >= self.min_system_version && system_version <= self.max_system_version
    }

    /// The bounds Device OS' `find_module_bounds(function, index)` returns: the first entry
    /// with that function and index, whatever its store.
    pub fn find_bounds(&self, slot: ModuleRef) -> Option<&'static ModuleBounds> {
        self.bounds.iter().find(|b| b.slot() == slot)
    }
}

impl Platform {
    /// The platform joins Wi-Fi networks with credentials a user gives it: its Device OS
    /// builds the Wi-Fi setup console, whose listening-mode key `w` takes an SSID, a
    /// security type and a password (`system/src/system_setup.cpp`). That is every platform
    /// with `HAL_PLATFORM_WIFI` but not `HAL_PLATFORM_WIFI_SCAN_ONLY`
    /// (`hal/src/*/hal_platform_config.h`, `system/src/system_listening_mode.cpp` [v6.2.0]),
    /// and the Core, whose CC3000 firmware has the same key. The Tracker and Tracker-M scan
    /// for Wi-Fi networks only (geolocation); cellular platforms have no Wi-Fi.
    pub fn has_wifi(&self) -> bool {
        // core, photon, p1, argon, asom, p2, msom
        matches!(self.id, 0 | 6 | 8 | 12 | 22 | 32 | 35)
    }

    /// Where the platform keeps assets (Device OS 5.5.0 and later), when it has an asset
    /// store: the geometry `@particle/device-constants` gives (`assets`), which
    /// particle-cli and binary-version-reader's `validateAssetLimits` size bundles against.
    pub const fn asset_storage(&self) -> Option<&'static AssetStorage> {
        match self.id {
            // argon, boron, bsom
            12 | 13 | 23 => Some(&ASSETS_GEN3_4MB),
            // esomx, b5som, tracker, electron2
            15 | 25 | 26 | 37 => Some(&ASSETS_GEN3_8MB),
            // trackerm, p2, msom, sulu
            28 | 32 | 35 | 38 => Some(&ASSETS_RTL872X),
            _ => None,
        }
    }

    /// The platform supports Device Protection (Device OS 6.x): its bootloader can be
    /// protected, which restricts DFU (see `rules::dfu_protection`). The platforms
    /// `@particle/device-constants` lists with the `deviceProtection` feature.
    pub const fn has_device_protection(&self) -> bool {
        // argon, boron, esomx, bsom, b5som, tracker, trackerm, p2, msom, sulu
        matches!(self.id, 12 | 13 | 15 | 23 | 25 | 26 | 28 | 32 | 35 | 38)
    }

    /// Every memory map this platform has had, oldest first (empty when unknown).
    pub fn layouts(&self) -> &'static [Layout] {
        match (self.family, self.id) {
            (Some(Family::Core), _) => &CORE_LAYOUTS,
            (Some(Family::Photon), 8) => &P1_LAYOUTS,
            (Some(Family::Photon), _) => &PHOTON_LAYOUTS,
            (Some(Family::Electron), _) => &ELECTRON_LAYOUTS,
            (Some(Family::Gen3), _) if self.external_flash_size >= 8 * MB => &GEN3_8MB_LAYOUTS,
            (Some(Family::Gen3), _) => &GEN3_4MB_LAYOUTS,
            (Some(Family::Rtl872x), _) => &RTL872X_LAYOUTS,
            (None, _) => &[],
        }
    }

    /// The memory map in force for installed system firmware `system_version`; the newest
    /// map when the version is unknown.
    pub fn layout_for(&self, system_version: Option<u16>) -> Option<&'static Layout> {
        let layouts = self.layouts();
        match system_version {
            Some(v) => layouts.iter().find(|l| l.applies_to(v)).or(layouts.last()),
            None => layouts.last(),
        }
    }

    /// Bytes of flash its largest memory map shows (internal and external flash together): no
    /// image written to this platform is larger. 0 when no map is known.
    pub fn flash_size(&self) -> u64 {
        self.layouts()
            .iter()
            .map(|l| u64::from(l.internal.size()) + l.external.map_or(0, |e| u64::from(e.size())))
            .max()
            .unwrap_or(0)
    }

    /// The header offset the device itself uses for a module of `function` on this platform
    /// (spec §2.6): the vector table size for bootloaders and system parts that start with one.
    pub const fn vector_table_size(&self) -> usize {
        match self.mcu {
            Mcu::Stm32f1 => 0x10C,
            Mcu::Stm32f2 => 0x184,
            Mcu::Nrf52840 => 0x200,
            Mcu::Rtl872x => 0x20,
            Mcu::Other => 0,
        }
    }
}

const fn b(
    function: ModuleFunction,
    index: u8,
    store: Store,
    start: u32,
    max_size: u32,
    location: Location,
) -> ModuleBounds {
    ModuleBounds {
        max_size,
        start,
        end: start + max_size,
        function,
        index,
        store,
        mcu: 0,
        location,
        fixed_end: false,
    }
}

use Location::{External, Internal};
use ModuleFunction::{Bootloader, MonoFirmware, RadioStack, SystemPart, UserPart};
use Store::{Factory, Main, Scratchpad};

const KB: u32 = 1024;

// ---- Core (spec §4.1) ----------------------------------------------------------------------

static CORE_INTERNAL: FlashMemory = FlashMemory {
    name: "internal",
    base: 0x0800_0000,
    sectors: &[SectorRun {
        count: 128,
        size: KB,
    }],
};
static CORE_EXTERNAL: FlashMemory = FlashMemory {
    name: "external",
    base: 0,
    sectors: &[SectorRun {
        count: 512,
        size: 4 * KB,
    }],
};
static CORE_BOUNDS: [ModuleBounds; 2] = [
    b(MonoFirmware, 0, Main, 0x0800_5000, 108 * KB, Internal),
    b(MonoFirmware, 0, Factory, 0x0002_0000, 128 * KB, External),
];
static CORE_LAYOUTS: [Layout; 1] = [Layout {
    name: "core",
    min_system_version: 0,
    max_system_version: u16::MAX,
    bounds: &CORE_BOUNDS,
    ota: b(
        ModuleFunction::None,
        0,
        Scratchpad,
        0x0006_0000,
        128 * KB,
        External,
    ),
    internal: CORE_INTERNAL,
    external: Some(CORE_EXTERNAL),
    dfu_alts: &[
        "@Internal Flash   /0x08000000/20*001Ka,108*001Kg",
        "@SPI Flash : SST25x/0x00000000/512*04Kg",
    ],
}];

// ---- Photon / P1 (spec §4.2) ---------------------------------------------------------------

static STM32F2_INTERNAL: FlashMemory = FlashMemory {
    name: "internal",
    base: 0x0800_0000,
    sectors: &[
        SectorRun {
            count: 4,
            size: 16 * KB,
        },
        SectorRun {
            count: 1,
            size: 64 * KB,
        },
        SectorRun {
            count: 7,
            size: 128 * KB,
        },
    ],
};
static P1_EXTERNAL: FlashMemory = FlashMemory {
    name: "external",
    base: 0,
    sectors: &[SectorRun {
        count: 256,
        size: 4 * KB,
    }],
};
const GEN2_INTERNAL_ALT: &str = "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg";
const GEN2_DCT_ALT: &str = "@DCT Flash   /0x00000000/01*016Kg";

static PHOTON_BOUNDS: [ModuleBounds; 5] = [
    b(Bootloader, 0, Main, 0x0800_0000, 0x4000, Internal),
    b(SystemPart, 1, Main, 0x0802_0000, 0x40000, Internal),
    b(SystemPart, 2, Main, 0x0806_0000, 0x40000, Internal),
    b(UserPart, 1, Main, 0x080A_0000, 0x20000, Internal),
    b(UserPart, 1, Factory, 0x080E_0000, 0x20000, Internal),
];
const PHOTON_OTA: ModuleBounds = b(
    ModuleFunction::None,
    0,
    Scratchpad,
    0x080C_0000,
    0x40000,
    Internal,
);
static PHOTON_LAYOUTS: [Layout; 1] = [Layout {
    name: "photon",
    min_system_version: 0,
    max_system_version: u16::MAX,
    bounds: &PHOTON_BOUNDS,
    ota: PHOTON_OTA,
    internal: STM32F2_INTERNAL,
    external: None,
    dfu_alts: &[GEN2_INTERNAL_ALT, GEN2_DCT_ALT],
}];
static P1_LAYOUTS: [Layout; 1] = [Layout {
    name: "p1",
    min_system_version: 0,
    max_system_version: u16::MAX,
    bounds: &PHOTON_BOUNDS,
    ota: PHOTON_OTA,
    internal: STM32F2_INTERNAL,
    external: Some(P1_EXTERNAL),
    dfu_alts: &[
        GEN2_INTERNAL_ALT,
        GEN2_DCT_ALT,
        "@Serial Flash   /0x00000000/256*004Kg",
    ],
}];

// ---- Electron (spec §4.3) ------------------------------------------------------------------

/// First system-part version of the 0.6.0 line, when the Electron moved to three parts.
pub const ELECTRON_THREE_PARTS_FROM: u16 = 100;

static ELECTRON_05_BOUNDS: [ModuleBounds; 5] = [
    b(Bootloader, 0, Main, 0x0800_0000, 0x4000, Internal),
    b(SystemPart, 1, Main, 0x0802_0000, 0x20000, Internal),
    b(SystemPart, 2, Main, 0x0804_0000, 0x20000, Internal),
    b(UserPart, 1, Main, 0x0808_0000, 0x20000, Internal),
    b(UserPart, 1, Factory, 0x080E_0000, 0x20000, Internal),
];
static ELECTRON_BOUNDS: [ModuleBounds; 6] = [
    b(Bootloader, 0, Main, 0x0800_0000, 0x4000, Internal),
    b(SystemPart, 1, Main, 0x0802_0000, 0x20000, Internal),
    b(SystemPart, 2, Main, 0x0804_0000, 0x20000, Internal),
    b(SystemPart, 3, Main, 0x0806_0000, 0x20000, Internal),
    b(UserPart, 1, Main, 0x0808_0000, 0x20000, Internal),
    b(UserPart, 1, Factory, 0x080A_0000, 0x20000, Internal),
];
static ELECTRON_LAYOUTS: [Layout; 2] = [
    Layout {
        name: "electron-0.5",
        min_system_version: 0,
        max_system_version: ELECTRON_THREE_PARTS_FROM - 1,
        bounds: &ELECTRON_05_BOUNDS,
        ota: b(
            ModuleFunction::None,
            0,
            Scratchpad,
            0x080C_0000,
            0x20000,
            Internal,
        ),
        internal: STM32F2_INTERNAL,
        external: None,
        dfu_alts: &[GEN2_INTERNAL_ALT, GEN2_DCT_ALT],
    },
    Layout {
        name: "electron",
        min_system_version: ELECTRON_THREE_PARTS_FROM,
        max_system_version: u16::MAX,
        bounds: &ELECTRON_BOUNDS,
        ota: b(
            ModuleFunction::None,
            0,
            Scratchpad,
            0x080C_0000,
            0x20000,
            Internal,
        ),
        internal: STM32F2_INTERNAL,
        external: None,
        dfu_alts: &[GEN2_INTERNAL_ALT, GEN2_DCT_ALT],
    },
];

// ---- Gen3 nRF52840 (spec §4.4) -------------------------------------------------------------

/// First system-part version with the 256 KB application (Device OS 3.1.0).
pub const GEN3_LARGE_APP_FROM: u16 = 3100;
/// First system-part version of the 6.2.0 memory map.
pub const GEN3_62_MAP_FROM: u16 = 6200;

static NRF_INTERNAL: FlashMemory = FlashMemory {
    name: "internal",
    base: 0,
    sectors: &[SectorRun {
        count: 256,
        size: 4 * KB,
    }],
};
/// External QSPI flash, addressed by offset (DFU alt 2 shows it at 0x80000000 + offset).
static NRF_EXTERNAL_4MB: FlashMemory = FlashMemory {
    name: "external",
    base: 0,
    sectors: &[SectorRun {
        count: 1024,
        size: 4 * KB,
    }],
};
static NRF_EXTERNAL_8MB: FlashMemory = FlashMemory {
    name: "external",
    base: 0,
    sectors: &[SectorRun {
        count: 2048,
        size: 4 * KB,
    }],
};
const GEN3_INTERNAL_ALT: &str =
    "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka";
const GEN3_DCT_ALT: &str = "@DCT Flash   /0x00000000/1*016Ke";
const GEN3_EXT_4MB_ALT: &str = "@External Flash   /0x80000000/1024*004Kg";
const GEN3_EXT_8MB_ALT: &str = "@External Flash   /0x80000000/2048*004Kg";

/// External-flash factory image offset on 4 MB / 8 MB Gen3 parts.
const GEN3_FACTORY_4MB: u32 = 0x0020_0000;
const GEN3_FACTORY_8MB: u32 = 0x0060_0000;

const fn gen3_common(map62: bool) -> [ModuleBounds; 3] {
    let (radio_max, sys_start, sys_max) = if map62 {
        (0x26000, 0x28000, 0x8C000)
    } else {
        (0x2F000, 0x30000, 0xA4000)
    };
    [
        b(Bootloader, 0, Main, 0xF4000, 0xC000, Internal),
        b(SystemPart, 1, Main, sys_start, sys_max, Internal),
        b(RadioStack, 0, Main, 0x1000, radio_max, Internal),
    ]
}

/// Gen3 ≤ 3.0.x: one 128 KB application (index 1) at 0xD4000.
const fn gen3_small_app(factory: u32) -> [ModuleBounds; 5] {
    let [boot, sys, radio] = gen3_common(false);
    [
        boot,
        sys,
        b(UserPart, 1, Main, 0xD4000, 0x20000, Internal),
        b(UserPart, 1, Factory, factory, 128 * KB, External),
        radio,
    ]
}

/// Gen3 ≥ 3.1.0: the 256 KB application (index 2) at 0xB4000, plus the legacy 128 KB slot
/// (index 1, "compat") at 0xD4000, which wins when both hold a valid app.
const fn gen3_large_app(factory: u32, map62: bool) -> [ModuleBounds; 6] {
    let [boot, sys, radio] = gen3_common(map62);
    [
        boot,
        sys,
        b(UserPart, 2, Main, 0xB4000, 0x40000, Internal),
        b(UserPart, 2, Factory, factory, 256 * KB, External),
        radio,
        b(UserPart, 1, Main, 0xD4000, 0x20000, Internal),
    ]
}

static GEN3_4MB_30: [ModuleBounds; 5] = gen3_small_app(GEN3_FACTORY_4MB);
static GEN3_4MB_31: [ModuleBounds; 6] = gen3_large_app(GEN3_FACTORY_4MB, false);
static GEN3_4MB_62: [ModuleBounds; 6] = gen3_large_app(GEN3_FACTORY_4MB, true);
static GEN3_8MB_30: [ModuleBounds; 5] = gen3_small_app(GEN3_FACTORY_8MB);
static GEN3_8MB_31: [ModuleBounds; 6] = gen3_large_app(GEN3_FACTORY_8MB, false);
static GEN3_8MB_62: [ModuleBounds; 6] = gen3_large_app(GEN3_FACTORY_8MB, true);

#[allow(clippy::too_many_arguments)]
const fn gen3_layout(
    name: &'static str,
    min: u16,
    max: u16,
    bounds: &'static [ModuleBounds],
    ota_start: u32,
    ota_size: u32,
    ext: &'static FlashMemory,
    alts: &'static [&'static str],
) -> Layout {
    Layout {
        name,
        min_system_version: min,
        max_system_version: max,
        bounds,
        ota: b(
            ModuleFunction::None,
            0,
            Scratchpad,
            ota_start,
            ota_size,
            External,
        ),
        internal: NRF_INTERNAL,
        external: Some(*ext),
        dfu_alts: alts,
    }
}

const GEN3_4MB_ALTS: &[&str] = &[GEN3_INTERNAL_ALT, GEN3_DCT_ALT, GEN3_EXT_4MB_ALT];
const GEN3_8MB_ALTS: &[&str] = &[GEN3_INTERNAL_ALT, GEN3_DCT_ALT, GEN3_EXT_8MB_ALT];

static GEN3_4MB_LAYOUTS: [Layout; 3] = [
    gen3_layout(
        "gen3",
        0,
        GEN3_LARGE_APP_FROM - 1,
        &GEN3_4MB_30,
        0x28_9000,
        1500 * KB,
        &NRF_EXTERNAL_4MB,
        GEN3_4MB_ALTS,
    ),
    gen3_layout(
        "gen3-3.1",
        GEN3_LARGE_APP_FROM,
        GEN3_62_MAP_FROM - 1,
        &GEN3_4MB_31,
        0x28_9000,
        1500 * KB,
        &NRF_EXTERNAL_4MB,
        GEN3_4MB_ALTS,
    ),
    gen3_layout(
        "gen3-6.2",
        GEN3_62_MAP_FROM,
        u16::MAX,
        &GEN3_4MB_62,
        0x24_C000,
        592 * KB,
        &NRF_EXTERNAL_4MB,
        GEN3_4MB_ALTS,
    ),
];
static GEN3_8MB_LAYOUTS: [Layout; 3] = [
    gen3_layout(
        "gen3-8mb",
        0,
        GEN3_LARGE_APP_FROM - 1,
        &GEN3_8MB_30,
        0x68_9000,
        1500 * KB,
        &NRF_EXTERNAL_8MB,
        GEN3_8MB_ALTS,
    ),
    gen3_layout(
        "gen3-8mb-3.1",
        GEN3_LARGE_APP_FROM,
        GEN3_62_MAP_FROM - 1,
        &GEN3_8MB_31,
        0x68_9000,
        1500 * KB,
        &NRF_EXTERNAL_8MB,
        GEN3_8MB_ALTS,
    ),
    gen3_layout(
        "gen3-8mb-6.2",
        GEN3_62_MAP_FROM,
        u16::MAX,
        &GEN3_8MB_62,
        0x68_9000,
        1500 * KB,
        &NRF_EXTERNAL_8MB,
        GEN3_8MB_ALTS,
    ),
];

// ---- RTL872x (spec §4.5) -------------------------------------------------------------------

static RTL_INTERNAL: FlashMemory = FlashMemory {
    name: "internal",
    base: 0x0800_0000,
    sectors: &[SectorRun {
        count: 2048,
        size: 4 * KB,
    }],
};
static RTL_BOUNDS: [ModuleBounds; 5] = [
    b(Bootloader, 0, Main, 0x0800_4000, 0x10000, Internal),
    b(SystemPart, 1, Main, 0x0806_0000, 0x18_0000, Internal),
    ModuleBounds {
        max_size: 0x18_0000,
        start: 0x0848_0000,
        end: 0x0860_0000,
        function: UserPart,
        index: 1,
        store: Main,
        mcu: 0,
        location: Internal,
        fixed_end: true,
    },
    b(Bootloader, 1, Main, 0x0800_0000, 0x2000, Internal),
    b(Bootloader, 2, Main, 0x0801_4000, 0x4A000, Internal),
];
static RTL872X_LAYOUTS: [Layout; 1] = [Layout {
    name: "rtl872x",
    min_system_version: 0,
    max_system_version: u16::MAX,
    bounds: &RTL_BOUNDS,
    // Computed at boot: part 1 start + 1.5 MB + 1.125 MB, up to the user part's start.
    ota: b(
        ModuleFunction::None,
        0,
        Scratchpad,
        0x0830_0000,
        0x18_0000,
        Internal,
    ),
    internal: RTL_INTERNAL,
    external: None,
    dfu_alts: &["@Internal Flash   /0x08000000/2048*004Kg", GEN3_DCT_ALT],
}];

/// Offsets inside the application DCT (`application_dct_t`, spec §4.7), as DFU alt 1 exposes it.
pub mod dct {
    /// System flags (≤ 0.6.x).
    pub const SYSTEM_FLAGS: usize = 0;
    /// Device private key (TCP, RSA).
    pub const DEVICE_PRIVATE_KEY: usize = 34;
    /// Device public key.
    pub const DEVICE_PUBLIC_KEY: usize = 1250;
    /// OTA update flag: 0xA5 = apply the image in the OTA region at next system start.
    pub const OTA_UPDATE_FLAG: usize = 1753;
    /// Value of [`OTA_UPDATE_FLAG`] that requests the update.
    pub const OTA_UPDATE_PENDING: u8 = 0xA5;
    /// WICED country code (4 bytes: two letters and a revision digit).
    pub const COUNTRY_CODE: usize = 1758;
    /// Claim code (63 bytes).
    pub const CLAIM_CODE: usize = 1762;
    /// Version string (32 bytes).
    pub const VERSION_STRING: usize = 1858;
    /// Server public key (TCP); the server address follows at +384.
    pub const SERVER_PUBLIC_KEY: usize = 2082;
    /// Module update slots (`platform_flash_modules_t[5]`).
    pub const FLASH_MODULES: usize = 2852;
    /// Size of one module slot.
    pub const FLASH_MODULE_SIZE: usize = 20;
    /// Number of module slots; slot 0 is the factory-reset descriptor.
    pub const MAX_MODULE_SLOTS: usize = 5;
    /// Slot magic: factory-reset descriptor.
    pub const SLOT_FACTORY: u16 = 0x0FAC;
    /// Slot magic: a copy is pending.
    pub const SLOT_PENDING: u16 = 0xABCD;
    /// Cloud transport selection.
    pub const CLOUD_TRANSPORT: usize = 2977;
    /// Alternate (UDP/ECC) device private key.
    pub const ALT_DEVICE_PRIVATE_KEY: usize = 3106;
    /// Alternate server public key.
    pub const ALT_SERVER_PUBLIC_KEY: usize = 3298;
    /// Device id (12 bytes).
    pub const DEVICE_ID: usize = 3618;
    /// Size of the application DCT area exposed over DFU alt 1 (one 16 KB sector).
    pub const AREA_SIZE: usize = 16 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_find_their_platform() {
        for (name, id) in [
            ("Photon 2", 32),
            ("photon2", 32),
            ("P2", 32),
            ("Electron 2", 37),
            ("electron-2", 37),
            ("electron2", 37),
            ("Photon", 6),
            ("electron", 10),
        ] {
            assert_eq!(platform_by_name(name).map(|p| p.id), Some(id), "{name}");
        }
        assert!(platform_by_name("photon 3").is_none());
    }

    #[test]
    fn ids_and_names_are_unique() {
        for (i, a) in PLATFORMS.iter().enumerate() {
            for b in &PLATFORMS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn usb_lookup_finds_photon_in_both_modes() {
        assert_eq!(
            platform_by_usb(0x2b04, 0xc006).map(|(p, dfu)| (p.id, dfu)),
            Some((6, false))
        );
        assert_eq!(
            platform_by_usb(0x2b04, 0xd006).map(|(p, dfu)| (p.id, dfu)),
            Some((6, true))
        );
        assert_eq!(
            platform_by_usb(0x1d50, 0x607f).map(|(p, dfu)| (p.id, dfu)),
            Some((0, true))
        );
        assert!(platform_by_usb(0x1234, 0x5678).is_none());
    }

    #[test]
    fn the_largest_module_region_and_flash_sizes() {
        assert_eq!(
            largest_module_region(),
            0x18_0000,
            "the RTL872x system part"
        );
        assert_eq!(platform(6).unwrap().flash_size(), u64::from(MB));
        assert_eq!(platform(8).unwrap().flash_size(), u64::from(2 * MB));
        assert_eq!(platform(32).unwrap().flash_size(), u64::from(8 * MB));
        assert_eq!(platform(3).unwrap().flash_size(), 0);
    }

    #[test]
    fn memories_add_up() {
        assert_eq!(STM32F2_INTERNAL.size(), 1024 * KB);
        assert_eq!(NRF_INTERNAL.size(), 1024 * KB);
        assert_eq!(RTL_INTERNAL.size(), 8 * 1024 * KB);
        assert_eq!(
            STM32F2_INTERNAL.sector_at(0x080A_1234),
            Some((0x080A_0000, 128 * KB))
        );
        assert_eq!(
            STM32F2_INTERNAL.sector_at(0x0801_0000),
            Some((0x0801_0000, 64 * KB))
        );
        assert_eq!(STM32F2_INTERNAL.sector_at(0x0810_0000), None);
        assert_eq!(STM32F2_INTERNAL.sectors_iter().count(), 12);
    }

    #[test]
    fn every_layout_region_fits_its_memory() {
        for p in PLATFORMS {
            for l in p.layouts() {
                for b in l.bounds.iter().chain(core::iter::once(&l.ota)) {
                    let mem = match b.location {
                        Location::Internal => &l.internal,
                        _ => l.external.as_ref().expect("external region needs a memory"),
                    };
                    let (base, size) = (mem.base, mem.size());
                    assert!(
                        b.lowest_start() >= base && b.end <= base + size,
                        "{} {}: {:?} outside {:#x}+{:#x}",
                        p.name,
                        l.name,
                        b,
                        base,
                        size
                    );
                }
            }
        }
    }

    #[test]
    fn electron_layout_follows_the_system_version() {
        let e = platform(10).unwrap();
        assert_eq!(e.layout_for(Some(17)).unwrap().name, "electron-0.5");
        assert_eq!(e.layout_for(Some(1502)).unwrap().name, "electron");
        assert_eq!(e.layout_for(None).unwrap().name, "electron");
        let argon = platform(12).unwrap();
        assert_eq!(argon.layout_for(Some(1502)).unwrap().name, "gen3");
        assert_eq!(argon.layout_for(Some(6200)).unwrap().name, "gen3-6.2");
    }

    #[test]
    fn asset_stores_as_device_constants_size_them() {
        let p2 = platform(32).unwrap().asset_storage().unwrap();
        assert_eq!(p2.capacity(), 4096 * 278);
        assert_eq!(p2.max_single_asset, 1_179_648);
        assert_eq!(p2.storage_size(1), 4096);
        assert_eq!(
            p2.storage_size(4088),
            4096,
            "8 bytes of each block are the file system's"
        );
        assert_eq!(p2.storage_size(4089), 8192);
        assert_eq!(
            platform(26).unwrap().asset_storage().unwrap().capacity(),
            4096 * 502
        );
        assert!(platform(6).unwrap().asset_storage().is_none());
        assert!(platform(35).unwrap().has_device_protection());
        assert!(!platform(10).unwrap().has_device_protection());
    }

    #[test]
    fn fixed_end_range_rule() {
        let user = RTL_BOUNDS[2];
        assert!(user.end_in_range(0x085F_FFFC));
        assert!(!user.end_in_range(0x0847_0000));
        assert!(!user.end_in_range(0x0860_0004));
    }
}
