//! `modflash sim attach NAME -- COMMAND...`: run a command with a virtual device plugged into an
//! emulated USB bus (umockdev), then save the device and exit with the command's code.

use std::ffi::OsString;

use modflash::sim::SimStore;
use modflash::transport::attach::{attach, AttachOptions};

use crate::ui::{note, CliError, CmdResult};

/// Runs `command` with sim `name` attached.
pub fn run(store: &SimStore, name: &str, command: &[OsString], trace: bool) -> CmdResult {
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::usage("no command to run").with_help(format!(
            "for example: modflash sim attach {name} -- dfu-util -l"
        )));
    };
    let mut handle = store.open(name)?;
    // Ctrl-C reaches the command; modflash stays to save the device.
    let _cancel = crate::signals::catch();
    let result = attach(
        handle.device.clone(),
        program,
        args,
        &AttachOptions { trace },
    );
    crate::signals::release();
    let attached = result
        .map_err(modflash::Error::from)
        .map_err(|e| CliError::from(e).context(&format!("sim attach {name}")))?;
    handle.device = attached.device;
    handle.save()?;
    if trace {
        note(&format!(
            "[attach] sim:{name} saved: {} mode, {} re-enumeration(s), command exited {}",
            handle.device.state.mode.name(),
            attached.replugs,
            attached.exit_code
        ));
    }
    Ok(u8::try_from(attached.exit_code.clamp(0, 255)).unwrap_or(1))
}
