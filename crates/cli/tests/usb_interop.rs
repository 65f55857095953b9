//! modflash's own control-request client through libusb, against virtual devices on the
//! emulated USB bus (`modflash sim attach`, umockdev, vendor requests answered by the device's
//! firmware): `modules --device usb` in normal mode is the device's own module table, with no
//! serial port used; `flash --via usb` installs system parts and an app, each validated by the
//! device as it arrives; a refusal comes back in the device's words and changes nothing; and
//! `flash` from DFU mode costs about what a DFU download costs.
//!
//! Skipped with a loud notice when umockdev is missing, unless `MODFLASH_REQUIRE_INTEROP=1`,
//! which makes that a failure.

mod common;

use common::{bus, home, user_version, BIN};
use modflash_testkit::{fixture_path, path_arg, text, Home};
use serde_json::Value;

/// `modflash sim attach NAME -- modflash ARGS`: exit code, stdout, stderr.
fn on_bus(h: &Home, name: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["sim", "attach", name, "--", BIN];
    all.extend_from_slice(args);
    h.run_text(&all)
}

/// The device's events since `from` (`sim show --json`).
fn events_since(h: &Home, name: &str, from: usize) -> Vec<String> {
    h.show(name)["events"]
        .as_array()
        .unwrap()
        .iter()
        .skip(from)
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect()
}

fn event_count(h: &Home, name: &str) -> usize {
    h.show(name)["events"].as_array().unwrap().len()
}

/// What a module table in normal mode can carry of an inventory: the running modules only and
/// no addresses or hashes before 5.6.0 (`new_format` false); addresses never.
fn comparable(inventory: &Value, new_format: bool) -> Vec<Value> {
    inventory["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| new_format || m["store"] == "main")
        .map(|m| {
            let mut m = m.clone();
            m["start_address"] = Value::Null;
            if !new_format {
                m["sha256"] = Value::Null;
            }
            m
        })
        .collect()
}

#[test]
fn modules_in_normal_mode_are_the_device_module_table_without_its_serial_port() {
    if !bus("modules_in_normal_mode_are_the_device_module_table_without_its_serial_port") {
        return;
    }
    for (platform, release, new_format) in [
        ("photon", "1.5.0", false),
        ("argon", "2.2.0", false),
        ("p2", "6.2.0", true),
    ] {
        let h = home();
        h.create("d", platform, release);
        let own = h.modules("sim:d");
        let from = event_count(&h, "d");
        let (code, out, err) = on_bus(&h, "d", &["modules", "--device", "usb", "--json"]);
        assert_eq!(code, 0, "{platform} {release}: {out}{err}");
        let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(got["platform_id"], own["platform_id"]);
        assert_eq!(
            comparable(&got, new_format),
            comparable(&own, new_format),
            "{platform} {release}"
        );
        // Read in normal mode: the device never left its app, nor opened listening mode.
        let sim = h.show("d");
        assert_eq!(sim["mode"], "app", "{platform}: {sim:#}");
        let events = events_since(&h, "d", from);
        assert!(
            !events
                .iter()
                .any(|e| e.contains("listening") || e.contains("DFU")),
            "{platform}: {events:#?}"
        );
    }
}

#[test]
fn flash_via_usb_installs_system_parts_and_an_app_each_validated_by_the_device() {
    if !bus("flash_via_usb_installs_system_parts_and_an_app_each_validated_by_the_device") {
        return;
    }
    let h = home();
    h.create("p", "photon", "1.4.4");
    let files = [
        fixture_path("photon-system-part1@1.5.0.bin"),
        fixture_path("photon-system-part2@1.5.0.bin"),
        fixture_path("photon_tinker.bin"),
    ];
    let mut args = vec!["flash"];
    args.extend(files.iter().map(|f| path_arg(f)));
    args.extend(["--device", "usb", "--via", "usb", "--yes", "--json"]);
    let (code, out, err) = on_bus(&h, "p", &args);
    let r = common::flash_result(&out);
    let steps = r["steps"].as_array().unwrap();
    let functions: Vec<&str> = steps
        .iter()
        .map(|s| s["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["system", "system", "user"], "{r:#}");
    assert!(steps.iter().all(|s| s["transport"] == "usb"), "{r:#}");
    // Each module was accepted by the device when it arrived, and the device ends as planned.
    assert_eq!(
        out.matches("\"event\":\"step_accepted\"").count(),
        3,
        "{out}"
    );
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r:#}");
    let sim = h.show("p");
    assert_eq!(sim["mode"], "app", "{sim:#}");
    assert_eq!(sim["device_os"], "1.5.0", "{sim:#}");
    assert_eq!(user_version(&sim), Some(2), "photon_tinker.bin runs");
    // A 1.x module table carries no hashes: accepted, but not proven, and said so.
    assert!(r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["evidence"] == "device_accepted"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("written, not verified"), "{err}");
}

/// Set in the environment of this test binary when it runs on the bus as the child of
/// [`a_refusal_over_the_bus_is_in_the_device_words_and_changes_nothing`].
const CHILD: &str = "MODFLASH_USB_REFUSAL_CHILD";

/// The planner never sends a module the device would refuse, so the refusal is provoked
/// below it: this test binary runs again on the bus (`sim attach -- THIS_BINARY --exact
/// sends_part2_without_part1`) and there sends the module through modflash's own libusb
/// transport and executor.
#[test]
fn a_refusal_over_the_bus_is_in_the_device_words_and_changes_nothing() {
    if !bus("a_refusal_over_the_bus_is_in_the_device_words_and_changes_nothing") {
        return;
    }
    let h = home();
    h.create("p", "photon", "1.4.4");
    let before = h.show("p");
    let exe = std::env::current_exe().unwrap();
    let out = h
        .cmd()
        .args(["sim", "attach", "p", "--"])
        .arg(&exe)
        .args(["--exact", "sends_part2_without_part1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("the device refused system-part2.bin: dependency check failed (-1340)"),
        "the child ran on the bus: {all}"
    );
    let after = h.show("p");
    assert_eq!(after["describe"], before["describe"]);
    assert_eq!(after["mode"], "app");
}

/// The child: system part 2 of 1.5.0 without its system part 1, over control requests.
#[test]
fn sends_part2_without_part1() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    use modflash::exec::{execute, Options, Task, TaskAction};
    use modflash::progress::{Cancel, Quiet};
    use modflash::transport::usb::UsbLink;
    let part2 = std::fs::read(fixture_path("photon-system-part2@1.5.0.bin")).unwrap();
    let link = UsbLink::open(&modflash::DeviceRef::Usb).unwrap();
    let mut session = modflash::Session::from_link(Box::new(link));
    let tasks = [Task {
        label: "writing system part 2 of 1.5.0".into(),
        action: TaskAction::Usb {
            name: "system-part2.bin".into(),
            data: &part2,
        },
    }];
    let options = Options {
        verify: true,
        leave_at: None,
    };
    let err = execute(&mut session, &tasks, options, &mut Quiet, &Cancel::new()).unwrap_err();
    println!("{err}");
    assert_eq!(
        err.to_string(),
        "the device refused system-part2.bin: dependency check failed (-1340)"
    );
    assert!(matches!(
        err,
        modflash::Error::Refused {
            code: Some(-1340),
            ..
        }
    ));
}

#[test]
fn flash_from_dfu_mode_costs_about_a_dfu_download() {
    if !bus("flash_from_dfu_mode_costs_about_a_dfu_download") {
        return;
    }
    let app = fixture_path("photon_tinker.bin");
    let cost = |args: &[&str]| {
        let h = home();
        h.create("p", "photon", "1.5.0");
        h.hold_into_dfu("p");
        let stats = |h: &Home| {
            let s = h.show("p")["stats"].clone();
            (
                s["control_transfers"].as_u64().unwrap(),
                s["modelled_us"].as_u64().unwrap(),
            )
        };
        let (t0, us0) = stats(&h);
        let (code, out, err) = on_bus(&h, "p", args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert_eq!(h.show("p")["mode"], "app");
        let (t1, us1) = stats(&h);
        (t1 - t0, us1 - us0)
    };
    let download = cost(&[
        "dfu",
        "download",
        path_arg(&app),
        "--device",
        "usb",
        "--leave",
    ]);
    let flash = cost(&["flash", path_arg(&app), "--device", "usb", "--yes"]);
    // bench/dfu.sh: dfu-util takes 21 transfers, in the download's modelled time.
    assert!(flash.0 <= 42, "flash {flash:?}, download {download:?}");
    assert!(
        flash.1 * 10 <= download.1 * 11,
        "flash {flash:?}, download {download:?}"
    );
}
