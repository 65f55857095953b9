//! NOR flash model: sector geometry from the platform catalogue, erase-to-0xFF and
//! program-can-only-clear-bits semantics, a datasheet timing model, and power-cut injection.

use std::fmt;

use modflash_module::platform::{FlashMemory, Layout, Location, Mcu};
use serde::{Deserialize, Serialize};

/// Bytes programmed per flash operation (one page of a serial NOR part, 64 words of the
/// STM32F2): the granularity of power-cut injection.
pub const PROGRAM_PAGE: usize = 256;

/// Which memory an address refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Space {
    /// MCU internal flash (addresses as the MCU sees them).
    Internal,
    /// External SPI/QSPI flash (addresses are offsets into the chip).
    External,
}

impl Space {
    /// The space a module region lives in.
    pub fn of(location: Location) -> Self {
        match location {
            Location::Internal => Space::Internal,
            Location::External | Location::Ncp => Space::External,
        }
    }
}

/// "internal" or "external".
impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Internal => "internal",
            Self::External => "external",
        })
    }
}

/// Why a flash operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashError {
    /// The address range is outside the memory.
    OutOfBounds {
        /// Memory.
        space: Space,
        /// First address.
        address: u32,
        /// Length.
        len: usize,
    },
    /// Power was cut (fault injection); the device is off until powered on again.
    PowerLost,
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfBounds {
                space,
                address,
                len,
            } => write!(
                f,
                "{len} bytes at {address:#010x} are outside the {space} flash"
            ),
            Self::PowerLost => f.write_str("power was lost during a flash operation"),
        }
    }
}

impl std::error::Error for FlashError {}

/// Datasheet timings of one memory, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Erase time per byte of sector (sector erase time / sector size).
    pub erase_us_per_kb: f64,
    /// Fixed erase cost per sector.
    pub erase_us_fixed: f64,
    /// Program time per byte.
    pub program_us_per_byte: f64,
}

impl Timing {
    /// STM32F205 at 3.3 V, x32 parallelism (datasheet DS8597, "Flash memory programming"):
    /// 16 KB sector 250 ms, 64 KB 550 ms, 128 KB 1 s (typical), word program 16 µs.
    pub const STM32F2: Timing = Timing {
        erase_us_per_kb: 6_000.0,
        erase_us_fixed: 154_000.0,
        program_us_per_byte: 4.0,
    };
    /// STM32F103 (DS5319): page (1 KB) erase 20 ms, half-word program 52.5 µs.
    pub const STM32F1: Timing = Timing {
        erase_us_per_kb: 0.0,
        erase_us_fixed: 20_000.0,
        program_us_per_byte: 26.25,
    };
    /// nRF52840 NVMC (PS v1.7): page (4 KB) erase 85 ms, word write 41 µs.
    pub const NRF52840: Timing = Timing {
        erase_us_per_kb: 0.0,
        erase_us_fixed: 85_000.0,
        program_us_per_byte: 10.25,
    };
    /// Serial NOR (MX25L/GD25Q class): 4 KB sector erase 45 ms, 256-byte page 0.6 ms.
    pub const SERIAL_NOR: Timing = Timing {
        erase_us_per_kb: 0.0,
        erase_us_fixed: 45_000.0,
        program_us_per_byte: 2.35,
    };

    /// Timing for the internal flash of `mcu`.
    pub fn internal(mcu: Mcu) -> Timing {
        match mcu {
            Mcu::Stm32f2 => Self::STM32F2,
            Mcu::Stm32f1 => Self::STM32F1,
            Mcu::Nrf52840 => Self::NRF52840,
            Mcu::Rtl872x | Mcu::Other => Self::SERIAL_NOR,
        }
    }

    fn erase_us(&self, sector_size: u32) -> f64 {
        self.erase_us_fixed + self.erase_us_per_kb * f64::from(sector_size) / 1024.0
    }
}

/// One flash memory and its contents.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Geometry from the catalogue.
    pub geometry: FlashMemory,
    /// Timing model.
    pub timing: Timing,
    /// Contents.
    pub data: Vec<u8>,
}

impl Memory {
    /// An erased memory.
    pub fn new(geometry: FlashMemory, timing: Timing) -> Self {
        Self {
            geometry,
            timing,
            data: vec![0xFF; geometry.size() as usize],
        }
    }

    fn offset(&self, address: u32, len: usize) -> Option<usize> {
        let off = address.checked_sub(self.geometry.base)? as usize;
        (off.checked_add(len)? <= self.data.len()).then_some(off)
    }
}

/// Counters a test or benchmark can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashStats {
    /// Sectors erased.
    pub sectors_erased: u64,
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Erase and program operations.
    pub operations: u64,
    /// Modelled device time in microseconds.
    pub modelled_us: u64,
}

/// The flash memories of one device with NOR semantics, timing and fault injection.
#[derive(Clone, Debug)]
pub struct FlashChip {
    internal: Memory,
    external: Option<Memory>,
    stats: FlashStats,
    /// Cut power when the operation counter reaches this value.
    cut_at_operation: Option<u64>,
    /// The next program operation covering this address stores its byte with bit 0 flipped.
    corrupt_at: Option<(Space, u32)>,
    powered: bool,
}

impl FlashChip {
    /// Erased memories for `layout` on an `mcu`.
    pub fn new(layout: &Layout, mcu: Mcu) -> Self {
        Self {
            internal: Memory::new(layout.internal, Timing::internal(mcu)),
            external: layout.external.map(|g| Memory::new(g, Timing::SERIAL_NOR)),
            stats: FlashStats::default(),
            cut_at_operation: None,
            corrupt_at: None,
            powered: true,
        }
    }

    /// The memory behind `space`, if the device has it.
    pub fn memory(&self, space: Space) -> Option<&Memory> {
        match space {
            Space::Internal => Some(&self.internal),
            Space::External => self.external.as_ref(),
        }
    }

    fn memory_mut(&mut self, space: Space) -> Option<&mut Memory> {
        match space {
            Space::Internal => Some(&mut self.internal),
            Space::External => self.external.as_mut(),
        }
    }

    /// Replaces the contents of a memory (restoring a saved image). Lengths must match.
    pub fn load(&mut self, space: Space, data: Vec<u8>) -> Result<(), FlashError> {
        let m = self.memory_mut(space).ok_or(FlashError::OutOfBounds {
            space,
            address: 0,
            len: data.len(),
        })?;
        if m.data.len() != data.len() {
            return Err(FlashError::OutOfBounds {
                space,
                address: m.geometry.base,
                len: data.len(),
            });
        }
        m.data = data;
        Ok(())
    }

    /// Counters since the chip was created (or since [`FlashChip::set_stats`]).
    pub fn stats(&self) -> FlashStats {
        self.stats
    }

    /// Restores saved counters.
    pub fn set_stats(&mut self, stats: FlashStats) {
        self.stats = stats;
    }

    /// Adds modelled time that is not a flash operation (USB transfers, resets).
    pub fn add_time_us(&mut self, us: u64) {
        self.stats.modelled_us += us;
    }

    /// Arranges for power to be cut during the `n`-th flash operation from now (1 = the next).
    pub fn cut_power_after(&mut self, n: u64) {
        self.cut_at_operation = Some(self.stats.operations + n.max(1));
    }

    /// The operation during which power will be cut, when a cut is armed.
    pub fn power_cut_at(&self) -> Option<u64> {
        self.cut_at_operation
    }

    /// Arms (or with `None` disarms) a power cut during operation number `operation` as
    /// counted by [`FlashStats::operations`] (a saved device's armed cut, restored).
    pub fn arm_power_cut_at(&mut self, operation: Option<u64>) {
        self.cut_at_operation = operation.filter(|&op| op > self.stats.operations);
    }

    /// Disarms fault injection.
    pub fn clear_fault(&mut self) {
        self.cut_at_operation = None;
        self.corrupt_at = None;
    }

    /// Arranges for the next program operation that covers `address` of `space` to store the
    /// byte there with bit 0 flipped (a cell that programs wrong), once: the write completes
    /// as if nothing happened, and only a check of the bytes (a read-back, the CRC) tells.
    pub fn corrupt_program_at(&mut self, space: Space, address: u32) {
        self.corrupt_at = Some((space, address));
    }

    /// False after a power cut, until [`FlashChip::power_on`].
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Restores power (the contents stay as the cut left them).
    pub fn power_on(&mut self) {
        self.powered = true;
        self.cut_at_operation = None;
    }

    /// Reads `len` bytes. Out-of-range reads return `None`.
    pub fn read(&self, space: Space, address: u32, len: usize) -> Option<&[u8]> {
        let m = self.memory(space)?;
        let off = m.offset(address, len)?;
        Some(&m.data[off..off + len])
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, space: Space, address: u32) -> Option<u32> {
        self.read(space, address, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The sector containing `address`: (start, size).
    pub fn sector_at(&self, space: Space, address: u32) -> Option<(u32, u32)> {
        self.memory(space)?.geometry.sector_at(address)
    }

    /// The modelled time of writing `len` bytes at `address` of `space` (erasing every sector
    /// the bytes touch, then programming them), without doing it; `None` outside the memory.
    pub fn write_time_us(&self, space: Space, address: u32, len: usize) -> Option<u64> {
        let m = self.memory(space)?;
        m.offset(address, len)?;
        let end = u64::from(address) + len as u64;
        let mut us = m.timing.program_us_per_byte * len as f64;
        let mut at = u64::from(address);
        while at < end {
            let (start, size) = m.geometry.sector_at(u32::try_from(at).ok()?)?;
            us += m.timing.erase_us(size);
            at = u64::from(start) + u64::from(size.max(1));
        }
        Some(us as u64)
    }

    /// Starts an operation: counts it and decides whether power is cut during it.
    fn begin_operation(&mut self) -> Result<bool, FlashError> {
        if !self.powered {
            return Err(FlashError::PowerLost);
        }
        self.stats.operations += 1;
        Ok(self.cut_at_operation == Some(self.stats.operations))
    }

    /// Erases the sector that contains `address` (all bytes become 0xFF).
    pub fn erase_sector(&mut self, space: Space, address: u32) -> Result<(u32, u32), FlashError> {
        let (start, size) = self
            .sector_at(space, address)
            .ok_or(FlashError::OutOfBounds {
                space,
                address,
                len: 1,
            })?;
        let cut = self.begin_operation()?;
        let m = self.memory_mut(space).expect("sector_at found the memory");
        let off = (start - m.geometry.base) as usize;
        let us = m.timing.erase_us(size);
        let sector = &mut m.data[off..off + size as usize];
        if cut {
            // A cut mid-erase leaves the first half erased and the rest as it was.
            sector[..size as usize / 2].fill(0xFF);
            self.stats.modelled_us += (us / 2.0) as u64;
            self.powered = false;
            return Err(FlashError::PowerLost);
        }
        sector.fill(0xFF);
        self.stats.sectors_erased += 1;
        self.stats.modelled_us += us as u64;
        Ok((start, size))
    }

    /// Erases every sector that overlaps `[address, address+len)`.
    pub fn erase_range(
        &mut self,
        space: Space,
        address: u32,
        len: usize,
    ) -> Result<(), FlashError> {
        if len == 0 {
            return Ok(());
        }
        let end = address
            .checked_add(len as u32)
            .ok_or(FlashError::OutOfBounds {
                space,
                address,
                len,
            })?;
        let mut at = address;
        while at < end {
            let (start, size) = self.erase_sector(space, at)?;
            at = start + size;
        }
        Ok(())
    }

    /// Programs `data` at `address`: each stored byte becomes `old & new` (NOR flash can
    /// only clear bits; writing over unerased bytes stores the AND, as the real part does).
    /// Each 256-byte page is one operation, so a power cut can stop a write between pages or
    /// halfway through one.
    pub fn program(&mut self, space: Space, address: u32, data: &[u8]) -> Result<(), FlashError> {
        let off = self
            .memory(space)
            .and_then(|m| m.offset(address, data.len()))
            .ok_or(FlashError::OutOfBounds {
                space,
                address,
                len: data.len(),
            })?;
        for (i, page) in data.chunks(PROGRAM_PAGE).enumerate() {
            let cut = self.begin_operation()?;
            let corrupt = self.corrupt_at;
            let m = self.memory_mut(space).expect("offset found the memory");
            let us_per_byte = m.timing.program_us_per_byte;
            let n = if cut { page.len() / 2 } else { page.len() };
            let at = off + i * PROGRAM_PAGE;
            for (cell, new) in m.data[at..at + n].iter_mut().zip(page) {
                *cell &= new;
            }
            let page_address = address.wrapping_add((i * PROGRAM_PAGE) as u32);
            let flip = corrupt
                .filter(|&(s, a)| s == space && a >= page_address)
                .map(|(_, a)| a.wrapping_sub(page_address) as usize)
                .filter(|&within| within < n);
            if let Some(cell) = flip.and_then(|within| m.data.get_mut(at + within)) {
                *cell ^= 0x01;
            }
            if flip.is_some() {
                self.corrupt_at = None;
            }
            self.stats.bytes_programmed += n as u64;
            self.stats.modelled_us += (us_per_byte * n as f64) as u64;
            if cut {
                self.powered = false;
                return Err(FlashError::PowerLost);
            }
        }
        Ok(())
    }

    /// Erases the sectors covering `[address, address+data.len())` and programs `data`, in
    /// program operations of at most `chunk` bytes.
    pub fn write(
        &mut self,
        space: Space,
        address: u32,
        data: &[u8],
        chunk: usize,
    ) -> Result<(), FlashError> {
        self.erase_range(space, address, data.len())?;
        for (i, part) in data.chunks(chunk.max(1)).enumerate() {
            self.program(space, address + (i * chunk.max(1)) as u32, part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::platform;

    fn photon_chip() -> FlashChip {
        let p = platform::platform(6).unwrap();
        FlashChip::new(p.layout_for(None).unwrap(), p.mcu)
    }

    #[test]
    fn write_time_is_what_the_write_costs() {
        let mut f = photon_chip();
        for (address, len) in [
            (0x080A_0000, 3952),
            (0x0802_0000, 262_000),
            (0x0800_C000, 1),
        ] {
            let predicted = f.write_time_us(Space::Internal, address, len).unwrap();
            let before = f.stats().modelled_us;
            f.write(Space::Internal, address, &vec![0x5A; len], 4096)
                .unwrap();
            let spent = f.stats().modelled_us - before;
            // Programming is rounded per page in the write, once in the estimate.
            assert!(
                predicted.abs_diff(spent) <= (len / PROGRAM_PAGE) as u64 + 1,
                "{len}"
            );
        }
        assert_eq!(f.write_time_us(Space::Internal, 0x0810_0000, 1), None);
    }

    #[test]
    fn program_stores_the_and_of_old_and_new() {
        let mut f = photon_chip();
        f.program(Space::Internal, 0x080A_0000, &[0b1100_1100])
            .unwrap();
        f.program(Space::Internal, 0x080A_0000, &[0b1010_1010])
            .unwrap();
        assert_eq!(
            f.read(Space::Internal, 0x080A_0000, 1).unwrap(),
            [0b1000_1000]
        );
        f.erase_sector(Space::Internal, 0x080A_0001).unwrap();
        assert_eq!(f.read(Space::Internal, 0x080A_0000, 1).unwrap(), [0xFF]);
    }

    #[test]
    fn timing_follows_the_datasheet() {
        let mut f = photon_chip();
        f.erase_sector(Space::Internal, 0x0800_0000).unwrap(); // 16 KB
        assert_eq!(f.stats().modelled_us, 250_000);
        f.erase_sector(Space::Internal, 0x080A_0000).unwrap(); // 128 KB
        assert_eq!(f.stats().modelled_us, 250_000 + 922_000);
        f.program(Space::Internal, 0x080A_0000, &[0; 4]).unwrap();
        assert_eq!(f.stats().modelled_us, 250_000 + 922_000 + 16);
    }

    #[test]
    fn power_cut_leaves_a_partial_sector_and_blocks_further_operations() {
        let mut f = photon_chip();
        f.program(Space::Internal, 0x080A_0000, &[0; 0x20000])
            .unwrap();
        f.cut_power_after(1);
        assert_eq!(
            f.erase_sector(Space::Internal, 0x080A_0000),
            Err(FlashError::PowerLost)
        );
        let sector = f.read(Space::Internal, 0x080A_0000, 0x20000).unwrap();
        assert!(sector[..0x10000].iter().all(|&b| b == 0xFF));
        assert!(sector[0x10000..].iter().all(|&b| b == 0));
        assert_eq!(
            f.program(Space::Internal, 0x080C_0000, &[1]),
            Err(FlashError::PowerLost)
        );
        f.power_on();
        f.program(Space::Internal, 0x080C_0000, &[1]).unwrap();
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let mut f = photon_chip();
        assert!(f.program(Space::Internal, 0x0810_0000, &[1]).is_err());
        assert!(f.erase_sector(Space::External, 0).is_err());
        assert!(f.read(Space::Internal, 0x080F_FFFF, 2).is_none());
    }
}
