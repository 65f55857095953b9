//! The catalogue: Device OS module files the user has (a `--catalog DIR`, the modflash home
//! catalogue kept by `modflash catalog add`, in [`store`], filled from files, folders, zip
//! archives and particle-cli's folders by [`add`] and [`sources`], listed by release in
//! [`releases`]), and for virtual devices the
//! synthetic modules of the release table. Indexed by platform, function, index, version and
//! SHA-256.

pub mod add;
pub mod releases;
pub mod sources;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use modflash_module::release::platform_releases;
use modflash_module::synth::synthesize;
use modflash_module::{Module, ModuleFlags, ModuleInfo, ModuleRef, Platform};
use serde::{Deserialize, Serialize};

use crate::files::{read_module_file, FileError};
use crate::progress::{Event, Observer};
use store::HomeCatalog;

/// Where a candidate module comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A file the user named on the command line.
    File(PathBuf),
    /// A file from a catalogue directory (`--catalog DIR`).
    Catalog(PathBuf),
    /// A file of the modflash home catalogue (`catalog add`), stored under its SHA-256 and
    /// known by the name it was added under.
    Home {
        /// The file name it was added under.
        name: String,
        /// Where it is stored.
        stored: PathBuf,
    },
    /// A file in an application bundle the user named (an asset wrapped in its module).
    Bundle {
        /// The bundle.
        bundle: PathBuf,
        /// The entry's name in it.
        entry: String,
    },
    /// A synthetic image of a known release (virtual devices only).
    Release {
        /// Release name.
        release: &'static str,
        /// Particle's file name for the module.
        file_name: &'static str,
    },
}

impl Origin {
    /// True for images that are not real firmware.
    pub fn is_synthetic(&self) -> bool {
        matches!(self, Self::Release { .. })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) | Self::Catalog(p) => write!(f, "{}", p.display()),
            Self::Home { name, .. } => write!(f, "{name} (modflash catalogue)"),
            Self::Bundle { bundle, entry } => write!(f, "{}:{entry}", bundle.display()),
            Self::Release { release, file_name } => {
                write!(
                    f,
                    "Device OS {release} {file_name} (synthetic image, release table)"
                )
            }
        }
    }
}

/// A module that can be written: its header, hash and bytes.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Where it comes from.
    pub origin: Origin,
    /// Its header.
    pub info: ModuleInfo,
    /// SHA-256 stored in its suffix.
    pub sha256: [u8; 32],
    /// The module file.
    pub bytes: Arc<Vec<u8>>,
}

/// Why a file cannot be a candidate.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CandidateError {
    /// Not a file modflash reads: missing, a FIFO or device, a directory, far too large.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] FileError),
    /// A catalogue folder that cannot be listed.
    #[error("cannot read {path}: {reason}")]
    #[diagnostic(
        code(modflash::file::unreadable),
        help("check the path and permissions")
    )]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// Not a module.
    #[error("{path} is not a module: {reason}")]
    #[diagnostic(code(modflash::file::not_a_module), help("run `modflash inspect {}` for details", path.display()))]
    NotAModule {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Damaged.
    #[error("{path} is damaged: {reason}")]
    #[diagnostic(code(modflash::file::damaged), help("rebuild or download the file again; `modflash inspect {}` shows the details", path.display()))]
    Damaged {
        /// File.
        path: PathBuf,
        /// Every problem, separated by "; ".
        reason: String,
    },
    /// Several modules in one file.
    #[error("{path} is a combined image of {count} modules; modflash plans and writes single modules, so split it first")]
    #[diagnostic(code(modflash::file::combined), help("`modflash inspect {}` lists the modules in it", path.display()))]
    Combined {
        /// File.
        path: PathBuf,
        /// Modules in it.
        count: usize,
    },
}

impl Candidate {
    /// A candidate from module bytes, which must be one valid module.
    pub fn from_bytes(origin: Origin, bytes: Vec<u8>) -> Result<Self, CandidateError> {
        let path = PathBuf::from(origin.to_string());
        let m = Module::parse(&bytes).map_err(|e| CandidateError::NotAModule {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let problems: Vec<String> = m.problems().map(|p| p.to_string()).collect();
        if !problems.is_empty() {
            return Err(CandidateError::Damaged {
                path,
                reason: problems.join("; "),
            });
        }
        if m.info.flags.contains(ModuleFlags::COMBINED) {
            return Err(CandidateError::Combined {
                path,
                count: modflash_module::chain(&bytes).count(),
            });
        }
        let info = m.info;
        let sha256 = m.stored_sha256().unwrap_or([0; 32]);
        Ok(Self {
            origin,
            info,
            sha256,
            bytes: Arc::new(bytes),
        })
    }

    /// Reads a candidate from a file (a regular file no larger than a module can be).
    pub fn from_file(path: &Path, origin: Origin) -> Result<Self, CandidateError> {
        Self::from_bytes(origin, read_module_file(path)?)
    }

    /// The slot it occupies.
    pub fn slot(&self) -> ModuleRef {
        self.info.slot()
    }

    /// Bytes written to flash (the prefix is dropped for DROP_MODULE_INFO modules).
    pub fn flash_bytes(&self) -> &[u8] {
        if self.info.flags.contains(ModuleFlags::DROP_MODULE_INFO) {
            &self.bytes[ModuleInfo::SIZE.min(self.bytes.len())..]
        } else {
            &self.bytes
        }
    }

    /// SHA-256 as lower-case hex.
    pub fn sha_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The name of the asset an asset module carries (`None` for any other module).
    pub fn asset_name(&self) -> Option<String> {
        let m = Module::parse(&self.bytes).ok()?;
        Some(m.asset()?.asset.display_name().to_string())
    }
}

/// A set of candidate modules.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Candidates in load order.
    pub modules: Vec<Candidate>,
}

/// One entry of the home catalogue index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// File name the module was added under.
    pub file: String,
    /// SHA-256 (also the stored file's name).
    pub sha256: String,
    /// Platform id.
    pub platform_id: u16,
    /// Platform name.
    pub platform: Option<String>,
    /// Function name.
    pub function: String,
    /// Index.
    pub index: u8,
    /// Version.
    pub version: u16,
    /// Device OS release of a system part.
    pub device_os: Option<String>,
    /// Size in bytes.
    pub size: usize,
}

impl Catalog {
    /// Loads every valid module file of `dir`: its files, its folders at any depth and the
    /// entries of its zip archives ([`sources::walk`]), each named by where it is; anything
    /// else there is left.
    pub fn load_dir(dir: &Path) -> Result<Self, CandidateError> {
        std::fs::read_dir(dir).map_err(|e| CandidateError::Io {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut catalog = Catalog::default();
        sources::walk(dir, &mut |found| {
            let origin = Origin::Catalog(PathBuf::from(found.place));
            if let Ok(Ok(c)) = found
                .bytes
                .map(|bytes| Candidate::from_bytes(origin, bytes))
            {
                catalog.push(c);
            }
        });
        Ok(catalog)
    }

    /// Adds a candidate unless the same module (same SHA-256) from the same kind of source
    /// is present.
    pub fn push(&mut self, c: Candidate) {
        let same = |m: &Candidate| {
            m.sha256 == c.sha256
                && m.info == c.info
                && (m.origin == c.origin || !c.origin.is_synthetic())
        };
        if !self.modules.iter().any(same) {
            self.modules.push(c);
        }
    }

    /// Adds every module of `other`.
    pub fn extend(&mut self, other: Catalog) {
        for c in other.modules {
            self.push(c);
        }
    }

    /// Adds the synthetic modules of every known release of `platform` (for virtual devices;
    /// these images are not firmware and are never offered to real hardware).
    pub fn add_release_table(&mut self, platform: &'static Platform) {
        for release in platform_releases(platform) {
            for m in release.modules_for(platform) {
                let bytes = synthesize(platform, &m);
                let origin = Origin::Release {
                    release: release.release,
                    file_name: m.file_name,
                };
                // Releases share identical images (e.g. one bootloader in 1.4.4 and 1.5.0):
                // `push` keeps one entry per release so plans can name the right one.
                if let Ok(c) = Candidate::from_bytes(origin, bytes) {
                    self.push(c);
                }
            }
        }
    }

    /// Candidates built for `platform_id`.
    pub fn for_platform(&self, platform_id: u16) -> impl Iterator<Item = &Candidate> {
        self.modules
            .iter()
            .filter(move |c| c.info.platform_id == platform_id)
    }

    /// The modflash home catalogue, each module named by the file it was added as; a
    /// damaged index is a warning to `observer` (the stored files are used).
    pub fn load_home(observer: &mut dyn Observer) -> Self {
        let (catalog, damage) = HomeCatalog::default().load();
        if let Some(damage) = damage {
            observer.event(Event::warning(format!(
                "{damage}: its modules are taken from the stored files (the next `modflash catalog add` rewrites the index)"
            )));
        }
        catalog
    }

    /// Other real images of the module `c` is (same platform, slot and version, other
    /// contents; `push` keeps one real candidate per content).
    pub fn other_images(&self, c: &Candidate) -> Vec<&Candidate> {
        self.modules
            .iter()
            .filter(|m| {
                !m.origin.is_synthetic()
                    && m.info.platform_id == c.info.platform_id
                    && m.slot() == c.slot()
                    && m.info.version == c.info.version
                    && m.sha256 != c.sha256
            })
            .collect()
    }
}

/// A module in words: "Photon system part 2 version 1502".
pub(crate) fn module_words(platform_id: u16, slot: &str, version: u16) -> String {
    let platform = modflash_module::platform(platform_id).map_or_else(
        || format!("platform {platform_id}"),
        |p| p.display_name.to_string(),
    );
    format!("{platform} {slot} version {version}")
}

/// The warning for several different images of one module version: the file names, and
/// `choice` (which one is used, or where that is said).
pub fn several_images_words(module: &str, names: &[String], choice: &str) -> String {
    format!(
        "the catalogue holds {} different images of {module}: {}; {choice}",
        names.len(),
        names.join(", ")
    )
}
