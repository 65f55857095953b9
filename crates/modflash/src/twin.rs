//! Device twins: a `Device` model rebuilt from an inventory, so plans for real devices are
//! proven on the same model as virtual ones.

use modflash_device::{Device, DeviceError, Space};
use modflash_module::platform::Mcu;
use modflash_module::platform::Store;
use modflash_module::release::{platform_releases, ReleaseModule};
use modflash_module::synth::synthesize;
use modflash_module::{Dependency, ModuleFunction, Platform};

use crate::inventory::{InstalledModule, Inventory};

/// Why a twin could not be built from an inventory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[diagnostic(
    code(modflash::twin),
    help("run `modflash modules --device …` and report the module list if it looks right")
)]
pub enum TwinError {
    /// The inventory names a platform modflash does not know.
    #[error("cannot model the device from its modules: platform {0} is not one modflash knows")]
    UnknownPlatform(u16),
    /// The platform has no memory map for the reported system firmware.
    #[error("cannot model the device from its modules: the platform has no memory map")]
    NoMemoryMap,
    /// The model refused a module or a write.
    #[error("cannot model the device from its modules: {0}")]
    Device(#[from] DeviceError),
}

/// A twin of the device `inventory` describes, whatever its platform.
pub fn twin_of(inventory: &Inventory) -> Result<Device, TwinError> {
    let platform = modflash_module::platform(inventory.platform_id)
        .ok_or(TwinError::UnknownPlatform(inventory.platform_id))?;
    twin_from_inventory(platform, inventory)
}

/// Builds a twin whose modules carry the inventory's headers (function, index, version,
/// dependencies; real sizes when the release table knows the module), then boots it.
/// Modules the device reported as failing integrity are corrupted in the twin.
pub fn twin_from_inventory(
    platform: &'static Platform,
    inventory: &Inventory,
) -> Result<Device, TwinError> {
    let mut device = Device::blank(platform, [0; 12])?;
    let layout = platform
        .layout_for(inventory.system_version())
        .ok_or(TwinError::NoMemoryMap)?;
    for m in &inventory.modules {
        let function = m.function();
        let store = if m.is_main() {
            Store::Main
        } else {
            Store::Factory
        };
        let Some(bounds) = layout
            .bounds
            .iter()
            .find(|b| b.function == function && b.index == m.index && b.store == store)
        else {
            continue;
        };
        let mut image = module_image(platform, m, bounds.start, bounds.max_size);
        if let Some(sha) = m.sha256.as_deref().and_then(crate::inventory::parse_sha256) {
            // The device's own SHA-256, so the planner recognises what is already installed
            // (the device never checks it; the CRC is recomputed to stay intact).
            let len = image.len();
            image[len - 38..len - 6].copy_from_slice(&sha);
            let crc = modflash_module::checksum::crc32(&image[..len - 4]);
            image[len - 4..].copy_from_slice(&crc.to_be_bytes());
        }
        let space = Space::of(bounds.location);
        if store == Store::Factory {
            device.install_factory_app(&image)?;
        } else if function == ModuleFunction::RadioStack || bounds.fixed_end {
            device.install_module(&image)?;
        } else {
            device
                .write_raw(space, bounds.start, &image)
                .map_err(DeviceError::Flash)?;
        }
        if !m.checks.integrity {
            // Clear one payload byte (programming without an erase, so nothing else changes)
            // so the CRC fails as it does on the device.
            let middle = image.len() / 2;
            let offset = image[middle..]
                .iter()
                .position(|&b| b != 0)
                .map_or(middle, |p| middle + p);
            device
                .flash_mut()
                .program(space, bounds.start + offset as u32, &[0x00])
                .map_err(DeviceError::Flash)?;
        }
    }
    device.power_on();
    Ok(device)
}

fn module_image(platform: &'static Platform, m: &InstalledModule, start: u32, max: u32) -> Vec<u8> {
    let deps: Vec<Dependency> = m.deps().collect();
    let known = platform_releases(platform)
        .flat_map(|r| r.modules_for(platform).collect::<Vec<_>>())
        .find(|r| {
            r.function == m.function()
                && r.index == m.index
                && r.version == m.version
                && r.dependencies
                    .iter()
                    .filter(|d| !d.is_none())
                    .copied()
                    .collect::<Vec<_>>()
                    == deps
        });
    if let Some(r) = known {
        let mut r = r;
        r.start = if m.is_main() {
            r.start
        } else {
            start_of_user(platform).unwrap_or(r.start)
        };
        return synthesize(platform, &r);
    }
    let function = m.function();
    let prefix_offset = match (function, platform.mcu) {
        (ModuleFunction::MonoFirmware, _) => platform.vector_table_size(),
        (ModuleFunction::SystemPart, _) if platform.id == 10 && m.index == 3 => 0,
        (ModuleFunction::SystemPart, Mcu::Rtl872x) => 0,
        (ModuleFunction::Bootloader | ModuleFunction::SystemPart, _) => {
            platform.vector_table_size()
        }
        _ => 0,
    };
    let mut deps = [Dependency::NONE; 2];
    for (slot, d) in deps.iter_mut().zip(m.deps()) {
        *slot = d;
    }
    let size = (max / 4).clamp(4096, 64 * 1024);
    let r = ReleaseModule {
        function,
        index: m.index,
        version: m.version,
        start: if m.is_main() {
            start
        } else {
            start_of_user(platform).unwrap_or(start)
        },
        size,
        prefix_offset: prefix_offset as u16,
        dependencies: deps,
        flags: if function == ModuleFunction::RadioStack {
            0x01
        } else {
            0
        },
        file_name: "inventory",
    };
    synthesize(platform, &r)
}

fn start_of_user(platform: &'static Platform) -> Option<u32> {
    platform
        .layout_for(None)?
        .bounds
        .iter()
        .find(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
        .map(|b| b.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::Mode;
    use modflash_testkit::device::device;
    use modflash_testkit::fixture;

    #[test]
    fn twin_of_a_describe_behaves_like_the_device() {
        let real = device(6).release("0.5.2").powered_on();
        let inv = Inventory::from_describe(&modflash_device::describe::describe(&real)).unwrap();
        let twin = twin_from_inventory(real.platform(), &inv).unwrap();
        assert_eq!(twin.state.mode, Mode::App, "{:#?}", twin.state.events);
        let a = Inventory::from_device(&real);
        let b = Inventory::from_device(&twin);
        let key = |i: &Inventory| {
            i.modules
                .iter()
                .map(|m| (m.function.clone(), m.index, m.version, m.checks))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn the_twin_carries_the_devices_own_hashes() {
        let mut real = device(6).release("1.5.0").powered_off();
        real.install_user_app(&fixture("photon_tinker.bin"))
            .unwrap();
        real.power_on();
        let inv = Inventory::from_describe(&modflash_device::describe::describe(&real)).unwrap();
        let twin = twin_from_inventory(real.platform(), &inv).unwrap();
        let user = |d: &Device| {
            d.system_info()
                .into_iter()
                .find(|f| {
                    f.info
                        .is_some_and(|i| i.function == modflash_module::ModuleFunction::UserPart)
                })
                .and_then(|f| f.sha256)
        };
        assert!(user(&real).is_some());
        assert_eq!(user(&twin), user(&real));
        assert_eq!(twin.state.mode, modflash_device::Mode::App);
    }

    #[test]
    fn safe_mode_device_gives_a_safe_mode_twin() {
        let text = r#"{"p":6,"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":7,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":17,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":17,"d":[{"f":"s","n":"1","v":17,"_":""}]},{"s":131072,"l":"m","vc":30,"vv":26,"f":"u","n":"1","v":6,"d":[{"f":"s","n":"2","v":1502,"_":""}]}]}"#;
        let inv = Inventory::from_describe(text).unwrap();
        let twin = twin_from_inventory(modflash_module::platform(6).unwrap(), &inv).unwrap();
        assert_eq!(twin.state.mode, Mode::SafeMode, "{:#?}", twin.state.events);
    }
}
