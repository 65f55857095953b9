//! Interop with lrzsz over a pty pair: our sender → `rb`, and `sb` → our strict receiver.
//!
//! Skipped (with a loud message on stderr) when `sb`/`rb` are not installed, unless
//! `MODFLASH_REQUIRE_INTEROP=1`, which turns a missing tool into a failure.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modflash_testkit::interop;
use modflash_testkit::process::wait_within;
use modflash_ymodem::{
    Event, File, Receiver, ReceiverConfig, RecvStatus, SendStatus, Sender, SenderConfig,
};

/// Upper bound for one interop test.
const TEST_LIMIT: Duration = Duration::from_secs(20);

/// Returns the paths of `sb` and `rb`, or `None` when `test` is skipped without them.
fn lrzsz(test: &str) -> Option<(PathBuf, PathBuf)> {
    let tools = interop::tools(test, &["sb", "rb"], "install lrzsz")?;
    Some((tools[0].clone(), tools[1].clone()))
}

/// A pty pair in raw mode. The test keeps `slave` open so reads on `master` never fail with
/// EIO after the child exits.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds into the provided ints; name/termios/winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
    // SAFETY: both fds were just returned by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // Raw mode, applied at once (TCSANOW: no flush of anything already queued).
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    Pty { master, slave }
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("write to pty: {e}");
        }
        bytes = &bytes[n as usize..];
    }
}

/// Waits up to `timeout_ms` for input and reads what is there (empty on timeout).
fn read_some(fd: &OwnedFd, timeout_ms: u64, buf: &mut [u8]) -> usize {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let t = timeout_ms.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, t) };
    if rc <= 0 || pfd.revents & libc::POLLIN == 0 {
        return 0;
    }
    // SAFETY: valid fd and buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        0
    } else {
        n as usize
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modflash-ymodem-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_on_pty(program: &Path, args: &[&str], cwd: &Path, pty: &Pty, log: &Path) -> Child {
    let stdin = pty.slave.try_clone().unwrap();
    let stdout = pty.slave.try_clone().unwrap();
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(fs::File::create(log).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn our_sender_to_rb() {
    let Some((_, rb)) = lrzsz("our_sender_to_rb") else {
        return;
    };
    let dir = scratch_dir("rb");
    let a = pattern(70_000, 1);
    let b = pattern(3_000, 2);
    let files = [File::new("first.bin", &a), File::new("Second.BIN", &b)];
    let pty = open_pty();
    let log = dir.join("rb.log");
    let mut child = spawn_on_pty(&rb, &["-vv"], &dir, &pty, &log);

    // rb flushes its input right after each C/ACK/NAK it sends: hold each answer 5 ms so it
    // is not flushed, and keep the ACK timeout short in case one is lost anyway (rb itself
    // would only ask again after 10 s).
    let cfg = SenderConfig {
        reply_delay_ms: 5,
        ack_timeout_ms: 1_500,
        final_ack_timeout_ms: 2_500,
        ..SenderConfig::default()
    };
    let mut tx = Sender::new(&files, cfg).unwrap();
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut buf = [0u8; 4096];
    while !tx.is_finished() {
        assert!(
            start.elapsed() < TEST_LIMIT,
            "sender stuck: {:?}",
            tx.stats()
        );
        if let Some(bytes) = tx.poll_transmit(now()) {
            write_all(&pty.master, bytes);
            continue;
        }
        let wait = tx
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now()))
            .min(100);
        let n = read_some(&pty.master, wait, &mut buf);
        if n > 0 {
            tx.handle_input(&buf[..n], now());
        }
        tx.handle_timeout(now());
    }
    let status = wait_within(&mut child, Duration::from_secs(5));
    let rb_log = fs::read_to_string(&log).unwrap_or_default();
    let stats = tx.stats();
    eprintln!(
        "our sender → rb: {:?} in {} ms, {stats:?}",
        tx.status(),
        start.elapsed().as_millis()
    );
    assert!(status.success(), "rb failed: {status}\n{rb_log}");
    // rb may lose its final ACK: only the exit code and the files decide.
    assert!(
        matches!(tx.status(), SendStatus::Done { .. }),
        "{:?}\n{rb_log}",
        tx.status()
    );
    assert!(
        fs::read(dir.join("first.bin")).unwrap() == a,
        "first.bin differs"
    );
    assert!(
        fs::read(dir.join("Second.BIN")).unwrap() == b,
        "Second.BIN differs (name must keep its case: mode has the Unix-file bit)"
    );
    assert_eq!(stats.bytes_acked, (a.len() + b.len()) as u64);
    drop(pty);
    let _ = fs::remove_dir_all(&dir);
}

/// Runs `sb <args>` against our strict receiver; returns the received (name, data) pairs.
fn sb_to_our_receiver(
    tag: &str,
    args: &[&str],
    files: &[(&str, Vec<u8>)],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let sb = interop::find_tool("sb").expect("checked by caller");
    let dir = scratch_dir(tag);
    for (name, data) in files {
        fs::write(dir.join(name), data).unwrap();
    }
    let pty = open_pty();
    let log = dir.join("sb.log");
    let mut all_args: Vec<&str> = vec!["-vv"];
    all_args.extend_from_slice(args);
    all_args.extend(files.iter().map(|(n, _)| *n));
    let mut child = spawn_on_pty(&sb, &all_args, &dir, &pty, &log);

    // A `C` sent before sb is listening may be flushed by it: ask again after 1 s.
    let cfg = ReceiverConfig {
        block_timeout_ms: 1_000,
        ..ReceiverConfig::default()
    };
    let mut rx = Receiver::new(cfg);
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut buf = [0u8; 4096];
    while !rx.is_finished() {
        assert!(
            start.elapsed() < TEST_LIMIT,
            "receiver stuck: {:?}",
            rx.stats()
        );
        if let Some(bytes) = rx.poll_transmit(now()) {
            write_all(&pty.master, bytes);
        }
        let wait = rx
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now()))
            .min(100);
        let n = read_some(&pty.master, wait, &mut buf);
        let mut rest = &buf[..n];
        loop {
            let used = rx.handle_input(rest, now());
            rest = &rest[used..];
            while let Some(ev) = rx.poll_event() {
                match ev {
                    Event::FileHeader { name, .. } => got.push((name.to_vec(), Vec::new())),
                    Event::Data { data, .. } => got.last_mut().unwrap().1.extend_from_slice(data),
                    Event::Cancelled(e) | Event::Failed(e) => panic!("receive failed: {e}"),
                    Event::EndOfFile { .. } | Event::EndOfBatch { .. } => {}
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        rx.handle_timeout(now());
    }
    // Flush the final ACK.
    if let Some(bytes) = rx.poll_transmit(now()) {
        write_all(&pty.master, bytes);
    }
    let status = wait_within(&mut child, Duration::from_secs(5));
    let sb_log = fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "sb {args:?} → our receiver: {:?} in {} ms, {:?}",
        rx.status(),
        start.elapsed().as_millis(),
        rx.stats()
    );
    assert_eq!(rx.status(), RecvStatus::Done, "{sb_log}");
    assert!(status.success(), "sb failed: {status}\n{sb_log}");
    drop(pty);
    let _ = fs::remove_dir_all(&dir);
    got
}

#[test]
fn sb_k_batch_to_our_receiver() {
    if lrzsz("sb_k_batch_to_our_receiver").is_none() {
        return;
    }
    let files = [
        ("big.bin", pattern(70_000, 3)),
        ("small.bin", pattern(3_000, 4)),
    ];
    let got = sb_to_our_receiver("sbk", &["-k"], &files);
    assert_eq!(got.len(), 2);
    for ((name, data), (want_name, want)) in got.iter().zip(&files) {
        assert_eq!(name.as_slice(), want_name.as_bytes());
        assert!(data == want, "{want_name} differs");
    }
}

#[test]
fn sb_128_to_our_receiver() {
    if lrzsz("sb_128_to_our_receiver").is_none() {
        return;
    }
    let files = [("plain.bin", pattern(5_000, 5))];
    let got = sb_to_our_receiver("sb128", &[], &files);
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == files[0].1, "plain.bin differs");
}
