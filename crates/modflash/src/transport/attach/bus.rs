//! The emulated bus: a umockdev test bed with one hub port per virtual device (`1-1`, `1-2`,
//! …, all on bus 1). Plugging a device writes its description (sysfs attributes, the
//! descriptors, the serial number), routes its node's ioctls to a [`Node`], gives the node an
//! honest poll readiness and announces it with udev's "add"; while the firmware runs, the
//! CDC ACM interface `1-N:1.0` and its tty `ttyACM<N − 1>` (the device's serial port,
//! [`SerialPort`]) come with it. Unplugging announces "remove" first and makes the old node
//! stale. Device numbers are handed out in order across the bus and never reused during one
//! run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use modflash_device::Device;

use super::node::{Node, NodeKind};
use super::serial::{PassThrough, SerialPort};
use super::uevent::{self, Action, UsbNode};
use super::wake::Wake;
use super::{lock, Port, Presence};
use crate::transport::umockdev::{Testbed, UmockdevError};

/// The bus number every port is on.
const BUSNUM: u8 = 1;
/// The first device number (1 is the root hub's).
const FIRST_DEVNUM: u8 = 2;

/// The sysfs path of hub port `port`.
fn syspath(port: u8) -> String {
    format!("/sys/devices/pci0000:00/0000:00:14.0/usb1/{BUSNUM}-{port}")
}

/// The sysfs path of the CDC ACM interface of the device on `port`.
fn interface_syspath(port: u8) -> String {
    format!("{}/{BUSNUM}-{port}:1.0", syspath(port))
}

/// The tty name of the serial port of the device on `port`.
fn tty_name(port: u8) -> String {
    format!("ttyACM{}", port - 1)
}

/// The sysfs path of the tty of the device on `port`.
fn tty_syspath(port: u8) -> String {
    format!("{}/tty/{}", interface_syspath(port), tty_name(port))
}

/// One enumeration on the bus.
struct Plugged {
    node: Arc<Node>,
    usb: UsbNode,
    kind: NodeKind,
    generation: u64,
}

/// The test bed and what is plugged into it.
pub(super) struct Bus {
    testbed: Testbed,
    root: PathBuf,
    events: uevent::Sender,
    next_devnum: Option<u8>,
    plugged: Vec<Option<Plugged>>,
    serial: Vec<Option<SerialPort>>,
    serial_links: Vec<Option<PathBuf>>,
    /// How many times a device was unplugged and plugged again.
    pub(super) replugs: u32,
    trace: bool,
}

impl Bus {
    /// An empty bus on `testbed` with room for `ports` devices; the serial port of the
    /// device on port N is also linked at `serial_links[N − 1]` when that is given.
    pub(super) fn new(
        testbed: Testbed,
        ports: usize,
        serial_links: &[PathBuf],
        trace: bool,
    ) -> Bus {
        let root = PathBuf::from(testbed.root_dir());
        Bus {
            events: uevent::Sender::new(&root),
            testbed,
            root,
            next_devnum: Some(FIRST_DEVNUM),
            plugged: (0..ports).map(|_| None).collect(),
            serial: (0..ports).map(|_| None).collect(),
            serial_links: (0..ports).map(|i| serial_links.get(i).cloned()).collect(),
            replugs: 0,
            trace,
        }
    }

    /// The test bed's directory (the child's `UMOCKDEV_DIR`).
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Shows `port`'s device as it is now: the enumeration it had (if any) is unplugged, and
    /// the device is plugged in again under a new device number unless it is absent (off, or
    /// between resets).
    pub(super) fn replug(&mut self, port: &Arc<Port>) -> Result<(), UmockdevError> {
        let slot = usize::from(port.number - 1);
        if let Some(old) = self.plugged.get_mut(slot).and_then(Option::take) {
            let heard = self.events.send(Action::Remove, &old.usb);
            if old.kind == NodeKind::Normal {
                self.testbed.remove_device(&tty_syspath(port.number))?;
                self.testbed
                    .remove_device(&interface_syspath(port.number))?;
            }
            self.testbed.remove_device(&syspath(port.number))?;
            old.node.signal();
            self.replugs += 1;
            self.say(|| {
                format!(
                    "port {}: unplugged device {:03} ({heard} listener(s) told)",
                    port.number, old.usb.devnum
                )
            });
        }
        let (presence, generation) = port.presence();
        let kind = match presence {
            Presence::Dfu(_) => NodeKind::Dfu,
            Presence::Normal(_) => NodeKind::Normal,
            Presence::Absent => return Ok(()),
        };
        let devnum = self.next_devnum.ok_or_else(|| {
            UmockdevError::new(
                "the emulated bus ran out of device numbers (253 enumerations in one run)",
            )
        })?;
        self.next_devnum = devnum.checked_add(1);
        let (mut text, usb, id) = {
            let device = lock(&port.device);
            let usb = usb_node(&device, kind, port.number, devnum);
            let id = device.state.device_id.clone();
            (description(&device, kind, &usb), usb, id)
        };
        if kind == NodeKind::Normal {
            text.push('\n');
            text.push_str(&serial_description(port.number, &usb, &id));
        }
        let devnode = format!("/dev/bus/usb/{BUSNUM:03}/{devnum:03}");
        let node = Arc::new(Node::new(Arc::clone(port), generation, kind));
        self.testbed
            .attach_ioctl(&devnode, Arc::clone(&node) as _)?;
        self.testbed.add_from_string(&text)?;
        match Wake::install(&self.root.join(devnode.trim_start_matches('/'))) {
            Ok(wake) => node.set_wake(wake),
            Err(e) => self.say(|| format!("{devnode} stays a plain file (poll spins): {e}")),
        }
        if kind == NodeKind::Normal {
            self.connect_serial(port)?;
        }
        let heard = self.events.send(Action::Add, &usb);
        self.say(|| {
            format!(
                "port {}: plugged {devnode} ({kind:?} mode, {heard} listener(s) told)",
                port.number
            )
        });
        self.plugged[slot] = Some(Plugged {
            node,
            usb,
            kind,
            generation,
        });
        Ok(())
    }

    /// True when the bus shows `port`'s device as it is: its current enumeration is plugged
    /// (or it is absent and nothing is).
    pub(super) fn shows(&self, port: &Port) -> bool {
        let (presence, generation) = port.presence();
        match self.plugged.get(usize::from(port.number - 1)) {
            Some(Some(plugged)) => plugged.generation == generation,
            _ => presence == Presence::Absent,
        }
    }

    /// Makes the tty node of `port`'s device its serial port (started on first use; one pty
    /// per device for the whole run, as a host keeps the port's name across resets).
    fn connect_serial(&mut self, port: &Arc<Port>) -> Result<(), UmockdevError> {
        let slot = usize::from(port.number - 1);
        if self.serial[slot].is_none() {
            let link = self.serial_links[slot].as_deref();
            let serial = SerialPort::start(port, link).map_err(|e| {
                UmockdevError::new(format!("cannot open the device's serial port: {e}"))
            })?;
            self.testbed.attach_ioctl(
                &format!("/dev/{}", tty_name(port.number)),
                Arc::new(PassThrough),
            )?;
            self.serial[slot] = Some(serial);
        }
        let Some(serial) = &self.serial[slot] else {
            return Ok(());
        };
        // The tty's `device` link to its interface, as the kernel makes it (serial-port
        // scanners follow it to the USB ids).
        let tty_dir = self
            .root
            .join(tty_syspath(port.number).trim_start_matches('/'));
        let interface = format!("../../../{BUSNUM}-{}:1.0", port.number);
        let _ = std::os::unix::fs::symlink(interface, tty_dir.join("device"));
        let node = self.root.join("dev").join(tty_name(port.number));
        let tmp = node.with_file_name(format!(".{}.link", tty_name(port.number)));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(serial.slave(), &tmp)
            .and_then(|()| std::fs::rename(&tmp, &node))
            .map_err(|e| {
                UmockdevError::new(format!(
                    "cannot make {} the serial port: {e}",
                    node.display()
                ))
            })
    }

    fn say(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[attach] {}", line());
        }
    }
}

/// The USB identity of `d` showing as `kind` on hub port `port` with device number `devnum`.
fn usb_node(d: &Device, kind: NodeKind, port: u8, devnum: u8) -> UsbNode {
    let usb = d.platform().usb;
    let vendor = usb.map_or(0, |u| u.vendor);
    let product = match kind {
        NodeKind::Dfu => usb.map_or(0, |u| u.dfu.unwrap_or(u.normal)),
        NodeKind::Normal => usb.map_or(0, |u| u.normal),
    };
    let descriptors = match kind {
        NodeKind::Dfu => d.usb_descriptors(),
        NodeKind::Normal => d.normal_usb_descriptors(),
    };
    let bcd_device = descriptors
        .device
        .get(12..14)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    UsbNode {
        devpath: syspath(port).trim_start_matches("/sys").to_string(),
        busnum: BUSNUM,
        devnum,
        vendor,
        product,
        bcd_device,
    }
}

/// The umockdev-record description of `d` as it shows now.
fn description(d: &Device, kind: NodeKind, usb: &UsbNode) -> String {
    let descriptors = match kind {
        NodeKind::Dfu => d.usb_descriptors(),
        NodeKind::Normal => d.normal_usb_descriptors(),
    };
    let product = descriptors
        .string(2)
        .and_then(|s| modflash_dfu::descriptor::parse_string_descriptor(s).ok())
        .unwrap_or_default();
    let (vid, pid, devnum, busnum) = (usb.vendor, usb.product, usb.devnum, usb.busnum);
    let id = &d.state.device_id;
    format!(
        "P: {}\nN: bus/usb/{busnum:03}/{devnum:03}\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\n\
         E: DRIVER=usb\nE: BUSNUM={busnum:03}\nE: DEVNUM={devnum:03}\n\
         E: DEVNAME=/dev/bus/usb/{busnum:03}/{devnum:03}\n\
         E: ID_VENDOR_ID={vid:04x}\nE: ID_MODEL_ID={pid:04x}\nE: ID_SERIAL_SHORT={id}\n\
         A: busnum={busnum}\\n\nA: devnum={devnum}\\n\nA: speed=12\\n\nA: bConfigurationValue=1\\n\n\
         A: idVendor={vid:04x}\\n\nA: idProduct={pid:04x}\\n\nA: serial={id}\\n\n\
         A: manufacturer=Particle\\n\nA: product={product}\\n\nH: descriptors={}\n",
        usb.devpath,
        hex::encode(descriptors.sysfs())
    )
}

/// The umockdev-record description of the device's CDC ACM interface and its tty (the
/// properties udev and serial-port libraries read: USB ids, serial number, interface number).
fn serial_description(port: u8, usb: &UsbNode, id: &str) -> String {
    let (vid, pid, tty) = (usb.vendor, usb.product, tty_name(port));
    format!(
        "P: {}\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_interface\nE: DRIVER=cdc_acm\n\
         E: INTERFACE=2/2/1\nE: PRODUCT={vid:x}/{pid:x}/{:x}\n\
         A: bInterfaceNumber=00\\n\nA: bInterfaceClass=02\\n\nA: bInterfaceSubClass=02\\n\n\
         A: bInterfaceProtocol=01\\n\nA: bAlternateSetting= 0\\n\nA: bNumEndpoints=01\\n\n\
         \n\
         P: {}\nN: {tty}=00\nE: SUBSYSTEM=tty\nE: DEVNAME=/dev/{tty}\nE: MAJOR=166\n\
         E: MINOR={}\nE: ID_BUS=usb\nE: ID_VENDOR_ID={vid:04x}\nE: ID_MODEL_ID={pid:04x}\n\
         E: ID_SERIAL_SHORT={id}\nE: ID_VENDOR_ENC=Particle\nE: ID_USB_INTERFACE_NUM=00\n\
         E: ID_USB_DRIVER=cdc_acm\n",
        interface_syspath(port).trim_start_matches("/sys"),
        usb.bcd_device,
        tty_syspath(port).trim_start_matches("/sys"),
        port - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::ResetReason;
    use modflash_testkit::device::device;

    #[test]
    fn the_serial_port_hangs_under_its_usb_device() {
        let d = device(6).release("1.5.0").powered_on();
        let usb = usb_node(&d, NodeKind::Normal, 2, 7);
        let text = serial_description(2, &usb, &d.state.device_id);
        let paragraphs: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(paragraphs.len(), 2, "{text}");
        assert!(paragraphs[0].starts_with("P: /devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0\n"));
        assert!(paragraphs[1]
            .starts_with("P: /devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/tty/ttyACM1\n"));
        for line in [
            "N: ttyACM1=00",
            "E: DEVNAME=/dev/ttyACM1",
            "E: ID_VENDOR_ID=2b04",
            "E: ID_MODEL_ID=c006",
            &format!("E: ID_SERIAL_SHORT={}", d.state.device_id),
        ] {
            assert!(paragraphs[1].lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn descriptions_carry_the_descriptors_serial_and_port() {
        let mut d = device(6).release("1.5.0").powered_on();
        let usb = usb_node(&d, NodeKind::Normal, 3, 2);
        assert_eq!(usb.devpath, "/devices/pci0000:00/0000:00:14.0/usb1/1-3");
        assert_eq!((usb.vendor, usb.product), (0x2b04, 0xc006));
        let normal = description(&d, NodeKind::Normal, &usb);
        assert!(normal.contains("A: idProduct=c006"), "{normal}");
        assert!(normal.contains(&format!("A: serial={}", d.state.device_id)));
        assert!(normal.contains("N: bus/usb/001/002"));
        assert!(normal.contains("P: /devices/pci0000:00/0000:00:14.0/usb1/1-3\n"));
        let normal_usb = d.normal_usb_descriptors();
        let (device, config) = (normal_usb.device, normal_usb.configuration);
        assert_eq!(device.len(), 18);
        assert_eq!(
            usize::from(u16::from_le_bytes([config[2], config[3]])),
            config.len()
        );
        d.reset(ResetReason::Button, Some(3.0));
        let usb = usb_node(&d, NodeKind::Dfu, 1, 3);
        assert_eq!((usb.product, usb.bcd_device), (0xd006, 0x0250));
        let dfu = description(&d, NodeKind::Dfu, &usb);
        assert!(dfu.contains("A: idProduct=d006"), "{dfu}");
        assert!(dfu.contains("A: product=Photon DFU Mode"), "{dfu}");
        assert!(dfu.contains(&hex::encode(d.usb_descriptors().sysfs())));
    }
}
