//! Assets in a plan: the asset modules of the bundles named are written after the modules
//! (storing an asset removes those the application installed then does not require, so the
//! new application goes first), each skipped when the device holds that asset under the same
//! name and hash — name and hash together, as Device OS looks assets up, so a renamed asset is
//! written again — and the gate that refuses, before anything is written, a plan whose
//! application would miss an asset.

use modflash_device::Device;
use modflash_module::rules::{self, AssetVerdict};
use modflash_module::{AssetRef, Module, ModuleFunction, ModuleRef};

use super::types::{Action, PlanError, Request, Step, Via};
use crate::catalog::Candidate;

/// An asset module to write, and the asset it carries.
struct AssetTarget<'a> {
    module: &'a Candidate,
    name: String,
    sha256: Vec<u8>,
}

impl<'a> AssetTarget<'a> {
    fn of(module: &'a Candidate) -> Option<Self> {
        let m = Module::parse(&module.bytes).ok()?;
        let a = m.asset()?.asset;
        Some(Self {
            module,
            name: a.display_name().to_string(),
            sha256: a.hash.to_vec(),
        })
    }

    fn asset(&self) -> AssetRef<'_> {
        AssetRef::sha256(self.name.as_bytes(), &self.sha256)
    }
}

/// The asset steps to append to `module_steps`, and the notes of the assets skipped.
pub(super) fn asset_steps(
    req: &Request<'_>,
    asset_modules: &[Candidate],
    module_steps: &[Step],
) -> Result<(Vec<Step>, Vec<String>), PlanError> {
    let twin = req.twin;
    let assets: Vec<AssetTarget<'_>> = asset_modules.iter().filter_map(AssetTarget::of).collect();
    let final_app = module_steps
        .iter()
        .rev()
        .find(|s| s.module.info.function == ModuleFunction::UserPart)
        .map(|s| s.module.clone());
    if !keeps_assets_after(twin, module_steps) {
        if let Some(asset) = assets.first() {
            return Err(PlanError::Refused {
                file: asset.module.origin.to_string(),
                reason: format!(
                    "the {} keeps no assets with this Device OS (asset storage comes with Device OS 5.5.0 on the platforms that have it)",
                    twin.platform().display_name
                ),
                help: "flash Device OS 5.5.0 or later with the bundle (--device-os VERSION)"
                    .into(),
            });
        }
        return Ok((Vec::new(), Vec::new()));
    }
    let on_device = twin.available_assets();
    let mut required: Vec<(String, u8, Vec<u8>)> = match &final_app {
        Some(app) => Module::parse(&app.bytes)
            .map(|m| {
                m.asset_dependencies()
                    .map(|a| (a.display_name().to_string(), a.hash_type, a.hash.to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
        None => twin
            .required_assets()
            .into_iter()
            .map(|a| (a.name, a.hash_type, a.hash))
            .collect(),
    };
    required.dedup();
    let mut unmet = Vec::new();
    for (name, hash_type, hash) in &required {
        let wanted = AssetRef {
            name: name.as_bytes(),
            hash_type: *hash_type,
            hash,
        };
        let available = assets
            .iter()
            .map(AssetTarget::asset)
            .chain(on_device.iter().map(|a| a.asset()));
        let verdict = rules::asset_dependency(&wanted, available);
        if !verdict.is_met() {
            unmet.push(unmet_words(&wanted, &verdict));
        }
    }
    if !unmet.is_empty() && !req.force.assets {
        let app = final_app.map_or_else(
            || "the application on the device".to_string(),
            |a| a.origin.to_string(),
        );
        return Err(PlanError::AssetsMissing {
            app,
            unmet,
            help: "put the assets the application requires in the bundle, under assets/ with the names the application gives them (binary-version-reader's createApplicationAndAssetBundle and `particle compile` do); --force assets flashes anyway, and the device then runs in safe mode".into(),
        });
    }
    // Assets reach the device only through the system's update path: serial YMODEM or the
    // control-request firmware update, never DFU.
    let action = if req.via == Via::Usb || (req.via != Via::Serial && req.also.contains(&Via::Usb))
    {
        Action::Usb
    } else {
        Action::Serial
    };
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for asset in &assets {
        let there = on_device.iter().any(|a| a.asset().same_as(&asset.asset()));
        if there {
            skipped.push(format!(
                "{}: asset `{}` already on the device (same name and SHA-256)",
                asset.module.origin, asset.name
            ));
            continue;
        }
        let is_required = required
            .iter()
            .any(|(n, _, h)| *n == asset.name && *h == asset.sha256);
        steps.push(asset_step(asset, is_required, action.clone()));
    }
    if !steps.is_empty() && req.via == Via::Dfu && action == Action::Serial {
        return Err(PlanError::NoOrder {
            via: req.via.name(),
            reason: "assets are installed through the system firmware's update path, which DFU does not reach".into(),
            help: "use --via usb (control requests, Device OS 0.8 and later) or --via serial (listening mode): the system stores each asset it receives".into(),
        });
    }
    Ok((steps, skipped))
}

fn asset_step(asset: &AssetTarget<'_>, required: bool, action: Action) -> Step {
    let reason = if required {
        format!("asset `{}`, which the application requires", asset.name)
    } else {
        format!("asset `{}` of the bundle", asset.name)
    };
    Step {
        module: asset.module.clone(),
        action,
        from_version: None,
        requested: true,
        reason,
    }
}

/// "asset `coproc.bin` (sha256 4c04…); the bundle does not contain it" and its kin.
fn unmet_words(wanted: &AssetRef<'_>, verdict: &AssetVerdict<'_>) -> String {
    let hash = hex::encode(wanted.hash);
    let head = format!(
        "asset `{}` (sha256 {}…)",
        wanted.display_name(),
        hash.get(..16).unwrap_or(&hash)
    );
    match verdict {
        AssetVerdict::Present => head,
        AssetVerdict::Missing => {
            format!("{head}; neither the bundle nor the device holds it")
        }
        AssetVerdict::Renamed { found } => format!(
            "{head}; its contents are there as `{}`, and Device OS looks an asset up by its name and hash together",
            found.display_name()
        ),
        AssetVerdict::OtherContents { found } => {
            let other = hex::encode(found.hash);
            format!(
                "{head}; the `{}` there has other contents (sha256 {}…)",
                found.display_name(),
                other.get(..16).unwrap_or(&other)
            )
        }
    }
}

/// Whether the device keeps assets once the module steps have run: the platform has an
/// asset store and the system part 1 it ends with is of a release that has one.
fn keeps_assets_after(twin: &Device, module_steps: &[Step]) -> bool {
    let part1 = ModuleRef::new(ModuleFunction::SystemPart, 1);
    let system = module_steps
        .iter()
        .rev()
        .find(|s| s.module.slot() == part1)
        .map(|s| s.module.info.version)
        .or_else(|| twin.system_version());
    rules::has_assets(twin.platform(), system)
}
