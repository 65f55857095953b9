//! The YMODEM pump: runs modflash-ymodem's sans-IO sender over a [`Link`] until it finishes,
//! reporting acknowledged bytes as progress events, honouring a cancellation and a total
//! time limit proportional to the size.

use std::time::Duration;

use modflash_ymodem::{File, SendStatus, Sender, SenderConfig, SenderStats, ACK, CAN, NAK};

use super::console::clip;
use super::{secs, Link, SerialError};
use crate::progress::{Cancel, Event, Observer, Operation};

/// Time every transfer may take besides its bytes: the device erasing its update area
/// before it acknowledges the header, and validating the image before the last ACK (the
/// sender waits up to 10 s for that one).
const TRANSFER_BASE_MS: u64 = 15_000;
/// The slowest progress a working device makes, in bytes per second: a USB serial port
/// carries 1K blocks at hundreds of KB/s; 8 KB/s is one block per 125 ms.
const MIN_BYTES_PER_S: u64 = 8 * 1024;

/// The longest a transfer of `bytes` may take in all.
pub(crate) fn transfer_limit_ms(bytes: u64) -> u64 {
    TRANSFER_BASE_MS.saturating_add(bytes.saturating_mul(1_000) / MIN_BYTES_PER_S)
}

/// What [`send_ymodem`] ended with.
#[derive(Clone, Debug)]
pub struct SendOutcome {
    /// The sender's final status.
    pub status: SendStatus,
    /// Its counters.
    pub stats: SenderStats,
    /// Bytes read in the chunk that ended the transfer and after it (the device's text
    /// follows its final ACK or CAN CAN).
    pub trailing: Vec<u8>,
}

/// Runs a YMODEM batch send of `files` over `link` until the sender finishes: the receiver
/// is expected to be running already (`rb`, or the device after `f`). Acknowledged bytes
/// are reported as [`Operation::Write`] progress; once `cancel` is set the sender cancels
/// the transfer (CAN CAN), so the receiver applies nothing. A transfer still running after
/// [`transfer_limit_ms`] of its size is cancelled the same way and fails with
/// [`SerialError::Deadline`], naming what the device last sent.
pub fn send_ymodem<L: Link + ?Sized>(
    link: &mut L,
    files: &[File<'_>],
    config: SenderConfig,
    observer: &mut dyn Observer,
    cancel: &Cancel,
) -> Result<SendOutcome, SerialError> {
    let io = |action: &'static str, link: &L| {
        let name = link.name();
        move |source| SerialError::Io {
            action,
            link: name,
            source,
        }
    };
    let mut tx = Sender::new(files, config).map_err(|e| SerialError::Transfer {
        link: link.name(),
        reason: e.to_string(),
        stats: SenderStats::default(),
        cancelled: false,
    })?;
    let mut trailing: Vec<u8> = Vec::new();
    let mut buf = [0u8; 2048];
    let mut last_acked = u64::MAX;
    let mut cancelled = false;
    let started = link.now_ms();
    let limit_ms = transfer_limit_ms(tx.stats().bytes_total);
    // When the device last sent something, and what.
    let mut heard: Option<(u64, Vec<u8>)> = None;
    while !tx.is_finished() {
        let now = link.now_ms();
        if !cancelled && now.saturating_sub(started) >= limit_ms {
            tx.cancel();
            if let Some(bytes) = tx.poll_transmit(now) {
                let _ = link.write_all(bytes);
            }
            let s = tx.stats();
            let last = match &heard {
                Some((at, bytes)) => format!(
                    "the device last sent {} {} s before",
                    what_was_sent(bytes),
                    secs(now.saturating_sub(*at))
                ),
                None => "the device sent nothing".into(),
            };
            return Err(SerialError::Deadline {
                step: format!("the YMODEM transfer of {} bytes", s.bytes_total),
                link: link.name(),
                limit_ms,
                last: format!(
                    "{} of {} bytes acknowledged; {last} (the transfer was cancelled)",
                    s.bytes_acked, s.bytes_total
                ),
                help: "the device applies nothing unless it has received and validated the \
                       whole image; check the cable and that nothing else uses the port, reset \
                       the device and run the command again",
                stats: Some(Box::new(s)),
            });
        }
        if let Some(bytes) = tx.poll_transmit(now) {
            let r = link.write_all(bytes);
            r.map_err(io("cannot write to", link))?;
            continue;
        }
        let now = link.now_ms();
        let wait = tx
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now))
            .min(started.saturating_add(limit_ms).saturating_sub(now))
            .clamp(1, 100);
        let r = link.read(&mut buf, Duration::from_millis(wait));
        let n = r.map_err(io("cannot read from", link))?;
        let now = link.now_ms();
        if n > 0 {
            heard = Some((now, buf[..n].to_vec()));
            tx.handle_input(&buf[..n], now);
            if tx.is_finished() {
                trailing.extend_from_slice(&buf[..n]);
            }
        }
        tx.handle_timeout(now);
        let s = tx.stats();
        if s.bytes_acked != last_acked {
            last_acked = s.bytes_acked;
            observer.event(Event::Progress {
                operation: Operation::Write,
                done: s.bytes_acked,
                total: s.bytes_total,
            });
        }
        if cancel.is_cancelled() && !cancelled {
            cancelled = true;
            tx.cancel();
        }
    }
    // A cancel sequence of our own still has to go out.
    if let Some(bytes) = tx.poll_transmit(link.now_ms()) {
        let r = link.write_all(bytes);
        r.map_err(io("cannot write to", link))?;
    }
    Ok(SendOutcome {
        status: tx.status(),
        stats: tx.stats(),
        trailing,
    })
}

/// What a chunk the device sent was, in words: a protocol answer or the text in it.
fn what_was_sent(bytes: &[u8]) -> String {
    match bytes {
        [ACK] => "an ACK".into(),
        [NAK] => "a NAK".into(),
        [b'C'] => "a `C` (asking for the block again)".into(),
        b if b.windows(2).any(|w| w == [CAN, CAN]) => "CAN CAN (cancel)".into(),
        b => {
            let text = String::from_utf8_lossy(b);
            let text = text.trim();
            if text.is_empty() {
                format!("{} bytes", b.len())
            } else {
                format!("{:?}", clip(text, 120))
            }
        }
    }
}
