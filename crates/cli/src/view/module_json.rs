//! The stable JSON fields of one module (`inspect --json`, docs/json.md).

use modflash_module::parse::{Compression, InflateCheck};
use modflash_module::platform::platform;
use modflash_module::release::release_for_module;
use modflash_module::{Dependency, Extension, Module, RawExtension, RegionCheck, ShaCoverage};
use serde_json::{json, Value};

/// JSON for one dependency.
pub fn dependency_json(d: &Dependency) -> Value {
    json!({ "function": d.function.name(), "index": d.index, "version": d.version })
}

fn extension_json(e: &RawExtension<'_>) -> Value {
    let area_offset = e.offset;
    let decoded = match e.decode() {
        Ok(Extension::ProductData { id, version }) => json!({ "id": id, "version": version }),
        Ok(Extension::DynamicLocation {
            module_start,
            dynalib_load,
            dynalib_start,
        }) => json!({
            "module_start": module_start, "dynalib_load": dynalib_load, "dynalib_start": dynalib_start
        }),
        Ok(Extension::Dependency {
            function,
            index,
            version,
            target_id,
        }) => json!({
            "function": function.name(), "index": index, "version": version, "target_id": target_id
        }),
        Ok(Extension::Hash { hash_type, hash }) => {
            json!({ "hash_type": hash_type, "hash": hex::encode(hash) })
        }
        Ok(Extension::Name(name)) => json!({ "name": String::from_utf8_lossy(name) }),
        Ok(Extension::AssetDependency {
            hash_type,
            hash,
            name,
        }) => json!({
            "hash_type": hash_type, "hash": hex::encode(hash), "name": String::from_utf8_lossy(name)
        }),
        Ok(Extension::SecurityMode { mode, certificate }) => json!({
            "mode": mode, "certificate": hex::encode(certificate)
        }),
        Ok(Extension::AssetType(t)) => json!({ "asset_type": t }),
        Ok(Extension::End { padding }) => json!({ "padding": padding }),
        Ok(Extension::Unknown { kind, payload }) => {
            json!({ "type": kind, "payload": hex::encode(payload) })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({
        "type": e.kind.name(),
        "offset": area_offset,
        "length": e.length(),
        "data": decoded,
    })
}

/// Every extension of the module, with the area it sits in ("prefix" or "suffix").
pub fn extensions<'a>(m: &Module<'a>) -> Vec<(&'static str, RawExtension<'a>)> {
    let prefix = m
        .prefix_extensions()
        .filter_map(Result::ok)
        .map(|e| ("prefix", e));
    let suffix = m
        .suffix_extensions()
        .filter_map(Result::ok)
        .map(|e| ("suffix", e));
    prefix.chain(suffix).collect()
}

fn compression_json(c: &Compression) -> Value {
    json!({
        "method": c.method,
        "window_bits": c.window_bits,
        "original_size": c.original_size,
        "inflated_ok": match c.inflate {
            InflateCheck::NotChecked => Value::Null,
            InflateCheck::Ok => Value::Bool(true),
            _ => Value::Bool(false),
        },
    })
}

fn region_json(r: &RegionCheck) -> Value {
    match r {
        RegionCheck::InRegion { layout, bounds } => json!({
            "layout": layout.name,
            "start": bounds.start,
            "end": bounds.end,
            "max_size": bounds.max_size,
            "in_range": true,
        }),
        RegionCheck::OutOfRange { bounds } | RegionCheck::Misplaced { bounds } => json!({
            "layout": Value::Null,
            "start": bounds.start,
            "end": bounds.end,
            "max_size": bounds.max_size,
            "in_range": false,
        }),
        RegionCheck::AssetStore | RegionCheck::NoMemoryMap | RegionCheck::FunctionNotAllowed => {
            Value::Null
        }
    }
}

/// The JSON object for one module (without the `combined` list).
pub fn module_json(m: &Module<'_>) -> Value {
    let info = &m.info;
    let product = m.product();
    let sha_coverage = m.sha.and_then(|s| s.matched);
    json!({
        "platform_id": info.platform_id,
        "platform": platform(info.platform_id).map(|p| p.name),
        "function": info.function.name(),
        "index": info.index,
        "version": info.version,
        "device_os": release_for_module(info),
        "flags": info.flags.0,
        "flag_names": info.flags.names().collect::<Vec<_>>(),
        "mcu_target": info.mcu_target,
        "start_address": info.start_address,
        "end_address": info.end_address,
        "file_offset": m.file_offset,
        "prefix_offset": m.prefix_offset,
        "header_rule": m.rule.name(),
        "suffix_size": m.suffix.ok().map(|s| s.size),
        "product_id": product.map(|p| p.id),
        "product_version": product.map(|p| p.version),
        "dependencies": info.listed_dependencies().map(|d| dependency_json(&d)).collect::<Vec<_>>(),
        "crc_ok": m.crc.map(|c| c.ok()),
        "crc_stored": m.crc.map(|c| format!("{:08x}", c.stored)),
        "crc_computed": m.crc.map(|c| format!("{:08x}", c.computed)),
        "sha256": m.stored_sha256().map(hex::encode),
        "sha_ok": m.sha.map(|s| s.matched.is_some()),
        "sha_coverage": sha_coverage.map(ShaCoverage::name),
        "region": region_json(&m.region),
        "extensions": extensions(m).iter().map(|(area, e)| {
            let mut v = extension_json(e);
            v["area"] = json!(area);
            v
        }).collect::<Vec<_>>(),
        "compressed": m.compression.as_ref().map(compression_json),
        "valid": m.is_valid(),
        "problems": m.problems().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}
