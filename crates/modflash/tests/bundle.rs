//! Application bundles made with binary-version-reader 3.1.3 (`tests/fixtures/assets`): each is
//! read and judged as `MANIFEST.json` records (every dependency present, hashes match, the
//! assets fit the platform's store), and no input makes the reader panic or read without bound.

use std::io::Write;
use std::path::Path;

use modflash::bundle::{check, AssetFile, AssetStatus, Bundle, BundleError, StorageVerdict};
use modflash_testkit::{asset_fixture, asset_fixture_path, asset_manifest};
use serde_json::Value;

fn status_word(s: &AssetStatus) -> String {
    match s {
        AssetStatus::Renamed { found } => format!("renamed:{found}"),
        other => other.name().to_string(),
    }
}

#[test]
fn every_fixture_bundle_gets_the_manifest_verdict() {
    let bundles: Vec<Value> = asset_manifest()
        .into_iter()
        .filter(|e| e.get("verdict").is_some())
        .collect();
    assert_eq!(bundles.len(), 6);
    for entry in bundles {
        let file = entry["file"].as_str().unwrap();
        let bundle = Bundle::read(&asset_fixture_path(file)).unwrap();
        let entries = entry["entries"].as_array().unwrap();
        assert_eq!(
            bundle.application_name,
            entries[0]["name"].as_str().unwrap()
        );
        let verdict = bundle.check();
        assert_eq!(
            verdict.is_valid(),
            entry["verdict"]["valid"].as_bool().unwrap(),
            "{file}"
        );
        let expected = entry["verdict"]["assets"].as_object().unwrap();
        assert_eq!(verdict.requirements.len(), expected.len(), "{file}");
        for r in &verdict.requirements {
            assert_eq!(
                status_word(&r.status),
                expected[&r.name].as_str().unwrap(),
                "{file}: {}",
                r.name
            );
        }
        let damaged: Vec<&str> = verdict.damaged.iter().map(|d| d.name.as_str()).collect();
        let expected_damaged: Vec<&str> = entry["verdict"]
            .get("damaged_entries")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(damaged, expected_damaged, "{file}");
        assert!(
            matches!(verdict.storage, StorageVerdict::Fits { used, .. } if used > 0),
            "{file}: {:?}",
            verdict.storage
        );
    }
}

#[test]
fn the_good_bundle_holds_the_encoders_entries() {
    let bundle = Bundle::read(&asset_fixture_path("p2-bundle.zip")).unwrap();
    assert_eq!(bundle.application, asset_fixture("p2-app-assets.bin"));
    let names: Vec<&str> = bundle.assets.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["coproc.bin", "greeting.txt"]);
    assert_eq!(bundle.assets[0].bytes, asset_fixture("coproc.bin"));
    let verdict = bundle.check();
    assert_eq!(verdict.platform.map(|p| p.id), Some(32));
    assert!(verdict.unused.is_empty());
    // 24576 bytes of noise deflate to no less: 7 blocks; greeting.txt: 1 block.
    assert_eq!(
        verdict.storage,
        StorageVerdict::Fits {
            used: 8 * 4096,
            capacity: 278 * 4096
        }
    );
}

#[test]
fn files_named_beside_an_application_are_its_assets() {
    let app = asset_fixture("msom-app-assets.bin");
    let coproc = AssetFile::new("coproc.bin", asset_fixture("coproc.bin"));
    let greeting = AssetFile::new("greeting.txt", asset_fixture("greeting.txt"));
    assert!(check(&app, &[coproc.clone(), greeting.clone()]).is_valid());
    let only = check(&app, std::slice::from_ref(&greeting));
    assert!(!only.is_valid());
    let unmet: Vec<String> = only.unmet().map(ToString::to_string).collect();
    assert_eq!(unmet.len(), 1);
    assert!(unmet[0].starts_with("`coproc.bin` (sha256 4c04401c2f5f6754…): not there"));
    let extra = AssetFile::new("spare.bin", b"spare".to_vec());
    assert_eq!(
        check(&app, &[coproc, greeting, extra]).unused,
        ["spare.bin"]
    );
    // An application without assets is valid alone, even on a platform without a store.
    let photon = modflash_testkit::fixture("photon_tinker.bin");
    assert!(check(&photon, &[]).is_valid());
    let on_photon = check(&photon, &[AssetFile::new("a.bin", vec![1])]);
    assert_eq!(on_photon.storage, StorageVerdict::NoAssetStore);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    out.into_inner()
}

#[test]
fn malformed_bundles_are_refused_in_words() {
    let path = Path::new("b.zip");
    let app = asset_fixture("p2-app-assets.bin");
    let err = Bundle::from_zip(path, b"not a zip").unwrap_err();
    assert!(matches!(err, BundleError::NotAZip { .. }), "{err}");
    let err = Bundle::from_zip(path, &zip_of(&[("assets/a.bin", b"a")])).unwrap_err();
    assert!(matches!(err, BundleError::NoApplication { .. }), "{err}");
    let err = Bundle::from_zip(path, &zip_of(&[("a.bin", &app), ("b.bin", &app)])).unwrap_err();
    assert!(
        matches!(err, BundleError::SeveralApplications { .. }),
        "{err}"
    );
    let b = Bundle::from_zip(
        path,
        &zip_of(&[
            ("app.bin", &app),
            ("env/vars.json", b"{}"),
            ("assets/deep/x.bin", b"x"),
        ]),
    )
    .unwrap();
    assert_eq!(b.other, ["env/vars.json", "assets/deep/x.bin"]);
    assert!(b.assets.is_empty());
}

#[test]
fn an_entry_is_not_inflated_beyond_the_bound() {
    // 17 MiB of zeros deflate to a few kilobytes.
    let zeros = vec![0u8; 17 * 1024 * 1024];
    let app = asset_fixture("p2-app-assets.bin");
    let bomb = zip_of(&[("app.bin", &app), ("assets/zeros.bin", &zeros)]);
    assert!(bomb.len() < 100_000);
    let err = Bundle::from_zip(Path::new("bomb.zip"), &bomb).unwrap_err();
    assert!(
        matches!(&err, BundleError::TooLarge { entry, .. } if entry == "assets/zeros.bin"),
        "{err}"
    );
}

#[test]
fn no_damage_to_a_bundle_makes_the_reader_panic() {
    let good = asset_fixture("p2-bundle.zip");
    let mut state = 0x2545_F491u32;
    for _ in 0..400 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let mut bytes = good.clone();
        let at = state as usize % bytes.len();
        bytes[at] ^= (state >> 24) as u8 | 1;
        let cut = (state as usize >> 3) % (bytes.len() + 1);
        let _ = Bundle::from_zip(Path::new("x.zip"), &bytes).map(|b| b.check());
        let _ = Bundle::from_zip(Path::new("x.zip"), &bytes[..cut]);
    }
}
