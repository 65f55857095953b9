//! `doctor`: why a device is in its state (from its twin's boot log), and the shortest
//! command that gets the application running, proven by the planner.

use std::path::PathBuf;

use modflash_device::{Device, DeviceEvent, Led, Mode};
use modflash_module::release::{platform_release, RELEASES};
use modflash_module::ModuleFunction;

use crate::catalog::Catalog;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::plan::{plan, Force, Request, Via};
use crate::progress::Observer;
use crate::request::release_targets;
use crate::session::Session;

/// A command that fixes the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    /// The command line.
    pub command: String,
    /// Writes its plan makes.
    pub steps: usize,
}

/// Why a device is in its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// Its mode.
    pub mode: Mode,
    /// Its LED.
    pub led: Led,
    /// The state and its cause, in a sentence.
    pub diagnosis: String,
    /// The boot log lines that show the cause.
    pub evidence: Vec<String>,
    /// The fix, when one is found (None when healthy, or no release in reach fixes it).
    pub fix: Option<Fix>,
    /// When no fix is found: what stands in the way for the release the app needs ("no plan
    /// over serial: … needs a system part 2 ≥ 207 …").
    pub blocker: Option<String>,
    /// Installed modules that fail one of the device's checks, with the checks
    /// ("system part 1 (integrity)") — the same verdicts `modules` prints.
    pub failing: Vec<String>,
}

impl Diagnosis {
    /// The application runs and every installed module passes every check.
    pub fn healthy(&self) -> bool {
        self.mode == Mode::App && self.failing.is_empty()
    }
}

/// Modules of `inventory` failing a check, each with the checks it fails.
fn failing_modules(inventory: &Inventory) -> Vec<String> {
    inventory
        .modules
        .iter()
        .filter(|m| !m.checks.all())
        .map(|m| {
            let c = &m.checks;
            let failed: Vec<&str> = [
                (c.integrity, "integrity"),
                (c.range, "address range"),
                (c.platform, "platform"),
                (c.dependencies, "dependencies"),
            ]
            .into_iter()
            .filter_map(|(ok, name)| (!ok).then_some(name))
            .collect();
            let store = if m.is_main() { "" } else { " (factory)" };
            format!("{}{store} ({})", m.slot(), failed.join(", "))
        })
        .collect()
}

/// Diagnoses the device of `session`; `catalogs` are extra folders of module files a fix may
/// use.
pub fn diagnose(
    session: &mut Session<'_>,
    catalogs: &[PathBuf],
    observer: &mut dyn Observer,
) -> Result<Diagnosis, Error> {
    let twin = session.twin(observer)?;
    let mode = twin.state.mode;
    let failing = failing_modules(&Inventory::from_device(&twin));
    let (mut diagnosis, evidence) = explain(&twin);
    if mode == Mode::App && !failing.is_empty() {
        diagnosis = format!(
            "the application runs (breathing cyan), but {} {} the device's checks",
            failing.join(", "),
            if failing.len() == 1 { "fails" } else { "fail" }
        );
    }
    let (fix, blocker) = if mode == Mode::App && failing.is_empty() {
        (None, None)
    } else {
        let mut catalog = Catalog::load_home(observer);
        for dir in catalogs {
            if let Ok(c) = Catalog::load_dir(dir) {
                catalog.extend(c);
            }
        }
        catalog.extend(session.synthetic_catalog());
        let caps = session.capabilities();
        let vias: Vec<Via> = [(Via::Dfu, caps.dfu), (Via::Serial, caps.serial)]
            .into_iter()
            .filter_map(|(via, can)| can.then_some(via))
            .collect();
        match suggest_fix(&twin, &session.reference(), catalogs, &catalog, &vias) {
            Ok(fix) => (Some(fix), None),
            Err(blocker) => (None, blocker),
        }
    };
    Ok(Diagnosis {
        mode,
        led: twin.state.led,
        diagnosis,
        evidence,
        fix,
        blocker,
        failing,
    })
}

/// The state of `device` and its cause in a sentence, and the lines of its event log since it
/// was last powered on that show the cause.
fn explain(device: &Device) -> (String, Vec<String>) {
    let events = &device.state.events;
    let since_power_on = events
        .iter()
        .rposition(|e| *e == DeviceEvent::PowerOn)
        .map_or(0, |p| p + 1);
    let evidence: Vec<&DeviceEvent> = events[since_power_on..]
        .iter()
        .filter(|e| explains_mode(e))
        .collect();
    let diagnosis = match device.state.mode {
        Mode::App => "healthy: the application runs (breathing cyan)".to_string(),
        Mode::SafeMode => format!(
            "safe mode (breathing magenta) because {}",
            reason_from(&evidence, "the system found a problem")
        ),
        Mode::NoApp => "no application is installed (breathing magenta)".into(),
        Mode::Dfu => format!(
            "DFU mode (blinking yellow) because {}",
            reason_from(&evidence, "DFU mode was requested")
        ),
        Mode::Listening => {
            "listening mode (blinking blue): waiting for setup or a serial command".into()
        }
        Mode::Panic => format!(
            "the system crashes at start (red SOS): {}",
            reason_from(&evidence, "a system part is corrupt")
        ),
        Mode::Off => "the device is off".into(),
    };
    (
        diagnosis,
        evidence.iter().map(ToString::to_string).collect(),
    )
}

/// Events that explain the mode a device ends in: how it got into safe mode, DFU mode or a
/// crash, a factory reset, a refused update, or the application running.
fn explains_mode(event: &DeviceEvent) -> bool {
    use DeviceEvent as E;
    match event {
        E::SafeMode(_)
        | E::Sos(_)
        | E::AppRunning { .. }
        | E::FlashFailed(_)
        | E::ResetLoop
        | E::DfuRequested
        | E::DfuBaud
        | E::DfuLeave
        | E::DfuReadUnprotect
        | E::DfuRefused { .. }
        | E::NoValidSystem(_)
        | E::ButtonHeld(_)
        | E::WatchdogFactoryReset
        | E::WatchdogDfu
        | E::NoFactoryResetImage
        | E::FactoryResetFailed(_)
        | E::FactoryResetNeeded(_)
        | E::FactoryAppRestored { .. }
        | E::PendingUpdateRefused(_)
        | E::OtaFlagImageRefused(_)
        | E::BootloaderRefused(_)
        | E::YmodemRefused(_)
        | E::UsbModeChange(_)
        | E::UsbUpdateRefused(_) => true,
        E::PowerOn
        | E::PowerLost
        | E::PendingUpdateInstalled { .. }
        | E::BootloaderUpdated { .. }
        | E::OtaFlagSet
        | E::NoApp
        | E::UpdateReceiving { .. }
        | E::BootloaderInstalled { .. }
        | E::UpdateValidated { .. }
        | E::ListeningEntered
        | E::ListeningLeft
        | E::WifiSaved { .. }
        | E::WifiNotSaved { .. }
        | E::WifiCleared(_)
        | E::Text(_) => false,
    }
}

/// The cause the newest piece of evidence gives, in words: the safe-mode or crash cause
/// itself, otherwise what the event says.
fn reason_from(evidence: &[&DeviceEvent], fallback: &str) -> String {
    match evidence.last() {
        Some(DeviceEvent::SafeMode(cause)) => cause.to_string(),
        Some(DeviceEvent::Sos(crash)) => crash.to_string(),
        Some(event) => event.message().to_string(),
        None => fallback.to_string(),
    }
}

/// The lowest release whose system modules get the app running, at or above both what the
/// app needs and the newest system part installed.
fn suggest_fix(
    twin: &Device,
    device: &str,
    catalogs: &[PathBuf],
    catalog: &Catalog,
    vias: &[Via],
) -> Result<Fix, Option<String>> {
    let platform = twin.platform();
    let inventory = Inventory::from_device(twin);
    let app_needs = inventory
        .modules
        .iter()
        .filter(|m| m.function() == ModuleFunction::UserPart && m.is_main())
        .flat_map(|m| m.deps().collect::<Vec<_>>())
        .filter(|d| d.function == ModuleFunction::SystemPart)
        .map(|d| d.version)
        .max();
    // Forward, never back: the newest system part present (a half-finished update leaves one
    // part newer than the others) or what the app needs, whichever is higher.
    let newest_system = inventory
        .modules
        .iter()
        .filter(|m| m.function() == ModuleFunction::SystemPart && m.is_main())
        .map(|m| m.version)
        .max();
    let wanted = app_needs
        .into_iter()
        .chain(newest_system)
        .max()
        .unwrap_or(0);
    let catalog_dirs: String = catalogs
        .iter()
        .map(|c| format!(" --catalog {}", c.display()))
        .collect();
    let mut blocker = None;
    for release in RELEASES.iter().filter(|r| r.system_version >= wanted) {
        if platform_release(platform, release.name).is_none() {
            continue;
        }
        let targets = match release_targets(catalog, platform, release.name) {
            Ok(t) => t,
            Err(e) => {
                blocker.get_or_insert(e.to_string());
                continue;
            }
        };
        for &via in vias {
            let req = Request {
                twin,
                targets: targets.clone(),
                catalog,
                via,
                alternative: vias.iter().copied().find(|&v| v != via),
                force: Force::default(),
                factory: false,
            };
            let planned = plan(&req);
            if let Err(e) = &planned {
                blocker.get_or_insert(e.to_string());
            }
            if let Ok(p) = planned {
                if p.prediction.app_runs() {
                    return Ok(Fix {
                        command: format!(
                            "modflash flash --device {device} --device-os {}{}{catalog_dirs}",
                            release.name,
                            if via == Via::Serial && vias.contains(&Via::Dfu) {
                                " --via serial"
                            } else {
                                ""
                            }
                        ),
                        steps: p.steps.len(),
                    });
                }
            }
        }
    }
    Err(blocker)
}

#[cfg(test)]
mod tests {
    use modflash_device::{ResetReason, Space};
    use modflash_testkit::device::device;

    use super::*;

    #[test]
    fn safe_mode_asked_for_with_the_button_is_explained_by_the_request() {
        let mut d = device(6).release("1.5.0").running();
        d.reset(ResetReason::Button, Some(1.5));
        let (diagnosis, evidence) = explain(&d);
        assert_eq!(
            diagnosis,
            "safe mode (breathing magenta) because requested at boot"
        );
        // The boot before the reset counts too: only a power-on starts a new story.
        assert_eq!(
            evidence,
            [
                "system: breathing cyan: running the application (user part version 6)",
                "bootloader: button held 1 s: safe mode requested",
                "system: safe mode: requested at boot",
            ]
        );
    }

    #[test]
    fn a_crashing_system_is_shown_by_its_sos_lines() {
        // System part 2 erased: the Photon's system cannot start; the watchdog retries, tries
        // a factory reset and gives up in DFU mode.
        let mut d = device(6).release("1.5.0").running();
        let part2 = d
            .layout()
            .main_bounds(modflash_module::ModuleRef::new(
                ModuleFunction::SystemPart,
                2,
            ))
            .unwrap();
        d.flash_mut()
            .erase_range(Space::Internal, part2.start, 4096)
            .unwrap();
        d.power_on();
        let (diagnosis, evidence) = explain(&d);
        assert_eq!(d.state.mode, Mode::Dfu, "{:#?}", d.state.events);
        assert_eq!(
            diagnosis,
            "DFU mode (blinking yellow) because third failed start, entering DFU mode"
        );
        assert!(
            evidence.iter().any(|e| e.starts_with("system: red SOS: ")),
            "{evidence:#?}"
        );
    }
}
