//! `modflash dfu download/upload`, `modules` in DFU mode, `devices` and `udev` through the
//! binary, against virtual Photon, Electron and Argon devices in-process (`--device sim:NAME`).

mod common;

use common::{home, user_version};
use modflash_testkit::{fixture_path, text};
use serde_json::Value;

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn round_trip(platform: &str, release: &str) {
    let h = home();
    h.create("d", platform, release);
    let app = h.make_app(platform, release);
    let app_bytes = std::fs::read(&app).unwrap();
    let before = h.show("d");
    // A running device is switched to DFU mode, written, verified and started.
    let out = h.ok(&[
        "dfu",
        "download",
        app.to_str().unwrap(),
        "--device",
        "sim:d",
        "--leave",
        "--json",
    ]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "step_verified"),
        "{out}"
    );
    let result = events.last().unwrap();
    assert_eq!(result["result"], "download");
    assert_eq!(result["kind"], "module");
    assert_eq!(result["writes"][0]["verified"], true);
    assert_eq!(result["mode_after"], "app");
    assert!(result["control_transfers"].as_u64().unwrap() > 0);
    let after = h.show("d");
    assert_eq!(after["mode"], "app", "{after:#}");
    assert!(
        after["stats"]["control_transfers"].as_u64()
            > before["stats"]["control_transfers"].as_u64()
    );
    assert_eq!(user_version(&after), user_version(&before));
    // Read it back.
    h.hold_into_dfu("d");
    let address = result["writes"][0]["address"].as_u64().unwrap().to_string();
    let up = h.file("up.bin");
    h.ok(&[
        "dfu",
        "upload",
        "--device",
        "sim:d",
        "--address",
        &address,
        "--length",
        &app_bytes.len().to_string(),
        "-o",
        up.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&up).unwrap(), app_bytes);
}

#[test]
fn photon_download_verify_leave_upload() {
    round_trip("photon", "1.5.0");
}

#[test]
fn electron_download_verify_leave_upload() {
    round_trip("electron", "1.5.0");
}

#[test]
fn argon_download_verify_leave_upload() {
    round_trip("argon", "1.5.0");
}

#[test]
fn modules_in_dfu_mode_equal_the_devices_own_inventory() {
    for (platform, release) in [
        ("photon", "1.5.0"),
        ("electron", "2.2.0"),
        ("argon", "1.5.0"),
    ] {
        let h = home();
        h.create("d", platform, release);
        let own = h.modules("sim:d");
        let transfers = h.show("d")["stats"]["control_transfers"].as_u64().unwrap();
        h.hold_into_dfu("d");
        let over_dfu = h.modules("sim:d");
        assert_eq!(own, over_dfu, "{platform} {release}");
        // It really was read over DFU.
        let after = h.show("d")["stats"]["control_transfers"].as_u64().unwrap();
        assert!(after > transfers + 10, "{platform}: {transfers} -> {after}");
    }
}

#[test]
fn wrong_platform_is_refused_even_forced_and_nothing_is_written() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    h.hold_into_dfu("d");
    let before = h.show("d")["stats"].clone();
    let core = fixture_path("core_tinker.bin");
    let out = h.run(&[
        "dfu",
        "download",
        core.to_str().unwrap(),
        "--device",
        "sim:d",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("refused, nothing was written") && err.contains("Core"),
        "{err}"
    );
    assert_eq!(
        h.show("d")["stats"]["bytes_programmed"],
        before["bytes_programmed"]
    );
}

#[test]
fn bootloader_and_dct_writes_need_force_and_the_device_refuses_the_bootloader() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    h.hold_into_dfu("d");
    let app = fixture_path("photon_tinker.bin");
    let app = app.to_str().unwrap();
    let out = h.run(&[
        "dfu",
        "download",
        app,
        "--device",
        "sim:d",
        "--address",
        "0x08000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bootloader") && err.contains("--force"),
        "{err}"
    );
    let out = h.run(&[
        "dfu",
        "download",
        app,
        "--device",
        "sim:d",
        "--alt",
        "1",
        "--address",
        "1753",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("DCT"), "{}", text(&out.stderr));
    // Forced: the device's own layout marks the bootloader read-only, so nothing is sent.
    let bl_before = h.file("bl0.bin");
    h.ok(&[
        "dfu",
        "upload",
        "--device",
        "sim:d",
        "--address",
        "0x08000000",
        "--length",
        "16384",
        "-o",
        bl_before.to_str().unwrap(),
    ]);
    let out = h.run(&[
        "dfu",
        "download",
        app,
        "--device",
        "sim:d",
        "--address",
        "0x08000000",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("not writable") && err.contains("nothing was sent") && err.contains("help:"),
        "{err}"
    );
    let bl_after = h.file("bl1.bin");
    h.ok(&[
        "dfu",
        "upload",
        "--device",
        "sim:d",
        "--address",
        "0x08000000",
        "--length",
        "16384",
        "-o",
        bl_after.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(bl_before).unwrap(),
        std::fs::read(bl_after).unwrap()
    );
}

#[test]
fn a_write_the_bootloader_refuses_is_an_error() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    h.hold_into_dfu("d");
    let raw = h.file("raw.bin");
    std::fs::write(&raw, [0u8; 64]).unwrap();
    // 0x0800C000 is writable in the layout, but Particle bootloaders protect everything
    // below 0x08020000: the device stalls the GETSTATUS of the erase.
    let out = h.run(&[
        "dfu",
        "download",
        raw.to_str().unwrap(),
        "--device",
        "sim:d",
        "--address",
        "0x0800C000",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("the device refused") && err.contains("0x0800C000"),
        "{err}"
    );
}

#[test]
fn raw_files_need_an_address() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    let raw = h.file("raw.bin");
    std::fs::write(&raw, [1u8, 2, 3, 4]).unwrap();
    let out = h.run(&[
        "dfu",
        "download",
        raw.to_str().unwrap(),
        "--device",
        "sim:d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--address"));
}

#[test]
fn dfuse_files_are_written_element_by_element() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    let app = std::fs::read(h.make_app("photon", "1.5.0")).unwrap();
    let file = modflash_dfu::DfuseFile {
        vendor_id: 0x2b04,
        product_id: 0xd006,
        device_version: 0xFFFF,
        targets: vec![modflash_dfu::DfuseTarget {
            alt: 0,
            name: None,
            elements: vec![modflash_dfu::DfuseElement {
                address: 0x080A_0000,
                data: app.clone(),
            }],
        }],
    }
    .to_bytes()
    .unwrap();
    let path = h.file("app.dfu");
    std::fs::write(&path, file).unwrap();
    let out = h.ok(&[
        "dfu",
        "download",
        path.to_str().unwrap(),
        "--device",
        "sim:d",
        "--json",
    ]);
    let r = last_json(&out);
    assert_eq!(r["kind"], "dfuse");
    assert_eq!(r["writes"].as_array().unwrap().len(), 1);
    let up = h.file("up.bin");
    h.ok(&[
        "dfu",
        "upload",
        "--device",
        "sim:d",
        "--address",
        "0x080A0000",
        "--length",
        &app.len().to_string(),
        "-o",
        up.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(up).unwrap(), app);
    // A .dfu for another device is refused.
    let other = h.file("electron.dfu");
    let mut bytes = std::fs::read(&path).unwrap();
    let _ = &mut bytes;
    let f = modflash_dfu::DfuseFile::parse(&bytes).unwrap();
    let wrong = modflash_dfu::DfuseFile {
        product_id: 0xd00a,
        ..f
    }
    .to_bytes()
    .unwrap();
    std::fs::write(&other, wrong).unwrap();
    let out = h.run(&[
        "dfu",
        "download",
        other.to_str().unwrap(),
        "--device",
        "sim:d",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn devices_lists_virtual_devices() {
    let h = home();
    h.create("a", "photon", "1.5.0");
    h.create("b", "argon", "1.5.0");
    h.hold_into_dfu("b");
    let v: Value = serde_json::from_str(&h.ok(&["devices", "--json"])).unwrap();
    let sims: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "virtual")
        .collect();
    assert_eq!(sims.len(), 2, "{v:#}");
    assert_eq!(sims[0]["ref"], "sim:a");
    assert_eq!(sims[0]["mode"], "app");
    assert_eq!(sims[1]["platform"], "argon");
    assert_eq!(sims[1]["mode"], "dfu");
    assert_eq!(sims[1]["device_id"].as_str().unwrap().len(), 24);
    let human = h.ok(&["devices"]);
    assert!(
        human.contains("sim:a") && human.contains("sim:b"),
        "{human}"
    );
}

#[test]
fn udev_prints_the_rules() {
    let h = home();
    let out = h.ok(&["udev"]);
    assert!(out.contains("ATTRS{idVendor}==\"2b04\""), "{out}");
    assert!(out.contains("udevadm control --reload-rules"));
    let dir = h.file("rules");
    std::fs::create_dir(&dir).unwrap();
    let msg = h.ok(&["udev", "--install", "--rules-dir", dir.to_str().unwrap()]);
    assert!(msg.contains("udevadm trigger"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(dir.join("50-particle.rules")).unwrap(),
        out
    );
}

#[test]
fn usb_without_a_device_says_what_to_do() {
    let h = home();
    let app = fixture_path("photon_tinker.bin");
    let out = h.run(&["dfu", "download", app.to_str().unwrap(), "--device", "usb"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("error:") && err.contains("help:"), "{err}");
    assert!(err.contains("DFU mode") || err.contains("libusb"), "{err}");
}
