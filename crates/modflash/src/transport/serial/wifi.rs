//! The host side of listening mode's `w`, as particle-cli's `serial wifi` holds it
//! (`src/cmd/serial.js`, `_serialWifiConfig`): send `w`, then answer each question when it
//! appears — the SSID, the security (0 to 3), the cipher (1 AES, 2 TKIP, 3 AES+TKIP), the
//! password, each followed by a newline — and wait for "<3 you!" (saved). modflash also reads
//! "Derp." (not saved), which particle-cli leaves to its timeout.
//!
//! A device that finds the network in its scan asks neither the security nor the cipher: it
//! takes them from the access point, and asks for the password only when the network is
//! secured. The device echoes every answer, the password too: the echo is read up to the end
//! of its line and dropped unseen, so the password is never in anything modflash keeps or
//! prints.

use std::time::Duration;

use modflash_device::wifi::dialogue::{
    CIPHER_PROMPT, PASSWORD_PROMPT, SAVED_MARK, SECURITY_PROMPT, SECURITY_PROMPT_ENTERPRISE,
    SSID_PROMPT,
};
use modflash_device::wifi::{Cipher, Password, Security};
use zeroize::Zeroize;

use super::console::CONSOLE_HELP;
use super::{Console, Link, SerialError};

/// Waits for the next question: the device may scan for the network first (seconds on a
/// real Photon).
const QUESTION_MS: u64 = 20_000;
/// Waits for the verdict after the last answer (the DCT or file write).
const VERDICT_MS: u64 = 20_000;
/// Longest text kept while waiting for a question.
const MAX_TEXT: usize = 16 * 1024;
/// The start of the device's refusal ("Derp. Sorry, we couldn't save the credentials.").
const NOT_SAVED_MARK: &str = "Derp.";

/// What to answer.
#[derive(Debug)]
pub struct WifiAnswers<'a> {
    /// The network name.
    pub ssid: &'a str,
    /// Its security.
    pub security: Security,
    /// Its cipher, sent when the device asks (particle-cli sends AES unless told otherwise).
    pub cipher: Cipher,
    /// Its password, sent when the device asks.
    pub password: &'a Password,
}

/// A question of the dialogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Question {
    /// The SSID.
    Ssid,
    /// The security type.
    Security,
    /// The cipher.
    Cipher,
    /// The password.
    Password,
}

impl Question {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssid => "ssid",
            Self::Security => "security",
            Self::Cipher => "cipher",
            Self::Password => "password",
        }
    }
}

/// How the dialogue ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WifiVerdict {
    /// "Particle <3 you!": the device saved the credentials (and leaves listening mode to
    /// connect).
    Saved,
    /// "Derp. Sorry, we couldn't save the credentials." (it stays in listening mode).
    NotSaved,
}

/// What happened in the dialogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WifiExchange {
    /// The questions the device asked, in order.
    pub asked: Vec<Question>,
    /// The verdict.
    pub verdict: WifiVerdict,
}

/// What the device printed last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    Asked(Question),
    Verdict(WifiVerdict),
}

/// The first question or verdict in `text`, with where its text ends. Questions count only
/// once printed in full (they end in ": ").
fn hear(text: &str) -> Option<(Heard, usize)> {
    let marks = [
        (SSID_PROMPT, Heard::Asked(Question::Ssid)),
        (CIPHER_PROMPT, Heard::Asked(Question::Cipher)),
        (SECURITY_PROMPT_ENTERPRISE, Heard::Asked(Question::Security)),
        (SECURITY_PROMPT, Heard::Asked(Question::Security)),
        (PASSWORD_PROMPT, Heard::Asked(Question::Password)),
        (SAVED_MARK, Heard::Verdict(WifiVerdict::Saved)),
        (NOT_SAVED_MARK, Heard::Verdict(WifiVerdict::NotSaved)),
    ];
    marks
        .iter()
        .filter_map(|(mark, heard)| {
            let mark = mark.trim_end();
            text.find(mark).map(|at| (at, *heard, at + mark.len()))
        })
        // The earliest; at the same place the longer mark (the Enterprise prompt).
        .min_by_key(|(at, _, end)| (*at, std::cmp::Reverse(*end)))
        .map(|(_, heard, end)| (heard, end))
}

impl<L: Link> Console<L> {
    /// `w`: answers the device's questions with `answers` and reads its verdict. The device
    /// must be in listening mode.
    pub fn configure_wifi(
        &mut self,
        answers: &WifiAnswers<'_>,
    ) -> Result<WifiExchange, SerialError> {
        self.send_key(b'w')?;
        let mut text = Vec::new();
        let mut asked = Vec::new();
        let mut wait = self.timeouts.reply_ms;
        loop {
            let heard = match self.wait_for_question(&mut text, wait) {
                Ok(heard) => heard,
                Err(e) if asked.is_empty() => {
                    return Err(match e {
                        SerialError::Wifi { .. } => SerialError::NoReply {
                            command: 'w',
                            link: self.link_ref().name(),
                            waited_ms: wait,
                        },
                        other => other,
                    })
                }
                Err(e) => return Err(e),
            };
            let question = match heard {
                Heard::Verdict(verdict) => return Ok(WifiExchange { asked, verdict }),
                Heard::Asked(q) => q,
            };
            if asked.last() == Some(&question) {
                return Err(self.dialogue_error(format!(
                    "the device asked for the {} again: it did not take the answer",
                    question.name()
                )));
            }
            asked.push(question);
            let mut reply = match question {
                Question::Ssid => answers.ssid.as_bytes().to_vec(),
                Question::Security => vec![answers.security.digit()],
                Question::Cipher => vec![answers.cipher.digit()],
                Question::Password if answers.password.is_empty() => {
                    return Err(self.dialogue_error(format!(
                        "the device asks for a password: it found \"{}\" secured; give its password",
                        answers.ssid
                    )))
                }
                Question::Password => answers.password.expose().to_vec(),
            };
            reply.push(b'\n');
            let sent = self.link().write_all(&reply);
            reply.zeroize();
            sent.map_err(self.io("cannot write to"))?;
            text = self.skip_echo()?;
            wait = match question {
                Question::Password => VERDICT_MS,
                _ => QUESTION_MS,
            };
        }
    }

    /// Reads until a question or a verdict is in `text`; what follows it stays in `text`.
    /// The first byte may take `first_ms`, a silence inside the text as long, and the whole
    /// wait `first_ms` and [`Timeouts::answer_ms`](super::Timeouts) more: a device that keeps
    /// printing something else is given up on. Errors never quote the device's text.
    fn wait_for_question(
        &mut self,
        text: &mut Vec<u8>,
        first_ms: u64,
    ) -> Result<Heard, SerialError> {
        let start = self.link_ref().now_ms();
        let mut last = start;
        let mut buf = [0u8; 512];
        loop {
            if let Some((heard, end)) = hear(&String::from_utf8_lossy(text)) {
                text.drain(..end.min(text.len()));
                return Ok(heard);
            }
            let now = self.link_ref().now_ms();
            let until = if text.is_empty() {
                start.saturating_add(first_ms)
            } else {
                last.saturating_add(first_ms.max(self.timeouts.reply_ms))
            };
            let limit_ms = first_ms.saturating_add(self.timeouts.answer_ms);
            if now >= start.saturating_add(limit_ms) {
                return Err(SerialError::Deadline {
                    step: "the device's next question of the Wi-Fi setup".into(),
                    link: self.link_ref().name(),
                    limit_ms,
                    last: format!("it printed {} bytes, none of them a question", text.len()),
                    help: CONSOLE_HELP,
                    stats: None,
                });
            }
            if now >= until || text.len() > MAX_TEXT {
                return Err(self.dialogue_error(format!(
                    "no question from the device within {} ms",
                    now.saturating_sub(start)
                )));
            }
            let wait = Duration::from_millis((until - now).min(100));
            let n = self
                .link()
                .read(&mut buf, wait)
                .map_err(self.io("cannot read from"))?;
            if n > 0 {
                last = self.link_ref().now_ms();
                text.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// Reads the device's echo of an answer up to the CR LF that ends its line, drops it,
    /// and returns what came after.
    fn skip_echo(&mut self) -> Result<Vec<u8>, SerialError> {
        let start = self.link_ref().now_ms();
        let mut echo = Vec::new();
        let mut buf = [0u8; 512];
        let result = loop {
            if let Some(at) = echo.windows(2).position(|w| w == b"\r\n") {
                break Ok(echo[at + 2..].to_vec());
            }
            let now = self.link_ref().now_ms();
            let until = start.saturating_add(self.timeouts.reply_ms);
            if now >= until || echo.len() > MAX_TEXT {
                break Err(self.dialogue_error(
                    "the device did not finish reading the answer (no end of line)".into(),
                ));
            }
            let wait = Duration::from_millis((until - now).min(100));
            match self.link().read(&mut buf, wait) {
                Ok(n) => echo.extend_from_slice(&buf[..n]),
                Err(e) => break Err(self.io("cannot read from")(e)),
            }
        };
        echo.zeroize();
        buf.zeroize();
        result
    }

    fn dialogue_error(&self, reason: String) -> SerialError {
        SerialError::Wifi {
            link: self.link_ref().name(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A device that asks for the SSID, echoes the answer, then prints a log line every
    /// 500 ms and never asks again (virtual clock).
    struct Chatty {
        now: u64,
        out: Vec<u8>,
        answered: bool,
    }

    impl Link for Chatty {
        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
            if self.out.is_empty() {
                self.now += timeout.as_millis() as u64;
                if self.answered {
                    self.out.extend_from_slice(b"0000123 [app] INFO: tick\r\n");
                }
            }
            let n = buf.len().min(self.out.len());
            buf[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            Ok(n)
        }
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            match bytes {
                b"w" => self.out.extend_from_slice(b"SSID: "),
                _ => {
                    self.answered = true;
                    self.out.extend_from_slice(&bytes[..bytes.len() - 1]);
                    self.out.extend_from_slice(b"\r\n");
                }
            }
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
            "test link".into()
        }
    }

    #[test]
    fn a_device_that_keeps_printing_is_given_up_on_in_time() {
        let mut c = Console::new(Chatty {
            now: 0,
            out: Vec::new(),
            answered: false,
        });
        let none = Password::default();
        let answers = WifiAnswers {
            ssid: "home",
            security: Security::Unsecured,
            cipher: Cipher::Aes,
            password: &none,
        };
        let err = c.configure_wifi(&answers).unwrap_err();
        assert!(matches!(err, SerialError::Deadline { .. }), "{err}");
        let limit = QUESTION_MS + c.timeouts.answer_ms;
        assert!(c.link_ref().now <= limit + 1_000, "{}", c.link_ref().now);
        assert!(!err.to_string().contains("tick"), "{err}");
    }

    #[test]
    fn questions_are_heard_in_full_and_in_order() {
        assert_eq!(hear("SSID"), None);
        assert_eq!(hear("\r\nSSID: "), Some((Heard::Asked(Question::Ssid), 7)));
        let enterprise = SECURITY_PROMPT_ENTERPRISE;
        let (heard, end) = hear(enterprise).unwrap();
        assert_eq!(heard, Heard::Asked(Question::Security));
        assert_eq!(end, enterprise.trim_end().len());
        assert_eq!(
            hear(CIPHER_PROMPT).map(|h| h.0),
            Some(Heard::Asked(Question::Cipher))
        );
        assert_eq!(
            hear("Thanks! ...\r\n    Spark <3 you!").map(|h| h.0),
            Some(Heard::Verdict(WifiVerdict::Saved))
        );
        assert_eq!(
            hear("Derp. Sorry, we couldn't save the credentials.").map(|h| h.0),
            Some(Heard::Verdict(WifiVerdict::NotSaved))
        );
        assert_eq!(
            hear("Password: ...SSID: ").map(|h| h.0),
            Some(Heard::Asked(Question::Password))
        );
    }
}
