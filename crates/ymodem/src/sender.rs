//! YMODEM batch sender (host side).

use core::fmt;

use crate::{
    checksum8, crc16_xmodem, CheckMode, Cursor, Timer, ACK, BLOCK_128, BLOCK_1K, BS, CAN,
    CRC_REQUEST, EOT, MAX_FRAME, NAK, SOH, STX, SUB,
};

/// Remaining bytes at or below which the sender switches from 1K to 128-byte blocks (`sb -k`).
const SMALL_TAIL: usize = 896;

/// What the sender emits to cancel: CANs (two are enough), then backspaces like lrzsz.
const CANCEL_SEQUENCE: [u8; 10] = [CAN, CAN, CAN, CAN, CAN, BS, BS, BS, BS, BS];

/// One file of a batch, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File<'a> {
    /// Name sent in the header block: non-empty, without NUL bytes.
    pub name: &'a str,
    /// File contents.
    pub data: &'a [u8],
}

impl<'a> File<'a> {
    /// A file named `name` with contents `data`.
    pub const fn new(name: &'a str, data: &'a [u8]) -> Self {
        File { name, data }
    }
}

/// Block layout used by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Like `sb -k`: 1K blocks, 128-byte blocks once ≤ 896 bytes remain, 0x1A padding, real
    /// CRC-16 (or checksum). Header `name\0<size> 0 100644`.
    #[default]
    Standard,
    /// What particle-cli 1.x–3.16 sends (for benchmarks only): 128-byte blocks, zero padding,
    /// the CRC bytes sent as `00 00`, header `name\0<size> `. Only a receiver that does not
    /// check the CRC (the Device OS one) accepts it.
    ParticleCli,
}

/// Sender settings. [`SenderConfig::default`] suits lrzsz `rb`; [`SenderConfig::device_os`]
/// suits the Particle Device OS listening-mode receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Block layout.
    pub scheme: Scheme,
    /// The receiver does not ask for headers with `C`: send the first header without waiting
    /// for `C`, and the next header (or the end-of-batch block) right after an EOT is ACKed.
    /// CRC-16 mode is assumed until the receiver says otherwise.
    pub start_without_c: bool,
    /// Retransmissions allowed per block (and per EOT) before giving up.
    pub max_retries: u32,
    /// How long to wait for the receiver's first `C`/NAK before failing.
    pub start_timeout_ms: u64,
    /// How long to wait for an ACK before retransmitting; also how long to wait for the `C`
    /// that should follow a header ACK or an EOT ACK before going on without it.
    pub ack_timeout_ms: u64,
    /// How long to wait for the ACK of the end-of-batch block. When it does not come the
    /// transfer still counts as done, with [`Warnings::final_ack_missing`] set (lrzsz `rb`
    /// sometimes loses that ACK when it exits).
    pub final_ack_timeout_ms: u64,
    /// Hold a block this long after the receiver's byte that triggered it before handing it
    /// out. lrzsz `rb` flushes its input right after sending `C`/ACK, so on a pty a block
    /// that arrives microseconds later is lost and costs a retransmission; a few
    /// milliseconds avoid that. 0 (the default) answers at once.
    pub reply_delay_ms: u64,
}

impl SenderConfig {
    /// Settings for the Device OS receiver: header sent without waiting for `C`, and 10 s
    /// for the final ACK, which the device only sends after validating the image.
    pub const fn device_os() -> Self {
        SenderConfig {
            start_without_c: true,
            final_ack_timeout_ms: 10_000,
            ..Self::DEFAULT
        }
    }

    const DEFAULT: SenderConfig = SenderConfig {
        scheme: Scheme::Standard,
        start_without_c: false,
        max_retries: 10,
        start_timeout_ms: 60_000,
        ack_timeout_ms: 10_000,
        final_ack_timeout_ms: 2_000,
        reply_delay_ms: 0,
    };
}

impl Default for SenderConfig {
    /// Standard scheme, wait for `C`, 10 retries, 60 s start, 10 s ACK, 2 s final ACK, no
    /// reply delay.
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where in the batch something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStage {
    /// Waiting for the receiver's first `C` or NAK.
    Start,
    /// The header block (block 0) of a file.
    Header,
    /// A data block.
    Data {
        /// Block number within the file, from 1 (the seq byte is this modulo 256).
        block: u32,
        /// Byte offset of the block's first payload byte in the file.
        offset: u64,
    },
    /// The EOT that ends a file.
    Eot,
    /// The empty block 0 that ends the batch.
    EndOfBatch,
}

/// What made the sender retransmit last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// No answer within the timeout.
    Timeout,
    /// The receiver sent NAK.
    Nak,
    /// The receiver sent `C` (it lost or flushed the block).
    CRequest,
}

impl fmt::Display for RetryCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryCause::Timeout => "timeout",
            RetryCause::Nak => "NAK",
            RetryCause::CRequest => "'C'",
        })
    }
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendError {
    /// A file cannot be sent: empty name, NUL in the name, or a header longer than 1K.
    InvalidFile {
        /// Index of the file in the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The receiver never sent `C` or NAK.
    NoStartRequest {
        /// How long the sender waited.
        waited_ms: u64,
    },
    /// The receiver sent CAN CAN.
    CancelledByReceiver {
        /// Index of the file being sent.
        file: usize,
        /// What the sender was waiting for.
        stage: SendStage,
    },
    /// A block or EOT was not acknowledged after the configured number of retransmissions.
    TooManyRetries {
        /// Index of the file being sent.
        file: usize,
        /// The block that was not acknowledged.
        stage: SendStage,
        /// Retransmissions made.
        retries: u32,
        /// Cause of the last retransmission attempt.
        last: RetryCause,
    },
    /// [`Sender::cancel`] was called.
    Cancelled,
}

struct At(usize, SendStage);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let At(file, stage) = *self;
        match stage {
            SendStage::Start => write!(f, "waiting for the receiver's start request"),
            SendStage::Header => write!(f, "header block of file #{file}"),
            SendStage::Data { block, offset } => {
                write!(
                    f,
                    "data block {block} (byte offset {offset}) of file #{file}"
                )
            }
            SendStage::Eot => write!(f, "EOT of file #{file}"),
            SendStage::EndOfBatch => write!(f, "end-of-batch block"),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SendError::InvalidFile { index, reason } => {
                write!(f, "cannot send file #{index}: {reason}")
            }
            SendError::NoStartRequest { waited_ms } => write!(
                f,
                "receiver never requested the transfer (no 'C' or NAK within {waited_ms} ms)"
            ),
            SendError::CancelledByReceiver { file, stage } => {
                write!(f, "cancelled by receiver (CAN CAN) at {}", At(file, stage))
            }
            SendError::TooManyRetries {
                file,
                stage,
                retries,
                last,
            } => write!(
                f,
                "no ACK for {} after {retries} retransmissions (last cause: {last})",
                At(file, stage)
            ),
            SendError::Cancelled => write!(f, "transfer cancelled by the sender"),
        }
    }
}

impl core::error::Error for SendError {}

/// Non-fatal problems of a finished transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Warnings {
    /// The end-of-batch block was never acknowledged (see
    /// [`SenderConfig::final_ack_timeout_ms`]).
    pub final_ack_missing: bool,
}

impl Warnings {
    /// True if any warning is set.
    pub const fn any(&self) -> bool {
        self.final_ack_missing
    }
}

/// State of a [`Sender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Still running.
    InProgress,
    /// All files sent.
    Done {
        /// Non-fatal problems.
        warnings: Warnings,
    },
    /// Stopped with an error.
    Failed(SendError),
}

/// Progress and cost counters of a [`Sender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SenderStats {
    /// File bytes (padding excluded) whose blocks have been acknowledged.
    pub bytes_acked: u64,
    /// Total file bytes in the batch.
    pub bytes_total: u64,
    /// Files whose EOT has been acknowledged.
    pub files_done: usize,
    /// Blocks handed to the caller for transmission (headers, data, end of batch),
    /// retransmissions included.
    pub blocks_sent: u64,
    /// Blocks or EOTs sent again.
    pub retransmissions: u64,
    /// Times the sender sent something and then waited for a reply (blocks and EOTs,
    /// retransmissions included).
    pub round_trips: u64,
    /// Bytes handed out by [`Sender::poll_transmit`].
    pub wire_bytes_out: u64,
    /// Bytes passed to [`Sender::handle_input`].
    pub wire_bytes_in: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `C`/NAK before sending the header of `file` (end of batch if past the end).
    WaitStart,
    WaitHeaderAck,
    /// Header ACKed; waiting for the `C` that starts the data.
    WaitDataStart,
    WaitDataAck,
    WaitEotAck,
    WaitFinalAck,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Reply,
    Cancel,
}

/// Sans-IO YMODEM batch sender.
///
/// Drive it with [`poll_transmit`](Sender::poll_transmit) (write what it returns),
/// [`handle_input`](Sender::handle_input) (bytes read from the receiver) and
/// [`handle_timeout`](Sender::handle_timeout) (when [`next_deadline`](Sender::next_deadline)
/// has passed) until [`status`](Sender::status) is no longer `InProgress`.
#[derive(Debug, Clone)]
pub struct Sender<'a> {
    files: &'a [File<'a>],
    cfg: SenderConfig,
    phase: Phase,
    /// Index of the file being sent (== files.len() for the end-of-batch block).
    file: usize,
    /// Offset of the current data block in the file.
    offset: usize,
    /// File bytes (padding excluded) in the current data block.
    chunk: usize,
    /// Current data block number (from 1).
    block: u32,
    mode: CheckMode,
    retries: u32,
    header_sent: bool,
    last_can: bool,
    timer: Timer,
    out: [u8; MAX_FRAME],
    out_len: usize,
    out_ready: bool,
    out_kind: Out,
    /// Output queued in reaction to input is held until this instant (`reply_delay_ms`).
    hold_until: Option<u64>,
    status: SendStatus,
    stats: SenderStats,
}

impl<'a> Sender<'a> {
    /// A sender for `files` (may be empty: then only the end-of-batch block is sent).
    ///
    /// Fails if a file has an empty name, a NUL in its name, or a header that does not fit
    /// a 1K block.
    pub fn new(files: &'a [File<'a>], config: SenderConfig) -> Result<Self, SendError> {
        let mut scratch = [0u8; BLOCK_1K];
        let mut total = 0u64;
        for (index, file) in files.iter().enumerate() {
            let reason = if file.name.is_empty() {
                Some("empty file name (an empty name ends the batch)")
            } else if file.name.as_bytes().contains(&0) {
                Some("file name contains a NUL byte")
            } else if format_header(file, config.scheme, &mut scratch).is_none() {
                Some("file name too long for a 1K header block")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(SendError::InvalidFile { index, reason });
            }
            total = total.saturating_add(file.data.len() as u64);
        }
        let mut s = Sender {
            files,
            cfg: config,
            phase: Phase::WaitStart,
            file: 0,
            offset: 0,
            chunk: 0,
            block: 0,
            mode: CheckMode::Crc16,
            retries: 0,
            header_sent: false,
            last_can: false,
            timer: Timer::Pending(config.start_timeout_ms),
            out: [0; MAX_FRAME],
            out_len: 0,
            out_ready: false,
            out_kind: Out::Reply,
            hold_until: None,
            status: SendStatus::InProgress,
            stats: SenderStats {
                bytes_total: total,
                ..SenderStats::default()
            },
        };
        if config.start_without_c {
            s.send_header();
        }
        Ok(s)
    }

    /// Bytes to write to the receiver now, if any. Each block is handed out once per
    /// (re)transmission; the reply timeout starts at `now_ms`.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<&[u8]> {
        if let Some(t) = self.hold_until {
            if self.out_ready && self.out_kind == Out::Reply && now_ms < t {
                return None;
            }
            self.hold_until = None;
        }
        if !self.out_ready {
            self.timer.arm(now_ms);
            return None;
        }
        self.out_ready = false;
        self.timer.arm(now_ms);
        let len = self.out_len.min(self.out.len());
        self.stats.wire_bytes_out = self.stats.wire_bytes_out.saturating_add(len as u64);
        if self.out_kind == Out::Reply {
            self.stats.round_trips = self.stats.round_trips.saturating_add(1);
            if len > 1 {
                self.stats.blocks_sent = self.stats.blocks_sent.saturating_add(1);
            }
        }
        self.out.get(..len)
    }

    /// Feeds bytes received from the receiver.
    ///
    /// While a block is queued but not yet handed out by
    /// [`poll_transmit`](Sender::poll_transmit), input is stale (the receiver cannot have
    /// seen that block yet): it is only scanned for CAN CAN. So once a byte makes the sender
    /// transmit, the rest of `input` is dropped — the sans-IO form of lrzsz's input purge,
    /// which keeps a duplicated ACK from acknowledging a block that was never sent.
    pub fn handle_input(&mut self, input: &[u8], now_ms: u64) {
        self.stats.wire_bytes_in = self.stats.wire_bytes_in.saturating_add(input.len() as u64);
        self.timer.arm(now_ms);
        for &b in input {
            if self.phase == Phase::Finished {
                return;
            }
            if self.out_ready {
                if b == CAN && self.last_can {
                    self.cancelled_by_receiver();
                    return;
                }
                self.last_can = b == CAN;
                continue;
            }
            self.on_byte(b, now_ms);
            if self.out_ready && self.out_kind == Out::Reply && self.cfg.reply_delay_ms > 0 {
                self.hold_until = Some(now_ms.saturating_add(self.cfg.reply_delay_ms));
            }
        }
    }

    /// Acts on an expired deadline (retransmit, go on without `C`, or give up). Does nothing
    /// before [`next_deadline`](Sender::next_deadline).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.timer.arm(now_ms);
        if !self.timer.expired(now_ms) {
            return;
        }
        self.timer = Timer::Off;
        match self.phase {
            Phase::WaitStart => {
                if self.header_sent {
                    // The receiver did not ask for the next header (Device OS never does
                    // after EOT): send it anyway.
                    self.send_header();
                } else {
                    self.fail(
                        SendError::NoStartRequest {
                            waited_ms: self.cfg.start_timeout_ms,
                        },
                        true,
                    );
                }
            }
            Phase::WaitHeaderAck | Phase::WaitDataAck | Phase::WaitEotAck => {
                self.retransmit(RetryCause::Timeout)
            }
            Phase::WaitDataStart => self.send_data_or_eot(),
            Phase::WaitFinalAck => self.finish(Warnings {
                final_ack_missing: true,
            }),
            Phase::Finished => {}
        }
    }

    /// When to call [`handle_timeout`](Sender::handle_timeout) (or, while a block is held
    /// by [`SenderConfig::reply_delay_ms`], [`poll_transmit`](Sender::poll_transmit)) next.
    /// `None` while output is waiting for `poll_transmit` or after the end.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.out_ready {
            return self.hold_until;
        }
        if self.phase == Phase::Finished {
            None
        } else {
            self.timer.deadline()
        }
    }

    /// Aborts the transfer: the next [`poll_transmit`](Sender::poll_transmit) returns
    /// CAN ×5 + BS ×5 and the status becomes `Failed(Cancelled)`. No effect once finished.
    pub fn cancel(&mut self) {
        if self.phase != Phase::Finished {
            self.fail(SendError::Cancelled, true);
        }
    }

    /// Current state.
    pub fn status(&self) -> SendStatus {
        self.status
    }

    /// True once the status is no longer `InProgress`.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Progress and cost counters.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Where the sender currently is.
    fn stage(&self) -> SendStage {
        match self.phase {
            Phase::WaitStart if !self.header_sent => SendStage::Start,
            Phase::WaitStart | Phase::WaitHeaderAck | Phase::WaitFinalAck => {
                if self.file < self.files.len() {
                    SendStage::Header
                } else {
                    SendStage::EndOfBatch
                }
            }
            Phase::WaitDataStart | Phase::WaitDataAck => SendStage::Data {
                block: self.block,
                offset: self.offset as u64,
            },
            Phase::WaitEotAck => SendStage::Eot,
            Phase::Finished => SendStage::EndOfBatch,
        }
    }

    fn on_byte(&mut self, b: u8, now_ms: u64) {
        let was_can = self.last_can;
        self.last_can = b == CAN;
        if b == CAN {
            if was_can {
                self.cancelled_by_receiver();
            }
            return;
        }
        match (self.phase, b) {
            (Phase::WaitStart, CRC_REQUEST) => {
                self.mode = CheckMode::Crc16;
                self.send_header();
            }
            (Phase::WaitStart, NAK) => {
                self.mode = CheckMode::Checksum;
                self.send_header();
            }
            (Phase::WaitHeaderAck, ACK) => {
                self.phase = Phase::WaitDataStart;
                self.retries = 0;
                self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.ack_timeout_ms));
            }
            (Phase::WaitDataStart, CRC_REQUEST) => {
                self.mode = CheckMode::Crc16;
                self.send_data_or_eot();
            }
            (Phase::WaitDataStart, NAK) => self.send_data_or_eot(),
            (Phase::WaitDataAck, ACK) => {
                self.stats.bytes_acked = self.stats.bytes_acked.saturating_add(self.chunk as u64);
                self.offset = self.offset.saturating_add(self.chunk);
                self.block = self.block.saturating_add(1);
                self.send_data_or_eot();
            }
            (Phase::WaitEotAck, ACK) => {
                self.stats.files_done = self.stats.files_done.saturating_add(1);
                self.file = self.file.saturating_add(1);
                if self.cfg.start_without_c {
                    self.send_header();
                } else {
                    self.phase = Phase::WaitStart;
                    self.timer = Timer::Armed(now_ms.saturating_add(self.cfg.ack_timeout_ms));
                }
            }
            (Phase::WaitFinalAck, ACK) => self.finish(Warnings::default()),
            (Phase::WaitHeaderAck | Phase::WaitDataAck | Phase::WaitEotAck, NAK)
            | (Phase::WaitFinalAck, NAK) => self.retransmit(RetryCause::Nak),
            (Phase::WaitHeaderAck | Phase::WaitDataAck | Phase::WaitEotAck, CRC_REQUEST)
            | (Phase::WaitFinalAck, CRC_REQUEST) => self.retransmit(RetryCause::CRequest),
            _ => {}
        }
    }

    fn cancelled_by_receiver(&mut self) {
        let err = SendError::CancelledByReceiver {
            file: self.file,
            stage: self.stage(),
        };
        self.fail(err, false);
    }

    fn fail(&mut self, err: SendError, send_cancel: bool) {
        self.status = SendStatus::Failed(err);
        self.phase = Phase::Finished;
        self.timer = Timer::Off;
        if send_cancel {
            self.out[..CANCEL_SEQUENCE.len()].copy_from_slice(&CANCEL_SEQUENCE);
            self.out_len = CANCEL_SEQUENCE.len();
            self.out_ready = true;
            self.out_kind = Out::Cancel;
        } else {
            self.out_ready = false;
        }
    }

    fn finish(&mut self, warnings: Warnings) {
        self.status = SendStatus::Done { warnings };
        self.phase = Phase::Finished;
        self.timer = Timer::Off;
        self.out_ready = false;
    }

    fn reply_timeout(&self) -> u64 {
        if self.phase == Phase::WaitFinalAck {
            self.cfg.final_ack_timeout_ms
        } else {
            self.cfg.ack_timeout_ms
        }
    }

    fn queue(&mut self, phase: Phase) {
        self.phase = phase;
        self.out_ready = true;
        self.out_kind = Out::Reply;
        self.retries = 0;
        self.timer = Timer::Pending(self.reply_timeout());
    }

    fn retransmit(&mut self, cause: RetryCause) {
        if self.retries >= self.cfg.max_retries {
            let err = SendError::TooManyRetries {
                file: self.file,
                stage: self.stage(),
                retries: self.retries,
                last: cause,
            };
            self.fail(err, true);
            return;
        }
        self.retries = self.retries.saturating_add(1);
        self.stats.retransmissions = self.stats.retransmissions.saturating_add(1);
        if cause == RetryCause::CRequest && self.mode == CheckMode::Checksum {
            // `C` while waiting for the first block of a phase: the receiver wants CRC-16
            // (like lrzsz: a NAK start request may have been a corrupted `C`). Reframe.
            match self.phase {
                Phase::WaitHeaderAck | Phase::WaitFinalAck => {
                    self.mode = CheckMode::Crc16;
                    self.frame_header();
                }
                Phase::WaitDataAck if self.block == 1 => {
                    self.mode = CheckMode::Crc16;
                    self.frame_data();
                }
                _ => {}
            }
        }
        self.out_ready = true;
        self.out_kind = Out::Reply;
        self.timer = Timer::Pending(self.reply_timeout());
    }

    /// Queues the header of the current file, or the end-of-batch block after the last file.
    fn send_header(&mut self) {
        self.frame_header();
        self.header_sent = true;
        self.offset = 0;
        self.chunk = 0;
        self.block = 1;
        let next = if self.file < self.files.len() {
            Phase::WaitHeaderAck
        } else {
            Phase::WaitFinalAck
        };
        self.queue(next);
    }

    /// Queues the next data block of the current file, or its EOT when all data is out.
    fn send_data_or_eot(&mut self) {
        if self.frame_data() {
            self.queue(Phase::WaitDataAck);
        } else {
            self.chunk = 0;
            if let Some(first) = self.out.first_mut() {
                *first = EOT;
            }
            self.out_len = 1;
            self.queue(Phase::WaitEotAck);
        }
    }

    fn frame_header(&mut self) {
        let mut payload = [0u8; BLOCK_1K];
        let len = match self.files.get(self.file) {
            Some(file) => format_header(file, self.cfg.scheme, &mut payload).unwrap_or(0),
            None => 0,
        };
        // Keep at least one NUL after the metadata inside the block.
        let size = if len < BLOCK_128 { BLOCK_128 } else { BLOCK_1K };
        let body = payload.get(..size).unwrap_or(&[]);
        self.frame(0, body, size, 0);
    }

    /// Frames the data block at `offset`; false if no data is left.
    fn frame_data(&mut self) -> bool {
        let data: &'a [u8] = self.files.get(self.file).map_or(&[], |f| f.data);
        let remaining = data.len().saturating_sub(self.offset);
        if remaining == 0 {
            return false;
        }
        let (size, pad) = match self.cfg.scheme {
            Scheme::Standard if remaining > SMALL_TAIL => (BLOCK_1K, SUB),
            Scheme::Standard => (BLOCK_128, SUB),
            Scheme::ParticleCli => (BLOCK_128, 0),
        };
        let chunk = remaining.min(size);
        let end = self.offset.saturating_add(chunk);
        let payload = data.get(self.offset..end).unwrap_or(&[]);
        self.chunk = payload.len();
        self.frame((self.block & 0xFF) as u8, payload, size, pad);
        true
    }

    /// Writes `SOH|STX seq ~seq payload+padding trailer` into the output buffer.
    fn frame(&mut self, seq: u8, payload: &[u8], size: usize, pad: u8) {
        let mut out = [0u8; MAX_FRAME];
        let start = if size == BLOCK_1K { STX } else { SOH };
        let size = size.min(BLOCK_1K);
        out[0] = start;
        out[1] = seq;
        out[2] = !seq;
        let body_end = 3 + size;
        if let Some(body) = out.get_mut(3..body_end) {
            let n = payload.len().min(size);
            let (data, padding) = body.split_at_mut(n);
            data.copy_from_slice(payload.get(..n).unwrap_or(&[]));
            padding.fill(pad);
        }
        let body = out.get(3..body_end).unwrap_or(&[]);
        let trailer: ([u8; 2], usize) = match (self.cfg.scheme, self.mode) {
            (Scheme::ParticleCli, mode) => ([0, 0], mode.trailer_len()),
            (Scheme::Standard, CheckMode::Crc16) => (crc16_xmodem(body).to_be_bytes(), 2),
            (Scheme::Standard, CheckMode::Checksum) => ([checksum8(body), 0], 1),
        };
        let (bytes, n) = trailer;
        let total = body_end + n;
        if let (Some(dst), Some(src)) = (out.get_mut(body_end..total), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out = out;
        self.out_len = total;
    }
}

/// Formats the header payload of `file`; `None` if it does not fit 1023 bytes (one NUL must
/// remain). Returns the number of bytes written.
fn format_header(file: &File<'_>, scheme: Scheme, buf: &mut [u8; BLOCK_1K]) -> Option<usize> {
    buf.fill(0);
    let limit = BLOCK_1K - 1;
    let mut c = Cursor::new(&mut buf[..limit]);
    let mut ok = c.put(file.name.as_bytes());
    ok &= c.put(&[0]);
    ok &= c.put_decimal(file.data.len() as u64);
    ok &= match scheme {
        // size, mtime (octal, 0 = unknown), mode (octal: regular file, rw-r--r--).
        Scheme::Standard => c.put(b" 0 100644"),
        Scheme::ParticleCli => c.put(b" "),
    };
    ok.then_some(c.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn drain(s: &mut Sender<'_>, now: u64) -> Vec<u8> {
        s.poll_transmit(now).map(<[u8]>::to_vec).unwrap_or_default()
    }

    #[test]
    fn header_layout_matches_lrzsz_style() {
        let files = [File::new("fw.bin", &[7u8; 3000])];
        let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
        assert!(s.poll_transmit(0).is_none(), "must wait for C");
        s.handle_input(b"C", 1);
        let hdr = drain(&mut s, 1);
        assert_eq!(hdr.len(), 3 + 128 + 2);
        assert_eq!(&hdr[..3], &[SOH, 0, 0xFF]);
        let text = b"fw.bin\x003000 0 100644";
        assert_eq!(&hdr[3..3 + text.len()], text);
        assert!(hdr[3 + text.len()..131].iter().all(|&b| b == 0));
        let crc = crc16_xmodem(&hdr[3..131]);
        assert_eq!(&hdr[131..], &crc.to_be_bytes());
    }

    #[test]
    fn long_name_uses_1k_header() {
        let name: std::string::String = core::iter::repeat_n('x', 120).collect();
        let files = [File::new(&name, b"abc")];
        let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
        s.handle_input(b"C", 0);
        let hdr = drain(&mut s, 0);
        assert_eq!(hdr[0], STX);
        assert_eq!(hdr.len(), MAX_FRAME);
    }

    #[test]
    fn invalid_files_are_refused() {
        let long: std::string::String = core::iter::repeat_n('y', 1020).collect();
        for (name, what) in [("", "empty"), ("a\0b", "NUL"), (long.as_str(), "too long")] {
            let files = [File::new(name, b"")];
            let err = Sender::new(&files, SenderConfig::default()).unwrap_err();
            let msg = std::format!("{err}");
            assert!(msg.contains(what), "{msg}");
        }
    }

    #[test]
    fn block_sizes_follow_sb_k() {
        // 897 bytes: one 1K block (897 > 896); 896 bytes: seven 128-byte blocks.
        for (len, expect) in [
            (897usize, &[STX][..]),
            (896, &[SOH; 7][..]),
            (1025, &[STX, SOH][..]),
        ] {
            let data = std::vec![1u8; len];
            let files = [File::new("f", &data)];
            let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
            s.handle_input(b"C", 0);
            drain(&mut s, 0);
            s.handle_input(&[ACK, b'C'], 0);
            let mut kinds = Vec::new();
            loop {
                let blk = drain(&mut s, 0);
                if blk == [EOT] {
                    break;
                }
                kinds.push(blk[0]);
                let size = if blk[0] == STX { 1024 } else { 128 };
                assert_eq!(blk.len(), size + 5);
                s.handle_input(&[ACK], 0);
            }
            assert_eq!(kinds, expect, "len {len}");
            // Padding of the last block is 0x1A.
        }
    }

    #[test]
    fn particle_scheme_zero_crc_and_padding() {
        let files = [File::new("binary", &[0xAB; 130])];
        let cfg = SenderConfig {
            scheme: Scheme::ParticleCli,
            ..SenderConfig::device_os()
        };
        let mut s = Sender::new(&files, cfg).unwrap();
        let hdr = drain(&mut s, 0);
        assert_eq!(&hdr[3..14], b"binary\x00130 ");
        assert_eq!(&hdr[131..], &[0, 0]);
        s.handle_input(&[ACK, b'C'], 0);
        let b1 = drain(&mut s, 0);
        assert_eq!(b1[0], SOH);
        assert_eq!(&b1[131..], &[0, 0]);
        s.handle_input(&[ACK], 0);
        let b2 = drain(&mut s, 0);
        assert_eq!(&b2[3..5], &[0xAB, 0xAB]);
        assert!(b2[5..131].iter().all(|&b| b == 0), "zero padding");
    }

    #[test]
    fn checksum_mode_on_nak_start() {
        let files = [File::new("f", b"hi")];
        let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
        s.handle_input(&[NAK], 0);
        let hdr = drain(&mut s, 0);
        assert_eq!(hdr.len(), 3 + 128 + 1);
        assert_eq!(hdr[131], checksum8(&hdr[3..131]));
        s.handle_input(&[ACK, NAK], 0);
        let b1 = drain(&mut s, 0);
        assert_eq!(b1.len(), 3 + 128 + 1);
        assert_eq!(&b1[3..6], b"hi\x1a");
    }

    #[test]
    fn c_after_checksum_header_switches_to_crc() {
        // A `C` corrupted into NAK made the sender pick checksum mode; the CRC receiver
        // cannot read that header and asks again with `C`.
        let files = [File::new("f", b"hi")];
        let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
        s.handle_input(&[NAK], 0);
        assert_eq!(drain(&mut s, 0).len(), 132);
        s.handle_input(b"C", 1);
        let hdr = drain(&mut s, 1);
        assert_eq!(hdr.len(), 133);
        assert_eq!(&hdr[131..], &crc16_xmodem(&hdr[3..131]).to_be_bytes());
        assert_eq!(s.stats().retransmissions, 1);
    }

    #[test]
    fn reply_delay_holds_triggered_blocks() {
        let files = [File::new("f", b"x")];
        let cfg = SenderConfig {
            reply_delay_ms: 5,
            ..SenderConfig::default()
        };
        let mut s = Sender::new(&files, cfg).unwrap();
        s.handle_input(b"C", 100);
        assert!(s.poll_transmit(100).is_none());
        assert!(s.poll_transmit(104).is_none());
        assert_eq!(s.next_deadline(), Some(105));
        s.handle_timeout(105);
        assert_eq!(drain(&mut s, 105).len(), 133);
        // Timeout-driven retransmissions are not held.
        let t = s.next_deadline().unwrap();
        s.handle_timeout(t);
        assert_eq!(drain(&mut s, t).len(), 133);
        // Cancel is not held either.
        s.handle_input(&[ACK], t + 1);
        s.cancel();
        assert_eq!(drain(&mut s, t + 1), CANCEL_SEQUENCE);
    }

    #[test]
    fn stale_bytes_after_trigger_are_dropped_but_can_can_is_seen() {
        let files = [File::new("f", b"x")];
        let mut s = Sender::new(&files, SenderConfig::default()).unwrap();
        // The second C is stale: only one header is queued, not a retransmission.
        s.handle_input(b"CC", 0);
        drain(&mut s, 0);
        assert_eq!(s.stats().retransmissions, 0);
        s.handle_input(&[ACK], 0);
        s.handle_input(&[b'C', CAN, CAN], 0);
        assert!(matches!(
            s.status(),
            SendStatus::Failed(SendError::CancelledByReceiver { .. })
        ));
    }

    #[test]
    fn timeout_before_start_fails_with_cancel() {
        let files = [File::new("f", b"x")];
        let cfg = SenderConfig {
            start_timeout_ms: 100,
            ..SenderConfig::default()
        };
        let mut s = Sender::new(&files, cfg).unwrap();
        assert!(s.poll_transmit(5).is_none());
        assert_eq!(s.next_deadline(), Some(105));
        s.handle_timeout(104);
        assert_eq!(s.status(), SendStatus::InProgress);
        s.handle_timeout(105);
        assert_eq!(
            s.status(),
            SendStatus::Failed(SendError::NoStartRequest { waited_ms: 100 })
        );
        assert_eq!(drain(&mut s, 105), CANCEL_SEQUENCE);
    }

    #[test]
    fn final_ack_missing_is_a_warning() {
        let files: [File<'_>; 0] = [];
        let cfg = SenderConfig {
            final_ack_timeout_ms: 50,
            ..SenderConfig::default()
        };
        let mut s = Sender::new(&files, cfg).unwrap();
        s.handle_input(b"C", 0);
        let blk = drain(&mut s, 10);
        assert!(blk[3..131].iter().all(|&b| b == 0));
        assert_eq!(s.next_deadline(), Some(60));
        s.handle_timeout(60);
        assert_eq!(
            s.status(),
            SendStatus::Done {
                warnings: Warnings {
                    final_ack_missing: true
                }
            }
        );
    }
}
