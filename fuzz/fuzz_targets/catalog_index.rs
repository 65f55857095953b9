//! Fuzz the home catalogue's index: any bytes as `index.json` are read or refused, never a
//! panic, and reconciled with the stored files the index keeps exactly one entry per stored
//! module.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash::catalog::store::{parse_index, reconcile};
use modflash::catalog::IndexEntry;

/// The entry a stored file `sha` gives when the index does not name it.
fn stored_entry(sha: &str) -> Option<IndexEntry> {
    Some(IndexEntry {
        file: format!("{sha}.bin"),
        sha256: sha.to_string(),
        platform_id: 6,
        platform: Some("photon".into()),
        function: "system".into(),
        index: 1,
        version: 1502,
        device_os: None,
        size: 0,
    })
}

fuzz_target!(|data: &[u8]| {
    let listed = parse_index(data);
    // Stored: every other module the index names, and one it does not.
    let mut stored: Vec<String> = listed
        .as_ref()
        .map(|entries| entries.iter().step_by(2).map(|e| e.sha256.clone()).collect())
        .unwrap_or_default();
    stored.push("0".repeat(64));
    stored.sort();
    stored.dedup();
    let index = reconcile(Some(listed), &stored, "index.json".into(), stored_entry);
    assert_eq!(index.entries.len(), stored.len());
    assert!(index.entries.iter().all(|e| stored.contains(&e.sha256)));
});
