//! Arguments shared by several commands: which device (`DeviceArgs`, flattened into every
//! command that talks to one) and what to install (`PlanArgs`, for `plan` and `flash`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use modflash::plan::{Force, Via};
use modflash::request::Wanted;
use modflash::transport::Pace;
use modflash::DeviceRef;

use crate::ui::{CliError, ColorArg, Verbosity};

/// How output looks and how much of it there is: options every command takes.
#[derive(Args, Clone, Copy, Debug)]
pub struct OutputArgs {
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value_t = ColorArg::Auto,
        env = "MODFLASH_COLOR"
    )]
    pub color: ColorArg,
    /// Say less: results, warnings and errors; no progress, no notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: every operation as it starts and ends, with its time.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl OutputArgs {
    /// `-q`, `-v` or neither.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

/// Which device (or devices) a command talks to.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// The device: usb (the only one attached), usb:DEVICE_ID, serial:PORT or sim:NAME;
    /// `flash` also takes several, `all` and patterns like 'sim:line-*'. Default:
    /// $MODFLASH_DEVICE, else the one device attached (a choice when there are several).
    #[arg(long, value_name = "REF", env = "MODFLASH_DEVICE")]
    pub device: Vec<String>,
}

impl DeviceArgs {
    /// The one device named, or chosen when none is named.
    pub fn require(&self) -> Result<DeviceRef, CliError> {
        match self.device.as_slice() {
            [] => crate::select::one(),
            [one] => parse(one),
            _ => Err(CliError::usage("this command takes one --device")
                .with_help("`modflash flash` is the command that takes several")),
        }
    }

    /// Every device named (`all` and `sim:` patterns expanded, `all` limited to `platforms`
    /// when not empty), or the one chosen when none is named.
    pub fn targets(&self, platforms: &[u16]) -> Result<Vec<DeviceRef>, CliError> {
        if self.device.is_empty() {
            return Ok(vec![crate::select::one()?]);
        }
        let store = modflash::sim::SimStore::default();
        let mut out: Vec<DeviceRef> = Vec::new();
        for spec in &self.device {
            for d in modflash::devices::expand(spec, platforms, &store)? {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        if out.is_empty() {
            return Err(
                CliError::usage(format!("no device matches {}", self.device.join(", ")))
                    .with_help("`modflash devices` lists the devices there are"),
            );
        }
        Ok(out)
    }
}

/// A `--device` value naming one device.
fn parse(text: &str) -> Result<DeviceRef, CliError> {
    text.parse::<DeviceRef>().map_err(|e| {
        CliError::usage(e.to_string()).with_help(modflash::devices::which_devices(
            &modflash::sim::SimStore::default(),
        ))
    })
}

/// The transport a plan uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// USB DFU.
    Dfu,
    /// Serial listening mode (YMODEM).
    Serial,
    /// Particle's USB control requests (firmware update in normal mode, Device OS 0.8+).
    Usb,
}

/// A mode to put a device in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The bootloader's DFU mode (blinking yellow).
    Dfu,
    /// Listening mode (blinking blue): the serial console takes commands.
    Listening,
    /// Safe mode (breathing magenta): the system runs, the application does not.
    Safe,
    /// The firmware: out of DFU or listening mode.
    Normal,
}

/// A check `--force` may override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForceArg {
    /// Flash even when dependencies stay unmet (the device ends in safe mode).
    Dependencies,
    /// Flash a bundle even when the application's assets stay missing (the device ends in
    /// safe mode).
    Assets,
}

/// What to install, shared by `plan` and `flash`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Module files to install (application, system parts, bootloader, ...).
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Transport: dfu, serial or usb (default: DFU when the connection can — with USB control
    /// requests for what DFU cannot write or where they are cheaper —, else serial).
    #[arg(long, value_enum)]
    pub via: Option<ViaArg>,
    /// Directory of Device OS module files to meet dependencies from (repeatable).
    #[arg(long, value_name = "DIR")]
    pub catalog: Vec<PathBuf>,
    /// Also install the system modules (bootloader, system parts, radio stack) of this
    /// Device OS release, from the catalogue.
    #[arg(long, value_name = "VERSION")]
    pub device_os: Option<String>,
    /// Write the application to the factory-reset slot.
    #[arg(long)]
    pub factory: bool,
    /// Override one named check.
    #[arg(long, value_enum, value_name = "CHECK")]
    pub force: Vec<ForceArg>,
    /// Print JSON (fields documented in docs/json.md).
    #[arg(long)]
    pub json: bool,
}

impl PlanArgs {
    /// The library's request.
    pub fn wanted(&self) -> Wanted {
        Wanted {
            files: self.files.clone(),
            catalogs: self.catalog.clone(),
            device_os: self.device_os.clone(),
            via: self.via.map(|v| match v {
                ViaArg::Dfu => Via::Dfu,
                ViaArg::Serial => Via::Serial,
                ViaArg::Usb => Via::Usb,
            }),
            factory: self.factory,
            force: Force {
                dependencies: self.force.contains(&ForceArg::Dependencies),
                assets: self.force.contains(&ForceArg::Assets),
            },
        }
    }
}

/// How `flash` and `restore` run a plan.
#[derive(Args, Clone, Copy, Debug)]
pub struct RunArgs {
    /// Show the plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Do not keep what the plan replaces (by default it goes to the modflash home first:
    /// `modflash backups`).
    #[arg(long)]
    pub no_backup: bool,
    /// Succeed when a module is written but nothing proves it installed (over serial the
    /// device reports no SHA-256 for system parts): reported "not verified".
    #[arg(long)]
    pub no_verify: bool,
    /// How fast a virtual device works: instant, or modelled (each erase, write and restart
    /// takes the time the model gives it on the device, as a real flash does).
    #[arg(
        long,
        value_enum,
        value_name = "PACE",
        default_value_t = PaceArg::Instant,
        env = "MODFLASH_PACE"
    )]
    pub pace: PaceArg,
}

/// `--pace`: how fast a virtual device works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PaceArg {
    /// As fast as this computer runs the model.
    Instant,
    /// In the device's modelled time.
    Modelled,
}

impl From<PaceArg> for Pace {
    fn from(pace: PaceArg) -> Self {
        match pace {
            PaceArg::Instant => Pace::Instant,
            PaceArg::Modelled => Pace::Modelled,
        }
    }
}

/// A number in decimal or 0x-hex.
pub fn number(text: &str) -> Result<u32, modflash::dfucheck::BadNumber> {
    modflash::dfucheck::parse_number(text)
}
