//! OTA updates as the system firmware receives them (spec §7.1): `HAL_FLASH_Begin`, `_Update`
//! and `_End`, the staged module validated and queued for the bootloader.

use modflash_module::platform::{dct, ModuleBounds};
use modflash_module::rules::{self, OtaCode, OtaRefusal};
use modflash_module::{ModuleFunction, ModuleInfo};
use serde::{Deserialize, Serialize};

use crate::dct::{self as dct_store, slot_flags, ModuleSlot};
use crate::device::Device;
use crate::event::DeviceEvent;
use crate::flash::{FlashError, Space};
use crate::state::{Color, Led, Pattern};

/// Why an OTA update failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaError {
    /// The system refused the module (spec §5.7).
    #[error("{0}")]
    Refused(OtaRefusal),
    /// The update was not started (no `begin`).
    #[error("no update in progress")]
    NotStarted,
    /// Power was lost.
    #[error("power was lost during the update")]
    PowerLost,
}

impl OtaError {
    /// Device OS system error code.
    pub fn code(&self) -> i32 {
        match self {
            Self::Refused(r) => r.code().code(),
            Self::NotStarted | Self::PowerLost => OtaCode::Failed.code(),
        }
    }
}

impl From<FlashError> for OtaError {
    fn from(_: FlashError) -> Self {
        Self::PowerLost
    }
}

/// What a successful OTA `finish` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtaOutcome {
    /// A bootloader was copied in place at once.
    Applied,
    /// The module was queued in a DCT slot; the bootloader copies it at the next reset.
    PendingRestart,
}

impl Device {
    /// The OTA staging region.
    pub fn ota_region(&self) -> ModuleBounds {
        self.layout().ota
    }

    /// `HAL_FLASH_Begin`: frees pending slots and erases `len` bytes of the OTA region.
    pub fn ota_begin(&mut self, len: usize) -> Result<(), OtaError> {
        let ota = self.ota_region();
        rules::ota_fits(self.layout(), len).map_err(OtaError::Refused)?;
        let loc = self.dct_location();
        for i in 1..dct::MAX_MODULE_SLOTS {
            if dct_store::slot(&self.dct(), i).magic == dct::SLOT_PENDING {
                dct_store::write_slot(&mut self.flash, &loc, i, &ModuleSlot::FREE)
                    .map_err(|_| OtaError::PowerLost)?;
            }
        }
        self.flash
            .erase_range(Space::of(ota.location), ota.start, len)?;
        self.state.led = Led::new(Color::Magenta, Pattern::BlinkingFast);
        self.event(DeviceEvent::UpdateReceiving { len });
        self.ota_length = Some(len);
        Ok(())
    }

    /// `HAL_FLASH_Update`: programs a chunk at `offset` of the OTA region.
    pub fn ota_write(&mut self, offset: usize, data: &[u8]) -> Result<(), OtaError> {
        let len = self.ota_length.ok_or(OtaError::NotStarted)?;
        let ota = self.ota_region();
        let end = offset + data.len();
        rules::ota_fits(self.layout(), end).map_err(OtaError::Refused)?;
        if offset > len {
            return Err(OtaError::Refused(OtaRefusal::TooLarge {
                len: end,
                max: ota.max_size,
            }));
        }
        self.flash
            .program(Space::of(ota.location), ota.start + offset as u32, data)?;
        Ok(())
    }

    /// `HAL_FLASH_End`: validates the staged module ([`Device::ota_validate`]); a bootloader
    /// is copied at once unless it goes through the MBR ([`rules::bootloader_mbr_stage`]),
    /// anything else is queued for the bootloader. The caller resets the device afterwards.
    pub fn ota_finish(&mut self) -> Result<OtaOutcome, OtaError> {
        self.ota_length = None;
        if let Some(module) = self.ota_staged_asset()? {
            // `HAL_FLASH_End`: an asset module goes to the asset store at once.
            return match self.store_asset(&module) {
                Ok(()) => Ok(OtaOutcome::Applied),
                Err(why) => {
                    self.event(DeviceEvent::AssetRefused(why));
                    Err(OtaError::Refused(OtaRefusal::Integrity))
                }
            };
        }
        let (info, slot) = self.ota_staged()?;
        self.ota_apply(info, slot)
    }

    /// The asset module staged in the OTA region, when the staged module is one the system
    /// takes ([`rules::ota_accepts`]).
    fn ota_staged_asset(&self) -> Result<Option<Vec<u8>>, OtaError> {
        let ota: &'static ModuleBounds = &self.layout().ota;
        let hal = self.hal();
        let Some((info, address)) = hal.read_info(ota) else {
            return Ok(None);
        };
        if info.function != ModuleFunction::Asset {
            return Ok(None);
        }
        rules::ota_accepts(&hal, hal.layout, self.platform.id, &info, true)
            .map_err(OtaError::Refused)?;
        let len = info.module_length().unwrap_or(0) as usize + 4;
        let bytes = self
            .flash
            .read(Space::of(ota.location), address, len)
            .ok_or(OtaError::Refused(OtaRefusal::NotFound))?;
        Ok(Some(bytes.to_vec()))
    }

    /// `HAL_FLASH_OTA_Validate`: the system's verdict on the module received in the OTA region
    /// ([`rules::ota_accepts`]: INTEGRITY | DEPENDENCIES_FULL, user dependencies optional).
    /// Nothing changes; returns the module's header.
    pub fn ota_validate(&self) -> Result<ModuleInfo, OtaError> {
        if self.ota_staged_asset()?.is_some() {
            let ota = &self.layout().ota;
            let not_found = OtaError::Refused(OtaRefusal::NotFound);
            return self
                .hal()
                .read_info(ota)
                .map(|(info, _)| info)
                .ok_or(not_found);
        }
        self.ota_staged().map(|(info, _)| info)
    }

    /// Abandons an update being received (`HAL_FLASH_End` with an error): nothing is applied,
    /// the LED shows the mode again.
    pub fn ota_cancel(&mut self) {
        if self.ota_length.take().is_some() {
            self.state.led = self.mode_led();
        }
    }

    /// The validated module in the OTA region and the copy that installs it.
    fn ota_staged(&self) -> Result<(ModuleInfo, ModuleSlot), OtaError> {
        let ota: &'static ModuleBounds = &self.layout().ota;
        let hal = self.hal();
        let not_found = OtaError::Refused(OtaRefusal::NotFound);
        let (info, address) = hal.read_info(ota).ok_or(not_found)?;
        let intact = hal.integrity_ok(Space::of(ota.location), address, &info);
        rules::ota_accepts(&hal, hal.layout, self.platform.id, &info, intact)
            .map_err(OtaError::Refused)?;
        let target = hal.layout.main_bounds(info.slot()).ok_or(not_found)?;
        let mbr_stage = (info.function == ModuleFunction::Bootloader)
            .then(|| rules::bootloader_mbr_stage(&hal, self.platform, hal.layout))
            .flatten();
        let mut copy_flags =
            slot_flags::VERIFY_CRC | slot_flags::VERIFY_DESTINATION | slot_flags::VERIFY_FUNCTION;
        if info
            .flags
            .contains(modflash_module::ModuleFlags::DROP_MODULE_INFO)
        {
            copy_flags |= slot_flags::DROP_MODULE_INFO;
        }
        if info
            .flags
            .contains(modflash_module::ModuleFlags::COMPRESSED)
        {
            copy_flags |= slot_flags::COMPRESSED;
        }
        let slot = ModuleSlot {
            magic: dct::SLOT_PENDING,
            source_device: u8::from(ota.location != modflash_module::platform::Location::Internal),
            destination_device: u8::from(
                target.location != modflash_module::platform::Location::Internal,
            ),
            source: ota.start,
            destination: mbr_stage.unwrap_or(info.start_address),
            length: info.module_length().unwrap_or(0) + 4,
            flags: copy_flags,
            function: info.function.to_u8(),
        };
        Ok((info, slot))
    }

    /// Installs a validated module: a bootloader at once (unless its copy is staged for the
    /// MBR, at a destination other than its own address), anything else queued in a DCT slot.
    fn ota_apply(&mut self, info: ModuleInfo, slot: ModuleSlot) -> Result<OtaOutcome, OtaError> {
        if info.function == ModuleFunction::Bootloader && slot.destination == info.start_address {
            match self.copy_module(&slot)? {
                Ok(_) => {
                    self.event(DeviceEvent::BootloaderInstalled {
                        version: info.version,
                    });
                    return Ok(OtaOutcome::Applied);
                }
                Err(why) => {
                    self.event(DeviceEvent::BootloaderRefused(why));
                    return Err(OtaError::Refused(OtaRefusal::Integrity));
                }
            }
        }
        self.queue_copy(&slot)?;
        self.event(DeviceEvent::UpdateValidated {
            module: info.slot(),
            version: info.version,
        });
        Ok(OtaOutcome::PendingRestart)
    }
}
