//! `modflash catalog add|list|rm` as people use it: nested folders and zip archives (a damaged
//! entry reported, the rest added), particle-cli's folders, a summary instead of errors for
//! files that are not modules, "already in the catalogue", original names kept in listings
//! and plans, the catalogue by platform and release (complete, or what it lacks and where
//! that is), and removal.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::home;
use modflash_testkit::{fixture, path_arg, Home};
use serde_json::Value;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const PART1: &str = "photon-system-part1@1.5.0.bin";
const PART2: &str = "photon-system-part2@1.5.0.bin";
const BOOTLOADER: &str = "photon-bootloader@1.5.0+lto.bin";

/// Writes `files` (path in the tree, bytes) under `root`.
fn tree(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (path, bytes) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A zip archive of `entries` (name, bytes, stored rather than deflated).
fn zip_of(entries: &[(&str, Vec<u8>, bool)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, stored) in entries {
        let method = if *stored {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        zip.start_file(
            *name,
            SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn listed_files(h: &Home) -> Vec<String> {
    let entries: Vec<Value> = serde_json::from_str(&h.ok(&["catalog", "list", "--json"])).unwrap();
    let mut files: Vec<String> = entries
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn a_nested_folder_is_added_with_a_summary_and_again_is_already_there() {
    let h = home();
    let dir = h.file("downloads");
    tree(
        &dir,
        &[
            (&format!("device-os/1.5.0/photon/{PART1}"), fixture(PART1)),
            (&format!("device-os/1.5.0/{PART2}"), fixture(PART2)),
            ("device-os/README.md", b"# Device OS\n".to_vec()),
            ("notes.txt", b"flash these\n".to_vec()),
        ],
    );
    let (code, out, err) = h.run_text(&["catalog", "add", path_arg(&dir)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("error"), "{err}");
    assert!(
        out.contains(&format!(
            "added {PART1}: Photon system part 1 version 1502 (Device OS 1.5.0)"
        )),
        "{out}"
    );
    let summary = format!(
        "2 modules added, 2 files are not modules ({}, {})",
        dir.join("device-os/README.md").display(),
        dir.join("notes.txt").display()
    );
    assert_eq!(out.lines().last(), Some(summary.as_str()), "{out}");
    assert_eq!(listed_files(&h), [PART1, PART2]);

    let (code, out, err) = h.run_text(&["catalog", "add", path_arg(&dir)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "already in the catalogue: {PART1} (Photon system part 1 version 1502)"
        )),
        "{out}"
    );
    assert!(!out.contains("added photon"), "{out}");
    assert!(
        out.contains("0 modules added, 2 already in the catalogue"),
        "{out}"
    );
}

#[test]
fn a_release_zip_with_a_damaged_entry_adds_the_rest_under_their_names() {
    let h = home();
    let part2 = fixture(PART2);
    let mut archive = zip_of(&[
        (&format!("photon/{PART1}"), fixture(PART1), false),
        (&format!("photon/{BOOTLOADER}"), fixture(BOOTLOADER), false),
        (&format!("photon/{PART2}"), part2.clone(), true),
        ("photon/release-notes.txt", b"1.5.0\n".to_vec(), false),
    ]);
    // Damage the stored part 2 inside the archive: its entry's CRC-32 no longer matches.
    let middle = &part2[part2.len() / 2..part2.len() / 2 + 32];
    let at = archive
        .windows(middle.len())
        .position(|w| w == middle)
        .unwrap();
    archive[at] ^= 0x40;
    let zip = h.file("device-os-1.5.0-photon.zip");
    std::fs::write(&zip, archive).unwrap();

    let (code, out, err) = h.run_text(&["catalog", "add", path_arg(&zip)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "warning: not added: {}: photon/{PART2} is damaged",
            zip.display()
        )),
        "{err}"
    );
    assert!(out.contains(&format!("added {PART1}")), "{out}");
    assert!(out.contains(&format!("added {BOOTLOADER}")), "{out}");
    let summary = format!(
        "2 modules added, 1 file is not a module ({}: photon/release-notes.txt), \
         1 damaged or unreadable (not added)",
        zip.display()
    );
    assert_eq!(out.lines().last(), Some(summary.as_str()), "{out}");
    assert_eq!(listed_files(&h), [BOOTLOADER, PART1]);

    // The listing says the release lacks part 2, and where it is.
    let out = h.ok(&["catalog", "list"]);
    assert!(out.starts_with("Photon\n"), "{out}");
    assert!(
        out.contains(
            "  Device OS 1.5.0: incomplete, lacks system part 2 version 1502 \
             (https://github.com/particle-iot/device-os/releases/tag/v1.5.0)"
        ),
        "{out}"
    );
    assert!(out.contains(BOOTLOADER), "{out}");

    // Part 2 from a folder completes it.
    let dir = h.file("more");
    tree(&dir, &[(PART2, part2)]);
    h.ok(&["catalog", "add", path_arg(&dir)]);
    let out = h.ok(&["catalog", "list"]);
    assert!(out.contains("  Device OS 1.5.0: complete\n"), "{out}");
}

#[test]
fn a_plan_names_the_files_as_they_were_in_the_archive() {
    let h = home();
    let zip = h.file("photon.zip");
    let archive = zip_of(&[
        (&format!("a/{PART1}"), fixture(PART1), false),
        (&format!("b/{PART2}"), fixture(PART2), false),
    ]);
    std::fs::write(&zip, archive).unwrap();
    h.ok(&["catalog", "add", path_arg(&zip)]);
    h.create("d", "photon", "0.5.2");
    let out = h.ok(&["plan", "--device-os", "1.5.0", "--device", "sim:d"]);
    assert!(
        out.contains(&format!("{PART1} (modflash catalogue)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{PART2} (modflash catalogue)")),
        "{out}"
    );

    // `--catalog DIR` reads the archives in a folder too, and names entries where they are.
    let other = home();
    let dir = other.file("release");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&zip, dir.join("photon.zip")).unwrap();
    other.create("d", "photon", "0.5.2");
    let out = other.ok(&[
        "plan",
        "--device-os",
        "1.5.0",
        "--device",
        "sim:d",
        "--catalog",
        path_arg(&dir),
    ]);
    let entry = format!("{}: a/{PART1}", dir.join("photon.zip").display());
    assert!(out.contains(&entry), "{out}");
}

#[test]
fn a_zip_that_is_not_an_archive_is_reported_and_nothing_found_exits_1() {
    let h = home();
    let zip = h.file("broken.zip");
    std::fs::write(&zip, b"PK\x03\x04 not really").unwrap();
    let (code, out, err) = h.run_text(&["catalog", "add", path_arg(&zip)]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("broken.zip is not a readable zip archive"),
        "{err}"
    );
    assert!(
        err.contains("error: found no Device OS module file to add"),
        "{err}"
    );
    assert!(out.contains("0 modules added"), "{out}");
}

/// particle-cli's npm package as npm installs it: its Tinker apps under assets/knownApps.
fn particle_cli_package(root: &Path) -> PathBuf {
    let package = root.join("node_modules/particle-cli");
    tree(
        &package,
        &[
            ("package.json", br#"{"name": "particle-cli"}"#.to_vec()),
            ("assets/banner.txt", b"particle\n".to_vec()),
            (
                "assets/knownApps/photon/tinker/tinker-0.4.5-photon.bin",
                fixture("tinker-0.4.5-photon.bin"),
            ),
            ("src/index.js", b"// cli\n".to_vec()),
        ],
    );
    package
}

#[test]
fn particle_cli_package_and_home_folder_are_indexed() {
    let h = home();
    let package = particle_cli_package(h.path());
    let (code, out, err) =
        h.run_text(&["catalog", "add", "--from-particle-cli", path_arg(&package)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("added tinker-0.4.5-photon.bin: Photon user part 1"),
        "{out}"
    );
    assert!(out.contains("1 module added"), "{out}");
    assert!(
        !out.contains("banner"),
        "only module folders are read: {out}"
    );

    // ~/.particle: the Device OS modules particle-cli downloaded, by version and platform.
    let dot = h.file(".particle");
    tree(
        &dot,
        &[(
            &format!("device-os-flash/binaries/1.5.0/photon/{PART1}"),
            fixture(PART1),
        )],
    );
    let (code, out, err) = h.run_text(&["catalog", "add", "--from-particle-cli", path_arg(&dot)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("added {PART1}")), "{out}");

    let elsewhere = h.file("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let (code, _, err) = h.run_text(&[
        "catalog",
        "add",
        "--from-particle-cli",
        path_arg(&elsewhere),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is neither particle-cli's package nor its ~/.particle folder"),
        "{err}"
    );
}

#[test]
fn rm_removes_by_name_and_by_sha256() {
    let h = home();
    let dir = h.file("files");
    tree(&dir, &[(PART1, fixture(PART1)), (PART2, fixture(PART2))]);
    h.ok(&["catalog", "add", path_arg(&dir)]);
    let out = h.ok(&["catalog", "rm", PART1]);
    assert_eq!(
        out.trim(),
        format!("removed {PART1}: Photon system part 1 version 1502 (Device OS 1.5.0)")
    );
    let entries: Vec<Value> = serde_json::from_str(&h.ok(&["catalog", "list", "--json"])).unwrap();
    let sha = entries[0]["sha256"].as_str().unwrap();
    h.ok(&["catalog", "rm", &sha[..10]]);
    assert!(listed_files(&h).is_empty());
    let stored = std::fs::read_dir(h.path().join("catalog"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        .count();
    assert_eq!(stored, 0, "the stored files go too");
    let (code, _, err) = h.run_text(&["catalog", "rm", PART1]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("the catalogue holds no module {PART1}")),
        "{err}"
    );
}
