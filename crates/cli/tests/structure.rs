//! Regressions of the one-session, one-executor structure (issue 9): the transport is checked
//! against what the connection can do before anything is planned or asked, catalogue files
//! keep their names, and the planner's defects stay fixed.

mod common;
mod serial_support;

use common::home;
use modflash_testkit::{fixture_path, text};
use serde_json::Value;
use serial_support::Serve;

#[test]
fn a_serial_port_is_refused_dfu_before_any_plan_and_chooses_serial_by_itself() {
    let h = home();
    h.create("port", "photon", "1.5.0");
    let serve = Serve::start(&h, "port");
    let app = fixture_path("photon_tinker.bin");
    let app = app.to_str().unwrap();
    let device = serve.device();
    // --via dfu on a serial port: refused before a plan is printed or a question asked.
    let out = h.run(&["flash", app, "--device", &device, "--via", "dfu"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.is_empty(),
        "nothing printed before the refusal: {stdout}"
    );
    assert!(
        stderr.contains("cannot be written over USB DFU") && stderr.contains("--via serial"),
        "{stderr}"
    );
    // Without --via the connection's own transport is used.
    let out = h.run(&["plan", app, "--device", &device, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["via"], "serial", "{plan:#}");
    assert!(serve.stop().success());
    assert_eq!(
        h.show("port")["mode"],
        "app",
        "the device runs its app again"
    );
}

#[test]
fn home_catalogue_modules_are_named_by_the_file_they_were_added_as() {
    let h = home();
    let part1 = fixture_path("photon-system-part1@1.5.0.bin");
    h.ok(&["catalog", "add", part1.to_str().unwrap()]);
    h.create("named", "photon", "0.5.2");
    let out = h.ok(&[
        "plan",
        "--device-os",
        "1.5.0",
        "--device",
        "sim:named",
        "--json",
    ]);
    let plan: Value = serde_json::from_str(&out).unwrap();
    let files: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["file"].as_str())
        .collect();
    assert!(
        files.contains(&"photon-system-part1@1.5.0.bin (modflash catalogue)"),
        "{files:?}"
    );
    assert!(
        files.iter().all(|f| !f.contains("/catalog/")),
        "no stored path: {files:?}"
    );
}
