//! The one renderer of library events: a progress bar per operation on a terminal, plain lines
//! otherwise, JSON lines with `--json` (fields in docs/json.md).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use modflash::progress::{Event, Evidence, Level, Observer, Operation};
use serde_json::json;

use crate::ui::{note, say, Style};

/// How events are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// JSON lines on standard output.
    Json,
    /// Bars on standard error (a terminal).
    Bars,
    /// Plain lines on standard error.
    Lines,
}

/// Renders events; an [`Observer`].
pub struct Renderer {
    output: Output,
    bar: Option<ProgressBar>,
    /// The running operation and the last quarter printed for it (plain lines).
    quarter: Option<(Operation, u64)>,
}

impl Renderer {
    /// A renderer for standard error (human) or standard output (JSON lines).
    pub fn new(json: bool) -> Self {
        let output = if json {
            Output::Json
        } else if std::io::stderr().is_terminal() {
            Output::Bars
        } else {
            Output::Lines
        };
        Self {
            output,
            bar: None,
            quarter: None,
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn json(&mut self, e: &Event) {
        say(&event_json(e).to_string());
    }

    fn human(&mut self, e: Event) {
        match e {
            Event::StepStarted {
                step, steps, label, ..
            } => {
                self.finish_bar();
                note(&format!("step {step}/{steps}: {label}"));
            }
            Event::Started {
                operation,
                what,
                total,
            } => {
                self.finish_bar();
                match (operation, total) {
                    (Operation::ModeChange | Operation::Reset, _) => note(&what),
                    (_, Some(total)) if self.output == Output::Bars && total > 0 => {
                        let bar = ProgressBar::new(total);
                        let template = format!(
                            "  {:<9} [{{bar:30.cyan/blue}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}",
                            operation.to_string()
                        );
                        bar.set_style(
                            ProgressStyle::with_template(&template)
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        );
                        self.bar = Some(bar);
                    }
                    _ => {}
                }
                self.quarter = Some((operation, 0));
            }
            Event::Progress {
                operation,
                done,
                total,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                } else if let (Some((op, last)), Some(q)) =
                    (&mut self.quarter, (done * 4).checked_div(total))
                {
                    // Without a bar, only the write says how far it is, a line per quarter.
                    if operation == Operation::Write && *op == operation && q > *last {
                        *last = q;
                        note(&format!(
                            "  {operation} {done}/{total} bytes ({}%)",
                            done * 100 / total
                        ));
                    }
                }
            }
            Event::Finished { .. } => self.finish_bar(),
            Event::Failed { operation, reason } => {
                self.finish_bar();
                note(&format!("  {operation} failed: {reason}"));
            }
            Event::StepFinished { step, evidence } => {
                self.finish_bar();
                note(&match evidence {
                    Evidence::ReadBack => format!("  step {step} verified (read back)"),
                    Evidence::Hash => {
                        format!("  step {step} verified (the device reports the file's SHA-256)")
                    }
                    Evidence::DeviceAccepted => format!(
                        "  step {step} accepted by the device (its own validation; checked again \
                         after the restart)"
                    ),
                    Evidence::HeaderAndSuffix => format!(
                        "  step {step} written (header and suffix read back; the device checks \
                         its CRC when its firmware runs, read after the restart)"
                    ),
                    Evidence::DeviceCrc => format!(
                        "  step {step} verified (header and suffix read back, CRC checked by \
                         the device)"
                    ),
                    Evidence::None => format!("  step {step} written, not verified"),
                });
            }
            Event::Note { level, text } => {
                self.finish_bar();
                let style = Style::stderr();
                match level {
                    Level::Info => note(&format!("{} {text}", style.dim("note:"))),
                    Level::Warning => crate::ui::warning(&text),
                }
            }
        }
    }
}

impl Observer for Renderer {
    fn event(&mut self, e: Event) {
        match self.output {
            Output::Json => self.json(&e),
            Output::Bars | Output::Lines => self.human(e),
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

/// One event as its JSON line (fields in docs/json.md, "Progress events").
pub fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::StepStarted {
            step,
            steps,
            label,
            bytes,
        } => {
            json!({"event": "step_started", "step": step, "steps": steps, "module": label, "bytes": bytes})
        }
        Event::Started {
            operation,
            what,
            total,
        } => {
            json!({"event": "started", "operation": operation.name(), "what": what, "bytes": total})
        }
        Event::Progress {
            operation,
            done,
            total,
        } => {
            json!({"event": "progress", "operation": operation.name(), "bytes_done": done, "bytes_total": total})
        }
        Event::Finished { operation } => {
            json!({"event": "finished", "operation": operation.name()})
        }
        Event::Failed { operation, reason } => {
            json!({"event": "failed", "operation": operation.name(), "reason": reason})
        }
        Event::StepFinished { step, evidence } => {
            let name = match evidence {
                Evidence::ReadBack | Evidence::Hash | Evidence::DeviceCrc => "step_verified",
                Evidence::DeviceAccepted => "step_accepted",
                Evidence::HeaderAndSuffix | Evidence::None => "step_written",
            };
            json!({"event": name, "step": step, "evidence": evidence.name()})
        }
        Event::Note { level, text } => json!({"event": "note", "level": match level {
            Level::Info => "info",
            Level::Warning => "warning",
        }, "text": text}),
    }
}
