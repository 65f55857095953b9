//! The USB framing of control requests (Device OS `usb_control_request_channel.cpp`,
//! particle-usb `usb-protocol.js`): the service requests INIT / CHECK / SEND / RECV / RESET,
//! the service reply the device sends to INIT, CHECK and RESET, and the raw 0x50 requests.

use core::fmt;

use crate::request::RequestType;
use crate::usb::Setup;

/// bRequest of INIT: wIndex = request type, wValue = payload size; reply = service reply.
pub const INIT: u8 = 1;
/// bRequest of CHECK: wIndex = request id; reply = service reply.
pub const CHECK: u8 = 2;
/// bRequest of SEND (OUT): wIndex = request id, wLength = chunk size; data = payload chunk.
pub const SEND: u8 = 3;
/// bRequest of RECV: wIndex = request id, wLength = chunk size; reply = reply-payload chunk.
pub const RECV: u8 = 4;
/// bRequest of RESET: wIndex = request id, or 0 for every request; reply = service reply.
pub const RESET: u8 = 5;
/// bRequest values 1–15 are reserved for service requests (only 1–5 are defined).
pub const SERVICE_REQUESTS: core::ops::RangeInclusive<u8> = 1..=15;
/// bRequest of a raw request ('P'): wIndex = request type, answered at once.
pub const RAW: u8 = 0x50;

/// wLength of INIT, CHECK and RESET: the device stalls them unless it is exactly the EP0
/// packet size.
pub const SERVICE_REPLY_LENGTH: u16 = 64;
/// The longest service reply (flags, status, id, size, result).
pub const MAX_SERVICE_REPLY: usize = 14;
/// Request id 0: "no request" (RESET: every request).
pub const ALL_REQUESTS: u16 = 0;

/// Requests the device keeps active at once (`USB_REQUEST_MAX_ACTIVE_COUNT`).
pub const MAX_ACTIVE_REQUESTS: usize = 4;
/// Largest request payload (`USB_REQUEST_MAX_PAYLOAD_SIZE`, the 16-bit wValue of INIT).
pub const MAX_PAYLOAD: usize = 65_535;
/// Payloads up to this size get a pooled buffer at INIT (INIT replies OK, not PENDING).
pub const MAX_POOLED_BUFFER: usize = 64;
/// The largest SEND / RECV chunk particle-usb sends (`MAX_CONTROL_TRANSFER_DATA_SIZE`).
pub const MAX_TRANSFER_CHUNK: usize = 4096;

/// Flag bits of a service reply.
pub mod flags {
    /// The status field is present (always).
    pub const STATUS: u32 = 0x01;
    /// The request id is present.
    pub const ID: u32 = 0x02;
    /// The reply-payload size is present.
    pub const SIZE: u32 = 0x04;
    /// The request's result is present.
    pub const RESULT: u32 = 0x08;
}

/// Status of a service reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0: accepted / done / buffer ready.
    Ok,
    /// 1: a generic error (defined, never sent by Device OS 6.2.0).
    Error,
    /// 2: not ready yet; CHECK again later.
    Pending,
    /// 3: too many active requests.
    Busy,
    /// 4: the device could not allocate the request or its buffer.
    NoMemory,
    /// 5: no request with that id.
    NotFound,
    /// Any other value.
    Unknown(u16),
}

impl Status {
    /// Decodes the status word.
    pub const fn from_u16(v: u16) -> Self {
        match v {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::Pending,
            3 => Self::Busy,
            4 => Self::NoMemory,
            5 => Self::NotFound,
            other => Self::Unknown(other),
        }
    }

    /// Encodes the status word.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
            Self::Pending => 2,
            Self::Busy => 3,
            Self::NoMemory => 4,
            Self::NotFound => 5,
            Self::Unknown(v) => v,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("OK"),
            Self::Error => f.write_str("ERROR"),
            Self::Pending => f.write_str("PENDING"),
            Self::Busy => f.write_str("BUSY"),
            Self::NoMemory => f.write_str("NO_MEMORY"),
            Self::NotFound => f.write_str("NOT_FOUND"),
            Self::Unknown(v) => write!(f, "status {v}"),
        }
    }
}

/// The reply to INIT, CHECK and RESET: a status and, as flagged, the request id, the size of
/// the reply payload and the request's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceReply {
    /// Status.
    pub status: Status,
    /// Request id (INIT replies).
    pub id: Option<u16>,
    /// Bytes of reply payload to fetch with RECV (CHECK replies of done requests).
    pub size: Option<u32>,
    /// The request's result (CHECK replies of done requests).
    pub result: Option<i32>,
}

/// Why bytes are not a service reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ReplyError {
    /// Fewer bytes than the flags announce.
    #[error("the service reply is {len} bytes, its flags announce {expected}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the flags need.
        expected: usize,
    },
    /// The STATUS flag, which every reply carries, is missing.
    #[error("the service reply has no status (flags {0:#x})")]
    NoStatus(u32),
}

/// An encoded service reply (6 to 14 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedReply {
    bytes: [u8; MAX_SERVICE_REPLY],
    len: usize,
}

impl EncodedReply {
    /// The bytes of the data stage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl ServiceReply {
    /// A reply with a status alone.
    pub const fn status(status: Status) -> Self {
        Self {
            status,
            id: None,
            size: None,
            result: None,
        }
    }

    /// The flags word for the fields present.
    pub fn flags(&self) -> u32 {
        let mut f = flags::STATUS;
        if self.id.is_some() {
            f |= flags::ID;
        }
        if self.size.is_some() {
            f |= flags::SIZE;
        }
        if self.result.is_some() {
            f |= flags::RESULT;
        }
        f
    }

    /// The wire form: flags, status, then id, size and result as present.
    pub fn encode(&self) -> EncodedReply {
        let mut bytes = [0u8; MAX_SERVICE_REPLY];
        bytes[..4].copy_from_slice(&self.flags().to_le_bytes());
        bytes[4..6].copy_from_slice(&self.status.as_u16().to_le_bytes());
        let mut len = 6;
        if let Some(id) = self.id {
            bytes[len..len + 2].copy_from_slice(&id.to_le_bytes());
            len += 2;
        }
        if let Some(size) = self.size {
            bytes[len..len + 4].copy_from_slice(&size.to_le_bytes());
            len += 4;
        }
        if let Some(result) = self.result {
            bytes[len..len + 4].copy_from_slice(&result.to_le_bytes());
            len += 4;
        }
        EncodedReply { bytes, len }
    }

    /// Decodes a reply as particle-usb does: the flagged fields in order; bytes after them and
    /// unknown flag bits are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, ReplyError> {
        let truncated = |expected| ReplyError::Truncated {
            len: b.len(),
            expected,
        };
        let flags =
            u32::from_le_bytes(b.get(..4).ok_or(truncated(6))?.try_into().unwrap_or([0; 4]));
        if flags & flags::STATUS == 0 {
            return Err(ReplyError::NoStatus(flags));
        }
        let mut expected = 6;
        for (bit, size) in [(flags::ID, 2), (flags::SIZE, 4), (flags::RESULT, 4)] {
            if flags & bit != 0 {
                expected += size;
            }
        }
        if b.len() < expected {
            return Err(truncated(expected));
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut at = 6;
        let mut field = |bit: u32, size: usize| {
            (flags & bit != 0).then(|| {
                let here = at;
                at += size;
                here
            })
        };
        let id = field(flags::ID, 2).map(u16_at);
        let size = field(flags::SIZE, 4).map(u32_at);
        let result = field(flags::RESULT, 4).map(|at| u32_at(at) as i32);
        Ok(Self {
            status: Status::from_u16(u16_at(4)),
            id,
            size,
            result,
        })
    }
}

/// One service request as a SETUP packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceRequest {
    /// INIT: start a request of `request_type` with `size` payload bytes.
    Init {
        /// Request type.
        request_type: RequestType,
        /// Payload bytes to follow with SEND.
        size: u16,
    },
    /// CHECK: the state of request `id`.
    Check {
        /// Request id.
        id: u16,
    },
    /// SEND: `len` payload bytes of request `id` in the data stage.
    Send {
        /// Request id.
        id: u16,
        /// Chunk size.
        len: u16,
    },
    /// RECV: `len` bytes of request `id`'s reply payload.
    Recv {
        /// Request id.
        id: u16,
        /// Chunk size.
        len: u16,
    },
    /// RESET: cancel request `id` ([`ALL_REQUESTS`]: every request).
    Reset {
        /// Request id, or 0.
        id: u16,
    },
}

impl ServiceRequest {
    /// The SETUP packet the host sends (INIT, CHECK and RESET with wLength 64).
    pub fn setup(&self) -> Setup {
        match *self {
            Self::Init { request_type, size } => {
                Setup::vendor_in(INIT, size, request_type.0, SERVICE_REPLY_LENGTH)
            }
            Self::Check { id } => Setup::vendor_in(CHECK, 0, id, SERVICE_REPLY_LENGTH),
            Self::Send { id, len } => Setup::vendor_out(SEND, 0, id, len),
            Self::Recv { id, len } => Setup::vendor_in(RECV, 0, id, len),
            Self::Reset { id } => Setup::vendor_in(RESET, 0, id, SERVICE_REPLY_LENGTH),
        }
    }

    /// The service request a vendor SETUP packet carries, if it is one (bRequest 1–5, right
    /// direction). Lengths are not checked here: the device stalls wrong ones itself.
    pub fn parse(setup: &Setup) -> Option<Self> {
        if !setup.is_vendor() {
            return None;
        }
        let request = match (setup.request, setup.is_in()) {
            (INIT, true) => Self::Init {
                request_type: RequestType(setup.index),
                size: setup.value,
            },
            (CHECK, true) => Self::Check { id: setup.index },
            (SEND, false) => Self::Send {
                id: setup.index,
                len: setup.length,
            },
            (RECV, true) => Self::Recv {
                id: setup.index,
                len: setup.length,
            },
            (RESET, true) => Self::Reset { id: setup.index },
            _ => return None,
        };
        Some(request)
    }
}

/// A raw 0x50 request (answered at once, no request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RawRequest {
    /// IN, wIndex 20: the device id in upper-case hex (Device OS 0.7+).
    DeviceId,
    /// IN, wIndex 30: the system version string (0.7+).
    SystemVersion,
    /// OUT, wIndex 40: an immediate hard reset (the host's transfer usually fails).
    Reset,
    /// OUT, wIndex 302: cancel the cloud connection.
    CloudDisconnect,
}

impl RawRequest {
    /// The request type it carries in wIndex.
    pub const fn request_type(self) -> RequestType {
        match self {
            Self::DeviceId => RequestType::DEVICE_ID,
            Self::SystemVersion => RequestType::SYSTEM_VERSION,
            Self::Reset => RequestType::RESET,
            Self::CloudDisconnect => RequestType::CLOUD_DISCONNECT,
        }
    }

    /// The SETUP packet: IN requests with wLength 64 (as particle-usb sends them); OUT
    /// requests with no data stage, or one dummy byte where the platform needs a data stage
    /// (`data_stage`: trackerm, P2, M-SoM, sulu).
    pub fn setup(self, data_stage: bool) -> Setup {
        let index = self.request_type().0;
        match self {
            Self::DeviceId | Self::SystemVersion => {
                Setup::vendor_in(RAW, 0, index, SERVICE_REPLY_LENGTH)
            }
            Self::Reset | Self::CloudDisconnect => {
                Setup::vendor_out(RAW, 0, index, u16::from(data_stage))
            }
        }
    }
}

/// The text of a raw IN reply as particle-usb reads it: cut at the first NUL, lossy UTF-8
/// replaced by nothing (non-ASCII bytes dropped).
pub fn raw_text(reply: &[u8]) -> impl Iterator<Item = char> + '_ {
    reply
        .iter()
        .take_while(|&&b| b != 0)
        .filter(|b| b.is_ascii())
        .map(|&b| char::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_in_the_documented_layouts() {
        // INIT accepted: flags 0x03, status OK, id.
        let init = ServiceReply {
            id: Some(1),
            ..ServiceReply::status(Status::Ok)
        };
        assert_eq!(init.encode().as_bytes(), [3, 0, 0, 0, 0, 0, 1, 0]);
        // INIT pending: flags 0x03, status 2.
        let pending = ServiceReply {
            id: Some(0x0102),
            ..ServiceReply::status(Status::Pending)
        };
        assert_eq!(pending.encode().as_bytes(), [3, 0, 0, 0, 2, 0, 2, 1]);
        // BUSY: 6 bytes.
        assert_eq!(
            ServiceReply::status(Status::Busy).encode().as_bytes(),
            [1, 0, 0, 0, 3, 0]
        );
        // CHECK done, no payload: flags 0x09, result.
        let done = ServiceReply {
            result: Some(-120),
            ..ServiceReply::status(Status::Ok)
        };
        assert_eq!(
            done.encode().as_bytes(),
            [9, 0, 0, 0, 0, 0, 0x88, 0xFF, 0xFF, 0xFF]
        );
        // CHECK done with 300 bytes: flags 0x0D, size, result.
        let sized = ServiceReply {
            size: Some(300),
            result: Some(0),
            ..ServiceReply::status(Status::Ok)
        };
        assert_eq!(
            sized.encode().as_bytes(),
            [0x0D, 0, 0, 0, 0, 0, 0x2C, 1, 0, 0, 0, 0, 0, 0]
        );
        for r in [init, pending, done, sized] {
            assert_eq!(ServiceReply::decode(r.encode().as_bytes()), Ok(r));
        }
    }

    #[test]
    fn decode_refuses_truncated_and_statusless_replies() {
        assert_eq!(
            ServiceReply::decode(&[3, 0, 0, 0, 0, 0, 1]),
            Err(ReplyError::Truncated {
                len: 7,
                expected: 8
            })
        );
        assert_eq!(
            ServiceReply::decode(&[2, 0, 0, 0, 0, 0, 1, 0]),
            Err(ReplyError::NoStatus(2))
        );
        assert!(ServiceReply::decode(&[]).is_err());
        // Trailing bytes and unknown flags are ignored, as particle-usb does.
        let r = ServiceReply::decode(&[0x11, 0, 0, 0, 5, 0, 9, 9]).unwrap();
        assert_eq!(r, ServiceReply::status(Status::NotFound));
    }

    #[test]
    fn service_setups_match_particle_usb() {
        let init = ServiceRequest::Init {
            request_type: RequestType::GET_MODULE_INFO,
            size: 0,
        };
        assert_eq!(init.setup().to_bytes(), [0xC0, 1, 0, 0, 90, 0, 64, 0]);
        let reset_all = ServiceRequest::Reset { id: ALL_REQUESTS };
        assert_eq!(reset_all.setup().to_bytes(), [0xC0, 5, 0, 0, 0, 0, 0x40, 0]);
        let send = ServiceRequest::Send { id: 7, len: 1027 };
        assert_eq!(send.setup().to_bytes(), [0x40, 3, 0, 0, 7, 0, 0x03, 0x04]);
        for r in [
            init,
            reset_all,
            send,
            ServiceRequest::Check { id: 3 },
            ServiceRequest::Recv { id: 3, len: 10 },
        ] {
            assert_eq!(ServiceRequest::parse(&r.setup()), Some(r));
        }
        // Wrong direction, not vendor, raw and reserved values are not service requests.
        assert_eq!(
            ServiceRequest::parse(&Setup::vendor_out(INIT, 0, 90, 64)),
            None
        );
        assert_eq!(
            ServiceRequest::parse(&Setup::class_in(CHECK, 0, 0, 64)),
            None
        );
        assert_eq!(
            ServiceRequest::parse(&Setup::vendor_in(RAW, 0, 30, 64)),
            None
        );
        assert_eq!(ServiceRequest::parse(&Setup::vendor_in(6, 0, 0, 64)), None);
    }

    #[test]
    fn raw_requests() {
        assert_eq!(
            RawRequest::SystemVersion.setup(false).to_bytes(),
            [0xC0, 0x50, 0, 0, 30, 0, 64, 0]
        );
        assert_eq!(RawRequest::Reset.setup(false).length, 0);
        assert_eq!(RawRequest::Reset.setup(true).length, 1);
        let text: std::string::String = raw_text(b"0.7.0\0\0").collect();
        assert_eq!(text, "0.7.0");
    }
}
