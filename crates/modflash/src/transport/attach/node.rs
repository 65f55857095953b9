//! One enumeration of a virtual device on the emulated bus: the usbfs ioctls of its device node
//! (`/dev/bus/usb/001/NNN`), answered from the device model. Control URBs are queued at
//! SUBMITURB and run at REAPURB(NDELAY); the node's poll readiness follows the queue
//! ([`super::wake`]). A node whose device changed how it shows on the bus is stale: every
//! ioctl answers ENODEV, as for an unplugged device.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use modflash_dfu::Setup;

use super::control::normal_control;
use super::wake::Wake;
use super::{lock, Port};
use crate::transport::umockdev::{Client, Data, IoctlHandler};

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
/// The initial CDC line coding: 9600 baud, 1 stop bit, no parity, 8 data bits.
const LINE_CODING_9600: [u8; 7] = [0x80, 0x25, 0, 0, 0, 0, 8];

/// Which firmware answers the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeKind {
    /// The bootloader's DFU interface.
    Dfu,
    /// The system firmware's USB device (CDC serial + control interface).
    Normal,
}

/// The ioctl handler of one device node.
pub(super) struct Node {
    port: Arc<Port>,
    generation: u64,
    kind: NodeKind,
    queue: Mutex<VecDeque<(Data, Data)>>,
    line_coding: Mutex<[u8; 7]>,
    wake: Mutex<Option<Wake>>,
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

impl Node {
    /// The handler for generation `generation` of `port`'s device, showing as `kind`.
    pub(super) fn new(port: Arc<Port>, generation: u64, kind: NodeKind) -> Node {
        Node {
            port,
            generation,
            kind,
            queue: Mutex::new(VecDeque::new()),
            line_coding: Mutex::new(LINE_CODING_9600),
            wake: Mutex::new(None),
        }
    }

    /// Gives the node its poll readiness (without one it is always ready, as umockdev's
    /// regular file is).
    pub(super) fn set_wake(&self, wake: Wake) {
        *lock(&self.wake) = Some(wake);
        self.signal();
    }

    fn stale(&self) -> bool {
        !self.port.current(self.generation)
    }

    /// Sets the poll readiness: ready while a URB waits or once the node is stale.
    pub(super) fn signal(&self) {
        let ready = !lock(&self.queue).is_empty() || self.stale();
        if let Some(w) = lock(&self.wake).as_mut() {
            w.set(ready);
        }
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.port.trace {
            eprintln!("[attach] port {}: {}", self.port.number, line());
        }
    }
}

impl IoctlHandler for Node {
    fn ioctl(&self, c: &mut Client<'_>) -> bool {
        let request = c.request();
        if request != REAPURBNDELAY && request != SUBMITURB {
            self.trace(|| format!("ioctl {request:#x} ({:?} node)", self.kind));
        }
        let stale = self.stale();
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
                            .map(|a| lock(&self.port.device).dfu_set_alt(a).is_ok());
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
                    let mut device = lock(&self.port.device);
                    match self.kind {
                        NodeKind::Dfu => device.dfu_bus_reset(),
                        NodeKind::Normal => device.control_bus_reset(),
                    }
                    drop(device);
                    c.complete(0, 0);
                    self.port.check_presence();
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
        self.signal();
        c.complete(0, 0);
    }

    fn reap(&self, c: &mut Client<'_>) {
        let next = lock(&self.queue).pop_front();
        let Some((mut urb, mut buffer)) = next else {
            self.signal();
            let errno = if self.stale() {
                libc::ENODEV
            } else {
                libc::EAGAIN
            };
            return c.complete(-1, errno);
        };
        let (status, actual) = if self.stale() {
            (-libc::ENODEV, 0)
        } else {
            self.transfer(buffer.bytes())
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
        self.port.check_presence();
        self.signal();
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
            let mut device = lock(&self.port.device);
            let out = if setup.is_in() {
                &[][..]
            } else {
                &buf[8..8 + data_len]
            };
            match self.kind {
                NodeKind::Dfu => device.dfu_control(setup, out).ok(),
                NodeKind::Normal => {
                    normal_control(&mut device, setup, out, &mut lock(&self.line_coding))
                }
            }
        };
        self.trace(|| {
            format!(
                "{:02x} {:02x} wValue={:04x} wIndex={:04x} wLength={} -> {}",
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                setup.length,
                match &reply {
                    Some(r) if setup.is_in() => format!("{} bytes", r.len()),
                    Some(_) => "ok".into(),
                    None => "STALL".into(),
                }
            )
        });
        match reply {
            None => (-libc::EPIPE, 0),
            Some(r) if setup.is_in() => {
                let n = r.len().min(data_len);
                buf[8..8 + n].copy_from_slice(&r[..n]);
                (0, n as i32)
            }
            Some(_) => (0, data_len as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
