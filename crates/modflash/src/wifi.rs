//! Wi-Fi credentials on a device (`modflash wifi`): refused before anything is sent when the
//! platform has no Wi-Fi or the device would refuse them, given through listening mode's `w`
//! as particle-cli's `serial wifi` gives them, or cleared the way a user clears them. The
//! password is a [`Password`]: it is sent once and never printed, logged or reported.

use std::io::Read;
use std::path::Path;

use modflash_device::wifi::{check, MAX_PASSWORD, MAX_SSID};
use modflash_module::Platform;
use zeroize::Zeroize;

pub use crate::transport::serial::{Question, WifiVerdict};
pub use crate::transport::CLEAR_WIFI_BY_HAND;
pub use modflash_device::wifi::{Cipher, Password, Security};

use crate::error::Error;
use crate::progress::{Event, Observer};
use crate::session::Session;
use crate::transport::serial::WifiAnswers;

/// Credentials to give a device.
#[derive(Debug)]
pub struct Credentials {
    /// The network name.
    pub ssid: String,
    /// Its security.
    pub security: Security,
    /// Its cipher, for a device that asks (AES unless told otherwise, as particle-cli does).
    pub cipher: Cipher,
    /// Its password (empty for an open network).
    pub password: Password,
}

/// What [`configure`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    /// The questions the device asked, in order: a device that found the network in its scan
    /// asks neither the security nor the cipher.
    pub asked: Vec<Question>,
}

/// A security as particle-cli's credentials file spells it (`WPA2_AES`, `WPA_TKIP`,
/// `WPA2_AES+TKIP`, `WEP`, `NONE`; any case, `-` for `_`), or a plain `none`, `wep`, `wpa`,
/// `wpa2`. The cipher is AES unless one is named; only WPA and WPA2 name one.
pub fn parse_security(text: &str) -> Option<(Security, Cipher)> {
    let t = text.trim().to_ascii_lowercase().replace('-', "_");
    let (kind, cipher) = t.split_once('_').unwrap_or((&t, ""));
    let security = match kind {
        "none" | "open" | "unsecured" => Security::Unsecured,
        "wep" => Security::Wep,
        "wpa" => Security::Wpa,
        "wpa2" => Security::Wpa2,
        _ => return None,
    };
    let cipher = match cipher {
        "" => None,
        "aes" => Some(Cipher::Aes),
        "tkip" => Some(Cipher::Tkip),
        "aes+tkip" | "tkip+aes" => Some(Cipher::AesTkip),
        _ => return None,
    };
    if cipher.is_some() && !matches!(security, Security::Wpa | Security::Wpa2) {
        return None;
    }
    Some((security, cipher.unwrap_or(Cipher::Aes)))
}

/// The password in the first line of `path` (`-`: standard input), without its line end:
/// a password file keeps it off the command line and out of the shell's history.
pub fn read_password(path: &Path) -> Result<Password, Error> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    let result = read
        .map(|_| {
            let end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            let line = &bytes[..end];
            Password::new(line.strip_suffix(b"\r").unwrap_or(line))
        })
        .map_err(|source| Error::Io {
            action: "read the password from",
            path: path.display().to_string(),
            source,
        });
    bytes.zeroize();
    result
}

/// The refusal for a platform without Wi-Fi (`what` is what was asked: "take Wi-Fi
/// credentials"), before anything is sent.
pub fn require_wifi(session: &Session<'_>, what: &str) -> Result<&'static Platform, Error> {
    let platform = session.platform();
    if platform.has_wifi() {
        return Ok(platform);
    }
    Err(Error::Unsupported {
        device: session.label(),
        what: format!(
            "{what}: the {} has no Wi-Fi to join networks with",
            platform.display_name
        ),
        help: "`modflash wifi` is for the Photon, P1, Argon, P2, M-SoM and Core; cellular devices need no Wi-Fi credentials".into(),
    })
}

fn bad_request(what: String, help: &str) -> Error {
    Error::BadRequest {
        what,
        help: help.into(),
    }
}

/// What no device can take: an SSID or password the console cannot read, a password that
/// does not go with the security.
fn check_readable(creds: &Credentials) -> Result<(), Error> {
    let ssid = creds.ssid.as_bytes();
    if ssid.is_empty() || ssid.len() > MAX_SSID {
        return Err(bad_request(
            format!(
                "the SSID is {} bytes long; Device OS takes 1 to {MAX_SSID}",
                ssid.len()
            ),
            "give the network's name as the device sees it",
        ));
    }
    // The console reads a line: CR and LF end it, backspace and DEL edit it.
    let control = |b: &u8| b.is_ascii_control();
    if ssid.iter().any(control) {
        return Err(bad_request(
            "the SSID holds control characters, which the device's console cannot read".into(),
            "give the network's name without them",
        ));
    }
    let password = creds.password.expose();
    if creds.security.needs_password() {
        if password.is_empty() {
            return Err(bad_request(
                format!("a {} network needs a password", creds.security),
                "give it with --password-file FILE, on standard input (--password-file -), or at the prompt on a terminal",
            ));
        }
        if password.len() > MAX_PASSWORD {
            return Err(bad_request(
                format!(
                    "the password is {} bytes long; the device's console reads at most {MAX_PASSWORD}",
                    password.len()
                ),
                "check the password",
            ));
        }
        if password.iter().any(control) {
            return Err(bad_request(
                "the password holds control characters (a line break?), which the device's console cannot read".into(),
                "check the password file: only its first line is the password",
            ));
        }
    } else if !password.is_empty() {
        return Err(bad_request(
            "a password was given for an unsecured network".into(),
            "pass --security wep, wpa or wpa2 (the network's security), or no password",
        ));
    }
    Ok(())
}

/// Gives `creds` to the device through listening mode's `w`. Refused before anything is
/// sent when the platform has no Wi-Fi, the console cannot read them, or the system would
/// not save them (`modflash_device::wifi::check`); the device's own refusal ("Derp") is an
/// [`Error::Refused`].
pub fn configure(
    session: &mut Session<'_>,
    creds: &Credentials,
    observer: &mut dyn Observer,
) -> Result<Configured, Error> {
    let platform = require_wifi(session, "take Wi-Fi credentials")?;
    check_readable(creds)?;
    let system = session.inventory(observer)?.system_version();
    let network = format!("the Wi-Fi credentials for network \"{}\"", creds.ssid);
    check(
        platform,
        system,
        creds.ssid.as_bytes(),
        creds.security,
        &creds.password,
    )
    .map_err(|why| Error::NotSent {
        file: network.clone(),
        reason: format!("the device would refuse them: {why}"),
        help: "check the password and --security".into(),
    })?;
    observer.event(Event::note(format!(
        "sending {network} ({}) through listening mode's `w`",
        creds.security
    )));
    let answers = WifiAnswers {
        ssid: &creds.ssid,
        security: creds.security,
        cipher: creds.cipher,
        password: &creds.password,
    };
    let exchange = session.link().wifi_configure(&answers)?;
    match exchange.verdict {
        WifiVerdict::Saved => Ok(Configured {
            asked: exchange.asked,
        }),
        WifiVerdict::NotSaved => Err(Error::Refused {
            module: network,
            verdict: "it could not save them (\"Derp. Sorry, we couldn't save the credentials.\")"
                .into(),
            code: None,
            help: "check the password (WEP: 5 to 58 characters, WPA and WPA2: 8 to 64) and --security; the device stays in listening mode".into(),
            transfer: None,
        }),
    }
}

/// Clears the device's Wi-Fi credentials the way a user does: a virtual device's SETUP
/// button is held for 10 s in listening mode; for a real device Device OS offers no command
/// on its serial console, and the error says which button to hold.
pub fn clear(session: &mut Session<'_>, observer: &mut dyn Observer) -> Result<(), Error> {
    require_wifi(session, "clear Wi-Fi credentials")?;
    session.link().wifi_clear(observer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Quiet;
    use modflash_device::Mode;
    use modflash_testkit::device::device;

    fn creds(ssid: &str, security: Security, password: &str) -> Credentials {
        Credentials {
            ssid: ssid.into(),
            security,
            cipher: Cipher::Aes,
            password: Password::new(password),
        }
    }

    #[test]
    fn security_as_particle_cli_spells_it() {
        assert_eq!(
            parse_security("WPA2_AES"),
            Some((Security::Wpa2, Cipher::Aes))
        );
        assert_eq!(parse_security("wpa2"), Some((Security::Wpa2, Cipher::Aes)));
        assert_eq!(
            parse_security("WPA_TKIP"),
            Some((Security::Wpa, Cipher::Tkip))
        );
        assert_eq!(
            parse_security("wpa2-aes+tkip"),
            Some((Security::Wpa2, Cipher::AesTkip))
        );
        assert_eq!(
            parse_security("NONE").map(|s| s.0),
            Some(Security::Unsecured)
        );
        assert_eq!(parse_security("wep").map(|s| s.0), Some(Security::Wep));
        for bad in ["wpa3", "wep_tkip", "none_aes", "wpa2_xyz", ""] {
            assert_eq!(parse_security(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_password_is_the_first_line_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "correct horse\r\nsecond line\n").unwrap();
        assert_eq!(read_password(&file).unwrap().expose(), b"correct horse");
        let err = read_password(&dir.path().join("missing")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the password from "),
            "{err}"
        );
    }

    #[test]
    fn a_virtual_photon_takes_them_and_clears_them() {
        let mut d = device(6).release("1.5.0").powered_on();
        {
            let mut s = Session::virtual_device(&mut d, "sim:t");
            let done = configure(
                &mut s,
                &creds("home", Security::Wpa2, "correct horse"),
                &mut Quiet,
            )
            .unwrap();
            assert_eq!(
                done.asked,
                [
                    Question::Ssid,
                    Question::Security,
                    Question::Cipher,
                    Question::Password
                ]
            );
        }
        assert_eq!(d.state.mode, Mode::App);
        assert_eq!(d.wifi_networks().unwrap()[0].ssid, "home");
        {
            let mut s = Session::virtual_device(&mut d, "sim:t");
            clear(&mut s, &mut Quiet).unwrap();
        }
        assert_eq!(d.wifi_networks(), Some(vec![]));
        assert_eq!(d.state.mode, Mode::App, "back to the app after the hold");
    }

    #[test]
    fn refusals_before_anything_is_sent() {
        let mut e = device(10).release("1.5.0").powered_on();
        let before = e.state.events.len();
        let mut s = Session::virtual_device(&mut e, "sim:e");
        let err = configure(
            &mut s,
            &creds("home", Security::Wpa2, "12345678"),
            &mut Quiet,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sim:e (Electron) cannot take Wi-Fi credentials: the Electron has no Wi-Fi to join networks with"
        );
        assert!(clear(&mut s, &mut Quiet).is_err());
        drop(s);
        assert_eq!(e.state.events.len(), before, "nothing reached the device");
        assert_eq!(e.state.mode, Mode::App);

        let mut d = device(6).release("1.5.0").powered_on();
        let mut s = Session::virtual_device(&mut d, "sim:t");
        let short =
            configure(&mut s, &creds("home", Security::Wpa2, "short!"), &mut Quiet).unwrap_err();
        assert!(short.is_check_failure());
        assert!(
            short
                .to_string()
                .contains("a WPA2 password must be 8 to 64 characters long, not 6"),
            "{short}"
        );
        assert!(!short.to_string().contains("short!"));
        for bad in [
            creds(&"x".repeat(33), Security::Unsecured, ""),
            creds("home", Security::Wpa2, ""),
            creds("home", Security::Wpa2, "Xq7first\nXq7second"),
            creds("home", Security::Unsecured, "Xq7open"),
        ] {
            let err = configure(&mut s, &bad, &mut Quiet).unwrap_err();
            assert!(matches!(err, Error::BadRequest { .. }), "{err}");
            assert!(
                !format!("{err} {:?}", err.help_text()).contains("Xq7"),
                "{err}"
            );
        }
        drop(s);
        assert_eq!(d.state.mode, Mode::App);
        assert_eq!(d.wifi_networks(), Some(vec![]));
    }

    #[test]
    fn a_power_cut_while_saving_is_an_error() {
        let mut d = device(12).release("1.5.0").powered_on();
        // The file's erase goes through, its program loses power.
        d.flash_mut().cut_power_after(2);
        let mut s = Session::virtual_device(&mut d, "sim:a");
        let err = configure(
            &mut s,
            &creds("home", Security::Wpa2, "correct horse"),
            &mut Quiet,
        )
        .unwrap_err();
        drop(s);
        assert!(matches!(err, Error::Serial(_)), "{err}");
        assert_eq!(d.state.mode, Mode::Off, "the power went while saving");
    }
}
