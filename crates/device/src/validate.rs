//! The checks the bootloader and the system make before running firmware: the system part the
//! bootloader jumps into, whether the system can start, `HAL_Core_Validate_Modules` and
//! `HAL_Core_Validate_User_Module`.

use modflash_module::platform::{Family, ModuleBounds, Store};
use modflash_module::rules;
use modflash_module::{Module, ModuleFunction, ModuleInfo, ModuleRef};

use crate::cause::{
    CrashCause, FactoryResetCause, InvalidUserPart, SafeModeCause, SlotContent, SystemFault,
};
use crate::device::Device;
use crate::flash::Space;
use crate::hal::{flags, HeaderFault};

impl Device {
    /// `is_application_valid`: the bootloader's check of system part 1 (or mono firmware).
    /// Gen2 checks the header only; Gen3 and RTL872x also check the CRC.
    pub(crate) fn system_start_header(&self) -> Result<ModuleInfo, SystemFault> {
        let layout = self.layout();
        let hal = self.hal();
        let first = layout
            .main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1))
            .or_else(|| layout.main_bounds(ModuleRef::new(ModuleFunction::MonoFirmware, 0)))
            .ok_or(SystemFault::NoRegion)?;
        let (info, address) = hal.read_info(first).ok_or(SystemFault::Unreadable)?;
        if info.start_address != first.start || info.platform_id != self.platform.id {
            return Err(SystemFault::ForeignHeader {
                address: first.start,
                module: first.slot(),
            });
        }
        if info.end_address > first.end || info.end_address < info.start_address {
            return Err(SystemFault::OutOfRegion(first.slot()));
        }
        let crc_checked = !matches!(
            self.platform.family,
            Some(Family::Photon) | Some(Family::Electron)
        );
        if crc_checked && !hal.integrity_ok(Space::of(first.location), address, &info) {
            return Err(SystemFault::Crc(first.slot()));
        }
        Ok(info)
    }

    /// Whether the system firmware can start at all ([`rules::system_runnable`]), and why
    /// not.
    pub(crate) fn system_runnable(&self) -> Result<(), CrashCause> {
        let hal = self.hal();
        rules::system_runnable(&hal, self.platform, hal.layout).map_err(CrashCause::from)
    }

    /// `HAL_Core_Validate_Modules`: bootloader and the last system part (Gen2 part 2; Gen3
    /// part 1) must pass integrity, range, platform and dependencies. Skipped on Electron.
    pub(crate) fn validate_system_modules(&self) -> Result<(), SafeModeCause> {
        if matches!(
            self.platform.family,
            Some(Family::Electron) | Some(Family::Core)
        ) {
            return Ok(());
        }
        let hal = self.hal();
        let check = |slot: ModuleRef| -> Result<(), SafeModeCause> {
            let Some(b) = hal.layout.main_bounds(slot) else {
                return Ok(());
            };
            let f = hal.fetch(b, false, flags::INTEGRITY);
            if f.is_valid() {
                return Ok(());
            }
            Err(match f.unmet {
                Some(u) if f.failed() == flags::DEPENDENCIES => SafeModeCause::Unmet(u),
                _ => SafeModeCause::ModuleFailed {
                    module: slot,
                    checks: f.failed(),
                },
            })
        };
        check(ModuleRef::new(ModuleFunction::Bootloader, 0))?;
        let last_part = hal
            .layout
            .bounds
            .iter()
            .filter(|b| b.function == ModuleFunction::SystemPart && b.store == Store::Main)
            .map(|b| b.index)
            .max()
            .unwrap_or(1);
        check(ModuleRef::new(ModuleFunction::SystemPart, last_part))
    }

    /// `HAL_Core_Validate_User_Module` (spec §6.2 step 3, §6.3).
    pub(crate) fn validate_user_app(&self) -> UserApp {
        let hal = self.hal();
        let layout = hal.layout;
        // ≥ 3.1 Gen3: the legacy 128 KB slot (index 1) wins when it holds a valid app.
        let mut users: Vec<&'static ModuleBounds> = layout
            .bounds
            .iter()
            .filter(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
            .collect();
        users.sort_by_key(|b| b.index);
        let Some(primary) = users.last().copied() else {
            return UserApp::Missing;
        };
        for b in &users {
            if b.index != primary.index {
                let f = hal.fetch(b, false, flags::INTEGRITY);
                if f.is_valid() {
                    return UserApp::Valid(f.info.expect("valid has info"));
                }
            }
        }
        let f = hal.fetch(primary, false, flags::INTEGRITY);
        let header = if primary.fixed_end {
            match hal.read_info(primary) {
                Some((info, _)) if info.platform_id == self.platform.id => Ok(info),
                Some((info, _)) => Err(HeaderFault::Platform {
                    found: info.platform_id,
                    expected: self.platform.id,
                }),
                None => Err(HeaderFault::NotFound),
            }
        } else {
            hal.user_header_valid(Space::of(primary.location), primary.start)
        };
        match header {
            Ok(_) => {
                if f.is_valid() {
                    UserApp::Valid(f.info.expect("valid has info"))
                } else if f.failed() & flags::INTEGRITY != 0 {
                    UserApp::Invalid(SafeModeCause::AppIntegrity)
                } else if let Some(u) = f.unmet {
                    UserApp::Invalid(SafeModeCause::Unmet(u))
                } else {
                    UserApp::Invalid(SafeModeCause::AppFailed { checks: f.failed() })
                }
            }
            Err(fault) => {
                let erased = self
                    .flash
                    .read(Space::of(primary.location), primary.lowest_start(), 4)
                    .is_some_and(|b| b == [0xFF; 4])
                    && !primary.fixed_end;
                let invalid = InvalidUserPart {
                    fault,
                    holds: self.slot_content(primary),
                };
                match self.factory_app_valid() {
                    true => UserApp::FactoryReset(if erased {
                        FactoryResetCause::UserPartEmpty
                    } else {
                        FactoryResetCause::AppHeader(invalid)
                    }),
                    false if erased || primary.fixed_end && hal.read_info(primary).is_none() => {
                        UserApp::Missing
                    }
                    false => UserApp::Invalid(SafeModeCause::AppHeader(invalid)),
                }
            }
        }
    }

    /// The module region `b` holds when its bytes parse as one (a Core image in a Photon's
    /// user slot, say).
    fn slot_content(&self, b: &ModuleBounds) -> Option<SlotContent> {
        let bytes =
            self.flash
                .read(Space::of(b.location), b.lowest_start(), b.max_size as usize)?;
        // Trim the erased tail so the size check can succeed.
        let used = bytes.iter().rposition(|&x| x != 0xFF).map_or(0, |p| p + 1);
        let m = Module::parse(&bytes[..used]).ok()?;
        Some(SlotContent {
            platform_id: m.info.platform_id,
            function: m.info.function,
        })
    }
}

/// The system's verdict on the application.
pub(crate) enum UserApp {
    /// It runs.
    Valid(ModuleInfo),
    /// The bootloader must restore the factory application first.
    FactoryReset(FactoryResetCause),
    /// Safe mode.
    Invalid(SafeModeCause),
    /// There is none.
    Missing,
}
