//! Interop through an emulated USB bus (`modflash sim attach`, umockdev): the real dfu-util 0.11
//! against a virtual Photon (`-l`, download with leave, upload, the DCT alt, a `.dfu` made by
//! `dfuse-pack`, a refused bootloader write), and our own binary with `--device usb` going
//! through libusb exactly as on hardware.
//!
//! Skipped with a loud notice when dfu-util, dfuse-pack or umockdev are missing, unless
//! `MODFLASH_REQUIRE_INTEROP=1`, which makes that a failure.

mod common;

use common::{home, user_version, BIN};
use modflash_testkit::interop::{find_tool, skip};
use modflash_testkit::{fixture_path, path_arg, text, Home};
use serde_json::Value;

/// True when the tools are there; otherwise the test is skipped (see [`skip`]).
fn interop(test: &str) -> bool {
    let mut missing: Vec<String> = ["dfu-util", "dfuse-pack"]
        .into_iter()
        .filter(|tool| find_tool(tool).is_none())
        .map(String::from)
        .collect();
    if let Some(why) = common::bus_unavailable() {
        missing.push(format!("umockdev ({why})"));
    }
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        &format!("DFU interop needs {}", missing.join(", ")),
        "apt-get install dfu-util umockdev libumockdev-dev",
    );
    false
}

/// `modflash sim attach NAME -- ARGS`.
fn attach(h: &Home, name: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["sim", "attach", name, "--"];
    all.extend_from_slice(args);
    h.run(&all)
}

fn dfu_photon(h: &Home) -> String {
    h.create("d", "photon", "1.5.0");
    h.hold_into_dfu("d");
    h.show("d")["device_id"].as_str().unwrap().to_string()
}

fn read(h: &Home, alt: &str, address: &str, length: usize) -> Vec<u8> {
    let out = h.file("read.bin");
    h.ok(&[
        "dfu",
        "upload",
        "--device",
        "sim:d",
        "--alt",
        alt,
        "--address",
        address,
        "--length",
        &length.to_string(),
        "-o",
        path_arg(&out),
    ]);
    std::fs::read(out).unwrap()
}

#[test]
fn dfu_util_lists_the_virtual_photon() {
    if !interop("dfu_util_lists_the_virtual_photon") {
        return;
    }
    let h = home();
    let id = dfu_photon(&h);
    let out = attach(&h, "d", &["dfu-util", "-l"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    // The command's exit code is sim attach's.
    let out = attach(&h, "d", &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    for needle in [
        "Found DFU: [2b04:d006] ver=0250",
        "alt=0, name=\"@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg\"",
        "alt=1, name=\"@DCT Flash   /0x00000000/01*016Kg\"",
        &format!("serial=\"{id}\""),
    ] {
        assert!(
            listing.contains(needle),
            "{needle:?} missing in:\n{listing}"
        );
    }
}

#[test]
fn dfu_util_download_with_leave_runs_the_app_and_uploads_it_back() {
    if !interop("dfu_util_download_with_leave_runs_the_app_and_uploads_it_back") {
        return;
    }
    let h = home();
    dfu_photon(&h);
    let app = fixture_path("photon_tinker.bin");
    let bytes = std::fs::read(&app).unwrap();
    let out = attach(
        &h,
        "d",
        &[
            "dfu-util",
            "-d",
            "2b04:d006",
            "-a",
            "0",
            "-s",
            "0x080A0000:leave",
            "-D",
            path_arg(&app),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("File downloaded successfully"));
    let sim = h.show("d");
    assert_eq!(sim["mode"], "app", "{sim:#}");
    assert_eq!(
        user_version(&sim),
        Some(2),
        "photon_tinker.bin is user part version 2"
    );
    // -U reads it back.
    h.hold_into_dfu("d");
    let up = h.file("up.bin");
    let spec = format!("0x080A0000:{}", bytes.len());
    let out = attach(
        &h,
        "d",
        &[
            "dfu-util",
            "-d",
            "2b04:d006",
            "-a",
            "0",
            "-s",
            &spec,
            "-U",
            path_arg(&up),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&up).unwrap(), bytes);
}

#[test]
fn dfu_util_writes_the_dct_alt() {
    if !interop("dfu_util_writes_the_dct_alt") {
        return;
    }
    let h = home();
    dfu_photon(&h);
    let claim: Vec<u8> = (0..64u8).map(|i| b'a' + i % 26).collect();
    let file = h.file("claim.bin");
    std::fs::write(&file, &claim).unwrap();
    let out = attach(
        &h,
        "d",
        &[
            "dfu-util",
            "-d",
            "2b04:d006",
            "-a",
            "1",
            "-s",
            "1762:64",
            "-D",
            path_arg(&file),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(read(&h, "1", "1762", 64), claim);
}

#[test]
fn dfu_util_writes_a_dfuse_pack_file_and_modflash_reads_it_too() {
    if !interop("dfu_util_writes_a_dfuse_pack_file_and_modflash_reads_it_too") {
        return;
    }
    let h = home();
    dfu_photon(&h);
    let app = h.make_app("photon", "1.5.0");
    let bytes = std::fs::read(&app).unwrap();
    let dfu = h.file("app.dfu");
    let packed = std::process::Command::new("dfuse-pack")
        .args([
            "-b",
            &format!("0x080A0000:{}", path_arg(&app)),
            "-D",
            "0x2b04:0xd006",
            path_arg(&dfu),
        ])
        .output()
        .unwrap();
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    let out = attach(
        &h,
        "d",
        &[
            "dfu-util",
            "-d",
            "2b04:d006",
            "-a",
            "0",
            "-D",
            path_arg(&dfu),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(read(&h, "0", "0x080A0000", bytes.len()), bytes);
    // modflash's own .dfu reader takes dfuse-pack's file.
    let out = h.ok(&[
        "dfu",
        "download",
        path_arg(&dfu),
        "--device",
        "sim:d",
        "--json",
    ]);
    let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["kind"], "dfuse");
    assert_eq!(r["writes"][0]["address"], 0x080A_0000);
    assert_eq!(r["writes"][0]["bytes"], bytes.len());
}

#[test]
fn dfu_util_bootloader_write_fails_as_on_the_device() {
    if !interop("dfu_util_bootloader_write_fails_as_on_the_device") {
        return;
    }
    let h = home();
    dfu_photon(&h);
    let before = read(&h, "0", "0x08000000", 0x4000);
    let app = fixture_path("photon_tinker.bin");
    let out = attach(
        &h,
        "d",
        &[
            "dfu-util",
            "-d",
            "2b04:d006",
            "-a",
            "0",
            "-s",
            "0x08000000:force",
            "-D",
            path_arg(&app),
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("Error during download get_status"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        read(&h, "0", "0x08000000", 0x4000),
        before,
        "the bootloader changed"
    );
    assert_eq!(h.show("d")["mode"], "dfu");
}

#[test]
fn modflash_flash_over_the_emulated_usb_bus_runs_the_app() {
    if !interop("modflash_flash_over_the_emulated_usb_bus_runs_the_app") {
        return;
    }
    let h = home();
    let id = dfu_photon(&h);
    // The same modules, read back over libusb, as in-process.
    let out = attach(&h, "d", &[BIN, "modules", "--device", "usb", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let over_usb: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(over_usb, h.modules("sim:d"));
    let out = attach(&h, "d", &[BIN, "devices", "--json"]);
    let devices: Value = serde_json::from_slice(&out.stdout).unwrap();
    let usb = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "usb")
        .unwrap();
    assert_eq!(usb["mode"], "dfu");
    assert_eq!(usb["device_id"], id.as_str());
    assert_eq!(usb["usb_id"], "2b04:d006");
    // `plan --json` and `doctor --json` print one document: the read-back's progress goes to
    // standard error.
    let app = fixture_path("photon_tinker.bin");
    for args in [
        vec![BIN, "plan", path_arg(&app), "--device", "usb", "--json"],
        vec![BIN, "doctor", "--device", "usb", "--json"],
    ] {
        let out = attach(&h, "d", &args);
        let doc: Result<Value, _> = serde_json::from_slice(&out.stdout);
        assert!(doc.is_ok(), "{args:?}: {}", text(&out.stdout));
    }
    // Flash: plan from the DFU read-back, write, verify, leave, check.
    let out = attach(
        &h,
        "d",
        &[BIN, "flash", path_arg(&app), "--device", "usb", "--yes"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("Verified:"),
        "{}",
        text(&out.stdout)
    );
    let sim = h.show("d");
    assert_eq!(sim["mode"], "app");
    assert_eq!(user_version(&sim), Some(2));
}

#[test]
fn modflash_switches_a_running_device_to_dfu_over_the_bus() {
    if !interop("modflash_switches_a_running_device_to_dfu_over_the_bus") {
        return;
    }
    let h = home();
    h.create("d", "photon", "1.5.0");
    let app = fixture_path("photon_tinker.bin");
    let out = attach(
        &h,
        "d",
        &[
            BIN,
            "dfu",
            "download",
            path_arg(&app),
            "--device",
            "usb",
            "--leave",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(r["mode_after"], "normal", "{r:#}");
    assert_eq!(r["writes"][0]["verified"], true);
    let sim = h.show("d");
    assert_eq!(sim["mode"], "app");
    assert_eq!(user_version(&sim), Some(2));
    // A flash of a running device goes the same way.
    let app = h.make_app("photon", "1.5.0");
    let out = attach(
        &h,
        "d",
        &[BIN, "flash", path_arg(&app), "--device", "usb", "--yes"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(user_version(&h.show("d")), Some(6));
}
