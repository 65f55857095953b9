//! Control request types (`ctrl_request_type`, Device OS `system/inc/system_control.h`): the
//! one table of their numbers and names.

use core::fmt;

/// A control request type: `wIndex` of INIT (and of the raw 0x50 requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestType(pub u16);

macro_rules! request_types {
    ($($(#[$doc:meta])* $name:ident = $number:literal, $text:literal;)*) => {
        impl RequestType {
            $($(#[$doc])* pub const $name: Self = Self($number);)*

            /// Every named type, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$name,)*];

            /// The Device OS name ("GET_MODULE_INFO"), if the number has one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($number => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

request_types! {
    /// 1: the device replies with the request payload.
    ECHO = 1, "ECHO";
    /// 10: forwarded to the application's handler.
    APP_CUSTOM = 10, "APP_CUSTOM";
    /// 20: GetDeviceId (service: protobuf, lower-case hex; raw: upper-case hex).
    DEVICE_ID = 20, "DEVICE_ID";
    /// 21: GetSerialNumber.
    SERIAL_NUMBER = 21, "SERIAL_NUMBER";
    /// 30: GetSystemVersion (service: protobuf; raw: the version string).
    SYSTEM_VERSION = 30, "SYSTEM_VERSION";
    /// 31: GetNcpFirmwareVersion.
    NCP_FIRMWARE_VERSION = 31, "NCP_FIRMWARE_VERSION";
    /// 32.
    GET_SYSTEM_CAPABILITIES = 32, "GET_SYSTEM_CAPABILITIES";
    /// 33.
    SET_FEATURE = 33, "SET_FEATURE";
    /// 34.
    GET_FEATURE = 34, "GET_FEATURE";
    /// 40: reset, 1 s after the host got the reply (raw OUT: at once).
    RESET = 40, "RESET";
    /// 41: factory reset, 1 s after the host got the reply.
    FACTORY_RESET = 41, "FACTORY_RESET";
    /// 50: DFU mode, 1 s after the host got the reply.
    DFU_MODE = 50, "DFU_MODE";
    /// 60: safe mode, 1 s after the host got the reply.
    SAFE_MODE = 60, "SAFE_MODE";
    /// 70: enter listening mode.
    START_LISTENING = 70, "START_LISTENING";
    /// 71: leave listening mode.
    STOP_LISTENING = 71, "STOP_LISTENING";
    /// 72: GetDeviceMode (normal / listening).
    GET_DEVICE_MODE = 72, "GET_DEVICE_MODE";
    /// 73: SetDeviceSetupDone.
    SET_DEVICE_SETUP_DONE = 73, "SET_DEVICE_SETUP_DONE";
    /// 74: IsDeviceSetupDone.
    IS_DEVICE_SETUP_DONE = 74, "IS_DEVICE_SETUP_DONE";
    /// 75: SetStartupMode.
    SET_STARTUP_MODE = 75, "SET_STARTUP_MODE";
    /// 76: GetProtectedState.
    GET_PROTECTED_STATE = 76, "GET_PROTECTED_STATE";
    /// 77: SetProtectedState.
    SET_PROTECTED_STATE = 77, "SET_PROTECTED_STATE";
    /// 80.
    LOG_CONFIG = 80, "LOG_CONFIG";
    /// 90: GetModuleInfo.
    GET_MODULE_INFO = 90, "GET_MODULE_INFO";
    /// 91: GetAssetInfo.
    GET_ASSET_INFO = 91, "GET_ASSET_INFO";
    /// 100.
    DIAGNOSTIC_INFO = 100, "DIAGNOSTIC_INFO";
    /// 200.
    SET_CLAIM_CODE = 200, "SET_CLAIM_CODE";
    /// 201.
    IS_CLAIMED = 201, "IS_CLAIMED";
    /// 210.
    SET_SECURITY_KEY = 210, "SET_SECURITY_KEY";
    /// 211.
    GET_SECURITY_KEY = 211, "GET_SECURITY_KEY";
    /// 220.
    SET_SERVER_ADDRESS = 220, "SET_SERVER_ADDRESS";
    /// 221.
    GET_SERVER_ADDRESS = 221, "GET_SERVER_ADDRESS";
    /// 222.
    SET_SERVER_PROTOCOL = 222, "SET_SERVER_PROTOCOL";
    /// 223.
    GET_SERVER_PROTOCOL = 223, "GET_SERVER_PROTOCOL";
    /// 230.
    START_NYAN_SIGNAL = 230, "START_NYAN_SIGNAL";
    /// 231.
    STOP_NYAN_SIGNAL = 231, "STOP_NYAN_SIGNAL";
    /// 240.
    SET_SOFTAP_SSID = 240, "SET_SOFTAP_SSID";
    /// 250: StartFirmwareUpdate (erases; replies the chunk size).
    START_FIRMWARE_UPDATE = 250, "START_FIRMWARE_UPDATE";
    /// 251: FinishFirmwareUpdate (validates; applies after the reply).
    FINISH_FIRMWARE_UPDATE = 251, "FINISH_FIRMWARE_UPDATE";
    /// 252: CancelFirmwareUpdate.
    CANCEL_FIRMWARE_UPDATE = 252, "CANCEL_FIRMWARE_UPDATE";
    /// 253: FirmwareUpdateData (one chunk).
    FIRMWARE_UPDATE_DATA = 253, "FIRMWARE_UPDATE_DATA";
    /// 300.
    CLOUD_GET_CONNECTION_STATUS = 300, "CLOUD_GET_CONNECTION_STATUS";
    /// 301.
    CLOUD_CONNECT = 301, "CLOUD_CONNECT";
    /// 302 (raw OUT: cancel the connection at once).
    CLOUD_DISCONNECT = 302, "CLOUD_DISCONNECT";
    /// 400.
    NETWORK_GET_INTERFACE_LIST = 400, "NETWORK_GET_INTERFACE_LIST";
    /// 401.
    NETWORK_GET_INTERFACE = 401, "NETWORK_GET_INTERFACE";
}

/// "GET_MODULE_INFO (90)", or the number alone.
impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "request type {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn numbers_are_unique_and_named() {
        let mut last = 0;
        for t in RequestType::ALL {
            assert!(t.0 > last, "{t} out of order or repeated");
            last = t.0;
            assert!(t.name().is_some());
        }
        assert_eq!(RequestType::GET_MODULE_INFO.0, 90);
        assert_eq!(RequestType(253).to_string(), "FIRMWARE_UPDATE_DATA (253)");
        assert_eq!(RequestType(9999).to_string(), "request type 9999");
    }
}
