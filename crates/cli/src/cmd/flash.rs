//! `modflash plan`, `modflash flash` and `modflash doctor`: the compatibility gate, plans
//! proven on a twin, verified execution, and explanations of a device's state.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::inventory::Inventory;
use modflash::plan::{plan, Action, Force, Plan, PlanError, Request, Via};
use modflash_device::{Device, Mode};
use modflash_module::release::{platform_release, release_name, RELEASES};
use modflash_module::{ModuleFunction, ModuleRef};
use serde_json::{json, Value};

use crate::connect::{parse_ref, Connection};
use crate::progress::Reporter;
use crate::ui::{CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};

/// The transport a plan uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// USB DFU.
    Dfu,
    /// Serial listening mode (YMODEM).
    Serial,
}

/// A check `--force` may override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForceArg {
    /// Flash even when dependencies stay unmet (the device ends in safe mode).
    Dependencies,
}

/// Arguments shared by `plan` and `flash`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Module files to install (application, system parts, bootloader, ...).
    pub files: Vec<PathBuf>,
    /// The device: usb, usb:DEVICE_ID, serial:PORT or sim:NAME.
    #[arg(long)]
    pub device: Option<String>,
    /// Transport: dfu (default) or serial.
    #[arg(long, value_enum, default_value = "dfu")]
    pub via: ViaArg,
    /// Directory of Device OS module files to meet dependencies from (repeatable).
    #[arg(long, value_name = "DIR")]
    pub catalog: Vec<PathBuf>,
    /// Also install the system modules (bootloader, system parts, radio stack) of this
    /// Device OS release, from the catalogue.
    #[arg(long, value_name = "VERSION")]
    pub device_os: Option<String>,
    /// Write the application to the factory-reset slot.
    #[arg(long)]
    pub factory: bool,
    /// Override one named check.
    #[arg(long, value_enum, value_name = "CHECK")]
    pub force: Vec<ForceArg>,
    /// Print JSON (fields documented in docs/json.md).
    #[arg(long)]
    pub json: bool,
}

fn device_arg(args: &PlanArgs) -> Result<&str, CliError> {
    args.device.as_deref().ok_or_else(|| {
        CliError::usage("--device is required")
            .with_help("for example --device sim:demo or --device usb")
    })
}

fn plan_error(e: PlanError) -> CliError {
    let help = e.help().map(str::to_string);
    let err = CliError::check(format!("refused, nothing was written: {e}"));
    err.with_help_opt(help)
}

struct Planned {
    connection: Connection,
    plan: Plan,
}

fn build_plan(args: &PlanArgs) -> Result<Planned, CliError> {
    if args.files.is_empty() && args.device_os.is_none() {
        return Err(CliError::usage("nothing to flash")
            .with_help("name module files, or --device-os VERSION"));
    }
    let devref = parse_ref(device_arg(args)?)?;
    let mut connection = Connection::open(&devref)?;
    let platform = connection.platform();
    let mut catalog = Catalog::load_home();
    for dir in &args.catalog {
        let (c, _skipped) = Catalog::load_dir(dir).map_err(|e| {
            CliError::usage(e.to_string()).with_help("check the --catalog directory")
        })?;
        catalog.extend(c);
    }
    catalog.extend(connection.extra_catalog());
    let mut targets = Vec::new();
    for path in &args.files {
        let c = Candidate::from_file(path, Origin::File(path.clone())).map_err(|e| match e {
            modflash::catalog::CandidateError::Io { .. } => {
                CliError::usage(e.to_string()).with_help("check the path and permissions")
            }
            _ => CliError::check(format!("refused, nothing was written: {e}")).with_help(format!(
                "run `modflash inspect {}` for details",
                path.display()
            )),
        })?;
        targets.push(c);
    }
    if let Some(release) = &args.device_os {
        targets.extend(release_targets(&catalog, platform, release)?);
    }
    let twin = connection.twin()?;
    let req = Request {
        twin: &twin,
        targets,
        catalog: &catalog,
        via: match args.via {
            ViaArg::Dfu => Via::Dfu,
            ViaArg::Serial => Via::Serial,
        },
        force: Force {
            dependencies: args.force.contains(&ForceArg::Dependencies),
        },
        factory: args.factory,
    };
    let plan = plan(&req).map_err(plan_error)?;
    Ok(Planned { connection, plan })
}

/// The bootloader, radio stack and system parts of `release` for `platform`, from the catalogue.
fn release_targets(
    catalog: &Catalog,
    platform: &'static modflash_module::Platform,
    release: &str,
) -> Result<Vec<Candidate>, CliError> {
    let table = platform_release(platform, release).ok_or_else(|| {
        CliError::usage(format!(
            "Device OS {release} is not a release modflash knows for the {}",
            platform.display_name
        ))
        .with_help(format!(
            "known releases: {}",
            modflash_module::release::platform_releases(platform)
                .map(|r| r.release)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut out = Vec::new();
    for m in table.modules_for(platform) {
        if m.function == ModuleFunction::UserPart {
            continue;
        }
        let found = catalog
            .for_platform(platform.id)
            .filter(|c| {
                c.info.function == m.function
                    && c.info.index == m.index
                    && c.info.version == m.version
            })
            .min_by_key(|c| c.origin.is_synthetic())
            .cloned();
        match found {
            Some(c) => out.push(c),
            None => {
                return Err(CliError::check(format!(
                    "refused, nothing was written: the catalogue has no {} version {} (Device OS {release} {}) for the {}",
                    ModuleRef::new(m.function, m.index),
                    m.version,
                    m.file_name,
                    platform.display_name
                ))
                .with_help("add the release's files with `modflash catalog add DIR` or pass --catalog DIR"))
            }
        }
    }
    Ok(out)
}

fn plan_json(device: &str, p: &Plan) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            json!({
                "file": s.module.origin.to_string(),
                "function": s.module.info.function.name(),
                "index": s.module.info.index,
                "version": s.module.info.version,
                "from_version": s.from_version,
                "address": s.address(),
                "alt": match s.action {
                    Action::DfuWrite { alt, .. }
                    | Action::DfuStageBootloader { alt, .. }
                    | Action::DfuErase { alt, .. } => Some(alt),
                    Action::Serial => None,
                },
                "staged": matches!(s.action, Action::DfuStageBootloader { .. }),
                "erase": matches!(s.action, Action::DfuErase { .. }),
                "transport": s.transport(),
                "bytes": s.bytes(),
                "reason": s.reason,
            })
        })
        .collect();
    json!({
        "device": device,
        "via": p.via.name(),
        "steps": steps,
        "skipped": p.skipped,
        "bytes": p.bytes(),
        "final": {
            "mode": p.prediction.mode.name(),
            "led": p.prediction.led,
            "app_runs": p.prediction.app_runs(),
            "modules": p.prediction.modules.iter().map(|(slot, v)| json!({
                "function": slot.function.name(), "index": slot.index, "version": v
            })).collect::<Vec<_>>(),
        },
    })
}

fn version_text(v: u16, function: ModuleFunction) -> String {
    match (function, release_name(v)) {
        (ModuleFunction::SystemPart, Some(r)) => format!("{v} ({r})"),
        _ => v.to_string(),
    }
}

fn print_plan(style: &Style, device: &str, p: &Plan) {
    for s in &p.skipped {
        println!("{} {s}", style.dim("skip:"));
    }
    if p.steps.is_empty() {
        println!("Nothing to write: {device} already has everything asked for.");
        return;
    }
    println!(
        "Plan for {device} over {} — {} write{}, {} bytes:",
        p.via.name().to_uppercase(),
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
        let from = s
            .from_version
            .map_or("none".to_string(), |v| version_text(v, m.function));
        let place = match s.action {
            Action::DfuWrite { alt, address } => format!("{address:#010x} (alt {alt})"),
            Action::DfuStageBootloader { alt, address } => {
                format!("{address:#010x} (alt {alt}, OTA region) + OTA flag in the DCT")
            }
            Action::Serial => "OTA region, installed at reset".into(),
            Action::DfuErase { .. } => String::new(),
        };
        println!(
            "  {}. {} {from} → {}  {place}  {}  {} bytes",
            i + 1,
            style.bold(&m.slot().to_string()),
            version_text(m.version, m.function),
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

/// `modflash plan`; with `inventories`, one plan per describe JSON file in that directory
/// (JSON lines), for benchmarks and fleet checks.
pub fn run_plan(args: PlanArgs, inventories: Option<PathBuf>) -> CmdResult {
    if let Some(dir) = inventories {
        return run_plan_inventories(&args, &dir);
    }
    let planned = build_plan(&args)?;
    let label = planned.connection.label();
    let device = device_arg(&args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(device, &planned.plan)).unwrap_or_default()
        );
    } else {
        print_plan(&Style::stdout(), &label, &planned.plan);
    }
    Ok(EXIT_OK)
}

fn run_plan_inventories(args: &PlanArgs, dir: &PathBuf) -> CmdResult {
    let mut catalog = Catalog::load_home();
    for d in &args.catalog {
        let (c, _) = Catalog::load_dir(d).map_err(|e| CliError::usage(e.to_string()))?;
        catalog.extend(c);
    }
    let mut targets = Vec::new();
    for path in &args.files {
        targets.push(
            Candidate::from_file(path, Origin::File(path.clone()))
                .map_err(|e| CliError::check(format!("refused: {e}")))?,
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let started = std::time::Instant::now();
    let mut planned = 0usize;
    for f in &files {
        let name = f.display().to_string();
        let result = std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| Inventory::from_describe(&t).map_err(|e| e.to_string()))
            .and_then(|inv| {
                let platform = modflash_module::platform(inv.platform_id)
                    .ok_or_else(|| format!("unknown platform {}", inv.platform_id))?;
                modflash::twin::twin_from_inventory(platform, &inv)
            })
            .and_then(|twin| {
                let req = Request {
                    twin: &twin,
                    targets: targets.clone(),
                    catalog: &catalog,
                    via: match args.via {
                        ViaArg::Dfu => Via::Dfu,
                        ViaArg::Serial => Via::Serial,
                    },
                    force: Force::default(),
                    factory: args.factory,
                };
                plan(&req).map_err(|e| e.to_string())
            });
        planned += 1;
        let line = match result {
            Ok(p) => {
                json!({"inventory": name, "ok": true, "steps": p.steps.len(), "bytes": p.bytes(),
                             "final_mode": p.prediction.mode.name(), "error": null})
            }
            Err(e) => {
                json!({"inventory": name, "ok": false, "steps": null, "bytes": null, "final_mode": null, "error": e})
            }
        };
        println!("{line}");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{planned} inventories in {:.1} ms ({:.2} ms per plan)",
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1000.0 / planned.max(1) as f64
    );
    Ok(EXIT_OK)
}

/// `modflash flash`.
pub fn run_flash(args: PlanArgs, dry_run: bool, yes: bool) -> CmdResult {
    let style = Style::stdout();
    let Planned {
        mut connection,
        plan,
    } = build_plan(&args)?;
    let label = connection.label();
    let device = device_arg(&args)?.to_string();
    if !args.json {
        print_plan(&style, &label, &plan);
    }
    if dry_run || plan.steps.is_empty() {
        if args.json {
            let mut v = plan_json(&device, &plan);
            v["executed"] = json!(false);
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else if dry_run {
            println!("Dry run: nothing was written.");
        }
        return Ok(EXIT_OK);
    }
    if !yes && std::io::stdin().is_terminal() && !args.json {
        print!("Proceed? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Cancelled: nothing was written.");
            return Ok(EXIT_CHECK_FAILED);
        }
    }
    let mut reporter = Reporter::new(args.json);
    let result = {
        let mut target = connection.target();
        modflash::exec::run_steps(target.as_mut(), &plan.steps, plan.via, &mut |e| {
            reporter.event(e)
        })
    };
    drop(reporter);
    let after = connection.inventory();
    let actual_mode = connection
        .virtual_device()
        .map(|d| (d.state.mode, d.state.led, d.state.events.clone()));
    connection.finish()?;
    if let Err(e) = result {
        return Err(
            CliError::check(format!("flashing failed: {e}")).with_help(format!(
                "run `modflash doctor --device {device}` to see the device's state"
            )),
        );
    }
    let after = after?;
    let mismatches = compare(&plan, &after, actual_mode.as_ref().map(|(m, _, _)| *m));
    if args.json {
        let mut v = plan_json(&device, &plan);
        v["executed"] = json!(true);
        v["verified"] = json!(mismatches.is_empty());
        v["mismatches"] = json!(mismatches);
        v["after"] = serde_json::to_value(&after).unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if !mismatches.is_empty() {
        return Err(CliError::check(format!(
            "the device is not in the predicted state: {}",
            mismatches.join("; ")
        ))
        .with_help(format!("run `modflash doctor --device {device}`")));
    }
    if !args.json {
        let release = after
            .system_version()
            .and_then(release_name)
            .map(|r| format!(", Device OS {r}"))
            .unwrap_or_default();
        match actual_mode {
            Some((m, led, _)) => println!(
                "{} {label} {} (LED {led}){release}; every module matches the plan.",
                style.good("Verified:"),
                mode_words(m)
            ),
            None => println!(
                "{} every module read back from {label} matches the plan{release}. Its running \
                 mode cannot be observed from here; with these modules the device model {}.",
                style.good("Verified:"),
                mode_words(plan.prediction.mode)
            ),
        }
    }
    Ok(EXIT_OK)
}

/// "runs the app", "is in safe mode", ...
fn mode_words(mode: Mode) -> &'static str {
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

/// Differences between the predicted and the actual final state.
fn compare(plan: &Plan, after: &Inventory, mode: Option<Mode>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = mode {
        if m != plan.prediction.mode {
            out.push(format!(
                "mode is {}, predicted {}",
                m.name(),
                plan.prediction.mode.name()
            ));
        }
    }
    for (slot, version) in &plan.prediction.modules {
        match after.main_module(*slot) {
            Some(m)
                if m.version == *version
                    && m.checks.all() != plan.prediction.failing.contains(slot) => {}
            Some(m) => out.push(format!(
                "{slot} is version {} ({}), predicted version {version} ({})",
                m.version,
                if m.checks.all() {
                    "passing every check"
                } else {
                    "failing a check"
                },
                if plan.prediction.failing.contains(slot) {
                    "failing a check"
                } else {
                    "passing every check"
                }
            )),
            None => out.push(format!("{slot} is missing, predicted version {version}")),
        }
    }
    for step in &plan.steps {
        let slot = step.module.slot();
        if step.module.info.function == ModuleFunction::UserPart {
            let sha = after.main_module(slot).and_then(|m| m.sha256.clone());
            if sha.is_some_and(|s| s != step.module.sha_hex()) && step.reason == "requested" {
                out.push(format!(
                    "the {slot} on the device is not the file that was flashed"
                ));
            }
        }
    }
    out
}

/// `modflash doctor`.
pub fn run_doctor(device: &str, catalogs: &[PathBuf], json_output: bool) -> CmdResult {
    let devref = parse_ref(device)?;
    let mut connection = Connection::open(&devref)?;
    let twin: Device = connection.twin()?;
    let platform = connection.platform();
    let mode = twin.state.mode;
    let why: Vec<String> = twin
        .state
        .events
        .iter()
        .rev()
        .take_while(|e| !e.starts_with("power on"))
        .filter(|e| {
            e.contains("safe mode")
                || e.contains("factory")
                || e.contains("DFU")
                || e.contains("SOS")
                || e.contains("refused")
                || e.contains("running")
        })
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let diagnosis = match mode {
        Mode::App => "healthy: the application runs (breathing cyan)".to_string(),
        Mode::SafeMode => format!(
            "safe mode (breathing magenta) because {}",
            reason_from(&why, "the system found a problem")
        ),
        Mode::NoApp => "no application is installed (breathing magenta)".into(),
        Mode::Dfu => format!(
            "DFU mode (blinking yellow) because {}",
            reason_from(&why, "DFU mode was requested")
        ),
        Mode::Listening => {
            "listening mode (blinking blue): waiting for setup or a serial command".into()
        }
        Mode::Panic => format!(
            "the system crashes at start (red SOS): {}",
            reason_from(&why, "a system part is corrupt")
        ),
        Mode::Off => "the device is off".into(),
    };
    // A fix: the lowest release whose system parts meet what failed.
    let fix = suggest_fix(&twin, device, catalogs, &mut connection);
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "device": device,
                "platform": platform.name,
                "mode": mode.name(),
                "led": twin.state.led,
                "diagnosis": diagnosis,
                "evidence": why,
                "fix": fix.as_ref().map(|(cmd, steps)| json!({"command": cmd, "steps": steps})),
            }))
            .unwrap_or_default()
        );
    } else {
        let style = Style::stdout();
        println!("{}: {diagnosis}", style.bold(&connection.label()));
        for e in &why {
            println!("  {}", style.dim(e));
        }
        match &fix {
            Some((cmd, steps)) => println!("fix ({steps} step{}): {cmd}", if *steps == 1 { "" } else { "s" }),
            None if mode == Mode::App => {}
            None => println!("no automatic fix found: add the Device OS release of the app to the catalogue (`modflash catalog add DIR`)"),
        }
    }
    Ok(if mode == Mode::App {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    })
}

fn reason_from(why: &[String], fallback: &str) -> String {
    why.iter()
        .rev()
        .map(|e| {
            let e = e
                .strip_prefix("system: ")
                .or_else(|| e.strip_prefix("bootloader: "))
                .unwrap_or(e);
            let e = e
                .strip_prefix("safe mode: ")
                .or_else(|| e.strip_prefix("red SOS: "))
                .unwrap_or(e);
            e.to_string()
        })
        .next()
        .unwrap_or_else(|| fallback.to_string())
}

fn suggest_fix(
    twin: &Device,
    device: &str,
    catalogs: &[PathBuf],
    connection: &mut Connection,
) -> Option<(String, usize)> {
    if twin.state.mode == Mode::App {
        return None;
    }
    let platform = twin.platform();
    let mut catalog = Catalog::load_home();
    for dir in catalogs {
        if let Ok((c, _)) = Catalog::load_dir(dir) {
            catalog.extend(c);
        }
    }
    catalog.extend(connection.extra_catalog());
    // What the app needs, else what is installed, else the newest release.
    let inventory = Inventory::from_device(twin);
    let app_needs = inventory
        .modules
        .iter()
        .filter(|m| m.function() == ModuleFunction::UserPart && m.is_main())
        .flat_map(|m| m.deps().collect::<Vec<_>>())
        .filter(|d| d.function == ModuleFunction::SystemPart)
        .map(|d| d.version)
        .max();
    let wanted = app_needs.or(inventory.system_version()).unwrap_or(0);
    let catalog_dirs: String = catalogs
        .iter()
        .map(|c| format!(" --catalog {}", c.display()))
        .collect();
    for release in RELEASES.iter().filter(|r| r.system_version >= wanted) {
        if platform_release(platform, release.name).is_none() {
            continue;
        }
        let Ok(targets) = release_targets(&catalog, platform, release.name) else {
            continue;
        };
        for via in [Via::Dfu, Via::Serial] {
            let req = Request {
                twin,
                targets: targets.clone(),
                catalog: &catalog,
                via,
                force: Force::default(),
                factory: false,
            };
            if let Ok(p) = plan(&req) {
                if p.prediction.app_runs() {
                    return Some((
                        format!(
                            "modflash flash --device {device} --device-os {}{}{catalog_dirs}",
                            release.name,
                            if via == Via::Serial {
                                " --via serial"
                            } else {
                                ""
                            }
                        ),
                        p.steps.len(),
                    ));
                }
            }
        }
    }
    None
}
