//! `catalog add`: every module file found in the files, folders, zip archives or
//! particle-cli folders named, stored in the home catalogue under the name it was shipped as,
//! and what became of every file found.

use std::path::{Path, PathBuf};

use super::sources::{file_name, is_zip, particle_cli_folders, walk, Found, SourceError};
use super::store::{Added, CatalogError, HomeCatalog, IndexDamage};
use super::{Candidate, CandidateError, IndexEntry, Origin};
use crate::files::read_module_file;

/// What `catalog add` did with each file it found.
#[derive(Debug, Default)]
pub struct AddReport {
    /// Modules stored now.
    pub added: Vec<Added>,
    /// Modules the catalogue held already (the same SHA-256): where found, and the entry
    /// they were added as before.
    pub already: Vec<(String, IndexEntry)>,
    /// Files that are not modules (a README, an asset, a file larger than any module).
    pub not_modules: Vec<String>,
    /// Modules and entries not added because they are damaged or could not be read.
    pub refused: Vec<CatalogError>,
    /// The index was damaged and has been rebuilt from the stored files.
    pub repaired: Option<IndexDamage>,
}

impl AddReport {
    /// No module was found at all (none added, none held already).
    pub fn found_no_module(&self) -> bool {
        self.added.is_empty() && self.already.is_empty()
    }
}

/// Adds every module file of `paths` (files, folders at any depth, zip archives) and of the
/// particle-cli package or `~/.particle` folder `particle_cli` to `store`. Only a catalogue
/// that cannot be written, a file named on its own that cannot be read, or a `particle_cli`
/// folder that is not particle-cli's stops it.
pub fn add_from(
    store: &HomeCatalog,
    paths: &[PathBuf],
    particle_cli: Option<&Path>,
) -> Result<AddReport, CatalogError> {
    let mut roots = paths.to_vec();
    if let Some(dir) = particle_cli {
        roots.extend(particle_cli_folders(dir)?);
    }
    let mut report = AddReport::default();
    let mut stopped = None;
    for root in &roots {
        if !root.is_dir() && !is_zip(root) {
            // A file named on its own is read as every command reads a module file: a FIFO,
            // a device or a file larger than any module is refused, and stops the command.
            let bytes = read_module_file(root).map_err(SourceError::from)?;
            let place = root.display().to_string();
            let name = file_name(&place);
            let bytes = Ok(bytes);
            add_found(store, Found { name, place, bytes }, &mut report)?;
            continue;
        }
        walk(root, &mut |found| {
            if stopped.is_none() {
                if let Err(e) = add_found(store, found, &mut report) {
                    stopped = Some(e);
                }
            }
        });
        if let Some(e) = stopped {
            return Err(e);
        }
    }
    Ok(report)
}

/// Files one found file in `report`; an error only when the catalogue cannot be written.
fn add_found(
    store: &HomeCatalog,
    found: Found,
    report: &mut AddReport,
) -> Result<(), CatalogError> {
    let bytes = match found.bytes {
        Ok(bytes) => bytes,
        Err(e) if e.is_too_large() => {
            report.not_modules.push(found.place);
            return Ok(());
        }
        Err(e) => {
            report.refused.push(e.into());
            return Ok(());
        }
    };
    let origin = Origin::File(PathBuf::from(&found.place));
    let module = match Candidate::from_bytes(origin, bytes) {
        Ok(module) => module,
        Err(CandidateError::NotAModule { .. }) => {
            report.not_modules.push(found.place);
            return Ok(());
        }
        Err(e) => {
            report.refused.push(e.into());
            return Ok(());
        }
    };
    match store.add_module(&found.name, &module) {
        Ok(added) if added.already => report.already.push((found.place, added.entry)),
        Ok(mut added) => {
            report.repaired = report.repaired.take().or(added.repaired.take());
            report.added.push(added);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}
