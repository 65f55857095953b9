//! Regressions from review: writes that would brick a device, unverified successes, and
//! refusals that changed the device anyway.

mod common;

use common::home;
use modflash_testkit::fixture;

#[test]
fn combined_images_are_refused_everywhere_and_nothing_is_written() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "c",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
    ]);
    let app = fixture("photon_tinker.bin");
    let combined = modflash_module::edit::combine(&[&app, &app]).unwrap();
    let file = h.file("combined.bin");
    std::fs::write(&file, combined).unwrap();
    let file = file.to_str().unwrap();
    let before = h.sim_file("c");
    for args in [
        vec!["flash", file, "--device", "sim:c", "--yes"],
        vec!["dfu", "download", file, "--device", "sim:c"],
        vec!["serial", "flash", file, "--device", "sim:c", "--force"],
    ] {
        let (code, out, err) = h.run_text(&args);
        assert_ne!(code, 0, "{args:?}: {out}{err}");
        assert!(
            format!("{out}{err}").contains("combined"),
            "{args:?}: {out}{err}"
        );
        assert_eq!(h.sim_file("c"), before, "{args:?} changed the device");
    }
}

#[test]
fn a_newer_gen3_app_never_lands_on_the_old_system_part() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "a",
        "--platform",
        "argon",
        "--device-os",
        "1.4.4",
    ]);
    let app = h.file("app62.bin");
    let app = app.to_str().unwrap();
    h.ok(&[
        "sim",
        "make-app",
        "--platform",
        "argon",
        "--device-os",
        "6.2.0",
        "-o",
        app,
    ]);
    // Raw DFU: refused (it would overwrite system part 1 of this device's memory map).
    let (code, _, err) = h.run_text(&["dfu", "download", app, "--device", "sim:a", "--leave"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("system part 1 region"), "{err}");
    assert_eq!(
        h.show("a")["mode"],
        "app",
        "a refused download leaves the device running"
    );
    // Planned: system firmware first, the legacy app invalidated, the new app runs.
    let out = h.ok(&["flash", app, "--device", "sim:a", "--yes"]);
    assert!(out.contains("erase 4096 bytes at 0x000d4000"), "{out}");
    let dev = h.show("a");
    assert_eq!(dev["mode"], "app");
    assert_eq!(dev["device_os"], "6.2.0");
    let user2 = dev["describe"]["m"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["f"] == "u" && m["n"] == "2");
    assert!(user2.is_some_and(|m| m["vv"] == 30), "{}", dev["describe"]);
    let events = dev["events"].to_string();
    assert!(
        !events.contains("user part 1 version"),
        "the legacy app must not run: {events}"
    );
}

#[test]
fn unreadable_files_are_usage_errors() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "u",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
    ]);
    let (code, _, err) = h.run_text(&["flash", "/no/such/app.bin", "--device", "sim:u", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read /no/such/app.bin"), "{err}");
}

#[test]
fn p2_devices_run_their_apps() {
    let h = home();
    h.ok(&[
        "sim",
        "create",
        "p2",
        "--platform",
        "p2",
        "--device-os",
        "5.5.0",
    ]);
    assert_eq!(h.show("p2")["mode"], "app");
    let app = h.file("p2app.bin");
    let app = app.to_str().unwrap();
    h.ok(&[
        "sim",
        "make-app",
        "--platform",
        "p2",
        "--device-os",
        "6.2.0",
        "-o",
        app,
    ]);
    let out = h.ok(&["inspect", app]);
    assert!(out.contains("dynamic_location"), "{out}");
    h.ok(&["flash", app, "--device", "sim:p2", "--yes"]);
    assert_eq!(h.show("p2")["device_os"], "6.2.0");
}

#[test]
fn doctor_and_modules_agree_on_a_failing_module_while_the_app_runs() {
    // A damaged factory-reset image: the app runs, but the image fails its integrity check.
    let h = home();
    let mut factory = fixture("photon_tinker.bin");
    let middle = factory.len() / 2;
    factory[middle] ^= 0xFF;
    let file = h.file("damaged-factory.bin");
    std::fs::write(&file, factory).unwrap();
    h.ok(&[
        "sim",
        "create",
        "f",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
        "--factory-app",
        file.to_str().unwrap(),
    ]);
    assert_eq!(h.show("f")["mode"], "app");
    let (modules_code, out, _) = h.run_text(&["modules", "--device", "sim:f"]);
    assert_eq!(modules_code, 1, "{out}");
    let (doctor_code, out, err) = h.run_text(&["doctor", "--device", "sim:f"]);
    assert_eq!(doctor_code, 1, "{out}{err}");
    assert!(
        out.contains("the application runs") && out.contains("user part 1 (factory) (integrity)"),
        "{out}"
    );
}
