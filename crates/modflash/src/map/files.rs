//! Module files on a map: each file where it would go on its platform (the running copy of
//! its slot), checked as the device would check it, its dependencies judged against the
//! other files.

use std::path::{Path, PathBuf};

use modflash_module::parse::{chain, Problem};
use modflash_module::platform::{Layout, Store};
use modflash_module::rules::{Header, Installed, Part};
use modflash_module::{Dependency, ModuleFunction, ModuleInfo, ModuleRef, Platform};

use super::{edges, memories, module_region, placed, used, Basis, Check, DeviceMap, Unplaced};
use super::{fixed_regions, Verdict};
use crate::catalog::CandidateError;
use crate::error::Error;
use crate::files::read_module_file;

/// One module of a file.
struct FileModule {
    /// The file, and which module of a combined file.
    name: String,
    info: ModuleInfo,
    /// Its CRC matches and its length is what the header says.
    intact: bool,
}

/// Reads module files and places them ([`maps_of_files`]).
pub fn maps_of_paths(paths: &[PathBuf]) -> Result<Vec<DeviceMap>, Error> {
    let files = paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read_module_file(p)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let named: Vec<(String, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.as_slice()))
        .collect();
    maps_of_files(&named)
}

/// One map per platform the files are built for, in the order the files name them: each
/// module (every module of a combined file) in the running-copy region of its slot in the
/// memory map of the files' system firmware (the newest when no system part is among them).
/// A file that is not a module, or is for a platform whose memory map modflash does not know,
/// is an error; a module without a region on its platform is listed as unplaced.
pub fn maps_of_files(files: &[(String, &[u8])]) -> Result<Vec<DeviceMap>, Error> {
    let mut groups: Vec<(u16, Vec<FileModule>)> = Vec::new();
    for (name, bytes) in files {
        for module in modules_of(name, bytes)? {
            let id = module.info.platform_id;
            match groups.iter_mut().find(|(p, _)| *p == id) {
                Some((_, group)) => group.push(module),
                None => groups.push((id, vec![module])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(id, group)| map_of_group(id, group))
        .collect()
}

fn modules_of(name: &str, bytes: &[u8]) -> Result<Vec<FileModule>, Error> {
    let mut out = Vec::new();
    for (n, module) in chain(bytes).enumerate() {
        let module = match module {
            Ok(m) => m,
            // A chain that ends in something else still places the modules before it.
            Err(_) if n > 0 => break,
            Err(e) => {
                return Err(CandidateError::NotAModule {
                    path: Path::new(name).to_path_buf(),
                    reason: e.to_string(),
                }
                .into())
            }
        };
        let intact = !module
            .problems()
            .any(|p| matches!(p, Problem::Crc(_) | Problem::Size(_)));
        out.push(FileModule {
            name: if n == 0 {
                name.to_string()
            } else {
                format!("{name} (module {})", n + 1)
            },
            info: module.info,
            intact,
        });
    }
    Ok(out)
}

fn map_of_group(platform_id: u16, group: Vec<FileModule>) -> Result<DeviceMap, Error> {
    let platform = modflash_module::platform(platform_id);
    let system = group
        .iter()
        .find(|m| m.info.slot() == ModuleRef::new(ModuleFunction::SystemPart, 1))
        .map(|m| m.info.version);
    let Some((platform, layout)) = platform.and_then(|p| Some((p, p.layout_for(system)?))) else {
        let first = group.first().map_or("", |m| m.name.as_str());
        return Err(Error::BadRequest {
            what: format!(
                "{first} is built for {}, whose memory map modflash does not know",
                platform.map_or_else(
                    || format!("platform {platform_id}"),
                    |p| format!("the {}", p.display_name)
                )
            ),
            help: "`modflash inspect FILE` shows what the file is".into(),
        });
    };
    let set = FileSet {
        layout,
        modules: group.iter().map(|m| m.info).collect(),
    };
    let mut regions: Vec<_> = layout
        .bounds
        .iter()
        .map(|b| (b.location, module_region(b, None)))
        .collect();
    let mut unplaced = Vec::new();
    let mut dependencies = Vec::new();
    for m in &group {
        let slot = m.info.slot();
        let Some(bounds) = layout.main_bounds(slot) else {
            unplaced.push(Unplaced {
                file: m.name.clone(),
                reason: format!("the {} has no place for a {slot}", platform.display_name),
            });
            continue;
        };
        let mut failed = Vec::new();
        if !m.intact {
            failed.push(Check::Integrity);
        }
        if !bounds.end_in_range(m.info.end_address) {
            failed.push(Check::Range);
        }
        let mut module = placed(platform, bounds, &m.info, m.info.start_address, failed);
        module.file = Some(m.name.clone());
        let mine = file_edges(&set, platform, &module, m.info.dependencies);
        if mine.iter().any(|e| e.verdict.fails()) {
            module.failed.push(Check::Dependencies);
        }
        dependencies.extend(mine);
        if let Some((_, region)) = regions
            .iter_mut()
            .find(|(_, r)| r.slot() == Some(slot) && r.store == Some(Store::Main))
        {
            region.modules.push(module);
            region.used = used(region.size(), &region.modules);
        }
    }
    regions.extend(fixed_regions(platform, layout));
    Ok(DeviceMap {
        platform_id: platform.id,
        platform: platform.display_name,
        layout: layout.name,
        basis: Basis::Files,
        system: None,
        mode: None,
        led: None,
        memories: memories(layout, regions),
        dependencies,
        unplaced,
    })
}

/// The dependencies of a file's module against the other files: a slot with a region and no
/// file is not among the files (the device would read whatever it has there).
fn file_edges(
    set: &FileSet,
    platform: &Platform,
    module: &super::Placed,
    dependencies: [Dependency; 2],
) -> Vec<super::Edge> {
    let mut out = edges(set, platform, Some(Store::Main), module, dependencies);
    for e in &mut out {
        if e.verdict == Verdict::Erased {
            e.verdict = Verdict::NotGiven;
            e.installed = None;
        }
    }
    out
}

/// The files for one platform, as the rules read a device.
struct FileSet {
    layout: &'static Layout,
    modules: Vec<ModuleInfo>,
}

impl Installed for FileSet {
    fn has_region(&self, slot: ModuleRef) -> bool {
        self.layout.find_bounds(slot).is_some()
    }

    fn version(&self, slot: ModuleRef) -> Option<u16> {
        self.modules
            .iter()
            .rev()
            .find(|m| m.slot() == slot)
            .map(|m| m.version)
    }

    fn modules(&self) -> impl Iterator<Item = Header> + '_ {
        self.modules.iter().map(Header::of)
    }

    fn part(&self, slot: ModuleRef) -> Part {
        match self.version(slot) {
            Some(_) => Part::Present {
                platform_ok: true,
                intact: true,
            },
            None => Part::Missing,
        }
    }
}
