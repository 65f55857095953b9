//! Device Protection (Device OS 6.x): whether the device is protected (its bootloader carries
//! the SECURITY_MODE "protected" extension, `security_mode_get`), service mode (the override
//! `particle device-protection disable` sets), what the bootloader reports in string
//! descriptor 0xFA and the system answers to GetProtectedState, and the DFU requests it
//! refuses ([`rules::dfu_protection`]).

use modflash_module::rules::{self, DfuProtectionVerdict, DfuRequest, Protection};
use modflash_module::{Module, ModuleFunction, ModuleRef};

use crate::device::Device;
use crate::flash::Space;

/// The bootloader from which the DFU interface answers string descriptor 0xFA with the
/// protection state (Device OS 6.2.0's, version 3100: `STRING_IDX_DEVICE_STATE`).
pub const STATE_STRING_SINCE: u16 = 3100;

/// The string descriptor index of the protection state.
pub const STATE_STRING_INDEX: u8 = 0xFA;

impl Device {
    /// The device's protection state: protected when its bootloader carries the SECURITY_MODE
    /// "protected" extension (in service mode while the override is set), open otherwise
    /// and on platforms without Device Protection.
    pub fn protection(&self) -> Protection {
        if !self.platform.has_device_protection() {
            return Protection::Open;
        }
        let protected = self.bootloader_bytes().is_some_and(|b| {
            Module::parse(&b).is_ok_and(|m| {
                m.security_mode()
                    .is_some_and(|(mode, _)| mode == rules::SECURITY_MODE_PROTECTED)
            })
        });
        match (protected, self.state.security_override) {
            (false, _) => Protection::Open,
            (true, true) => Protection::Service,
            (true, false) => Protection::Protected,
        }
    }

    /// Sets or clears the service-mode override (`particle device-protection disable` /
    /// `enable`); it has no effect on an open device.
    pub fn set_service_mode(&mut self, on: bool) {
        self.state.security_override = on;
    }

    /// What the DFU bootloader does with `request` under the device's protection.
    pub(crate) fn dfu_protection(&self, request: &DfuRequest<'_>) -> DfuProtectionVerdict {
        rules::dfu_protection(self.platform, self.layout(), self.protection(), request)
    }

    /// The installed bootloader's bytes, from its header's start to its CRC.
    fn bootloader_bytes(&self) -> Option<Vec<u8>> {
        let bounds = self
            .layout()
            .main_bounds(ModuleRef::new(ModuleFunction::Bootloader, 0))?;
        let (info, address) = self.hal().read_info(bounds)?;
        let len = info.module_length()? as usize + 4;
        self.flash
            .read(Space::of(bounds.location), address, len)
            .map(<[u8]>::to_vec)
    }
}
