//! Backups: `flash` keeps what it replaces, `backups` lists it, `restore` puts it back.

mod common;

use common::{home, user_version};
use modflash_testkit::fixture_path;
use serde_json::Value;

#[test]
fn flash_keeps_what_it_replaces_and_restore_puts_it_back() {
    let h = home();
    h.create("b", "photon", "1.5.0");
    assert_eq!(user_version(&h.show("b")), Some(6));
    let tinker = fixture_path("photon_tinker.bin");
    h.ok(&[
        "flash",
        tinker.to_str().unwrap(),
        "--device",
        "sim:b",
        "--yes",
    ]);
    assert_eq!(user_version(&h.show("b")), Some(2));
    let list: Value =
        serde_json::from_str(&h.ok(&["backups", "--device", "sim:b", "--json"])).unwrap();
    let backups = list.as_array().unwrap();
    assert_eq!(backups.len(), 1, "{list:#}");
    let modules = &backups[0]["manifest"]["modules"];
    assert_eq!(modules[0]["function"], "user");
    assert_eq!(modules[0]["version"], 6);
    assert!(
        modules[0]["file"].is_string(),
        "the bytes were kept: {list:#}"
    );
    let name = backups[0]["backup"].as_str().unwrap();
    h.ok(&["restore", name, "--device", "sim:b", "--yes"]);
    let sim = h.show("b");
    assert_eq!(user_version(&sim), Some(6));
    assert_eq!(sim["mode"], "app");
}

#[test]
fn no_backup_keeps_nothing() {
    let h = home();
    h.create("n", "photon", "1.5.0");
    let tinker = fixture_path("photon_tinker.bin");
    h.ok(&[
        "flash",
        tinker.to_str().unwrap(),
        "--device",
        "sim:n",
        "--yes",
        "--no-backup",
    ]);
    let list: Value = serde_json::from_str(&h.ok(&["backups", "--json"])).unwrap();
    assert_eq!(list, Value::Array(vec![]));
}
