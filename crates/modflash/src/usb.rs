//! USB through libusb (the `rusb` crate): discovery of Particle devices in normal and DFU mode
//! by the catalogue's vendor/product ids (device id = USB serial number), a DFU control pipe
//! ([`UsbPort`]), and [`UsbTarget`], the executor's target for a real device: inventory read
//! back over DFU, the 14400-baud switch into DFU mode, verified writes, leave and the wait for
//! the device to come back.
//!
//! libusb is used (rather than a pure-Rust stack) so that `modflash sim attach` — an emulated
//! USB bus built with umockdev — drives exactly this code path, as it drives dfu-util.

use std::fmt;
use std::time::{Duration, Instant};

use modflash_dfu::{Control, FunctionalDescriptor, LeaveOutcome, Setup, TransferError};
use modflash_module::platform::{platform_by_usb, Platform};
use modflash_module::{ModuleFunction, ModuleRef};

use crate::dfuops::{AltSetting, DfuInfo, DfuOpError, DfuPort, DfuSession, ReadBack};
use crate::exec::{Event, ExecError, Target};
use crate::inventory::Inventory;
use crate::serial::{find_device_id, find_port, PortLink, Session, DFU_BAUD, LISTENING_BAUD};
use crate::DeviceRef;

/// Particle's steps for putting a device in DFU mode by hand.
pub const DFU_BUTTON_STEPS: &str = "put the device in DFU mode by hand: \
1) hold down both the RESET and SETUP (MODE) buttons, \
2) release only RESET while holding SETUP, \
3) release SETUP when the LED blinks yellow (after magenta on newer Device OS), \
then run the command again";

/// What to do about a permission error.
pub const UDEV_HELP: &str = "your user may not open USB devices: install modflash's udev rules \
with `sudo modflash udev --install`, then unplug and replug the device";

/// Which mode a USB device is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbMode {
    /// Running firmware (USB serial and control interfaces).
    Normal,
    /// The bootloader's DFU mode.
    Dfu,
}

impl UsbMode {
    /// `"normal"` or `"dfu"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Dfu => "dfu",
        }
    }
}

/// A Particle device on USB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDevice {
    /// Bus number.
    pub bus: u8,
    /// Address on the bus (changes at every re-enumeration).
    pub address: u8,
    /// Port path, e.g. `1-1.2`.
    pub port_path: String,
    /// Vendor id.
    pub vendor: u16,
    /// Product id.
    pub product: u16,
    /// The platform the ids name.
    pub platform: &'static Platform,
    /// Normal or DFU mode.
    pub mode: UsbMode,
    /// The 24-hex-digit device id from the serial number, when it carries one.
    pub device_id: Option<String>,
    /// Why the device could not be opened to read its serial number, if it could not.
    pub access_error: Option<String>,
}

impl UsbDevice {
    /// `/dev/bus/usb/BBB/DDD`.
    pub fn node(&self) -> String {
        format!("/dev/bus/usb/{:03}/{:03}", self.bus, self.address)
    }

    /// A `--device` reference for it.
    pub fn reference(&self) -> String {
        match &self.device_id {
            Some(id) => format!("usb:{id}"),
            None => "usb".into(),
        }
    }
}

impl fmt::Display for UsbDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {} mode ({:04x}:{:04x} at {}",
            self.platform.display_name,
            if self.mode == UsbMode::Dfu {
                "DFU"
            } else {
                "normal"
            },
            self.vendor,
            self.product,
            self.node()
        )?;
        match &self.device_id {
            Some(id) => write!(f, ", device id {id})"),
            None => f.write_str(")"),
        }
    }
}

/// Why a USB operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    /// libusb could not start.
    #[error("cannot use USB: libusb failed to start: {0}")]
    Init(String),
    /// No matching device.
    #[error("{0}")]
    NotFound(String),
    /// Several devices match `usb`.
    #[error("{count} Particle devices are attached ({list}); say which one")]
    Ambiguous {
        /// How many.
        count: usize,
        /// Their references.
        list: String,
    },
    /// EACCES opening the device node.
    #[error("permission denied opening {node} ({what})")]
    Permission {
        /// The device node.
        node: String,
        /// The device.
        what: String,
    },
    /// Another program holds the DFU interface.
    #[error(
        "{node} is busy: another program (dfu-util, particle-cli?) has claimed its DFU interface"
    )]
    Busy {
        /// The device node.
        node: String,
    },
    /// A libusb call failed.
    #[error("{action} {node}: {error}")]
    Usb {
        /// What was being done.
        action: &'static str,
        /// The device node.
        node: String,
        /// libusb's error.
        error: String,
    },
    /// The device did not reach DFU mode.
    #[error("{0}")]
    NoDfu(String),
    /// A DFU operation failed.
    #[error(transparent)]
    Dfu(#[from] DfuOpError),
}

impl UsbError {
    /// What to do next.
    pub fn help(&self) -> Option<String> {
        match self {
            Self::Init(_) => {
                Some("on Linux install libusb-1.0 (apt-get install libusb-1.0-0)".into())
            }
            Self::NotFound(_) => Some(format!(
                "check the cable (a charge-only cable shows no device); {DFU_BUTTON_STEPS}"
            )),
            Self::Ambiguous { .. } => {
                Some("use --device usb:DEVICE_ID (see `modflash devices`)".into())
            }
            Self::Permission { .. } => Some(UDEV_HELP.into()),
            Self::Busy { .. } => Some("close the other program and run the command again".into()),
            Self::Usb { .. } => Some("replug the device and run the command again".into()),
            Self::NoDfu(_) => Some(DFU_BUTTON_STEPS.into()),
            Self::Dfu(e) => e.help(),
        }
    }
}

fn usb_err(action: &'static str, node: &str, what: &str, e: rusb::Error) -> UsbError {
    match e {
        rusb::Error::Access => UsbError::Permission {
            node: node.to_string(),
            what: what.to_string(),
        },
        rusb::Error::Busy => UsbError::Busy {
            node: node.to_string(),
        },
        e => UsbError::Usb {
            action,
            node: node.to_string(),
            error: e.to_string(),
        },
    }
}

fn transfer_err(e: rusb::Error) -> TransferError {
    match e {
        rusb::Error::Pipe => TransferError::Stall,
        rusb::Error::Timeout => TransferError::Timeout,
        rusb::Error::NoDevice | rusb::Error::NotFound => TransferError::NoDevice,
        e => TransferError::Other(e.to_string()),
    }
}

fn port_path(device: &rusb::Device<rusb::Context>) -> String {
    let ports = device
        .port_numbers()
        .unwrap_or_default()
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(".");
    format!("{}-{ports}", device.bus_number())
}

/// The serial number as Linux shows it in sysfs (no USB traffic, no permission needed).
fn sysfs_serial(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/sys/bus/usb/devices/{path}/serial")).ok()?;
    Some(text.trim().to_string())
}

/// Reads string `index` in US English with one GET_DESCRIPTOR.
fn read_string(
    handle: &rusb::DeviceHandle<rusb::Context>,
    index: u8,
) -> Result<String, rusb::Error> {
    let mut buf = [0u8; 255];
    let n = handle.read_control(
        0x80,
        6,
        0x0300 | u16::from(index),
        0x0409,
        &mut buf,
        Duration::from_millis(1000),
    )?;
    modflash_dfu::descriptor::parse_string_descriptor(buf.get(..n).unwrap_or(&[]))
        .map_err(|_| rusb::Error::BadDescriptor)
}

/// Every Particle device on USB now, in normal or DFU mode, ordered by bus and address.
pub fn discover() -> Result<Vec<UsbDevice>, UsbError> {
    let context = rusb::Context::new().map_err(|e| UsbError::Init(e.to_string()))?;
    let list = rusb::UsbContext::devices(&context).map_err(|e| UsbError::Init(e.to_string()))?;
    let mut found = Vec::new();
    for device in list.iter() {
        let Ok(desc) = device.device_descriptor() else {
            continue;
        };
        let Some((platform, dfu)) = platform_by_usb(desc.vendor_id(), desc.product_id()) else {
            continue;
        };
        let path = port_path(&device);
        let mut access_error = None;
        let serial = match sysfs_serial(&path) {
            Some(s) => Some(s),
            None => match (desc.serial_number_string_index(), device.open()) {
                (Some(i), Ok(handle)) => read_string(&handle, i).ok(),
                (_, Err(rusb::Error::Access)) => {
                    access_error = Some("permission denied".to_string());
                    None
                }
                (_, Err(e)) => {
                    access_error = Some(e.to_string());
                    None
                }
                (None, Ok(_)) => None,
            },
        };
        found.push(UsbDevice {
            bus: device.bus_number(),
            address: device.address(),
            port_path: path,
            vendor: desc.vendor_id(),
            product: desc.product_id(),
            platform,
            mode: if dfu { UsbMode::Dfu } else { UsbMode::Normal },
            device_id: serial.as_deref().and_then(find_device_id),
            access_error,
        });
    }
    found.sort_by_key(|d| (d.bus, d.address));
    Ok(found)
}

/// The device `devref` names (`usb` = the only Particle device, `usb:ID` = by device id).
pub fn select(devref: &DeviceRef) -> Result<UsbDevice, UsbError> {
    let devices = discover()?;
    match devref {
        DeviceRef::UsbId(id) => devices
            .into_iter()
            .find(|d| d.device_id.as_deref() == Some(id.as_str()))
            .ok_or_else(|| {
                UsbError::NotFound(format!(
                    "no Particle device with id {id} is attached over USB"
                ))
            }),
        _ => match devices.len() {
            0 => Err(UsbError::NotFound(
                "no Particle device is attached over USB (normal or DFU mode)".into(),
            )),
            1 => Ok(devices.into_iter().next().expect("one device")),
            n => Err(UsbError::Ambiguous {
                count: n,
                list: devices
                    .iter()
                    .map(|d| format!("{} {}", d.reference(), d.mode.name()))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

/// A claimed DFU interface of a device in DFU mode.
pub struct UsbPort {
    handle: rusb::DeviceHandle<rusb::Context>,
    interface: u8,
    node: String,
}

impl fmt::Debug for UsbPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsbPort").field("node", &self.node).finish()
    }
}

fn functional_in(extra: &[u8]) -> Option<FunctionalDescriptor> {
    let mut rest = extra;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]);
        if len < 2 || len > rest.len() {
            return None;
        }
        if rest[1] == 0x21 {
            if let Ok(f) = FunctionalDescriptor::parse(&rest[..len]) {
                return Some(f);
            }
        }
        rest = &rest[len..];
    }
    None
}

impl UsbPort {
    /// Opens `device` (which must be in DFU mode) and claims its DFU interface.
    pub fn open(device: &UsbDevice) -> Result<(Self, DfuInfo), UsbError> {
        let node = device.node();
        let what = device.to_string();
        let context = rusb::Context::new().map_err(|e| UsbError::Init(e.to_string()))?;
        let list =
            rusb::UsbContext::devices(&context).map_err(|e| UsbError::Init(e.to_string()))?;
        let dev = list
            .iter()
            .find(|d| d.bus_number() == device.bus && d.address() == device.address)
            .ok_or_else(|| UsbError::NotFound(format!("{what} is no longer attached")))?;
        let config = dev
            .active_config_descriptor()
            .or_else(|_| dev.config_descriptor(0))
            .map_err(|e| usb_err("cannot read the configuration of", &node, &what, e))?;
        let mut functional = functional_in(config.extra());
        let mut interface = None;
        let mut alts = Vec::new();
        for i in config.interfaces() {
            for a in i.descriptors() {
                functional = functional.or_else(|| functional_in(a.extra()));
                let mode = (a.class_code(), a.sub_class_code(), a.protocol_code());
                if mode != (0xFE, 0x01, 0x02) {
                    continue;
                }
                let number = *interface.get_or_insert(a.interface_number());
                if a.interface_number() == number {
                    alts.push(AltSetting {
                        alt: a.setting_number(),
                        name_index: a.description_string_index().unwrap_or(0),
                        name: None,
                    });
                }
            }
        }
        let (Some(interface), Some(functional)) = (interface, functional) else {
            return Err(UsbError::Dfu(DfuOpError::NotDfu(format!(
                "{what} has no DFU-mode interface with a functional descriptor"
            ))));
        };
        let handle = dev
            .open()
            .map_err(|e| usb_err("cannot open", &node, &what, e))?;
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle
            .claim_interface(interface)
            .map_err(|e| usb_err("cannot claim the DFU interface of", &node, &what, e))?;
        let info = DfuInfo {
            interface: u16::from(interface),
            transfer_size: functional.transfer_size.max(1),
            dfuse: functional.is_dfuse(),
            alts,
        };
        Ok((
            Self {
                handle,
                interface,
                node,
            },
            info,
        ))
    }
}

impl Drop for UsbPort {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.interface);
    }
}

impl Control for UsbPort {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        self.handle
            .read_control(
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                buf,
                Duration::from_millis(u64::from(timeout_ms.max(1))),
            )
            .map_err(transfer_err)
    }

    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        self.handle
            .write_control(
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                data,
                Duration::from_millis(u64::from(timeout_ms.max(1))),
            )
            .map_err(transfer_err)
    }

    fn wait(&mut self, ms: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
    }
}

impl DfuPort for UsbPort {
    fn select_alt(&mut self, interface: u16, alt: u8) -> Result<(), TransferError> {
        let interface = u8::try_from(interface).map_err(|_| TransferError::Stall)?;
        self.handle
            .set_alternate_setting(interface, alt)
            .map_err(transfer_err)
    }
}

/// Opens a DFU session on a device in DFU mode.
pub fn open_session(device: &UsbDevice) -> Result<DfuSession<UsbPort>, UsbError> {
    let (port, info) = UsbPort::open(device)?;
    Ok(DfuSession::new(port, info))
}

/// How long to wait for re-enumeration.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// For a device switched to DFU mode to show up.
    pub enter_dfu: Duration,
    /// For a device that left DFU mode to show up again.
    pub leave: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            enter_dfu: Duration::from_secs(10),
            leave: Duration::from_secs(10),
        }
    }
}

/// Polls discovery with a short backoff (50 ms doubling to 400 ms) until `pick` finds a
/// device or `within` passes.
fn wait_for(
    within: Duration,
    mut pick: impl FnMut(&[UsbDevice]) -> Option<UsbDevice>,
) -> Option<UsbDevice> {
    let until = Instant::now() + within;
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok(devices) = discover() {
            if let Some(d) = pick(&devices) {
                return Some(d);
            }
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        std::thread::sleep(backoff.min(until - now));
        backoff = (backoff * 2).min(Duration::from_millis(400));
    }
}

/// A CDC SET_LINE_CODING at `baud` to interface 0, through libusb (used when the device's
/// serial port is not visible, e.g. no cdc_acm driver or an emulated bus).
fn set_line_coding(device: &UsbDevice, baud: u32) -> Result<(), UsbError> {
    let node = device.node();
    let what = device.to_string();
    let context = rusb::Context::new().map_err(|e| UsbError::Init(e.to_string()))?;
    let list = rusb::UsbContext::devices(&context).map_err(|e| UsbError::Init(e.to_string()))?;
    let dev = list
        .iter()
        .find(|d| d.bus_number() == device.bus && d.address() == device.address)
        .ok_or_else(|| UsbError::NotFound(format!("{what} is no longer attached")))?;
    let handle = dev
        .open()
        .map_err(|e| usb_err("cannot open", &node, &what, e))?;
    let _ = handle.set_auto_detach_kernel_driver(true);
    let claimed = handle.claim_interface(0).is_ok();
    let [b0, b1, b2, b3] = baud.to_le_bytes();
    let coding = [b0, b1, b2, b3, 0, 0, 8];
    let r = handle.write_control(0x21, 0x20, 0, 0, &coding, Duration::from_millis(1000));
    if claimed {
        let _ = handle.release_interface(0);
    }
    match r {
        // The device may reset before the status stage completes.
        Ok(_) | Err(rusb::Error::NoDevice) | Err(rusb::Error::Io) | Err(rusb::Error::Pipe) => {
            Ok(())
        }
        Err(e) => Err(usb_err("cannot send SET_LINE_CODING to", &node, &what, e)),
    }
}

/// Reads `s` over the device's serial port in listening mode, then lets it run on.
pub fn serial_inventory(device_id: Option<&str>) -> Result<Inventory, String> {
    let port = find_port(device_id).map_err(|e| e.to_string())?;
    let link = PortLink::open(&port.port, LISTENING_BAUD)
        .map_err(|e| e.to_string())?
        .with_device_id(port.device_id.clone());
    let mut session = Session::new(link);
    let inventory = session.listening_inventory().map_err(|e| e.to_string())?;
    let _ = session.exit_listening();
    Ok(inventory)
}

/// Where the last inventory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InventorySource {
    /// Module headers and bodies read back over DFU.
    Dfu,
    /// The device's `s` answer in listening mode.
    Serial,
}

/// A real device over USB, as the executor's target.
pub struct UsbTarget {
    selector: DeviceRef,
    device: UsbDevice,
    session: Option<DfuSession<UsbPort>>,
    waits: Waits,
    source: Option<InventorySource>,
    notes: Vec<String>,
    control_transfers: u64,
}

impl UsbTarget {
    /// Finds the device `devref` names (`usb` or `usb:ID`), in either mode.
    pub fn open(devref: &DeviceRef) -> Result<Self, UsbError> {
        let device = select(devref)?;
        if let Some(e) = &device.access_error {
            if e == "permission denied" {
                return Err(UsbError::Permission {
                    node: device.node(),
                    what: device.to_string(),
                });
            }
        }
        Ok(Self {
            selector: devref.clone(),
            device,
            session: None,
            waits: Waits::default(),
            source: None,
            notes: Vec::new(),
            control_transfers: 0,
        })
    }

    /// Sets the re-enumeration timeouts.
    pub fn with_waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    /// The device as last seen.
    pub fn device(&self) -> &UsbDevice {
        &self.device
    }

    /// The platform.
    pub fn platform(&self) -> &'static Platform {
        self.device.platform
    }

    /// Where the last inventory came from.
    pub fn inventory_source(&self) -> Option<InventorySource> {
        self.source
    }

    /// Things the user should know (read-back limits, a mode switch, a device that did not
    /// come back), once each: the list is emptied.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Control transfers sent over DFU so far.
    pub fn control_transfers(&self) -> u64 {
        self.control_transfers
            + self
                .session
                .as_ref()
                .map_or(0, |s| u64::from(s.control_transfers()))
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
    pub fn session(&mut self) -> Result<&mut DfuSession<UsbPort>, UsbError> {
        if self.session.is_none() {
            if self.device.mode != UsbMode::Dfu {
                return Err(UsbError::NoDfu(format!(
                    "{} is not in DFU mode",
                    self.device
                )));
            }
            self.session = Some(open_session(&self.device)?);
        }
        Ok(self.session.as_mut().expect("just opened"))
    }

    /// Reads the modules back over DFU (the device must be in DFU mode).
    pub fn read_back(&mut self, progress: &mut dyn FnMut(Event)) -> Result<ReadBack, UsbError> {
        let platform = self.device.platform;
        let r = self.session()?.read_inventory(platform, progress)?;
        self.notes.extend(r.notes.iter().cloned());
        self.source = Some(InventorySource::Dfu);
        Ok(r)
    }

    /// Looks for the device again (after a mode change).
    fn refresh(&mut self) -> Option<UsbDevice> {
        let devices = discover().ok()?;
        devices.into_iter().find(|d| self.matches(d))
    }

    /// Switches a device in normal mode to DFU mode: 14400 baud on its serial port (or a CDC
    /// SET_LINE_CODING through libusb when no serial port shows), then waits for it to
    /// re-enumerate in DFU mode.
    pub fn switch_to_dfu(&mut self) -> Result<(), UsbError> {
        if let Some(d) = self.refresh() {
            self.device = d;
        }
        if self.device.mode == UsbMode::Dfu {
            return Ok(());
        }
        let id = self.device.device_id.clone();
        let via_port = find_port(id.as_deref())
            .ok()
            .filter(|p| p.device_id == id)
            .and_then(|p| PortLink::open(&p.port, DFU_BAUD).ok());
        match via_port {
            Some(link) => drop(link),
            None => set_line_coding(&self.device, DFU_BAUD)?,
        }
        let old = (self.device.bus, self.device.address);
        let me = self.device.clone();
        let found = wait_for(self.waits.enter_dfu, |devices| {
            devices
                .iter()
                .find(|d| {
                    d.mode == UsbMode::Dfu
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
            None => Err(UsbError::NoDfu(format!(
                "{} did not show up in DFU mode within {} s after the 14400-baud request",
                self.device,
                self.waits.enter_dfu.as_secs()
            ))),
        }
    }

    /// Leaves DFU mode and waits for the device to come back: `Ok(Some(mode))` with the mode
    /// it came back in, `Ok(None)` when it did not show up within the wait.
    pub fn leave_and_wait(&mut self, address: u32) -> Result<Option<UsbMode>, UsbError> {
        let outcome = self.session()?.leave(address)?;
        self.close_session();
        let _: LeaveOutcome = outcome;
        let old = (self.device.bus, self.device.address);
        let me = self.device.clone();
        let found = wait_for(self.waits.leave, |devices| {
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
                self.notes.push(format!(
                    "the device left DFU mode and did not show up on USB again within {} s",
                    self.waits.leave.as_secs()
                ));
                None
            }
        })
    }

    fn exec_err(e: UsbError) -> ExecError {
        match e.help() {
            Some(h) => ExecError::Transport(format!("{e} (help: {h})")),
            None => ExecError::Transport(e.to_string()),
        }
    }
}

impl Target for UsbTarget {
    fn inventory(&mut self) -> Result<Inventory, ExecError> {
        if let Some(d) = self.refresh() {
            if (d.bus, d.address) != (self.device.bus, self.device.address) {
                self.close_session();
            }
            self.device = d;
        }
        if self.device.mode == UsbMode::Dfu {
            return self
                .read_back(&mut |_| {})
                .map(|r| r.inventory)
                .map_err(Self::exec_err);
        }
        match serial_inventory(self.device.device_id.as_deref()) {
            Ok(inv) => {
                self.source = Some(InventorySource::Serial);
                Ok(inv)
            }
            Err(serial) => {
                // No serial port (no cdc_acm, or an emulated bus): read the flash itself over
                // DFU, then send the device back to its firmware. Never the tool's own
                // prediction: what is reported must come from the device.
                self.switch_to_dfu().map_err(|e| {
                    ExecError::Transport(format!(
                        "{} is in normal mode, its serial port cannot be read ({serial}) \
                         and it did not switch to DFU mode: {e} (help: {DFU_BUTTON_STEPS})",
                        self.device
                    ))
                })?;
                let inventory = self
                    .read_back(&mut |_| {})
                    .map(|r| r.inventory)
                    .map_err(Self::exec_err)?;
                let start = self
                    .platform()
                    .layout_for(inventory.system_version())
                    .and_then(|l| l.main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1)))
                    .map_or(0, |b| b.start);
                let back = self.leave_and_wait(start).map_err(Self::exec_err)?;
                self.notes.push(format!(
                    "the device's serial port is not reachable, so its modules were read back \
                     over DFU{}; its running mode cannot be observed over USB alone",
                    match back {
                        Some(UsbMode::Dfu) => " (it stayed in DFU mode afterwards)",
                        _ => " and it was sent back to its firmware",
                    }
                ));
                Ok(inventory)
            }
        }
    }

    fn enter_dfu(&mut self) -> Result<(), ExecError> {
        self.switch_to_dfu().map_err(Self::exec_err)
    }

    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        let session = self.session().map_err(Self::exec_err)?;
        session
            .write(alt, address, data, true, progress)
            .map_err(|e| ExecError::Dfu(e.to_string()))
    }

    fn dfu_leave(&mut self, address: u32) -> Result<(), ExecError> {
        match self.leave_and_wait(address).map_err(Self::exec_err)? {
            Some(UsbMode::Dfu) => Err(ExecError::WrongMode {
                mode: "DFU".into(),
                what: "start its firmware: it came back in DFU mode after the leave request \
                       (run `modflash modules --device usb` to see which module fails)"
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    fn serial_flash(
        &mut self,
        name: &str,
        _data: &[u8],
        _progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        Err(ExecError::Transport(format!(
            "{name}: serial flashing goes through --device serial:PORT (or `modflash serial flash`), \
             not the USB DFU target; use --via dfu with --device {}",
            self.selector
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functional_descriptor_is_found_in_extra_bytes() {
        // An unrelated class descriptor first, then the Photon's DFU functional descriptor.
        let extra = [
            5, 0x24, 0, 0x10, 1, 9, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01,
        ];
        let f = functional_in(&extra).unwrap();
        assert_eq!(f.transfer_size, 4096);
        assert!(f.is_dfuse());
        assert!(functional_in(&[]).is_none());
        assert!(
            functional_in(&[0, 0x21]).is_none(),
            "bLength 0 must not loop"
        );
        assert!(functional_in(&[40, 0x21, 1]).is_none(), "truncated");
    }

    #[test]
    fn errors_say_what_to_do() {
        let p = UsbError::Permission {
            node: "/dev/bus/usb/001/002".into(),
            what: "Photon in DFU mode".into(),
        };
        assert!(p
            .to_string()
            .contains("permission denied opening /dev/bus/usb/001/002"));
        assert!(p.help().unwrap().contains("modflash udev --install"));
        let n = UsbError::NotFound("no Particle device".into());
        assert!(n.help().unwrap().contains("blinks yellow"));
    }
}
