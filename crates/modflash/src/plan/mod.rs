//! The planner: from what is installed and what the user wants, the cheapest sequence of
//! writes that the device accepts step by step and that ends with every dependency met and
//! the app running — searched on a header-level model ([`model`]), ordered by [`search`],
//! placed ([`placement`]) and proven on a `Device` twin ([`prove`]).

mod model;
mod placement;
mod prove;
mod run;
mod search;
mod types;

use modflash_module::platform::{Platform, Store};
use modflash_module::rules::ERASED;
use modflash_module::ModuleFunction;

use crate::catalog::Candidate;
use model::{final_state, initial_state, Model};
use placement::{dfu_action, invalidate_legacy_app, plan_factory};
use prove::prove;
pub use prove::replay;
pub use run::{compare, flash, run_steps, tasks_of, FlashOptions, Flashed, Proof};
use search::{choose_finals, reason_for, search};
pub use types::{
    Action, Force, Missing, Plan, PlanError, Prediction, Request, Step, Via, OTA_FLAG_OFFSET,
};

/// Finds and proves a plan.
pub fn plan(req: &Request<'_>) -> Result<Plan, PlanError> {
    let twin = req.twin;
    let platform = twin.platform();
    // Gate every requested file.
    for t in &req.targets {
        gate(platform, t, req)?;
    }
    // Candidate pool: targets first (ids 0..n), then the catalogue for this platform.
    let mut pool: Vec<Candidate> = req.targets.clone();
    for c in req.catalog.for_platform(platform.id) {
        if !req
            .targets
            .iter()
            .any(|p| p.sha256 == c.sha256 && p.info == c.info)
        {
            pool.push(c.clone());
        }
    }
    let model = Model {
        platform,
        pool: &pool,
    };
    let start = initial_state(twin);
    // Skip what is already installed (same SHA-256 in the same slot).
    let hal = twin.hal();
    let mut skipped = Vec::new();
    let mut targets = Vec::new();
    for (id, t) in req.targets.iter().enumerate() {
        let installed = hal
            .system_info()
            .into_iter()
            .find(|f| {
                f.bounds.store
                    == if req.factory {
                        Store::Factory
                    } else {
                        Store::Main
                    }
                    && f.info.is_some_and(|i| i.slot() == t.slot())
            })
            .and_then(|f| f.sha256);
        if installed == Some(t.sha256) {
            skipped.push(format!(
                "{}: already installed ({} version {}, same SHA-256)",
                t.origin,
                t.slot(),
                t.info.version
            ));
        } else {
            targets.push(id);
        }
    }
    if req.factory {
        return plan_factory(req, &pool, &targets, skipped);
    }
    let finals = choose_finals(&model, &start, &targets, req.force)?;
    let final_layout = model.layout(&final_state(&model, &start, &finals));
    let steps = search(&model, &start, &finals, req)?;
    let mut plan_steps = Vec::new();
    let mut state = start.clone();
    for id in steps {
        let c = &pool[id];
        let slot = c.slot();
        let from_version = state
            .slots
            .get(&slot)
            .map(|h| h.version)
            .filter(|&v| v != ERASED);
        let action = match req.via {
            Via::Serial => Action::Serial,
            Via::Dfu => dfu_action(platform, model.layout(&state), final_layout, c),
        };
        let reason = reason_for(&model, &start, &targets, &finals, id);
        state = model.install(&state, id);
        plan_steps.push(Step {
            module: c.clone(),
            action,
            from_version,
            requested: targets.contains(&id),
            reason,
        });
    }
    if req.via == Via::Dfu {
        invalidate_legacy_app(&mut plan_steps, &start, final_layout);
    }
    let prediction = prove(twin, &plan_steps, req.via, req.force)?;
    Ok(Plan {
        via: req.via,
        steps: plan_steps,
        skipped,
        prediction,
        factory: false,
    })
}

fn gate(platform: &'static Platform, t: &Candidate, req: &Request<'_>) -> Result<(), PlanError> {
    let file = t.origin.to_string();
    if t.info.platform_id != platform.id {
        let theirs = modflash_module::platform(t.info.platform_id).map_or_else(
            || format!("platform {}", t.info.platform_id),
            |p| p.display_name.to_string(),
        );
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "this is a {} for the {theirs} (platform {}), not for this device's platform, the {} (platform {}). Flashing it would leave the device without a working app",
                t.info.slot(),
                t.info.platform_id,
                platform.display_name,
                platform.id
            ),
            help: format!(
                "use the {} build of this firmware (--force cannot override a platform mismatch)",
                platform.display_name
            ),
        });
    }
    let has_region = platform
        .layouts()
        .iter()
        .any(|l| l.main_bounds(t.slot()).is_some());
    if !has_region {
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "the {} has no place for a {}",
                platform.display_name,
                t.slot()
            ),
            help: "check that this is the module you meant to flash".into(),
        });
    }
    if req.factory && t.info.function != ModuleFunction::UserPart {
        return Err(PlanError::Refused {
            file,
            reason: format!(
                "only an application can go to the factory-reset slot; this is a {}",
                t.slot()
            ),
            help: "drop --factory".into(),
        });
    }
    Ok(())
}
