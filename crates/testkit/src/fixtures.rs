//! The real module files under `tests/fixtures/real` and the facts `MANIFEST.json` records;
//! the asset fixtures under `tests/fixtures/assets`, made with Particle's own encoder, and theirs.

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

/// The path of the asset fixture `name` (e.g. `p2-bundle.zip`) in `tests/fixtures/assets`;
/// it need not exist.
pub fn asset_fixture_path(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/assets").join(name)
}

/// The bytes of the asset fixture `name`.
pub fn asset_fixture(name: &str) -> Vec<u8> {
    let path = asset_fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("asset fixture {}: {e}", path.display()))
}

/// The entries of `tests/fixtures/assets/MANIFEST.json`, in the order `make.js` wrote them:
/// `file`, `size`, `sha256`, `made` (how), and `module` (what binary-version-reader reads in
/// it) for module files, `entries` and `verdict` for bundles.
pub fn asset_manifest() -> Vec<Value> {
    let path = asset_fixture_path("MANIFEST.json");
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

    #[test]
    fn the_asset_manifest_describes_every_asset_fixture() {
        let mut listed: Vec<String> = asset_manifest()
            .iter()
            .map(|e| e["file"].as_str().expect("a file name").to_string())
            .collect();
        listed.sort();
        let dir = asset_fixture_path("");
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| !["make.js", "README.md", "MANIFEST.json"].contains(&n.as_str()))
            .collect();
        present.sort();
        assert_eq!(listed, present);
    }
}
