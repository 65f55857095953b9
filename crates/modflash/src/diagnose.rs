//! `doctor`: why a device is in its state (from its twin's boot log), and the shortest
//! command that gets the application running, proven by the planner.

use std::path::PathBuf;

use modflash_device::{Device, Led, Mode};
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
}

impl Diagnosis {
    /// The application runs.
    pub fn healthy(&self) -> bool {
        self.mode == Mode::App
    }
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
    let evidence: Vec<String> = twin
        .state
        .events
        .iter()
        .rev()
        .take_while(|e| !e.starts_with("power on"))
        .filter(|e| {
            e.contains("safe mode")
                || e.contains("factory")
                || e.contains("DFU")
                || e.contains("SOS")
                || e.contains("refused")
                || e.contains("running")
        })
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let diagnosis = match mode {
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
    let fix = if mode == Mode::App {
        None
    } else {
        let mut catalog = Catalog::load_home();
        for dir in catalogs {
            if let Ok((c, _)) = Catalog::load_dir(dir) {
                catalog.extend(c);
            }
        }
        catalog.extend(session.synthetic_catalog());
        let caps = session.capabilities();
        let vias: Vec<Via> = [(Via::Dfu, caps.dfu), (Via::Serial, caps.serial)]
            .into_iter()
            .filter_map(|(via, can)| can.then_some(via))
            .collect();
        suggest_fix(&twin, &session.reference(), catalogs, &catalog, &vias)
    };
    Ok(Diagnosis {
        mode,
        led: twin.state.led,
        diagnosis,
        evidence,
        fix,
    })
}

fn reason_from(why: &[String], fallback: &str) -> String {
    why.iter()
        .rev()
        .map(|e| {
            let e = e
                .strip_prefix("system: ")
                .or_else(|| e.strip_prefix("bootloader: "))
                .unwrap_or(e);
            let e = e
                .strip_prefix("safe mode: ")
                .or_else(|| e.strip_prefix("red SOS: "))
                .unwrap_or(e);
            e.to_string()
        })
        .next()
        .unwrap_or_else(|| fallback.to_string())
}

/// The lowest release whose system modules get the app running: what the app needs, else
/// what is installed, else the newest release.
fn suggest_fix(
    twin: &Device,
    device: &str,
    catalogs: &[PathBuf],
    catalog: &Catalog,
    vias: &[Via],
) -> Option<Fix> {
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
    let wanted = app_needs.or(inventory.system_version()).unwrap_or(0);
    let catalog_dirs: String = catalogs
        .iter()
        .map(|c| format!(" --catalog {}", c.display()))
        .collect();
    for release in RELEASES.iter().filter(|r| r.system_version >= wanted) {
        if platform_release(platform, release.name).is_none() {
            continue;
        }
        let Ok(targets) = release_targets(catalog, platform, release.name) else {
            continue;
        };
        for &via in vias {
            let req = Request {
                twin,
                targets: targets.clone(),
                catalog,
                via,
                force: Force::default(),
                factory: false,
            };
            if let Ok(p) = plan(&req) {
                if p.prediction.app_runs() {
                    return Some(Fix {
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
    None
}
