//! Where the catalogue's module files come from: files, folders walked recursively, zip
//! archives (Device OS release archives, application bundles) and particle-cli's package or
//! its `~/.particle` folder. Each file is found under the name it was shipped as, and read
//! within bounds: one module file's size per file or entry, a bounded number of entries and
//! inflated bytes per archive, a bounded folder depth, symbolic links to folders not followed.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::ZipArchive;

use crate::files::{self, Expected, FileError};

/// The most entries an archive may list.
pub const MAX_ENTRIES: usize = 20_000;
/// The most bytes the entries of one archive may inflate to, all together.
pub const MAX_INFLATED: u64 = 2 * 1024 * 1024 * 1024;
/// The deepest folder walked below a folder named.
pub const MAX_DEPTH: usize = 16;

/// Where particle-cli keeps module files, below its npm package and below its home folder.
const PARTICLE_CLI_FOLDERS: [&str; 4] = [
    // The package itself (`npm install -g particle-cli`): the Tinker apps it flashes.
    "assets/knownApps",
    // A folder that holds the package.
    "node_modules/particle-cli/assets/knownApps",
    // `~/.particle`: the Device OS modules `particle update` and `flash --local` downloaded.
    "device-os-flash/binaries",
    // The home folder that holds `~/.particle`.
    ".particle/device-os-flash/binaries",
];

/// A file found in a source.
#[derive(Debug)]
pub struct Found {
    /// The name it was shipped as (its file name, without folders).
    pub name: String,
    /// Where it is: a path, or `archive.zip: folder/entry.bin`.
    pub place: String,
    /// Its bytes, or why they were not read.
    pub bytes: Result<Vec<u8>, SourceError>,
}

/// Why a source, or a file in it, was not read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SourceError {
    /// Not a file modflash reads (a FIFO, a device), unreadable, or larger than any module.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] FileError),
    /// A folder that cannot be listed.
    #[error("cannot list {path}: {source}")]
    #[diagnostic(
        code(modflash::catalog::folder),
        help("check the path and permissions")
    )]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Deeper than [`MAX_DEPTH`] below the folder named.
    #[error("{path} is more than {MAX_DEPTH} folders deep: not walked")]
    #[diagnostic(
        code(modflash::catalog::too_deep),
        help("name the folder that holds the module files")
    )]
    TooDeep {
        /// The folder not walked.
        path: PathBuf,
    },
    /// A file named `.zip` whose directory cannot be read.
    #[error("{path} is not a readable zip archive: {source}")]
    #[diagnostic(code(modflash::catalog::archive), help("download the archive again"))]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What the zip reader found.
        source: ZipError,
    },
    /// An archive that lists more entries than [`MAX_ENTRIES`].
    #[error("{path} lists {count} entries; modflash reads archives of at most {MAX_ENTRIES}")]
    #[diagnostic(
        code(modflash::catalog::archive_entries),
        help("unpack it and add the folder of module files")
    )]
    TooManyEntries {
        /// The archive.
        path: PathBuf,
        /// Entries it lists.
        count: usize,
    },
    /// An entry whose bytes are damaged (a CRC-32 that does not match, a broken stream).
    #[error("{place} is damaged: {source}")]
    #[diagnostic(
        code(modflash::catalog::entry_damaged),
        help("download the archive again; the other entries were read")
    )]
    EntryDamaged {
        /// `archive.zip: entry`.
        place: String,
        /// What reading it found.
        source: io::Error,
    },
    /// An entry that inflates to more than any module file can be.
    #[error("{place} is larger than any module file can be")]
    #[diagnostic(code(modflash::catalog::entry_too_large))]
    EntryTooLarge {
        /// `archive.zip: entry`.
        place: String,
    },
    /// The entries of an archive inflate to more than [`MAX_INFLATED`] bytes together.
    #[error("{path} inflates to more than {MAX_INFLATED} bytes: the rest of it was not read")]
    #[diagnostic(
        code(modflash::catalog::archive_inflated),
        help("unpack it and add the folder of module files")
    )]
    Inflated {
        /// The archive.
        path: PathBuf,
    },
    /// `--from-particle-cli DIR` names no folder particle-cli keeps modules in.
    #[error(
        "{path} is neither particle-cli's package nor its ~/.particle folder (none of {} is there)",
        PARTICLE_CLI_FOLDERS.join(", ")
    )]
    #[diagnostic(
        code(modflash::catalog::not_particle_cli),
        help(
            "name the package folder (`npm root -g`/particle-cli) or ~/.particle; any folder of module files is added with `modflash catalog add DIR`"
        )
    )]
    NotParticleCli {
        /// The folder named.
        path: PathBuf,
    },
}

impl SourceError {
    /// An archive or entry is damaged (rather than unreadable or not what was asked for).
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Archive { .. } | Self::EntryDamaged { .. })
    }

    /// The file is too large to be a module: it is not one (a video in a release folder).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::EntryTooLarge { .. } | Self::File(FileError::TooLarge { .. })
        )
    }
}

/// The folders of particle-cli's package or home folder `dir` that hold module files.
pub fn particle_cli_folders(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let found: Vec<PathBuf> = PARTICLE_CLI_FOLDERS
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_dir())
        .collect();
    if found.is_empty() {
        return Err(SourceError::NotParticleCli {
            path: dir.to_path_buf(),
        });
    }
    Ok(found)
}

/// Every file of `path` (itself, what a folder holds at any depth, the entries of a zip
/// archive), in name order, each given to `found` as it is read.
pub fn walk(path: &Path, found: &mut dyn FnMut(Found)) {
    walk_at(path, 0, found);
}

fn walk_at(path: &Path, depth: usize, found: &mut dyn FnMut(Found)) {
    let place = path.display().to_string();
    let fail = |found: &mut dyn FnMut(Found), error: SourceError| {
        found(Found {
            name: file_name(&place),
            place: place.clone(),
            bytes: Err(error),
        });
    };
    if !path.is_dir() {
        if is_zip(path) {
            archive(path, found);
        } else {
            let bytes = files::read_module_file(path).map_err(SourceError::from);
            found(Found {
                name: file_name(&place),
                place: place.clone(),
                bytes,
            });
        }
        return;
    }
    if depth > MAX_DEPTH {
        return fail(found, SourceError::TooDeep { path: path.into() });
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(source) => {
            let path = path.into();
            return fail(found, SourceError::Folder { path, source });
        }
    };
    let mut children: Vec<(PathBuf, bool)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            // A link to a folder is not followed (it could lead back up); a link to a file is.
            let linked_folder = e.file_type().is_ok_and(|t| t.is_symlink()) && e.path().is_dir();
            (e.path(), linked_folder)
        })
        .collect();
    children.sort();
    for (child, linked_folder) in children {
        if !linked_folder {
            walk_at(&child, depth + 1, found);
        }
    }
}

/// A zip archive, by its name.
pub fn is_zip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// The last part of a path or an entry name.
pub fn file_name(place: &str) -> String {
    place
        .rsplit(['/', '\\'])
        .find(|p| !p.is_empty())
        .unwrap_or(place)
        .to_string()
}

/// Every file entry of the zip archive at `path`; a damaged entry is reported and the
/// others still read.
fn archive(path: &Path, found: &mut dyn FnMut(Found)) {
    let place = path.display().to_string();
    let fail = |found: &mut dyn FnMut(Found), error: SourceError| {
        found(Found {
            name: file_name(&place),
            place: place.clone(),
            bytes: Err(error),
        });
    };
    let file = match files::open(path, Expected::Archive) {
        Ok(file) => file,
        Err(e) => return fail(found, e.into()),
    };
    let mut zip = match ZipArchive::new(file) {
        Ok(zip) => zip,
        Err(source) => {
            let path = path.into();
            return fail(found, SourceError::Archive { path, source });
        }
    };
    if zip.len() > MAX_ENTRIES {
        let (path, count) = (path.into(), zip.len());
        return fail(found, SourceError::TooManyEntries { path, count });
    }
    let limit = Expected::Module.limit();
    let mut inflated = 0u64;
    for n in 0..zip.len() {
        let read = read_entry(&mut zip, n, limit, &place);
        let Some((entry_name, bytes)) = read else {
            continue;
        };
        inflated += bytes.as_ref().map_or(0, |b| b.len() as u64);
        found(Found {
            name: file_name(&entry_name),
            place: format!("{place}: {entry_name}"),
            bytes,
        });
        if inflated > MAX_INFLATED {
            return fail(found, SourceError::Inflated { path: path.into() });
        }
    }
}

/// Entry `n`'s name and bytes (at most `limit`); `None` for a folder entry.
fn read_entry(
    zip: &mut ZipArchive<File>,
    n: usize,
    limit: u64,
    archive: &str,
) -> Option<(String, Result<Vec<u8>, SourceError>)> {
    let mut entry = match zip.by_index(n) {
        Ok(entry) => entry,
        Err(e) => {
            let place = format!("{archive}: entry {}", n + 1);
            let source = io::Error::other(e);
            return Some((
                place.clone(),
                Err(SourceError::EntryDamaged { place, source }),
            ));
        }
    };
    if entry.is_dir() {
        return None;
    }
    let name = entry.name().to_string();
    let place = format!("{archive}: {name}");
    if entry.size() > limit {
        return Some((name, Err(SourceError::EntryTooLarge { place })));
    }
    let mut bytes = Vec::new();
    let read = (&mut entry)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes);
    let result = match read {
        Err(source) => Err(SourceError::EntryDamaged { place, source }),
        Ok(_) if bytes.len() as u64 > limit => Err(SourceError::EntryTooLarge { place }),
        Ok(_) => Ok(bytes),
    };
    Some((name, result))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::*;

    fn found_in(path: &Path) -> Vec<Found> {
        let mut all = Vec::new();
        walk(path, &mut |f| all.push(f));
        all
    }

    #[test]
    fn an_entry_inflating_past_any_module_is_not_read_and_the_rest_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.zip");
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        zip.start_file("zeros.bin", deflated).unwrap();
        let limit = Expected::Module.limit();
        zip.write_all(&vec![0; usize::try_from(limit).unwrap() + 1])
            .unwrap();
        zip.start_file("small.bin", deflated).unwrap();
        zip.write_all(b"small").unwrap();
        zip.finish().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 64 * 1024);

        let found = found_in(&path);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "zeros.bin");
        assert!(found[0]
            .bytes
            .as_ref()
            .is_err_and(SourceError::is_too_large));
        assert_eq!(found[1].place, format!("{}: small.bin", path.display()));
        assert_eq!(found[1].bytes.as_deref().ok(), Some(&b"small"[..]));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_back_up_the_tree_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("m.bin"), b"m").unwrap();
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        let found = found_in(dir.path());
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["m.bin"]);
    }

    #[test]
    fn a_file_that_is_no_archive_is_reported_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.zip");
        std::fs::write(&path, b"PK\x03\x04 and nothing").unwrap();
        let found = found_in(&path);
        assert_eq!(found.len(), 1);
        let error = found[0].bytes.as_ref().unwrap_err();
        assert!(error.is_damage(), "{error}");
        assert!(error.to_string().contains("is not a readable zip archive"));
    }
}
