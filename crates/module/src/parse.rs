//! Parsing and verifying module files: header location, suffix, CRC, SHA-256, size, region,
//! compression and combined chains. A file is either a [`Module`] (valid or with named
//! problems) or [`NotAModule`] with a reason.

use core::fmt;

use crate::checksum::{crc32, sha256};
use crate::extension::{Extension, ExtensionArea, ExtensionError, Extensions};
use crate::header::{ModuleFlags, ModuleFunction, ModuleInfo};
use crate::platform::{self, Layout, Mcu, ModuleBounds, Platform, Store};

/// The smallest base suffix: reserved (2) + SHA-256 (32) + size (2).
pub const BASE_SUFFIX_SIZE: usize = 36;
/// Suffix size with the legacy product id/version fields.
pub const PRODUCT_SUFFIX_SIZE: usize = 40;
/// Bytes of the compressed-module header that follows the prefix.
pub const COMPRESSION_HEADER_SIZE: usize = 8;
/// How far the fallback scan looks for a header (as binary-version-reader does).
pub const SCAN_LIMIT: usize = 8 * 1024;
/// Deflate cannot expand data by more than about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Which rule located the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderRule {
    /// At offset 0 (user parts, Electron index-3 part, radio stacks, compressed modules).
    AtStart,
    /// After the 0x184-byte STM32F2 vector table (Gen2 bootloaders and system parts).
    Gen2VectorTable,
    /// After the 0x200-byte nRF52840 vector table (Gen3 bootloaders and system parts).
    Gen3VectorTable,
    /// After the 0x10C-byte STM32F1 vector table (Core monolithic firmware).
    CoreVectorTable,
    /// After the 32-byte Realtek image header (RTL872x).
    RealtekImageHeader,
    /// Found by the fallback scan (no device rule predicts this offset).
    Scan,
}

impl HeaderRule {
    /// Stable lower-case name for JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AtStart => "start",
            Self::Gen2VectorTable => "gen2_vector_table",
            Self::Gen3VectorTable => "gen3_vector_table",
            Self::CoreVectorTable => "core_vector_table",
            Self::RealtekImageHeader => "realtek_image_header",
            Self::Scan => "scan",
        }
    }

    /// Words for people.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::AtStart => "at the start of the file",
            Self::Gen2VectorTable => "after the STM32F2 vector table (Gen2 rule)",
            Self::Gen3VectorTable => "after the nRF52840 vector table (Gen3 rule)",
            Self::CoreVectorTable => "after the STM32F1 vector table (Core rule)",
            Self::RealtekImageHeader => "after the Realtek image header (RTL872x rule)",
            Self::Scan => "by scanning (no device rule predicts this offset)",
        }
    }

    /// The MCU whose devices use this rule, if it is MCU-specific.
    const fn mcu(self) -> Option<Mcu> {
        match self {
            Self::Gen2VectorTable => Some(Mcu::Stm32f2),
            Self::Gen3VectorTable => Some(Mcu::Nrf52840),
            Self::CoreVectorTable => Some(Mcu::Stm32f1),
            Self::RealtekImageHeader => Some(Mcu::Rtl872x),
            Self::AtStart | Self::Scan => None,
        }
    }
}

/// The two 32-bit words that start a Realtek image header (`sig_hi`, `sig_lo`).
pub const REALTEK_HEADER_SIGNATURE: [u32; 2] = [0x9696_9999, 0xFC66_CC3F];
/// The ASCII signature of a raw Realtek "image2" (e.g. `km4_image2_all.bin`).
pub const REALTEK_IMAGE2_SIGNATURE: &[u8; 8] = b"81958711";

/// Why a file is not a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAModule {
    /// The file is empty.
    Empty,
    /// Too short to hold a header and a suffix.
    TooShort {
        /// File length.
        len: usize,
    },
    /// Every byte is 0xFF: erased flash.
    Erased {
        /// File length.
        len: usize,
    },
    /// A raw Realtek image without a Particle module header.
    RealtekImage,
    /// No plausible header at any offset the device rules allow, and none found by scanning.
    NoHeader {
        /// The offset the device rule pointed at and why the bytes there are no header.
        nearest: Option<(usize, Implausible)>,
    },
}

impl fmt::Display for NotAModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("the file is empty"),
            Self::TooShort { len } => write!(
                f,
                "the file is {len} byte{} long; a module needs at least {} (a 24-byte header, a {BASE_SUFFIX_SIZE}-byte suffix and a 4-byte CRC)",
                if len == 1 { "" } else { "s" },
                ModuleInfo::SIZE + BASE_SUFFIX_SIZE + 4
            ),
            Self::Erased { len } => write!(f, "all {len} bytes are 0xFF (erased flash), there is no module in it"),
            Self::RealtekImage => f.write_str(
                "this is a raw Realtek RTL872x image, not a Particle module (no module header after its image header)",
            ),
            Self::NoHeader { nearest: Some((offset, why)) } => write!(
                f,
                "no module header found: at offset {offset:#x}, where the device would look, {why}; scanning the first {} KB found no consistent header either",
                SCAN_LIMIT / 1024
            ),
            Self::NoHeader { nearest: None } => write!(
                f,
                "no module header found at any offset the devices use, and scanning the first {} KB found no consistent header",
                SCAN_LIMIT / 1024
            ),
        }
    }
}

/// Why 24 bytes are not a plausible module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implausible {
    /// Function byte is 0 (NONE).
    NoFunction,
    /// Function byte is not a defined function.
    UnknownFunction(u8),
    /// Flags outside the defined bits.
    UnknownFlags(u8),
    /// A dependency slot holds an unknown function or a non-zero empty slot.
    BadDependency {
        /// Slot number (1 or 2).
        slot: u8,
    },
    /// The platform id is not in the catalogue.
    UnknownPlatform(u16),
    /// The platform's devices never put a header at this offset.
    WrongRule {
        /// The platform the header names.
        platform: u16,
    },
}

impl fmt::Display for Implausible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoFunction => f.write_str("the module function byte is 0 (none)"),
            Self::UnknownFunction(v) => write!(
                f,
                "the module function byte is {v:#04x}, which is not a module function"
            ),
            Self::UnknownFlags(v) => write!(f, "the flags byte {v:#04x} has undefined bits"),
            Self::BadDependency { slot } => write!(f, "dependency {slot} is malformed"),
            Self::UnknownPlatform(id) => write!(f, "the platform id {id} is unknown"),
            Self::WrongRule { platform } => write!(
                f,
                "the header names platform {platform}, whose devices never put a header there"
            ),
        }
    }
}

/// Checks that a header is self-consistent enough to be a module header.
pub fn plausibility(info: &ModuleInfo) -> Result<&'static Platform, Implausible> {
    match info.function {
        ModuleFunction::None => return Err(Implausible::NoFunction),
        ModuleFunction::Unknown(v) => return Err(Implausible::UnknownFunction(v)),
        _ => {}
    }
    if info.flags.0 & !ModuleFlags::KNOWN != 0 {
        return Err(Implausible::UnknownFlags(info.flags.0));
    }
    for (slot, dep) in (1u8..).zip(info.dependencies.iter()) {
        let empty_but_dirty = dep.is_none() && (dep.index != 0 || dep.version != 0);
        if !dep.function.is_known() || empty_but_dirty {
            return Err(Implausible::BadDependency { slot });
        }
    }
    platform::platform(info.platform_id).ok_or(Implausible::UnknownPlatform(info.platform_id))
}

/// The suffix at the end of a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suffix {
    /// Declared suffix size (excluding the CRC).
    pub size: u16,
    /// Offset of the suffix's first byte in the module.
    pub offset: usize,
    /// The stored SHA-256.
    pub sha256: [u8; 32],
    /// The reserved u16 before the SHA.
    pub reserved: u16,
    /// Product id and version, when the suffix is at least 40 bytes.
    pub product: Option<Product>,
}

/// Product id and version from the suffix. 0xFFFF means "not a product build".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Product {
    /// Product id.
    pub id: u16,
    /// Product version.
    pub version: u16,
}

impl Product {
    /// True when the module was built for a product (id is not 0xFFFF).
    pub const fn is_set(&self) -> bool {
        self.id != 0xFFFF
    }
}

/// Why the suffix could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuffixError {
    /// The module is truncated or its addresses are inconsistent, so its end is unknown.
    Unreachable,
    /// The declared size is below 36 or reaches into the header.
    BadSize {
        /// The declared size.
        size: u16,
    },
    /// A suffix extension is malformed.
    Extension(ExtensionError),
}

impl fmt::Display for SuffixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => f.write_str("the suffix could not be read because the module's end is not in the file"),
            Self::BadSize { size } => write!(
                f,
                "the suffix declares {size} bytes, which does not fit between the header and the CRC (minimum {BASE_SUFFIX_SIZE})"
            ),
            Self::Extension(e) => write!(f, "suffix {e}"),
        }
    }
}

/// The file length compared with the header's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeCheck {
    /// `len == end − start + 4` (or another combined module follows exactly).
    Exact,
    /// The file ends before the module does.
    Truncated {
        /// Bytes the header declares (`end − start + 4`).
        declared: usize,
        /// Bytes present.
        available: usize,
    },
    /// Bytes follow the module's CRC and no combined module follows.
    Trailing {
        /// Bytes the header declares.
        declared: usize,
        /// Extra bytes after the CRC.
        extra: usize,
        /// True when the extra bytes are all 0xFF (erased-flash padding).
        all_ff: bool,
    },
    /// The end address is below the start address.
    EndBeforeStart,
    /// The declared length cannot hold the header, a suffix and a CRC.
    TooSmall {
        /// Bytes the header declares.
        declared: usize,
    },
}

/// The stored and computed CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcCheck {
    /// CRC stored (big-endian) after the suffix.
    pub stored: u32,
    /// CRC-32 computed over `[0, len − 4)`.
    pub computed: u32,
}

impl CrcCheck {
    /// True when they match.
    pub const fn ok(&self) -> bool {
        self.stored == self.computed
    }
}

/// What the stored SHA-256 covers, when it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaCoverage {
    /// `[0, len − 38)`: the build's rule.
    Whole,
    /// The payload between the prefix and the suffix (SoftDevice radio stacks).
    Payload,
}

impl ShaCoverage {
    /// Stable name for JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Payload => "payload",
        }
    }
}

/// The SHA-256 verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShaCheck {
    /// SHA-256 over `[0, len − 38)`.
    pub whole: [u8; 32],
    /// Which coverage matched the stored hash, if any.
    pub matched: Option<ShaCoverage>,
}

/// The compressed-module header (flag 0x02) and the inflate verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Declared header size (8).
    pub header_size: u16,
    /// Method (0 = raw Deflate).
    pub method: u8,
    /// Window bits (0 = 15).
    pub window_bits: u8,
    /// Size of the data once inflated.
    pub original_size: u32,
    /// Offset of the deflate stream in the module.
    pub data_offset: usize,
    /// Length of the deflate stream.
    pub data_len: usize,
    /// Result of inflating the stream.
    pub inflate: InflateCheck,
}

/// What inflating a compressed module showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateCheck {
    /// Not checked (built without `alloc`, or the module is damaged elsewhere).
    NotChecked,
    /// Inflated to exactly `original_size` bytes, and for whole-module compression the
    /// result is itself a valid module.
    Ok,
    /// The header names a method or window size Device OS rejects.
    Unsupported,
    /// The declared size is larger than any deflate stream of this length can produce.
    ImpossibleSize,
    /// The deflate stream is corrupt.
    Corrupt,
    /// The stream inflated to a different size than declared.
    SizeMismatch {
        /// Bytes produced.
        actual: usize,
    },
    /// The inflated image is not a valid module.
    InnerInvalid,
}

/// Whether the module's addresses fit a region of its platform's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionCheck {
    /// The module belongs in `bounds` of `layout`.
    InRegion {
        /// The memory map.
        layout: &'static Layout,
        /// The region.
        bounds: &'static ModuleBounds,
    },
    /// An asset module: Device OS keeps it by name in the platform's asset store, not at an
    /// address, and asset modules are built for no platform (id 0) and start at 0.
    AssetStore,
    /// The platform has no known memory map.
    NoMemoryMap,
    /// No region of any memory map of the platform holds this function and index.
    FunctionNotAllowed,
    /// The end address is outside the region (spec §4.6).
    OutOfRange {
        /// The region the module should be in.
        bounds: &'static ModuleBounds,
    },
    /// In range, but the module does not start where the region starts: the bootloader's
    /// copy check (`module_start_address == destination`) would refuse it.
    Misplaced {
        /// The region the module should start at.
        bounds: &'static ModuleBounds,
    },
}

/// One problem found in a module. A module without problems is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Length and addresses disagree.
    Size(SizeCheck),
    /// Prefix extensions are malformed.
    PrefixExtensions(ExtensionError),
    /// The suffix is unreadable.
    Suffix(SuffixError),
    /// CRC mismatch.
    Crc(CrcCheck),
    /// SHA-256 mismatch under both coverages.
    Sha {
        /// Stored hash.
        stored: [u8; 32],
        /// Hash computed over `[0, len − 38)`.
        computed: [u8; 32],
        /// The CRC matches: the content changed and the CRC was recomputed to hide it.
        crc_matches: bool,
    },
    /// The region check failed.
    Region(RegionCheck),
    /// The compressed payload is damaged or not allowed.
    Compression(InflateCheck),
    /// The module is compressed but its header sits after a vector table, or its function may
    /// not be compressed (Device OS rejects both).
    CompressionNotAllowed,
    /// The COMBINED flag is set but no module follows.
    ChainEndsEarly,
    /// A module of a region with a fixed end (RTL872x user part) lacks the DYNAMIC_LOCATION
    /// suffix extension naming its start, so the device cannot find it.
    NoDynamicLocation,
    /// The header was found only by scanning, at an offset no device rule looks at: the device
    /// reads the header where its platform's vector table ends, finds none, and refuses the
    /// module.
    HeaderNotWhereDeviceLooks {
        /// Where the header is in the module.
        offset: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(SizeCheck::Exact) => f.write_str("size ok"),
            Self::Size(SizeCheck::Truncated { declared, available }) => write!(
                f,
                "truncated: the header declares {declared} bytes (end − start + 4) but the file has only {available}"
            ),
            Self::Size(SizeCheck::Trailing { declared, extra, all_ff }) => write!(
                f,
                "{extra} byte{} of {} after the module's CRC (the module is {declared} bytes)",
                if *extra == 1 { "" } else { "s" },
                if *all_ff { "0xFF padding" } else { "unexpected data" }
            ),
            Self::Size(SizeCheck::EndBeforeStart) => f.write_str("the end address is below the start address"),
            Self::Size(SizeCheck::TooSmall { declared }) => write!(
                f,
                "the header declares a {declared}-byte module, too small to hold its header, suffix and CRC"
            ),
            Self::PrefixExtensions(e) => write!(f, "prefix {e}"),
            Self::Suffix(e) => write!(f, "{e}"),
            Self::Crc(c) => write!(
                f,
                "CRC-32 mismatch: stored {:08x}, computed {:08x} (the file is corrupt)",
                c.stored, c.computed
            ),
            Self::Sha {
                stored,
                computed,
                crc_matches,
            } => write!(
                f,
                "SHA-256 mismatch: stored {}, computed {} ({})",
                Hex(stored),
                Hex(computed),
                if *crc_matches {
                    "the CRC was recomputed after the content changed"
                } else {
                    "the content changed after the module was built"
                }
            ),
            Self::Region(RegionCheck::NoMemoryMap) => f.write_str("no memory map is known for this platform"),
            Self::Region(RegionCheck::FunctionNotAllowed) => {
                f.write_str("the platform has no region for this module function and index")
            }
            Self::Region(RegionCheck::OutOfRange { bounds }) => write!(
                f,
                "out of range: the module must end within {:#010x}..{:#010x} ({} region)",
                bounds.lowest_start(),
                bounds.end,
                bounds.slot()
            ),
            Self::Region(RegionCheck::Misplaced { bounds }) => write!(
                f,
                "misplaced: the {} region starts at {:#010x}; the device will not copy a module that starts elsewhere",
                bounds.slot(),
                bounds.start
            ),
            Self::Region(RegionCheck::InRegion { .. }) => f.write_str("in range"),
            Self::Region(RegionCheck::AssetStore) => f.write_str("kept in the asset store"),
            Self::Compression(c) => match c {
                InflateCheck::Unsupported => f.write_str("compressed with a method or window size Device OS does not support"),
                InflateCheck::ImpossibleSize => f.write_str("the compressed header declares an original size no deflate stream of this length can produce"),
                InflateCheck::Corrupt => f.write_str("the compressed data is corrupt (inflate failed)"),
                InflateCheck::SizeMismatch { actual } => write!(f, "the compressed data inflates to {actual} bytes, not the declared size"),
                InflateCheck::InnerInvalid => f.write_str("the inflated image is not a valid module"),
                InflateCheck::Ok | InflateCheck::NotChecked => f.write_str("compression ok"),
            },
            Self::CompressionNotAllowed => f.write_str(
                "Device OS refuses this compressed module (only system parts, user parts and assets with the header at offset 0 may be compressed)",
            ),
            Self::ChainEndsEarly => f.write_str("the COMBINED flag is set but no module follows"),
            Self::NoDynamicLocation => f.write_str(
                "the module grows down from a fixed end but has no DYNAMIC_LOCATION extension naming its start: the device would not find it",
            ),
            Self::HeaderNotWhereDeviceLooks { offset } => write!(
                f,
                "the header sits at offset {offset:#x}, found only by scanning: the device looks for it right after its vector table (or at the start) and would not find this module",
            ),
        }
    }
}

/// Lower-case hex of a byte slice, for `Display`.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A module found in a file, with every check's result. Valid iff [`Module::problems`] is empty.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    file: &'a [u8],
    /// Offset of the module's first byte in the file (non-zero for chained modules).
    pub file_offset: usize,
    /// The module's bytes: from its first byte to its CRC, clipped to the file.
    pub bytes: &'a [u8],
    /// Position in a combined chain (0 for the first module).
    pub chain_position: usize,
    /// Which rule located the header.
    pub rule: HeaderRule,
    /// Offset of the header in the module.
    pub prefix_offset: usize,
    /// The decoded header.
    pub info: ModuleInfo,
    /// The platform the header names.
    pub platform: &'static Platform,
    /// Where the header and its prefix extensions end (start of the payload).
    pub payload_offset: usize,
    /// File length against the header's addresses.
    pub size: SizeCheck,
    /// Prefix-extension walk result.
    pub prefix_extensions: Result<(), ExtensionError>,
    /// The suffix.
    pub suffix: Result<Suffix, SuffixError>,
    /// CRC verdict, when the module is complete.
    pub crc: Option<CrcCheck>,
    /// SHA-256 verdict, when the suffix is readable.
    pub sha: Option<ShaCheck>,
    /// Compression header and verdict, for compressed modules.
    pub compression: Option<Compression>,
    /// Region check against the platform's memory maps.
    pub region: RegionCheck,
}

impl<'a> Module<'a> {
    /// Locates and verifies the first module in `file`.
    pub fn parse(file: &'a [u8]) -> Result<Self, NotAModule> {
        Self::parse_at(file, 0, 0)
    }

    fn parse_at(
        file: &'a [u8],
        file_offset: usize,
        chain_position: usize,
    ) -> Result<Self, NotAModule> {
        let rest = file.get(file_offset..).unwrap_or_default();
        let (rule, prefix_offset, info, platform) = locate_header(rest)?;
        Ok(Self::verify(
            file,
            file_offset,
            chain_position,
            rule,
            prefix_offset,
            info,
            platform,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn verify(
        file: &'a [u8],
        file_offset: usize,
        chain_position: usize,
        rule: HeaderRule,
        prefix_offset: usize,
        info: ModuleInfo,
        platform: &'static Platform,
    ) -> Self {
        let rest = &file[file_offset..];
        let header_end = prefix_offset + ModuleInfo::SIZE;
        let (size, module_len) = size_check(&info, rest, header_end);
        let bytes = &rest[..module_len.unwrap_or(rest.len()).min(rest.len())];

        let prefix_extensions = if info.flags.contains(ModuleFlags::PREFIX_EXTENSIONS) {
            Extensions::new(bytes, header_end, bytes.len(), ExtensionArea::Prefix)
                .validate()
                .map(|_| ())
        } else {
            Ok(())
        };
        let payload_offset = if info.flags.contains(ModuleFlags::PREFIX_EXTENSIONS) {
            Extensions::new(bytes, header_end, bytes.len(), ExtensionArea::Prefix)
                .validate()
                .unwrap_or(header_end)
        } else {
            header_end
        };

        let complete = module_len.is_some();
        let suffix = if complete {
            read_suffix(bytes, payload_offset)
        } else {
            Err(SuffixError::Unreachable)
        };
        let crc = complete.then(|| {
            let len = bytes.len();
            CrcCheck {
                stored: u32::from_be_bytes(read4(bytes, len - 4)),
                computed: crc32(&bytes[..len - 4]),
            }
        });
        let sha = suffix.as_ref().ok().map(|s| {
            let len = bytes.len();
            let whole = sha256(&bytes[..len - 38]);
            let matched = if whole == s.sha256 {
                Some(ShaCoverage::Whole)
            } else if sha256(&bytes[payload_offset..s.offset]) == s.sha256 {
                Some(ShaCoverage::Payload)
            } else {
                None
            };
            ShaCheck { whole, matched }
        });
        let compression = if info.flags.contains(ModuleFlags::COMPRESSED) {
            Some(read_compression(bytes, payload_offset, &suffix, &info))
        } else {
            None
        };
        Self {
            file,
            file_offset,
            bytes,
            chain_position,
            rule,
            prefix_offset,
            info,
            platform,
            payload_offset,
            size,
            prefix_extensions,
            suffix,
            crc,
            sha,
            compression,
            region: region_check(&info, platform),
        }
    }

    /// Every problem found, in the order a person should read them. Empty for a valid module.
    pub fn problems(&self) -> impl Iterator<Item = Problem> + '_ {
        let size = (self.size != SizeCheck::Exact).then_some(Problem::Size(self.size));
        let prefix = self.prefix_extensions.err().map(Problem::PrefixExtensions);
        let suffix = match self.suffix {
            Err(SuffixError::Unreachable) => None, // already explained by the size problem
            Err(e) => Some(Problem::Suffix(e)),
            Ok(_) => None,
        };
        let crc = self.crc.filter(|c| !c.ok()).map(Problem::Crc);
        let sha = match (self.sha, self.suffix) {
            (
                Some(ShaCheck {
                    whole,
                    matched: None,
                }),
                Ok(s),
            ) => Some(Problem::Sha {
                stored: s.sha256,
                computed: whole,
                crc_matches: self.crc.is_some_and(|c| c.ok()),
            }),
            _ => None,
        };
        let region = match self.region {
            RegionCheck::InRegion { .. } | RegionCheck::AssetStore => None,
            other => Some(Problem::Region(other)),
        };
        let compression = self.compression.and_then(|c| match c.inflate {
            InflateCheck::Ok | InflateCheck::NotChecked => None,
            other => Some(Problem::Compression(other)),
        });
        let compression_allowed = self.compression.is_some()
            && (self.prefix_offset != 0
                || !matches!(
                    self.info.function,
                    ModuleFunction::UserPart | ModuleFunction::SystemPart | ModuleFunction::Asset
                ));
        let chain_early = self.info.flags.contains(ModuleFlags::COMBINED)
            && self.size == SizeCheck::Exact
            && self.file_offset + self.bytes.len() >= self.file.len();
        let dynamic = match self.region {
            // (A broken suffix is reported on its own.)
            RegionCheck::InRegion { bounds, .. } if bounds.fixed_end && self.suffix.is_ok() => {
                let start = self.info.start_address;
                let found = self.suffix_extensions().filter_map(Result::ok).any(|e| {
                    matches!(e.decode(), Ok(Extension::DynamicLocation { module_start, .. }) if module_start == start)
                });
                (!found).then_some(Problem::NoDynamicLocation)
            }
            _ => None,
        };
        [
            size,
            prefix,
            suffix,
            crc,
            sha,
            region,
            dynamic,
            compression,
            compression_allowed.then_some(Problem::CompressionNotAllowed),
            chain_early.then_some(Problem::ChainEndsEarly),
            (self.rule == HeaderRule::Scan).then_some(Problem::HeaderNotWhereDeviceLooks {
                offset: self.prefix_offset,
            }),
        ]
        .into_iter()
        .flatten()
    }

    /// True when no check found a problem.
    pub fn is_valid(&self) -> bool {
        self.problems().next().is_none()
    }

    /// True when the CRC was computed and matches.
    pub fn crc_ok(&self) -> bool {
        self.crc.is_some_and(|c| c.ok())
    }

    /// The module's SHA-256 as stored in its suffix (the firmware's unique id).
    pub fn stored_sha256(&self) -> Option<[u8; 32]> {
        self.suffix.ok().map(|s| s.sha256)
    }

    /// Product id/version, when the suffix carries them.
    pub fn product(&self) -> Option<Product> {
        self.suffix.ok().and_then(|s| s.product)
    }

    /// The Device Protection mode its SECURITY_MODE extension sets (1 = protected), with the
    /// certificate that follows it (Device OS 6.x bootloaders); `None` without one.
    pub fn security_mode(&self) -> Option<(u8, &'a [u8])> {
        self.prefix_extensions()
            .chain(self.suffix_extensions())
            .map_while(Result::ok)
            .find_map(|e| match e.decode() {
                Ok(Extension::SecurityMode { mode, certificate }) => Some((mode, certificate)),
                _ => None,
            })
    }

    /// The prefix extensions (empty unless flag 0x10 is set).
    pub fn prefix_extensions(&self) -> Extensions<'a> {
        if self.info.flags.contains(ModuleFlags::PREFIX_EXTENSIONS) {
            let start = self.prefix_offset + ModuleInfo::SIZE;
            Extensions::new(self.bytes, start, self.bytes.len(), ExtensionArea::Prefix)
        } else {
            Extensions::empty(ExtensionArea::Prefix)
        }
    }

    /// The suffix extensions (empty unless the suffix is larger than 40 bytes).
    pub fn suffix_extensions(&self) -> Extensions<'a> {
        match self.suffix {
            Ok(s) if usize::from(s.size) > PRODUCT_SUFFIX_SIZE => {
                let base = self.bytes.len() - 4 - BASE_SUFFIX_SIZE;
                Extensions::new(self.bytes, s.offset, base, ExtensionArea::Suffix)
            }
            _ => Extensions::empty(ExtensionArea::Suffix),
        }
    }

    /// The module that follows in a combined chain, if the COMBINED flag says one does. A
    /// complete module is never shorter than its header, suffix and CRC, so a walk along the
    /// chain ends within the file: every module is checked, however many there are.
    pub fn next_in_chain(&self) -> Option<Result<Module<'a>, NotAModule>> {
        if !self.info.flags.contains(ModuleFlags::COMBINED) || self.size != SizeCheck::Exact {
            return None;
        }
        let next = self.file_offset + self.bytes.len();
        (next < self.file.len()).then(|| Self::parse_at(self.file, next, self.chain_position + 1))
    }
}

/// Iterates over every module of a (possibly combined) file.
pub fn chain(file: &[u8]) -> impl Iterator<Item = Result<Module<'_>, NotAModule>> {
    let mut next = Some(Module::parse(file));
    core::iter::from_fn(move || {
        let current = next.take()?;
        if let Ok(m) = &current {
            next = m.next_in_chain();
        }
        Some(current)
    })
}

fn read4(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn first_word(bytes: &[u8]) -> Option<u32> {
    bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Gen2 and Core: "looks like an initial stack pointer" (spec §2.6).
const fn looks_like_stm32_sp(word: u32) -> bool {
    word & 0x2FF1_0000 == 0x2000_0000
}

/// Gen3: the nRF52840 mask.
const fn looks_like_nrf_sp(word: u32) -> bool {
    word & 0x2FFC_0000 == 0x2000_0000
}

/// Where a device of `mcu` looks for the module header of an image whose first bytes are
/// `image` (spec §2.6): after the vector table when the first word looks like an initial
/// stack pointer, after the Realtek image header when it carries one, else at 0.
pub fn device_header_offset(mcu: Mcu, image: &[u8]) -> usize {
    let word = first_word(image).unwrap_or(u32::MAX);
    match mcu {
        Mcu::Stm32f2 if looks_like_stm32_sp(word) => 0x184,
        Mcu::Stm32f1 if looks_like_stm32_sp(word) => 0x10C,
        Mcu::Nrf52840 if looks_like_nrf_sp(word) => 0x200,
        Mcu::Rtl872x if has_realtek_header(image) => 0x20,
        _ => 0,
    }
}

fn has_realtek_header(bytes: &[u8]) -> bool {
    let word = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    word(0) == Some(REALTEK_HEADER_SIGNATURE[0]) && word(4) == Some(REALTEK_HEADER_SIGNATURE[1])
}

/// Finds the header by the device rules, then by a bounded scan.
fn locate_header(
    bytes: &[u8],
) -> Result<(HeaderRule, usize, ModuleInfo, &'static Platform), NotAModule> {
    let min_len = ModuleInfo::SIZE + BASE_SUFFIX_SIZE + 4;
    if bytes.is_empty() {
        return Err(NotAModule::Empty);
    }
    if bytes.len() < min_len {
        return Err(NotAModule::TooShort { len: bytes.len() });
    }
    if bytes.starts_with(REALTEK_IMAGE2_SIGNATURE) {
        return Err(NotAModule::RealtekImage);
    }
    let word = first_word(bytes).unwrap_or(0);
    let candidates: &[(HeaderRule, usize, bool)] = &[
        (
            HeaderRule::RealtekImageHeader,
            0x20,
            has_realtek_header(bytes),
        ),
        (
            HeaderRule::Gen2VectorTable,
            0x184,
            looks_like_stm32_sp(word),
        ),
        (HeaderRule::Gen3VectorTable, 0x200, looks_like_nrf_sp(word)),
        (
            HeaderRule::CoreVectorTable,
            0x10C,
            looks_like_stm32_sp(word),
        ),
        (HeaderRule::AtStart, 0, !has_realtek_header(bytes)),
    ];
    let mut nearest = None;
    for &(rule, offset, applies) in candidates {
        if !applies {
            continue;
        }
        let Some(info) = ModuleInfo::read(bytes, offset) else {
            continue;
        };
        match plausibility(&info) {
            Ok(p) if rule.mcu().is_none_or(|mcu| mcu == p.mcu) => {
                return Ok((rule, offset, info, p));
            }
            Ok(p) => {
                nearest = nearest.or(Some((offset, Implausible::WrongRule { platform: p.id })))
            }
            Err(why) => nearest = nearest.or(Some((offset, why))),
        }
    }
    if has_realtek_header(bytes) {
        return Err(NotAModule::RealtekImage);
    }
    if bytes.iter().all(|&b| b == 0xFF) {
        return Err(NotAModule::Erased { len: bytes.len() });
    }
    scan(bytes).ok_or(NotAModule::NoHeader { nearest })
}

/// The fallback scan: every 4-byte offset in the first 8 KB; a candidate counts only if it is
/// plausible, the file length matches its addresses exactly and its CRC is right. At most a
/// few candidates get the (linear-time) CRC check, so work stays proportional to the input.
fn scan(bytes: &[u8]) -> Option<(HeaderRule, usize, ModuleInfo, &'static Platform)> {
    const MAX_CRC_CHECKS: usize = 4;
    let mut crc_checks = 0;
    let limit = SCAN_LIMIT.min(bytes.len().saturating_sub(ModuleInfo::SIZE));
    for offset in (4..=limit).step_by(4) {
        let Some(info) = ModuleInfo::read(bytes, offset) else {
            break;
        };
        let Ok(p) = plausibility(&info) else {
            continue;
        };
        if info.file_length() != Some(bytes.len())
            || offset + ModuleInfo::SIZE + BASE_SUFFIX_SIZE + 4 > bytes.len()
        {
            continue;
        }
        crc_checks += 1;
        let len = bytes.len();
        if u32::from_be_bytes(read4(bytes, len - 4)) == crc32(&bytes[..len - 4]) {
            return Some((HeaderRule::Scan, offset, info, p));
        }
        if crc_checks >= MAX_CRC_CHECKS {
            break;
        }
    }
    None
}

/// Size rule; returns the check and, when the module is complete in the file, its length.
fn size_check(info: &ModuleInfo, rest: &[u8], header_end: usize) -> (SizeCheck, Option<usize>) {
    let Some(declared) = info.file_length() else {
        return (SizeCheck::EndBeforeStart, None);
    };
    if declared < header_end + BASE_SUFFIX_SIZE + 4 {
        return (SizeCheck::TooSmall { declared }, None);
    }
    let available = rest.len();
    if declared > available {
        return (
            SizeCheck::Truncated {
                declared,
                available,
            },
            None,
        );
    }
    if declared < available && !info.flags.contains(ModuleFlags::COMBINED) {
        let extra = &rest[declared..];
        let check = SizeCheck::Trailing {
            declared,
            extra: extra.len(),
            all_ff: extra.iter().all(|&b| b == 0xFF),
        };
        return (check, Some(declared));
    }
    (SizeCheck::Exact, Some(declared))
}

fn read_suffix(bytes: &[u8], payload_offset: usize) -> Result<Suffix, SuffixError> {
    let len = bytes.len();
    let size = u16::from_le_bytes([bytes[len - 6], bytes[len - 5]]);
    let size_usize = usize::from(size);
    if size_usize < BASE_SUFFIX_SIZE || len - 4 < payload_offset + size_usize {
        return Err(SuffixError::BadSize { size });
    }
    let offset = len - 4 - size_usize;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&bytes[len - 38..len - 6]);
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let product = (size_usize >= PRODUCT_SUFFIX_SIZE).then(|| Product {
        id: u16_at(len - 44),
        version: u16_at(len - 42),
    });
    if size_usize > PRODUCT_SUFFIX_SIZE {
        Extensions::new(
            bytes,
            offset,
            len - 4 - BASE_SUFFIX_SIZE,
            ExtensionArea::Suffix,
        )
        .validate()
        .map_err(SuffixError::Extension)?;
    }
    Ok(Suffix {
        size,
        offset,
        sha256,
        reserved: u16_at(len - 40),
        product,
    })
}

fn read_compression(
    bytes: &[u8],
    payload_offset: usize,
    suffix: &Result<Suffix, SuffixError>,
    info: &ModuleInfo,
) -> Compression {
    let header = bytes.get(payload_offset..payload_offset + COMPRESSION_HEADER_SIZE);
    let data_offset = payload_offset + COMPRESSION_HEADER_SIZE;
    let (Some(h), Ok(s)) = (header, suffix) else {
        return Compression {
            header_size: 0,
            method: 0,
            window_bits: 0,
            original_size: 0,
            data_offset,
            data_len: 0,
            inflate: InflateCheck::NotChecked,
        };
    };
    let data_len = s.offset.saturating_sub(data_offset);
    let mut c = Compression {
        header_size: u16::from_le_bytes([h[0], h[1]]),
        method: h[2],
        window_bits: h[3],
        original_size: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        data_offset,
        data_len,
        inflate: InflateCheck::NotChecked,
    };
    c.inflate = if c.method != 0
        || usize::from(c.header_size) != COMPRESSION_HEADER_SIZE
        || (c.window_bits != 0 && !(8..=15).contains(&c.window_bits))
    {
        InflateCheck::Unsupported
    } else if u64::from(c.original_size) > MAX_DEFLATE_RATIO * data_len as u64 + 1024 {
        InflateCheck::ImpossibleSize
    } else {
        inflate_check(&bytes[data_offset..data_offset + data_len], &c, info)
    };
    c
}

#[cfg(feature = "alloc")]
fn inflate_check(data: &[u8], c: &Compression, info: &ModuleInfo) -> InflateCheck {
    let limit = c.original_size as usize;
    match miniz_oxide::inflate::decompress_to_vec_with_limit(data, limit) {
        Err(e) if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
            InflateCheck::SizeMismatch { actual: limit + 1 }
        }
        Err(_) => InflateCheck::Corrupt,
        Ok(out) if out.len() != limit => InflateCheck::SizeMismatch { actual: out.len() },
        Ok(out) => {
            if info.flags.contains(ModuleFlags::DROP_MODULE_INFO) {
                return InflateCheck::Ok;
            }
            // The inflated image is the original module; it must be a valid, uncompressed one.
            match Module::parse(&out) {
                Ok(inner)
                    if inner.is_valid()
                        && !inner.info.flags.contains(ModuleFlags::COMPRESSED)
                        && inner.info.start_address == info.start_address =>
                {
                    InflateCheck::Ok
                }
                _ => InflateCheck::InnerInvalid,
            }
        }
    }
}

#[cfg(not(feature = "alloc"))]
fn inflate_check(_data: &[u8], _c: &Compression, _info: &ModuleInfo) -> InflateCheck {
    InflateCheck::NotChecked
}

/// Finds the region the module belongs to in its platform's memory maps.
fn region_check(info: &ModuleInfo, platform: &'static Platform) -> RegionCheck {
    if info.function == ModuleFunction::Asset {
        return RegionCheck::AssetStore;
    }
    let layouts = platform.layouts();
    if layouts.is_empty() {
        return RegionCheck::NoMemoryMap;
    }
    // The system version the module implies: its own (system parts) or what it was built
    // against (user parts). Prefer the memory map of that version.
    let hint = match info.function {
        ModuleFunction::SystemPart => Some(info.version),
        _ => info
            .listed_dependencies()
            .find(|d| d.function == ModuleFunction::SystemPart)
            .map(|d| d.version),
    };
    let preferred = platform.layout_for(hint);
    let ordered = preferred.into_iter().chain(layouts.iter());
    let mut first_match: Option<&'static ModuleBounds> = None;
    for layout in ordered {
        let Some(bounds) = layout
            .bounds
            .iter()
            .find(|b| b.store == Store::Main && b.slot() == info.slot())
        else {
            continue;
        };
        first_match = first_match.or(Some(bounds));
        if bounds.end_in_range(info.end_address) && info.start_address >= bounds.lowest_start() {
            if !bounds.fixed_end && info.start_address != bounds.start {
                return RegionCheck::Misplaced { bounds };
            }
            return RegionCheck::InRegion { layout, bounds };
        }
    }
    match first_match {
        Some(bounds) => RegionCheck::OutOfRange { bounds },
        None => RegionCheck::FunctionNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_are_not_modules() {
        assert_eq!(Module::parse(&[]).unwrap_err(), NotAModule::Empty);
        assert_eq!(
            Module::parse(&[0xA5]).unwrap_err(),
            NotAModule::TooShort { len: 1 }
        );
        assert_eq!(
            Module::parse(&[0; 10]).unwrap_err(),
            NotAModule::TooShort { len: 10 }
        );
        assert_eq!(
            Module::parse(&[0xFF; 4096]).unwrap_err(),
            NotAModule::Erased { len: 4096 }
        );
    }

    #[test]
    fn realtek_image2_is_named() {
        let mut f = [0u8; 512];
        f[..8].copy_from_slice(REALTEK_IMAGE2_SIGNATURE);
        assert_eq!(Module::parse(&f).unwrap_err(), NotAModule::RealtekImage);
    }
}
