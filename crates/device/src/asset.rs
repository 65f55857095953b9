//! The asset store of Device OS 5.5.0 and later (`system/src/asset_manager.cpp` [v6.2.0]):
//! asset modules received as firmware updates are stored by name (the assets the application
//! does not require removed first), the application's required assets are read from its
//! ASSET_DEPENDENCY extensions, and at boot an application with any asset missing runs in
//! safe mode instead (`system/src/main.cpp`). GetAssetInfo reports both lists.
//!
//! The model keeps each stored asset module in the device state rather than in a LittleFS
//! image of the flash; what it stores, refuses and reports is the system's.

use modflash_module::asset::AssetRef;
use modflash_module::rules;
use modflash_module::{Module, ModuleFlags, ModuleFunction};
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::event::DeviceEvent;
use crate::flash::Space;

/// One file of the asset store: the asset module as received, under the asset's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAsset {
    /// The asset's name (the file name in the store).
    pub name: String,
    /// The asset module, as received.
    #[serde(with = "hex_bytes")]
    pub module: Vec<u8>,
}

/// An asset as the system lists it: name, hash, and its sizes when it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    /// Its name.
    pub name: String,
    /// Its hash type (0: SHA-256).
    pub hash_type: u8,
    /// Its hash (of the asset's own bytes).
    pub hash: Vec<u8>,
    /// The asset's own size (0 for a required asset).
    pub size: u32,
    /// The stored module's size (0 for a required asset).
    pub storage_size: u32,
}

impl AssetInfo {
    /// Name and hash as Device OS compares them.
    pub fn asset(&self) -> AssetRef<'_> {
        AssetRef {
            name: self.name.as_bytes(),
            hash_type: self.hash_type,
            hash: &self.hash,
        }
    }

    fn required(a: &AssetRef<'_>) -> Self {
        Self {
            name: a.display_name().to_string(),
            hash_type: a.hash_type,
            hash: a.hash.to_vec(),
            size: 0,
            storage_size: 0,
        }
    }
}

/// Why an asset module received as an update was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStoreError {
    /// The device keeps no assets (platform or release).
    #[error("this device keeps no assets")]
    Unsupported,
    /// Not a valid asset module (no name or hash, a bad CRC, a hash that does not match).
    #[error("not a valid asset module")]
    Invalid,
    /// No room in the asset store.
    #[error("the asset store has no room for it")]
    Full,
}

impl Device {
    /// True when this device keeps assets ([`rules::has_assets`]).
    pub fn keeps_assets(&self) -> bool {
        rules::has_assets(self.platform, self.system_version())
    }

    /// The assets in the store, in store order (`availableAssets`).
    pub fn available_assets(&self) -> Vec<AssetInfo> {
        self.state
            .assets
            .iter()
            .filter_map(|s| {
                let m = Module::parse(&s.module).ok()?;
                let a = m.asset()?;
                Some(AssetInfo {
                    name: a.asset.display_name().to_string(),
                    hash_type: a.asset.hash_type,
                    hash: a.asset.hash.to_vec(),
                    size: u32::try_from(a.data_size).unwrap_or(u32::MAX),
                    storage_size: u32::try_from(s.module.len()).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// The assets the installed application requires (`requiredAssets`): its ASSET_DEPENDENCY
    /// extensions; none without an application or on a device that keeps no assets.
    pub fn required_assets(&self) -> Vec<AssetInfo> {
        if !self.keeps_assets() {
            return Vec::new();
        }
        let Some(bytes) = self.application_bytes() else {
            return Vec::new();
        };
        let Ok(module) = Module::parse(&bytes) else {
            return Vec::new();
        };
        module
            .asset_dependencies()
            .map(|a| AssetInfo::required(&a))
            .collect()
    }

    /// The required assets not in the store (`missingAssets`).
    pub fn missing_assets(&self) -> Vec<AssetInfo> {
        let available = self.available_assets();
        self.required_assets()
            .into_iter()
            .filter(|r| {
                !rules::asset_dependency(&r.asset(), available.iter().map(AssetInfo::asset))
                    .is_met()
            })
            .collect()
    }

    /// The application module's bytes, from its header's start to its CRC.
    fn application_bytes(&self) -> Option<Vec<u8>> {
        let bounds = self.user_bounds()?;
        let (info, address) = self.hal().read_info(bounds)?;
        let len = info.module_length()? as usize + 4;
        self.flash
            .read(Space::of(bounds.location), address, len)
            .map(<[u8]>::to_vec)
    }

    /// `AssetManager::storeAsset`: checks the asset module, removes the stored assets the
    /// application does not require, and stores this one under its name (replacing one of
    /// the same name).
    pub(crate) fn store_asset(&mut self, module: &[u8]) -> Result<(), AssetStoreError> {
        if !self.keeps_assets() {
            return Err(AssetStoreError::Unsupported);
        }
        let name = asset_name(module).ok_or(AssetStoreError::Invalid)?;
        let required = self.required_assets();
        let available = self.available_assets();
        let keep: Vec<bool> = available
            .iter()
            .map(|a| required.iter().any(|r| r.asset().same_as(&a.asset())))
            .collect();
        let mut kept: Vec<StoredAsset> = self
            .state
            .assets
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(s, _)| s.clone())
            .collect();
        let gone: Vec<String> = self
            .state
            .assets
            .iter()
            .filter(|s| !kept.iter().any(|k| k.name == s.name))
            .map(|s| s.name.clone())
            .collect();
        for name in gone {
            self.event(DeviceEvent::AssetRemoved { name });
        }
        kept.retain(|s| s.name != name);
        let store = self
            .platform
            .asset_storage()
            .ok_or(AssetStoreError::Unsupported)?;
        let lens = kept
            .iter()
            .map(|s| s.module.len() as u64)
            .chain([module.len() as u64]);
        rules::assets_fit(store, lens).map_err(|_| AssetStoreError::Full)?;
        kept.push(StoredAsset {
            name: name.clone(),
            module: module.to_vec(),
        });
        self.state.assets = kept;
        self.event(DeviceEvent::AssetStored {
            name,
            len: module.len(),
        });
        Ok(())
    }
}

/// The name of the asset `module` carries, when it is a sound asset module: function 9, the
/// DROP_MODULE_INFO flag, a name and hash, its CRC, and a hash that matches its bytes
/// (`AssetReader::validate`).
fn asset_name(module: &[u8]) -> Option<String> {
    let m = Module::parse(module).ok()?;
    if m.info.function != ModuleFunction::Asset
        || !m.info.flags.contains(ModuleFlags::DROP_MODULE_INFO)
        || !m.is_valid()
    {
        return None;
    }
    let carried = m.asset()?;
    let data = modflash_module::asset::unwrap_asset(module).ok()?;
    let hash = modflash_module::checksum::sha256(&data);
    (carried.asset.hash == hash.as_slice()).then(|| carried.asset.display_name().to_string())
}

/// Bytes saved as a hex string (an asset module as a JSON array of numbers would be 4 times
/// larger).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}
