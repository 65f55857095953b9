//! USB through libusb (the `rusb` crate): discovery of Particle devices in normal and DFU mode
//! by the catalogue's vendor/product ids (device id = USB serial number), a DFU control pipe
//! ([`UsbPort`]), a vendor pipe for Particle's control requests ([`UsbVendor`]), and
//! [`UsbLink`], a real device as the executor drives it: in normal mode the module table,
//! mode changes and firmware updates over control requests (the serial port, a DFU read-back
//! and the 14400/28800-baud tricks for firmware that stalls them); in DFU mode the modules
//! read back, verified writes, leave; every re-enumeration waited for within a bound.
//!
//! libusb is used (rather than a pure-Rust stack) so that `modflash sim attach` — an emulated
//! USB bus built with umockdev — drives exactly this code path, as it drives dfu-util.

use std::fmt;
use std::time::{Duration, Instant};

use modflash_dfu::{Control, FunctionalDescriptor, Setup, TransferError};
use modflash_module::platform::{platform_by_usb, Platform};
use modflash_module::{ModuleFunction, ModuleRef};

use modflash_control::proto::{
    DfuModeRequest, SafeModeRequest, StartListeningModeRequest, StopListeningModeRequest,
    SystemResetRequest,
};

use super::control::{ControlClient, ControlError, ModuleTable, UpdateVerdict, VendorPipe};
use super::dfu::{AltSetting, DfuInfo, DfuOpError, DfuPort, DfuSession, ReadBack};
use super::serial::{
    find_device_id, find_port, Console, FlashReport, PortLink, DFU_BAUD, LISTENING_BAUD,
};
use super::{unsupported, AfterLeave, Capabilities, DeviceLink, ModeChange};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{Cancel, Event, Observer};
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
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UsbError {
    /// libusb could not start.
    #[error("cannot use USB: libusb failed to start: {0}")]
    #[diagnostic(
        code(modflash::usb::init),
        help("on Linux install libusb-1.0 (apt-get install libusb-1.0-0)")
    )]
    Init(#[source] rusb::Error),
    /// No matching device.
    #[error("{0}")]
    #[diagnostic(
        code(modflash::usb::not_found),
        help(
            "check the cable (a charge-only cable shows no device); {}",
            DFU_BUTTON_STEPS
        )
    )]
    NotFound(String),
    /// Several devices match `usb`.
    #[error("{count} Particle devices are attached ({list}); say which one")]
    #[diagnostic(
        code(modflash::usb::ambiguous),
        help("use --device usb:DEVICE_ID (see `modflash devices`)")
    )]
    Ambiguous {
        /// How many.
        count: usize,
        /// Their references.
        list: String,
    },
    /// EACCES opening the device node.
    #[error("permission denied opening {node} ({what})")]
    #[diagnostic(code(modflash::usb::permission), help("{}", UDEV_HELP))]
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
    #[diagnostic(
        code(modflash::usb::busy),
        help("close the other program and run the command again")
    )]
    Busy {
        /// The device node.
        node: String,
    },
    /// A libusb call failed.
    #[error("{action} {node}: {error}")]
    #[diagnostic(
        code(modflash::usb::transfer),
        help("replug the device and run the command again")
    )]
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
    #[diagnostic(code(modflash::usb::no_dfu), help("{}", DFU_BUTTON_STEPS))]
    NoDfu(String),
    /// After a reset the device did not show up again in time.
    #[error("{0}")]
    #[diagnostic(
        code(modflash::usb::not_back),
        help("check that it runs (its LED), replug it if it does not show up in `modflash devices`, then look at it with `modflash modules --device usb`")
    )]
    NotBack(String),
    /// A DFU operation failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Dfu(#[from] DfuOpError),
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
    let context = rusb::Context::new().map_err(UsbError::Init)?;
    let list = rusb::UsbContext::devices(&context).map_err(UsbError::Init)?;
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
        let context = rusb::Context::new().map_err(UsbError::Init)?;
        let list = rusb::UsbContext::devices(&context).map_err(UsbError::Init)?;
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

/// The vendor control pipe of a device in normal mode, for Particle's control requests (EP0:
/// no interface is claimed, so a program holding the serial port is not disturbed).
pub struct UsbVendor {
    handle: rusb::DeviceHandle<rusb::Context>,
    opened: Instant,
}

impl UsbVendor {
    /// Opens `device` (in normal mode).
    pub fn open(device: &UsbDevice) -> Result<Self, UsbError> {
        let node = device.node();
        let what = device.to_string();
        let context = rusb::Context::new().map_err(UsbError::Init)?;
        let list = rusb::UsbContext::devices(&context).map_err(UsbError::Init)?;
        let dev = list
            .iter()
            .find(|d| d.bus_number() == device.bus && d.address() == device.address)
            .ok_or_else(|| UsbError::NotFound(format!("{what} is no longer attached")))?;
        let handle = dev
            .open()
            .map_err(|e| usb_err("cannot open", &node, &what, e))?;
        Ok(Self {
            handle,
            opened: Instant::now(),
        })
    }
}

impl VendorPipe for UsbVendor {
    fn transfer(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<Vec<u8>, TransferError> {
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        if setup.is_in() {
            let mut buf = vec![0u8; usize::from(setup.length)];
            let n = self
                .handle
                .read_control(
                    setup.request_type,
                    setup.request,
                    setup.value,
                    setup.index,
                    &mut buf,
                    timeout,
                )
                .map_err(transfer_err)?;
            buf.truncate(n);
            Ok(buf)
        } else {
            let data = data.get(..usize::from(setup.length)).unwrap_or(data);
            self.handle
                .write_control(
                    setup.request_type,
                    setup.request,
                    setup.value,
                    setup.index,
                    data,
                    timeout,
                )
                .map_err(transfer_err)?;
            Ok(Vec::new())
        }
    }

    fn wait(&mut self, ms: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
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
    let context = rusb::Context::new().map_err(UsbError::Init)?;
    let list = rusb::UsbContext::devices(&context).map_err(UsbError::Init)?;
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
fn serial_inventory(device_id: Option<&str>) -> Result<Inventory, Error> {
    let port = find_port(device_id)?;
    let link = PortLink::open(&port.port, LISTENING_BAUD)?.with_device_id(port.device_id.clone());
    let mut console = Console::new(link);
    let inventory = console.listening_inventory();
    let _ = console.exit_listening();
    Ok(inventory?)
}

/// A real device over USB, as the executor drives it.
pub struct UsbLink {
    selector: DeviceRef,
    device: UsbDevice,
    session: Option<DfuSession<UsbPort>>,
    waits: Waits,
    control_transfers: u64,
    /// Whether the firmware answers Particle's control requests, once known.
    answers_control: Option<bool>,
}

impl UsbLink {
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
        let mut link = Self {
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
        let mut pipe = UsbVendor::open(&self.device)?;
        let mut client = ControlClient::new(&mut pipe);
        let result = f(&mut client);
        self.control_transfers += client.transfers();
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

    /// Waits until the device has re-enumerated (another address than now) in `want` mode,
    /// within `within`; `after` says what started it, for the message when it does not come.
    fn wait_back(&mut self, want: UsbMode, within: Duration, after: &str) -> Result<(), UsbError> {
        let old = (self.device.bus, self.device.address);
        let me = self.device.clone();
        let found = wait_for(within, |devices| {
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
        match self.session.as_mut() {
            Some(s) => Ok(s),
            None => Err(UsbError::NoDfu(format!(
                "{} has no DFU session",
                self.device
            ))),
        }
    }

    /// Reads the modules back over DFU (the device must be in DFU mode).
    fn read_back(&mut self, observer: &mut dyn Observer) -> Result<ReadBack, UsbError> {
        let platform = self.device.platform;
        let r = self.session()?.read_inventory(platform, observer)?;
        for n in &r.notes {
            observer.event(Event::note(n.clone()));
        }
        Ok(r)
    }

    /// Looks for the device again (after a mode change).
    fn refresh(&mut self) -> Option<UsbDevice> {
        let devices = discover().ok()?;
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

    /// A baud-rate request to a device in normal mode (14400 DFU, 28800 listening): through
    /// its serial port, or a CDC SET_LINE_CODING through libusb when no port shows.
    fn baud_request(&mut self, baud: u32) -> Result<(), UsbError> {
        let id = self.device.device_id.clone();
        let via_port = find_port(id.as_deref())
            .ok()
            .filter(|p| p.device_id == id)
            .and_then(|p| PortLink::open(&p.port, baud).ok());
        match via_port {
            Some(link) => drop(link),
            None => set_line_coding(&self.device, baud)?,
        }
        Ok(())
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
                observer.event(Event::warning(format!(
                    "the device left DFU mode and did not show up on USB again within {} s",
                    self.waits.leave.as_secs()
                )));
                None
            }
        })
    }
}

impl DeviceLink for UsbLink {
    fn reference(&self) -> String {
        self.device.reference()
    }

    fn platform(&self) -> &'static Platform {
        self.device.platform
    }

    fn device_id(&self) -> Option<String> {
        self.device.device_id.clone()
    }

    fn installed_image(&mut self, slot: ModuleRef) -> Option<Vec<u8>> {
        let device = self.session.as_ref()?.read_back_device()?;
        crate::backup::module_image(&device, slot)
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
            return Ok(self.read_back(observer)?.inventory);
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
        match serial_inventory(self.device.device_id.as_deref()) {
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
                let inventory = self.read_back(observer)?.inventory;
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
        verify: bool,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        Ok(self
            .session()?
            .write(alt, address, data, verify, observer)?)
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
        assert!(miette::Diagnostic::help(&p)
            .unwrap()
            .to_string()
            .contains("modflash udev --install"));
        let n = UsbError::NotFound("no Particle device".into());
        assert!(miette::Diagnostic::help(&n)
            .unwrap()
            .to_string()
            .contains("blinks yellow"));
    }
}
