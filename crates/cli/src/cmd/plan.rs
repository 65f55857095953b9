//! `modflash plan`: the plan for installing modules on a device, proven on its twin; nothing is
//! written. With `--inventories DIR`, one plan per describe JSON file (JSON lines).

use std::path::{Path, PathBuf};

use modflash::catalog::Catalog;
use modflash::inventory::Inventory;
use modflash::plan::{plan, Request, Via};
use modflash::Session;
use serde_json::json;

use crate::args::PlanArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_OK};
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

/// Runs `plan`.
pub fn run(args: PlanArgs, inventories: Option<PathBuf>) -> CmdResult {
    if let Some(dir) = inventories {
        return run_inventories(&args, &dir);
    }
    let devref = args.device.require()?;
    let wanted = args.wanted();
    wanted.check()?;
    // One document on standard output: what happens meanwhile goes to standard error.
    let mut renderer = Renderer::new(false);
    let mut session = Session::open(&devref)?;
    let plan = wanted.plan(&mut session, &mut renderer).map_err(refused)?;
    if args.json {
        say(
            &serde_json::to_string_pretty(&plan_json(&devref.to_string(), &plan))
                .unwrap_or_default(),
        );
    } else {
        print_plan(&Style::stdout(), &session.label(), &plan);
    }
    Ok(EXIT_OK)
}

fn run_inventories(args: &PlanArgs, dir: &Path) -> CmdResult {
    let wanted = args.wanted();
    let mut catalog = Catalog::load_home();
    for d in &args.catalog {
        let (c, _) = Catalog::load_dir(d).map_err(modflash::Error::from)?;
        catalog.extend(c);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let started = std::time::Instant::now();
    for f in &files {
        let result = plan_one(f, &wanted, &catalog);
        let line = match result {
            Ok(p) => {
                json!({"inventory": f.display().to_string(), "ok": true, "steps": p.steps.len(), "bytes": p.bytes(),
                       "final_mode": p.prediction.mode.name(), "error": null})
            }
            Err(e) => {
                json!({"inventory": f.display().to_string(), "ok": false, "steps": null, "bytes": null,
                       "final_mode": null, "error": e.to_string()})
            }
        };
        say(&line.to_string());
    }
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    crate::ui::note(&format!(
        "{} inventories in {elapsed:.1} ms ({:.2} ms per plan)",
        files.len(),
        elapsed / files.len().max(1) as f64
    ));
    Ok(EXIT_OK)
}

/// The plan for one describe JSON file, on a twin of the device it describes.
fn plan_one(
    file: &Path,
    wanted: &modflash::request::Wanted,
    catalog: &Catalog,
) -> Result<modflash::plan::Plan, modflash::Error> {
    let text = std::fs::read_to_string(file).map_err(|source| modflash::Error::Io {
        action: "read",
        path: file.display().to_string(),
        source,
    })?;
    let inventory = Inventory::from_describe(&text)?;
    let twin = modflash::twin::twin_of(&inventory)?;
    let targets = wanted.targets(catalog, twin.platform())?;
    let request = Request {
        twin: &twin,
        targets,
        catalog,
        via: wanted.via.unwrap_or(Via::Dfu),
        also: Vec::new(),
        alternative: None,
        force: modflash::plan::Force::default(),
        factory: wanted.factory,
    };
    Ok(plan(&request)?)
}
