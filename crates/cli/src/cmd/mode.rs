//! `modflash reset` and `modflash mode dfu|listening|safe|normal`: a device's mode changed the
//! way its connection can (DFU requests, baud-rate requests, a virtual device's own requests).

use modflash::transport::ModeChange;
use modflash::Session;

use crate::args::{DeviceArgs, ModeArg};
use crate::render::Renderer;
use crate::ui::{say, CmdResult, EXIT_CHECK_FAILED, EXIT_OK};

/// Restarts the device.
pub fn reset(device: &DeviceArgs) -> CmdResult {
    apply(ModeChange::Reset, device)
}

/// Puts the device in `mode`.
pub fn set(mode: ModeArg, device: &DeviceArgs) -> CmdResult {
    let change = match mode {
        ModeArg::Dfu => ModeChange::Dfu,
        ModeArg::Listening => ModeChange::Listening,
        ModeArg::Safe => ModeChange::Safe,
        ModeArg::Normal => ModeChange::Normal,
    };
    apply(change, device)
}

/// The mode names a change should end in (device model names and USB's "normal").
fn expected(change: ModeChange) -> &'static [&'static str] {
    match change {
        ModeChange::Dfu => &["dfu"],
        ModeChange::Listening => &["listening"],
        ModeChange::Safe => &["safe_mode"],
        ModeChange::Normal | ModeChange::Reset => &["app", "no_app", "normal"],
    }
}

fn apply(change: ModeChange, device: &DeviceArgs) -> CmdResult {
    let devref = device.require()?;
    let mut session = Session::open(&devref)?;
    let label = session.label();
    let seen = session.change_mode(change, &mut Renderer::new(false))?;
    match seen {
        Some(mode) if expected(change).contains(&mode) => {
            say(&format!(
                "{label}: {} — now in {}",
                change.describe(),
                words(mode)
            ));
            Ok(EXIT_OK)
        }
        Some(mode) => {
            say(&format!(
                "{label}: asked to {}, but it is in {} (`modflash doctor --device {devref}` says why)",
                change.describe(),
                words(mode)
            ));
            Ok(EXIT_CHECK_FAILED)
        }
        None => {
            say(&format!(
                "{label}: asked to {}; this connection cannot see the mode it is in now",
                change.describe()
            ));
            Ok(EXIT_OK)
        }
    }
}

/// A mode name as a sentence says it.
fn words(mode: &str) -> &str {
    match mode {
        "dfu" => "DFU mode",
        "listening" => "listening mode",
        "app" => "normal mode, its application running",
        "no_app" => "normal mode, without an application",
        "normal" => "normal mode",
        "safe_mode" => "safe mode",
        "panic" => "a crash loop (red SOS)",
        "off" => "power off",
        other => other,
    }
}
