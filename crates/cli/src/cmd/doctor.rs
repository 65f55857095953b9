//! `modflash doctor`: why a device is in its state, and the command that fixes it.

use std::path::PathBuf;

use modflash::diagnose::diagnose;
use modflash::Session;
use serde_json::json;

use crate::args::DeviceArgs;
use crate::render::Renderer;
use crate::ui::{say, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};

/// Runs `doctor`.
pub fn run(device: &DeviceArgs, catalogs: &[PathBuf], json_output: bool) -> CmdResult {
    let devref = device.require()?;
    // One document on standard output: what happens meanwhile goes to standard error.
    let mut renderer = Renderer::new(false);
    let mut session = Session::open(&devref)?;
    let d = diagnose(&mut session, catalogs, &mut renderer)?;
    if json_output {
        say(&serde_json::to_string_pretty(&json!({
            "device": devref.to_string(),
            "platform": session.platform().name,
            "mode": d.mode.name(),
            "led": d.led,
            "diagnosis": d.diagnosis,
            "evidence": d.evidence,
            "fix": d.fix.as_ref().map(|f| json!({"command": f.command, "steps": f.steps})),
            "blocker": d.blocker,
            "failing": d.failing,
        }))
        .unwrap_or_default());
    } else {
        let style = Style::stdout();
        say(&format!(
            "{}: {}",
            style.bold(&session.label()),
            d.diagnosis
        ));
        for e in &d.evidence {
            say(&format!("  {}", style.dim(e)));
        }
        match &d.fix {
            Some(f) => say(&format!(
                "fix ({} step{}): {}",
                f.steps,
                if f.steps == 1 { "" } else { "s" },
                f.command
            )),
            None if d.healthy() => {}
            None => match &d.blocker {
                Some(b) => say(&format!("no automatic fix found: {b}")),
                None => say("no automatic fix found: add the Device OS release of the app to the catalogue (`modflash catalog add DIR`)"),
            },
        }
    }
    Ok(if d.healthy() {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    })
}
