//! Describe documents (the JSON a device prints for `s`, `particle serial inspect`, the
//! cloud's describe) read strictly: a malformed field is reported with where it is, never
//! coerced. A document that names no platform (Device OS 0.4.x printed no `"p"`) gets the
//! one given, the one its USB id names, or the one its module table fits, and says which.

use std::fmt;

use modflash_module::platform::{platform_by_usb, Store, PLATFORMS};
use modflash_module::release::supported_range;
use modflash_module::{ModuleFunction, ModuleRef, Platform};
use serde_json::{Map, Value};

use crate::inventory::{Checks, DependencyJson, InstalledModule, Inventory, InventoryError};

/// A describe document as read, before its platform is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Describe {
    /// The platform id (`"p"`), when the document has one.
    pub platform_id: Option<u16>,
    /// The modules, in the order listed.
    pub modules: Vec<InstalledModule>,
    /// The regions listed without a module (older releases print them): store and size.
    pub empty_regions: Vec<(Store, u32)>,
}

/// What else may tell the platform of a document without `"p"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlatformHints<'a> {
    /// The platform the user named (`--platform`).
    pub given: Option<&'static Platform>,
    /// The USB vendor and product id of the port the document was read from.
    pub usb: Option<(u16, u16)>,
    /// The platforms of the module files to be installed.
    pub files: &'a [u16],
}

/// Where the platform of a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformSource {
    /// The document's own `"p"`.
    Reported,
    /// The platform the user named.
    Given,
    /// The USB id of the port it was read from.
    UsbId {
        /// Vendor id.
        vendor: u16,
        /// Product id.
        product: u16,
    },
    /// The only platform whose memory map the module table fits.
    ModuleTable,
    /// The module table fits several platforms (display names); the files to be installed
    /// are for one of them.
    Files {
        /// Every platform the table fits.
        fits: Vec<&'static str>,
    },
}

impl fmt::Display for PlatformSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reported => f.write_str("the describe's platform id (\"p\")"),
            Self::Given => f.write_str("given with --platform"),
            Self::UsbId { vendor, product } => {
                write!(f, "the USB id {vendor:04x}:{product:04x} of its port")
            }
            Self::ModuleTable => f.write_str(
                "the module table: its regions and versions fit this platform's memory map only",
            ),
            Self::Files { fits } => write!(
                f,
                "the module table fits the {}; the files to install are for this one",
                words_list(fits)
            ),
        }
    }
}

/// A document whose platform is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// What is installed.
    pub inventory: Inventory,
    /// Where its platform came from.
    pub source: PlatformSource,
}

/// "the Photon", "the Photon and the P1", "the A, the B and the C".
pub(crate) fn words_list(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("the {n}")).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

impl Describe {
    /// Reads a describe document. Every field it has must be of its kind and range; all
    /// that are not are reported at once.
    pub fn parse(text: &str) -> Result<Self, InventoryError> {
        let v: Value = serde_json::from_str(text.trim())?;
        let mut r = Reader::default();
        let platform_id = match v.get("p") {
            None => None,
            Some(p) => r.number(p, "p", "a platform id", u16::MAX.into()),
        };
        let list = match v.get("m") {
            None => return Err(InventoryError::Missing("module list (\"m\")")),
            Some(Value::Array(list)) => list.as_slice(),
            Some(other) => {
                r.bad("m", other, "a list of modules");
                &[]
            }
        };
        let mut describe = Self {
            platform_id,
            modules: Vec::new(),
            empty_regions: Vec::new(),
        };
        for (i, entry) in list.iter().enumerate() {
            let at = format!("m[{i}]");
            let Value::Object(m) = entry else {
                r.bad(&at, entry, "a module");
                continue;
            };
            r.module(&at, m, &mut describe);
        }
        if r.problems.is_empty() {
            Ok(describe)
        } else {
            Err(InventoryError::Malformed(r.problems))
        }
    }

    /// The inventory, with the platform of `"p"`, else the one `hints` or the module table
    /// settle; a platform given that contradicts `"p"` or that the table does not fit is
    /// refused.
    pub fn settle(self, hints: &PlatformHints<'_>) -> Result<Settled, InventoryError> {
        let (platform_id, source) = match (self.platform_id, hints.given) {
            (Some(p), Some(given)) if given.id != p => {
                return Err(InventoryError::PlatformConflict {
                    reported: p,
                    given: given.display_name,
                })
            }
            (Some(p), _) => (p, PlatformSource::Reported),
            (None, Some(given)) => (
                self.fitting(given, "given with --platform")?,
                PlatformSource::Given,
            ),
            (None, None) => self.infer(hints)?,
        };
        Ok(Settled {
            inventory: Inventory {
                platform_id,
                modules: self.modules,
            },
            source,
        })
    }

    /// `platform`'s id when the module table fits it (`how` says where it came from).
    fn fitting(&self, platform: &'static Platform, how: &str) -> Result<u16, InventoryError> {
        if self.fits(platform) {
            Ok(platform.id)
        } else {
            Err(InventoryError::PlatformMismatch {
                platform: platform.display_name,
                how: how.to_string(),
            })
        }
    }

    fn infer(&self, hints: &PlatformHints<'_>) -> Result<(u16, PlatformSource), InventoryError> {
        if let Some((vendor, product)) = hints.usb {
            if let Some((p, _)) = platform_by_usb(vendor, product) {
                let how = format!("named by the USB id {vendor:04x}:{product:04x}");
                return Ok((
                    self.fitting(p, &how)?,
                    PlatformSource::UsbId { vendor, product },
                ));
            }
        }
        let fits: Vec<&'static Platform> = PLATFORMS.iter().filter(|p| self.fits(p)).collect();
        let names: Vec<&'static str> = fits.iter().map(|p| p.display_name).collect();
        match fits.as_slice() {
            [] => Err(InventoryError::NoPlatformFits),
            [only] => Ok((only.id, PlatformSource::ModuleTable)),
            several => {
                let for_files: Vec<&&Platform> = several
                    .iter()
                    .filter(|p| hints.files.contains(&p.id))
                    .collect();
                match for_files.as_slice() {
                    [only] => Ok((only.id, PlatformSource::Files { fits: names })),
                    _ => Err(InventoryError::AmbiguousPlatform {
                        fits: names,
                        names: several.iter().map(|p| p.name).collect(),
                    }),
                }
            }
        }
    }

    /// The installed system version (system part 1, or the Core's monolithic firmware).
    fn system_version(&self) -> Option<u16> {
        self.modules
            .iter()
            .find(|m| {
                m.is_main()
                    && (m.slot() == ModuleRef::new(ModuleFunction::SystemPart, 1)
                        || m.function() == ModuleFunction::MonoFirmware)
            })
            .map(|m| m.version)
    }

    /// True when `platform` supports the installed system version and one of its memory
    /// maps for it has a region of each listed kind, slot and size.
    fn fits(&self, platform: &Platform) -> bool {
        let system = self.system_version();
        let (first, last) = supported_range(platform);
        if system.is_some_and(|v| v < first || v > last) {
            return false;
        }
        platform.layouts().iter().any(|layout| {
            let applies = system.is_none_or(|v| layout.applies_to(v));
            let has = |store: Store, size: u32, slot: Option<ModuleRef>| {
                layout.bounds.iter().any(|b| {
                    b.store == store
                        && (size == 0 || b.max_size == size)
                        && slot.is_none_or(|s| b.slot() == s)
                })
            };
            applies
                && self.modules.iter().all(|m| {
                    let store = store_named(&m.store).unwrap_or(Store::Main);
                    has(store, m.max_size, Some(m.slot()))
                })
                && self
                    .empty_regions
                    .iter()
                    .all(|&(store, size)| has(store, size, None))
        })
    }
}

/// The store of its JSON name (`"main"`).
fn store_named(name: &str) -> Option<Store> {
    [
        Store::Main,
        Store::Factory,
        Store::Backup,
        Store::Scratchpad,
    ]
    .into_iter()
    .find(|s| s.name() == name)
}

/// Reads fields, collecting every problem.
#[derive(Default)]
struct Reader {
    problems: Vec<String>,
}

impl Reader {
    fn bad(&mut self, at: &str, value: &Value, expected: &str) {
        self.problems
            .push(format!("{at} is {value}, not {expected}"));
    }

    fn missing(&mut self, at: &str, key: &str, expected: &str) {
        self.problems
            .push(format!("{at} has no \"{key}\" ({expected})"));
    }

    /// A whole number in `0..=max`.
    fn number<T: TryFrom<u64>>(
        &mut self,
        value: &Value,
        at: &str,
        what: &str,
        max: u64,
    ) -> Option<T> {
        let n = value.as_u64().filter(|&n| n <= max);
        let n = n.and_then(|n| T::try_from(n).ok());
        if n.is_none() {
            self.bad(at, value, &format!("{what} (0 to {max})"));
        }
        n
    }

    /// A module index: a decimal string (as devices print it) or a number, 0 to 255.
    fn index(&mut self, value: &Value, at: &str) -> Option<u8> {
        let n = match value {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<u8>().ok()
            }
            other => other.as_u64().and_then(|n| u8::try_from(n).ok()),
        };
        if n.is_none() {
            self.bad(at, value, "a module index (0 to 255)");
        }
        n
    }

    /// A one-letter code of a function.
    fn function(&mut self, value: &Value, at: &str) -> Option<ModuleFunction> {
        let f = value
            .as_str()
            .and_then(single_char)
            .and_then(ModuleFunction::from_code);
        if f.is_none() {
            let codes: Vec<String> = ModuleFunction::KNOWN
                .iter()
                .map(|f| f.code().to_string())
                .collect();
            self.bad(
                at,
                value,
                &format!("a module function ({})", codes.join(", ")),
            );
        }
        f
    }

    fn module(&mut self, at: &str, m: &Map<String, Value>, out: &mut Describe) {
        let field = |key: &str| format!("{at}.{key}");
        let max_size = m.get("s").map_or(Some(0), |v| {
            self.number(v, &field("s"), "a region size", u32::MAX.into())
        });
        let store = match m.get("l") {
            None => Some(Store::Main),
            Some(v) => {
                let s = v.as_str().and_then(single_char).and_then(Store::from_code);
                if s.is_none() {
                    self.bad(&field("l"), v, "a region kind (m, f, b or t)");
                }
                s
            }
        };
        let mut flags = |key: &str| {
            m.get(key).map_or(Some(0), |v| {
                self.number(v, &field(key), "a set of check flags", 255)
            })
        };
        let (checked, passed) = (flags("vc"), flags("vv"));
        let sha256 = match m.get("u") {
            None => Some(None),
            Some(v) => match v
                .as_str()
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                Some(s) => Some(Some(s.to_ascii_lowercase())),
                None => {
                    self.bad(&field("u"), v, "a SHA-256 (64 hex digits)");
                    None
                }
            },
        };
        let dependencies = match m.get("d") {
            None => Some(Vec::new()),
            Some(Value::Array(deps)) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (j, d) in deps.iter().enumerate() {
                    let at = format!("{at}.d[{j}]");
                    match self.dependency(&at, d) {
                        Some(d) => out.push(d),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Some(other) => {
                self.bad(&field("d"), other, "a list of dependencies");
                None
            }
        };
        let Some(f) = m.get("f") else {
            // A region without a module.
            if let (Some(store), Some(size)) = (store, max_size) {
                out.empty_regions.push((store, size));
            }
            return;
        };
        let function = self.function(f, &field("f"));
        let index = match m.get("n") {
            Some(n) => self.index(n, &field("n")),
            None => {
                self.missing(at, "n", "its module index");
                None
            }
        };
        let version = match m.get("v") {
            Some(v) => self.number(v, &field("v"), "a module version", u16::MAX.into()),
            None => {
                self.missing(at, "v", "its module version");
                None
            }
        };
        // Pushed only when every field is good (the problems are collected either way).
        let module = || {
            Some(InstalledModule {
                function: function?.name().to_string(),
                index: index?,
                version: version?,
                store: store?.name().to_string(),
                max_size: max_size?,
                start_address: None,
                dependencies: dependencies?,
                checks: Checks::from_validity(checked?, passed?),
                sha256: sha256?,
            })
        };
        out.modules.extend(module());
    }

    fn dependency(&mut self, at: &str, d: &Value) -> Option<DependencyJson> {
        let Value::Object(d) = d else {
            self.bad(at, d, "a dependency");
            return None;
        };
        let mut get = |key: &str, what: &str| {
            let v = d.get(key);
            if v.is_none() {
                self.missing(at, key, what);
            }
            v
        };
        let (f, n, v) = (
            get("f", "its module function"),
            get("n", "its module index"),
            get("v", "its minimum version"),
        );
        let function = f.and_then(|f| self.function(f, &format!("{at}.f")));
        let index = n.and_then(|n| self.index(n, &format!("{at}.n")));
        let version =
            v.and_then(|v| self.number(v, &format!("{at}.v"), "a module version", u16::MAX.into()));
        Some(DependencyJson {
            function: function?.name().to_string(),
            index: index?,
            version: version?,
        })
    }
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHOTON_046: &str = r#"{"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":4,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":7,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":7,"d":[{"f":"s","n":"1","v":7,"_":""}]},{"s":131072,"l":"m","vc":30,"vv":30,"f":"u","n":"1","v":3,"d":[{"f":"s","n":"2","v":7,"_":""}]},{"s":131072,"l":"f","vc":30,"vv":0,"d":[]}]}"#;

    #[test]
    fn every_malformed_field_is_named() {
        let text = r#"{"p":-6,"m":[null,{"f":"s","n":"999","v":-5,"s":"big","l":"q","vc":300,"u":"xyz","d":[null,{"f":"z","n":1,"v":70000}]},{"f":"b"}]}"#;
        let Err(InventoryError::Malformed(problems)) = Describe::parse(text) else {
            panic!("not refused");
        };
        assert_eq!(
            problems,
            [
                "p is -6, not a platform id (0 to 65535)",
                "m[0] is null, not a module",
                "m[1].s is \"big\", not a region size (0 to 4294967295)",
                "m[1].l is \"q\", not a region kind (m, f, b or t)",
                "m[1].vc is 300, not a set of check flags (0 to 255)",
                "m[1].u is \"xyz\", not a SHA-256 (64 hex digits)",
                "m[1].d[0] is null, not a dependency",
                "m[1].d[1].f is \"z\", not a module function (n, r, b, m, s, u, _, c, a, t)",
                "m[1].d[1].v is 70000, not a module version (0 to 65535)",
                "m[1].n is \"999\", not a module index (0 to 255)",
                "m[1].v is -5, not a module version (0 to 65535)",
                "m[2] has no \"n\" (its module index)",
                "m[2] has no \"v\" (its module version)",
            ]
        );
    }

    #[test]
    fn a_photon_0_4_x_table_fits_the_photon_and_the_p1() {
        let d = Describe::parse(PHOTON_046).unwrap();
        assert_eq!((d.platform_id, d.modules.len()), (None, 4));
        assert_eq!(d.empty_regions, [(Store::Factory, 131_072)]);
        let err = d.clone().settle(&PlatformHints::default()).unwrap_err();
        assert!(err.to_string().contains("the Photon and the P1"), "{err}");
        let files = [8];
        let settled = d
            .clone()
            .settle(&PlatformHints {
                files: &files,
                ..PlatformHints::default()
            })
            .unwrap();
        assert_eq!(settled.inventory.platform_id, 8);
        assert!(matches!(settled.source, PlatformSource::Files { .. }));
        let usb = d
            .clone()
            .settle(&PlatformHints {
                usb: Some((0x2b04, 0xc006)),
                ..PlatformHints::default()
            })
            .unwrap();
        assert_eq!(usb.inventory.platform_id, 6);
        let electron = modflash_module::platform(10).unwrap();
        let err = d
            .settle(&PlatformHints {
                given: Some(electron),
                ..PlatformHints::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, InventoryError::PlatformMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_platform_id_wins_and_a_contradiction_is_refused() {
        let text = PHOTON_046.replacen("{\"m\"", "{\"p\":6,\"m\"", 1);
        let d = Describe::parse(&text).unwrap();
        let settled = d.clone().settle(&PlatformHints::default()).unwrap();
        assert_eq!(
            (settled.inventory.platform_id, settled.source),
            (6, PlatformSource::Reported)
        );
        let err = d
            .settle(&PlatformHints {
                given: modflash_module::platform(10),
                ..PlatformHints::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, InventoryError::PlatformConflict { .. }),
            "{err}"
        );
    }
}
