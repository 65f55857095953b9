//! How a virtual device is shown by `sim create`, `sim show` and `sim reset`: in words, or as
//! the `sim show --json` object (docs/json.md).

use anstream::println;
use modflash_device::describe::describe;
use modflash_device::Device;
use serde_json::{json, Value};

use modflash::sim::SimStore;

use crate::ui::{CmdResult, Style, EXIT_OK};

/// The `sim show` JSON object.
pub fn device_json(name: &str, d: &Device) -> Value {
    let stats = d.flash_stats();
    json!({
        "name": name,
        "platform": d.platform().name,
        "platform_id": d.platform().id,
        "device_id": d.state.device_id,
        "mode": d.state.mode.name(),
        "led": d.state.led,
        "reset_reason": d.state.reset_reason,
        "device_os": d.device_os(),
        "describe": serde_json::from_str::<Value>(&describe(d)).unwrap_or(Value::Null),
        "wifi": d.wifi_networks(),
        "assets": assets_json(d),
        "events": d.state.events.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "stats": {
            "control_transfers": d.state.control_transfers,
            "bytes_programmed": stats.bytes_programmed,
            "sectors_erased": stats.sectors_erased,
            "modelled_ms": stats.modelled_us / 1000,
            "modelled_us": stats.modelled_us,
        },
    })
}

/// The asset store, null on a device that keeps no assets.
fn assets_json(d: &Device) -> Value {
    if !d.keeps_assets() {
        return Value::Null;
    }
    let list = |assets: Vec<modflash_device::asset::AssetInfo>| -> Vec<Value> {
        assets
            .iter()
            .map(|a| json!({ "name": a.name, "sha256": hex::encode(&a.hash), "size": a.size, "storage_size": a.storage_size }))
            .collect()
    };
    let missing: Vec<String> = d.missing_assets().into_iter().map(|a| a.name).collect();
    json!({
        "available": list(d.available_assets()),
        "required": list(d.required_assets()),
        "missing": missing,
    })
}

/// Prints a device in words or JSON.
pub fn print_device(name: &str, d: &Device, json_output: bool) {
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&device_json(name, d)).unwrap_or_default()
        );
        return;
    }
    let style = Style::stdout();
    let release = d.system_words();
    println!(
        "{} — {}, {release}, device id {}",
        style.bold(&format!("sim:{name}")),
        d.platform().display_name,
        d.state.device_id
    );
    let mode = match d.state.mode {
        modflash_device::Mode::App => style.good(d.state.mode.name()),
        modflash_device::Mode::Dfu | modflash_device::Mode::Listening => {
            style.warn(d.state.mode.name())
        }
        _ => style.bad(d.state.mode.name()),
    };
    println!("  mode     {mode} (LED {})", d.state.led);
    for f in d.system_info() {
        let Some(info) = f.info else { continue };
        let verdict = if f.is_valid() {
            style.good("ok")
        } else {
            style.bad(&format!(
                "failed {}",
                modflash_device::hal::describe_flags(f.failed())
            ))
        };
        let store = if f.bounds.store == modflash_module::Store::Factory {
            " (factory)"
        } else {
            ""
        };
        println!(
            "  module   {} version {}{store}: {verdict}",
            info.slot(),
            info.version
        );
    }
    if let Some(networks) = d.wifi_networks() {
        let list: Vec<String> = networks
            .iter()
            .map(|n| {
                let security = match n.security {
                    "none" => "open".to_string(),
                    s => s.to_uppercase().replace('_', "/"),
                };
                let cipher = n.cipher.map(|c| format!(" {c}")).unwrap_or_default();
                format!("\"{}\" ({security}{cipher})", n.ssid)
            })
            .collect();
        let list = if list.is_empty() {
            "no networks".to_string()
        } else {
            list.join(", ")
        };
        println!("  wifi     {list}");
    }
    if d.keeps_assets() {
        let missing = d.missing_assets();
        for a in d.available_assets() {
            println!("  asset    {} ({} bytes)", a.name, a.size);
        }
        for a in &missing {
            println!(
                "  asset    {} {}",
                a.name,
                style.bad("missing (the application requires it)")
            );
        }
    }
    let recent: Vec<_> = d.state.events.iter().rev().take(6).collect();
    for (i, e) in recent.iter().rev().enumerate() {
        println!("  {} {e}", if i == 0 { "events  " } else { "        " });
    }
}

/// `sim list`: every virtual device in `store`, in a table or as JSON.
pub fn print_list(store: &SimStore, json_output: bool) -> CmdResult {
    let names = store.list()?;
    let mut rows = Vec::new();
    for name in names {
        match store.open(&name) {
            Ok(h) => rows.push(json!({
                "name": name,
                "platform": h.device.platform().name,
                "mode": h.device.state.mode.name(),
                "device_id": h.device.state.device_id,
                "device_os": h.device.device_os(),
            })),
            Err(e) => rows.push(json!({ "name": name, "error": e.to_string() })),
        }
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no virtual devices (create one with `modflash sim create NAME --platform photon --device-os 1.5.0`)");
    } else {
        let text = |r: &Value, key: &str| r[key].as_str().unwrap_or("").to_string();
        println!(
            "{}",
            super::table::table(
                ["device", "platform", "mode", "Device OS", "id"],
                rows.iter().map(|r| match r["error"].as_str() {
                    Some(e) => [
                        format!("sim:{}", text(r, "name")),
                        String::new(),
                        format!("unreadable: {e}"),
                        String::new(),
                        String::new(),
                    ],
                    None => [
                        format!("sim:{}", text(r, "name")),
                        text(r, "platform"),
                        text(r, "mode"),
                        r["device_os"].as_str().unwrap_or("?").to_string(),
                        text(r, "device_id"),
                    ],
                }),
            )
        );
    }
    Ok(EXIT_OK)
}
