//! Module validation as Device OS' HAL does it (spec §5): locate a module in a region, check
//! RANGE / PLATFORM / INTEGRITY / DEPENDENCIES / DEPENDENCIES_FULL; the dependency rules
//! themselves are [`modflash_module::rules`], read through this HAL's [`Installed`] view.

use std::fmt;

use modflash_module::checksum::crc32;
use modflash_module::extension::{Extension, ExtensionArea, Extensions};
use modflash_module::parse::{device_header_offset, BASE_SUFFIX_SIZE};
use modflash_module::platform::{Layout, ModuleBounds, Platform, Store};
use modflash_module::rules::{self, Header, Installed, Part, Unmet};
use modflash_module::softdevice;
use modflash_module::{Dependency, ModuleFlags, ModuleFunction, ModuleInfo, ModuleRef};
use serde::{Deserialize, Serialize};

use crate::flash::{FlashChip, Space};

/// Validation flags (`module_validation_flags_t`).
pub mod flags {
    /// CRC-32 checked.
    pub const INTEGRITY: u8 = 0x02;
    /// The module's own dependencies are met.
    pub const DEPENDENCIES: u8 = 0x04;
    /// The end address is inside its region.
    pub const RANGE: u8 = 0x08;
    /// The platform id matches the device.
    pub const PLATFORM: u8 = 0x10;
    /// Product id check (unused here).
    pub const PRODUCT: u8 = 0x20;
    /// Installing it would not break installed system parts that depend on it.
    pub const DEPENDENCIES_FULL: u8 = 0x40;
}

/// A module as `fetch_module` sees it in one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The region examined.
    pub bounds: &'static ModuleBounds,
    /// The header found there, when one was found and lies in its region.
    pub info: Option<ModuleInfo>,
    /// Where the module starts in flash (the region start, or the dynamic start).
    pub address: u32,
    /// Checks attempted (`validity_checked`).
    pub checked: u8,
    /// Checks passed (`validity_result`).
    pub passed: u8,
    /// The SHA-256 stored in the suffix, when readable.
    pub sha256: Option<[u8; 32]>,
    /// The first dependency that failed, with the installed version found (None = no region).
    pub unmet: Option<Unmet>,
}

impl Fetched {
    /// `validity_checked == validity_result` and a header was found.
    pub fn is_valid(&self) -> bool {
        self.info.is_some() && self.checked == self.passed
    }

    /// The failed checks.
    pub fn failed(&self) -> u8 {
        self.checked & !self.passed
    }
}

/// Read-only access to a device's modules, as its HAL sees them.
#[derive(Clone, Copy)]
pub struct Hal<'a> {
    /// The flash.
    pub flash: &'a FlashChip,
    /// The platform.
    pub platform: &'static Platform,
    /// The memory map in force.
    pub layout: &'static Layout,
}

impl<'a> Hal<'a> {
    /// The header of the module in `bounds` and where the module starts.
    pub fn read_info(&self, bounds: &ModuleBounds) -> Option<(ModuleInfo, u32)> {
        let space = Space::of(bounds.location);
        if bounds.function == ModuleFunction::RadioStack {
            return self.radio_stack_info(bounds);
        }
        let start = if bounds.fixed_end {
            self.dynamic_start(bounds)?
        } else {
            bounds.start
        };
        let head = self
            .flash
            .read(space, start, 0x200.min((bounds.end - start) as usize))?;
        let offset = device_header_offset(self.platform.mcu, head);
        let raw = self
            .flash
            .read(space, start + offset as u32, ModuleInfo::SIZE)?;
        Some((ModuleInfo::from_bytes(raw.try_into().ok()?), start))
    }

    /// The HAL builds the radio stack's module info from the SoftDevice's own information
    /// structure (its FWID is the module version) rather than from a header.
    fn radio_stack_info(&self, bounds: &ModuleBounds) -> Option<(ModuleInfo, u32)> {
        let image = self
            .flash
            .read(Space::Internal, bounds.start, softdevice::INFO_OFFSET + 16)?;
        let version = softdevice::fwid(image)?;
        let size = self.flash.read_u32(
            Space::Internal,
            bounds.start + softdevice::INFO_OFFSET as u32 + 8,
        )?;
        // SD_SIZE_GET counts from address 0 (the MBR included): it is the SoftDevice's end.
        let info = ModuleInfo {
            start_address: bounds.start,
            end_address: size.clamp(bounds.start, bounds.end),
            mcu_target: 0,
            flags: ModuleFlags(ModuleFlags::DROP_MODULE_INFO),
            version,
            platform_id: self.platform.id,
            function: ModuleFunction::RadioStack,
            index: 0,
            dependencies: [Dependency::NONE; 2],
        };
        Some((info, bounds.start))
    }

    /// RTL872x user parts grow downward: the start comes from the DYNAMIC_LOCATION suffix
    /// extension of the module that ends at the region's fixed end.
    fn dynamic_start(&self, bounds: &ModuleBounds) -> Option<u32> {
        let end = bounds.end - 4; // the CRC sits in the last 4 bytes
        let size = u16::from_le_bytes(
            self.flash
                .read(Space::Internal, end - 2, 2)?
                .try_into()
                .ok()?,
        );
        let size = usize::from(size);
        if size <= BASE_SUFFIX_SIZE || size > 4096 {
            return None;
        }
        let suffix = self.flash.read(Space::Internal, end - size as u32, size)?;
        Extensions::new(suffix, 0, size - BASE_SUFFIX_SIZE, ExtensionArea::Suffix)
            .filter_map(Result::ok)
            .find_map(|e| match e.decode() {
                Ok(Extension::DynamicLocation { module_start, .. }) => Some(module_start),
                _ => None,
            })
            .filter(|&s| s >= bounds.lowest_start() && s < bounds.end)
    }

    /// `fetch_module(bounds, userDepsOptional, check_flags)`.
    pub fn fetch(
        &self,
        bounds: &'static ModuleBounds,
        user_deps_optional: bool,
        check: u8,
    ) -> Fetched {
        let checked = flags::RANGE | flags::DEPENDENCIES | flags::PLATFORM | check;
        let mut out = Fetched {
            bounds,
            info: None,
            address: bounds.start,
            checked,
            passed: 0,
            sha256: None,
            unmet: None,
        };
        let Some((info, address)) = self.read_info(bounds) else {
            return out;
        };
        out.address = address;
        // Module not found: no region for its function/index, or its end is out of range.
        let in_range = self
            .layout
            .find_bounds(info.slot())
            .is_some_and(|b| b.end_in_range(info.end_address));
        if !in_range {
            return out;
        }
        out.info = Some(info);
        out.passed |= flags::RANGE;
        if info.platform_id == self.platform.id {
            out.passed |= flags::PLATFORM;
        }
        let space = Space::of(bounds.location);
        let length = info.module_length().unwrap_or(0);
        if info.function != ModuleFunction::RadioStack {
            // The SHA-256 sits 34 bytes before the CRC (spec §2.1).
            out.sha256 = length
                .checked_sub(34)
                .and_then(|o| self.flash.read(space, address + o, 32))
                .and_then(|s| s.try_into().ok());
        }
        let header = Header::of(&info);
        match rules::dependencies(self, &header, user_deps_optional) {
            Ok(()) => out.passed |= flags::DEPENDENCIES,
            Err(u) => out.unmet = Some(u),
        }
        if check & flags::DEPENDENCIES_FULL != 0 {
            match rules::dependencies_full(self, &header) {
                Ok(()) => out.passed |= flags::DEPENDENCIES_FULL,
                Err(u) => out.unmet = out.unmet.or(Some(u)),
            }
        }
        if check & flags::INTEGRITY != 0 && self.integrity_ok(space, address, &info) {
            out.passed |= flags::INTEGRITY;
        }
        out
    }

    /// CRC-32 over the module in place against the big-endian CRC after it.
    pub fn integrity_ok(&self, space: Space, address: u32, info: &ModuleInfo) -> bool {
        if info.function == ModuleFunction::RadioStack {
            return true; // the SoftDevice's info structure was already found intact
        }
        let Some(length) = info.module_length() else {
            return false;
        };
        let Some(body) = self.flash.read(space, address, length as usize + 4) else {
            return false;
        };
        let (data, stored) = body.split_at(length as usize);
        crc32(data) == u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]])
    }

    /// `HAL_System_Info`: every region of the memory map, fetched with INTEGRITY.
    pub fn system_info(&self) -> Vec<Fetched> {
        self.layout
            .bounds
            .iter()
            .map(|b| self.fetch(b, false, flags::INTEGRITY))
            .collect()
    }

    /// `FLASH_isUserModuleInfoValid`: the header at `address` claims to start there, ends
    /// inside flash and names this platform.
    pub fn user_header_valid(&self, space: Space, address: u32) -> Result<ModuleInfo, HeaderFault> {
        let raw = self
            .flash
            .read(space, address, ModuleInfo::SIZE)
            .and_then(|raw| raw.try_into().ok())
            .ok_or(HeaderFault::OutsideFlash)?;
        let info = ModuleInfo::from_bytes(raw);
        let flash_end = self.layout.internal.end();
        if info.start_address != address {
            return Err(HeaderFault::Start {
                found: info.start_address,
                expected: address,
            });
        }
        if info.end_address > flash_end || info.end_address < info.start_address {
            return Err(HeaderFault::End(info.end_address));
        }
        if info.platform_id != self.platform.id {
            return Err(HeaderFault::Platform {
                found: info.platform_id,
                expected: self.platform.id,
            });
        }
        Ok(info)
    }
}

/// Why the system rejects the header of a user part (`FLASH_isUserModuleInfoValid`, or the
/// header at the fixed end of an RTL872x user region).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderFault {
    /// The region is outside flash.
    OutsideFlash,
    /// The header does not claim to start where it lies.
    Start {
        /// Its start address.
        found: u32,
        /// Where it lies.
        expected: u32,
    },
    /// Its end address is outside flash.
    End(u32),
    /// It names another platform.
    Platform {
        /// Its platform id.
        found: u16,
        /// The device's.
        expected: u16,
    },
    /// No module ends at the fixed end of the user region.
    NotFound,
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideFlash => f.write_str("the region is outside flash"),
            Self::Start { found, expected } => {
                write!(f, "it starts at {found:#010x}, expected {expected:#010x}")
            }
            Self::End(end) => write!(f, "its end address {end:#010x} is outside flash"),
            Self::Platform { found, expected } => {
                write!(f, "platform {found}, expected {expected}")
            }
            Self::NotFound => f.write_str("no module found at the end of the user region"),
        }
    }
}

/// Words for a validity mask: "integrity, dependencies".
pub fn describe_flags(mask: u8) -> String {
    let names = [
        (flags::INTEGRITY, "integrity"),
        (flags::DEPENDENCIES, "dependencies"),
        (flags::RANGE, "range"),
        (flags::PLATFORM, "platform"),
        (flags::PRODUCT, "product"),
        (
            flags::DEPENDENCIES_FULL,
            "dependencies of installed modules",
        ),
    ];
    names
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HAL's view for the rules: headers read in place, without validating them.
impl Installed for Hal<'_> {
    fn has_region(&self, slot: ModuleRef) -> bool {
        self.layout.find_bounds(slot).is_some()
    }

    fn version(&self, slot: ModuleRef) -> Option<u16> {
        let bounds = self.layout.find_bounds(slot)?;
        self.read_info(bounds).map(|(info, _)| info.version)
    }

    fn modules(&self) -> impl Iterator<Item = Header> + '_ {
        self.layout
            .bounds
            .iter()
            .filter(|b| b.store == Store::Main)
            .filter_map(|b| self.read_info(b))
            .map(|(info, _)| Header::of(&info))
    }

    fn part(&self, slot: ModuleRef) -> Part {
        let Some(bounds) = self.layout.main_bounds(slot) else {
            return Part::Missing;
        };
        let f = self.fetch(bounds, false, flags::INTEGRITY);
        match f.info {
            None => Part::Missing,
            Some(info) if info.slot() != slot => Part::Other(info.slot()),
            Some(_) => Part::Present {
                platform_ok: f.passed & flags::PLATFORM != 0,
                intact: f.passed & flags::INTEGRITY != 0,
            },
        }
    }
}
