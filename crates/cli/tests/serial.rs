//! The serial console end to end: `modflash sim serve` exposes a virtual Photon on a pty and
//! the `modflash` binary (or a raw tty client) talks to it like to a USB serial port:
//! `modules`, `i`/`v`/`m`, YMODEM flashes accepted and refused, mode switches by line rate.

mod common;
mod serial_support;

use std::time::Duration;

use common::home;
use modflash_testkit::{fixture_path, text};
use serde_json::Value;
use serial_support::{Serve, Tty};

fn modules_of(v: &Value) -> Vec<(String, u64, u64, bool)> {
    v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let c = &m["checks"];
            let all = ["integrity", "range", "platform", "dependencies"]
                .iter()
                .all(|k| c[k] == Value::Bool(true));
            (
                m["function"].as_str().unwrap().to_string(),
                m["index"].as_u64().unwrap(),
                m["version"].as_u64().unwrap(),
                all,
            )
        })
        .collect()
}

fn version_of(v: &Value, function: &str, index: u64) -> Option<u64> {
    modules_of(v)
        .into_iter()
        .find(|(f, i, _, _)| f == function && *i == index)
        .map(|(_, _, v, _)| v)
}

#[test]
fn modules_over_serial_equals_the_virtual_device() {
    let home = home();
    home.create("m1", "photon", "1.5.0");
    let direct = home.modules("sim:m1");
    let serve = Serve::start(&home, "m1");
    let over_serial = home.modules(&serve.device());
    // The one inventory shape: platform id and the modules with the same checks.
    let keys: Vec<&str> = over_serial
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["platform_id", "modules"]);
    assert_eq!(over_serial["platform_id"], 6);
    assert_eq!(modules_of(&over_serial), modules_of(&direct));
    let human = home.run(&["modules", "--device", &serve.device()]);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human.stderr));
    let out = text(&human.stdout);
    assert!(out.contains("Platform: 6 - Photon"), "{out}");
    assert!(
        out.contains("System part 2 - version 1502 (Device OS 1.5.0)"),
        "{out}"
    );
    assert!(out.contains("    Dependencies: PASS"), "{out}");
    assert!(
        out.contains("PASS needs system part 1 \u{2265} 1502: installed 1502"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
    assert!(serve.stop().success());
    // `modules` left listening mode again: the app runs.
    assert_eq!(home.show("m1")["mode"], "app");
}

#[test]
fn identify_version_and_mac_over_the_pty() {
    let home = home();
    home.create("id1", "photon", "1.5.0");
    let id = home.show("id1")["device_id"].as_str().unwrap().to_string();
    let serve = Serve::start(&home, "id1");
    // Not in listening mode yet: the port is quiet.
    let tty = Tty::open(&serve.link, 9600);
    tty.write(b"i");
    assert!(
        tty.drain(Duration::from_millis(300)).is_empty(),
        "quiet in app mode"
    );
    tty.set_baud(28800);
    assert_eq!(
        tty.ask(b"i", "id is"),
        format!("Your device id is {id}\r\n")
    );
    assert_eq!(
        tty.ask(b"v", "version"),
        "system firmware version: 1.5.0\n\r\n"
    );
    let mac = tty.ask(b"m", ":");
    assert!(
        mac.starts_with("Your device MAC address is\r\n02:"),
        "{mac:?}"
    );
    let s = tty.ask(b"s", "]}");
    assert!(
        s.starts_with("{\"p\":6,\"m\":[{\"s\":16384,\"l\":\"m\""),
        "{s}"
    );
    tty.write(b"x");
    drop(tty);
    assert!(serve.stop().success());
    assert_eq!(home.show("id1")["mode"], "app");
}

#[test]
fn flash_app_over_serial_runs_after_the_reset() {
    let home = home();
    home.create("app1", "photon", "0.5.2");
    let serve = Serve::start(&home, "app1");
    let app = fixture_path("photon_tinker.bin");
    let out = home
        .cmd()
        .args(["serial", "flash"])
        .arg(&app)
        .args(["--device", &serve.device(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "accepted");
    assert_eq!(report["verified"], true);
    assert_eq!(report["transfer"]["retransmissions"], 0);
    assert_eq!(report["transfer"]["bytes_acked"], 3952);
    assert_eq!(report["installed"]["version"], 2);
    assert!(serve.stop().success());
    let sim = home.show("app1");
    assert_eq!(sim["mode"], "app");
    let events = sim["events"].to_string();
    assert!(
        events.contains("running the application (user part version 2)"),
        "{events}"
    );
    assert_eq!(sim["reset_reason"], "update");
}

#[test]
fn system_parts_accepted_in_order_and_a_refused_part_changes_nothing() {
    let home = home();
    home.create("old", "photon", "0.5.2");
    let serve = Serve::start(&home, "old");
    let before = home.modules(&serve.device());
    let part2 = fixture_path("photon-system-part2@1.5.0.bin");
    // Refused by the pre-check (exit 1, nothing sent) ...
    let out = home
        .cmd()
        .args(["serial", "flash"])
        .arg(&part2)
        .args(["--device", &serve.device()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("the device would refuse it: dependency check failed (-1340): system part 2 needs system part 1 \u{2265} 1502, installed 17"),
        "{err}"
    );
    assert!(
        err.contains("help: flash system part 1 of Device OS 1.5.0 or later first"),
        "{err}"
    );
    // ... and, forced, by the device itself.
    let out = home
        .cmd()
        .args(["serial", "flash"])
        .arg(&part2)
        .args(["--device", &serve.device(), "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: the device refused it: dependency check failed (-1340): system part 2 needs system part 1 \u{2265} 1502, installed 17"),
        "{err}"
    );
    assert_eq!(home.modules(&serve.device()), before, "nothing changed");
    assert!(serve.stop().success());

    // The right order on a 0.7.0 Photon: bootloader, part 1, part 2 of 1.5.0. Over serial
    // the device reports no SHA-256 for them: each is installed, but not proven (exit 1)
    // unless --no-verify accepts that.
    home.create("mid", "photon", "0.7.0");
    let serve = Serve::start(&home, "mid");
    for (i, file) in [
        "photon-bootloader@1.5.0+lto.bin",
        "photon-system-part1@1.5.0.bin",
        "photon-system-part2@1.5.0.bin",
    ]
    .into_iter()
    .enumerate()
    {
        let out = home
            .cmd()
            .args(["serial", "flash"])
            .arg(fixture_path(file))
            .args(["--device", &serve.device()])
            .args(if i == 0 {
                &[][..]
            } else {
                &["--no-verify"][..]
            })
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if i == 0 {
            assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
            assert!(
                stderr.contains("error: written, not verified: the device reports no hash for this module over serial"),
                "{stderr}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "{file}: {stderr}");
            assert!(stdout.starts_with("not verified: "), "{file}: {stdout}");
        }
    }
    let after = home.modules(&serve.device());
    assert_eq!(version_of(&after, "bootloader", 0), Some(501));
    assert_eq!(version_of(&after, "system", 1), Some(1502));
    assert_eq!(version_of(&after, "system", 2), Some(1502));
    assert!(modules_of(&after).iter().all(|m| m.3), "{after}");
    assert!(serve.stop().success());
    assert_eq!(home.show("mid")["device_os"], "1.5.0");
}

#[test]
fn line_rate_14400_resets_into_dfu_and_28800_enters_listening() {
    let home = home();
    home.create("baud", "photon", "1.5.0");
    let serve = Serve::start(&home, "baud");
    let tty = Tty::open(&serve.link, 28800);
    assert!(tty.ask(b"v", "version").contains("1.5.0"));
    tty.set_baud(14400);
    std::thread::sleep(Duration::from_millis(150));
    // DFU mode: the bootloader has no console, and 28800 does not bring it back.
    tty.set_baud(28800);
    tty.write(b"s");
    assert!(tty.drain(Duration::from_millis(300)).is_empty());
    drop(tty);
    assert!(serve.stop().success());
    let sim = home.show("baud");
    assert_eq!(sim["mode"], "dfu");
    assert_eq!(sim["led"]["color"], "yellow");
    // A reset brings it back; opening the port at 28800 again (the same rate) counts.
    assert!(home.run(&["sim", "reset", "baud"]).status.success());
    let serve = Serve::start(&home, "baud");
    let tty = Tty::open(&serve.link, 28800);
    assert!(tty.ask(b"v", "version").contains("1.5.0"));
    drop(tty);
    let tty = Tty::open(&serve.link, 28800);
    assert!(tty.ask(b"i", "id is").starts_with("Your device id is "));
    drop(tty);
    assert!(serve.stop().success());
    assert_eq!(home.show("baud")["mode"], "listening");
}

#[test]
fn sim_serial_runs_the_console_on_stdin() {
    let home = home();
    home.create("con", "photon", "1.5.0");
    let mut child = home
        .cmd()
        .args(["sim", "serial", "con"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"vx").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "system firmware version: 1.5.0\n\r\n");
    assert_eq!(home.show("con")["mode"], "app", "x left listening mode");
}

#[test]
fn monitor_survives_the_port_going_away() {
    let home = home();
    home.create("mon", "photon", "1.5.0");
    let serve = Serve::start(&home, "mon");
    let link = serve.link.clone();
    let monitor = home
        .cmd()
        .args(["serial", "monitor", "--baud", "28800", "--device"])
        .arg(format!("serial:{}", link.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let tty = Tty::open(&link, 28800);
    tty.write(b"v");
    std::thread::sleep(Duration::from_millis(200));
    drop(tty);
    // The port goes away (the device resets / is unplugged) and comes back.
    assert!(serve.stop().success());
    std::thread::sleep(Duration::from_millis(300));
    let serve = Serve::start(&home, "mon");
    std::thread::sleep(Duration::from_millis(600));
    let tty = Tty::open(&serve.link, 28800);
    tty.write(b"i");
    std::thread::sleep(Duration::from_millis(300));
    drop(tty);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(monitor.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = monitor.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        stdout.contains("system firmware version: 1.5.0"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Your device id is"),
        "after the reconnect: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(stderr.matches("connected to").count(), 2, "{stderr}");
    drop(serve);
}

#[test]
fn planned_flash_over_a_serial_port_with_a_catalogue() {
    // A 0.7.0 Photon on a pty; the app needs 1.5.0; the catalogue holds the real 1.5.0 modules
    // (no synthetic release table for a real port): the plan sends bootloader, part 1, part 2
    // and the app over YMODEM, each validated by the device, and verifies the result.
    let home = home();
    home.create("planned", "photon", "0.7.0");
    let serve = Serve::start(&home, "planned");
    let catalog = tempfile::tempdir().unwrap();
    for f in [
        "photon-bootloader@1.5.0+lto.bin",
        "photon-system-part1@1.5.0.bin",
        "photon-system-part2@1.5.0.bin",
    ] {
        std::fs::copy(fixture_path(f), catalog.path().join(f)).unwrap();
    }
    let app = home.path().join("app.bin");
    let made = home
        .cmd()
        .args([
            "sim",
            "make-app",
            "--platform",
            "photon",
            "--device-os",
            "1.5.0",
            "-o",
        ])
        .arg(&app)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = home
        .cmd()
        .arg("flash")
        .arg(&app)
        .args([
            "--device",
            &serve.device(),
            "--via",
            "serial",
            "--yes",
            "--no-verify",
            "--catalog",
        ])
        .arg(catalog.path())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("over SERIAL — 4 writes"), "{stdout}");
    // The app is proven by the SHA-256 the device reports; the system modules, for which it
    // reports none over serial, are not (accepted with --no-verify).
    assert!(
        stdout.contains("user part 1 6 by its SHA-256, reported by the device"),
        "{stdout}"
    );
    assert!(stdout.contains("system part 1 1502 NOT PROVEN"), "{stdout}");
    assert!(
        stdout.contains("Written, not verified (--no-verify)"),
        "{stdout}"
    );
    assert!(serve.stop().success());
    let sim = home.show("planned");
    assert_eq!(sim["mode"], "app");
    assert_eq!(sim["device_os"], "1.5.0");
}

#[test]
fn over_serial_without_an_intermediate_release_the_missing_module_is_named() {
    // A 0.5.2 Photon behind a serial port and only the 1.5.0 modules in the catalogue: part 1
    // of 1.5.0 needs part 2 >= 207 before the device will take it, so no order exists.
    let home = home();
    home.create("gap", "photon", "0.5.2");
    let serve = Serve::start(&home, "gap");
    let catalog = tempfile::tempdir().unwrap();
    for f in [
        "photon-bootloader@1.5.0+lto.bin",
        "photon-system-part1@1.5.0.bin",
        "photon-system-part2@1.5.0.bin",
    ] {
        std::fs::copy(fixture_path(f), catalog.path().join(f)).unwrap();
    }
    let out = home
        .cmd()
        .args(["plan", "--device-os", "1.5.0", "--device", &serve.device()])
        .args(["--via", "serial", "--catalog"])
        .arg(catalog.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs system part 2 \u{2265} 207"),
        "{stderr}"
    );
    // The way out is DFU, which a serial port cannot do: the help names the USB device.
    assert!(stderr.contains("--device usb"), "{stderr}");
    assert!(serve.stop().success());
    assert_eq!(
        home.show("gap")["device_os"],
        "0.5.2",
        "nothing was written"
    );
}
