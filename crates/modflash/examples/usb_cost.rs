//! What modflash's USB paths cost a virtual device, in-process: the device on a USB bus of its
//! own (`SimBus`, no serial port, as on the emulated bus), driven by the same `UsbLink` code as
//! a real one, measured by the device's own counters (control transfers, modelled time).
//!
//! Usage: `cargo run --example usb_cost -- PLATFORM RELEASE MODE FILE`, MODE `dfu` (the device
//! held into DFU mode first) or `normal`; prints one JSON line per flow: `dfu download --leave`
//! (checked writes with read-back) and `flash` (inventory, plan, backup, write, final check).

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::direct::{dfu_download, Download};
use modflash::plan::{flash, plan, FlashOptions, Force, Request, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::transport::sim::SimBus;
use modflash::transport::usb::UsbLink;
use modflash::{DeviceRef, Session};
use modflash_device::{Device, ResetReason};
use modflash_module::platform_by_name;

/// A fresh device of `platform` with `release`, in DFU mode when `dfu`.
fn device(platform: &str, release: &str, dfu: bool) -> Result<Device, String> {
    let p = platform_by_name(platform).ok_or(format!("unknown platform {platform}"))?;
    let mut d = Device::blank(p, [0x3b; 12]).map_err(|e| e.to_string())?;
    d.install_release(release, true)
        .map_err(|e| e.to_string())?;
    d.power_on();
    if dfu {
        d.reset(ResetReason::Button, Some(3.0));
    }
    Ok(d)
}

/// Runs `flow` on a `UsbLink` over the device's own bus; returns (transfers, modelled µs).
fn measure(
    d: &mut Device,
    flow: impl FnOnce(&mut Session<'_>) -> Result<(), modflash::Error>,
) -> Result<(u64, u64), String> {
    let (t0, us0) = (d.state.control_transfers, d.flash_stats().modelled_us);
    {
        let link = UsbLink::on_bus(SimBus::new(d).without_serial_port(), &DeviceRef::Usb)
            .map_err(|e| e.to_string())?;
        let mut session = Session::from_link(Box::new(link));
        flow(&mut session).map_err(|e| e.to_string())?;
    }
    Ok((
        d.state.control_transfers - t0,
        d.flash_stats().modelled_us - us0,
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [platform, release, mode, file] = args.as_slice() else {
        eprintln!("usage: usb_cost PLATFORM RELEASE dfu|normal FILE");
        std::process::exit(2);
    };
    let result = (|| -> Result<(), String> {
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let dfu = mode == "dfu";
        let report = |flow: &str, (t, us): (u64, u64)| {
            println!("{{\"flow\":\"{flow}\",\"control_transfers\":{t},\"modelled_us\":{us}}}");
        };
        let mut d = device(platform, release, dfu)?;
        let how = Download {
            verify: true,
            leave: true,
            ..Download::default()
        };
        report(
            "dfu download --leave",
            measure(&mut d, |s| {
                dfu_download(s, &bytes, how, &mut Quiet, &Cancel::new()).map(|_| ())
            })?,
        );
        let mut d = device(platform, release, dfu)?;
        let home = std::env::temp_dir().join(format!("usb_cost-{}", std::process::id()));
        std::env::set_var("MODFLASH_HOME", &home);
        let app = Candidate::from_bytes(Origin::File(file.into()), bytes.clone())
            .map_err(|e| e.to_string())?;
        let cost = measure(&mut d, |s| {
            let twin = s.twin(&mut Quiet)?;
            let catalog = Catalog::default();
            let request = Request {
                twin: &twin,
                targets: vec![app],
                catalog: &catalog,
                via: Via::Dfu,
                also: vec![Via::Usb],
                alternative: None,
                force: Force::default(),
                factory: false,
            };
            let p = plan(&request)?;
            let flashed = flash(s, &p, FlashOptions::default(), &mut Quiet, &Cancel::new())?;
            if !flashed.verified() {
                return Err(modflash::Error::NotAsPredicted {
                    mismatches: flashed.mismatches,
                    help: String::new(),
                });
            }
            Ok(())
        });
        let _ = std::fs::remove_dir_all(&home);
        report("flash", cost?);
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
