//! The bootloader's module copies (`FLASH_CopyMemory`, spec §5.5): pending updates queued in
//! the DCT (a bootloader among them staged for the Nordic MBR, [`crate::mbr`]), raw copies
//! back of saved pages, and the factory-reset copy of DCT slot 0.

use modflash_module::platform::{dct, ModuleBounds};
use modflash_module::rules;
use modflash_module::{ModuleFunction, ModuleInfo};

use crate::boot::dct_flash;
use crate::cause::CopyRefusal;
use crate::dct::{self as dct_store, slot_flags, ModuleSlot};
use crate::device::{Device, COPY_CHUNK};
use crate::event::DeviceEvent;
use crate::flash::{FlashError, Space};
use crate::state::{Color, Led, Mode, Pattern};

impl Device {
    /// Restores the factory application per DCT slot 0 (or the built-in default), with the
    /// CRC, function and destination checks, and logs the outcome. True when it was restored;
    /// error = power lost.
    pub(crate) fn restore_factory_app(&mut self) -> Result<bool, FlashError> {
        let Some((slot, _)) = self.factory_slot() else {
            self.event(DeviceEvent::NoFactoryResetImage);
            return Ok(false);
        };
        self.set_mode(Mode::Off, Led::new(Color::Green, Pattern::BlinkingFast));
        let (restored, event) = match self.copy_module(&slot)? {
            Ok(info) => (
                true,
                DeviceEvent::FactoryAppRestored {
                    version: info.version,
                },
            ),
            Err(why) => (false, DeviceEvent::FactoryResetFailed(why)),
        };
        self.event(event);
        Ok(restored)
    }

    /// `FLASH_UpdateModules`: copies every pending DCT slot (1–4) and frees it; a bootloader
    /// comes last. True when a bootloader went to the MBR, which resets the device.
    pub(crate) fn apply_pending_copies(&mut self) -> Result<bool, FlashError> {
        let loc = self.dct_location();
        let pending: Vec<(usize, ModuleSlot)> = (1..dct::MAX_MODULE_SLOTS)
            .map(|i| (i, dct_store::slot(&self.dct(), i)))
            .filter(|(_, slot)| slot.magic == dct::SLOT_PENDING)
            .collect();
        let bootloader = ModuleFunction::Bootloader.to_u8();
        for (i, slot) in pending.iter().filter(|(_, s)| s.function != bootloader) {
            self.set_mode(Mode::Off, Led::new(Color::Magenta, Pattern::BlinkingFast));
            let event = if slot.flags & VERIFY_OR_TRANSFORM == 0 {
                self.copy_raw(slot)?;
                DeviceEvent::BackupRestored {
                    address: slot.destination,
                    length: slot.length,
                }
            } else {
                match self.copy_module(slot)? {
                    Ok(info) => DeviceEvent::PendingUpdateInstalled {
                        module: info.slot(),
                        version: info.version,
                        address: slot.destination,
                    },
                    Err(why) => DeviceEvent::PendingUpdateRefused(why),
                }
            };
            self.event(event);
            // The slot is freed after the copy, so a power cut mid-copy repeats it.
            dct_store::write_slot(&mut self.flash, &loc, *i, &ModuleSlot::FREE)
                .map_err(dct_flash)?;
        }
        for (i, slot) in pending.iter().filter(|(_, s)| s.function == bootloader) {
            self.set_mode(Mode::Off, Led::new(Color::Magenta, Pattern::BlinkingFast));
            // Freed before the copy: the MBR's reset would otherwise repeat it for ever.
            dct_store::write_slot(&mut self.flash, &loc, *i, &ModuleSlot::FREE)
                .map_err(dct_flash)?;
            match self.copy_module(slot)? {
                Ok(info) => {
                    self.event(DeviceEvent::BootloaderStaged {
                        version: info.version,
                        address: slot.destination,
                    });
                    self.mbr_copy_bootloader(slot.destination, slot.length)?;
                    return Ok(true);
                }
                Err(why) => self.event(DeviceEvent::PendingUpdateRefused(why)),
            }
        }
        Ok(false)
    }

    /// Queues `slot` in the first free DCT slot (1–4; slot 1 when none is free).
    pub(crate) fn queue_copy(&mut self, slot: &ModuleSlot) -> Result<(), FlashError> {
        let loc = self.dct_location();
        let free = (1..dct::MAX_MODULE_SLOTS)
            .find(|&i| dct_store::slot(&self.dct(), i).magic != dct::SLOT_PENDING)
            .unwrap_or(1);
        dct_store::write_slot(&mut self.flash, &loc, free, slot).map_err(dct_flash)
    }

    /// A copy without checks (no verify flags): `slot.length` bytes as they are.
    fn copy_raw(&mut self, slot: &ModuleSlot) -> Result<(), FlashError> {
        let (src_space, dst_space) = slot_spaces(slot);
        let Some(bytes) = self
            .flash
            .read(src_space, slot.source, slot.length as usize)
            .map(<[u8]>::to_vec)
        else {
            return Ok(());
        };
        self.flash
            .write(dst_space, slot.destination, &bytes, COPY_CHUNK)
    }

    /// `FLASH_CopyMemory` with its checks (spec §5.5). Outer error = power lost; inner error
    /// = the copy was refused and nothing was erased.
    pub(crate) fn copy_module(
        &mut self,
        slot: &ModuleSlot,
    ) -> Result<Result<ModuleInfo, CopyRefusal>, FlashError> {
        let (src_space, dst_space) = slot_spaces(slot);
        let Some(head) = self.flash.read(src_space, slot.source, 0x200) else {
            return Ok(Err(CopyRefusal::SourceOutsideFlash {
                source: slot.source,
            }));
        };
        let offset = modflash_module::parse::device_header_offset(self.platform.mcu, head);
        let Some(raw) = self
            .flash
            .read(src_space, slot.source + offset as u32, ModuleInfo::SIZE)
            .and_then(|raw| raw.try_into().ok())
        else {
            return Ok(Err(CopyRefusal::HeaderOutsideFlash));
        };
        let info = ModuleInfo::from_bytes(raw);
        // A bootloader may go to the application region, staged for the MBR.
        let mbr_stage = info.function == ModuleFunction::Bootloader
            && rules::bootloader_mbr_stage(&self.hal(), self.platform, self.layout())
                == Some(slot.destination);
        let verify = slot.flags
            & (slot_flags::VERIFY_CRC
                | slot_flags::VERIFY_FUNCTION
                | slot_flags::VERIFY_DESTINATION)
            != 0;
        let Some(length) = info
            .module_length()
            .filter(|&l| l as usize + 4 <= slot.length as usize)
        else {
            return Ok(Err(CopyRefusal::BadHeader {
                function: ModuleFunction::from_u8(slot.function),
                source: slot.source,
            }));
        };
        if verify {
            if info.platform_id != self.platform.id && info.function != ModuleFunction::Resource {
                return Ok(Err(CopyRefusal::Platform {
                    found: info.platform_id,
                    expected: self.platform.id,
                }));
            }
            if slot.flags & slot_flags::VERIFY_FUNCTION != 0
                && info.function.to_u8() != slot.function
            {
                return Ok(Err(CopyRefusal::Function {
                    found: info.function,
                    expected: ModuleFunction::from_u8(slot.function),
                }));
            }
            if slot.flags & slot_flags::VERIFY_DESTINATION != 0
                && info.start_address != slot.destination
                && !mbr_stage
            {
                return Ok(Err(CopyRefusal::Destination {
                    start: info.start_address,
                    destination: slot.destination,
                }));
            }
            if slot.flags & slot_flags::VERIFY_CRC != 0
                && !self.hal().integrity_ok(src_space, slot.source, &info)
            {
                return Ok(Err(CopyRefusal::Crc));
            }
        }
        let total = length as usize + 4;
        let image = self
            .flash
            .read(src_space, slot.source, total)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let drop_info = slot.flags & slot_flags::DROP_MODULE_INFO != 0
            || info
                .flags
                .contains(modflash_module::ModuleFlags::DROP_MODULE_INFO);
        let data = if info
            .flags
            .contains(modflash_module::ModuleFlags::COMPRESSED)
        {
            match modflash_module::edit::decompress(&image) {
                Ok(inflated) if drop_info => inflated
                    .get(ModuleInfo::SIZE..)
                    .unwrap_or_default()
                    .to_vec(),
                Ok(inflated) => inflated,
                Err(e) => {
                    return Ok(Err(CopyRefusal::Inflate {
                        reason: e.to_string(),
                    }))
                }
            }
        } else if drop_info {
            image[ModuleInfo::SIZE.min(image.len())..].to_vec()
        } else {
            image
        };
        if mbr_stage {
            self.back_up_mbr_stage(slot.destination, data.len() as u32)?;
        }
        self.flash
            .write(dst_space, slot.destination, &data, COPY_CHUNK)?;
        Ok(Ok(info))
    }

    /// DCT slot 0: the factory-reset copy (factory image → application region, with the CRC,
    /// function and destination checks), and the factory region; None without a factory image.
    pub(crate) fn factory_slot(&self) -> Option<(ModuleSlot, &'static ModuleBounds)> {
        let factory = self.layout().factory_bounds()?;
        let user = self.user_bounds()?;
        let slot = ModuleSlot {
            magic: dct::SLOT_FACTORY,
            source_device: u8::from(
                factory.location != modflash_module::platform::Location::Internal,
            ),
            destination_device: 0,
            source: factory.start,
            destination: user.start,
            length: factory.max_size,
            flags: slot_flags::VERIFY_CRC
                | slot_flags::VERIFY_FUNCTION
                | slot_flags::VERIFY_DESTINATION,
            function: ModuleFunction::UserPart.to_u8(),
        };
        Some((slot, factory))
    }

    pub(crate) fn factory_app_valid(&self) -> bool {
        let Some((slot, factory)) = self.factory_slot() else {
            return false;
        };
        let Some(raw) =
            self.flash
                .read(Space::of(factory.location), factory.start, ModuleInfo::SIZE)
        else {
            return false;
        };
        let info = ModuleInfo::from_bytes(raw.try_into().expect("24 bytes"));
        info.start_address == slot.destination
            && info.platform_id == self.platform.id
            && info.function == ModuleFunction::UserPart
    }
}

/// Slot flags that make a copy check or transform the module; a slot with none of them is
/// copied raw.
const VERIFY_OR_TRANSFORM: u8 = slot_flags::VERIFY_CRC
    | slot_flags::VERIFY_DESTINATION
    | slot_flags::VERIFY_FUNCTION
    | slot_flags::DROP_MODULE_INFO
    | slot_flags::COMPRESSED;

/// The memories a slot copies from and to (0 = internal).
fn slot_spaces(slot: &ModuleSlot) -> (Space, Space) {
    let space = |device: u8| {
        if device == 0 {
            Space::Internal
        } else {
            Space::External
        }
    };
    (space(slot.source_device), space(slot.destination_device))
}
