//! The listening-mode console protocol (spec §8) over any [`Link`]: mode changes by line
//! rate, the single-key commands and their answers, and a module flashed by YMODEM with the
//! device's verdict read back.

use std::io;
use std::time::Duration;

use modflash_device::console::{RESTARTING, TOO_BIG, VALIDATION_FAILED, YMODEM_PROMPT};
use modflash_ymodem::{File, SendError, SendStage, SendStatus, SenderConfig, SenderStats, CAN};

use super::{send_ymodem, Link, SerialError, DFU_BAUD, LISTENING_BAUD};
use crate::inventory::Inventory;
use crate::progress::{Cancel, Observer};

/// Largest `s` document accepted (a real one is a few hundred bytes).
const MAX_DESCRIBE: usize = 256 * 1024;
/// Longest text kept while waiting for a line.
const MAX_TEXT: usize = 64 * 1024;

/// The device's identity from `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// 24 lower-case hex digits.
    pub device_id: String,
    /// Further `Name: value` lines (Device Secret, Serial Number, IMEI, ICCID, Cell Radio
    /// Version), in the order printed.
    pub fields: Vec<(String, String)>,
}

/// What the device said about a transferred module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Validated and staged; the device restarts to apply it.
    Accepted {
        /// The name the device echoed.
        name: String,
        /// The size it reported.
        size: u64,
        /// It announced the restart.
        restarting: bool,
    },
    /// Refused after validation (`Validation failed: <code>`).
    Refused {
        /// The Device OS error code, when the device printed it.
        code: Option<i32>,
    },
    /// Refused at the header: larger than the OTA region.
    TooLarge,
}

/// The result of [`Console::flash`].
#[derive(Clone, Debug)]
pub struct FlashReport {
    /// The device's verdict.
    pub verdict: Verdict,
    /// Sender counters (round trips, bytes on the wire, retransmissions).
    pub stats: SenderStats,
    /// The device never acknowledged the end of the batch (it still printed its verdict).
    pub final_ack_missing: bool,
    /// Milliseconds on the link's clock from `f` to the verdict.
    pub elapsed_ms: u64,
    /// Text the device printed after the transfer.
    pub device_text: String,
}

/// Timeouts of the console protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for the first byte of an answer, and the longest silence inside one.
    pub reply_ms: u64,
    /// Silence that ends the variable-length `i` answer after its first line.
    pub quiet_ms: u64,
    /// Wait for the YMODEM prompt after `f`.
    pub prompt_ms: u64,
    /// Wait for the verdict text after the transfer (validation plus the 1 s pause before
    /// "Restarting system").
    pub verdict_ms: u64,
}

impl Default for Timeouts {
    /// 3 s replies, 200 ms quiet, 10 s prompt (Xenon needs more than 5 s), 10 s verdict.
    fn default() -> Self {
        Timeouts {
            reply_ms: 3_000,
            quiet_ms: 200,
            prompt_ms: 10_000,
            verdict_ms: 10_000,
        }
    }
}

/// The listening-mode console protocol over a [`Link`].
#[derive(Debug)]
pub struct Console<L: Link> {
    link: L,
    /// Timeouts in force.
    pub timeouts: Timeouts,
}

impl<L: Link> Console<L> {
    /// The console over `link`, with default timeouts.
    pub fn new(link: L) -> Self {
        Console {
            link,
            timeouts: Timeouts::default(),
        }
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// The link, to look at.
    pub fn link_ref(&self) -> &L {
        &self.link
    }

    /// Gives the link back.
    pub fn into_link(self) -> L {
        self.link
    }

    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> SerialError + '_ {
        move |source| SerialError::Io {
            action,
            link: self.link.name(),
            source,
        }
    }

    /// Sets 28800 baud: a running device enters listening mode (blinking blue).
    pub fn enter_listening(&mut self) -> Result<(), SerialError> {
        let r = self.link.set_baud(LISTENING_BAUD);
        r.map_err(self.io("cannot set 28800 baud on"))
    }

    /// Sets 14400 baud: a running device resets into DFU mode (its serial port goes away).
    pub fn enter_dfu(&mut self) -> Result<(), SerialError> {
        let r = self.link.set_baud(DFU_BAUD);
        r.map_err(self.io("cannot set 14400 baud on"))
    }

    fn send_key(&mut self, key: u8) -> Result<(), SerialError> {
        let r = self.link.clear_input();
        r.map_err(self.io("cannot flush"))?;
        let r = self.link.write_all(&[key]);
        r.map_err(self.io("cannot write to"))
    }

    /// Reads into `acc` until `done(acc)` says where the answer ends, the first byte not
    /// arriving within `first_ms` or a gap longer than `gap_ms` failing the read.
    fn read_answer(
        &mut self,
        command: char,
        acc: &mut Vec<u8>,
        first_ms: u64,
        gap_ms: u64,
        limit: usize,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), SerialError> {
        let start = self.link.now_ms();
        let mut last = start;
        let mut buf = [0u8; 1024];
        loop {
            if done(acc) {
                return Ok(());
            }
            let now = self.link.now_ms();
            let wait_until = if acc.is_empty() {
                start.saturating_add(first_ms)
            } else {
                last.saturating_add(gap_ms)
            };
            if now >= wait_until {
                return Err(if acc.is_empty() {
                    SerialError::NoReply {
                        command,
                        link: self.link.name(),
                        waited_ms: first_ms,
                    }
                } else {
                    SerialError::BadReply {
                        command,
                        link: self.link.name(),
                        reason: format!("the answer stopped after {} bytes", acc.len()),
                        excerpt: excerpt(acc),
                    }
                });
            }
            let wait = Duration::from_millis((wait_until - now).min(100));
            let r = self.link.read(&mut buf, wait);
            let n = r.map_err(self.io("cannot read from"))?;
            if n > 0 {
                last = self.link.now_ms();
                acc.extend_from_slice(&buf[..n]);
                if acc.len() > limit {
                    return Err(SerialError::BadReply {
                        command,
                        link: self.link.name(),
                        reason: format!("more than {limit} bytes without the end of the answer"),
                        excerpt: excerpt(acc),
                    });
                }
            }
        }
    }

    /// `s`: the module info JSON, read until the document's outermost brace closes.
    pub fn describe(&mut self) -> Result<String, SerialError> {
        self.send_key(b's')?;
        let mut acc = Vec::new();
        let mut scan = JsonScan::default();
        let t = self.timeouts.reply_ms;
        self.read_answer('s', &mut acc, t, t, MAX_DESCRIBE, |acc| scan.feed(acc))?;
        let (start, end) = scan.span().unwrap_or((0, acc.len()));
        let doc = acc.get(start..end).unwrap_or(&[]);
        String::from_utf8(doc.to_vec()).map_err(|_| SerialError::BadReply {
            command: 's',
            link: self.link.name(),
            reason: "the JSON is not UTF-8".into(),
            excerpt: excerpt(doc),
        })
    }

    /// `s`, parsed: what is installed.
    pub fn inventory(&mut self) -> Result<Inventory, SerialError> {
        let text = self.describe()?;
        Inventory::from_describe(&text).map_err(|source| SerialError::Describe {
            link: self.link.name(),
            source,
        })
    }

    /// Listening mode, then `s`: a device needs a moment to switch (a key sent before goes to
    /// the application), so a silent first attempt is repeated once.
    pub fn listening_inventory(&mut self) -> Result<Inventory, SerialError> {
        self.enter_listening()?;
        match self.inventory() {
            Err(SerialError::NoReply { .. }) => {
                std::thread::sleep(Duration::from_millis(100));
                self.enter_listening()?;
                self.inventory()
            }
            other => other,
        }
    }

    /// `i`: the device id (both answer forms), and any further `Name: value` lines.
    pub fn identify(&mut self) -> Result<Identity, SerialError> {
        self.send_key(b'i')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('i', &mut acc, t, t, MAX_TEXT, |acc| {
            String::from_utf8_lossy(acc)
                .split_inclusive('\n')
                .any(|l| l.ends_with('\n') && find_device_id(l).is_some())
        })?;
        // The key/value form goes on for a few lines: take what follows until a short quiet.
        if String::from_utf8_lossy(&acc).contains("Device ID:") {
            let q = self.timeouts.quiet_ms;
            let mut buf = [0u8; 512];
            loop {
                let r = self.link.read(&mut buf, Duration::from_millis(q));
                let n = r.map_err(self.io("cannot read from"))?;
                if n == 0 || acc.len() > MAX_TEXT {
                    break;
                }
                acc.extend_from_slice(&buf[..n]);
            }
        }
        let text = String::from_utf8_lossy(&acc).into_owned();
        parse_identity(&text).ok_or_else(|| SerialError::BadReply {
            command: 'i',
            link: self.link.name(),
            reason: "no 24-digit device id in the answer".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// `v`: the system firmware version ("1.5.0").
    pub fn version(&mut self) -> Result<String, SerialError> {
        const PREFIX: &str = "system firmware version: ";
        self.send_key(b'v')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('v', &mut acc, t, t, MAX_TEXT, |acc| {
            let text = String::from_utf8_lossy(acc);
            text.find(PREFIX).is_some_and(|i| text[i..].contains('\n'))
        })?;
        let text = String::from_utf8_lossy(&acc);
        let line = text
            .lines()
            .find_map(|l| l.split_once(PREFIX).map(|(_, v)| v.trim().to_string()));
        line.ok_or_else(|| SerialError::BadReply {
            command: 'v',
            link: self.link.name(),
            reason: "no version line".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// `m`: the MAC address ("6c:0b:84:…").
    pub fn mac(&mut self) -> Result<String, SerialError> {
        self.send_key(b'm')?;
        let mut acc = Vec::new();
        let t = self.timeouts.reply_ms;
        self.read_answer('m', &mut acc, t, t, MAX_TEXT, |acc| {
            find_mac(&String::from_utf8_lossy(acc)).is_some()
        })?;
        find_mac(&String::from_utf8_lossy(&acc)).ok_or_else(|| SerialError::BadReply {
            command: 'm',
            link: self.link.name(),
            reason: "no MAC address".into(),
            excerpt: excerpt(&acc),
        })
    }

    /// Reads and drops input until the line has been quiet for `quiet_ms` (at most 5 s):
    /// after a failed transfer the device ignores keys until the sender has stopped.
    pub fn wait_quiet(&mut self, quiet_ms: u64) -> Result<(), SerialError> {
        let start = self.link.now_ms();
        let mut last = start;
        let mut buf = [0u8; 1024];
        loop {
            let now = self.link.now_ms();
            if now.saturating_sub(last) >= quiet_ms || now.saturating_sub(start) >= 5_000 {
                return Ok(());
            }
            let wait = quiet_ms
                .saturating_sub(now.saturating_sub(last))
                .clamp(1, 100);
            let r = self.link.read(&mut buf, Duration::from_millis(wait));
            if r.map_err(self.io("cannot read from"))? > 0 {
                last = self.link.now_ms();
            }
        }
    }

    /// `x`: leaves listening mode (the device goes back to what it was running).
    pub fn exit_listening(&mut self) -> Result<(), SerialError> {
        self.send_key(b'x')
    }

    /// `f` and a YMODEM transfer of `data` (one module) named `name`, then the device's
    /// verdict. `config` is usually [`SenderConfig::device_os`]. Acknowledged bytes are
    /// reported to `observer`; `cancel` stops the transfer (CAN CAN: nothing is applied).
    pub fn flash(
        &mut self,
        name: &str,
        data: &[u8],
        config: SenderConfig,
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<FlashReport, SerialError> {
        let started = self.link.now_ms();
        self.send_key(b'f')?;
        // The prompt line (or a `C`) says the receiver runs.
        let mut acc = Vec::new();
        let t = self.timeouts.prompt_ms;
        self.read_answer('f', &mut acc, t, t, MAX_TEXT, |acc| {
            let text = String::from_utf8_lossy(acc);
            text.contains(YMODEM_PROMPT) && text.contains('\n')
                || acc.contains(&b'C')
                || acc.windows(2).any(|w| w == [CAN, CAN])
        })?;
        if acc.windows(2).any(|w| w == [CAN, CAN]) {
            // Device OS 6: 4×CAN and "Serial/YModem flashing is no longer supported".
            let mut more = acc.clone();
            let _ = self.read_answer('f', &mut more, 500, 200, MAX_TEXT, |a| a.ends_with(b"\n"));
            return Err(SerialError::Unsupported {
                link: self.link.name(),
                text: printable(&more),
            });
        }
        let files = [File::new(name, data)];
        let sent = send_ymodem(&mut self.link, &files, config, observer, cancel)?;
        let trailing = sent.trailing;
        let stats = sent.stats;
        let status = sent.status;
        let verdict_ms = self.timeouts.verdict_ms;
        let gap = self.timeouts.reply_ms.max(1_500);
        match status {
            SendStatus::Done { warnings } => {
                // ACKed: read "Downloaded file successfully!" … "Restarting system …".
                let mut text = trailing;
                let _ = self.read_answer('f', &mut text, verdict_ms, gap, MAX_TEXT, |a| {
                    let t = String::from_utf8_lossy(a);
                    t.contains(RESTARTING) || t.contains(VALIDATION_FAILED) && t.ends_with('\n')
                });
                let printed = printable(&text);
                let verdict = if let Some(code) = validation_code(&printed) {
                    Verdict::Refused { code: Some(code) }
                } else {
                    parse_accepted(&printed)
                };
                Ok(FlashReport {
                    verdict,
                    stats,
                    final_ack_missing: warnings.final_ack_missing,
                    elapsed_ms: self.link.now_ms().saturating_sub(started),
                    device_text: printed,
                })
            }
            SendStatus::Failed(SendError::CancelledByReceiver { stage, .. }) => {
                let mut text = trailing;
                let _ = self.read_answer('f', &mut text, verdict_ms, gap, MAX_TEXT, |a| {
                    let t = String::from_utf8_lossy(a);
                    (t.contains(VALIDATION_FAILED)
                        || t.contains(TOO_BIG)
                        || t.contains("Aborted")
                        || t.contains("Failed"))
                        && t.ends_with('\n')
                });
                let printed = printable(&text);
                let elapsed_ms = self.link.now_ms().saturating_sub(started);
                let report = |verdict| {
                    Ok(FlashReport {
                        verdict,
                        stats,
                        final_ack_missing: false,
                        elapsed_ms,
                        device_text: printed.clone(),
                    })
                };
                if let Some(code) = validation_code(&printed) {
                    return report(Verdict::Refused { code: Some(code) });
                }
                if printed.contains(TOO_BIG) {
                    return report(Verdict::TooLarge);
                }
                if stage == SendStage::EndOfBatch {
                    return report(Verdict::Refused { code: None });
                }
                let said = if printed.is_empty() {
                    String::new()
                } else {
                    format!("; the device said: {printed:?}")
                };
                Err(SerialError::Transfer {
                    link: self.link.name(),
                    reason: format!(
                        "{}{said}",
                        SendError::CancelledByReceiver { file: 0, stage }
                    ),
                    stats,
                    cancelled: false,
                })
            }
            SendStatus::Failed(e) => Err(SerialError::Transfer {
                link: self.link.name(),
                reason: e.to_string(),
                stats,
                cancelled: matches!(e, SendError::Cancelled),
            }),
            SendStatus::InProgress => Err(SerialError::Transfer {
                link: self.link.name(),
                reason: "the sender stopped before the end".into(),
                stats,
                cancelled: false,
            }),
        }
    }
}

/// Incremental brace matcher for the `s` answer: finds the first `{` and the `}` that closes
/// it, honouring strings and escapes. Work is linear in the input.
#[derive(Debug, Default)]
struct JsonScan {
    pos: usize,
    start: Option<usize>,
    depth: u32,
    in_string: bool,
    escape: bool,
    end: Option<usize>,
}

impl JsonScan {
    /// Scans new bytes of `acc`; true once the document has closed.
    fn feed(&mut self, acc: &[u8]) -> bool {
        while self.end.is_none() {
            let Some(&b) = acc.get(self.pos) else { break };
            let i = self.pos;
            self.pos += 1;
            if self.start.is_none() {
                if b == b'{' {
                    self.start = Some(i);
                    self.depth = 1;
                }
                continue;
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.end = Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        self.end.is_some()
    }

    fn span(&self) -> Option<(usize, usize)> {
        Some((self.start?, self.end?))
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let head = bytes.get(..bytes.len().min(120)).unwrap_or(&[]);
    String::from_utf8_lossy(head).into_owned()
}

/// The text in `bytes`, protocol bytes (ACK, CAN, `C` runs) and blank lines removed.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == 'C'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn validation_code(text: &str) -> Option<i32> {
    let i = text.find(VALIDATION_FAILED)?;
    let rest = &text[i + VALIDATION_FAILED.len()..];
    let num: String = rest
        .chars()
        .take_while(|c| *c == '-' || c.is_ascii_digit())
        .collect();
    num.parse().ok()
}

fn parse_accepted(text: &str) -> Verdict {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("Name: "))
        .unwrap_or("")
        .to_string();
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("Size: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Verdict::Accepted {
        name,
        size,
        restarting: text.contains(RESTARTING),
    }
}

/// The first run of exactly 24 hex digits in `text`, lower-cased (how particle-cli reads the
/// device id from a USB serial number or the `i` answer).
pub fn find_device_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_hexdigit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            if i - start == 24 {
                return Some(text[start..i].to_ascii_lowercase());
            }
        } else {
            i += 1;
        }
    }
    None
}

fn parse_identity(text: &str) -> Option<Identity> {
    let mut device_id = None;
    let mut fields = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Your device id is ") {
            device_id = find_device_id(rest);
        } else if let Some(rest) = line.strip_prefix("Device ID: ") {
            device_id = find_device_id(rest);
        } else if let Some((k, v)) = line.split_once(": ") {
            if device_id.is_some() && !k.is_empty() && k.len() < 40 {
                fields.push((k.to_string(), v.to_string()));
            }
        }
    }
    Some(Identity {
        device_id: device_id?,
        fields,
    })
}

fn find_mac(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace()).find_map(|w| {
        let parts: Vec<&str> = w.split(':').collect();
        (parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())))
        .then(|| w.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scan_closes_on_the_outer_brace() {
        let mut s = JsonScan::default();
        let doc = br#"junk C{"p":6,"m":[{"u":"a}\"{","d":[]}]}\r\nmore"#;
        assert!(!s.feed(&doc[..20]));
        assert!(s.feed(doc));
        let (a, b) = s.span().unwrap();
        assert_eq!(&doc[a..b], br#"{"p":6,"m":[{"u":"a}\"{","d":[]}]}"#);
    }

    #[test]
    fn identity_both_forms_and_mac() {
        let a = parse_identity("Your device id is 3b0021001747353236343033\r\n").unwrap();
        assert_eq!(a.device_id, "3b0021001747353236343033");
        let b = parse_identity(
            "Device ID: 3B0021001747353236343033\r\nIMEI: 353162071234567\r\nICCID: 8934\r\n",
        )
        .unwrap();
        assert_eq!(b.device_id, "3b0021001747353236343033");
        assert_eq!(b.fields[0], ("IMEI".into(), "353162071234567".into()));
        assert_eq!(
            find_mac("Your device MAC address is\r\n6C:0B:84:00:11:22\r\n").as_deref(),
            Some("6c:0b:84:00:11:22")
        );
        assert!(parse_identity("garbage").is_none());
        assert_eq!(
            find_device_id("P046AB 3b0021001747353236343033x"),
            Some("3b0021001747353236343033".into())
        );
        assert_eq!(
            find_device_id("3b00210017473532363430331"),
            None,
            "25 digits"
        );
    }
}
