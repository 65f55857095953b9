//! `plan --inventories DIR` on hostile describe documents: broken and malformed ones fail the
//! run and name the field, and a describe without a platform id (Device OS 0.4.x) gets the
//! platform its module table fits, or the one given, and says which.

use std::path::{Path, PathBuf};

use modflash_testkit::{fixture_path, path_arg, Home};
use serde_json::{json, Value};

use crate::common::home;

/// The describe JSON of a new virtual device of `platform` running `release`.
fn describe_of(h: &Home, platform: &str, release: &str) -> Value {
    let name = format!("{platform}-{release}");
    h.create(&name, platform, release);
    h.show(&name)["describe"].clone()
}

/// A folder `name` in the home holding each document as `<file>.json`.
fn inventories(h: &Home, name: &str, docs: &[(&str, String)]) -> PathBuf {
    let dir = h.file(name);
    std::fs::create_dir(&dir).unwrap();
    for (file, text) in docs {
        std::fs::write(dir.join(format!("{file}.json")), text).unwrap();
    }
    dir
}

/// Runs `plan --inventories DIR ARGS`: the exit code and the JSON line of each file, by file
/// stem.
fn plan_inventories(h: &Home, dir: &Path, args: &[&str]) -> (i32, Vec<(String, Value)>) {
    let mut all = vec!["plan", "--inventories", path_arg(dir)];
    all.extend_from_slice(args);
    let (code, out, err) = h.run_text(&all);
    let lines = out
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\nstderr: {err}"));
            let stem = Path::new(v["inventory"].as_str().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (stem, v)
        })
        .collect();
    (code, lines)
}

fn line<'a>(lines: &'a [(String, Value)], stem: &str) -> &'a Value {
    &lines
        .iter()
        .find(|(s, _)| s == stem)
        .unwrap_or_else(|| panic!("no line for {stem}: {lines:?}"))
        .1
}

#[test]
fn a_failed_inventory_fails_the_run() {
    let h = home();
    let good = describe_of(&h, "photon", "1.5.0").to_string();
    let dir = inventories(
        &h,
        "inv",
        &[("good", good), ("broken", r#"{"p":6,"m":["#.into())],
    );
    let app = fixture_path("photon_tinker.bin");
    let (code, lines) = plan_inventories(&h, &dir, &[path_arg(&app)]);
    assert_eq!(line(&lines, "good")["ok"], true, "{lines:?}");
    assert_eq!(line(&lines, "broken")["ok"], false, "{lines:?}");
    assert_eq!(code, 2, "a describe that cannot be read is an input error");
}

#[test]
fn malformed_fields_are_reported_not_coerced() {
    let h = home();
    let good = describe_of(&h, "photon", "1.5.0");
    let user = good["m"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["f"] == "u" && m["l"] == "m")
        .unwrap();
    let variant = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "v_negative",
            variant(&|v| v["m"][user]["v"] = json!(-5)),
            format!("m[{user}].v is -5, not a module version"),
        ),
        (
            "v_huge",
            variant(&|v| v["m"][user]["v"] = json!(1u64 << 40)),
            format!("m[{user}].v is 1099511627776, not a module version"),
        ),
        (
            "n_999",
            variant(&|v| v["m"][user]["n"] = json!("999")),
            format!("m[{user}].n is \"999\", not a module index"),
        ),
        (
            "f_unknown",
            variant(&|v| v["m"][user]["f"] = json!("z")),
            format!("m[{user}].f is \"z\", not a module function"),
        ),
        (
            "null_entry",
            variant(&|v| v["m"][1] = Value::Null),
            "m[1] is null, not a module".to_string(),
        ),
        (
            "null_dependency",
            variant(&|v| v["m"][user]["d"][0] = Value::Null),
            format!("m[{user}].d[0] is null, not a dependency"),
        ),
    ];
    let docs: Vec<(&str, String)> = cases.iter().map(|(f, t, _)| (*f, t.clone())).collect();
    let dir = inventories(&h, "inv", &docs);
    let app = fixture_path("photon_tinker.bin");
    let (code, lines) = plan_inventories(&h, &dir, &[path_arg(&app)]);
    for (file, _, expected) in &cases {
        let l = line(&lines, file);
        assert_eq!(l["ok"], false, "{file}: {l}");
        let error = l["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected.as_str()), "{file}: {error}");
    }
    assert_eq!(code, 2);
}

#[test]
fn a_describe_without_a_platform_id_gets_the_platform_its_module_table_fits() {
    let h = home();
    let mut electron = describe_of(&h, "electron", "0.5.2");
    electron.as_object_mut().unwrap().remove("p");
    let dir = inventories(&h, "inv", &[("electron", electron.to_string())]);
    let app = h.make_app("electron", "0.5.2");
    let (code, lines) = plan_inventories(&h, &dir, &[path_arg(&app)]);
    let l = line(&lines, "electron");
    assert_eq!(l["ok"], true, "{l}");
    assert_eq!(l["platform"], "electron", "{l}");
    assert!(
        l["platform_from"]
            .as_str()
            .is_some_and(|s| s.contains("module table")),
        "{l}"
    );
    assert_eq!(code, 0);
}

#[test]
fn a_describe_that_fits_two_platforms_takes_the_files_or_platform_given() {
    let h = home();
    // Device OS 0.4.x printed no "p"; a Photon's module table is also a P1's.
    let mut old = describe_of(&h, "photon", "0.4.6");
    old.as_object_mut().unwrap().remove("p");
    let dir = inventories(&h, "inv", &[("old", old.to_string())]);

    let (code, lines) = plan_inventories(&h, &dir, &["--device-os", "0.4.6"]);
    let error = line(&lines, "old")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Photon") && error.contains("P1") && error.contains("--platform"),
        "{error}"
    );
    assert_eq!(code, 2);

    let photon_app = h.make_app("photon", "0.4.6");
    let (code, lines) = plan_inventories(&h, &dir, &[path_arg(&photon_app)]);
    let l = line(&lines, "old");
    assert_eq!(
        (l["ok"].clone(), l["platform"].clone()),
        (json!(true), json!("photon")),
        "{l}"
    );
    assert!(
        l["platform_from"]
            .as_str()
            .is_some_and(|s| s.contains("files")),
        "{l}"
    );
    assert_eq!(code, 0);

    let p1_app = h.make_app("p1", "0.4.6");
    let (code, lines) = plan_inventories(&h, &dir, &["--platform", "p1", path_arg(&p1_app)]);
    let l = line(&lines, "old");
    assert_eq!(
        (l["ok"].clone(), l["platform"].clone()),
        (json!(true), json!("p1")),
        "{l}"
    );
    assert!(
        l["platform_from"]
            .as_str()
            .is_some_and(|s| s.contains("--platform")),
        "{l}"
    );
    assert_eq!(code, 0);

    // A platform whose memory map the table does not fit is refused, saying so.
    let (code, lines) =
        plan_inventories(&h, &dir, &["--platform", "electron", path_arg(&photon_app)]);
    let error = line(&lines, "old")["error"].as_str().unwrap_or_default();
    assert!(error.contains("Electron"), "{error}");
    assert_eq!(code, 2);
}
