//! `modflash backups` (what `flash` kept of what it replaced) and `modflash restore` (put a
//! backup back, through the usual plan, checks and verification).

use std::path::{Path, PathBuf};

use modflash::backup::{self, Backup};
use modflash::request::Wanted;
use serde_json::json;

use crate::args::{DeviceArgs, RunArgs};
use crate::ui::{say, CliError, CmdResult, Style, EXIT_OK};

/// Runs `backups`: every device's, or those of the device `--device` names (a reference
/// that needs the device itself, like `usb`, lists every device's).
pub fn list(device: &DeviceArgs, json_output: bool) -> CmdResult {
    let id = match device.device.as_slice() {
        [] => None,
        _ => backup::device_id_of(&device.require()?)?,
    };
    let found = backup::list(id.as_deref());
    if json_output {
        let rows: Vec<_> = found
            .iter()
            .map(|b| json!({"backup": b.dir.display().to_string(), "manifest": b.manifest}))
            .collect();
        say(&serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(EXIT_OK);
    }
    if found.is_empty() {
        say("no backups yet: `modflash flash` keeps what it replaces");
    }
    let style = Style::stdout();
    for b in &found {
        let modules: Vec<String> = b
            .manifest
            .modules
            .iter()
            .map(|m| {
                let kept = if m.file.is_some() {
                    ""
                } else {
                    " (record only)"
                };
                format!("{} {} v{}{kept}", m.function, m.index, m.version)
            })
            .collect();
        say(&format!(
            "{}  {} {}  {}",
            style.bold(&b.manifest.time),
            b.manifest.device,
            b.manifest.device_id,
            modules.join(", ")
        ));
        say(&format!("  {}", style.dim(&b.dir.display().to_string())));
    }
    Ok(EXIT_OK)
}

/// The backup `name` names: a folder, or a backup's folder name.
fn find(name: &str) -> Result<Backup, CliError> {
    if Path::new(name).join("manifest.json").is_file() {
        return Ok(backup::open(Path::new(name))?);
    }
    backup::list(None)
        .into_iter()
        .find(|b| b.dir.file_name().is_some_and(|f| f == name))
        .ok_or_else(|| {
            CliError::usage(format!("there is no backup named `{name}`"))
                .with_help("`modflash backups` lists them")
        })
}

/// Runs `restore`.
pub fn restore(name: &str, device: &DeviceArgs, run: RunArgs, json_output: bool) -> CmdResult {
    let devref = device.require()?;
    let backup = find(name)?;
    let files: Vec<PathBuf> = backup.files();
    if files.is_empty() {
        return Err(CliError::usage(format!(
            "backup {} holds records only (the connection could not read the modules)",
            backup.dir.display()
        ))
        .with_help("flash the modules it names from the catalogue instead"));
    }
    let wanted = Wanted {
        files,
        ..Wanted::default()
    };
    super::flash::flash(&devref, &wanted, json_output, run)
}
