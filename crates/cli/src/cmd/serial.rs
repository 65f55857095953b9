//! `modflash serial flash FILE --device REF` (one module through the listening-mode console,
//! checked before and verified after) and `modflash serial monitor --device REF`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use modflash::catalog::{Candidate, Origin};
use modflash::direct::{platform_name, serial_install, SerialInstall, SerialOptions};
use modflash::transport::serial::monitor;
use modflash::Session;
use serde_json::{json, Value};

use crate::args::DeviceArgs;
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_OK};

/// Serial subcommands.
#[derive(Subcommand, Debug)]
pub enum SerialCommand {
    /// Flash one module over the serial console (YMODEM in listening mode), checked before
    /// and verified after (by the SHA-256 the device reports for it).
    Flash {
        /// The module file.
        file: PathBuf,
        #[command(flatten)]
        device: DeviceArgs,
        /// Send it even when the device's modules do not meet its dependencies.
        #[arg(long)]
        force: bool,
        /// Succeed when the module is installed but the device reports no SHA-256 that
        /// proves it (system parts over serial): reported "not verified".
        #[arg(long)]
        no_verify: bool,
        /// Print a JSON report (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Print what the device writes to its serial port; survives resets and reconnects.
    Monitor {
        #[command(flatten)]
        device: DeviceArgs,
        /// Line rate (28800 puts a running device in listening mode, 14400 in DFU mode).
        #[arg(long, default_value_t = 9600)]
        baud: u32,
    },
}

/// Runs a serial subcommand.
pub fn run(cmd: SerialCommand) -> CmdResult {
    match cmd {
        SerialCommand::Flash {
            file,
            device,
            force,
            no_verify,
            json,
        } => {
            let options = SerialOptions {
                force,
                accept_unverified: no_verify,
            };
            flash(&file, &device, options, json)
        }
        SerialCommand::Monitor { device, baud } => {
            let devref = device.require()?;
            let cancel = crate::signals::catch();
            let mut renderer = Renderer::new(false);
            monitor(
                &devref,
                baud,
                &mut std::io::stdout(),
                &mut renderer,
                &cancel,
            )?;
            Ok(EXIT_OK)
        }
    }
}

fn report_json(file: &str, device: &str, options: SerialOptions, r: &SerialInstall) -> Value {
    let m = &r.module;
    json!({
        "file": file,
        "device": device,
        "module": {
            "platform_id": m.platform_id,
            "function": m.function.name(),
            "index": m.index,
            "version": m.version,
        },
        "precheck": r.precheck,
        "forced": options.force,
        "transfer": r.transfer.as_ref().map(|t| json!({
            "bytes": t.stats.bytes_total,
            "bytes_acked": t.stats.bytes_acked,
            "blocks": t.stats.blocks_sent,
            "round_trips": t.stats.round_trips,
            "retransmissions": t.stats.retransmissions,
            "wire_bytes_out": t.stats.wire_bytes_out,
            "wire_bytes_in": t.stats.wire_bytes_in,
            "elapsed_ms": t.elapsed_ms,
            "final_ack_missing": t.final_ack_missing,
        })),
        "verdict": r.verdict.name(),
        "error_code": r.error_code,
        "reason": r.reason,
        "verified": r.verified,
        "evidence": r.evidence.map(|e| e.name()),
        "installed": r.installed,
    })
}

fn flash(file: &Path, device: &DeviceArgs, options: SerialOptions, json_output: bool) -> CmdResult {
    let devref = device.require()?;
    // The same verdict as `inspect`: only a valid single module is sent, whatever --force says.
    let module = Candidate::from_file(file, Origin::File(file.to_path_buf()))
        .map_err(modflash::Error::from)?;
    let mut session = Session::open_console(&devref)?;
    // Progress goes to standard error in words: `--json` prints one report document.
    let mut renderer = Renderer::new(false);
    let cancel = crate::signals::catch();
    let install = serial_install(&mut session, &module, options, &mut renderer, &cancel);
    crate::signals::release();
    drop(renderer);
    session.save()?;
    let name = file.display().to_string();
    if json_output {
        let report = report_json(&name, &devref.to_string(), options, &install);
        say(&serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    install.result.map_err(CliError::from)?;
    if !json_output {
        let m = &install.module;
        let style = Style::stdout();
        let (word, proof) = if install.verified == Some(true) {
            (style.good("verified:"), " (the device reports its SHA-256)")
        } else {
            (
                style.warn("not verified:"),
                ", but the device reports no hash for it over serial (--no-verify)",
            )
        };
        say(&format!(
            "{word} {} version {} is installed on the {} and passes every check{proof}",
            m.slot(),
            m.version,
            install
                .installed
                .as_ref()
                .map_or("device", |_| platform_name(m.platform_id))
        ));
    }
    Ok(EXIT_OK)
}
