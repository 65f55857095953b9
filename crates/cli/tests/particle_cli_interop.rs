//! Interop with Particle's own CLI (particle-cli 3.51, node 22) through an emulated USB bus
//! (`modflash sim attach`): virtual Photons (Device OS 1.5.0 and 2.2.0) and an Argon (2.2.0)
//! answer its control requests as hardware does — `usb list` in normal and DFU mode, the mode
//! commands, `flash --local` of an app from normal mode (into DFU mode and back) and of a Gen3
//! bootloader (control requests 250–253), `flash --local` of an application bundle (the
//! assets over 250–253, skipped the second time after GetAssetInfo), and `serial identify`,
//! which finds the serial port (udevadm) and asks over control requests.
//!
//! Skipped with a loud notice when particle-cli, node 22 or umockdev are missing, unless
//! `MODFLASH_REQUIRE_INTEROP=1`, which makes that a failure (`.ci/run` installs them).

mod common;

use std::process::Output;
use std::time::Duration;

use common::{home, user_version};
use modflash_module::release::platform_release;
use modflash_module::ModuleFunction;
use modflash_testkit::interop::{particle_cli, tools, ParticleCli};
use modflash_testkit::process::output_within;
use modflash_testkit::{fixture_path, path_arg, text, Home};
use serde_json::Value;

/// The longest one particle-cli command may take (a flash with two mode changes takes ~5 s).
const LIMIT: Duration = Duration::from_secs(90);

/// particle-cli, when it and the emulated bus are there; otherwise the test is skipped.
fn peers(test: &str) -> Option<ParticleCli> {
    let cli = particle_cli(test)?;
    if !common::bus(test) {
        return None;
    }
    Some(cli)
}

/// `modflash sim attach SIMS... [--trace] -- node particle ARGS`, with particle-cli's settings in
/// the home.
fn particle(h: &Home, cli: &ParticleCli, sims: &[&str], trace: bool, args: &[&str]) -> Output {
    let mut cmd = h.cmd();
    cmd.args(["sim", "attach"]).args(sims);
    if trace {
        cmd.arg("--trace");
    }
    cmd.arg("--")
        .arg(&cli.node)
        .arg(&cli.script)
        .args(args)
        .env("HOME", h.path());
    output_within(cmd, LIMIT)
}

/// Like [`particle`], and the command must succeed; its standard output.
fn particle_ok(h: &Home, cli: &ParticleCli, sims: &[&str], args: &[&str]) -> String {
    let out = particle(h, cli, sims, false, args);
    assert!(
        out.status.success(),
        "particle {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The three devices of the issue on one bus: (sim name, platform, Device OS).
const BENCH: [(&str, &str, &str); 3] = [
    ("photon-150", "photon", "1.5.0"),
    ("photon-220", "photon", "2.2.0"),
    ("argon-220", "argon", "2.2.0"),
];

fn bench(h: &Home) -> Vec<&'static str> {
    for (name, platform, release) in BENCH {
        h.create(name, platform, release);
    }
    BENCH.iter().map(|(name, ..)| *name).collect()
}

fn mode(h: &Home, name: &str) -> String {
    h.show(name)["mode"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn device_id(h: &Home, name: &str) -> String {
    h.show(name)["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `usb list` line of device `id`.
fn listed<'a>(listing: &'a str, id: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.contains(&format!("[{id}]")))
        .unwrap_or_else(|| panic!("{id} is not listed:\n{listing}"))
}

#[test]
fn usb_list_shows_platform_id_and_mode_in_normal_and_dfu_mode() {
    let Some(cli) = peers("usb_list_shows_platform_id_and_mode_in_normal_and_dfu_mode") else {
        return;
    };
    let h = home();
    let sims = bench(&h);
    let listing = particle_ok(&h, &cli, &sims, &["usb", "list"]);
    for (name, platform, _) in BENCH {
        let line = listed(&listing, &device_id(&h, name));
        let display = if platform == "photon" {
            "(Photon)"
        } else {
            "(Argon)"
        };
        assert!(line.ends_with(display), "{name}: {line}");
    }
    for name in &sims {
        h.hold_into_dfu(name);
    }
    let listing = particle_ok(&h, &cli, &sims, &["usb", "list"]);
    for (name, platform, _) in BENCH {
        let line = listed(&listing, &device_id(&h, name));
        let display = if platform == "photon" {
            "(Photon, DFU)"
        } else {
            "(Argon, DFU)"
        };
        assert!(line.ends_with(display), "{name}: {line}");
    }
}

#[test]
fn usb_mode_commands_change_the_devices_as_on_hardware() {
    let Some(cli) = peers("usb_mode_commands_change_the_devices_as_on_hardware") else {
        return;
    };
    let h = home();
    let sims = bench(&h);
    let modes = |h: &Home| -> Vec<String> { sims.iter().map(|n| mode(h, n)).collect() };
    // Each request is answered, and the device acts 1 s after the reply (as Device OS does).
    for (command, after) in [
        ("dfu", "dfu"),
        ("reset", "app"),
        ("start-listening", "listening"),
        ("safe-mode", "safe_mode"),
        ("reset", "app"),
    ] {
        let out = particle_ok(&h, &cli, &sims, &["usb", command, "--all"]);
        assert!(out.contains("Done."), "usb {command}: {out}");
        assert_eq!(modes(&h), [after; 3], "after usb {command}");
    }
    // Listening mode shows in the listing, as on hardware.
    let out = particle_ok(&h, &cli, &sims, &["usb", "start-listening", "--all"]);
    assert!(out.contains("Done."));
    let listing = particle_ok(&h, &cli, &sims, &["usb", "list"]);
    for name in &sims {
        let line = listed(&listing, &device_id(&h, name));
        assert!(line.ends_with(", LISTENING)"), "{name}: {line}");
    }
}

#[test]
fn flash_local_of_an_app_from_normal_mode_goes_through_dfu_and_the_app_runs() {
    let Some(cli) =
        peers("flash_local_of_an_app_from_normal_mode_goes_through_dfu_and_the_app_runs")
    else {
        return;
    };
    let h = home();
    bench(&h);
    for (name, app, version) in [
        ("photon-220", "photon_tinker.bin", 2),
        ("argon-220", "tinker-0.8.0-rc.27-argon.bin", 5),
    ] {
        let before = h.show(name);
        assert_ne!(user_version(&before), Some(version));
        let app = fixture_path(app);
        let out = particle(
            &h,
            &cli,
            &[name],
            false,
            &["flash", "--local", path_arg(&app)],
        );
        let stdout = text(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Flash success!"),
            "{name}: {stdout}\n{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("Switching device to dfu mode"), "{stdout}");
        let after = h.show(name);
        assert_eq!(after["mode"], "app", "{name}: {after:#}");
        assert_eq!(user_version(&after), Some(version), "{name}: {after:#}");
    }
    // Device OS 1.5.0 on a Gen2 device cannot be switched to DFU mode by particle-cli: it
    // refuses, as with the hardware, and the device is left alone.
    let before = h.show("photon-150");
    let app = fixture_path("photon_tinker.bin");
    let out = particle(
        &h,
        &cli,
        &["photon-150"],
        false,
        &["flash", "--local", path_arg(&app)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("Put the device in DFU mode and try again"),
        "{}",
        text(&out.stdout)
    );
    let after = h.show("photon-150");
    assert_eq!(after["mode"], "app");
    assert_eq!(after["describe"], before["describe"], "no module changed");
}

/// The Argon bootloader of Device OS 3.1.0 (module version 1100), as a file in the home.
fn argon_bootloader_310(h: &Home) -> std::path::PathBuf {
    let argon = modflash_module::platform(12).unwrap();
    let release = platform_release(argon, "3.1.0").unwrap();
    let bootloader = release
        .modules_for(argon)
        .find(|m| m.function == ModuleFunction::Bootloader)
        .unwrap();
    let path = h.file("argon-bootloader-1100.bin");
    std::fs::write(
        &path,
        modflash_module::synth::synthesize(argon, &bootloader),
    )
    .unwrap();
    path
}

fn bootloader_version(sim: &Value) -> Option<u64> {
    sim["describe"]["m"]
        .as_array()?
        .iter()
        .find(|m| m["f"] == "b")
        .and_then(|m| m["v"].as_u64())
}

/// The control requests a trace shows particle-cli starting (INIT's wIndex is the type).
fn request_types(trace: &str) -> Vec<u16> {
    trace
        .lines()
        .filter(|l| l.contains(": c0 01 "))
        .filter_map(|l| l.split("wIndex=").nth(1))
        .filter_map(|w| u16::from_str_radix(w.get(..4)?, 16).ok())
        .collect()
}

/// The DFU data blocks a trace shows written: DNLOADs with a block number ≥ 2 and data (block 0
/// carries DfuSe commands such as the leave's address; an empty one is the leave itself).
fn dfu_data_blocks(trace: &str) -> usize {
    trace
        .lines()
        .filter_map(|l| l.split(": 21 01 wValue=").nth(1))
        .filter(|rest| {
            let block = rest.get(..4).and_then(|v| u16::from_str_radix(v, 16).ok());
            let length = rest
                .split("wLength=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
            block.is_some_and(|b| b >= 2) && length.is_some_and(|n| n > 0)
        })
        .count()
}

#[test]
fn flash_local_of_a_gen3_bootloader_goes_through_control_requests() {
    let Some(cli) = peers("flash_local_of_a_gen3_bootloader_goes_through_control_requests") else {
        return;
    };
    let h = home();
    let file = argon_bootloader_310(&h);
    // From normal mode; and from DFU mode, where particle-cli resets the device into its
    // firmware and waits for it to come back on the bus (a long-lived libusb client: it sees
    // the DFU node go and the normal one appear through udev's hotplug messages).
    for start_in_dfu in [false, true] {
        let name = if start_in_dfu { "argon-dfu" } else { "argon" };
        h.create(name, "argon", "2.2.0");
        if start_in_dfu {
            h.hold_into_dfu(name);
        }
        assert_eq!(bootloader_version(&h.show(name)), Some(1006));
        let out = particle(
            &h,
            &cli,
            &[name],
            true,
            &["flash", "--local", path_arg(&file)],
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success() && stdout.contains("Flash success!"),
            "{name}: {stdout}\n{stderr}"
        );
        if start_in_dfu {
            assert!(
                stdout.contains("Switching device to normal mode"),
                "{stdout}"
            );
        }
        let types = request_types(&stderr);
        for (ty, what) in [(250, "START"), (253, "DATA"), (251, "FINISH")] {
            assert!(types.contains(&ty), "{name}: no {what} ({ty}) in {types:?}");
        }
        assert_eq!(
            dfu_data_blocks(&stderr),
            0,
            "{name}: the bootloader went over DFU:\n{stderr}"
        );
        let after = h.show(name);
        assert_eq!(bootloader_version(&after), Some(1100), "{after:#}");
        assert_eq!(after["mode"], "app", "{after:#}");
    }
}

#[test]
fn request_types_are_read_from_the_trace() {
    let trace = "[attach] port 1: c0 01 wValue=0010 wIndex=00fa wLength=64 -> 8 bytes\n\
                 [attach] port 1: 40 03 wValue=0000 wIndex=0001 wLength=16 -> ok\n\
                 [attach] port 1: c0 01 wValue=0400 wIndex=00fd wLength=64 -> 8 bytes\n";
    assert_eq!(request_types(trace), [250, 253]);
    let dfu = "[attach] port 1: 21 01 wValue=0000 wIndex=0000 wLength=5 -> ok\n\
               [attach] port 1: 21 01 wValue=0002 wIndex=0000 wLength=4096 -> ok\n\
               [attach] port 1: 21 01 wValue=0002 wIndex=0000 wLength=0 -> ok\n";
    assert_eq!(dfu_data_blocks(dfu), 1);
}

#[test]
fn serial_identify_finds_the_port_and_asks_over_control_requests() {
    let test = "serial_identify_finds_the_port_and_asks_over_control_requests";
    let Some(cli) = peers(test) else {
        return;
    };
    if tools(test, &["udevadm"], "apt-get install udev").is_none() {
        return;
    }
    let h = home();
    h.create("photon", "photon", "2.2.0");
    let id = device_id(&h, "photon");
    let out = particle_ok(&h, &cli, &["photon"], &["serial", "list"]);
    assert!(
        out.contains(&format!("/dev/ttyACM0 - Photon - {id}")),
        "{out}"
    );
    let out = particle_ok(&h, &cli, &["photon"], &["serial", "identify"]);
    assert!(out.contains(&format!("Your device id is {id}")), "{out}");
    assert!(
        out.contains("Your system firmware version is 2.2.0"),
        "{out}"
    );
}

/// The names of the assets a virtual device's store holds (`sim show --json`).
fn stored_assets(sim: &Value) -> Vec<String> {
    sim["assets"]["available"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn flash_local_of_a_bundle_installs_the_assets_modflash_would() {
    let Some(cli) = peers("flash_local_of_a_bundle_installs_the_assets_modflash_would") else {
        return;
    };
    let h = home();
    h.create("p2-bundle", "p2", "6.2.0");
    let bundle = modflash_testkit::asset_fixture_path("p2-bundle.zip");
    let out = particle(
        &h,
        &cli,
        &["p2-bundle"],
        true,
        &["flash", "--local", path_arg(&bundle)],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("Flash success!"),
        "{stdout}\n{stderr}"
    );
    // The assets went over control requests (250–253), the application over DFU.
    let types = request_types(&stderr);
    for (ty, what) in [(250, "START"), (253, "DATA"), (251, "FINISH")] {
        assert!(types.contains(&ty), "no {what} ({ty}) in {types:?}");
    }
    let after = h.show("p2-bundle");
    assert_eq!(after["mode"], "app", "{after:#}");
    assert_eq!(stored_assets(&after), ["coproc.bin", "greeting.txt"]);
    // modflash sees the same device: the bundle again writes nothing.
    let plan = h.run(&[
        "plan",
        path_arg(&bundle),
        "--device",
        "sim:p2-bundle",
        "--json",
    ]);
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(plan["steps"].as_array().map(Vec::len), Some(0), "{plan:#}");
    // And particle-cli, asking GetAssetInfo, skips both assets the second time.
    let again = particle(
        &h,
        &cli,
        &["p2-bundle"],
        true,
        &["flash", "--local", path_arg(&bundle)],
    );
    assert!(again.status.success(), "{}", text(&again.stdout));
    let types = request_types(&text(&again.stderr));
    assert!(types.contains(&91), "GetAssetInfo asked: {types:?}");
    assert!(!types.contains(&250), "no asset rewritten: {types:?}");
}
