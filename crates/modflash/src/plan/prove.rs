//! The proof of a plan: replayed through the executor on a copy of the twin, exactly as it will
//! run, and the final state read back as the prediction.

use modflash_device::hal::Hal;
use modflash_device::{Device, Mode};
use modflash_module::platform::Store;
use modflash_module::ModuleFunction;

use super::types::{Force, PlanError, Prediction, Step, Via};

/// Replays the plan on a copy of the twin ([`replay`]) and returns the final state. Any refusal or a final state without the app running
/// (unless forced) disproves the plan.
pub(super) fn prove(
    twin: &Device,
    steps: &[Step],
    via: Via,
    force: Force,
) -> Result<Prediction, PlanError> {
    if twin.state.mode == Mode::Off {
        return Err(PlanError::DeviceOff);
    }
    let device = replay(twin, steps, via)?;
    let hal: Hal<'_> = device.hal();
    let main: Vec<_> = hal
        .system_info()
        .into_iter()
        .filter(|f| f.bounds.store == Store::Main && f.info.is_some())
        .collect();
    let modules = main
        .iter()
        .filter_map(|f| f.info.map(|i| (i.slot(), i.version)))
        .collect();
    let failing = main
        .iter()
        .filter(|f| !f.is_valid())
        .filter_map(|f| f.info.map(|i| i.slot()))
        .collect();
    let prediction = Prediction {
        mode: device.state.mode,
        led: device.state.led,
        modules,
        failing,
        events: device
            .state
            .events
            .iter()
            .rev()
            .take(8)
            .rev()
            .cloned()
            .collect(),
    };
    // A device that ran no application may end without one when none was asked for.
    let no_app_is_fine = prediction.mode == Mode::NoApp
        && twin.state.mode != Mode::App
        && !steps
            .iter()
            .any(|s| s.module.info.function == ModuleFunction::UserPart);
    if !steps.is_empty() && prediction.mode != Mode::App && !no_app_is_fine && !force.dependencies {
        let cause = prediction
            .events
            .last()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        let help = match prediction.mode {
            Mode::SafeMode => "a module would still miss a dependency: name the modules it needs or add them to the catalogue (`modflash catalog add FILE`); --force dependencies flashes anyway",
            Mode::NoApp => "name the application to flash as well",
            Mode::Panic | Mode::Dfu => "the system firmware would not start with these modules: flash a complete Device OS release (--device-os VERSION)",
            _ => "check the modules with `modflash inspect` and the device with `modflash doctor`",
        };
        return Err(PlanError::WouldNotRun {
            mode: prediction.mode.name(),
            led: prediction.led.to_string(),
            cause,
            help: help.into(),
        });
    }
    Ok(prediction)
}

/// The device `twin` becomes when `steps` run on a copy of it through the executor, exactly as
/// they will run on a virtual device: the prediction's device.
pub fn replay(twin: &Device, steps: &[Step], via: Via) -> Result<Device, PlanError> {
    let mut device = twin.clone();
    let mut session = crate::Session::virtual_device(&mut device, "the device twin");
    super::run::run_steps(
        &mut session,
        steps,
        via,
        &mut crate::progress::Quiet,
        &crate::progress::Cancel::new(),
    )
    .map_err(|e| PlanError::Unproven(e.to_string()))?;
    drop(session);
    Ok(device)
}
