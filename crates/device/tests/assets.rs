//! The virtual device's asset store (Device OS 5.5.0 and later): an application whose assets
//! are missing runs in safe mode, asset modules arrive through control-request firmware
//! updates (250–253) and are stored by name, the assets the application does not require are
//! removed when another is stored, and GetAssetInfo reports what is stored and required.

use modflash_control::host::{HostRequest, Response};
use modflash_control::proto::{
    FinishFirmwareUpdateRequest, FirmwareUpdateDataRequest, GetAssetInfoReply, GetAssetInfoRequest,
    GetModuleInfoReply, GetModuleInfoRequest, Request, StartFirmwareUpdateReply,
    StartFirmwareUpdateRequest,
};
use modflash_device::cause::SafeModeCause;
use modflash_device::{Device, DeviceEvent, Mode};
use modflash_module::asset::{asset_module, set_asset_dependencies, AssetRef};
use modflash_module::checksum::sha256;
use modflash_module::AssetKind;
use modflash_testkit::asset_fixture;
use modflash_testkit::device::{device, release_app};

fn ask<R: Request>(d: &mut Device, message: &R) -> Response {
    HostRequest::message(message)
        .unwrap()
        .drive(|t| {
            d.elapse(u64::from(t.wait_ms) * 1000);
            d.control(t.setup, t.data)
        })
        .unwrap_or_else(|e| panic!("{:?}: {e:?}", R::TYPE))
}

/// START, DATA, FINISH as particle-cli sends them; the result of the first step that fails.
fn update(d: &mut Device, file: &[u8]) -> i32 {
    let start = ask(
        d,
        &StartFirmwareUpdateRequest {
            size: file.len() as u32,
            format: 0,
        },
    );
    if start.result != 0 {
        return start.result;
    }
    let chunk = start
        .decode::<StartFirmwareUpdateReply>()
        .unwrap()
        .chunk_size as usize;
    for piece in file.chunks(chunk) {
        let r = ask(
            d,
            &FirmwareUpdateDataRequest {
                data: piece.to_vec(),
            },
        );
        if r.result != 0 {
            return r.result;
        }
    }
    let r = ask(
        d,
        &FinishFirmwareUpdateRequest {
            validate_only: false,
        },
    )
    .result;
    // The device resets after the reply; let it.
    d.elapse(2_000_000);
    r
}

fn asset_info(d: &mut Device) -> GetAssetInfoReply {
    ask(d, &GetAssetInfoRequest {}).decode().unwrap()
}

struct Assets {
    coproc: Vec<u8>,
    greeting: Vec<u8>,
}

fn assets() -> Assets {
    Assets {
        coproc: asset_fixture("coproc.bin"),
        greeting: asset_fixture("greeting.txt"),
    }
}

/// The release's application, made to require `coproc.bin` and `greeting.txt`.
fn app_with_assets(platform_id: u16, release: &str, a: &Assets) -> Vec<u8> {
    let (h1, h2) = (sha256(&a.coproc), sha256(&a.greeting));
    set_asset_dependencies(
        &release_app(platform_id, release),
        &[
            AssetRef::sha256(b"coproc.bin", &h1),
            AssetRef::sha256(b"greeting.txt", &h2),
        ],
    )
    .unwrap()
}

fn module(data: &[u8], name: &str) -> Vec<u8> {
    asset_module(data, name, AssetKind::Default, true).unwrap()
}

fn last_safe_mode(d: &Device) -> Option<&SafeModeCause> {
    d.state.events.iter().rev().find_map(|e| match e {
        DeviceEvent::SafeMode(why) => Some(why),
        _ => None,
    })
}

#[test]
fn an_app_whose_assets_are_missing_runs_in_safe_mode_until_they_are_stored() {
    let a = assets();
    for (platform_id, release) in [(32, "5.9.0"), (32, "6.2.0"), (35, "5.9.0"), (35, "6.3.3")] {
        let mut d = device(platform_id).release(release).running();
        assert_eq!(d.state.mode, Mode::App);
        d.install_user_app(&app_with_assets(platform_id, release, &a))
            .unwrap();
        d.reset(modflash_device::ResetReason::Button, None);
        assert_eq!(d.state.mode, Mode::SafeMode, "{platform_id} {release}");
        assert_eq!(d.state.led.to_string(), "breathing magenta");
        let Some(SafeModeCause::MissingAssets(missing)) = last_safe_mode(&d) else {
            panic!("{:?}", d.state.events.last());
        };
        assert_eq!(missing.len(), 2);
        assert!(missing[0].starts_with("coproc.bin (sha256 4c04401c…)"));

        let modules: GetModuleInfoReply = ask(&mut d, &GetModuleInfoRequest {}).decode().unwrap();
        let app = modules.modules.iter().find(|m| m.r#type == 5).unwrap();
        assert_eq!(
            app.asset_dependencies.len(),
            2,
            "the application lists its assets"
        );
        let info = asset_info(&mut d);
        assert!(info.available.is_empty());
        let required: Vec<&str> = info.required.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(required, ["coproc.bin", "greeting.txt"]);
        assert_eq!(info.required[0].hash, sha256(&a.coproc));

        assert_eq!(update(&mut d, &module(&a.coproc, "coproc.bin")), 0);
        assert_eq!(d.state.mode, Mode::SafeMode, "greeting.txt still missing");
        assert_eq!(update(&mut d, &module(&a.greeting, "greeting.txt")), 0);
        assert_eq!(d.state.mode, Mode::App, "{platform_id} {release}");
        let info = asset_info(&mut d);
        let available: Vec<(&str, u32)> = info
            .available
            .iter()
            .map(|r| (r.name.as_str(), r.size))
            .collect();
        assert_eq!(available, [("coproc.bin", 24576), ("greeting.txt", 2160)]);
        assert!(info.available[1].storage_size < 2160, "stored compressed");
    }
}

#[test]
fn storing_an_asset_removes_those_the_app_does_not_require() {
    let a = assets();
    let mut d = device(32).release("6.2.0").running();
    d.install_user_app(&app_with_assets(32, "6.2.0", &a))
        .unwrap();
    d.reset(modflash_device::ResetReason::Button, None);
    // The renamed asset of particle-cli's regression: same contents, another name.
    assert_eq!(update(&mut d, &module(&a.coproc, "coproc-v2.bin")), 0);
    assert_eq!(update(&mut d, &module(&a.greeting, "greeting.txt")), 0);
    assert_eq!(
        d.state.mode,
        Mode::SafeMode,
        "coproc-v2.bin is not coproc.bin"
    );
    assert_eq!(update(&mut d, &module(&a.coproc, "coproc.bin")), 0);
    assert_eq!(d.state.mode, Mode::App);
    let names: Vec<String> = asset_info(&mut d)
        .available
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["greeting.txt", "coproc.bin"]);
    assert!(d
        .state
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::AssetRemoved { name } if name == "coproc-v2.bin")));
}

#[test]
fn a_damaged_asset_module_is_not_stored_and_old_releases_keep_no_assets() {
    let a = assets();
    let mut d = device(32).release("6.2.0").running();
    let mut bad = module(&a.greeting, "greeting.txt");
    let at = bad.len() / 2;
    bad[at] ^= 0xFF;
    update(&mut d, &bad);
    assert!(asset_info(&mut d).available.is_empty());
    assert!(d
        .state
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::AssetRefused(_))));
    // 5.0.0 (P2) has no asset store: the module is found nowhere (−1300 …), nothing stored.
    let mut old = device(32).release("5.0.0").running();
    assert_ne!(update(&mut old, &module(&a.greeting, "greeting.txt")), 0);
    assert!(old.state.assets.is_empty());
    // An app requiring assets on a release without an asset store simply runs.
    old.install_user_app(&app_with_assets(32, "5.0.0", &a))
        .unwrap();
    old.reset(modflash_device::ResetReason::Button, None);
    assert_eq!(old.state.mode, Mode::App);
}

#[test]
fn the_store_survives_a_save_and_restore() {
    let a = assets();
    let mut d = device(32).release("6.2.0").running();
    d.install_user_app(&app_with_assets(32, "6.2.0", &a))
        .unwrap();
    update(&mut d, &module(&a.coproc, "coproc.bin"));
    update(&mut d, &module(&a.greeting, "greeting.txt"));
    let (state, internal, external) = d.snapshot();
    let json = serde_json::to_string(&state).unwrap();
    let state = serde_json::from_str(&json).unwrap();
    let mut back = Device::restore(state, internal, external).unwrap();
    back.reset(modflash_device::ResetReason::Button, None);
    assert_eq!(back.state.mode, Mode::App);
    assert_eq!(back.available_assets().len(), 2);
}
