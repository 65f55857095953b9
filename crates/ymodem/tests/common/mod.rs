//! Deterministic simulated serial link that drives a `Sender` and a `Receiver` against each
//! other, with injectable faults.
#![allow(dead_code)]

use std::collections::VecDeque;

use modflash_ymodem::{
    Event, File, Receiver, ReceiverConfig, ReceiverStats, RecvStatus, SendStatus, Sender,
    SenderConfig, SenderStats,
};

/// Direction of a link fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToReceiver,
    ToSender,
}

/// A fault applied to one direction of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Drop the byte with this index in the direction's byte stream.
    Drop(Dir, usize),
    /// XOR the byte with this index with a non-zero mask.
    Flip(Dir, usize, u8),
    /// Insert a byte before the byte with this index.
    Insert(Dir, usize, u8),
    /// Deliver the n-th write (chunk) of this direction twice.
    DupWrite(Dir, usize),
    /// Drop every byte from this index on (the peer goes silent).
    Cut(Dir, usize),
}

/// Owned copy of a receiver event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Header {
        index: u32,
        name: Vec<u8>,
        size: Option<u64>,
    },
    Data {
        index: u32,
        offset: u64,
        len: usize,
    },
    Eof {
        index: u32,
        size: u64,
    },
    EndOfBatch {
        files: u32,
    },
    Cancelled(String),
    Failed(String),
}

/// One received file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxFile {
    pub name: Vec<u8>,
    pub size: Option<u64>,
    pub data: Vec<u8>,
    pub complete: bool,
}

/// What the receiver's caller does at decision points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
}

pub struct Sim<'a> {
    pub tx: Sender<'a>,
    pub rx: Receiver,
    pub now: u64,
    pub latency_ms: u64,
    pub faults: Vec<LinkFault>,
    /// Refuse headers whose size exceeds this (Device OS "file too big").
    pub max_size: Option<u64>,
    /// Answer to a deferred end of batch.
    pub final_decision: Decision,
    /// From this time on, the receiver is frozen: it reads and writes nothing.
    pub stall_receiver_at: Option<u64>,
    /// Call `Sender::cancel` once this many bytes are acknowledged.
    pub cancel_sender_at: Option<u64>,
    /// Call `Receiver::cancel` once this many bytes are received.
    pub cancel_receiver_at: Option<u64>,
    /// Simulated time to keep running after the sender finished, if the receiver has not.
    pub grace_ms: u64,
    pub max_steps: u64,
    to_rx: VecDeque<(u64, Vec<u8>)>,
    to_tx: VecDeque<(u64, Vec<u8>)>,
    idx: [usize; 2],
    writes: [usize; 2],
    pub events: Vec<Ev>,
    pub files: Vec<RxFile>,
    pub wire_to_rx: Vec<u8>,
    pub wire_to_tx: Vec<u8>,
    /// Everything the sender wrote, before faults and stalls.
    pub tx_raw: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub sender: SendStatus,
    pub receiver: RecvStatus,
    pub tx_stats: SenderStats,
    pub rx_stats: ReceiverStats,
    pub files: Vec<RxFile>,
    pub events: Vec<Ev>,
    pub end_ms: u64,
    pub steps: u64,
    pub wire_to_rx: Vec<u8>,
    pub wire_to_tx: Vec<u8>,
    pub tx_raw: Vec<u8>,
}

impl Outcome {
    pub fn sender_error(&self) -> String {
        match self.sender {
            SendStatus::Failed(e) => e.to_string(),
            s => panic!("sender did not fail: {s:?}"),
        }
    }

    pub fn receiver_error(&self) -> String {
        match self.receiver {
            RecvStatus::Failed(e) => e.to_string(),
            s => panic!("receiver did not fail: {s:?}"),
        }
    }

    /// Asserts success on both sides and byte-identical files.
    pub fn assert_identical(&self, sent: &[File<'_>]) {
        assert!(
            matches!(self.sender, SendStatus::Done { .. }),
            "sender: {:?}",
            self.sender
        );
        assert_eq!(self.receiver, RecvStatus::Done, "events: {:?}", self.events);
        assert_eq!(self.files.len(), sent.len());
        for (got, want) in self.files.iter().zip(sent) {
            assert_eq!(got.name, want.name.as_bytes());
            assert_eq!(got.size, Some(want.data.len() as u64));
            assert!(got.complete);
            assert!(got.data == want.data, "data differs for {}", want.name);
        }
    }
}

impl<'a> Sim<'a> {
    pub fn new(files: &'a [File<'a>], tx_cfg: SenderConfig, rx_cfg: ReceiverConfig) -> Self {
        Sim {
            tx: Sender::new(files, tx_cfg).expect("valid files"),
            rx: Receiver::new(rx_cfg),
            now: 0,
            latency_ms: 1,
            faults: Vec::new(),
            max_size: None,
            final_decision: Decision::Accept,
            stall_receiver_at: None,
            cancel_sender_at: None,
            cancel_receiver_at: None,
            grace_ms: 10_000,
            max_steps: 2_000_000,
            to_rx: VecDeque::new(),
            to_tx: VecDeque::new(),
            idx: [0; 2],
            writes: [0; 2],
            events: Vec::new(),
            files: Vec::new(),
            wire_to_rx: Vec::new(),
            wire_to_tx: Vec::new(),
            tx_raw: Vec::new(),
        }
    }

    fn rx_alive(&self) -> bool {
        self.stall_receiver_at.is_none_or(|t| self.now < t)
    }

    fn push(&mut self, dir: Dir, bytes: &[u8]) {
        let d = dir as usize;
        if dir == Dir::ToReceiver {
            self.tx_raw.extend_from_slice(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len() + 1);
        for &b in bytes {
            let i = self.idx[d];
            self.idx[d] += 1;
            let mut drop = false;
            let mut byte = b;
            for f in &self.faults {
                match *f {
                    LinkFault::Drop(fd, at) if fd == dir && at == i => drop = true,
                    LinkFault::Cut(fd, at) if fd == dir && i >= at => drop = true,
                    LinkFault::Flip(fd, at, mask) if fd == dir && at == i => byte ^= mask,
                    LinkFault::Insert(fd, at, extra) if fd == dir && at == i => out.push(extra),
                    _ => {}
                }
            }
            if !drop {
                out.push(byte);
            }
        }
        let n = self.writes[d];
        self.writes[d] += 1;
        if std::env::var_os("YMODEM_SIM_TRACE").is_some() {
            let head: Vec<u8> = out.iter().take(8).copied().collect();
            eprintln!(
                "t={} {:?} write#{} len={} head={:02x?}",
                self.now,
                dir,
                n,
                out.len(),
                head
            );
        }
        let dup = self.faults.contains(&LinkFault::DupWrite(dir, n));
        let at = self.now + self.latency_ms;
        let q = match dir {
            Dir::ToReceiver => &mut self.to_rx,
            Dir::ToSender => &mut self.to_tx,
        };
        if dup {
            q.push_back((at, out.clone()));
        }
        q.push_back((at, out));
    }

    fn feed_receiver(&mut self, data: &[u8]) {
        self.wire_to_rx.extend_from_slice(data);
        let mut rest = data;
        loop {
            let n = self.rx.handle_input(rest, self.now);
            rest = &rest[n..];
            let mut any = false;
            let mut reject = false;
            let mut accept = false;
            while let Some(ev) = self.rx.poll_event() {
                any = true;
                let ev = match ev {
                    Event::FileHeader { index, name, size } => {
                        if let (Some(max), Some(s)) = (self.max_size, size) {
                            reject |= s > max;
                        }
                        self.files.push(RxFile {
                            name: name.to_vec(),
                            size,
                            ..RxFile::default()
                        });
                        Ev::Header {
                            index,
                            name: name.to_vec(),
                            size,
                        }
                    }
                    Event::Data {
                        index,
                        offset,
                        data,
                    } => {
                        let f = self.files.last_mut().expect("data before header");
                        assert_eq!(f.data.len() as u64, offset, "offsets are contiguous");
                        f.data.extend_from_slice(data);
                        Ev::Data {
                            index,
                            offset,
                            len: data.len(),
                        }
                    }
                    Event::EndOfFile { index, size } => {
                        let f = self.files.last_mut().expect("eof before header");
                        assert_eq!(f.data.len() as u64, size);
                        f.complete = true;
                        Ev::Eof { index, size }
                    }
                    Event::EndOfBatch { files } => {
                        match self.final_decision {
                            Decision::Accept => accept = true,
                            Decision::Reject => reject = true,
                        }
                        Ev::EndOfBatch { files }
                    }
                    Event::Cancelled(e) => Ev::Cancelled(e.to_string()),
                    Event::Failed(e) => Ev::Failed(e.to_string()),
                };
                self.events.push(ev);
            }
            if reject {
                self.rx.reject();
            } else if accept {
                // Only has an effect when the final ACK is deferred.
                self.rx.accept();
            }
            if let Some(limit) = self.cancel_receiver_at {
                if self.rx.stats().bytes_received >= limit {
                    self.cancel_receiver_at = None;
                    self.rx.cancel();
                }
            }
            // Drain a terminal event caused by reject/cancel.
            while let Some(ev) = self.rx.poll_event() {
                let ev = match ev {
                    Event::Cancelled(e) => Ev::Cancelled(e.to_string()),
                    Event::Failed(e) => Ev::Failed(e.to_string()),
                    other => panic!("unexpected event after decision: {other:?}"),
                };
                self.events.push(ev);
            }
            if rest.is_empty() {
                return;
            }
            assert!(n > 0 || any, "receiver made no progress");
        }
    }

    pub fn run(mut self) -> Outcome {
        let mut steps = 0u64;
        let mut sender_done_at: Option<u64> = None;
        loop {
            steps += 1;
            assert!(steps < self.max_steps, "simulation did not terminate");
            let mut active = false;
            self.tx.handle_timeout(self.now);
            if self.rx_alive() {
                self.rx.handle_timeout(self.now);
                // A timeout can produce an event (EOF after the EOT quiet time, failure).
                self.feed_receiver(&[]);
            }

            if let Some(limit) = self.cancel_sender_at {
                if self.tx.stats().bytes_acked >= limit {
                    self.cancel_sender_at = None;
                    self.tx.cancel();
                }
            }
            if let Some(b) = self.tx.poll_transmit(self.now).map(<[u8]>::to_vec) {
                self.push(Dir::ToReceiver, &b);
                active = true;
            }
            if self.rx_alive() {
                if let Some(b) = self.rx.poll_transmit(self.now).map(<[u8]>::to_vec) {
                    self.push(Dir::ToSender, &b);
                    active = true;
                }
            }
            while self.to_rx.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, chunk) = self.to_rx.pop_front().unwrap();
                if self.rx_alive() {
                    self.feed_receiver(&chunk);
                }
                active = true;
            }
            while self.to_tx.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, chunk) = self.to_tx.pop_front().unwrap();
                self.wire_to_tx.extend_from_slice(&chunk);
                self.tx.handle_input(&chunk, self.now);
                active = true;
            }
            if active {
                continue;
            }
            if self.tx.is_finished() && sender_done_at.is_none() {
                sender_done_at = Some(self.now);
            }
            let rx_settled = self.rx.is_finished() || !self.rx_alive();
            let idle = self.to_rx.is_empty() && self.to_tx.is_empty();
            if self.tx.is_finished() && rx_settled && idle {
                // Flush any last output (e.g. a final ACK or CAN) into the log.
                if let Some(b) = self.tx.poll_transmit(self.now).map(<[u8]>::to_vec) {
                    self.push(Dir::ToReceiver, &b);
                    continue;
                }
                if self.rx_alive() {
                    if let Some(b) = self.rx.poll_transmit(self.now).map(<[u8]>::to_vec) {
                        self.push(Dir::ToSender, &b);
                        continue;
                    }
                }
                break;
            }
            if let Some(t) = sender_done_at {
                if self.now > t + self.grace_ms && idle {
                    break;
                }
            }
            // Advance time to the next thing that can happen.
            let mut next: Option<u64> = None;
            let mut consider = |t: Option<u64>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: u64| n.min(t)));
                }
            };
            consider(self.to_rx.front().map(|(t, _)| *t));
            consider(self.to_tx.front().map(|(t, _)| *t));
            consider(self.tx.next_deadline());
            if self.rx_alive() {
                consider(self.rx.next_deadline());
            }
            if let Some(t) = self.stall_receiver_at {
                if self.now < t {
                    consider(Some(t));
                }
            }
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => self.now += 1,
                None => break,
            }
        }
        Outcome {
            sender: self.tx.status(),
            receiver: self.rx.status(),
            tx_stats: self.tx.stats(),
            rx_stats: self.rx.stats(),
            files: self.files,
            events: self.events,
            end_ms: self.now,
            steps,
            wire_to_rx: self.wire_to_rx,
            wire_to_tx: self.wire_to_tx,
            tx_raw: self.tx_raw,
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// Fast timeouts for simulated tests.
pub fn fast_sender() -> SenderConfig {
    SenderConfig {
        start_timeout_ms: 2_000,
        ack_timeout_ms: 300,
        final_ack_timeout_ms: 300,
        ..SenderConfig::default()
    }
}

/// Strict receiver with fast timeouts.
pub fn fast_receiver() -> ReceiverConfig {
    ReceiverConfig {
        block_timeout_ms: 200,
        byte_timeout_ms: 50,
        eot_quiet_ms: 20,
        ..ReceiverConfig::default()
    }
}

/// Device OS receiver with fast timeouts.
pub fn fast_device() -> ReceiverConfig {
    ReceiverConfig {
        block_timeout_ms: 50,
        byte_timeout_ms: 50,
        ..ReceiverConfig::device_os()
    }
}
