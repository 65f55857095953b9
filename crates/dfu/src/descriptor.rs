//! USB descriptor parsing for DFU: device, configuration (DFU alt settings, functional descriptor)
//! and string descriptors, plus GET_DESCRIPTOR helpers over [`Control`].

use crate::control::{Control, Setup, GET_DESCRIPTOR, REQUEST_TYPE_STANDARD_IN};
use crate::error::{Error, Operation, Result, Stage};

/// Descriptor type: device.
pub const DESCRIPTOR_DEVICE: u8 = 1;
/// Descriptor type: configuration.
pub const DESCRIPTOR_CONFIGURATION: u8 = 2;
/// Descriptor type: string.
pub const DESCRIPTOR_STRING: u8 = 3;
/// Descriptor type: interface.
pub const DESCRIPTOR_INTERFACE: u8 = 4;
/// Descriptor type: DFU functional.
pub const DESCRIPTOR_DFU_FUNCTIONAL: u8 = 0x21;

/// Interface class of DFU (application specific).
pub const DFU_CLASS: u8 = 0xFE;
/// Interface subclass of DFU.
pub const DFU_SUBCLASS: u8 = 0x01;
/// bcdDFUVersion of ST DfuSe devices.
pub const DFUSE_VERSION: u16 = 0x011A;

/// Control-transfer timeout used for descriptor requests (as dfu-util: 5 s).
pub const DESCRIPTOR_TIMEOUT_MS: u32 = 5000;

fn bad<T>(what: &'static str, reason: impl Into<String>) -> Result<T> {
    Err(Error::Descriptor {
        what,
        reason: reason.into(),
    })
}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => 0,
    }
}

/// The standard 18-byte device descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceDescriptor {
    /// bcdUSB.
    pub usb_version: u16,
    /// bDeviceClass.
    pub class: u8,
    /// bDeviceSubClass.
    pub subclass: u8,
    /// bDeviceProtocol.
    pub protocol: u8,
    /// bMaxPacketSize0.
    pub max_packet_size0: u8,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub device_version: u16,
    /// iManufacturer.
    pub manufacturer_index: u8,
    /// iProduct.
    pub product_index: u8,
    /// iSerialNumber.
    pub serial_index: u8,
    /// bNumConfigurations.
    pub num_configurations: u8,
}

impl DeviceDescriptor {
    /// Wire length.
    pub const LEN: usize = 18;

    /// Parses a device descriptor.
    pub fn parse(b: &[u8]) -> Result<Self> {
        const W: &str = "device";
        if b.len() < Self::LEN {
            return bad(W, format!("{} bytes, need 18", b.len()));
        }
        if usize::from(b[0]) < Self::LEN {
            return bad(W, format!("bLength {} is under 18", b[0]));
        }
        if b[1] != DESCRIPTOR_DEVICE {
            return bad(W, format!("bDescriptorType 0x{:02x} is not 0x01", b[1]));
        }
        Ok(DeviceDescriptor {
            usb_version: le16(b, 2),
            class: b[4],
            subclass: b[5],
            protocol: b[6],
            max_packet_size0: b[7],
            vendor_id: le16(b, 8),
            product_id: le16(b, 10),
            device_version: le16(b, 12),
            manufacturer_index: b[14],
            product_index: b[15],
            serial_index: b[16],
            num_configurations: b[17],
        })
    }
}

/// bmAttributes of the DFU functional descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DfuAttributes(pub u8);

impl DfuAttributes {
    /// bit 0 bitCanDnload.
    pub fn can_download(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// bit 1 bitCanUpload.
    pub fn can_upload(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// bit 2 bitManifestationTolerant.
    pub fn manifestation_tolerant(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// bit 3 bitWillDetach.
    pub fn will_detach(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// bit 7 (ST) bitAcceleratedST.
    pub fn accelerated_st(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// The DFU functional descriptor (type 0x21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FunctionalDescriptor {
    /// bmAttributes.
    pub attributes: DfuAttributes,
    /// wDetachTimeOut in ms.
    pub detach_timeout_ms: u16,
    /// wTransferSize: bytes per DNLOAD/UPLOAD block.
    pub transfer_size: u16,
    /// bcdDFUVersion (0x0100 for the 7-byte DFU 1.0 form, 0x011A for DfuSe).
    pub dfu_version: u16,
}

impl FunctionalDescriptor {
    /// Parses a functional descriptor (9 bytes, or 7 for DFU 1.0).
    pub fn parse(b: &[u8]) -> Result<Self> {
        const W: &str = "DFU functional";
        let Some(&len) = b.first() else {
            return bad(W, "empty");
        };
        let len = usize::from(len);
        if len < 7 {
            return bad(W, format!("bLength {len} is under 7"));
        }
        if b.len() < len.min(9) {
            return bad(W, format!("{} bytes, bLength says {len}", b.len()));
        }
        if b[1] != DESCRIPTOR_DFU_FUNCTIONAL {
            return bad(W, format!("bDescriptorType 0x{:02x} is not 0x21", b[1]));
        }
        Ok(FunctionalDescriptor {
            attributes: DfuAttributes(b[2]),
            detach_timeout_ms: le16(b, 3),
            transfer_size: le16(b, 5),
            dfu_version: if len >= 9 { le16(b, 7) } else { 0x0100 },
        })
    }

    /// Whether the device speaks ST DfuSe (bcdDFUVersion 0x011A).
    pub fn is_dfuse(&self) -> bool {
        self.dfu_version == DFUSE_VERSION
    }
}

/// Whether a DFU interface is in runtime or DFU mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DfuMode {
    /// bInterfaceProtocol 1: the application is running.
    Runtime,
    /// bInterfaceProtocol 2: the bootloader is running.
    Dfu,
}

/// One interface alt setting from a configuration descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InterfaceDescriptor {
    /// bInterfaceNumber.
    pub number: u8,
    /// bAlternateSetting.
    pub alt_setting: u8,
    /// bNumEndpoints.
    pub num_endpoints: u8,
    /// bInterfaceClass.
    pub class: u8,
    /// bInterfaceSubClass.
    pub subclass: u8,
    /// bInterfaceProtocol.
    pub protocol: u8,
    /// iInterface: string index of the alt name (the DfuSe layout string).
    pub name_index: u8,
    /// A DFU functional descriptor following this alt setting, if any.
    pub functional: Option<FunctionalDescriptor>,
}

impl InterfaceDescriptor {
    /// The DFU mode if this is a DFU interface (class 0xFE, subclass 1, protocol 1 or 2).
    pub fn dfu_mode(&self) -> Option<DfuMode> {
        if self.class != DFU_CLASS || self.subclass != DFU_SUBCLASS {
            return None;
        }
        match self.protocol {
            1 => Some(DfuMode::Runtime),
            2 => Some(DfuMode::Dfu),
            _ => None,
        }
    }
}

/// A configuration descriptor with its interfaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigDescriptor {
    /// bConfigurationValue.
    pub configuration_value: u8,
    /// iConfiguration.
    pub name_index: u8,
    /// bmAttributes.
    pub attributes: u8,
    /// bMaxPower in units of 2 mA.
    pub max_power: u8,
    /// bNumInterfaces.
    pub num_interfaces: u8,
    /// wTotalLength.
    pub total_length: u16,
    /// Every interface alt setting, in descriptor order.
    pub interfaces: Vec<InterfaceDescriptor>,
    /// A functional descriptor placed before the first interface, if any.
    pub functional: Option<FunctionalDescriptor>,
}

impl ConfigDescriptor {
    /// Parses a full configuration descriptor (`wTotalLength` bytes; extra bytes are ignored).
    pub fn parse(b: &[u8]) -> Result<Self> {
        const W: &str = "configuration";
        if b.len() < 9 {
            return bad(W, format!("{} bytes, need at least 9", b.len()));
        }
        if b[0] < 9 {
            return bad(W, format!("bLength {} is under 9", b[0]));
        }
        if b[1] != DESCRIPTOR_CONFIGURATION {
            return bad(W, format!("bDescriptorType 0x{:02x} is not 0x02", b[1]));
        }
        let total_length = le16(b, 2);
        let total = usize::from(total_length);
        if total < usize::from(b[0]) {
            return bad(
                W,
                format!("wTotalLength {total} is shorter than bLength {}", b[0]),
            );
        }
        if total > b.len() {
            return bad(
                W,
                format!("truncated: wTotalLength {total} but only {} bytes", b.len()),
            );
        }
        let b = &b[..total];
        let mut cfg = ConfigDescriptor {
            configuration_value: b[5],
            name_index: b[6],
            attributes: b[7],
            max_power: b[8],
            num_interfaces: b[4],
            total_length,
            interfaces: Vec::new(),
            functional: None,
        };
        let mut pos = usize::from(b[0]);
        while pos < total {
            let rest = &b[pos..];
            let len = usize::from(rest[0]);
            if len < 2 {
                return bad(W, format!("descriptor at offset {pos} has bLength {len}"));
            }
            if len > rest.len() {
                return bad(
                    W,
                    format!("descriptor at offset {pos} (bLength {len}) overruns wTotalLength"),
                );
            }
            let d = &rest[..len];
            match d[1] {
                DESCRIPTOR_INTERFACE => {
                    if len < 9 {
                        return bad(
                            W,
                            format!("interface descriptor at offset {pos} has bLength {len}"),
                        );
                    }
                    cfg.interfaces.push(InterfaceDescriptor {
                        number: d[2],
                        alt_setting: d[3],
                        num_endpoints: d[4],
                        class: d[5],
                        subclass: d[6],
                        protocol: d[7],
                        name_index: d[8],
                        functional: None,
                    });
                }
                DESCRIPTOR_DFU_FUNCTIONAL => {
                    // 0x21 is also the HID class descriptor: only take it at config level or
                    // after a DFU interface.
                    match cfg.interfaces.last_mut() {
                        None => {
                            if cfg.functional.is_none() {
                                cfg.functional = Some(FunctionalDescriptor::parse(d)?);
                            }
                        }
                        Some(intf) if intf.dfu_mode().is_some() => {
                            if intf.functional.is_none() {
                                intf.functional = Some(FunctionalDescriptor::parse(d)?);
                            }
                        }
                        Some(_) => {}
                    }
                }
                _ => {}
            }
            pos += len;
        }
        Ok(cfg)
    }

    /// The DFU alt settings (runtime or DFU mode).
    pub fn dfu_interfaces(&self) -> impl Iterator<Item = &InterfaceDescriptor> {
        self.interfaces.iter().filter(|i| i.dfu_mode().is_some())
    }

    /// The functional descriptor, looked up as dfu-util does: config level first, then the
    /// first DFU alt setting that has one.
    pub fn functional_descriptor(&self) -> Option<FunctionalDescriptor> {
        self.functional
            .or_else(|| self.dfu_interfaces().find_map(|i| i.functional))
    }
}

/// Decodes a string descriptor (UTF-16LE; unpaired surrogates become U+FFFD).
pub fn parse_string_descriptor(b: &[u8]) -> Result<String> {
    let units = string_units(b)?;
    Ok(String::from_utf16_lossy(&units))
}

/// Decodes string descriptor 0: the supported LANGIDs.
pub fn parse_langids(b: &[u8]) -> Result<Vec<u16>> {
    string_units(b)
}

fn string_units(b: &[u8]) -> Result<Vec<u16>> {
    const W: &str = "string";
    if b.len() < 2 {
        return bad(W, format!("{} bytes, need at least 2", b.len()));
    }
    let len = usize::from(b[0]);
    if len < 2 {
        return bad(W, format!("bLength {len} is under 2"));
    }
    if b[1] != DESCRIPTOR_STRING {
        return bad(W, format!("bDescriptorType 0x{:02x} is not 0x03", b[1]));
    }
    if len > b.len() {
        return bad(
            W,
            format!("truncated: bLength {len} but only {} bytes", b.len()),
        );
    }
    if len % 2 != 0 {
        return bad(
            W,
            format!("bLength {len} is odd (UTF-16 needs pairs of bytes)"),
        );
    }
    Ok(b[2..len]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// Reads a descriptor with GET_DESCRIPTOR; returns the bytes received (at most `length`).
pub fn get_descriptor<C: Control + ?Sized>(
    ctl: &mut C,
    kind: u8,
    index: u8,
    language: u16,
    length: u16,
) -> Result<Vec<u8>> {
    let setup = Setup {
        request_type: REQUEST_TYPE_STANDARD_IN,
        request: GET_DESCRIPTOR,
        value: (u16::from(kind) << 8) | u16::from(index),
        index: language,
        length,
    };
    let mut buf = vec![0u8; usize::from(length)];
    let n = ctl
        .control_in(&setup, &mut buf, DESCRIPTOR_TIMEOUT_MS)
        .map_err(|e| {
            Error::from_transfer(e, Operation::GetDescriptor { kind, index }, Stage::Request)
        })?;
    buf.truncate(n.min(usize::from(length)));
    Ok(buf)
}

/// Reads and parses the device descriptor.
pub fn read_device_descriptor<C: Control + ?Sized>(ctl: &mut C) -> Result<DeviceDescriptor> {
    DeviceDescriptor::parse(&get_descriptor(ctl, DESCRIPTOR_DEVICE, 0, 0, 18)?)
}

/// Reads and parses configuration descriptor `index` (header first, then `wTotalLength`).
pub fn read_config_descriptor<C: Control + ?Sized>(
    ctl: &mut C,
    index: u8,
) -> Result<ConfigDescriptor> {
    let head = get_descriptor(ctl, DESCRIPTOR_CONFIGURATION, index, 0, 9)?;
    if head.len() < 4 {
        return bad(
            "configuration",
            format!("{} bytes, need at least 9", head.len()),
        );
    }
    let total = le16(&head, 2);
    ConfigDescriptor::parse(&get_descriptor(
        ctl,
        DESCRIPTOR_CONFIGURATION,
        index,
        0,
        total,
    )?)
}

/// Reads string `index` in the device's first language (as dfu-util: LANGID first).
pub fn read_string<C: Control + ?Sized>(ctl: &mut C, index: u8) -> Result<String> {
    let langs = parse_langids(&get_descriptor(ctl, DESCRIPTOR_STRING, 0, 0, 255)?)?;
    let Some(&lang) = langs.first() else {
        return bad("string", "string descriptor 0 lists no language");
    };
    parse_string_descriptor(&get_descriptor(ctl, DESCRIPTOR_STRING, index, lang, 255)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Photon DFU-mode device descriptor.
    const DEVICE: [u8; 18] = [
        0x12, 0x01, 0x00, 0x02, 0, 0, 0, 0x40, 0x04, 0x2B, 0x06, 0xD0, 0x50, 0x02, 1, 2, 3, 1,
    ];

    fn photon_config() -> Vec<u8> {
        let mut c = vec![0x09, 0x02, 0x24, 0x00, 0x01, 0x01, 0x02, 0xC0, 0x32];
        c.extend([0x09, 0x04, 0x00, 0x00, 0x00, 0xFE, 0x01, 0x02, 0x06]);
        c.extend([0x09, 0x04, 0x00, 0x01, 0x00, 0xFE, 0x01, 0x02, 0x07]);
        c.extend([0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01]);
        c
    }

    #[test]
    fn photon_descriptors() {
        let d = DeviceDescriptor::parse(&DEVICE).unwrap();
        assert_eq!(
            (d.vendor_id, d.product_id, d.device_version),
            (0x2B04, 0xD006, 0x0250)
        );
        assert_eq!(
            (d.manufacturer_index, d.product_index, d.serial_index),
            (1, 2, 3)
        );
        let c = ConfigDescriptor::parse(&photon_config()).unwrap();
        let alts: Vec<_> = c
            .dfu_interfaces()
            .map(|i| (i.number, i.alt_setting, i.name_index))
            .collect();
        assert_eq!(alts, vec![(0, 0, 6), (0, 1, 7)]);
        assert_eq!(c.interfaces[0].dfu_mode(), Some(DfuMode::Dfu));
        let f = c.functional_descriptor().unwrap();
        assert!(f.attributes.can_download() && f.attributes.can_upload());
        assert!(f.attributes.will_detach() && !f.attributes.manifestation_tolerant());
        assert!(!f.attributes.accelerated_st());
        assert_eq!((f.detach_timeout_ms, f.transfer_size), (255, 4096));
        assert!(f.is_dfuse());
        // It follows alt 1, not alt 0.
        assert!(c.interfaces[0].functional.is_none());
    }

    #[test]
    fn seven_byte_functional_descriptor_is_dfu_1_0() {
        let f = FunctionalDescriptor::parse(&[7, 0x21, 0x03, 0x10, 0x00, 0x00, 0x04]).unwrap();
        assert_eq!(f.dfu_version, 0x0100);
        assert_eq!(f.transfer_size, 1024);
        assert!(FunctionalDescriptor::parse(&[6, 0x21, 0, 0, 0, 0]).is_err());
        assert!(FunctionalDescriptor::parse(&[9, 0x21, 0, 0, 0, 0, 0]).is_err());
        assert!(FunctionalDescriptor::parse(&[9, 0x22, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn runtime_interface_and_hid_descriptor_ignored() {
        let mut c = vec![0x09, 0x02, 0, 0, 0x02, 0x01, 0x00, 0x80, 0x32];
        // HID interface with a 0x21 HID descriptor that must not be taken as DFU.
        c.extend([0x09, 0x04, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00]);
        c.extend([0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, 0x20, 0x00]);
        c.extend([0x07, 0x05, 0x81, 0x03, 0x08, 0x00, 0x0A]);
        c.extend([0x09, 0x04, 0x01, 0x00, 0x00, 0xFE, 0x01, 0x01, 0x05]);
        c.extend([0x07, 0x21, 0x09, 0xE8, 0x03, 0x00, 0x02]);
        let n = c.len() as u16;
        c[2..4].copy_from_slice(&n.to_le_bytes());
        let cfg = ConfigDescriptor::parse(&c).unwrap();
        let dfu: Vec<_> = cfg.dfu_interfaces().collect();
        assert_eq!(dfu.len(), 1);
        assert_eq!(dfu[0].dfu_mode(), Some(DfuMode::Runtime));
        let f = cfg.functional_descriptor().unwrap();
        assert_eq!(
            (f.detach_timeout_ms, f.transfer_size, f.dfu_version),
            (1000, 512, 0x0100)
        );
    }

    #[test]
    fn malformed_config_descriptors() {
        let good = photon_config();
        assert!(ConfigDescriptor::parse(&good[..20]).is_err(), "truncated");
        let mut zero = good.clone();
        zero[9] = 0; // bLength 0 would loop forever
        assert!(ConfigDescriptor::parse(&zero).is_err());
        let mut over = good.clone();
        over[27] = 0x40; // functional descriptor bLength past the end
        assert!(ConfigDescriptor::parse(&over).is_err());
        let mut short_if = good.clone();
        short_if[9] = 3;
        assert!(ConfigDescriptor::parse(&short_if).is_err());
        assert!(ConfigDescriptor::parse(&[9, 2, 5, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(DeviceDescriptor::parse(&DEVICE[..17]).is_err());
        let mut t = DEVICE;
        t[1] = 2;
        assert!(DeviceDescriptor::parse(&t).is_err());
    }

    #[test]
    fn strings() {
        let mut s = vec![0, 3];
        for u in "Photon DFU Mode".encode_utf16() {
            s.extend(u.to_le_bytes());
        }
        s[0] = s.len() as u8;
        assert_eq!(parse_string_descriptor(&s).unwrap(), "Photon DFU Mode");
        assert_eq!(parse_langids(&[4, 3, 0x09, 0x04]).unwrap(), vec![0x0409]);
        assert_eq!(parse_string_descriptor(&[2, 3]).unwrap(), "");
        assert!(
            parse_string_descriptor(&[5, 3, 0x41, 0, 0x42]).is_err(),
            "odd length"
        );
        assert!(
            parse_string_descriptor(&[6, 3, 0x41, 0]).is_err(),
            "truncated"
        );
        assert!(
            parse_string_descriptor(&[4, 2, 0x41, 0]).is_err(),
            "wrong type"
        );
        assert!(parse_string_descriptor(&[1]).is_err());
        // Lone surrogate decodes lossily instead of failing.
        assert_eq!(
            parse_string_descriptor(&[4, 3, 0x00, 0xD8]).unwrap(),
            "\u{FFFD}"
        );
    }
}
