//! `modflash map` and `plan --svg`: the terminal rendering of virtual devices (snapshots,
//! without colour), files placed on their platform, JSON, and SVG pictures that parse and
//! render. With `MODFLASH_UPDATE_DOCS=1` the plan picture is rendered into
//! `docs/map-plan.png`.

mod common;

use std::path::Path;

use common::home;
use modflash_testkit::{fixture_path, path_arg, Home};
use resvg::{tiny_skia, usvg};
use serde_json::Value;

/// `modflash map --device sim:NAME` of a new virtual device.
fn map_of(platform: &str, release: &str) -> String {
    let home = home();
    home.create("dev", platform, release);
    home.ok(&["map", "--device", "sim:dev"])
}

#[test]
fn a_photon_with_052() {
    insta::assert_snapshot!("photon-0.5.2", map_of("photon", "0.5.2"));
}

#[test]
fn an_electron_with_220() {
    insta::assert_snapshot!("electron-2.2.0", map_of("electron", "2.2.0"));
}

#[test]
fn an_argon() {
    insta::assert_snapshot!("argon-4.2.0", map_of("argon", "4.2.0"));
}

#[test]
fn a_p2() {
    insta::assert_snapshot!("p2-5.0.0", map_of("p2", "5.0.0"));
}

/// A Photon with Device OS 0.5.2 whose app needs 1.5.0: in safe mode.
fn photon_in_safe_mode(home: &Home) {
    let app = home.make_app("photon", "1.5.0");
    home.ok(&[
        "sim",
        "create",
        "safe",
        "--platform",
        "photon",
        "--device-os",
        "0.5.2",
        "--user-app",
        path_arg(&app),
    ]);
}

#[test]
fn a_failed_dependency_is_shown_with_its_fix_and_exits_1() {
    let home = home();
    photon_in_safe_mode(&home);
    let (code, out, err) = home.run_text(&["map", "--device", "sim:safe"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("safe mode (LED breathing magenta)"), "{out}");
    assert!(out.contains("FAIL dependencies"), "{out}");
    assert!(
        out.contains(
            "FAIL  user part 1 v6 → system part 2 ≥ 1502: installed 17 (0.5.2); \
             flash system part 2 of Device OS 1.5.0 or later"
        ),
        "{out}"
    );
}

#[test]
fn files_are_placed_where_they_would_go() {
    let home = home();
    let part1 = fixture_path("photon-system-part1@1.5.0.bin");
    let part2 = fixture_path("photon-system-part2@1.5.0.bin");
    let app = home.make_app("photon", "1.5.0");
    let out = home.ok(&["map", path_arg(&part1), path_arg(&part2), path_arg(&app)]);
    assert!(out.starts_with("3 files — Photon\n"), "{out}");
    assert!(
        out.contains("memory map photon, where the files would go"),
        "{out}"
    );
    assert!(
        out.contains("photon-system-part1@1.5.0.bin: v1502 (1.5.0) valid"),
        "{out}"
    );
    assert!(
        out.contains("?     system part 2 v1502 → bootloader ≥ 400: not among the files"),
        "{out}"
    );
    assert!(
        out.contains("PASS  user part 1 v6 → system part 2 ≥ 1502: installed 1502 (1.5.0)"),
        "{out}"
    );
    let json: Value = serde_json::from_str(&home.ok(&["map", path_arg(&app), "--json"])).unwrap();
    assert_eq!(json[0]["basis"], "files");
    assert_eq!(json[0]["platform"], "Photon");
}

#[test]
fn a_file_that_is_not_a_module_and_a_device_with_files_are_refused() {
    let home = home();
    let notes = home.file("notes.txt");
    std::fs::write(&notes, "not firmware\n").unwrap();
    let (code, _, err) = home.run_text(&["map", path_arg(&notes)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("notes.txt is not a module"), "{err}");
    let core = fixture_path("core_tinker.bin");
    home.create("dev", "photon", "0.5.2");
    let (code, _, err) = home.run_text(&["map", "--device", "sim:dev", path_arg(&core)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn the_json_map_of_a_device() {
    let home = home();
    home.create("dev", "argon", "4.2.0");
    let json: Value =
        serde_json::from_str(&home.ok(&["map", "--device", "sim:dev", "--json"])).unwrap();
    assert_eq!(json["platform_id"], 12);
    assert_eq!(json["layout"], "gen3-3.1");
    assert_eq!(json["basis"], "flash");
    assert_eq!(json["mode"], "app");
    let memories: Vec<&str> = json["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(memories, ["internal", "external"]);
    let radio = &json["memories"][0]["regions"][0];
    assert_eq!(radio["function"], "radio");
    assert_eq!(radio["modules"][0]["failed"], serde_json::json!([]));
    assert!(radio["used"].as_u64().unwrap() <= radio["end"].as_u64().unwrap());
    assert_eq!(json["dependencies"][0]["verdict"], "met");
}

/// The SVG at `path`, parsed and rendered; the picture.
fn render(path: &Path) -> tiny_skia::Pixmap {
    let svg = std::fs::read_to_string(path).unwrap();
    let mut options = usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(&svg, &options)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
}

/// How many pixels of `pixmap` are close to the colour `#rrggbb`.
fn pixels_like(pixmap: &tiny_skia::Pixmap, rgb: u32) -> usize {
    let [_, r, g, b] = rgb.to_be_bytes();
    pixmap
        .pixels()
        .iter()
        .filter(|p| {
            p.red().abs_diff(r) < 8 && p.green().abs_diff(g) < 8 && p.blue().abs_diff(b) < 8
        })
        .count()
}

#[test]
fn plan_svg_draws_the_device_before_and_after_the_plan() {
    let home = home();
    home.create("demo", "photon", "0.5.2");
    let app = home.make_app("photon", "1.5.0");
    let svg = home.file("plan.svg");
    let (code, out, err) = home.run_text(&[
        "plan",
        path_arg(&app),
        "--device",
        "sim:demo",
        "--svg",
        path_arg(&svg),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("wrote {}", svg.display())), "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("sim:demo before"), "{text}");
    assert!(text.contains("after the plan (predicted)"), "{text}");
    assert!(text.contains("Device OS 0.5.2") && text.contains("Device OS 1.5.0"));
    assert!(text.contains("v1502 (1.5.0) valid, written"), "{text}");
    let picture = render(&svg);
    assert!(picture.width() > 1800 && picture.height() > 300);
    assert!(
        pixels_like(&picture, 0x2da44e) > 1000,
        "valid modules in green"
    );
    assert!(
        pixels_like(&picture, 0x0969da) > 100,
        "written modules outlined in blue"
    );
    if std::env::var_os("MODFLASH_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/map-plan.png");
        picture.save_png(&docs).unwrap();
    }
}

#[test]
fn map_svg_of_a_failing_device_and_of_files() {
    let home = home();
    photon_in_safe_mode(&home);
    let svg = home.file("safe.svg");
    let (code, _, err) = home.run_text(&["map", "--device", "sim:safe", "--svg", path_arg(&svg)]);
    assert_eq!(code, 1, "{err}");
    let picture = render(&svg);
    assert!(
        pixels_like(&picture, 0xcf222e) > 200,
        "the failing app in red"
    );
    let files = home.file("files.svg");
    let argon = fixture_path("argon-softdevice@1.5.0.bin");
    let photon = home.make_app("photon", "1.5.0");
    home.ok(&[
        "map",
        path_arg(&argon),
        path_arg(&photon),
        "--svg",
        path_arg(&files),
    ]);
    let picture = render(&files);
    assert!(picture.width() > 1800, "one panel per platform");
}
