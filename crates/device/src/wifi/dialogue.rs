//! The device side of listening mode's `w` (`WiFiSetupConsole::handle`,
//! `system/src/system_setup.cpp`), sans-IO: the console hands it each byte and writes out
//! what it prints.
//!
//! Each answer is read as `serialReadLine` reads it: every byte is echoed (the password too,
//! as on a real device), backspace and delete take one back, CR or LF ends the line, and so
//! does the first byte past the buffer (32 for the SSID, 1 for a choice, 64 for the
//! password). After a line the device prints CR LF and drops whatever input is already
//! waiting, so a host answers each prompt after it has seen it.
//!
//! The questions depend on the system firmware:
//! * Photon and P1 before 0.7.0: the SSID once; security 0 to 3; the cipher only for WPA
//!   and WPA2 (the dry run finds no access point to take it from); the password for a
//!   secured network.
//! * From 0.7.0 (and every Gen3 and P2 release): the SSID until one is given; a scan for the
//!   network (the virtual device finds none, so it asks); security 0 to 3, on the Photon and
//!   P1 with the WPA Enterprise choices 4 and 5; the cipher always; the password for 1 to 3.
//!
//! Then "Thanks! Wait while I save those credentials...", and "Particle <3 you!" once they
//! are saved (the device leaves listening mode to connect) or "Derp. Sorry, we couldn't save
//! the credentials." (it stays in listening mode). The Enterprise questions (EAP type,
//! identities, certificates) are not modelled: choosing 4 or 5 ends with "Derp".

use super::{Cipher, Password, Security, WifiRefusal, MAX_PASSWORD, MAX_SSID};
use crate::device::Device;
use crate::event::DeviceEvent;
use crate::state::Mode;

/// The first question.
pub const SSID_PROMPT: &str = "SSID: ";
/// The security question.
pub const SECURITY_PROMPT: &str = "Security 0=unsecured, 1=WEP, 2=WPA, 3=WPA2: ";
/// The security question of the Photon and P1 from 0.7.0 (`Wiring_WpaEnterprise`).
pub const SECURITY_PROMPT_ENTERPRISE: &str =
    "Security 0=unsecured, 1=WEP, 2=WPA, 3=WPA2, 4=WPA Enterprise, 5=WPA2 Enterprise: ";
/// The cipher question.
pub const CIPHER_PROMPT: &str = "Security Cipher 1=AES, 2=TKIP, 3=AES+TKIP: ";
/// The password question.
pub const PASSWORD_PROMPT: &str = "Password: ";
/// Printed once every answer is in.
pub const SAVING: &str = "Thanks! Wait while I save those credentials...\r\n\r\n";
/// Printed when the credentials were saved.
pub const SAVED: &str = "Awesome. Now we'll connect!\r\n\r\n\
    If you see a pulsing cyan light, your device \r\n\
    has connected to the Cloud and is ready to go!\r\n\r\n\
    If your LED flashes red or you encounter any other problems,\r\n\
    visit https://www.particle.io/support to debug.\r\n\r\n\
    \x20   Particle <3 you!\r\n\r\n";
/// The end of [`SAVED`] (and of the Core's "Spark <3 you!"): what particle-cli waits for.
pub const SAVED_MARK: &str = "<3 you!";
/// Printed when the system refused the credentials.
pub const NOT_SAVED: &str = "Derp. Sorry, we couldn't save the credentials.\r\n\r\n";

/// Which questions a device asks (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The SSID is asked again until one is given (from 0.7.0).
    pub ssid_until_given: bool,
    /// The security question offers WPA Enterprise (Photon and P1 from 0.7.0).
    pub enterprise: bool,
    /// The cipher is asked whatever the security (from 0.7.0).
    pub cipher_always: bool,
}

/// The question being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ssid,
    Security,
    Cipher,
    Password,
}

impl Step {
    /// The answer's buffer size: the byte after it ends the line.
    fn max_len(self) -> usize {
        match self {
            Self::Ssid => MAX_SSID,
            Self::Security | Self::Cipher => 1,
            Self::Password => MAX_PASSWORD,
        }
    }
}

/// What a byte did to the dialogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The answer goes on.
    Reading,
    /// An answer ended and the next question was printed: input already waiting is dropped.
    LineRead,
    /// The dialogue is over (saved, refused, or the power went).
    Finished,
}

/// One `w` dialogue in progress. The answer being typed is kept as a [`Password`] (it may be
/// one): it never prints.
#[derive(Debug)]
pub struct Dialogue {
    kind: Kind,
    step: Step,
    line: Password,
    ssid: Vec<u8>,
    security: Security,
    cipher: Option<Cipher>,
}

impl Dialogue {
    /// Starts the dialogue on `device`: prints the SSID question.
    pub(crate) fn start(device: &Device, out: &mut Vec<u8>) -> Self {
        out.extend_from_slice(SSID_PROMPT.as_bytes());
        Self {
            kind: device.wifi_dialogue_kind(),
            step: Step::Ssid,
            line: Password::default(),
            ssid: Vec::new(),
            security: Security::Unsecured,
            cipher: None,
        }
    }

    /// Takes one byte the host wrote.
    pub(crate) fn byte(&mut self, device: &mut Device, b: u8, out: &mut Vec<u8>) -> Progress {
        if self.line.len() == self.step.max_len() || b == b'\r' || b == b'\n' {
            out.extend_from_slice(b"\r\n");
            let line = std::mem::take(&mut self.line);
            // A C string: it ends at the first NUL.
            let text = line.expose();
            let text = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
            return self.answered(device, text, out);
        }
        if b == 0x08 || b == 0x7F {
            if self.line.pop().is_some() {
                out.push(b);
            }
            return Progress::Reading;
        }
        self.line.push(b);
        out.push(b);
        Progress::Reading
    }

    fn ask(&mut self, step: Step, out: &mut Vec<u8>) -> Progress {
        let prompt = match step {
            Step::Ssid => SSID_PROMPT,
            Step::Security if self.kind.enterprise => SECURITY_PROMPT_ENTERPRISE,
            Step::Security => SECURITY_PROMPT,
            Step::Cipher => CIPHER_PROMPT,
            Step::Password => PASSWORD_PROMPT,
        };
        out.extend_from_slice(prompt.as_bytes());
        self.step = step;
        Progress::LineRead
    }

    fn answered(&mut self, device: &mut Device, text: &[u8], out: &mut Vec<u8>) -> Progress {
        let choice = text.first().copied().unwrap_or(0);
        match self.step {
            Step::Ssid => {
                self.ssid = text.to_vec();
                if self.ssid.is_empty() && self.kind.ssid_until_given {
                    return self.ask(Step::Ssid, out);
                }
                self.ask(Step::Security, out)
            }
            Step::Security => {
                if self.kind.enterprise && matches!(choice, b'4' | b'5') {
                    return self.refuse(device, WifiRefusal::Enterprise, out);
                }
                let Some(security) = Security::from_digit(choice) else {
                    return self.ask(Step::Security, out);
                };
                self.security = security;
                if self.kind.cipher_always || matches!(security, Security::Wpa | Security::Wpa2) {
                    return self.ask(Step::Cipher, out);
                }
                self.after_cipher(device, out)
            }
            Step::Cipher => match Cipher::from_digit(choice) {
                Some(c) => {
                    self.cipher = Some(c);
                    self.after_cipher(device, out)
                }
                None => self.ask(Step::Cipher, out),
            },
            Step::Password => {
                let password = Password::new(text);
                self.save(device, &password, out)
            }
        }
    }

    fn after_cipher(&mut self, device: &mut Device, out: &mut Vec<u8>) -> Progress {
        if self.security.needs_password() {
            return self.ask(Step::Password, out);
        }
        self.save(device, &Password::default(), out)
    }

    fn save(&mut self, device: &mut Device, password: &Password, out: &mut Vec<u8>) -> Progress {
        out.extend_from_slice(SAVING.as_bytes());
        match device.save_wifi(&self.ssid, self.security, self.cipher, password) {
            Ok(()) => {
                out.extend_from_slice(SAVED.as_bytes());
                device.event(DeviceEvent::WifiSaved {
                    ssid: String::from_utf8_lossy(&self.ssid).into_owned(),
                    secured: self.security.needs_password(),
                });
                // The system leaves listening mode to connect (`WLAN_SERIAL_CONFIG_DONE`,
                // `NETWORK_LISTEN_COMMAND_EXIT`).
                device.exit_listening();
                Progress::Finished
            }
            Err(_) if device.state.mode == Mode::Off => Progress::Finished,
            Err(reason) => self.refuse(device, reason, out),
        }
    }

    fn refuse(&mut self, device: &mut Device, reason: WifiRefusal, out: &mut Vec<u8>) -> Progress {
        out.extend_from_slice(NOT_SAVED.as_bytes());
        device.event(DeviceEvent::WifiNotSaved {
            ssid: String::from_utf8_lossy(&self.ssid).into_owned(),
            reason,
        });
        Progress::Finished
    }
}
