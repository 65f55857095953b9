//! The protobuf messages of the control requests this workspace speaks (package
//! `particle.ctrl`, `control/*.proto`, and `particle.cloud.FirmwareModule` from
//! `cloud/describe.proto`), with the field numbers and wire types of
//! `@particle/device-os-protobuf` 2.9.0 / Device OS 6.2.0. Each request message knows its type
//! number and its reply ([`Request`]).

use alloc::string::String;
use alloc::vec::Vec;

use crate::request::RequestType;

/// A request message: its type number and the message the device replies with.
pub trait Request: prost::Message + Default {
    /// The request type (INIT wIndex).
    const TYPE: RequestType;
    /// The reply message (an empty reply decodes as its default).
    type Reply: prost::Message + Default;
}

macro_rules! empty_message {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
            pub struct $name {}
        )*
    };
}

macro_rules! request {
    ($($request:ident => $reply:ident = $ty:ident;)*) => {
        $(
            impl Request for $request {
                const TYPE: RequestType = RequestType::$ty;
                type Reply = $reply;
            }
        )*
    };
}

empty_message! {
    /// 20 GetDeviceId: no fields.
    GetDeviceIdRequest;
    /// 21 GetSerialNumber: no fields.
    GetSerialNumberRequest;
    /// 30 GetSystemVersion: no fields.
    GetSystemVersionRequest;
    /// 31 GetNcpFirmwareVersion: no fields.
    GetNcpFirmwareVersionRequest;
    /// 40 SystemReset: no fields.
    SystemResetRequest;
    /// 41 FactoryReset: no fields.
    FactoryResetRequest;
    /// 50 DFU mode: no fields.
    DfuModeRequest;
    /// 60 safe mode: no fields.
    SafeModeRequest;
    /// 70 StartListeningMode: no fields.
    StartListeningModeRequest;
    /// 71 StopListeningMode: no fields.
    StopListeningModeRequest;
    /// 72 GetDeviceMode: no fields.
    GetDeviceModeRequest;
    /// 74 IsDeviceSetupDone: no fields.
    IsDeviceSetupDoneRequest;
    /// 76 GetProtectedState: no fields.
    GetProtectedStateRequest;
    /// 90 GetModuleInfo: no fields.
    GetModuleInfoRequest;
    /// 91 GetAssetInfo: no fields.
    GetAssetInfoRequest;
    /// 252 CancelFirmwareUpdate: no fields.
    CancelFirmwareUpdateRequest;
    /// A reply with no fields (reset, mode changes, setup done, firmware data/finish/cancel).
    EmptyReply;
}

request! {
    GetDeviceIdRequest => GetDeviceIdReply = DEVICE_ID;
    GetSerialNumberRequest => GetSerialNumberReply = SERIAL_NUMBER;
    GetSystemVersionRequest => GetSystemVersionReply = SYSTEM_VERSION;
    GetNcpFirmwareVersionRequest => GetNcpFirmwareVersionReply = NCP_FIRMWARE_VERSION;
    SystemResetRequest => EmptyReply = RESET;
    FactoryResetRequest => EmptyReply = FACTORY_RESET;
    DfuModeRequest => EmptyReply = DFU_MODE;
    SafeModeRequest => EmptyReply = SAFE_MODE;
    StartListeningModeRequest => EmptyReply = START_LISTENING;
    StopListeningModeRequest => EmptyReply = STOP_LISTENING;
    GetDeviceModeRequest => GetDeviceModeReply = GET_DEVICE_MODE;
    SetDeviceSetupDoneRequest => EmptyReply = SET_DEVICE_SETUP_DONE;
    IsDeviceSetupDoneRequest => IsDeviceSetupDoneReply = IS_DEVICE_SETUP_DONE;
    SetStartupModeRequest => EmptyReply = SET_STARTUP_MODE;
    GetProtectedStateRequest => GetProtectedStateReply = GET_PROTECTED_STATE;
    GetModuleInfoRequest => GetModuleInfoReply = GET_MODULE_INFO;
    GetAssetInfoRequest => GetAssetInfoReply = GET_ASSET_INFO;
    StartFirmwareUpdateRequest => StartFirmwareUpdateReply = START_FIRMWARE_UPDATE;
    FirmwareUpdateDataRequest => EmptyReply = FIRMWARE_UPDATE_DATA;
    FinishFirmwareUpdateRequest => EmptyReply = FINISH_FIRMWARE_UPDATE;
    CancelFirmwareUpdateRequest => EmptyReply = CANCEL_FIRMWARE_UPDATE;
}

/// 20 reply: `id = 1 : string`, 24 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetDeviceIdReply {
    /// The device id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// 21 reply: `serial = 1 : string`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetSerialNumberReply {
    /// The serial number.
    #[prost(string, tag = "1")]
    pub serial: String,
}

/// 30 reply: `version = 1 : string`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetSystemVersionReply {
    /// "6.2.0".
    #[prost(string, tag = "1")]
    pub version: String,
}

/// 31 reply: `version = 1 : string`, `module_version = 2 : uint32`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetNcpFirmwareVersionReply {
    /// The NCP's version string.
    #[prost(string, tag = "1")]
    pub version: String,
    /// The NCP module version.
    #[prost(uint32, tag = "2")]
    pub module_version: u32,
}

/// `DeviceMode` (`control/config.proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DeviceMode {
    /// 0: normal operation (omitted on the wire by the device).
    NormalMode = 0,
    /// 1: listening mode.
    ListeningMode = 1,
}

/// 72 reply: `mode = 1 : DeviceMode`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct GetDeviceModeReply {
    /// [`DeviceMode`] number.
    #[prost(enumeration = "DeviceMode", tag = "1")]
    pub mode: i32,
}

/// 73 request: `done = 1 : bool`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct SetDeviceSetupDoneRequest {
    /// Setup done (false is refused with −120 by current Device OS).
    #[prost(bool, tag = "1")]
    pub done: bool,
}

/// 74 reply: `done = 1 : bool`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct IsDeviceSetupDoneReply {
    /// Always true on current Device OS.
    #[prost(bool, tag = "1")]
    pub done: bool,
}

/// 75 request: `mode = 1 : DeviceMode`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct SetStartupModeRequest {
    /// [`DeviceMode`] number: LISTENING sets the startup-listen flag, anything else clears it.
    #[prost(enumeration = "DeviceMode", tag = "1")]
    pub mode: i32,
}

/// 76 reply: `state = 1 : bool`, `overridden = 2 : bool` (an unprotected device sends none).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct GetProtectedStateReply {
    /// Security mode PROTECTED.
    #[prost(bool, tag = "1")]
    pub state: bool,
    /// Protection currently overridden (Service Mode).
    #[prost(bool, tag = "2")]
    pub overridden: bool,
}

/// `particle.cloud.FirmwareModuleType`: the numbers equal the header's module function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FirmwareModuleType {
    /// 0.
    InvalidModule = 0,
    /// 1.
    ResourceModule = 1,
    /// 2.
    BootloaderModule = 2,
    /// 3.
    MonoFirmwareModule = 3,
    /// 4.
    SystemPartModule = 4,
    /// 5.
    UserPartModule = 5,
    /// 6.
    SettingsModule = 6,
    /// 7.
    NcpFirmwareModule = 7,
    /// 8.
    RadioStackModule = 8,
    /// 9.
    AssetModule = 9,
}

/// `particle.cloud.FirmwareModuleStore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FirmwareModuleStore {
    /// 0: the running copy.
    Main = 0,
    /// 1: the factory-reset image.
    Factory = 1,
    /// 2.
    Backup = 2,
    /// 3: the OTA staging area.
    Scratchpad = 3,
}

/// `particle.cloud.FirmwareModuleDependency`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct FirmwareModuleDependency {
    /// [`FirmwareModuleType`] number.
    #[prost(enumeration = "FirmwareModuleType", tag = "1")]
    pub r#type: i32,
    /// Module index.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Minimum version.
    #[prost(uint32, tag = "3")]
    pub version: u32,
}

/// `particle.cloud.FirmwareModuleAsset`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FirmwareModuleAsset {
    /// SHA-256.
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    /// File name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Size in bytes.
    #[prost(uint32, tag = "3")]
    pub size: u32,
    /// Size as stored (compressed).
    #[prost(uint32, tag = "4")]
    pub storage_size: u32,
}

/// `particle.cloud.FirmwareModuleSecurityMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FirmwareModuleSecurityMode {
    /// 0.
    None = 0,
    /// 1: a bootloader carrying the security-mode extension.
    Protected = 1,
}

/// `particle.cloud.FirmwareModuleSecurity`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FirmwareModuleSecurity {
    /// [`FirmwareModuleSecurityMode`] number.
    #[prost(enumeration = "FirmwareModuleSecurityMode", tag = "1")]
    pub mode: i32,
    /// Certificate fingerprint.
    #[prost(bytes = "vec", tag = "2")]
    pub certificate_fingerprint: Vec<u8>,
}

/// `particle.cloud.FirmwareModule`: one module in the new format (Device OS ≥ 5.6.0).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FirmwareModule {
    /// [`FirmwareModuleType`] number.
    #[prost(enumeration = "FirmwareModuleType", tag = "1")]
    pub r#type: i32,
    /// Module index.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Module version.
    #[prost(uint32, tag = "3")]
    pub version: u32,
    /// [`FirmwareModuleStore`] number.
    #[prost(enumeration = "FirmwareModuleStore", tag = "4")]
    pub store: i32,
    /// The region's maximum size.
    #[prost(uint32, tag = "5")]
    pub max_size: u32,
    /// Validation checks performed (`module_validation_flags_t`), fixed32.
    #[prost(fixed32, tag = "6")]
    pub checked_flags: u32,
    /// Validation checks passed, fixed32.
    #[prost(fixed32, tag = "7")]
    pub passed_flags: u32,
    /// SHA-256 from the module suffix (particle-usb needs it present).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub hash: Option<Vec<u8>>,
    /// The header's dependencies (none listed for function NONE).
    #[prost(message, repeated, tag = "9")]
    pub dependencies: Vec<FirmwareModuleDependency>,
    /// Assets a user part requires.
    #[prost(message, repeated, tag = "10")]
    pub asset_dependencies: Vec<FirmwareModuleAsset>,
    /// end − start, plus 4 for the CRC when non-zero.
    #[prost(uint32, tag = "11")]
    pub size: u32,
    /// Security mode of a protected bootloader.
    #[prost(message, optional, tag = "12")]
    pub security: Option<FirmwareModuleSecurity>,
}

/// `GetModuleInfoReply.Module` type enum of the old format (`particle.ctrl.FirmwareModuleType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LegacyModuleType {
    /// 0.
    InvalidFirmwareModule = 0,
    /// 1.
    Bootloader = 1,
    /// 2.
    SystemPart = 2,
    /// 3.
    UserPart = 3,
    /// 4.
    MonoFirmware = 4,
    /// 5.
    NcpFirmware = 5,
    /// 6.
    RadioStack = 6,
}

impl LegacyModuleType {
    /// The module-header function number of this type (0 for INVALID).
    pub const fn module_function(self) -> u8 {
        match self {
            Self::InvalidFirmwareModule => 0,
            Self::Bootloader => 2,
            Self::SystemPart => 4,
            Self::UserPart => 5,
            Self::MonoFirmware => 3,
            Self::NcpFirmware => 7,
            Self::RadioStack => 8,
        }
    }

    /// The old-format type of a module-header function, if the old format has one.
    pub const fn of_function(function: u8) -> Option<Self> {
        match function {
            2 => Some(Self::Bootloader),
            4 => Some(Self::SystemPart),
            5 => Some(Self::UserPart),
            3 => Some(Self::MonoFirmware),
            7 => Some(Self::NcpFirmware),
            8 => Some(Self::RadioStack),
            _ => None,
        }
    }
}

/// Failure bits of the old format's `validity`.
pub mod legacy_validity {
    /// The CRC check failed.
    pub const INTEGRITY_CHECK_FAILED: u32 = 0x01;
    /// A dependency is not met.
    pub const DEPENDENCY_CHECK_FAILED: u32 = 0x02;
}

/// `GetModuleInfoReply.Dependency` (old format).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct LegacyDependency {
    /// [`LegacyModuleType`] number.
    #[prost(enumeration = "LegacyModuleType", tag = "1")]
    pub r#type: i32,
    /// Module index.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Minimum version.
    #[prost(uint32, tag = "3")]
    pub version: u32,
}

/// `GetModuleInfoReply.Module` (old format, Device OS < 5.6.0: MAIN-store modules only).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LegacyModule {
    /// [`LegacyModuleType`] number.
    #[prost(enumeration = "LegacyModuleType", tag = "1")]
    pub r#type: i32,
    /// Module index.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Module version.
    #[prost(uint32, tag = "3")]
    pub version: u32,
    /// end − start (without the CRC).
    #[prost(uint32, tag = "4")]
    pub size: u32,
    /// [`legacy_validity`] failure bits.
    #[prost(uint32, tag = "5")]
    pub validity: u32,
    /// The header's dependencies.
    #[prost(message, repeated, tag = "6")]
    pub dependencies: Vec<LegacyDependency>,
}

/// 90 reply: the old format in field 1, the new in field 2; a device fills one of them.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetModuleInfoReply {
    /// Old format (field 1, named `modules` before 5.6.0).
    #[prost(message, repeated, tag = "1")]
    pub modules_deprecated: Vec<LegacyModule>,
    /// New format.
    #[prost(message, repeated, tag = "2")]
    pub modules: Vec<FirmwareModule>,
}

/// Validation flag bits of the new format (`module_validation_flags_t`).
pub mod validation {
    /// CRC-32 checked / passed.
    pub const INTEGRITY: u32 = 0x02;
    /// Dependencies.
    pub const DEPENDENCIES: u32 = 0x04;
    /// Address range.
    pub const RANGE: u32 = 0x08;
    /// Platform id.
    pub const PLATFORM: u32 = 0x10;
}

/// One module of a GetModuleInfo reply in either format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Module-header function number (2 bootloader, 4 system part, 5 user part, …).
    pub function: u8,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// [`FirmwareModuleStore`] number (the old format lists MAIN only: 0).
    pub store: i32,
    /// The region's maximum size (`None` in the old format).
    pub max_size: Option<u32>,
    /// Module size including the CRC (the old format's size plus 4).
    pub size: u32,
    /// Checks performed ([`validation`] bits; the old format reports integrity and
    /// dependencies only).
    pub checked: u32,
    /// Checks passed.
    pub passed: u32,
    /// SHA-256 (new format).
    pub hash: Option<Vec<u8>>,
    /// Dependencies as (function, index, version).
    pub dependencies: Vec<(u8, u8, u16)>,
}

impl GetModuleInfoReply {
    /// The modules in one shape, choosing the format as particle-usb does: the old one when
    /// field 1 has modules, otherwise field 2. Numbers beyond a module header's field widths
    /// are clamped.
    pub fn entries(&self) -> Vec<ModuleEntry> {
        let u8_of = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        let u16_of = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        if !self.modules_deprecated.is_empty() {
            return self
                .modules_deprecated
                .iter()
                .map(|m| {
                    let legacy = |t: i32| {
                        LegacyModuleType::try_from(t)
                            .map_or(u8::MAX, LegacyModuleType::module_function)
                    };
                    let checked = validation::INTEGRITY | validation::DEPENDENCIES;
                    let mut passed = checked;
                    if m.validity & legacy_validity::INTEGRITY_CHECK_FAILED != 0 {
                        passed &= !validation::INTEGRITY;
                    }
                    if m.validity & legacy_validity::DEPENDENCY_CHECK_FAILED != 0 {
                        passed &= !validation::DEPENDENCIES;
                    }
                    ModuleEntry {
                        function: legacy(m.r#type),
                        index: u8_of(m.index),
                        version: u16_of(m.version),
                        store: FirmwareModuleStore::Main as i32,
                        max_size: None,
                        size: if m.size > 0 {
                            m.size.saturating_add(4)
                        } else {
                            0
                        },
                        checked,
                        passed,
                        hash: None,
                        dependencies: m
                            .dependencies
                            .iter()
                            .map(|d| (legacy(d.r#type), u8_of(d.index), u16_of(d.version)))
                            .collect(),
                    }
                })
                .collect();
        }
        self.modules
            .iter()
            .map(|m| ModuleEntry {
                function: u8_of(m.r#type as u32),
                index: u8_of(m.index),
                version: u16_of(m.version),
                store: m.store,
                max_size: Some(m.max_size),
                size: m.size,
                checked: m.checked_flags,
                passed: m.passed_flags,
                hash: m.hash.clone(),
                dependencies: m
                    .dependencies
                    .iter()
                    .map(|d| (u8_of(d.r#type as u32), u8_of(d.index), u16_of(d.version)))
                    .collect(),
            })
            .collect()
    }
}

/// 91 reply: `available = 1`, `required = 2`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetAssetInfoReply {
    /// Assets stored on the device.
    #[prost(message, repeated, tag = "1")]
    pub available: Vec<FirmwareModuleAsset>,
    /// Assets the application requires.
    #[prost(message, repeated, tag = "2")]
    pub required: Vec<FirmwareModuleAsset>,
}

/// `FileFormat` of StartFirmwareUpdate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FileFormat {
    /// 0: the module file as is.
    Bin = 0,
    /// 1: miniz-compressed (Device OS answers −120).
    Miniz = 1,
}

/// 250 request: `size = 1 : uint32`, `format = 2 : FileFormat`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct StartFirmwareUpdateRequest {
    /// Total file size.
    #[prost(uint32, tag = "1")]
    pub size: u32,
    /// [`FileFormat`] number.
    #[prost(enumeration = "FileFormat", tag = "2")]
    pub format: i32,
}

/// 250 reply: `chunk_size = 1 : uint32` (1024 on Device OS).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct StartFirmwareUpdateReply {
    /// Bytes per DATA request.
    #[prost(uint32, tag = "1")]
    pub chunk_size: u32,
}

/// 253 request: `data = 1 : bytes`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FirmwareUpdateDataRequest {
    /// One chunk of the file, in order.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// 251 request: `validate_only = 1 : bool`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct FinishFirmwareUpdateRequest {
    /// Validate, reply, and cancel instead of applying.
    #[prost(bool, tag = "1")]
    pub validate_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wire_forms_match_the_notes() {
        // START {size: 41234} → 08 92 C2 02.
        let start = StartFirmwareUpdateRequest {
            size: 41234,
            format: 0,
        };
        assert_eq!(start.encode_to_vec(), [0x08, 0x92, 0xC2, 0x02]);
        // DATA of 1024 bytes → 0A 80 08 + data (1027 bytes).
        let data = FirmwareUpdateDataRequest {
            data: alloc::vec![0xAB; 1024],
        };
        let wire = data.encode_to_vec();
        assert_eq!((&wire[..3], wire.len()), (&[0x0A, 0x80, 0x08][..], 1027));
        // 72 LISTENING → 08 01; NORMAL → empty.
        let listening = GetDeviceModeReply {
            mode: DeviceMode::ListeningMode as i32,
        };
        assert_eq!(listening.encode_to_vec(), [0x08, 0x01]);
        assert!(GetDeviceModeReply::default().encode_to_vec().is_empty());
        // 20: 0A 18 + 24 ASCII bytes.
        let id = GetDeviceIdReply {
            id: "0123456789abcdef01234567".into(),
        };
        assert_eq!(&id.encode_to_vec()[..2], [0x0A, 0x18]);
        // checked/passed flags are fixed32 (wire type 5): tags 0x35 and 0x3D.
        let m = FirmwareModule {
            checked_flags: 0x1E,
            passed_flags: 0x1E,
            ..Default::default()
        };
        assert_eq!(
            m.encode_to_vec(),
            [0x35, 0x1E, 0, 0, 0, 0x3D, 0x1E, 0, 0, 0]
        );
        // An optional hash is sent even when empty.
        let with_hash = FirmwareModule {
            hash: Some(alloc::vec![]),
            ..Default::default()
        };
        assert_eq!(with_hash.encode_to_vec(), [0x42, 0x00]);
    }

    #[test]
    fn module_info_reads_both_formats() {
        let old = GetModuleInfoReply {
            modules_deprecated: alloc::vec![LegacyModule {
                r#type: LegacyModuleType::SystemPart as i32,
                index: 1,
                version: 1502,
                size: 1000,
                validity: legacy_validity::DEPENDENCY_CHECK_FAILED,
                dependencies: alloc::vec![LegacyDependency {
                    r#type: LegacyModuleType::Bootloader as i32,
                    index: 0,
                    version: 400,
                }],
            }],
            modules: alloc::vec![],
        };
        let decoded = GetModuleInfoReply::decode(old.encode_to_vec().as_slice()).unwrap();
        let e = &decoded.entries()[0];
        assert_eq!((e.function, e.index, e.version, e.size), (4, 1, 1502, 1004));
        assert_eq!(e.checked & !e.passed, validation::DEPENDENCIES);
        assert_eq!(e.dependencies, [(2, 0, 400)]);
        let new = GetModuleInfoReply {
            modules_deprecated: alloc::vec![],
            modules: alloc::vec![FirmwareModule {
                r#type: FirmwareModuleType::UserPartModule as i32,
                index: 1,
                version: 6,
                store: FirmwareModuleStore::Factory as i32,
                max_size: 131072,
                checked_flags: 0x1E,
                passed_flags: 0x1E,
                hash: Some(alloc::vec![7; 32]),
                size: 5004,
                ..Default::default()
            }],
        };
        let e = &new.entries()[0];
        assert_eq!((e.function, e.store, e.max_size), (5, 1, Some(131072)));
        assert_eq!(e.hash.as_deref(), Some(&[7u8; 32][..]));
    }
}
