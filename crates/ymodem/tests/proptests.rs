//! Property tests: arbitrary input never panics, the machines always terminate, and a
//! loopback with one random fault never yields silently different data.

mod common;

use common::*;
use modflash_ymodem::{
    crc16_xmodem, Event, File, Receiver, ReceiverConfig, RecvStatus, SendStatus, Sender,
    SenderConfig, ACK, BS, CAN, EOT, NAK, SOH, STX,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Input(Vec<u8>),
    Advance(u16),
    Timeout,
    Poll,
    Cancel,
    Accept,
    Reject,
}

fn reply_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(ACK),
        2 => Just(NAK),
        2 => Just(b'C'),
        1 => Just(CAN),
        1 => Just(EOT),
        2 => any::<u8>(),
    ]
}

/// A valid frame (header, data or end of batch) with a random seq, sometimes corrupted.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()],
        any::<bool>(),
        prop_oneof![
            Just(b"f.bin\x00300 0 100644".to_vec()),
            Just(vec![0u8; 0]),
            proptest::collection::vec(any::<u8>(), 0..200),
        ],
        proptest::option::of((0usize..1100, 1u8..=255)),
    )
        .prop_map(|(seq, big, payload, flip)| {
            let size = if big { 1024 } else { 128 };
            let mut body = payload;
            body.resize(size, 0);
            let mut v = vec![if big { STX } else { SOH }, seq, !seq];
            v.extend_from_slice(&body);
            v.extend_from_slice(&crc16_xmodem(&body).to_be_bytes());
            if let Some((at, mask)) = flip {
                let n = v.len();
                v[at % n] ^= mask;
            }
            v
        })
}

fn receiver_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(
            prop_oneof![Just(SOH), Just(STX), Just(EOT), Just(CAN), Just(b' '), Just(b'a')],
            0..8
        ),
        3 => frame(),
    ]
}

fn ops(input: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => input.prop_map(Op::Input),
            2 => any::<u16>().prop_map(Op::Advance),
            2 => Just(Op::Timeout),
            2 => Just(Op::Poll),
            1 => Just(Op::Cancel),
            1 => Just(Op::Accept),
            1 => Just(Op::Reject),
        ],
        0..60,
    )
}

/// Checks that a sender transmission is a well-formed frame, an EOT, or the cancel sequence.
fn check_sender_output(bytes: &[u8]) {
    match bytes.first() {
        Some(&SOH) | Some(&STX) => {
            let size = if bytes[0] == STX { 1024 } else { 128 };
            assert!(bytes.len() == 3 + size + 2 || bytes.len() == 3 + size + 1);
            assert_eq!(bytes[1], !bytes[2]);
            if bytes.len() == 3 + size + 2 {
                let crc = crc16_xmodem(&bytes[3..3 + size]);
                assert_eq!(&bytes[3 + size..], &crc.to_be_bytes());
            }
        }
        Some(&EOT) => assert_eq!(bytes.len(), 1),
        Some(&CAN) => assert_eq!(bytes, [CAN, CAN, CAN, CAN, CAN, BS, BS, BS, BS, BS]),
        other => panic!("unexpected output {other:?}"),
    }
}

/// Feeds `data` to the receiver, checking progress and event consistency.
fn feed(
    rx: &mut Receiver,
    data: &[u8],
    now: u64,
    declared: &mut Option<u64>,
    seen_header: &mut bool,
) {
    let mut rest = data;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(
            rounds <= data.len() + 2,
            "receiver input loop did not progress"
        );
        let n = rx.handle_input(rest, now);
        assert!(n <= rest.len());
        rest = &rest[n..];
        let mut events = 0;
        while let Some(ev) = rx.poll_event() {
            events += 1;
            assert!(events < 4, "event flood");
            match ev {
                Event::FileHeader { size, name, .. } => {
                    assert!(!name.is_empty());
                    *declared = size;
                    *seen_header = true;
                }
                Event::Data { offset, data, .. } => {
                    assert!(!data.is_empty() && data.len() <= 1024);
                    if let Some(d) = *declared {
                        assert!(offset + data.len() as u64 <= d, "data beyond declared size");
                    }
                }
                Event::Cancelled(e) | Event::Failed(e) => assert!(!e.to_string().is_empty()),
                Event::EndOfFile { .. } | Event::EndOfBatch { .. } => {}
            }
        }
        if rest.is_empty() {
            return;
        }
        assert!(n > 0 || events > 0, "no progress");
    }
}

fn run_receiver(cfg: ReceiverConfig, ops: Vec<Op>) {
    let mut rx = Receiver::new(cfg);
    let mut now = 0u64;
    let mut declared = None;
    let mut seen_header = false;
    for op in ops {
        match op {
            Op::Input(bytes) => feed(&mut rx, &bytes, now, &mut declared, &mut seen_header),
            Op::Advance(ms) => now += u64::from(ms),
            Op::Timeout => {
                if let Some(t) = rx.next_deadline() {
                    now = now.max(t);
                }
                rx.handle_timeout(now);
            }
            Op::Poll => {
                let _ = rx.poll_transmit(now);
            }
            Op::Cancel => rx.cancel(),
            Op::Accept => rx.accept(),
            Op::Reject => rx.reject(),
        }
        feed(&mut rx, &[], now, &mut declared, &mut seen_header);
    }
    // Silence from now on: the receiver must give up within a bounded number of timeouts
    // (the Device OS model only counts errors once a session has begun).
    let bound = 2 * (cfg.max_errors as usize + 3);
    for _ in 0..bound {
        feed(&mut rx, &[], now, &mut declared, &mut seen_header);
        let _ = rx.poll_transmit(now);
        if rx.status() == RecvStatus::AwaitingDecision {
            rx.accept();
        }
        if rx.is_finished() {
            break;
        }
        match rx.next_deadline() {
            Some(t) => now = now.max(t),
            None => panic!("receiver in progress without a deadline: {:?}", rx.status()),
        }
        rx.handle_timeout(now);
    }
    let device_idle = cfg.quirks.device_error_handling && !seen_header;
    assert!(
        rx.is_finished() || device_idle,
        "receiver did not terminate: {:?}",
        rx.status()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sender_survives_arbitrary_input(
        ops in ops(proptest::collection::vec(reply_byte(), 0..12).boxed()),
        len in 0usize..4000,
        start_without_c in any::<bool>(),
        reply_delay_ms in 0u64..3,
    ) {
        let data = pattern(len, len as u64);
        let files = [File::new("a.bin", &data), File::new("b", &data[..len / 3])];
        let cfg = SenderConfig { start_without_c, reply_delay_ms, ..SenderConfig::default() };
        let mut tx = Sender::new(&files, cfg).unwrap();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Input(bytes) => tx.handle_input(&bytes, now),
                Op::Advance(ms) => now += u64::from(ms),
                Op::Timeout => {
                    if let Some(t) = tx.next_deadline() { now = now.max(t); }
                    tx.handle_timeout(now);
                }
                Op::Poll => {
                    if let Some(b) = tx.poll_transmit(now) { check_sender_output(b); }
                }
                Op::Cancel => tx.cancel(),
                Op::Accept | Op::Reject => {}
            }
            let s = tx.stats();
            prop_assert!(s.bytes_acked <= s.bytes_total);
        }
        // Silence: retransmissions run out and the sender stops.
        for _ in 0..200 {
            if let Some(b) = tx.poll_transmit(now) { check_sender_output(b); }
            if tx.is_finished() { break; }
            let t = tx.next_deadline().expect("in progress without a deadline");
            now = now.max(t);
            tx.handle_timeout(now);
        }
        prop_assert!(tx.is_finished(), "sender did not terminate: {:?}", tx.status());
        if let SendStatus::Failed(e) = tx.status() {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn strict_receiver_survives_arbitrary_input(ops in ops(receiver_input().boxed())) {
        run_receiver(fast_receiver(), ops);
    }

    #[test]
    fn checksum_receiver_survives_arbitrary_input(ops in ops(receiver_input().boxed())) {
        run_receiver(ReceiverConfig { checksum_mode: true, ..fast_receiver() }, ops);
    }

    #[test]
    fn device_receiver_survives_arbitrary_input(ops in ops(receiver_input().boxed())) {
        run_receiver(fast_device(), ops);
    }

    #[test]
    fn loopback_with_one_random_fault_never_corrupts_silently(
        data in proptest::collection::vec(any::<u8>(), 0..6000),
        second in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..1500)),
        to_receiver in any::<bool>(),
        kind in 0u8..5,
        pos in any::<u32>(),
        mask in 1u8..=255,
    ) {
        let mut files = vec![File::new("one.bin", &data)];
        if let Some(b) = &second {
            files.push(File::new("two.bin", b));
        }
        let clean = Sim::new(&files, fast_sender(), fast_receiver()).run();
        clean.assert_identical(&files);
        let dir = if to_receiver { Dir::ToReceiver } else { Dir::ToSender };
        let stream = if to_receiver { clean.wire_to_rx.len() } else { clean.wire_to_tx.len() };
        let at = pos as usize % stream.max(1);
        let fault = match kind {
            0 => LinkFault::Drop(dir, at),
            1 => LinkFault::Flip(dir, at, mask),
            2 => LinkFault::Insert(dir, at, mask),
            3 => LinkFault::DupWrite(dir, at % 8),
            _ => LinkFault::Cut(dir, at),
        };
        let mut sim = Sim::new(&files, fast_sender(), fast_receiver());
        sim.faults.push(fault);
        let out = sim.run();
        match out.receiver {
            RecvStatus::Done => {
                prop_assert_eq!(out.files.len(), files.len());
                for (got, want) in out.files.iter().zip(&files) {
                    prop_assert!(got.complete);
                    prop_assert!(got.data == want.data, "silently different data with {:?}", fault);
                }
            }
            RecvStatus::Failed(e) => prop_assert!(!e.to_string().is_empty()),
            other => prop_assert!(false, "receiver did not finish: {other:?} ({fault:?})"),
        }
        match out.sender {
            SendStatus::Failed(e) => prop_assert!(!e.to_string().is_empty()),
            SendStatus::Done { .. } => {}
            SendStatus::InProgress => prop_assert!(false, "sender did not finish"),
        }
        // Anything but a cut line is recoverable.
        if kind != 4 {
            prop_assert_eq!(out.receiver, RecvStatus::Done, "fault {:?}", fault);
        }
    }
}
