//! The USB vocabulary every control-pipe user shares: the 8-byte SETUP packet, a STALL, and
//! the bmRequestType values of the requests this workspace sends.

use core::fmt;

/// bmRequestType of a class request to an interface, host to device (DFU DNLOAD, CDC
/// SET_LINE_CODING, ...).
pub const REQUEST_TYPE_CLASS_OUT: u8 = 0x21;
/// bmRequestType of a class request to an interface, device to host (DFU UPLOAD, GETSTATUS, ...).
pub const REQUEST_TYPE_CLASS_IN: u8 = 0xA1;
/// bmRequestType of a standard request to the device, device to host (GET_DESCRIPTOR).
pub const REQUEST_TYPE_STANDARD_IN: u8 = 0x80;
/// bmRequestType of a vendor request to the device, device to host (Particle INIT, CHECK,
/// RECV, RESET and the raw IN requests).
pub const REQUEST_TYPE_VENDOR_IN: u8 = 0xC0;
/// bmRequestType of a vendor request to the device, host to device (Particle SEND and the raw
/// OUT requests).
pub const REQUEST_TYPE_VENDOR_OUT: u8 = 0x40;

/// The type bits (5–6) of bmRequestType.
pub const TYPE_MASK: u8 = 0x60;
/// Type bits of a vendor request.
pub const TYPE_VENDOR: u8 = 0x40;

/// The 8-byte SETUP packet of a control transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Setup {
    /// bmRequestType: direction (bit 7, 1 = IN), type (bits 5–6), recipient (bits 0–4).
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
    /// wLength: bytes in the data stage (for IN requests, the most the host accepts).
    pub length: u16,
}

impl Setup {
    /// Whether the data stage goes device to host (bit 7 of bmRequestType).
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }

    /// Whether this is a vendor request (type bits 0b10), whatever its recipient.
    pub fn is_vendor(&self) -> bool {
        self.request_type & TYPE_MASK == TYPE_VENDOR
    }

    /// The packet as it appears on the wire (little-endian words).
    pub fn to_bytes(&self) -> [u8; 8] {
        let v = self.value.to_le_bytes();
        let i = self.index.to_le_bytes();
        let l = self.length.to_le_bytes();
        [
            self.request_type,
            self.request,
            v[0],
            v[1],
            i[0],
            i[1],
            l[0],
            l[1],
        ]
    }

    /// Decodes a wire SETUP packet.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Setup {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    /// A class request to interface `interface` with an OUT (or no) data stage.
    pub fn class_out(request: u8, value: u16, interface: u16, length: u16) -> Self {
        Setup {
            request_type: REQUEST_TYPE_CLASS_OUT,
            request,
            value,
            index: interface,
            length,
        }
    }

    /// A class request to interface `interface` with an IN data stage.
    pub fn class_in(request: u8, value: u16, interface: u16, length: u16) -> Self {
        Setup {
            request_type: REQUEST_TYPE_CLASS_IN,
            request,
            value,
            index: interface,
            length,
        }
    }

    /// A vendor request to the device with an IN data stage of up to `length` bytes.
    pub fn vendor_in(request: u8, value: u16, index: u16, length: u16) -> Self {
        Setup {
            request_type: REQUEST_TYPE_VENDOR_IN,
            request,
            value,
            index,
            length,
        }
    }

    /// A vendor request to the device with an OUT (or no) data stage of `length` bytes.
    pub fn vendor_out(request: u8, value: u16, index: u16, length: u16) -> Self {
        Setup {
            request_type: REQUEST_TYPE_VENDOR_OUT,
            request,
            value,
            index,
            length,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x} {:02x} wValue={:04x} wIndex={:04x} wLength={}",
            self.request_type, self.request, self.value, self.index, self.length
        )
    }
}

/// The device answered a control transfer with a STALL on EP0 (the host sees `EPIPE` /
/// `LIBUSB_ERROR_PIPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the device stalled the control endpoint")]
pub struct Stall;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_bytes_round_trip() {
        let s = Setup::class_out(1, 0x1234, 0, 4096);
        assert_eq!(s.to_bytes(), [0x21, 1, 0x34, 0x12, 0, 0, 0x00, 0x10]);
        assert_eq!(Setup::from_bytes(s.to_bytes()), s);
        assert!(!s.is_in());
        assert!(Setup::class_in(3, 0, 0, 6).is_in());
        let wire = [0xA1, 3, 0x34, 0x12, 0, 0, 6, 0];
        let s = Setup::from_bytes(wire);
        assert_eq!((s.value, s.length, s.is_in()), (0x1234, 6, true));
        assert_eq!(s.to_bytes(), wire);
    }

    #[test]
    fn vendor_requests_are_recognised() {
        let init = Setup::vendor_in(1, 0, 90, 64);
        assert_eq!(init.to_bytes(), [0xC0, 1, 0, 0, 90, 0, 64, 0]);
        assert!(init.is_vendor() && init.is_in());
        let send = Setup::vendor_out(3, 0, 7, 100);
        assert!(send.is_vendor() && !send.is_in());
        assert!(!Setup::class_in(3, 0, 0, 6).is_vendor());
    }
}
