//! Particle-style modular firmware: the module binary format (parse, verify, build, edit,
//! compress, combine, extensions), the platform catalogue, the known Device OS releases,
//! synthetic images of their modules, and the Device OS rules that judge modules on a device
//! ([`rules`]).
//!
//! Assets — asset modules, the assets an application requires, and where a platform stores
//! them — are in [`asset`].
//!
//! Parsing works on byte slices without allocating and never panics: a file is either a
//! [`Module`] whose checks can be read one by one (and which is valid when
//! [`Module::problems`] is empty) or [`NotAModule`] with the reason.
//!
//! ```
//! use modflash_module::{Module, NotAModule};
//! assert_eq!(Module::parse(&[0xA5]).unwrap_err(), NotAModule::TooShort { len: 1 });
//! ```
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod asset;
pub mod checksum;
#[cfg(feature = "alloc")]
pub mod edit;
pub mod extension;
pub mod header;
pub mod parse;
pub mod platform;
pub mod release;
pub mod rules;
pub mod softdevice;
#[cfg(feature = "alloc")]
pub mod synth;

pub use asset::{AssetKind, AssetModule, AssetRef};
pub use extension::{Extension, ExtensionArea, ExtensionError, ExtensionKind, RawExtension};
pub use header::{Dependency, ModuleFlags, ModuleFunction, ModuleInfo, ModuleRef};
pub use parse::{
    chain, CrcCheck, HeaderRule, Module, NotAModule, Problem, Product, RegionCheck, ShaCheck,
    ShaCoverage, SizeCheck, Suffix,
};
pub use platform::{
    platform, platform_by_name, AssetStorage, Family, Layout, ModuleBounds, Platform, Store,
};
