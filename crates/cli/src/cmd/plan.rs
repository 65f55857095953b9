//! `modflash plan`: the plan for installing modules on a device, proven on its twin; nothing is
//! written. With `--inventories DIR`, one plan per describe JSON file (JSON lines).

use std::path::{Path, PathBuf};

use modflash::offline::plan_inventories;
use modflash::Session;
use serde_json::json;

use crate::args::PlanArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::view::plan::{plan_json, print_plan};

/// A planning failure: a refused file or plan says that nothing was written.
pub fn refused(e: modflash::Error) -> CliError {
    let refusal = matches!(e, modflash::Error::Plan(_))
        || (matches!(e, modflash::Error::Candidate(_)) && e.is_check_failure());
    let err = CliError::from(e);
    if refusal {
        err.context("refused, nothing was written")
    } else {
        err
    }
}

/// Runs `plan`; with `svg`, also draws the device before and after the plan there.
pub fn run(
    args: PlanArgs,
    inventories: Option<PathBuf>,
    platform: Option<String>,
    svg: Option<PathBuf>,
) -> CmdResult {
    if let Some(dir) = inventories {
        return run_inventories(&args, &dir, platform);
    }
    let devref = args.device.require()?;
    let wanted = args.wanted();
    wanted.check()?;
    // One document on standard output: what happens meanwhile goes to standard error.
    let mut renderer = Renderer::new(false);
    let mut session = Session::open(&devref)?;
    let (plan, twin) = wanted
        .plan_on_twin(&mut session, &mut renderer)
        .map_err(refused)?;
    if args.json {
        say(
            &serde_json::to_string_pretty(&plan_json(&devref.to_string(), &plan))
                .unwrap_or_default(),
        );
    } else {
        print_plan(&Style::stdout(), &session.label(), &plan);
    }
    if let Some(out) = svg {
        crate::cmd::map::plan_svg(&session, &twin, &plan, &out)?;
    }
    Ok(EXIT_OK)
}

fn run_inventories(args: &PlanArgs, dir: &Path, platform: Option<String>) -> CmdResult {
    let platform = platform
        .map(|name| {
            modflash_module::platform_by_name(&name).ok_or_else(|| {
                CliError::usage(format!("unknown platform `{name}`"))
                    .with_help("use a name such as photon, p1, electron, argon, boron or p2")
            })
        })
        .transpose()?;
    let wanted = args.wanted();
    let mut renderer = Renderer::new(false);
    let (mut count, mut exit) = (0, EXIT_OK);
    let started = std::time::Instant::now();
    plan_inventories(dir, &wanted, platform, &mut renderer, &mut |p| {
        count += 1;
        let (ok, error) = match &p.result {
            Ok(_) => (true, None),
            Err(e) => {
                let code = if e.is_check_failure() {
                    EXIT_CHECK_FAILED
                } else {
                    EXIT_USAGE
                };
                exit = exit.max(code);
                (false, Some(e.to_string()))
            }
        };
        let plan = p.result.as_ref().ok();
        let line = json!({
            "inventory": p.file.display().to_string(),
            "ok": ok,
            "platform": p.platform.as_ref().map(|(id, _)| modflash_module::platform(*id).map_or_else(|| id.to_string(), |p| p.name.to_string())),
            "platform_from": p.platform.as_ref().map(|(_, from)| from.to_string()),
            "steps": plan.map(|p| p.steps.len()),
            "bytes": plan.map(|p| p.bytes()),
            "final_mode": plan.map(|p| p.prediction.mode.name()),
            "error": error,
        });
        say(&line.to_string());
    })
    .map_err(refused)?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    crate::ui::note(&format!(
        "{count} inventories in {elapsed:.1} ms ({:.2} ms per plan)",
        elapsed / count.max(1) as f64
    ));
    Ok(exit)
}
