//! The device model's one error type: why a virtual device could not be built, provisioned or
//! restored from a snapshot.

use modflash_module::release::platform_releases;
use modflash_module::{ModuleRef, NotAModule, Platform};

use crate::flash::{FlashError, Space};

/// Why building, provisioning or restoring a device failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A snapshot names a platform id the model does not know.
    #[error("unknown platform id {0}")]
    UnknownPlatform(u16),
    /// The platform has no memory map to build its flash from.
    #[error("no memory map is known for the {0}")]
    NoMemoryMap(&'static str),
    /// A Device OS release the platform has no module table for.
    #[error(
        "no module table for Device OS {release} on the {}; known: {}",
        platform.display_name,
        known_releases(platform)
    )]
    UnknownRelease {
        /// The release asked for.
        release: String,
        /// The platform.
        platform: &'static Platform,
    },
    /// The bytes to install are not a module.
    #[error("not a module: {0}")]
    NotAModule(NotAModule),
    /// The platform's memory maps have no region for the module.
    #[error("the {platform} has no region for a {module}")]
    NoRegion {
        /// The platform's display name.
        platform: &'static str,
        /// The module's slot.
        module: ModuleRef,
    },
    /// The platform has no factory-reset slot to write an application to.
    #[error("the {0} has no factory-reset slot")]
    NoFactorySlot(&'static str),
    /// The memory map in force has no application region.
    #[error("the {0} has no user region")]
    NoUserRegion(&'static str),
    /// Writing the flash failed (outside the memory, or an injected power cut).
    #[error(transparent)]
    Flash(#[from] FlashError),
    /// A saved flash image does not fit the platform's memory.
    #[error("{space} flash image: {source}")]
    Image {
        /// Which memory the image is for.
        space: Space,
        /// Why it does not fit.
        source: FlashError,
    },
}

/// "0.4.6, 0.5.2, …": the releases the model has module tables for on `platform`.
fn known_releases(platform: &Platform) -> String {
    platform_releases(platform)
        .map(|r| r.release)
        .collect::<Vec<_>>()
        .join(", ")
}
