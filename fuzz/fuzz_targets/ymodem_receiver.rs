//! Fuzz the YMODEM receiver (strict, checksum and Device OS configurations): arbitrary input
//! and timeouts never panic, input is always consumed, events are consistent, and the strict
//! receiver stops within a bounded silence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_ymodem::{crc16_xmodem, Event, Receiver, ReceiverConfig, RecvStatus, SOH, STX};

struct Check {
    declared: Option<u64>,
    next_offset: u64,
    seen_header: bool,
}

fn feed(rx: &mut Receiver, data: &[u8], now: u64, c: &mut Check) {
    let mut rest = data;
    loop {
        let n = rx.handle_input(rest, now);
        rest = &rest[n..];
        let mut events = 0;
        while let Some(ev) = rx.poll_event() {
            events += 1;
            assert!(events < 4);
            match ev {
                Event::FileHeader { name, size, .. } => {
                    assert!(!name.is_empty());
                    c.declared = size;
                    c.next_offset = 0;
                    c.seen_header = true;
                }
                Event::Data { offset, data, .. } => {
                    assert_eq!(offset, c.next_offset, "data offsets are contiguous");
                    assert!(!data.is_empty() && data.len() <= 1024);
                    c.next_offset += data.len() as u64;
                    if let Some(d) = c.declared {
                        assert!(c.next_offset <= d);
                    }
                }
                Event::EndOfFile { size, .. } => assert_eq!(size, c.next_offset),
                Event::Cancelled(e) | Event::Failed(e) => assert!(!e.to_string().is_empty()),
                Event::EndOfBatch { .. } => {}
            }
        }
        if rest.is_empty() {
            return;
        }
        assert!(n > 0 || events > 0, "no progress");
    }
}

/// A frame with a valid CRC built from fuzz bytes, so deep states are reachable.
fn frame(seq: u8, big: bool, body: &[u8]) -> Vec<u8> {
    let size = if big { 1024 } else { 128 };
    let mut payload = body.to_vec();
    payload.resize(size, 0);
    let mut v = vec![if big { STX } else { SOH }, seq, !seq];
    v.extend_from_slice(&payload);
    v.extend_from_slice(&crc16_xmodem(&payload).to_be_bytes());
    v
}

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let base = match flags % 3 {
        0 => ReceiverConfig::default(),
        1 => ReceiverConfig { checksum_mode: true, ..ReceiverConfig::default() },
        _ => ReceiverConfig::device_os(),
    };
    let cfg = ReceiverConfig {
        block_timeout_ms: 100,
        byte_timeout_ms: 20 + u64::from(flags >> 4),
        eot_quiet_ms: if flags & 8 != 0 { 0 } else { base.eot_quiet_ms.min(10) },
        max_errors: u32::from(flags >> 5 & 7),
        ..base
    };
    let mut rx = Receiver::new(cfg);
    let mut c = Check { declared: None, next_offset: 0, seen_header: false };
    let mut now = 0u64;
    let mut ops = data.get(1..).unwrap_or(&[]);
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 10 {
            0..=3 => {
                let n = usize::from(op >> 2).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                feed(&mut rx, chunk, now, &mut c);
            }
            4 | 5 => {
                // A framed block: seq from the op, payload from the next bytes.
                let n = usize::from(op >> 3).min(ops.len());
                let (body, rest) = ops.split_at(n);
                ops = rest;
                let seq = match op >> 6 {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    _ => body.first().copied().unwrap_or(3),
                };
                let body: Vec<u8> = if op & 0x20 != 0 {
                    b"fuzz.bin\x00700 0 100644".to_vec()
                } else {
                    body.to_vec()
                };
                feed(&mut rx, &frame(seq, op % 10 == 5, &body), now, &mut c);
            }
            6 => now += u64::from(op >> 3) * 3,
            7 => {
                if let Some(t) = rx.next_deadline() {
                    now = now.max(t);
                }
                rx.handle_timeout(now);
            }
            8 => {
                let _ = rx.poll_transmit(now);
            }
            _ => match op >> 4 {
                0 => rx.accept(),
                1 => rx.reject(),
                2 => rx.cancel(),
                _ => {}
            },
        }
        feed(&mut rx, &[], now, &mut c);
    }
    for _ in 0..2 * (cfg.max_errors as usize + 3) {
        feed(&mut rx, &[], now, &mut c);
        let _ = rx.poll_transmit(now);
        if rx.status() == RecvStatus::AwaitingDecision {
            rx.accept();
        }
        if rx.is_finished() {
            break;
        }
        let t = rx.next_deadline().expect("in progress without a deadline");
        now = now.max(t);
        rx.handle_timeout(now);
    }
    let device_idle = cfg.quirks.device_error_handling && !c.seen_header;
    assert!(rx.is_finished() || device_idle, "receiver did not stop: {:?}", rx.status());
});
