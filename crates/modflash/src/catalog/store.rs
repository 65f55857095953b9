//! The modflash home catalogue (`modflash catalog add`): module files stored under their
//! SHA-256 (`<sha>.bin`) and `index.json`, which names each by the file it was added as.
//! Changed under a lock and written atomically; an index that is damaged, missing or out of
//! step with the stored files is rebuilt from them, and says so.

use std::fmt;
use std::path::{Path, PathBuf};

use modflash_module::{ModuleFunction, ModuleRef};

use super::{Candidate, CandidateError, Catalog, IndexEntry, Origin};
use crate::home::{self, FileOpError, Lock};

/// The file naming every stored module.
const INDEX: &str = "index.json";
/// The lock file a change of the catalogue holds.
const LOCK: &str = "index.lock";

/// Why the home catalogue could not be changed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CatalogError {
    /// The file to add cannot be a catalogue module.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Candidate(#[from] CandidateError),
    /// A file of the catalogue could not be created, written or replaced.
    #[error(transparent)]
    #[diagnostic(
        code(modflash::catalog::io),
        help("check that the modflash home is writable (set MODFLASH_HOME to use another one)")
    )]
    Io(#[from] FileOpError),
    /// A folder, archive or entry to add from could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Source(#[from] super::sources::SourceError),
    /// `catalog rm` names nothing the catalogue holds.
    #[error("the catalogue holds no module {what}")]
    #[diagnostic(
        code(modflash::catalog::not_found),
        help("`modflash catalog list` shows the file names and SHA-256s it holds")
    )]
    NotFound {
        /// The file name or SHA-256 (prefix) given.
        what: String,
    },
    /// `catalog rm` names a SHA-256 prefix several modules start with.
    #[error("{what} is the start of the SHA-256 of {count} modules of the catalogue")]
    #[diagnostic(
        code(modflash::catalog::ambiguous),
        help("give more of the SHA-256 (`modflash catalog list --json` shows it whole)")
    )]
    Ambiguous {
        /// The prefix given.
        what: String,
        /// Modules it starts.
        count: usize,
    },
}

/// What is wrong with the index on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDamage {
    /// The index file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
    /// Stored modules whose added name was lost: they are named by their stored file.
    pub unnamed: usize,
}

impl fmt::Display for IndexDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the catalogue index {} is damaged ({})",
            self.path.display(),
            self.reason
        )?;
        if self.unnamed > 0 {
            write!(
                f,
                "; {} stored module{} lost the name{} added under",
                self.unnamed,
                if self.unnamed == 1 { "" } else { "s" },
                if self.unnamed == 1 {
                    " it was"
                } else {
                    "s they were"
                }
            )?;
        }
        Ok(())
    }
}

/// The index as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// One entry per stored module, sorted by platform, function, index, version, SHA-256.
    pub entries: Vec<IndexEntry>,
    /// How the index on disk was damaged, when it was: the entries are rebuilt from the
    /// stored files then.
    pub damage: Option<IndexDamage>,
}

impl Index {
    /// The other entries of the same module and version as `entry`, with other contents.
    pub fn other_images(&self, entry: &IndexEntry) -> Vec<&IndexEntry> {
        self.entries
            .iter()
            .filter(|e| {
                (e.platform_id, &e.function, e.index, e.version)
                    == (
                        entry.platform_id,
                        &entry.function,
                        entry.index,
                        entry.version,
                    )
                    && e.sha256 != entry.sha256
            })
            .collect()
    }
}

/// What `add` did.
#[derive(Clone, Debug)]
pub struct Added {
    /// The module's entry (for a module held already, as it was added then).
    pub entry: IndexEntry,
    /// The catalogue held this module (the same SHA-256) already: nothing changed.
    pub already: bool,
    /// The index was damaged and has been rebuilt from the stored files.
    pub repaired: Option<IndexDamage>,
    /// Other images of the same module and version the catalogue holds.
    pub other_images: Vec<IndexEntry>,
}

/// Parses index bytes: a JSON list of entries. Never panics on any bytes.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("it is not a list of entries: {e}"))
}

/// The home catalogue in one directory.
#[derive(Clone, Debug)]
pub struct HomeCatalog {
    dir: PathBuf,
}

impl Default for HomeCatalog {
    /// The catalogue of the modflash home.
    fn default() -> Self {
        Self::new(home::home().join("catalog"))
    }
}

impl HomeCatalog {
    /// The catalogue in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX)
    }

    fn stored_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.bin"))
    }

    /// The index, rebuilt in memory from the stored files when the one on disk is damaged
    /// (nothing is written: see [`HomeCatalog::add`]).
    pub fn index(&self) -> Index {
        let listed = match std::fs::read(self.index_path()) {
            Ok(bytes) => Some(parse_index(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("it cannot be read: {e}"))),
        };
        let stored = self.stored_shas();
        reconcile(listed, &stored, self.index_path(), |sha| {
            self.stored_entry(sha)
        })
    }

    /// SHA-256 names of the stored module files, sorted.
    fn stored_shas(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut shas: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sha = name.strip_suffix(".bin")?;
                (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| sha.to_ascii_lowercase())
            })
            .collect();
        shas.sort();
        shas
    }

    /// The entry of stored module `sha`, named by its stored file (`None` when that is not
    /// the valid module of that SHA-256).
    fn stored_entry(&self, sha: &str) -> Option<IndexEntry> {
        let path = self.stored_path(sha);
        let c = Candidate::from_file(&path, Origin::Catalog(path.clone())).ok()?;
        (c.sha_hex() == sha).then(|| IndexEntry::of(&format!("{sha}.bin"), &c))
    }

    /// The stored modules, each named by the file it was added as, and the index's damage.
    pub fn load(&self) -> (Catalog, Option<IndexDamage>) {
        let index = self.index();
        let mut catalog = Catalog::default();
        for entry in &index.entries {
            let stored = self.stored_path(&entry.sha256);
            let origin = Origin::Home {
                name: entry.file.clone(),
                stored: stored.clone(),
            };
            if let Ok(c) = Candidate::from_file(&stored, origin) {
                if c.sha_hex() == entry.sha256 {
                    catalog.push(c);
                }
            }
        }
        (catalog, index.damage)
    }

    /// Copies the module file `path` into the catalogue and names it in the index, under
    /// the catalogue's lock (another `add` waits); a damaged index is rebuilt from the stored
    /// files first, and the damaged one kept beside it as `index.json.damaged`.
    pub fn add(&self, path: &Path) -> Result<Added, CatalogError> {
        let c = Candidate::from_file(path, Origin::File(path.to_path_buf()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{}.bin", c.sha_hex()));
        self.add_module(&name, &c)
    }

    /// Stores module `c` under the file name `name` (see [`HomeCatalog::add`]); a module
    /// held already keeps the name it was added under.
    pub fn add_module(&self, name: &str, c: &Candidate) -> Result<Added, CatalogError> {
        home::create_dir(&self.dir)?;
        let _lock = Lock::wait(&self.dir.join(LOCK))?.writable()?;
        let mut index = self.index();
        let sha = c.sha_hex();
        let stored = self.stored_path(&sha);
        home::remove_stale_temporaries(&stored);
        if !stored.is_file() {
            home::write_atomically(&stored, &c.bytes)?;
        }
        if index.damage.is_none() {
            if let Some(held) = index.entries.iter().find(|e| e.sha256 == sha) {
                return Ok(Added {
                    entry: held.clone(),
                    already: true,
                    repaired: None,
                    other_images: Vec::new(),
                });
            }
        }
        let entry = IndexEntry::of(name, c);
        index.entries.retain(|e| e.sha256 != entry.sha256);
        index.entries.push(entry.clone());
        sort(&mut index.entries);
        let index_path = self.index_path();
        if index.damage.is_some() && index_path.is_file() {
            let aside = self.dir.join(format!("{INDEX}.damaged"));
            std::fs::rename(&index_path, &aside).map_err(|source| FileOpError {
                action: "cannot replace",
                path: aside,
                source,
            })?;
        }
        self.write_index(&index.entries)?;
        let other_images = index.other_images(&entry).into_iter().cloned().collect();
        Ok(Added {
            entry,
            already: false,
            repaired: index.damage,
            other_images,
        })
    }

    fn write_index(&self, entries: &[IndexEntry]) -> Result<(), CatalogError> {
        let index_path = self.index_path();
        home::remove_stale_temporaries(&index_path);
        let json = serde_json::to_vec_pretty(entries).unwrap_or_default();
        home::write_atomically(&index_path, &json)?;
        Ok(())
    }

    /// Removes the modules `what` names — a file name they were added under, or the start
    /// of a SHA-256 (at least 8 hex digits) that names one module — under the catalogue's
    /// lock; the modules removed.
    pub fn remove(&self, what: &str) -> Result<Vec<IndexEntry>, CatalogError> {
        let not_found = || CatalogError::NotFound {
            what: what.to_string(),
        };
        if !self.dir.is_dir() {
            return Err(not_found());
        }
        let _lock = Lock::wait(&self.dir.join(LOCK))?.writable()?;
        let index = self.index();
        let lower = what.to_ascii_lowercase();
        let by_sha = lower.len() >= 8 && lower.bytes().all(|b| b.is_ascii_hexdigit());
        let (gone, kept): (Vec<IndexEntry>, Vec<IndexEntry>) = index
            .entries
            .into_iter()
            .partition(|e| e.file == what || (by_sha && e.sha256.starts_with(&lower)));
        let by_name = gone.iter().any(|e| e.file == what);
        match gone.len() {
            0 => return Err(not_found()),
            count if count > 1 && !by_name => {
                return Err(CatalogError::Ambiguous {
                    what: what.to_string(),
                    count,
                })
            }
            _ => {}
        }
        // The index first: a module whose stored file outlives it is found again, named by
        // its SHA-256, rather than listed without its file.
        self.write_index(&kept)?;
        for e in &gone {
            let stored = self.stored_path(&e.sha256);
            std::fs::remove_file(&stored).map_err(|source| FileOpError {
                action: "cannot remove",
                path: stored,
                source,
            })?;
        }
        Ok(gone)
    }
}

fn sort(entries: &mut [IndexEntry]) {
    entries.sort_by(|a, b| {
        (a.platform_id, &a.function, a.index, a.version, &a.sha256).cmp(&(
            b.platform_id,
            &b.function,
            b.index,
            b.version,
            &b.sha256,
        ))
    });
}

/// The index from what it lists (`None`: no index file; an error: unreadable) and the
/// stored files: an entry without its stored file is dropped, a stored file without an
/// entry is named by `stored_entry`, and any of that is damage.
pub fn reconcile(
    listed: Option<Result<Vec<IndexEntry>, String>>,
    stored: &[String],
    path: PathBuf,
    stored_entry: impl Fn(&str) -> Option<IndexEntry>,
) -> Index {
    let missing = listed.is_none();
    let (mut entries, mut problems) = match listed {
        None => (Vec::new(), Vec::new()),
        Some(Ok(entries)) => (entries, Vec::new()),
        Some(Err(reason)) => (Vec::new(), vec![reason]),
    };
    let listed_count = entries.len();
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| stored.contains(&e.sha256) && seen.insert(e.sha256.clone()));
    if entries.len() < listed_count {
        let gone = listed_count - entries.len();
        problems.push(format!(
            "{gone} of its entries name{} no stored module",
            if gone == 1 { "s" } else { "" }
        ));
    }
    let mut unnamed = 0;
    for sha in stored.iter().filter(|s| !seen.contains(*s)) {
        if let Some(entry) = stored_entry(sha) {
            entries.push(entry);
            unnamed += 1;
        }
    }
    if unnamed > 0 && problems.is_empty() {
        problems.push(if missing {
            "it is missing".to_string()
        } else {
            format!(
                "it does not list {unnamed} stored module{}",
                if unnamed == 1 { "" } else { "s" }
            )
        });
    }
    sort(&mut entries);
    Index {
        entries,
        damage: (!problems.is_empty()).then(|| IndexDamage {
            path,
            reason: problems.join("; "),
            unnamed,
        }),
    }
}

impl IndexEntry {
    /// The entry of candidate `c`, added under the file name `file`.
    pub fn of(file: &str, c: &Candidate) -> Self {
        Self {
            file: file.to_string(),
            sha256: c.sha_hex(),
            platform_id: c.info.platform_id,
            platform: modflash_module::platform(c.info.platform_id).map(|p| p.name.to_string()),
            function: c.info.function.name().to_string(),
            index: c.info.index,
            version: c.info.version,
            device_os: modflash_module::release::release_for_module(&c.info).map(str::to_string),
            size: c.bytes.len(),
        }
    }

    /// The module in words: "Photon system part 2 version 1502".
    pub fn module_words(&self) -> String {
        let slot = ModuleFunction::from_name(&self.function)
            .map(|f| ModuleRef::new(f, self.index).to_string())
            .unwrap_or_else(|| format!("{} {}", self.function, self.index));
        super::module_words(self.platform_id, &slot, self.version)
    }

    /// The file name and the start of the SHA-256: "part2.bin (sha 1a2b3c4d…)".
    pub fn name_words(&self) -> String {
        format!(
            "{} (sha {}…)",
            self.file,
            self.sha256.get(..8).unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_testkit::fixture_path;

    #[test]
    fn a_damaged_index_is_rebuilt_and_the_next_add_keeps_every_module() {
        let dir = tempfile::tempdir().unwrap();
        let store = HomeCatalog::new(dir.path().join("catalog"));
        let first = store
            .add(&fixture_path("photon-system-part1@1.5.0.bin"))
            .unwrap();
        assert!(first.repaired.is_none());
        std::fs::write(store.index_path(), b"{\"broken").unwrap();
        let index = store.index();
        let damage = index.damage.expect("damage reported");
        assert!(damage.reason.contains("not a list"), "{damage}");
        assert_eq!(damage.unnamed, 1);
        assert_eq!(index.entries.len(), 1);
        assert_eq!(store.load().0.modules.len(), 1);

        let second = store
            .add(&fixture_path("photon-system-part2@1.5.0.bin"))
            .unwrap();
        assert!(second.repaired.is_some());
        let index = store.index();
        assert_eq!((index.entries.len(), index.damage), (2, None));
        assert_eq!(
            std::fs::read(dir.path().join("catalog/index.json.damaged")).unwrap(),
            b"{\"broken"
        );
    }

    #[test]
    fn entries_and_stored_files_out_of_step_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = HomeCatalog::new(dir.path().to_path_buf());
        let added = store
            .add(&fixture_path("photon-system-part2@1.5.0.bin"))
            .unwrap();
        std::fs::remove_file(store.stored_path(&added.entry.sha256)).unwrap();
        let index = store.index();
        assert!(index.entries.is_empty());
        assert!(index
            .damage
            .is_some_and(|d| d.reason.contains("1 of its entries names no stored module")),);
        std::fs::remove_file(store.index_path()).unwrap();
        assert_eq!(store.index(), Index::default(), "no index, nothing stored");
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = HomeCatalog::new(dir.path().to_path_buf());
        let files = [
            "photon-system-part1@1.5.0.bin",
            "photon-system-part2@1.5.0.bin",
            "p1-system-part1@1.5.0.bin",
            "p1-system-part2@1.5.0.bin",
            "electron-system-part1@1.5.0.bin",
            "electron-system-part2@1.5.0.bin",
            "electron-system-part3@1.5.0.bin",
            "photon_tinker.bin",
        ];
        std::thread::scope(|s| {
            for file in files {
                let store = store.clone();
                s.spawn(move || store.add(&fixture_path(file)).unwrap());
            }
        });
        let index = store.index();
        assert_eq!((index.entries.len(), index.damage), (files.len(), None));
    }

    #[test]
    fn any_index_bytes_are_read_or_refused_without_panic() {
        for bytes in [&b""[..], b"[", b"null", b"[null]", b"{}", b"[{\"file\":1}]"] {
            assert!(parse_index(bytes).is_err(), "{bytes:?}");
        }
        assert_eq!(parse_index(b"[]"), Ok(Vec::new()));
    }
}
