//! Device OS result codes (`system_error_t`, `services/inc/system_error.h`): the one table of
//! their numbers and names. A control request's result is one of these; the OTA codes are
//! also what the serial YMODEM path reports.

use core::fmt;

/// Device OS OTA result codes (−1300 … −1390).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtaCode {
    /// −1300: no module found, or its end lies outside its region.
    ModuleNotFound,
    /// −1310: a module this device cannot take this way (compressed of the wrong kind, NCP
    /// where the NCP cannot be updated).
    UnsupportedModule,
    /// −1320: any other validation failure.
    ValidationFailed,
    /// −1330: CRC-32 mismatch.
    IntegrityCheckFailed,
    /// −1331: a resumed transfer could not be completed.
    ResumedUpdateFailed,
    /// −1340: DEPENDENCIES or DEPENDENCIES_FULL failed.
    DependencyCheckFailed,
    /// −1350: invalid address range.
    InvalidAddress,
    /// −1351: the announced size is zero or larger than the OTA region.
    InvalidSize,
    /// −1360: built for another platform.
    InvalidPlatform,
    /// −1370: a module whose format this path refuses.
    InvalidFormat,
    /// −1380: updates are disabled.
    UpdatesDisabled,
    /// −1390 (`SYSTEM_ERROR_OTA`): any other failure.
    Failed,
}

impl OtaCode {
    /// Every code, in numeric order from −1300.
    pub const ALL: [Self; 12] = [
        Self::ModuleNotFound,
        Self::UnsupportedModule,
        Self::ValidationFailed,
        Self::IntegrityCheckFailed,
        Self::ResumedUpdateFailed,
        Self::DependencyCheckFailed,
        Self::InvalidAddress,
        Self::InvalidSize,
        Self::InvalidPlatform,
        Self::InvalidFormat,
        Self::UpdatesDisabled,
        Self::Failed,
    ];

    /// The system error code (−1300 … −1390).
    pub const fn code(self) -> i32 {
        match self {
            Self::ModuleNotFound => -1300,
            Self::UnsupportedModule => -1310,
            Self::ValidationFailed => -1320,
            Self::IntegrityCheckFailed => -1330,
            Self::ResumedUpdateFailed => -1331,
            Self::DependencyCheckFailed => -1340,
            Self::InvalidAddress => -1350,
            Self::InvalidSize => -1351,
            Self::InvalidPlatform => -1360,
            Self::InvalidFormat => -1370,
            Self::UpdatesDisabled => -1380,
            Self::Failed => -1390,
        }
    }

    /// The code in words ("dependency check failed").
    pub const fn name(self) -> &'static str {
        match self {
            Self::ModuleNotFound => "module not found",
            Self::UnsupportedModule => "unsupported module",
            Self::ValidationFailed => "validation failed",
            Self::IntegrityCheckFailed => "integrity check failed",
            Self::ResumedUpdateFailed => "resumed update failed",
            Self::DependencyCheckFailed => "dependency check failed",
            Self::InvalidAddress => "invalid address",
            Self::InvalidSize => "invalid size",
            Self::InvalidPlatform => "invalid platform",
            Self::InvalidFormat => "invalid format",
            Self::UpdatesDisabled => "updates disabled",
            Self::Failed => "OTA error",
        }
    }

    /// The code a device reported, if it is an OTA code.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Words for any code a device reports: its name, or "unknown error".
    pub fn name_of(code: i32) -> &'static str {
        Self::from_code(code).map_or("unknown error", Self::name)
    }
}

/// The result of a control request: 0, or a negative `system_error_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// 0: success.
    Ok,
    /// A code of the generic, security or OTA families below.
    Known(SystemError),
    /// An OTA code (−1300 … −1390).
    Ota(OtaCode),
    /// Any other value (CoAP, AT, crypto, filesystem, ledger …, or a number Device OS does not
    /// define).
    Other(i32),
}

macro_rules! system_errors {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $name:literal;)*) => {
        /// The generic and security `system_error_t` codes a control request can return.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SystemError {
            $($(#[$doc])* $variant,)*
        }

        impl SystemError {
            /// Every code, in the order of `system_error.h`.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The number.
            pub const fn code(self) -> i32 {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The code in words, as Particle's tools print it ("not supported").
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

system_errors! {
    /// −100.
    Unknown = -100, "unknown error";
    /// −110.
    Busy = -110, "resource busy";
    /// −120: the request type is not handled (no handler, or not on this platform/version).
    NotSupported = -120, "not supported";
    /// −130: the application's request filter refused it.
    NotAllowed = -130, "not allowed";
    /// −140: the host cancelled the request.
    Cancelled = -140, "operation cancelled";
    /// −150: a USB bus reset aborted the request.
    Aborted = -150, "operation aborted";
    /// −160.
    Timeout = -160, "timeout error";
    /// −170.
    NotFound = -170, "not found";
    /// −180.
    AlreadyExists = -180, "already exists";
    /// −190.
    TooLarge = -190, "too large data";
    /// −191.
    NotEnoughData = -191, "not enough data";
    /// −200.
    LimitExceeded = -200, "limit exceeded";
    /// −201.
    EndOfStream = -201, "end of stream";
    /// −210: e.g. firmware-update data without a START.
    InvalidState = -210, "invalid state";
    /// −219.
    FlashIo = -219, "flash I/O error";
    /// −220.
    Io = -220, "I/O error";
    /// −221.
    WouldBlock = -221, "would block";
    /// −225.
    File = -225, "file error";
    /// −226.
    PathTooLong = -226, "path too long";
    /// −230.
    Network = -230, "network error";
    /// −240.
    Protocol = -240, "protocol error";
    /// −250.
    Internal = -250, "internal error";
    /// −260.
    NoMemory = -260, "memory allocation error";
    /// −270.
    InvalidArgument = -270, "invalid argument";
    /// −280: also a request payload that is not the expected protobuf message.
    BadData = -280, "invalid data format";
    /// −281.
    EncodingFailed = -281, "encoding error";
    /// −290: e.g. firmware-update data larger than what is left of the announced size.
    OutOfRange = -290, "out of range";
    /// −300.
    Deprecated = -300, "deprecated";
    /// −1800.
    InvalidServerSettings = -1800, "invalid server settings";
    /// −1801: the device is protected and refuses this request.
    Protected = -1801, "device is protected";
    /// −1802.
    KeyMismatch = -1802, "key mismatch";
    /// −1803.
    InvalidSignature = -1803, "invalid signature";
}

impl ResultCode {
    /// Classifies a result number.
    pub fn from_code(code: i32) -> Self {
        if code == 0 {
            return Self::Ok;
        }
        if let Some(ota) = OtaCode::from_code(code) {
            return Self::Ota(ota);
        }
        SystemError::ALL
            .iter()
            .find(|e| e.code() == code)
            .map_or(Self::Other(code), |&e| Self::Known(e))
    }

    /// The number.
    pub const fn code(self) -> i32 {
        match self {
            Self::Ok => 0,
            Self::Known(e) => e.code(),
            Self::Ota(o) => o.code(),
            Self::Other(c) => c,
        }
    }

    /// The code in words ("dependency check failed"), or "unknown error" for numbers outside
    /// the table.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ok => "success",
            Self::Known(e) => e.name(),
            Self::Ota(o) => o.name(),
            Self::Other(_) => "unknown error",
        }
    }

    /// True for 0.
    pub const fn is_ok(self) -> bool {
        matches!(self, Self::Ok)
    }
}

impl From<SystemError> for ResultCode {
    fn from(e: SystemError) -> Self {
        Self::Known(e)
    }
}

impl From<OtaCode> for ResultCode {
    fn from(o: OtaCode) -> Self {
        Self::Ota(o)
    }
}

/// "dependency check failed (-1340)".
impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn ota_codes_have_names_and_parse_back() {
        let numbers: [i32; 12] = [
            -1300, -1310, -1320, -1330, -1331, -1340, -1350, -1351, -1360, -1370, -1380, -1390,
        ];
        assert_eq!(OtaCode::ALL.map(OtaCode::code), numbers);
        for code in OtaCode::ALL {
            assert_eq!(OtaCode::from_code(code.code()), Some(code));
        }
        assert_eq!(OtaCode::name_of(-1340), "dependency check failed");
        assert_eq!(OtaCode::name_of(-1390), "OTA error");
        assert_eq!(OtaCode::name_of(-1), "unknown error");
    }

    #[test]
    fn every_code_is_defined_once_and_classifies_back() {
        let mut seen = std::collections::BTreeSet::new();
        for e in SystemError::ALL {
            assert!(seen.insert(e.code()), "{e:?} defined twice");
            assert_eq!(ResultCode::from_code(e.code()), ResultCode::Known(*e));
        }
        for o in OtaCode::ALL {
            assert!(seen.insert(o.code()), "{o:?} defined twice");
            assert_eq!(ResultCode::from_code(o.code()), ResultCode::Ota(o));
        }
        assert_eq!(ResultCode::from_code(0), ResultCode::Ok);
        assert_eq!(ResultCode::from_code(-1234), ResultCode::Other(-1234));
        assert_eq!(
            ResultCode::from_code(-120).to_string(),
            "not supported (-120)"
        );
        assert_eq!(
            ResultCode::from_code(-1340).to_string(),
            "dependency check failed (-1340)"
        );
    }
}
