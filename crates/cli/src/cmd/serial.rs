//! `modflash serial flash FILE --device REF` and `modflash serial monitor --device REF`.
//!
//! `serial flash` checks the file like `inspect` (invalid modules and wrong platforms are
//! always refused), reads the device's `s` inventory and predicts the device's verdict
//! (refused unless `--force`), sends the module by YMODEM (1K blocks, real CRC,
//! retransmissions), reports the device's verdict in words, and on success waits for the
//! restart and reads the inventory again: success only when the module is installed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use modflash::inventory::{InstalledModule, Inventory};
use modflash::precheck::{fix_for, precheck, Precheck};
use modflash::serial::{
    ConsoleLink, FlashReport, Link, PortLink, Progress, SerialError, Session, Verdict,
    LISTENING_BAUD,
};
use modflash::DeviceRef;
use modflash_device::console::ConsoleConfig;
use modflash_module::platform::platform;
use modflash_module::rules::{self, OtaCode};
use modflash_module::{Module, ModuleFunction, ModuleInfo};
use modflash_ymodem::SenderConfig;
use serde_json::{json, Value};

use crate::source::{note, open_serial, open_sim, parse_device, say, serial_error};
use crate::ui::{CliError, CmdResult, Style, EXIT_OK};

/// How long a device may take to come back after the restart (the bootloader copies the
/// module first).
const RECONNECT_WITHIN: Duration = Duration::from_secs(30);

/// Serial subcommands.
#[derive(Subcommand, Debug)]
pub enum SerialCommand {
    /// Flash one module over the serial console (YMODEM in listening mode), checked before
    /// and verified after.
    Flash {
        /// The module file.
        file: PathBuf,
        /// The device: serial:PORT, usb, usb:DEVICE_ID or sim:NAME.
        #[arg(long)]
        device: String,
        /// Send it even when the device's modules do not meet its dependencies.
        #[arg(long)]
        force: bool,
        /// Print a JSON report (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Print what the device writes to its serial port; survives resets and reconnects.
    Monitor {
        /// The device: serial:PORT, usb or usb:DEVICE_ID.
        #[arg(long)]
        device: String,
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
            json,
        } => flash(&file, &device, force, json),
        SerialCommand::Monitor { device, baud } => monitor(&device, baud),
    }
}

/// Everything `serial flash` found out, for the JSON report.
#[derive(Default)]
struct Report {
    file: String,
    device: String,
    module: Option<ModuleInfo>,
    precheck: Option<String>,
    forced: bool,
    report: Option<FlashReport>,
    verdict: &'static str,
    error_code: Option<i32>,
    reason: Option<String>,
    verified: Option<bool>,
    installed: Option<InstalledModule>,
}

impl Report {
    fn json(&self) -> Value {
        json!({
            "file": self.file,
            "device": self.device,
            "module": self.module.map(|m| json!({
                "platform_id": m.platform_id,
                "function": m.function.name(),
                "index": m.index,
                "version": m.version,
            })),
            "precheck": self.precheck,
            "forced": self.forced,
            "transfer": self.report.as_ref().map(|r| json!({
                "bytes": r.stats.bytes_total,
                "bytes_acked": r.stats.bytes_acked,
                "blocks": r.stats.blocks_sent,
                "round_trips": r.stats.round_trips,
                "retransmissions": r.stats.retransmissions,
                "wire_bytes_out": r.stats.wire_bytes_out,
                "wire_bytes_in": r.stats.wire_bytes_in,
                "elapsed_ms": r.elapsed_ms,
                "final_ack_missing": r.final_ack_missing,
            })),
            "verdict": self.verdict,
            "error_code": self.error_code,
            "reason": self.reason,
            "verified": self.verified,
            "installed": self.installed,
        })
    }
}

/// Progress output: a bar on a terminal, a line per quarter otherwise.
struct Meter {
    bar: Option<ProgressBar>,
    quarter: u64,
    label: String,
}

impl Meter {
    fn new(label: String, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.clone());
            bar
        });
        Meter {
            bar,
            quarter: 0,
            label,
        }
    }

    fn update(&mut self, p: Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.bytes_acked);
            return;
        }
        let total = p.bytes_total.max(1);
        let quarter = p.bytes_acked.saturating_mul(4) / total;
        if quarter > self.quarter {
            self.quarter = quarter;
            let retries = if p.retransmissions > 0 {
                format!(", {} retransmissions", p.retransmissions)
            } else {
                String::new()
            };
            note(&format!(
                "{}: {}% ({} of {} bytes{retries})",
                self.label,
                quarter * 25,
                p.bytes_acked,
                p.bytes_total
            ));
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn read_module(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        CliError::usage(format!("cannot read {}: {e}", path.display()))
            .with_help("check the path and permissions")
    })
}

fn flash(file: &PathBuf, device: &str, force: bool, json_output: bool) -> CmdResult {
    let devref = parse_device(device)?;
    let bytes = read_module(file)?;
    let name = file.display().to_string();
    // The same verdict as `inspect`: only a valid module is sent, whatever --force says.
    let module = Module::parse(&bytes).map_err(|e| {
        CliError::check(format!("{name} is not a module: {e}"))
            .with_help(format!("check it with `modflash inspect {name}`"))
    })?;
    if !module.is_valid() {
        let problems: Vec<String> = module.problems().map(|p| p.to_string()).collect();
        return Err(
            CliError::check(format!("{name} is damaged: {}", problems.join("; "))).with_help(
                format!(
            "rebuild or download the file again; `modflash inspect {name}` shows the details"
        ),
            ),
        );
    }
    if module
        .info
        .flags
        .contains(modflash_module::ModuleFlags::COMBINED)
    {
        return Err(CliError::check(format!(
            "{name} is a combined image of several modules; send them one at a time"
        ))
        .with_help(format!("`modflash inspect {name}` lists the modules in it")));
    }
    let info = module.info;
    let mut report = Report {
        file: name.clone(),
        device: devref.to_string(),
        module: Some(info),
        forced: force,
        verdict: "not_sent",
        ..Report::default()
    };
    let result = match &devref {
        DeviceRef::Sim(sim) => {
            let mut handle = open_sim(sim)?;
            let label = format!("virtual device sim:{sim}");
            let outcome = {
                let link = ConsoleLink::new(&mut handle.device, ConsoleConfig::device(), label);
                let mut session = Session::new(link);
                flash_over(
                    &mut session,
                    &bytes,
                    &info,
                    force,
                    &mut report,
                    &mut |s: &mut Session<ConsoleLink<'_>>| {
                        // The restart happens on the console's clock; then ask again.
                        s.link().settle();
                        Ok(())
                    },
                )
            };
            handle.save().map_err(crate::source::sim_error)?;
            outcome
        }
        _ => {
            let link = open_serial(&devref)?;
            let mut session = Session::new(link);
            flash_over(
                &mut session,
                &bytes,
                &info,
                force,
                &mut report,
                &mut |s: &mut Session<PortLink>| {
                    s.link()
                        .reopen(LISTENING_BAUD, RECONNECT_WITHIN)
                        .map_err(serial_error)
                },
            )
        }
    };
    if json_output {
        let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
        say(&text);
    }
    match result {
        Ok(message) => {
            if !json_output {
                say(&message);
            }
            Ok(EXIT_OK)
        }
        Err(e) => Err(e),
    }
}

/// The whole flow on an open session. `reconnect` brings the link back after the device's
/// restart. Returns the success message.
fn flash_over<L: Link>(
    session: &mut Session<L>,
    bytes: &[u8],
    info: &ModuleInfo,
    force: bool,
    report: &mut Report,
    reconnect: &mut dyn FnMut(&mut Session<L>) -> Result<(), CliError>,
) -> Result<String, CliError> {
    let where_ = session.link().name();
    let inventory = session.listening_inventory().map_err(serial_error)?;
    let platform_id = inventory.platform_id;
    match precheck(&inventory, info) {
        Ok(()) => {}
        Err(p @ Precheck::WrongPlatform { .. }) => {
            // Never sent, --force or not: the device refuses it (−1360) at best.
            let _ = session.exit_listening();
            report.precheck = Some(p.to_string());
            report.reason = Some(p.to_string());
            return Err(CliError::check(format!("not sending {}: {p}", report.file))
                .with_help(p.help(platform_id)));
        }
        Err(p) => {
            report.precheck = Some(p.to_string());
            if !force {
                let _ = session.exit_listening();
                report.reason = Some(p.to_string());
                return Err(CliError::check(format!("not sending {}: {p}", report.file))
                    .with_help(p.help(platform_id)));
            }
            note(&format!(
                "{} {p} (sending anyway: --force)",
                Style::stderr().warn("warning:")
            ));
        }
    }
    let label = format!("{} → {}", short_name(&report.file), where_);
    crate::source::catch_interrupts();
    let mut attempt = 0;
    let sent = loop {
        attempt += 1;
        let mut meter = Meter::new(label.clone(), bytes.len() as u64);
        let r = session.flash("binary", bytes, SenderConfig::device_os(), &mut |p| {
            meter.update(p);
            // Ctrl-C cancels cleanly (CAN CAN): the device applies nothing.
            !crate::source::interrupted()
        });
        meter.finish();
        match &r {
            // The device gave up on a damaged line (it applies nothing): one more try.
            Err(SerialError::Transfer { reason, .. })
                if attempt < 2
                    && !crate::source::interrupted()
                    && !reason.contains("cancelled by the sender")
                    && !reason.contains("Aborted by user") =>
            {
                note(&format!(
                    "{} the transfer failed ({reason}); nothing was applied, sending again",
                    Style::stderr().warn("warning:")
                ));
                let _ = session.wait_quiet(300);
            }
            _ => break r,
        }
    };
    crate::source::release_interrupts();
    let flash = match sent {
        Ok(r) => r,
        Err(e) => {
            report.verdict = "failed";
            report.reason = Some(e.to_string());
            if let SerialError::Transfer { stats, .. } = &e {
                report.report = Some(FlashReport {
                    verdict: Verdict::Refused { code: None },
                    stats: *stats,
                    final_ack_missing: false,
                    elapsed_ms: 0,
                    device_text: String::new(),
                });
            }
            let _ = session.wait_quiet(300);
            let _ = session.exit_listening();
            return Err(serial_error(e));
        }
    };
    let verdict = flash.verdict.clone();
    let stats_line = format!(
        "{} bytes in {} round trips, {} retransmissions",
        flash.stats.bytes_acked, flash.stats.round_trips, flash.stats.retransmissions
    );
    report.report = Some(flash);
    match verdict {
        Verdict::Refused { code } => {
            report.verdict = "refused";
            report.error_code = code;
            let why = refusal_words(code, &inventory, info);
            report.reason = Some(why.clone());
            let _ = session.wait_quiet(300);
            let _ = session.exit_listening();
            let help = match precheck(&inventory, info)
                .err()
                .and_then(|p| p.unmet().cloned())
            {
                Some(u) => format!(
                    "nothing was changed on the device; {} first",
                    fix_for(platform_id, &u)
                ),
                None => {
                    "nothing was changed on the device; check the module with `modflash inspect`"
                        .into()
                }
            };
            Err(CliError::check(format!("the device refused it: {why}")).with_help(help))
        }
        Verdict::TooLarge => {
            report.verdict = "too_large";
            let why = format!(
                "the file ({} bytes) is larger than the device's update area",
                bytes.len()
            );
            report.reason = Some(why.clone());
            let _ = session.wait_quiet(300);
            let _ = session.exit_listening();
            Err(CliError::check(format!("the device refused it: {why}"))
                .with_help("check that the file is a module for this device (`modflash inspect`)"))
        }
        Verdict::Accepted { .. } => {
            report.verdict = "accepted";
            note(&format!(
                "the device accepted the module ({stats_line}); waiting for it to restart"
            ));
            reconnect(session)?;
            let after = session.listening_inventory().map_err(serial_error)?;
            let _ = session.exit_listening();
            verify(&after, info, bytes, report)
        }
    }
}

fn short_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The device's verdict in words: the code's name, and the reason when the pre-check knows
/// it ("dependency check failed (-1340): system part 2 needs system part 1 ≥ 1502,
/// installed 17").
fn refusal_words(code: Option<i32>, inventory: &Inventory, info: &ModuleInfo) -> String {
    let Some(code) = code else {
        return "it cancelled the transfer at the end without giving a code".into();
    };
    let name = OtaCode::name_of(code);
    let detail = match OtaCode::from_code(code) {
        Some(OtaCode::DependencyCheckFailed) => precheck(inventory, info)
            .err()
            .and_then(|p| p.unmet().map(|u| u.to_string())),
        Some(OtaCode::IntegrityCheckFailed) => {
            Some("the CRC does not match (the image was damaged on the way)".into())
        }
        Some(OtaCode::InvalidPlatform) => {
            Some(format!("the module is for platform {}", info.platform_id))
        }
        _ => None,
    };
    match detail {
        Some(d) => format!("{name} ({code}): {d}"),
        None => format!("{name} ({code})"),
    }
}

/// Success only when the module is installed (same slot, version and, for applications,
/// the same SHA-256) and passes the device's checks.
fn verify(
    after: &Inventory,
    info: &ModuleInfo,
    bytes: &[u8],
    report: &mut Report,
) -> Result<String, CliError> {
    let installed = after.main_module(info.slot()).cloned();
    report.installed = installed.clone();
    let Some(m) = installed else {
        report.verified = Some(false);
        return Err(CliError::check(format!(
            "the device accepted {} but after the restart no {} is installed",
            report.file,
            info.slot()
        ))
        .with_help(
            "run `modflash modules --device …` to see what the device runs, and flash again",
        ));
    };
    let sha_ok = match (
        &m.sha256,
        Module::parse(bytes).ok().and_then(|p| p.stored_sha256()),
    ) {
        (Some(dev), Some(file)) if info.function == ModuleFunction::UserPart => {
            *dev == crate::report::hex(&file)
        }
        _ => true,
    };
    if m.version != info.version || !sha_ok {
        report.verified = Some(false);
        return Err(CliError::check(format!(
            "the device accepted {} but after the restart its {} is version {}{}, not the file's version {}",
            report.file,
            info.slot(),
            m.version,
            if sha_ok { "" } else { " with another SHA-256" },
            info.version
        ))
        .with_help("the update was not applied; run the command again"));
    }
    if !m.checks.all() {
        report.verified = Some(false);
        let failed: Vec<String> = m
            .deps()
            .filter_map(|d| rules::check_dependency(after, m.slot(), d).err())
            .map(|unmet| format!("{unmet}: {}", fix_for(after.platform_id, &unmet)))
            .collect();
        let why = if failed.is_empty() {
            "it fails the device's checks".to_string()
        } else {
            failed.join("; ")
        };
        report.reason = Some(why.clone());
        return Err(CliError::check(format!(
            "{} version {} is installed but cannot run: {why}",
            info.slot(),
            info.version
        ))
        .with_help("flash the missing modules (see `modflash modules --device …`)"));
    }
    report.verified = Some(true);
    let platform_name = platform(after.platform_id).map_or("device", |p| p.display_name);
    Ok(format!(
        "{} {} version {} is installed on the {platform_name} and passes every check",
        Style::stdout().good("verified:"),
        info.slot(),
        info.version
    ))
}

/// Copies what the device prints to standard output, re-opening the port with back-off
/// whenever it goes away (a reset, a replug), until interrupted.
fn monitor(device: &str, baud: u32) -> CmdResult {
    let devref = parse_device(device)?;
    if let DeviceRef::Sim(name) = &devref {
        return Err(CliError::usage(format!(
            "sim:{name} has no serial port of its own"
        ))
        .with_help(format!(
            "expose it with `modflash sim serve {name} --serial-link /tmp/{name}.tty` and monitor serial:/tmp/{name}.tty"
        )));
    }
    let err_style = Style::stderr();
    let mut announced_wait = false;
    let mut backoff = Duration::from_millis(100);
    let mut stdout = std::io::stdout();
    loop {
        let opened = crate::source::serial_port(&devref).and_then(|(port, id)| {
            PortLink::open(&port, baud)
                .map(|l| l.with_device_id(id))
                .map_err(serial_error)
        });
        let mut link = match opened {
            Ok(l) => l,
            Err(e) => {
                if !announced_wait {
                    note(&format!(
                        "{} {} — waiting for the device (Ctrl-C to stop)",
                        err_style.warn("monitor:"),
                        e.message
                    ));
                    announced_wait = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        announced_wait = false;
        backoff = Duration::from_millis(100);
        note(&format!(
            "{} connected to {} at {baud} baud",
            err_style.good("monitor:"),
            link.path()
        ));
        let mut buf = [0u8; 4096];
        loop {
            match link.read(&mut buf, Duration::from_millis(250)) {
                Ok(0) => {
                    // A vanished USB device can look like silence: check the path.
                    if !std::path::Path::new(link.path()).exists() {
                        note(&format!(
                            "\n{} {} went away; reconnecting",
                            err_style.warn("monitor:"),
                            link.path()
                        ));
                        break;
                    }
                }
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
                Err(e) => {
                    note(&format!(
                        "\n{} {} failed ({e}); reconnecting",
                        err_style.warn("monitor:"),
                        link.path()
                    ));
                    break;
                }
            }
        }
        drop(link);
        std::thread::sleep(backoff);
    }
}
