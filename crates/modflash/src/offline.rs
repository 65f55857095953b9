//! Plans for devices known only by their describe documents (`plan --inventories DIR`): one
//! plan per document, each on a twin rebuilt from it, with the platform settled as
//! [`crate::describe`] says and reported with where it came from.

use std::path::{Path, PathBuf};

use modflash_module::Platform;

use crate::describe::{Describe, PlatformHints, PlatformSource};
use crate::error::Error;
use crate::files::read_describe_file;
use crate::plan::{plan, Force, Plan, Request, Via};
use crate::progress::Observer;
use crate::request::Wanted;

/// The plan for one describe document.
#[derive(Debug)]
pub struct InventoryPlan {
    /// The document.
    pub file: PathBuf,
    /// The device's platform and where it came from, once settled.
    pub platform: Option<(u16, PlatformSource)>,
    /// The plan, or why there is none.
    pub result: Result<Plan, Error>,
}

/// The describe documents in `dir` (`*.json`), sorted by name.
pub fn inventory_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        action: "read",
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Plans what `wanted` asks for on the device of every describe document in `dir`, in name
/// order, handing each plan to `each` as soon as it is made; `platform` is the platform
/// given for documents that name none. The modules come from the modflash home catalogue
/// and `wanted`'s folders; the files asked for are read once, before any document.
pub fn plan_inventories(
    dir: &Path,
    wanted: &Wanted,
    platform: Option<&'static Platform>,
    observer: &mut dyn Observer,
    each: &mut dyn FnMut(InventoryPlan),
) -> Result<(), Error> {
    let files = inventory_files(dir)?;
    let catalog = wanted.user_catalog(observer)?;
    let targets = wanted.read_files()?;
    let file_platforms: Vec<u16> = targets.iter().map(|c| c.info.platform_id).collect();
    let hints = PlatformHints {
        given: platform,
        usb: None,
        files: &file_platforms,
    };
    for file in files {
        let mut settled = None;
        let result = (|| {
            let describe = Describe::parse(&read_describe_file(&file)?)?.settle(&hints)?;
            settled = Some((describe.inventory.platform_id, describe.source.clone()));
            let twin = crate::twin::twin_of(&describe.inventory)?;
            let request = Request {
                twin: &twin,
                targets: wanted.targets_with(targets.clone(), &catalog, twin.platform())?,
                catalog: &catalog,
                via: wanted.via.unwrap_or(Via::Dfu),
                also: Vec::new(),
                alternative: None,
                force: Force::default(),
                factory: wanted.factory,
            };
            Ok(plan(&request)?)
        })();
        each(InventoryPlan {
            file,
            platform: settled,
            result,
        });
    }
    Ok(())
}
