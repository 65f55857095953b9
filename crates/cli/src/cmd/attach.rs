//! `modflash sim attach NAME... -- COMMAND...`: run a command with virtual devices plugged into
//! an emulated USB bus (umockdev), each on its own port, then save them and exit with the
//! command's code.

use std::ffi::OsString;

use modflash::sim::{SimHandle, SimStore};
use modflash::transport::attach::{attach, AttachOptions};

use crate::ui::{note, CliError, CmdResult};

/// Opens (and locks) every device `specs` name: names, or patterns such as 'line-*'; each
/// device once, in the order named.
fn open_all(store: &SimStore, specs: &[String]) -> Result<Vec<SimHandle>, CliError> {
    let mut names: Vec<String> = Vec::new();
    for spec in specs {
        let found = store.select(spec)?;
        if found.is_empty() {
            return Err(
                CliError::usage(format!("no virtual device matches `{spec}`"))
                    .with_help("`modflash sim list` lists them"),
            );
        }
        for name in found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .iter()
        .map(|name| store.open(name).map_err(CliError::from))
        .collect()
}

/// Runs `command` with the devices `specs` name attached.
pub fn run(store: &SimStore, specs: &[String], command: &[OsString], trace: bool) -> CmdResult {
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::usage("no command to run").with_help(format!(
            "for example: modflash sim attach {} -- dfu-util -l",
            specs.join(" ")
        )));
    };
    let mut handles = open_all(store, specs)?;
    let devices = handles.iter().map(|h| h.device.clone()).collect();
    // Each serial port is published in the store, where `sim serve NAME` finds it.
    let serial_links = handles
        .iter()
        .map(|h| store.attached_serial_port(h.name()))
        .collect();
    // Ctrl-C reaches the command; modflash stays to save the devices.
    let _cancel = crate::signals::catch();
    let result = attach(
        devices,
        program,
        args,
        &AttachOptions {
            trace,
            serial_links,
        },
    );
    crate::signals::release();
    let attached = result
        .map_err(modflash::Error::from)
        .map_err(|e| CliError::from(e).context(&format!("sim attach {}", specs.join(" "))))?;
    for (handle, device) in handles.iter_mut().zip(attached.devices) {
        handle.device = device;
        handle.save()?;
        if trace {
            note(&format!(
                "[attach] sim:{} saved: {} mode",
                handle.name(),
                handle.device.state.mode.name(),
            ));
        }
    }
    if trace {
        note(&format!(
            "[attach] {} re-enumeration(s), command exited {}",
            attached.replugs, attached.exit_code
        ));
    }
    Ok(u8::try_from(attached.exit_code.clamp(0, 255)).unwrap_or(1))
}
