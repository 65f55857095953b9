//! Records kept in two alternating flash copies, so that a power cut during a write always
//! leaves one complete copy: the DCT (spec §4.2) and the Wi-Fi configuration file of Gen3 and
//! P2 devices.
//!
//! A copy starts with a 16-byte header `[magic u32][sequence u32][crc32 u32][commit u8]
//! [scope u8]…`; the rest is the body. A write erases the inactive copy, programs the body and
//! the header, and programs the commit byte last; reading picks the committed copy with a
//! valid CRC and the highest sequence. The CRC covers the whole body when the scope byte says
//! so, otherwise the body from [`Copies::short_crc_from`] on: the DCT's first format covered
//! the application DCT only, and a DCT whose system section is empty is still written that
//! way (the same bytes and flash operations as before the system section was modelled).

use modflash_module::checksum::crc32;

use crate::flash::{FlashChip, FlashError, Space};

/// Bytes of header at the start of a copy.
pub(crate) const HEADER: u32 = 16;
const COMMITTED: u8 = 0x5A;
/// Scope byte value: the CRC covers the whole body.
const WHOLE_BODY: u8 = 0x01;

/// Where a two-copy record lives and how its copies are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Copies {
    /// First word of a valid copy.
    pub magic: u32,
    /// Memory.
    pub space: Space,
    /// Start of each copy.
    pub starts: [u32; 2],
    /// Size of one copy (header included).
    pub size: u32,
    /// Where the CRC starts in a copy whose scope byte is erased; the body before it is
    /// programmed only when it holds something.
    pub short_crc_from: u32,
}

/// Why a write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The range is outside the body.
    OutOfRange,
    /// The flash operation failed.
    Flash(FlashError),
}

impl From<FlashError> for WriteError {
    fn from(e: FlashError) -> Self {
        Self::Flash(e)
    }
}

/// A committed copy.
#[derive(Clone, Copy, Debug)]
struct Copy {
    index: usize,
    sequence: u32,
}

impl Copies {
    fn committed(&self, flash: &FlashChip, index: usize) -> Option<Copy> {
        let base = self.starts[index];
        let header = flash.read(self.space, base, HEADER as usize)?;
        let word =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        if word(0) != self.magic || header[12] != COMMITTED {
            return None;
        }
        let from = if header[13] == WHOLE_BODY {
            HEADER
        } else {
            self.short_crc_from
        };
        let covered = flash.read(self.space, base + from, (self.size - from) as usize)?;
        (crc32(covered) == word(8)).then_some(Copy {
            index,
            sequence: word(4),
        })
    }

    fn active(&self, flash: &FlashChip) -> Option<Copy> {
        match (self.committed(flash, 0), self.committed(flash, 1)) {
            (Some(a), Some(b)) => Some(if b.sequence.wrapping_sub(a.sequence) as i32 > 0 {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    /// How many copies are committed and intact.
    #[cfg(test)]
    pub fn committed_count(&self, flash: &FlashChip) -> usize {
        (0..2)
            .filter(|&i| self.committed(flash, i).is_some())
            .count()
    }

    /// True when at least one committed copy is intact.
    pub fn is_intact(&self, flash: &FlashChip) -> bool {
        self.active(flash).is_some()
    }

    /// The whole active copy, header included (`None` when no copy is valid).
    pub fn read(&self, flash: &FlashChip) -> Option<Vec<u8>> {
        let c = self.active(flash)?;
        flash
            .read(self.space, self.starts[c.index], self.size as usize)
            .map(<[u8]>::to_vec)
    }

    /// Writes `data` at `offset` of a copy (at least [`HEADER`]): reads the active copy,
    /// modifies it and writes it to the other copy. Does nothing when the content would not
    /// change.
    pub fn write(&self, flash: &mut FlashChip, offset: u32, data: &[u8]) -> Result<(), WriteError> {
        let start = offset as usize;
        let end = start
            .checked_add(data.len())
            .filter(|&e| start >= HEADER as usize && e <= self.size as usize)
            .ok_or(WriteError::OutOfRange)?;
        let current = self.active(flash);
        let mut copy = match current.and_then(|_| self.read(flash)) {
            Some(c) => c,
            None => vec![0xFF; self.size as usize],
        };
        if current.is_some() && copy[start..end] == *data {
            return Ok(());
        }
        copy[start..end].copy_from_slice(data);
        let (target, sequence) = match current {
            Some(c) => (1 - c.index, c.sequence.wrapping_add(1)),
            None => (0, 1),
        };
        let base = self.starts[target];
        let short = self.short_crc_from as usize;
        let head_used = copy[HEADER as usize..short].iter().any(|&b| b != 0xFF);
        flash.erase_range(self.space, base, self.size as usize)?;
        if head_used {
            flash.program(self.space, base + HEADER, &copy[HEADER as usize..short])?;
        }
        flash.program(self.space, base + self.short_crc_from, &copy[short..])?;
        let mut header = vec![0xFFu8; 12];
        header[..4].copy_from_slice(&self.magic.to_le_bytes());
        header[4..8].copy_from_slice(&sequence.to_le_bytes());
        let covered = if head_used {
            &copy[HEADER as usize..]
        } else {
            &copy[short..]
        };
        header[8..12].copy_from_slice(&crc32(covered).to_le_bytes());
        if head_used {
            // The commit byte stays erased; the scope byte follows it.
            header.extend_from_slice(&[0xFF, WHOLE_BODY]);
        }
        flash.program(self.space, base, &header)?;
        // The commit byte goes last: until it is programmed, readers keep using the old copy.
        flash.program(self.space, base + 12, &[COMMITTED])?;
        Ok(())
    }
}
