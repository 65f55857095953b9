//! YMODEM batch receiver, with switches that reproduce the Particle Device OS receiver.

use core::fmt;

use crate::{
    checksum8, crc16_xmodem, CheckMode, Timer, ACK, BLOCK_128, BLOCK_1K, BS, CAN, CRC_REQUEST, EOT,
    MAX_FRAME, NAK, SOH, STX,
};

/// Longest file name the Device OS keeps (`FILE_NAME_LENGTH`).
const DEVICE_NAME_MAX: usize = 256;
/// Longest size field the Device OS parses (`FILE_SIZE_LENGTH`).
const DEVICE_SIZE_MAX: usize = 16;
/// Reply buffer: enough for a cancel sequence plus a few pending replies.
const OUT_CAP: usize = 16;

/// Deviations from standard YMODEM receiver behaviour, all found in the Particle Device OS
/// listening-mode receiver (`system_ymodem.cpp`, v2.3.1). [`Quirks::NONE`] is a strict,
/// lrzsz-like receiver; [`Quirks::DEVICE_OS`] turns everything on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Quirks {
    /// Do not send `C` at start; the first `C` goes out after the first block timeout.
    pub no_initial_c: bool,
    /// Do not verify the CRC/checksum trailer; only `seq == !complement` is checked.
    /// A corrupted data byte is then accepted and written.
    pub skip_crc_check: bool,
    /// Do not ACK the end-of-batch block until the caller calls [`Receiver::accept`]
    /// (image validated → ACK) or [`Receiver::reject`] (→ CAN CAN).
    pub defer_final_ack: bool,
    /// After ACKing an EOT, do not send `C` for the next header (the sender only gets a `C`
    /// at the next block timeout).
    pub no_c_after_eot: bool,
    /// Console keys where a block should start: a space is ACKed and ignored, `a`/`A`
    /// aborts (CAN CAN, [`RecvError::AbortedByUser`]).
    pub console_bytes: bool,
    /// Device OS error handling instead of the lrzsz one:
    /// * timeouts and garbled blocks are answered with `C` at once (no purge of the line);
    ///   errors only count after the first good block, and any well-framed block resets them;
    /// * a block with the wrong sequence number, including a repeat of the previous block,
    ///   gets NAK (never ACK-and-drop, never a fatal sequence error);
    /// * the sender's CAN CAN is ACKed; the receiver's own cancel is exactly CAN CAN;
    /// * an EOT is accepted at once, even before the declared size has arrived;
    /// * a header without NUL is accepted (name cut at 256 bytes), the size field is read up
    ///   to the first non-digit, at most 16 characters.
    pub device_error_handling: bool,
}

impl Quirks {
    /// Standard behaviour.
    pub const NONE: Quirks = Quirks {
        no_initial_c: false,
        skip_crc_check: false,
        defer_final_ack: false,
        no_c_after_eot: false,
        console_bytes: false,
        device_error_handling: false,
    };

    /// Everything the Device OS receiver does.
    pub const DEVICE_OS: Quirks = Quirks {
        no_initial_c: true,
        skip_crc_check: true,
        defer_final_ack: true,
        no_c_after_eot: true,
        console_bytes: true,
        device_error_handling: true,
    };
}

/// Receiver settings. [`ReceiverConfig::default`] is a strict receiver;
/// [`ReceiverConfig::device_os`] models the Device OS one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiverConfig {
    /// Ask for 8-bit checksum mode (NAK) instead of CRC-16 (`C`).
    pub checksum_mode: bool,
    /// How long to wait for the start of a block before asking again (`C`/NAK).
    pub block_timeout_ms: u64,
    /// Longest silence allowed inside a block; also the quiet time that ends a purge of the
    /// line after a bad block.
    pub byte_timeout_ms: u64,
    /// An EOT is only accepted after this much silence (lrzsz uses 100 ms), so that a
    /// corrupted block start is not mistaken for it. 0 accepts EOT at once.
    pub eot_quiet_ms: u64,
    /// Consecutive errors tolerated; one more cancels the transfer with CAN CAN.
    pub max_errors: u32,
    /// Device OS behaviour switches.
    pub quirks: Quirks,
}

impl ReceiverConfig {
    /// The Device OS receiver: all [`Quirks::DEVICE_OS`], 5000 ms timeouts, more than 5
    /// errors cancel. Tests usually shorten the timeouts.
    pub const fn device_os() -> Self {
        ReceiverConfig {
            checksum_mode: false,
            block_timeout_ms: 5_000,
            byte_timeout_ms: 5_000,
            eot_quiet_ms: 0,
            max_errors: 5,
            quirks: Quirks::DEVICE_OS,
        }
    }
}

impl Default for ReceiverConfig {
    /// CRC-16, 10 s block timeout, 1 s byte timeout, 100 ms EOT quiet time, 10 errors.
    fn default() -> Self {
        ReceiverConfig {
            checksum_mode: false,
            block_timeout_ms: 10_000,
            byte_timeout_ms: 1_000,
            eot_quiet_ms: 100,
            max_errors: 10,
            quirks: Quirks::NONE,
        }
    }
}

/// Where the receiver was when something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecvPosition {
    /// Index of the file in the batch (files completed so far).
    pub file: u32,
    /// Number of the block expected next in this file: 0 = header, data from 1.
    pub block: u32,
    /// File bytes received so far in this file.
    pub offset: u64,
}

impl fmt::Display for RecvPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.block == 0 {
            write!(f, "header block of file #{}", self.file)
        } else {
            write!(
                f,
                "block {} (byte offset {}) of file #{}",
                self.block, self.offset, self.file
            )
        }
    }
}

/// A recoverable receive error (answered with NAK or `C`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Nothing arrived within the block timeout.
    Timeout,
    /// A block stopped arriving before it was complete.
    IncompleteBlock {
        /// Bytes received.
        received: usize,
        /// Bytes the block needs (header, payload and trailer).
        expected: usize,
    },
    /// The sequence byte and its complement disagree.
    BadSeqComplement {
        /// Sequence byte.
        seq: u8,
        /// Complement byte.
        complement: u8,
    },
    /// CRC-16 mismatch.
    BadCrc {
        /// CRC of the received payload.
        computed: u16,
        /// CRC in the trailer.
        received: u16,
    },
    /// Checksum mismatch.
    BadChecksum {
        /// Checksum of the received payload.
        computed: u8,
        /// Checksum in the trailer.
        received: u8,
    },
    /// A byte that cannot start a block.
    UnexpectedByte(u8),
    /// More bytes followed an EOT within the quiet time.
    EotNotAlone,
    /// EOT before the size declared in the header had arrived.
    PrematureEot {
        /// File bytes received.
        received: u64,
        /// Size from the header.
        declared: u64,
    },
    /// A well-formed block with a sequence number that does not fit.
    UnexpectedSeq {
        /// Sequence number expected.
        expected: u8,
        /// Sequence number received.
        got: u8,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::Timeout => write!(f, "timeout waiting for a block"),
            Fault::IncompleteBlock { received, expected } => write!(
                f,
                "block incomplete after timeout ({received} of {expected} bytes)"
            ),
            Fault::BadSeqComplement { seq, complement } => write!(
                f,
                "sequence byte {seq:#04x} does not match its complement {complement:#04x}"
            ),
            Fault::BadCrc { computed, received } => write!(
                f,
                "CRC mismatch (computed {computed:#06x}, received {received:#06x})"
            ),
            Fault::BadChecksum { computed, received } => write!(
                f,
                "checksum mismatch (computed {computed:#04x}, received {received:#04x})"
            ),
            Fault::UnexpectedByte(b) => {
                write!(f, "unexpected byte {b:#04x} where a block should start")
            }
            Fault::EotNotAlone => write!(f, "EOT followed by more bytes"),
            Fault::PrematureEot { received, declared } => write!(
                f,
                "EOT after {received} of the {declared} bytes declared in the header"
            ),
            Fault::UnexpectedSeq { expected, got } => write!(
                f,
                "block with sequence number {got} where {expected} was expected"
            ),
        }
    }
}

/// Why a receive ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvError {
    /// The sender sent CAN CAN.
    CancelledBySender {
        /// Position at the time.
        at: RecvPosition,
    },
    /// An `a`/`A` console key aborted the transfer ([`Quirks::console_bytes`]).
    AbortedByUser {
        /// Position at the time.
        at: RecvPosition,
    },
    /// [`Receiver::cancel`] was called.
    Cancelled {
        /// Position at the time.
        at: RecvPosition,
    },
    /// [`Receiver::reject`] was called (header refused, write failed, validation failed).
    Rejected {
        /// Position at the time.
        at: RecvPosition,
    },
    /// More consecutive errors than [`ReceiverConfig::max_errors`].
    TooManyErrors {
        /// Errors counted.
        errors: u32,
        /// The last one.
        last: Fault,
        /// Position at the time.
        at: RecvPosition,
    },
    /// A data block out of order (neither the next nor a repeat of the previous one).
    SequenceError {
        /// Sequence number expected.
        expected: u8,
        /// Sequence number received.
        got: u8,
        /// Position at the time.
        at: RecvPosition,
    },
    /// A header block whose file name is not NUL-terminated.
    MalformedHeader {
        /// Position at the time.
        at: RecvPosition,
    },
}

impl RecvError {
    /// True for cancellations (by the sender, the user, or the local caller), false for
    /// protocol failures.
    pub const fn is_cancellation(&self) -> bool {
        matches!(
            self,
            RecvError::CancelledBySender { .. }
                | RecvError::AbortedByUser { .. }
                | RecvError::Cancelled { .. }
                | RecvError::Rejected { .. }
        )
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecvError::CancelledBySender { at } => {
                write!(f, "cancelled by sender (CAN CAN) at {at}")
            }
            RecvError::AbortedByUser { at } => write!(f, "aborted by user ('a') at {at}"),
            RecvError::Cancelled { at } => write!(f, "cancelled by the receiver at {at}"),
            RecvError::Rejected { at } => write!(f, "rejected by the receiver at {at}"),
            RecvError::TooManyErrors { errors, last, at } => {
                write!(f, "too many errors ({errors}) at {at}; last error: {last}")
            }
            RecvError::SequenceError { expected, got, at } => write!(
                f,
                "sequence error at {at}: expected block seq {expected}, got {got}"
            ),
            RecvError::MalformedHeader { at } => write!(
                f,
                "malformed header block (file name not NUL-terminated) at {at}"
            ),
        }
    }
}

impl core::error::Error for RecvError {}

/// Something the caller has to know about, from [`Receiver::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A file header. Call [`Receiver::reject`] before the next `poll_transmit` to refuse it.
    FileHeader {
        /// Index of the file in the batch.
        index: u32,
        /// File name bytes as sent (no NUL).
        name: &'a [u8],
        /// Size from the header, if it had one.
        size: Option<u64>,
    },
    /// File data, padding removed when the header declared a size.
    Data {
        /// Index of the file in the batch.
        index: u32,
        /// Offset of `data` in the file.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The sender's EOT for this file was accepted.
    EndOfFile {
        /// Index of the file in the batch.
        index: u32,
        /// Bytes delivered for the file.
        size: u64,
    },
    /// The empty block 0 ending the batch arrived. With [`Quirks::defer_final_ack`] the
    /// caller must now call [`Receiver::accept`] or [`Receiver::reject`].
    EndOfBatch {
        /// Number of files received.
        files: u32,
    },
    /// Terminal: cancelled by the sender, the user, or the caller.
    Cancelled(RecvError),
    /// Terminal: protocol failure.
    Failed(RecvError),
}

/// State of a [`Receiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvStatus {
    /// Still running.
    InProgress,
    /// End of batch received; waiting for [`Receiver::accept`] / [`Receiver::reject`].
    AwaitingDecision,
    /// Batch received and acknowledged.
    Done,
    /// Stopped with an error or a cancellation.
    Failed(RecvError),
}

/// Counters of a [`Receiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReceiverStats {
    /// Blocks accepted (headers, data, end of batch).
    pub blocks_ok: u64,
    /// Repeats of the previous block (ACKed and dropped, or NAKed by the Device OS model).
    pub duplicates: u64,
    /// Faults seen (timeouts, bad blocks, garbage), counted or not.
    pub faults: u64,
    /// File bytes delivered in [`Event::Data`].
    pub bytes_received: u64,
    /// Bytes passed to [`Receiver::handle_input`] and consumed.
    pub wire_bytes_in: u64,
    /// Bytes handed out by [`Receiver::poll_transmit`].
    pub wire_bytes_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first byte of a block (or EOT, CAN, console key).
    Idle,
    /// One CAN seen where a block should start.
    CanSeen,
    /// Collecting a block.
    InBlock,
    /// Dropping input until the line is quiet, then NAK.
    Purge {
        since: u64,
    },
    /// EOT seen; accepted after the quiet time.
    EotWait,
    /// End of batch received; waiting for the event to be taken and/or the caller's decision.
    AwaitDecision,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Header { name_len: usize, size: Option<u64> },
    Data { offset: u64, len: usize },
    EndOfFile { index: u32, size: u64 },
    EndOfBatch,
}

/// Sans-IO YMODEM batch receiver.
///
/// Loop: pass received bytes to [`handle_input`](Receiver::handle_input) (it returns how many
/// it consumed and stops after a byte that produced an event), drain
/// [`poll_event`](Receiver::poll_event), write what [`poll_transmit`](Receiver::poll_transmit)
/// returns, and call [`handle_timeout`](Receiver::handle_timeout) when
/// [`next_deadline`](Receiver::next_deadline) has passed. The reply to a block (ACK) is
/// released when its event is taken, so the caller can still [`reject`](Receiver::reject) it.
///
/// Without quirks the receiver behaves like lrzsz `rb`, plus two integrity checks: an EOT is
/// only accepted after [`ReceiverConfig::eot_quiet_ms`] of silence, and an EOT that arrives
/// before the size declared in the header is NAKed ([`Fault::PrematureEot`]). Every other
/// EOT is ACKed, including repeats. After a bad block it drops input until the line has been
/// quiet for [`ReceiverConfig::byte_timeout_ms`], then NAKs (or sends `C` while nothing has
/// been received in the current file).
///
/// ```
/// use modflash_ymodem::{Event, Receiver, ReceiverConfig};
/// let mut rx = Receiver::new(ReceiverConfig::default());
/// assert_eq!(rx.poll_transmit(0), Some(&b"C"[..]));
/// let mut input: &[u8] = &[]; // bytes read from the port
/// while !input.is_empty() {
///     let used = rx.handle_input(input, 0);
///     input = &input[used..];
///     while let Some(event) = rx.poll_event() {
///         if let Event::Data { offset, data, .. } = event {
///             let _ = (offset, data); // store the bytes
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Receiver {
    cfg: ReceiverConfig,
    state: State,
    phase: Phase,
    buf: [u8; MAX_FRAME],
    pos: usize,
    need: usize,
    /// Index of the current file (files completed so far).
    file: u32,
    /// Data blocks accepted in the current file.
    blocks: u32,
    offset: u64,
    declared: Option<u64>,
    errors: u32,
    session_begun: bool,
    timer: Timer,
    out: [u8; OUT_CAP],
    out_len: usize,
    pending: Option<Pending>,
    pending_reply: [u8; 2],
    pending_reply_len: usize,
    terminal_reported: bool,
    status: RecvStatus,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver; unless [`Quirks::no_initial_c`] is set, the first
    /// [`poll_transmit`](Receiver::poll_transmit) returns the start request (`C` or NAK).
    pub fn new(config: ReceiverConfig) -> Self {
        let mut r = Receiver {
            cfg: config,
            state: State::Idle,
            phase: Phase::Header,
            buf: [0; MAX_FRAME],
            pos: 0,
            need: 0,
            file: 0,
            blocks: 0,
            offset: 0,
            declared: None,
            errors: 0,
            session_begun: false,
            timer: Timer::Pending(config.block_timeout_ms),
            out: [0; OUT_CAP],
            out_len: 0,
            pending: None,
            pending_reply: [0; 2],
            pending_reply_len: 0,
            terminal_reported: false,
            status: RecvStatus::InProgress,
            stats: ReceiverStats::default(),
        };
        if !config.quirks.no_initial_c {
            let start = r.start_request();
            r.queue(&[start]);
        }
        r
    }

    /// Feeds bytes from the sender; returns how many were consumed.
    ///
    /// Consumption stops right after a byte that produced an event, and nothing is consumed
    /// while an event is waiting in [`poll_event`](Receiver::poll_event): call it until it
    /// returns `None`, then pass the rest of the input again. With no event waiting, at least
    /// one byte of a non-empty input is consumed.
    #[must_use = "unconsumed bytes must be passed again after draining poll_event"]
    pub fn handle_input(&mut self, input: &[u8], now_ms: u64) -> usize {
        if self.pending.is_some() {
            return 0;
        }
        self.timer.arm(now_ms);
        let mut consumed = input.len();
        for (i, &b) in input.iter().enumerate() {
            if matches!(self.state, State::Finished | State::AwaitDecision) {
                break;
            }
            self.on_byte(b, now_ms);
            if self.pending.is_some() || self.state == State::Finished {
                consumed = i.saturating_add(1);
                break;
            }
        }
        self.stats.wire_bytes_in = self.stats.wire_bytes_in.saturating_add(consumed as u64);
        consumed
    }

    /// Takes the next event, releasing the reply that goes with it. After the batch ends or
    /// fails, yields one terminal `Cancelled`/`Failed` event (not for success).
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some(p) = self.pending.take() {
            let reply = self.pending_reply;
            let n = self.pending_reply_len.min(reply.len());
            self.pending_reply_len = 0;
            self.queue(reply.get(..n).unwrap_or(&[]));
            if p == Pending::EndOfBatch {
                if self.cfg.quirks.defer_final_ack {
                    self.status = RecvStatus::AwaitingDecision;
                } else {
                    self.state = State::Finished;
                    self.status = RecvStatus::Done;
                }
            }
            return Some(self.event(p));
        }
        if let RecvStatus::Failed(err) = self.status {
            if !self.terminal_reported {
                self.terminal_reported = true;
                return Some(if err.is_cancellation() {
                    Event::Cancelled(err)
                } else {
                    Event::Failed(err)
                });
            }
        }
        None
    }

    /// Bytes to write to the sender now, if any.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<&[u8]> {
        self.timer.arm(now_ms);
        if self.out_len == 0 {
            return None;
        }
        let len = self.out_len.min(self.out.len());
        self.out_len = 0;
        self.stats.wire_bytes_out = self.stats.wire_bytes_out.saturating_add(len as u64);
        self.out.get(..len)
    }

    /// Acts on an expired deadline (ask again, NAK an incomplete block, end a purge, accept
    /// a quiet EOT, or give up). Does nothing before the deadline or while an event waits.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.pending.is_some() {
            return;
        }
        self.timer.arm(now_ms);
        if !self.timer.expired(now_ms) {
            return;
        }
        self.timer = Timer::Off;
        match self.state {
            State::Idle | State::CanSeen => self.fault(Fault::Timeout, false, now_ms),
            State::InBlock => self.fault(
                Fault::IncompleteBlock {
                    received: self.pos,
                    expected: self.need,
                },
                false,
                now_ms,
            ),
            State::Purge { .. } => {
                let reply = self.error_reply();
                self.queue(&[reply]);
                self.state = State::Idle;
                self.timer = Timer::Pending(self.cfg.block_timeout_ms);
            }
            State::EotWait => self.accept_eot(),
            State::AwaitDecision | State::Finished => {}
        }
    }

    /// When [`handle_timeout`](Receiver::handle_timeout) should be called next.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            State::Finished | State::AwaitDecision => None,
            _ if self.pending.is_some() => None,
            _ => self.timer.deadline(),
        }
    }

    /// Accepts the batch after [`Event::EndOfBatch`] when [`Quirks::defer_final_ack`] is set:
    /// sends the final ACK. No effect in any other state.
    pub fn accept(&mut self) {
        if self.status == RecvStatus::AwaitingDecision {
            self.queue(&[ACK]);
            self.state = State::Finished;
            self.status = RecvStatus::Done;
        }
    }

    /// Refuses what was just reported (a header, e.g. too big; a data block that could not be
    /// written; or the batch at the deferred final ACK): drops the unsent reply and sends
    /// CAN CAN. No effect once done or failed.
    pub fn reject(&mut self) {
        let at = self.position();
        self.abort(RecvError::Rejected { at });
    }

    /// Cancels the transfer with CAN CAN. No effect once done or failed.
    pub fn cancel(&mut self) {
        let at = self.position();
        self.abort(RecvError::Cancelled { at });
    }

    /// Current state.
    pub fn status(&self) -> RecvStatus {
        self.status
    }

    /// True once done or failed (a deferred decision is not finished).
    pub fn is_finished(&self) -> bool {
        matches!(self.status, RecvStatus::Done | RecvStatus::Failed(_))
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    fn abort(&mut self, err: RecvError) {
        if matches!(self.status, RecvStatus::Done | RecvStatus::Failed(_)) {
            return;
        }
        self.pending = None;
        self.pending_reply_len = 0;
        self.out_len = 0;
        self.fail(err, true);
    }

    fn device(&self) -> bool {
        self.cfg.quirks.device_error_handling
    }

    fn check_mode(&self) -> CheckMode {
        if self.cfg.checksum_mode {
            CheckMode::Checksum
        } else {
            CheckMode::Crc16
        }
    }

    fn start_request(&self) -> u8 {
        match self.check_mode() {
            CheckMode::Crc16 => CRC_REQUEST,
            CheckMode::Checksum => NAK,
        }
    }

    /// Reply to a timeout or a bad block.
    fn error_reply(&self) -> u8 {
        if self.device() {
            CRC_REQUEST
        } else if self.phase == Phase::Header || self.blocks == 0 {
            // Nothing received in this phase yet: ask again, like lrzsz.
            self.start_request()
        } else {
            NAK
        }
    }

    fn position(&self) -> RecvPosition {
        RecvPosition {
            file: self.file,
            block: match self.phase {
                Phase::Header => 0,
                Phase::Data => self.blocks.saturating_add(1),
            },
            offset: self.offset,
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.out.get_mut(self.out_len) {
                *slot = b;
                self.out_len += 1;
            }
        }
    }

    fn set_pending(&mut self, p: Pending, reply: &[u8]) {
        let n = reply.len().min(self.pending_reply.len());
        if let (Some(dst), Some(src)) = (self.pending_reply.get_mut(..n), reply.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pending_reply_len = n;
        self.pending = Some(p);
    }

    fn fail(&mut self, err: RecvError, send_cancel: bool) {
        self.status = RecvStatus::Failed(err);
        self.state = State::Finished;
        self.timer = Timer::Off;
        if send_cancel {
            if self.device() {
                self.queue(&[CAN, CAN]);
            } else {
                self.queue(&[CAN, CAN, CAN, CAN, CAN, BS, BS, BS, BS, BS]);
            }
        }
    }

    /// Handles a recoverable error: count it, then purge and NAK (strict) or answer `C` at
    /// once (Device OS); cancel when there are too many.
    fn fault(&mut self, fault: Fault, purge: bool, now_ms: u64) {
        self.stats.faults = self.stats.faults.saturating_add(1);
        let counts = !self.device() || self.session_begun;
        if counts {
            self.errors = self.errors.saturating_add(1);
        }
        if self.errors > self.cfg.max_errors {
            let err = RecvError::TooManyErrors {
                errors: self.errors,
                last: fault,
                at: self.position(),
            };
            self.fail(err, true);
            return;
        }
        if purge && !self.device() {
            self.state = State::Purge { since: now_ms };
            self.timer = Timer::Armed(self.purge_deadline(now_ms, now_ms));
        } else {
            let reply = self.error_reply();
            self.queue(&[reply]);
            self.state = State::Idle;
            self.timer = Timer::Pending(self.cfg.block_timeout_ms);
        }
    }

    fn purge_deadline(&self, since: u64, now_ms: u64) -> u64 {
        let quiet = now_ms.saturating_add(self.cfg.byte_timeout_ms);
        let cap = since.saturating_add(self.cfg.block_timeout_ms);
        quiet.min(cap).max(now_ms)
    }

    fn on_byte(&mut self, b: u8, now_ms: u64) {
        match self.state {
            State::Idle => self.on_idle_byte(b, now_ms),
            State::CanSeen => {
                if b == CAN {
                    if self.device() {
                        self.queue(&[ACK]);
                    }
                    let at = self.position();
                    self.fail(RecvError::CancelledBySender { at }, false);
                } else if self.device() {
                    self.fault(Fault::UnexpectedByte(CAN), false, now_ms);
                } else {
                    self.state = State::Idle;
                    self.on_idle_byte(b, now_ms);
                }
            }
            State::InBlock => {
                if let Some(slot) = self.buf.get_mut(self.pos) {
                    *slot = b;
                }
                self.pos = self.pos.saturating_add(1);
                self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.byte_timeout_ms));
                if self.pos >= self.need {
                    self.process_block(now_ms);
                }
            }
            State::Purge { since } => {
                self.timer = Timer::Armed(self.purge_deadline(since, now_ms));
            }
            State::EotWait => self.fault(Fault::EotNotAlone, true, now_ms),
            State::AwaitDecision | State::Finished => {}
        }
    }

    fn on_idle_byte(&mut self, b: u8, now_ms: u64) {
        let console = self.cfg.quirks.console_bytes;
        match b {
            SOH | STX => {
                let size = if b == STX { BLOCK_1K } else { BLOCK_128 };
                // Device OS always reads a 2-byte trailer.
                let trailer = if self.device() {
                    2
                } else {
                    self.check_mode().trailer_len()
                };
                self.buf[0] = b;
                self.pos = 1;
                self.need = 3 + size + trailer;
                self.state = State::InBlock;
                self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.byte_timeout_ms));
            }
            EOT => self.on_eot(now_ms),
            CAN => {
                self.state = State::CanSeen;
                self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.byte_timeout_ms));
            }
            b' ' if console => self.queue(&[ACK]),
            b'a' | b'A' if console => {
                let at = self.position();
                self.fail(RecvError::AbortedByUser { at }, true);
            }
            _ => self.fault(Fault::UnexpectedByte(b), true, now_ms),
        }
    }

    fn on_eot(&mut self, now_ms: u64) {
        if !self.device() && self.phase == Phase::Data {
            if let Some(declared) = self.declared {
                if self.offset < declared {
                    let fault = Fault::PrematureEot {
                        received: self.offset,
                        declared,
                    };
                    self.fault(fault, true, now_ms);
                    return;
                }
            }
        }
        if self.cfg.eot_quiet_ms > 0 && !self.device() {
            self.state = State::EotWait;
            self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.eot_quiet_ms));
        } else {
            self.accept_eot();
        }
    }

    /// ACKs an EOT (plus `C` unless [`Quirks::no_c_after_eot`]).
    fn accept_eot(&mut self) {
        let mut reply = [ACK, 0];
        let mut n = 1;
        if !self.cfg.quirks.no_c_after_eot {
            reply[1] = self.start_request();
            n = 2;
        }
        let reply = reply.get(..n).unwrap_or(&[]);
        self.state = State::Idle;
        self.timer = Timer::Pending(self.cfg.block_timeout_ms);
        match self.phase {
            Phase::Data => {
                let p = Pending::EndOfFile {
                    index: self.file,
                    size: self.offset,
                };
                self.set_pending(p, reply);
                self.phase = Phase::Header;
                self.file = self.file.saturating_add(1);
                self.blocks = 0;
                self.offset = 0;
                self.declared = None;
            }
            // A repeated EOT (our ACK was lost) or a stray one: ACK it again.
            Phase::Header => self.queue(reply),
        }
    }

    fn process_block(&mut self, now_ms: u64) {
        self.state = State::Idle;
        self.timer = Timer::Pending(self.cfg.block_timeout_ms);
        let body_len = self.need.saturating_sub(3);
        let size = if body_len >= BLOCK_1K {
            BLOCK_1K
        } else {
            BLOCK_128
        };
        let trailer_len = body_len.saturating_sub(size);
        let seq = self.buf[1];
        let complement = self.buf[2];
        let strict = !self.device();
        if seq != !complement {
            self.fault(Fault::BadSeqComplement { seq, complement }, strict, now_ms);
            return;
        }
        let payload = self.buf.get(3..3 + size).unwrap_or(&[]);
        let trailer = self
            .buf
            .get(3 + size..3 + size + trailer_len)
            .unwrap_or(&[]);
        if !self.cfg.quirks.skip_crc_check {
            let fault = match (self.check_mode(), trailer) {
                (CheckMode::Crc16, &[hi, lo]) => {
                    let computed = crc16_xmodem(payload);
                    let received = u16::from_be_bytes([hi, lo]);
                    (computed != received).then_some(Fault::BadCrc { computed, received })
                }
                (CheckMode::Checksum, &[received]) => {
                    let computed = checksum8(payload);
                    (computed != received).then_some(Fault::BadChecksum { computed, received })
                }
                // Device framing in checksum mode: a 2-byte trailer, checked as a checksum.
                (CheckMode::Checksum, &[received, _]) => {
                    let computed = checksum8(payload);
                    (computed != received).then_some(Fault::BadChecksum { computed, received })
                }
                _ => Some(Fault::IncompleteBlock {
                    received: self.pos,
                    expected: self.need,
                }),
            };
            if let Some(fault) = fault {
                self.fault(fault, true, now_ms);
                return;
            }
        }
        if self.device() {
            // Device OS: any well-framed packet resets the error count.
            self.errors = 0;
        }
        match self.phase {
            Phase::Header => self.header_block(seq, size, now_ms),
            Phase::Data => self.data_block(seq, size),
        }
    }

    fn header_block(&mut self, seq: u8, size: usize, now_ms: u64) {
        if seq != 0 {
            let fault = Fault::UnexpectedSeq {
                expected: 0,
                got: seq,
            };
            if self.device() {
                self.stats.faults = self.stats.faults.saturating_add(1);
                self.queue(&[NAK]);
            } else {
                self.fault(fault, false, now_ms);
            }
            return;
        }
        let payload = self.buf.get(3..3 + size).unwrap_or(&[]);
        if payload.first().copied().unwrap_or(0) == 0 {
            self.stats.blocks_ok = self.stats.blocks_ok.saturating_add(1);
            self.errors = 0;
            self.state = State::AwaitDecision;
            self.timer = Timer::Off;
            let reply: &[u8] = if self.cfg.quirks.defer_final_ack {
                &[]
            } else {
                &[ACK]
            };
            self.set_pending(Pending::EndOfBatch, reply);
            return;
        }
        let nul = payload.iter().position(|&b| b == 0);
        let name_len = match nul {
            Some(n) if !self.device() || n <= DEVICE_NAME_MAX => n,
            _ if self.device() => DEVICE_NAME_MAX.min(payload.len()),
            _ => {
                let at = self.position();
                self.fail(RecvError::MalformedHeader { at }, true);
                return;
            }
        };
        let meta = payload.get(name_len.saturating_add(1)..).unwrap_or(&[]);
        let max_digits = if self.device() {
            DEVICE_SIZE_MAX
        } else {
            meta.len()
        };
        let size_field = parse_decimal(meta.get(..max_digits.min(meta.len())).unwrap_or(&[]));
        self.stats.blocks_ok = self.stats.blocks_ok.saturating_add(1);
        self.errors = 0;
        self.session_begun = true;
        self.phase = Phase::Data;
        self.blocks = 0;
        self.offset = 0;
        self.declared = size_field;
        let reply = [ACK, self.start_request()];
        self.set_pending(
            Pending::Header {
                name_len,
                size: size_field,
            },
            &reply,
        );
    }

    fn data_block(&mut self, seq: u8, size: usize) {
        let expected = (self.blocks.wrapping_add(1) & 0xFF) as u8;
        let previous = (self.blocks & 0xFF) as u8;
        if seq == expected {
            self.stats.blocks_ok = self.stats.blocks_ok.saturating_add(1);
            self.errors = 0;
            self.session_begun = true;
            self.blocks = self.blocks.saturating_add(1);
            let len = match self.declared {
                Some(declared) => {
                    let left = declared.saturating_sub(self.offset);
                    usize::try_from(left).map_or(size, |l| l.min(size))
                }
                None => size,
            };
            let offset = self.offset;
            self.offset = self.offset.saturating_add(len as u64);
            self.stats.bytes_received = self.stats.bytes_received.saturating_add(len as u64);
            if len > 0 {
                self.set_pending(Pending::Data { offset, len }, &[ACK]);
            } else {
                // Only padding beyond the declared size.
                self.queue(&[ACK]);
            }
        } else if seq == previous {
            self.stats.duplicates = self.stats.duplicates.saturating_add(1);
            if self.device() {
                self.queue(&[NAK]);
            } else {
                self.queue(&[ACK]);
            }
        } else if self.device() {
            self.stats.faults = self.stats.faults.saturating_add(1);
            self.queue(&[NAK]);
        } else {
            let at = self.position();
            self.fail(
                RecvError::SequenceError {
                    expected,
                    got: seq,
                    at,
                },
                true,
            );
        }
    }

    fn event(&self, p: Pending) -> Event<'_> {
        match p {
            Pending::Header { name_len, size } => Event::FileHeader {
                index: self.file,
                name: self
                    .buf
                    .get(3..3usize.saturating_add(name_len))
                    .unwrap_or(&[]),
                size,
            },
            Pending::Data { offset, len } => Event::Data {
                index: self.file,
                offset,
                data: self.buf.get(3..3usize.saturating_add(len)).unwrap_or(&[]),
            },
            Pending::EndOfFile { index, size } => Event::EndOfFile { index, size },
            Pending::EndOfBatch => Event::EndOfBatch { files: self.file },
        }
    }
}

/// Leading decimal digits of `field` (up to the first non-digit); `None` if there are none or
/// the value overflows.
fn parse_decimal(field: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    let mut digits = 0usize;
    for &b in field {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn block(seq: u8, payload: &[u8], size: usize) -> Vec<u8> {
        let mut v = std::vec![if size == 1024 { STX } else { SOH }, seq, !seq];
        let mut body = payload.to_vec();
        body.resize(size, 0x1A);
        v.extend_from_slice(&body);
        v.extend_from_slice(&crc16_xmodem(&body).to_be_bytes());
        v
    }

    fn header(name: &str, size: u64) -> Vec<u8> {
        let mut p = Vec::from(name.as_bytes());
        p.push(0);
        p.extend_from_slice(std::format!("{size} 0 100644").as_bytes());
        p.resize(128, 0);
        block(0, &p, 128)
    }

    /// Feeds `input` fully, collecting owned events.
    fn feed(r: &mut Receiver, mut input: &[u8], now: u64) -> Vec<std::string::String> {
        let mut log = Vec::new();
        loop {
            let n = r.handle_input(input, now);
            input = &input[n..];
            while let Some(ev) = r.poll_event() {
                log.push(std::format!("{ev:?}"));
            }
            if input.is_empty() {
                return log;
            }
            assert!(n > 0 || r.pending.is_none(), "no progress");
        }
    }

    fn take(r: &mut Receiver, now: u64) -> Vec<u8> {
        r.poll_transmit(now).map(<[u8]>::to_vec).unwrap_or_default()
    }

    #[test]
    fn strict_receive_truncates_and_acks() {
        let cfg = ReceiverConfig {
            eot_quiet_ms: 0,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(cfg);
        assert_eq!(take(&mut r, 0), b"C");
        let log = feed(&mut r, &header("a.bin", 3), 1);
        assert_eq!(log.len(), 1);
        assert!(log[0].contains("FileHeader") && log[0].contains("Some(3)"));
        assert_eq!(take(&mut r, 1), [ACK, b'C']);
        let log = feed(&mut r, &block(1, b"xyz", 128), 2);
        assert!(log[0].contains("data: [120, 121, 122]"), "{log:?}");
        assert_eq!(take(&mut r, 2), [ACK]);
        let log = feed(&mut r, &[EOT], 3);
        assert!(log[0].contains("EndOfFile { index: 0, size: 3 }"));
        assert_eq!(take(&mut r, 3), [ACK, b'C']);
        let log = feed(&mut r, &block(0, &[0; 128], 128), 4);
        assert_eq!(log, ["EndOfBatch { files: 1 }"]);
        assert_eq!(take(&mut r, 4), [ACK]);
        assert_eq!(r.status(), RecvStatus::Done);
    }

    #[test]
    fn device_quirks_defer_final_ack_and_no_c() {
        let cfg = ReceiverConfig {
            block_timeout_ms: 50,
            byte_timeout_ms: 50,
            ..ReceiverConfig::device_os()
        };
        let mut r = Receiver::new(cfg);
        assert!(r.poll_transmit(0).is_none(), "no initial C");
        assert_eq!(r.next_deadline(), Some(50));
        r.handle_timeout(50);
        assert_eq!(take(&mut r, 50), b"C", "C on timeout");
        // Header with a zero CRC is accepted (CRC not checked).
        let mut h = header("binary", 2);
        let n = h.len();
        h[n - 2..].copy_from_slice(&[0, 0]);
        feed(&mut r, &h, 60);
        assert_eq!(take(&mut r, 60), [ACK, b'C']);
        feed(&mut r, &block(1, b"hi", 128), 61);
        assert_eq!(take(&mut r, 61), [ACK]);
        // Space is ACKed and ignored.
        feed(&mut r, b" ", 62);
        assert_eq!(take(&mut r, 62), [ACK]);
        feed(&mut r, &[EOT], 63);
        assert_eq!(take(&mut r, 63), [ACK], "no C after EOT");
        let log = feed(&mut r, &block(0, &[0; 128], 128), 64);
        assert_eq!(log, ["EndOfBatch { files: 1 }"]);
        assert!(r.poll_transmit(64).is_none(), "final ACK deferred");
        assert_eq!(r.status(), RecvStatus::AwaitingDecision);
        r.accept();
        assert_eq!(take(&mut r, 65), [ACK]);
        assert_eq!(r.status(), RecvStatus::Done);
    }

    #[test]
    fn device_abort_key_and_reject() {
        let mut r = Receiver::new(ReceiverConfig::device_os());
        let log = feed(&mut r, b"a", 0);
        assert_eq!(take(&mut r, 0), [CAN, CAN]);
        assert!(log[0].starts_with("Cancelled(AbortedByUser"));

        let mut r = Receiver::new(ReceiverConfig::device_os());
        feed(&mut r, &header("big", 1 << 30), 0);
        r.reject();
        assert_eq!(
            take(&mut r, 0),
            [CAN, CAN],
            "header ACK replaced by CAN CAN"
        );
        assert!(matches!(
            r.status(),
            RecvStatus::Failed(RecvError::Rejected { .. })
        ));
    }

    #[test]
    fn duplicate_is_acked_and_dropped() {
        let mut r = Receiver::new(ReceiverConfig::default());
        take(&mut r, 0);
        feed(&mut r, &header("d", 256), 0);
        feed(&mut r, &block(1, &[1; 128], 128), 0);
        take(&mut r, 0);
        let log = feed(&mut r, &block(1, &[1; 128], 128), 0);
        assert!(log.is_empty());
        assert_eq!(take(&mut r, 0), [ACK]);
        assert_eq!(r.stats().duplicates, 1);
        let log = feed(&mut r, &block(3, &[1; 128], 128), 0);
        assert!(log[0].contains("SequenceError"), "{log:?}");
    }

    #[test]
    fn bad_crc_purges_then_naks() {
        let cfg = ReceiverConfig {
            byte_timeout_ms: 20,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(cfg);
        take(&mut r, 0);
        feed(&mut r, &header("p", 300), 0);
        feed(&mut r, &block(1, &[5; 128], 128), 0);
        take(&mut r, 0);
        let mut bad = block(2, &[6; 128], 128);
        bad[50] ^= 0x40;
        feed(&mut r, &bad, 10);
        assert!(r.poll_transmit(10).is_none(), "waits for quiet line");
        feed(&mut r, b"junk", 15);
        assert_eq!(r.next_deadline(), Some(35));
        r.handle_timeout(35);
        assert_eq!(take(&mut r, 35), [NAK]);
        assert_eq!(r.stats().faults, 1);
    }

    #[test]
    fn premature_eot_is_refused() {
        let cfg = ReceiverConfig {
            byte_timeout_ms: 20,
            eot_quiet_ms: 0,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(cfg);
        take(&mut r, 0);
        feed(&mut r, &header("p", 300), 0);
        feed(&mut r, &block(1, &[5; 128], 128), 0);
        take(&mut r, 0);
        let log = feed(&mut r, &[EOT], 1);
        assert!(log.is_empty());
        r.handle_timeout(21);
        assert_eq!(take(&mut r, 21), [NAK]);
    }

    #[test]
    fn too_many_timeouts_cancel() {
        let cfg = ReceiverConfig {
            block_timeout_ms: 10,
            max_errors: 2,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(cfg);
        let mut now = 0;
        for _ in 0..3 {
            take(&mut r, now);
            now = r.next_deadline().unwrap();
            r.handle_timeout(now);
        }
        let out = take(&mut r, now);
        assert_eq!(&out[..2], &[CAN, CAN]);
        let ev = std::format!("{:?}", r.poll_event());
        assert!(ev.contains("TooManyErrors"), "{ev}");
        let msg = match r.status() {
            RecvStatus::Failed(e) => std::format!("{e}"),
            s => panic!("{s:?}"),
        };
        assert_eq!(
            msg,
            "too many errors (3) at header block of file #0; last error: timeout waiting for a block"
        );
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_decimal(b"123 456"), Some(123));
        assert_eq!(parse_decimal(b"99\0"), Some(99));
        assert_eq!(parse_decimal(b" 1"), None);
        assert_eq!(parse_decimal(b"99999999999999999999999"), None);
    }
}
