//! An application's assets and whether the assets at hand satisfy them (`inspect` of a bundle,
//! or of an application with asset files beside it), in words and as JSON.

use modflash::bundle::{AssetCheck, AssetStatus, Bundle, StorageVerdict};
use serde_json::{json, Value};

use crate::ui::Style;

/// The check in words, indented under the file it belongs to.
pub fn check_text(style: &Style, check: &AssetCheck) -> String {
    let mut out = String::new();
    if let Some(problem) = &check.application_problem {
        out.push_str(&format!("  {} {problem}\n", style.bad("application:")));
    }
    if check.requirements.is_empty() {
        out.push_str("  assets required: none\n");
    } else {
        out.push_str("  assets required:\n");
    }
    for r in &check.requirements {
        let mark = if r.status == AssetStatus::Present {
            style.good("present")
        } else {
            style.bad(r.status.name())
        };
        out.push_str(&format!("    {mark}  {r}\n"));
    }
    if !check.unused.is_empty() {
        out.push_str(&format!("  not required: {}\n", check.unused.join(", ")));
    }
    for d in &check.damaged {
        out.push_str(&format!(
            "  {} {}: {}\n",
            style.bad("damaged entry"),
            d.name,
            d.reason
        ));
    }
    out.push_str(&format!(
        "  asset storage: {}\n",
        storage_words(style, check)
    ));
    let verdict = if check.is_valid() {
        style.good("the assets satisfy the application")
    } else {
        style.bad("the assets do not satisfy the application")
    };
    out.push_str(&format!("  {verdict}\n"));
    out
}

fn storage_words(style: &Style, check: &AssetCheck) -> String {
    let platform = check.platform.map_or("the platform", |p| p.name);
    match &check.storage {
        StorageVerdict::Fits { used, capacity } if *capacity == 0 => {
            format!("none needed ({platform} has no asset store); {used} bytes")
        }
        StorageVerdict::Fits { used, capacity } => {
            format!("{used} of {capacity} bytes of {platform}'s asset store")
        }
        StorageVerdict::Refused { refusal, asset } => {
            let which = asset
                .as_ref()
                .map(|a| format!(" (`{a}`)"))
                .unwrap_or_default();
            style.bad(&format!("{refusal}{which}"))
        }
        StorageVerdict::NoAssetStore => style.bad(&format!("{platform} keeps no assets")),
        StorageVerdict::UnknownPlatform => style.warn("unknown platform"),
    }
}

/// The check as JSON (documented in docs/json.md).
pub fn check_json(check: &AssetCheck) -> Value {
    let requirements: Vec<Value> = check
        .requirements
        .iter()
        .map(|r| {
            let mut v = json!({ "name": r.name, "sha256": r.hash, "status": r.status.name() });
            match &r.status {
                AssetStatus::Renamed { found } => v["found_name"] = json!(found),
                AssetStatus::OtherContents { found_sha256 } => {
                    v["found_sha256"] = json!(found_sha256);
                }
                AssetStatus::Present | AssetStatus::Missing => {}
            }
            v
        })
        .collect();
    let storage = match &check.storage {
        StorageVerdict::Fits { used, capacity } => {
            json!({ "fits": true, "used": used, "capacity": capacity })
        }
        StorageVerdict::Refused { refusal, asset } => {
            json!({ "fits": false, "reason": refusal.to_string(), "asset": asset })
        }
        StorageVerdict::NoAssetStore => json!({ "fits": false, "reason": "no asset store" }),
        StorageVerdict::UnknownPlatform => json!({ "fits": null, "reason": "unknown platform" }),
    };
    json!({
        "valid": check.is_valid(),
        "platform_id": check.platform.map(|p| p.id),
        "application_problem": check.application_problem,
        "required": requirements,
        "unused": check.unused,
        "storage": storage,
        "damaged_entries": check.damaged.iter().map(|d| json!({ "name": d.name, "reason": d.reason })).collect::<Vec<_>>(),
    })
}

/// A bundle's entries and verdict in words.
pub fn bundle_text(style: &Style, name: &str, size: usize, bundle: &Bundle) -> String {
    let check = bundle.check();
    let verdict = if check.is_valid() {
        style.good("valid bundle")
    } else {
        style.bad("bundle with problems")
    };
    let mut out = format!("{} ({size} bytes): {verdict}\n", style.bold(name));
    out.push_str(&format!(
        "  application: {} ({} bytes)\n",
        bundle.application_name,
        bundle.application.len()
    ));
    for a in &bundle.assets {
        out.push_str(&format!(
            "  asset: {} ({} bytes, sha256 {})\n",
            a.name,
            a.bytes.len(),
            hex::encode(a.sha256)
        ));
    }
    for o in &bundle.other {
        out.push_str(&format!("  {} {o}\n", style.dim("not used:")));
    }
    out.push_str(&check_text(style, &check));
    out.push('\n');
    out
}

/// A bundle as JSON (documented in docs/json.md).
pub fn bundle_json(name: &str, size: usize, bundle: &Bundle) -> Value {
    let assets: Vec<Value> = bundle
        .assets
        .iter()
        .map(|a| json!({ "name": a.name, "size": a.bytes.len(), "sha256": hex::encode(a.sha256) }))
        .collect();
    json!({
        "file": name,
        "size": size,
        "bundle": {
            "application": { "name": bundle.application_name, "size": bundle.application.len() },
            "assets": assets,
            "other_entries": bundle.other,
        },
        "assets": check_json(&bundle.check()),
    })
}
