//! The virtual device: flash + DCT + the bootloader's and system firmware's module handling
//! (spec §6, §7), with an observable mode, LED, reset reason and event log.

use modflash_module::platform::{dct, Family, Layout, ModuleBounds, Platform, Store};
use modflash_module::release::{platform_release, platform_releases};
use modflash_module::rules::{self, NotRunnable, OtaCode, OtaRefusal};
use modflash_module::synth::synthesize;
use modflash_module::{Module, ModuleFunction, ModuleInfo, ModuleRef};
use serde::{Deserialize, Serialize};

use crate::dct::{self as dct_store, slot_flags, DctLocation, ModuleSlot};
use crate::flash::{FlashChip, FlashError, FlashStats, Space};
use crate::hal::{describe_flags, flags, Fetched, Hal};

/// What the device is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The bootloader's USB DFU mode.
    Dfu,
    /// Listening mode (serial console, blinking blue).
    Listening,
    /// The user application runs.
    App,
    /// Safe mode: the system runs, the application does not.
    SafeMode,
    /// The system runs and there is no application to run.
    NoApp,
    /// The system crashes at start (red SOS) and the device resets over and over.
    Panic,
    /// Power is off (after an injected power cut).
    Off,
}

impl Mode {
    /// Stable name for JSON (`"safe_mode"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Dfu => "dfu",
            Self::Listening => "listening",
            Self::App => "app",
            Self::SafeMode => "safe_mode",
            Self::NoApp => "no_app",
            Self::Panic => "panic",
            Self::Off => "off",
        }
    }
}

/// LED colours used by the system theme and the bootloader (spec §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    /// Cloud connected.
    Cyan,
    /// Safe mode, updates.
    Magenta,
    /// Factory reset, network.
    Green,
    /// DFU mode.
    Yellow,
    /// Listening mode.
    Blue,
    /// Settings reset.
    White,
    /// Errors.
    Red,
    /// Off.
    Off,
}

/// LED patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Slow fade in and out.
    Breathing,
    /// Blinking.
    Blinking,
    /// Fast blinking.
    BlinkingFast,
    /// Solid.
    Solid,
    /// Red SOS (3 short, 3 long, 3 short).
    Sos,
}

/// The RGB LED's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Led {
    /// Colour.
    pub color: Color,
    /// Pattern.
    pub pattern: Pattern,
}

impl Led {
    const fn new(color: Color, pattern: Pattern) -> Self {
        Self { color, pattern }
    }
}

impl std::fmt::Display for Led {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = match self.pattern {
            Pattern::Breathing => "breathing",
            Pattern::Blinking => "blinking",
            Pattern::BlinkingFast => "blinking fast",
            Pattern::Solid => "solid",
            Pattern::Sos => "SOS",
        };
        let color = match self.color {
            Color::Cyan => "cyan",
            Color::Magenta => "magenta",
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Blue => "blue",
            Color::White => "white",
            Color::Red => "red",
            Color::Off => "off",
        };
        if self.color == Color::Off {
            f.write_str("off")
        } else {
            write!(f, "{pattern} {color}")
        }
    }
}

/// Why the device last reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// Power applied.
    PowerOn,
    /// The reset button (or `sim reset`).
    Button,
    /// A firmware update was staged or applied.
    Update,
    /// Leaving DFU mode.
    DfuLeave,
    /// A factory reset was requested.
    FactoryReset,
    /// A panic (SOS) reset.
    Panic,
    /// The watchdog fired.
    Watchdog,
    /// A software request (enter DFU, safe mode).
    User,
}

/// A request left for the bootloader in backup register DR1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootRequest {
    /// 0xEDFA: enter DFU mode.
    Dfu,
    /// 0x5AFE: enter safe mode.
    SafeMode,
}

/// Everything about a device that is not flash contents; saved with the flash images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Platform id.
    pub platform_id: u16,
    /// 12-byte device id as 24 lower-case hex digits.
    pub device_id: String,
    /// Current mode.
    pub mode: Mode,
    /// What the system does outside listening mode (to return to after `x`).
    pub running_mode: Mode,
    /// LED.
    pub led: Led,
    /// Reason of the last reset.
    pub reset_reason: ResetReason,
    /// Plain-words event log, newest last.
    pub events: Vec<String>,
    /// `Factory_Reset == 0xAAAA`: the bootloader restores the factory app at next boot.
    pub factory_reset_requested: bool,
    /// DR1 request for the bootloader.
    pub boot_request: Option<BootRequest>,
    /// Consecutive failed system starts seen by the watchdog.
    pub watchdog_retries: u8,
    /// USB control transfers handled (DFU).
    pub control_transfers: u64,
    /// Flash counters at the time of saving.
    pub flash_stats: FlashStats,
}

/// How many events the log keeps.
const EVENT_LOG_LIMIT: usize = 400;
/// Chunk size of bootloader copies (one program operation each).
const COPY_CHUNK: usize = 4096;
/// Boot attempts before `boot` gives up on a reset loop (a real device would keep looping).
const MAX_BOOT_STEPS: usize = 8;

/// Why an OTA update failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtaError {
    /// The system refused the module (spec §5.7).
    Refused(OtaRefusal),
    /// The update was not started (no `begin`).
    NotStarted,
    /// Power was lost.
    PowerLost,
}

impl OtaError {
    /// Device OS system error code.
    pub fn code(&self) -> i32 {
        match self {
            Self::Refused(r) => r.code().code(),
            Self::NotStarted | Self::PowerLost => OtaCode::Failed.code(),
        }
    }
}

impl std::fmt::Display for OtaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => r.fmt(f),
            Self::NotStarted => f.write_str("no update in progress"),
            Self::PowerLost => f.write_str("power was lost during the update"),
        }
    }
}

impl From<FlashError> for OtaError {
    fn from(_: FlashError) -> Self {
        Self::PowerLost
    }
}

/// What a successful OTA `finish` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtaOutcome {
    /// A bootloader was copied in place at once.
    Applied,
    /// The module was queued in a DCT slot; the bootloader copies it at the next reset.
    PendingRestart,
}

/// The virtual device.
#[derive(Clone, Debug)]
pub struct Device {
    platform: &'static Platform,
    flash: FlashChip,
    /// Saved state.
    pub state: DeviceState,
    ota_length: Option<usize>,
    /// The bootloader's USB DFU session (RAM only; reset at every boot).
    pub(crate) dfu: crate::dfuse::DfuSession,
}

impl Device {
    /// A blank device (erased flash) of `platform`, powered off.
    pub fn blank(platform: &'static Platform, device_id: [u8; 12]) -> Result<Self, String> {
        let layout = platform
            .layout_for(None)
            .ok_or_else(|| format!("no memory map is known for the {}", platform.display_name))?;
        let mut device = Self {
            platform,
            flash: FlashChip::new(layout, platform.mcu),
            state: DeviceState {
                platform_id: platform.id,
                device_id: device_id.iter().map(|b| format!("{b:02x}")).collect(),
                mode: Mode::Off,
                running_mode: Mode::Off,
                led: Led::new(Color::Off, Pattern::Solid),
                reset_reason: ResetReason::PowerOn,
                events: Vec::new(),
                factory_reset_requested: false,
                boot_request: None,
                watchdog_retries: 0,
                control_transfers: 0,
                flash_stats: FlashStats::default(),
            },
            ota_length: None,
            dfu: crate::dfuse::DfuSession::default(),
        };
        let loc = device.dct_location();
        let mut id = device_id.to_vec();
        id.resize(12, 0);
        dct_store::write(&mut device.flash, &loc, dct::DEVICE_ID, &id)
            .map_err(|e| e.to_string())?;
        Ok(device)
    }

    /// Rebuilds a device from saved state and flash images (internal, then external).
    pub fn restore(
        state: DeviceState,
        internal: Vec<u8>,
        external: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let platform = modflash_module::platform(state.platform_id)
            .ok_or_else(|| format!("unknown platform id {}", state.platform_id))?;
        let layout = platform
            .layout_for(None)
            .ok_or("no memory map for the platform")?;
        let mut flash = FlashChip::new(layout, platform.mcu);
        flash
            .load(Space::Internal, internal)
            .map_err(|e| format!("internal flash image: {e}"))?;
        if let Some(ext) = external {
            flash
                .load(Space::External, ext)
                .map_err(|e| format!("external flash image: {e}"))?;
        }
        flash.set_stats(state.flash_stats);
        Ok(Self {
            platform,
            flash,
            state,
            ota_length: None,
            dfu: crate::dfuse::DfuSession::default(),
        })
    }

    /// State and flash images to save.
    pub fn snapshot(&self) -> (DeviceState, Vec<u8>, Option<Vec<u8>>) {
        let mut state = self.state.clone();
        state.flash_stats = self.flash.stats();
        let internal = self
            .flash
            .memory(Space::Internal)
            .map(|m| m.data.clone())
            .unwrap_or_default();
        let external = self.flash.memory(Space::External).map(|m| m.data.clone());
        (state, internal, external)
    }

    /// The platform.
    pub fn platform(&self) -> &'static Platform {
        self.platform
    }

    /// The flash (read-only).
    pub fn flash(&self) -> &FlashChip {
        &self.flash
    }

    /// The flash, for fault injection and the DfuSe/console front ends in this crate.
    pub fn flash_mut(&mut self) -> &mut FlashChip {
        &mut self.flash
    }

    /// Where the DCT lives.
    pub fn dct_location(&self) -> DctLocation {
        DctLocation::of(self.platform)
    }

    /// The application DCT.
    pub fn dct(&self) -> Vec<u8> {
        dct_store::read(&self.flash, &self.dct_location())
    }

    /// The memory map of the installed system firmware (newest when none is installed).
    pub fn layout(&self) -> &'static Layout {
        let layouts = self.platform.layouts();
        for layout in layouts.iter().rev() {
            let Some(b) = layout.main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1)) else {
                continue;
            };
            let hal = Hal {
                flash: &self.flash,
                platform: self.platform,
                layout,
            };
            if let Some((info, _)) = hal.read_info(b) {
                if info.function == ModuleFunction::SystemPart
                    && info.platform_id == self.platform.id
                    && layout.applies_to(info.version)
                {
                    return layout;
                }
            }
        }
        // Core (monolithic) and blank devices.
        self.platform.layout_for(None).unwrap_or(&layouts[0])
    }

    /// HAL view of the device.
    pub fn hal(&self) -> Hal<'_> {
        Hal {
            flash: &self.flash,
            platform: self.platform,
            layout: self.layout(),
        }
    }

    /// Modules as the system reports them (`HAL_System_Info`).
    pub fn system_info(&self) -> Vec<Fetched> {
        self.hal().system_info()
    }

    /// Installed system-part version (part 1), if any.
    pub fn system_version(&self) -> Option<u16> {
        self.hal()
            .system_info()
            .into_iter()
            .filter_map(|f| f.info)
            .find(|i| i.function == ModuleFunction::SystemPart)
            .map(|i| i.version)
    }

    /// Total modelled time and flash counters.
    pub fn flash_stats(&self) -> FlashStats {
        self.flash.stats()
    }

    /// Appends to the event log.
    pub fn event(&mut self, text: impl Into<String>) {
        self.state.events.push(text.into());
        let excess = self.state.events.len().saturating_sub(EVENT_LOG_LIMIT);
        self.state.events.drain(..excess);
    }

    fn set_mode(&mut self, mode: Mode, led: Led) {
        self.state.mode = mode;
        self.state.led = led;
    }

    // ---- provisioning -------------------------------------------------------------------

    /// Writes `bytes` raw at `address` (erasing the sectors it covers): how a factory
    /// programmer or a user's mistake puts an image in flash. Nothing is checked.
    pub fn write_raw(
        &mut self,
        space: Space,
        address: u32,
        bytes: &[u8],
    ) -> Result<(), FlashError> {
        self.flash.write(space, address, bytes, COPY_CHUNK)
    }

    /// Installs a module file where the device would install it: at its start address, the
    /// prefix dropped for DROP_MODULE_INFO modules. Nothing is validated.
    pub fn install_module(&mut self, bytes: &[u8]) -> Result<ModuleInfo, String> {
        let m = Module::parse(bytes).map_err(|e| format!("not a module: {e}"))?;
        let info = m.info;
        // The region of whichever memory map the module belongs to (it may be a newer or
        // older map than the one installed now).
        let bounds = match m.region {
            modflash_module::RegionCheck::InRegion { bounds, .. } => bounds,
            _ => self.layout().main_bounds(info.slot()).ok_or_else(|| {
                format!(
                    "the {} has no region for a {}",
                    self.platform.display_name,
                    info.slot()
                )
            })?,
        };
        let data = if info
            .flags
            .contains(modflash_module::ModuleFlags::DROP_MODULE_INFO)
        {
            &m.bytes[ModuleInfo::SIZE..]
        } else {
            m.bytes
        };
        let address = if bounds.contains_range(info.start_address, info.end_address) {
            info.start_address
        } else {
            bounds.start
        };
        self.write_raw(Space::of(bounds.location), address, data)
            .map_err(|e| e.to_string())?;
        Ok(info)
    }

    /// Writes an application image raw into the factory slot.
    pub fn install_factory_app(&mut self, bytes: &[u8]) -> Result<(), String> {
        let factory = self.layout().factory_bounds().ok_or_else(|| {
            format!(
                "the {} has no factory-reset slot",
                self.platform.display_name
            )
        })?;
        self.write_raw(Space::of(factory.location), factory.start, bytes)
            .map_err(|e| e.to_string())
    }

    /// Writes an application image raw into the user slot (even a wrong one: the virtual
    /// device must be able to reproduce users' mistakes).
    pub fn install_user_app(&mut self, bytes: &[u8]) -> Result<(), String> {
        let user = self.user_bounds().ok_or("no user region")?;
        let address = match Module::parse(bytes) {
            Ok(m) if user.fixed_end => m.info.start_address,
            _ if user.fixed_end => user.end - bytes.len() as u32,
            _ => user.start,
        };
        self.write_raw(Space::of(user.location), address, bytes)
            .map_err(|e| e.to_string())
    }

    /// Installs every module of a known release (synthetic images with the real headers),
    /// the release's Tinker as the application unless `with_app` is false.
    pub fn install_release(&mut self, release: &str, with_app: bool) -> Result<(), String> {
        let pr = platform_release(self.platform, release).ok_or_else(|| {
            let known: Vec<&str> = platform_releases(self.platform)
                .map(|r| r.release)
                .collect();
            format!(
                "no module table for Device OS {release} on the {}; known: {}",
                self.platform.display_name,
                known.join(", ")
            )
        })?;
        for m in pr.modules_for(self.platform) {
            if !with_app && matches!(m.function, ModuleFunction::UserPart) {
                continue;
            }
            let bytes = synthesize(self.platform, &m);
            self.install_module(&bytes)?;
        }
        Ok(())
    }

    // ---- boot ---------------------------------------------------------------------------

    /// Applies power (after a cut or at creation) and boots.
    pub fn power_on(&mut self) {
        self.flash.power_on();
        self.event("power on");
        self.boot(ResetReason::PowerOn, None);
    }

    /// Resets the device, optionally with the SETUP/MODE button held for `hold_seconds`.
    pub fn reset(&mut self, reason: ResetReason, hold_seconds: Option<f32>) {
        if self.state.mode == Mode::Off {
            self.flash.power_on();
        }
        self.boot(reason, hold_seconds);
    }

    /// Runs the bootloader and the system start until the device settles in a mode.
    pub fn boot(&mut self, reason: ResetReason, hold_seconds: Option<f32>) {
        self.ota_length = None;
        self.dfu.reset();
        let mut reason = reason;
        let mut hold = hold_seconds;
        for _ in 0..MAX_BOOT_STEPS {
            self.state.reset_reason = reason;
            match self.boot_once(hold.take()) {
                Ok(None) => return,
                Ok(Some(next)) => reason = next,
                Err(FlashError::PowerLost) => {
                    self.set_mode(Mode::Off, Led::new(Color::Off, Pattern::Solid));
                    self.event("power lost");
                    return;
                }
                Err(e) => {
                    self.event(format!("flash error: {e}; entering DFU mode"));
                    self.enter_dfu();
                    return;
                }
            }
        }
        // A real device keeps resetting; report the loop.
        self.set_mode(Mode::Panic, Led::new(Color::Red, Pattern::Sos));
        self.event("the device keeps resetting (hold SETUP for 3 s to enter DFU mode)");
    }

    fn enter_dfu(&mut self) {
        self.set_mode(Mode::Dfu, Led::new(Color::Yellow, Pattern::Blinking));
        self.state.running_mode = Mode::Dfu;
    }

    /// One pass through bootloader and system. `Ok(Some(reason))` = the device reset.
    fn boot_once(&mut self, hold: Option<f32>) -> Result<Option<ResetReason>, FlashError> {
        // ---- bootloader (spec §6.1) ----
        let mut safe_mode = false;
        let mut factory_reset = std::mem::take(&mut self.state.factory_reset_requested);
        match self.state.boot_request.take() {
            Some(BootRequest::Dfu) => {
                self.event("bootloader: DFU mode requested");
                self.enter_dfu();
                return Ok(None);
            }
            Some(BootRequest::SafeMode) => safe_mode = true,
            None => {}
        }
        if self.watchdog_enabled() {
            match self.state.watchdog_retries {
                0 | 1 => {}
                2 => {
                    self.event("bootloader: second failed start, trying a factory reset");
                    factory_reset = true;
                }
                _ => {
                    self.state.watchdog_retries = 0;
                    self.event("bootloader: third failed start, entering DFU mode");
                    self.enter_dfu();
                    return Ok(None);
                }
            }
        }
        match hold {
            Some(s) if s >= 10.0 => {
                self.event("bootloader: button held 10 s: settings reset (blinking white), then factory reset");
                factory_reset = true;
            }
            Some(s) if s >= 6.5 => {
                self.event("bootloader: button held 6.5 s: factory reset (blinking green fast)");
                factory_reset = true;
            }
            Some(s) if s >= 3.0 => {
                self.event("bootloader: button held 3 s: DFU mode (blinking yellow)");
                self.enter_dfu();
                return Ok(None);
            }
            Some(s) if s >= 1.0 => {
                self.event("bootloader: button held 1 s: safe mode requested");
                safe_mode = true;
            }
            _ => {}
        }
        if factory_reset {
            match self.restore_factory_app()? {
                Ok(()) => return Ok(Some(ResetReason::FactoryReset)),
                Err(why) => {
                    self.event(format!("bootloader: factory reset failed: {why}"));
                    if self.system_start_header().is_err() {
                        self.enter_dfu();
                        return Ok(None);
                    }
                }
            }
        }
        self.apply_pending_copies()?;
        if let Err(why) = self.system_start_header() {
            self.event(format!(
                "bootloader: solid red: no valid system firmware ({why}); entering DFU mode"
            ));
            self.enter_dfu();
            return Ok(None);
        }
        // ---- system (spec §6.2 / §6.3) ----
        self.system_start(safe_mode)
    }

    /// The watchdog retry path exists with bootloaders of the 0.7.0 line and later.
    fn watchdog_enabled(&self) -> bool {
        rules::bootloader_from_070(&self.hal())
            || self.platform.family != Some(Family::Photon)
                && self.platform.family != Some(Family::Electron)
    }

    /// `is_application_valid`: the bootloader's check of system part 1 (or mono firmware).
    /// Gen2 checks the header only; Gen3 and RTL872x also check the CRC.
    fn system_start_header(&self) -> Result<ModuleInfo, String> {
        let layout = self.layout();
        let hal = self.hal();
        let first = layout
            .main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1))
            .or_else(|| layout.main_bounds(ModuleRef::new(ModuleFunction::MonoFirmware, 0)))
            .ok_or("no system region")?;
        let (info, address) = hal
            .read_info(first)
            .ok_or("the system region is unreadable")?;
        if info.start_address != first.start || info.platform_id != self.platform.id {
            return Err(format!(
                "the header at {:#010x} is not a {} for this device",
                first.start,
                first.slot()
            ));
        }
        if info.end_address > first.end || info.end_address < info.start_address {
            return Err(format!("the {} ends outside its region", first.slot()));
        }
        let crc_checked = !matches!(
            self.platform.family,
            Some(Family::Photon) | Some(Family::Electron)
        );
        if crc_checked && !hal.integrity_ok(Space::of(first.location), address, &info) {
            return Err(format!("the {} fails its CRC check", first.slot()));
        }
        Ok(info)
    }

    /// Restores the factory application per DCT slot 0 (or the built-in default), with the
    /// CRC, function and destination checks. Outer error = power lost.
    fn restore_factory_app(&mut self) -> Result<Result<(), String>, FlashError> {
        let Some((slot, _)) = self.factory_slot() else {
            return Ok(Err("this platform has no factory-reset image".into()));
        };
        self.set_mode(Mode::Off, Led::new(Color::Green, Pattern::BlinkingFast));
        match self.copy_module(&slot)? {
            Ok(info) => {
                self.event(format!(
                    "bootloader: blinking green fast: restored the factory app (user part version {})",
                    info.version
                ));
                Ok(Ok(()))
            }
            Err(why) => Ok(Err(why)),
        }
    }

    /// `FLASH_UpdateModules`: copies every pending DCT slot (1–4) and frees it.
    fn apply_pending_copies(&mut self) -> Result<(), FlashError> {
        let loc = self.dct_location();
        for i in 1..dct::MAX_MODULE_SLOTS {
            let slot = dct_store::slot(&self.dct(), i);
            if slot.magic != dct::SLOT_PENDING {
                continue;
            }
            self.set_mode(Mode::Off, Led::new(Color::Magenta, Pattern::BlinkingFast));
            let outcome = self.copy_module(&slot)?;
            match outcome {
                Ok(info) => self.event(format!(
                    "bootloader: blinking magenta fast: installed {} version {} at {:#010x}",
                    info.slot(),
                    info.version,
                    slot.destination
                )),
                Err(why) => self.event(format!("bootloader: pending update refused: {why}")),
            }
            // The slot is freed after the copy, so a power cut mid-copy repeats it.
            dct_store::write_slot(&mut self.flash, &loc, i, &ModuleSlot::FREE)
                .map_err(dct_flash)?;
        }
        Ok(())
    }

    /// `FLASH_CopyMemory` with its checks (spec §5.5). Outer error = power lost; inner error
    /// = the copy was refused and nothing was erased.
    fn copy_module(&mut self, slot: &ModuleSlot) -> Result<Result<ModuleInfo, String>, FlashError> {
        let src_space = if slot.source_device == 0 {
            Space::Internal
        } else {
            Space::External
        };
        let dst_space = if slot.destination_device == 0 {
            Space::Internal
        } else {
            Space::External
        };
        let Some(head) = self.flash.read(src_space, slot.source, 0x200) else {
            return Ok(Err(format!(
                "source {:#010x} is outside flash",
                slot.source
            )));
        };
        let offset = modflash_module::parse::device_header_offset(self.platform.mcu, head);
        let Some(raw) = self
            .flash
            .read(src_space, slot.source + offset as u32, ModuleInfo::SIZE)
        else {
            return Ok(Err("the source header is outside flash".into()));
        };
        let info = ModuleInfo::from_bytes(raw.try_into().expect("24 bytes"));
        let verify = slot.flags
            & (slot_flags::VERIFY_CRC
                | slot_flags::VERIFY_FUNCTION
                | slot_flags::VERIFY_DESTINATION)
            != 0;
        let Some(length) = info
            .module_length()
            .filter(|&l| l as usize + 4 <= slot.length as usize)
        else {
            return Ok(Err(format!(
                "the {} header at {:#010x} is invalid or longer than the slot",
                ModuleRef::new(ModuleFunction::from_u8(slot.function), 0)
                    .function
                    .describe(),
                slot.source
            )));
        };
        if verify {
            if info.platform_id != self.platform.id && info.function != ModuleFunction::Resource {
                return Ok(Err(format!(
                    "platform {}, expected {}",
                    info.platform_id, self.platform.id
                )));
            }
            if slot.flags & slot_flags::VERIFY_FUNCTION != 0
                && info.function.to_u8() != slot.function
            {
                return Ok(Err(format!(
                    "it is a {}, the slot expects a {}",
                    info.function.describe(),
                    ModuleFunction::from_u8(slot.function).describe()
                )));
            }
            if slot.flags & slot_flags::VERIFY_DESTINATION != 0
                && info.start_address != slot.destination
            {
                return Ok(Err(format!(
                    "it starts at {:#010x}, the destination is {:#010x}",
                    info.start_address, slot.destination
                )));
            }
            if slot.flags & slot_flags::VERIFY_CRC != 0
                && !self.hal().integrity_ok(src_space, slot.source, &info)
            {
                return Ok(Err("its CRC does not match".into()));
            }
        }
        let total = length as usize + 4;
        let image = self
            .flash
            .read(src_space, slot.source, total)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let drop_info = slot.flags & slot_flags::DROP_MODULE_INFO != 0
            || info
                .flags
                .contains(modflash_module::ModuleFlags::DROP_MODULE_INFO);
        let data = if info
            .flags
            .contains(modflash_module::ModuleFlags::COMPRESSED)
        {
            match modflash_module::edit::decompress(&image) {
                Ok(inflated) if drop_info => inflated
                    .get(ModuleInfo::SIZE..)
                    .unwrap_or_default()
                    .to_vec(),
                Ok(inflated) => inflated,
                Err(e) => return Ok(Err(format!("cannot inflate: {e}"))),
            }
        } else if drop_info {
            image[ModuleInfo::SIZE.min(image.len())..].to_vec()
        } else {
            image
        };
        self.flash
            .write(dst_space, slot.destination, &data, COPY_CHUNK)?;
        Ok(Ok(info))
    }

    /// The system firmware's start: can it run, module checks, user app, pending bootloader.
    fn system_start(&mut self, safe_requested: bool) -> Result<Option<ResetReason>, FlashError> {
        if let Err(why) = self.system_runnable() {
            return Ok(Some(self.panic(&why)));
        }
        self.state.watchdog_retries = 0;
        self.update_embedded_bootloader()?;
        self.register_factory_slot()?;
        let modules = self.validate_system_modules();
        // Step 5: a bootloader staged in the OTA region over DFU (DCT flag 0xA5).
        if self.dct().get(dct::OTA_UPDATE_FLAG) == Some(&dct::OTA_UPDATE_PENDING) {
            let loc = self.dct_location();
            dct_store::write(&mut self.flash, &loc, dct::OTA_UPDATE_FLAG, &[0xFF])
                .map_err(dct_flash)?;
            self.event("system: OTA flag 0xA5 set: applying the image in the OTA region");
            match self.ota_finish() {
                Ok(_) => return Ok(Some(ResetReason::Update)),
                Err(OtaError::PowerLost) => return Err(FlashError::PowerLost),
                Err(e) => self.event(format!("system: the staged image was refused: {e}")),
            }
        }
        if let Err(why) = modules {
            self.event(format!("system: safe mode: {why}"));
            return Ok(self.settle(Mode::SafeMode));
        }
        if safe_requested {
            self.event("system: safe mode: requested at boot");
            return Ok(self.settle(Mode::SafeMode));
        }
        match self.validate_user_app() {
            UserApp::Valid(info) => {
                self.event(format!(
                    "system: breathing cyan: running the application (user part version {})",
                    info.version
                ));
                Ok(self.settle(Mode::App))
            }
            UserApp::FactoryReset(why) => {
                self.event(format!("system: restoring the factory app: {why}"));
                self.state.factory_reset_requested = true;
                Ok(Some(ResetReason::FactoryReset))
            }
            UserApp::Invalid(why) => {
                self.event(format!("system: safe mode: {why}"));
                Ok(self.settle(Mode::SafeMode))
            }
            UserApp::Missing => {
                self.event("system: no application installed");
                Ok(self.settle(Mode::NoApp))
            }
        }
    }

    fn settle(&mut self, mode: Mode) -> Option<ResetReason> {
        let led = match mode {
            Mode::App => Led::new(Color::Cyan, Pattern::Breathing),
            _ => Led::new(Color::Magenta, Pattern::Breathing),
        };
        self.set_mode(mode, led);
        self.state.running_mode = mode;
        None
    }

    fn panic(&mut self, why: &str) -> ResetReason {
        self.set_mode(Mode::Panic, Led::new(Color::Red, Pattern::Sos));
        if self.watchdog_enabled() {
            self.state.watchdog_retries = self.state.watchdog_retries.saturating_add(1);
            self.event(format!(
                "system: red SOS: {why}; the watchdog resets the device"
            ));
            ResetReason::Watchdog
        } else {
            self.event(format!("system: red SOS: {why}; the device resets"));
            ResetReason::Panic
        }
    }

    /// Whether the system firmware can start at all ([`rules::system_runnable`]); the reason
    /// in words when it cannot.
    fn system_runnable(&self) -> Result<(), String> {
        let hal = self.hal();
        rules::system_runnable(&hal, self.platform, hal.layout).map_err(|why| match why {
            NotRunnable::Missing(region) => format!("the {} is missing", region.slot()),
            NotRunnable::Other { region, found } => format!(
                "the {} at {:#010x} is corrupt (it holds a {found})",
                region.slot(),
                region.start
            ),
            NotRunnable::Corrupt {
                region,
                platform,
                integrity,
            } => {
                let failed = if platform { flags::PLATFORM } else { 0 }
                    | if integrity { flags::INTEGRITY } else { 0 };
                format!(
                    "the {} at {:#010x} is corrupt ({} failed)",
                    region.slot(),
                    region.start,
                    describe_flags(failed)
                )
            }
        })
    }

    /// `HAL_Core_Validate_Modules`: bootloader and the last system part (Gen2 part 2; Gen3
    /// part 1) must pass integrity, range, platform and dependencies. Skipped on Electron.
    fn validate_system_modules(&self) -> Result<(), String> {
        if matches!(
            self.platform.family,
            Some(Family::Electron) | Some(Family::Core)
        ) {
            return Ok(());
        }
        let hal = self.hal();
        let check = |slot: ModuleRef| -> Result<(), String> {
            let Some(b) = hal.layout.main_bounds(slot) else {
                return Ok(());
            };
            let f = hal.fetch(b, false, flags::INTEGRITY);
            if f.is_valid() {
                return Ok(());
            }
            Err(match f.unmet {
                Some(u) if f.failed() == flags::DEPENDENCIES => u.to_string(),
                _ => format!("the {} failed {}", slot, describe_flags(f.failed())),
            })
        };
        check(ModuleRef::new(ModuleFunction::Bootloader, 0))?;
        let last_part = hal
            .layout
            .bounds
            .iter()
            .filter(|b| b.function == ModuleFunction::SystemPart && b.store == Store::Main)
            .map(|b| b.index)
            .max()
            .unwrap_or(1);
        check(ModuleRef::new(ModuleFunction::SystemPart, last_part))
    }

    /// `HAL_Core_Validate_User_Module` (spec §6.2 step 3, §6.3).
    fn validate_user_app(&self) -> UserApp {
        let hal = self.hal();
        let layout = hal.layout;
        // ≥ 3.1 Gen3: the legacy 128 KB slot (index 1) wins when it holds a valid app.
        let mut users: Vec<&'static ModuleBounds> = layout
            .bounds
            .iter()
            .filter(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
            .collect();
        users.sort_by_key(|b| b.index);
        let Some(primary) = users.last().copied() else {
            return UserApp::Missing;
        };
        for b in &users {
            if b.index != primary.index {
                let f = hal.fetch(b, false, flags::INTEGRITY);
                if f.is_valid() {
                    return UserApp::Valid(f.info.expect("valid has info"));
                }
            }
        }
        let f = hal.fetch(primary, false, flags::INTEGRITY);
        let header = if primary.fixed_end {
            match hal.read_info(primary) {
                Some((info, _)) if info.platform_id == self.platform.id => Ok(info),
                Some((info, _)) => Err(format!(
                    "platform {}, expected {}",
                    info.platform_id, self.platform.id
                )),
                None => Err("no module found at the end of the user region".into()),
            }
        } else {
            hal.user_header_valid(Space::of(primary.location), primary.start)
        };
        match header {
            Ok(_) => {
                if f.is_valid() {
                    UserApp::Valid(f.info.expect("valid has info"))
                } else if f.failed() & flags::INTEGRITY != 0 {
                    UserApp::Invalid("the application fails its CRC check".into())
                } else if let Some(u) = f.unmet {
                    UserApp::Invalid(u.to_string())
                } else {
                    UserApp::Invalid(format!(
                        "the application failed {}",
                        describe_flags(f.failed())
                    ))
                }
            }
            Err(why) => {
                let erased = self
                    .flash
                    .read(Space::of(primary.location), primary.lowest_start(), 4)
                    .is_some_and(|b| b == [0xFF; 4])
                    && !primary.fixed_end;
                let what = self.describe_slot_content(primary);
                match self.factory_app_valid() {
                    true => UserApp::FactoryReset(if erased {
                        "the user part is empty".into()
                    } else {
                        format!("the user part header is invalid ({why}){what}")
                    }),
                    false if erased || primary.fixed_end && hal.read_info(primary).is_none() => {
                        UserApp::Missing
                    }
                    false => {
                        UserApp::Invalid(format!("the user part header is invalid ({why}){what}"))
                    }
                }
            }
        }
    }

    /// "; the slot holds a Core monolithic image (platform 0)" when the bytes parse as a module.
    fn describe_slot_content(&self, b: &ModuleBounds) -> String {
        let Some(bytes) =
            self.flash
                .read(Space::of(b.location), b.lowest_start(), b.max_size as usize)
        else {
            return String::new();
        };
        // Trim the erased tail so the size check can succeed.
        let used = bytes.iter().rposition(|&x| x != 0xFF).map_or(0, |p| p + 1);
        match Module::parse(&bytes[..used]) {
            Ok(m) => format!(
                "; the slot holds a {} image (platform {}, {})",
                modflash_module::platform(m.info.platform_id).map_or("foreign", |p| p.display_name),
                m.info.platform_id,
                m.info.function.describe()
            ),
            Err(_) => String::new(),
        }
    }

    /// The running application's region (index 2 on Gen3 from 3.1, else 1).
    fn user_bounds(&self) -> Option<&'static ModuleBounds> {
        self.layout()
            .bounds
            .iter()
            .find(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
    }

    /// DCT slot 0: the factory-reset copy (factory image → application region, with the CRC,
    /// function and destination checks), and the factory region; None without a factory image.
    fn factory_slot(&self) -> Option<(ModuleSlot, &'static ModuleBounds)> {
        let factory = self.layout().factory_bounds()?;
        let user = self.user_bounds()?;
        let slot = ModuleSlot {
            magic: dct::SLOT_FACTORY,
            source_device: u8::from(
                factory.location != modflash_module::platform::Location::Internal,
            ),
            destination_device: 0,
            source: factory.start,
            destination: user.start,
            length: factory.max_size,
            flags: slot_flags::VERIFY_CRC
                | slot_flags::VERIFY_FUNCTION
                | slot_flags::VERIFY_DESTINATION,
            function: ModuleFunction::UserPart.to_u8(),
        };
        Some((slot, factory))
    }

    fn factory_app_valid(&self) -> bool {
        let Some((slot, factory)) = self.factory_slot() else {
            return false;
        };
        let Some(raw) =
            self.flash
                .read(Space::of(factory.location), factory.start, ModuleInfo::SIZE)
        else {
            return false;
        };
        let info = ModuleInfo::from_bytes(raw.try_into().expect("24 bytes"));
        info.start_address == slot.destination
            && info.platform_id == self.platform.id
            && info.function == ModuleFunction::UserPart
    }

    /// `HAL_Core_Config`: slot 0 describes the factory-reset copy (written only when it
    /// changes).
    fn register_factory_slot(&mut self) -> Result<(), FlashError> {
        let Some((slot, _)) = self.factory_slot() else {
            return Ok(());
        };
        let loc = self.dct_location();
        dct_store::write_slot(&mut self.flash, &loc, 0, &slot).map_err(dct_flash)
    }

    /// Electron system firmware carries a bootloader image and installs it when the installed
    /// bootloader is older ([`rules::embedded_bootloader_update`]).
    fn update_embedded_bootloader(&mut self) -> Result<(), FlashError> {
        let Some(update) = rules::embedded_bootloader_update(&self.hal(), self.platform) else {
            return Ok(());
        };
        let image = synthesize(self.platform, &update.module);
        self.flash
            .write(Space::Internal, update.module.start, &image, COPY_CHUNK)?;
        self.event(format!(
            "system: updated the bootloader from version {} to {} (image carried by the system firmware)",
            update.installed, update.version
        ));
        Ok(())
    }

    // ---- OTA (spec §7.1) ----------------------------------------------------------------

    /// The OTA staging region.
    pub fn ota_region(&self) -> ModuleBounds {
        self.layout().ota
    }

    /// `HAL_FLASH_Begin`: frees pending slots and erases `len` bytes of the OTA region.
    pub fn ota_begin(&mut self, len: usize) -> Result<(), OtaError> {
        let ota = self.ota_region();
        rules::ota_fits(self.layout(), len).map_err(OtaError::Refused)?;
        let loc = self.dct_location();
        for i in 1..dct::MAX_MODULE_SLOTS {
            if dct_store::slot(&self.dct(), i).magic == dct::SLOT_PENDING {
                dct_store::write_slot(&mut self.flash, &loc, i, &ModuleSlot::FREE)
                    .map_err(|_| OtaError::PowerLost)?;
            }
        }
        self.flash
            .erase_range(Space::of(ota.location), ota.start, len)?;
        self.state.led = Led::new(Color::Magenta, Pattern::BlinkingFast);
        self.event(format!(
            "system: blinking magenta fast: receiving a {len}-byte update"
        ));
        self.ota_length = Some(len);
        Ok(())
    }

    /// `HAL_FLASH_Update`: programs a chunk at `offset` of the OTA region.
    pub fn ota_write(&mut self, offset: usize, data: &[u8]) -> Result<(), OtaError> {
        let len = self.ota_length.ok_or(OtaError::NotStarted)?;
        let ota = self.ota_region();
        let end = offset + data.len();
        rules::ota_fits(self.layout(), end).map_err(OtaError::Refused)?;
        if offset > len {
            return Err(OtaError::Refused(OtaRefusal::TooLarge {
                len: end,
                max: ota.max_size,
            }));
        }
        self.flash
            .program(Space::of(ota.location), ota.start + offset as u32, data)?;
        Ok(())
    }

    /// `HAL_FLASH_End`: validates the staged module ([`rules::ota_accepts`]: INTEGRITY |
    /// DEPENDENCIES_FULL, user dependencies optional); a bootloader is copied at once,
    /// anything else is queued for the bootloader. The caller resets the device afterwards.
    pub fn ota_finish(&mut self) -> Result<OtaOutcome, OtaError> {
        self.ota_length = None;
        let ota: &'static ModuleBounds = &self.layout().ota;
        let hal = self.hal();
        let not_found = OtaError::Refused(OtaRefusal::NotFound);
        let (info, address) = hal.read_info(ota).ok_or(not_found)?;
        let intact = hal.integrity_ok(Space::of(ota.location), address, &info);
        rules::ota_accepts(&hal, hal.layout, self.platform.id, &info, intact)
            .map_err(OtaError::Refused)?;
        let target = hal.layout.main_bounds(info.slot()).ok_or(not_found)?;
        let mut copy_flags =
            slot_flags::VERIFY_CRC | slot_flags::VERIFY_DESTINATION | slot_flags::VERIFY_FUNCTION;
        if info
            .flags
            .contains(modflash_module::ModuleFlags::DROP_MODULE_INFO)
        {
            copy_flags |= slot_flags::DROP_MODULE_INFO;
        }
        if info
            .flags
            .contains(modflash_module::ModuleFlags::COMPRESSED)
        {
            copy_flags |= slot_flags::COMPRESSED;
        }
        let slot = ModuleSlot {
            magic: dct::SLOT_PENDING,
            source_device: u8::from(ota.location != modflash_module::platform::Location::Internal),
            destination_device: u8::from(
                target.location != modflash_module::platform::Location::Internal,
            ),
            source: ota.start,
            destination: info.start_address,
            length: info.module_length().unwrap_or(0) + 4,
            flags: copy_flags,
            function: info.function.to_u8(),
        };
        if info.function == ModuleFunction::Bootloader {
            match self.copy_module(&slot)? {
                Ok(_) => {
                    self.event(format!(
                        "system: installed bootloader version {}",
                        info.version
                    ));
                    return Ok(OtaOutcome::Applied);
                }
                Err(why) => {
                    self.event(format!("system: bootloader update refused: {why}"));
                    return Err(OtaError::Refused(OtaRefusal::Integrity));
                }
            }
        }
        let loc = self.dct_location();
        let free = (1..dct::MAX_MODULE_SLOTS)
            .find(|&i| dct_store::slot(&self.dct(), i).magic != dct::SLOT_PENDING)
            .unwrap_or(1);
        dct_store::write_slot(&mut self.flash, &loc, free, &slot)
            .map_err(|_| OtaError::PowerLost)?;
        self.event(format!(
            "system: {} version {} validated; it will be installed at the next reset",
            info.slot(),
            info.version
        ));
        Ok(OtaOutcome::PendingRestart)
    }

    // ---- requests from the outside --------------------------------------------------------

    /// Asks the bootloader for DFU mode and resets (the 14400-baud trick, `System.dfu()`).
    pub fn request_dfu(&mut self) {
        self.state.boot_request = Some(BootRequest::Dfu);
        self.reset(ResetReason::User, None);
    }

    /// Enters listening mode (the 28800-baud trick or a 3 s button hold while running).
    pub fn enter_listening(&mut self) -> bool {
        if !matches!(
            self.state.mode,
            Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
        ) {
            return false;
        }
        if self.state.mode != Mode::Listening {
            self.state.running_mode = self.state.mode;
            self.event("system: blinking blue: listening mode");
        }
        self.set_mode(Mode::Listening, Led::new(Color::Blue, Pattern::Blinking));
        true
    }

    /// Leaves listening mode back to what the system was doing.
    pub fn exit_listening(&mut self) {
        if self.state.mode == Mode::Listening {
            let mode = self.state.running_mode;
            self.settle(mode);
            self.event("system: left listening mode");
        }
    }
}

enum UserApp {
    Valid(ModuleInfo),
    FactoryReset(String),
    Invalid(String),
    Missing,
}

/// The system's own DCT writes use fixed, in-range offsets: only a flash failure can occur.
fn dct_flash(e: dct_store::DctError) -> FlashError {
    match e {
        dct_store::DctError::Flash(f) => f,
        dct_store::DctError::OutOfRange { offset, len } => FlashError::OutOfBounds {
            space: Space::Internal,
            address: offset as u32,
            len,
        },
    }
}
