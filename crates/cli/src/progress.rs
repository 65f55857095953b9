//! Progress output: a bar with bytes, rate and ETA on a terminal, plain lines otherwise, JSON
//! lines with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use modflash::exec::Event;
use serde_json::json;

/// Renders executor events.
pub struct Reporter {
    json: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
    last_percent: usize,
}

impl Reporter {
    /// A reporter for standard error (human) or standard output (JSON lines).
    pub fn new(json: bool) -> Self {
        Self {
            json,
            terminal: !json && std::io::stderr().is_terminal(),
            bar: None,
            last_percent: 0,
        }
    }

    /// Handles one event.
    pub fn event(&mut self, e: Event) {
        if self.json {
            let line = match &e {
                Event::Preparing(what) => json!({"event": "preparing", "what": what}),
                Event::StepStarted {
                    n,
                    total,
                    label,
                    bytes,
                } => {
                    json!({"event": "step_started", "step": n, "steps": total, "module": label, "bytes": bytes})
                }
                Event::Bytes { done, total } => {
                    json!({"event": "progress", "bytes_done": done, "bytes_total": total})
                }
                Event::StepVerified { n } => json!({"event": "step_verified", "step": n}),
                Event::Resetting => json!({"event": "resetting"}),
            };
            println!("{line}");
            return;
        }
        match e {
            Event::Preparing(what) => eprintln!("{what}"),
            Event::StepStarted {
                n,
                total,
                label,
                bytes,
            } => {
                self.finish_bar();
                eprintln!("step {n}/{total}: {label}");
                self.last_percent = 0;
                if self.terminal {
                    let bar = ProgressBar::new(bytes as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    self.bar = Some(bar);
                }
            }
            Event::Bytes { done, total } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                } else if let Some(percent) = (done * 100).checked_div(total) {
                    if percent >= self.last_percent + 25
                        || (done == total && self.last_percent < 100)
                    {
                        self.last_percent = percent - percent % 25;
                        eprintln!("  {done}/{total} bytes ({percent}%)");
                    }
                }
            }
            Event::StepVerified { n } => {
                self.finish_bar();
                eprintln!("  step {n} verified");
            }
            Event::Resetting => {
                self.finish_bar();
                eprintln!("resetting the device into its firmware");
            }
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish_bar();
    }
}
