//! `modflash devices [--json]`: every reachable device — Particle devices on USB (normal and
//! DFU mode), their serial ports, and virtual devices — with platform, mode and device id.

use modflash::devices::{reachable, Found, Kind};
use modflash::sim::SimStore;
use serde_json::{json, Value};

use crate::ui::{note, say, CmdResult, EXIT_OK};

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
    v["device_os"] = json!(f.device_os);
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

/// The columns of the devices table, also shown by the device choice.
pub const HEADER: [&str; 6] = ["device", "platform", "id", "mode", "Device OS", "port"];

/// One device as a row under [`HEADER`] ("?" where it is not known without talking to the
/// device; a device that cannot be used says why in the last column).
pub fn cells(f: &Found) -> [String; 6] {
    let unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let port = match (&f.error, f.kind) {
        (Some(e), _) => e.clone(),
        (None, Kind::Usb) => f.node.clone().unwrap_or_default(),
        (None, Kind::Serial) => f.port.clone().unwrap_or_default(),
        (None, Kind::Virtual) => String::new(),
    };
    [
        f.reference.clone(),
        f.platform.map_or("?", |p| p.name).to_string(),
        unknown(&f.device_id),
        unknown(&f.mode),
        unknown(&f.device_os),
        port,
    ]
}

/// The devices as a table with a header line.
pub fn table(devices: &[Found]) -> String {
    crate::view::table::table(HEADER, devices.iter().map(cells))
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
        say(&table(&found.devices));
    }
    for p in found.problems {
        note(&format!("warning: cannot list {p}"));
    }
    Ok(EXIT_OK)
}
