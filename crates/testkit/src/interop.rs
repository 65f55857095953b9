//! Interop tests run against the peers' own tools (dfu-util, lrzsz, socat, umockdev, node).
//! When one is missing the test is skipped with a notice nobody can overlook, unless
//! `MODFLASH_REQUIRE_INTEROP=1` (as `.ci/run` sets), which makes the missing tool a failure.

use std::io::Write;
use std::path::PathBuf;

/// The variable that turns a skipped interop test into a failure.
pub const REQUIRE: &str = "MODFLASH_REQUIRE_INTEROP";

/// The program `name` on `PATH`, if installed.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The paths of the programs `names`, or `None` after [`skip`]ping `test` for those missing;
/// `install` says how to get them (e.g. "apt-get install lrzsz").
pub fn tools(test: &str, names: &[&str], install: &str) -> Option<Vec<PathBuf>> {
    let found: Vec<Option<PathBuf>> = names.iter().map(|name| find_tool(name)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Some(found.into_iter().flatten().collect());
    }
    skip(
        test,
        &format!("{} not found in PATH", missing.join(", ")),
        install,
    );
    None
}

/// Skips interop test `test` because `why`: a boxed notice on the real stderr (the test
/// harness does not capture it, so it shows for a passing test too), or a panic when
/// [`REQUIRE`]`=1`. `install` says what to install.
pub fn skip(test: &str, why: &str, install: &str) {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        panic!("{test}: {why}, and {REQUIRE}=1 ({install})");
    }
    let rule = "*".repeat(60);
    let notice = format!(
        "\n{rule}\nSKIPPED {test}: {why}\n  {install}, or set {REQUIRE}=1 to fail instead\n{rule}\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
}
