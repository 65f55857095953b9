//! `modflash modules --device REF [--json]`: what is installed on a device, every check as
//! PASS/FAIL, and for a failed dependency what is installed, what is required, and which
//! module fixes it.

use modflash::inventory::{InstalledModule, Inventory};
use modflash::precheck::module_that_fixes;
use modflash::{DeviceRef, Session};
use modflash_module::platform::platform;
use modflash_module::release::release_name;
use modflash_module::rules::{self, ERASED};
use modflash_module::{Dependency, ModuleFunction, ModuleRef};

use crate::args::DeviceArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};

/// Prints the device's modules; exit 1 when any module fails a check.
pub fn run(device: &DeviceArgs, json_output: bool) -> CmdResult {
    let devref = device.require()?;
    let mut session = Session::open(&devref)?;
    let inventory = session.inventory(&mut Renderer::new(false));
    // Reading back over DFU moves a virtual device's modelled clock: saved either way.
    session.save()?;
    let inventory = inventory?;
    let all_pass = inventory.modules.iter().all(|m| m.checks.all());
    if json_output {
        let text = serde_json::to_string_pretty(&inventory)
            .map_err(|e| CliError::usage(format!("cannot format the inventory: {e}")))?;
        say(&text);
    } else {
        say(inventory_text(&Style::stdout(), &devref, &inventory).trim_end());
    }
    Ok(if all_pass { EXIT_OK } else { EXIT_CHECK_FAILED })
}

fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn version_words(function: ModuleFunction, version: u16) -> String {
    match (function, release_name(version)) {
        (ModuleFunction::SystemPart, Some(r)) => format!("{version} (Device OS {r})"),
        _ => version.to_string(),
    }
}

fn verdict(style: &Style, ok: bool) -> String {
    if ok {
        style.good("PASS")
    } else {
        style.bad("FAIL")
    }
}

/// One dependency line of `module`: "PASS needs system part 1 ≥ 1502: installed 1502" or
/// "FAIL needs system part 1 ≥ 1502, installed 17: flash system part 1 of Device OS 1.5.0
/// or later".
pub fn dependency_line(
    style: &Style,
    inventory: &Inventory,
    module: ModuleRef,
    dep: &Dependency,
) -> String {
    let (met, installed) = match rules::check_dependency(inventory, module, *dep) {
        Ok(version) => (true, Some(version)),
        Err(unmet) => (false, unmet.installed),
    };
    let installed_words = match installed {
        Some(ERASED) => "nothing installed (erased)".to_string(),
        Some(v) => format!("installed {}", version_words(dep.function, v)),
        None => "the platform has no such module".to_string(),
    };
    if met {
        format!("{} needs {dep}: {installed_words}", verdict(style, true))
    } else {
        format!(
            "{} needs {dep}, {installed_words}: flash {}",
            verdict(style, false),
            module_that_fixes(inventory.platform_id, dep)
        )
    }
}

fn module_text(style: &Style, inventory: &Inventory, m: &InstalledModule) -> String {
    let mut out = String::new();
    let slot = capitalized(&m.slot().to_string());
    let size = if m.max_size > 0 {
        format!(", {} bytes max size", m.max_size)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "  {} - version {}, {} location{size}\n",
        style.bold(&slot),
        version_words(m.function(), m.version),
        m.store
    ));
    if let Some(sha) = &m.sha256 {
        if m.function() == ModuleFunction::UserPart {
            out.push_str(&format!("    UUID: {sha}\n"));
        }
    }
    let c = &m.checks;
    out.push_str(&format!("    Integrity: {}\n", verdict(style, c.integrity)));
    out.push_str(&format!("    Address Range: {}\n", verdict(style, c.range)));
    out.push_str(&format!("    Platform: {}\n", verdict(style, c.platform)));
    out.push_str(&format!(
        "    Dependencies: {}\n",
        verdict(style, c.dependencies)
    ));
    for dep in m.deps() {
        out.push_str(&format!(
            "      {}\n",
            dependency_line(style, inventory, m.slot(), &dep)
        ));
    }
    out
}

/// The human form of an inventory.
pub fn inventory_text(style: &Style, devref: &DeviceRef, inventory: &Inventory) -> String {
    let mut out = format!("Device: {devref}\n");
    let name = platform(inventory.platform_id).map_or("unknown platform", |p| p.display_name);
    out.push_str(&format!("Platform: {} - {name}\n", inventory.platform_id));
    out.push_str("Modules\n");
    if inventory.modules.is_empty() {
        out.push_str("  (none)\n");
    }
    for m in &inventory.modules {
        out.push_str(&module_text(style, inventory, m));
    }
    let failed: Vec<String> = inventory
        .modules
        .iter()
        .filter(|m| !m.checks.all())
        .map(|m| m.slot().to_string())
        .collect();
    if failed.is_empty() {
        out.push_str(&format!(
            "{}\n",
            style.good("every module passes every check")
        ));
    } else {
        out.push_str(&format!(
            "{} {}\n",
            style.bad("failing:"),
            failed.join(", ")
        ));
    }
    out
}
