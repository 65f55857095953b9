//! Sans-IO YMODEM sender and receiver state machines (`no_std`, no allocation).
//!
//! Both state machines do no I/O and read no clock. The caller feeds received bytes with
//! `handle_input`, writes whatever `poll_transmit` returns, and calls `handle_timeout` once the
//! instant returned by `next_deadline` has passed. Time is a caller-chosen millisecond counter
//! (`now_ms`) that must never go backwards.
//!
//! * [`Sender`] sends a batch of files (YMODEM batch: header block 0, data blocks, EOT, and the
//!   empty end-of-batch block 0). It copes with lrzsz `rb` (input flushes, a lost final ACK)
//!   and with the Particle Device OS receiver (no initial `C`, no `C` after EOT).
//! * [`Receiver`] receives a batch and reports [`Event`]s. Its [`Quirks`] can reproduce the
//!   Device OS listening-mode receiver.
//!
//! A minimal sender loop:
//!
//! ```
//! use modflash_ymodem::{File, Sender, SenderConfig, SendStatus};
//! let files = [File::new("fw.bin", b"hello")];
//! let mut tx = Sender::new(&files, SenderConfig::default()).unwrap();
//! let now = 0;
//! if let Some(bytes) = tx.poll_transmit(now) {
//!     // write `bytes` to the serial port
//!     let _ = bytes;
//! }
//! // on input: tx.handle_input(&buf, now); on deadline: tx.handle_timeout(now);
//! assert_eq!(tx.status(), SendStatus::InProgress);
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod crc;
mod receiver;
mod sender;

pub use crc::{checksum8, crc16_xmodem};
pub use receiver::{
    Event, Fault, Quirks, Receiver, ReceiverConfig, ReceiverStats, RecvError, RecvPosition,
    RecvStatus,
};
pub use sender::{
    File, RetryCause, Scheme, SendError, SendStage, SendStatus, Sender, SenderConfig, SenderStats,
    Warnings,
};

/// Start of a 128-byte block.
pub const SOH: u8 = 0x01;
/// Start of a 1024-byte block.
pub const STX: u8 = 0x02;
/// End of file.
pub const EOT: u8 = 0x04;
/// Positive acknowledgement.
pub const ACK: u8 = 0x06;
/// Backspace (sent after CANs by lrzsz to erase them from a terminal).
pub const BS: u8 = 0x08;
/// Negative acknowledgement (also the start request in 8-bit checksum mode).
pub const NAK: u8 = 0x15;
/// Cancel; two in a row abort the transfer.
pub const CAN: u8 = 0x18;
/// Padding byte for the last data block (CP/M end of file).
pub const SUB: u8 = 0x1A;
/// `C`: start request in CRC-16 mode.
pub const CRC_REQUEST: u8 = b'C';

/// Payload size of an SOH block.
pub const BLOCK_128: usize = 128;
/// Payload size of an STX block.
pub const BLOCK_1K: usize = 1024;
/// Largest block on the wire: STX, seq, ~seq, 1024 bytes, CRC-16.
pub const MAX_FRAME: usize = 3 + BLOCK_1K + 2;

/// Integrity check used for a block trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CheckMode {
    /// CRC-16/XMODEM, two bytes, big-endian (requested with `C`).
    Crc16,
    /// 8-bit arithmetic sum, one byte (requested with NAK).
    Checksum,
}

impl CheckMode {
    /// Number of trailer bytes.
    const fn trailer_len(self) -> usize {
        match self {
            CheckMode::Crc16 => 2,
            CheckMode::Checksum => 1,
        }
    }
}

/// Millisecond timer shared by both state machines.
///
/// `Pending(d)` waits for the next call that carries `now_ms` (usually `poll_transmit`, so a
/// reply timeout starts when the bytes are handed out) and then becomes `Armed(now + d)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Off,
    Pending(u64),
    Armed(u64),
}

impl Timer {
    fn arm(&mut self, now_ms: u64) {
        if let Timer::Pending(d) = *self {
            *self = Timer::Armed(now_ms.saturating_add(d));
        }
    }

    fn deadline(self) -> Option<u64> {
        match self {
            Timer::Armed(t) => Some(t),
            _ => None,
        }
    }

    fn expired(self, now_ms: u64) -> bool {
        matches!(self, Timer::Armed(t) if now_ms >= t)
    }
}

/// Fixed-capacity byte sink used to format headers without allocation.
struct Cursor<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Cursor<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Appends bytes; returns false (and writes nothing) if they do not fit.
    fn put(&mut self, bytes: &[u8]) -> bool {
        let Some(end) = self.pos.checked_add(bytes.len()) else {
            return false;
        };
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos = end;
                true
            }
            None => false,
        }
    }

    /// Appends `value` in decimal.
    fn put_decimal(&mut self, mut value: u64) -> bool {
        let mut digits = [0u8; 20];
        let mut n = 0;
        for slot in digits.iter_mut() {
            *slot = b'0' + (value % 10) as u8;
            n += 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        let mut ok = true;
        for &d in digits.iter().take(n).rev() {
            ok &= self.put(&[d]);
        }
        ok
    }
}
