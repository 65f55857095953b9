//! Assets (Device OS 5.5.0 and later): asset modules (function 9), the files an application
//! keeps in the platform's asset store, each named and hashed in its suffix; an application's
//! asset dependencies (ASSET_DEPENDENCY extensions); and, with `alloc`, building and unwrapping
//! asset modules and writing an application's dependencies the way binary-version-reader's
//! `createAssetModule` and `updateModuleAssetDependencies` do.
//!
//! Device OS compares an asset by its name and its hash together (`Asset::operator==`,
//! `system/inc/asset_manager.h`); the hash is the SHA-256 of the asset's own bytes, not of the
//! module that carries them. Whether an application's assets are there is a rule:
//! [`crate::rules::asset_dependency`].

use core::fmt;

use crate::extension::{Extension, ExtensionKind};
use crate::header::{ModuleFlags, ModuleFunction};
use crate::parse::Module;

/// The hash type Device OS defines for assets (`MODULE_INFO_HASH_TYPE_SHA256`).
pub const SHA256: u8 = 0;

/// An asset as Device OS knows it: a name and a hash. What an application requires (one
/// ASSET_DEPENDENCY extension) or what an asset module declares (its NAME and HASH extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssetRef<'a> {
    /// The name, as stored (UTF-8 in every file Particle's tools write).
    pub name: &'a [u8],
    /// The hash type ([`SHA256`]).
    pub hash_type: u8,
    /// The hash of the asset's bytes.
    pub hash: &'a [u8],
}

impl<'a> AssetRef<'a> {
    /// A SHA-256-named asset.
    pub const fn sha256(name: &'a [u8], hash: &'a [u8]) -> Self {
        Self {
            name,
            hash_type: SHA256,
            hash,
        }
    }

    /// The name as text, when it is UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.name).ok()
    }

    /// The name for people: UTF-8, with any invalid bytes shown as U+FFFD.
    pub fn display_name(&self) -> DisplayName<'a> {
        DisplayName(self.name)
    }

    /// The same asset as Device OS compares them: equal names and equal hashes of one type.
    pub fn same_as(&self, other: &AssetRef<'_>) -> bool {
        self.name == other.name && self.hash_type == other.hash_type && self.hash == other.hash
    }

    /// The ASSET_DEPENDENCY payload naming this asset: `u8 hash type, u8 hash length, hash,
    /// name` (spec §1.9). `None` when the hash is longer than 255 bytes.
    #[cfg(feature = "alloc")]
    pub fn dependency_payload(&self) -> Option<alloc::vec::Vec<u8>> {
        let len = u8::try_from(self.hash.len()).ok()?;
        let mut v = alloc::vec::Vec::with_capacity(2 + self.hash.len() + self.name.len());
        v.push(self.hash_type);
        v.push(len);
        v.extend_from_slice(self.hash);
        v.extend_from_slice(self.name);
        Some(v)
    }
}

impl fmt::Display for AssetRef<'_> {
    /// "coproc.bin (sha256 0c4b49e0…)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.display_name())?;
        if self.hash_type == SHA256 {
            f.write_str("sha256 ")?;
        } else {
            write!(f, "hash type {} ", self.hash_type)?;
        }
        for b in self.hash.iter().take(4) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("\u{2026})")
    }
}

/// An asset name for `Display`: UTF-8, invalid bytes replaced.
#[derive(Clone, Copy, Debug)]
pub struct DisplayName<'a>(&'a [u8]);

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// What kind of asset a module holds (the ASSET_TYPE extension; absent means
/// [`AssetKind::Default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// 0: a file for the application (co-processor firmware, sounds, ...).
    Default,
    /// 1: environment variables set by the application's bundle.
    EnvVarsApp,
    /// 2: a snapshot of environment variables from the cloud.
    EnvVarsSnapshot,
    /// Any other value.
    Other(u8),
}

impl AssetKind {
    /// Decodes the ASSET_TYPE byte.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Default,
            1 => Self::EnvVarsApp,
            2 => Self::EnvVarsSnapshot,
            other => Self::Other(other),
        }
    }

    /// The ASSET_TYPE byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Default => 0,
            Self::EnvVarsApp => 1,
            Self::EnvVarsSnapshot => 2,
            Self::Other(v) => v,
        }
    }

    /// Stable lower-case name for JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::EnvVarsApp => "env_vars_app",
            Self::EnvVarsSnapshot => "env_vars_snapshot",
            Self::Other(_) => "other",
        }
    }
}

/// What an asset module says about the asset it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetModule<'a> {
    /// Its name and the hash of its bytes.
    pub asset: AssetRef<'a>,
    /// Its kind.
    pub kind: AssetKind,
    /// The size of the asset's own bytes (inflated, when the module is compressed).
    pub data_size: usize,
}

impl<'a> Module<'a> {
    /// The assets this module requires, in the order its extensions list them (prefix
    /// extensions first). A malformed extension list ends the walk; the parser reports it as
    /// a problem of the module.
    pub fn asset_dependencies(&self) -> impl Iterator<Item = AssetRef<'a>> + 'a {
        self.prefix_extensions()
            .chain(self.suffix_extensions())
            .map_while(Result::ok)
            .filter_map(|e| match e.decode() {
                Ok(Extension::AssetDependency {
                    hash_type,
                    hash,
                    name,
                }) => Some(AssetRef {
                    name,
                    hash_type,
                    hash,
                }),
                _ => None,
            })
    }

    /// The asset this module carries, when it is an asset module naming one (function 9 with
    /// NAME and HASH extensions).
    pub fn asset(&self) -> Option<AssetModule<'a>> {
        if self.info.function != ModuleFunction::Asset {
            return None;
        }
        let (mut name, mut hash, mut kind) = (None, None, AssetKind::Default);
        for e in self.suffix_extensions().map_while(Result::ok) {
            match e.decode() {
                Ok(Extension::Name(n)) => name = name.or(Some(n)),
                Ok(Extension::Hash { hash_type, hash: h }) => hash = hash.or(Some((hash_type, h))),
                Ok(Extension::AssetType(t)) => kind = AssetKind::from_u8(t),
                _ => {}
            }
        }
        let (hash_type, hash) = hash?;
        let data_size = match self.compression {
            Some(c) if self.info.flags.contains(ModuleFlags::COMPRESSED) => {
                c.original_size as usize
            }
            _ => self.suffix.ok()?.offset.saturating_sub(self.payload_offset),
        };
        Some(AssetModule {
            asset: AssetRef {
                name: name?,
                hash_type,
                hash,
            },
            kind,
            data_size,
        })
    }
}

/// The extension kinds an asset module's suffix carries, in binary-version-reader's order.
pub const ASSET_SUFFIX_EXTENSIONS: [ExtensionKind; 4] = [
    ExtensionKind::Hash,
    ExtensionKind::Name,
    ExtensionKind::AssetType,
    ExtensionKind::ProductData,
];

#[cfg(feature = "alloc")]
pub use build::{asset_module, protect, set_asset_dependencies, unwrap_asset};

#[cfg(feature = "alloc")]
mod build {
    use alloc::vec::Vec;

    use super::{AssetKind, AssetRef, SHA256};
    use crate::checksum::sha256;
    use crate::edit::{
        compress, decompress, encode_extension, replace_extensions, EditError, ModuleBuilder,
    };
    use crate::extension::ExtensionKind;
    use crate::header::{ModuleFlags, ModuleFunction};
    use crate::parse::Module;

    /// Wraps `data` in an asset module named `name`, as binary-version-reader's
    /// `createAssetModule` does: platform 0, start address 0, DROP_MODULE_INFO, suffix
    /// extensions HASH (SHA-256 of `data`), NAME, ASSET_TYPE (unless the default), and
    /// PRODUCT_DATA 0xFFFF; raw-Deflate compressed when `compressed`. Uncompressed, the result
    /// is byte for byte binary-version-reader's; compressed, its deflate stream may differ (it
    /// inflates to the same bytes).
    pub fn asset_module(
        data: &[u8],
        name: &str,
        kind: AssetKind,
        compressed: bool,
    ) -> Result<Vec<u8>, EditError> {
        let hash = sha256(data);
        let mut hash_payload = Vec::with_capacity(34);
        hash_payload.extend_from_slice(&[SHA256, 32]);
        hash_payload.extend_from_slice(&hash);
        let mut suffix = encode_extension(ExtensionKind::Hash, &hash_payload);
        suffix.extend_from_slice(&encode_extension(ExtensionKind::Name, name.as_bytes()));
        if kind != AssetKind::Default {
            // binary-version-reader writes the type byte and a reserved zero byte.
            suffix.extend_from_slice(&encode_extension(
                ExtensionKind::AssetType,
                &[kind.to_u8(), 0],
            ));
        }
        suffix.extend_from_slice(&encode_extension(ExtensionKind::ProductData, &[0xFF; 6]));
        if suffix.len() + 40 > usize::from(u16::MAX) {
            return Err(EditError::TooLarge);
        }
        let mut b = ModuleBuilder::new(0, ModuleFunction::Asset, 0, 0, 0).payload(data);
        b.info.flags = ModuleFlags(ModuleFlags::DROP_MODULE_INFO);
        b.suffix_extra = suffix;
        let module = b.build()?;
        if compressed {
            compress(&module)
        } else {
            Ok(module)
        }
    }

    /// The asset's own bytes from an asset module (inflated when it is compressed), as
    /// binary-version-reader's `unwrapAssetModule` gives them.
    pub fn unwrap_asset(bytes: &[u8]) -> Result<Vec<u8>, EditError> {
        let m = Module::parse(bytes).map_err(EditError::NotAModule)?;
        if m.info.function != ModuleFunction::Asset {
            return Err(EditError::Unsupported("the module is not an asset module"));
        }
        if !m.info.flags.contains(ModuleFlags::DROP_MODULE_INFO) {
            return Err(EditError::Damaged(
                "an asset module must carry the DROP_MODULE_INFO flag",
            ));
        }
        let inflated;
        let module = if m.info.flags.contains(ModuleFlags::COMPRESSED) {
            inflated = decompress(bytes)?;
            inflated.as_slice()
        } else {
            bytes
        };
        let b = ModuleBuilder::from_bytes(module)?;
        Ok(b.payload)
    }

    /// `app` with exactly `assets` as its asset dependencies (any it listed are replaced), as
    /// binary-version-reader's `updateModuleAssetDependencies` writes them: in the prefix on
    /// platforms whose application grows down from a fixed end (the P2 family; the module's
    /// start moves down, 8-byte aligned, and its DYNAMIC_LOCATION follows), in the suffix
    /// elsewhere. See [`replace_extensions`] for where this output differs from theirs.
    pub fn set_asset_dependencies(
        app: &[u8],
        assets: &[AssetRef<'_>],
    ) -> Result<Vec<u8>, EditError> {
        let m = Module::parse(app).map_err(EditError::NotAModule)?;
        if m.info.function != ModuleFunction::UserPart {
            return Err(EditError::Unsupported(
                "only an application (user part) depends on assets",
            ));
        }
        let payloads = assets
            .iter()
            .map(|a| a.dependency_payload().ok_or(EditError::TooLarge))
            .collect::<Result<Vec<_>, _>>()?;
        replace_extensions(app, ExtensionKind::AssetDependency, &payloads)
    }

    /// `module` with a SECURITY_MODE extension saying "protected" (and `certificate`, when
    /// not empty) in place of any it had: binary-version-reader's `createProtectedModule`,
    /// which particle-cli applies to the bootloader it writes to a protected device.
    pub fn protect(module: &[u8], certificate: &[u8]) -> Result<Vec<u8>, EditError> {
        let mut payload = Vec::with_capacity(1 + certificate.len());
        payload.push(crate::rules::SECURITY_MODE_PROTECTED);
        payload.extend_from_slice(certificate);
        replace_extensions(module, ExtensionKind::SecurityMode, &[payload])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::sha256;
    use crate::edit::ModuleBuilder;
    use crate::header::Dependency;
    use std::{vec, vec::Vec};

    const DATA: &[u8] = b"co-processor firmware image\n";

    #[test]
    fn an_asset_module_names_and_hashes_its_bytes() {
        for compressed in [false, true] {
            let bytes = asset_module(DATA, "coproc.bin", AssetKind::Default, compressed).unwrap();
            let m = Module::parse(&bytes).unwrap();
            assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
            let a = m.asset().unwrap();
            assert_eq!(a.asset.name, b"coproc.bin");
            assert_eq!(a.asset.hash, sha256(DATA));
            assert_eq!((a.kind, a.data_size), (AssetKind::Default, DATA.len()));
            assert_eq!(unwrap_asset(&bytes).unwrap(), DATA);
        }
        let env = asset_module(b"", "env-vars", AssetKind::EnvVarsApp, false).unwrap();
        let m = Module::parse(&env).unwrap();
        assert_eq!(m.asset().unwrap().kind, AssetKind::EnvVarsApp);
    }

    #[test]
    fn dependencies_are_replaced_not_added() {
        let app = ModuleBuilder::new(12, ModuleFunction::UserPart, 1, 6, 0xD4000)
            .dependency(0, Dependency::new(ModuleFunction::SystemPart, 1, 5501))
            .payload(vec![0x5A; 600])
            .build()
            .unwrap();
        let h1 = sha256(b"one");
        let h2 = sha256(b"two");
        let first = set_asset_dependencies(&app, &[AssetRef::sha256(b"a.bin", &h1)]).unwrap();
        let second = set_asset_dependencies(
            &first,
            &[
                AssetRef::sha256(b"a.bin", &h2),
                AssetRef::sha256(b"b.bin", &h1),
            ],
        )
        .unwrap();
        let m = Module::parse(&second).unwrap();
        assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
        let deps: Vec<_> = m.asset_dependencies().map(|a| (a.name, a.hash)).collect();
        assert_eq!(deps, [(&b"a.bin"[..], &h2[..]), (&b"b.bin"[..], &h1[..])]);
        assert_eq!(m.product(), Module::parse(&app).unwrap().product());
    }

    #[test]
    fn asset_names_display_lossily() {
        let hash = [0xAB; 32];
        let a = AssetRef::sha256(b"caf\xC3\xA9\xFF.bin", &hash);
        assert_eq!(
            std::format!("{a}"),
            "caf\u{e9}\u{FFFD}.bin (sha256 abababab\u{2026})"
        );
        assert!(a.name_str().is_none());
    }
}
