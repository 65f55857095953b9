//! Fuzz the listening-mode console of the virtual device (`modflash_device::console`):
//! arbitrary keys, YMODEM blocks (framed with a valid CRC so deep states are reachable, or
//! raw), line-rate changes and timeouts never panic; the console is quiet outside listening
//! mode; every deadline is honoured; and an image the device refuses changes nothing.
//!
//! Input: byte 0 picks the device (Photon 0.5.2 / 1.5.0, Electron 1.5.0, Argon 1.5.0), then
//! a stream of operations, each an opcode byte followed by its operands.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modflash_device::console::{Console, ConsoleConfig, ConsoleEvent, TransferOutcome};
use modflash_device::describe::describe;
use modflash_device::{Device, Mode};
use modflash_module::platform::platform;
use modflash_ymodem::{crc16_xmodem, SOH, STX};

/// A real application, so whole valid transfers happen.
const APP: &[u8] = include_bytes!("../../tests/fixtures/real/photon_tinker.bin");

fn templates() -> &'static [Device] {
    static T: OnceLock<Vec<Device>> = OnceLock::new();
    T.get_or_init(|| {
        [(6, "0.5.2"), (6, "1.5.0"), (10, "1.5.0"), (12, "1.5.0")]
            .into_iter()
            .map(|(id, release)| {
                let mut d = Device::blank(platform(id).unwrap(), [0x42; 12]).unwrap();
                d.install_release(release, true).unwrap();
                d.power_on();
                d
            })
            .collect()
    })
}

fn frame(seq: u8, big: bool, body: &[u8]) -> Vec<u8> {
    let size = if big { 1024 } else { 128 };
    let mut payload = body.to_vec();
    payload.resize(size, 0);
    let mut v = vec![if big { STX } else { SOH }, seq, !seq];
    v.extend_from_slice(&payload);
    v.extend_from_slice(&crc16_xmodem(&payload).to_be_bytes());
    v
}

/// The blocks of a whole transfer of `image` (header, 1K data, EOT, end of batch).
fn transfer(image: &[u8], corrupt: Option<(usize, u8)>) -> Vec<Vec<u8>> {
    let mut header = b"binary\0".to_vec();
    header.extend_from_slice(format!("{} ", image.len()).as_bytes());
    let mut out = vec![frame(0, false, &header)];
    let mut data = image.to_vec();
    if let Some((at, mask)) = corrupt {
        let i = at % data.len().max(1);
        if let Some(b) = data.get_mut(i) {
            *b ^= mask | 1;
        }
    }
    for (i, chunk) in data.chunks(1024).enumerate() {
        out.push(frame((i + 1) as u8, true, chunk));
    }
    out.push(vec![0x04]);
    out.push(frame(0, false, &[]));
    out
}

struct Run {
    device: Device,
    console: Console,
    now: u64,
    /// describe() when the current transfer began.
    before_transfer: Option<String>,
}

impl Run {
    fn feed(&mut self, bytes: &[u8]) {
        let listening = self.device.state.mode == Mode::Listening;
        let busy = self.console.is_receiving() || self.console.restart_pending();
        if !self.console.is_receiving() && listening {
            self.before_transfer = Some(describe(&self.device));
        }
        self.console.feed(&mut self.device, bytes, self.now);
        let out = self.console.drain_output();
        if !listening && !busy {
            assert!(
                out.is_empty(),
                "the console answered outside listening mode"
            );
        }
        self.check_events();
    }

    fn tick(&mut self) {
        let due = self.console.next_deadline();
        if let Some(t) = due {
            self.now = self.now.max(t);
        }
        self.console.handle_timeout(&mut self.device, self.now);
        let _ = self.console.drain_output();
        self.check_events();
        if due.is_some() {
            // Progress: a handled deadline never stays due.
            assert!(
                self.console.next_deadline().is_none_or(|t| t > self.now),
                "deadline {:?} still due at {}",
                self.console.next_deadline(),
                self.now
            );
        }
    }

    fn check_events(&mut self) {
        for e in self.console.take_events() {
            if let ConsoleEvent::Transfer(TransferOutcome::Refused { code, reason }) = &e {
                assert!(*code < 0 && !reason.is_empty());
                if let Some(before) = &self.before_transfer {
                    assert_eq!(
                        &describe(&self.device),
                        before,
                        "a refused image changed the device"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut ops)) = data.split_first() else {
        return;
    };
    let t = templates();
    let mut run = Run {
        device: t[usize::from(pick) % t.len()].clone(),
        console: Console::new(ConsoleConfig::fast(20 + u64::from(pick >> 4))),
        now: 0,
        before_transfer: None,
    };
    run.console.set_baud(&mut run.device, 28_800, 0);
    let mut steps = 0;
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        steps += 1;
        if steps > 400 {
            break;
        }
        match op % 10 {
            0..=2 => {
                let n = usize::from(op >> 3).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                run.feed(chunk);
            }
            3 => {
                let n = usize::from(op >> 2).min(ops.len());
                let (body, rest) = ops.split_at(n);
                ops = rest;
                let seq = body.first().copied().unwrap_or(op >> 5);
                run.feed(&frame(seq, op & 0x10 != 0, body));
            }
            4 => {
                // A whole transfer of the real app, maybe with one corrupted byte.
                let corrupt = (op & 0x10 != 0).then(|| {
                    let at = ops.first().copied().unwrap_or(0);
                    (usize::from(at) * 31, at)
                });
                run.feed(b"f");
                for block in transfer(APP, corrupt) {
                    run.feed(&block);
                }
                run.tick();
            }
            5 => run.now += u64::from(op >> 3) * 7,
            6 => run.tick(),
            7 => {
                let baud = match op >> 6 {
                    0 => 28_800,
                    1 => 14_400,
                    2 => 9_600,
                    _ => 28_800,
                };
                let now = run.now;
                run.console.set_baud(&mut run.device, baud, now);
                let _ = run.console.drain_output();
                run.check_events();
            }
            8 => run.feed(&[b"fsivmxwca\r"[usize::from(op >> 4) % 10]]),
            _ => {
                if run.device.state.mode != Mode::Listening {
                    run.device.reset(modflash_device::ResetReason::Button, None);
                }
            }
        }
    }
    for _ in 0..20 {
        if run.console.next_deadline().is_none() {
            break;
        }
        run.tick();
    }
});
