//! Hotplug notices on the emulated bus: udev's "add" and "remove" messages, delivered to every
//! uevent listener of the child (libudev monitors, and so libusb's hotplug and device list).
//!
//! umockdev's preload turns a child's netlink uevent socket into a datagram socket at
//! `$UMOCKDEV_DIR/eventN` and presents what arrives there as a message from udevd. umockdev's
//! own sender looks the device up with libudev in the calling process, which does not see the
//! test bed, so this module builds the message itself: libudev's monitor header (the "libudev"
//! prefix, magic 0xfeedcafe, MurmurHash2 of the subsystem and device type for the monitor's
//! socket filter) and the NUL-separated properties.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// What happened to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Plugged in (enumerated).
    Add,
    /// Unplugged.
    Remove,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
        }
    }
}

/// The USB device a message is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UsbNode {
    /// `/devices/...` (the syspath without `/sys`).
    pub devpath: String,
    /// Bus and device number (`/dev/bus/usb/BBB/DDD`).
    pub busnum: u8,
    pub devnum: u8,
    pub vendor: u16,
    pub product: u16,
    pub bcd_device: u16,
}

const MONITOR_MAGIC: u32 = 0xfeed_cafe;
const HEADER_SIZE: u32 = 40;

/// systemd's MurmurHash2 of a property value (the monitor filter's hash).
fn murmur2(s: &str) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let data = s.as_bytes();
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The message udevd would send for `node`.
fn message(action: Action, node: &UsbNode, seqnum: u64) -> Vec<u8> {
    let properties = [
        format!("ACTION={}", action.name()),
        format!("DEVPATH={}", node.devpath),
        "SUBSYSTEM=usb".to_string(),
        format!("SEQNUM={seqnum}"),
        format!("DEVNAME=/dev/bus/usb/{:03}/{:03}", node.busnum, node.devnum),
        "DEVTYPE=usb_device".to_string(),
        "DRIVER=usb".to_string(),
        format!(
            "PRODUCT={:x}/{:x}/{:x}",
            node.vendor, node.product, node.bcd_device
        ),
        format!("BUSNUM={:03}", node.busnum),
        format!("DEVNUM={:03}", node.devnum),
        "MAJOR=189".to_string(),
        format!(
            "MINOR={}",
            (u32::from(node.busnum) - 1) * 128 + u32::from(node.devnum) - 1
        ),
    ];
    let mut body = Vec::new();
    for p in &properties {
        body.extend_from_slice(p.as_bytes());
        body.push(0);
    }
    let mut out = Vec::with_capacity(HEADER_SIZE as usize + body.len());
    out.extend_from_slice(b"libudev\0");
    out.extend_from_slice(&MONITOR_MAGIC.to_be_bytes());
    out.extend_from_slice(&HEADER_SIZE.to_ne_bytes());
    out.extend_from_slice(&HEADER_SIZE.to_ne_bytes()); // properties_off
    out.extend_from_slice(&(body.len() as u32).to_ne_bytes());
    out.extend_from_slice(&murmur2("usb").to_be_bytes());
    out.extend_from_slice(&murmur2("usb_device").to_be_bytes());
    out.extend_from_slice(&[0; 8]); // tag bloom filter: no tags
    out.extend_from_slice(&body);
    out
}

/// Sends udev's messages to the child's listeners in a test bed.
pub(super) struct Sender {
    root: std::path::PathBuf,
    seqnum: u64,
}

impl Sender {
    /// A sender for the test bed at `root`.
    pub(super) fn new(root: &Path) -> Sender {
        Sender {
            root: root.to_path_buf(),
            seqnum: 0,
        }
    }

    /// Tells every listener that `node` was added or removed; returns how many heard it. A
    /// listener whose socket was closed is forgotten (its socket file removed).
    pub(super) fn send(&mut self, action: Action, node: &UsbNode) -> usize {
        self.seqnum += 1;
        let bytes = message(action, node, self.seqnum);
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let Ok(socket) = UnixDatagram::unbound() else {
            return 0;
        };
        let mut heard = 0;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let listener = name
                .to_str()
                .and_then(|n| n.strip_prefix("event"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !listener {
                continue;
            }
            match socket.send_to(&bytes, entry.path()) {
                Ok(_) => heard += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(_) => {}
            }
        }
        heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_matches_systemd() {
        // Values of systemd's string_hash32 (MurmurHash2, seed = length), computed by its C.
        assert_eq!(murmur2(""), 0);
        assert_eq!(murmur2("usb"), 0x0577_c5e5);
        assert_eq!(murmur2("usb_device"), 0x27f8_f50c);
    }

    #[test]
    fn a_listener_gets_udevs_message() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixDatagram::bind(dir.path().join("event7")).unwrap();
        std::fs::write(dir.path().join("eventual"), b"").unwrap();
        let node = UsbNode {
            devpath: "/devices/pci0000:00/0000:00:14.0/usb1/1-2".into(),
            busnum: 1,
            devnum: 5,
            vendor: 0x2b04,
            product: 0xd006,
            bcd_device: 0x250,
        };
        let mut sender = Sender::new(dir.path());
        assert_eq!(sender.send(Action::Remove, &node), 1);
        let mut buf = [0u8; 2048];
        let n = listener.recv(&mut buf).unwrap();
        let msg = &buf[..n];
        assert_eq!(&msg[..8], b"libudev\0");
        assert_eq!(&msg[8..12], &0xfeed_cafe_u32.to_be_bytes());
        let off = u32::from_ne_bytes(msg[16..20].try_into().unwrap()) as usize;
        let len = u32::from_ne_bytes(msg[20..24].try_into().unwrap()) as usize;
        assert_eq!(off + len, n);
        let props: Vec<&str> = msg[off..n]
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect();
        for p in [
            "ACTION=remove",
            "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2",
            "SUBSYSTEM=usb",
            "SEQNUM=1",
            "DEVNAME=/dev/bus/usb/001/005",
            "DEVTYPE=usb_device",
            "PRODUCT=2b04/d006/250",
        ] {
            assert!(props.contains(&p), "{p} missing in {props:?}");
        }
        // A closed listener is forgotten.
        drop(listener);
        assert_eq!(sender.send(Action::Add, &node), 0);
        assert!(!dir.path().join("event7").exists());
    }
}
