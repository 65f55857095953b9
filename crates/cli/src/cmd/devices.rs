//! `modflash devices [--json]`: every reachable device — Particle devices on USB (normal and
//! DFU mode), their serial ports, and virtual devices — with platform, mode and device id.

use modflash::sim::SimStore;
use serde_json::{json, Value};

use crate::source::{note, say};
use crate::ui::{CmdResult, Style, EXIT_OK};

/// Lists devices.
pub fn run(json_output: bool) -> CmdResult {
    let mut rows: Vec<Value> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    match modflash::usb::discover() {
        Ok(list) => {
            for d in list {
                rows.push(json!({
                    "kind": "usb",
                    "ref": d.reference(),
                    "platform": d.platform.name,
                    "platform_id": d.platform.id,
                    "mode": d.mode.name(),
                    "device_id": d.device_id,
                    "usb_id": format!("{:04x}:{:04x}", d.vendor, d.product),
                    "node": d.node(),
                    "port_path": d.port_path,
                    "error": d.access_error.as_ref().map(|e| format!("{e} (help: {})", modflash::usb::UDEV_HELP)),
                }));
            }
        }
        Err(e) => problems.push(format!("USB: {e}")),
    }
    match modflash::serial::discover() {
        Ok(ports) => {
            for p in ports {
                rows.push(json!({
                    "kind": "serial",
                    "ref": format!("serial:{}", p.port),
                    "platform": p.platform.name,
                    "platform_id": p.platform.id,
                    "mode": "normal",
                    "device_id": p.device_id,
                    "port": p.port,
                }));
            }
        }
        Err(e) => problems.push(format!("serial ports: {e}")),
    }
    let store = SimStore::default();
    match store.list() {
        Ok(names) => {
            for name in names {
                match store.open(&name) {
                    Ok(h) => rows.push(json!({
                        "kind": "virtual",
                        "ref": format!("sim:{name}"),
                        "platform": h.device.platform().name,
                        "platform_id": h.device.platform().id,
                        "mode": h.device.state.mode.name(),
                        "device_id": h.device.state.device_id,
                    })),
                    Err(e) => rows.push(json!({
                        "kind": "virtual",
                        "ref": format!("sim:{name}"),
                        "error": e.to_string(),
                    })),
                }
            }
        }
        Err(e) => problems.push(format!("virtual devices: {e}")),
    }
    if json_output {
        say(&serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else if rows.is_empty() {
        say("no devices: no Particle device on USB or serial, and no virtual device");
        say("(create one with `modflash sim create NAME --platform photon --device-os 1.5.0`)");
    } else {
        let style = Style::stdout();
        for r in &rows {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let mode = text("mode");
            let mode = match mode.as_str() {
                "dfu" | "listening" => style.warn(&mode),
                "app" | "normal" => style.good(&mode),
                "" => String::new(),
                _ => style.bad(&mode),
            };
            let detail = match text("kind").as_str() {
                "usb" => format!("{} {}", text("usb_id"), text("node")),
                "serial" => text("port"),
                _ => String::new(),
            };
            let mut line = format!(
                "{:<36} {:<9} {:<10} {:<24} {detail}",
                text("ref"),
                text("platform"),
                mode,
                text("device_id"),
            );
            if let Some(e) = r["error"].as_str() {
                line.push_str(&format!("  {}", style.bad(e)));
            }
            say(line.trim_end());
        }
    }
    for p in problems {
        note(&format!("warning: cannot list {p}"));
    }
    Ok(EXIT_OK)
}
