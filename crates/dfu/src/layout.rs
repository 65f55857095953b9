//! DfuSe memory-layout strings (`@Internal Flash   /0x08000000/03*016Ka,...`), parsed per dfu-util.
//!
//! Grammar (dfu-util `dfuse_mem.c`, UM0424 §4.3.2):
//! `@<name>/0x<hex>/<count>*<size><unit><type>[,<count>*<size><unit><type>...][/0x<hex>/...]`
//!
//! * The name runs up to the first `/`; trailing spaces are kept.
//! * Counts and sizes are decimal (leading zeros allowed and remembered for [`Display`]).
//! * The unit is `K` (1024), `M` (1024²), `B` (bytes); any other character (ST often uses a space)
//!   means bytes. If the unit is missing and a type letter sits in its place, it is the type.
//! * The type is one letter `a`..`g`, read as `letter & 7`: readable 1, erasable 2, writable 4.
//! * Segments follow each other contiguously from the region address.
//! * A layout named exactly `Device Feature` is treated as type `e` (STM32F4 quirk).
//!
//! [`Display`]: std::fmt::Display

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Access bits of a segment: readable 1, erasable 2, writable 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    /// Readable bit.
    pub const READABLE: u8 = 1;
    /// Erasable bit.
    pub const ERASABLE: u8 = 2;
    /// Writable bit.
    pub const WRITABLE: u8 = 4;

    /// From raw bits (masked to the low three).
    pub const fn from_bits(bits: u8) -> Self {
        Access(bits & 7)
    }

    /// From a type letter `a`..=`g` (`letter & 7`); `None` for anything else.
    pub fn from_letter(c: char) -> Option<Self> {
        match c {
            'a'..='g' => Some(Access((c as u8) & 7)),
            _ => None,
        }
    }

    /// The type letter for these bits (`None` for no access at all).
    pub fn letter(self) -> Option<char> {
        if self.0 == 0 {
            None
        } else {
            Some(char::from(b'`' + self.0))
        }
    }

    /// Raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the segment can be read (uploaded).
    pub const fn readable(self) -> bool {
        self.0 & Self::READABLE != 0
    }

    /// Whether the segment can be erased.
    pub const fn erasable(self) -> bool {
        self.0 & Self::ERASABLE != 0
    }

    /// Whether the segment can be written (downloaded).
    pub const fn writable(self) -> bool {
        self.0 & Self::WRITABLE != 0
    }
}

impl fmt::Display for Access {
    /// `r`, `e`, `w` letters as dfu-util prints them (`rew`, `r`, ...), or `no-access`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("no-access");
        }
        for (bit, c) in [
            (Self::READABLE, "r"),
            (Self::ERASABLE, "e"),
            (Self::WRITABLE, "w"),
        ] {
            if self.0 & bit != 0 {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// The size unit written after a sector size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// `B`: bytes.
    Bytes,
    /// `K`: 1024 bytes.
    Kilo,
    /// `M`: 1024 × 1024 bytes.
    Mega,
    /// Any other character (often a space): dfu-util warns and takes bytes.
    Other(char),
    /// No unit: the type letter directly follows the size.
    Missing,
}

impl Unit {
    /// Bytes per unit.
    pub fn multiplier(self) -> u32 {
        match self {
            Unit::Kilo => 1024,
            Unit::Mega => 1024 * 1024,
            _ => 1,
        }
    }
}

/// `count` sectors of `size × unit` bytes with one access type, e.g. `07*128Kg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectorGroup {
    /// Number of sectors (pages).
    pub count: u32,
    /// Sector size in `unit`s.
    pub size: u32,
    /// The unit of `size`.
    pub unit: Unit,
    /// Access bits as written (see [`MemoryLayout::segments`] for the effective ones).
    pub access: Access,
    /// Minimum digits used when printing `count` (leading zeros, as in `03`).
    pub count_digits: u8,
    /// Minimum digits used when printing `size` (as in `016`).
    pub size_digits: u8,
}

impl SectorGroup {
    /// Sector size in bytes, if it fits in 32 bits.
    pub fn page_size(&self) -> Option<u32> {
        self.size.checked_mul(self.unit.multiplier())
    }

    /// Total bytes covered.
    pub fn bytes(&self) -> u64 {
        u64::from(self.count) * u64::from(self.size) * u64::from(self.unit.multiplier())
    }
}

impl fmt::Display for SectorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cw = usize::from(self.count_digits);
        let sw = usize::from(self.size_digits);
        write!(f, "{:0cw$}*{:0sw$}", self.count, self.size)?;
        match self.unit {
            Unit::Bytes => f.write_str("B")?,
            Unit::Kilo => f.write_str("K")?,
            Unit::Mega => f.write_str("M")?,
            Unit::Other(c) => write!(f, "{c}")?,
            Unit::Missing => {}
        }
        write!(f, "{}", self.access.letter().unwrap_or('?'))
    }
}

/// A region: a start address and contiguous sector groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// Start address.
    pub address: u32,
    /// Sector groups, laid out back to back from `address`.
    pub groups: Vec<SectorGroup>,
}

/// A parsed DfuSe memory layout (the alt setting's interface string).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemoryLayout {
    /// The name, without `@`, trailing spaces kept (`"Internal Flash   "`).
    pub name: String,
    /// The regions in string order.
    pub regions: Vec<Region>,
}

/// A flattened, contiguous run of equal-sized pages with one access type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First address.
    pub start: u32,
    /// One past the last address (may be 2^32).
    pub end: u64,
    /// Page (sector) size in bytes, never zero.
    pub page_size: u32,
    /// Effective access bits.
    pub access: Access,
}

impl Segment {
    /// Whether `address` lies in the segment.
    pub fn contains(&self, address: u32) -> bool {
        address >= self.start && u64::from(address) < self.end
    }

    /// The page containing `address` (`None` if outside the segment).
    pub fn page_of(&self, address: u32) -> Option<Page> {
        if !self.contains(address) {
            return None;
        }
        let index = (address - self.start) / self.page_size;
        Some(Page {
            address: self.start + index * self.page_size,
            size: self.page_size,
            access: self.access,
        })
    }
}

/// One erasable unit of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    /// Start address.
    pub address: u32,
    /// Size in bytes.
    pub size: u32,
    /// Access bits of its segment.
    pub access: Access,
}

impl Page {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        u64::from(self.address) + u64::from(self.size)
    }
}

impl MemoryLayout {
    /// Parses a layout string (a trailing NUL padding is ignored).
    pub fn parse(s: &str) -> Result<Self> {
        Parser {
            s: s.trim_end_matches('\0'),
            pos: 0,
        }
        .layout()
    }

    /// The segments in string order, with the effective access (the `Device Feature` quirk
    /// applied). Empty groups (count 0) are left out.
    pub fn segments(&self) -> Vec<Segment> {
        let device_feature = self.name == "Device Feature";
        let mut out = Vec::new();
        for region in &self.regions {
            let mut addr = u64::from(region.address);
            for g in &region.groups {
                let bytes = g.bytes();
                if let (Some(page_size), Ok(start)) = (g.page_size(), u32::try_from(addr)) {
                    if g.count > 0 && page_size > 0 && addr + bytes <= 1 << 32 {
                        let access = if device_feature {
                            Access::from_bits(Access::READABLE | Access::WRITABLE)
                        } else {
                            g.access
                        };
                        out.push(Segment {
                            start,
                            end: addr + bytes,
                            page_size,
                            access,
                        });
                    }
                }
                addr += bytes;
            }
        }
        out
    }

    /// The first segment containing `address` (dfu-util's `find_segment`).
    pub fn segment_at(&self, address: u32) -> Option<Segment> {
        self.segments().into_iter().find(|s| s.contains(address))
    }

    /// The page containing `address`.
    pub fn page_at(&self, address: u32) -> Option<Page> {
        self.segment_at(address).and_then(|s| s.page_of(address))
    }

    /// Total bytes described.
    pub fn total_bytes(&self) -> u64 {
        self.regions
            .iter()
            .flat_map(|r| r.groups.iter())
            .map(SectorGroup::bytes)
            .sum()
    }
}

impl FromStr for MemoryLayout {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        MemoryLayout::parse(s)
    }
}

impl fmt::Display for MemoryLayout {
    /// Regenerates the layout string; addresses are printed as 8 upper-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.name)?;
        for region in &self.regions {
            write!(f, "/0x{:08X}/", region.address)?;
            for (i, g) in region.groups.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{g}")?;
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(Error::Layout {
            position: self.pos,
            reason: reason.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|r| r.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn expect(&mut self, want: char, what: &str) -> Result<()> {
        match self.peek() {
            Some(c) if c == want => {
                self.pos += c.len_utf8();
                Ok(())
            }
            Some(c) => self.err(format!("expected {what}, found {c:?}")),
            None => self.err(format!("expected {what}, found the end")),
        }
    }

    fn at_separator(&self) -> bool {
        matches!(self.peek(), None | Some(',') | Some('/'))
    }

    /// Decimal number; returns (value, digit count).
    fn decimal(&mut self, what: &str) -> Result<(u32, u8)> {
        let start = self.pos;
        let mut value: u32 = 0;
        let mut digits: usize = 0;
        while let Some(c) = self.peek() {
            let Some(d) = c.to_digit(10) else { break };
            value = match value.checked_mul(10).and_then(|v| v.checked_add(d)) {
                Some(v) => v,
                None => {
                    self.pos = start;
                    return self.err(format!("{what} does not fit in 32 bits"));
                }
            };
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return self.err(format!("expected a decimal {what}"));
        }
        Ok((value, u8::try_from(digits).unwrap_or(u8::MAX)))
    }

    fn layout(mut self) -> Result<MemoryLayout> {
        self.expect('@', "'@' at the start")?;
        let name_start = self.pos;
        let name_len = self.s[name_start..]
            .find('/')
            .unwrap_or(self.s.len() - name_start);
        if name_len == 0 {
            return self.err("the name is empty");
        }
        self.pos += name_len;
        let name = self.s[name_start..self.pos].to_string();
        if self.peek().is_none() {
            return self.err("expected '/0x<address>/' after the name");
        }
        let mut regions = Vec::new();
        while self.peek().is_some() {
            regions.push(self.region()?);
        }
        Ok(MemoryLayout { name, regions })
    }

    fn region(&mut self) -> Result<Region> {
        self.expect('/', "'/' before a region address")?;
        self.expect('0', "'0x' before a region address")?;
        match self.bump() {
            Some('x') | Some('X') => {}
            _ => {
                self.pos -= 1;
                return self.err("expected '0x' before a region address");
            }
        }
        let start = self.pos;
        let mut address: u32 = 0;
        let mut digits = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
            if digits == 8 {
                return self.err("region address has more than 8 hex digits");
            }
            address = (address << 4) | d;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            self.pos = start;
            return self.err("expected hex digits in the region address");
        }
        self.expect('/', "'/' after the region address")?;
        let mut groups = Vec::new();
        let mut end = u64::from(address);
        loop {
            let group_start = self.pos;
            let g = self.group()?;
            end += g.bytes();
            if end > 1 << 32 {
                self.pos = group_start;
                return self.err(format!(
                    "region at 0x{address:08X} runs past the 32-bit address space"
                ));
            }
            groups.push(g);
            if self.peek() == Some(',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        match self.peek() {
            None | Some('/') => Ok(Region { address, groups }),
            Some(c) => self.err(format!("unexpected {c:?} after a sector group")),
        }
    }

    fn group(&mut self) -> Result<SectorGroup> {
        let (count, count_digits) = self.decimal("sector count")?;
        self.expect('*', "'*' between sector count and size")?;
        let size_pos = self.pos;
        let (size, size_digits) = self.decimal("sector size")?;
        let unit_pos = self.pos;
        let Some(c) = self.bump() else {
            return self.err("expected a unit and type letter after the sector size");
        };
        let (unit, access) =
            if let (Some(access), true) = (Access::from_letter(c), self.at_separator()) {
                (Unit::Missing, access)
            } else {
                let unit = match c {
                    ',' | '/' => {
                        self.pos = unit_pos;
                        return self.err("missing type letter (a..g) after the sector size");
                    }
                    'B' => Unit::Bytes,
                    'K' => Unit::Kilo,
                    'M' => Unit::Mega,
                    other => Unit::Other(other),
                };
                let type_pos = self.pos;
                let access = match self.bump() {
                    Some(t) => match Access::from_letter(t) {
                        Some(a) => a,
                        None => {
                            self.pos = type_pos;
                            return self.err(format!("invalid type letter {t:?} (expected a..g)"));
                        }
                    },
                    None => return self.err("missing type letter (a..g) after the unit"),
                };
                if !self.at_separator() {
                    return self.err("type must be a single letter followed by ',' or '/'");
                }
                (unit, access)
            };
        let g = SectorGroup {
            count,
            size,
            unit,
            access,
            count_digits,
            size_digits,
        };
        match g.page_size() {
            Some(0) => {
                self.pos = size_pos;
                self.err("sector size is zero")
            }
            None => {
                self.pos = size_pos;
                self.err("sector size does not fit in 32 bits")
            }
            Some(_) => Ok(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHOTON: &str = "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg";

    #[test]
    fn photon_internal_flash() {
        let l = MemoryLayout::parse(PHOTON).unwrap();
        assert_eq!(l.name, "Internal Flash   ");
        let segs = l.segments();
        let summary: Vec<_> = segs
            .iter()
            .map(|s| (s.start, s.end, s.page_size, s.access.to_string()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0x0800_0000, 0x0800_C000, 16384, "r".to_string()),
                (0x0800_C000, 0x0801_0000, 16384, "rew".to_string()),
                (0x0801_0000, 0x0802_0000, 65536, "rew".to_string()),
                (0x0802_0000, 0x0810_0000, 131072, "rew".to_string()),
            ]
        );
        assert_eq!(l.to_string(), PHOTON);
        let p = l.page_at(0x080A_1234).unwrap();
        assert_eq!((p.address, p.size), (0x080A_0000, 0x2_0000));
        assert!(l.page_at(0x0810_0000).is_none());
        assert!(l.page_at(0x07FF_FFFF).is_none());
    }

    #[test]
    fn every_letter_maps_to_bits() {
        for (c, bits) in [
            ('a', 1),
            ('b', 2),
            ('c', 3),
            ('d', 4),
            ('e', 5),
            ('f', 6),
            ('g', 7),
        ] {
            let s = format!("@X/0x00000000/01*001K{c}");
            let l = MemoryLayout::parse(&s).unwrap();
            assert_eq!(l.regions[0].groups[0].access.bits(), bits, "{c}");
            assert_eq!(l.to_string(), s);
        }
        assert!(MemoryLayout::parse("@X/0x0/1*1Kh").is_err());
    }

    #[test]
    fn units_and_quirks() {
        let l = MemoryLayout::parse("@Option Bytes  /0x1FFFC000/01*016 e").unwrap();
        assert_eq!(l.regions[0].groups[0].unit, Unit::Other(' '));
        assert_eq!(l.segments()[0].page_size, 16);
        assert_eq!(l.to_string(), "@Option Bytes  /0x1FFFC000/01*016 e");

        let l = MemoryLayout::parse("@X/0x20000000/2*1Mg,4*512Bd,3*2g").unwrap();
        let s = l.segments();
        assert_eq!(s[0].page_size, 1 << 20);
        assert_eq!(s[1].page_size, 512);
        assert_eq!(s[2].page_size, 2);
        assert_eq!(l.regions[0].groups[2].unit, Unit::Missing);
        assert_eq!(s[2].start, 0x2020_0800);

        // Several regions, lower-case hex accepted.
        let l = MemoryLayout::parse("@A/0x0800c000/1*16Kg/0x1fff0000/2*1Ka").unwrap();
        assert_eq!(l.regions.len(), 2);
        assert_eq!(l.regions[1].address, 0x1FFF_0000);
        assert_eq!(l.to_string(), "@A/0x0800C000/1*16Kg/0x1FFF0000/2*1Ka");

        let l = MemoryLayout::parse("@Device Feature/0xFFFF0000/01*004 e").unwrap();
        assert_eq!(l.segments()[0].access.to_string(), "rw");
        let l = MemoryLayout::parse("@Device Feature/0xFFFF0000/01*004 a").unwrap();
        assert_eq!(l.segments()[0].access.to_string(), "rw");
    }

    #[test]
    fn malformed_strings_are_errors() {
        for bad in [
            "",
            "Internal/0x0/1*1Kg",
            "@",
            "@name",
            "@/0x0/1*1Kg",
            "@N/0x/1*1Kg",
            "@N/08000000/1*1Kg",
            "@N/0x123456789/1*1Kg",
            "@N/0x0/",
            "@N/0x0/1*1K",
            "@N/0x0/1*1",
            "@N/0x0/1*Kg",
            "@N/0x0/*1Kg",
            "@N/0x0/1*0Kg",
            "@N/0x0/1*1Kgg",
            "@N/0x0/1*1Kg,",
            "@N/0x0/1*1Kg/",
            "@N/0x0/1*1Kz",
            "@N/0x0/99999999999*1Kg",
            "@N/0xFFFFFFFF/2*1Bg",
            "@N/0x0/4097*1Mg",
            "@N/0x0/1*4096Mg",
        ] {
            assert!(MemoryLayout::parse(bad).is_err(), "{bad:?} parsed");
        }
        // The last byte of the address space is fine.
        assert!(MemoryLayout::parse("@N/0xFFFFFFFF/1*1Bg").is_ok());
        assert!(MemoryLayout::parse("@N/0x0/4*1024Mg").is_ok());
    }
}
