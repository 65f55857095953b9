//! Terminal styling (anstyle, through anstream's streams, which decide on colour and translate
//! it for old Windows consoles), output lines, how much to say (`-q`, `-v`), error reporting
//! and exit codes shared by every command.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use anstream::{eprintln, ColorChoice};
use anstyle::{AnsiColor, Effects};

/// Exit code: everything checked out.
pub const EXIT_OK: u8 = 0;
/// Exit code: the checked thing failed (invalid module, unmet dependency, refused plan).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: usage or I/O error.
pub const EXIT_USAGE: u8 = 2;

/// A command's failure: what went wrong, what to do about it, and the exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// Exit code, [`EXIT_CHECK_FAILED`] or [`EXIT_USAGE`].
    pub code: u8,
    /// What failed and where.
    pub message: String,
    /// What to do next.
    pub help: Option<String>,
    /// The library's diagnostic code ("modflash::plan::missing"), when the error has one.
    pub diagnostic: Option<String>,
}

impl CliError {
    /// A usage or I/O error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
            help: None,
            diagnostic: None,
        }
    }

    /// A failed check (exit 1).
    pub fn check(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_CHECK_FAILED,
            message: message.into(),
            help: None,
            diagnostic: None,
        }
    }

    /// Adds a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Puts `context` before the message ("refused, nothing was written: …").
    pub fn context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<modflash::Error> for CliError {
    /// The library's diagnostic: its message, its help line, and exit code 1 for a failed
    /// check, 2 otherwise.
    fn from(e: modflash::Error) -> Self {
        Self {
            code: if e.is_check_failure() {
                EXIT_CHECK_FAILED
            } else {
                EXIT_USAGE
            },
            help: e.help_text(),
            diagnostic: e.code_text(),
            message: e.to_string(),
        }
    }
}

impl From<modflash::sim::SimError> for CliError {
    fn from(e: modflash::sim::SimError) -> Self {
        modflash::Error::from(e).into()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

/// Result of a command: the exit code to use on success paths that still report failure
/// (e.g. `inspect` found a damaged file), or an error.
pub type CmdResult = Result<u8, CliError>;

/// `--color`: whether output is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorArg {
    /// On a terminal, unless `NO_COLOR` is set (`CLICOLOR_FORCE` forces it).
    Auto,
    /// Always, also into pipes and files.
    Always,
    /// Never.
    Never,
}

/// How much the commands say: `-q` keeps results, warnings and errors; `-v` adds every
/// operation as it starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: no progress, no notes.
    Quiet = 0,
    /// The default.
    Normal = 1,
    /// `-v`: every operation, with its time.
    Verbose = 2,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Applies `--color`, `-q` and `-v` for the rest of the process (before anything prints).
pub fn configure(color: ColorArg, verbosity: Verbosity) {
    let choice = match color {
        ColorArg::Auto => ColorChoice::Auto,
        ColorArg::Always => ColorChoice::Always,
        ColorArg::Never => ColorChoice::Never,
    };
    choice.write_global();
    // Bars and prompts draw through `console`: the same decision, stream by stream.
    dialoguer::console::set_colors_enabled(Style::stdout().color);
    dialoguer::console::set_colors_enabled_stderr(Style::stderr().color);
    VERBOSITY.store(verbosity as u8, Ordering::SeqCst);
}

/// How much to say (`-q`, `-v`).
pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::SeqCst) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// Colours for one output stream: anstream's decision for it (a terminal, `NO_COLOR`,
/// `CLICOLOR_FORCE`, `TERM=dumb`, and `--color`).
#[derive(Clone, Copy, Debug)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Styling for standard output.
    pub fn stdout() -> Self {
        Self::deciding(anstream::AutoStream::choice(&std::io::stdout()))
    }

    /// Styling for standard error.
    pub fn stderr() -> Self {
        Self::deciding(anstream::AutoStream::choice(&std::io::stderr()))
    }

    fn deciding(choice: ColorChoice) -> Self {
        Self {
            color: choice != ColorChoice::Never,
        }
    }

    fn paint(&self, style: anstyle::Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }

    /// Green: a good verdict.
    pub fn good(&self, text: &str) -> String {
        self.paint(AnsiColor::Green.on_default().bold(), text)
    }

    /// Red: a failed verdict.
    pub fn bad(&self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), text)
    }

    /// Yellow: a warning.
    pub fn warn(&self, text: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default().bold(), text)
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint(anstyle::Style::new().effects(Effects::BOLD), text)
    }

    /// Dim: secondary detail.
    pub fn dim(&self, text: &str) -> String {
        self.paint(anstyle::Style::new().effects(Effects::DIMMED), text)
    }
}

/// Prints an error the standard way: `error: ...` then `help: ...`.
pub fn print_error(err: &CliError) {
    let style = Style::stderr();
    eprintln!("{} {}", style.bad("error:"), err.message);
    if let Some(help) = &err.help {
        eprintln!("{} {help}", style.bold("help:"));
    }
    if let Some(code) = &err.diagnostic {
        eprintln!("{}", style.dim(&format!("code: {code}")));
    }
}

/// Prints a line on standard output; a closed pipe (`| head`) is not an error worth a panic.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = anstream::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints a line on standard error, ignoring a closed stream.
pub fn stderr_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(anstream::stderr().lock(), "{text}");
}

/// Prints a note on standard error, unless `-q` asked for results, warnings and errors only.
pub fn note(text: &str) {
    if verbosity() != Verbosity::Quiet {
        stderr_line(text);
    }
}

/// Prints `warning: TEXT` on standard error.
pub fn warning(text: &str) {
    stderr_line(&format!("{} {text}", Style::stderr().warn("warning:")));
}

/// Asks a yes/no question (default no) before something is written. The question goes to
/// standard error and the answer is read from standard input, which must be a terminal: a
/// script, a pipe or `--json` gets an error saying to pass `--yes` instead of a guess.
pub fn confirm(question: &str, json: bool) -> Result<bool, CliError> {
    use std::io::IsTerminal;
    let refuse = |why: &str| {
        CliError::usage(format!("{why}: nobody can answer \"{question}\""))
            .with_help("pass --yes to go ahead without asking (or --dry-run to only see the plan)")
    };
    if json {
        return Err(refuse("--json output"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(refuse("standard input is not a terminal"));
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact_on(&dialoguer::console::Term::stderr())
        .map_err(|e| CliError::usage(format!("cannot ask \"{question}\": {e}")))
}

/// A command line as a shell takes it back: arguments quoted where a shell would split or
/// expand them.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "'\"$`\\*?[]#~;&|<>(){}".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
