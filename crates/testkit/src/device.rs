//! Virtual devices for tests, built the way most tests need them: a platform's blank device
//! with a known Device OS release installed (its Tinker as the app) and powered on; and the
//! synthetic app of a release.

use modflash_device::{Device, Mode};
use modflash_module::release::platform_release;
use modflash_module::synth::synthesize;
use modflash_module::ModuleFunction;

/// The device id every built device has unless told otherwise: a real Photon's
/// (`3b0021001747353236343033`).
pub const DEVICE_ID: [u8; 12] = [
    0x3b, 0x00, 0x21, 0x00, 0x17, 0x47, 0x35, 0x32, 0x36, 0x34, 0x30, 0x33,
];

/// A virtual device being described; [`device`] starts one.
#[must_use = "a builder does nothing until powered_off, powered_on or running"]
pub struct DeviceBuilder {
    platform_id: u16,
    device_id: [u8; 12],
    release: Option<String>,
    with_app: bool,
}

/// A blank device of platform `platform_id` (6 = Photon, 10 = Electron, 12 = Argon …) with
/// [`DEVICE_ID`]; add a release, then power it on.
pub fn device(platform_id: u16) -> DeviceBuilder {
    DeviceBuilder {
        platform_id,
        device_id: DEVICE_ID,
        release: None,
        with_app: true,
    }
}

impl DeviceBuilder {
    /// Another device id, for tests that read it back.
    pub fn id(mut self, device_id: [u8; 12]) -> Self {
        self.device_id = device_id;
        self
    }

    /// Installs every module of Device OS `release` (synthetic images with the real headers),
    /// with the release's Tinker as the app.
    pub fn release(mut self, release: &str) -> Self {
        self.release = Some(release.to_string());
        self
    }

    /// Leaves the release's app out: the user slot stays erased.
    pub fn without_app(mut self) -> Self {
        self.with_app = false;
        self
    }

    /// The device with its flash written, not yet powered (to install more before it boots).
    pub fn powered_off(self) -> Device {
        let what = self.describe();
        let platform = modflash_module::platform(self.platform_id)
            .unwrap_or_else(|| panic!("{what}: no platform {}", self.platform_id));
        let mut d = Device::blank(platform, self.device_id)
            .unwrap_or_else(|e| panic!("{what}: a blank device: {e}"));
        if let Some(release) = &self.release {
            d.install_release(release, self.with_app)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        d
    }

    /// The device powered on: booted into whatever its flash holds.
    pub fn powered_on(self) -> Device {
        let mut d = self.powered_off();
        d.power_on();
        d
    }

    /// The device powered on, which must be running its app.
    pub fn running(self) -> Device {
        let what = self.describe();
        let d = self.powered_on();
        assert_eq!(d.state.mode, Mode::App, "{what}: {:#?}", d.state.events);
        d
    }

    /// "platform 6, Device OS 1.5.0" for failure messages.
    fn describe(&self) -> String {
        match &self.release {
            Some(release) => format!("platform {}, Device OS {release}", self.platform_id),
            None => format!("platform {}, blank", self.platform_id),
        }
    }
}

/// The synthetic app (user part) of Device OS `release` for platform `platform_id`: real
/// header, dependencies and CRC, as a device with that release holds it.
pub fn release_app(platform_id: u16, release: &str) -> Vec<u8> {
    let platform = modflash_module::platform(platform_id)
        .unwrap_or_else(|| panic!("no platform {platform_id}"));
    let table = platform_release(platform, release)
        .unwrap_or_else(|| panic!("no Device OS {release} for platform {platform_id}"));
    let app = table
        .modules_for(platform)
        .find(|m| m.function == ModuleFunction::UserPart)
        .unwrap_or_else(|| panic!("Device OS {release} for platform {platform_id} has no app"));
    synthesize(platform, &app)
}

/// The Particle bootloader of Device OS `release` for platform `platform_id`, carrying the
/// SECURITY_MODE "protected" extension as particle-cli writes it to a protected device:
/// installed, it makes the device protected (Device OS 6.x platforms).
pub fn protected_bootloader(platform_id: u16, release: &str) -> Vec<u8> {
    let platform = modflash_module::platform(platform_id)
        .unwrap_or_else(|| panic!("no platform {platform_id}"));
    let table = platform_release(platform, release)
        .unwrap_or_else(|| panic!("no Device OS {release} for platform {platform_id}"));
    let bootloader = table
        .modules_for(platform)
        .find(|m| m.function == ModuleFunction::Bootloader && m.index == 0)
        .unwrap_or_else(|| {
            panic!("Device OS {release} for platform {platform_id} has no bootloader")
        });
    modflash_module::asset::protect(&synthesize(platform, &bootloader), &[])
        .expect("a release bootloader takes the extension")
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::{Module, ModuleFunction};

    #[test]
    fn a_built_device_runs_its_release_with_the_default_id() {
        let d = device(6).release("1.5.0").running();
        assert_eq!(d.state.device_id, "3b0021001747353236343033");
        let d = device(10).id([0x12; 12]).release("0.5.2").running();
        assert_eq!(d.state.device_id, "12".repeat(12));
    }

    #[test]
    fn without_its_app_a_device_does_not_run_one() {
        let d = device(6).release("1.5.0").without_app().powered_on();
        assert_ne!(d.state.mode, Mode::App, "{:#?}", d.state.events);
        assert_eq!(device(6).powered_off().state.mode, Mode::Off);
    }

    #[test]
    fn the_release_app_is_a_user_part_of_its_platform() {
        let bytes = release_app(12, "1.5.0");
        let app = Module::parse(&bytes).unwrap();
        assert_eq!(app.info.function, ModuleFunction::UserPart);
        assert_eq!(app.info.platform_id, 12);
    }
}
