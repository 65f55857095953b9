//! Messages that fix things: each says what is wrong and what to type instead.

mod common;

use common::home;
use modflash_testkit::{fixture_path, path_arg};

#[test]
fn a_reference_that_is_not_one_says_what_one_looks_like_and_lists_the_devices() {
    let h = home();
    h.create("demo", "photon", "1.5.0");
    let (code, _, err) = h.run_text(&["modules", "--device", "old"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("a reference says how the device is reached"),
        "{err}"
    );
    assert!(err.contains("the devices here: --device sim:demo"), "{err}");
    let (_, _, err) = h.run_text(&["modules", "--device", "usb:0123"]);
    assert!(err.contains("an id is 24 hexadecimal digits"), "{err}");
    assert!(err.contains("`0123` has 4"), "{err}");
}

#[test]
fn a_misspelt_virtual_device_suggests_the_one_meant() {
    let h = home();
    h.create("demo", "photon", "1.5.0");
    let (code, _, err) = h.run_text(&["modules", "--device", "sim:demoo"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean sim:demo?"), "{err}");
    assert!(!err.contains("sim create demoo"), "{err}");
    let (_, _, err) = h.run_text(&["modules", "--device", "sim:bench"]);
    assert!(err.contains("modflash sim create bench"), "{err}");
    assert!(err.contains("the virtual devices here: demo"), "{err}");
}

#[test]
fn a_short_release_number_gets_the_releases_it_could_mean() {
    let h = home();
    let (code, _, err) = h.run_text(&[
        "sim",
        "create",
        "x",
        "--platform",
        "photon",
        "--device-os",
        "1.5",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("help: did you mean one of 1.5.0, 1.5.2?"),
        "{err}"
    );
}

#[test]
fn monitor_is_a_command() {
    let h = home();
    let (code, out, err) = h.run_text(&["monitor", "--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("serial port"), "{out}");
}

#[test]
fn mixed_system_firmware_is_not_called_a_release() {
    let h = home();
    h.create("mix", "photon", "1.5.0");
    h.hold_into_dfu("mix");
    let old_part2 = fixture_path("system-part2-0.5.2-photon.bin");
    h.ok(&[
        "dfu",
        "download",
        path_arg(&old_part2),
        "--device",
        "sim:mix",
        "--force",
    ]);
    let shown = h.ok(&["sim", "show", "mix"]);
    let first = shown.lines().next().unwrap();
    assert!(!first.contains("Device OS 1.5.0"), "{first}");
    assert!(
        first.contains(
            "system part 1 1502 (1.5.0, needs system part 2 ≥ 207), system part 2 17 (0.5.2)"
        ),
        "{first}"
    );
    assert!(h.show("mix")["device_os"].is_null());
}

#[test]
fn plan_lines_give_every_version_its_release() {
    let h = home();
    h.create("old", "photon", "0.5.2");
    let app = h.make_app("photon", "1.5.0");
    let plan = h.ok(&["plan", path_arg(&app), "--device", "sim:old"]);
    let boot = plan.lines().find(|l| l.contains("bootloader")).unwrap();
    assert!(
        boot.contains("bootloader 7 (0.5.2) → 501 (1.4.4–1.5.0)"),
        "{boot}"
    );
}

#[test]
fn a_bootloader_copied_in_place_is_announced_before_anything_is_written() {
    let h = home();
    h.create("p", "photon", "1.5.0");
    let (code, out, err) = h.run_text(&["plan", "--device-os", "1.5.2", "--device", "sim:p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("bootloader"),
        "the plan updates the bootloader: {out}"
    );
    let all = format!("{out}{err}");
    assert!(
        all.contains("keep the Photon powered and connected until the update ends"),
        "{all}"
    );
    // The Argon's bootloader goes through the Nordic MBR, whose copy survives a power cut.
    h.create("a", "argon", "2.2.0");
    let (code, out, err) = h.run_text(&["plan", "--device-os", "3.1.0", "--device", "sim:a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("bootloader"), "{out}");
    assert!(!format!("{out}{err}").contains("keep the"), "{out}{err}");
}

#[test]
fn sim_list_is_a_table_with_a_header() {
    let h = home();
    h.create("demo", "photon", "1.5.0");
    let out = h.ok(&["sim", "list"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["device", "platform", "mode", "Device OS", "id"],
        "{out}"
    );
    let row = lines.next().unwrap_or("");
    assert!(
        row.starts_with("sim:demo") && row.contains("1.5.0"),
        "{out}"
    );
}
