//! `modflash sim ...`: create, inspect, reset and remove virtual devices.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modflash::sim::{device_id_for, SimError, SimStore};
use modflash_device::describe::describe;
use modflash_device::{Device, ResetReason};
use modflash_module::release::release_name;
use serde_json::{json, Value};

use crate::ui::{CliError, CmdResult, Style, EXIT_OK};

/// Virtual-device subcommands.
#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Create a virtual device and boot it once.
    Create(CreateArgs),
    /// List virtual devices.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a virtual device: mode, LED, modules, recent events.
    Show {
        /// Device name.
        name: String,
        /// Print JSON (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Reset a virtual device, optionally holding the SETUP button (3 s = DFU mode).
    Reset {
        /// Device name.
        name: String,
        /// Seconds the button is held while resetting (1 safe mode, 3 DFU, 6.5 factory reset).
        #[arg(long, value_name = "SECONDS")]
        hold_button: Option<f32>,
    },
    /// Delete a virtual device.
    Rm {
        /// Device name.
        name: String,
    },
    /// Expose a virtual device's USB serial port as a pty linked at PATH (28800 baud enters
    /// listening mode, 14400 DFU mode) until Ctrl-C; the device is saved after every change.
    Serve {
        /// Device name.
        name: String,
        /// Where to create the symlink to the pty (e.g. /tmp/photon.tty).
        #[arg(long, value_name = "PATH")]
        serial_link: PathBuf,
    },
    /// Talk to a virtual device's listening-mode console on this terminal (keys i, m, s, v,
    /// f, x, w).
    Serial {
        /// Device name.
        name: String,
    },
    /// Run COMMAND with the device plugged into an emulated USB bus (umockdev): dfu-util,
    /// modflash --device usb or any libusb program sees it in DFU or normal mode; the device is
    /// saved afterwards and the command's exit code returned.
    Attach {
        /// Device name.
        name: String,
        /// Print every usbfs ioctl and control transfer on standard error.
        #[arg(long)]
        trace: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Write a release's Tinker application as a module file, to try modflash on virtual
    /// devices (a synthetic image with the release's real header: version, dependencies).
    MakeApp {
        /// Platform name or id.
        #[arg(long)]
        platform: String,
        /// Device OS release the app is built for.
        #[arg(long, value_name = "VERSION")]
        device_os: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Arguments of `sim create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Device name (used as `--device sim:NAME`).
    pub name: String,
    /// Platform name or id (photon, p1, electron, argon, boron, p2, ...).
    #[arg(long)]
    pub platform: String,
    /// Install this Device OS release (synthetic modules with the release's real headers).
    #[arg(
        long,
        value_name = "VERSION",
        conflicts_with = "modules",
        required_unless_present = "modules"
    )]
    pub device_os: Option<String>,
    /// Install these module files instead of a release.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub modules: Vec<PathBuf>,
    /// Write this file raw into the application slot (unchecked, like a user's mistake).
    #[arg(long, value_name = "FILE")]
    pub user_app: Option<PathBuf>,
    /// Write this file raw into the factory-reset slot.
    #[arg(long, value_name = "FILE")]
    pub factory_app: Option<PathBuf>,
}

fn sim_error(e: SimError) -> CliError {
    let help = e.help();
    let err = CliError::usage(e.to_string());
    err.with_help_opt(help)
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        CliError::usage(format!("cannot read {}: {e}", path.display())).with_help("check the path")
    })
}

/// Runs a `sim` subcommand.
pub fn run(cmd: SimCommand) -> CmdResult {
    let store = SimStore::default();
    match cmd {
        SimCommand::Create(args) => create(&store, args),
        SimCommand::List { json } => list(&store, json),
        SimCommand::Show { name, json } => {
            let h = store.open(&name).map_err(sim_error)?;
            print_device(&name, &h.device, json);
            Ok(EXIT_OK)
        }
        SimCommand::Reset { name, hold_button } => {
            let mut h = store.open(&name).map_err(sim_error)?;
            h.device.reset(ResetReason::Button, hold_button);
            h.save().map_err(sim_error)?;
            print_device(&name, &h.device, false);
            Ok(EXIT_OK)
        }
        SimCommand::MakeApp {
            platform,
            device_os,
            output,
        } => make_app(&platform, &device_os, &output),
        SimCommand::Serve { name, serial_link } => {
            super::sim_serve::serve(&store, &name, &serial_link)
        }
        SimCommand::Serial { name } => super::sim_serve::serial(&store, &name),
        SimCommand::Attach {
            name,
            trace,
            command,
        } => super::attach::run(&store, &name, &command, trace),
        SimCommand::Rm { name } => {
            store.remove(&name).map_err(sim_error)?;
            println!("removed sim:{name}");
            Ok(EXIT_OK)
        }
    }
}

fn make_app(platform: &str, release: &str, output: &PathBuf) -> CmdResult {
    let p = modflash_module::platform_by_name(platform)
        .ok_or_else(|| CliError::usage(format!("unknown platform `{platform}`")))?;
    let r = modflash_module::release::platform_release(p, release).ok_or_else(|| {
        CliError::usage(format!(
            "Device OS {release} is not a release modflash knows for the {}",
            p.display_name
        ))
    })?;
    let app = r
        .modules_for(p)
        .find(|m| m.function == modflash_module::ModuleFunction::UserPart)
        .ok_or_else(|| {
            CliError::usage(format!(
                "Device OS {release} has no application for the {}",
                p.display_name
            ))
        })?;
    let bytes = modflash_module::synth::synthesize(p, &app);
    std::fs::write(output, &bytes)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", output.display())))?;
    println!(
        "wrote {} ({} bytes): {} application for Device OS {release}, needs {}",
        output.display(),
        bytes.len(),
        p.display_name,
        app.dependencies[0]
    );
    Ok(EXIT_OK)
}

fn create(store: &SimStore, args: CreateArgs) -> CmdResult {
    let platform = modflash_module::platform_by_name(&args.platform).ok_or_else(|| {
        CliError::usage(format!("unknown platform `{}`", args.platform)).with_help(
            "use a name such as photon, p1, electron, argon, boron, bsom, tracker, p2 or msom",
        )
    })?;
    if store.exists(&args.name) {
        return Err(sim_error(SimError::Exists(args.name)));
    }
    let mut device = Device::blank(platform, device_id_for(&args.name))
        .map_err(|e| CliError::usage(e).with_help("pick a platform with a known memory map"))?;
    if let Some(release) = &args.device_os {
        device
            .install_release(release, args.user_app.is_none())
            .map_err(CliError::usage)?;
    }
    for path in &args.modules {
        let bytes = read_file(path)?;
        device
            .install_module(&bytes)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.user_app {
        device
            .install_user_app(&read_file(path)?)
            .map_err(CliError::usage)?;
    }
    if let Some(path) = &args.factory_app {
        device
            .install_factory_app(&read_file(path)?)
            .map_err(CliError::usage)?;
    }
    device.power_on();
    let handle = store.create(&args.name, device).map_err(sim_error)?;
    print_device(&args.name, &handle.device, false);
    Ok(EXIT_OK)
}

fn list(store: &SimStore, json_output: bool) -> CmdResult {
    let names = store.list().map_err(sim_error)?;
    let mut rows = Vec::new();
    for name in names {
        match store.open(&name) {
            Ok(h) => rows.push(json!({
                "name": name,
                "platform": h.device.platform().name,
                "mode": h.device.state.mode.name(),
                "device_id": h.device.state.device_id,
                "device_os": h.device.system_version().and_then(release_name),
            })),
            Err(e) => rows.push(json!({ "name": name, "error": e.to_string() })),
        }
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no virtual devices (create one with `modflash sim create NAME --platform photon --device-os 1.5.0`)");
    } else {
        for r in rows {
            match r["error"].as_str() {
                Some(e) => println!("sim:{:<16} {e}", r["name"].as_str().unwrap_or("")),
                None => println!(
                    "sim:{:<16} {:<9} {:<10} Device OS {:<8} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["platform"].as_str().unwrap_or(""),
                    r["mode"].as_str().unwrap_or(""),
                    r["device_os"].as_str().unwrap_or("?"),
                    r["device_id"].as_str().unwrap_or("")
                ),
            }
        }
    }
    Ok(EXIT_OK)
}

/// The `sim show` JSON object.
pub fn device_json(name: &str, d: &Device) -> Value {
    let stats = d.flash_stats();
    json!({
        "name": name,
        "platform": d.platform().name,
        "platform_id": d.platform().id,
        "device_id": d.state.device_id,
        "mode": d.state.mode.name(),
        "led": d.state.led,
        "reset_reason": d.state.reset_reason,
        "device_os": d.system_version().and_then(release_name),
        "describe": serde_json::from_str::<Value>(&describe(d)).unwrap_or(Value::Null),
        "events": d.state.events,
        "stats": {
            "control_transfers": d.state.control_transfers,
            "bytes_programmed": stats.bytes_programmed,
            "sectors_erased": stats.sectors_erased,
            "modelled_ms": stats.modelled_us / 1000,
            "modelled_us": stats.modelled_us,
        },
    })
}

/// Prints a device in words or JSON.
pub fn print_device(name: &str, d: &Device, json_output: bool) {
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&device_json(name, d)).unwrap_or_default()
        );
        return;
    }
    let style = Style::stdout();
    let release = d
        .system_version()
        .map(|v| match release_name(v) {
            Some(r) => format!("Device OS {r}"),
            None => format!("system version {v}"),
        })
        .unwrap_or_else(|| "no system firmware".into());
    println!(
        "{} — {}, {release}, device id {}",
        style.bold(&format!("sim:{name}")),
        d.platform().display_name,
        d.state.device_id
    );
    let mode = match d.state.mode {
        modflash_device::Mode::App => style.good(d.state.mode.name()),
        modflash_device::Mode::Dfu | modflash_device::Mode::Listening => {
            style.warn(d.state.mode.name())
        }
        _ => style.bad(d.state.mode.name()),
    };
    println!("  mode     {mode} (LED {})", d.state.led);
    for f in d.system_info() {
        let Some(info) = f.info else { continue };
        let verdict = if f.is_valid() {
            style.good("ok")
        } else {
            style.bad(&format!(
                "failed {}",
                modflash_device::hal::describe_flags(f.failed())
            ))
        };
        let store = if f.bounds.store == modflash_module::Store::Factory {
            " (factory)"
        } else {
            ""
        };
        println!(
            "  module   {} version {}{store}: {verdict}",
            info.slot(),
            info.version
        );
    }
    let recent: Vec<&String> = d.state.events.iter().rev().take(6).collect();
    for (i, e) in recent.iter().rev().enumerate() {
        println!("  {} {e}", if i == 0 { "events  " } else { "        " });
    }
}
