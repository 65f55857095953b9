//! The YMODEM pump: runs modflash-ymodem's sans-IO sender over a [`Link`] until it finishes,
//! reporting acknowledged bytes as progress events and honouring a cancellation.

use std::time::Duration;

use modflash_ymodem::{File, SendStatus, Sender, SenderConfig, SenderStats};

use super::{Link, SerialError};
use crate::progress::{Cancel, Event, Observer, Operation};

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
/// the transfer (CAN CAN), so the receiver applies nothing.
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
    while !tx.is_finished() {
        let now = link.now_ms();
        if let Some(bytes) = tx.poll_transmit(now) {
            let r = link.write_all(bytes);
            r.map_err(io("cannot write to", link))?;
            continue;
        }
        let now = link.now_ms();
        let wait = tx
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now))
            .clamp(1, 100);
        let r = link.read(&mut buf, Duration::from_millis(wait));
        let n = r.map_err(io("cannot read from", link))?;
        let now = link.now_ms();
        if n > 0 {
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
