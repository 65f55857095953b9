//! A private modflash home: a temporary directory the `modflash` binary keeps its virtual
//! devices, catalogue and settings in, and the runs of that binary against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::process::{output_within, text};

/// The longest a single `modflash` run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A modflash home in a fresh temporary directory (removed when dropped), and the `modflash`
/// binary to run against it.
///
/// The binary's path comes from the test: only the crate that builds it knows it at compile
/// time, so CLI tests pass `env!("CARGO_BIN_EXE_modflash")`.
pub struct Home {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Home {
    /// A new empty home that runs `bin`.
    pub fn new(bin: impl Into<PathBuf>) -> Home {
        Home {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}")),
            bin: bin.into(),
        }
    }

    /// The home directory (`MODFLASH_HOME` of every run).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the home, for files a test writes or asks the binary to write.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// `modflash` with this home and no colour; no other `MODFLASH_*` variable of the test's
    /// own environment reaches it. Add the arguments and run it.
    pub fn cmd(&self) -> Command {
        self.command(&self.bin)
    }

    /// `program` with this home's environment (see [`Home::cmd`]).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MODFLASH_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("MODFLASH_HOME", self.path()).env("NO_COLOR", "1");
        cmd
    }

    /// Runs `modflash ARGS` with no input, failing the test after a minute.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args);
        output_within(cmd, RUN_LIMIT)
    }

    /// Runs `modflash ARGS`: its exit code, stdout and stderr.
    pub fn run_text(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.run(args);
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("{args:?} ended without an exit code: {}", out.status));
        (code, text(&out.stdout), text(&out.stderr))
    }

    /// Runs `modflash ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run_text(args);
        assert_eq!(code, 0, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }

    /// `modflash sim create NAME --platform PLATFORM --device-os RELEASE`, which must succeed.
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

    /// `modflash sim show NAME --json`.
    pub fn show(&self, name: &str) -> Value {
        json(&self.ok(&["sim", "show", name, "--json"]))
    }

    /// `modflash modules --device DEVICE --json`, which exits 0, or 1 when a module fails a
    /// check.
    pub fn modules(&self, device: &str) -> Value {
        let (code, out, err) = self.run_text(&["modules", "--device", device, "--json"]);
        assert!(matches!(code, 0 | 1), "modules exited {code}: {err}");
        json(&out)
    }

    /// The bytes of virtual device NAME's image file (to prove a refusal wrote nothing).
    pub fn sim_file(&self, name: &str) -> Vec<u8> {
        let path = self.path().join("sims").join(format!("{name}.sim"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The synthetic app of Device OS RELEASE for PLATFORM (`modflash sim make-app`), as a file
    /// in the home.
    pub fn make_app(&self, platform: &str, release: &str) -> PathBuf {
        let path = self.file(&format!("{platform}-{release}-app.bin"));
        self.ok(&[
            "sim",
            "make-app",
            "--platform",
            platform,
            "--device-os",
            release,
            "-o",
            path_arg(&path),
        ]);
        path
    }

    /// Resets virtual device NAME with SETUP held 3 s, which must leave it in DFU mode.
    pub fn hold_into_dfu(&self, name: &str) {
        self.ok(&["sim", "reset", name, "--hold-button", "3"]);
        assert_eq!(self.show(name)["mode"], "dfu");
    }
}

/// A modflash home made read-only for the runs made through it: as root (whom file modes do
/// not stop) each run gets a read-only bind mount of the home in a private mount namespace;
/// otherwise the write permissions are removed, and put back when this is dropped.
pub struct ReadOnlyHome<'h> {
    home: &'h Home,
    /// Files and directories whose modes were changed, with their modes before.
    restore: Vec<(PathBuf, std::fs::Permissions)>,
}

impl Home {
    /// This home, read-only for the runs made through the result; `None` (after a loud
    /// notice) when this system can make it read-only neither way.
    pub fn read_only(&self) -> Option<ReadOnlyHome<'_>> {
        let mut restore = Vec::new();
        let mut paths = vec![self.path().to_path_buf()];
        while let Some(path) = paths.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    paths.extend(entries.filter_map(Result::ok).map(|e| e.path()));
                }
            }
            if meta.is_dir() || meta.is_file() {
                let mut read_only = meta.permissions();
                read_only.set_readonly(true);
                if std::fs::set_permissions(&path, read_only).is_ok() {
                    restore.push((path, meta.permissions()));
                }
            }
        }
        let guard = ReadOnlyHome {
            home: self,
            restore,
        };
        if !guard.can_write() {
            return Some(guard);
        }
        // Root writes whatever the modes say: a read-only mount it is.
        drop(guard);
        let guard = ReadOnlyHome {
            home: self,
            restore: Vec::new(),
        };
        if guard.can_write() {
            crate::interop::skip(
                "read-only home",
                "this system can make a directory read-only neither by its modes nor by a bind mount (`unshare -m`)",
                "run the tests as a user other than root, or where `unshare --mount` works",
            );
            return None;
        }
        Some(guard)
    }
}

impl ReadOnlyHome<'_> {
    /// `program ARGS` with the home's environment, the home read-only.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        if !self.restore.is_empty() {
            let mut cmd = self.home.command(program);
            cmd.args(args);
            return cmd;
        }
        let mut cmd = self.home.command("unshare");
        cmd.args(["--mount", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@""#)
            .arg(self.home.path())
            .arg(program)
            .args(args);
        cmd
    }

    /// True when a run can still create a file in the home.
    fn can_write(&self) -> bool {
        let probe = self.home.file("write-probe");
        let script = format!(": > '{}'", probe.display());
        let wrote = self
            .command(Path::new("/bin/sh"), &["-c", &script])
            .output()
            .is_ok_and(|o| o.status.success());
        let _ = std::fs::remove_file(&probe);
        wrote
    }

    /// Runs `modflash ARGS` in the read-only home: its exit code, stdout and stderr.
    pub fn run_text(&self, args: &[&str]) -> (i32, String, String) {
        let out = output_within(self.command(&self.home.bin, args), RUN_LIMIT);
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("{args:?} ended without an exit code: {}", out.status));
        (code, text(&out.stdout), text(&out.stderr))
    }
}

impl Drop for ReadOnlyHome<'_> {
    fn drop(&mut self) {
        for (path, mode) in &self.restore {
            let _ = std::fs::set_permissions(path, mode.clone());
        }
    }
}

/// A path as a command-line argument (the tests' paths are UTF-8).
pub fn path_arg(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// Parses a run's JSON output.
fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_given_binary_in_the_private_home_without_colour() {
        let home = Home::new("/bin/sh");
        let out = home.ok(&["-c", "echo \"$MODFLASH_HOME|$NO_COLOR\""]);
        assert_eq!(out.trim_end(), format!("{}|1", home.path().display()));
        let (code, _, err) = home.run_text(&["-c", "echo oops >&2; exit 3"]);
        assert_eq!((code, err.as_str()), (3, "oops\n"));
    }

    #[test]
    fn the_home_is_removed_with_it() {
        let home = Home::new("/bin/sh");
        let dir = home.path().to_path_buf();
        assert!(dir.is_dir());
        drop(home);
        assert!(!dir.exists());
    }
}
