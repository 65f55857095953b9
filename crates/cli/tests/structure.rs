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

#[test]
fn a_real_catalogue_file_wins_over_a_synthetic_image_of_the_same_module() {
    // A virtual Argon that has only its 1.5.0 SoftDevice: system part 1 of 1.5.0 needs
    // bootloader 501, which the release table can synthesise and the catalogue holds as the
    // real file. The real file is written, and the device ends up with exactly its bytes.
    let h = home();
    let softdevice = fixture_path("argon-softdevice@1.5.0.bin");
    h.ok(&[
        "sim",
        "create",
        "argon",
        "--platform",
        "argon",
        "--modules",
        softdevice.to_str().unwrap(),
    ]);
    let catalog = h.file("catalog");
    std::fs::create_dir_all(&catalog).unwrap();
    let bootloader = fixture_path("argon-bootloader@1.5.0.bin");
    std::fs::copy(&bootloader, catalog.join("argon-bootloader@1.5.0.bin")).unwrap();
    let app = h.make_app("argon", "1.5.0");
    let part1 = fixture_path("argon-system-part1@1.5.0.bin");
    let out = h.ok(&[
        "flash",
        part1.to_str().unwrap(),
        app.to_str().unwrap(),
        "--device",
        "sim:argon",
        "--catalog",
        catalog.to_str().unwrap(),
        "--yes",
    ]);
    assert!(out.contains("argon-bootloader@1.5.0.bin"), "{out}");
    assert!(!out.contains("release table"), "no synthetic image: {out}");
    let modules: Value =
        serde_json::from_str(&h.ok(&["modules", "--device", "sim:argon", "--json"])).unwrap();
    let installed = modules["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["function"] == "bootloader")
        .and_then(|m| m["sha256"].as_str())
        .map(str::to_string);
    let file = modflash_module::Module::parse(&std::fs::read(&bootloader).unwrap())
        .unwrap()
        .stored_sha256()
        .map(hex::encode);
    assert!(installed.is_some());
    assert_eq!(
        installed, file,
        "the installed bootloader is the catalogue file"
    );
}

#[test]
fn over_serial_the_refusal_names_the_intermediate_module_whatever_the_file_order() {
    // A 0.5.2 Photon on a port, parts 2 and 1 of 1.5.0 named in that order: part 2 needs
    // part 1 ≥ 1502 (which is right there), part 1 needs part 2 ≥ 207 first. The real need is
    // the intermediate part 2.
    let h = home();
    h.create("order", "photon", "0.5.2");
    let serve = Serve::start(&h, "order");
    let catalog = h.file("catalog");
    std::fs::create_dir_all(&catalog).unwrap();
    let bootloader = "photon-bootloader@1.5.0+lto.bin";
    std::fs::copy(fixture_path(bootloader), catalog.join(bootloader)).unwrap();
    let part2 = fixture_path("photon-system-part2@1.5.0.bin");
    let part1 = fixture_path("photon-system-part1@1.5.0.bin");
    let out = h.run(&[
        "plan",
        part2.to_str().unwrap(),
        part1.to_str().unwrap(),
        "--device",
        &serve.device(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a serial plan needs a system part 2 \u{2265} 207 (e.g. Device OS 0.7.0)"),
        "{stderr}"
    );
    assert!(!stderr.contains("needs a system part 1"), "{stderr}");
    assert!(serve.stop().success());
}

#[test]
fn flash_asks_only_a_terminal_and_otherwise_wants_yes() {
    let h = home();
    h.create("ask", "photon", "1.5.0");
    let app = fixture_path("photon_tinker.bin");
    let app = app.to_str().unwrap();
    let before = h.sim_file("ask");
    for args in [
        vec!["flash", app, "--device", "sim:ask"],
        vec!["flash", app, "--device", "sim:ask", "--json"],
    ] {
        // Standard input is not a terminal here: nobody can answer, so nothing is written.
        let out = h.run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--yes"), "{stderr}");
        assert_eq!(h.sim_file("ask"), before, "{args:?} wrote to the device");
    }
}

#[test]
fn a_bad_device_reference_says_what_one_looks_like() {
    let h = home();
    let out = h.run(&["modules", "--device", "bogus"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`bogus` is not a device reference") && stderr.contains("help:"),
        "{stderr}"
    );
}

#[test]
fn a_device_already_in_dfu_mode_is_not_switched_again() {
    let h = home();
    h.create("dfu", "photon", "1.5.0");
    h.hold_into_dfu("dfu");
    let app = fixture_path("photon_tinker.bin");
    let out = h.ok(&[
        "dfu",
        "download",
        app.to_str().unwrap(),
        "--device",
        "sim:dfu",
        "--json",
    ]);
    let changes = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "started" && e["operation"] == "mode_change")
        .count();
    assert_eq!(changes, 0, "{out}");
}
