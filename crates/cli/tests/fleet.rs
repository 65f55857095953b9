//! Many devices at once through the `modflash` binary: one command for a bench of virtual
//! devices at mixed releases, a device that fails mid-run, the run log, device selection and
//! the everyday mode commands.

mod common;

use std::collections::BTreeMap;

use common::{home, user_version};
use modflash_testkit::path_arg;
use modflash_testkit::process::{output_within, text};
use serde_json::Value;

/// The last line of `flash --json` on several devices: the summary object.
fn summary(stdout: &str) -> Value {
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(v["event"], "summary", "{last}");
    v
}

/// `result` of each device in a summary, by device reference.
fn results(summary: &Value) -> BTreeMap<String, String> {
    summary["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_string(),
                d["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The versions `plan --json` would write, in order.
fn planned_versions(h: &modflash_testkit::Home, files: &[&str], device: &str) -> Vec<u64> {
    let mut args = vec!["plan"];
    args.extend_from_slice(files);
    args.extend_from_slice(&["--device", device, "--json"]);
    let plan: Value = serde_json::from_str(&h.ok(&args)).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        // The run log records writes; an erase step writes nothing.
        .filter(|s| s["erase"] != true)
        .map(|s| s["version"].as_u64().unwrap())
        .collect()
}

#[test]
fn sixteen_devices_at_mixed_releases_are_flashed_with_one_command() {
    let h = home();
    let bench: &[(&str, &str, usize)] = &[
        ("photon", "0.5.2", 4),
        ("photon", "1.5.0", 3),
        ("p1", "1.5.0", 2),
        ("electron", "1.5.0", 2),
        ("argon", "2.2.0", 2),
        ("p2", "5.5.0", 2),
        // No file for the Boron: its plan is impossible, the others go on.
        ("boron", "4.2.0", 1),
    ];
    let mut names = Vec::new();
    for (platform, release, count) in bench {
        for i in 0..*count {
            let name = format!("line-{platform}-{}-{i}", release.replace('.', ""));
            h.create(&name, platform, release);
            names.push(name);
        }
    }
    assert_eq!(names.len(), 16);
    let apps: Vec<String> = [
        ("photon", "2.3.1"),
        ("p1", "2.3.1"),
        ("electron", "2.3.1"),
        ("argon", "4.2.0"),
        ("p2", "6.2.0"),
    ]
    .iter()
    .map(|(p, r)| h.make_app(p, r).display().to_string())
    .collect();
    // Each device's own plan, made alone beforehand, with its platform's file.
    let mut expected = BTreeMap::new();
    for name in names.iter().filter(|n| !n.contains("boron")) {
        let platform = name.split('-').nth(1).unwrap();
        let app = apps
            .iter()
            .find(|a| a.contains(&format!("/{platform}-")))
            .unwrap();
        expected.insert(
            format!("sim:{name}"),
            planned_versions(&h, &[app.as_str()], &format!("sim:{name}")),
        );
    }

    let mut args = vec!["flash"];
    args.extend(apps.iter().map(String::as_str));
    args.extend_from_slice(&["--device", "sim:line-*", "--yes", "--json"]);
    let (code, out, err) = h.run_text(&args);
    assert_eq!(code, 1, "one device has no plan\n{err}");
    let s = summary(&out);
    let results = results(&s);
    assert_eq!(results.len(), 16);
    for (device, result) in &results {
        let want = if device.contains("boron") {
            "no_plan"
        } else {
            "verified"
        };
        assert_eq!(result, want, "{device}");
    }
    let boron = &s["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"].as_str().unwrap().contains("boron"))
        .unwrap()["problem"];
    assert!(
        boron
            .as_str()
            .unwrap()
            .contains("none of the files is built for the Boron"),
        "{boron}"
    );
    assert!(
        err.contains("1 of 16 devices did not end as planned"),
        "{err}"
    );
    assert!(err.contains("--device sim:line-boron-420-0"), "{err}");

    // Every other device runs the app, with exactly the plan it would have had alone.
    let history: Vec<Value> = h
        .ok(&["history", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(history.len(), 15, "one record per flashed device");
    for (device, versions) in &expected {
        let name = device.strip_prefix("sim:").unwrap();
        let shown = h.show(name);
        assert_eq!(shown["mode"], "app", "{name}");
        assert_eq!(user_version(&shown), Some(6), "{name}");
        let record = history.iter().find(|e| e["device"] == *device).unwrap();
        let written: Vec<u64> = record["plan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["version"].as_u64().unwrap())
            .collect();
        assert_eq!(&written, versions, "{device}: its own minimal plan");
        assert_eq!(record["result"], "verified");
    }
    assert_eq!(h.show("line-boron-420-0")["mode"], "app", "untouched");
}

#[test]
fn a_device_that_loses_power_mid_run_is_reported_and_the_others_finish() {
    let h = home();
    for name in ["a", "b", "c"] {
        h.create(name, "photon", "0.5.2");
    }
    let app = h.make_app("photon", "1.5.0");
    // Power is cut during b's 40th flash operation: in the middle of its first write.
    h.ok(&["sim", "power-cut", "b", "--after", "40"]);
    let (code, out, err) = h.run_text(&[
        "flash",
        path_arg(&app),
        "--device",
        "sim:a",
        "--device",
        "sim:b",
        "--device",
        "sim:c",
        "--yes",
        "--retries",
        "1",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    let s = summary(&out);
    let r = results(&s);
    assert_eq!(r["sim:a"], "verified");
    assert_eq!(r["sim:c"], "verified");
    assert_eq!(r["sim:b"], "failed");
    let b = &s["devices"][1];
    assert_eq!(b["attempts"], 2, "the lost connection was tried again: {b}");
    assert!(
        b["problem"].as_str().unwrap().contains("off"),
        "the second attempt finds it off: {b}"
    );
    assert!(err.contains("--device sim:b"), "{err}");
    // The same command for b alone, once it is powered again, finishes the job.
    h.ok(&["sim", "reset", "b"]);
    h.ok(&["flash", path_arg(&app), "--device", "sim:b", "--yes"]);
    assert_eq!(h.show("b")["mode"], "app");
}

#[test]
fn files_for_several_platforms_go_each_to_its_own_devices() {
    let h = home();
    h.create("ph", "photon", "1.5.0");
    h.create("el", "electron", "1.5.0");
    let photon = h.make_app("photon", "2.3.1");
    let electron = h.make_app("electron", "2.3.1");
    let (code, out, err) = h.run_text(&[
        "flash",
        path_arg(&photon),
        path_arg(&electron),
        "--device",
        "sim:*",
        "--yes",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Verified: every device ends as planned"),
        "{out}"
    );
    // One device: a file for another platform is refused, never skipped silently.
    let (code, _, err) = h.run_text(&[
        "flash",
        path_arg(&photon),
        path_arg(&electron),
        "--device",
        "sim:ph",
        "--yes",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not for this device's platform"), "{err}");
}

#[test]
fn the_run_log_keeps_every_line_of_concurrent_flashes() {
    let h = home();
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for n in &names {
        h.create(n, "photon", "1.5.0");
    }
    let app = h.make_app("photon", "2.3.1");
    // Three processes at once, two devices each, all appending to the same log.
    let children: Vec<_> = names
        .chunks(2)
        .map(|pair| {
            let mut cmd = h.cmd();
            cmd.args(["flash", path_arg(&app), "--yes"]);
            for n in pair {
                cmd.args(["--device", &format!("sim:{n}")]);
            }
            std::thread::spawn(move || output_within(cmd, std::time::Duration::from_secs(120)))
        })
        .collect();
    for c in children {
        let out = c.join().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let lines = h.ok(&["history", "--json"]);
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(entries.len(), 6, "{lines}");
    for n in &names {
        let device = format!("sim:{n}");
        let e = entries.iter().find(|e| e["device"] == *device).unwrap();
        assert_eq!(e["result"], "verified");
        assert_eq!(
            e["after"].as_array().unwrap().len(),
            e["before"].as_array().unwrap().len()
        );
        assert!(
            e["after"][1]["sha256"]
                .as_str()
                .is_some_and(|s| s.len() == 64),
            "{e}"
        );
    }
    // One device's record, as a table.
    let table = h.ok(&["history", "--device", "sim:r3"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.starts_with("time"), "{table}");
    assert!(
        table.contains("sim:r3") && table.contains("verified"),
        "{table}"
    );
}

#[test]
fn mode_and_reset_change_a_virtual_device_as_its_requests_do() {
    let h = home();
    h.create("m", "photon", "1.5.0");
    let steps = [
        (vec!["mode", "dfu"], "dfu", "now in DFU mode"),
        (
            vec!["mode", "listening"],
            "listening",
            "now in listening mode",
        ),
        (vec!["mode", "normal"], "app", "its application running"),
        (vec!["mode", "safe"], "safe_mode", "now in safe mode"),
        (vec!["reset"], "app", "its application running"),
    ];
    for (args, mode, says) in steps {
        let mut full = args.clone();
        full.extend_from_slice(&["--device", "sim:m"]);
        let out = h.ok(&full);
        assert!(out.contains(says), "{args:?}: {out}");
        assert_eq!(h.show("m")["mode"], mode, "{args:?}");
    }
    // The device named by the environment.
    let mut cmd = h.cmd();
    cmd.env("MODFLASH_DEVICE", "sim:m").args(["mode", "dfu"]);
    let out = output_within(cmd, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(h.show("m")["mode"], "dfu");
}

#[test]
fn a_device_without_firmware_cannot_be_sent_to_listening_mode() {
    let h = home();
    h.create("bare", "photon", "1.5.0");
    // Erase system part 1 over DFU: the bootloader stays in DFU mode.
    h.hold_into_dfu("bare");
    let blank = h.file("blank.bin");
    std::fs::write(&blank, vec![0xFF; 1024]).unwrap();
    h.ok(&[
        "dfu",
        "download",
        path_arg(&blank),
        "--device",
        "sim:bare",
        "--address",
        "0x08020000",
        "--force",
    ]);
    let (code, out, err) = h.run_text(&["mode", "listening", "--device", "sim:bare"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot enter listening mode"), "{err}");
    assert!(err.contains("modflash doctor"), "{err}");
}

#[test]
fn devices_is_a_table_with_a_header() {
    let h = home();
    h.create("t", "photon", "1.5.0");
    let out = h.ok(&["devices"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["device", "platform", "id", "mode", "Device", "OS", "port"]
    );
    let row = lines.find(|l| l.starts_with("sim:t")).unwrap();
    assert!(
        row.contains("photon") && row.contains("app") && row.contains("1.5.0"),
        "{row}"
    );
}
