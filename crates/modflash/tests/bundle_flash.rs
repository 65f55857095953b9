//! Bundles flashed on virtual P2s and M-SoMs at Device OS 5.x and 6.x, as `modflash flash
//! bundle.zip` does: the application and its assets installed and the application running; the
//! same bundle again writes nothing; an asset renamed since is written again; an application
//! whose asset the bundle lacks is refused before anything is written, and, forced, ends in
//! the device's safe mode.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use modflash::plan::{self, FlashOptions, Flashed, Force, Plan, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::request::Wanted;
use modflash::{Error, Session};
use modflash_device::cause::SafeModeCause;
use modflash_device::{Device, DeviceEvent, Mode};
use modflash_module::asset::{set_asset_dependencies, AssetRef};
use modflash_module::checksum::sha256;
use modflash_testkit::device::{device, release_app};
use modflash_testkit::{asset_fixture, asset_fixture_path};

/// A private, empty modflash home (the home catalogue is read while planning).
fn private_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("MODFLASH_HOME", dir.path());
        dir
    })
    .path()
}

fn flash_bundle(
    d: &mut Device,
    bundle: &Path,
    via: Option<Via>,
    force: Force,
) -> Result<(Plan, Flashed), Error> {
    private_home();
    let wanted = Wanted {
        files: vec![bundle.to_path_buf()],
        via,
        force,
        ..Wanted::default()
    };
    let mut s = Session::virtual_device(d, "sim:test");
    let plan = wanted.plan(&mut s, &mut Quiet)?;
    let flashed = plan::flash(
        &mut s,
        &plan,
        FlashOptions { backup: false },
        &mut Quiet,
        &Cancel::new(),
    )?;
    Ok((plan, flashed))
}

fn step_names(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| s.module.origin.to_string())
        .collect()
}

fn stored(d: &Device) -> Vec<String> {
    d.available_assets().into_iter().map(|a| a.name).collect()
}

/// A bundle of `app` (made to require `assets` by name) and the assets under those names.
fn make_bundle(dir: &Path, file: &str, app: &[u8], assets: &[(&str, &[u8])]) -> PathBuf {
    let hashes: Vec<[u8; 32]> = assets.iter().map(|(_, d)| sha256(d)).collect();
    let refs: Vec<AssetRef<'_>> = assets
        .iter()
        .zip(&hashes)
        .map(|((n, _), h)| AssetRef::sha256(n.as_bytes(), h))
        .collect();
    let app = set_asset_dependencies(app, &refs).unwrap();
    let path = dir.join(file);
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    w.start_file("app.bin", options).unwrap();
    w.write_all(&app).unwrap();
    for (name, data) in assets {
        w.start_file(format!("assets/{name}"), options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    path
}

fn assert_runs_with_its_assets(d: &Device, what: &str) {
    assert_eq!(d.state.mode, Mode::App, "{what}: {:?}", d.state.events);
    assert_eq!(stored(d), ["coproc.bin", "greeting.txt"], "{what}");
    assert!(d.missing_assets().is_empty(), "{what}");
}

#[test]
fn a_bundle_installs_its_app_and_assets_and_again_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coproc = asset_fixture("coproc.bin");
    let greeting = asset_fixture("greeting.txt");
    let mut cases = vec![
        (32u16, "5.9.0", asset_fixture_path("p2-bundle.zip")),
        (32, "6.2.0", asset_fixture_path("p2-bundle.zip")),
    ];
    for release in ["5.9.0", "6.3.3"] {
        let bundle = make_bundle(
            dir.path(),
            &format!("msom-{release}.zip"),
            &release_app(35, release),
            &[("coproc.bin", &coproc), ("greeting.txt", &greeting)],
        );
        cases.push((35, release, bundle));
    }
    for (platform_id, release, bundle) in cases {
        let what = format!("platform {platform_id} at {release}");
        let mut d = device(platform_id).release(release).running();
        let (plan, flashed) = flash_bundle(&mut d, &bundle, None, Force::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            plan.via,
            Via::Serial,
            "{what}: assets go over the update path"
        );
        let names = step_names(&plan);
        assert_eq!(names.len(), 3, "{what}: {names:?}");
        assert!(names[1].ends_with(":assets/coproc.bin"), "{names:?}");
        assert!(names[2].ends_with(":assets/greeting.txt"), "{names:?}");
        assert!(plan.prediction.app_runs());
        assert!(
            flashed.verified(),
            "{what}: {:?} {:?}",
            flashed.mismatches,
            flashed.proofs
        );
        assert_runs_with_its_assets(&d, &what);

        let programmed = d.flash_stats().bytes_programmed;
        let (again, _) = flash_bundle(&mut d, &bundle, None, Force::default()).unwrap();
        assert!(again.steps.is_empty(), "{what}: {:?}", step_names(&again));
        assert_eq!(again.skipped.len(), 3, "{what}: {:?}", again.skipped);
        assert!(again.skipped[1].contains("asset `coproc.bin` already on the device"));
        assert_eq!(d.flash_stats().bytes_programmed, programmed);
    }
}

#[test]
fn an_asset_renamed_since_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let coproc = asset_fixture("coproc.bin");
    let greeting = asset_fixture("greeting.txt");
    let mut d = device(32).release("6.2.0").running();
    // An earlier build of the app named the same contents coproc-v2.bin.
    let earlier = make_bundle(
        dir.path(),
        "earlier.zip",
        &release_app(32, "6.2.0"),
        &[("coproc-v2.bin", &coproc), ("greeting.txt", &greeting)],
    );
    flash_bundle(&mut d, &earlier, None, Force::default()).unwrap();
    assert_eq!(stored(&d), ["coproc-v2.bin", "greeting.txt"]);
    let (plan, flashed) = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle.zip"),
        None,
        Force::default(),
    )
    .unwrap();
    let names = step_names(&plan);
    assert_eq!(names.len(), 2, "the app and coproc.bin: {names:?}");
    assert!(names[1].ends_with(":assets/coproc.bin"));
    assert!(plan
        .skipped
        .iter()
        .any(|s| s.contains("`greeting.txt` already")));
    assert!(flashed.verified());
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(
        stored(&d),
        ["greeting.txt", "coproc.bin"],
        "coproc-v2.bin removed"
    );
}

#[test]
fn an_app_whose_asset_the_bundle_lacks_is_refused_before_writing() {
    let mut d = device(32).release("6.2.0").running();
    let before = d.flash_stats().bytes_programmed;
    let err = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle-missing.zip"),
        None,
        Force::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("p2-bundle-missing.zip:p2-app.bin needs asset `greeting.txt` (sha256 c330588cfc06aef3…); neither the bundle nor the device holds it"),
        "{text}"
    );
    assert!(err.help_text().unwrap().contains("--force assets"));
    assert_eq!(d.flash_stats().bytes_programmed, before, "nothing written");
    assert_eq!(d.state.mode, Mode::App);

    let err = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle-renamed.zip"),
        None,
        Force::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("its contents are there as `coproc-v2.bin`"),
        "{err}"
    );
    let err = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle-corrupted.zip"),
        None,
        Force::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has other contents"), "{err}");
    assert_eq!(d.flash_stats().bytes_programmed, before, "nothing written");

    // Forced, the device ends in safe mode for the missing asset, as predicted.
    let forced = Force {
        assets: true,
        ..Force::default()
    };
    let (plan, flashed) = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle-missing.zip"),
        None,
        forced,
    )
    .unwrap();
    assert_eq!(plan.prediction.mode, Mode::SafeMode);
    assert!(flashed.mismatches.is_empty(), "{:?}", flashed.mismatches);
    assert_eq!(d.state.mode, Mode::SafeMode);
    assert!(matches!(
        d.state.events.last(),
        Some(DeviceEvent::SafeMode(SafeModeCause::MissingAssets(m))) if m.len() == 1
    ));
}

#[test]
fn assets_are_not_written_over_dfu() {
    let mut d = device(32).release("6.2.0").running();
    let err = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle.zip"),
        Some(Via::Dfu),
        Force::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("DFU does not reach"), "{err}");
}

#[test]
fn assets_go_over_usb_control_requests_when_asked() {
    let mut d = device(32).release("6.2.0").running();
    let (plan, flashed) = flash_bundle(
        &mut d,
        &asset_fixture_path("p2-bundle.zip"),
        Some(Via::Usb),
        Force::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = step_names(&plan);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        plan.steps.iter().all(|s| s.via() == Via::Usb),
        "every step, assets too, by control requests: {:?}",
        plan.steps.iter().map(|s| s.via()).collect::<Vec<_>>()
    );
    assert!(
        flashed.verified(),
        "{:?} {:?}",
        flashed.mismatches,
        flashed.proofs
    );
    assert_runs_with_its_assets(&d, "P2 6.2.0 over USB");
}
