//! `modflash wifi --device REF`: Wi-Fi credentials through the listening-mode console, as
//! particle-cli's `serial wifi` gives them, or `--clear`. The password is asked without echo
//! on a terminal or read from `--password-file` (`-` for standard input), so it is never on
//! the command line; it is never printed, not even in `--json`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use dialoguer::console::Term;
use modflash::wifi::{self, Cipher, Configured, Credentials, Password, Question, Security};
use modflash::Session;
use serde_json::{json, Value};
use zeroize::Zeroize;

use crate::args::DeviceArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_OK};

/// Arguments of `modflash wifi`.
#[derive(Args, Debug)]
pub struct WifiArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// The network's name (asked on a terminal when missing).
    #[arg(long, conflicts_with = "clear")]
    ssid: Option<String>,
    /// The network's security: none, wep, wpa or wpa2, with the cipher as particle-cli writes
    /// it if you like (wpa2_aes, wpa_tkip, wpa2_aes+tkip; AES when none is given). Asked on
    /// a terminal when missing; wpa2 otherwise. A device that finds the network in its scan
    /// takes the security from it.
    #[arg(long, value_name = "SECURITY", conflicts_with = "clear")]
    security: Option<String>,
    /// Read the password from the first line of FILE (`-`: standard input) instead of
    /// asking for it.
    #[arg(long, value_name = "FILE", conflicts_with = "clear")]
    password_file: Option<PathBuf>,
    /// Clear the device's stored Wi-Fi credentials instead (a virtual device's SETUP button
    /// is held for 10 s in listening mode; a real device's must be held by hand).
    #[arg(long)]
    clear: bool,
    /// Print JSON (docs/json.md); the password is never in it.
    #[arg(long)]
    json: bool,
}

fn parse_security(text: &str) -> Result<(Security, Cipher), CliError> {
    wifi::parse_security(text).ok_or_else(|| {
        CliError::usage(format!("unknown --security `{text}`")).with_help(
            "use none, wep, wpa or wpa2, optionally with the cipher: wpa2_aes, wpa2_tkip, wpa2_aes+tkip",
        )
    })
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn asked<T>(what: &str, r: Result<T, dialoguer::Error>) -> Result<T, CliError> {
    r.map_err(|e| CliError::usage(format!("cannot ask for the {what}: {e}")))
}

fn ssid(args: &WifiArgs) -> Result<String, CliError> {
    if let Some(s) = &args.ssid {
        return Ok(s.clone());
    }
    if !interactive() {
        return Err(
            CliError::usage("--ssid is required without a terminal").with_help("pass --ssid NAME")
        );
    }
    asked(
        "SSID",
        dialoguer::Input::<String>::new()
            .with_prompt("SSID")
            .interact_text_on(&Term::stderr()),
    )
}

fn security(args: &WifiArgs) -> Result<(Security, Cipher), CliError> {
    if let Some(s) = &args.security {
        return parse_security(s);
    }
    if !interactive() {
        return Ok((Security::Wpa2, Cipher::Aes));
    }
    let choices = [
        Security::Wpa2,
        Security::Wpa,
        Security::Wep,
        Security::Unsecured,
    ];
    let names: Vec<String> = choices.iter().map(ToString::to_string).collect();
    let i = asked(
        "security",
        dialoguer::Select::new()
            .with_prompt("Security")
            .items(&names)
            .default(0)
            .interact_on(&Term::stderr()),
    )?;
    Ok((choices[i], Cipher::Aes))
}

fn password(args: &WifiArgs, security: Security) -> Result<Password, CliError> {
    if let Some(path) = &args.password_file {
        return Ok(wifi::read_password(path)?);
    }
    if !security.needs_password() {
        return Ok(Password::default());
    }
    if !interactive() {
        return Err(
            CliError::usage(format!("a {security} network needs a password")).with_help(
                "pass --password-file FILE, or --password-file - to read it from standard input",
            ),
        );
    }
    let mut typed = asked(
        "password",
        dialoguer::Password::new()
            .with_prompt("Wi-Fi password")
            .interact_on(&Term::stderr()),
    )?;
    let password = Password::new(typed.as_bytes());
    typed.zeroize();
    Ok(password)
}

fn report(session: &Session<'_>, creds: Option<&Credentials>, result: &str) -> Value {
    json!({
        "device": session.reference(),
        "platform": session.platform().name,
        "ssid": creds.map(|c| c.ssid.as_str()),
        "security": creds.map(|c| c.security.name()),
        "cipher": creds.map(|c| c.cipher.name()),
        "result": result,
    })
}

/// Runs `modflash wifi`.
pub fn run(args: WifiArgs) -> CmdResult {
    let devref = args.device.require()?;
    let mut session = Session::open_console(&devref)?;
    let mut renderer = Renderer::new(false);
    if args.clear {
        let cleared = wifi::clear(&mut session, &mut renderer);
        session.save()?;
        cleared?;
        if args.json {
            say(
                &serde_json::to_string_pretty(&report(&session, None, "cleared"))
                    .unwrap_or_default(),
            );
        } else {
            say(&format!(
                "{} the Wi-Fi credentials of {}",
                Style::stdout().good("cleared:"),
                session.label()
            ));
        }
        return Ok(EXIT_OK);
    }
    // Refused before anything is asked or sent.
    wifi::require_wifi(&session, "take Wi-Fi credentials")?;
    let ssid = ssid(&args)?;
    let (security, cipher) = security(&args)?;
    let creds = Credentials {
        ssid,
        security,
        cipher,
        password: password(&args, security)?,
    };
    let configured = wifi::configure(&mut session, &creds, &mut renderer);
    session.save()?;
    drop(renderer);
    let result = match &configured {
        Ok(_) => "saved",
        Err(modflash::Error::Refused { .. }) => "not_saved",
        Err(_) => "failed",
    };
    if args.json {
        let mut r = report(&session, Some(&creds), result);
        if let Ok(Configured { asked }) = &configured {
            r["asked"] = json!(asked.iter().map(|q| q.name()).collect::<Vec<_>>());
        }
        say(&serde_json::to_string_pretty(&r).unwrap_or_default());
    }
    let Configured { asked } = configured?;
    if !args.json {
        let detected = if asked.contains(&Question::Security) {
            String::new()
        } else {
            " (it found the network and took its security from it)".into()
        };
        say(&format!(
            "{} {} has the Wi-Fi credentials for \"{}\"{detected}; it leaves listening mode to connect",
            Style::stdout().good("saved:"),
            session.label(),
            creds.ssid
        ));
    }
    Ok(EXIT_OK)
}
