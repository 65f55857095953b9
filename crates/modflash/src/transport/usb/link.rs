//! A device on a USB bus as the executor drives it ([`UsbLink`], over any [`UsbBus`]): in
//! normal mode the module table, mode changes and firmware updates over Particle's control
//! requests (the serial port, a DFU read-back and the 14400/28800-baud tricks for firmware that
//! stalls them); in DFU mode the modules read back, verified writes, leave; every
//! re-enumeration waited for within a bound and explained when it does not come.

use std::time::Duration;

use modflash_control::proto::{
    DfuModeRequest, SafeModeRequest, StartListeningModeRequest, StopListeningModeRequest,
    SystemResetRequest,
};
use modflash_module::platform::Platform;
use modflash_module::{ModuleFunction, ModuleRef};

use super::{select_from, LibUsb, UsbBus, UsbDevice, UsbError, UsbMode};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{Cancel, Event, Observer, Quiet};
use crate::transport::control::{ControlClient, ControlError, ModuleTable, UpdateVerdict};
use crate::transport::dfu::{DfuSession, ReadBack, WriteCheck};
use crate::transport::serial::{FlashReport, DFU_BAUD, LISTENING_BAUD};
use crate::transport::{unsupported, AfterLeave, Capabilities, DeviceLink, ModeChange};
use crate::DeviceRef;

/// How long to wait for re-enumeration.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// For a device switched to DFU mode to show up.
    pub enter_dfu: Duration,
    /// For a device that left DFU mode to show up again.
    pub leave: Duration,
    /// For a device that restarts (a reset or safe-mode request, an applied update) to show
    /// up again: Device OS acts 1 s after its reply, then boots.
    pub restart: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            enter_dfu: Duration::from_secs(10),
            leave: Duration::from_secs(10),
            restart: Duration::from_secs(15),
        }
    }
}

/// A device on a USB bus, as the executor drives it.
pub struct UsbLink<B: UsbBus = LibUsb> {
    bus: B,
    selector: DeviceRef,
    device: UsbDevice,
    session: Option<DfuSession<B::Dfu>>,
    waits: Waits,
    control_transfers: u64,
    /// Whether the firmware answers Particle's control requests, once known.
    answers_control: Option<bool>,
}

impl UsbLink<LibUsb> {
    /// Finds the device `devref` names (`usb` or `usb:ID`) on the machine's bus, in either
    /// mode.
    pub fn open(devref: &DeviceRef) -> Result<Self, UsbError> {
        Self::on_bus(LibUsb::new(), devref)
    }
}

impl<B: UsbBus> UsbLink<B> {
    /// Finds the device `devref` names (`usb` or `usb:ID`) on `bus`, in either mode.
    pub fn on_bus(mut bus: B, devref: &DeviceRef) -> Result<Self, UsbError> {
        let device = select_from(bus.devices()?, devref)?;
        if let Some(e) = &device.access_error {
            if e == "permission denied" {
                return Err(UsbError::Permission {
                    node: device.node(),
                    what: device.to_string(),
                });
            }
        }
        let mut link = Self {
            bus,
            selector: devref.clone(),
            device,
            session: None,
            waits: Waits::default(),
            control_transfers: 0,
            answers_control: None,
        };
        // No id in the serial number (an emulated bus, a permission problem): ask the device.
        if link.device.device_id.is_none() && link.device.mode == UsbMode::Normal {
            link.device.device_id = link.control(|c| c.device_id()).ok();
        }
        Ok(link)
    }

    /// Runs `f` with a control-request client on the device's vendor pipe (the device must be
    /// in normal mode), counting its transfers and learning whether the firmware answers.
    fn control<T>(
        &mut self,
        f: impl FnOnce(&mut ControlClient<'_>) -> Result<T, ControlError>,
    ) -> Result<T, Error> {
        if self.device.mode != UsbMode::Normal {
            return Err(Error::WrongMode {
                device: self.reference(),
                mode: "dfu".into(),
                what: "answer control requests".into(),
                help: "leave DFU mode first (`modflash mode normal`)".into(),
            });
        }
        let (result, sent) = {
            let mut pipe = self.bus.open_vendor(&self.device)?;
            let mut client = ControlClient::new(pipe.as_mut());
            let result = f(&mut client);
            (result, client.transfers())
        };
        self.control_transfers += sent;
        match &result {
            Ok(_) => self.answers_control = Some(true),
            Err(e) if e.is_not_spoken() => self.answers_control = Some(false),
            Err(_) => {}
        }
        Ok(result?)
    }

    /// The firmware may answer control requests (not known to stall them).
    fn may_answer_control(&self) -> bool {
        self.answers_control != Some(false)
    }

    /// Polls the bus with a short backoff (50 ms doubling to 400 ms) until `pick` finds a
    /// device or `within` passes.
    fn wait_for(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&[UsbDevice]) -> Option<UsbDevice>,
    ) -> Option<UsbDevice> {
        let until = self.bus.elapsed() + within;
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Ok(devices) = self.bus.devices() {
                if let Some(d) = pick(&devices) {
                    return Some(d);
                }
            }
            let now = self.bus.elapsed();
            if now >= until {
                return None;
            }
            self.bus.sleep(backoff.min(until - now));
            backoff = (backoff * 2).min(Duration::from_millis(400));
        }
    }

    /// Waits until the device has re-enumerated (another address than now) in `want` mode,
    /// within `within`; `after` says what started it, for the message when it does not come.
    fn wait_back(&mut self, want: UsbMode, within: Duration, after: &str) -> Result<(), UsbError> {
        let old = (self.device.bus, self.device.address);
        let me = self.device.clone();
        let found = self.wait_for(within, |devices| {
            devices
                .iter()
                .find(|d| {
                    d.mode == want
                        && (d.bus, d.address) != old
                        && match (&me.device_id, &d.device_id) {
                            (Some(a), Some(b)) => a == b,
                            _ => d.platform.id == me.platform.id,
                        }
                })
                .cloned()
        });
        match found {
            Some(d) => {
                self.device = d;
                Ok(())
            }
            None => {
                let text = format!(
                    "{} did not show up in {} mode within {} s after {after}",
                    self.device,
                    if want == UsbMode::Dfu {
                        "DFU"
                    } else {
                        "normal"
                    },
                    within.as_secs()
                );
                Err(if want == UsbMode::Dfu {
                    UsbError::NoDfu(text)
                } else {
                    UsbError::NotBack(text)
                })
            }
        }
    }

    /// The device as last seen.
    pub fn device(&self) -> &UsbDevice {
        &self.device
    }

    fn close_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.control_transfers += u64::from(s.control_transfers());
        }
    }

    fn matches(&self, d: &UsbDevice) -> bool {
        match (&self.device.device_id, &d.device_id) {
            (Some(a), Some(b)) => a == b,
            // Without an id, the same port path is the same device.
            _ => d.port_path == self.device.port_path && d.platform.id == self.device.platform.id,
        }
    }

    /// The DFU session, opened on first use (the device must be in DFU mode).
    pub fn session(&mut self) -> Result<&mut DfuSession<B::Dfu>, UsbError> {
        if self.session.is_none() {
            if self.device.mode != UsbMode::Dfu {
                return Err(UsbError::NoDfu(format!(
                    "{} is not in DFU mode",
                    self.device
                )));
            }
            let (port, info) = self.bus.open_dfu(&self.device)?;
            self.session = Some(DfuSession::new(port, info));
        }
        match self.session.as_mut() {
            Some(s) => Ok(s),
            None => Err(UsbError::NoDfu(format!(
                "{} has no DFU session",
                self.device
            ))),
        }
    }

    /// Reads the modules back over DFU (the device must be in DFU mode): only their headers
    /// and suffixes for an inventory to plan from (the device checks their CRC at boot and
    /// reports it in normal mode), every byte when the result is the only evidence.
    fn read_back(
        &mut self,
        in_full: bool,
        observer: &mut dyn Observer,
    ) -> Result<ReadBack, UsbError> {
        let platform = self.device.platform;
        let session = self.session()?;
        let r = if in_full {
            session.read_inventory(platform, observer)?
        } else {
            session.read_headers(platform, observer)?
        };
        for n in &r.notes {
            observer.event(Event::note(n.clone()));
        }
        Ok(r)
    }

    /// Looks for the device again (after a mode change).
    fn refresh(&mut self) -> Option<UsbDevice> {
        let devices = self.bus.devices().ok()?;
        devices.into_iter().find(|d| self.matches(d))
    }

    /// Switches a device in normal mode to DFU mode: the DFU-mode control request (50), or for
    /// firmware that stalls it 14400 baud on its serial port (a CDC SET_LINE_CODING through
    /// libusb when no serial port shows); then waits for it to re-enumerate in DFU mode.
    pub fn switch_to_dfu(&mut self) -> Result<(), Error> {
        if let Some(d) = self.refresh() {
            self.device = d;
        }
        if self.device.mode == UsbMode::Dfu {
            return Ok(());
        }
        let mut asked = None;
        if self.may_answer_control() {
            match self.control(|c| c.command(&DfuModeRequest {})) {
                Ok(()) => asked = Some("the DFU-mode control request (50)"),
                Err(Error::Control(e)) if e.is_not_spoken() => {}
                Err(e) => return Err(e),
            }
        }
        let asked = match asked {
            Some(a) => a,
            None => {
                self.baud_request(DFU_BAUD)?;
                "the 14400-baud request"
            }
        };
        let within = self.waits.enter_dfu;
        Ok(self.wait_back(UsbMode::Dfu, within, asked)?)
    }

    /// A baud-rate request to a device in normal mode (14400 DFU, 28800 listening).
    fn baud_request(&mut self, baud: u32) -> Result<(), UsbError> {
        let device = self.device.clone();
        self.bus.baud_request(&device, baud)
    }

    /// Where a DFU leave sends the device: the start of its first system part (the
    /// bootloader resets whatever the address).
    fn leave_address(&self, inventory: Option<&Inventory>) -> u32 {
        self.platform()
            .layout_for(inventory.and_then(Inventory::system_version))
            .and_then(|l| l.main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1)))
            .map_or(0, |b| b.start)
    }

    /// Leaves DFU mode and waits for the device to come back: `Some(mode)` with the mode it
    /// came back in, `None` when it did not show up within the wait.
    fn leave_and_wait(
        &mut self,
        address: u32,
        observer: &mut dyn Observer,
    ) -> Result<Option<UsbMode>, UsbError> {
        self.session()?.leave(address)?;
        self.close_session();
        let old = (self.device.bus, self.device.address);
        let me = self.device.clone();
        let found = self.wait_for(self.waits.leave, |devices| {
            devices
                .iter()
                .find(|d| {
                    let same = match (&me.device_id, &d.device_id) {
                        (Some(a), Some(b)) => a == b,
                        _ => d.port_path == me.port_path,
                    };
                    // The old DFU device lingers until the bootloader resets.
                    same && (d.mode == UsbMode::Normal || (d.bus, d.address) != old)
                })
                .cloned()
        });
        Ok(match found {
            Some(d) => {
                let mode = d.mode;
                self.device = d;
                Some(mode)
            }
            None => {
                observer.event(Event::warning(format!(
                    "the device left DFU mode and did not show up on USB again within {} s",
                    self.waits.leave.as_secs()
                )));
                None
            }
        })
    }
}

impl<B: UsbBus> DeviceLink for UsbLink<B> {
    fn reference(&self) -> String {
        self.device.reference()
    }

    fn platform(&self) -> &'static Platform {
        self.device.platform
    }

    fn device_id(&self) -> Option<String> {
        self.device.device_id.clone()
    }

    /// Read over DFU: what the inventory left unread of the module (its body) is read now.
    fn installed_image(&mut self, slot: ModuleRef) -> Option<Vec<u8>> {
        self.session.as_mut()?.module_image(slot, &mut Quiet)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dfu: true,
            serial: false,
            usb: self.may_answer_control(),
            synthetic_modules: false,
        }
    }

    fn dfu_id(&self) -> (u16, u16) {
        (self.device.vendor, self.device.product)
    }

    fn in_dfu_mode(&self) -> bool {
        self.device.mode == UsbMode::Dfu
    }

    /// In DFU mode the modules read back; in normal mode the module table the firmware sends
    /// over control requests (no serial port needed), or for firmware that stalls them (Device
    /// OS before 0.8) the serial port's `s`, else a read-back through DFU mode.
    fn inventory(&mut self, observer: &mut dyn Observer) -> Result<Inventory, Error> {
        if let Some(d) = self.refresh() {
            if (d.bus, d.address) != (self.device.bus, self.device.address) {
                self.close_session();
            }
            self.device = d;
        }
        if self.device.mode == UsbMode::Dfu {
            return Ok(self.read_back(false, observer)?.inventory);
        }
        if self.may_answer_control() {
            match self.control(|c| c.modules()) {
                Ok(ModuleTable::Entries(entries)) => {
                    return Ok(Inventory::from_module_info(self.platform(), &entries))
                }
                Ok(ModuleTable::Describe(json)) => return Ok(Inventory::from_describe(&json)?),
                Err(Error::Control(e)) if e.is_not_spoken() => {
                    observer.event(Event::note(format!(
                        "{} does not answer USB control requests (Device OS before 0.8): \
                         reading its modules another way",
                        self.reference()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let device = self.device.clone();
        match self.bus.console_inventory(&device) {
            Ok(inv) => Ok(inv),
            Err(serial) => {
                // No serial port (no cdc_acm, or an emulated bus): read the flash itself over
                // DFU, then send the device back to its firmware. Never the tool's own
                // prediction: what is reported must come from the device.
                self.switch_to_dfu().map_err(|e| {
                    UsbError::NoDfu(format!(
                        "{} is in normal mode, its serial port cannot be read ({serial}) \
                         and it did not switch to DFU mode: {e}",
                        self.device
                    ))
                })?;
                let inventory = self.read_back(true, observer)?.inventory;
                let start = self.leave_address(Some(&inventory));
                let back = self.leave_and_wait(start, observer)?;
                observer.event(Event::note(format!(
                    "the device's serial port is not reachable, so its modules were read back \
                     over DFU{}; its running mode cannot be observed over USB alone",
                    match back {
                        Some(UsbMode::Dfu) => " (it stayed in DFU mode afterwards)",
                        _ => " and it was sent back to its firmware",
                    }
                )));
                Ok(inventory)
            }
        }
    }

    fn enter_dfu(&mut self, _: &mut dyn Observer) -> Result<(), Error> {
        self.switch_to_dfu()
    }

    fn dfu_alt_name(&mut self, alt: u8) -> Result<String, Error> {
        Ok(self.session()?.alt_name(alt)?)
    }

    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        check: &WriteCheck,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        Ok(self.session()?.write(alt, address, data, check, observer)?)
    }

    /// In normal mode its module table comes over control requests (GetModuleInfo) when its
    /// firmware answers them, with the device's own integrity flags.
    fn reports_integrity(&self, system: Option<u16>) -> bool {
        self.may_answer_control()
            && modflash_module::rules::control_protocol(self.platform(), system)
                == modflash_module::rules::ControlProtocol::Service
    }

    fn dfu_read(
        &mut self,
        alt: u8,
        address: u32,
        length: usize,
        observer: &mut dyn Observer,
    ) -> Result<Vec<u8>, Error> {
        Ok(self
            .session()?
            .upload(alt, address, length, (0, length as u64), observer)?)
    }

    fn dfu_leave(
        &mut self,
        address: u32,
        observer: &mut dyn Observer,
    ) -> Result<AfterLeave, Error> {
        Ok(match self.leave_and_wait(address, observer)? {
            Some(UsbMode::Dfu) => AfterLeave::Dfu,
            Some(UsbMode::Normal) => AfterLeave::Firmware,
            None => AfterLeave::NotSeen,
        })
    }

    /// In normal mode by Particle's control requests (reset 40, DFU 50, safe mode 60,
    /// listening mode 70 / 71), waiting for each re-enumeration within a bound; for firmware
    /// that stalls them, DFU and listening mode by the 14400- and 28800-baud tricks. Out of
    /// DFU mode by the DFU leave.
    fn change_mode(
        &mut self,
        change: ModeChange,
        observer: &mut dyn Observer,
    ) -> Result<Option<&'static str>, Error> {
        if let Some(d) = self.refresh() {
            self.device = d;
        }
        let in_dfu = self.device.mode == UsbMode::Dfu;
        let seen = |mode: Option<UsbMode>| mode.map(UsbMode::name);
        if in_dfu {
            return match change {
                ModeChange::Dfu => Ok(Some(UsbMode::Dfu.name())),
                ModeChange::Normal | ModeChange::Reset => {
                    let address = self.leave_address(None);
                    Ok(seen(self.leave_and_wait(address, observer)?))
                }
                ModeChange::Listening | ModeChange::Safe => {
                    let address = self.leave_address(None);
                    if self.leave_and_wait(address, observer)? != Some(UsbMode::Normal) {
                        return Err(Error::WrongMode {
                            device: self.reference(),
                            mode: "dfu".into(),
                            what: change.describe().into(),
                            help: "its firmware does not run: `modflash doctor` says why".into(),
                        });
                    }
                    self.change_mode(change, observer)
                }
            };
        }
        if change == ModeChange::Dfu {
            self.switch_to_dfu()?;
            return Ok(Some(UsbMode::Dfu.name()));
        }
        if self.may_answer_control() {
            let asked = match change {
                ModeChange::Reset => self.control(|c| c.command(&SystemResetRequest {})),
                ModeChange::Safe => self.control(|c| c.command(&SafeModeRequest {})),
                ModeChange::Listening => self.control(|c| c.command(&StartListeningModeRequest {})),
                ModeChange::Normal => self.control(|c| {
                    if c.listening()? {
                        c.command(&StopListeningModeRequest {})?;
                    }
                    Ok(())
                }),
                ModeChange::Dfu => Ok(()),
            };
            match asked {
                Ok(()) => {
                    return match change {
                        ModeChange::Reset | ModeChange::Safe => {
                            let within = self.waits.restart;
                            let what = if change == ModeChange::Reset {
                                "the reset request (40)"
                            } else {
                                "the safe-mode request (60)"
                            };
                            self.wait_back(UsbMode::Normal, within, what)?;
                            // Safe mode looks like normal mode on USB.
                            Ok((change == ModeChange::Reset).then_some(UsbMode::Normal.name()))
                        }
                        _ => {
                            let listening = self.control(|c| c.listening())?;
                            Ok(Some(if listening {
                                "listening"
                            } else {
                                UsbMode::Normal.name()
                            }))
                        }
                    };
                }
                Err(Error::Control(e)) if e.is_not_spoken() => {}
                Err(e) => return Err(e),
            }
        }
        match change {
            ModeChange::Normal => Ok(Some(UsbMode::Normal.name())),
            ModeChange::Listening => {
                self.baud_request(LISTENING_BAUD)?;
                Ok(None)
            }
            ModeChange::Reset | ModeChange::Safe | ModeChange::Dfu => Err(unsupported(
                self.reference(),
                change.describe(),
                "its firmware does not answer USB control requests (Device OS before 0.8): \
                 press RESET (for safe mode hold SETUP through RESET until the LED blinks \
                 magenta); a device in DFU mode can be reset with `modflash reset`",
            )),
        }
    }

    /// START, DATA, FINISH over control requests; once the device accepted the module it
    /// applies it and restarts, and this waits for it to come back.
    fn usb_flash(
        &mut self,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<UpdateVerdict, Error> {
        if let Some(d) = self.refresh() {
            self.device = d;
        }
        let verdict = self.control(|c| c.firmware_update(data, observer, cancel))?;
        if verdict == UpdateVerdict::Accepted {
            let within = self.waits.restart;
            self.wait_back(UsbMode::Normal, within, "the firmware update")?;
        }
        Ok(verdict)
    }

    fn serial_flash(
        &mut self,
        name: &str,
        _: &[u8],
        _: &mut dyn Observer,
        _: &Cancel,
    ) -> Result<FlashReport, Error> {
        Err(unsupported(
            self.reference(),
            &format!("send {name} over serial through its USB DFU connection"),
            &format!(
                "serial flashing goes through --device serial:PORT (or `modflash serial flash`); \
                 use --via dfu with --device {}",
                self.selector
            ),
        ))
    }

    fn control_transfers(&self) -> u64 {
        self.control_transfers
            + self
                .session
                .as_ref()
                .map_or(0, |s| u64::from(s.control_transfers()))
    }
}
