//! The library's one error type: every failure has a stable code, a message that says what
//! failed and where, a help line that says what to do, and keeps its source error.
//!
//! Each layer's own error (a serial port, libusb, a DFU exchange, the planner, a virtual
//! device's store) is a [`miette::Diagnostic`] with its code and help; [`Error`] wraps them
//! transparently and adds what only the orchestration knows (a transport the device cannot
//! do, the device's own refusal, a final state that differs from the prediction).

use crate::bundle::BundleError;
use crate::catalog::store::CatalogError;
use crate::catalog::CandidateError;
use crate::dfucheck::Refusal;
use crate::files::FileError;
use crate::inventory::InventoryError;
use crate::plan::PlanError;
use crate::sim::SimError;
#[cfg(unix)]
use crate::transport::attach::AttachError;
use crate::transport::control::ControlError;
use crate::transport::dfu::DfuOpError;
use crate::transport::serial::{FlashReport, SerialError};
use crate::transport::usb::UsbError;

/// A library result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between modflash and a device.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A virtual device could not be opened, created or saved.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sim(#[from] SimError),
    /// The serial port or the device's console failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Serial(#[from] SerialError),
    /// libusb, or finding the device on USB, failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Usb(#[from] UsbError),
    /// A DFU exchange failed or was refused.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Dfu(#[from] DfuOpError),
    /// A Particle control request failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Control(#[from] ControlError),
    /// The emulated USB bus could not run.
    #[cfg(unix)]
    #[error(transparent)]
    #[diagnostic(transparent)]
    Attach(#[from] AttachError),
    /// No plan exists for what was asked.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    /// A file cannot be installed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Candidate(#[from] CandidateError),
    /// The modflash home catalogue could not be changed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Catalog(#[from] CatalogError),
    /// A file the user named cannot be read: missing, a FIFO or device, far too large.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] FileError),
    /// An application bundle cannot be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Bundle(#[from] BundleError),
    /// What the device reports could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Inventory(#[from] InventoryError),
    /// A twin of the device could not be built from what it reports.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Twin(#[from] crate::twin::TwinError),
    /// A raw DFU download was refused by its checks.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Download(#[from] Refusal),
    /// The request itself cannot be carried out as asked.
    #[error("{what}")]
    #[diagnostic(code(modflash::request), help("{help}"))]
    BadRequest {
        /// What is wrong with it.
        what: String,
        /// What to ask instead.
        help: String,
    },
    /// A module the request needs is not in the catalogue.
    #[error("refused, nothing was written: the catalogue has no {what}")]
    #[diagnostic(
        code(modflash::catalog::missing),
        help("the release's files are on {page}: add them with `modflash catalog add PATH` (the .zip, a folder or the files) or pass --catalog DIR")
    )]
    NotInCatalog {
        /// The module, in words.
        what: String,
        /// The page of the release it ships with.
        page: String,
    },
    /// The connection cannot do what was asked (DFU over a serial port, ...).
    #[error("{device} cannot {what}")]
    #[diagnostic(code(modflash::transport::unsupported), help("{help}"))]
    Unsupported {
        /// The device reference.
        device: String,
        /// What was asked, as a verb phrase ("write over USB DFU").
        what: String,
        /// What to do instead.
        help: String,
    },
    /// The device is in a mode where it cannot do what was asked.
    #[error("{device} is in {mode} mode and cannot {what}")]
    #[diagnostic(code(modflash::device::wrong_mode), help("{help}"))]
    WrongMode {
        /// The device reference.
        device: String,
        /// Its mode.
        mode: String,
        /// What was asked.
        what: String,
        /// What to do.
        help: String,
    },
    /// The device validated a module and refused it.
    #[error("the device refused {module}: {verdict}")]
    #[diagnostic(code(modflash::device::refused), help("{help}"))]
    Refused {
        /// The module (file name or slot).
        module: String,
        /// The device's verdict in words.
        verdict: String,
        /// The Device OS result code, when the device printed one.
        code: Option<i32>,
        /// What to do.
        help: String,
        /// The transfer that ended in the refusal, when there was one.
        transfer: Option<Box<FlashReport>>,
    },
    /// A transfer ended but the device did not print its success line: it may or may not
    /// have applied the module.
    #[error("the device did not confirm {module}: {said}")]
    #[diagnostic(code(modflash::device::unconfirmed), help("{help}"))]
    Unconfirmed {
        /// The module (file name or slot).
        module: String,
        /// What it printed instead, in words.
        said: String,
        /// What to do.
        help: String,
        /// The transfer.
        transfer: Option<Box<FlashReport>>,
    },
    /// The device reports something it cannot be: its platform is unknown, its modules cannot
    /// be modelled.
    #[error("{device}: {reason}")]
    #[diagnostic(code(modflash::device::unknown))]
    Unmodelled {
        /// The device reference.
        device: String,
        /// What is wrong.
        reason: String,
    },
    /// A module was not sent: the device would refuse it or could not run it.
    #[error("not sending {file}: {reason}")]
    #[diagnostic(code(modflash::precheck::refused), help("{help}"))]
    NotSent {
        /// The file.
        file: String,
        /// Why, in words.
        reason: String,
        /// What to do.
        help: String,
    },
    /// What was written could not be confirmed on the device.
    #[error("{what}")]
    #[diagnostic(code(modflash::exec::unverified), help("{help}"))]
    Unverified {
        /// What was found instead, in words.
        what: String,
        /// What to do.
        help: String,
    },
    /// After a write the device is not in the state the plan predicted.
    #[error("the device is not in the predicted state: {}", .mismatches.join("; "))]
    #[diagnostic(code(modflash::exec::not_as_predicted), help("{help}"))]
    NotAsPredicted {
        /// Each difference, in words.
        mismatches: Vec<String>,
        /// What to do.
        help: String,
    },
    /// The user stopped the operation.
    #[error("interrupted while {what}")]
    #[diagnostic(code(modflash::exec::interrupted), help("{help}"))]
    Interrupted {
        /// What was running.
        what: String,
        /// What state the device was left in and what to do.
        help: String,
        /// What the interruption cut short (a cancelled transfer and its counters).
        #[source]
        source: Option<Box<Error>>,
    },
    /// The operating system refused something (a pseudo-terminal, a symbolic link).
    #[error("{what}: {source}")]
    #[diagnostic(code(modflash::os))]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    #[diagnostic(code(modflash::io))]
    Io {
        /// What was being done ("read", "write").
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// True when the checked thing failed (an invalid or refused module, an unmet
    /// dependency, a read-back that differs, a state that is not the predicted one): exit
    /// code 1. Everything else (the request, a file, the connection) is exit code 2.
    pub fn is_check_failure(&self) -> bool {
        match self {
            Self::Plan(e) => e.is_check_failure(),
            Self::Candidate(e) | Self::Catalog(CatalogError::Candidate(e)) => {
                !matches!(e, CandidateError::Io { .. } | CandidateError::File(_))
            }
            Self::Download(r) => !r.is_usage(),
            // A damaged or malformed bundle is a failed check; one that cannot be read is not.
            Self::Bundle(e) => !matches!(e, BundleError::File(_)),
            Self::Catalog(CatalogError::Source(e)) => e.is_damage(),
            Self::Dfu(e) => e.is_refusal(),
            Self::Usb(UsbError::Dfu(e)) => e.is_refusal(),
            Self::Refused { .. }
            | Self::Unconfirmed { .. }
            | Self::NotInCatalog { .. }
            | Self::NotSent { .. }
            | Self::Unverified { .. }
            | Self::NotAsPredicted { .. } => true,
            Self::Sim(_)
            | Self::Catalog(
                CatalogError::Io(_)
                | CatalogError::NotFound { .. }
                | CatalogError::Ambiguous { .. },
            )
            | Self::File(_)
            | Self::Serial(_)
            | Self::Control(_)
            | Self::Usb(_)
            | Self::Inventory(_)
            | Self::Twin(_)
            | Self::BadRequest { .. }
            | Self::Unsupported { .. }
            | Self::WrongMode { .. }
            | Self::Unmodelled { .. }
            | Self::Interrupted { .. }
            | Self::Os { .. }
            | Self::Io { .. } => false,
            #[cfg(unix)]
            Self::Attach(_) => false,
        }
    }

    /// The help line, when there is one.
    pub fn help_text(&self) -> Option<String> {
        miette::Diagnostic::help(self).map(|h| h.to_string())
    }

    /// The stable code ("modflash::serial::no_reply").
    pub fn code_text(&self) -> Option<String> {
        miette::Diagnostic::code(self).map(|c| c.to_string())
    }
}
