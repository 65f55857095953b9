//! The serial transport: a device's USB serial console in listening mode (spec §8).
//!
//! * [`Link`] is the byte stream: a real port ([`PortLink`], the `serialport` crate), a
//!   virtual device's console in-process (`transport::sim::ConsoleLink`), or anything a
//!   test provides.
//! * [`Console`] speaks the console protocol over any link: enter listening mode (28800
//!   baud) or DFU mode (14400 baud), read the `s` module JSON until the document closes
//!   (brace matching, not a fixed silence), `i`, `v`, `m`, `x`, and flash a module by YMODEM
//!   ([`send_ymodem`] pumps modflash-ymodem's sans-IO sender) and read the device's verdict,
//!   and hold the `w` dialogue that gives it Wi-Fi credentials ([`Console::configure_wifi`]).
//! * [`discover`] finds Particle serial ports by USB vendor/product id; the device id comes
//!   from the USB serial number.
//! * [`SerialLink`] is a real device on a serial port as the executor sees it.

use std::io;

mod console;
mod device;
mod discover;
mod link;
mod monitor;
mod wifi;
mod ymodem;

pub(crate) use console::clip;
pub use console::{find_device_id, Console, FlashReport, Identity, Timeouts, Verdict};
pub use device::SerialLink;
pub use discover::{discover, find_port, ParticlePort};
pub use link::{Link, PortLink};
pub use modflash_device::console::{DFU_BAUD, LISTENING_BAUD};
pub use monitor::monitor;
pub use wifi::{Question, WifiAnswers, WifiExchange, WifiVerdict};
pub use ymodem::{send_ymodem, SendOutcome};

use crate::inventory::InventoryError;
use modflash_ymodem::SenderStats;

/// Why a serial operation failed. Every message names the port; [`SerialError::help`] says
/// what to do next.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SerialError {
    /// The port could not be opened.
    #[error("cannot open serial port {port}: {reason}")]
    #[diagnostic(code(modflash::serial::open), help("check the port name (`ls /dev/ttyACM*`), that no other program (particle serial monitor, screen) holds it, and that you may open it (the `dialout` group)"))]
    Open {
        /// Port path.
        port: String,
        /// The OS's reason.
        reason: String,
    },
    /// Reading or writing failed (the device went away?).
    #[error("{action} {link}: {source}")]
    #[diagnostic(
        code(modflash::serial::io),
        help("check the USB cable and that the device did not reset; then run the command again")
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The link.
        link: String,
        /// The OS error.
        source: io::Error,
    },
    /// The device did not answer a console command.
    #[error("no answer to `{command}` from the {link} within {waited_ms} ms")]
    #[diagnostic(code(modflash::serial::no_reply), help("put the device in listening mode (hold SETUP until the LED blinks blue) and run the command again; a device in DFU mode (blinking yellow) has no serial console"))]
    NoReply {
        /// The key sent.
        command: char,
        /// The link.
        link: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The device answered something unexpected.
    #[error("unexpected answer to `{command}` from the {link}: {reason} (got {excerpt:?})")]
    #[diagnostic(
        code(modflash::serial::bad_reply),
        help("make sure nothing else writes to the port and run the command again")
    )]
    BadReply {
        /// The key sent.
        command: char,
        /// The link.
        link: String,
        /// What is wrong.
        reason: String,
        /// The start of what arrived.
        excerpt: String,
    },
    /// The `s` JSON could not be read as an inventory.
    #[error("the module list from the {link} is not valid: {source}")]
    #[diagnostic(
        code(modflash::serial::describe),
        help("run the command again; if it keeps failing, report the device's `s` output")
    )]
    Describe {
        /// The link.
        link: String,
        /// Why.
        source: InventoryError,
    },
    /// The device's firmware no longer supports YMODEM flashing (Device OS 6.x).
    #[error("the device on the {link} does not accept YMODEM transfers: {text}")]
    #[diagnostic(
        code(modflash::serial::unsupported),
        help("flash over USB DFU instead (modflash flash FILE --device usb)")
    )]
    Unsupported {
        /// The link.
        link: String,
        /// What it said.
        text: String,
    },
    /// The YMODEM transfer failed.
    #[error("the YMODEM transfer to the {link} failed: {reason}")]
    #[diagnostic(code(modflash::serial::transfer), help("check the cable and run the command again: the device applies nothing unless it has received and validated the whole image"))]
    Transfer {
        /// The link.
        link: String,
        /// The protocol error, and what the device said.
        reason: String,
        /// Counters at the time.
        stats: SenderStats,
        /// modflash cancelled it (the user asked to stop); sending again will not help.
        cancelled: bool,
    },
    /// A step of the conversation did not end within its time limit: a device that keeps
    /// printing without answering, a transfer that crawls or stops, a device that does not
    /// come back after its restart.
    #[error("{step} did not end within its time limit of {} s on the {link}; {last}", secs(*.limit_ms))]
    #[diagnostic(code(modflash::serial::deadline), help("{help}"))]
    Deadline {
        /// The step, in words ("the answer to `s`", "the YMODEM transfer of 3952 bytes").
        step: String,
        /// The link.
        link: String,
        /// How long it was given (and waited).
        limit_ms: u64,
        /// What the device last did, in words.
        last: String,
        /// What to do.
        help: &'static str,
        /// The sender's counters, when the step was a transfer.
        stats: Option<Box<SenderStats>>,
    },
    /// The Wi-Fi dialogue (`w`) did not go as Device OS holds it. The reason never holds the
    /// password.
    #[error("Wi-Fi setup on the {link} failed: {reason}")]
    #[diagnostic(
        code(modflash::serial::wifi),
        help("make sure the device is in listening mode (blinking blue) and nothing else uses the port, then run the command again")
    )]
    Wifi {
        /// The link.
        link: String,
        /// What went wrong.
        reason: String,
    },
    /// Discovery found no usable port.
    #[error("{0}")]
    #[diagnostic(
        code(modflash::serial::discovery),
        help("connect the device over USB, or name the port: --device serial:/dev/ttyACM0")
    )]
    Discovery(String),
}

/// Milliseconds as seconds with one decimal, for messages ("10.0").
pub(crate) fn secs(ms: u64) -> String {
    format!("{}.{}", ms / 1000, ms % 1000 / 100)
}
