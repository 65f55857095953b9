//! Interop with real lrzsz clients over ptys:
//! * `sb -k` and `sz --ymodem -k` send a module into the virtual device's listening-mode
//!   receiver (`modflash sim serve`, after `f`); the device validates it and applies it or
//!   refuses it (CAN CAN);
//! * our transport (`PortLink` on the `serialport` crate + modflash-ymodem's sender) sends
//!   into `rb --ymodem` over a socat pty pair; judged by rb's exit code and the file.
//!
//! Skipped with a loud notice when lrzsz/socat are missing, unless
//! `MODFLASH_REQUIRE_INTEROP=1`, which makes that a failure.

mod common;
mod serial_support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{home, user_version};
use modflash::progress::{Cancel, Quiet};
use modflash::transport::serial::{send_ymodem, PortLink};
use modflash_testkit::process::wait_within;
use modflash_testkit::{fixture, fixture_path, interop, Home};
use modflash_ymodem::{File, SendStatus, SenderConfig};
use serde_json::Value;
use serial_support::{Serve, Tty};

/// What the skipped tests need.
const INSTALL: &str = "install lrzsz and socat";

/// Opens the tty at `path` for a child's stdin/stdout (no controlling-terminal takeover).
fn tty_stdio(path: &Path) -> (Stdio, Stdio) {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap()
    };
    (Stdio::from(open()), Stdio::from(open()))
}

/// Puts the served device in listening mode, starts its receiver with `f`, then runs
/// `tool args FILE` on the port. Returns the tool's exit status and log.
fn send_with(
    home: &Home,
    serve: &Serve,
    tool: &Path,
    args: &[&str],
    file: &Path,
) -> (bool, String) {
    let dir = home.path().join("send");
    fs::create_dir_all(&dir).unwrap();
    let name = file.file_name().unwrap();
    fs::copy(file, dir.join(name)).unwrap();
    let tty = Tty::open(&serve.link, 28800);
    let prompt = tty.ask(b"f", "press 'a' to abort");
    assert!(
        prompt.contains("Waiting for the binary file to be sent ... (press 'a' to abort)"),
        "{prompt:?}"
    );
    let (stdin, stdout) = tty_stdio(&serve.link);
    let log = dir.join("tool.log");
    let mut child = Command::new(tool)
        .args(args)
        .arg(name)
        .current_dir(&dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(20));
    drop(tty);
    (
        status.success(),
        fs::read_to_string(&log).unwrap_or_default(),
    )
}

fn system_versions(sim: &Value) -> Vec<u64> {
    sim["describe"]["m"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["f"] == "s" && m["l"] == "m")
        .map(|m| m["v"].as_u64().unwrap())
        .collect()
}

#[test]
fn sb_k_sends_an_app_into_the_device_and_it_runs() {
    let Some(tools) = interop::tools(
        "sb_k_sends_an_app_into_the_device_and_it_runs",
        &["sb"],
        INSTALL,
    ) else {
        return;
    };
    let home = home();
    home.create("sbk", "photon", "0.5.2");
    let serve = Serve::start(&home, "sbk");
    let start = Instant::now();
    let (ok, log) = send_with(
        &home,
        &serve,
        &tools[0],
        &["-k"],
        &fixture_path("photon_tinker.bin"),
    );
    assert!(ok, "sb -k failed:\n{log}");
    eprintln!("sb -k → device: {} ms", start.elapsed().as_millis());
    std::thread::sleep(Duration::from_millis(200));
    assert!(serve.stop().success());
    let sim = home.show("sbk");
    assert_eq!(
        user_version(&sim),
        Some(2),
        "photon_tinker.bin (version 2) installed"
    );
    let events = sim["events"].to_string();
    assert!(
        events.contains("running the application (user part version 2)"),
        "{events}"
    );
    assert_eq!(sim["reset_reason"], "update");
}

#[test]
fn sz_ymodem_k_sends_a_system_part_the_device_accepts() {
    let Some(tools) = interop::tools(
        "sz_ymodem_k_sends_a_system_part_the_device_accepts",
        &["sz"],
        INSTALL,
    ) else {
        return;
    };
    let home = home();
    home.create("szk", "photon", "0.7.0");
    let serve = Serve::start(&home, "szk");
    let (ok, log) = send_with(
        &home,
        &serve,
        &tools[0],
        &["--ymodem", "-k"],
        &fixture_path("photon-system-part1@1.5.0.bin"),
    );
    assert!(ok, "sz --ymodem -k failed:\n{log}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(serve.stop().success());
    let sim = home.show("szk");
    assert_eq!(system_versions(&sim), [1502, 207], "part 1 is now 1.5.0");
}

#[test]
fn sb_k_refused_part_is_cancelled_and_changes_nothing() {
    let Some(tools) = interop::tools(
        "sb_k_refused_part_is_cancelled_and_changes_nothing",
        &["sb"],
        INSTALL,
    ) else {
        return;
    };
    let home = home();
    home.create("ref", "photon", "0.5.2");
    let before = home.show("ref")["describe"].clone();
    let serve = Serve::start(&home, "ref");
    let (ok, log) = send_with(
        &home,
        &serve,
        &tools[0],
        &["-k"],
        &fixture_path("photon-system-part2@1.5.0.bin"),
    );
    // sb reports the device's CAN CAN on the end-of-batch block as "Cancelled" (its exit
    // code does not say it: lrzsz 0.12 exits 0 after a cancel there).
    assert!(
        log.contains("Cancelled"),
        "sb saw the cancel (exit ok: {ok}):\n{log}"
    );
    assert!(serve.stop().success());
    let sim = home.show("ref");
    assert_eq!(sim["describe"], before, "nothing changed");
    assert!(
        sim["events"].to_string().contains(
            "YMODEM update refused: dependency check failed (-1340): system part 2 needs system part 1 \u{2265} 1502, installed 17"
        ),
        "{}",
        sim["events"]
    );
    assert_eq!(sim["mode"], "listening");
}

/// A socat pty pair; killed on drop.
struct PtyPair {
    child: std::process::Child,
    a: PathBuf,
    b: PathBuf,
}

impl PtyPair {
    fn new(socat: &Path, dir: &Path) -> PtyPair {
        let a = dir.join("ttyA");
        let b = dir.join("ttyB");
        let child = Command::new(socat)
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while !(a.exists() && b.exists()) {
            assert!(Instant::now() < until, "socat did not create its ptys");
            std::thread::sleep(Duration::from_millis(10));
        }
        PtyPair { child, a, b }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn our_sender_into_rb_is_byte_identical() {
    let Some(tools) = interop::tools(
        "our_sender_into_rb_is_byte_identical",
        &["rb", "socat"],
        INSTALL,
    ) else {
        return;
    };
    let (rb, socat) = (&tools[0], &tools[1]);
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::new(socat, dir.path());
    let rx = dir.path().join("rx");
    fs::create_dir_all(&rx).unwrap();
    let image = fixture("system-part1-0.5.2-photon.bin");
    let mut link = PortLink::open(pair.a.to_str().unwrap(), 115_200).unwrap();
    let (stdin, stdout) = tty_stdio(&pair.b);
    let mut child = Command::new(rb)
        .args(["--ymodem", "-vv"])
        .current_dir(&rx)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(fs::File::create(dir.path().join("rb.log")).unwrap())
        .spawn()
        .unwrap();
    // rb flushes its input right after each C/ACK it sends: answer 5 ms later, and retry
    // sooner than its own 10 s when a block is lost anyway.
    let cfg = SenderConfig {
        reply_delay_ms: 5,
        ack_timeout_ms: 1_500,
        final_ack_timeout_ms: 1_000,
        ..SenderConfig::default()
    };
    let files = [File::new("system-part1.bin", &image)];
    let start = Instant::now();
    let sent = send_ymodem(&mut link, &files, cfg, &mut Quiet, &Cancel::new()).unwrap();
    let status = wait_within(&mut child, Duration::from_secs(10));
    let log = fs::read_to_string(dir.path().join("rb.log")).unwrap_or_default();
    eprintln!(
        "our sender → rb: {:?} in {} ms, {:?}",
        sent.status,
        start.elapsed().as_millis(),
        sent.stats
    );
    assert!(status.success(), "rb failed: {status}\n{log}");
    // rb may lose its final ACK on exit: its exit code and the file decide.
    assert!(
        matches!(sent.status, SendStatus::Done { .. }),
        "{:?}",
        sent.status
    );
    let got = fs::read(rx.join("system-part1.bin")).unwrap();
    assert!(
        got == image,
        "received file differs ({} vs {} bytes)",
        got.len(),
        image.len()
    );
    drop(link);
    drop(pair);
}
