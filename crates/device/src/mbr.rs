//! The Nordic MBR's bootloader copy on nRF52840 (spec §6.3, `SD_MBR_COMMAND_COPY_BL`): the
//! bootloader stages the new image in the application region (after saving those pages to
//! external flash), the MBR records the copy in its parameter page, copies, and erases the
//! record. The MBR runs first at every reset and carries out a recorded copy again, so a power
//! cut never leaves a torn bootloader; the saved pages are copied back at the next boot.

use modflash_module::checksum::crc32;
use modflash_module::platform::{dct, Mcu};
use modflash_module::{ModuleFunction, ModuleRef};

use crate::dct::ModuleSlot;
use crate::device::{Device, COPY_CHUNK};
use crate::event::DeviceEvent;
use crate::flash::{FlashError, Space};

/// A recorded copy starts with this word ("MBRC").
const RECORD_MAGIC: u32 = 0x4352_424D;
/// Internal flash page of the nRF52840.
const PAGE: u32 = 0x1000;
/// External flash kept for the application pages an MBR update stages over
/// (`EXTERNAL_FLASH_RESERVED_LENGTH`, 48 KB, just below the OTA region).
const BACKUP_SIZE: u32 = 48 * 1024;

/// A recorded `COPY_BL`: copy `length` bytes at `source` over the bootloader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CopyCommand {
    source: u32,
    length: u32,
}

impl CopyCommand {
    /// `[magic][source][length][CRC-32 of the first 12 bytes]`, little-endian: a record a cut
    /// left half-written fails its CRC and is ignored.
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.source.to_le_bytes());
        b[8..12].copy_from_slice(&self.length.to_le_bytes());
        let crc = crc32(&b[..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        (b.len() >= 16 && word(0) == RECORD_MAGIC && word(12) == crc32(&b[..12])).then(|| Self {
            source: word(4),
            length: word(8),
        })
    }
}

impl Device {
    /// The MBR parameter page: the page below system part 1 (0x2F000; 0x27000 in the 6.2
    /// memory map, `hw_config.c`).
    fn mbr_params_page(&self) -> Option<u32> {
        if self.platform.mcu != Mcu::Nrf52840 {
            return None;
        }
        self.layout()
            .main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1))?
            .start
            .checked_sub(PAGE)
    }

    fn mbr_command(&self) -> Option<CopyCommand> {
        let page = self.mbr_params_page()?;
        CopyCommand::from_bytes(self.flash.read(Space::Internal, page, 16)?)
    }

    /// The bootloader's part before it calls the MBR: the application pages `len` bytes at
    /// `stage` will cover are saved to external flash and queued to be copied back (a raw
    /// copy) at the next boot.
    pub(crate) fn back_up_mbr_stage(&mut self, stage: u32, len: u32) -> Result<(), FlashError> {
        let size = len.div_ceil(PAGE) * PAGE;
        let backup = self.layout().ota.start.saturating_sub(BACKUP_SIZE);
        let pages = self
            .flash
            .read(Space::Internal, stage, size as usize)
            .map(<[u8]>::to_vec)
            .ok_or(FlashError::OutOfBounds {
                space: Space::Internal,
                address: stage,
                len: size as usize,
            })?;
        self.flash
            .write(Space::External, backup, &pages, COPY_CHUNK)?;
        let restore = ModuleSlot {
            magic: dct::SLOT_PENDING,
            source_device: 1,
            destination_device: 0,
            source: backup,
            destination: stage,
            length: size,
            flags: 0,
            function: ModuleFunction::None.to_u8(),
        };
        self.queue_copy(&restore)
    }

    /// `sd_mbr_command(SD_MBR_COMMAND_COPY_BL)`: records the copy of `length` bytes at
    /// `source` over the bootloader, then carries it out. The MBR resets the device afterwards.
    pub(crate) fn mbr_copy_bootloader(
        &mut self,
        source: u32,
        length: u32,
    ) -> Result<(), FlashError> {
        let Some(page) = self.mbr_params_page() else {
            return Ok(());
        };
        let record = CopyCommand { source, length }.to_bytes();
        self.flash
            .write(Space::Internal, page, &record, COPY_CHUNK)?;
        self.mbr_run_recorded(false)?;
        Ok(())
    }

    /// What the MBR does first at every reset: a recorded copy is carried out (again, after a
    /// power cut) and its record erased. True when there was one: the MBR then resets.
    pub(crate) fn mbr_resume(&mut self) -> Result<bool, FlashError> {
        self.mbr_run_recorded(true)
    }

    fn mbr_run_recorded(&mut self, resumed: bool) -> Result<bool, FlashError> {
        let (Some(command), Some(page)) = (self.mbr_command(), self.mbr_params_page()) else {
            return Ok(false);
        };
        let boot = self
            .layout()
            .main_bounds(ModuleRef::new(ModuleFunction::Bootloader, 0))
            .map(|b| b.start);
        let image = self
            .flash
            .read(Space::Internal, command.source, command.length as usize)
            .map(<[u8]>::to_vec);
        if let (Some(boot), Some(image)) = (boot, image) {
            self.flash
                .write(Space::Internal, boot, &image, COPY_CHUNK)?;
        }
        self.flash.erase_sector(Space::Internal, page)?;
        let version = modflash_module::rules::installed_version(
            &self.hal(),
            ModuleRef::new(ModuleFunction::Bootloader, 0),
        )
        .unwrap_or(0);
        self.event(DeviceEvent::MbrBootloaderCopied { version, resumed });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_written_record_is_ignored() {
        let record = CopyCommand {
            source: 0xD4000,
            length: 48_590,
        };
        let bytes = record.to_bytes();
        assert_eq!(CopyCommand::from_bytes(&bytes), Some(record));
        let mut torn = [0xFF; 16];
        torn[..8].copy_from_slice(&bytes[..8]);
        assert_eq!(CopyCommand::from_bytes(&torn), None);
        assert_eq!(CopyCommand::from_bytes(&[0xFF; 16]), None);
    }
}
