//! The home catalogue under damage and concurrency: a broken index is rebuilt from the stored
//! files, two `catalog add`s at once lose nothing, and different images of one module
//! version are pointed out.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use modflash_testkit::process::wait_within;
use modflash_testkit::{fixture, fixture_path, path_arg, Home};
use serde_json::Value;

use crate::common::home;

fn listed(h: &Home) -> Vec<Value> {
    let out = h.ok(&["catalog", "list", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn files_listed(h: &Home) -> Vec<String> {
    let mut files: Vec<String> = listed(h)
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn a_damaged_index_is_rebuilt_from_the_stored_files() {
    let h = home();
    let part1 = fixture_path("photon-system-part1@1.5.0.bin");
    h.ok(&["catalog", "add", path_arg(&part1)]);
    let index = h.path().join("catalog/index.json");
    std::fs::write(&index, b"[{\"file\": \"photon-sys").unwrap();

    let (code, out, err) = h.run_text(&["catalog", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("index") && err.contains("damaged") && err.contains("rebuilt"),
        "{err}"
    );
    assert!(
        !out.contains("empty") && out.contains("system"),
        "the stored module is still listed: {out}"
    );

    // The next add keeps the module stored before the damage.
    let part2 = fixture_path("photon-system-part2@1.5.0.bin");
    let (code, _, err) = h.run_text(&["catalog", "add", path_arg(&part2)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("damaged"), "{err}");
    let entries = listed(&h);
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert!(
        entries
            .iter()
            .any(|e| e["file"] == "photon-system-part2@1.5.0.bin"),
        "{entries:#?}"
    );
    let (_, _, err) = h.run_text(&["catalog", "list"]);
    assert!(!err.contains("damaged"), "the index was rewritten: {err}");
}

/// `count` different small modules (the Photon Tinker under as many versions): file name,
/// bytes.
fn different_modules(count: u16) -> Vec<(String, Vec<u8>)> {
    let tinker = fixture("photon_tinker.bin");
    (1..=count)
        .map(|version| {
            let bytes =
                modflash_module::edit::edit_module(&tinker, |b| b.info.version = version).unwrap();
            (format!("tinker-v{version}.bin"), bytes)
        })
        .collect()
}

/// A folder `name` in the home holding `modules`.
fn folder(h: &Home, name: &str, modules: &[(String, Vec<u8>)]) -> PathBuf {
    let dir = h.file(name);
    std::fs::create_dir(&dir).unwrap();
    for (file, bytes) in modules {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

fn spawn_add(h: &Home, dir: &Path) -> std::process::Child {
    let mut cmd = h.cmd();
    cmd.args(["catalog", "add", path_arg(dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

#[test]
fn catalogue_adds_at_once_lose_nothing() {
    let h = home();
    let modules = different_modules(64);
    let folders: Vec<PathBuf> = modules
        .chunks(16)
        .enumerate()
        .map(|(i, chunk)| folder(&h, &format!("f{i}"), chunk))
        .collect();
    let mut adds: Vec<std::process::Child> = folders.iter().map(|f| spawn_add(&h, f)).collect();
    for child in &mut adds {
        assert!(wait_within(child, Duration::from_secs(60)).success());
    }
    let files = files_listed(&h);
    assert_eq!(files.len(), 64, "{files:?}");
}

#[test]
fn different_images_of_one_module_version_are_pointed_out() {
    let h = home();
    let part2 = fixture("photon-system-part2@1.5.0.bin");
    let mut rebuilt = part2.clone();
    let middle = rebuilt.len() / 2;
    rebuilt[middle] ^= 0x01;
    modflash_module::edit::update_checksums(&mut rebuilt).unwrap();
    let other = h.file("part2-rebuilt.bin");
    std::fs::write(&other, &rebuilt).unwrap();

    h.ok(&[
        "catalog",
        "add",
        path_arg(&fixture_path("photon-system-part2@1.5.0.bin")),
    ]);
    let (code, _, err) = h.run_text(&["catalog", "add", path_arg(&other)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 different images of Photon system part 2 version 1502")
            && err.contains("photon-system-part2@1.5.0.bin")
            && err.contains("part2-rebuilt.bin"),
        "{err}"
    );

    // A plan that takes one of them says that there is another, and names the one it uses.
    h.create("d", "photon", "0.5.2");
    let (code, out, err) = h.run_text(&["plan", "--device-os", "1.5.0", "--device", "sim:d"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 different images of Photon system part 2 version 1502"),
        "{err}"
    );
    let used = ["photon-system-part2@1.5.0.bin", "part2-rebuilt.bin"]
        .into_iter()
        .find(|f| out.contains(f))
        .unwrap_or_else(|| panic!("the plan names the file it uses: {out}"));
    assert!(err.contains(&format!("this plan uses {used}")), "{err}");
}
