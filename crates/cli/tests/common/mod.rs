//! The CLI tests' side of the testkit: a private home that runs this crate's `modflash`
//! binary (only this crate knows its path), and a reader of `sim show --json`.
#![allow(dead_code)] // each test binary uses a different subset

use modflash_testkit::interop::skip;
use modflash_testkit::{text, Home};
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

/// Why the emulated USB bus (`sim attach`, umockdev) does not work here; `None` when it does.
pub fn bus_unavailable() -> Option<String> {
    let h = home();
    h.create("probe", "photon", "1.5.0");
    let out = h.run(&["sim", "attach", "probe", "--", "true"]);
    (!out.status.success()).then(|| text(&out.stderr).trim().to_string())
}

/// True when the emulated bus works here; otherwise the test is skipped (see [`skip`]).
pub fn bus(test: &str) -> bool {
    let Some(why) = bus_unavailable() else {
        return true;
    };
    skip(
        test,
        &format!("the emulated USB bus is not available: {why}"),
        "apt-get install umockdev libumockdev-dev",
    );
    false
}

/// The result `flash --json` ends with: the last line of its JSON-lines event stream.
pub fn flash_result(stdout: &str) -> Value {
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let report: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["event"], "result", "{report}");
    report
}
