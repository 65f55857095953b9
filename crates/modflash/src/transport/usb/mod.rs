//! USB through libusb (the `rusb` crate): discovery of Particle devices in normal and DFU mode
//! by the catalogue's vendor/product ids (device id = USB serial number), a DFU control pipe
//! ([`UsbPort`]), a vendor pipe for Particle's control requests ([`UsbVendor`]), the bus
//! as [`UsbLink`] needs it ([`UsbBus`], [`LibUsb`]), and in [`link`] the device as the
//! executor drives it.
//!
//! libusb is used (rather than a pure-Rust stack) so that `modflash sim attach` — an emulated
//! USB bus built with umockdev — drives exactly this code path, as it drives dfu-util.

use std::fmt;
use std::time::{Duration, Instant};

use modflash_dfu::{Control, FunctionalDescriptor, Setup, TransferError};
use modflash_module::platform::{platform_by_usb, Platform};

use super::control::VendorPipe;
use super::dfu::{AltSetting, DfuInfo, DfuOpError, DfuPort, DfuSession};
use super::serial::{find_device_id, find_port, Console, PortLink, LISTENING_BAUD};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::DeviceRef;

pub mod link;

pub use link::{UsbLink, Waits};

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

    /// The libusb device at this bus and address, while it is still attached there.
    fn attached(&self) -> Result<rusb::Device<rusb::Context>, UsbError> {
        let context = rusb::Context::new().map_err(UsbError::Init)?;
        let list = rusb::UsbContext::devices(&context).map_err(UsbError::Init)?;
        list.iter()
            .find(|d| d.bus_number() == self.bus && d.address() == self.address)
            .ok_or_else(|| UsbError::NotFound(format!("{self} is no longer attached")))
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
    select_from(discover()?, devref)
}

/// The device `devref` names among `devices`.
pub fn select_from(devices: Vec<UsbDevice>, devref: &DeviceRef) -> Result<UsbDevice, UsbError> {
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
        let dev = device.attached()?;
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
        let dev = device.attached()?;
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

/// What [`UsbLink`] needs of a USB bus: the Particle devices on it, a DFU pipe and a vendor
/// pipe to one of them, a baud-rate request, the device's serial console, and a clock to wait
/// on. [`LibUsb`] is the real bus; `transport::sim::SimBus` puts a virtual device on one
/// in-process, so the same link code runs against both.
pub trait UsbBus {
    /// A claimed DFU interface.
    type Dfu: DfuPort;
    /// The Particle devices on the bus now, ordered by bus and address.
    fn devices(&mut self) -> Result<Vec<UsbDevice>, UsbError>;
    /// Opens `device` (in DFU mode) and claims its DFU interface.
    fn open_dfu(&mut self, device: &UsbDevice) -> Result<(Self::Dfu, DfuInfo), UsbError>;
    /// Opens `device`'s vendor control pipe (in normal mode).
    fn open_vendor(&mut self, device: &UsbDevice) -> Result<Box<dyn VendorPipe + '_>, UsbError>;
    /// Asks a device in normal mode for another line rate (14400 baud: DFU mode, 28800:
    /// listening mode): through its serial port, or a CDC SET_LINE_CODING when none shows.
    fn baud_request(&mut self, device: &UsbDevice, baud: u32) -> Result<(), UsbError>;
    /// The module list `s` prints on the device's serial console (listening mode, then out).
    fn console_inventory(&mut self, device: &UsbDevice) -> Result<Inventory, Error>;
    /// Lets `time` pass.
    fn sleep(&mut self, time: Duration);
    /// Time on the bus's clock since it was opened.
    fn elapsed(&self) -> Duration;
}

/// The machine's USB bus, through libusb.
#[derive(Debug)]
pub struct LibUsb {
    opened: Instant,
}

impl LibUsb {
    /// The bus, its clock started now.
    pub fn new() -> Self {
        Self {
            opened: Instant::now(),
        }
    }
}

impl Default for LibUsb {
    fn default() -> Self {
        Self::new()
    }
}

impl UsbBus for LibUsb {
    type Dfu = UsbPort;

    fn devices(&mut self) -> Result<Vec<UsbDevice>, UsbError> {
        discover()
    }

    fn open_dfu(&mut self, device: &UsbDevice) -> Result<(UsbPort, DfuInfo), UsbError> {
        UsbPort::open(device)
    }

    fn open_vendor(&mut self, device: &UsbDevice) -> Result<Box<dyn VendorPipe + '_>, UsbError> {
        Ok(Box::new(UsbVendor::open(device)?))
    }

    fn baud_request(&mut self, device: &UsbDevice, baud: u32) -> Result<(), UsbError> {
        let id = device.device_id.clone();
        let via_port = find_port(id.as_deref())
            .ok()
            .filter(|p| p.device_id == id)
            .and_then(|p| PortLink::open(&p.port, baud).ok());
        match via_port {
            Some(link) => drop(link),
            None => set_line_coding(device, baud)?,
        }
        Ok(())
    }

    fn console_inventory(&mut self, device: &UsbDevice) -> Result<Inventory, Error> {
        serial_inventory(device.device_id.as_deref())
    }

    fn sleep(&mut self, time: Duration) {
        std::thread::sleep(time);
    }

    fn elapsed(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// A CDC SET_LINE_CODING at `baud` to interface 0, through libusb (used when the device's
/// serial port is not visible, e.g. no cdc_acm driver or an emulated bus).
fn set_line_coding(device: &UsbDevice, baud: u32) -> Result<(), UsbError> {
    let node = device.node();
    let what = device.to_string();
    let dev = device.attached()?;
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
