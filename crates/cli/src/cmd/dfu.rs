//! `modflash dfu download` and `modflash dfu upload`: a safe dfu-util, on a virtual device
//! in-process (`--device sim:NAME`) or a real one over libusb (`--device usb[:ID]`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modflash::dfucheck::{parse_number, plan_download, DownloadPlan, Refusal};
use modflash::dfuops::{sim_session, DfuOpError, DfuPort, DfuSession};
use modflash::exec::Event;
use modflash::inventory::Inventory;
use modflash::sim::SimHandle;
use modflash::usb::{UsbError, UsbMode, UsbTarget};
use modflash::DeviceRef;
use modflash_device::Mode;
use modflash_module::Platform;
use serde_json::{json, Value};

use crate::progress::Reporter;
use crate::source::{note, open_sim, parse_device, say};
use crate::ui::{CliError, CmdResult, Style, EXIT_OK};

/// DFU subcommands.
#[derive(Subcommand, Debug)]
pub enum DfuCommand {
    /// Write a file over USB DFU, checked first: a module goes to its own start address; a
    /// platform mismatch is refused; the bootloader, the DCT and regions the module does not
    /// belong in need --force; every byte is read back and compared.
    Download(DownloadArgs),
    /// Read memory over USB DFU into a file.
    Upload(UploadArgs),
}

fn number(text: &str) -> Result<u32, String> {
    parse_number(text)
}

/// Arguments of `dfu download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// A module file, a DfuSe .dfu file, or a raw image (then --address is needed).
    pub file: PathBuf,
    /// The device: usb, usb:DEVICE_ID or sim:NAME.
    #[arg(long)]
    pub device: String,
    /// Where to write (0x080A0000 or decimal); default: a module's own start address.
    #[arg(long, value_parser = number)]
    pub address: Option<u32>,
    /// Alternate setting: 0 internal flash (default), 1 DCT, 2 external flash (Gen3).
    #[arg(long)]
    pub alt: Option<u8>,
    /// Leave DFU mode afterwards: the device starts its firmware.
    #[arg(long)]
    pub leave: bool,
    /// Do not read the written data back to compare.
    #[arg(long)]
    pub no_verify: bool,
    /// Write even to the bootloader, the DCT, or a region the module does not belong in, and
    /// write damaged modules (a platform mismatch is refused anyway).
    #[arg(long)]
    pub force: bool,
    /// Progress as JSON lines, then a result object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `dfu upload`.
#[derive(Args, Debug)]
pub struct UploadArgs {
    /// The device: usb, usb:DEVICE_ID or sim:NAME.
    #[arg(long)]
    pub device: String,
    /// First address (0x080A0000 or decimal).
    #[arg(long, value_parser = number)]
    pub address: u32,
    /// Bytes to read.
    #[arg(long, value_parser = number)]
    pub length: u32,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Alternate setting (0 internal flash, 1 DCT, 2 external flash on Gen3).
    #[arg(long, default_value_t = 0)]
    pub alt: u8,
    /// Progress as JSON lines, then a result object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Runs a `dfu` subcommand.
pub fn run(cmd: DfuCommand) -> CmdResult {
    match cmd {
        DfuCommand::Download(a) => download(&a),
        DfuCommand::Upload(a) => upload(&a),
    }
}

/// A USB error as a CLI error.
pub fn usb_error(e: UsbError) -> CliError {
    let help = e.help();
    let err = CliError::usage(e.to_string());
    err.with_help_opt(help)
}

/// A DFU operation error as a CLI error: a device refusal or a read-back mismatch is a
/// failed check (exit 1), a transport problem exit 2.
pub fn dfu_error(e: DfuOpError) -> CliError {
    let help = e.help();
    let checked = e.is_refusal();
    let err = if checked {
        CliError::check(e.to_string())
    } else {
        CliError::usage(e.to_string())
    };
    err.with_help_opt(help)
}

/// An open device in DFU mode.
enum Dev {
    Sim(SimHandle),
    Usb(UsbTarget),
}

impl Dev {
    /// Opens `devref`, runs `check` with its platform, and only then brings it into DFU mode
    /// (the 14400-baud request when it runs): a refused request leaves the device as it was.
    fn open(
        devref: &DeviceRef,
        quiet: bool,
        check: &dyn Fn(&'static Platform) -> Result<(), CliError>,
    ) -> Result<Self, CliError> {
        match devref {
            DeviceRef::Sim(name) => {
                let mut h = open_sim(name)?;
                check(h.device.platform())?;
                if !h.device.in_dfu_mode() {
                    if matches!(h.device.state.mode, Mode::Off | Mode::Panic) {
                        return Err(CliError::usage(format!(
                            "sim:{name} is {} and cannot be asked for DFU mode",
                            h.device.state.mode.name()
                        ))
                        .with_help(format!(
                            "hold the button into DFU mode: modflash sim reset {name} --hold-button 3"
                        )));
                    }
                    if !quiet {
                        note(&format!(
                            "switching sim:{name} to DFU mode (14400-baud request)"
                        ));
                    }
                    h.device.request_dfu();
                }
                Ok(Self::Sim(h))
            }
            DeviceRef::Usb | DeviceRef::UsbId(_) => {
                let mut t = UsbTarget::open(devref).map_err(usb_error)?;
                check(t.platform())?;
                if t.device().mode != UsbMode::Dfu {
                    if !quiet {
                        note(&format!(
                            "switching {} to DFU mode (14400-baud request)",
                            t.device()
                        ));
                    }
                    t.switch_to_dfu().map_err(usb_error)?;
                }
                Ok(Self::Usb(t))
            }
            DeviceRef::Serial(port) => Err(CliError::usage(format!(
                "serial:{port} is a serial port; DFU needs the USB device"
            ))
            .with_help("use --device usb (or usb:DEVICE_ID)")),
        }
    }

    fn platform(&self) -> &'static Platform {
        match self {
            Self::Sim(h) => h.device.platform(),
            Self::Usb(t) => t.platform(),
        }
    }

    fn dfu_id(&self) -> (u16, u16) {
        match self {
            Self::Usb(t) => (t.device().vendor, t.device().product),
            Self::Sim(h) => h
                .device
                .platform()
                .usb
                .map_or((0, 0), |u| (u.vendor, u.dfu.unwrap_or(u.normal))),
        }
    }

    fn save(&mut self) -> Result<(), CliError> {
        match self {
            Self::Sim(h) => h.save().map_err(crate::source::sim_error),
            Self::Usb(_) => Ok(()),
        }
    }
}

fn refusal(e: Refusal) -> CliError {
    let help = e.help();
    let err = match &e {
        Refusal::Usage(_) => CliError::usage(format!("refused, nothing was written: {e}")),
        _ => CliError::check(format!("refused, nothing was written: {e}")),
    };
    err.with_help(help)
}

struct Written {
    plan: DownloadPlan,
    transfers: u32,
}

fn write_all<P: DfuPort>(
    s: &mut DfuSession<P>,
    platform: &'static Platform,
    dfu_id: (u16, u16),
    file: &[u8],
    args: &DownloadArgs,
    reporter: &mut Reporter,
) -> Result<Written, CliError> {
    let plan = plan_download(
        platform,
        dfu_id,
        &mut |alt| s.alt_name(alt).ok(),
        file,
        args.address,
        args.alt,
        args.force,
    )
    .map_err(refusal)?;
    for f in &plan.forced {
        note(&format!("warning: --force: {f}"));
    }
    let total = plan.writes.len();
    for (i, w) in plan.writes.iter().enumerate() {
        reporter.event(Event::StepStarted {
            n: i + 1,
            total,
            label: format!("writing {} at {:#010x} (alt {})", w.what, w.address, w.alt),
            bytes: w.data.len(),
        });
        s.write(w.alt, w.address, &w.data, !args.no_verify, &mut |e| {
            reporter.event(e)
        })
        .map_err(dfu_error)?;
        if !args.no_verify {
            reporter.event(Event::StepVerified { n: i + 1 });
        }
    }
    Ok(Written {
        plan,
        transfers: s.control_transfers(),
    })
}

fn download(args: &DownloadArgs) -> CmdResult {
    let devref = parse_device(&args.device)?;
    let file = std::fs::read(&args.file).map_err(|e| {
        CliError::usage(format!("cannot read {}: {e}", args.file.display()))
            .with_help("check the path")
    })?;
    // Every check that needs no device runs before the device is switched to DFU mode,
    // against the platform's documented DFU layout.
    let precheck = |platform: &'static Platform| -> Result<(), CliError> {
        let layout = platform.layout_for(None);
        let usb = platform.usb.and_then(|u| u.dfu.map(|d| (u.vendor, d)));
        let (Some(layout), Some(dfu_id)) = (layout, usb) else {
            return Ok(());
        };
        plan_download(
            platform,
            dfu_id,
            &mut |alt| layout.dfu_alts.get(usize::from(alt)).map(|s| s.to_string()),
            &file,
            args.address,
            args.alt,
            args.force,
        )
        .map(|_| ())
        .map_err(refusal)
    };
    let mut dev = Dev::open(&devref, args.json, &precheck)?;
    let platform = dev.platform();
    let dfu_id = dev.dfu_id();
    let mut reporter = Reporter::new(args.json);
    let (written, mode_after, mut transfers) = match &mut dev {
        Dev::Sim(h) => {
            let mut s = sim_session(&mut h.device).map_err(dfu_error)?;
            let result =
                write_all(&mut s, platform, dfu_id, &file, args, &mut reporter).and_then(|w| {
                    if args.leave {
                        reporter.event(Event::Resetting);
                        s.leave(w.plan.leave_address()).map_err(dfu_error)?;
                    }
                    Ok(w)
                });
            let t = s.control_transfers();
            drop(s);
            // Saved whatever happened: the device's state is what it is now.
            let w = match result {
                Ok(w) => w,
                Err(e) => {
                    let _ = h.save();
                    return Err(e);
                }
            };
            let mode = args.leave.then(|| h.device.state.mode.name().to_string());
            (w, mode, t)
        }
        Dev::Usb(t) => {
            let s = t.session().map_err(usb_error)?;
            let w = write_all(s, platform, dfu_id, &file, args, &mut reporter)?;
            let mut mode = None;
            if args.leave {
                reporter.event(Event::Resetting);
                mode = Some(
                    match t
                        .leave_and_wait(w.plan.leave_address())
                        .map_err(usb_error)?
                    {
                        Some(UsbMode::Normal) => "normal".to_string(),
                        Some(UsbMode::Dfu) => "dfu".to_string(),
                        None => "not seen".to_string(),
                    },
                );
            }
            let n = t.control_transfers();
            (w, mode, u32::try_from(n).unwrap_or(u32::MAX))
        }
    };
    drop(reporter);
    transfers = transfers.max(written.transfers);
    dev.save()?;
    let verified = !args.no_verify;
    if args.json {
        let writes: Vec<Value> = written
            .plan
            .writes
            .iter()
            .map(|w| {
                json!({"alt": w.alt, "address": w.address, "bytes": w.data.len(),
                       "what": w.what, "verified": verified})
            })
            .collect();
        say(&json!({
            "result": "download",
            "device": args.device,
            "file": args.file.display().to_string(),
            "kind": written.plan.kind.name(),
            "writes": writes,
            "forced": written.plan.forced,
            "left": args.leave,
            "mode_after": mode_after,
            "control_transfers": transfers,
        })
        .to_string());
    } else {
        let style = Style::stdout();
        for w in &written.plan.writes {
            say(&format!(
                "{} {} ({} bytes) at {:#010x} (alt {}){}",
                style.good("wrote"),
                w.what,
                w.data.len(),
                w.address,
                w.alt,
                if verified {
                    ", verified by read-back"
                } else {
                    ", not verified (--no-verify)"
                }
            ));
        }
        match mode_after.as_deref() {
            Some("dfu") => say(&format!(
                "{} the device came back in DFU mode: its firmware is not valid (run `modflash modules --device {}`)",
                style.bad("left DFU mode, but"),
                args.device
            )),
            Some("not seen") => say("left DFU mode; the device has not shown up on USB again yet"),
            Some(m) => say(&format!("left DFU mode: the device runs its firmware ({m} mode)")),
            None => {}
        }
    }
    Ok(if mode_after.as_deref() == Some("dfu") {
        crate::ui::EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    })
}

fn upload(args: &UploadArgs) -> CmdResult {
    let devref = parse_device(&args.device)?;
    if args.length == 0 {
        return Err(CliError::usage("--length 0: nothing to read"));
    }
    let mut dev = Dev::open(&devref, args.json, &|_| Ok(()))?;
    let mut reporter = Reporter::new(args.json);
    reporter.event(Event::StepStarted {
        n: 1,
        total: 1,
        label: format!(
            "reading {} bytes at {:#010x} (alt {})",
            args.length, args.address, args.alt
        ),
        bytes: args.length as usize,
    });
    let len = args.length as usize;
    let data = match &mut dev {
        Dev::Sim(h) => {
            let mut s = sim_session(&mut h.device).map_err(dfu_error)?;
            s.upload(args.alt, args.address, len, &mut |e| reporter.event(e))
                .map_err(dfu_error)
        }
        Dev::Usb(t) => {
            let s = t.session().map_err(usb_error)?;
            s.upload(args.alt, args.address, len, &mut |e| reporter.event(e))
                .map_err(dfu_error)
        }
    };
    drop(reporter);
    dev.save()?;
    let data = data?;
    std::fs::write(&args.output, &data)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", args.output.display())))?;
    if args.json {
        say(&json!({
            "result": "upload",
            "device": args.device,
            "alt": args.alt,
            "address": args.address,
            "bytes": data.len(),
            "output": args.output.display().to_string(),
        })
        .to_string());
    } else {
        say(&format!(
            "read {} bytes at {:#010x} (alt {}) into {}",
            data.len(),
            args.address,
            args.alt,
            args.output.display()
        ));
    }
    Ok(EXIT_OK)
}

/// For `modules`: when `devref` names a device in DFU mode (virtual or on USB), its modules
/// read back over DFU; `None` when it is not in DFU mode (or not found on USB).
pub fn dfu_inventory(devref: &DeviceRef) -> Option<Result<Inventory, CliError>> {
    match devref {
        DeviceRef::Sim(name) => {
            let mut h = match open_sim(name) {
                Ok(h) => h,
                Err(e) => return Some(Err(e)),
            };
            if !h.device.in_dfu_mode() {
                return None;
            }
            let platform = h.device.platform();
            let read = sim_session(&mut h.device)
                .and_then(|mut s| s.read_inventory(platform, &mut |_| {}))
                .map(|r| r.inventory)
                .map_err(dfu_error);
            Some(read.and_then(|inv| {
                h.save().map_err(crate::source::sim_error)?;
                Ok(inv)
            }))
        }
        DeviceRef::Usb | DeviceRef::UsbId(_) => {
            let mut t = match UsbTarget::open(devref) {
                Ok(t) => t,
                Err(e @ UsbError::Permission { .. }) => return Some(Err(usb_error(e))),
                // Not on USB: the serial port may still answer.
                Err(_) => return None,
            };
            if t.device().mode != UsbMode::Dfu {
                return None;
            }
            let r = t.read_back(&mut |_| {}).map_err(usb_error);
            if let Ok(read) = &r {
                for n in &read.notes {
                    note(&format!("note: {n}"));
                }
            }
            Some(r.map(|r| r.inventory))
        }
        DeviceRef::Serial(_) => None,
    }
}
