//! The `modflash` command-line tool: inspect, plan and flash Particle-style modular firmware,
//! on real devices and on virtual ones.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod cmd;
mod fleet_render;
mod render;
mod select;
mod signals;
mod ui;
#[cfg(unix)]
mod unix;
mod view;

/// `modflash -V`: the version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MODFLASH_COMMIT"),
    " ",
    env!("MODFLASH_COMMIT_DATE"),
    ")"
);

/// `modflash --version`: the same, with the target and profile it was built for.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit:  ",
    env!("MODFLASH_COMMIT"),
    " (",
    env!("MODFLASH_COMMIT_DATE"),
    ")\ntarget:  ",
    env!("MODFLASH_TARGET"),
    "\nprofile: ",
    env!("MODFLASH_PROFILE")
);

/// Safe flashing for Particle-style modular firmware.
#[derive(Parser, Debug)]
#[command(name = "modflash", version = VERSION, long_version = LONG_VERSION)]
struct Cli {
    #[command(flatten)]
    output: args::OutputArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check module files: verdict, platform, versions, dependencies, addresses, CRC and SHA.
    Inspect {
        /// Files to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Show the plan for installing modules on a device: order, addresses, reasons, and the
    /// predicted final state (nothing is written).
    Plan {
        #[command(flatten)]
        args: args::PlanArgs,
        /// Plan for every describe JSON file in this directory instead of a device (JSON lines).
        #[arg(long, value_name = "DIR", conflicts_with = "device")]
        inventories: Option<PathBuf>,
        /// The platform of describe files that name none (Device OS 0.4.x printed no "p");
        /// without it, the one their module table fits.
        #[arg(long, value_name = "NAME", requires = "inventories")]
        platform: Option<String>,
        /// Also draw the device before and after the plan as an SVG picture into this file.
        #[arg(long, value_name = "OUT", conflicts_with = "inventories")]
        svg: Option<PathBuf>,
    },
    /// Where modules sit in flash, how full each region is, what depends on what and what
    /// fails: of a device, or of module files placed where they would go (--svg: a picture).
    Map(cmd::map::MapArgs),
    /// Plan, confirm, write, verify: install modules and check the device ends as predicted.
    Flash {
        #[command(flatten)]
        args: args::PlanArgs,
        #[command(flatten)]
        run: args::RunArgs,
        #[command(flatten)]
        fleet: cmd::fleet::FleetArgs,
        /// After a verified flash, print what the device writes to its serial port (Ctrl-C
        /// stops).
        #[arg(long)]
        monitor: bool,
    },
    /// What went on each device: the run log `flash` keeps (JSON lines with --json).
    History {
        #[command(flatten)]
        device: args::DeviceArgs,
        /// Print the entries as JSON lines (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Reset the device into its firmware.
    Reset {
        #[command(flatten)]
        device: args::DeviceArgs,
    },
    /// Put the device in a mode: dfu, listening, safe or normal (its firmware).
    Mode {
        /// The mode.
        #[arg(value_enum)]
        mode: args::ModeArg,
        #[command(flatten)]
        device: args::DeviceArgs,
    },
    /// The backups `flash` kept of what it replaced, newest last.
    Backups {
        #[command(flatten)]
        device: args::DeviceArgs,
        /// Print JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Put a backup's modules back on the device: planned, checked and verified like `flash`.
    Restore {
        /// The backup: its folder, or its name as `modflash backups` lists it.
        backup: String,
        #[command(flatten)]
        device: args::DeviceArgs,
        #[command(flatten)]
        run: args::RunArgs,
        /// Print JSON (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Explain why a device is in its state and print the command that fixes it.
    Doctor {
        #[command(flatten)]
        device: args::DeviceArgs,
        /// Directory of Device OS module files (repeatable).
        #[arg(long, value_name = "DIR")]
        catalog: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The catalogue of Device OS module files used to meet dependencies.
    #[command(subcommand)]
    Catalog(cmd::catalog::CatalogCommand),
    /// The modules installed on a device, every check as PASS/FAIL, and what fixes a failed
    /// dependency.
    Modules {
        #[command(flatten)]
        device: args::DeviceArgs,
        /// Print JSON: {"platform_id", "modules"} (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Every reachable device: Particle devices on USB (normal and DFU mode), their serial
    /// ports, and virtual devices, with platform, mode and device id.
    Devices {
        /// Print a JSON array (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// USB DFU, safely: download (checked, verified) and upload.
    #[command(subcommand)]
    Dfu(cmd::dfu::DfuCommand),
    /// The udev rules that let your user open Particle devices: print them, or install them.
    Udev {
        /// Write them to /etc/udev/rules.d/50-particle.rules (needs root).
        #[arg(long)]
        install: bool,
        /// Install into this directory instead (for packaging and tests).
        #[arg(long, hide = true, requires = "install")]
        rules_dir: Option<PathBuf>,
    },
    /// Serial console: flash a module by YMODEM, monitor the port.
    #[command(subcommand)]
    Serial(cmd::serial::SerialCommand),
    /// Print what the device writes to its serial port (`serial monitor`).
    Monitor {
        #[command(flatten)]
        device: args::DeviceArgs,
        /// Line rate (28800 puts a running device in listening mode, 14400 in DFU mode).
        #[arg(long, default_value_t = 9600)]
        baud: u32,
    },
    /// Give a device Wi-Fi credentials through its listening-mode console, as `particle
    /// serial wifi` does (the password is asked without echo, or read from a file), or clear
    /// them.
    Wifi(cmd::wifi::WifiArgs),
    /// Virtual devices: create, show, reset, remove.
    #[command(subcommand)]
    Sim(cmd::sim::SimCommand),
    /// Print the shell completion script: `source <(modflash completions bash)`, or save it
    /// where your shell looks (README, "Shell completions").
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of the lines `flash --json` prints (docs/json.md).
    Schema,
    /// Print the man page (roff; `modflash man | man -l -`), or write one page per command
    /// into a directory.
    Man {
        /// Write modflash.1, modflash-flash.1, … here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    #[cfg(unix)]
    unix::default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ui::EXIT_USAGE
            } else {
                ui::EXIT_OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    crate::ui::configure(cli.output.color, cli.output.verbosity());
    let result = match cli.command {
        Command::Inspect { files, json } => cmd::inspect::run(&files, json),
        Command::Plan {
            args,
            inventories,
            platform,
            svg,
        } => cmd::plan::run(args, inventories, platform, svg),
        Command::Map(args) => cmd::map::run(&args),
        Command::Flash {
            args,
            run,
            fleet,
            monitor,
        } => cmd::flash::run(args, run, fleet, monitor),
        Command::Backups { device, json } => cmd::backups::list(&device, json),
        Command::History { device, json } => cmd::history::run(&device, json),
        Command::Reset { device } => cmd::mode::reset(&device),
        Command::Mode { mode, device } => cmd::mode::set(mode, &device),
        Command::Restore {
            backup,
            device,
            run,
            json,
        } => cmd::backups::restore(&backup, &device, run, json),
        Command::Doctor {
            device,
            catalog,
            json,
        } => cmd::doctor::run(&device, &catalog, json),
        Command::Catalog(c) => cmd::catalog::run(c),
        Command::Modules { device, json } => cmd::modules::run(&device, json),
        Command::Serial(c) => cmd::serial::run(c),
        Command::Monitor { device, baud } => {
            cmd::serial::run(cmd::serial::SerialCommand::Monitor { device, baud })
        }
        Command::Devices { json } => cmd::devices::run(json),
        Command::Dfu(c) => cmd::dfu::run(c),
        Command::Udev { install, rules_dir } => cmd::udev::run(install, rules_dir),
        Command::Wifi(args) => cmd::wifi::run(args),
        Command::Sim(sim) => cmd::sim::run(sim),
        Command::Completions { shell } => cmd::shell::completions(shell),
        Command::Man { dir } => cmd::shell::man(dir.as_deref()),
        Command::Schema => {
            ui::say(&serde_json::to_string_pretty(&view::stream::schema()).unwrap_or_default());
            Ok(ui::EXIT_OK)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            ui::print_error(&err);
            ExitCode::from(err.code)
        }
    }
}
