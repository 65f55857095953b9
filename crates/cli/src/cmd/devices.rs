//! `modflash devices [--json]`: every reachable device — Particle devices on USB (normal and
//! DFU mode), their serial ports, and virtual devices — with platform, mode and device id.

use modflash::devices::{reachable, Found, Kind};
use modflash::sim::SimStore;
use serde_json::{json, Value};

use crate::ui::{note, say, CmdResult, Style, EXIT_OK};

fn row(f: &Found) -> Value {
    let mut v = json!({
        "kind": f.kind.name(),
        "ref": f.reference,
    });
    if f.platform.is_none() && f.error.is_some() {
        v["error"] = json!(f.error);
        return v;
    }
    v["platform"] = json!(f.platform.map(|p| p.name));
    v["platform_id"] = json!(f.platform.map(|p| p.id));
    v["mode"] = json!(f.mode);
    v["device_id"] = json!(f.device_id);
    match f.kind {
        Kind::Usb => {
            v["usb_id"] = json!(f.usb_id.map(|(vid, pid)| format!("{vid:04x}:{pid:04x}")));
            v["node"] = json!(f.node);
            v["port_path"] = json!(f.port_path);
            v["error"] = json!(f.error);
        }
        Kind::Serial => v["port"] = json!(f.port),
        Kind::Virtual => {}
    }
    v
}

/// Lists devices.
pub fn run(json_output: bool) -> CmdResult {
    let found = reachable(&SimStore::default());
    let rows: Vec<Value> = found.devices.iter().map(row).collect();
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
    for p in found.problems {
        note(&format!("warning: cannot list {p}"));
    }
    Ok(EXIT_OK)
}
