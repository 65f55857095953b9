//! The checks the bootloader and the system make before running firmware: the system part the
//! bootloader jumps into, whether the system can start, `HAL_Core_Validate_Modules` and
//! `HAL_Core_Validate_User_Module`.

use modflash_module::platform::{Family, ModuleBounds, Store};
use modflash_module::rules::{self, NotRunnable};
use modflash_module::{Module, ModuleFunction, ModuleInfo, ModuleRef};

use crate::device::Device;
use crate::flash::Space;
use crate::hal::{describe_flags, flags};

impl Device {
    /// Gen2 checks the header only; Gen3 and RTL872x also check the CRC.
    pub(crate) fn system_start_header(&self) -> Result<ModuleInfo, String> {
        let layout = self.layout();
        let hal = self.hal();
        let first = layout
            .main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1))
            .or_else(|| layout.main_bounds(ModuleRef::new(ModuleFunction::MonoFirmware, 0)))
            .ok_or("no system region")?;
        let (info, address) = hal
            .read_info(first)
            .ok_or("the system region is unreadable")?;
        if info.start_address != first.start || info.platform_id != self.platform.id {
            return Err(format!(
                "the header at {:#010x} is not a {} for this device",
                first.start,
                first.slot()
            ));
        }
        if info.end_address > first.end || info.end_address < info.start_address {
            return Err(format!("the {} ends outside its region", first.slot()));
        }
        let crc_checked = !matches!(
            self.platform.family,
            Some(Family::Photon) | Some(Family::Electron)
        );
        if crc_checked && !hal.integrity_ok(Space::of(first.location), address, &info) {
            return Err(format!("the {} fails its CRC check", first.slot()));
        }
        Ok(info)
    }

    /// Whether the system firmware can start at all ([`rules::system_runnable`]); the reason
    /// in words when it cannot.
    pub(crate) fn system_runnable(&self) -> Result<(), String> {
        let hal = self.hal();
        rules::system_runnable(&hal, self.platform, hal.layout).map_err(|why| match why {
            NotRunnable::Missing(region) => format!("the {} is missing", region.slot()),
            NotRunnable::Other { region, found } => format!(
                "the {} at {:#010x} is corrupt (it holds a {found})",
                region.slot(),
                region.start
            ),
            NotRunnable::Corrupt {
                region,
                platform,
                integrity,
            } => {
                let failed = if platform { flags::PLATFORM } else { 0 }
                    | if integrity { flags::INTEGRITY } else { 0 };
                format!(
                    "the {} at {:#010x} is corrupt ({} failed)",
                    region.slot(),
                    region.start,
                    describe_flags(failed)
                )
            }
        })
    }

    /// `HAL_Core_Validate_Modules`: bootloader and the last system part (Gen2 part 2; Gen3
    /// part 1) must pass integrity, range, platform and dependencies. Skipped on Electron.
    pub(crate) fn validate_system_modules(&self) -> Result<(), String> {
        if matches!(
            self.platform.family,
            Some(Family::Electron) | Some(Family::Core)
        ) {
            return Ok(());
        }
        let hal = self.hal();
        let check = |slot: ModuleRef| -> Result<(), String> {
            let Some(b) = hal.layout.main_bounds(slot) else {
                return Ok(());
            };
            let f = hal.fetch(b, false, flags::INTEGRITY);
            if f.is_valid() {
                return Ok(());
            }
            Err(match f.unmet {
                Some(u) if f.failed() == flags::DEPENDENCIES => u.to_string(),
                _ => format!("the {} failed {}", slot, describe_flags(f.failed())),
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
                Some((info, _)) => Err(format!(
                    "platform {}, expected {}",
                    info.platform_id, self.platform.id
                )),
                None => Err("no module found at the end of the user region".into()),
            }
        } else {
            hal.user_header_valid(Space::of(primary.location), primary.start)
        };
        match header {
            Ok(_) => {
                if f.is_valid() {
                    UserApp::Valid(f.info.expect("valid has info"))
                } else if f.failed() & flags::INTEGRITY != 0 {
                    UserApp::Invalid("the application fails its CRC check".into())
                } else if let Some(u) = f.unmet {
                    UserApp::Invalid(u.to_string())
                } else {
                    UserApp::Invalid(format!(
                        "the application failed {}",
                        describe_flags(f.failed())
                    ))
                }
            }
            Err(why) => {
                let erased = self
                    .flash
                    .read(Space::of(primary.location), primary.lowest_start(), 4)
                    .is_some_and(|b| b == [0xFF; 4])
                    && !primary.fixed_end;
                let what = self.describe_slot_content(primary);
                match self.factory_app_valid() {
                    true => UserApp::FactoryReset(if erased {
                        "the user part is empty".into()
                    } else {
                        format!("the user part header is invalid ({why}){what}")
                    }),
                    false if erased || primary.fixed_end && hal.read_info(primary).is_none() => {
                        UserApp::Missing
                    }
                    false => {
                        UserApp::Invalid(format!("the user part header is invalid ({why}){what}"))
                    }
                }
            }
        }
    }

    /// "; the slot holds a Core monolithic image (platform 0)" when the bytes parse as a module.
    fn describe_slot_content(&self, b: &ModuleBounds) -> String {
        let Some(bytes) =
            self.flash
                .read(Space::of(b.location), b.lowest_start(), b.max_size as usize)
        else {
            return String::new();
        };
        // Trim the erased tail so the size check can succeed.
        let used = bytes.iter().rposition(|&x| x != 0xFF).map_or(0, |p| p + 1);
        match Module::parse(&bytes[..used]) {
            Ok(m) => format!(
                "; the slot holds a {} image (platform {}, {})",
                modflash_module::platform(m.info.platform_id).map_or("foreign", |p| p.display_name),
                m.info.platform_id,
                m.info.function.describe()
            ),
            Err(_) => String::new(),
        }
    }
}

pub(crate) enum UserApp {
    Valid(ModuleInfo),
    FactoryReset(String),
    Invalid(String),
    Missing,
}
