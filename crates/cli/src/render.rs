//! The one renderer of library events: on a terminal one bar for the whole plan and one for
//! the running operation (indicatif), plain lines otherwise, JSON lines with `--json` (fields
//! in docs/json.md). `-q` keeps warnings and failures only; `-v` adds every operation as it
//! starts and ends, with its time.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use modflash::progress::{Event, Evidence, Level, Observer, Operation};

use crate::ui::{say, stderr_line, Style, Verbosity};
use crate::view::stream::Line;

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

/// The two bars on a terminal: the plan's steps, and the running operation's bytes.
struct Bars {
    multi: MultiProgress,
    /// Steps done of the plan, with the running step's label; from the first step on.
    overall: Option<ProgressBar>,
    /// Bytes of the running operation.
    current: Option<ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            overall: None,
            current: None,
        }
    }

    /// A line above the bars.
    fn println(&self, text: &str) {
        if self.overall.is_some() || self.current.is_some() {
            self.multi.suspend(|| stderr_line(text));
        } else {
            stderr_line(text);
        }
    }

    fn step(&mut self, step: usize, steps: usize, label: &str) {
        let overall = self.overall.get_or_insert_with(|| {
            let bar = self.multi.insert(0, ProgressBar::new(steps as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30.green/white}] {pos}/{len} steps done  {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix("plan");
            bar
        });
        overall.set_length(steps as u64);
        overall.set_position(step.saturating_sub(1) as u64);
        overall.set_message(label.to_string());
    }

    fn step_done(&mut self, step: usize) {
        if let Some(overall) = &self.overall {
            overall.set_position(step as u64);
        }
    }

    fn operation(&mut self, operation: Operation, total: u64) {
        self.end_operation();
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(operation.to_string());
        self.current = Some(bar);
    }

    fn end_operation(&mut self) {
        if let Some(bar) = self.current.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.end_operation();
        if let Some(bar) = self.overall.take() {
            bar.finish_and_clear();
        }
    }
}

/// Renders events; an [`Observer`].
pub struct Renderer {
    output: Output,
    verbosity: Verbosity,
    bars: Option<Bars>,
    /// The running operation and the last quarter printed for it (plain lines).
    quarter: Option<(Operation, u64)>,
    /// When the running operation started (`-v`).
    started: Option<Instant>,
}

impl Renderer {
    /// A renderer for standard error (human) or standard output (JSON lines), saying as much
    /// as `-q` / `-v` ask.
    pub fn new(json: bool) -> Self {
        let verbosity = crate::ui::verbosity();
        let output = if json {
            Output::Json
        } else if std::io::stderr().is_terminal() && verbosity != Verbosity::Quiet {
            Output::Bars
        } else {
            Output::Lines
        };
        Self {
            output,
            verbosity,
            bars: (output == Output::Bars).then(Bars::new),
            quarter: None,
            started: None,
        }
    }

    /// A line on standard error, above the bars when there are any.
    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => bars.println(text),
            None => stderr_line(text),
        }
    }

    fn end_operation(&mut self) {
        if let Some(bars) = &mut self.bars {
            bars.end_operation();
        }
    }

    fn json(&mut self, e: &Event) {
        say(&event_json(e).to_string());
    }

    fn human(&mut self, e: Event) {
        let chatty = self.verbosity != Verbosity::Quiet;
        let verbose = self.verbosity == Verbosity::Verbose;
        match e {
            Event::StepStarted {
                step, steps, label, ..
            } => {
                self.end_operation();
                if let Some(bars) = &mut self.bars {
                    bars.step(step, steps, &label);
                }
                if chatty {
                    self.line(&format!("step {step}/{steps}: {label}"));
                }
            }
            Event::Started {
                operation,
                what,
                total,
            } => {
                self.end_operation();
                if verbose {
                    self.line(&format!("  {operation} {what}"));
                } else if chatty && matches!(operation, Operation::ModeChange | Operation::Reset) {
                    self.line(&what);
                }
                if let (Some(bars), Some(total)) = (&mut self.bars, total.filter(|&t| t > 0)) {
                    bars.operation(operation, total);
                }
                self.quarter = Some((operation, 0));
                self.started = Some(Instant::now());
            }
            Event::Progress {
                operation,
                done,
                total,
            } => {
                if let Some(bar) = self.bars.as_ref().and_then(|b| b.current.as_ref()) {
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                } else if let (true, Some((op, last)), Some(q)) =
                    (chatty, &mut self.quarter, (done * 4).checked_div(total))
                {
                    // Without a bar, only the write says how far it is, a line per quarter.
                    if operation == Operation::Write && *op == operation && q > *last {
                        *last = q;
                        let text = format!(
                            "  {operation} {done}/{total} bytes ({}%)",
                            done * 100 / total
                        );
                        self.line(&text);
                    }
                }
            }
            Event::Finished { operation } => {
                self.end_operation();
                if let (true, Some(started)) = (verbose, self.started.take()) {
                    let secs = started.elapsed().as_secs_f64();
                    self.line(&format!("  {operation} done ({secs:.2} s)"));
                }
            }
            Event::Failed { operation, reason } => {
                self.end_operation();
                self.line(&format!("  {operation} failed: {reason}"));
            }
            Event::StepFinished { step, evidence } => {
                self.end_operation();
                if let Some(bars) = &mut self.bars {
                    bars.step_done(step);
                }
                if chatty {
                    self.line(&match evidence {
                        Evidence::ReadBack => format!("  step {step} verified (read back)"),
                        Evidence::Hash => format!(
                            "  step {step} verified (the device reports the file's SHA-256)"
                        ),
                        Evidence::DeviceAccepted => format!(
                            "  step {step} accepted by the device (its own validation; checked \
                             again after the restart)"
                        ),
                        Evidence::HeaderAndSuffix => format!(
                            "  step {step} written (header and suffix read back; the device \
                             checks its CRC when its firmware runs, read after the restart)"
                        ),
                        Evidence::DeviceCrc => format!(
                            "  step {step} verified (header and suffix read back, CRC checked \
                             by the device)"
                        ),
                        Evidence::None => format!("  step {step} written, not verified"),
                    });
                }
            }
            Event::Note { level, text } => {
                let style = Style::stderr();
                match level {
                    Level::Info if chatty => self.line(&format!("{} {text}", style.dim("note:"))),
                    Level::Info => {}
                    Level::Warning => {
                        self.line(&format!("{} {text}", style.warn("warning:")));
                    }
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

/// One event as its JSON line ([`Line`], docs/json.md "Progress events").
pub fn event_json(e: &Event) -> serde_json::Value {
    serde_json::to_value(Line::from(e)).unwrap_or(serde_json::Value::Null)
}
