//! Rendering several devices at once: one progress line per device on a terminal (indicatif
//! `MultiProgress`), lines prefixed with the device otherwise, JSON lines tagged with the
//! device with `--json`; `-q` keeps warnings and failures only.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use modflash::progress::{Event, Evidence, Level, Operation};
use serde_json::json;

use crate::ui::{note, say, stderr_line, verbosity, Verbosity};

/// Renders the events of several devices.
pub struct FleetRenderer {
    json: bool,
    labels: Vec<String>,
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
}

impl FleetRenderer {
    /// A renderer for devices named `labels`.
    pub fn new(labels: Vec<String>, json: bool) -> Self {
        let quiet = verbosity() == Verbosity::Quiet;
        let bars = (!json && !quiet && std::io::stderr().is_terminal()).then(|| {
            let mp = MultiProgress::new();
            let width = labels.iter().map(String::len).max().unwrap_or(0);
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:{width}}} [{{bar:24.cyan/blue}}] {{bytes:>9}}/{{total_bytes:9}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bars = labels
                .iter()
                .map(|l| {
                    let bar = mp.add(ProgressBar::new(0));
                    bar.set_style(style.clone());
                    bar.set_prefix(l.clone());
                    bar.set_message("waiting");
                    bar
                })
                .collect();
            (mp, bars)
        });
        Self { json, labels, bars }
    }

    /// A line above the bars (or on standard error).
    pub fn println(&self, text: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => stderr_line(text),
        }
    }

    /// Shows one event of device `device`.
    pub fn event(&mut self, device: usize, e: Event) {
        let label = self.labels.get(device).cloned().unwrap_or_default();
        if self.json {
            let mut line = crate::render::event_json(&e);
            line["device"] = json!(label);
            say(&line.to_string());
            return;
        }
        let text = match &e {
            Event::StepStarted {
                step, steps, label, ..
            } => Some(format!("step {step}/{steps}: {label}")),
            // Without bars, a line per step is enough; on a bar the operation shows.
            Event::Started {
                operation, what, ..
            } if self.bars.is_some() => Some(format!("{operation} {what}")),
            Event::Started {
                operation: Operation::ModeChange | Operation::Reset,
                what,
                ..
            } => Some(what.clone()),
            Event::Started { .. } => None,
            Event::StepFinished { step, evidence } => Some(match evidence {
                Evidence::ReadBack => format!("step {step} verified (read back)"),
                Evidence::Hash => format!("step {step} verified (SHA-256 reported by the device)"),
                Evidence::DeviceAccepted => format!("step {step} accepted by the device"),
                Evidence::HeaderAndSuffix => format!(
                    "step {step} written (header and suffix read back; the device checks its CRC)"
                ),
                Evidence::DeviceCrc => format!(
                    "step {step} verified (header and suffix read back, CRC checked by the device)"
                ),
                Evidence::None => format!("step {step} written, not verified"),
            }),
            Event::Note { level, text } => {
                match level {
                    Level::Info => {
                        if verbosity() != Verbosity::Quiet {
                            self.println(&format!("{label}: note: {text}"));
                        }
                    }
                    Level::Warning => self.println(&format!("{label}: warning: {text}")),
                }
                None
            }
            Event::Failed { operation, reason } => Some(format!("{operation} failed: {reason}")),
            Event::Progress { .. } | Event::Finished { .. } => None,
        };
        match (&self.bars, &e) {
            (Some((_, bars)), Event::Progress { done, total, .. }) => {
                if let Some(bar) = bars.get(device) {
                    bar.set_length((*total).max(*done));
                    bar.set_position(*done);
                }
            }
            (Some((_, bars)), _) => {
                if let (Some(bar), Some(t)) = (bars.get(device), text) {
                    bar.set_message(t);
                }
            }
            (None, Event::Failed { .. }) => {
                if let Some(t) = text {
                    stderr_line(&format!("{label}: {t}"));
                }
            }
            (None, _) => {
                if let Some(t) = text {
                    note(&format!("{label}: {t}"));
                }
            }
        }
    }

    /// Ends device `device`'s line with `result`.
    pub fn done(&self, device: usize, result: &str) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.get(device) {
                bar.finish_with_message(result.to_string());
            }
        }
    }
}
