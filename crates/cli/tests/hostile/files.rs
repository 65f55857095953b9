//! Files given where a module file is expected that are not one: special files (a FIFO,
//! `/dev/zero`), a directory, a huge sparse file, and a combined file longer than any chain
//! the parser used to walk.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use modflash_testkit::process::output_within;
use modflash_testkit::{fixture, path_arg, text, Home};
use serde_json::Value;

use crate::common::home;

/// Longer than any refusal may take; a command that waits on a FIFO hits it.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `modflash ARGS`, failing the test when it takes longer than [`LIMIT`].
fn run_within(h: &Home, args: &[&str]) -> (i32, String, String, Duration) {
    let mut cmd = h.cmd();
    cmd.args(args);
    let started = Instant::now();
    let out = output_within(cmd, LIMIT);
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        text(&out.stdout),
        text(&out.stderr),
        started.elapsed(),
    )
}

fn fifo(h: &Home, name: &str) -> PathBuf {
    let path = h.file(name);
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
    path
}

/// Every command that reads a module file, reading `file`.
fn module_file_commands(file: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["inspect", file],
        vec!["plan", file, "--device", "sim:s"],
        vec!["flash", file, "--device", "sim:s", "--dry-run"],
        vec!["serial", "flash", file, "--device", "sim:s"],
        vec!["dfu", "download", file, "--device", "sim:s"],
        vec!["catalog", "add", file],
        vec![
            "sim",
            "create",
            "n",
            "--platform",
            "photon",
            "--modules",
            file,
        ],
        vec![
            "sim",
            "create",
            "n",
            "--platform",
            "photon",
            "--device-os",
            "1.5.0",
            "--user-app",
            file,
        ],
        vec![
            "sim",
            "create",
            "n",
            "--platform",
            "photon",
            "--device-os",
            "1.5.0",
            "--factory-app",
            file,
        ],
    ]
}

#[test]
fn special_files_are_refused_at_once_by_every_command_that_reads_a_module_file() {
    let h = home();
    h.create("s", "photon", "1.5.0");
    let before = h.sim_file("s");
    let pipe = fifo(&h, "pipe.bin");
    for (file, kind) in [
        (path_arg(&pipe), "a FIFO"),
        ("/dev/zero", "a character device"),
    ] {
        for args in module_file_commands(file) {
            let (code, out, err, took) = run_within(&h, &args);
            assert_eq!(code, 2, "{args:?}\n{out}{err}");
            assert!(
                err.contains(&format!("{file} is {kind}, not a regular file")),
                "{args:?}: {err}"
            );
            assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        }
    }
    assert_eq!(h.sim_file("s"), before, "the device was not touched");
    assert!(!h.path().join("sims/n.sim").exists());
}

#[test]
fn a_directory_is_refused_with_the_option_that_takes_one() {
    let h = home();
    h.create("s", "photon", "1.5.0");
    let dir = h.file("modules");
    std::fs::create_dir(&dir).unwrap();
    let dir = path_arg(&dir);
    for args in [
        vec!["flash", dir, "--device", "sim:s", "--dry-run"],
        vec!["plan", dir, "--device", "sim:s"],
        vec!["inspect", dir],
    ] {
        let (code, out, err, _) = run_within(&h, &args);
        assert_eq!(code, 2, "{args:?}\n{out}{err}");
        assert!(
            err.contains(&format!("{dir} is a directory")) && err.contains("--catalog"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_huge_sparse_file_is_refused_without_being_read() {
    let h = home();
    h.create("s", "photon", "1.5.0");
    let huge = h.file("huge.bin");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let huge = path_arg(&huge);
    for args in [
        vec!["inspect", huge],
        vec!["plan", huge, "--device", "sim:s"],
        vec!["catalog", "add", huge],
    ] {
        let (code, out, err, took) = run_within(&h, &args);
        assert_eq!(code, 2, "{args:?}\n{out}{err}");
        assert!(
            err.contains(&format!("{huge} is 268435456 bytes"))
                && err.contains("larger than any module"),
            "{args:?}: {err}"
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

/// `count` copies of the Photon Tinker combined into one file, and where each starts.
fn combined_tinkers(count: usize) -> (Vec<u8>, usize) {
    let app = fixture("photon_tinker.bin");
    let parts: Vec<&[u8]> = std::iter::repeat_n(app.as_slice(), count).collect();
    let combined = modflash_module::edit::combine(&parts).unwrap();
    assert_eq!(combined.len(), app.len() * count);
    (combined, app.len())
}

#[test]
fn every_module_of_a_long_combined_file_is_checked() {
    let h = home();
    h.create("s", "photon", "1.5.0");
    let (mut combined, len) = combined_tinkers(20);
    let file = h.file("combined.bin");
    std::fs::write(&file, &combined).unwrap();
    let out = h.ok(&["inspect", path_arg(&file), "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let modules = report[0]["module"]["combined"].as_array().unwrap();
    assert_eq!(modules.len(), 20, "every module is listed");
    // The flash commands name every module of it.
    let (code, _, err, _) = run_within(
        &h,
        &["flash", path_arg(&file), "--device", "sim:s", "--dry-run"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("combined image of 20 modules"), "{err}");

    // A damaged 18th module makes the file damaged.
    combined[17 * len + len / 2] ^= 0xFF;
    std::fs::write(&file, &combined).unwrap();
    let (code, out, err, _) = run_within(&h, &["inspect", path_arg(&file), "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("CRC-32 mismatch")),
        "{report:#}"
    );
}
