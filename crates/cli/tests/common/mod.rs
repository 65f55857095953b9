//! The CLI tests' side of the testkit: a private home that runs this crate's `modflash`
//! binary (only this crate knows its path), and a reader of `sim show --json`.
#![allow(dead_code)] // each test binary uses a different subset

use modflash_testkit::Home;
use serde_json::Value;

/// The `modflash` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_modflash");

/// A new private modflash home running [`BIN`].
pub fn home() -> Home {
    Home::new(BIN)
}

/// The version of the main user part in a `sim show --json` describe.
pub fn user_version(sim: &Value) -> Option<u64> {
    sim["describe"]["m"]
        .as_array()?
        .iter()
        .find(|m| m["f"] == "u" && m["l"] == "m")
        .and_then(|m| m["v"].as_u64())
}
