//! Fault injection on the simulated link.

mod common;

use common::*;
use modflash_ymodem::{
    File, RecvError, RecvStatus, SendError, SendStage, SendStatus, Sender, SenderConfig, Warnings,
    ACK, CAN, EOT, NAK, STX,
};

const HEADER: usize = 133;
const BLOCK_1K: usize = 1029;

#[test]
fn dropped_byte_in_data_block_is_recovered() {
    let data = pattern(5_000, 1);
    let files = [File::new("drop.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults
        .push(LinkFault::Drop(Dir::ToReceiver, HEADER + 500));
    let out = sim.run();
    out.assert_identical(&files);
    assert_eq!(out.tx_stats.retransmissions, 1);
    assert_eq!(out.rx_stats.faults, 1, "one incomplete block");
}

#[test]
fn dropped_byte_with_sender_timing_out_first() {
    // The sender retransmits before the receiver notices the short block: the first byte of
    // the retransmission completes the broken block (bad CRC), the rest is purged.
    let data = pattern(5_000, 2);
    let files = [File::new("drop.bin", &data)];
    let mut rx = fast_receiver();
    rx.byte_timeout_ms = 1_000;
    let mut sim = Sim::new(&files, fast_sender(), rx);
    sim.faults
        .push(LinkFault::Drop(Dir::ToReceiver, HEADER + BLOCK_1K + 7));
    let out = sim.run();
    out.assert_identical(&files);
    assert!(out.tx_stats.retransmissions >= 1);
}

#[test]
fn flipped_data_byte_is_caught_by_crc() {
    let data = pattern(5_000, 3);
    let files = [File::new("flip.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults.push(LinkFault::Flip(
        Dir::ToReceiver,
        HEADER + BLOCK_1K + 3 + 100,
        0x10,
    ));
    let out = sim.run();
    out.assert_identical(&files);
    assert_eq!(out.tx_stats.retransmissions, 1);
    assert_eq!(out.rx_stats.faults, 1);
    // Block 2 was bad: the receiver purged the line, then NAKed.
    assert_eq!(&out.wire_to_tx[..6], &[b'C', ACK, b'C', ACK, NAK, ACK]);

    // A bad first data block is answered with C, like lrzsz (nothing received yet).
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults
        .push(LinkFault::Flip(Dir::ToReceiver, HEADER + 3 + 100, 0x10));
    let out = sim.run();
    out.assert_identical(&files);
    assert_eq!(&out.wire_to_tx[..5], &[b'C', ACK, b'C', b'C', ACK]);
}

#[test]
fn every_single_byte_flip_is_survived_or_fails_loudly() {
    // Flip each byte of the whole sender→receiver stream, then each byte of the reverse
    // stream, one at a time. The strict receiver must never deliver different data.
    let data = pattern(300, 4);
    let files = [File::new("all.bin", &data)];
    let clean = Sim::new(&files, fast_sender(), fast_receiver()).run();
    clean.assert_identical(&files);
    let mut ok = 0;
    let mut total = 0;
    for (dir, len) in [
        (Dir::ToReceiver, clean.wire_to_rx.len()),
        (Dir::ToSender, clean.wire_to_tx.len()),
    ] {
        for i in 0..len {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
                sim.faults.push(LinkFault::Flip(dir, i, mask));
                let out = sim.run();
                total += 1;
                if out.receiver == RecvStatus::Done {
                    assert_eq!(out.files.len(), 1, "{dir:?} byte {i} mask {mask:#x}");
                    assert!(
                        out.files[0].data == data,
                        "silent corruption: {dir:?} byte {i} mask {mask:#x}"
                    );
                    if matches!(out.sender, SendStatus::Done { .. }) {
                        ok += 1;
                    }
                } else {
                    // A failure must say why.
                    let why = out.receiver_error();
                    assert!(!why.is_empty());
                    eprintln!("flip {dir:?} byte {i} mask {mask:#x}: {why}");
                }
            }
        }
    }
    // With this design every single flip is recovered (both sides succeed).
    eprintln!("single flips: {ok} of {total} recovered");
    assert_eq!(ok, total, "{ok} of {total} recovered");
}

#[test]
fn every_single_byte_drop_is_survived_or_fails_loudly() {
    let data = pattern(1_100, 5);
    let files = [File::new("drops.bin", &data)];
    let clean = Sim::new(&files, fast_sender(), fast_receiver()).run();
    let mut ok = 0;
    let mut total = 0;
    for (dir, len) in [
        (Dir::ToReceiver, clean.wire_to_rx.len()),
        (Dir::ToSender, clean.wire_to_tx.len()),
    ] {
        for i in 0..len {
            let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
            sim.faults.push(LinkFault::Drop(dir, i));
            let out = sim.run();
            total += 1;
            if out.receiver == RecvStatus::Done {
                assert!(
                    out.files[0].data == data,
                    "silent corruption: {dir:?} byte {i}"
                );
                if matches!(out.sender, SendStatus::Done { .. }) {
                    ok += 1;
                }
            } else {
                eprintln!("drop {dir:?} byte {i}: {}", out.receiver_error());
            }
        }
    }
    eprintln!("single drops: {ok} of {total} recovered");
    assert_eq!(ok, total, "{ok} of {total} recovered");
}

#[test]
fn lost_ack_causes_duplicate_that_is_acked_and_dropped() {
    let data = pattern(3_000, 6);
    let files = [File::new("dup.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    // Receiver→sender: C, ACK, C, ACK(block 1) ← lost.
    sim.faults.push(LinkFault::Drop(Dir::ToSender, 3));
    let out = sim.run();
    out.assert_identical(&files);
    assert_eq!(out.rx_stats.duplicates, 1);
    assert_eq!(out.tx_stats.retransmissions, 1);
    // Block 1 reached the receiver twice.
    let stx = out
        .wire_to_rx
        .windows(3)
        .filter(|w| w == &[STX, 1, 0xFE])
        .count();
    assert_eq!(stx, 2);
}

#[test]
fn duplicated_block_on_the_link_is_dropped() {
    let data = pattern(3_000, 7);
    let files = [File::new("dup.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults.push(LinkFault::DupWrite(Dir::ToReceiver, 1));
    let out = sim.run();
    out.assert_identical(&files);
    assert_eq!(out.rx_stats.duplicates, 1);
}

#[test]
fn stalled_receiver_fails_after_retry_bound() {
    let data = pattern(70_000, 8);
    let files = [File::new("stall.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.stall_receiver_at = Some(20);
    let out = sim.run();
    let SendStatus::Failed(SendError::TooManyRetries {
        file: 0,
        stage: SendStage::Data { block, offset },
        retries: 10,
        ..
    }) = out.sender
    else {
        panic!("unexpected: {:?}", out.sender);
    };
    assert_eq!(offset, u64::from(block - 1) * 1024);
    assert_eq!(out.tx_stats.retransmissions, 10);
    assert_eq!(
        out.sender_error(),
        format!(
            "no ACK for data block {block} (byte offset {offset}) of file #0 after 10 \
             retransmissions (last cause: timeout)"
        )
    );
    // 11 transmissions, 300 ms apart.
    assert!(out.end_ms >= 20 + 10 * 300, "{}", out.end_ms);
    // The sender then cancels the receiver.
    assert_eq!(&out.tx_raw[out.tx_raw.len() - 10..][..5], &[CAN; 5]);
}

#[test]
fn silent_sender_makes_receiver_fail_with_too_many_errors() {
    let data = pattern(10_000, 9);
    let files = [File::new("cut.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults
        .push(LinkFault::Cut(Dir::ToReceiver, HEADER + BLOCK_1K + 10));
    let out = sim.run();
    let err = out.receiver_error();
    assert!(
        err.starts_with("too many errors (11) at block 2 (byte offset 1024) of file #0"),
        "{err}"
    );
    assert!(matches!(
        out.receiver,
        RecvStatus::Failed(RecvError::TooManyErrors { .. })
    ));
}

#[test]
fn cancel_from_sender() {
    let data = pattern(70_000, 10);
    let files = [File::new("c.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.cancel_sender_at = Some(10_000);
    let out = sim.run();
    assert_eq!(out.sender, SendStatus::Failed(SendError::Cancelled));
    assert!(matches!(
        out.receiver,
        RecvStatus::Failed(RecvError::CancelledBySender { .. })
    ));
    assert!(out.receiver_error().starts_with("cancelled by sender"));
    assert!(matches!(out.events.last(), Some(Ev::Cancelled(_))));
    assert!(out.files[0].data.len() < data.len());
}

#[test]
fn cancel_from_receiver() {
    let data = pattern(70_000, 11);
    let files = [File::new("c.bin", &data)];
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.cancel_receiver_at = Some(10_000);
    let out = sim.run();
    let err = out.sender_error();
    assert!(err.starts_with("cancelled by receiver"), "{err}");
    assert!(matches!(
        out.sender,
        SendStatus::Failed(SendError::CancelledByReceiver {
            file: 0,
            stage: SendStage::Data { .. }
        })
    ));
    assert!(matches!(
        out.receiver,
        RecvStatus::Failed(RecvError::Cancelled { .. })
    ));
}

#[test]
fn lost_final_ack_is_success_with_warning() {
    let data = pattern(100, 12);
    let files = [File::new("w.bin", &data)];
    let clean = Sim::new(&files, fast_sender(), fast_receiver()).run();
    let last = clean.wire_to_tx.len() - 1;
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults.push(LinkFault::Drop(Dir::ToSender, last));
    let out = sim.run();
    assert_eq!(
        out.sender,
        SendStatus::Done {
            warnings: Warnings {
                final_ack_missing: true
            }
        }
    );
    assert_eq!(out.receiver, RecvStatus::Done);
    assert_eq!(out.files[0].data, data);
}

#[test]
fn device_receiver_does_not_catch_flipped_data_byte() {
    // Device OS quirk: the CRC trailer is not verified, so a corrupted data byte is accepted
    // and "written". This test documents (asserts) that the quirk is modelled.
    let data = pattern(3_000, 13);
    let files = [File::new("fw.bin", &data)];
    let tx = SenderConfig {
        start_without_c: true,
        ..fast_sender()
    };
    let mut sim = Sim::new(&files, tx, fast_device());
    sim.faults
        .push(LinkFault::Flip(Dir::ToReceiver, HEADER + 3 + 42, 0x04));
    let out = sim.run();
    assert_eq!(out.receiver, RecvStatus::Done);
    assert!(matches!(out.sender, SendStatus::Done { .. }));
    let got = &out.files[0].data;
    assert_eq!(got.len(), data.len());
    let diff: Vec<usize> = (0..data.len()).filter(|&i| got[i] != data[i]).collect();
    assert_eq!(diff, vec![42], "exactly the flipped byte differs");
    assert_eq!(got[42], data[42] ^ 0x04);
    assert_eq!(out.tx_stats.retransmissions, 0);

    // The same flip against the strict receiver is caught.
    let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
    sim.faults
        .push(LinkFault::Flip(Dir::ToReceiver, HEADER + 3 + 42, 0x04));
    sim.run().assert_identical(&files);
}

#[test]
fn device_receiver_naks_a_duplicate_forever() {
    // Device OS quirk: a repeat of the previous block gets NAK, not ACK. When the ACK of a
    // block is lost, the sender's retransmission is NAKed until the retry bound.
    let data = pattern(3_000, 14);
    let files = [File::new("fw.bin", &data)];
    let tx = SenderConfig {
        start_without_c: true,
        max_retries: 4,
        ..fast_sender()
    };
    let mut sim = Sim::new(&files, tx, fast_device());
    // Device→sender: ACK C (header), ACK(block 1) ← lost.
    sim.faults.push(LinkFault::Drop(Dir::ToSender, 2));
    let out = sim.run();
    let err = out.sender_error();
    assert_eq!(
        err,
        "no ACK for data block 1 (byte offset 0) of file #0 after 4 retransmissions (last \
         cause: NAK)"
    );
    assert_eq!(out.rx_stats.duplicates, 4);
    // The sender's CANs stop the device.
    assert!(matches!(
        out.receiver,
        RecvStatus::Failed(RecvError::CancelledBySender { .. })
    ));
}

#[test]
fn device_receiver_misframing_ends_in_can_can() {
    // Device OS quirk: no purge; every garbage byte where a block should start is an error
    // answered with C. A dropped byte (block never completes) leads to C on timeout and the
    // sender retransmits; this is recoverable.
    let data = pattern(3_000, 15);
    let files = [File::new("fw.bin", &data)];
    let tx = SenderConfig {
        start_without_c: true,
        ..fast_sender()
    };
    let mut sim = Sim::new(&files, tx, fast_device());
    sim.faults
        .push(LinkFault::Drop(Dir::ToReceiver, HEADER + 100));
    let out = sim.run();
    out.assert_identical(&files);
    assert!(out.wire_to_tx.contains(&b'C'));
}

// Sender-level behaviour against scripted receivers.

fn out(s: &mut Sender<'_>, now: u64) -> Vec<u8> {
    s.poll_transmit(now).map(<[u8]>::to_vec).unwrap_or_default()
}

#[test]
fn sender_classic_eot_nak_eot_ack() {
    let files = [File::new("e", b"x")];
    let mut s = Sender::new(&files, fast_sender()).unwrap();
    s.handle_input(b"C", 0);
    out(&mut s, 0);
    s.handle_input(&[ACK, b'C'], 1);
    out(&mut s, 1);
    s.handle_input(&[ACK], 2);
    assert_eq!(out(&mut s, 2), [EOT]);
    s.handle_input(&[NAK], 3);
    assert_eq!(out(&mut s, 3), [EOT], "EOT resent on NAK");
    s.handle_input(&[ACK], 4);
    assert_eq!(s.stats().files_done, 1);
    assert_eq!(s.stats().retransmissions, 1);
}

#[test]
fn sender_retransmits_header_on_c_like_rb_needs() {
    // rb flushes its input after sending C: a header that arrived too early is lost, rb times
    // out and sends C again. The sender must resend the header on that C.
    let files = [File::new("r", b"y")];
    let mut s = Sender::new(&files, fast_sender()).unwrap();
    s.handle_input(b"C", 0);
    let first = out(&mut s, 0);
    s.handle_input(b"C", 10);
    assert_eq!(out(&mut s, 10), first);
    // And a data block on C or NAK.
    s.handle_input(&[ACK, b'C'], 20);
    let blk = out(&mut s, 20);
    s.handle_input(b"C", 30);
    assert_eq!(out(&mut s, 30), blk);
    s.handle_input(&[NAK], 40);
    assert_eq!(out(&mut s, 40), blk);
    assert_eq!(s.stats().retransmissions, 3);
}

#[test]
fn device_sender_goes_on_without_c_after_eot() {
    // start_without_c = false: after the EOT ACK the sender waits for C, and sends the
    // end-of-batch block anyway at its timeout.
    let files = [File::new("d", b"z")];
    let mut s = Sender::new(&files, fast_sender()).unwrap();
    s.handle_input(b"C", 0);
    out(&mut s, 0);
    s.handle_input(&[ACK, b'C'], 1);
    out(&mut s, 1);
    s.handle_input(&[ACK], 2);
    out(&mut s, 2);
    s.handle_input(&[ACK], 3);
    assert!(out(&mut s, 3).is_empty());
    assert_eq!(s.next_deadline(), Some(303));
    s.handle_timeout(303);
    let end = out(&mut s, 303);
    assert_eq!(end.len(), 133);
    assert!(end[3..131].iter().all(|&b| b == 0));
}
