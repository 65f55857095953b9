//! `modflash flash` on several devices: a plan per device, identical plans shown once, one
//! confirmation, parallel runs with a line per device, and a summary with the command that
//! retries the devices that failed.

use modflash::fleet::{Fleet, RunOptions};
use modflash::request::Wanted;
use modflash::DeviceRef;

use crate::args::RunArgs;
use crate::fleet_render::FleetRenderer;
use crate::ui::{say, CmdResult, EXIT_CHECK_FAILED, EXIT_OK};
use crate::view::fleet::{show_plans, summary};

/// How many devices at once, and how often a transient failure is retried.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct FleetArgs {
    /// Devices flashed at once (default: all of them).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Attempts after a transient transport failure (a refusal is never retried).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub retries: u32,
}

/// Flashes `devices`.
pub fn flash(
    devices: &[DeviceRef],
    wanted: &Wanted,
    json: bool,
    run: RunArgs,
    fleet_args: FleetArgs,
) -> CmdResult {
    let labels: Vec<String> = devices.iter().map(ToString::to_string).collect();
    let mut render = FleetRenderer::new(labels, json);
    let mut fleet = Fleet::plan(devices, wanted);
    let plans = fleet.plans(&mut |i, e| render.event(i, e));
    if !json {
        show_plans(&plans);
    }
    let to_write = plans
        .iter()
        .filter(|p| p.planned.as_ref().is_ok_and(|pl| !pl.plan.steps.is_empty()))
        .count();
    let go = !run.dry_run
        && to_write > 0
        && (run.yes || crate::ui::confirm(&format!("Flash {to_write} devices?"), json)?);
    let options = RunOptions {
        jobs: fleet_args.jobs.unwrap_or(devices.len()),
        retries: fleet_args.retries,
        backup: !run.no_backup,
        pace: run.pace.into(),
    };
    let cancel = crate::signals::catch();
    let runs = fleet.run(go.then_some(options), &cancel, &mut |i, e| {
        render.event(i, e)
    });
    crate::signals::release();
    for (i, r) in runs.iter().enumerate() {
        render.done(i, if r.verified() { "verified" } else { "done" });
    }
    // Declined or a dry run; with nothing to write anywhere the summary says why.
    if !go && to_write > 0 {
        say(if run.dry_run {
            "Dry run: nothing was written."
        } else {
            "Nothing was written."
        });
        return Ok(if plans.iter().all(|p| p.planned.is_ok()) {
            EXIT_OK
        } else {
            EXIT_CHECK_FAILED
        });
    }
    summary(&plans, &runs, json, run.no_verify)
}
