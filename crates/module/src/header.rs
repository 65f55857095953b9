//! The 24-byte `module_info_t` prefix, module functions, flags and dependencies.

use core::fmt;

/// What a module is for (`module_function_t`), with a catch-all for values Device OS never used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ModuleFunction {
    /// 0: no module / no dependency.
    None,
    /// 1: a resource (module info and CRC are not part of the resource).
    Resource,
    /// 2: a bootloader.
    Bootloader,
    /// 3: monolithic firmware (system and application in one image).
    MonoFirmware,
    /// 4: a system part.
    SystemPart,
    /// 5: a user part (the application).
    UserPart,
    /// 6: settings (never used).
    Settings,
    /// 7: network co-processor firmware.
    NcpFirmware,
    /// 8: the Nordic SoftDevice radio stack.
    RadioStack,
    /// 9: an asset.
    Asset,
    /// Any other value.
    Unknown(u8),
}

impl ModuleFunction {
    /// Every known function, in numeric order.
    pub const KNOWN: [ModuleFunction; 10] = [
        Self::None,
        Self::Resource,
        Self::Bootloader,
        Self::MonoFirmware,
        Self::SystemPart,
        Self::UserPart,
        Self::Settings,
        Self::NcpFirmware,
        Self::RadioStack,
        Self::Asset,
    ];

    /// Decodes the byte stored in a module header.
    pub const fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::None,
            1 => Self::Resource,
            2 => Self::Bootloader,
            3 => Self::MonoFirmware,
            4 => Self::SystemPart,
            5 => Self::UserPart,
            6 => Self::Settings,
            7 => Self::NcpFirmware,
            8 => Self::RadioStack,
            9 => Self::Asset,
            other => Self::Unknown(other),
        }
    }

    /// The byte stored in a module header.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Resource => 1,
            Self::Bootloader => 2,
            Self::MonoFirmware => 3,
            Self::SystemPart => 4,
            Self::UserPart => 5,
            Self::Settings => 6,
            Self::NcpFirmware => 7,
            Self::RadioStack => 8,
            Self::Asset => 9,
            Self::Unknown(other) => other,
        }
    }

    /// True for the values Device OS defines.
    pub const fn is_known(self) -> bool {
        !matches!(self, Self::Unknown(_))
    }

    /// The stable lower-case name used in JSON output (`"system"`, `"user"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Resource => "resource",
            Self::Bootloader => "bootloader",
            Self::MonoFirmware => "mono",
            Self::SystemPart => "system",
            Self::UserPart => "user",
            Self::Settings => "settings",
            Self::NcpFirmware => "ncp",
            Self::RadioStack => "radio",
            Self::Asset => "asset",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Parses a JSON name produced by [`ModuleFunction::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|f| f.name() == name)
    }

    /// The one-character code Device OS uses in its describe JSON (`"f":"s"`).
    pub const fn code(self) -> char {
        match self {
            Self::None => 'n',
            Self::Resource => 'r',
            Self::Bootloader => 'b',
            Self::MonoFirmware => 'm',
            Self::SystemPart => 's',
            Self::UserPart => 'u',
            Self::Settings => '_',
            Self::NcpFirmware => 'c',
            Self::RadioStack => 'a',
            Self::Asset => 't',
            Self::Unknown(_) => '?',
        }
    }

    /// Parses a describe-JSON function code.
    pub fn from_code(code: char) -> Option<Self> {
        Self::KNOWN.into_iter().find(|f| f.code() == code)
    }

    /// Words for people: "system part", "user part", "bootloader", ...
    pub const fn describe(self) -> &'static str {
        match self {
            Self::None => "no module",
            Self::Resource => "resource",
            Self::Bootloader => "bootloader",
            Self::MonoFirmware => "monolithic firmware",
            Self::SystemPart => "system part",
            Self::UserPart => "user part",
            Self::Settings => "settings module",
            Self::NcpFirmware => "NCP firmware",
            Self::RadioStack => "radio stack",
            Self::Asset => "asset",
            Self::Unknown(_) => "unknown module",
        }
    }
}

/// Module flags (`module_info_flags_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ModuleFlags(pub u8);

impl ModuleFlags {
    /// Strip the 24-byte prefix when copying to the target address (SoftDevice).
    pub const DROP_MODULE_INFO: u8 = 0x01;
    /// The payload after the prefix is raw-Deflate compressed.
    pub const COMPRESSED: u8 = 0x02;
    /// Another complete module follows this module's CRC.
    pub const COMBINED: u8 = 0x04;
    /// The payload is encrypted.
    pub const ENCRYPTED: u8 = 0x08;
    /// Extensions follow the 24-byte prefix.
    pub const PREFIX_EXTENSIONS: u8 = 0x10;
    /// All bits Device OS defines.
    pub const KNOWN: u8 = 0x1F;

    /// True when every bit of `mask` is set.
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// Returns the flags with `mask` set or cleared.
    pub const fn with(self, mask: u8, on: bool) -> Self {
        if on {
            Self(self.0 | mask)
        } else {
            Self(self.0 & !mask)
        }
    }

    /// Names of the set flags, for people and JSON.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [(u8, &str); 5] = [
            (ModuleFlags::DROP_MODULE_INFO, "drop_module_info"),
            (ModuleFlags::COMPRESSED, "compressed"),
            (ModuleFlags::COMBINED, "combined"),
            (ModuleFlags::ENCRYPTED, "encrypted"),
            (ModuleFlags::PREFIX_EXTENSIONS, "prefix_extensions"),
        ];
        NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }
}

/// A module dependency (`module_dependency_t`): the named module must have at least `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Dependency {
    /// Function of the required module; [`ModuleFunction::None`] means "no dependency".
    pub function: ModuleFunction,
    /// Index of the required module.
    pub index: u8,
    /// Minimum required module version.
    pub version: u16,
}

impl Dependency {
    /// The empty dependency (all zero).
    pub const NONE: Dependency = Dependency {
        function: ModuleFunction::None,
        index: 0,
        version: 0,
    };

    /// A dependency on `function` number `index` at `version` or later.
    pub const fn new(function: ModuleFunction, index: u8, version: u16) -> Self {
        Self {
            function,
            index,
            version,
        }
    }

    /// True when this slot names no module.
    pub const fn is_none(&self) -> bool {
        matches!(self.function, ModuleFunction::None)
    }

    fn from_bytes(b: [u8; 4]) -> Self {
        Self {
            function: ModuleFunction::from_u8(b[0]),
            index: b[1],
            version: u16::from_le_bytes([b[2], b[3]]),
        }
    }

    fn to_bytes(self) -> [u8; 4] {
        let v = self.version.to_le_bytes();
        [self.function.to_u8(), self.index, v[0], v[1]]
    }
}

impl fmt::Display for Dependency {
    /// "system part 2 ≥ 1502" style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ModuleRef::new(self.function, self.index))?;
        write!(f, " \u{2265} {}", self.version)
    }
}

/// A (function, index) pair that names a module slot, printed as "system part 2".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModuleRef {
    /// The module function.
    pub function: ModuleFunction,
    /// The module index.
    pub index: u8,
}

impl ModuleRef {
    /// Names the module `function` number `index`.
    pub const fn new(function: ModuleFunction, index: u8) -> Self {
        Self { function, index }
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.function {
            // Bootloaders, mono firmware and radio stacks are index 0: the number adds nothing.
            ModuleFunction::Bootloader
            | ModuleFunction::MonoFirmware
            | ModuleFunction::RadioStack
                if self.index == 0 =>
            {
                f.write_str(self.function.describe())
            }
            ModuleFunction::Unknown(v) => write!(f, "unknown module (function {v}) {}", self.index),
            other => write!(f, "{} {}", other.describe(), self.index),
        }
    }
}

/// The 24-byte module header (`module_info_t`), decoded exactly. All integers are little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleInfo {
    /// Flash address of the module's first byte (the vector table if any, not the header).
    pub start_address: u32,
    /// Address just past the suffix, where the CRC begins.
    pub end_address: u32,
    /// Gen2: reserved (0). Gen3/Gen4: the MCU target (0 main MCU, 0xFF any, NCP id otherwise).
    pub mcu_target: u8,
    /// Module flags.
    pub flags: ModuleFlags,
    /// Module version (an integer bumped per release, not semver).
    pub version: u16,
    /// Platform id (6 = Photon, ...).
    pub platform_id: u16,
    /// Module function.
    pub function: ModuleFunction,
    /// Module index.
    pub index: u8,
    /// The two dependency slots, in header order.
    pub dependencies: [Dependency; 2],
}

impl ModuleInfo {
    /// Size of the header in bytes.
    pub const SIZE: usize = 24;

    /// Decodes a header from exactly 24 bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Self {
            start_address: u32_at(0),
            end_address: u32_at(4),
            mcu_target: b[8],
            flags: ModuleFlags(b[9]),
            version: u16_at(10),
            platform_id: u16_at(12),
            function: ModuleFunction::from_u8(b[14]),
            index: b[15],
            dependencies: [
                Dependency::from_bytes([b[16], b[17], b[18], b[19]]),
                Dependency::from_bytes([b[20], b[21], b[22], b[23]]),
            ],
        }
    }

    /// Decodes the header at `offset` of `bytes`, if 24 bytes are there.
    pub fn read(bytes: &[u8], offset: usize) -> Option<Self> {
        let raw = bytes.get(offset..offset.checked_add(Self::SIZE)?)?;
        let raw: &[u8; Self::SIZE] = raw.try_into().ok()?;
        Some(Self::from_bytes(raw))
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.start_address.to_le_bytes());
        b[4..8].copy_from_slice(&self.end_address.to_le_bytes());
        b[8] = self.mcu_target;
        b[9] = self.flags.0;
        b[10..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..14].copy_from_slice(&self.platform_id.to_le_bytes());
        b[14] = self.function.to_u8();
        b[15] = self.index;
        b[16..20].copy_from_slice(&self.dependencies[0].to_bytes());
        b[20..24].copy_from_slice(&self.dependencies[1].to_bytes());
        b
    }

    /// `end − start`: the bytes covered by the CRC, or `None` when end < start.
    pub const fn module_length(&self) -> Option<u32> {
        self.end_address.checked_sub(self.start_address)
    }

    /// The length of the whole module file, `end − start + 4`, or `None` when end < start.
    pub fn file_length(&self) -> Option<usize> {
        let len = self.module_length()?.checked_add(4)?;
        usize::try_from(len).ok()
    }

    /// The (function, index) slot this module occupies.
    pub const fn slot(&self) -> ModuleRef {
        ModuleRef::new(self.function, self.index)
    }

    /// The non-empty dependency slots (both are listed by Device OS ≥ 2.x).
    pub fn listed_dependencies(&self) -> impl Iterator<Item = Dependency> + '_ {
        self.dependencies.iter().copied().filter(|d| !d.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_photon_part1_bytes() {
        // photon-system-part1@1.5.0.bin at 0x184 (spec §11).
        let raw: [u8; 24] = [
            0x00, 0x00, 0x02, 0x08, 0x44, 0xa3, 0x05, 0x08, 0x00, 0x00, 0xde, 0x05, 0x06, 0x00,
            0x04, 0x01, 0x04, 0x02, 0xcf, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let info = ModuleInfo::from_bytes(&raw);
        assert_eq!(info.start_address, 0x0802_0000);
        assert_eq!(info.end_address, 0x0805_a344);
        assert_eq!(info.version, 1502);
        assert_eq!(info.platform_id, 6);
        assert_eq!(info.function, ModuleFunction::SystemPart);
        assert_eq!(info.index, 1);
        assert_eq!(
            info.dependencies[0],
            Dependency::new(ModuleFunction::SystemPart, 2, 207)
        );
        assert!(info.dependencies[1].is_none());
        assert_eq!(info.to_bytes(), raw);
    }

    #[test]
    fn function_codes_and_names_round_trip() {
        for f in ModuleFunction::KNOWN {
            assert_eq!(ModuleFunction::from_u8(f.to_u8()), f);
            assert_eq!(ModuleFunction::from_name(f.name()), Some(f));
            assert_eq!(ModuleFunction::from_code(f.code()), Some(f));
        }
        assert_eq!(ModuleFunction::from_u8(200), ModuleFunction::Unknown(200));
        assert!(!ModuleFunction::Unknown(10).is_known());
    }

    #[test]
    fn listed_dependencies_skip_empty_fields() {
        let mut info = ModuleInfo::from_bytes(&[0; 24]);
        info.dependencies[1] = Dependency::new(ModuleFunction::Bootloader, 0, 400);
        assert_eq!(info.listed_dependencies().count(), 1);
        info.dependencies[0] = Dependency::new(ModuleFunction::SystemPart, 1, 1502);
        assert_eq!(info.listed_dependencies().count(), 2);
    }
}
