//! `modflash sim attach NAME -- COMMAND...`: run a command with a virtual device plugged into an
//! emulated USB bus (umockdev), then save the device and exit with the command's code.

use std::ffi::OsString;

use modflash::attach::{attach, AttachOptions};
use modflash::sim::SimStore;

use crate::ui::{CliError, CmdResult};

/// Runs `command` with sim `name` attached.
pub fn run(store: &SimStore, name: &str, command: &[OsString], trace: bool) -> CmdResult {
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::usage("no command to run").with_help(format!(
            "for example: modflash sim attach {name} -- dfu-util -l"
        )));
    };
    let mut handle = store.open(name).map_err(crate::source::sim_error)?;
    // Ctrl-C reaches the command; modflash stays to save the device.
    crate::source::catch_interrupts();
    let result = attach(
        handle.device.clone(),
        program,
        args,
        &AttachOptions { trace },
    );
    crate::source::release_interrupts();
    let attached = result.map_err(|e| {
        let help = e.help();
        let err = CliError::usage(format!("sim attach {name}: {e}"));
        err.with_help_opt(help)
    })?;
    handle.device = attached.device;
    handle.save().map_err(crate::source::sim_error)?;
    if trace {
        crate::source::note(&format!(
            "[attach] sim:{name} saved: {} mode, {} re-enumeration(s), command exited {}",
            handle.device.state.mode.name(),
            attached.replugs,
            attached.exit_code
        ));
    }
    Ok(u8::try_from(attached.exit_code.clamp(0, 255)).unwrap_or(1))
}
