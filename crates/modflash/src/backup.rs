//! Backups of what a flash replaces: before a plan writes over a module, the module's bytes
//! (or, where the connection cannot read them, its header and hash) are kept under the
//! modflash home, one folder per device and time, so `modflash restore` can put them back.

use std::fs;
use std::path::{Path, PathBuf};

use modflash_device::hal::Fetched;
use modflash_device::{Device, Space};
use modflash_module::platform::Store;
use modflash_module::{ModuleFunction, ModuleRef};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::sim::SimStore;
use crate::DeviceRef;

/// One module a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUp {
    /// Function name ("bootloader", "system", "user", ...).
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// SHA-256 from the module's suffix, lower-case hex.
    pub sha256: Option<String>,
    /// The file holding its bytes in the backup folder; `None` when only the record was kept
    /// (the connection could not read the module).
    pub file: Option<String>,
}

/// A backup's manifest (`manifest.json` in its folder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The device reference the flash was run on.
    pub device: String,
    /// The device id.
    pub device_id: String,
    /// Platform id.
    pub platform_id: u16,
    /// When the backup was taken (RFC 3339, UTC).
    pub time: String,
    /// The modules, in the order they were saved.
    pub modules: Vec<BackedUp>,
}

/// A backup on disk: its folder and manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// The folder (`HOME/backups/DEVICE_ID/TIME`).
    pub dir: PathBuf,
    /// What it holds.
    pub manifest: Manifest,
}

/// Where a device's backups live.
pub fn device_dir(device_id: &str) -> PathBuf {
    crate::home::home().join("backups").join(device_id)
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// The main-store module in `slot` on `device`, as the HAL finds it.
fn installed(device: &Device, slot: ModuleRef) -> Option<Fetched> {
    device
        .system_info()
        .into_iter()
        .find(|f| f.bounds.store == Store::Main && f.info.is_some_and(|i| i.slot() == slot))
}

/// The bytes of the module installed in `slot` of `device` (header to CRC), when there is
/// one and the radio stack aside (its image has no module suffix to restore from).
pub fn module_image(device: &Device, slot: ModuleRef) -> Option<Vec<u8>> {
    let f = installed(device, slot)?;
    let info = f.info?;
    if info.function == ModuleFunction::RadioStack {
        return None;
    }
    let length = info.module_length()? as usize + 4;
    device
        .flash()
        .read(Space::of(f.bounds.location), f.address, length)
        .map(<[u8]>::to_vec)
}

/// A module about to be replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// Its slot.
    pub slot: ModuleRef,
    /// Its version.
    pub version: u16,
    /// The SHA-256 in its suffix, when known.
    pub sha256: Option<[u8; 32]>,
    /// Its bytes, when the connection could read them.
    pub bytes: Option<Vec<u8>>,
}

/// Saves `modules` as a new backup of the device `device_id`. Returns the backup.
pub fn save(
    device: &str,
    device_id: &str,
    platform_id: u16,
    modules: &[Replaced],
) -> Result<Backup, Error> {
    let now = jiff::Timestamp::now();
    let base = device_dir(device_id);
    let mut dir = base.join(now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string());
    // Two flashes within a millisecond: keep both.
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{}-{n}", now.strftime("%Y%m%dT%H%M%S%.3fZ")));
    }
    let tmp = dir.with_extension("partial");
    fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    let mut saved = Vec::new();
    for m in modules {
        let file = match &m.bytes {
            Some(bytes) => {
                let name = format!(
                    "{}-{}-v{}.bin",
                    m.slot.function.name(),
                    m.slot.index,
                    m.version
                );
                let path = tmp.join(&name);
                fs::write(&path, bytes).map_err(io("write", &path))?;
                Some(name)
            }
            None => None,
        };
        saved.push(BackedUp {
            function: m.slot.function.name().to_string(),
            index: m.slot.index,
            version: m.version,
            sha256: m.sha256.map(hex::encode),
            file,
        });
    }
    let manifest = Manifest {
        device: device.to_string(),
        device_id: device_id.to_string(),
        platform_id,
        time: now.to_string(),
        modules: saved,
    };
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let path = tmp.join("manifest.json");
    fs::write(&path, json).map_err(io("write", &path))?;
    // Complete or absent: the folder gets its final name once everything is in it.
    fs::rename(&tmp, &dir).map_err(io("rename", &tmp))?;
    Ok(Backup { dir, manifest })
}

/// Every complete backup, oldest first; only the device `device_id`'s when given.
pub fn list(device_id: Option<&str>) -> Vec<Backup> {
    let root = crate::home::home().join("backups");
    let devices: Vec<PathBuf> = match device_id {
        Some(id) => vec![root.join(id)],
        None => fs::read_dir(&root)
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for d in devices {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if let Ok(b) = open(&e.path()) {
                out.push(b);
            }
        }
    }
    out.sort_by(|a, b| a.manifest.time.cmp(&b.manifest.time));
    out
}

/// The backup in folder `dir`.
pub fn open(dir: &Path) -> Result<Backup, Error> {
    let path = dir.join("manifest.json");
    let bytes = fs::read(&path).map_err(io("read", &path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest {
        what: format!("{} is not a modflash backup: {e}", dir.display()),
        help: "name a folder `modflash backups` lists".into(),
    })?;
    Ok(Backup {
        dir: dir.to_path_buf(),
        manifest,
    })
}

impl Backup {
    /// The files of the modules it holds bytes of, to plan with.
    pub fn files(&self) -> Vec<PathBuf> {
        self.manifest
            .modules
            .iter()
            .filter_map(|m| m.file.as_ref().map(|f| self.dir.join(f)))
            .collect()
    }
}

/// The device id a reference names without opening the device: a virtual device's (read
/// from the store), or the id in `usb:ID`; `None` for references that need the device.
pub fn device_id_of(devref: &DeviceRef) -> Result<Option<String>, Error> {
    Ok(match devref {
        DeviceRef::Sim(name) => Some(SimStore::default().peek(name)?.state.device_id),
        DeviceRef::UsbId(id) => Some(id.clone()),
        DeviceRef::Usb | DeviceRef::Serial(_) => None,
    })
}
