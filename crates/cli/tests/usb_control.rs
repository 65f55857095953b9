//! `--via usb` and USB control requests from the command line, on virtual devices in-process:
//! a flash over control requests is validated by the device step by step and proven by the
//! SHA-256 it reports; a device that stalls them is planned over DFU; mode changes go through
//! them.

mod common;

use common::{home, user_version};
use modflash_testkit::path_arg;
use serde_json::Value;

#[test]
fn flash_via_usb_installs_a_system_part_and_an_app_each_proven_by_its_hash() {
    let h = home();
    h.create("u", "argon", "2.2.0");
    // An app for 2.3.1 needs 2.3.1's system part first.
    let app = h.make_app("argon", "2.3.1");
    let (code, out, err) = h.run_text(&[
        "flash",
        path_arg(&app),
        "--device",
        "sim:u",
        "--via",
        "usb",
        "--yes",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r = common::flash_result(&out);
    assert_eq!(r["via"], "usb", "{r:#}");
    let steps = r["steps"].as_array().unwrap();
    let functions: Vec<&str> = steps
        .iter()
        .map(|s| s["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["system", "user"], "{r:#}");
    for s in steps {
        assert_eq!(s["transport"], "usb", "{r:#}");
        assert_eq!(s["alt"], Value::Null);
    }
    assert_eq!(r["verified"], true, "{r:#}");
    for e in r["evidence"].as_array().unwrap() {
        assert_eq!(e["evidence"], "sha256", "{r:#}");
    }
    // Each step was accepted by the device before the restart that proves it.
    assert_eq!(
        out.matches("\"event\":\"step_accepted\"").count(),
        2,
        "{out}"
    );
    let sim = h.show("u");
    assert_eq!(sim["mode"], "app");
    assert_eq!(sim["device_os"], "2.3.1");
}

#[test]
fn a_photon_before_0_8_is_refused_usb_and_flashed_over_dfu_by_default() {
    let h = home();
    h.create("old", "photon", "0.5.2");
    let app = h.make_app("photon", "1.5.0");
    let (code, out, err) = h.run_text(&[
        "plan",
        path_arg(&app),
        "--device",
        "sim:old",
        "--via",
        "usb",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("does not answer USB control requests"),
        "{err}"
    );
    assert!(err.contains("--via dfu"), "{err}");
    let out = h.ok(&[
        "flash",
        path_arg(&app),
        "--device",
        "sim:old",
        "--yes",
        "--json",
    ]);
    let r = common::flash_result(&out);
    assert_eq!(r["verified"], true, "{r:#}");
    assert!(
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["transport"] == "dfu"),
        "{r:#}"
    );
    let events = h.show("old")["events"].to_string();
    assert!(!events.contains("USB control request"), "{events}");
}

#[test]
fn a_running_argon_app_goes_over_usb_by_default_and_in_dfu_mode_over_dfu() {
    let h = home();
    h.create("a", "argon", "2.3.1");
    // The Tinker of 2.2.0 runs on 2.3.1 and differs from the one installed.
    let app = h.make_app("argon", "2.2.0");
    let plan = |h: &modflash_testkit::Home| -> Value {
        serde_json::from_str(&h.ok(&["plan", path_arg(&app), "--device", "sim:a", "--json"]))
            .unwrap()
    };
    let transports = |p: &Value| -> Vec<String> {
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["transport"].as_str().unwrap().to_string())
            .collect()
    };
    // Running: no trip through DFU mode, the app over control requests.
    assert_eq!(transports(&plan(&h)), ["usb"]);
    // In DFU mode: written where it is.
    h.ok(&["mode", "dfu", "--device", "sim:a"]);
    assert_eq!(transports(&plan(&h)), ["dfu"]);
    let out = h.ok(&[
        "flash",
        path_arg(&app),
        "--device",
        "sim:a",
        "--yes",
        "--json",
    ]);
    assert_eq!(common::flash_result(&out)["verified"], true);
    assert_eq!(h.show("a")["mode"], "app");
    assert!(user_version(&h.show("a")).is_some());
}
