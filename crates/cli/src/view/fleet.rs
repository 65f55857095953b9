//! How a run on several devices is shown: plans grouped (identical plans once), and the summary
//! with the command that retries the devices that failed.

use std::collections::BTreeMap;

use modflash::fleet::{DevicePlan, DeviceRun};
use modflash_module::release::release_name;

use crate::ui::{say, CliError, CmdResult, Style, EXIT_OK};
use crate::view::plan::print_plan;
use crate::view::stream::{DeviceSummary, Line};
use crate::view::table::table;

/// "1.5.0, app 6" for an inventory.
fn state(inventory: &modflash::inventory::Inventory) -> String {
    let os = inventory
        .system_version()
        .map(|v| release_name(v).map_or(v.to_string(), str::to_string))
        .unwrap_or_else(|| "no Device OS".into());
    let app = inventory
        .modules
        .iter()
        .find(|m| m.function == "user" && m.is_main())
        .map_or(String::new(), |m| format!(", app {}", m.version));
    format!("{os}{app}")
}

/// Shows the plans, identical ones once with the devices they are for.
pub fn show_plans(plans: &[DevicePlan]) {
    let style = Style::stdout();
    let mut groups: BTreeMap<String, Vec<&DevicePlan>> = BTreeMap::new();
    for p in plans {
        let key = match &p.planned {
            Ok(planned) => format!("{:?}", crate::view::plan::plan_json("", &planned.plan)),
            Err(e) => format!("error {e}"),
        };
        groups.entry(key).or_default().push(p);
    }
    for group in groups.values() {
        let names: Vec<&str> = group.iter().map(|p| p.label.as_str()).collect();
        match &group[0].planned {
            Ok(planned) => print_plan(&style, &names.join(", "), &planned.plan),
            Err(e) => say(&format!(
                "{} {}: {}",
                style.bad("no plan for"),
                names.join(", "),
                with_help(e)
            )),
        }
    }
}

/// How one device ended, for the summary.
struct Outcome<'a> {
    run: &'a DeviceRun,
    before: String,
    after: String,
    /// `verified`, `written` (not proven, with `--no-verify`), `nothing_to_do`, `no_plan`,
    /// `not_verified`, `not_as_planned` or `failed`.
    result: &'static str,
    /// What went wrong, with what to do.
    problem: Option<String>,
}

fn outcome<'a>(p: &DevicePlan, r: &'a DeviceRun, accept_unverified: bool) -> Outcome<'a> {
    let before = p
        .planned
        .as_ref()
        .map_or("?".into(), |pl| state(&pl.before));
    let (after, result, problem) = match (&p.planned, &r.flashed) {
        (Err(e), _) => ("-".into(), "no_plan", Some(with_help(e))),
        (Ok(_), None) => (before.clone(), "nothing_to_do", None),
        (Ok(_), Some(Ok(f))) if f.verified() => (state(&f.after), "verified", None),
        (Ok(_), Some(Ok(f))) if f.mismatches.is_empty() && accept_unverified => {
            (state(&f.after), "written", None)
        }
        (Ok(pl), Some(Ok(f))) if f.mismatches.is_empty() => (
            state(&f.after),
            "not_verified",
            f.require_proof(&pl.plan).err().map(|e| with_help(&e)),
        ),
        (Ok(_), Some(Ok(f))) => (
            state(&f.after),
            "not_as_planned",
            Some(f.mismatches.join("; ")),
        ),
        (Ok(_), Some(Err(e))) => ("?".into(), "failed", Some(with_help(e))),
    };
    Outcome {
        run: r,
        before,
        after,
        result,
        problem,
    }
}

/// The summary (a table, or with `json` one JSON object); exit 0 only when every device ends
/// as planned.
pub fn summary(
    plans: &[DevicePlan],
    runs: &[DeviceRun],
    json: bool,
    accept_unverified: bool,
) -> CmdResult {
    let outcomes: Vec<Outcome> = plans
        .iter()
        .zip(runs)
        .map(|(p, r)| outcome(p, r, accept_unverified))
        .collect();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o.result, "verified" | "nothing_to_do" | "written"))
        .map(|o| o.run.device.clone())
        .collect();
    if json {
        let devices = outcomes
            .iter()
            .map(|o| DeviceSummary {
                device: o.run.device.clone(),
                label: o.run.label.clone(),
                before: o.before.clone(),
                after: o.after.clone(),
                result: o.result.to_string(),
                problem: o.problem.clone(),
                attempts: o.run.attempts,
                seconds: o.run.seconds,
            })
            .collect();
        let line = Line::Summary { devices };
        say(&serde_json::to_string(&line).unwrap_or_default());
    } else {
        let rows = outcomes.iter().map(|o| {
            let attempts = match o.run.attempts {
                0 | 1 => String::new(),
                n => format!(" ({n} attempts)"),
            };
            let below = if o.problem.is_some() { " (below)" } else { "" };
            [
                o.run.label.clone(),
                o.before.clone(),
                o.after.clone(),
                format!("{}{attempts}{below}", o.result.replace('_', " ")),
                format!("{:.1} s", o.run.seconds),
            ]
        });
        say(&table(
            ["device", "before", "after", "result", "time"],
            rows,
        ));
        for o in &outcomes {
            if let Some(problem) = &o.problem {
                say(&format!("  {}: {problem}", o.run.label));
            }
        }
        let unproven = outcomes.iter().filter(|o| o.result == "written").count();
        if failed.is_empty() && unproven == 0 {
            say(&format!(
                "{} every device ends as planned",
                Style::stdout().good("Verified:")
            ));
        } else if failed.is_empty() {
            say(&format!(
                "{} every device ends as planned; on {unproven} of them a module written is not \
                 proven (--no-verify)",
                Style::stdout().warn("Written:")
            ));
        }
    }
    if failed.is_empty() {
        return Ok(EXIT_OK);
    }
    let again = retry_command(&failed);
    Err(CliError::check(format!(
        "{} of {} devices did not end as planned: {}",
        failed.len(),
        runs.len(),
        failed.join(", ")
    ))
    .with_help(format!("to retry just those: {again}")))
}

/// An error and what to do about it, on one line.
fn with_help(e: &modflash::Error) -> String {
    match e.help_text() {
        Some(help) => format!("{e} (help: {help})"),
        None => e.to_string(),
    }
}

/// This command line with its devices replaced by `devices`.
fn retry_command(devices: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut args = std::env::args().peekable();
    while let Some(a) = args.next() {
        if a == "--device" {
            args.next();
            continue;
        }
        if a.starts_with("--device=") {
            continue;
        }
        out.push(a);
    }
    for d in devices {
        out.push("--device".into());
        out.push(d.clone());
    }
    crate::ui::command_line(out)
}
