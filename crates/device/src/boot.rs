//! The boot sequence (spec §6): power on and reset, the bootloader's requests, button holds,
//! watchdog retries and factory reset, then the system start that settles in a mode.

use modflash_module::platform::{dct, Family};
use modflash_module::rules;
use modflash_module::synth::synthesize;

use crate::cause::{Crash, CrashCause, SafeModeCause};
use crate::dct as dct_store;
use crate::device::{Device, COPY_CHUNK};
use crate::event::{ButtonHold, DeviceEvent};
use crate::flash::{FlashError, Space};
use crate::ota::OtaError;
use crate::state::{BootRequest, Color, Led, Mode, Pattern, ResetReason};
use crate::validate::UserApp;

/// Boot attempts before `boot` gives up on a reset loop (a real device would keep looping).
const MAX_BOOT_STEPS: usize = 8;

impl Device {
    /// Applies power (after a cut or at creation) and boots.
    pub fn power_on(&mut self) {
        self.flash.power_on();
        self.event(DeviceEvent::PowerOn);
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
        self.control = crate::control::ControlSession::default();
        let mut reason = reason;
        let mut hold = hold_seconds;
        for _ in 0..MAX_BOOT_STEPS {
            self.state.reset_reason = reason;
            match self.boot_once(hold.take()) {
                Ok(None) => return,
                Ok(Some(next)) => reason = next,
                Err(FlashError::PowerLost) => {
                    self.set_mode(Mode::Off, Led::new(Color::Off, Pattern::Solid));
                    self.event(DeviceEvent::PowerLost);
                    return;
                }
                Err(e) => {
                    self.event(DeviceEvent::FlashFailed(e));
                    self.enter_dfu();
                    return;
                }
            }
        }
        // A real device keeps resetting; report the loop.
        self.set_mode(Mode::Panic, Led::new(Color::Red, Pattern::Sos));
        self.event(DeviceEvent::ResetLoop);
    }

    pub(crate) fn enter_dfu(&mut self) {
        self.set_mode(Mode::Dfu, Led::new(Color::Yellow, Pattern::Blinking));
        self.state.running_mode = Mode::Dfu;
    }

    /// One pass through bootloader and system. `Ok(Some(reason))` = the device reset.
    fn boot_once(&mut self, hold: Option<f32>) -> Result<Option<ResetReason>, FlashError> {
        // ---- the Nordic MBR, before the bootloader: a recorded bootloader copy ----
        if self.mbr_resume()? {
            return Ok(Some(ResetReason::Update));
        }
        // ---- bootloader (spec §6.1) ----
        let mut safe_mode = false;
        let mut factory_reset = std::mem::take(&mut self.state.factory_reset_requested);
        match self.state.boot_request.take() {
            Some(BootRequest::Dfu) => {
                self.event(DeviceEvent::DfuRequested);
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
                    self.event(DeviceEvent::WatchdogFactoryReset);
                    factory_reset = true;
                }
                _ => {
                    self.state.watchdog_retries = 0;
                    self.event(DeviceEvent::WatchdogDfu);
                    self.enter_dfu();
                    return Ok(None);
                }
            }
        }
        if let Some(held) = hold.and_then(ButtonHold::of) {
            self.event(DeviceEvent::ButtonHeld(held));
            match held {
                ButtonHold::SettingsReset => {
                    // RESET_SETTINGS: NVMEM_SPARK_Reset for the system, and the factory reset
                    // the 6.5 s mark already asked for.
                    self.state.settings_reset_requested = true;
                    factory_reset = true;
                }
                ButtonHold::FactoryReset => {
                    // A factory reset alone keeps the settings (NVMEM_SPARK_Reset = 0).
                    self.state.settings_reset_requested = false;
                    factory_reset = true;
                }
                ButtonHold::Dfu => {
                    self.enter_dfu();
                    return Ok(None);
                }
                ButtonHold::SafeMode => safe_mode = true,
            }
        }
        if factory_reset {
            if self.restore_factory_app()? {
                return Ok(Some(ResetReason::FactoryReset));
            }
            if self.system_start_header().is_err() {
                self.enter_dfu();
                return Ok(None);
            }
        }
        if self.apply_pending_copies()? {
            return Ok(Some(ResetReason::Update));
        }
        if let Err(why) = self.system_start_header() {
            self.event(DeviceEvent::NoValidSystem(why));
            self.enter_dfu();
            return Ok(None);
        }
        // ---- system (spec §6.2 / §6.3) ----
        self.system_start(safe_mode)
    }

    /// The watchdog retry path exists with bootloaders of the 0.7.0 line and later.
    pub(crate) fn watchdog_enabled(&self) -> bool {
        rules::bootloader_from_070(&self.hal())
            || self.platform.family != Some(Family::Photon)
                && self.platform.family != Some(Family::Electron)
    }

    /// The system firmware's start: can it run, module checks, user app, pending bootloader.
    fn system_start(&mut self, safe_requested: bool) -> Result<Option<ResetReason>, FlashError> {
        if let Err(why) = self.system_runnable() {
            return Ok(Some(self.panic(why)));
        }
        self.state.watchdog_retries = 0;
        if std::mem::take(&mut self.state.settings_reset_requested) {
            self.reset_settings()?;
        }
        self.update_embedded_bootloader()?;
        self.register_factory_slot()?;
        let modules = self.validate_system_modules();
        // Step 5: a bootloader staged in the OTA region over DFU (DCT flag 0xA5).
        if self.dct().get(dct::OTA_UPDATE_FLAG) == Some(&dct::OTA_UPDATE_PENDING) {
            let loc = self.dct_location();
            dct_store::write(&mut self.flash, &loc, dct::OTA_UPDATE_FLAG, &[0xFF])
                .map_err(dct_flash)?;
            self.event(DeviceEvent::OtaFlagSet);
            match self.ota_finish() {
                Ok(_) => return Ok(Some(ResetReason::Update)),
                Err(OtaError::PowerLost) => return Err(FlashError::PowerLost),
                Err(e) => self.event(DeviceEvent::OtaFlagImageRefused(e)),
            }
        }
        if let Err(why) = modules {
            self.event(DeviceEvent::SafeMode(why));
            return Ok(self.settle(Mode::SafeMode));
        }
        if safe_requested {
            self.event(DeviceEvent::SafeMode(SafeModeCause::Requested));
            return Ok(self.settle(Mode::SafeMode));
        }
        match self.validate_user_app() {
            UserApp::Valid(_) if !self.missing_assets().is_empty() => {
                let missing = self
                    .missing_assets()
                    .iter()
                    .map(|a| {
                        let hex: String =
                            a.hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
                        format!("{} (sha256 {hex}…)", a.name)
                    })
                    .collect();
                self.event(DeviceEvent::SafeMode(SafeModeCause::MissingAssets(missing)));
                Ok(self.settle(Mode::SafeMode))
            }
            UserApp::Valid(info) => {
                self.event(DeviceEvent::AppRunning {
                    version: info.version,
                });
                Ok(self.settle(Mode::App))
            }
            UserApp::FactoryReset(why) => {
                self.event(DeviceEvent::FactoryResetNeeded(why));
                self.state.factory_reset_requested = true;
                Ok(Some(ResetReason::FactoryReset))
            }
            UserApp::Invalid(why) => {
                self.event(DeviceEvent::SafeMode(why));
                Ok(self.settle(Mode::SafeMode))
            }
            UserApp::Missing => {
                self.event(DeviceEvent::NoApp);
                Ok(self.settle(Mode::NoApp))
            }
        }
    }

    pub(crate) fn settle(&mut self, mode: Mode) -> Option<ResetReason> {
        self.set_mode(mode, crate::device::settled_led(mode));
        self.state.running_mode = mode;
        None
    }

    /// Red SOS: the watchdog (counting the failed start) or the panic handler resets.
    fn panic(&mut self, cause: CrashCause) -> ResetReason {
        self.set_mode(Mode::Panic, Led::new(Color::Red, Pattern::Sos));
        let watchdog = self.watchdog_enabled();
        self.event(DeviceEvent::Sos(Crash { cause, watchdog }));
        if watchdog {
            self.state.watchdog_retries = self.state.watchdog_retries.saturating_add(1);
            ResetReason::Watchdog
        } else {
            ResetReason::Panic
        }
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
        self.event(DeviceEvent::BootloaderUpdated {
            from: update.installed,
            to: update.version,
        });
        Ok(())
    }
}

/// The system's own DCT writes use fixed, in-range offsets: only a flash failure can occur.
pub(crate) fn dct_flash(e: dct_store::DctError) -> FlashError {
    match e {
        dct_store::DctError::Flash(f) => f,
        dct_store::DctError::OutOfRange { offset, len } => FlashError::OutOfBounds {
            space: Space::Internal,
            address: offset as u32,
            len,
        },
    }
}
