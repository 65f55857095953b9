//! The real module files under `tests/fixtures/real` and the facts `MANIFEST.json` records.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The workspace's root directory (where `Cargo.toml`, `tests/` and `.interop/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|e| {
            panic!(
                "the workspace root above {}: {e}",
                env!("CARGO_MANIFEST_DIR")
            )
        })
}

/// The directory of the real fixtures, `tests/fixtures/real`.
fn real_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/real")
}

/// The path of the real fixture `name` (e.g. `photon_tinker.bin`); it need not exist.
pub fn fixture_path(name: &str) -> PathBuf {
    real_dir().join(name)
}

/// The bytes of the real fixture `name`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Every file in `tests/fixtures/real`, sorted by path.
pub fn fixture_paths() -> Vec<PathBuf> {
    let dir = real_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    paths.sort();
    paths
}

/// The entries of `tests/fixtures/MANIFEST.json`, one per real fixture, in its order: `file`,
/// `size`, and `module` (the parsed facts, or null for a file that is not a module).
pub fn manifest() -> Vec<Value> {
    let path = workspace_root().join("tests/fixtures/MANIFEST.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_describes_exactly_the_real_fixtures() {
        let listed: Vec<String> = manifest()
            .iter()
            .map(|e| e["file"].as_str().expect("a file name").to_string())
            .collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        let present: Vec<String> = fixture_paths()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(listed_sorted, present);
        let first = &listed[0];
        assert_eq!(
            fixture(first).len() as u64,
            manifest()[0]["size"].as_u64().unwrap()
        );
    }
}
