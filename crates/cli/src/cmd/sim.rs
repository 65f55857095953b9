//! `modflash sim ...`: create, inspect, reset and remove virtual devices.

use anstream::println;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use modflash::sim::{Provision, SimStore};
use modflash_device::ResetReason;

use crate::ui::{CliError, CmdResult, EXIT_OK};
use crate::view::sim::{print_device, print_list};

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
    /// Pull the plug mid-write: power is cut during the device's Nth flash operation from
    /// now (an erase or a program), as on a bench; `sim reset` powers it on again.
    PowerCut {
        /// Device name.
        name: String,
        /// Flash operations from now (1 = the next); 0 disarms the cut.
        #[arg(long, value_name = "N")]
        after: u64,
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
    /// Run COMMAND with devices plugged into an emulated USB bus (umockdev), each on its own
    /// port: dfu-util, particle-cli, modflash --device usb or any libusb program sees them in
    /// DFU or normal mode; the devices are saved afterwards and the command's exit code
    /// returned.
    Attach {
        /// Device names, or patterns such as 'line-*'.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
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

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    modflash::files::read_module_file(path).map_err(|e| modflash::Error::from(e).into())
}

/// Runs a `sim` subcommand.
pub fn run(cmd: SimCommand) -> CmdResult {
    let store = SimStore::default();
    match cmd {
        SimCommand::Create(args) => create(&store, args),
        SimCommand::List { json } => print_list(&store, json),
        SimCommand::Show { name, json } => {
            let h = store.open(&name)?;
            print_device(&name, &h.device, json);
            Ok(EXIT_OK)
        }
        SimCommand::Reset { name, hold_button } => {
            let mut h = store.open(&name)?;
            h.device.reset(ResetReason::Button, hold_button);
            h.save()?;
            print_device(&name, &h.device, false);
            Ok(EXIT_OK)
        }
        SimCommand::PowerCut { name, after } => {
            let mut h = store.open(&name)?;
            match after {
                0 => h.device.flash_mut().clear_fault(),
                n => h.device.flash_mut().cut_power_after(n),
            }
            h.save()?;
            Ok(EXIT_OK)
        }
        SimCommand::MakeApp {
            platform,
            device_os,
            output,
        } => make_app(&platform, &device_os, &output),
        #[cfg(unix)]
        SimCommand::Serve { name, serial_link } => {
            super::sim_serve::serve(&store, &name, &serial_link)
        }
        #[cfg(unix)]
        SimCommand::Serial { name } => super::sim_serve::serial(&store, &name),
        #[cfg(unix)]
        SimCommand::Attach {
            names,
            trace,
            command,
        } => super::attach::run(&store, &names, &command, trace),
        #[cfg(not(unix))]
        SimCommand::Serve { .. } | SimCommand::Serial { .. } | SimCommand::Attach { .. } => {
            Err(CliError::usage(
                "this command shows the virtual device through a Unix pty or umockdev: it runs on Linux (and `sim serve`/`sim serial` on macOS)",
            )
            .with_help("`modflash flash`, `modules`, `doctor` and `dfu` talk to virtual devices everywhere"))
        }
        SimCommand::Rm { name } => {
            store.remove(&name)?;
            println!("removed sim:{name}");
            Ok(EXIT_OK)
        }
    }
}

fn make_app(platform: &str, release: &str, output: &PathBuf) -> CmdResult {
    let p = modflash_module::platform_by_name(platform)
        .ok_or_else(|| CliError::usage(format!("unknown platform `{platform}`")))?;
    let app = modflash::sim::release_app(p, release)?;
    std::fs::write(output, &app.bytes)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", output.display())))?;
    println!(
        "wrote {} ({} bytes): {} application for Device OS {release}, needs {}",
        output.display(),
        app.bytes.len(),
        p.display_name,
        app.needs
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
        return Err(modflash::sim::SimError::Exists(args.name).into());
    }
    let mut modules = Vec::new();
    for path in &args.modules {
        modules.push((path.display().to_string(), read_file(path)?));
    }
    let provision = Provision {
        platform,
        release: args.device_os.clone(),
        modules,
        user_app: args.user_app.as_deref().map(read_file).transpose()?,
        factory_app: args.factory_app.as_deref().map(read_file).transpose()?,
    };
    let device = provision.build(&args.name)?;
    let handle = store.create(&args.name, device)?;
    print_device(&args.name, &handle.device, false);
    Ok(EXIT_OK)
}
