//! Application bundles — a zip holding the application at its top and its assets' own bytes
//! under `assets/`, as binary-version-reader's `createApplicationAndAssetBundle` writes them
//! and particle-cli flashes them — read within bounds, and the check of an application's asset
//! dependencies against the assets at hand (a bundle's, files named on the command line, or a
//! device's).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use modflash_module::checksum::sha256;
use modflash_module::edit::EditError;
use modflash_module::rules::{self, AssetStorageRefusal, AssetVerdict};
use modflash_module::{asset, platform, AssetKind, AssetRef, Module, ModuleFunction, Platform};

use crate::files::{self, Expected, FileError};

/// The largest bundle file read (the largest asset store holds about 2 MB of asset modules,
/// the largest application 1.5 MB).
pub const MAX_BUNDLE: u64 = 16 * 1024 * 1024;
/// The most bytes one entry may inflate to; it is not read beyond.
pub const MAX_ENTRY: u64 = 16 * 1024 * 1024;
/// The most bytes all entries together may inflate to.
pub const MAX_INFLATED: u64 = 64 * 1024 * 1024;
/// The most entries a bundle may list.
pub const MAX_ENTRIES: usize = 1024;

/// The folder of a bundle that holds the assets.
const ASSETS_DIR: &str = "assets/";

/// An asset's own bytes under the name Device OS stores it as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetFile {
    /// The asset's name (a bundle entry's file name, or a file's).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256, the hash an application's dependency names.
    pub sha256: [u8; 32],
}

impl AssetFile {
    /// The asset `name` made of `bytes`.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        let sha256 = sha256(&bytes);
        Self {
            name: name.into(),
            bytes,
            sha256,
        }
    }

    /// Its name and hash as Device OS compares them.
    pub fn asset(&self) -> AssetRef<'_> {
        AssetRef::sha256(self.name.as_bytes(), &self.sha256)
    }

    /// The asset module that installs it, compressed as particle-cli writes it
    /// (binary-version-reader's `createAssetModule` with its defaults).
    pub fn module(&self) -> Result<Vec<u8>, EditError> {
        asset::asset_module(&self.bytes, &self.name, AssetKind::Default, true)
    }
}

/// A bundle entry that could not be read (its CRC-32 fails, its compression is unknown, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedEntry {
    /// The entry's name in the zip.
    pub name: String,
    /// Why it was not read.
    pub reason: String,
}

/// A bundle as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The application's entry name.
    pub application_name: String,
    /// The application module file.
    pub application: Vec<u8>,
    /// The assets under `assets/`, in the zip's order.
    pub assets: Vec<AssetFile>,
    /// Entries that could not be read (an asset among them is missing from the bundle).
    pub damaged: Vec<DamagedEntry>,
    /// Other entries (an `env/` folder, nested folders), not used.
    pub other: Vec<String>,
}

/// Why a bundle was not read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BundleError {
    /// The file itself could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] FileError),
    /// Not a zip archive, or one whose directory is damaged.
    #[error("{} is not a readable zip archive: {reason}", path.display())]
    #[diagnostic(
        code(modflash::bundle::not_a_zip),
        help("a bundle is the .zip file `particle compile` or binary-version-reader's createApplicationAndAssetBundle makes")
    )]
    NotAZip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        reason: String,
    },
    /// More entries than any bundle has.
    #[error("{} lists {count} entries, more than the {MAX_ENTRIES} a bundle may have", path.display())]
    #[diagnostic(
        code(modflash::bundle::too_many_entries),
        help("check that this is the bundle you meant")
    )]
    TooManyEntries {
        /// The file.
        path: PathBuf,
        /// Entries listed.
        count: usize,
    },
    /// An entry, or all of them, inflate beyond the bounds; nothing was read beyond them.
    #[error("{}: {entry} inflates to more than {limit} bytes", path.display())]
    #[diagnostic(
        code(modflash::bundle::too_large),
        help("check that this is the bundle you meant")
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The entry (or "its entries together").
        entry: String,
        /// The bound.
        limit: u64,
    },
    /// No application at the top of the bundle.
    #[error("{} holds no application (no file at its top)", path.display())]
    #[diagnostic(
        code(modflash::bundle::no_application),
        help("a bundle holds the application's .bin at its top and the assets under assets/")
    )]
    NoApplication {
        /// The file.
        path: PathBuf,
    },
    /// More than one file at the top.
    #[error("{} holds more than one application: {}", path.display(), names.join(", "))]
    #[diagnostic(
        code(modflash::bundle::several_applications),
        help("a bundle holds one application at its top; the assets go under assets/")
    )]
    SeveralApplications {
        /// The file.
        path: PathBuf,
        /// The entries at the top.
        names: Vec<String>,
    },
    /// The application's entry is damaged.
    #[error("{}: the application {name} cannot be read: {reason}", path.display())]
    #[diagnostic(
        code(modflash::bundle::application_damaged),
        help("the bundle is damaged; make it again")
    )]
    ApplicationDamaged {
        /// The file.
        path: PathBuf,
        /// The entry.
        name: String,
        /// Why.
        reason: String,
    },
}

/// True when `path` names a bundle (a `.zip` file).
pub fn is_bundle_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

impl Bundle {
    /// Reads the bundle at `path` ([`files::read`], then [`Bundle::from_zip`]).
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let bytes = files::read(path, Expected::Bundle)?;
        Self::from_zip(path, &bytes)
    }

    /// Reads a bundle from the bytes of its zip (`path` names it in errors). Entries are
    /// inflated at most to [`MAX_ENTRY`] bytes each and [`MAX_INFLATED`] together, whatever
    /// sizes the zip claims; an entry that fails its CRC-32 or cannot be inflated is recorded
    /// in [`Bundle::damaged`] and the others are read.
    pub fn from_zip(path: &Path, bytes: &[u8]) -> Result<Self, BundleError> {
        let not_a_zip = |e: zip::result::ZipError| BundleError::NotAZip {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(not_a_zip)?;
        if archive.len() > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries {
                path: path.to_path_buf(),
                count: archive.len(),
            });
        }
        let mut inflated_total = 0u64;
        let mut tops = Vec::new();
        let mut assets = Vec::new();
        let mut damaged = Vec::new();
        let mut other = Vec::new();
        for index in 0..archive.len() {
            let mut entry = match archive.by_index(index) {
                Ok(entry) => entry,
                Err(e) => {
                    damaged.push(DamagedEntry {
                        name: format!("entry {}", index + 1),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let name = entry.name().to_string();
            if entry.is_dir() {
                continue;
            }
            let place = Place::of(&name);
            if place == Place::Other {
                other.push(name);
                continue;
            }
            let mut data = Vec::new();
            let read = (&mut entry).take(MAX_ENTRY + 1).read_to_end(&mut data);
            if data.len() as u64 > MAX_ENTRY {
                return Err(BundleError::TooLarge {
                    path: path.to_path_buf(),
                    entry: name,
                    limit: MAX_ENTRY,
                });
            }
            inflated_total += data.len() as u64;
            if inflated_total > MAX_INFLATED {
                return Err(BundleError::TooLarge {
                    path: path.to_path_buf(),
                    entry: "its entries together".into(),
                    limit: MAX_INFLATED,
                });
            }
            match (read, place) {
                (Err(e), Place::Top) => {
                    return Err(BundleError::ApplicationDamaged {
                        path: path.to_path_buf(),
                        name,
                        reason: e.to_string(),
                    })
                }
                (Err(e), _) => damaged.push(DamagedEntry {
                    name,
                    reason: e.to_string(),
                }),
                (Ok(_), Place::Top) => tops.push((name, data)),
                (Ok(_), _) => {
                    let asset_name = name[ASSETS_DIR.len()..].to_string();
                    assets.push(AssetFile::new(asset_name, data));
                }
            }
        }
        if tops.len() > 1 {
            return Err(BundleError::SeveralApplications {
                path: path.to_path_buf(),
                names: tops.into_iter().map(|(n, _)| n).collect(),
            });
        }
        let Some((application_name, application)) = tops.pop() else {
            return Err(BundleError::NoApplication {
                path: path.to_path_buf(),
            });
        };
        Ok(Self {
            application_name,
            application,
            assets,
            damaged,
            other,
        })
    }

    /// The verdict on the whole bundle ([`check`] of its application and assets).
    pub fn check(&self) -> AssetCheck {
        let mut verdict = check(&self.application, &self.assets);
        verdict.damaged.clone_from(&self.damaged);
        verdict
    }
}

/// Where an entry is in a bundle (binary-version-reader's `unpackApplicationAndAssetBundle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// At the top: the application.
    Top,
    /// Directly under `assets/`: an asset.
    Asset,
    /// Anywhere else.
    Other,
}

impl Place {
    fn of(name: &str) -> Self {
        if !name.contains('/') {
            return Self::Top;
        }
        match name.strip_prefix(ASSETS_DIR) {
            Some(rest) if !rest.is_empty() && !rest.contains('/') => Self::Asset,
            _ => Self::Other,
        }
    }
}

/// What became of one asset the application requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssetStatus {
    /// There, with the same name and contents.
    Present,
    /// A file of that name with other contents (its SHA-256 in hex).
    OtherContents {
        /// The SHA-256 of what was found.
        found_sha256: String,
    },
    /// The same contents under another name: Device OS does not take it.
    Renamed {
        /// The name it has.
        found: String,
    },
    /// Nothing of that name or contents.
    Missing,
}

impl AssetStatus {
    /// Stable name for JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::OtherContents { .. } => "other_contents",
            Self::Renamed { .. } => "renamed",
            Self::Missing => "missing",
        }
    }
}

/// One asset an application requires, and whether it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The asset's name (invalid UTF-8 replaced).
    pub name: String,
    /// Its hash in hex (SHA-256).
    pub hash: String,
    /// Whether the assets at hand have it.
    pub status: AssetStatus,
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.hash.get(..16).unwrap_or(&self.hash);
        write!(f, "`{}` (sha256 {short}…)", self.name)?;
        match &self.status {
            AssetStatus::Present => Ok(()),
            AssetStatus::OtherContents { found_sha256 } => write!(
                f,
                ": the file of that name has other contents (sha256 {}…)",
                found_sha256.get(..16).unwrap_or(found_sha256)
            ),
            AssetStatus::Renamed { found } => write!(
                f,
                ": its contents are there as `{found}`, and Device OS looks assets up by name and hash together"
            ),
            AssetStatus::Missing => f.write_str(": not there"),
        }
    }
}

/// Whether the assets `available` satisfy each asset `app` requires
/// ([`rules::asset_dependency`]), in the order the application lists them.
pub fn requirements<'a>(
    app: &Module<'_>,
    available: impl IntoIterator<Item = AssetRef<'a>> + Clone,
) -> Vec<Requirement> {
    app.asset_dependencies()
        .map(|required| {
            let status = match rules::asset_dependency(&required, available.clone()) {
                AssetVerdict::Present => AssetStatus::Present,
                AssetVerdict::OtherContents { found } => AssetStatus::OtherContents {
                    found_sha256: hex::encode(found.hash),
                },
                AssetVerdict::Renamed { found } => AssetStatus::Renamed {
                    found: found.display_name().to_string(),
                },
                AssetVerdict::Missing => AssetStatus::Missing,
            };
            Requirement {
                name: required.display_name().to_string(),
                hash: hex::encode(required.hash),
                status,
            }
        })
        .collect()
}

/// The assets among files named together, when an application among them requires some
/// (else `None`): each file that is no module is the asset named by its file name, each asset
/// module the asset it carries.
pub fn assets_among<'a>(
    files: impl Iterator<Item = (&'a Path, &'a [u8])> + Clone,
) -> Option<Vec<AssetFile>> {
    let wanted = files.clone().any(|(_, bytes)| {
        Module::parse(bytes).is_ok_and(|m| m.asset_dependencies().next().is_some())
    });
    if !wanted {
        return None;
    }
    let assets = files
        .filter_map(|(path, bytes)| match Module::parse(bytes) {
            Err(_) => Some(AssetFile::new(file_name(path), bytes.to_vec())),
            Ok(m) => {
                let carried = m.asset()?;
                let data = asset::unwrap_asset(bytes).ok()?;
                Some(AssetFile::new(
                    carried.asset.display_name().to_string(),
                    data,
                ))
            }
        })
        .collect();
    Some(assets)
}

/// A path's file name (the whole path when it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Whether a set of assets fits the application's platform's asset store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageVerdict {
    /// They fit, taking `used` of `capacity` bytes.
    Fits {
        /// Bytes of storage the asset modules take.
        used: u64,
        /// Bytes the store has for assets.
        capacity: u64,
    },
    /// They do not fit (`asset`: the asset too large on its own, if that is why).
    Refused {
        /// Why.
        refusal: AssetStorageRefusal,
        /// The asset too large on its own, when that is why.
        asset: Option<String>,
    },
    /// The platform has no asset store (there are assets, or the application requires some).
    NoAssetStore,
    /// The application's platform is unknown, or there is no application module.
    UnknownPlatform,
}

/// The verdict on an application and the assets given with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetCheck {
    /// The application's platform.
    pub platform: Option<&'static Platform>,
    /// What is wrong with the application file itself (not a module, not an application).
    pub application_problem: Option<String>,
    /// Each asset it requires and whether it is there.
    pub requirements: Vec<Requirement>,
    /// Assets given that it does not require.
    pub unused: Vec<String>,
    /// Whether the assets given fit the platform's store.
    pub storage: StorageVerdict,
    /// Entries of a bundle that could not be read.
    pub damaged: Vec<DamagedEntry>,
}

impl AssetCheck {
    /// Every requirement met, the assets fit, nothing damaged, the application sound.
    pub fn is_valid(&self) -> bool {
        self.application_problem.is_none()
            && self
                .requirements
                .iter()
                .all(|r| r.status == AssetStatus::Present)
            && matches!(self.storage, StorageVerdict::Fits { .. })
            && self.damaged.is_empty()
    }

    /// The requirements not met.
    pub fn unmet(&self) -> impl Iterator<Item = &Requirement> {
        self.requirements
            .iter()
            .filter(|r| r.status != AssetStatus::Present)
    }
}

/// Checks the application module file `app` against the assets given with it: each asset it
/// requires present by name and hash, and all of them fitting its platform's asset store as
/// particle-cli sizes them (each wrapped in a compressed asset module, [`rules::assets_fit`]).
pub fn check(app: &[u8], assets: &[AssetFile]) -> AssetCheck {
    let module = Module::parse(app);
    let mut out = AssetCheck {
        platform: None,
        application_problem: None,
        requirements: Vec::new(),
        unused: Vec::new(),
        storage: StorageVerdict::UnknownPlatform,
        damaged: Vec::new(),
    };
    let module = match module {
        Ok(m) => m,
        Err(e) => {
            out.application_problem = Some(format!("not a module: {e}"));
            return out;
        }
    };
    if module.info.function != ModuleFunction::UserPart {
        out.application_problem = Some(format!(
            "a {} module, not an application",
            module.info.slot()
        ));
    } else if let Some(problem) = module.problems().next() {
        out.application_problem = Some(format!("damaged: {problem}"));
    }
    out.requirements = requirements(&module, assets.iter().map(AssetFile::asset));
    let required: Vec<AssetRef<'_>> = module.asset_dependencies().collect();
    out.unused = assets
        .iter()
        .filter(|a| !required.iter().any(|r| r.same_as(&a.asset())))
        .map(|a| a.name.clone())
        .collect();
    out.platform = platform(module.info.platform_id);
    out.storage = match out.platform.map(Platform::asset_storage) {
        None => StorageVerdict::UnknownPlatform,
        Some(None) if assets.is_empty() && required.is_empty() => StorageVerdict::Fits {
            used: 0,
            capacity: 0,
        },
        Some(None) => StorageVerdict::NoAssetStore,
        Some(Some(store)) => storage_verdict(store, assets),
    };
    out
}

fn storage_verdict(store: &modflash_module::AssetStorage, assets: &[AssetFile]) -> StorageVerdict {
    let mut lens = Vec::with_capacity(assets.len());
    for a in assets {
        match a.module() {
            Ok(m) => lens.push(m.len() as u64),
            // An asset no module can carry (a name too long for its extension).
            Err(_) => {
                return StorageVerdict::Refused {
                    refusal: AssetStorageRefusal::TooLarge {
                        index: lens.len(),
                        len: a.bytes.len() as u64,
                        max: store.max_single_asset,
                    },
                    asset: Some(a.name.clone()),
                }
            }
        }
    }
    match rules::assets_fit(store, lens) {
        Ok(used) => StorageVerdict::Fits {
            used,
            capacity: store.capacity(),
        },
        Err(refusal) => StorageVerdict::Refused {
            refusal,
            asset: match refusal {
                AssetStorageRefusal::TooLarge { index, .. } => {
                    assets.get(index).map(|a| a.name.clone())
                }
                AssetStorageRefusal::Full { .. } => None,
            },
        },
    }
}
