//! Several virtual devices on one emulated USB bus (`modflash sim attach A B C -- …`, umockdev),
//! seen by modflash's own libusb transport as hardware on a desk: `devices` lists each under its
//! own id and port, `flash --device all` flashes every one, and without `--device` a terminal is
//! asked which device while a script is told the `--device` values. Each device's serial port
//! is on the bus too, and `sim serve` beside `sim attach` links to it.
//!
//! Skipped with a loud notice when umockdev is missing, unless `MODFLASH_REQUIRE_INTEROP=1`,
//! which makes that a failure.

mod common;

use std::time::Duration;

use common::{bus, home, user_version, BIN};
use modflash_testkit::terminal::Terminal;
use modflash_testkit::{fixture_path, path_arg, Home};

/// `modflash sim attach SIMS -- modflash ARGS`: the command's exit code, stdout and stderr.
fn on_bus(h: &Home, sims: &[&str], args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["sim", "attach"];
    all.extend_from_slice(sims);
    all.extend_from_slice(&["--", BIN]);
    all.extend_from_slice(args);
    h.run_text(&all)
}

fn device_id(h: &Home, name: &str) -> String {
    h.show(name)["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn devices_on_one_bus_are_listed_and_all_flashed_with_device_all() {
    if !bus("devices_on_one_bus_are_listed_and_all_flashed_with_device_all") {
        return;
    }
    let h = home();
    // A production line of Photons at mixed releases, one of them in DFU mode already.
    let line = [
        ("line-1", "0.5.2"),
        ("line-2", "1.5.0"),
        ("line-3", "1.5.0"),
        ("line-4", "2.2.0"),
    ];
    for (name, release) in line {
        h.create(name, "photon", release);
    }
    h.hold_into_dfu("line-3");
    let (code, listing, err) = on_bus(&h, &["line-*"], &["devices"]);
    assert_eq!(code, 0, "{err}");
    let mut ports = Vec::new();
    for (name, _) in line {
        let id = device_id(&h, name);
        let row = listing
            .lines()
            .find(|l| l.starts_with(&format!("usb:{id} ")))
            .unwrap_or_else(|| panic!("{name} ({id}) is not listed:\n{listing}"));
        let mode = if name == "line-3" { "dfu" } else { "normal" };
        assert!(
            row.contains(" photon ") && row.contains(&format!(" {mode} ")),
            "{row}"
        );
        ports.push(
            row.split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string(),
        );
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), line.len(), "each device has its own node");

    let app = fixture_path("photon_tinker.bin");
    let (code, out, err) = on_bus(
        &h,
        &["line-*"],
        &["flash", path_arg(&app), "--device", "all", "--yes"],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("Verified: every device ends as planned"),
        "{all}"
    );
    for (name, _) in line {
        let sim = h.show(name);
        assert_eq!(sim["mode"], "app", "{name}: {sim:#}");
        assert_eq!(user_version(&sim), Some(2), "{name} runs photon_tinker.bin");
        let id = device_id(&h, name);
        assert!(
            all.lines()
                .any(|l| l.starts_with(&format!("usb:{id} ")) && l.contains("verified")),
            "no verified summary row for {name}:\n{all}"
        );
    }
}

#[test]
fn without_device_a_terminal_is_asked_and_a_script_is_told_the_choices() {
    if !bus("without_device_a_terminal_is_asked_and_a_script_is_told_the_choices") {
        return;
    }
    let h = home();
    h.create("left", "photon", "1.5.0");
    h.create("right", "photon", "2.2.0");
    let ids = [device_id(&h, "left"), device_id(&h, "right")];

    // No terminal: an error naming both.
    let (code, _, err) = on_bus(&h, &["left", "right"], &["modules"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2 devices are attached"), "{err}");
    for id in &ids {
        assert!(err.contains(&format!("--device usb:{id}")), "{err}");
    }

    // On a terminal: the devices table to choose from; Enter takes the first.
    let mut cmd = h.cmd();
    cmd.args(["sim", "attach", "left", "right", "--", BIN, "modules"]);
    let mut term = Terminal::spawn(cmd);
    let screen = term.wait_for(
        "device platform id mode Device OS port",
        Duration::from_secs(30),
    );
    assert!(screen.contains("Which device?"), "{screen}");
    for id in &ids {
        assert!(screen.contains(&format!("usb:{id}")), "{screen}");
    }
    term.type_keys(b"\r");
    let (status, screen) = term.finish(Duration::from_secs(60));
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("system part 2"),
        "no modules shown:\n{screen}"
    );
}

#[test]
fn the_serial_port_is_on_the_bus_and_sim_serve_links_to_it() {
    if !bus("the_serial_port_is_on_the_bus_and_sim_serve_links_to_it") {
        return;
    }
    let h = home();
    h.create("d", "photon", "2.2.0");
    let id = device_id(&h, "d");
    // On the bus: the CDC port as /dev/ttyACM0, with the device's USB ids and serial number.
    let (code, listing, err) = on_bus(&h, &["d"], &["devices"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("serial:/dev/ttyACM0 ")
                && l.contains(" photon ")
                && l.contains(&id)),
        "{listing}"
    );
    let (code, out, err) = on_bus(&h, &["d"], &["modules", "--device", "serial:/dev/ttyACM0"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("system part 2"), "{out}");

    // Beside the attach, `sim serve` links to the port the attach serves.
    let link = h.file("d.tty");
    let script = format!(
        "{BIN} sim serve d --serial-link {link} & serve=$!; \
         for i in $(seq 100); do [ -e {link} ] && break; sleep 0.05; done; \
         {BIN} modules --device serial:{link}; code=$?; kill $serve; wait $serve; exit $code",
        link = path_arg(&link)
    );
    let (code, out, err) = h.run_text(&["sim", "attach", "d", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("every module passes every check"), "{out}");
    assert!(
        out.contains("sim:d is on an emulated USB bus (sim attach), which serves its serial port"),
        "{out}"
    );
    assert!(!link.exists(), "sim serve removes its link");
    assert!(
        !h.path().join("sims/d.tty").exists(),
        "sim attach removes the port it published"
    );
}
