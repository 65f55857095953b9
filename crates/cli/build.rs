//! Build information for `modflash --version`: the commit the binary was built from (from
//! git, or from the `.cargo_vcs_info.json` cargo puts in a published package), its date, the
//! target and the profile.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The commit recorded by `cargo package` (`{"git": {"sha1": "…"}}`), for builds from a
/// published package.
fn packaged_commit(manifest_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest_dir.join(".cargo_vcs_info.json")).ok()?;
    let at = text.find("\"sha1\"")?;
    let rest = &text[at + 6..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].chars().take(12).collect())
}

/// Reruns when HEAD moves: the HEAD file and the branch it names, where they exist (a path
/// that does not exist would rerun the script on every build).
fn watch_head() {
    let mut paths = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(git(&["rev-parse", "--git-path", &branch]));
    }
    paths.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in paths.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    watch_head();
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| packaged_commit(Path::new(&manifest_dir)))
        .unwrap_or_else(|| "unknown commit".into());
    let date = git(&["log", "-1", "--format=%cs", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=MODFLASH_COMMIT={commit}");
    println!("cargo:rustc-env=MODFLASH_COMMIT_DATE={date}");
    println!("cargo:rustc-env=MODFLASH_TARGET={target}");
    println!("cargo:rustc-env=MODFLASH_PROFILE={profile}");
}
