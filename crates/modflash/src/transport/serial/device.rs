//! A real device on a serial port as the executor drives it: listening-mode inventory and
//! YMODEM updates (DFU needs the USB interface: `--device usb`).

use std::time::Duration;

use modflash_module::Platform;
use modflash_ymodem::SenderConfig;

use super::{
    Console, FlashReport, PortLink, Verdict, WifiAnswers, WifiExchange, WifiVerdict, LISTENING_BAUD,
};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{Cancel, Observer};
use crate::transport::{unsupported, AfterLeave, Capabilities, DeviceLink, ModeChange};

/// How long a device may take to come back on its port after an update restart, in all.
const RECONNECT_WITHIN: Duration = Duration::from_secs(30);

/// What to do instead of DFU on a serial port.
const USE_USB: &str = "use --via serial, or --device usb (the device's USB interface) for DFU";

/// A device on a serial port. It stays in listening mode while the session uses it (setting
/// the same line rate again does not always reach the device, so it is not left and entered
/// again between operations) and goes back to what it was running when the session ends.
pub struct SerialLink {
    console: Console<PortLink>,
    platform: &'static Platform,
    device_id: Option<String>,
    listening: bool,
}

impl SerialLink {
    /// Opens `link` (already at 28800 baud) and reads the device's modules once to learn its
    /// platform.
    pub fn open(link: PortLink) -> Result<Self, Error> {
        let port = link.path().to_string();
        let usb_id = link.usb_id();
        let mut console = Console::new(link).with_usb_id(usb_id);
        let known = console
            .listening_inventory()
            .map_err(Error::from)
            .and_then(|inventory| {
                modflash_module::platform(inventory.platform_id).ok_or_else(|| Error::Unmodelled {
                    device: format!("serial:{port}"),
                    reason: format!(
                        "the device reports platform {}, which modflash does not know",
                        inventory.platform_id
                    ),
                })
            });
        let platform = match known {
            Ok(p) => p,
            Err(e) => {
                // Back to what it was running: nobody will use this device.
                let _ = console.exit_listening();
                return Err(e);
            }
        };
        // The device id names its backups; a device that does not say is still usable.
        let device_id = console.identify().ok().map(|i| i.device_id);
        Ok(Self {
            console,
            platform,
            device_id,
            listening: true,
        })
    }

    fn no_dfu(&self) -> Error {
        unsupported(
            self.reference(),
            "write over USB DFU: a serial port carries listening-mode updates only",
            USE_USB,
        )
    }
}

impl DeviceLink for SerialLink {
    fn reference(&self) -> String {
        format!("serial:{}", self.console.link_ref().path())
    }

    fn platform(&self) -> &'static Platform {
        self.platform
    }

    fn device_id(&self) -> Option<String> {
        self.device_id.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dfu: false,
            serial: true,
            usb: false,
            synthetic_modules: false,
        }
    }

    fn inventory(&mut self, _: &mut dyn Observer) -> Result<Inventory, Error> {
        let inventory = self.console.listening_inventory()?;
        self.listening = true;
        Ok(inventory)
    }

    fn enter_dfu(&mut self, _: &mut dyn Observer) -> Result<(), Error> {
        Err(self.no_dfu())
    }

    fn dfu_alt_name(&mut self, _: u8) -> Result<String, Error> {
        Err(self.no_dfu())
    }

    fn dfu_write(
        &mut self,
        _: u8,
        _: u32,
        _: &[u8],
        _: &crate::transport::dfu::WriteCheck,
        _: &mut dyn Observer,
    ) -> Result<(), Error> {
        Err(self.no_dfu())
    }

    fn dfu_read(
        &mut self,
        _: u8,
        _: u32,
        _: usize,
        _: &mut dyn Observer,
    ) -> Result<Vec<u8>, Error> {
        Err(self.no_dfu())
    }

    fn dfu_leave(&mut self, _: u32, _: &mut dyn Observer) -> Result<AfterLeave, Error> {
        Err(self.no_dfu())
    }

    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<FlashReport, Error> {
        self.console.enter_listening()?;
        self.listening = true;
        let sent = self
            .console
            .flash(name, data, SenderConfig::device_os(), observer, cancel);
        match &sent {
            Ok(r) if matches!(r.verdict, Verdict::Accepted { .. }) => {
                // The device restarts: its USB serial port goes away and comes back.
                // Opening the port at 28800 baud asks for listening mode again — unless the
                // port kept that rate across the restart (the same port, or a saved line
                // setting), when only a change away and back reaches the device.
                self.console
                    .link()
                    .reopen(LISTENING_BAUD, RECONNECT_WITHIN)?;
                self.console.reassert_listening()?;
            }
            Ok(_) => {
                let _ = self.console.wait_quiet(300);
            }
            Err(_) => {
                let _ = self.console.wait_quiet(300);
            }
        }
        Ok(sent?)
    }

    /// The baud-rate requests: 14400 for DFU mode, 28800 for listening mode (kept when the
    /// session ends), `x` to leave it.
    fn change_mode(
        &mut self,
        change: ModeChange,
        _: &mut dyn Observer,
    ) -> Result<Option<&'static str>, Error> {
        match change {
            ModeChange::Dfu => {
                self.listening = false;
                self.console.enter_dfu()?;
                Ok(None)
            }
            ModeChange::Listening => {
                self.console.enter_listening()?;
                self.console.identify()?;
                self.listening = false;
                Ok(Some("listening"))
            }
            ModeChange::Normal => {
                self.listening = false;
                self.console.exit_listening()?;
                Ok(None)
            }
            ModeChange::Reset | ModeChange::Safe => Err(unsupported(
                self.reference(),
                change.describe(),
                "a serial port can ask for DFU and listening mode only: press RESET (for safe \
                 mode hold SETUP through RESET until the LED blinks magenta)",
            )),
        }
    }

    fn wifi_configure(&mut self, answers: &WifiAnswers<'_>) -> Result<WifiExchange, Error> {
        self.console.enter_listening()?;
        self.listening = true;
        let exchange = self.console.configure_wifi(answers);
        match &exchange {
            // Saved: the device left listening mode to connect; an `x` now would go to the
            // application.
            Ok(e) if e.verdict == WifiVerdict::Saved => self.listening = false,
            _ => {
                let _ = self.console.wait_quiet(300);
            }
        }
        Ok(exchange?)
    }

    /// Sends the device back to what it was running.
    fn release(&mut self) {
        if std::mem::take(&mut self.listening) {
            let _ = self.console.exit_listening();
        }
    }
}
