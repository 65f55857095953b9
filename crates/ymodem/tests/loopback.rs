//! Sender ↔ receiver loopback over the simulated link, without faults.

mod common;

use common::*;
use modflash_ymodem::{
    File, Quirks, ReceiverConfig, RecvStatus, Scheme, SendError, SendStatus, SenderConfig,
    Warnings, ACK, CAN, EOT, SOH, STX,
};

const SIZES: [usize; 10] = [0, 1, 127, 128, 896, 897, 1024, 1025, 70_000, 250 * 1024];

/// Number of 1K and 128-byte blocks `sb -k` would use for `len` bytes.
fn expected_blocks(len: usize) -> (u64, u64) {
    let (mut big, mut small, mut left) = (0, 0, len);
    while left > 0 {
        if left > 896 {
            big += 1;
            left = left.saturating_sub(1024);
        } else {
            small += 1;
            left = left.saturating_sub(128);
        }
    }
    (big, small)
}

#[test]
fn strict_loopback_all_sizes() {
    for (i, &len) in SIZES.iter().enumerate() {
        let data = pattern(len, i as u64 + 1);
        let files = [File::new("file.bin", &data)];
        let out = Sim::new(&files, fast_sender(), fast_receiver()).run();
        out.assert_identical(&files);
        let (big, small) = expected_blocks(len);
        let s = out.tx_stats;
        assert_eq!(s.bytes_acked, len as u64);
        assert_eq!(s.bytes_total, len as u64);
        assert_eq!(s.retransmissions, 0, "len {len}");
        // header + data + end of batch; round trips add the EOT.
        assert_eq!(s.blocks_sent, 2 + big + small, "len {len}");
        assert_eq!(s.round_trips, 3 + big + small, "len {len}");
        assert_eq!(
            s.wire_bytes_out,
            2 * 133 + big * 1029 + small * 133 + 1,
            "len {len}"
        );
        let stx = out.wire_to_rx.iter().filter(|&&b| b == STX).count();
        assert!(stx as u64 >= big);
        assert_eq!(
            out.sender,
            SendStatus::Done {
                warnings: Warnings::default()
            }
        );
    }
}

#[test]
fn batch_of_two_files() {
    let a = pattern(70_000, 7);
    let b = pattern(3_000, 8);
    let files = [File::new("a.bin", &a), File::new("b.bin", &b)];
    let out = Sim::new(&files, fast_sender(), fast_receiver()).run();
    out.assert_identical(&files);
    assert_eq!(out.tx_stats.files_done, 2);
    let kinds: Vec<_> = out
        .events
        .iter()
        .filter(|e| !matches!(e, Ev::Data { .. }))
        .cloned()
        .collect();
    assert_eq!(
        kinds,
        vec![
            Ev::Header {
                index: 0,
                name: b"a.bin".to_vec(),
                size: Some(70_000)
            },
            Ev::Eof {
                index: 0,
                size: 70_000
            },
            Ev::Header {
                index: 1,
                name: b"b.bin".to_vec(),
                size: Some(3_000)
            },
            Ev::Eof {
                index: 1,
                size: 3_000
            },
            Ev::EndOfBatch { files: 2 },
        ]
    );
}

#[test]
fn empty_batch_sends_only_end_block() {
    let files: [File<'_>; 0] = [];
    let out = Sim::new(&files, fast_sender(), fast_receiver()).run();
    out.assert_identical(&files);
    assert_eq!(out.wire_to_rx.len(), 133);
    assert_eq!(out.events, vec![Ev::EndOfBatch { files: 0 }]);
}

#[test]
fn checksum_mode_loopback() {
    let data = pattern(5_000, 3);
    let files = [File::new("sum.bin", &data)];
    let rx = ReceiverConfig {
        checksum_mode: true,
        ..fast_receiver()
    };
    let out = Sim::new(&files, fast_sender(), rx).run();
    out.assert_identical(&files);
    // Every frame ends with a 1-byte checksum: 1K frames are 1028 bytes.
    assert_eq!(out.wire_to_rx[0], SOH);
    let (big, small) = expected_blocks(5_000);
    assert_eq!((big, small), (5, 0));
    assert_eq!(
        out.tx_stats.wire_bytes_out,
        132 + big * 1028 + small * 132 + 1 + 132
    );
}

#[test]
fn wire_trace_matches_lrzsz_for_3000_bytes() {
    // spec 2c: receiver→sender is C, ACK, C, ACK×3, ACK(EOT), C, ACK(end).
    let data = pattern(3000, 9);
    let files = [File::new("small.bin", &data)];
    let out = Sim::new(&files, fast_sender(), fast_receiver()).run();
    out.assert_identical(&files);
    assert_eq!(
        out.wire_to_tx,
        [b'C', ACK, b'C', ACK, ACK, ACK, ACK, b'C', ACK]
    );
    // sender→receiver: header, STX ×2, SOH ×? — 3000 = 1024+1024+952: 952 > 896 → STX ×3.
    let starts: Vec<u8> = frames(&out.wire_to_rx);
    assert_eq!(starts, [SOH, STX, STX, STX, EOT, SOH]);
}

/// First byte of each frame in a sender→receiver trace without faults.
fn frames(wire: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        v.push(b);
        i += match b {
            SOH => 133,
            STX => 1029,
            _ => 1,
        };
    }
    v
}

#[test]
fn device_receiver_with_start_without_c() {
    let data = pattern(10_000, 4);
    let files = [File::new("firmware.bin", &data)];
    let tx = SenderConfig {
        start_without_c: true,
        ..fast_sender()
    };
    let out = Sim::new(&files, tx, fast_device()).run();
    out.assert_identical(&files);
    assert_eq!(out.tx_stats.retransmissions, 0);
    // The device never sent C before the header nor after EOT; the sender did not wait.
    assert_eq!(out.wire_to_tx.first(), Some(&ACK));
    assert!(out.end_ms < 100, "took {} ms", out.end_ms);
}

#[test]
fn device_receiver_without_start_without_c_waits_for_timeouts() {
    // The sender waits for C: the device sends it only after its block timeout, and not at
    // all after EOT, so the sender goes on after its own timeout (or the device's C).
    let data = pattern(2_000, 5);
    let files = [File::new("fw.bin", &data)];
    let out = Sim::new(&files, fast_sender(), fast_device()).run();
    out.assert_identical(&files);
    assert_eq!(out.wire_to_tx.first(), Some(&b'C'));
    assert!(
        out.end_ms >= 100,
        "two device timeouts expected, took {}",
        out.end_ms
    );
}

#[test]
fn device_deferred_final_ack_reject_means_cancelled_by_receiver() {
    let data = pattern(1_000, 6);
    let files = [File::new("fw.bin", &data)];
    let mut sim = Sim::new(
        &files,
        SenderConfig {
            start_without_c: true,
            ..fast_sender()
        },
        fast_device(),
    );
    sim.final_decision = Decision::Reject;
    let out = sim.run();
    assert_eq!(
        out.sender,
        SendStatus::Failed(SendError::CancelledByReceiver {
            file: 1,
            stage: modflash_ymodem::SendStage::EndOfBatch
        })
    );
    assert!(out.sender_error().contains("cancelled by receiver"));
    assert!(out.receiver_error().contains("rejected"));
    assert_eq!(&out.wire_to_tx[out.wire_to_tx.len() - 2..], &[CAN, CAN]);
    // The data itself arrived intact before validation failed.
    assert_eq!(out.files[0].data, data);
}

#[test]
fn device_refuses_too_big_header() {
    let data = pattern(5_000, 10);
    let files = [File::new("huge.bin", &data)];
    let mut sim = Sim::new(
        &files,
        SenderConfig {
            start_without_c: true,
            ..fast_sender()
        },
        fast_device(),
    );
    sim.max_size = Some(4_096);
    let out = sim.run();
    let err = out.sender_error();
    assert_eq!(
        err,
        "cancelled by receiver (CAN CAN) at header block of file #0"
    );
    assert!(out.files[0].data.is_empty());
}

#[test]
fn particle_cli_scheme_against_device_receiver() {
    let data = pattern(10_000, 11);
    let files = [File::new("binary", &data)];
    let tx = SenderConfig {
        scheme: Scheme::ParticleCli,
        ..SenderConfig {
            start_without_c: true,
            ..fast_sender()
        }
    };
    let out = Sim::new(&files, tx, fast_device()).run();
    out.assert_identical(&files);
    // 79 data blocks of 128 bytes + header + EOT + end of batch.
    assert_eq!(out.tx_stats.round_trips, 79 + 3);

    // The same file with the standard scheme needs far fewer round trips.
    let tx = SenderConfig {
        start_without_c: true,
        ..fast_sender()
    };
    let std_out = Sim::new(&files, tx, fast_device()).run();
    std_out.assert_identical(&files);
    let (big, small) = expected_blocks(10_000);
    assert_eq!((big, small), (9, 7));
    assert_eq!(std_out.tx_stats.round_trips, big + small + 3);
}

#[test]
fn particle_cli_scheme_rejected_by_strict_receiver() {
    let data = pattern(300, 12);
    let files = [File::new("binary", &data)];
    let tx = SenderConfig {
        scheme: Scheme::ParticleCli,
        max_retries: 3,
        ..fast_sender()
    };
    let out = Sim::new(&files, tx, fast_receiver()).run();
    // Zero CRC: every header is NAKed until the sender gives up.
    let err = out.sender_error();
    assert!(
        err.starts_with("no ACK for header block of file #0 after 3 retransmissions"),
        "{err}"
    );
    assert!(out.files.is_empty());
}

#[test]
fn strict_receiver_with_device_quirk_subset() {
    // Individual quirks can be combined with the strict behaviour.
    let data = pattern(4_000, 13);
    let files = [File::new("q.bin", &data)];
    let rx = ReceiverConfig {
        quirks: Quirks {
            no_c_after_eot: true,
            defer_final_ack: true,
            ..Quirks::NONE
        },
        ..fast_receiver()
    };
    let out = Sim::new(&files, fast_sender(), rx).run();
    out.assert_identical(&files);
    assert_eq!(out.receiver, RecvStatus::Done);
}
