//! What the planner takes and gives: the request, the plan (steps, actions, the predicted
//! state) and why there is no plan.

use std::fmt;

use modflash_device::{Device, DeviceEvent, Led, Mode};
use modflash_module::platform::dct;
use modflash_module::{ModuleFunction, ModuleRef};

use crate::catalog::{Candidate, Catalog};

/// How the plan reaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// USB DFU: writes go to flash directly; nothing is validated until the device boots.
    Dfu,
    /// Serial listening mode (YMODEM into the OTA region): every module is validated by the
    /// device before it is accepted, one module per reset.
    Serial,
    /// Particle's USB control requests while the firmware runs (firmware update 250–253 into
    /// the OTA region): validated by the device like serial, one module per reset, without a
    /// serial port (Device OS 0.8 and later).
    Usb,
}

impl Via {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dfu => "dfu",
            Self::Serial => "serial",
            Self::Usb => "usb",
        }
    }

    /// The transport in a sentence ("over USB control requests").
    pub fn words(self) -> &'static str {
        match self {
            Self::Dfu => "over USB DFU",
            Self::Serial => "over serial",
            Self::Usb => "over USB control requests",
        }
    }

    /// The device validates every module before it takes it (the OTA path), so each step is
    /// checked by the device rather than only at the final boot.
    pub fn validated_per_step(self) -> bool {
        matches!(self, Self::Serial | Self::Usb)
    }
}

/// What one step writes, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the module's flash image at `address` through DFU alternate setting `alt`.
    DfuWrite {
        /// DfuSe alternate setting.
        alt: u8,
        /// DfuSe address.
        address: u32,
    },
    /// Stage a bootloader in the OTA region (`alt`, `address`) and set the DCT OTA flag (alt 1,
    /// offset 1753 = 0xA5): the system installs it at the next boot (the bootloader's own
    /// sector is read-only over DFU).
    DfuStageBootloader {
        /// DfuSe alternate setting of the OTA region.
        alt: u8,
        /// DfuSe address of the OTA region.
        address: u32,
    },
    /// Erase `len` bytes at `address` of alternate setting `alt` (written as 0xFF after the
    /// page erase): invalidates the legacy 128 KB application on Gen3 from 3.1, which would
    /// otherwise run instead of the new one. `module` is the application it makes way for.
    DfuErase {
        /// DfuSe alternate setting.
        alt: u8,
        /// DfuSe address.
        address: u32,
        /// Bytes to erase.
        len: u32,
    },
    /// Send the module over YMODEM; the device validates it and installs it at the reset.
    Serial,
    /// Send the module with USB control requests (START, DATA, FINISH); the device validates
    /// it and installs it at the reset (a bootloader at once).
    Usb,
}

/// One write of a plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// The module written.
    pub module: Candidate,
    /// How it is written.
    pub action: Action,
    /// Version installed in that slot before this step.
    pub from_version: Option<u16>,
    /// The user named this module (rather than the planner adding it).
    pub requested: bool,
    /// Why the step is there.
    pub reason: String,
}

impl Step {
    /// Bytes sent to the device for this step.
    pub fn bytes(&self) -> usize {
        match self.action {
            Action::DfuStageBootloader { .. } => self.module.bytes.len() + 1,
            Action::DfuWrite { .. } => self.module.flash_bytes().len(),
            Action::DfuErase { len, .. } => len as usize,
            Action::Serial | Action::Usb => self.module.bytes.len(),
        }
    }

    /// How the step reaches the device.
    pub fn via(&self) -> Via {
        match self.action {
            Action::Serial => Via::Serial,
            Action::Usb => Via::Usb,
            Action::DfuWrite { .. }
            | Action::DfuStageBootloader { .. }
            | Action::DfuErase { .. } => Via::Dfu,
        }
    }

    /// "dfu", "serial" or "usb".
    pub fn transport(&self) -> &'static str {
        self.via().name()
    }

    /// The address the data goes to.
    pub fn address(&self) -> u32 {
        match self.action {
            Action::DfuWrite { address, .. }
            | Action::DfuStageBootloader { address, .. }
            | Action::DfuErase { address, .. } => address,
            Action::Serial | Action::Usb => self.module.info.start_address,
        }
    }
}

/// What the device will look like when the plan has run (from the twin).
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Mode after the final boot.
    pub mode: Mode,
    /// LED after the final boot.
    pub led: Led,
    /// Installed modules: slot, version.
    pub modules: Vec<(ModuleRef, u16)>,
    /// Installed modules that fail one of the device's checks (e.g. an unmet dependency
    /// when `--force dependencies` was given).
    pub failing: Vec<ModuleRef>,
    /// The twin's event log for the last boot.
    pub events: Vec<DeviceEvent>,
}

impl Prediction {
    /// The app runs.
    pub fn app_runs(&self) -> bool {
        self.mode == Mode::App
    }
}

/// A proven plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The transport asked for (or the connection's default); a plan that mixes transports
    /// has steps on others too ([`Step::via`]).
    pub via: Via,
    /// Writes in order (empty = nothing to write).
    pub steps: Vec<Step>,
    /// Nothing to write, but the device was found in DFU mode (a re-run after an interrupted
    /// flash whose writes had all completed): running the plan resets it into its firmware.
    pub leave_dfu: bool,
    /// Requested files already installed (same SHA-256), with a note each.
    pub skipped: Vec<String>,
    /// The predicted final state.
    pub prediction: Prediction,
    /// The applications go to the factory-reset slot.
    pub factory: bool,
}

impl Plan {
    /// The transports the steps use, each once, in the order they first appear (empty for a
    /// plan without steps).
    pub fn transports(&self) -> Vec<Via> {
        let mut out: Vec<Via> = Vec::new();
        for s in &self.steps {
            if !out.contains(&s.via()) {
                out.push(s.via());
            }
        }
        out
    }

    /// Total bytes written.
    pub fn bytes(&self) -> usize {
        self.steps.iter().map(Step::bytes).sum()
    }
}

/// A module the plan needs and cannot find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The slot.
    pub slot: ModuleRef,
    /// Lowest acceptable version.
    pub min_version: u16,
    /// Who needs it.
    pub needed_by: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} \u{2265} {}", self.slot, self.min_version)?;
        if self.slot.function == ModuleFunction::SystemPart {
            if let Some(r) = first_release_with(self.min_version) {
                write!(f, " (e.g. Device OS {r})")?;
            }
        }
        write!(f, ", needed by {}", self.needed_by)
    }
}

pub(super) fn first_release_with(version: u16) -> Option<&'static str> {
    modflash_module::release::RELEASES
        .iter()
        .find(|r| r.system_version >= version)
        .map(|r| r.name)
}

/// Why there is no plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// A requested file must not go to this device.
    #[error("{file}: {reason}")]
    #[diagnostic(code(modflash::plan::refused), help("{help}"))]
    Refused {
        /// The file.
        file: String,
        /// Why, in a sentence.
        reason: String,
        /// What to do.
        help: String,
    },
    /// Modules the plan needs are not available.
    #[error("no plan: the device needs {}", .missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    #[diagnostic(code(modflash::plan::missing), help("{help}"))]
    Missing {
        /// What is missing.
        missing: Vec<Missing>,
        /// What to do.
        help: String,
    },
    /// No order of the available modules is accepted by the device on this transport.
    #[error("no plan over {via}: {reason}")]
    #[diagnostic(code(modflash::plan::no_order), help("{help}"))]
    NoOrder {
        /// Transport.
        via: &'static str,
        /// What blocks every order.
        reason: String,
        /// What to do.
        help: String,
    },
    /// The device is off: nothing can be planned.
    #[error("the device is off")]
    #[diagnostic(
        code(modflash::plan::device_off),
        help("power it on first (a virtual device: `modflash sim reset NAME`)")
    )]
    DeviceOff,
    /// The plan is possible, but the device would not run its application afterwards.
    #[error("the device would not run its app after this plan: it would end in {mode} mode ({led}): {cause}")]
    #[diagnostic(code(modflash::plan::would_not_run), help("{help}"))]
    WouldNotRun {
        /// The mode it would end in.
        mode: &'static str,
        /// Its LED then.
        led: String,
        /// The device's own words for why.
        cause: String,
        /// What to do.
        help: String,
    },
    /// The application's assets would not all be on the device: Device OS would run it in
    /// safe mode.
    #[error("{app} needs {}", .unmet.join("; "))]
    #[diagnostic(code(modflash::plan::assets_missing), help("{help}"))]
    AssetsMissing {
        /// The application (its file).
        app: String,
        /// Each asset not there, in words.
        unmet: Vec<String>,
        /// What to do.
        help: String,
    },
    /// The planner's model and the device twin disagreed (a bug; nothing was written).
    #[error("the plan did not survive the dry run on the device twin: {0}")]
    #[diagnostic(
        code(modflash::plan::unproven),
        help("please report this; nothing was written")
    )]
    Unproven(String),
}

impl PlanError {
    /// Every planning failure is a failed check (exit code 1): nothing was written.
    pub fn is_check_failure(&self) -> bool {
        true
    }
}

/// Checks the user named to override (`--force CHECK`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Force {
    /// Allow a final state where dependencies are unmet (the device will be in safe mode).
    pub dependencies: bool,
    /// Allow a final state where the application's assets are missing (the device will be in
    /// safe mode).
    pub assets: bool,
}

/// Everything the planner needs.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// A twin of the device as it is now.
    pub twin: &'a Device,
    /// Modules the user asked for (in argument order); asset modules among them (a bundle's
    /// assets) are written after the others (`plan/assets.rs`).
    pub targets: Vec<Candidate>,
    /// Modules available to meet dependencies.
    pub catalog: &'a Catalog,
    /// Transport.
    pub via: Via,
    /// Transports the planner may use for single steps besides `via`, where `via` cannot
    /// write a module or where they cost less device time; the plan then mixes transports.
    pub also: Vec<Via>,
    /// The other transport the connection offers, to suggest when `via` cannot do it.
    pub alternative: Option<Via>,
    /// Overrides.
    pub force: Force,
    /// Write user parts to the factory-reset slot instead of the application slot.
    pub factory: bool,
}

/// The OTA flag offset, for the executor.
pub const OTA_FLAG_OFFSET: u32 = dct::OTA_UPDATE_FLAG as u32;
