//! Helpers for the DFU tests: a modflash home with virtual devices, the `modflash` binary, and
//! child processes with a time limit.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A temporary modflash home.
pub struct Home {
    pub dir: tempfile::TempDir,
}

/// The `modflash` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modflash")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/real")
        .join(name)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` for at most `limit`; a command still running then is killed and the test fails.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

impl Home {
    pub fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("MODFLASH_HOME", self.path()).env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        output_within(c, Duration::from_secs(60))
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn create(&self, name: &str, platform: &str, release: &str) {
        self.ok(&[
            "sim",
            "create",
            name,
            "--platform",
            platform,
            "--device-os",
            release,
        ]);
    }

    pub fn hold_into_dfu(&self, name: &str) {
        self.ok(&["sim", "reset", name, "--hold-button", "3"]);
        assert_eq!(self.show(name)["mode"], "dfu");
    }

    pub fn show(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["sim", "show", name, "--json"])).unwrap()
    }

    pub fn modules(&self, device: &str) -> Value {
        let out = self.run(&["modules", "--device", device, "--json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The app module of the release as a file.
    pub fn make_app(&self, platform: &str, release: &str) -> PathBuf {
        let p = self.file(&format!("{platform}-{release}-app.bin"));
        self.ok(&[
            "sim",
            "make-app",
            "--platform",
            platform,
            "--device-os",
            release,
            "-o",
            p.to_str().unwrap(),
        ]);
        p
    }
}

/// The main user part of a `sim show --json` describe.
pub fn user_version(sim: &Value) -> Option<u64> {
    sim["describe"]["m"]
        .as_array()?
        .iter()
        .find(|m| m["f"] == "u" && m["l"] == "m")
        .and_then(|m| m["v"].as_u64())
}
