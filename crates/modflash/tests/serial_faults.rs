//! The serial transport against the virtual device's listening-mode console, in-process on a
//! virtual clock, with faults on the line: a dropped byte, a flipped byte, a stalled
//! receiver, a cancel from either side. Every transfer either recovers (and the module is
//! installed, identical) or fails with a clear message — and a corrupted image is never
//! applied.

use std::io;
use std::time::Duration;

use modflash::inventory::Inventory;
use modflash::progress::{Cancel, Event};
use modflash::transport::serial::{Console, Link, SerialError, Verdict};
use modflash::transport::sim::ConsoleLink;
use modflash_device::console::ConsoleConfig;
use modflash_device::describe::describe;
use modflash_device::{Device, Mode, ResetReason};
use modflash_module::{Module, ModuleFunction, ModuleRef};
use modflash_testkit::device::device;
use modflash_testkit::fixture;
use modflash_ymodem::SenderConfig;

/// Faults on the host → device direction, counted from the first byte after `f`.
#[derive(Clone, Debug, Default)]
struct Faults {
    drop: Vec<usize>,
    flip: Vec<(usize, u8)>,
    insert: Vec<(usize, Vec<u8>)>,
    /// From this byte on the device hears and says nothing.
    stall_at: Option<usize>,
}

struct Faulty<'d> {
    inner: ConsoleLink<'d>,
    faults: Faults,
    armed: bool,
    sent: usize,
    stalled: bool,
}

impl Faulty<'_> {
    fn new(device: &mut Device, faults: Faults) -> Faulty<'_> {
        Faulty {
            inner: ConsoleLink::new(device, ConsoleConfig::device(), "virtual device"),
            faults,
            armed: false,
            sent: 0,
            stalled: false,
        }
    }
}

impl Link for Faulty<'_> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let n = self.inner.read(buf, timeout)?;
        Ok(if self.stalled { 0 } else { n })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.armed {
            self.armed = bytes == b"f";
            return self.inner.write_all(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len() + 1);
        for &b in bytes {
            let i = self.sent;
            self.sent += 1;
            if self.faults.stall_at.is_some_and(|s| i >= s) {
                self.stalled = true;
                continue;
            }
            for (at, extra) in &self.faults.insert {
                if *at == i {
                    out.extend_from_slice(extra);
                }
            }
            if self.faults.drop.contains(&i) {
                continue;
            }
            let mask = self
                .faults
                .flip
                .iter()
                .find(|(at, _)| *at == i)
                .map_or(0, |(_, m)| *m);
            out.push(b ^ mask);
        }
        self.inner.write_all(&out)
    }

    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.inner.set_baud(baud)
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.inner.clear_input()
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Where data block `n` (from 1) of a 1K-block transfer starts in the YMODEM stream.
fn block_start(n: usize) -> usize {
    133 + (n - 1) * 1029
}

struct Run {
    result: Result<modflash::transport::serial::FlashReport, SerialError>,
    device_text: String,
}

fn flash_with(device: &mut Device, image: &[u8], faults: Faults, cancel_after: Option<u64>) -> Run {
    let mut s = Console::new(Faulty::new(device, faults));
    s.enter_listening().unwrap();
    let cancel = Cancel::new();
    let trip = cancel.clone();
    let result = s.flash(
        "binary",
        image,
        SenderConfig::device_os(),
        &mut |e| {
            if let Event::Progress { done, .. } = e {
                if cancel_after.is_some_and(|limit| done >= limit) {
                    trip.cancel();
                }
            }
        },
        &cancel,
    );
    // Whatever the device printed after (its view of the failure).
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = s.link().read(&mut buf, Duration::from_millis(2_000)) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let device_text = match &result {
        Ok(r) => r.device_text.clone(),
        Err(_) => String::new(),
    } + &String::from_utf8_lossy(&text);
    let mut link = s.into_link();
    link.inner.settle();
    Run {
        result,
        device_text,
    }
}

fn user_sha(device: &Device) -> Option<String> {
    Inventory::from_device(device)
        .main_module(ModuleRef::new(ModuleFunction::UserPart, 1))
        .and_then(|m| m.sha256.clone())
}

fn file_sha(image: &[u8]) -> String {
    Module::parse(image)
        .unwrap()
        .stored_sha256()
        .map(hex::encode)
        .unwrap()
}

/// An application large enough for several 1K blocks: the 0.5.2 release's own Tinker is
/// replaced by photon_tinker.bin (3952 bytes: 3 × 1K + 7 × 128).
fn app() -> Vec<u8> {
    fixture("photon_tinker.bin")
}

fn assert_applied(device: &Device, image: &[u8]) {
    assert_eq!(device.state.mode, Mode::App, "{:#?}", device.state.events);
    assert_eq!(
        user_sha(device),
        Some(file_sha(image)),
        "the file's app runs"
    );
}

fn assert_unchanged(device: &mut Device, before: &str) {
    assert_eq!(describe(device), before, "nothing changed");
    device.reset(ResetReason::Button, None);
    assert_eq!(describe(device), before, "nothing pending either");
}

#[test]
fn clean_transfer_is_applied() {
    let mut d = device(6).release("0.5.2").powered_on();
    let image = app();
    let run = flash_with(&mut d, &image, Faults::default(), None);
    let r = run.result.unwrap();
    assert!(matches!(
        r.verdict,
        Verdict::Accepted {
            restarting: true,
            ..
        }
    ));
    assert_eq!(r.stats.retransmissions, 0);
    assert_applied(&d, &image);
}

#[test]
fn dropped_byte_is_recovered() {
    // Inside a block's payload, or in the header: the device times out on the short block,
    // asks again with `C`, and the sender retransmits.
    for at in [block_start(2) + 500, 60, block_start(3) + 1028] {
        let mut d = device(6).release("0.5.2").powered_on();
        let image = app();
        let faults = Faults {
            drop: vec![at],
            ..Faults::default()
        };
        let run = flash_with(&mut d, &image, faults, None);
        let r = run.result.unwrap_or_else(|e| panic!("drop at {at}: {e}"));
        assert!(
            matches!(r.verdict, Verdict::Accepted { .. }),
            "{:?}",
            r.verdict
        );
        assert!(r.stats.retransmissions >= 1, "drop at {at}: {:?}", r.stats);
        assert_applied(&d, &image);
    }
}

#[test]
fn dropped_block_start_fails_cleanly_and_a_second_attempt_works() {
    // Device OS quirk: without its STX the block's 1028 other bytes are each an "unexpected
    // byte" error, and after more than 5 the device cancels. Nothing is applied, the message
    // says what happened, and sending again works.
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let image = app();
    let faults = Faults {
        drop: vec![block_start(3)],
        ..Faults::default()
    };
    let err = flash_with(&mut d, &image, faults, None).result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cancelled by receiver (CAN CAN) at data block 3 (byte offset 2048)")
            && msg.contains("Failed to receive the file!"),
        "{msg}"
    );
    assert_eq!(describe(&d), before);
    let r = flash_with(&mut d, &image, Faults::default(), None)
        .result
        .unwrap();
    assert!(matches!(r.verdict, Verdict::Accepted { .. }));
    assert_applied(&d, &image);
}

#[test]
fn flipped_sequence_byte_is_naked_and_resent() {
    let mut d = device(6).release("0.5.2").powered_on();
    let image = app();
    let faults = Faults {
        flip: vec![(block_start(2) + 1, 0x04)],
        ..Faults::default()
    };
    let r = flash_with(&mut d, &image, faults, None).result.unwrap();
    assert!(matches!(r.verdict, Verdict::Accepted { .. }));
    assert_eq!(r.stats.retransmissions, 1);
    assert_applied(&d, &image);
}

#[test]
fn flipped_payload_byte_is_never_applied() {
    // The device does not check the block CRC (Device OS quirk): the flipped byte is written
    // to the OTA region, and the module's CRC-32 check at the end refuses the image.
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let image = app();
    let faults = Faults {
        flip: vec![(block_start(2) + 3 + 100, 0x20)],
        ..Faults::default()
    };
    let run = flash_with(&mut d, &image, faults, None);
    let r = run.result.unwrap();
    assert_eq!(r.verdict, Verdict::Refused { code: Some(-1330) });
    assert!(
        r.device_text.contains("Validation failed: -1330"),
        "{}",
        r.device_text
    );
    assert_eq!(d.state.mode, Mode::Listening, "no restart after a refusal");
    assert_unchanged(&mut d, &before);
}

#[test]
fn stalled_receiver_fails_with_a_clear_message_and_nothing_is_applied() {
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let image = app();
    let faults = Faults {
        stall_at: Some(block_start(2) + 10),
        ..Faults::default()
    };
    let run = flash_with(&mut d, &image, faults, None);
    let err = run.result.unwrap_err();
    let msg = err.to_string();
    // The transfer's time limit (15 s and 8 KB/s) ends it before the sender's retransmissions
    // run out (11 × 10 s), and the message says what the device last did.
    assert!(
        msg.starts_with("the YMODEM transfer of 3952 bytes did not end within its time limit of 15.4 s on the virtual device; 1024 of 3952 bytes acknowledged; the device last sent an ACK"),
        "{msg}"
    );
    assert!(miette::Diagnostic::help(&err)
        .unwrap()
        .to_string()
        .contains("applies nothing unless"));
    // The device stays in listening mode (it never heard the cancel: the line is stalled).
    assert_eq!(d.state.mode, Mode::Listening);
    assert_unchanged(&mut d, &before);
}

#[test]
fn cancel_from_the_host_leaves_the_device_unchanged() {
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let image = app();
    let run = flash_with(&mut d, &image, Faults::default(), Some(2048));
    let err = run.result.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("failed: transfer cancelled by the sender"),
        "{err}"
    );
    assert!(
        run.device_text.contains("Failed to receive the file!"),
        "the device saw the cancel: {:?}",
        run.device_text
    );
    assert_unchanged(&mut d, &before);
}

#[test]
fn cancel_from_the_device_is_reported_with_its_words() {
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let image = app();
    // `a` pressed on the device's console between two blocks.
    let faults = Faults {
        insert: vec![(block_start(3), b"a".to_vec())],
        ..Faults::default()
    };
    let err = flash_with(&mut d, &image, faults, None).result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cancelled by receiver (CAN CAN) at data block 3 (byte offset 2048)"),
        "{msg}"
    );
    assert!(
        msg.contains("the device said: \"Aborted by user.\""),
        "{msg}"
    );
    assert_unchanged(&mut d, &before);
}

#[test]
fn refused_dependency_and_too_large_file() {
    let mut d = device(6).release("0.5.2").powered_on();
    let before = describe(&d);
    let part2 = fixture("photon-system-part2@1.5.0.bin");
    let r = flash_with(&mut d, &part2, Faults::default(), None)
        .result
        .unwrap();
    assert_eq!(r.verdict, Verdict::Refused { code: Some(-1340) });
    assert_unchanged(&mut d, &before);
    // A file larger than the OTA region is refused at the header.
    let huge = vec![0u8; 2 << 20];
    let r = flash_with(&mut d, &huge, Faults::default(), None)
        .result
        .unwrap();
    assert_eq!(r.verdict, Verdict::TooLarge);
    assert_eq!(r.stats.round_trips, 1, "only the header was sent");
}
