//! `modflash dfu download` and `modflash dfu upload`: a safe dfu-util, on any device
//! (`--device sim:NAME` in-process, `usb[:ID]` over libusb).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modflash::direct::{dfu_download, dfu_upload, Download};
use modflash::transport::AfterLeave;
use modflash::Session;
use serde_json::{json, Value};

use crate::args::{number, DeviceArgs};
use crate::render::Renderer;
use crate::ui::{say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};

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

/// Arguments of `dfu download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// A module file, a DfuSe .dfu file, or a raw image (then --address is needed).
    pub file: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
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
    #[command(flatten)]
    pub device: DeviceArgs,
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

fn download(args: &DownloadArgs) -> CmdResult {
    let devref = args.device.require()?;
    let mut session = Session::open(&devref)?;
    // At most the device's flash: the file's bound comes from the platform.
    let file = modflash::files::read_image_file(&args.file, session.platform())
        .map_err(modflash::Error::from)?;
    let mut renderer = Renderer::new(args.json);
    let how = Download {
        address: args.address,
        alt: args.alt,
        force: args.force,
        verify: !args.no_verify,
        leave: args.leave,
    };
    let cancel = crate::signals::catch();
    let result = dfu_download(&mut session, &file, how, &mut renderer, &cancel);
    crate::signals::release();
    drop(renderer);
    // Saved whatever happened: the device's state is what it is now.
    session.save()?;
    let done = result?;
    let verified = !args.no_verify;
    // The mode it was seen in afterwards: observed on a virtual device, "normal" when a real
    // one showed up on USB again.
    let observed = session.observe().map(|o| o.mode.name());
    let mode_after = done.left.map(|l| match l {
        AfterLeave::Firmware => observed.unwrap_or("normal"),
        AfterLeave::Dfu => "dfu",
        AfterLeave::NotSeen => "not seen",
    });
    if args.json {
        let writes: Vec<Value> = done
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
            "device": devref.to_string(),
            "file": args.file.display().to_string(),
            "kind": done.plan.kind.name(),
            "writes": writes,
            "forced": done.plan.forced,
            "left": args.leave,
            "mode_after": mode_after,
            "control_transfers": session.control_transfers(),
        })
        .to_string());
    } else {
        let style = Style::stdout();
        for w in &done.plan.writes {
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
        match done.left {
            Some(AfterLeave::Dfu) => say(&format!(
                "{} the device came back in DFU mode: its firmware is not valid (run `modflash modules --device {devref}`)",
                style.bad("left DFU mode, but"),
            )),
            Some(AfterLeave::NotSeen) => {
                say("left DFU mode; the device has not shown up on USB again yet")
            }
            Some(AfterLeave::Firmware) => say(&format!(
                "left DFU mode: the device runs its firmware ({} mode)",
                mode_after.unwrap_or("normal")
            )),
            None => {}
        }
    }
    Ok(if done.left == Some(AfterLeave::Dfu) {
        EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    })
}

fn upload(args: &UploadArgs) -> CmdResult {
    let devref = args.device.require()?;
    if args.length == 0 {
        return Err(CliError::usage("--length 0: nothing to read"));
    }
    let mut session = Session::open(&devref)?;
    let mut renderer = Renderer::new(args.json);
    let data = dfu_upload(
        &mut session,
        args.alt,
        args.address,
        args.length as usize,
        &mut renderer,
    );
    drop(renderer);
    session.save()?;
    let data = data?;
    std::fs::write(&args.output, &data)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", args.output.display())))?;
    if args.json {
        say(&json!({
            "result": "upload",
            "device": devref.to_string(),
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
