//! Running the `modflash` binary against a private modflash home, shared by the CLI tests.
#![allow(dead_code)] // each test binary uses a different subset

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A real fixture file.
pub fn real(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/real")
        .join(name)
}

/// Runs `modflash ARGS` with `MODFLASH_HOME=home`: exit code, stdout, stderr.
pub fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("modflash")
        .unwrap()
        .env("MODFLASH_HOME", home)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs `modflash ARGS`, which must succeed; its stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(home, args);
    assert_eq!(code, 0, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// `sim show NAME --json`.
pub fn show(home: &Path, name: &str) -> Value {
    serde_json::from_str(&ok(home, &["sim", "show", name, "--json"])).unwrap()
}

/// The bytes of a virtual device's image file.
pub fn sim_file(home: &Path, name: &str) -> Vec<u8> {
    std::fs::read(home.join("sims").join(format!("{name}.sim"))).unwrap()
}
