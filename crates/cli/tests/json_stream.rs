//! `flash --json` is one JSON-lines stream: every line of every run below — DFU and serial,
//! a dry run, nothing to do, a power cut, several devices — is valid against the schema
//! `modflash schema` prints (generated from the CLI's types), and the stream ends with its
//! result.

mod common;

use common::home;
use modflash_testkit::{fixture_path, Home};
use serde_json::Value;

/// The stream's schema, compiled.
fn validator(h: &Home) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&h.ok(&["schema"])).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("the schema: {e}"))
}

/// Every line of `stdout`, each checked against the schema.
fn checked_lines(validator: &jsonschema::Validator, stdout: &str) -> Vec<Value> {
    assert!(!stdout.is_empty(), "no output");
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{line}\n{}", errors.join("\n"));
            v
        })
        .collect()
}

fn events(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l["event"].as_str()).collect()
}

#[test]
fn a_flash_is_one_valid_stream_ending_with_its_result() {
    let h = home();
    let check = validator(&h);
    h.create("demo", "photon", "0.5.2");
    let app = h.make_app("photon", "1.5.0");
    let app = app.to_str().unwrap();
    let (code, stdout, stderr) =
        h.run_text(&["flash", app, "--device", "sim:demo", "--yes", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = checked_lines(&check, &stdout);
    let events = events(&lines);
    for e in [
        "step_started",
        "started",
        "progress",
        "finished",
        "step_verified",
    ] {
        assert!(events.contains(&e), "no {e}: {events:?}");
    }
    let result = lines.last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["executed"], true);
    assert_eq!(result["verified"], true);
    assert_eq!(result["device"], "sim:demo");
    assert_eq!(
        result["steps"].as_array().map(Vec::len),
        Some(4),
        "{result}"
    );
    assert_eq!(events.iter().filter(|e| **e == "result").count(), 1);

    // Nothing left to do, and a dry run: the result alone, not executed.
    for extra in [None, Some("--dry-run")] {
        let mut args = vec!["flash", app, "--device", "sim:demo", "--yes", "--json"];
        args.extend(extra);
        let lines = checked_lines(&check, &h.ok(&args));
        let result = lines.last().unwrap();
        assert_eq!(result["event"], "result", "{extra:?}");
        assert_eq!(result["executed"], false, "{extra:?}");
        assert!(result.get("verified").is_none(), "{result}");
    }
}

#[test]
fn a_serial_flash_and_a_power_cut_stream_valid_lines() {
    let h = home();
    let check = validator(&h);
    let tinker = fixture_path("photon_tinker.bin");
    let tinker = tinker.to_str().unwrap();
    h.create("ser", "photon", "1.5.0");
    let args = [
        "flash", tinker, "--device", "sim:ser", "--via", "serial", "--yes", "--json",
    ];
    let lines = checked_lines(&check, &h.ok(&args));
    assert!(events(&lines).contains(&"step_accepted"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["event"], "result");

    // The plug pulled mid-write: the stream says which operation failed and ends with the
    // result, carrying the error printed on standard error.
    h.create("cut", "photon", "0.5.2");
    h.ok(&["sim", "power-cut", "cut", "--after", "3"]);
    let app = h.make_app("photon", "1.5.0");
    let (code, stdout, stderr) = h.run_text(&[
        "flash",
        app.to_str().unwrap(),
        "--device",
        "sim:cut",
        "--yes",
        "--json",
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    let lines = checked_lines(&check, &stdout);
    assert!(events(&lines).contains(&"failed"), "{lines:?}");
    let result = lines.last().unwrap();
    assert_eq!(result["event"], "result", "{result}");
    assert_eq!(result["executed"], true, "{result}");
    assert!(result.get("verified").is_none(), "{result}");
    let message = result["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && stderr.contains(message),
        "{result}\n{stderr}"
    );
}

#[test]
fn several_devices_stream_tagged_lines_ending_with_the_summary() {
    let h = home();
    let check = validator(&h);
    h.create("line-a", "photon", "0.5.2");
    h.create("line-b", "photon", "1.5.0");
    let app = h.make_app("photon", "1.5.0");
    let stdout = h.ok(&[
        "flash",
        app.to_str().unwrap(),
        "--device",
        "sim:line-*",
        "--yes",
        "--json",
    ]);
    let lines = checked_lines(&check, &stdout);
    let (summary, events) = lines.split_last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["devices"].as_array().map(Vec::len), Some(2));
    assert!(!events.is_empty());
    for e in events {
        assert!(
            e["device"] == "sim:line-a" || e["device"] == "sim:line-b",
            "{e}"
        );
    }
}
