//! The device configuration table kept in two alternating flash copies, so that a power cut
//! during a write always leaves one complete copy (spec §4.2, §4.7; the copies are
//! [`crate::copies`]).
//!
//! Copy layout (our model of WICED's DCT): the model's 16-byte header at the start of the
//! copy, the system section after it (on the Photon and P1, WICED's own data: the Wi-Fi
//! configuration at [`WIFI_CONFIG`], `platform_dct_data_t` in `platform_dct.h`), and the
//! application DCT at byte 7548 (`hal/src/photon/dct_hal.h`).

use modflash_module::platform::{dct, Platform};
use modflash_module::rules;

use crate::copies::{Copies, WriteError, HEADER};
use crate::flash::{FlashChip, FlashError, Space};

const MAGIC: u32 = 0x2154_4344; // "DCT!"
/// Where the application DCT starts inside a copy (Photon `dct_hal.h`).
pub const APP_OFFSET: u32 = 7548;
/// Size of one copy.
pub const COPY_SIZE: u32 = 16 * 1024;
/// Bytes of application DCT addressable over DFU alt 1.
pub const APP_SIZE: usize = (COPY_SIZE - APP_OFFSET) as usize;
/// Where WICED keeps `platform_dct_wifi_config_t` in a DCT copy of the Photon and P1: after
/// the 388-byte header (`platform_dct_header_sdk_3_1_2_t`), the 156-byte manufacturing info
/// and the 6160-byte security section (`platform_dct.h`, `hal/src/photon/wiced.sh`).
pub const WIFI_CONFIG: u32 = 6704;
/// Size of `platform_dct_wifi_config_t` (it ends where the application DCT starts).
pub const WIFI_CONFIG_SIZE: usize = (APP_OFFSET - WIFI_CONFIG) as usize;

/// Where a platform keeps its two DCT copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DctLocation {
    /// Memory.
    pub space: Space,
    /// Start of each copy.
    pub copies: [u32; 2],
}

impl DctLocation {
    /// The DCT location of `platform` ([`rules::dct_area`]).
    pub fn of(platform: &Platform) -> Self {
        let area = rules::dct_area(platform);
        Self {
            space: Space::of(area.location),
            copies: area.copies,
        }
    }

    fn copies(&self) -> Copies {
        Copies {
            magic: MAGIC,
            space: self.space,
            starts: self.copies,
            size: COPY_SIZE,
            short_crc_from: APP_OFFSET,
        }
    }
}

/// Why a DCT access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DctError {
    /// Offset and length reach past the application DCT.
    OutOfRange {
        /// Offset requested.
        offset: usize,
        /// Length requested.
        len: usize,
    },
    /// The flash operation failed.
    Flash(FlashError),
}

impl std::fmt::Display for DctError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfRange { offset, len } => write!(
                f,
                "DCT access of {len} bytes at offset {offset} is past the end of the DCT ({APP_SIZE} bytes)"
            ),
            Self::Flash(e) => write!(f, "DCT write failed: {e}"),
        }
    }
}

impl From<FlashError> for DctError {
    fn from(e: FlashError) -> Self {
        Self::Flash(e)
    }
}

/// The active copy, all 0xFF when no copy is valid (as on a blank device).
fn whole(flash: &FlashChip, loc: &DctLocation) -> Vec<u8> {
    loc.copies()
        .read(flash)
        .unwrap_or_else(|| vec![0xFF; COPY_SIZE as usize])
}

/// The application DCT (all 0xFF when no copy is valid, as on a blank device).
pub fn read(flash: &FlashChip, loc: &DctLocation) -> Vec<u8> {
    whole(flash, loc).split_off(APP_OFFSET as usize)
}

/// True when at least one committed copy is intact.
pub fn is_intact(flash: &FlashChip, loc: &DctLocation) -> bool {
    loc.copies().is_intact(flash)
}

fn write_at(
    flash: &mut FlashChip,
    loc: &DctLocation,
    at: usize,
    data: &[u8],
    offset: usize,
) -> Result<(), DctError> {
    let out_of_range = DctError::OutOfRange {
        offset,
        len: data.len(),
    };
    let at = u32::try_from(at).map_err(|_| out_of_range)?;
    loc.copies().write(flash, at, data).map_err(|e| match e {
        WriteError::OutOfRange => out_of_range,
        WriteError::Flash(f) => DctError::Flash(f),
    })
}

/// Writes `data` at `offset` of the application DCT (read, modify, write the other copy).
/// Does nothing when the content would not change.
pub fn write(
    flash: &mut FlashChip,
    loc: &DctLocation,
    offset: usize,
    data: &[u8],
) -> Result<(), DctError> {
    if offset.checked_add(data.len()).is_none_or(|e| e > APP_SIZE) {
        return Err(DctError::OutOfRange {
            offset,
            len: data.len(),
        });
    }
    write_at(flash, loc, APP_OFFSET as usize + offset, data, offset)
}

/// `len` bytes of the system section at `offset` of a copy (all 0xFF when no copy is valid).
/// The range must lie between the model's header and the application DCT.
pub fn read_system(flash: &FlashChip, loc: &DctLocation, offset: u32, len: usize) -> Vec<u8> {
    let start = offset as usize;
    let copy = whole(flash, loc);
    match start.checked_add(len) {
        Some(end) if offset >= HEADER && end <= APP_OFFSET as usize => copy[start..end].to_vec(),
        _ => vec![0xFF; len],
    }
}

/// Writes `data` at `offset` of the system section of a copy.
pub fn write_system(
    flash: &mut FlashChip,
    loc: &DctLocation,
    offset: u32,
    data: &[u8],
) -> Result<(), DctError> {
    let start = offset as usize;
    if offset < HEADER
        || start
            .checked_add(data.len())
            .is_none_or(|e| e > APP_OFFSET as usize)
    {
        return Err(DctError::OutOfRange {
            offset: start,
            len: data.len(),
        });
    }
    write_at(flash, loc, start, data, start)
}

/// One `platform_flash_modules_t` slot (spec §4.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleSlot {
    /// 0x0FAC factory descriptor, 0xABCD pending copy, 0xFFFF free.
    pub magic: u16,
    /// Source memory (0 internal, 1 external).
    pub source_device: u8,
    /// Destination memory.
    pub destination_device: u8,
    /// Source address.
    pub source: u32,
    /// Destination address.
    pub destination: u32,
    /// Bytes to copy (module length + 4).
    pub length: u32,
    /// `MODULE_VERIFY_*` and copy flags.
    pub flags: u8,
    /// Expected module function.
    pub function: u8,
}

/// Copy-flag bits (`hal/shared/module_info_hal.h`), distinct from module header flags.
pub mod slot_flags {
    /// Verify the CRC before copying.
    pub const VERIFY_CRC: u8 = 0x02;
    /// The module must start at the destination.
    pub const VERIFY_DESTINATION: u8 = 0x04;
    /// The module function must match (also length check).
    pub const VERIFY_FUNCTION: u8 = 0x08;
    /// Skip the 24-byte prefix when copying.
    pub const DROP_MODULE_INFO: u8 = 0x10;
    /// Inflate while copying.
    pub const COMPRESSED: u8 = 0x20;
}

impl ModuleSlot {
    /// An empty slot.
    pub const FREE: ModuleSlot = ModuleSlot {
        magic: 0xFFFF,
        source_device: 0xFF,
        destination_device: 0xFF,
        source: 0xFFFF_FFFF,
        destination: 0xFFFF_FFFF,
        length: 0xFFFF_FFFF,
        flags: 0xFF,
        function: 0xFF,
    };

    /// Decodes 20 bytes.
    pub fn from_bytes(b: &[u8]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Self {
            magic: u16::from_le_bytes([b[0], b[1]]),
            source_device: b[2],
            destination_device: b[3],
            source: u32_at(4),
            destination: u32_at(8),
            length: u32_at(12),
            flags: b[16],
            function: b[17],
        }
    }

    /// Encodes 20 bytes.
    pub fn to_bytes(&self) -> [u8; dct::FLASH_MODULE_SIZE] {
        let mut b = [0xFFu8; dct::FLASH_MODULE_SIZE];
        b[..2].copy_from_slice(&self.magic.to_le_bytes());
        b[2] = self.source_device;
        b[3] = self.destination_device;
        b[4..8].copy_from_slice(&self.source.to_le_bytes());
        b[8..12].copy_from_slice(&self.destination.to_le_bytes());
        b[12..16].copy_from_slice(&self.length.to_le_bytes());
        b[16] = self.flags;
        b[17] = self.function;
        b
    }
}

/// Reads module slot `i` (0 = factory descriptor, 1–4 = pending copies).
pub fn slot(app_dct: &[u8], i: usize) -> ModuleSlot {
    let at = dct::FLASH_MODULES + i * dct::FLASH_MODULE_SIZE;
    app_dct
        .get(at..at + dct::FLASH_MODULE_SIZE)
        .map(ModuleSlot::from_bytes)
        .unwrap_or(ModuleSlot::FREE)
}

/// Writes module slot `i`.
pub fn write_slot(
    flash: &mut FlashChip,
    loc: &DctLocation,
    i: usize,
    s: &ModuleSlot,
) -> Result<(), DctError> {
    write(
        flash,
        loc,
        dct::FLASH_MODULES + i * dct::FLASH_MODULE_SIZE,
        &s.to_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::platform;

    fn photon() -> (FlashChip, DctLocation) {
        let p = platform::platform(6).unwrap();
        (
            FlashChip::new(p.layout_for(None).unwrap(), p.mcu),
            DctLocation::of(p),
        )
    }

    #[test]
    fn writes_alternate_and_read_back() {
        let (mut f, loc) = photon();
        assert_eq!(read(&f, &loc), vec![0xFF; APP_SIZE]);
        write(&mut f, &loc, dct::OTA_UPDATE_FLAG, &[0xA5]).unwrap();
        write(&mut f, &loc, dct::CLAIM_CODE, b"claim").unwrap();
        let d = read(&f, &loc);
        assert_eq!(d[dct::OTA_UPDATE_FLAG], 0xA5);
        assert_eq!(&d[dct::CLAIM_CODE..dct::CLAIM_CODE + 5], b"claim");
        assert_eq!(loc.copies().committed_count(&f), 2, "both copies committed");
        assert!(write(&mut f, &loc, APP_SIZE - 1, &[1, 2]).is_err());
    }

    #[test]
    fn a_power_cut_at_any_operation_keeps_the_old_or_the_new_content() {
        let (mut f, loc) = photon();
        write(&mut f, &loc, 100, b"old").unwrap();
        for cut in 1..=6 {
            let mut g = f.clone();
            g.cut_power_after(cut);
            let result = write(&mut g, &loc, 100, b"new");
            g.power_on();
            let d = read(&g, &loc);
            let content = &d[100..103];
            assert!(is_intact(&g, &loc), "cut {cut}");
            match result {
                Ok(()) => assert_eq!(content, b"new", "cut {cut}"),
                Err(_) => assert!(content == b"old" || content == b"new", "cut {cut}"),
            }
        }
    }

    #[test]
    fn slots_round_trip() {
        let s = ModuleSlot {
            magic: dct::SLOT_PENDING,
            source_device: 0,
            destination_device: 0,
            source: 0x080C_0000,
            destination: 0x0802_0000,
            length: 1000,
            flags: slot_flags::VERIFY_CRC,
            function: 4,
        };
        assert_eq!(ModuleSlot::from_bytes(&s.to_bytes()), s);
    }
}
