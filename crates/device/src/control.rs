//! The system firmware's answers to Particle's USB vendor requests in normal mode (Device OS
//! `usb_control_request_channel.cpp`, `system_control_internal.cpp`, `control/config.cpp`,
//! `control/storage.cpp`, and the raw requests of 0.6 / 0.7): [`Device::control`] is the
//! device's EP0 for vendor requests. The service requests go through
//! [`modflash_control::channel::Channel`]; what each request type does is here. Mode changes
//! run 1 s of modelled time after the host received the final reply ([`Device::elapse`]).

use modflash_control::channel::{Channel, Ready};
use modflash_control::proto::{
    legacy_validity, FinishFirmwareUpdateRequest, FirmwareModule, FirmwareModuleAsset,
    FirmwareModuleDependency, FirmwareUpdateDataRequest, GetAssetInfoReply, GetDeviceIdReply,
    GetDeviceModeReply, GetModuleInfoReply, GetNcpFirmwareVersionReply, GetProtectedStateReply,
    GetSerialNumberReply, GetSystemVersionReply, IsDeviceSetupDoneReply, LegacyDependency,
    LegacyModule, LegacyModuleType, SetDeviceSetupDoneRequest, SetStartupModeRequest,
    StartFirmwareUpdateReply, StartFirmwareUpdateRequest,
};
use modflash_control::service::{RAW, SERVICE_REQUESTS};
use modflash_control::{OtaCode, RequestType, Setup, Stall, SystemError};
use modflash_module::platform::{Mcu, Store};
pub use modflash_module::rules::ControlProtocol;
use modflash_module::rules::{self, OtaRefusal, Protection};
use modflash_module::ModuleFunction;
use prost::Message;

use crate::device::Device;
use crate::event::{DeviceEvent, UsbModeChange};
use crate::hal::{flags, Fetched};
use crate::ota::OtaError;
use crate::state::{BootRequest, Mode, ResetReason};

/// Module versions (system part) from which the firmware handles more request types (which
/// protocol it speaks at all is [`rules::control_protocol`]).
mod since {
    /// 1.1.0: the full request set on Gen2 (the Gen2 line before it has a reduced set and a
    /// JSON GetModuleInfo).
    pub const GEN2_FULL_SET: u16 = 1100;
    /// 1.5.0: ECHO.
    pub const ECHO: u16 = 1500;
    /// 5.6.0: GetModuleInfo in the `particle.cloud.FirmwareModule` format, GetAssetInfo.
    pub const MODULE_INFO_V2: u16 = 5600;
    /// 6.0.0: GetProtectedState.
    pub const PROTECTED_STATE: u16 = 6000;
}

/// Application-level firmware chunk size the device answers to START.
pub const UPDATE_CHUNK_SIZE: u32 = 1024;
/// Modelled delay between the host receiving the final reply of a reset, factory reset, DFU or
/// safe-mode request and the device acting on it.
pub const MODE_CHANGE_DELAY_US: u64 = 1_000_000;
/// The 0.7 raw-request buffer.
const RAW_07_BUFFER: usize = 512;
/// The ESP32 NCP firmware Argons and A SoMs carry (the model has no NCP of its own):
/// argon-ncp-firmware 0.0.5.
const WIFI_NCP_FIRMWARE: (&str, u32) = ("0.0.5", 5);

/// What the device does once the host has received a request's final reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AfterReply {
    /// Reset (after [`MODE_CHANGE_DELAY_US`]).
    Reset,
    /// Factory reset (after [`MODE_CHANGE_DELAY_US`]).
    FactoryReset,
    /// Reset into DFU mode (after [`MODE_CHANGE_DELAY_US`]).
    Dfu,
    /// Reset into safe mode (after [`MODE_CHANGE_DELAY_US`]).
    SafeMode,
    /// Apply the validated firmware update and reset (at once).
    ApplyUpdate,
}

/// A firmware update arriving over control requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UsbUpdate {
    /// Bytes announced by START and not yet received.
    left: usize,
    /// Bytes written to the OTA region.
    written: usize,
}

/// A 0.7 raw OUT request waiting for its IN.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RawQueued {
    request_type: u16,
    /// The system thread handled it.
    ready: bool,
    /// Its reply, when it succeeded.
    reply: Option<Vec<u8>>,
}

/// The firmware's control-request state (RAM only: reset at every boot).
#[derive(Clone, Debug, Default)]
pub(crate) struct ControlSession {
    channel: Channel<AfterReply>,
    update: Option<UsbUpdate>,
    /// A mode change due at this modelled time (µs).
    scheduled: Option<(u64, AfterReply)>,
    raw_queued: Option<RawQueued>,
}

/// The answer of a handler: result, reply payload, what to do after the reply.
type Handled = (i32, Vec<u8>, Option<AfterReply>);

fn result_only(result: i32) -> Handled {
    (result, Vec::new(), None)
}

fn reply(message: &impl Message) -> Handled {
    (0, message.encode_to_vec(), None)
}

fn not_supported() -> Handled {
    result_only(SystemError::NotSupported.code())
}

fn bad_data() -> Handled {
    result_only(SystemError::BadData.code())
}

impl Device {
    /// The USB control protocol of the firmware running now.
    pub fn control_protocol(&self) -> ControlProtocol {
        if !self.answers_usb() {
            return ControlProtocol::None;
        }
        rules::control_protocol(self.platform, self.system_version())
    }

    /// True while the system firmware runs its USB device (normal, listening or safe mode).
    pub(crate) fn answers_usb(&self) -> bool {
        matches!(
            self.state.mode,
            Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
        )
    }

    /// One vendor control transfer on EP0 while the firmware runs (normal, listening or safe
    /// mode): `setup`, plus the host's data stage for OUT requests (`data_out`, at least
    /// wLength bytes). Returns the IN data stage (empty for OUT) or a STALL. What is answered
    /// depends on [`Device::control_protocol`]; anything else stalls, as does everything in
    /// DFU mode (the bootloader has its own EP0, [`Device::dfu_control`]) or when off.
    ///
    /// Each transfer counts in `state.control_transfers` and adds modelled USB time; actions
    /// that have come due run first ([`Device::elapse`]). A request may end with the device
    /// resetting: compare [`Device::state`]'s mode (or the presence on the bus) after the call.
    pub fn control(&mut self, setup: Setup, data_out: &[u8]) -> Result<Vec<u8>, Stall> {
        self.run_due();
        let protocol = self.control_protocol();
        if protocol == ControlProtocol::None || !setup.is_vendor() {
            return Err(Stall);
        }
        self.state.control_transfers += 1;
        let result = match protocol {
            ControlProtocol::Service if SERVICE_REQUESTS.contains(&setup.request) => {
                self.service_request(setup, data_out)
            }
            ControlProtocol::Service if setup.request == RAW => self.raw_request(setup),
            ControlProtocol::Raw07 if setup.request == RAW => self.raw_07(setup, data_out),
            ControlProtocol::Raw06 if setup.request == RAW => self.raw_06(setup),
            _ => Err(Stall),
        };
        let data_len = match (&result, setup.is_in()) {
            (Ok(reply), true) => reply.len(),
            (Err(_), true) => 0,
            (_, false) => data_out.len().min(usize::from(setup.length)),
        };
        self.flash_mut()
            .add_time_us(crate::dfuse::usb_time_us(data_len));
        // The data stage is over: hooks of requests whose final reply went out run now.
        self.run_completions();
        result
    }

    /// A USB bus reset seen by the firmware: every active control request is aborted (−150).
    pub fn control_bus_reset(&mut self) {
        self.control.channel.bus_reset();
        self.run_completions();
    }

    /// The modelled time (µs, on [`crate::FlashStats::modelled_us`]'s clock) at which a
    /// requested mode change happens, if one is pending.
    pub fn control_deadline(&self) -> Option<u64> {
        self.control.scheduled.map(|(at, _)| at)
    }

    /// Lets `us` microseconds of modelled time pass and runs what came due (a reset, DFU or
    /// safe mode requested over USB 1 s earlier). In-process hosts call it for their waits.
    pub fn elapse(&mut self, us: u64) {
        self.flash_mut().add_time_us(us);
        self.run_due();
    }

    fn now_us(&self) -> u64 {
        self.flash.stats().modelled_us
    }

    fn run_due(&mut self) {
        let Some((at, action)) = self.control.scheduled else {
            return;
        };
        if self.now_us() < at {
            return;
        }
        self.control.scheduled = None;
        let change = match action {
            AfterReply::Reset => UsbModeChange::Reset,
            AfterReply::FactoryReset => UsbModeChange::FactoryReset,
            AfterReply::Dfu => UsbModeChange::Dfu,
            AfterReply::SafeMode => UsbModeChange::SafeMode,
            AfterReply::ApplyUpdate => return,
        };
        self.event(DeviceEvent::UsbModeChange(change));
        match action {
            AfterReply::FactoryReset => self.state.factory_reset_requested = true,
            AfterReply::Dfu => self.state.boot_request = Some(BootRequest::Dfu),
            AfterReply::SafeMode => self.state.boot_request = Some(BootRequest::SafeMode),
            AfterReply::Reset | AfterReply::ApplyUpdate => {}
        }
        self.reset(ResetReason::User, None);
    }

    // ---- service requests -------------------------------------------------------------------

    fn service_request(&mut self, setup: Setup, data_out: &[u8]) -> Result<Vec<u8>, Stall> {
        let reply = self.control.channel.setup(&setup, data_out);
        // The system thread: buffers are allocated and requests handled before the host can
        // poll again (the first CHECK comes ≥ 50 ms later).
        self.control.channel.allocate();
        while let Some(ready) = self.control.channel.take_ready() {
            let id = ready.id;
            let (result, payload, hook) = self.handle(ready);
            self.control.channel.complete(id, result, payload, hook);
        }
        reply
    }

    /// Runs the hooks of requests whose final reply reached the host (or that were
    /// cancelled: Device OS runs them either way).
    fn run_completions(&mut self) {
        while let Some(done) = self.control.channel.take_completed() {
            match done.hook {
                AfterReply::ApplyUpdate => self.apply_usb_update(),
                action => {
                    let at = self.now_us() + MODE_CHANGE_DELAY_US;
                    self.control.scheduled = Some((at, action));
                }
            }
        }
    }

    /// Whether this firmware handles `ty` (else −120, as for an unknown type).
    fn handles(&self, ty: RequestType) -> bool {
        let version = self.system_version().unwrap_or(0);
        let gen2 = self.platform.mcu == Mcu::Stm32f2;
        if gen2 && version < since::GEN2_FULL_SET {
            return matches!(
                ty,
                RequestType::RESET
                    | RequestType::FACTORY_RESET
                    | RequestType::DFU_MODE
                    | RequestType::SAFE_MODE
                    | RequestType::START_LISTENING
                    | RequestType::STOP_LISTENING
                    | RequestType::GET_MODULE_INFO
                    | RequestType::START_FIRMWARE_UPDATE
                    | RequestType::FINISH_FIRMWARE_UPDATE
                    | RequestType::CANCEL_FIRMWARE_UPDATE
                    | RequestType::FIRMWARE_UPDATE_DATA
            );
        }
        match ty {
            RequestType::ECHO => version >= since::ECHO,
            RequestType::GET_ASSET_INFO => {
                version >= since::MODULE_INFO_V2 && self.platform.generation.is_some_and(|g| g >= 3)
            }
            RequestType::GET_PROTECTED_STATE => version >= since::PROTECTED_STATE,
            _ => true,
        }
    }

    /// The system thread's handler of one request (`ctrl_request` dispatch).
    fn handle(&mut self, ready: Ready) -> Handled {
        let ty = ready.request_type;
        if !self.handles(ty) {
            return not_supported();
        }
        let payload = ready.payload.as_slice();
        match ty {
            RequestType::ECHO => (0, ready.payload, None),
            RequestType::DEVICE_ID => reply(&GetDeviceIdReply {
                id: self.state.device_id.to_ascii_lowercase(),
            }),
            RequestType::SERIAL_NUMBER => match crate::console::serial_number(self) {
                Some(serial) => reply(&GetSerialNumberReply { serial }),
                None => not_supported(),
            },
            RequestType::SYSTEM_VERSION => reply(&GetSystemVersionReply {
                version: self.system_version_string(),
            }),
            RequestType::NCP_FIRMWARE_VERSION => match self.platform.id {
                12 | 22 => reply(&GetNcpFirmwareVersionReply {
                    version: WIFI_NCP_FIRMWARE.0.into(),
                    module_version: WIFI_NCP_FIRMWARE.1,
                }),
                _ => not_supported(),
            },
            RequestType::RESET => (0, Vec::new(), Some(AfterReply::Reset)),
            RequestType::FACTORY_RESET => (0, Vec::new(), Some(AfterReply::FactoryReset)),
            RequestType::DFU_MODE => (0, Vec::new(), Some(AfterReply::Dfu)),
            RequestType::SAFE_MODE => (0, Vec::new(), Some(AfterReply::SafeMode)),
            RequestType::START_LISTENING => {
                self.enter_listening();
                result_only(0)
            }
            RequestType::STOP_LISTENING => {
                self.exit_listening();
                result_only(0)
            }
            RequestType::GET_DEVICE_MODE => reply(&GetDeviceModeReply {
                mode: i32::from(self.state.mode == Mode::Listening),
            }),
            RequestType::SET_DEVICE_SETUP_DONE => {
                match SetDeviceSetupDoneRequest::decode(payload) {
                    Ok(r) if r.done => result_only(0),
                    Ok(_) => not_supported(),
                    Err(_) => bad_data(),
                }
            }
            RequestType::IS_DEVICE_SETUP_DONE => reply(&IsDeviceSetupDoneReply { done: true }),
            // The startup-listen flag is not modelled: accepted, nothing stored.
            RequestType::SET_STARTUP_MODE => match SetStartupModeRequest::decode(payload) {
                Ok(_) => result_only(0),
                Err(_) => bad_data(),
            },
            // `security_mode_get` reads NONE in service mode; an open device sends an empty
            // reply (both fields false).
            RequestType::GET_PROTECTED_STATE => reply(&GetProtectedStateReply {
                state: self.protection() == Protection::Protected,
                overridden: self.protection() == Protection::Service,
            }),
            RequestType::GET_MODULE_INFO => self.get_module_info(),
            RequestType::GET_ASSET_INFO => reply(&GetAssetInfoReply {
                available: self.available_assets().iter().map(module_asset).collect(),
                required: self.required_assets().iter().map(module_asset).collect(),
            }),
            RequestType::START_FIRMWARE_UPDATE => self.start_update(payload),
            RequestType::FIRMWARE_UPDATE_DATA => self.update_data(payload),
            RequestType::FINISH_FIRMWARE_UPDATE => self.finish_update(payload),
            RequestType::CANCEL_FIRMWARE_UPDATE => {
                self.cancel_usb_update();
                result_only(0)
            }
            _ => not_supported(),
        }
    }

    /// The version string the firmware was built with ("1.5.0"); the module version when the
    /// release is not in the table.
    fn system_version_string(&self) -> String {
        let v = self.system_version().unwrap_or(0);
        modflash_module::release::release_name(v).map_or_else(|| v.to_string(), str::to_string)
    }

    // ---- GetModuleInfo ------------------------------------------------------------------------

    /// 90: the HAL's module list (`HAL_System_Info`, the facts of the `s` JSON) in the format
    /// of the installed release.
    fn get_module_info(&self) -> Handled {
        let version = self.system_version().unwrap_or(0);
        if self.platform.mcu == Mcu::Stm32f2 && version < since::GEN2_FULL_SET {
            // The Gen2 1.0 line answers with the module-info JSON.
            return (0, crate::describe::describe(self).into_bytes(), None);
        }
        let modules = self.system_info();
        let reply = if version >= since::MODULE_INFO_V2 {
            let required: Vec<FirmwareModuleAsset> =
                self.required_assets().iter().map(module_asset).collect();
            let mut listed: Vec<FirmwareModule> =
                modules.iter().filter_map(firmware_module).collect();
            // The application's entry lists the assets it requires.
            let user = i32::from(ModuleFunction::UserPart.to_u8());
            for m in listed.iter_mut().filter(|m| m.r#type == user) {
                m.asset_dependencies.clone_from(&required);
            }
            GetModuleInfoReply {
                modules_deprecated: Vec::new(),
                modules: listed,
            }
        } else {
            GetModuleInfoReply {
                modules_deprecated: modules.iter().filter_map(legacy_module).collect(),
                modules: Vec::new(),
            }
        };
        self::reply(&reply)
    }

    // ---- firmware update (250–253) ------------------------------------------------------------

    fn start_update(&mut self, payload: &[u8]) -> Handled {
        let Ok(request) = StartFirmwareUpdateRequest::decode(payload) else {
            return bad_data();
        };
        self.cancel_usb_update();
        if request.format != 0 {
            return not_supported();
        }
        // Size 0 means "the whole OTA region" to `Spark_Prepare_For_Firmware_Update`.
        let max = self.ota_region().max_size as usize;
        let erase = match request.size as usize {
            0 => max,
            n => n,
        };
        if erase > max {
            return result_only(OtaCode::InvalidSize.code());
        }
        match self.ota_begin(erase) {
            Ok(()) => {}
            Err(OtaError::Refused(_)) => return result_only(OtaCode::InvalidSize.code()),
            Err(_) => return result_only(SystemError::FlashIo.code()),
        }
        self.control.update = Some(UsbUpdate {
            left: request.size as usize,
            written: 0,
        });
        reply(&StartFirmwareUpdateReply {
            chunk_size: UPDATE_CHUNK_SIZE,
        })
    }

    fn update_data(&mut self, payload: &[u8]) -> Handled {
        let outcome = self.write_update_chunk(payload);
        if outcome.0 != 0 {
            self.cancel_usb_update();
        }
        outcome
    }

    fn write_update_chunk(&mut self, payload: &[u8]) -> Handled {
        let Ok(request) = FirmwareUpdateDataRequest::decode(payload) else {
            return bad_data();
        };
        let Some(update) = self.control.update else {
            return result_only(SystemError::InvalidState.code());
        };
        let data = request.data;
        if data.is_empty() || data.len() > update.left {
            return result_only(SystemError::OutOfRange.code());
        }
        if self.ota_write(update.written, &data).is_err() {
            return result_only(SystemError::FlashIo.code());
        }
        self.control.update = Some(UsbUpdate {
            left: update.left - data.len(),
            written: update.written + data.len(),
        });
        result_only(0)
    }

    fn finish_update(&mut self, payload: &[u8]) -> Handled {
        let verdict = match FinishFirmwareUpdateRequest::decode(payload) {
            Err(_) => Err(SystemError::BadData.code()),
            Ok(request) => match self.control.update {
                Some(update) if update.left == 0 => match self.ota_validate() {
                    Ok(_) => Ok(request.validate_only),
                    Err(e) => {
                        self.event(DeviceEvent::UsbUpdateRefused(e));
                        Err(usb_update_code(e))
                    }
                },
                _ => Err(SystemError::InvalidState.code()),
            },
        };
        match verdict {
            // Replied first; applied once the host has the reply.
            Ok(false) => (0, Vec::new(), Some(AfterReply::ApplyUpdate)),
            Ok(true) => {
                self.cancel_usb_update();
                result_only(0)
            }
            Err(code) => {
                self.cancel_usb_update();
                result_only(code)
            }
        }
    }

    fn cancel_usb_update(&mut self) {
        if self.control.update.take().is_some() {
            self.ota_cancel();
        }
    }

    /// FINISH's completion: install the module and reset (no reset if installing failed).
    fn apply_usb_update(&mut self) {
        if self.control.update.take().is_none() {
            return;
        }
        match self.ota_finish() {
            Ok(_) => self.reset(ResetReason::Update, None),
            Err(e) => {
                self.event(DeviceEvent::UsbUpdateRefused(e));
                self.state.led = self.mode_led();
            }
        }
    }

    // ---- raw requests ---------------------------------------------------------------------------

    /// 0x50 requests of the service era: IN 20 / 30, OUT 40 / 302.
    fn raw_request(&mut self, s: Setup) -> Result<Vec<u8>, Stall> {
        if s.is_in() {
            // The HAL gives the channel a buffer only for 1–64 bytes.
            if s.length == 0 || s.length > 64 {
                return Err(Stall);
            }
            let text = match RequestType(s.index) {
                RequestType::DEVICE_ID => self.state.device_id.to_ascii_uppercase(),
                RequestType::SYSTEM_VERSION => self.system_version_string(),
                _ => return Err(Stall),
            };
            if text.len() > usize::from(s.length) {
                return Err(Stall);
            }
            return Ok(text.into_bytes());
        }
        match RequestType(s.index) {
            RequestType::RESET => {
                // A hard reset from the interrupt handler.
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::Reset));
                self.reset(ResetReason::User, None);
                Ok(Vec::new())
            }
            // Cancels a cloud connection the model does not have.
            RequestType::CLOUD_DISCONNECT => Ok(Vec::new()),
            _ => Err(Stall),
        }
    }

    /// Device OS 0.7: IN 20 / 30 answered at once; OUT 40 / 50 / 60 / 70 / 80 / 90 / 10
    /// queued for the system thread, their reply fetched with IN on the same wIndex.
    fn raw_07(&mut self, s: Setup, data_out: &[u8]) -> Result<Vec<u8>, Stall> {
        let ty = RequestType(s.index);
        if s.is_in() {
            if s.length == 0 || s.length > 64 {
                return Err(Stall);
            }
            return match ty {
                RequestType::DEVICE_ID => self.raw_device_id(s, true),
                RequestType::SYSTEM_VERSION => Ok(self.raw_version(s)),
                RequestType::GET_MODULE_INFO
                | RequestType::LOG_CONFIG
                | RequestType::APP_CUSTOM => self.raw_07_fetch(s),
                _ => Err(Stall),
            };
        }
        let queued = matches!(
            ty,
            RequestType::RESET
                | RequestType::DFU_MODE
                | RequestType::SAFE_MODE
                | RequestType::START_LISTENING
                | RequestType::LOG_CONFIG
                | RequestType::GET_MODULE_INFO
                | RequestType::APP_CUSTOM
        );
        let busy = self.control.raw_queued.as_ref().is_some_and(|q| !q.ready);
        if !queued
            || busy
            || usize::from(s.length) > RAW_07_BUFFER
            || data_out.len() < usize::from(s.length)
        {
            return Err(Stall);
        }
        // The system thread runs it right away.
        let reply = match ty {
            RequestType::RESET => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::Reset));
                self.reset(ResetReason::User, None);
                Some(Vec::new())
            }
            RequestType::DFU_MODE => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::Dfu));
                self.request_dfu();
                Some(Vec::new())
            }
            RequestType::SAFE_MODE => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::SafeMode));
                self.state.boot_request = Some(BootRequest::SafeMode);
                self.reset(ResetReason::User, None);
                Some(Vec::new())
            }
            RequestType::START_LISTENING => {
                self.enter_listening();
                Some(Vec::new())
            }
            RequestType::GET_MODULE_INFO => {
                let mut json = crate::describe::describe(self).into_bytes();
                json.truncate(RAW_07_BUFFER);
                Some(json)
            }
            // No application handler, no log configuration: the request fails.
            _ => None,
        };
        if self.answers_usb() {
            self.control.raw_queued = Some(RawQueued {
                request_type: s.index,
                ready: true,
                reply,
            });
        }
        Ok(Vec::new())
    }

    fn raw_07_fetch(&mut self, s: Setup) -> Result<Vec<u8>, Stall> {
        let Some(q) = &self.control.raw_queued else {
            return Err(Stall);
        };
        let Some(reply) = q
            .reply
            .as_ref()
            .filter(|_| q.ready && q.request_type == s.index)
        else {
            return Err(Stall);
        };
        if usize::from(s.length) < reply.len() {
            return Err(Stall);
        }
        let reply = reply.clone();
        self.control.raw_queued = None;
        Ok(reply)
    }

    /// Device OS 0.6: IN 0 (device id) / 1 (version); OUT 2 (reset), 3 (DFU), 4 (listening
    /// through safe mode), all acted on inside the interrupt handler.
    fn raw_06(&mut self, s: Setup) -> Result<Vec<u8>, Stall> {
        if s.is_in() {
            if s.length == 0 || s.length > 64 {
                return Err(Stall);
            }
            return match s.index {
                0 => self.raw_device_id(s, false),
                1 => Ok(self.raw_version(s)),
                _ => Err(Stall),
            };
        }
        match s.index {
            2 => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::Reset));
                self.reset(ResetReason::User, None);
            }
            3 => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::Dfu));
                self.request_dfu();
            }
            4 => {
                self.event(DeviceEvent::UsbModeChange(UsbModeChange::SafeMode));
                self.state.boot_request = Some(BootRequest::SafeMode);
                self.reset(ResetReason::User, None);
                self.enter_listening();
            }
            _ => return Err(Stall),
        }
        Ok(Vec::new())
    }

    /// The raw device id of 0.6 / 0.7: 12 bytes for wValue 1, else hex and a NUL (0.7
    /// upper-case, 0.6 `System.deviceID()`, lower-case).
    fn raw_device_id(&self, s: Setup, upper: bool) -> Result<Vec<u8>, Stall> {
        let id = &self.state.device_id;
        if s.value == 1 {
            if s.length < 12 {
                return Err(Stall);
            }
            return Ok((0..12)
                .map(|i| {
                    id.get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .unwrap_or(0)
                })
                .collect());
        }
        let mut text = if upper {
            id.to_ascii_uppercase()
        } else {
            id.to_ascii_lowercase()
        }
        .into_bytes();
        text.push(0);
        if usize::from(s.length) < text.len() {
            return Err(Stall);
        }
        Ok(text)
    }

    /// The raw version of 0.6 / 0.7: `strncpy` into wLength bytes, reported as strlen + 2.
    fn raw_version(&self, s: Setup) -> Vec<u8> {
        let mut text = self.system_version_string().into_bytes();
        text.extend_from_slice(&[0, 0]);
        text.truncate(usize::from(s.length));
        text
    }
}

/// The result FINISH reports for a refused module (`Spark_Finish_Firmware_Update`'s codes).
fn usb_update_code(e: OtaError) -> i32 {
    match e {
        OtaError::Refused(OtaRefusal::TooLarge { .. }) => OtaCode::InvalidSize.code(),
        OtaError::PowerLost => SystemError::FlashIo.code(),
        e => e.code(),
    }
}

fn store_number(store: Store) -> i32 {
    match store {
        Store::Main => 0,
        Store::Factory => 1,
        Store::Backup => 2,
        Store::Scratchpad => 3,
    }
}

/// One module in the new format (`EncodeFirmwareModules` with FORCE_SHA): every region with a
/// module, factory images included, always with a hash.
fn firmware_module(f: &Fetched) -> Option<FirmwareModule> {
    let info = f.info.filter(|i| i.function != ModuleFunction::None)?;
    let length = info.module_length().unwrap_or(0);
    Some(FirmwareModule {
        r#type: i32::from(info.function.to_u8()),
        index: u32::from(info.index),
        version: u32::from(info.version),
        store: store_number(f.bounds.store),
        max_size: f.bounds.max_size,
        checked_flags: u32::from(f.checked),
        passed_flags: u32::from(f.passed),
        // The radio stack has no suffix: its hash field reads as zeros.
        hash: Some(f.sha256.unwrap_or([0; 32]).to_vec()),
        dependencies: info
            .listed_dependencies()
            .map(|d| FirmwareModuleDependency {
                r#type: i32::from(d.function.to_u8()),
                index: u32::from(d.index),
                version: u32::from(d.version),
            })
            .collect(),
        asset_dependencies: Vec::new(),
        size: if length > 0 { length + 4 } else { 0 },
        security: None,
    })
}

/// An asset as GetAssetInfo and GetModuleInfo encode it (`encodeAssetDependencies`).
fn module_asset(a: &crate::asset::AssetInfo) -> FirmwareModuleAsset {
    FirmwareModuleAsset {
        hash: a.hash.clone(),
        name: a.name.clone(),
        size: a.size,
        storage_size: a.storage_size,
    }
}

/// One module in the old format (Device OS < 5.6.0): MAIN-store modules whose type the old
/// enum has, failures as bits.
fn legacy_module(f: &Fetched) -> Option<LegacyModule> {
    let info = f.info.filter(|_| f.bounds.store == Store::Main)?;
    let ty = LegacyModuleType::of_function(info.function.to_u8())?;
    let mut validity = 0;
    if f.passed & flags::INTEGRITY == 0 {
        validity |= legacy_validity::INTEGRITY_CHECK_FAILED;
    }
    if f.passed & flags::DEPENDENCIES == 0 {
        validity |= legacy_validity::DEPENDENCY_CHECK_FAILED;
    }
    Some(LegacyModule {
        r#type: ty as i32,
        index: u32::from(info.index),
        version: u32::from(info.version),
        size: info.module_length().unwrap_or(0),
        validity,
        dependencies: info
            .dependencies
            .iter()
            .filter_map(|d| {
                Some(LegacyDependency {
                    r#type: LegacyModuleType::of_function(d.function.to_u8())? as i32,
                    index: u32::from(d.index),
                    version: u32::from(d.version),
                })
            })
            .collect(),
    })
}
