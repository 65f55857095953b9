//! Why the bootloader or the system did what it logged: the typed reasons device events carry
//! (a refused copy, an invalid system part, a crash, safe mode, a factory reset).

use std::fmt;

use modflash_module::rules::{NotRunnable, Unmet};
use modflash_module::{ModuleFunction, ModuleRef};
use serde::{Deserialize, Serialize};

use crate::hal::{describe_flags, flags, HeaderFault};

/// Why the bootloader refused to copy a module (`FLASH_CopyMemory`'s checks, spec §5.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyRefusal {
    /// The source address is outside flash.
    SourceOutsideFlash {
        /// The source address.
        source: u32,
    },
    /// The module header at the source is outside flash.
    HeaderOutsideFlash,
    /// The header at the source is invalid, or the module is longer than the slot allows.
    BadHeader {
        /// The function the slot expects.
        function: ModuleFunction,
        /// The source address.
        source: u32,
    },
    /// The module is built for another platform.
    Platform {
        /// The module's platform id.
        found: u16,
        /// The device's.
        expected: u16,
    },
    /// The module is not of the function the slot expects.
    Function {
        /// The module's function.
        found: ModuleFunction,
        /// The slot's.
        expected: ModuleFunction,
    },
    /// The module does not start at the copy's destination.
    Destination {
        /// The module's start address.
        start: u32,
        /// The destination.
        destination: u32,
    },
    /// The module's CRC does not match.
    Crc,
    /// A compressed module does not inflate.
    Inflate {
        /// Why, in words.
        reason: String,
    },
}

impl fmt::Display for CopyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SourceOutsideFlash { source } => {
                write!(f, "source {source:#010x} is outside flash")
            }
            Self::HeaderOutsideFlash => f.write_str("the source header is outside flash"),
            Self::BadHeader { function, source } => write!(
                f,
                "the {} header at {source:#010x} is invalid or longer than the slot",
                function.describe()
            ),
            Self::Platform { found, expected } => {
                write!(f, "platform {found}, expected {expected}")
            }
            Self::Function { found, expected } => write!(
                f,
                "it is a {}, the slot expects a {}",
                found.describe(),
                expected.describe()
            ),
            Self::Destination { start, destination } => write!(
                f,
                "it starts at {start:#010x}, the destination is {destination:#010x}"
            ),
            Self::Crc => f.write_str("its CRC does not match"),
            Self::Inflate { reason } => write!(f, "cannot inflate: {reason}"),
        }
    }
}

/// Why the bootloader does not jump into the system firmware (`is_application_valid` on
/// system part 1 or the monolithic firmware).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemFault {
    /// The memory map has no system region.
    NoRegion,
    /// The system region cannot be read.
    Unreadable,
    /// The header found there is not this slot's module for this device.
    ForeignHeader {
        /// The region's start.
        address: u32,
        /// The slot the region holds.
        module: ModuleRef,
    },
    /// The module ends outside its region.
    OutOfRegion(ModuleRef),
    /// The module's CRC does not match (checked on Gen3 and later).
    Crc(ModuleRef),
}

impl fmt::Display for SystemFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRegion => f.write_str("no system region"),
            Self::Unreadable => f.write_str("the system region is unreadable"),
            Self::ForeignHeader { address, module } => write!(
                f,
                "the header at {address:#010x} is not a {module} for this device"
            ),
            Self::OutOfRegion(module) => write!(f, "the {module} ends outside its region"),
            Self::Crc(module) => write!(f, "the {module} fails its CRC check"),
        }
    }
}

/// A system that cannot start, and who resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// Why it cannot start.
    pub cause: CrashCause,
    /// The watchdog resets the device (and counts the failed start); otherwise the panic
    /// handler does.
    pub watchdog: bool,
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.watchdog {
            write!(f, "{}; the watchdog resets the device", self.cause)
        } else {
            write!(f, "{}; the device resets", self.cause)
        }
    }
}

/// Why the system firmware cannot start ([`NotRunnable`], with the region named by its slot
/// and address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashCause {
    /// A system-part region holds no module.
    Missing(ModuleRef),
    /// A system-part region holds another slot's module.
    Other {
        /// The region's slot.
        module: ModuleRef,
        /// The region's start.
        address: u32,
        /// The slot its header names.
        found: ModuleRef,
    },
    /// A system part fails a check the start depends on.
    Corrupt {
        /// The region's slot.
        module: ModuleRef,
        /// The region's start.
        address: u32,
        /// It is built for another platform.
        platform: bool,
        /// Its CRC does not match.
        integrity: bool,
    },
}

impl From<NotRunnable> for CrashCause {
    fn from(why: NotRunnable) -> Self {
        match why {
            NotRunnable::Missing(region) => Self::Missing(region.slot()),
            NotRunnable::Other { region, found } => Self::Other {
                module: region.slot(),
                address: region.start,
                found,
            },
            NotRunnable::Corrupt {
                region,
                platform,
                integrity,
            } => Self::Corrupt {
                module: region.slot(),
                address: region.start,
                platform,
                integrity,
            },
        }
    }
}

impl fmt::Display for CrashCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(module) => write!(f, "the {module} is missing"),
            Self::Other {
                module,
                address,
                found,
            } => write!(
                f,
                "the {module} at {address:#010x} is corrupt (it holds a {found})"
            ),
            Self::Corrupt {
                module,
                address,
                platform,
                integrity,
            } => {
                let failed = if *platform { flags::PLATFORM } else { 0 }
                    | if *integrity { flags::INTEGRITY } else { 0 };
                write!(
                    f,
                    "the {module} at {address:#010x} is corrupt ({} failed)",
                    describe_flags(failed)
                )
            }
        }
    }
}

/// Why the system runs in safe mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeModeCause {
    /// Safe mode was requested (DR1, or the button held 1 s).
    Requested,
    /// A module's dependency is not met: the bootloader's or last system part's
    /// (`HAL_Core_Validate_Modules`), or the application's.
    Unmet(Unmet),
    /// The bootloader or last system part fails checks other than its dependencies.
    ModuleFailed {
        /// Its slot.
        module: ModuleRef,
        /// The validation flags ([`flags`]) it failed.
        checks: u8,
    },
    /// The application's CRC does not match.
    AppIntegrity,
    /// The application fails other checks.
    AppFailed {
        /// The validation flags ([`flags`]) it failed.
        checks: u8,
    },
    /// The user part's header is invalid and there is no factory application to restore.
    AppHeader(InvalidUserPart),
    /// Assets the application requires are not in the asset store (`missingAssets`,
    /// Device OS 5.5.0 and later): each as "name (sha256 abcd…)".
    MissingAssets(Vec<String>),
}

impl fmt::Display for SafeModeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("requested at boot"),
            Self::Unmet(unmet) => unmet.fmt(f),
            Self::ModuleFailed { module, checks } => {
                write!(f, "the {module} failed {}", describe_flags(*checks))
            }
            Self::AppIntegrity => f.write_str("the application fails its CRC check"),
            Self::AppFailed { checks } => {
                write!(f, "the application failed {}", describe_flags(*checks))
            }
            Self::AppHeader(invalid) => invalid.fmt(f),
            Self::MissingAssets(assets) => write!(
                f,
                "the application's assets are missing: {}",
                assets.join(", ")
            ),
        }
    }
}

/// Why the system asks for the factory application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactoryResetCause {
    /// The user part is erased.
    UserPartEmpty,
    /// The user part's header is invalid.
    AppHeader(InvalidUserPart),
}

impl fmt::Display for FactoryResetCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserPartEmpty => f.write_str("the user part is empty"),
            Self::AppHeader(invalid) => invalid.fmt(f),
        }
    }
}

/// A user part whose header the system rejects, and what the slot holds instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidUserPart {
    /// What is wrong with the header.
    pub fault: HeaderFault,
    /// The module the slot holds, when its bytes parse as one (a Core image, say).
    pub holds: Option<SlotContent>,
}

impl fmt::Display for InvalidUserPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the user part header is invalid ({})", self.fault)?;
        match &self.holds {
            Some(content) => write!(f, "; the slot holds a {content}"),
            None => Ok(()),
        }
    }
}

/// A module found where another was expected: "Core image (platform 0, monolithic firmware)".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotContent {
    /// Its platform id.
    pub platform_id: u16,
    /// Its function.
    pub function: ModuleFunction,
}

impl fmt::Display for SlotContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} image (platform {}, {})",
            modflash_module::platform(self.platform_id).map_or("foreign", |p| p.display_name),
            self.platform_id,
            self.function.describe()
        )
    }
}
