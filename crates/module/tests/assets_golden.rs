//! Golden tests on the asset fixtures of `tests/fixtures/assets`, made with Particle's own
//! encoder (binary-version-reader 3.1.3, `make.js`): every module reads as its MANIFEST.json
//! says Particle's parser reads it, and modflash's writer reproduces the encoder's output byte
//! for byte — asset modules, asset dependencies in the prefix (P2, M-SoM) and in the suffix
//! (E-SoM-X), protected bootloaders.

use modflash_module::asset::{asset_module, protect, set_asset_dependencies, unwrap_asset};
use modflash_module::checksum::sha256;
use modflash_module::{AssetKind, AssetRef, Module, RegionCheck};
use modflash_testkit::{asset_fixture, asset_manifest, fixture};
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn module_entries() -> Vec<Value> {
    asset_manifest()
        .into_iter()
        .filter(|e| e.get("module").is_some())
        .collect()
}

#[test]
fn every_asset_fixture_reads_as_particles_parser_reads_it() {
    let entries = module_entries();
    assert_eq!(entries.len(), 9, "the manifest lists every module fixture");
    for entry in entries {
        let name = entry["file"].as_str().unwrap();
        let bytes = asset_fixture(name);
        assert_eq!(hex(&sha256(&bytes)), entry["sha256"], "{name}");
        let theirs = &entry["module"];
        let m = Module::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            m.is_valid(),
            "{name}: {:?}",
            m.problems().collect::<Vec<_>>()
        );
        assert_eq!(theirs["platform_id"], m.info.platform_id, "{name}");
        assert_eq!(theirs["function"], m.info.function.to_u8(), "{name}");
        assert_eq!(theirs["flags"], m.info.flags.0, "{name}");
        assert_eq!(theirs["start"], m.info.start_address, "{name}");
        assert_eq!(theirs["end"], m.info.end_address, "{name}");
        assert_eq!(theirs["crc_ok"], m.crc_ok(), "{name}");
        let deps: Vec<Value> = m
            .asset_dependencies()
            .map(|a| serde_json::json!({ "name": a.name_str().unwrap(), "hash": hex(a.hash) }))
            .collect();
        assert_eq!(theirs["asset_dependencies"], Value::Array(deps), "{name}");
        match m.asset() {
            Some(a) => {
                assert_eq!(
                    theirs["asset"]["name"],
                    a.asset.name_str().unwrap(),
                    "{name}"
                );
                assert_eq!(theirs["asset"]["hash"], hex(a.asset.hash), "{name}");
                assert_eq!(m.region, RegionCheck::AssetStore, "{name}");
            }
            None => assert!(theirs["asset"].is_null(), "{name}"),
        }
        assert_eq!(
            theirs["security_mode"],
            m.security_mode()
                .map_or(Value::Null, |(mode, _)| mode.into()),
            "{name}"
        );
    }
}

#[test]
fn asset_modules_are_the_encoders_own() {
    let coproc = asset_fixture("coproc.bin");
    let ours = asset_module(&coproc, "coproc.bin", AssetKind::Default, false).unwrap();
    assert_eq!(
        ours,
        asset_fixture("coproc-asset-raw.bin"),
        "uncompressed: byte for byte"
    );
    for name in ["coproc-asset.bin", "coproc-asset-raw.bin"] {
        assert_eq!(
            unwrap_asset(&asset_fixture(name)).unwrap(),
            coproc,
            "{name}"
        );
        let m = Module::parse(&asset_fixture(name)).map(|m| m.asset().unwrap().data_size);
        assert_eq!(m, Ok(coproc.len()), "{name}");
    }
    let greeting = asset_fixture("greeting.txt");
    let ours = asset_module(&greeting, "greeting.txt", AssetKind::Default, true).unwrap();
    let theirs = asset_fixture("greeting-asset.bin");
    assert_eq!(unwrap_asset(&ours).unwrap(), unwrap_asset(&theirs).unwrap());
    let (ours, theirs) = (
        Module::parse(&ours).unwrap(),
        Module::parse(&theirs).unwrap(),
    );
    assert_eq!(ours.asset().unwrap().asset, theirs.asset().unwrap().asset);
    // Compressed modules differ only by their deflate streams, hence their end addresses.
    let theirs_info = modflash_module::ModuleInfo {
        end_address: ours.info.end_address,
        ..theirs.info
    };
    assert_eq!(ours.info, theirs_info);
}

#[test]
fn asset_dependencies_are_written_as_the_encoder_writes_them() {
    let coproc_hash = sha256(&asset_fixture("coproc.bin"));
    let greeting_hash = sha256(&asset_fixture("greeting.txt"));
    let assets = [
        AssetRef::sha256(b"coproc.bin", &coproc_hash),
        AssetRef::sha256(b"greeting.txt", &greeting_hash),
    ];
    for (app, built) in [
        (fixture("tinker-5.0.0-p2.bin"), "p2-app-assets.bin"),
        (
            asset_fixture("inputs/tinker-6.3.4-msom.bin"),
            "msom-app-assets.bin",
        ),
        (
            asset_fixture("inputs/tinker-6.3.4-esomx.bin"),
            "esomx-app-assets.bin",
        ),
    ] {
        let ours = set_asset_dependencies(&app, &assets).unwrap();
        assert!(ours == asset_fixture(built), "{built}: not byte for byte");
    }
}

#[test]
fn dependencies_updated_twice_stay_where_device_os_reads_them() {
    // The encoder appended the new dependency after the prefix's END: Device OS stops at the
    // first END and sees none, and so does modflash.
    let theirs = asset_fixture("p2-app-assets-updated-twice.bin");
    assert_eq!(
        Module::parse(&theirs).unwrap().asset_dependencies().count(),
        0
    );
    let greeting_hash = sha256(&asset_fixture("greeting.txt"));
    let ours = set_asset_dependencies(
        &asset_fixture("p2-app-assets.bin"),
        &[AssetRef::sha256(b"greeting.txt", &greeting_hash)],
    )
    .unwrap();
    let m = Module::parse(&ours).unwrap();
    assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
    let names: Vec<_> = m.asset_dependencies().map(|a| a.name).collect();
    assert_eq!(names, [&b"greeting.txt"[..]]);
    assert_eq!(
        m.info.start_address % 8,
        0,
        "the start stays 8-byte aligned"
    );
    assert_eq!(
        m.info.end_address,
        Module::parse(&theirs).unwrap().info.end_address
    );
}

#[test]
fn protected_bootloaders_are_the_encoders_own() {
    let bootloader = fixture("argon-bootloader@1.5.0.bin");
    assert_eq!(
        protect(&bootloader, &[]).unwrap(),
        asset_fixture("argon-bootloader-protected.bin")
    );
    let certificate = asset_fixture("certificate.der");
    let ours = protect(&bootloader, &certificate).unwrap();
    assert!(ours == asset_fixture("argon-bootloader-protected-cert.bin"));
    let m = Module::parse(&ours).unwrap();
    assert_eq!(m.security_mode(), Some((1, &certificate[..])));
    assert_eq!(
        protect(&ours, &[]).unwrap(),
        asset_fixture("argon-bootloader-protected.bin"),
        "protecting again replaces the extension"
    );
}
