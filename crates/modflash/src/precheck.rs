//! Offline checks of one module against what a device reports (its inventory), the way the
//! device itself will judge it when the module arrives over serial/OTA (spec §5.3, §5.4, §7.1)
//! and at the next boot (§6.2): so a transfer that the device would refuse, or that would
//! leave it in safe mode, is refused before a byte is sent — with the reason and the fix.

use std::fmt;

use modflash_module::platform::platform;
use modflash_module::release::{platform_releases, RELEASES};
use modflash_module::rules::{self, Header, OtaRefusal, Unmet};
use modflash_module::{Dependency, ModuleFunction, ModuleInfo, ModuleRef};

use crate::inventory::Inventory;

/// Why a module should not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precheck {
    /// Built for another platform: the device refuses it (−1360), always.
    WrongPlatform {
        /// The module's platform id.
        module: u16,
        /// The device's platform id.
        device: u16,
    },
    /// The device's validation would refuse it (a dependency check, −1340).
    Refused(OtaRefusal),
    /// The device would accept it, but the application would not run (safe mode).
    SafeMode(Unmet),
}

impl fmt::Display for Precheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |id: u16| {
            platform(id).map_or_else(
                || format!("platform {id}"),
                |p| format!("{} (platform {id})", p.display_name),
            )
        };
        match self {
            Self::WrongPlatform { module, device } => write!(
                f,
                "the module is built for the {}, not for this device's platform, the {}",
                name(*module),
                name(*device)
            ),
            Self::Refused(refusal) => write!(f, "the device would refuse it: {refusal}"),
            Self::SafeMode(u) => write!(
                f,
                "the device would accept it but not run it (safe mode, breathing magenta): {u}"
            ),
        }
    }
}

impl Precheck {
    /// What to do about it, for a `platform_id` device.
    pub fn help(&self, platform_id: u16) -> String {
        match self {
            Self::WrongPlatform { device, .. } => format!(
                "use the file built for the {} (check it with `modflash inspect FILE`)",
                platform(*device).map_or("device's platform", |p| p.display_name)
            ),
            Self::Refused(_) | Self::SafeMode(_) => match self.unmet() {
                Some(u) => {
                    let fix = fix_for(platform_id, u);
                    format!("{fix} first, or pass --force to send it anyway")
                }
                None => "pass --force to send it anyway".into(),
            },
        }
    }

    /// The unmet dependency, if that is the reason.
    pub fn unmet(&self) -> Option<&Unmet> {
        match self {
            Self::Refused(OtaRefusal::Dependencies(u) | OtaRefusal::DependenciesFull(u))
            | Self::SafeMode(u) => Some(u),
            Self::Refused(_) | Self::WrongPlatform { .. } => None,
        }
    }
}

/// Predicts the device's verdict on `info` arriving over serial/OTA, given `inventory`: the
/// platform, the dependency part of `HAL_FLASH_End` validation ([`rules::ota_dependencies`]:
/// the module's own dependencies with user dependencies optional — which skips an
/// application's dependencies and a bootloader as dependency 2 — and DEPENDENCIES_FULL), then
/// the check at the next boot, which looks at every dependency (else safe mode). Range,
/// integrity and size are left to the device: a report carries no addresses.
pub fn precheck(inventory: &Inventory, info: &ModuleInfo) -> Result<(), Precheck> {
    if info.platform_id != inventory.platform_id {
        return Err(Precheck::WrongPlatform {
            module: info.platform_id,
            device: inventory.platform_id,
        });
    }
    let header = Header::of(info);
    rules::ota_dependencies(inventory, &header).map_err(Precheck::Refused)?;
    rules::dependencies(inventory, &header, false).map_err(Precheck::SafeMode)
}

/// The module that would meet `dep` on a `platform_id` device, in words: "system part 1 of
/// Device OS 1.5.0 or later", "a bootloader of version 1003 or later (Device OS 2.0.0)".
pub fn module_that_fixes(platform_id: u16, dep: &Dependency) -> String {
    let slot = ModuleRef::new(dep.function, dep.index);
    let p = platform(platform_id);
    match dep.function {
        ModuleFunction::SystemPart => {
            let release = p
                .and_then(|p| {
                    platform_releases(p)
                        .find(|r| r.system_version >= dep.version)
                        .map(|r| r.release)
                })
                .or_else(|| {
                    RELEASES
                        .iter()
                        .find(|r| r.system_version >= dep.version)
                        .map(|r| r.name)
                });
            match release {
                Some(r) => format!("{slot} of Device OS {r} or later"),
                None => format!("{slot} version {} or later", dep.version),
            }
        }
        ModuleFunction::Bootloader => {
            let release = p.and_then(|p| {
                platform_releases(p).find_map(|r| {
                    r.modules
                        .iter()
                        .any(|m| {
                            m.function == ModuleFunction::Bootloader && m.version >= dep.version
                        })
                        .then_some(r.release)
                })
            });
            match release {
                Some(r) => format!(
                    "the bootloader of Device OS {r} or later (version {} or later)",
                    dep.version
                ),
                None => format!("a bootloader of version {} or later", dep.version),
            }
        }
        _ => format!("{slot} version {} or later", dep.version),
    }
}

/// "flash system part 1 of Device OS 1.5.0 or later" for an unmet dependency on a
/// `platform_id` device. When an installed module needs a newer version of the module being
/// installed, that module is the one to flash a newer version of, so the advice is the same.
pub fn fix_for(platform_id: u16, u: &Unmet) -> String {
    format!("flash {}", module_that_fixes(platform_id, &u.required))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_testkit::device::device;
    use modflash_testkit::fixture;

    fn inv(release: &str) -> Inventory {
        let d = device(6).release(release).powered_on();
        Inventory::from_describe(&modflash_device::describe::describe(&d)).unwrap()
    }

    fn info(file: &str) -> ModuleInfo {
        modflash_module::Module::parse(&fixture(file)).unwrap().info
    }

    #[test]
    fn part2_150_onto_052_is_refused_with_the_reason_and_fix() {
        let err = precheck(&inv("0.5.2"), &info("photon-system-part2@1.5.0.bin")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the device would refuse it: dependency check failed (-1340): system part 2 needs system part 1 \u{2265} 1502, installed 17"
        );
        assert_eq!(
            fix_for(6, err.unmet().unwrap()),
            "flash system part 1 of Device OS 1.5.0 or later"
        );
    }

    #[test]
    fn the_right_order_passes() {
        let i = inv("0.5.2");
        // Part 1 of 1.5.0 needs part 2 ≥ 207 (0.7.0) on Photon: an intermediate step.
        let e = precheck(&i, &info("photon-system-part1@1.5.0.bin")).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs system part 2 \u{2265} 207, installed 17"),
            "{e}"
        );
        assert!(precheck(&inv("1.5.0"), &info("photon-system-part2@1.5.0.bin")).is_ok());
    }

    #[test]
    fn bootloader_dependency_is_left_to_the_boot_check() {
        // The OTA check skips a bootloader as dependency 2; the system start does not.
        let mut d = device(6).release("0.7.0").powered_off();
        d.install_module(&fixture("photon-system-part1@1.5.0.bin"))
            .unwrap();
        d.power_on();
        let i = Inventory::from_device(&d);
        let e = precheck(&i, &info("photon-system-part2@1.5.0.bin")).unwrap_err();
        assert!(matches!(e, Precheck::SafeMode(_)), "{e:?}");
        assert_eq!(
            fix_for(6, e.unmet().unwrap()),
            "flash the bootloader of Device OS 1.4.4 or later (version 400 or later)"
        );
    }

    #[test]
    fn downgrade_breaking_an_installed_part_is_refused() {
        let e = precheck(&inv("1.5.0"), &info("system-part1-0.5.2-photon.bin")).unwrap_err();
        assert_eq!(
            e.unmet().unwrap().to_string(),
            "system part 2 needs system part 1 \u{2265} 1502, installed 17"
        );
    }

    #[test]
    fn apps_with_unmet_dependencies_mean_safe_mode_and_platform_is_checked() {
        let i = inv("0.5.2");
        assert!(precheck(&i, &info("photon_tinker.bin")).is_ok());
        assert!(matches!(
            precheck(&i, &info("core_tinker.bin")),
            Err(Precheck::WrongPlatform {
                module: 0,
                device: 6
            })
        ));
        let mut app = info("photon_tinker.bin");
        app.dependencies[0] = Dependency::new(ModuleFunction::SystemPart, 2, 1502);
        assert!(matches!(precheck(&i, &app), Err(Precheck::SafeMode(_))));
    }
}
