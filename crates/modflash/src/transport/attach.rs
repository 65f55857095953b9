//! `modflash sim attach`: a virtual device plugged into an emulated USB bus (umockdev), so any
//! libusb program — dfu-util, modflash itself, other tools — sees a real-looking device.
//!
//! * In DFU mode the bus shows the bootloader's descriptors (from the device model) and every
//!   control transfer goes to the device's own DfuSe handler; SET_INTERFACE selects the alt,
//!   USBDEVFS_RESET is a bus reset.
//! * In normal mode (the firmware runs) it shows the firmware's descriptors (a CDC serial
//!   device plus the control interface, from the device model); a SET_LINE_CODING at 14400 baud sends the device into DFU mode (28800:
//!   listening mode), as on hardware.
//! * When the device changes mode (leaves DFU mode, resets into it again) it is unplugged and
//!   plugged again under a new address, so clients that scan the bus see the re-enumeration.
//!   (No uevents: umockdev builds them with libudev in the calling process, which does not
//!   see the test bed; hotplug listeners in the child therefore do not fire.)
//!
//! The usbfs ioctls the child sends arrive on umockdev's worker thread; the device sits behind
//! a mutex. All unsafe FFI is in [`crate::umockdev`].

use std::collections::VecDeque;
use std::ffi::OsString;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use modflash_device::{Device, Mode};
use modflash_dfu::Setup;

use super::umockdev::{Client, Data, IoctlHandler, Testbed, Umockdev, UmockdevError, INSTALL_HELP};

// usbfs ioctl numbers (linux/usbdevice_fs.h) on LP64: _IOC(dir, 'U', nr, size).
const fn ioc(dir: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | ((b'U' as u64) << 8) | nr
}
const IOC_NONE: u64 = 0;
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `struct usbdevfs_urb` without iso descriptors: buffer at 16, buffer_length at 24,
/// actual_length at 28, status at 4.
const URB_SIZE: usize = 56;
const URB_STATUS: usize = 4;
const URB_BUFFER: usize = 16;
const URB_BUFFER_LENGTH: usize = 24;
const URB_ACTUAL_LENGTH: usize = 28;
const URB_TYPE_CONTROL: u8 = 2;

const SETCONFIGURATION: u64 = ioc(IOC_READ, 5, 4);
const SETINTERFACE: u64 = ioc(IOC_READ, 4, 8);
const RESETEP: u64 = ioc(IOC_READ, 3, 4);
const GETDRIVER: u64 = ioc(IOC_WRITE, 8, 260);
const SUBMITURB: u64 = ioc(IOC_READ, 10, URB_SIZE as u64);
const DISCARDURB: u64 = ioc(IOC_NONE, 11, 0);
const REAPURB: u64 = ioc(IOC_WRITE, 12, 8);
const REAPURBNDELAY: u64 = ioc(IOC_WRITE, 13, 8);
const CLAIMINTERFACE: u64 = ioc(IOC_READ, 15, 4);
const RELEASEINTERFACE: u64 = ioc(IOC_READ, 16, 4);
const RESET: u64 = ioc(IOC_NONE, 20, 0);
const CLEAR_HALT: u64 = ioc(IOC_READ, 21, 4);
const GET_CAPABILITIES: u64 = ioc(IOC_READ, 26, 4);
const DISCONNECT_CLAIM: u64 = ioc(IOC_READ, 27, 264);

/// BULK_CONTINUATION | NO_PACKET_SIZE_LIM | REAP_AFTER_DISCONNECT | ZERO_PACKET.
const CAPABILITIES: u32 = 0x17;

/// The USB port the device is plugged into.
const SYSPATH: &str = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1";

/// How the device shows on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    /// The bootloader's DFU interface (the number changes at every boot).
    Dfu(u64),
    /// Firmware runs: CDC serial.
    Normal,
    /// Off, or crashing before USB starts.
    Absent,
}

fn presence(d: &Device) -> Presence {
    match d.dfu_connection() {
        Some(c) => Presence::Dfu(c),
        None if matches!(
            d.state.mode,
            Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
        ) =>
        {
            Presence::Normal
        }
        None => Presence::Absent,
    }
}

struct BusState {
    presence: Presence,
    generation: u64,
}

struct Shared {
    device: Mutex<Device>,
    bus: Mutex<BusState>,
    notify: Mutex<mpsc::Sender<()>>,
    trace: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// After a transfer: if the device changed how it shows on the bus, a new generation
    /// (every node of the old one goes stale) and a replug request to the main thread.
    fn check_presence(&self) {
        let now = presence(&lock(&self.device));
        let mut bus = lock(&self.bus);
        if now != bus.presence {
            bus.presence = now;
            bus.generation += 1;
            drop(bus);
            let _ = lock(&self.notify).send(());
        }
    }

    fn current(&self, generation: u64) -> bool {
        lock(&self.bus).generation == generation
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    Dfu,
    Normal,
}

/// The ioctl handler of one device node (one enumeration of the device).
struct Node {
    shared: Arc<Shared>,
    generation: u64,
    kind: NodeKind,
    queue: Mutex<VecDeque<(Data, Data)>>,
    line_coding: Mutex<[u8; 7]>,
}

fn get_i32(b: &[u8], at: usize) -> i32 {
    b.get(at..at + 4)
        .map_or(0, |s| i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn put_i32(b: &mut [u8], at: usize, v: i32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

impl IoctlHandler for Node {
    fn ioctl(&self, c: &mut Client<'_>) -> bool {
        let request = c.request();
        if self.shared.trace && request != REAPURBNDELAY && request != SUBMITURB {
            eprintln!("[attach] ioctl {request:#x} ({:?} node)", self.kind);
        }
        let stale = !self.shared.current(self.generation);
        match request {
            GET_CAPABILITIES => match c.arg(0, 4) {
                Some(mut d) => {
                    let b = d.bytes();
                    if b.len() >= 4 {
                        b[..4].copy_from_slice(&CAPABILITIES.to_ne_bytes());
                    }
                    c.complete(0, 0);
                    drop(d);
                }
                None => c.complete(-1, libc::EFAULT),
            },
            SETINTERFACE => {
                let alt = c.arg(0, 8).map(|mut d| get_i32(d.bytes(), 4));
                let ok = match (alt, self.kind, stale) {
                    (_, _, true) => Err(libc::ENODEV),
                    (Some(alt), NodeKind::Dfu, false) => {
                        let r = u8::try_from(alt)
                            .ok()
                            .map(|a| lock(&self.shared.device).dfu_set_alt(a).is_ok());
                        if r == Some(true) {
                            Ok(())
                        } else {
                            Err(libc::EINVAL)
                        }
                    }
                    (Some(0), NodeKind::Normal, false) => Ok(()),
                    _ => Err(libc::EINVAL),
                };
                match ok {
                    Ok(()) => c.complete(0, 0),
                    Err(e) => c.complete(-1, e),
                }
            }
            RESET => {
                if stale {
                    c.complete(-1, libc::ENODEV);
                } else {
                    if self.kind == NodeKind::Dfu {
                        lock(&self.shared.device).dfu_bus_reset();
                    }
                    c.complete(0, 0);
                }
            }
            GETDRIVER => c.complete(-1, libc::ENODATA),
            CLAIMINTERFACE | RELEASEINTERFACE | SETCONFIGURATION | CLEAR_HALT | RESETEP
            | DISCONNECT_CLAIM => c.complete(0, 0),
            DISCARDURB => c.complete(-1, libc::EINVAL),
            SUBMITURB => self.submit(c, stale),
            REAPURB | REAPURBNDELAY => self.reap(c),
            _ => return false,
        }
        true
    }
}

impl Node {
    fn submit(&self, c: &mut Client<'_>, stale: bool) {
        if stale {
            return c.complete(-1, libc::ENODEV);
        }
        let Some(mut urb) = c.arg(0, URB_SIZE) else {
            return c.complete(-1, libc::EFAULT);
        };
        let (kind, length) = {
            let b = urb.bytes();
            (b.first().copied(), get_i32(b, URB_BUFFER_LENGTH))
        };
        if kind != Some(URB_TYPE_CONTROL) || !(8..=65_535 + 8).contains(&length) {
            return c.complete(-1, libc::EINVAL);
        }
        let Some(buffer) = urb.resolve(URB_BUFFER, length as usize) else {
            return c.complete(-1, libc::EFAULT);
        };
        lock(&self.queue).push_back((urb, buffer));
        c.complete(0, 0);
    }

    fn reap(&self, c: &mut Client<'_>) {
        let next = lock(&self.queue).pop_front();
        let Some((mut urb, mut buffer)) = next else {
            let stale = !self.shared.current(self.generation);
            return c.complete(-1, if stale { libc::ENODEV } else { libc::EAGAIN });
        };
        let (status, actual) = if self.shared.current(self.generation) {
            self.transfer(buffer.bytes())
        } else {
            (-libc::ENODEV, 0)
        };
        {
            let u = urb.bytes();
            put_i32(u, URB_STATUS, status);
            put_i32(u, URB_ACTUAL_LENGTH, actual);
        }
        match c.arg(0, 8) {
            Some(arg) if arg.set_ptr(0, &urb) => c.complete(0, 0),
            _ => c.complete(-1, libc::EFAULT),
        }
        drop(buffer);
        drop(urb);
        self.shared.check_presence();
    }

    /// One control transfer: `buf` = SETUP + data stage. Returns (URB status, actual length).
    fn transfer(&self, buf: &mut [u8]) -> (i32, i32) {
        let Some(head) = buf.get(..8) else {
            return (-libc::EINVAL, 0);
        };
        let mut setup_bytes = [0u8; 8];
        setup_bytes.copy_from_slice(head);
        let setup = Setup::from_bytes(setup_bytes);
        let room = buf.len() - 8;
        let data_len = usize::from(setup.length).min(room);
        let reply = {
            let mut device = lock(&self.shared.device);
            let out = if setup.is_in() {
                &[][..]
            } else {
                &buf[8..8 + data_len]
            };
            match self.kind {
                NodeKind::Dfu => device.dfu_control(setup, out).map_err(|_| ()),
                NodeKind::Normal => {
                    device.state.control_transfers += 1;
                    normal_control(&mut device, setup, out, &mut lock(&self.line_coding))
                }
            }
        };
        if self.shared.trace {
            eprintln!(
                "[attach] {:02x} {:02x} wValue={:04x} wIndex={:04x} wLength={} -> {}",
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                setup.length,
                match &reply {
                    Ok(r) if setup.is_in() => format!("{} bytes", r.len()),
                    Ok(_) => "ok".into(),
                    Err(_) => "STALL".into(),
                }
            );
        }
        match reply {
            Err(_) => (-libc::EPIPE, 0),
            Ok(r) if setup.is_in() => {
                let n = r.len().min(data_len);
                buf[8..8 + n].copy_from_slice(&r[..n]);
                (0, n as i32)
            }
            Ok(_) => (0, data_len as i32),
        }
    }
}

/// Control requests to the firmware's USB device (what this emulation needs of it).
fn normal_control(
    d: &mut Device,
    s: Setup,
    data: &[u8],
    line: &mut [u8; 7],
) -> Result<Vec<u8>, ()> {
    let reply = match (s.request_type, s.request) {
        (0x80, 6) => {
            let [index, kind] = s.value.to_le_bytes();
            let descriptors = d.normal_usb_descriptors();
            match (kind, index) {
                (1, 0) => descriptors.device,
                (2, 0) => descriptors.configuration,
                (3, i) => descriptors.string(i).ok_or(())?.to_vec(),
                _ => return Err(()),
            }
        }
        (0x80, 0) => vec![1, 0],
        (0x80, 8) => vec![1],
        (0x00, 9) | (0x21, 0x22) => Vec::new(),
        (0x21, 0x20) if s.index == 0 && data.len() >= 7 => {
            line.copy_from_slice(&data[..7]);
            match u32::from_le_bytes([data[0], data[1], data[2], data[3]]) {
                super::serial::DFU_BAUD => d.request_dfu(),
                super::serial::LISTENING_BAUD => {
                    d.enter_listening();
                }
                _ => {}
            }
            Vec::new()
        }
        (0xA1, 0x21) if s.index == 0 => line.to_vec(),
        _ => return Err(()),
    };
    let mut reply = reply;
    reply.truncate(usize::from(s.length));
    Ok(reply)
}

/// The umockdev-record description of the device as it shows now.
fn description(d: &Device, kind: NodeKind, devnum: u32) -> String {
    let (vid, pid, descriptors, product) = match kind {
        NodeKind::Dfu => {
            let u = d.usb_descriptors();
            let product = u
                .string(2)
                .and_then(|s| modflash_dfu::descriptor::parse_string_descriptor(s).ok())
                .unwrap_or_default();
            let (vid, pid) = d
                .platform()
                .usb
                .map_or((0, 0), |u| (u.vendor, u.dfu.unwrap_or(u.normal)));
            (vid, pid, u.sysfs(), product)
        }
        NodeKind::Normal => {
            let u = d.normal_usb_descriptors();
            let product = u
                .string(2)
                .and_then(|s| modflash_dfu::descriptor::parse_string_descriptor(s).ok())
                .unwrap_or_default();
            let (vid, pid) = d.platform().usb.map_or((0, 0), |u| (u.vendor, u.normal));
            (vid, pid, u.sysfs(), product)
        }
    };
    let id = &d.state.device_id;
    format!(
        "P: {}\nN: bus/usb/001/{devnum:03}\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\nE: DRIVER=usb\n\
         E: BUSNUM=001\nE: DEVNUM={devnum:03}\nE: DEVNAME=/dev/bus/usb/001/{devnum:03}\n\
         E: ID_VENDOR_ID={vid:04x}\nE: ID_MODEL_ID={pid:04x}\nE: ID_SERIAL_SHORT={id}\n\
         A: busnum=1\\n\nA: devnum={devnum}\\n\nA: speed=12\\n\nA: bConfigurationValue=1\\n\n\
         A: idVendor={vid:04x}\\n\nA: idProduct={pid:04x}\\n\nA: serial={id}\\n\n\
         A: manufacturer=Particle\\n\nA: product={product}\\n\nH: descriptors={}\n",
        SYSPATH.trim_start_matches("/sys"),
        hex::encode(&descriptors)
    )
}

/// Options of [`attach`].
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// Print every ioctl and control transfer on standard error.
    pub trace: bool,
}

/// What happened while attached.
#[derive(Clone, Debug)]
pub struct Attached {
    /// The device afterwards.
    pub device: Device,
    /// The command's exit code (128 + signal when it was killed).
    pub exit_code: i32,
    /// How often the device re-enumerated.
    pub replugs: u32,
}

struct Bus {
    testbed: Testbed,
    devnum: u32,
    plugged: bool,
    replugs: u32,
}

impl Bus {
    fn plug(&mut self, shared: &Arc<Shared>) -> Result<(), UmockdevError> {
        if self.plugged {
            self.testbed.remove_device(SYSPATH)?;
            self.plugged = false;
            self.replugs += 1;
        }
        let (now, generation) = {
            let bus = lock(&shared.bus);
            (bus.presence, bus.generation)
        };
        let kind = match now {
            Presence::Dfu(_) => NodeKind::Dfu,
            Presence::Normal => NodeKind::Normal,
            Presence::Absent => return Ok(()),
        };
        self.devnum += 1;
        let text = description(&lock(&shared.device), kind, self.devnum);
        let node = format!("/dev/bus/usb/001/{:03}", self.devnum);
        let handler = Arc::new(Node {
            shared: Arc::clone(shared),
            generation,
            kind,
            queue: Mutex::new(VecDeque::new()),
            line_coding: Mutex::new([0x80, 0x25, 0, 0, 0, 0, 8]),
        });
        self.testbed.attach_ioctl(&node, handler)?;
        self.testbed.add_from_string(&text)?;
        self.plugged = true;
        if shared.trace {
            eprintln!("[attach] plugged {node} ({kind:?} mode)");
        }
        Ok(())
    }
}

/// Why `attach` could not run the command.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AttachError {
    /// umockdev is not installed.
    #[error("{0}")]
    #[diagnostic(code(modflash::attach::no_umockdev), help("{}", INSTALL_HELP))]
    NoUmockdev(String),
    /// The emulated bus failed.
    #[error("the emulated USB bus failed: {0}")]
    #[diagnostic(code(modflash::attach::bus))]
    Bus(UmockdevError),
    /// The command could not be started.
    #[error("cannot run {command}: {error}")]
    #[diagnostic(
        code(modflash::attach::spawn),
        help("check the command name and that it is on PATH")
    )]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
}

/// The preload library the child needs, if it is installed (searched where the dynamic
/// linker would look, then in ldconfig's cache; never loaded into this process, where it
/// would redirect our own /sys and /dev).
fn preload_installed() -> bool {
    const NAME: &str = "libumockdev-preload.so.0";
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/lib64",
        "/lib",
        "/usr/local/lib",
    ] {
        dirs.push(d.into());
    }
    if dirs.iter().any(|d| d.join(NAME).exists()) {
        return true;
    }
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(NAME))
}

/// Runs `program args` with `device` plugged into an emulated USB bus; returns the device
/// afterwards and the command's exit code.
pub fn attach(
    device: Device,
    program: &OsString,
    args: &[OsString],
    options: &AttachOptions,
) -> Result<Attached, AttachError> {
    if !cfg!(all(target_os = "linux", target_pointer_width = "64")) {
        return Err(AttachError::NoUmockdev(
            "sim attach needs Linux on a 64-bit machine (umockdev and the usbfs layout)".into(),
        ));
    }
    if !preload_installed() {
        return Err(AttachError::NoUmockdev(
            "umockdev's preload library libumockdev-preload.so.0 is not installed".into(),
        ));
    }
    let lib = Umockdev::load()
        .map_err(|e| AttachError::NoUmockdev(format!("umockdev is not available: {e}")))?;
    let testbed = Testbed::new(lib).map_err(AttachError::Bus)?;
    let root = testbed.root_dir();
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        bus: Mutex::new(BusState {
            presence: presence(&device),
            generation: 0,
        }),
        device: Mutex::new(device),
        notify: Mutex::new(tx),
        trace: options.trace,
    });
    let mut bus = Bus {
        testbed,
        devnum: 1,
        plugged: false,
        replugs: 0,
    };
    bus.plug(&shared).map_err(AttachError::Bus)?;
    let preload = match std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        Some(p) => {
            let mut v = OsString::from("libumockdev-preload.so.0:");
            v.push(p);
            v
        }
        None => OsString::from("libumockdev-preload.so.0"),
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload)
        .env("UMOCKDEV_DIR", &root)
        .spawn()
        .map_err(|error| AttachError::Spawn {
            command: program.to_string_lossy().into_owned(),
            error,
        })?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if rx.recv_timeout(Duration::from_millis(5)).is_ok() {
            while rx.try_recv().is_ok() {}
            if let Err(e) = bus.plug(&shared) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AttachError::Bus(e));
            }
        }
    };
    let replugs = bus.replugs;
    drop(bus);
    let exit_code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        }),
        Err(_) => 1,
    };
    let device = lock(&shared.device).clone();
    Ok(Attached {
        device,
        exit_code,
        replugs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::ResetReason;
    use modflash_testkit::device::device;

    #[test]
    fn ioctl_numbers_match_linux() {
        assert_eq!(GET_CAPABILITIES, 0x8004_551a);
        assert_eq!(SETINTERFACE, 0x8008_5504);
        assert_eq!(CLAIMINTERFACE, 0x8004_550f);
        assert_eq!(RELEASEINTERFACE, 0x8004_5510);
        assert_eq!(RESET, 0x5514);
        assert_eq!(DISCONNECT_CLAIM, 0x8108_551b);
        assert_eq!(GETDRIVER, 0x4104_5508);
        assert_eq!(SUBMITURB, 0x8038_550a);
        assert_eq!(REAPURB, 0x4008_550c);
        assert_eq!(REAPURBNDELAY, 0x4008_550d);
        assert_eq!(DISCARDURB, 0x550b);
    }

    #[test]
    fn presence_follows_the_mode() {
        let mut d = device(6).release("1.5.0").powered_on();
        assert_eq!(presence(&d), Presence::Normal);
        d.reset(ResetReason::Button, Some(3.0));
        let Presence::Dfu(first) = presence(&d) else {
            panic!("not in DFU mode")
        };
        d.reset(ResetReason::Button, Some(3.0));
        assert_ne!(
            presence(&d),
            Presence::Dfu(first),
            "a reset is a new enumeration"
        );
    }

    #[test]
    fn line_coding_at_14400_baud_enters_dfu_mode() {
        let mut d = device(6).release("1.5.0").powered_on();
        let mut line = [0u8; 7];
        let set = |baud: u32| {
            Setup {
                request_type: 0x21,
                request: 0x20,
                value: 0,
                index: 0,
                length: 7,
            }
            .to_bytes()
            .iter()
            .copied()
            .chain(baud.to_le_bytes().into_iter().chain([0, 0, 8]))
            .collect::<Vec<u8>>()
        };
        let s = set(9600);
        let setup = Setup::from_bytes(s[..8].try_into().unwrap());
        normal_control(&mut d, setup, &s[8..], &mut line).unwrap();
        assert_eq!(d.state.mode, Mode::App);
        let get = Setup {
            request_type: 0xA1,
            request: 0x21,
            value: 0,
            index: 0,
            length: 7,
        };
        assert_eq!(
            normal_control(&mut d, get, &[], &mut line).unwrap(),
            &s[8..]
        );
        let s = set(14400);
        normal_control(&mut d, setup, &s[8..], &mut line).unwrap();
        assert!(d.in_dfu_mode());
        // Unknown requests stall.
        let bad = Setup {
            request_type: 0xC0,
            request: 0x50,
            value: 0,
            index: 0,
            length: 8,
        };
        assert!(normal_control(&mut d, bad, &[], &mut line).is_err());
    }

    #[test]
    fn descriptions_carry_the_descriptors_and_serial() {
        let mut d = device(6).release("1.5.0").powered_on();
        let normal = description(&d, NodeKind::Normal, 2);
        assert!(normal.contains("A: idProduct=c006"), "{normal}");
        assert!(normal.contains(&format!("A: serial={}", d.state.device_id)));
        assert!(normal.contains("N: bus/usb/001/002"));
        let normal_usb = d.normal_usb_descriptors();
        let (device, config) = (normal_usb.device, normal_usb.configuration);
        assert_eq!(device.len(), 18);
        assert_eq!(
            usize::from(u16::from_le_bytes([config[2], config[3]])),
            config.len()
        );
        d.reset(ResetReason::Button, Some(3.0));
        let dfu = description(&d, NodeKind::Dfu, 3);
        assert!(dfu.contains("A: idProduct=d006"), "{dfu}");
        assert!(dfu.contains("A: product=Photon DFU Mode"), "{dfu}");
        assert!(dfu.contains(&hex::encode(d.usb_descriptors().sysfs())));
    }
}
