//! Where a device's inventory comes from, by `--device` reference: a virtual device is read
//! directly (`Inventory::from_device`), a serial device answers `s` in listening mode. A DFU
//! source (module headers read back over DFU upload) is one more arm of [`read_inventory`].

use std::sync::atomic::{AtomicBool, Ordering};

use modflash::inventory::Inventory;
use modflash::serial::{find_port, PortLink, SerialError, Session, LISTENING_BAUD};
use modflash::sim::{SimError, SimHandle, SimStore};
use modflash::DeviceRef;

use crate::ui::CliError;

/// Set by SIGINT/SIGTERM/SIGHUP once [`catch_interrupts`] ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C (and SIGTERM, SIGHUP) only sets a flag ([`interrupted`]), so a command
/// can stop cleanly: cancel a transfer, save a virtual device. Blocking calls return EINTR
/// (no SA_RESTART).
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic is a valid,
        // async-signal-safe handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Back to the default: Ctrl-C ends the process at once.
pub fn release_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// True once an interrupt arrived after [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Prints a line on standard output; a closed pipe (`| head`) is not an error worth a panic.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints a line on standard error, ignoring a closed stream.
pub fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Parses a `--device` value with a helpful error.
pub fn parse_device(text: &str) -> Result<DeviceRef, CliError> {
    text.parse::<DeviceRef>().map_err(|e| {
        CliError::usage(e.to_string())
            .with_help("for example --device serial:/dev/ttyACM0 or --device sim:bench")
    })
}

/// A serial error as a CLI error (exit 2: the link, not the module, failed).
pub fn serial_error(e: SerialError) -> CliError {
    let help = e.help();
    let err = CliError::usage(e.to_string());
    err.with_help_opt(help)
}

/// A sim-store error as a CLI error.
pub fn sim_error(e: SimError) -> CliError {
    let help = e.help();
    let err = CliError::usage(e.to_string());
    err.with_help_opt(help)
}

/// Opens and locks a virtual device.
pub fn open_sim(name: &str) -> Result<SimHandle, CliError> {
    SimStore::default().open(name).map_err(sim_error)
}

/// The serial port a reference names, and the device id when discovery knows it:
/// `serial:PORT` as given; `usb` / `usb:ID` by USB vendor/product id and serial number.
pub fn serial_port(devref: &DeviceRef) -> Result<(String, Option<String>), CliError> {
    match devref {
        DeviceRef::Serial(port) => Ok((port.clone(), None)),
        DeviceRef::Usb => {
            let p = find_port(None).map_err(serial_error)?;
            Ok((p.port, p.device_id))
        }
        DeviceRef::UsbId(id) => {
            let p = find_port(Some(id)).map_err(serial_error)?;
            Ok((p.port, p.device_id))
        }
        DeviceRef::Sim(name) => Err(CliError::usage(format!(
            "sim:{name} is a virtual device, not a serial port"
        ))),
    }
}

/// Opens a device's serial port at 28800 baud (which asks a running device for listening
/// mode).
pub fn open_serial(devref: &DeviceRef) -> Result<PortLink, CliError> {
    let (port, id) = serial_port(devref)?;
    let link = PortLink::open(&port, LISTENING_BAUD).map_err(serial_error)?;
    Ok(link.with_device_id(id))
}

/// What is installed on the device `devref` names.
pub fn read_inventory(devref: &DeviceRef) -> Result<Inventory, CliError> {
    // A device in DFU mode (virtual or on USB): module headers and CRCs read back over DFU.
    if let Some(inventory) = crate::cmd::dfu::dfu_inventory(devref) {
        return inventory;
    }
    match devref {
        DeviceRef::Sim(name) => {
            let h = open_sim(name)?;
            Ok(Inventory::from_device(&h.device))
        }
        DeviceRef::Serial(_) | DeviceRef::Usb | DeviceRef::UsbId(_) => {
            let mut session = Session::new(open_serial(devref)?);
            let inventory = session.listening_inventory().map_err(serial_error)?;
            // Back to what the device was running.
            let _ = session.exit_listening();
            Ok(inventory)
        }
    }
}
