//! The run log: every `flash` appends one JSON line to `HOME/history.jsonl` — when, which
//! device, the modules before and after with their SHA-256, the plan and the result — so a
//! line can tell what went on each unit. Appends are locked, so concurrent flashes (several
//! devices, several processes) never interleave or lose lines.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::inventory::Inventory;
use crate::plan::{Action, Plan};

/// One module as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// Function name ("bootloader", "system", "user", ...).
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// Where it is kept ("main", "factory").
    pub store: String,
    /// SHA-256 as the device reports it, when it does.
    pub sha256: Option<String>,
    /// It passes every check of the device.
    pub valid: bool,
}

/// One write of the plan as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The file (or catalogue module) written.
    pub file: String,
    /// What it is ("system part 1").
    pub module: String,
    /// Its version.
    pub version: u16,
    /// Its SHA-256.
    pub sha256: String,
    /// `dfu` or `serial`.
    pub transport: String,
}

/// One flash of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it ended (RFC 3339, UTC).
    pub time: String,
    /// The device reference.
    pub device: String,
    /// The device id, when known.
    pub device_id: Option<String>,
    /// Platform name.
    pub platform: String,
    /// What was installed before.
    pub before: Vec<ModuleRecord>,
    /// What the plan wrote, in order.
    pub plan: Vec<StepRecord>,
    /// What is installed after (empty when the device could not be read).
    pub after: Vec<ModuleRecord>,
    /// `verified`, `not_as_predicted`, `failed`, `interrupted`, `refused` (nothing written).
    pub result: String,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// Seconds from the start of the plan to the end.
    pub seconds: f64,
}

/// Modules of an inventory as the record keeps them.
pub fn modules(inventory: &Inventory) -> Vec<ModuleRecord> {
    inventory
        .modules
        .iter()
        .map(|m| ModuleRecord {
            function: m.function.clone(),
            index: m.index,
            version: m.version,
            store: m.store.clone(),
            sha256: m.sha256.clone(),
            valid: m.checks.all(),
        })
        .collect()
}

/// A plan's writes as the record keeps them (an erase of the legacy app is not a module).
pub fn steps(plan: &Plan) -> Vec<StepRecord> {
    plan.steps
        .iter()
        .filter(|s| !matches!(s.action, Action::DfuErase { .. }))
        .map(|s| StepRecord {
            file: s.module.origin.to_string(),
            module: s.module.slot().to_string(),
            version: s.module.info.version,
            sha256: s.module.sha_hex(),
            transport: s.transport().to_string(),
        })
        .collect()
}

/// The run log's path.
pub fn path() -> PathBuf {
    crate::home::home().join("history.jsonl")
}

/// The current time as the record writes it.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Appends `entry` to the run log, under an exclusive lock, in one write.
pub fn append(entry: &Entry) -> Result<(), Error> {
    let path = path();
    let io = |action: &'static str| {
        let path = path.display().to_string();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create the folder of"))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("open"))?;
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    // Appended under an exclusive lock, so concurrent runs never interleave their lines; a
    // file system without locks still gets the line (one write).
    let locked = file.lock().is_ok();
    let written = file.write_all(&line).and_then(|()| file.flush());
    if locked {
        let _ = file.unlock();
    }
    written.map_err(io("append to"))
}

/// Every entry of the run log, oldest first (lines that do not parse are skipped); only those
/// of `device` (a reference or a device id) when given.
pub fn read(device: Option<&str>) -> Result<Vec<Entry>, Error> {
    let path = path();
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                action: "read",
                path: path.display().to_string(),
                source,
            })
        }
    };
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Entry>(&l).ok())
        .filter(|e| device.is_none_or(|d| e.device == d || e.device_id.as_deref() == Some(d)))
        .collect())
}

/// Runs `planned` on `session` with [`crate::plan::flash`] and records the run in the run log,
/// whatever its outcome (a record that cannot be written is a warning, never a lost flash).
pub fn flash_recorded(
    session: &mut crate::Session<'_>,
    planned: &crate::request::Planned,
    options: crate::plan::FlashOptions,
    observer: &mut dyn crate::progress::Observer,
    cancel: &crate::progress::Cancel,
) -> Result<crate::plan::Flashed, Error> {
    let started = std::time::Instant::now();
    let result = crate::plan::flash(session, &planned.plan, options, observer, cancel);
    let (after, outcome, error) = match &result {
        Ok(f) if f.verified() => (modules(&f.after), "verified", None),
        Ok(f) if f.mismatches.is_empty() => (
            modules(&f.after),
            "not_verified",
            f.require_proof(&planned.plan).err().map(|e| e.to_string()),
        ),
        Ok(f) => (
            modules(&f.after),
            "not_as_predicted",
            Some(f.mismatches.join("; ")),
        ),
        Err(e @ Error::Interrupted { .. }) => (Vec::new(), "interrupted", Some(e.to_string())),
        Err(e @ Error::Refused { .. }) => (Vec::new(), "refused", Some(e.to_string())),
        Err(e) => (Vec::new(), "failed", Some(e.to_string())),
    };
    let entry = Entry {
        time: now(),
        device: session.reference(),
        device_id: session.device_id(),
        platform: session.platform().name.to_string(),
        before: modules(&planned.before),
        plan: steps(&planned.plan),
        after,
        result: outcome.to_string(),
        error,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Err(e) = append(&entry) {
        observer.event(crate::progress::Event::warning(format!(
            "the run was not recorded in the run log: {e}"
        )));
    }
    result
}
