//! `modflash wifi` end to end: a virtual Photon served on a pty (`modflash sim serve`) takes
//! Wi-Fi credentials through listening mode's `w` like a USB serial port would; the password
//! is in no output, no log and no saved event (only in the device's flash, where Device OS
//! keeps it); `--clear` removes them; an Electron is refused before anything is sent.

mod common;
mod serial_support;

use std::io::Write;
use std::process::Stdio;

use common::home;
use modflash_testkit::{path_arg, text, Home};
use serde_json::{json, Value};
use serial_support::Serve;

const PASSWORD: &str = "Tr0ub4dor&3-horse";

fn password_file(home: &Home) -> String {
    let path = home.file("wifi-password");
    std::fs::write(&path, format!("{PASSWORD}\n")).unwrap();
    path_arg(&path).to_string()
}

/// The state block of a virtual device's image file (`MODFLASH-SIM 1\n`, then u32-LE
/// length-prefixed blocks, the state first), and the whole file.
fn saved_state(home: &Home, name: &str) -> (String, Vec<u8>) {
    let file = home.sim_file(name);
    let magic = b"MODFLASH-SIM 1\n".len();
    let len = u32::from_le_bytes(file[magic..magic + 4].try_into().unwrap()) as usize;
    let state = String::from_utf8(file[magic + 4..magic + 4 + len].to_vec()).unwrap();
    (state, file)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn wifi_over_a_served_pty_stores_them_and_the_password_shows_nowhere() {
    let home = home();
    home.create("w1", "photon", "1.5.0");
    let pw = password_file(&home);
    let serve = Serve::start(&home, "w1");
    let out = home.run(&[
        "wifi",
        "--device",
        &serve.device(),
        "--ssid",
        "home",
        "--security",
        "WPA2_AES",
        "--password-file",
        &pw,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for stream in [&out.stdout, &out.stderr] {
        assert!(!contains(stream, PASSWORD), "{}", text(stream));
    }
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "saved");
    assert_eq!(report["ssid"], "home");
    assert_eq!(report["security"], "wpa2");
    assert_eq!(
        report["asked"],
        json!(["ssid", "security", "cipher", "password"])
    );
    assert!(serve.stop().success());
    let log = std::fs::read(home.path().join("w1.serve.log")).unwrap();
    assert!(!log.is_empty() && !contains(&log, PASSWORD));

    let shown = home.show("w1");
    assert_eq!(
        shown["wifi"],
        json!([{"ssid": "home", "security": "wpa2", "cipher": "aes"}])
    );
    assert_eq!(shown["mode"], "app", "it left listening mode to connect");
    assert!(!shown.to_string().contains(PASSWORD));
    let human = home.ok(&["sim", "show", "w1"]);
    assert!(human.contains("  wifi     \"home\" (WPA2 AES)"), "{human}");
    assert!(!human.contains(PASSWORD));
    // The saved state (its event log included) never holds it; the flash image does, in the
    // DCT, as a Photon keeps it.
    let (state, file) = saved_state(&home, "w1");
    assert!(state.contains("saved secured Wi-Fi credentials for network"));
    assert!(!state.contains(PASSWORD));
    assert!(contains(&file, PASSWORD));

    // They survive a reset.
    home.ok(&["sim", "reset", "w1"]);
    assert_eq!(home.show("w1")["wifi"][0]["ssid"], "home");

    // A second network, the password on standard input: the newest goes first.
    let serve = Serve::start(&home, "w1");
    let mut child = home
        .cmd()
        .args(["wifi", "--device", &serve.device(), "--ssid", "cafe"])
        .args(["--security", "wpa_tkip", "--password-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("has the Wi-Fi credentials for \"cafe\""));
    assert!(!contains(&out.stdout, PASSWORD) && !contains(&out.stderr, PASSWORD));
    // `--clear` over a serial port: Device OS has no console command for it.
    let refused = home.run(&["wifi", "--device", &serve.device(), "--clear"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = text(&refused.stderr);
    assert!(
        err.contains("hold the SETUP (MODE) button for 10 seconds"),
        "{err}"
    );
    assert!(serve.stop().success());
    assert_eq!(
        home.show("w1")["wifi"],
        json!([
            {"ssid": "cafe", "security": "wpa", "cipher": "tkip"},
            {"ssid": "home", "security": "wpa2", "cipher": "aes"},
        ])
    );

    // `--clear` on the virtual device: its SETUP button held 10 s in listening mode.
    let out = home.run(&["wifi", "--device", "sim:w1", "--clear", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "cleared");
    let shown = home.show("w1");
    assert_eq!(shown["wifi"], json!([]));
    assert_eq!(shown["mode"], "app");
    assert!(shown["events"].as_array().unwrap().iter().any(|e| e
        .as_str()
        .unwrap()
        .contains("Wi-Fi credentials cleared: button held 10 s in listening mode")));
}

#[test]
fn a_wpa2_password_the_photon_would_refuse_is_not_sent() {
    let home = home();
    home.create("w2", "photon", "1.5.0");
    let path = home.file("short");
    std::fs::write(&path, "Xq7shrt\n").unwrap();
    let before = home.sim_file("w2");
    let (code, out, err) = home.run_text(&[
        "wifi",
        "--device",
        "sim:w2",
        "--ssid",
        "home",
        "--password-file",
        path_arg(&path),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("a WPA2 password must be 8 to 64 characters long, not 7"),
        "{err}"
    );
    assert!(!out.contains("Xq7") && !err.contains("Xq7"));
    assert_eq!(home.sim_file("w2"), before, "nothing reached the device");
}

#[test]
fn an_electron_is_refused_before_anything_is_sent() {
    let home = home();
    home.create("cell", "electron", "1.5.0");
    let pw = password_file(&home);
    let serve = Serve::start(&home, "cell");
    let (code, out, err) = home.run_text(&[
        "wifi",
        "--device",
        &serve.device(),
        "--ssid",
        "home",
        "--password-file",
        &pw,
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot take Wi-Fi credentials: the Electron has no Wi-Fi"),
        "{err}"
    );
    assert!(serve.stop().success());
    let log = std::fs::read_to_string(home.path().join("cell.serve.log")).unwrap();
    assert!(!log.contains("command `w`"), "{log}");
    let shown = home.show("cell");
    assert_eq!(shown["wifi"], Value::Null);
    assert_eq!(shown["mode"], "app");
    let (code, _, err) = home.run_text(&["wifi", "--device", "sim:cell", "--clear"]);
    assert_eq!(code, 2);
    assert!(err.contains("the Electron has no Wi-Fi"), "{err}");
}
