//! Differential test against binary-version-reader, Particle's own module parser (npm), run by
//! node when it is installed (`.ci/run` installs it into `.interop/`). Every fixture must agree
//! on platform, function, index, version, dependencies, addresses and the CRC verdict; every
//! disagreement is asserted together with the reason modflash is right.

use modflash_testkit::fixtures::workspace_root;
use modflash_testkit::{asset_fixture_path, asset_manifest, fixture, fixture_paths, interop};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Runs the peer parser over `files`, or explains why it cannot run.
fn bvr(files: &[PathBuf]) -> Option<Vec<Value>> {
    let modules = workspace_root().join(".interop/node_modules");
    let missing = if !modules.join("binary-version-reader").exists() {
        Some(format!(
            "binary-version-reader is not installed in {}",
            modules.display()
        ))
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node is not installed".to_string())
    } else {
        None
    };
    if let Some(why) = missing {
        interop::skip(
            "the binary-version-reader differential test",
            &why,
            "run .ci/run or `npm install --prefix .interop binary-version-reader@3.1.3`",
        );
        return None;
    }
    let out = Command::new("node")
        .arg(workspace_root().join("tests/interop/bvr-parse.js"))
        .args(files)
        .env("NODE_PATH", &modules)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

#[test]
fn agrees_with_binary_version_reader_on_every_fixture() {
    let files = fixture_paths();
    let Some(theirs) = bvr(&files) else { return };
    assert_eq!(theirs.len(), files.len());
    let mut compared = 0;
    for (path, t) in files.iter().zip(&theirs) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(path).unwrap();
        match modflash_module::Module::parse(&bytes) {
            Err(ours) => {
                // Disagreement by design: BVR never says "not a module". It either throws on
                // short input or reports a header that no device would accept.
                if let Some(err) = t.get("error") {
                    assert!(bytes.len() < 64, "{name}: BVR threw {err} on a long file");
                } else {
                    let platform = t["platform"].as_u64().unwrap() as u16;
                    let function = t["function"].as_u64().unwrap() as u8;
                    let nonsense = modflash_module::platform(platform).is_none()
                        || !modflash_module::ModuleFunction::from_u8(function).is_known()
                        || t["crc_ok"] == false;
                    assert!(
                        nonsense,
                        "{name}: BVR found a plausible module where we found none ({ours}): {t}"
                    );
                }
            }
            Ok(m) => {
                compared += 1;
                let i = &m.info;
                assert_eq!(t["platform"], i.platform_id, "{name}");
                assert_eq!(t["function"], i.function.to_u8(), "{name}");
                assert_eq!(t["index"], i.index, "{name}");
                assert_eq!(t["version"], i.version, "{name}");
                assert_eq!(t["start"], i.start_address, "{name}");
                assert_eq!(t["end"], i.end_address, "{name}");
                assert_eq!(
                    t["prefix_offset"].as_u64().unwrap() as usize,
                    m.prefix_offset,
                    "{name}"
                );
                for (k, d) in i.dependencies.iter().enumerate() {
                    let theirs = &t["deps"][k];
                    assert_eq!(theirs[0], d.function.to_u8(), "{name} dep {k}");
                    assert_eq!(theirs[1], d.index, "{name} dep {k}");
                    assert_eq!(theirs[2], d.version, "{name} dep {k}");
                }
                assert_eq!(t["crc_ok"], m.crc_ok(), "{name}");
            }
        }
    }
    assert!(compared >= 25, "compared {compared} modules");
}

#[test]
fn agrees_with_binary_version_reader_on_the_asset_fixtures() {
    let names: Vec<String> = asset_manifest()
        .iter()
        .filter(|e| e.get("module").is_some())
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    let files: Vec<PathBuf> = names.iter().map(|n| asset_fixture_path(n)).collect();
    let Some(theirs) = bvr(&files) else { return };
    for (name, t) in names.iter().zip(&theirs) {
        let bytes = std::fs::read(asset_fixture_path(name)).unwrap();
        let m = modflash_module::Module::parse(&bytes).unwrap();
        assert_eq!(t["platform"], m.info.platform_id, "{name}");
        assert_eq!(t["function"], m.info.function.to_u8(), "{name}");
        assert_eq!(t["start"], m.info.start_address, "{name}");
        assert_eq!(t["end"], m.info.end_address, "{name}");
        assert_eq!(t["crc_ok"], m.crc_ok(), "{name}");
        let ours: Vec<Value> = m
            .asset_dependencies()
            .map(|a| {
                let hash: String = a.hash.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "name": a.name_str().unwrap(), "hash": hash })
            })
            .collect();
        assert_eq!(t["asset_dependencies"], Value::Array(ours), "{name}");
    }
}

#[test]
fn disagreements_on_crafted_files_favour_modflash() {
    let dir = tempfile_dir();
    let part = fixture("photon-system-part1@1.5.0.bin");
    let tinker = fixture("photon_tinker.bin");
    // 1. Truncated: BVR reports fields from a header whose module is not in the file.
    let truncated = dir.join("truncated.bin");
    std::fs::write(&truncated, &part[..1000]).unwrap();
    // 2. CRC recomputed after a change: BVR says CRC ok; the SHA-256 proves the change.
    let mut resigned = tinker.clone();
    resigned[2000] ^= 0x40;
    let len = resigned.len();
    let crc = modflash_module::checksum::crc32(&resigned[..len - 4]);
    resigned[len - 4..].copy_from_slice(&crc.to_be_bytes());
    let resigned_path = dir.join("resigned.bin");
    std::fs::write(&resigned_path, &resigned).unwrap();
    // 3. Padded: BVR reads the CRC from the file's end (0xFFFFFFFF) and says it is bad.
    let mut padded = tinker.clone();
    padded.extend_from_slice(&[0xFF; 100]);
    let padded_path = dir.join("padded.bin");
    std::fs::write(&padded_path, &padded).unwrap();

    let Some(theirs) = bvr(&[
        truncated.clone(),
        resigned_path.clone(),
        padded_path.clone(),
    ]) else {
        return;
    };
    // Truncated: we say so; BVR does not.
    let ours = modflash_module::Module::parse(&part[..1000]).unwrap();
    assert!(matches!(
        ours.size,
        modflash_module::SizeCheck::Truncated { .. }
    ));
    assert!(
        theirs[0].get("error").is_none(),
        "BVR raises no truncation error: {}",
        theirs[0]
    );
    // Resigned: BVR says the CRC is fine and nothing else; we name the SHA mismatch.
    assert_eq!(theirs[1]["crc_ok"], true);
    let ours = modflash_module::Module::parse(&resigned).unwrap();
    assert!(ours.crc_ok() && !ours.is_valid());
    assert!(ours
        .problems()
        .any(|p| matches!(p, modflash_module::Problem::Sha { .. })));
    // Padded: BVR calls the CRC bad; the module is intact and we say the padding is extra.
    assert_eq!(theirs[2]["crc_ok"], false);
    let ours = modflash_module::Module::parse(&padded).unwrap();
    assert!(ours.crc_ok());
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("modflash-bvr-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
