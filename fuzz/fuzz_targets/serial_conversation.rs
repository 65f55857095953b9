//! Fuzz modflash's side of the serial conversation (`modflash::transport::serial::Console`):
//! arbitrary device replies — chunked, with silences — fed to the `s`, `i`, `v`, `m` readers,
//! the module-list parser and a whole YMODEM flash with its verdict. Never a panic; every
//! conversation ends within its time limits on the link's clock; and a flash is accepted only
//! when the device printed its own success line.
//!
//! Input: byte 0 picks the conversation; the rest is the device's side, read as chunks: a
//! length byte (0: a silence lasting the reader's whole timeout), then that many bytes.
#![no_main]

use std::io;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use modflash::progress::{Cancel, Quiet};
use modflash::transport::serial::{Console, Link, Verdict};
use modflash_ymodem::SenderConfig;

/// What the host sends in the flash conversation (the device never checks it here).
const MODULE: [u8; 700] = [0x5a; 700];
/// The longest any conversation may last on the link's clock: the transfer's limit (15 s and
/// the size at 8 KB/s), the prompt's and the verdict's (10 s each), with room to spare.
const MAX_CONVERSATION_MS: u64 = 60_000;

/// The device's replies, on a virtual clock that moves 1 ms per chunk and by the whole
/// timeout on a silence.
struct Replay<'a> {
    data: &'a [u8],
    now: u64,
}

impl Link for Replay<'_> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let wait = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let Some((&len, rest)) = self.data.split_first() else {
            self.now = self.now.saturating_add(wait);
            return Ok(0);
        };
        let n = usize::from(len).min(rest.len()).min(buf.len());
        if n == 0 {
            self.data = rest;
            self.now = self.now.saturating_add(wait);
            return Ok(0);
        }
        buf[..n].copy_from_slice(&rest[..n]);
        self.data = &rest[n..];
        self.now = self.now.saturating_add(1);
        Ok(n)
    }

    fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn set_baud(&mut self, _: u32) -> io::Result<()> {
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn name(&self) -> String {
        "fuzzed device".into()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, replies)) = data.split_first() else {
        return;
    };
    let mut console = Console::new(Replay {
        data: replies,
        now: 0,
    });
    match which % 6 {
        0 => drop(console.describe()),
        1 => drop(console.inventory()),
        2 => drop(console.identify()),
        3 => drop(console.version()),
        4 => drop(console.mac()),
        _ => {
            let flashed = console.flash(
                "binary",
                &MODULE,
                SenderConfig::device_os(),
                &mut Quiet,
                &Cancel::new(),
            );
            if let Ok(report) = flashed {
                if matches!(report.verdict, Verdict::Accepted { .. }) {
                    assert!(
                        report
                            .device_text
                            .lines()
                            .any(|l| l == "Downloaded file successfully!"),
                        "accepted without the success line: {:?}",
                        report.device_text
                    );
                }
            }
        }
    }
    let now = console.link_ref().now;
    assert!(now <= MAX_CONVERSATION_MS, "the conversation took {now} ms");
});
