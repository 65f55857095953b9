//! Where each step goes over DFU: the legacy Gen3 application made way for, and plans for the
//! factory-reset slot.

use modflash_module::platform::{Layout, Platform};
use modflash_module::rules::{self, DfuPlace};
use modflash_module::{ModuleFunction, ModuleRef};

use super::model::State;
use super::prove::prove;
use super::types::{Action, Plan, PlanError, Request, Step, Via};
use crate::catalog::Candidate;

/// How `c` is written over DFU when the memory map `layout` is in force and `final_layout`
/// will be ([`rules::dfu_place`]): at its own address, or staged in the OTA region when it is
/// a bootloader.
pub(super) fn dfu_action(
    platform: &'static Platform,
    layout: &'static Layout,
    final_layout: &'static Layout,
    c: &Candidate,
) -> Action {
    match rules::dfu_place(platform, layout, final_layout, &c.info) {
        Some(DfuPlace::Stage { alt, address }) => Action::DfuStageBootloader { alt, address },
        Some(DfuPlace::Write { alt, address }) => Action::DfuWrite { alt, address },
        None => Action::DfuWrite {
            alt: 0,
            address: c.info.start_address,
        },
    }
}

/// Gen3 from 3.1 runs the legacy 128 KB application (user part 1 at 0xD4000) instead of the
/// 256 KB one (user part 2) when both are valid. Over DFU nothing erases the old one, so the
/// plan erases its first page right before writing the new app over DFU (as particle-cli
/// does); over serial or USB control requests the device's own copy does it.
pub(super) fn invalidate_legacy_app(steps: &mut Vec<Step>, start: &State, final_layout: &Layout) {
    let legacy = ModuleRef::new(ModuleFunction::UserPart, 1);
    let Some(app_at) = steps.iter().position(|s| {
        s.module.slot() == ModuleRef::new(ModuleFunction::UserPart, 2) && s.via() == Via::Dfu
    }) else {
        return;
    };
    let (Some(bounds), Some(old)) = (final_layout.main_bounds(legacy), start.slots.get(&legacy))
    else {
        return;
    };
    let Some((alt, address)) = rules::dfu_address(final_layout, bounds.location, bounds.start)
    else {
        return;
    };
    if steps.iter().any(|s| s.module.slot() == legacy) {
        return;
    }
    let app = steps[app_at].module.clone();
    steps.insert(
        app_at,
        Step {
            module: app,
            action: Action::DfuErase {
                alt,
                address,
                len: 4096,
            },
            from_version: Some(old.version),
            requested: false,
            reason: format!(
                "erase the first page of the legacy 128 KB app at {:#x} (user part 1 version {}): Device OS prefers it over the new app",
                bounds.start, old.version
            ),
        },
    );
}

pub(super) fn plan_factory(
    req: &Request<'_>,
    pool: &[Candidate],
    targets: &[usize],
    skipped: Vec<String>,
) -> Result<Plan, PlanError> {
    let twin = req.twin;
    if req.via != Via::Dfu {
        return Err(PlanError::NoOrder {
            via: req.via.name(),
            reason: format!(
                "the factory-reset slot cannot be written {}",
                req.via.words()
            ),
            help: "use --via dfu".into(),
        });
    }
    let layout = twin.layout();
    let mut steps = Vec::new();
    for &id in targets {
        let c = &pool[id];
        let Some((alt, address)) = rules::dfu_factory_place(layout) else {
            return Err(PlanError::Refused {
                file: c.origin.to_string(),
                reason: format!(
                    "the {} has no factory-reset slot",
                    twin.platform().display_name
                ),
                help: "drop --factory".into(),
            });
        };
        steps.push(Step {
            module: c.clone(),
            action: Action::DfuWrite { alt, address },
            from_version: None,
            requested: true,
            reason: "requested (factory-reset image)".into(),
        });
    }
    let prediction = prove(twin, &steps, req.force)?;
    Ok(Plan {
        via: Via::Dfu,
        leave_dfu: super::leaves_dfu_only(twin, &steps, Via::Dfu),
        steps,
        skipped,
        prediction,
        factory: true,
    })
}
