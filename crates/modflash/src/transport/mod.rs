//! How modflash reaches devices: one [`DeviceLink`] per kind of connection (a virtual device
//! in-process, a real device over libusb, a serial port), the protocol layers they share
//! (DfuSe operations, the listening-mode console and YMODEM), and the servers that show a
//! virtual device to other programs (an emulated USB bus, a pty).

use modflash_device::{Device, DeviceEvent, Led, Mode};
use modflash_module::{ModuleRef, Platform};

use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{Cancel, Observer};

#[cfg(unix)]
pub mod attach;
pub mod control;
pub mod dfu;
#[cfg(unix)]
pub mod pty;
pub mod serial;
pub mod sim;
#[cfg(unix)]
pub mod umockdev;
pub mod usb;

use control::UpdateVerdict;
use serial::{FlashReport, WifiAnswers, WifiExchange};

/// How a user clears a device's Wi-Fi credentials (Device OS has no console key for it:
/// `system/src/main.cpp`, `bootloader/src/main.c`).
pub const CLEAR_WIFI_BY_HAND: &str = "hold the SETUP (MODE) button for 10 seconds while the LED blinks blue (listening mode), until it blinks blue fast: Device OS clears every stored network. Holding SETUP for 10 s while pressing RESET clears them too (a settings reset; the LED turns white)";

/// What a connection can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes over USB DFU (DfuSe): the device can be put in DFU mode and written.
    pub dfu: bool,
    /// Module updates through the serial console in listening mode (YMODEM).
    pub serial: bool,
    /// Module updates through Particle's USB control requests (firmware update 250–253),
    /// when the device's firmware answers them (Device OS 0.8 and later, in normal mode).
    pub usb: bool,
    /// The device may receive synthetic release modules (virtual devices only: synthetic
    /// images are not firmware).
    pub synthetic_modules: bool,
}

/// What can be seen of a device that is observed directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Its mode.
    pub mode: Mode,
    /// Its LED.
    pub led: Led,
    /// Its event log, oldest first.
    pub events: Vec<DeviceEvent>,
}

/// Where a device went after leaving DFU mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterLeave {
    /// It runs its firmware (normal mode seen on USB, or observed).
    Firmware,
    /// It came straight back in DFU mode: its firmware is not valid.
    Dfu,
    /// It has not shown up again within the wait.
    NotSeen,
}

/// A change of mode asked of a device (`modflash mode`, `modflash reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeChange {
    /// Restart the device as it is.
    Reset,
    /// The bootloader's DFU mode.
    Dfu,
    /// Listening mode: the serial console takes commands.
    Listening,
    /// Safe mode: the system runs, the application does not.
    Safe,
    /// The firmware, out of DFU, listening or safe mode.
    Normal,
}

impl ModeChange {
    /// What is asked, as a message names it.
    pub fn describe(self) -> &'static str {
        match self {
            ModeChange::Reset => "reset",
            ModeChange::Dfu => "enter DFU mode",
            ModeChange::Listening => "enter listening mode",
            ModeChange::Safe => "enter safe mode",
            ModeChange::Normal => "go back to its firmware",
        }
    }
}

/// How fast a virtual device works; a real device always takes its own time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pace {
    /// As fast as this computer runs the model: the device's time is only counted.
    #[default]
    Instant,
    /// In the device's modelled time: every erase, write, USB request and restart takes as
    /// long as the model says it takes on the device, so a person sees a real flash.
    Modelled,
}

/// One open device, as the executor drives it. Implemented for a virtual device
/// ([`sim::SimLink`]), a real device over libusb ([`usb::UsbLink`]) and a real device on a
/// serial port ([`serial::SerialLink`]); an operation a connection cannot do answers
/// [`Error::Unsupported`].
pub trait DeviceLink {
    /// The reference that names the device ("sim:bench", "usb:3b00…", "serial:/dev/ttyACM0").
    fn reference(&self) -> String;
    /// Its platform.
    fn platform(&self) -> &'static Platform;
    /// Its device id (24 lower-case hex digits), when the connection knows it.
    fn device_id(&self) -> Option<String>;
    /// The bytes of the module installed in `slot`, when the connection can read them without
    /// changing the device (a virtual device's flash, modules already read back over DFU).
    fn installed_image(&mut self, _slot: ModuleRef) -> Option<Vec<u8>> {
        None
    }
    /// What this connection can do.
    fn capabilities(&self) -> Capabilities;
    /// What is installed, read from the device now.
    fn inventory(&mut self, observer: &mut dyn Observer) -> Result<Inventory, Error>;
    /// A model of the device to plan on: an exact copy for a virtual device, otherwise
    /// rebuilt from the inventory (in DFU mode when the device is).
    fn twin(&mut self, observer: &mut dyn Observer) -> Result<Device, Error> {
        let inventory = self.inventory(observer)?;
        let mut twin = crate::twin::twin_from_inventory(self.platform(), &inventory)?;
        if self.in_dfu_mode() {
            twin.request_dfu();
        }
        Ok(twin)
    }
    /// The device's observed state, when it can be observed directly.
    fn observe(&self) -> Option<Observation> {
        None
    }
    /// USB vendor and product id the device shows in DFU mode.
    fn dfu_id(&self) -> (u16, u16) {
        self.platform()
            .usb
            .map_or((0, 0), |u| (u.vendor, u.dfu.unwrap_or(u.normal)))
    }
    /// Sets how fast a virtual device works from now on (nothing to set on a real one).
    fn set_pace(&mut self, _pace: Pace) {}
    /// The device is in DFU mode, as last seen.
    fn in_dfu_mode(&self) -> bool {
        false
    }
    /// Puts the device in DFU mode (no-op when it already is).
    fn enter_dfu(&mut self, observer: &mut dyn Observer) -> Result<(), Error>;
    /// The DfuSe memory-layout string of alternate setting `alt` (the device must be in DFU
    /// mode).
    fn dfu_alt_name(&mut self, alt: u8) -> Result<String, Error>;
    /// Writes `data` at `address` of `alt`, then reads back and compares what `check` says.
    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        check: &dfu::WriteCheck,
        observer: &mut dyn Observer,
    ) -> Result<(), Error>;
    /// Whether the device, once it runs system firmware `system` (system part 1's version),
    /// reports its own check of each running module's CRC-32 when its modules are read: the
    /// module table it sends over control requests (Device OS 0.8 and later), a virtual
    /// device's HAL. A DFU write it will report on needs only its header and suffix read back.
    fn reports_integrity(&self, _system: Option<u16>) -> bool {
        false
    }
    /// Reads `length` bytes at `address` of `alt`.
    fn dfu_read(
        &mut self,
        alt: u8,
        address: u32,
        length: usize,
        observer: &mut dyn Observer,
    ) -> Result<Vec<u8>, Error>;
    /// Leaves DFU mode for the firmware at `address` and waits to see where the device went.
    fn dfu_leave(&mut self, address: u32, observer: &mut dyn Observer)
        -> Result<AfterLeave, Error>;
    /// One module through the listening-mode console: listening mode, `f`, YMODEM, the
    /// device's verdict. When the device accepts the module, returns once it has restarted
    /// and can be talked to again. After a refusal or a failed transfer the device is quiet
    /// and can be sent a module again (it leaves listening mode when the session ends, or at
    /// once for a virtual device).
    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<FlashReport, Error>;
    /// One module through Particle's USB control requests (firmware update: START, DATA,
    /// FINISH) while the firmware runs: the device validates it as an OTA update and, when it
    /// accepts it, applies it and restarts; returns once the device can be talked to again.
    /// A refusal ([`UpdateVerdict::Refused`]) changes nothing.
    fn usb_flash(
        &mut self,
        _data: &[u8],
        _observer: &mut dyn Observer,
        _cancel: &Cancel,
    ) -> Result<UpdateVerdict, Error> {
        Err(unsupported(
            self.reference(),
            "take a module through USB control requests",
            "use --via dfu or --via serial",
        ))
    }
    /// Changes the device's mode as asked and leaves it there when the session ends. Returns
    /// the mode the device is seen in afterwards (a [`Mode`] name, or "normal" on USB), when
    /// the connection can see it.
    fn change_mode(
        &mut self,
        change: ModeChange,
        _: &mut dyn Observer,
    ) -> Result<Option<&'static str>, Error> {
        Err(unsupported(
            self.reference(),
            change.describe(),
            "use the device's buttons (RESET; SETUP held through RESET for DFU or safe mode)",
        ))
    }
    /// Wi-Fi credentials through listening mode's `w`
    /// ([`serial::Console::configure_wifi`]): the device is put in listening mode and
    /// answered; once it has saved them it leaves listening mode by itself to connect.
    fn wifi_configure(&mut self, _answers: &WifiAnswers<'_>) -> Result<WifiExchange, Error> {
        Err(unsupported(
            self.reference(),
            "take Wi-Fi credentials over this connection",
            "use the device's serial console: --device serial:PORT, or usb for its USB serial port",
        ))
    }
    /// Clears the device's Wi-Fi credentials the way a user does. Only a virtual device's
    /// button can be held for the user.
    fn wifi_clear(&mut self, _observer: &mut dyn Observer) -> Result<(), Error> {
        Err(unsupported(
            self.reference(),
            "clear Wi-Fi credentials over this connection: Device OS has no command for it on its serial console",
            CLEAR_WIFI_BY_HAND,
        ))
    }
    /// Control transfers sent over USB so far (0 where there is no USB).
    fn control_transfers(&self) -> u64 {
        0
    }
    /// Persists what changed: a virtual device is saved; a real one keeps its own state.
    fn save(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Ends the conversation, whatever happened: a device held in a mode for the session
    /// (listening mode on a serial port) goes back to what it was running.
    fn release(&mut self) {}
}

/// The error of an operation a connection cannot do.
pub(crate) fn unsupported(device: String, what: &str, help: &str) -> Error {
    Error::Unsupported {
        device,
        what: what.to_string(),
        help: help.to_string(),
    }
}
