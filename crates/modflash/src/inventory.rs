//! What is installed on a device, in one shape whatever the source: the serial `s` JSON, a
//! describe JSON file, module headers read back over DFU, the module table a device sends
//! over USB control requests (GetModuleInfo), or a virtual device.

use modflash_control::proto::ModuleEntry;
use modflash_device::hal::{flags, Fetched};
use modflash_device::Device;
use modflash_module::platform::{platform, Platform, Store};
use modflash_module::rules::{Header, Installed, Part};
use modflash_module::{Dependency, ModuleFunction, ModuleRef};
use serde::{Deserialize, Serialize};

use crate::describe::{words_list, Describe, PlatformHints};

/// Which checks a module passed, as the device reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// CRC-32 verified (or not checked).
    pub integrity: bool,
    /// The CRC-32 was computed (`integrity` is a verdict, not the default for a check not
    /// made): what a write's proof by the device's own check needs. Not part of the JSON
    /// shape, which reports checks not made as passed.
    #[serde(skip)]
    pub integrity_checked: bool,
    /// End address within its region.
    pub range: bool,
    /// Built for this platform.
    pub platform: bool,
    /// Its dependencies are met.
    pub dependencies: bool,
}

impl Checks {
    /// From `validity_checked` / `validity_result` (a check not attempted counts as passed).
    pub fn from_validity(checked: u8, passed: u8) -> Self {
        let ok = |bit: u8| checked & bit == 0 || passed & bit != 0;
        Self {
            integrity: ok(flags::INTEGRITY),
            integrity_checked: checked & flags::INTEGRITY != 0,
            range: ok(flags::RANGE),
            platform: ok(flags::PLATFORM),
            dependencies: ok(flags::DEPENDENCIES),
        }
    }

    /// Every check passed.
    pub fn all(&self) -> bool {
        self.integrity && self.range && self.platform && self.dependencies
    }
}

/// A dependency in JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyJson {
    /// Function name (`"system"`).
    pub function: String,
    /// Index.
    pub index: u8,
    /// Minimum version.
    pub version: u16,
}

/// One installed module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledModule {
    /// Function name: none, resource, bootloader, mono, system, user, settings, ncp, radio, asset.
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// Region kind: main, factory, backup, scratchpad.
    pub store: String,
    /// Largest module the region holds.
    pub max_size: u32,
    /// Start address when known (not in the describe JSON).
    pub start_address: Option<u32>,
    /// Dependencies as the header lists them.
    pub dependencies: Vec<DependencyJson>,
    /// Check results.
    pub checks: Checks,
    /// SHA-256 from the suffix, lower-case hex (the describe JSON carries it for user parts).
    pub sha256: Option<String>,
}

impl InstalledModule {
    /// The module's function.
    pub fn function(&self) -> ModuleFunction {
        ModuleFunction::from_name(&self.function).unwrap_or(ModuleFunction::Unknown(0xFF))
    }

    /// The (function, index) slot.
    pub fn slot(&self) -> ModuleRef {
        ModuleRef::new(self.function(), self.index)
    }

    /// Dependencies as typed values.
    pub fn deps(&self) -> impl Iterator<Item = Dependency> + '_ {
        self.dependencies.iter().filter_map(|d| {
            Some(Dependency::new(
                ModuleFunction::from_name(&d.function)?,
                d.index,
                d.version,
            ))
        })
    }

    /// True for the running copy (not a factory image or backup).
    pub fn is_main(&self) -> bool {
        self.store == Store::Main.name()
    }
}

/// Everything installed on one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Platform id.
    pub platform_id: u16,
    /// Modules in the order the device lists them.
    pub modules: Vec<InstalledModule>,
}

/// Why a describe JSON could not be read, or its platform not settled.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InventoryError {
    /// Not JSON.
    #[error("the describe data is not JSON: {0}")]
    #[diagnostic(code(modflash::inventory::not_json))]
    NotJson(#[from] serde_json::Error),
    /// JSON, but not a describe document.
    #[error("the describe data has no {0}")]
    #[diagnostic(code(modflash::inventory::incomplete))]
    Missing(&'static str),
    /// Fields of the wrong kind or out of range, each with where it is (`m[3].v is -5, …`).
    #[error("the describe data is malformed: {}", .0.join("; "))]
    #[diagnostic(
        code(modflash::inventory::malformed),
        help("a describe document is the JSON a device prints for `s`: read it from the device again")
    )]
    Malformed(Vec<String>),
    /// The platform given is not the one the document names.
    #[error("the describe data is for platform {reported}, but --platform names the {given}")]
    #[diagnostic(
        code(modflash::inventory::platform_conflict),
        help("drop --platform: the document names its platform")
    )]
    PlatformConflict {
        /// The document's `"p"`.
        reported: u16,
        /// The platform given.
        given: &'static str,
    },
    /// The module table does not fit the platform named.
    #[error("the module table of the describe data does not fit the memory map of the {platform} ({how})")]
    #[diagnostic(
        code(modflash::inventory::platform_mismatch),
        help("name the device's own platform with --platform NAME")
    )]
    PlatformMismatch {
        /// The platform named.
        platform: &'static str,
        /// Who named it.
        how: String,
    },
    /// No platform id, and the module table fits no platform.
    #[error("the describe data has no platform id (\"p\") and its module table fits no platform modflash knows")]
    #[diagnostic(
        code(modflash::inventory::no_platform),
        help("name the device's platform with --platform NAME")
    )]
    NoPlatformFits,
    /// No platform id, and the module table fits several platforms.
    #[error("the describe data has no platform id (\"p\") and its module table fits {}: name it with {}", words_list(fits), names.iter().map(|n| format!("--platform {n}")).collect::<Vec<_>>().join(" or "))]
    #[diagnostic(code(modflash::inventory::ambiguous_platform))]
    AmbiguousPlatform {
        /// Display names of the platforms it fits.
        fits: Vec<&'static str>,
        /// Their names for --platform.
        names: Vec<&'static str>,
    },
}

impl Inventory {
    /// From the HAL's view of a virtual device.
    pub fn from_device(device: &Device) -> Self {
        Self {
            platform_id: device.platform().id,
            modules: device
                .system_info()
                .iter()
                .filter_map(module_from_fetched)
                .collect(),
        }
    }

    /// From a virtual device of which only the module headers and suffixes are known (the
    /// bodies were not read): the HAL's view without the CRC check, which counts as not made
    /// (as in a module table that does not check integrity). Every other check is the HAL's.
    pub fn from_headers(device: &Device) -> Self {
        let hal = device.hal();
        Self {
            platform_id: device.platform().id,
            modules: device
                .layout()
                .bounds
                .iter()
                .map(|b| hal.fetch(b, false, 0))
                .filter_map(|f| module_from_fetched(&f))
                .collect(),
        }
    }

    /// From a describe JSON (`s` output, `particle serial inspect`, cloud describe), accepting
    /// both the 0.x format (`"_":""`) and the 2.x one; every field is checked
    /// ([`Describe::parse`]), and a document without a platform id gets the one its module
    /// table fits, if only one ([`Describe::settle`]).
    pub fn from_describe(text: &str) -> Result<Self, InventoryError> {
        Ok(Describe::parse(text)?
            .settle(&PlatformHints::default())?
            .inventory)
    }

    /// From the module table a device sends over USB control requests (GetModuleInfo, either
    /// format). The old format (Device OS before 5.6.0) lists the running modules only, without
    /// their SHA-256 or their region's size (taken from the platform's memory map for the
    /// system version listed), and checks only integrity and dependencies (the other checks
    /// count as passed, as the device's own flags say "not checked"). A zero hash (the radio
    /// stack's, which has no suffix) is no hash.
    pub fn from_module_info(platform: &Platform, entries: &[ModuleEntry]) -> Self {
        let system = entries
            .iter()
            .find(|e| {
                e.store == 0
                    && ModuleFunction::from_u8(e.function) == ModuleFunction::SystemPart
                    && e.index == 1
            })
            .map(|e| e.version);
        let layout = platform.layout_for(system);
        let stores = [
            Store::Main,
            Store::Factory,
            Store::Backup,
            Store::Scratchpad,
        ];
        let modules = entries
            .iter()
            .filter_map(|e| {
                let function = ModuleFunction::from_u8(e.function);
                if function == ModuleFunction::None {
                    return None;
                }
                let store = *stores.get(usize::try_from(e.store).ok()?)?;
                let slot = ModuleRef::new(function, e.index);
                let max_size = e.max_size.unwrap_or_else(|| {
                    layout
                        .and_then(|l| {
                            l.bounds
                                .iter()
                                .find(|b| b.slot() == slot && b.store == store)
                        })
                        .map_or(0, |b| b.max_size)
                });
                Some(InstalledModule {
                    function: function.name().to_string(),
                    index: e.index,
                    version: e.version,
                    store: store.name().to_string(),
                    max_size,
                    start_address: None,
                    dependencies: e
                        .dependencies
                        .iter()
                        .filter(|&&(f, _, _)| f != 0)
                        .map(|&(f, index, version)| DependencyJson {
                            function: ModuleFunction::from_u8(f).name().to_string(),
                            index,
                            version,
                        })
                        .collect(),
                    checks: Checks::from_validity(
                        u8::try_from(e.checked & 0xFF).unwrap_or(0),
                        u8::try_from(e.passed & 0xFF).unwrap_or(0),
                    ),
                    sha256: e
                        .hash
                        .as_deref()
                        .filter(|h| h.len() == 32 && h.iter().any(|&b| b != 0))
                        .map(hex::encode),
                })
            })
            .collect();
        Self {
            platform_id: platform.id,
            modules,
        }
    }

    /// The running module in `slot`, if installed.
    pub fn main_module(&self, slot: ModuleRef) -> Option<&InstalledModule> {
        self.modules
            .iter()
            .find(|m| m.is_main() && m.slot() == slot)
    }

    /// The installed system-part version (part 1 on every platform).
    pub fn system_version(&self) -> Option<u16> {
        self.main_module(ModuleRef::new(ModuleFunction::SystemPart, 1))
            .map(|m| m.version)
    }
}

/// What a device reports, for the rules. The memory map is the one the platform's known maps
/// give for the installed system version; a region the device lists a module in counts even
/// when modflash does not know the map.
impl Installed for Inventory {
    fn has_region(&self, slot: ModuleRef) -> bool {
        self.main_module(slot).is_some()
            || platform(self.platform_id)
                .and_then(|p| p.layout_for(self.system_version()))
                .is_some_and(|l| l.find_bounds(slot).is_some())
    }

    fn version(&self, slot: ModuleRef) -> Option<u16> {
        self.main_module(slot).map(|m| m.version)
    }

    fn modules(&self) -> impl Iterator<Item = Header> + '_ {
        // A report lists only the non-empty dependencies: enough for DEPENDENCIES_FULL, which
        // looks at every one.
        self.modules.iter().filter(|m| m.is_main()).map(|m| {
            let mut dependencies = [Dependency::NONE; 2];
            for (field, dep) in dependencies.iter_mut().zip(m.deps()) {
                *field = dep;
            }
            Header {
                slot: m.slot(),
                version: m.version,
                dependencies,
            }
        })
    }

    fn part(&self, slot: ModuleRef) -> Part {
        match self.main_module(slot) {
            None => Part::Missing,
            Some(m) => Part::Present {
                platform_ok: m.checks.platform && m.checks.range,
                intact: m.checks.integrity,
            },
        }
    }
}

fn module_from_fetched(f: &Fetched) -> Option<InstalledModule> {
    let info = f.info?;
    Some(InstalledModule {
        function: info.function.name().to_string(),
        index: info.index,
        version: info.version,
        store: f.bounds.store.name().to_string(),
        max_size: f.bounds.max_size,
        start_address: Some(f.address),
        dependencies: info
            .listed_dependencies()
            .map(|d| DependencyJson {
                function: d.function.name().to_string(),
                index: d.index,
                version: d.version,
            })
            .collect(),
        checks: Checks::from_validity(f.checked, f.passed),
        sha256: f.sha256.map(hex::encode),
    })
}

/// A SHA-256 written as 64 hex digits (either case); `None` for anything else.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_testkit::device::device;

    #[test]
    fn reads_the_published_describe() {
        let text = r#"{"p":6,"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":4,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":7,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":7,"d":[{"f":"s","n":"1","v":7,"_":""}]},{"s":131072,"l":"m","vc":30,"vv":26,"u":"5CC350CE567187492F6FA800655CECF42DCFE1236EC7E23CDB17ECBC1774EDAF","f":"u","n":"1","v":3,"d":[{"f":"s","n":"2","v":7,"_":""}]},{"s":131072,"l":"f","vc":30,"vv":0,"d":[]}]}"#;
        let inv = Inventory::from_describe(text).unwrap();
        assert_eq!(inv.platform_id, 6);
        assert_eq!(
            inv.modules.len(),
            4,
            "the empty factory region is not a module"
        );
        let user = inv
            .main_module(ModuleRef::new(ModuleFunction::UserPart, 1))
            .unwrap();
        assert!(!user.checks.dependencies && user.checks.integrity);
        assert_eq!(
            user.deps().next(),
            Some(Dependency::new(ModuleFunction::SystemPart, 2, 7))
        );
        assert!(user.sha256.as_deref().unwrap().starts_with("5cc350ce"));
        assert_eq!(inv.system_version(), Some(7));
    }

    #[test]
    fn bad_describe_is_an_error() {
        assert!(Inventory::from_describe("nope").is_err());
        assert!(Inventory::from_describe("{\"m\":[]}").is_err());
        assert!(Inventory::from_describe("{\"p\":6}").is_err());
    }

    #[test]
    fn virtual_device_and_its_describe_agree() {
        let d = device(6).release("1.5.0").powered_on();
        let direct = Inventory::from_device(&d);
        let mut via_json =
            Inventory::from_describe(&modflash_device::describe::describe(&d)).unwrap();
        // The describe JSON has no addresses and SHA only for user parts.
        let mut direct_cmp = direct.clone();
        for (a, b) in direct_cmp
            .modules
            .iter_mut()
            .zip(via_json.modules.iter_mut())
        {
            a.start_address = None;
            if a.function != "user" {
                a.sha256 = None;
            }
            b.start_address = None;
        }
        assert_eq!(direct_cmp, via_json);
    }
}
