//! The listening-mode console protocol (spec §8) over any [`Link`]: mode changes by line
//! rate, the single-key commands and their answers, and a module flashed by YMODEM with the
//! device's verdict read back.

use std::io;
use std::time::Duration;

use modflash_device::console::{
    DOWNLOAD_OK, RESTARTING, TOO_BIG, VALIDATION_FAILED, YMODEM_PROMPT,
};
use modflash_ymodem::{File, SendError, SendStage, SendStatus, SenderConfig, SenderStats, CAN};

use super::{secs, send_ymodem, Link, SerialError, DFU_BAUD, LISTENING_BAUD};
use crate::describe::{Describe, PlatformHints};
use crate::inventory::Inventory;
use crate::progress::{Cancel, Observer};

/// Largest `s` document accepted (a real one is a few hundred bytes).
const MAX_DESCRIBE: usize = 256 * 1024;
/// Longest text kept while waiting for a line.
const MAX_TEXT: usize = 64 * 1024;
/// A line rate with no meaning to the device: set before 28800 so that 28800 is a change
/// (a device hears a new line coding, not the same one set again).
const NEUTRAL_BAUD: u32 = 9_600;
/// How long each rate is held when listening mode is asked for again: a device (or `sim
/// serve`, which checks the rate every 100 ms when it is not told) must see both.
const RATE_HOLD_MS: u64 = 250;
/// What to do when the console keeps talking but never answers.
pub(super) const CONSOLE_HELP: &str =
    "the device is not answering as its listening-mode console should: \
     reset it, put it in listening mode (hold SETUP until the LED blinks blue) and run the \
     command again; make sure no other program writes to the port";

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
    /// The transfer ended but the device did not print its success line
    /// (`Downloaded file successfully!`): it printed something else — a failure line such as
    /// `Failed to receive the file!` or `Aborted by user.`, other text — or nothing
    /// ([`FlashReport::device_text`] holds it). Whether it applied anything is unknown.
    Unconfirmed,
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
    /// Milliseconds spent reading that text (the verdict), on the link's clock.
    pub verdict_ms: u64,
}

/// Timeouts of the console protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for the first byte of an answer, and the longest silence inside one.
    pub reply_ms: u64,
    /// Silence that ends the variable-length `i` answer after its first line.
    pub quiet_ms: u64,
    /// The whole of an answer to a key (`s`, `i`, `v`, `m`): a device that keeps printing
    /// something else (a log line a second) is given up on here.
    pub answer_ms: u64,
    /// The whole wait for the YMODEM prompt after `f`.
    pub prompt_ms: u64,
    /// The whole wait for the verdict text after the transfer (validation plus the 1 s
    /// pause before "Restarting system").
    pub verdict_ms: u64,
}

impl Default for Timeouts {
    /// 3 s replies, 200 ms quiet, 10 s for a whole answer, 10 s prompt (Xenon needs more
    /// than 5 s), 10 s verdict.
    fn default() -> Self {
        Timeouts {
            reply_ms: 3_000,
            quiet_ms: 200,
            answer_ms: 10_000,
            prompt_ms: 10_000,
            verdict_ms: 10_000,
        }
    }
}

/// How long an answer may take: until its first byte, the silence inside it, and all of it.
#[derive(Clone, Copy, Debug)]
struct Limits {
    first_ms: u64,
    gap_ms: u64,
    total_ms: u64,
}

/// The listening-mode console protocol over a [`Link`].
#[derive(Debug)]
pub struct Console<L: Link> {
    link: L,
    /// Timeouts in force.
    pub timeouts: Timeouts,
    /// The USB vendor and product id of the port, when known: they name the platform of a
    /// module list without one.
    usb_id: Option<(u16, u16)>,
}

impl<L: Link> Console<L> {
    /// The console over `link`, with default timeouts.
    pub fn new(link: L) -> Self {
        Console {
            link,
            timeouts: Timeouts::default(),
            usb_id: None,
        }
    }

    /// The console, knowing the USB id of its port.
    pub fn with_usb_id(mut self, usb_id: Option<(u16, u16)>) -> Self {
        self.usb_id = usb_id;
        self
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

    pub(super) fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> SerialError + '_ {
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

    pub(super) fn send_key(&mut self, key: u8) -> Result<(), SerialError> {
        let r = self.link.clear_input();
        r.map_err(self.io("cannot flush"))?;
        let r = self.link.write_all(&[key]);
        r.map_err(self.io("cannot write to"))
    }

    /// Reads into `acc` until `done(acc)` says where the answer ends: the first byte not
    /// arriving within `limits.first_ms`, a gap longer than `limits.gap_ms` or the whole
    /// taking longer than `limits.total_ms` fails the read.
    fn read_answer(
        &mut self,
        command: char,
        acc: &mut Vec<u8>,
        limits: Limits,
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
                start.saturating_add(limits.first_ms)
            } else {
                last.saturating_add(limits.gap_ms)
            };
            let end = start.saturating_add(limits.total_ms);
            if now >= wait_until && acc.is_empty() {
                return Err(SerialError::NoReply {
                    command,
                    link: self.link.name(),
                    waited_ms: limits.first_ms,
                });
            }
            if now >= wait_until {
                return Err(SerialError::BadReply {
                    command,
                    link: self.link.name(),
                    reason: format!("the answer stopped after {} bytes", acc.len()),
                    excerpt: excerpt(acc),
                });
            }
            if now >= end {
                return Err(SerialError::Deadline {
                    step: format!("the answer to `{command}`"),
                    link: self.link.name(),
                    limit_ms: limits.total_ms,
                    last: last_words(acc, now.saturating_sub(last)),
                    help: CONSOLE_HELP,
                    stats: None,
                });
            }
            let wait = Duration::from_millis((wait_until.min(end) - now).min(100));
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
        let limits = self.answer_limits();
        self.read_answer('s', &mut acc, limits, MAX_DESCRIBE, |acc| scan.feed(acc))?;
        let (start, end) = scan.span().unwrap_or((0, acc.len()));
        let doc = acc.get(start..end).unwrap_or(&[]);
        String::from_utf8(doc.to_vec()).map_err(|_| SerialError::BadReply {
            command: 's',
            link: self.link.name(),
            reason: "the JSON is not UTF-8".into(),
            excerpt: excerpt(doc),
        })
    }

    /// `s`, parsed: what is installed. A module list without a platform id (Device OS 0.4.x)
    /// takes the platform the port's USB id names, else the one its module table fits.
    pub fn inventory(&mut self) -> Result<Inventory, SerialError> {
        let text = self.describe()?;
        let hints = PlatformHints {
            usb: self.usb_id,
            ..PlatformHints::default()
        };
        let settled = Describe::parse(&text).and_then(|d| d.settle(&hints));
        settled
            .map(|s| s.inventory)
            .map_err(|source| SerialError::Describe {
                link: self.link.name(),
                source,
            })
    }

    /// Listening mode, then `s`. A silent first attempt is repeated once after
    /// [`reassert_listening`](Console::reassert_listening): the port may have been at 28800
    /// already (left so by another program, or kept across the device's restart), and a
    /// device only hears a rate that changes; it also needs a moment to switch (a key sent
    /// before goes to the application).
    pub fn listening_inventory(&mut self) -> Result<Inventory, SerialError> {
        self.enter_listening()?;
        match self.inventory() {
            Err(SerialError::NoReply { .. }) => {
                self.reassert_listening()?;
                self.inventory()
            }
            other => other,
        }
    }

    /// Asks for listening mode whatever rate the port had: a neutral rate, then 28800, each
    /// held for a moment, so the device sees 28800 as a change (setting the rate a port
    /// already has reaches no device).
    pub fn reassert_listening(&mut self) -> Result<(), SerialError> {
        let r = self.link.set_baud(NEUTRAL_BAUD);
        r.map_err(self.io("cannot set 9600 baud on"))?;
        self.pause(RATE_HOLD_MS)?;
        self.enter_listening()?;
        self.pause(RATE_HOLD_MS)
    }

    /// Lets `ms` pass on the link's clock, dropping what arrives.
    fn pause(&mut self, ms: u64) -> Result<(), SerialError> {
        let until = self.link.now_ms().saturating_add(ms);
        let mut buf = [0u8; 256];
        loop {
            let now = self.link.now_ms();
            if now >= until {
                return Ok(());
            }
            let wait = Duration::from_millis((until - now).min(100));
            let r = self.link.read(&mut buf, wait);
            r.map_err(self.io("cannot read from"))?;
        }
    }

    /// The limits of an answer to a key.
    fn answer_limits(&self) -> Limits {
        Limits {
            first_ms: self.timeouts.reply_ms,
            gap_ms: self.timeouts.reply_ms,
            total_ms: self.timeouts.answer_ms,
        }
    }

    /// `i`: the device id (both answer forms), and any further `Name: value` lines.
    pub fn identify(&mut self) -> Result<Identity, SerialError> {
        self.send_key(b'i')?;
        let start = self.link.now_ms();
        let mut acc = Vec::new();
        let limits = self.answer_limits();
        self.read_answer('i', &mut acc, limits, MAX_TEXT, |acc| {
            String::from_utf8_lossy(acc)
                .split_inclusive('\n')
                .any(|l| l.ends_with('\n') && find_device_id(l).is_some())
        })?;
        // The key/value form goes on for a few lines: take what follows until a short quiet
        // (or the end of the time an answer may take).
        if String::from_utf8_lossy(&acc).contains("Device ID:") {
            let q = self.timeouts.quiet_ms;
            let end = start.saturating_add(self.timeouts.answer_ms);
            let mut buf = [0u8; 512];
            loop {
                let r = self.link.read(&mut buf, Duration::from_millis(q));
                let n = r.map_err(self.io("cannot read from"))?;
                if n == 0 || acc.len() > MAX_TEXT || self.link.now_ms() >= end {
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
        let limits = self.answer_limits();
        self.read_answer('v', &mut acc, limits, MAX_TEXT, |acc| {
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
        let limits = self.answer_limits();
        self.read_answer('m', &mut acc, limits, MAX_TEXT, |acc| {
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
    ///
    /// Only the device's own success line is an acceptance: a transfer acknowledged to the
    /// end and followed by anything else, or by nothing, is [`Verdict::Unconfirmed`].
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
        let prompt = Limits {
            first_ms: t,
            gap_ms: t,
            total_ms: t,
        };
        self.read_answer('f', &mut acc, prompt, MAX_TEXT, |acc| {
            let text = String::from_utf8_lossy(acc);
            text.contains(YMODEM_PROMPT) && text.contains('\n')
                || acc.contains(&b'C')
                || acc.windows(2).any(|w| w == [CAN, CAN])
        })?;
        if acc.windows(2).any(|w| w == [CAN, CAN]) {
            // Device OS 6: 4×CAN and "Serial/YModem flashing is no longer supported".
            let mut more = acc.clone();
            let rest = Limits {
                first_ms: 500,
                gap_ms: 200,
                total_ms: 2_000,
            };
            let _ = self.read_answer('f', &mut more, rest, MAX_TEXT, |a| a.ends_with(b"\n"));
            return Err(SerialError::Unsupported {
                link: self.link.name(),
                text: printable(&more),
            });
        }
        let files = [File::new(name, data)];
        let sent = send_ymodem(&mut self.link, &files, config, observer, cancel)?;
        let stats = sent.stats;
        match sent.status {
            SendStatus::Done { warnings } => {
                // Acknowledged to the end: "Downloaded file successfully!" … "Restarting
                // system …" is the success; anything else is what the device said instead.
                let (printed, verdict_ms) = self.read_verdict(sent.trailing, |t| {
                    t.contains(RESTARTING) || names_a_failure(t) && t.ends_with('\n')
                });
                Ok(FlashReport {
                    verdict: verdict_after_end(&printed),
                    stats,
                    final_ack_missing: warnings.final_ack_missing,
                    elapsed_ms: self.link.now_ms().saturating_sub(started),
                    device_text: printed,
                    verdict_ms,
                })
            }
            SendStatus::Failed(SendError::CancelledByReceiver { stage, .. }) => {
                let (printed, verdict_ms) =
                    self.read_verdict(sent.trailing, |t| names_a_failure(t) && t.ends_with('\n'));
                let verdict = match refusal(&printed) {
                    Some(v) => v,
                    None if stage == SendStage::EndOfBatch => Verdict::Refused { code: None },
                    None => {
                        let said = if printed.is_empty() {
                            String::new()
                        } else {
                            format!("; the device said: {printed:?}")
                        };
                        return Err(SerialError::Transfer {
                            link: self.link.name(),
                            reason: format!(
                                "{}{said}",
                                SendError::CancelledByReceiver { file: 0, stage }
                            ),
                            stats,
                            cancelled: false,
                        });
                    }
                };
                Ok(FlashReport {
                    verdict,
                    stats,
                    final_ack_missing: false,
                    elapsed_ms: self.link.now_ms().saturating_sub(started),
                    device_text: printed,
                    verdict_ms,
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

    /// Reads what the device prints after a transfer, starting with `trailing` (what came
    /// with its last answer), until `done` or [`Timeouts::verdict_ms`] in all: the text
    /// (protocol bytes and blank lines removed) and how long it took.
    fn read_verdict(
        &mut self,
        trailing: Vec<u8>,
        mut done: impl FnMut(&str) -> bool,
    ) -> (String, u64) {
        let start = self.link.now_ms();
        let mut text = trailing;
        let v = self.timeouts.verdict_ms;
        let limits = Limits {
            first_ms: v,
            gap_ms: self.timeouts.reply_ms.max(1_500),
            total_ms: v,
        };
        let _ = self.read_answer('f', &mut text, limits, MAX_TEXT, |a| {
            done(&String::from_utf8_lossy(a))
        });
        let waited = self.link.now_ms().saturating_sub(start);
        (printable(&text), waited)
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

/// The device's failure words, without the trailing space (lines are trimmed).
fn validation_failed() -> &'static str {
    VALIDATION_FAILED.trim_end()
}

/// `text` names a failure the device prints after a transfer (a refusal, the file too
/// large, an abort, a failed receive).
fn names_a_failure(text: &str) -> bool {
    text.contains(validation_failed())
        || text.contains(TOO_BIG)
        || text.contains("Aborted")
        || text.contains("Failed")
}

/// A refusal in the device's words: `Validation failed: <code>` (with or without the
/// code), or the file too large for its update area.
fn refusal(printed: &str) -> Option<Verdict> {
    if printed.contains(validation_failed()) {
        Some(Verdict::Refused {
            code: validation_code(printed),
        })
    } else if printed.contains(TOO_BIG) {
        Some(Verdict::TooLarge)
    } else {
        None
    }
}

/// The verdict on a transfer the device acknowledged to the end: accepted only on its own
/// success line with no failure beside it; a refusal in its words; otherwise unconfirmed.
fn verdict_after_end(printed: &str) -> Verdict {
    if let Some(refused) = refusal(printed) {
        return refused;
    }
    if printed.lines().any(|l| l == DOWNLOAD_OK) && !names_a_failure(printed) {
        return parse_accepted(printed);
    }
    Verdict::Unconfirmed
}

fn validation_code(text: &str) -> Option<i32> {
    let marker = validation_failed();
    let i = text.find(marker)?;
    let rest = text.get(i + marker.len()..)?.trim_start();
    let num: String = rest
        .chars()
        .take_while(|c| *c == '-' || c.is_ascii_digit())
        .collect();
    num.parse().ok()
}

/// What the device last did, from what it printed while an answer was awaited: `since_ms`
/// is the time since its last byte.
fn last_words(printed: &[u8], since_ms: u64) -> String {
    if printed.is_empty() {
        return "the device said nothing".into();
    }
    let text = printable(printed);
    match text.lines().last() {
        Some(line) => format!(
            "the device printed {} bytes but no answer, the last {} s before: {:?}",
            printed.len(),
            secs(since_ms),
            clip(line, 120)
        ),
        None => format!(
            "the device sent {} bytes but no text, the last {} s before",
            printed.len(),
            secs(since_ms)
        ),
    }
}

/// At most `max` characters of `text`, an ellipsis marking a cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
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

    /// A device on a virtual clock that prints `line` every `every_ms` and answers nothing.
    struct Chatter {
        now: u64,
        next: u64,
        every_ms: u64,
        line: &'static [u8],
    }

    impl Link for Chatter {
        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
            let end = self.now + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            if self.next > end {
                self.now = end;
                return Ok(0);
            }
            self.now = self.next;
            self.next += self.every_ms;
            let n = self.line.len().min(buf.len());
            buf[..n].copy_from_slice(&self.line[..n]);
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
            "chatter".into()
        }
    }

    /// A device that answers every key with `answer` at once.
    struct Answering {
        answer: &'static [u8],
        pending: Vec<u8>,
    }

    impl Link for Answering {
        fn read(&mut self, buf: &mut [u8], _: Duration) -> io::Result<usize> {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
        fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
            self.pending = self.answer.to_vec();
            Ok(())
        }
        fn set_baud(&mut self, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn clear_input(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn now_ms(&self) -> u64 {
            0
        }
        fn name(&self) -> String {
            "answering".into()
        }
    }

    #[test]
    fn a_module_list_without_a_platform_takes_the_one_of_the_ports_usb_id() {
        // Device OS 0.4.6 on a P1: no "p", and a module table a Photon has too.
        let answer: &[u8] = br#"{"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":4,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":7,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":7,"d":[{"f":"s","n":"1","v":7,"_":""}]},{"s":131072,"l":"m","vc":30,"vv":30,"f":"u","n":"1","v":3,"d":[{"f":"s","n":"2","v":7,"_":""}]}]}"#;
        let link = || Answering {
            answer,
            pending: Vec::new(),
        };
        let err = Console::new(link()).inventory().unwrap_err();
        assert!(err.to_string().contains("the Photon and the P1"), "{err}");
        let inventory = Console::new(link())
            .with_usb_id(Some((0x2b04, 0xc008)))
            .inventory()
            .unwrap();
        assert_eq!(inventory.platform_id, 8);
    }

    #[test]
    fn an_answer_drowned_in_log_lines_stops_at_its_limit() {
        let mut console = Console::new(Chatter {
            now: 0,
            next: 500,
            every_ms: 1_000,
            line: b"[log] tick\r\n",
        });
        let err = console.describe().unwrap_err();
        assert!(
            matches!(
                err,
                SerialError::Deadline {
                    limit_ms: 10_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            console.link_ref().now <= 10_100,
            "{}",
            console.link_ref().now
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("the answer to `s` did not end within its time limit of 10.0 s on the chatter; the device printed 120 bytes but no answer, the last"),
            "{msg}"
        );
        assert!(msg.ends_with(": \"[log] tick\""), "{msg}");
    }

    #[test]
    fn only_the_success_line_accepts() {
        let ok = "Downloaded file successfully!\nName: binary\nSize: 3952 bytes\nRestarting system to apply firmware update...";
        assert_eq!(
            verdict_after_end(ok),
            Verdict::Accepted {
                name: "binary".into(),
                size: 3952,
                restarting: true
            }
        );
        for (text, verdict) in [
            ("", Verdict::Unconfirmed),
            ("Failed to receive the file!", Verdict::Unconfirmed),
            ("Aborted by user.", Verdict::Unconfirmed),
            ("zq#%!", Verdict::Unconfirmed),
            (
                "Restarting system to apply firmware update...",
                Verdict::Unconfirmed,
            ),
            ("Validation failed:", Verdict::Refused { code: None }),
            (
                "Validation failed: -1330",
                Verdict::Refused { code: Some(-1330) },
            ),
            (TOO_BIG, Verdict::TooLarge),
            (
                "Downloaded file successfully!\nFailed to receive the file!",
                Verdict::Unconfirmed,
            ),
        ] {
            assert_eq!(verdict_after_end(text), verdict, "{text:?}");
        }
    }

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
