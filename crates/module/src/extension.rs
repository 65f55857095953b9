//! Module extensions (spec §1.9): prefix extensions after the header and suffix extensions
//! below the base suffix, each `u16 type, u16 length` (length includes the 4-byte header).

use core::fmt;

use crate::header::ModuleFunction;

/// Extension type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtensionKind {
    /// 0x0000: end of the list; its length covers padding.
    End,
    /// 0x0001: product id and version.
    ProductData,
    /// 0x0002: where a downward-growing module really starts.
    DynamicLocation,
    /// 0x0003: an extra dependency with a target MCU id.
    Dependency,
    /// 0x0010: a hash of the module.
    Hash,
    /// 0x0011: a UTF-8 name.
    Name,
    /// 0x0012: an asset the application needs.
    AssetDependency,
    /// 0x0013: Device Protection security mode.
    SecurityMode,
    /// 0x0014: asset type.
    AssetType,
    /// 0xFFFF: erased flash; ends the list.
    Invalid,
    /// Any other code.
    Unknown(u16),
}

impl ExtensionKind {
    /// Decodes a type code.
    pub const fn from_u16(v: u16) -> Self {
        match v {
            0x0000 => Self::End,
            0x0001 => Self::ProductData,
            0x0002 => Self::DynamicLocation,
            0x0003 => Self::Dependency,
            0x0010 => Self::Hash,
            0x0011 => Self::Name,
            0x0012 => Self::AssetDependency,
            0x0013 => Self::SecurityMode,
            0x0014 => Self::AssetType,
            0xFFFF => Self::Invalid,
            other => Self::Unknown(other),
        }
    }

    /// The type code.
    pub const fn to_u16(self) -> u16 {
        match self {
            Self::End => 0x0000,
            Self::ProductData => 0x0001,
            Self::DynamicLocation => 0x0002,
            Self::Dependency => 0x0003,
            Self::Hash => 0x0010,
            Self::Name => 0x0011,
            Self::AssetDependency => 0x0012,
            Self::SecurityMode => 0x0013,
            Self::AssetType => 0x0014,
            Self::Invalid => 0xFFFF,
            Self::Unknown(v) => v,
        }
    }

    /// Stable lower-case name for JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::End => "end",
            Self::ProductData => "product_data",
            Self::DynamicLocation => "dynamic_location",
            Self::Dependency => "dependency",
            Self::Hash => "hash",
            Self::Name => "name",
            Self::AssetDependency => "asset_dependency",
            Self::SecurityMode => "security_mode",
            Self::AssetType => "asset_type",
            Self::Invalid => "invalid",
            Self::Unknown(_) => "unknown",
        }
    }

    /// The payload length this type must have, when fixed.
    const fn fixed_payload(self) -> Option<usize> {
        match self {
            Self::ProductData => Some(6),
            Self::DynamicLocation => Some(12),
            Self::Dependency => Some(8),
            Self::AssetType => Some(1),
            _ => None,
        }
    }
}

/// Where an extension list sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtensionArea {
    /// After the 24-byte header (flag 0x10).
    Prefix,
    /// Below the base suffix.
    Suffix,
}

impl fmt::Display for ExtensionArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prefix => "prefix",
            Self::Suffix => "suffix",
        })
    }
}

/// A decoded extension. Byte fields borrow from the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension<'a> {
    /// End of list, with `padding` bytes after the header.
    End {
        /// Padding bytes.
        padding: usize,
    },
    /// Product id and version. On RTL872x the id's low half is 0xFFFF and the 16-bit product
    /// id sits in the high half (spec §2.3).
    ProductData {
        /// Raw 32-bit id field.
        id: u32,
        /// Product version.
        version: u16,
    },
    /// Where a downward-growing module starts.
    DynamicLocation {
        /// Start address of the module.
        module_start: u32,
        /// Load address of the dynalib table.
        dynalib_load: u32,
        /// RAM address of the dynalib table.
        dynalib_start: u32,
    },
    /// An extra dependency.
    Dependency {
        /// Required function.
        function: ModuleFunction,
        /// Required index.
        index: u8,
        /// Minimum version.
        version: u16,
        /// Target MCU id (e.g. an NCP).
        target_id: u32,
    },
    /// A hash.
    Hash {
        /// Hash type (0 = SHA-256).
        hash_type: u8,
        /// Hash bytes.
        hash: &'a [u8],
    },
    /// A name (raw bytes; usually UTF-8).
    Name(&'a [u8]),
    /// An asset dependency.
    AssetDependency {
        /// Hash type (0 = SHA-256).
        hash_type: u8,
        /// Hash bytes.
        hash: &'a [u8],
        /// Asset name bytes.
        name: &'a [u8],
    },
    /// Device Protection mode (0 none, 1 protected) and an optional DER certificate.
    SecurityMode {
        /// Mode byte.
        mode: u8,
        /// Certificate bytes (may be empty).
        certificate: &'a [u8],
    },
    /// Asset type (0 default, 1 env-vars app, 2 env-vars snapshot).
    AssetType(u8),
    /// An unknown type, kept raw.
    Unknown {
        /// Type code.
        kind: u16,
        /// Payload.
        payload: &'a [u8],
    },
}

/// One extension as found in a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawExtension<'a> {
    /// Type.
    pub kind: ExtensionKind,
    /// Offset of the extension header from the start of the module.
    pub offset: usize,
    /// The payload (after the 4-byte header).
    pub payload: &'a [u8],
}

impl<'a> RawExtension<'a> {
    /// Total length including the 4-byte header.
    pub fn length(&self) -> usize {
        self.payload.len() + 4
    }

    /// Decodes the payload. Fails when a fixed-size payload has the wrong length.
    pub fn decode(&self) -> Result<Extension<'a>, ExtensionError> {
        let p = self.payload;
        let bad = || ExtensionError::BadPayload {
            offset: self.offset,
            kind: self.kind,
            length: p.len(),
        };
        if let Some(need) = self.kind.fixed_payload() {
            if p.len() < need {
                return Err(bad());
            }
        }
        let u16_at = |o: usize| p.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            p.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        Ok(match self.kind {
            ExtensionKind::End | ExtensionKind::Invalid => Extension::End { padding: p.len() },
            ExtensionKind::ProductData => Extension::ProductData {
                id: u32_at(0).ok_or_else(bad)?,
                version: u16_at(4).ok_or_else(bad)?,
            },
            ExtensionKind::DynamicLocation => Extension::DynamicLocation {
                module_start: u32_at(0).ok_or_else(bad)?,
                dynalib_load: u32_at(4).ok_or_else(bad)?,
                dynalib_start: u32_at(8).ok_or_else(bad)?,
            },
            ExtensionKind::Dependency => Extension::Dependency {
                function: ModuleFunction::from_u8(p[0]),
                index: p[1],
                version: u16_at(2).ok_or_else(bad)?,
                target_id: u32_at(4).ok_or_else(bad)?,
            },
            ExtensionKind::Hash => {
                let (&hash_type, rest) = p.split_first().ok_or_else(bad)?;
                let (&len, rest) = rest.split_first().ok_or_else(bad)?;
                Extension::Hash {
                    hash_type,
                    hash: rest.get(..usize::from(len)).ok_or_else(bad)?,
                }
            }
            ExtensionKind::Name => Extension::Name(p),
            ExtensionKind::AssetDependency => {
                let (&hash_type, rest) = p.split_first().ok_or_else(bad)?;
                let (&len, rest) = rest.split_first().ok_or_else(bad)?;
                let hash = rest.get(..usize::from(len)).ok_or_else(bad)?;
                Extension::AssetDependency {
                    hash_type,
                    hash,
                    name: &rest[hash.len()..],
                }
            }
            ExtensionKind::SecurityMode => {
                let (&mode, certificate) = p.split_first().ok_or_else(bad)?;
                Extension::SecurityMode { mode, certificate }
            }
            ExtensionKind::AssetType => Extension::AssetType(p[0]),
            ExtensionKind::Unknown(kind) => Extension::Unknown { kind, payload: p },
        })
    }
}

/// Why an extension list could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionError {
    /// An extension's length is below 4 or runs past the end of its area.
    Overrun {
        /// Offset of the extension header in the module.
        offset: usize,
        /// Declared length.
        length: u16,
        /// Bytes left in the area at that offset.
        available: usize,
    },
    /// A prefix extension list does not end with an END extension.
    Unterminated {
        /// Offset where the area ended.
        offset: usize,
    },
    /// A fixed-size extension has a payload of the wrong size.
    BadPayload {
        /// Offset of the extension header.
        offset: usize,
        /// The type.
        kind: ExtensionKind,
        /// Payload length found.
        length: usize,
    },
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Overrun {
                offset,
                length,
                available,
            } => write!(
                f,
                "extension at offset {offset:#x} declares {length} bytes but only {available} are left"
            ),
            Self::Unterminated { offset } => {
                write!(f, "prefix extensions run to offset {offset:#x} without an END extension")
            }
            Self::BadPayload {
                offset,
                kind,
                length,
            } => write!(
                f,
                "{} extension at offset {offset:#x} has a {length}-byte payload, which is too short",
                kind.name()
            ),
        }
    }
}

/// Iterates the extensions in `module[start..end]`. Offsets are relative to `module`.
/// Stops after END/INVALID; yields an error once and then stops on malformed input.
#[derive(Clone, Debug)]
pub struct Extensions<'a> {
    module: &'a [u8],
    pos: usize,
    end: usize,
    area: ExtensionArea,
    done: bool,
}

impl<'a> Extensions<'a> {
    /// Extensions of `area` in `module[start..end]`.
    pub fn new(module: &'a [u8], start: usize, end: usize, area: ExtensionArea) -> Self {
        let end = end.min(module.len());
        Self {
            module,
            pos: start.min(end),
            end,
            area,
            done: false,
        }
    }

    /// An iterator that yields nothing.
    pub fn empty(area: ExtensionArea) -> Self {
        Self {
            module: &[],
            pos: 0,
            end: 0,
            area,
            done: true,
        }
    }

    /// Which area these extensions come from.
    pub fn area(&self) -> ExtensionArea {
        self.area
    }

    /// Walks the whole list and returns the offset just past it (after the END extension for
    /// prefix lists), or the first error.
    pub fn validate(mut self) -> Result<usize, ExtensionError> {
        let mut last_end = self.pos;
        for ext in self.by_ref() {
            let ext = ext?;
            ext.decode()?;
            last_end = ext.offset + ext.length();
            if matches!(ext.kind, ExtensionKind::End | ExtensionKind::Invalid) {
                return Ok(last_end);
            }
        }
        Ok(last_end)
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<RawExtension<'a>, ExtensionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let available = self.end - self.pos;
        if available == 0 {
            self.done = true;
            return match self.area {
                ExtensionArea::Prefix => {
                    Some(Err(ExtensionError::Unterminated { offset: self.pos }))
                }
                ExtensionArea::Suffix => None,
            };
        }
        let header = match self.module.get(self.pos..self.pos + 4) {
            Some(h) if available >= 4 => h,
            _ => {
                self.done = true;
                return Some(Err(ExtensionError::Overrun {
                    offset: self.pos,
                    length: 0,
                    available,
                }));
            }
        };
        let kind = ExtensionKind::from_u16(u16::from_le_bytes([header[0], header[1]]));
        let length = u16::from_le_bytes([header[2], header[3]]);
        if kind == ExtensionKind::Invalid {
            // Erased flash: the list ends here, whatever the length says.
            self.done = true;
            return Some(Ok(RawExtension {
                kind,
                offset: self.pos,
                payload: &[],
            }));
        }
        let len = usize::from(length);
        if len < 4 || len > available {
            self.done = true;
            return Some(Err(ExtensionError::Overrun {
                offset: self.pos,
                length,
                available,
            }));
        }
        let ext = RawExtension {
            kind,
            offset: self.pos,
            payload: &self.module[self.pos + 4..self.pos + len],
        };
        self.pos += len;
        if kind == ExtensionKind::End {
            self.done = true;
        }
        Some(Ok(ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn decodes_rtl_suffix_extensions() {
        // tinker-5.0.0-p2.bin: DYNAMIC_LOCATION + PRODUCT_DATA (spec §2.3).
        let bytes = [
            0x02, 0x00, 0x10, 0x00, 0x00, 0x40, 0x5f, 0x08, 0x88, 0x40, 0x5f, 0x08, 0xe8, 0x54,
            0x3f, 0x02, 0x01, 0x00, 0x0a, 0x00, 0xff, 0xff, 0x20, 0x00, 0x04, 0x00,
        ];
        let exts: Vec<_> = Extensions::new(&bytes, 0, bytes.len(), ExtensionArea::Suffix)
            .map(|e| e.unwrap().decode().unwrap())
            .collect();
        assert_eq!(
            exts,
            [
                Extension::DynamicLocation {
                    module_start: 0x085F_4000,
                    dynalib_load: 0x085F_4088,
                    dynalib_start: 0x023F_54E8
                },
                Extension::ProductData {
                    id: 0x0020_FFFF,
                    version: 4
                }
            ]
        );
    }

    #[test]
    fn overrun_is_an_error_not_a_panic() {
        let bytes = [0x11, 0x00, 0xff, 0x00, b'a'];
        let mut it = Extensions::new(&bytes, 0, bytes.len(), ExtensionArea::Prefix);
        assert!(matches!(
            it.next(),
            Some(Err(ExtensionError::Overrun { length: 255, .. }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn prefix_list_must_end_with_end() {
        let bytes = [0x11, 0x00, 0x05, 0x00, b'a'];
        let r = Extensions::new(&bytes, 0, bytes.len(), ExtensionArea::Prefix).validate();
        assert_eq!(r, Err(ExtensionError::Unterminated { offset: 5 }));
        let bytes = [0x11, 0x00, 0x05, 0x00, b'a', 0, 0, 4, 0];
        let r = Extensions::new(&bytes, 0, bytes.len(), ExtensionArea::Prefix).validate();
        assert_eq!(r, Ok(9));
    }
}
