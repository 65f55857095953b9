//! `modflash flash`: plan, confirm, write, verify — install modules and check that the device
//! ends as predicted.

use modflash::Session;
use modflash_module::release::release_name;
use serde_json::{json, Value};

use crate::args::PlanArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};
use crate::view::plan::{mode_words, plan_json, print_plan};

/// Runs `flash`.
pub fn run(args: PlanArgs, dry_run: bool, yes: bool) -> CmdResult {
    let style = Style::stdout();
    let devref = args.device.require()?;
    let device = devref.to_string();
    let wanted = args.wanted();
    wanted.check()?;
    let mut renderer = Renderer::new(args.json);
    let mut session = Session::open(&devref)?;
    let plan = wanted
        .plan(&mut session, &mut renderer)
        .map_err(super::plan::refused)?;
    let label = session.label();
    if !args.json {
        print_plan(&style, &label, &plan);
    }
    if dry_run || plan.steps.is_empty() && !plan.leave_dfu {
        if args.json {
            let mut v = plan_json(&device, &plan);
            v["executed"] = json!(false);
            say(&serde_json::to_string_pretty(&v).unwrap_or_default());
        } else if dry_run {
            say("Dry run: nothing was written.");
        }
        return Ok(EXIT_OK);
    }
    if !yes && !crate::ui::confirm("Proceed?", args.json)? {
        say("Cancelled: nothing was written.");
        return Ok(EXIT_CHECK_FAILED);
    }
    let cancel = crate::signals::catch();
    let result = modflash::plan::flash(&mut session, &plan, &mut renderer, &cancel);
    crate::signals::release();
    drop(renderer);
    // Saved whatever happened: the device's state is what it is now.
    session.save()?;
    let flashed = result.map_err(|e| {
        let doctor = format!("run `modflash doctor --device {device}` to see the device's state");
        let mut err = CliError::from(e).context("flashing failed");
        err.help = Some(
            err.help
                .map_or(doctor.clone(), |h| format!("{h}; {doctor}")),
        );
        err
    })?;
    if args.json {
        let mut v = plan_json(&device, &plan);
        v["executed"] = json!(true);
        v["verified"] = json!(flashed.mismatches.is_empty());
        v["mismatches"] = json!(flashed.mismatches);
        v["after"] = serde_json::to_value(&flashed.after).unwrap_or(Value::Null);
        say(&serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if !flashed.mismatches.is_empty() {
        return Err(modflash::Error::NotAsPredicted {
            mismatches: flashed.mismatches,
            help: format!("run `modflash doctor --device {device}`"),
        }
        .into());
    }
    if !args.json {
        let release = flashed
            .after
            .system_version()
            .and_then(release_name)
            .map(|r| format!(", Device OS {r}"))
            .unwrap_or_default();
        match &flashed.observed {
            Some(o) => say(&format!(
                "{} {label} {} (LED {}){release}; every module matches the plan.",
                style.good("Verified:"),
                mode_words(o.mode),
                o.led
            )),
            None => say(&format!(
                "{} every module read back from {label} matches the plan{release}. Its running \
                 mode cannot be observed from here; with these modules the device model {}.",
                style.good("Verified:"),
                mode_words(plan.prediction.mode)
            )),
        }
    }
    Ok(EXIT_OK)
}
