//! `modflash history [--device REF] [--json]`: what went on each device, from the run log.

use crate::view::table::table;
use modflash::history::{read, Entry, ModuleRecord};

use crate::args::DeviceArgs;
use crate::ui::{say, CmdResult, EXIT_OK};

/// "system 1 v1502, user 1 v6".
fn modules(list: &[ModuleRecord]) -> String {
    list.iter()
        .filter(|m| m.store == "main")
        .map(|m| format!("{} {} v{}", m.function, m.index, m.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `history`.
pub fn run(device: &DeviceArgs, json_output: bool) -> CmdResult {
    let filter = match device.device.as_slice() {
        [] => None,
        _ => Some(device.require()?.to_string()),
    };
    let entries: Vec<Entry> = read(filter.as_deref())?;
    if json_output {
        for e in &entries {
            say(&serde_json::to_string(e).unwrap_or_default());
        }
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        say("nothing flashed yet (the run log is kept in the modflash home)");
        return Ok(EXIT_OK);
    }
    let rows = entries.iter().map(|e| {
        [
            e.time.get(..19).unwrap_or(&e.time).replace('T', " "),
            e.device.clone(),
            e.platform.clone(),
            modules(&e.before),
            modules(&e.after),
            e.result.clone(),
        ]
    });
    say(&table(
        ["time", "device", "platform", "before", "after", "result"],
        rows,
    ));
    Ok(EXIT_OK)
}
