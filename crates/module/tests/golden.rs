//! Golden tests: every real fixture parses to exactly the facts in MANIFEST.json, and every real
//! module survives parse→rebuild, compress→decompress and combine→split byte for byte.

use modflash_module::edit::{combine, compress, decompress, split, ModuleBuilder};
use modflash_module::{chain, Module, RegionCheck};
use modflash_testkit::{fixture, manifest};
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_fixture_matches_the_manifest() {
    let entries = manifest();
    assert_eq!(entries.len(), 30, "the manifest lists every fixture");
    for entry in entries {
        let name = entry["file"].as_str().unwrap();
        let bytes = fixture(name);
        assert_eq!(
            bytes.len() as u64,
            entry["size"].as_u64().unwrap(),
            "{name}"
        );
        let parsed = Module::parse(&bytes);
        let expected = &entry["module"];
        if expected.is_null() {
            let err = parsed.expect_err(name);
            assert!(!err.to_string().is_empty());
            continue;
        }
        let m = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        let addr = |v: &Value| {
            u32::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        assert_eq!(
            m.prefix_offset as u64,
            expected["prefix_offset"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(m.info.start_address, addr(&expected["start"]), "{name}");
        assert_eq!(m.info.end_address, addr(&expected["end"]), "{name}");
        assert_eq!(
            u64::from(m.info.platform_id),
            expected["platform_id"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            m.info.function.name(),
            expected["function"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(m.info.index),
            expected["index"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(m.info.version),
            expected["version"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(m.info.flags.0),
            expected["flags"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(m.info.mcu_target),
            expected["mcu_target"].as_u64().unwrap(),
            "{name}"
        );
        let deps: Vec<(String, u64, u64)> = m
            .info
            .listed_dependencies()
            .map(|d| {
                (
                    d.function.name().to_string(),
                    d.index.into(),
                    d.version.into(),
                )
            })
            .collect();
        let want: Vec<(String, u64, u64)> = expected["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["function"].as_str().unwrap().to_string(),
                    d["index"].as_u64().unwrap(),
                    d["version"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(deps, want, "{name}");
        let suffix = m.suffix.unwrap();
        assert_eq!(
            u64::from(suffix.size),
            expected["suffix_size"].as_u64().unwrap(),
            "{name}"
        );
        let product = m.product();
        assert_eq!(
            product.map(|p| u64::from(p.id)),
            expected["product_id"].as_u64(),
            "{name}"
        );
        assert_eq!(
            product.map(|p| u64::from(p.version)),
            expected["product_version"].as_u64(),
            "{name}"
        );
        assert_eq!(m.crc_ok(), expected["crc_ok"].as_bool().unwrap(), "{name}");
        assert_eq!(
            hex(&suffix.sha256),
            expected["sha256"].as_str().unwrap(),
            "{name}"
        );
        let coverage = m.sha.unwrap().matched.map(|c| c.name());
        assert_eq!(coverage, expected["sha_ok"].as_str(), "{name}");
        assert!(
            m.is_valid(),
            "{name}: {:?}",
            m.problems().collect::<Vec<_>>()
        );
        assert!(matches!(m.region, RegionCheck::InRegion { .. }), "{name}");
    }
}

fn real_modules() -> Vec<(String, Vec<u8>)> {
    manifest()
        .into_iter()
        .filter(|e| !e["module"].is_null())
        .map(|e| {
            let name = e["file"].as_str().unwrap().to_string();
            let bytes = fixture(&name);
            (name, bytes)
        })
        .collect()
}

#[test]
fn parse_then_rebuild_is_byte_identical() {
    for (name, bytes) in real_modules() {
        let rebuilt = ModuleBuilder::from_bytes(&bytes).unwrap().build().unwrap();
        assert!(rebuilt == bytes, "{name}: rebuild differs");
    }
}

#[test]
fn compress_then_decompress_is_byte_identical() {
    for (name, bytes) in real_modules() {
        let c = compress(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cm = Module::parse(&c).unwrap();
        assert!(cm.crc_ok() && cm.compression.is_some(), "{name}");
        assert_eq!(
            cm.compression.unwrap().inflate,
            modflash_module::parse::InflateCheck::Ok,
            "{name}"
        );
        assert!(
            decompress(&c).unwrap() == bytes,
            "{name}: decompress differs"
        );
    }
}

#[test]
fn combine_then_split_is_byte_identical() {
    let modules = real_modules();
    for pair in modules.windows(2) {
        let combined = combine(&[&pair[0].1, &pair[1].1]).unwrap();
        let found: Vec<bool> = chain(&combined).map(|m| m.unwrap().is_valid()).collect();
        assert_eq!(found, [true, true], "{} + {}", pair[0].0, pair[1].0);
        let parts = split(&combined).unwrap();
        assert!(
            parts[0] == pair[0].1 && parts[1] == pair[1].1,
            "{} + {}",
            pair[0].0,
            pair[1].0
        );
    }
}
