//! Hostile devices on a serial port, one test per defect of issue 11's serial part: a scripted
//! fake device on a pty (`serial_support::fake`) that prints anything but its success line
//! after the last ACK, says nothing, logs instead of answering, dies mid-transfer or NAKs
//! block after block; a device that reports no hash for what was written; and a port left at
//! 28800 baud by another program before `sim serve`'s virtual Photon is flashed.
//!
//! Every command runs under a time limit: a hang fails the test instead of stalling it.

mod common;
mod serial_support;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::home;
use modflash_testkit::process::output_within;
use modflash_testkit::{fixture_path, text, Home};
use serde_json::Value;
use serial_support::fake::{Blocks, End, FakeDevice, Script};
use serial_support::{Serve, Tty};

/// A Photon with Device OS 1.5.0 and photon_tinker.bin as its `s` answer: the system parts
/// without a hash (the device lists one for user parts only), the app with its SHA-256.
const PHOTON_150: &str = r#"{"p":6,"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":501,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":1502,"d":[{"f":"s","n":"2","v":207}]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":1502,"d":[{"f":"s","n":"1","v":1502},{"f":"b","n":"0","v":400}]},{"s":131072,"l":"m","vc":30,"vv":30,"u":"2BA4E71E840F596B812003882AAE7CA6496F1590CA4A049310AF76EAF11C943A","f":"u","n":"1","v":2,"d":[{"f":"s","n":"2","v":1}]}]}"#;

const PART1: &str = "photon-system-part1@1.5.0.bin";
const TINKER: &str = "photon_tinker.bin";

/// The longest any command here may take: far more than the limits modflash sets itself.
const LIMIT: Duration = Duration::from_secs(45);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

fn run(home: &Home, args: &[&str]) -> Run {
    let mut cmd = home.cmd();
    cmd.args(args);
    let started = Instant::now();
    let out = output_within(cmd, LIMIT);
    Run {
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        took: started.elapsed(),
    }
}

fn serial_flash(fake: &FakeDevice, file: &str, extra: &[&str]) -> Run {
    let home = home();
    let path = fixture_path(file);
    let mut args = vec!["serial", "flash", path.to_str().unwrap()];
    let device = fake.device();
    args.extend(["--device", &device]);
    args.extend(extra);
    run(&home, &args)
}

/// The device acknowledges the whole transfer, then prints `text`: `serial flash --json`
/// must not call that an acceptance. Returns the report.
fn after_the_last_ack(text: &[u8]) -> (Run, Value) {
    let fake = FakeDevice::start(Script {
        end: End::AckThen(text.to_vec()),
        ..Script::device(PHOTON_150)
    });
    let r = serial_flash(&fake, PART1, &["--json"]);
    let report = r.json();
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_ne!(report["verdict"], "accepted", "{report}");
    assert_ne!(report["verified"], true, "{report}");
    (r, report)
}

fn assert_unconfirmed(report: &Value, quoted: &str) {
    assert_eq!(report["verdict"], "unconfirmed", "{report}");
    let reason = report["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(quoted) && reason.contains("instead of its success line"),
        "{report}"
    );
}

#[test]
fn failed_to_receive_after_the_last_ack_is_not_a_success() {
    let (r, report) = after_the_last_ack(b"\r\nFailed to receive the file!\r\n");
    assert_unconfirmed(&report, "Failed to receive the file!");
    assert!(
        r.stderr.contains("error: the device did not confirm")
            && r.stderr.contains("Failed to receive the file!"),
        "{}",
        r.stderr
    );
}

#[test]
fn file_too_large_after_the_last_ack_is_not_a_success() {
    let (_, report) =
        after_the_last_ack(b"\r\nThe file size is higher than the allowed space memory!\r\n");
    assert_eq!(report["verdict"], "too_large", "{report}");
}

#[test]
fn aborted_by_user_after_the_last_ack_is_not_a_success() {
    let (_, report) = after_the_last_ack(b"\r\nAborted by user.\r\n");
    assert_unconfirmed(&report, "Aborted by user.");
}

#[test]
fn validation_failed_without_a_code_after_the_last_ack_is_a_refusal() {
    let (r, report) = after_the_last_ack(b"\r\nValidation failed: \r\n");
    assert_eq!(report["verdict"], "refused", "{report}");
    assert_eq!(report["error_code"], Value::Null, "{report}");
    assert!(
        r.stderr.contains(
            "error: the device refused it: it printed \"Validation failed:\" without a result code"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn garbage_after_the_last_ack_is_not_a_success() {
    let (_, report) = after_the_last_ack(b"\x07\xfe\x01 zq#%!\r\n\xff\xff");
    assert_unconfirmed(&report, "zq#%!");
}

#[test]
fn silence_after_the_last_ack_is_not_a_success() {
    let (r, report) = after_the_last_ack(b"");
    assert_eq!(report["verdict"], "unconfirmed", "{report}");
    assert!(
        r.stderr
            .contains("after the transfer it printed nothing in 3.0 s, not its success line"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_system_part_without_a_reported_hash_is_written_not_verified() {
    // The device accepts part 1 with its success line and lists it afterwards — but the `s`
    // answer carries no SHA-256 for system parts, and the version it lists was there before
    // (the same version re-flashed): nothing proves the file is installed.
    let fake = FakeDevice::start(Script::device(PHOTON_150));
    let r = serial_flash(&fake, PART1, &["--json"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let report = r.json();
    assert_eq!(report["verdict"], "accepted", "{report}");
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(report["evidence"], "device_accepted", "{report}");
    assert!(
        r.stderr.contains(
            "error: written, not verified: the device reports no hash for this module over serial"
        ),
        "{}",
        r.stderr
    );
    // The command that can verify it: a read-back over USB DFU, compared with the file.
    assert!(
        r.stderr
            .contains("modflash dfu upload --device usb --address 0x08020000 --length 238408 -o")
            && r.stderr.contains("--no-verify"),
        "{}",
        r.stderr
    );
    // --no-verify accepts it, and says so.
    let r = serial_flash(&fake, PART1, &["--no-verify"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with(
            "not verified: system part 1 version 1502 is installed on the Photon and passes every check, but the device reports no hash for it over serial"
        ),
        "{}",
        r.stdout
    );
    // An app whose SHA-256 the device reports is verified by it.
    let r = serial_flash(&fake, TINKER, &["--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = r.json();
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["evidence"], "sha256", "{report}");
}

#[test]
fn flash_via_serial_says_which_modules_are_proven() {
    // `flash --via serial`: the step is accepted by the device, and after the restart it
    // lists version 1502 — which it listed before too. Without a hash that is not "verified".
    let fake = FakeDevice::start(Script::device(PHOTON_150));
    let home = home();
    let part1 = fixture_path(PART1);
    let device = fake.device();
    let args = [
        "flash",
        part1.to_str().unwrap(),
        "--device",
        &device,
        "--via",
        "serial",
        "--yes",
    ];
    let r = run(&home, &args);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("step 1 accepted by the device") && !r.stderr.contains("step 1 verified"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("Evidence: system part 1 1502 NOT PROVEN"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("error: written, not verified: the device reports no hash for system part 1 version 1502 (step 1) over serial"),
        "{}",
        r.stderr
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let r = run(&home, &json_args);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    // The stream's last line is the result.
    let report: Value = r
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(report["event"], "result", "{report}");
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(
        report["evidence"],
        serde_json::json!([{"step": 1, "function": "system", "index": 1, "version": 1502,
                             "evidence": "device_accepted"}]),
        "{report}"
    );
}

#[test]
fn modules_on_a_device_that_logs_but_never_answers_stops_at_its_limit() {
    // A log line a second, never the `s` JSON: each gap is short, so only a limit on the
    // whole answer ends the wait.
    let fake = FakeDevice::start(Script {
        describe: None,
        log_every: Some(Duration::from_secs(1)),
        ..Script::device(PHOTON_150)
    });
    let home = home();
    let r = run(&home, &["modules", "--device", &fake.device()]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(20), "took {:?}", r.took);
    assert!(
        r.stderr
            .contains("the answer to `s` did not end within its time limit of 10.0 s")
            && r.stderr.contains("[log] uptime"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_device_dying_mid_transfer_fails_at_the_transfer_limit() {
    // Two data blocks acknowledged, then nothing: the sender's own retries would take 11 ×
    // 10 s; the transfer's limit for 3952 bytes is 15.4 s.
    let fake = FakeDevice::start(Script {
        blocks: Blocks::DieAfter(2),
        ..Script::device(PHOTON_150)
    });
    let r = serial_flash(&fake, TINKER, &["--json"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(25), "took {:?}", r.took);
    assert!(
        r.stderr.contains(
            "the YMODEM transfer of 3952 bytes did not end within its time limit of 15.4 s"
        ) && r
            .stderr
            .contains("2048 of 3952 bytes acknowledged; the device last sent an ACK"),
        "{}",
        r.stderr
    );
    let report = r.json();
    assert_eq!(report["verdict"], "failed", "{report}");
    assert_eq!(report["transfer"]["bytes_acked"], 2048, "{report}");
}

#[test]
fn a_device_answering_nak_after_nak_fails_at_the_transfer_limit() {
    // Six NAKs before every ACK, each answer 400 ms late: the transfer crawls (the sender
    // never runs out of retries) and would take ~30 s; its limit is 15.4 s.
    let fake = FakeDevice::start(Script {
        blocks: Blocks::NakFirst {
            naks: 6,
            delay: Duration::from_millis(400),
        },
        ..Script::device(PHOTON_150)
    });
    let r = serial_flash(&fake, TINKER, &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(25), "took {:?}", r.took);
    assert!(
        r.stderr.contains(
            "the YMODEM transfer of 3952 bytes did not end within its time limit of 15.4 s"
        ) && r.stderr.contains("the device last sent a NAK"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_device_that_logs_instead_of_its_verdict_is_given_up_on() {
    // After the last ACK the device prints a log line a second and never its verdict.
    let fake = FakeDevice::start(Script {
        log_every: Some(Duration::from_secs(1)),
        end: End::AckThen(Vec::new()),
        ..Script::device(PHOTON_150)
    });
    let r = serial_flash(&fake, TINKER, &["--json"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(25), "took {:?}", r.took);
    let report = r.json();
    assert_unconfirmed(&report, "[log] uptime");
}

/// What a terminal program (or particle-cli) leaves behind: the port at 28800 baud with its
/// local modes cleared (a raw terminal), after talking to the device in listening mode;
/// with `exit`, it also sent `x` (the device runs its firmware again).
fn terminal_program_leaves_28800(link: &Path, exit: bool) {
    let tty = Tty::open(link, 9600);
    // SAFETY: termios is plain data, the fd is open.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(tty.fd.as_raw_fd(), &mut t), 0);
        t.c_lflag = 0;
        assert_eq!(libc::tcsetattr(tty.fd.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    std::thread::sleep(Duration::from_millis(100));
    tty.set_baud(28800);
    std::thread::sleep(Duration::from_millis(400));
    assert!(tty.ask(b"v", "version").contains("system firmware version"));
    if exit {
        tty.write(b"x");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_port_left_at_28800_by_another_program_does_not_fail_the_reconnect() {
    // The issue's case: part 1 of 1.5.0 onto a 0.7.0 Photon behind `sim serve`, the port left
    // at 28800 by a terminal program. The part is installed; modflash used to wait 7 s for
    // `s` after the restart and exit 2 ("no answer to `s`"): opening the port at the rate it
    // already had changed nothing the device could hear.
    let home = home();
    home.create("left", "photon", "0.7.0");
    let serve = Serve::start(&home, "left");
    terminal_program_leaves_28800(&serve.link, false);
    let part1 = fixture_path(PART1);
    let device = serve.device();
    let r = run(
        &home,
        &[
            "serial",
            "flash",
            part1.to_str().unwrap(),
            "--device",
            &device,
            "--json",
        ],
    );
    let report = r.json();
    assert!(!r.stderr.contains("no answer to `s`"), "{}", r.stderr);
    assert_eq!(report["verdict"], "accepted", "{report}");
    assert_eq!(report["installed"]["version"], 1502, "{report}");
    // Installed and read back; unproven only because the device reports no hash for it.
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(report["evidence"], "device_accepted", "{report}");
    // The same with the device back in its firmware (the program sent `x`): entering
    // listening mode at the start needs the rate changed too. The app is proven by its hash.
    terminal_program_leaves_28800(&serve.link, true);
    let tinker = fixture_path(TINKER);
    let r = run(
        &home,
        &[
            "serial",
            "flash",
            tinker.to_str().unwrap(),
            "--device",
            &device,
            "--json",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = r.json();
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["evidence"], "sha256", "{report}");
    assert!(serve.stop().success());
}
