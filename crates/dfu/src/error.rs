//! The crate's error type and the operation context it carries.

use std::fmt;

use crate::control::{State, Status, TransferError};
use crate::layout::Access;

/// The host-side step that was running when something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// DFU_GETSTATUS on its own (e.g. "determining device status").
    GetStatus,
    /// DFU_GETSTATE.
    GetState,
    /// DFU_CLRSTATUS.
    ClearStatus,
    /// DFU_ABORT.
    Abort,
    /// DFU_DETACH.
    Detach,
    /// Standard GET_DESCRIPTOR.
    GetDescriptor {
        /// Descriptor type (1 device, 2 configuration, 3 string).
        kind: u8,
        /// Descriptor index.
        index: u8,
    },
    /// DfuSe Set Address Pointer.
    SetAddress {
        /// The address sent.
        address: u32,
    },
    /// DfuSe page erase.
    Erase {
        /// The page address sent.
        address: u32,
    },
    /// DfuSe mass erase.
    MassErase,
    /// DfuSe read unprotect.
    ReadUnprotect,
    /// DfuSe Get Commands (UPLOAD wValue 0).
    GetCommands,
    /// DNLOAD of one data block.
    Write {
        /// Address the block is written to.
        address: u32,
        /// wValue (block number) used.
        block: u16,
    },
    /// UPLOAD of one data block.
    Read {
        /// Address the block is read from.
        address: u32,
        /// wValue (block number) used.
        block: u16,
    },
    /// Zero-length DNLOAD asking the device to leave DFU mode.
    Leave {
        /// The jump address set just before.
        address: u32,
    },
}

impl Operation {
    /// The address involved, if any.
    pub fn address(&self) -> Option<u32> {
        match *self {
            Operation::SetAddress { address }
            | Operation::Erase { address }
            | Operation::Write { address, .. }
            | Operation::Read { address, .. }
            | Operation::Leave { address } => Some(address),
            _ => None,
        }
    }

    fn refusal(&self) -> String {
        match *self {
            Operation::Write { address, block } => {
                format!("to write at 0x{address:08X} (block {block})")
            }
            Operation::Erase { address } => format!("to erase the page at 0x{address:08X}"),
            Operation::SetAddress { address } => format!("the address 0x{address:08X}"),
            Operation::Read { address, block } => {
                format!("to read at 0x{address:08X} (block {block})")
            }
            Operation::MassErase => "the mass erase".into(),
            Operation::ReadUnprotect => "the read-unprotect command".into(),
            Operation::Leave { address } => format!("to leave DFU mode for 0x{address:08X}"),
            other => format!("{other}"),
        }
    }

    fn refusal_hint(&self, stage: Stage) -> &'static str {
        if stage == Stage::Request
            && matches!(
                self,
                Operation::Write { .. }
                    | Operation::Erase { .. }
                    | Operation::SetAddress { .. }
                    | Operation::Read { .. }
                    | Operation::Leave { .. }
            )
        {
            return "the device was not in a state to accept it; abort to idle and retry";
        }
        match self {
            Operation::Write { .. } | Operation::Erase { .. } => {
                "the area is protected or the flash operation failed (Particle bootloaders \
                 protect everything below 0x08020000); check the address against the layout"
            }
            Operation::SetAddress { .. } => "the address is outside this alt setting's memory",
            Operation::Read { .. } => "the area is not readable or read protection is active",
            Operation::MassErase | Operation::ReadUnprotect => {
                "this bootloader does not support the command (Particle's does not); \
                 erase pages instead"
            }
            _ => "the device and host disagree about the DFU state; abort to idle or replug",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Operation::GetStatus => f.write_str("GETSTATUS"),
            Operation::GetState => f.write_str("GETSTATE"),
            Operation::ClearStatus => f.write_str("CLRSTATUS"),
            Operation::Abort => f.write_str("ABORT"),
            Operation::Detach => f.write_str("DETACH"),
            Operation::GetDescriptor { kind, index } => {
                write!(f, "GET_DESCRIPTOR (type {kind}, index {index})")
            }
            Operation::SetAddress { address } => write!(f, "SET_ADDRESS 0x{address:08X}"),
            Operation::Erase { address } => write!(f, "ERASE 0x{address:08X}"),
            Operation::MassErase => f.write_str("mass ERASE"),
            Operation::ReadUnprotect => f.write_str("READ_UNPROTECT"),
            Operation::GetCommands => f.write_str("GET_COMMANDS"),
            Operation::Write { address, block } => {
                write!(f, "DNLOAD block {block} at 0x{address:08X}")
            }
            Operation::Read { address, block } => {
                write!(f, "UPLOAD block {block} at 0x{address:08X}")
            }
            Operation::Leave { address } => {
                write!(f, "leave request (zero-length DNLOAD) for 0x{address:08X}")
            }
        }
    }
}

/// Where in an operation a stall happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The request itself was stalled.
    Request,
    /// The GETSTATUS poll that follows the request was stalled (how Particle bootloaders report
    /// a failed erase or write).
    StatusPoll,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Request => f.write_str("on the request"),
            Stage::StatusPoll => f.write_str("on the GETSTATUS that followed"),
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device stalled the control pipe: it refused the operation.
    #[error("the device refused {} (it stalled {stage}): {}", .during.refusal(), .during.refusal_hint(*.stage))]
    Refused {
        /// What was being done.
        during: Operation,
        /// Which transfer was stalled.
        stage: Stage,
    },
    /// The device reported dfuERROR or a non-OK status.
    #[error("device is in {} with {status} after {during}: {}", .state.name(), .status.hint())]
    DeviceStatus {
        /// What was being done.
        during: Operation,
        /// The reported bStatus.
        status: Status,
        /// The reported bState.
        state: State,
    },
    /// The device reported a state that makes no sense at this point.
    #[error("device reported {state} (status {status}) after {during}, expected {expected}: host and device disagree about the protocol state; abort to idle and retry")]
    UnexpectedState {
        /// What was being done.
        during: Operation,
        /// The reported state.
        state: State,
        /// The reported status.
        status: Status,
        /// The states that would have been acceptable.
        expected: &'static str,
    },
    /// The device is in runtime (application) mode, not DFU mode.
    #[error("device is in {state} (runtime mode) during {during}: detach it into DFU mode first")]
    RuntimeMode {
        /// What was being done.
        during: Operation,
        /// The reported state.
        state: State,
    },
    /// A control transfer timed out.
    #[error("USB control transfer timed out during {during}: the device is busy or hung; replug it and retry")]
    Timeout {
        /// What was being done.
        during: Operation,
    },
    /// The device disappeared.
    #[error("the device disappeared during {during}: check the cable; anything written so far may be incomplete")]
    Disconnected {
        /// What was being done.
        during: Operation,
    },
    /// Any other transport failure.
    #[error("USB transfer failed during {during}: {message}")]
    Transfer {
        /// What was being done.
        during: Operation,
        /// The transport's description.
        message: String,
    },
    /// A reply was shorter than required (e.g. a GETSTATUS record under 6 bytes).
    #[error("short reply to {during}: got {got} of {expected} bytes")]
    ShortReply {
        /// What was being done.
        during: Operation,
        /// Bytes required.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The device accepted fewer bytes than sent.
    #[error("short write during {during}: the device accepted {accepted} of {sent} bytes")]
    ShortWrite {
        /// What was being done.
        during: Operation,
        /// Bytes sent.
        sent: usize,
        /// Bytes accepted.
        accepted: usize,
    },
    /// The device stayed busy longer than the configured bound.
    #[error("device stayed in dfuDNBUSY after {during} ({polls} polls, {waited_ms} ms waited): it is stuck; replug it and retry")]
    StuckBusy {
        /// What was being done.
        during: Operation,
        /// GETSTATUS polls made.
        polls: u32,
        /// Milliseconds waited in total.
        waited_ms: u64,
    },
    /// An upload returned less data than requested.
    #[error("upload ended early at 0x{address:08X}: requested {requested} bytes, the device sent {received}; the range runs past the end of readable memory")]
    UploadShort {
        /// Address of the short block.
        address: u32,
        /// Bytes requested in that block.
        requested: usize,
        /// Bytes received in that block.
        received: usize,
    },
    /// Read-back differs from what was expected.
    #[error("verify failed at 0x{address:08X}: expected 0x{expected:02X}, read 0x{actual:02X}; the flash content differs, erase and download again")]
    Verify {
        /// First differing address.
        address: u32,
        /// Expected byte.
        expected: u8,
        /// Byte read from the device.
        actual: u8,
    },
    /// The range is not covered by the memory layout (checked before any transfer).
    #[error("0x{address:08X} is outside the device's memory layout \"{layout}\": nothing was sent to the device; check the address")]
    NotInLayout {
        /// First uncovered address.
        address: u32,
        /// Name of the layout.
        layout: String,
    },
    /// Part of the range is not writable (checked before any transfer).
    #[error("refusing to write 0x{address:08X}: segment 0x{segment_start:08X}..0x{segment_end:08X} is {access} in the layout, not writable; nothing was sent to the device")]
    NotWritable {
        /// First non-writable address in the range.
        address: u32,
        /// Segment start.
        segment_start: u32,
        /// Segment end (exclusive).
        segment_end: u64,
        /// The segment's access bits.
        access: Access,
    },
    /// Part of the range is not readable (checked before any transfer).
    #[error("refusing to read 0x{address:08X}: segment 0x{segment_start:08X}..0x{segment_end:08X} is {access} in the layout, not readable; nothing was sent to the device")]
    NotReadable {
        /// First non-readable address in the range.
        address: u32,
        /// Segment start.
        segment_start: u32,
        /// Segment end (exclusive).
        segment_end: u64,
        /// The segment's access bits.
        access: Access,
    },
    /// address + length does not fit in the 32-bit address space.
    #[error("range 0x{address:08X} + {length} bytes runs past the 32-bit address space")]
    RangeOverflow {
        /// Start address.
        address: u32,
        /// Length in bytes.
        length: u64,
    },
    /// An invalid engine parameter (e.g. a zero transfer size).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A DfuSe memory-layout string could not be parsed.
    #[error("invalid DfuSe memory layout at byte {position}: {reason}")]
    Layout {
        /// Byte offset in the string.
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// A USB descriptor is malformed.
    #[error("malformed {what} descriptor: {reason}")]
    Descriptor {
        /// Which descriptor.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A .dfu file is malformed.
    #[error("invalid DFU file at byte {offset}: {reason}")]
    File {
        /// Byte offset in the file.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Maps a transport error during `during` at `stage` to an [`Error`].
    pub fn from_transfer(err: TransferError, during: Operation, stage: Stage) -> Self {
        match err {
            TransferError::Stall => Error::Refused { during, stage },
            TransferError::Timeout => Error::Timeout { during },
            TransferError::NoDevice => Error::Disconnected { during },
            TransferError::Other(message) => Error::Transfer { during, message },
        }
    }

    /// The operation that failed, for device-side errors.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::Refused { during, .. }
            | Error::DeviceStatus { during, .. }
            | Error::UnexpectedState { during, .. }
            | Error::RuntimeMode { during, .. }
            | Error::Timeout { during }
            | Error::Disconnected { during }
            | Error::Transfer { during, .. }
            | Error::ShortReply { during, .. }
            | Error::ShortWrite { during, .. }
            | Error::StuckBusy { during, .. } => Some(*during),
            _ => None,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
