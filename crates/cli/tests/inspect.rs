//! `modflash inspect` through the binary: verdicts, exit codes and the JSON contract.

use assert_cmd::Command;
use modflash_testkit::{fixture, fixture_path, manifest};
use serde_json::Value;
use std::path::PathBuf;

fn inspect_json(args: &[PathBuf]) -> (i32, Vec<Value>) {
    let out = Command::cargo_bin("modflash")
        .unwrap()
        .arg("inspect")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    (out.status.code().unwrap(), v.as_array().unwrap().clone())
}

#[test]
fn json_equals_the_manifest_for_every_fixture() {
    let manifest = manifest();
    let files: Vec<PathBuf> = manifest
        .iter()
        .map(|e| fixture_path(e["file"].as_str().unwrap()))
        .collect();
    let (code, reports) = inspect_json(&files);
    assert_eq!(code, 1, "non-modules are among the fixtures");
    assert_eq!(reports.len(), manifest.len());
    for (report, want) in reports.iter().zip(&manifest) {
        let name = want["file"].as_str().unwrap();
        assert!(
            report["file"].as_str().unwrap().ends_with(name),
            "argument order"
        );
        assert_eq!(report["size"], want["size"], "{name}");
        let (m, w) = (&report["module"], &want["module"]);
        if w.is_null() {
            assert!(m.is_null(), "{name}");
            assert!(
                report["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("not a module: "),
                "{name}"
            );
            continue;
        }
        assert!(report["error"].is_null(), "{name}: {}", report["error"]);
        let addr = |v: &Value| {
            u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        assert_eq!(
            m["start_address"].as_u64().unwrap(),
            addr(&w["start"]),
            "{name}"
        );
        assert_eq!(
            m["end_address"].as_u64().unwrap(),
            addr(&w["end"]),
            "{name}"
        );
        for field in [
            "prefix_offset",
            "platform_id",
            "function",
            "index",
            "version",
            "flags",
            "mcu_target",
            "dependencies",
            "suffix_size",
            "product_id",
            "product_version",
            "crc_ok",
            "sha256",
        ] {
            assert_eq!(m[field], w[field], "{name}: {field}");
        }
        assert_eq!(m["sha_ok"], Value::Bool(true), "{name}");
        assert_eq!(m["sha_coverage"], w["sha_ok"], "{name}");
        assert!(
            m["compressed"].is_null() && m["combined"].is_null(),
            "{name}"
        );
    }
}

#[test]
fn names_and_releases_are_reported() {
    let (code, r) = inspect_json(&[fixture_path("photon-system-part2@1.5.0.bin")]);
    assert_eq!(code, 0);
    let m = &r[0]["module"];
    assert_eq!(m["platform"], "photon");
    assert_eq!(m["function"], "system");
    assert_eq!(m["device_os"], "1.5.0");
    assert_eq!(m["dependencies"][1]["function"], "bootloader");
}

#[test]
fn human_output_gives_the_verdict_first() {
    let out = Command::cargo_bin("modflash")
        .unwrap()
        .args(["inspect"])
        .arg(fixture_path("photon-system-part2@1.5.0.bin"))
        .arg(fixture_path("ota-flag-a5.bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(261048 bytes): valid module"), "{text}");
    assert!(
        text.contains("system part 2, version 1502 (Device OS 1.5.0)"),
        "{text}"
    );
    assert!(
        text.contains("system part 1 ≥ 1502 (Device OS 1.5.0)"),
        "{text}"
    );
    assert!(
        text.contains("ota-flag-a5.bin (1 bytes): not a module: the file is 1 byte long"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when not on a terminal");
}

#[test]
fn damaged_file_exits_one_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fixture("photon_tinker.bin");
    bytes[100] ^= 0xFF;
    let path = dir.path().join("bad.bin");
    std::fs::write(&path, bytes).unwrap();
    let (code, r) = inspect_json(&[path]);
    assert_eq!(code, 1);
    assert!(
        r[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("damaged: CRC-32 mismatch"),
        "{}",
        r[0]["error"]
    );
    assert_eq!(r[0]["module"]["crc_ok"], false);
}

#[test]
fn missing_file_is_a_usage_error_that_names_it() {
    let out = Command::cargo_bin("modflash")
        .unwrap()
        .args(["inspect", "/no/such/file.bin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot read /no/such/file.bin"), "{err}");
}

#[test]
fn combined_file_lists_each_module() {
    let a = fixture("photon-system-part1@1.5.0.bin");
    let b = fixture("photon-system-part2@1.5.0.bin");
    let combined = modflash_module::edit::combine(&[&a, &b]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("combined.bin");
    std::fs::write(&path, combined).unwrap();
    let (code, r) = inspect_json(&[path]);
    assert_eq!(code, 0, "{:?}", r[0]["error"]);
    let chain = r[0]["module"]["combined"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1]["index"], 2);
}

#[test]
fn a_bundle_is_judged_whole() {
    use modflash_testkit::asset_fixture_path;
    let (code, reports) = inspect_json(&[asset_fixture_path("p2-bundle.zip")]);
    assert_eq!(code, 0);
    let r = &reports[0];
    assert_eq!(r["bundle"]["application"]["name"], "p2-app.bin");
    assert_eq!(r["assets"]["valid"], true);
    assert_eq!(r["assets"]["storage"]["used"], 8 * 4096);
    let (code, reports) = inspect_json(&[
        asset_fixture_path("p2-bundle-renamed.zip"),
        asset_fixture_path("p2-bundle-corrupted.zip"),
    ]);
    assert_eq!(code, 1);
    let renamed = &reports[0]["assets"]["required"][0];
    assert_eq!(renamed["status"], "renamed");
    assert_eq!(renamed["found_name"], "coproc-v2.bin");
    assert_eq!(
        reports[1]["assets"]["required"][0]["status"],
        "other_contents"
    );
    let out = Command::cargo_bin("modflash")
        .unwrap()
        .arg("inspect")
        .arg(asset_fixture_path("p2-bundle-damaged-entry.zip"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("damaged entry assets/greeting.txt"), "{text}");
    assert!(text.contains("missing  `greeting.txt`"), "{text}");
}

#[test]
fn asset_files_beside_an_application_satisfy_it_or_not() {
    use modflash_testkit::asset_fixture_path;
    let app = asset_fixture_path("p2-app-assets.bin");
    let (code, reports) = inspect_json(&[
        app.clone(),
        asset_fixture_path("coproc.bin"),
        asset_fixture_path("greeting-asset.bin"),
    ]);
    assert_eq!(code, 0, "{reports:?}");
    assert_eq!(reports[0]["assets"]["valid"], true);
    assert_eq!(reports[1]["asset"]["name"], "coproc.bin");
    let (code, reports) = inspect_json(&[app, asset_fixture_path("greeting.txt")]);
    assert_eq!(code, 1);
    assert_eq!(reports[0]["assets"]["required"][0]["status"], "missing");
    // Without an application that needs assets, a file that is no module is still refused.
    let (code, reports) = inspect_json(&[asset_fixture_path("coproc.bin")]);
    assert_eq!(code, 1);
    assert!(reports[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("not a module"));
}
