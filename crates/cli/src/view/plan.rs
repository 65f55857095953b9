//! How a plan is shown: the human text (steps, places, reasons, the predicted state) and the
//! stable JSON fields of `plan --json` and `flash --json` (docs/json.md).

use anstream::println;
use modflash::plan::{Action, Plan};
use modflash_device::Mode;
use modflash_module::release::{release_name, releases_installing};
use modflash_module::{ModuleFunction, ModuleInfo};
use serde_json::Value;

use crate::view::stream::PlanJson;

use crate::ui::Style;

/// The plan as JSON (`plan --json`; the fields are [`PlanJson`]'s).
pub fn plan_json(device: &str, p: &Plan) -> Value {
    serde_json::to_value(PlanJson::new(device, p)).unwrap_or(Value::Null)
}

/// A module version with the Device OS releases that install it: "1502 (1.5.0)", "501
/// (1.5.0–1.5.2)", or the bare number for an application or an unknown version.
fn version_text(v: u16, m: &ModuleInfo) -> String {
    let releases = match (m.function, modflash_module::platform(m.platform_id)) {
        (ModuleFunction::UserPart, _) | (_, None) => Vec::new(),
        (function, Some(platform)) => releases_installing(platform, function, m.index, v).collect(),
    };
    match releases.as_slice() {
        [] => match (m.function, release_name(v)) {
            (ModuleFunction::SystemPart, Some(r)) => format!("{v} ({r})"),
            _ => v.to_string(),
        },
        [one] => format!("{v} ({one})"),
        [first, .., last] => format!("{v} ({first}–{last})"),
    }
}

/// Prints the plan for people.
pub fn print_plan(style: &Style, device: &str, p: &Plan) {
    for s in &p.skipped {
        println!("{} {s}", style.dim("skip:"));
    }
    if p.steps.is_empty() {
        println!("Nothing to write: {device} already has everything asked for.");
        if p.leave_dfu {
            println!("It is in DFU mode: the flash resets it into its firmware.");
        }
        return;
    }
    let transports: Vec<String> = p
        .transports()
        .iter()
        .map(|v| v.name().to_uppercase())
        .collect();
    println!(
        "Plan for {device} over {} — {} write{}, {} bytes:",
        transports.join(" + "),
        p.steps.len(),
        if p.steps.len() == 1 { "" } else { "s" },
        p.bytes()
    );
    for (i, s) in p.steps.iter().enumerate() {
        let m = &s.module.info;
        if let Action::DfuErase { alt, address, len } = s.action {
            println!(
                "  {}. erase {len} bytes at {address:#010x} (alt {alt})  dfu  {len} bytes",
                i + 1
            );
            println!("     {}", style.dim(&s.reason));
            continue;
        }
        if let Some(name) = s.module.asset_name() {
            println!(
                "  {}. asset {}  asset store, through the system's update path  {}  {} bytes",
                i + 1,
                style.bold(&format!("`{name}`")),
                s.transport(),
                s.bytes()
            );
            println!(
                "     {}",
                style.dim(&format!("{} — {}", s.module.origin, s.reason))
            );
            continue;
        }
        let from = s
            .from_version
            .map_or("none".to_string(), |v| version_text(v, m));
        let place = match s.action {
            Action::DfuWrite { alt, address } => format!("{address:#010x} (alt {alt})"),
            Action::DfuStageBootloader { alt, address } => {
                format!("{address:#010x} (alt {alt}, OTA region) + OTA flag in the DCT")
            }
            Action::Serial | Action::Usb => "OTA region, installed at reset".into(),
            Action::DfuErase { .. } => String::new(),
        };
        println!(
            "  {}. {} {from} → {}  {place}  {}  {} bytes",
            i + 1,
            style.bold(&m.slot().to_string()),
            version_text(m.version, m),
            s.transport(),
            s.bytes()
        );
        println!(
            "     {}",
            style.dim(&format!("{} — {}", s.module.origin, s.reason))
        );
    }
    let modules: Vec<String> = p
        .prediction
        .modules
        .iter()
        .map(|(slot, v)| format!("{slot} {v}"))
        .collect();
    let verdict = if p.prediction.app_runs() {
        style.good("the app runs")
    } else {
        style.bad(&format!(
            "the app does not run ({})",
            p.prediction.mode.name()
        ))
    };
    println!(
        "Predicted: {verdict}, LED {}; {}",
        p.prediction.led,
        modules.join(", ")
    );
}

/// "runs the app", "is in safe mode", ...
pub fn mode_words(mode: Mode) -> &'static str {
    match mode {
        Mode::App => "runs the app",
        Mode::SafeMode => "is in safe mode",
        Mode::NoApp => "runs no app",
        Mode::Dfu => "is in DFU mode",
        Mode::Listening => "is in listening mode",
        Mode::Panic => "crashes at start",
        Mode::Off => "is off",
    }
}
