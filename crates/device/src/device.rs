//! The virtual device: flash + DCT + the bootloader's and system firmware's module handling
//! (spec §6, §7), with an observable mode, LED, reset reason and event log. This file holds
//! the [`Device`] itself, its construction, provisioning and accessors; the boot sequence,
//! module copies, validation and OTA live beside it.

use modflash_module::platform::{dct, Layout, ModuleBounds, Platform, Store};
use modflash_module::release::platform_release;
use modflash_module::synth::synthesize;
use modflash_module::{Module, ModuleFunction, ModuleInfo, ModuleRef};

use crate::boot::dct_flash;
use crate::dct::{self as dct_store, DctLocation};
use crate::error::DeviceError;
use crate::event::DeviceEvent;
use crate::flash::{FlashChip, FlashError, FlashStats, Space};
use crate::hal::{Fetched, Hal};
use crate::state::{BootRequest, Color, DeviceState, Led, Mode, Pattern, ResetReason};

/// How many events the log keeps.
const EVENT_LOG_LIMIT: usize = 400;
/// Chunk size of bootloader copies (one program operation each).
pub(crate) const COPY_CHUNK: usize = 4096;

/// The virtual device.
#[derive(Clone, Debug)]
pub struct Device {
    pub(crate) platform: &'static Platform,
    pub(crate) flash: FlashChip,
    /// Saved state.
    pub state: DeviceState,
    /// Bytes announced by `ota_begin`, while an OTA update is being received.
    pub(crate) ota_length: Option<usize>,
    /// The bootloader's USB DFU session (RAM only; reset at every boot).
    pub(crate) dfu: crate::dfuse::DfuSession,
    /// The firmware's USB control requests (RAM only; reset at every boot).
    pub(crate) control: crate::control::ControlSession,
}

impl Device {
    /// A blank device (erased flash) of `platform`, powered off.
    pub fn blank(platform: &'static Platform, device_id: [u8; 12]) -> Result<Self, DeviceError> {
        let layout = platform
            .layout_for(None)
            .ok_or(DeviceError::NoMemoryMap(platform.display_name))?;
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
                settings_reset_requested: false,
                watchdog_retries: 0,
                control_transfers: 0,
                flash_stats: FlashStats::default(),
                power_cut_at: None,
                security_override: false,
                assets: Vec::new(),
            },
            ota_length: None,
            dfu: crate::dfuse::DfuSession::default(),
            control: crate::control::ControlSession::default(),
        };
        let loc = device.dct_location();
        let mut id = device_id.to_vec();
        id.resize(12, 0);
        dct_store::write(&mut device.flash, &loc, dct::DEVICE_ID, &id).map_err(dct_flash)?;
        Ok(device)
    }

    /// Rebuilds a device from saved state and flash images (internal, then external).
    pub fn restore(
        state: DeviceState,
        internal: Vec<u8>,
        external: Option<Vec<u8>>,
    ) -> Result<Self, DeviceError> {
        let platform = modflash_module::platform(state.platform_id)
            .ok_or(DeviceError::UnknownPlatform(state.platform_id))?;
        let layout = platform
            .layout_for(None)
            .ok_or(DeviceError::NoMemoryMap(platform.display_name))?;
        let mut flash = FlashChip::new(layout, platform.mcu);
        let images = [
            (Space::Internal, Some(internal)),
            (Space::External, external),
        ];
        for (space, image) in images {
            if let Some(image) = image {
                flash
                    .load(space, image)
                    .map_err(|source| DeviceError::Image { space, source })?;
            }
        }
        flash.set_stats(state.flash_stats);
        flash.arm_power_cut_at(state.power_cut_at);
        Ok(Self {
            platform,
            flash,
            state,
            ota_length: None,
            dfu: crate::dfuse::DfuSession::default(),
            control: crate::control::ControlSession::default(),
        })
    }

    /// State and flash images to save.
    pub fn snapshot(&self) -> (DeviceState, Vec<u8>, Option<Vec<u8>>) {
        let mut state = self.state.clone();
        state.flash_stats = self.flash.stats();
        state.power_cut_at = self.flash.power_cut_at();
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

    /// The Device OS release the system firmware is, when every system part is valid and of
    /// one known release; `None` for no, damaged, mixed or unknown system firmware (see
    /// [`Device::system_words`]).
    pub fn device_os(&self) -> Option<&'static str> {
        let parts: Vec<Fetched> = self
            .system_info()
            .into_iter()
            .filter(|f| f.bounds.function == ModuleFunction::SystemPart)
            .collect();
        let first = parts.first()?.info?.version;
        parts
            .iter()
            .all(|f| f.is_valid() && f.info.is_some_and(|i| i.version == first))
            .then(|| modflash_module::release::release_name(first))
            .flatten()
    }

    /// The system firmware in words: "Device OS 1.5.0", or each system part when they are not
    /// one valid release ("system part 1 1502 (damaged), system part 2 17 (0.5.2)").
    pub fn system_words(&self) -> String {
        if let Some(release) = self.device_os() {
            return format!("Device OS {release}");
        }
        let parts: Vec<String> = self
            .system_info()
            .into_iter()
            .filter(|f| f.bounds.function == ModuleFunction::SystemPart)
            .map(|f| {
                let slot = format!("system part {}", f.bounds.index);
                let Some(info) = f.info else {
                    return format!("{slot} missing");
                };
                let release = modflash_module::release::release_name(info.version);
                let mut notes: Vec<String> = release.map(str::to_string).into_iter().collect();
                match (f.is_valid(), f.unmet) {
                    (true, _) => {}
                    (false, Some(unmet)) => notes.push(format!(
                        "needs {} ≥ {}",
                        modflash_module::ModuleRef::new(
                            unmet.required.function,
                            unmet.required.index
                        ),
                        unmet.required.version
                    )),
                    (false, None) => notes.push("damaged".into()),
                }
                match notes.as_slice() {
                    [] => format!("{slot} {}", info.version),
                    _ => format!("{slot} {} ({})", info.version, notes.join(", ")),
                }
            })
            .collect();
        if parts.is_empty() {
            "no system firmware".into()
        } else {
            parts.join(", ")
        }
    }

    /// Total modelled time and flash counters.
    pub fn flash_stats(&self) -> FlashStats {
        self.flash.stats()
    }

    /// Appends to the event log (which keeps the newest 400).
    pub fn event(&mut self, event: DeviceEvent) {
        self.state.events.push(event);
        let excess = self.state.events.len().saturating_sub(EVENT_LOG_LIMIT);
        self.state.events.drain(..excess);
    }

    pub(crate) fn set_mode(&mut self, mode: Mode, led: Led) {
        self.state.mode = mode;
        self.state.led = led;
    }

    /// The LED the current mode shows when nothing overrides it (an update in progress does).
    pub(crate) fn mode_led(&self) -> Led {
        match self.state.mode {
            Mode::Dfu => Led::new(Color::Yellow, Pattern::Blinking),
            Mode::Listening => Led::new(Color::Blue, Pattern::Blinking),
            Mode::Panic => Led::new(Color::Red, Pattern::Sos),
            Mode::Off => Led::new(Color::Off, Pattern::Solid),
            mode => settled_led(mode),
        }
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
    pub fn install_module(&mut self, bytes: &[u8]) -> Result<ModuleInfo, DeviceError> {
        let m = Module::parse(bytes).map_err(DeviceError::NotAModule)?;
        let info = m.info;
        // The region of whichever memory map the module belongs to (it may be a newer or
        // older map than the one installed now).
        let bounds = match m.region {
            modflash_module::RegionCheck::InRegion { bounds, .. } => bounds,
            _ => self
                .layout()
                .main_bounds(info.slot())
                .ok_or(DeviceError::NoRegion {
                    platform: self.platform.display_name,
                    module: info.slot(),
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
        self.write_raw(Space::of(bounds.location), address, data)?;
        Ok(info)
    }

    /// Writes an application image raw into the factory slot.
    pub fn install_factory_app(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        let factory = self
            .layout()
            .factory_bounds()
            .ok_or(DeviceError::NoFactorySlot(self.platform.display_name))?;
        Ok(self.write_raw(Space::of(factory.location), factory.start, bytes)?)
    }

    /// Writes an application image raw into the user slot (even a wrong one: the virtual
    /// device must be able to reproduce users' mistakes).
    pub fn install_user_app(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        let user = self
            .user_bounds()
            .ok_or(DeviceError::NoUserRegion(self.platform.display_name))?;
        let address = match Module::parse(bytes) {
            Ok(m) if user.fixed_end => m.info.start_address,
            _ if user.fixed_end => user.end.saturating_sub(bytes.len() as u32),
            _ => user.start,
        };
        Ok(self.write_raw(Space::of(user.location), address, bytes)?)
    }

    /// Installs every module of a known release (synthetic images with the real headers),
    /// the release's Tinker as the application unless `with_app` is false.
    pub fn install_release(&mut self, release: &str, with_app: bool) -> Result<(), DeviceError> {
        let pr = platform_release(self.platform, release).ok_or_else(|| {
            DeviceError::UnknownRelease {
                release: release.to_string(),
                platform: self.platform,
            }
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

    /// The running application's region (index 2 on Gen3 from 3.1, else 1).
    pub(crate) fn user_bounds(&self) -> Option<&'static ModuleBounds> {
        self.layout()
            .bounds
            .iter()
            .find(|b| b.function == ModuleFunction::UserPart && b.store == Store::Main)
    }

    // ---- requests from the outside --------------------------------------------------------

    /// Asks the bootloader for DFU mode and resets (the 14400-baud trick, `System.dfu()`).
    pub fn request_dfu(&mut self) {
        self.state.boot_request = Some(BootRequest::Dfu);
        self.reset(ResetReason::User, None);
    }

    /// Asks the bootloader for safe mode and resets (`System.enterSafeMode()`): the system
    /// starts without the application once.
    pub fn request_safe_mode(&mut self) {
        self.state.boot_request = Some(BootRequest::SafeMode);
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
            self.event(DeviceEvent::ListeningEntered);
        }
        self.set_mode(Mode::Listening, Led::new(Color::Blue, Pattern::Blinking));
        true
    }

    /// Leaves listening mode back to what the system was doing.
    pub fn exit_listening(&mut self) {
        if self.state.mode == Mode::Listening {
            let mode = self.state.running_mode;
            self.settle(mode);
            self.event(DeviceEvent::ListeningLeft);
        }
    }
}

/// The LED of a mode the system start settles in: breathing cyan for the application,
/// breathing magenta otherwise (safe mode, no application).
pub(crate) const fn settled_led(mode: Mode) -> Led {
    match mode {
        Mode::App => Led::new(Color::Cyan, Pattern::Breathing),
        _ => Led::new(Color::Magenta, Pattern::Breathing),
    }
}
