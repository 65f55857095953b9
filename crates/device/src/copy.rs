//! The bootloader's module copies (`FLASH_CopyMemory`, spec §5.5): pending updates queued in
//! the DCT, and the factory-reset copy of DCT slot 0.

use modflash_module::platform::{dct, ModuleBounds};
use modflash_module::{ModuleFunction, ModuleInfo, ModuleRef};

use crate::boot::dct_flash;
use crate::dct::{self as dct_store, slot_flags, ModuleSlot};
use crate::device::{Device, COPY_CHUNK};
use crate::flash::{FlashError, Space};
use crate::state::{Color, Led, Mode, Pattern};

impl Device {
    /// Restores the factory application per DCT slot 0 (or the built-in default), with the
    /// CRC, function and destination checks. Outer error = power lost.
    pub(crate) fn restore_factory_app(&mut self) -> Result<Result<(), String>, FlashError> {
        let Some((slot, _)) = self.factory_slot() else {
            return Ok(Err("this platform has no factory-reset image".into()));
        };
        self.set_mode(Mode::Off, Led::new(Color::Green, Pattern::BlinkingFast));
        match self.copy_module(&slot)? {
            Ok(info) => {
                self.event(format!(
                    "bootloader: blinking green fast: restored the factory app (user part version {})",
                    info.version
                ));
                Ok(Ok(()))
            }
            Err(why) => Ok(Err(why)),
        }
    }

    /// `FLASH_UpdateModules`: copies every pending DCT slot (1–4) and frees it.
    pub(crate) fn apply_pending_copies(&mut self) -> Result<(), FlashError> {
        let loc = self.dct_location();
        for i in 1..dct::MAX_MODULE_SLOTS {
            let slot = dct_store::slot(&self.dct(), i);
            if slot.magic != dct::SLOT_PENDING {
                continue;
            }
            self.set_mode(Mode::Off, Led::new(Color::Magenta, Pattern::BlinkingFast));
            let outcome = self.copy_module(&slot)?;
            match outcome {
                Ok(info) => self.event(format!(
                    "bootloader: blinking magenta fast: installed {} version {} at {:#010x}",
                    info.slot(),
                    info.version,
                    slot.destination
                )),
                Err(why) => self.event(format!("bootloader: pending update refused: {why}")),
            }
            // The slot is freed after the copy, so a power cut mid-copy repeats it.
            dct_store::write_slot(&mut self.flash, &loc, i, &ModuleSlot::FREE)
                .map_err(dct_flash)?;
        }
        Ok(())
    }

    /// `FLASH_CopyMemory` with its checks (spec §5.5). Outer error = power lost; inner error
    /// = the copy was refused and nothing was erased.
    pub(crate) fn copy_module(
        &mut self,
        slot: &ModuleSlot,
    ) -> Result<Result<ModuleInfo, String>, FlashError> {
        let src_space = if slot.source_device == 0 {
            Space::Internal
        } else {
            Space::External
        };
        let dst_space = if slot.destination_device == 0 {
            Space::Internal
        } else {
            Space::External
        };
        let Some(head) = self.flash.read(src_space, slot.source, 0x200) else {
            return Ok(Err(format!(
                "source {:#010x} is outside flash",
                slot.source
            )));
        };
        let offset = modflash_module::parse::device_header_offset(self.platform.mcu, head);
        let Some(raw) = self
            .flash
            .read(src_space, slot.source + offset as u32, ModuleInfo::SIZE)
        else {
            return Ok(Err("the source header is outside flash".into()));
        };
        let info = ModuleInfo::from_bytes(raw.try_into().expect("24 bytes"));
        let verify = slot.flags
            & (slot_flags::VERIFY_CRC
                | slot_flags::VERIFY_FUNCTION
                | slot_flags::VERIFY_DESTINATION)
            != 0;
        let Some(length) = info
            .module_length()
            .filter(|&l| l as usize + 4 <= slot.length as usize)
        else {
            return Ok(Err(format!(
                "the {} header at {:#010x} is invalid or longer than the slot",
                ModuleRef::new(ModuleFunction::from_u8(slot.function), 0)
                    .function
                    .describe(),
                slot.source
            )));
        };
        if verify {
            if info.platform_id != self.platform.id && info.function != ModuleFunction::Resource {
                return Ok(Err(format!(
                    "platform {}, expected {}",
                    info.platform_id, self.platform.id
                )));
            }
            if slot.flags & slot_flags::VERIFY_FUNCTION != 0
                && info.function.to_u8() != slot.function
            {
                return Ok(Err(format!(
                    "it is a {}, the slot expects a {}",
                    info.function.describe(),
                    ModuleFunction::from_u8(slot.function).describe()
                )));
            }
            if slot.flags & slot_flags::VERIFY_DESTINATION != 0
                && info.start_address != slot.destination
            {
                return Ok(Err(format!(
                    "it starts at {:#010x}, the destination is {:#010x}",
                    info.start_address, slot.destination
                )));
            }
            if slot.flags & slot_flags::VERIFY_CRC != 0
                && !self.hal().integrity_ok(src_space, slot.source, &info)
            {
                return Ok(Err("its CRC does not match".into()));
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
                Err(e) => return Ok(Err(format!("cannot inflate: {e}"))),
            }
        } else if drop_info {
            image[ModuleInfo::SIZE.min(image.len())..].to_vec()
        } else {
            image
        };
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
