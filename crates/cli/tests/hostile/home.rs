//! A modflash home the user cannot write: commands that only read work, those that write fail
//! saying what could not be created; a temporary image left by a killed process goes at the
//! next save; `dfu upload` checks its address before it switches the device to DFU mode.

use modflash_testkit::{fixture_path, path_arg};

use crate::common::home;

#[test]
fn commands_that_only_read_work_in_a_read_only_home() {
    let h = home();
    h.create("app", "photon", "1.5.0");
    h.create("dfu", "photon", "1.5.0");
    h.hold_into_dfu("dfu");
    h.ok(&[
        "catalog",
        "add",
        path_arg(&fixture_path("photon-system-part1@1.5.0.bin")),
    ]);
    let app = fixture_path("photon_tinker.bin");
    let app = path_arg(&app);
    let Some(ro) = h.read_only() else { return };
    // `doctor` exits 1 for a device that does not run its application.
    for (device, doctor) in [("sim:app", 0), ("sim:dfu", 1)] {
        let name = device.trim_start_matches("sim:");
        for (args, expected) in [
            (vec!["sim", "show", name], 0),
            (vec!["sim", "show", name, "--json"], 0),
            (vec!["sim", "list"], 0),
            (vec!["modules", "--device", device], 0),
            (vec!["doctor", "--device", device], doctor),
            (vec!["plan", app, "--device", device], 0),
            (vec!["flash", app, "--device", device, "--dry-run"], 0),
            (vec!["catalog", "list"], 0),
            (vec!["devices"], 0),
        ] {
            let (code, out, err) = ro.run_text(&args);
            assert_eq!(code, expected, "{args:?}\n{out}{err}");
            assert!(!err.contains("error:"), "{args:?}: {err}");
        }
    }
}

#[test]
fn writes_in_a_read_only_home_say_what_could_not_be_created() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    h.ok(&[
        "catalog",
        "add",
        path_arg(&fixture_path("photon-system-part1@1.5.0.bin")),
    ]);
    let part2 = fixture_path("photon-system-part2@1.5.0.bin");
    let Some(ro) = h.read_only() else { return };
    for args in [
        vec![
            "sim",
            "create",
            "new",
            "--platform",
            "photon",
            "--device-os",
            "1.5.0",
        ],
        vec!["sim", "reset", "d"],
        vec!["catalog", "add", path_arg(&part2)],
    ] {
        let (code, out, err) = ro.run_text(&args);
        assert_eq!(code, 2, "{args:?}\n{out}{err}");
        assert!(
            err.contains("cannot create") && err.contains(path_arg(h.path())),
            "{args:?}: {err}"
        );
    }
    drop(ro);
    assert_eq!(h.show("d")["mode"], "app", "the device did not change");
}

#[test]
fn a_temporary_image_left_by_a_killed_process_is_removed_at_the_next_save() {
    let h = home();
    h.create("t", "photon", "1.5.0");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let sims = h.path().join("sims");
    let stale = sims.join(format!("t.sim.tmp-{gone_pid}"));
    let live = sims.join(format!("t.sim.tmp-{}", std::process::id()));
    for file in [&stale, &live] {
        std::fs::write(file, b"half an image").unwrap();
    }
    h.ok(&["sim", "reset", "t"]);
    assert!(!stale.exists(), "the killed process's file is removed");
    assert!(live.exists(), "a running process's file is left alone");
}

#[test]
fn dfu_transfers_check_the_address_before_switching_to_dfu_mode() {
    let h = home();
    h.create("d", "photon", "1.5.0");
    let out = h.file("read.bin");
    let raw = h.file("raw.bin");
    std::fs::write(&raw, [0u8; 64]).unwrap();
    for args in [
        vec![
            "dfu",
            "upload",
            "--device",
            "sim:d",
            "--address",
            "0x20000000",
            "--length",
            "16",
            "-o",
            path_arg(&out),
        ],
        vec![
            "dfu",
            "upload",
            "--device",
            "sim:d",
            "--alt",
            "7",
            "--address",
            "0",
            "--length",
            "16",
            "-o",
            path_arg(&out),
        ],
        vec![
            "dfu",
            "upload",
            "--device",
            "sim:d",
            "--address",
            "0x080FFFF0",
            "--length",
            "0x20",
            "-o",
            path_arg(&out),
        ],
        vec![
            "dfu",
            "download",
            path_arg(&raw),
            "--device",
            "sim:d",
            "--address",
            "0x20000000",
        ],
    ] {
        let (code, stdout, err) = h.run_text(&args);
        assert_eq!(code, 2, "{args:?}\n{stdout}{err}");
        assert!(err.contains("nothing was"), "{args:?}: {err}");
        assert_eq!(
            h.show("d")["mode"],
            "app",
            "{args:?} left the device as it was"
        );
    }
    assert!(!out.exists());
}
