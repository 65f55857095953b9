//! The virtual device's scenarios through the binary, each asserting mode, LED and describe.

mod common;

use common::home;
use modflash_testkit::{fixture_path, path_arg};
use serde_json::Value;

fn module<'a>(dev: &'a Value, f: &str, n: &str, store: &str) -> &'a Value {
    dev["describe"]["m"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["f"] == f && m["n"] == n && m["l"] == store)
        .unwrap_or_else(|| panic!("no {f}{n} ({store}) in {}", dev["describe"]))
}

#[test]
fn core_image_in_the_user_slot_restores_the_factory_tinker() {
    let home = home();
    let (code, _, err) = home.run_text(&[
        "sim",
        "create",
        "p",
        "--platform",
        "photon",
        "--device-os",
        "1.5.0",
        "--user-app",
        path_arg(&fixture_path("core_tinker.bin")),
        "--factory-app",
        path_arg(&fixture_path("photon_tinker.bin")),
    ]);
    assert_eq!(code, 0, "{err}");
    let dev = home.show("p");
    assert_eq!(dev["mode"], "app");
    assert_eq!(
        dev["led"],
        serde_json::json!({"color": "cyan", "pattern": "breathing"})
    );
    let log = dev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(log.contains("the user part header is invalid"), "{log}");
    assert!(log.contains("Core image (platform 0"), "{log}");
    assert!(
        log.contains("blinking green fast: restored the factory app"),
        "{log}"
    );
    assert_eq!(
        module(&dev, "u", "1", "m")["v"],
        2,
        "Tinker (photon_tinker.bin) runs"
    );
}

#[test]
fn app_needing_newer_system_firmware_gives_breathing_magenta() {
    let home = home();
    let (code, _, err) = home.run_text(&[
        "sim",
        "create",
        "p",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
        "--user-app",
        path_arg(&fixture_path("photon_doctor.bin")),
    ]);
    assert_eq!(code, 0, "{err}");
    let dev = home.show("p");
    assert_eq!(dev["mode"], "safe_mode");
    assert_eq!(
        dev["led"],
        serde_json::json!({"color": "magenta", "pattern": "breathing"})
    );
    let user = module(&dev, "u", "1", "m");
    assert_eq!(user["vc"], 30);
    assert_eq!(
        user["vv"].as_u64().unwrap() & 0x04,
        0,
        "vv lacks the dependency bit: {user}"
    );
}

#[test]
fn bootloader_through_the_ota_region_and_parts_over_dfuse_then_the_app_runs() {
    let home = home();
    home.run_text(&[
        "sim",
        "create",
        "p",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
    ]);
    let (code, out, err) = home.run_text(&[
        "flash",
        path_arg(&fixture_path("photon-bootloader@1.5.0+lto.bin")),
        path_arg(&fixture_path("photon-system-part1@1.5.0.bin")),
        path_arg(&fixture_path("photon-system-part2@1.5.0.bin")),
        "--device",
        "sim:p",
        "--yes",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(alt 0, OTA region) + OTA flag in the DCT"),
        "{out}"
    );
    let dev = home.show("p");
    assert_eq!(dev["mode"], "app");
    assert_eq!(
        dev["led"],
        serde_json::json!({"color": "cyan", "pattern": "breathing"})
    );
    assert_eq!(module(&dev, "b", "0", "m")["v"], 501);
    assert_eq!(module(&dev, "s", "1", "m")["v"], 1502);
    assert_eq!(module(&dev, "s", "2", "m")["v"], 1502);
    assert!(dev["stats"]["control_transfers"].as_u64().unwrap() > 100);
}

#[test]
fn part2_over_ota_onto_052_is_refused_with_1340_and_nothing_changes() {
    let home = home();
    home.run_text(&[
        "sim",
        "create",
        "p",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
    ]);
    let before = home.show("p");
    let (code, out, err) = home.run_text(&[
        "serial",
        "flash",
        path_arg(&fixture_path("photon-system-part2@1.5.0.bin")),
        "--device",
        "sim:p",
        "--force",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("-1340") || text.contains("\u{2212}1340"),
        "{text}"
    );
    assert!(
        text.contains("system part 2 needs system part 1 \u{2265} 1502, installed 17"),
        "{text}"
    );
    let after = home.show("p");
    assert_eq!(before["describe"], after["describe"]);
    assert_eq!(after["mode"], "app");
}
