//! The forum scenarios through the `modflash` binary on virtual devices.

mod common;

use common::home;
use modflash_testkit::{fixture_path, path_arg};
use serde_json::Value;

#[test]
fn core_image_onto_a_photon_is_refused_and_nothing_is_written() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "p",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
    ]);
    let before = h.sim_file("p");
    let (code, out, err) = h.run_text(&[
        "flash",
        path_arg(&fixture_path("core_tinker.bin")),
        "--device",
        "sim:p",
        "--yes",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("refused, nothing was written"), "{err}");
    assert!(err.contains("for the Core (platform 0)"), "{err}");
    assert!(err.contains("help:"), "{err}");
    assert_eq!(h.sim_file("p"), before, "the device image is untouched");
}

#[test]
fn app_for_150_on_a_052_photon_is_planned_flashed_and_verified() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "demo",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
    ]);
    let app = h.file("app.bin").display().to_string();
    h.ok(&[
        "sim",
        "make-app",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
        "-o",
        &app,
    ]);
    let plan: Value =
        serde_json::from_str(&h.ok(&["plan", &app, "--device", "sim:demo", "--json"])).unwrap();
    let steps: Vec<(String, u64)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["function"].as_str().unwrap().to_string(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("bootloader".into(), 501),
            ("system".into(), 1502),
            ("system".into(), 1502),
            ("user".into(), 6)
        ]
    );
    assert_eq!(plan["final"]["mode"], "app");
    // The dependencies come from the app's own release (1.4.4 ships a bootloader of the same
    // version: the 1.5.0 one is named).
    assert_eq!(
        plan["steps"][0]["file"],
        "Device OS 1.5.0 bootloader (synthetic image, release table)"
    );
    // Deterministic for the same inputs.
    let again: Value =
        serde_json::from_str(&h.ok(&["plan", &app, "--device", "sim:demo", "--json"])).unwrap();
    assert_eq!(plan, again);
    let out = h.ok(&["flash", &app, "--device", "sim:demo", "--yes"]);
    assert!(out.contains("Verified:"), "{out}");
    let dev = h.show("demo");
    assert_eq!(dev["mode"], "app");
    assert_eq!(dev["led"]["color"], "cyan");
    assert_eq!(dev["led"]["pattern"], "breathing");
    assert_eq!(dev["device_os"], "1.5.0");
    // The same app again: nothing to write.
    let out = h.ok(&["flash", &app, "--device", "sim:demo", "--yes"]);
    assert!(out.contains("Nothing to write"), "{out}");
}

#[test]
fn over_serial_the_plan_goes_through_an_intermediate_release() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "s",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
    ]);
    let app = h.file("app.bin").display().to_string();
    h.ok(&[
        "sim",
        "make-app",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
        "-o",
        &app,
    ]);
    let out = h.ok(&[
        "flash", &app, "--device", "sim:s", "--via", "serial", "--yes",
    ]);
    assert!(out.contains("intermediate (Device OS 0.7.0)"), "{out}");
    assert_eq!(h.show("s")["mode"], "app");
}

#[test]
fn doctor_explains_safe_mode_and_its_fix_works() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "d",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
        "--user-app",
        path_arg(&fixture_path("photon_doctor.bin")),
    ]);
    assert_eq!(h.show("d")["mode"], "safe_mode");
    let (code, out, _) = h.run_text(&["doctor", "--device", "sim:d"]);
    assert_eq!(code, 1);
    assert!(out.contains("safe mode (breathing magenta) because user part 1 needs system part 2 \u{2265} 108, installed 17"), "{out}");
    let fix = out
        .lines()
        .filter(|l| l.starts_with("fix ("))
        .find_map(|l| l.split_once("): ").map(|(_, c)| c.to_string()))
        .expect("a fix");
    assert!(
        fix.starts_with("modflash flash --device sim:d --device-os 0.6.2"),
        "{fix}"
    );
    let args: Vec<&str> = fix.split_whitespace().skip(1).chain(["--yes"]).collect();
    h.ok(&args);
    assert_eq!(h.show("d")["mode"], "app");
    let (code, out, _) = h.run_text(&["doctor", "--device", "sim:d"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_device_that_has_everything_gets_only_the_app() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "e",
        "--platform",
        "electron",
        "--device-os",
        "1.5.0",
    ]);
    let app = h.file("app.bin").display().to_string();
    h.ok(&[
        "sim",
        "make-app",
        "--platform",
        "electron",
        "--device-os",
        "1.5.0",
        "-o",
        &app,
    ]);
    let plan: Value =
        serde_json::from_str(&h.ok(&["plan", &app, "--device", "sim:e", "--json"])).unwrap();
    // Same release Tinker is already installed: nothing; a different app: one step.
    assert_eq!(plan["steps"].as_array().unwrap().len(), 0, "{plan}");
    let other = fixture_path("electron_tinker.bin");
    let plan: Value =
        serde_json::from_str(&h.ok(&["plan", path_arg(&other), "--device", "sim:e", "--json"]))
            .unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{plan}");
    assert_eq!(steps[0]["function"], "user");
    assert_eq!(steps[0]["address"], 0x0808_0000);
}

#[test]
fn factory_slot_is_written_and_a_factory_reset_restores_it() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "f",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
    ]);
    let tinker = fixture_path("photon_tinker.bin");
    let plan: Value = serde_json::from_str(&h.ok(&[
        "plan",
        path_arg(&tinker),
        "--device",
        "sim:f",
        "--factory",
        "--json",
    ]))
    .unwrap();
    assert_eq!(plan["steps"][0]["address"], 0x080E_0000, "{plan}");
    let (code, _, err) = h.run_text(&[
        "flash",
        path_arg(&tinker),
        "--device",
        "sim:f",
        "--factory",
        "--via",
        "serial",
        "--yes",
    ]);
    assert_eq!(
        code, 1,
        "the factory slot cannot be written over serial: {err}"
    );
    h.ok(&[
        "flash",
        path_arg(&tinker),
        "--device",
        "sim:f",
        "--factory",
        "--yes",
    ]);
    let dev = h.show("f");
    let factory = dev["describe"]["m"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["l"] == "f")
        .expect("listed");
    assert_eq!(
        (factory["v"].as_u64(), factory["vv"].as_u64()),
        (Some(2), Some(30))
    );
    // Holding SETUP for 7 s restores it into the application slot.
    h.ok(&["sim", "reset", "f", "--hold-button", "7"]);
    let dev = h.show("f");
    assert_eq!(dev["mode"], "app");
    let user = dev["describe"]["m"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["f"] == "u" && m["l"] == "m")
        .unwrap();
    assert_eq!(user["v"], 2);
}
