//! The USB/DFU/DfuSe vocabulary shared by the host engine and the device model (request codes,
//! states, status codes; the SETUP packet itself is `modflash_control::usb::Setup`), and the
//! transport boundary (control transfers, waiting).

use std::fmt;

pub use modflash_control::usb::{
    REQUEST_TYPE_CLASS_IN, REQUEST_TYPE_CLASS_OUT, REQUEST_TYPE_STANDARD_IN,
};

/// DFU_DETACH: runtime mode, ask the device to enter DFU mode (wValue = timeout in ms).
pub const DFU_DETACH: u8 = 0;
/// DFU_DNLOAD: send a firmware block (DfuSe: wValue 0 carries a command).
pub const DFU_DNLOAD: u8 = 1;
/// DFU_UPLOAD: read a firmware block (DfuSe: wValue 0 returns the command list).
pub const DFU_UPLOAD: u8 = 2;
/// DFU_GETSTATUS: read the 6-byte status record.
pub const DFU_GETSTATUS: u8 = 3;
/// DFU_CLRSTATUS: leave dfuERROR.
pub const DFU_CLRSTATUS: u8 = 4;
/// DFU_GETSTATE: read the 1-byte state.
pub const DFU_GETSTATE: u8 = 5;
/// DFU_ABORT: return to dfuIDLE from an idle download/upload state.
pub const DFU_ABORT: u8 = 6;

/// Standard GET_STATUS request (USB 2.0 table 9-4).
pub const GET_STATUS: u8 = 0;
/// Standard SET_ADDRESS request.
pub const SET_ADDRESS: u8 = 5;
/// Standard GET_DESCRIPTOR request.
pub const GET_DESCRIPTOR: u8 = 6;
/// Standard GET_CONFIGURATION request.
pub const GET_CONFIGURATION: u8 = 8;
/// Standard SET_CONFIGURATION request.
pub const SET_CONFIGURATION: u8 = 9;
/// Standard GET_INTERFACE request: the selected alt setting.
pub const GET_INTERFACE: u8 = 10;
/// Standard SET_INTERFACE request: selects an alt setting (wValue).
pub const SET_INTERFACE: u8 = 11;

/// DfuSe command byte: Get Commands (a 1-byte download that ST's code accepts and ignores; the
/// command list is read with UPLOAD block 0).
pub const DFUSE_GET_COMMANDS: u8 = 0x00;
/// DfuSe command byte: Set Address Pointer.
pub const DFUSE_SET_ADDRESS: u8 = 0x21;
/// DfuSe command byte: Erase (page with an address, mass erase without).
pub const DFUSE_ERASE: u8 = 0x41;
/// DfuSe command byte: Read Unprotect.
pub const DFUSE_READ_UNPROTECT: u8 = 0x92;

/// The SETUP packet, shared with the Particle control requests and the device model.
pub use modflash_control::usb::Setup;

/// Why a control transfer failed, as reported by the transport.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The device stalled the control pipe (libusb `LIBUSB_ERROR_PIPE`).
    #[error("the device stalled the control pipe")]
    Stall,
    /// The transfer did not complete within its timeout.
    #[error("the control transfer timed out")]
    Timeout,
    /// The device is gone (unplugged, reset or re-enumerated).
    #[error("the device is no longer connected")]
    NoDevice,
    /// Any other transport failure.
    #[error("USB transfer failed: {0}")]
    Other(String),
}

/// A USB control pipe to one device, plus a way to wait.
///
/// Implementations must already have claimed the DFU interface and selected the alt setting.
/// All waiting goes through [`Control::wait`], so a virtual device can advance modelled time.
pub trait Control {
    /// Performs a control transfer with an IN data stage of up to `buf.len()` bytes
    /// (`setup.length == buf.len()`); returns how many bytes the device sent.
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError>;

    /// Performs a control transfer with an OUT data stage (`setup.length == data.len()`, which may
    /// be zero); returns how many bytes were accepted.
    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError>;

    /// Waits `ms` milliseconds (real transports sleep; models advance their clock).
    fn wait(&mut self, ms: u32);
}

impl<C: Control + ?Sized> Control for &mut C {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        (**self).control_in(setup, buf, timeout_ms)
    }

    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        (**self).control_out(setup, data, timeout_ms)
    }

    fn wait(&mut self, ms: u32) {
        (**self).wait(ms)
    }
}

/// DFU device state (bState), DFU 1.1 §6.1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// 0: runtime mode, idle.
    AppIdle,
    /// 1: runtime mode, DETACH received, waiting for a USB reset.
    AppDetach,
    /// 2: DFU mode, idle.
    DfuIdle,
    /// 3: a block arrived; waiting for GETSTATUS.
    DnloadSync,
    /// 4: programming; wait bwPollTimeout before the next GETSTATUS.
    DnBusy,
    /// 5: ready for the next DNLOAD block.
    DnloadIdle,
    /// 6: end of download received; waiting for GETSTATUS to manifest.
    ManifestSync,
    /// 7: manifesting the firmware.
    Manifest,
    /// 8: manifested; waiting for a USB reset.
    ManifestWaitReset,
    /// 9: uploading.
    UploadIdle,
    /// 10: an error occurred; CLRSTATUS to recover.
    Error,
    /// Any value not defined by DFU 1.1.
    Unknown(u8),
}

impl State {
    /// Decodes bState.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => State::AppIdle,
            1 => State::AppDetach,
            2 => State::DfuIdle,
            3 => State::DnloadSync,
            4 => State::DnBusy,
            5 => State::DnloadIdle,
            6 => State::ManifestSync,
            7 => State::Manifest,
            8 => State::ManifestWaitReset,
            9 => State::UploadIdle,
            10 => State::Error,
            other => State::Unknown(other),
        }
    }

    /// Encodes bState.
    pub const fn as_u8(self) -> u8 {
        match self {
            State::AppIdle => 0,
            State::AppDetach => 1,
            State::DfuIdle => 2,
            State::DnloadSync => 3,
            State::DnBusy => 4,
            State::DnloadIdle => 5,
            State::ManifestSync => 6,
            State::Manifest => 7,
            State::ManifestWaitReset => 8,
            State::UploadIdle => 9,
            State::Error => 10,
            State::Unknown(v) => v,
        }
    }

    /// The name used by the DFU specification and dfu-util.
    pub fn name(self) -> &'static str {
        match self {
            State::AppIdle => "appIDLE",
            State::AppDetach => "appDETACH",
            State::DfuIdle => "dfuIDLE",
            State::DnloadSync => "dfuDNLOAD-SYNC",
            State::DnBusy => "dfuDNBUSY",
            State::DnloadIdle => "dfuDNLOAD-IDLE",
            State::ManifestSync => "dfuMANIFEST-SYNC",
            State::Manifest => "dfuMANIFEST",
            State::ManifestWaitReset => "dfuMANIFEST-WAIT-RESET",
            State::UploadIdle => "dfuUPLOAD-IDLE",
            State::Error => "dfuERROR",
            State::Unknown(_) => "unknown state",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Unknown(v) => write!(f, "unknown state {v}"),
            s => write!(f, "{}({})", s.name(), s.as_u8()),
        }
    }
}

/// DFU status code (bStatus), DFU 1.1 §6.1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0x00: no error.
    Ok,
    /// 0x01: file is not targeted for this device.
    ErrTarget,
    /// 0x02: file fails a vendor-specific verification test.
    ErrFile,
    /// 0x03: unable to write memory.
    ErrWrite,
    /// 0x04: memory erase failed.
    ErrErase,
    /// 0x05: memory erase check failed.
    ErrCheckErased,
    /// 0x06: program memory function failed.
    ErrProg,
    /// 0x07: programmed memory failed verification.
    ErrVerify,
    /// 0x08: address out of range.
    ErrAddress,
    /// 0x09: zero-length DNLOAD but the firmware is incomplete.
    ErrNotDone,
    /// 0x0A: firmware is corrupt; cannot return to run-time operation.
    ErrFirmware,
    /// 0x0B: vendor-specific error (ST: read protection active).
    ErrVendor,
    /// 0x0C: unexpected USB reset.
    ErrUsbr,
    /// 0x0D: unexpected power-on reset.
    ErrPor,
    /// 0x0E: unknown error.
    ErrUnknown,
    /// 0x0F: device stalled an unexpected request.
    ErrStalledPkt,
    /// Any value not defined by DFU 1.1.
    Unknown(u8),
}

impl Status {
    /// Decodes bStatus.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0x00 => Status::Ok,
            0x01 => Status::ErrTarget,
            0x02 => Status::ErrFile,
            0x03 => Status::ErrWrite,
            0x04 => Status::ErrErase,
            0x05 => Status::ErrCheckErased,
            0x06 => Status::ErrProg,
            0x07 => Status::ErrVerify,
            0x08 => Status::ErrAddress,
            0x09 => Status::ErrNotDone,
            0x0A => Status::ErrFirmware,
            0x0B => Status::ErrVendor,
            0x0C => Status::ErrUsbr,
            0x0D => Status::ErrPor,
            0x0E => Status::ErrUnknown,
            0x0F => Status::ErrStalledPkt,
            other => Status::Unknown(other),
        }
    }

    /// Encodes bStatus.
    pub const fn as_u8(self) -> u8 {
        match self {
            Status::Ok => 0x00,
            Status::ErrTarget => 0x01,
            Status::ErrFile => 0x02,
            Status::ErrWrite => 0x03,
            Status::ErrErase => 0x04,
            Status::ErrCheckErased => 0x05,
            Status::ErrProg => 0x06,
            Status::ErrVerify => 0x07,
            Status::ErrAddress => 0x08,
            Status::ErrNotDone => 0x09,
            Status::ErrFirmware => 0x0A,
            Status::ErrVendor => 0x0B,
            Status::ErrUsbr => 0x0C,
            Status::ErrPor => 0x0D,
            Status::ErrUnknown => 0x0E,
            Status::ErrStalledPkt => 0x0F,
            Status::Unknown(v) => v,
        }
    }

    /// The name used by the DFU specification.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::ErrTarget => "errTARGET",
            Status::ErrFile => "errFILE",
            Status::ErrWrite => "errWRITE",
            Status::ErrErase => "errERASE",
            Status::ErrCheckErased => "errCHECK_ERASED",
            Status::ErrProg => "errPROG",
            Status::ErrVerify => "errVERIFY",
            Status::ErrAddress => "errADDRESS",
            Status::ErrNotDone => "errNOTDONE",
            Status::ErrFirmware => "errFIRMWARE",
            Status::ErrVendor => "errVENDOR",
            Status::ErrUsbr => "errUSBR",
            Status::ErrPor => "errPOR",
            Status::ErrUnknown => "errUNKNOWN",
            Status::ErrStalledPkt => "errSTALLEDPKT",
            Status::Unknown(_) => "unknown status",
        }
    }

    /// What the status usually means in practice, phrased as advice.
    pub fn hint(self) -> &'static str {
        match self {
            Status::Ok => "no error was reported",
            Status::ErrTarget => {
                "the address or file is not valid for this alt setting; check the address and alt"
            }
            Status::ErrFile => "the device rejected the image; check it is built for this device",
            Status::ErrWrite => {
                "the flash write failed; the area may be write-protected or not erased"
            }
            Status::ErrErase => "the erase failed; the sector may be write-protected",
            Status::ErrCheckErased => "the memory was not erased before writing; erase it first",
            Status::ErrProg => "programming failed; retry, and check the supply voltage",
            Status::ErrVerify => "the programmed data did not verify; retry the download",
            Status::ErrAddress => "the address is read-only or out of range on this device",
            Status::ErrNotDone => "the device thinks the image is incomplete; download it again",
            Status::ErrFirmware => "the firmware is corrupt and cannot run; download it again",
            Status::ErrVendor => "vendor error (ST: read protection is active; unprotect first)",
            Status::ErrUsbr => "the device saw an unexpected USB reset; start again",
            Status::ErrPor => "the device saw an unexpected power-on reset; start again",
            Status::ErrUnknown => "the device reported an unknown error",
            Status::ErrStalledPkt => {
                "the device stalled an unexpected request; host and device disagree on the state"
            }
            Status::Unknown(_) => "the device reported a status code outside DFU 1.1",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown(v) => write!(f, "unknown status 0x{v:02x}"),
            s => f.write_str(s.name()),
        }
    }
}

/// The 6-byte DFU_GETSTATUS reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRecord {
    /// bStatus.
    pub status: Status,
    /// bwPollTimeout: minimum ms to wait before the next GETSTATUS (24 bits).
    pub poll_timeout_ms: u32,
    /// bState.
    pub state: State,
    /// iString: index of a status description string (0 = none).
    pub string_index: u8,
}

impl StatusRecord {
    /// Length of the record on the wire.
    pub const LEN: usize = 6;

    /// Decodes a record; `None` unless exactly 6 bytes are given.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; 6] = b.try_into().ok()?;
        Some(StatusRecord {
            status: Status::from_u8(b[0]),
            poll_timeout_ms: u32::from_le_bytes([b[1], b[2], b[3], 0]),
            state: State::from_u8(b[4]),
            string_index: b[5],
        })
    }

    /// Encodes the record (the poll timeout is truncated to 24 bits).
    pub fn to_bytes(&self) -> [u8; 6] {
        let t = self.poll_timeout_ms.to_le_bytes();
        [
            self.status.as_u8(),
            t[0],
            t[1],
            t[2],
            self.state.as_u8(),
            self.string_index,
        ]
    }
}

impl fmt::Display for StatusRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state {}, status {}, poll timeout {} ms",
            self.state, self.status, self.poll_timeout_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_bytes_round_trip() {
        let s = Setup::class_out(DFU_DNLOAD, 0x1234, 0, 4096);
        assert_eq!(s.to_bytes(), [0x21, 1, 0x34, 0x12, 0, 0, 0x00, 0x10]);
        assert_eq!(Setup::from_bytes(s.to_bytes()), s);
        assert!(!s.is_in());
        assert!(Setup::class_in(DFU_GETSTATUS, 0, 0, 6).is_in());
        let wire = [0xA1, 3, 0x34, 0x12, 0, 0, 6, 0];
        let s = Setup::from_bytes(wire);
        assert_eq!((s.value, s.length, s.is_in()), (0x1234, 6, true));
        assert_eq!(s.to_bytes(), wire);
    }

    #[test]
    fn state_and_status_codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(State::from_u8(v).as_u8(), v);
            assert_eq!(Status::from_u8(v).as_u8(), v);
        }
        assert_eq!(State::from_u8(10).to_string(), "dfuERROR(10)");
        assert_eq!(Status::from_u8(8).to_string(), "errADDRESS");
    }

    #[test]
    fn status_record_decodes_24_bit_timeout() {
        let r = StatusRecord::parse(&[0, 0x10, 0x27, 0x01, 4, 0]).unwrap();
        assert_eq!(r.poll_timeout_ms, 0x01_2710);
        assert_eq!(r.state, State::DnBusy);
        assert_eq!(r.to_bytes(), [0, 0x10, 0x27, 0x01, 4, 0]);
        assert!(StatusRecord::parse(&[0; 5]).is_none());
        assert!(StatusRecord::parse(&[0; 7]).is_none());
    }
}
