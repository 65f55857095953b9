//! `modflash flash`: plan, confirm, write, verify — install modules and check that the device
//! ends as predicted, each module written proven (read back, or its SHA-256 reported).

use modflash::plan::{FlashOptions, Proof};
use modflash::progress::Evidence;
use modflash::request::Wanted;
use modflash::{DeviceRef, Session};
use modflash_module::release::release_name;

use crate::args::{PlanArgs, RunArgs};
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};
use crate::view::plan::{mode_words, print_plan};
use crate::view::stream::{FlashResult, Line};

/// Runs `flash` on the device, or the devices, named.
pub fn run(
    args: PlanArgs,
    run: RunArgs,
    fleet: super::fleet::FleetArgs,
    monitor: bool,
) -> CmdResult {
    let wanted = args.wanted();
    wanted.check()?;
    let devices = args.device.targets(&wanted.platforms())?;
    match devices.as_slice() {
        [one] => {
            let code = flash(one, &wanted, args.json, run)?;
            if monitor && code == EXIT_OK && !run.dry_run {
                let cancel = crate::signals::catch();
                let mut renderer = Renderer::new(false);
                modflash::transport::serial::monitor(
                    one,
                    9600,
                    &mut std::io::stdout(),
                    &mut renderer,
                    &cancel,
                )?;
            }
            Ok(code)
        }
        several if monitor => Err(CliError::usage(format!(
            "--monitor follows one device; {} are named",
            several.len()
        ))
        .with_help("name one --device, or leave out --monitor")),
        several => super::fleet::flash(several, &wanted, args.json, run, fleet),
    }
}

/// Plans `wanted` on the device `devref`, shows the plan, asks, flashes and verifies.
pub fn flash(devref: &DeviceRef, wanted: &Wanted, json_output: bool, run: RunArgs) -> CmdResult {
    let style = Style::stdout();
    let device = devref.to_string();
    wanted.check()?;
    let mut renderer = Renderer::new(json_output);
    let mut session = Session::open(devref)?;
    let planned = wanted
        .plan_from(&mut session, &mut renderer)
        .map_err(super::plan::refused)?;
    let plan = &planned.plan;
    let label = session.label();
    if !json_output {
        print_plan(&style, &label, plan);
    }
    if run.dry_run || plan.steps.is_empty() && !plan.leave_dfu {
        if json_output {
            emit(FlashResult::new(&device, plan, None));
        } else if run.dry_run {
            say("Dry run: nothing was written.");
        }
        return Ok(EXIT_OK);
    }
    if !run.yes && !crate::ui::confirm("Proceed?", json_output)? {
        say("Cancelled: nothing was written.");
        return Ok(EXIT_CHECK_FAILED);
    }
    session.set_pace(run.pace.into());
    let cancel = crate::signals::catch();
    let options = FlashOptions {
        backup: !run.no_backup,
    };
    let result =
        modflash::history::flash_recorded(&mut session, &planned, options, &mut renderer, &cancel);
    crate::signals::release();
    drop(renderer);
    // Saved whatever happened: the device's state is what it is now.
    session.save()?;
    let flashed = result.map_err(|e| {
        let next = if matches!(e, modflash::Error::Interrupted { .. }) {
            // The same command finishes the job: what is written is skipped, the rest follows.
            format!(
                "to finish, run the same command again: {}",
                crate::ui::command_line(std::env::args())
            )
        } else {
            format!("run `modflash doctor --device {device}` to see the device's state")
        };
        let mut err = CliError::from(e).context("flashing failed");
        err.help = Some(err.help.map_or(next.clone(), |h| format!("{h}; {next}")));
        if json_output {
            emit(FlashResult::new(&device, plan, None).failed(&err));
        }
        err
    })?;
    if json_output {
        emit(FlashResult::new(&device, plan, Some(&flashed)));
    }
    if !flashed.mismatches.is_empty() {
        return Err(modflash::Error::NotAsPredicted {
            mismatches: flashed.mismatches,
            help: format!("run `modflash doctor --device {device}`"),
        }
        .into());
    }
    if !json_output {
        say(&evidence_words(&style, &flashed.proofs));
    }
    if !run.no_verify {
        flashed.require_proof(plan)?;
    }
    if json_output {
        return Ok(EXIT_OK);
    }
    if !flashed.verified() {
        say(&format!(
            "{} the device is as predicted, but not every module written is proven.",
            style.warn("Written, not verified (--no-verify):")
        ));
        return Ok(EXIT_OK);
    }
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
    Ok(EXIT_OK)
}

/// Each module written and what proves it: "Evidence: system part 1 1502 read back; user part
/// 1 6 by its SHA-256, reported by the device; …".
fn evidence_words(style: &Style, proofs: &[Proof]) -> String {
    let each: Vec<String> = proofs
        .iter()
        .map(|p| {
            let how = match p.evidence {
                Evidence::ReadBack => "read back".to_string(),
                Evidence::Hash => "by its SHA-256, reported by the device".to_string(),
                Evidence::DeviceCrc => "header and suffix read back, and its CRC-32 checked and \
                                        passed by the device"
                    .to_string(),
                Evidence::HeaderAndSuffix => style.warn(
                    "NOT PROVEN (header and suffix read back, but the device did not report \
                     its CRC check of it)",
                ),
                Evidence::DeviceAccepted => style.warn(&format!(
                    "NOT PROVEN (accepted by the device, which reports no hash for it {})",
                    p.via.words()
                )),
                Evidence::None => style.warn("NOT PROVEN (not read back)"),
            };
            match &p.asset {
                Some(name) => format!("asset `{name}` {how}"),
                None => format!("{} {} {how}", p.slot, p.version),
            }
        })
        .collect();
    format!("Evidence: {}.", each.join("; "))
}

/// The last line of the `--json` stream.
fn emit(result: FlashResult) {
    say(&serde_json::to_string(&Line::Result(Box::new(result))).unwrap_or_default());
}
