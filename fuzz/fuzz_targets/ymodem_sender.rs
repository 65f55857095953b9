//! Fuzz the YMODEM sender: arbitrary receiver bytes, timeouts and cancels never panic, every
//! transmission is a well-formed frame, and the sender stops within a bounded silence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_ymodem::{crc16_xmodem, File, Scheme, Sender, SenderConfig, CAN, EOT, SOH, STX};

fn check_output(bytes: &[u8], scheme: Scheme) {
    match bytes.first() {
        Some(&SOH) | Some(&STX) => {
            let size = if bytes[0] == STX { 1024 } else { 128 };
            assert!(bytes.len() == 3 + size + 2 || bytes.len() == 3 + size + 1);
            assert_eq!(bytes[1], !bytes[2]);
            if bytes.len() == 3 + size + 2 && scheme == Scheme::Standard {
                let crc = crc16_xmodem(&bytes[3..3 + size]);
                assert_eq!(&bytes[3 + size..], &crc.to_be_bytes());
            }
        }
        Some(&EOT) => assert_eq!(bytes.len(), 1),
        Some(&CAN) => assert!(bytes.starts_with(&[CAN, CAN])),
        other => panic!("unexpected output {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let len = usize::from(data.get(1).copied().unwrap_or(0)) * 37;
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let files = [
        File::new("a.bin", &payload),
        File::new("b", &payload[..len / 5]),
    ];
    let nfiles = usize::from(flags >> 6).min(2);
    let scheme = if flags & 2 != 0 { Scheme::ParticleCli } else { Scheme::Standard };
    let cfg = SenderConfig {
        start_without_c: flags & 1 != 0,
        scheme,
        max_retries: u32::from(flags >> 2 & 7),
        reply_delay_ms: u64::from(flags >> 5 & 1) * 3,
        start_timeout_ms: 1_000,
        ack_timeout_ms: 100,
        final_ack_timeout_ms: 50,
    };
    let mut tx = Sender::new(&files[..nfiles], cfg).expect("valid files");
    let mut now = 0u64;
    let mut ops = data.get(2..).unwrap_or(&[]);
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 8 {
            0..=3 => {
                let n = usize::from(op >> 3).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                tx.handle_input(chunk, now);
            }
            4 => now += u64::from(op >> 3) * 7,
            5 => {
                if let Some(t) = tx.next_deadline() {
                    now = now.max(t);
                }
                tx.handle_timeout(now);
            }
            6 => {
                if let Some(b) = tx.poll_transmit(now) {
                    check_output(b, scheme);
                }
            }
            _ => {
                if op == 0xFF {
                    tx.cancel();
                }
            }
        }
        let s = tx.stats();
        assert!(s.bytes_acked <= s.bytes_total);
    }
    for _ in 0..200 {
        if let Some(b) = tx.poll_transmit(now) {
            check_output(b, scheme);
        }
        if tx.is_finished() {
            break;
        }
        let t = tx.next_deadline().expect("in progress without a deadline");
        now = now.max(t);
        tx.handle_timeout(now);
    }
    assert!(tx.is_finished(), "sender did not stop: {:?}", tx.status());
    let _ = tx.status();
});
