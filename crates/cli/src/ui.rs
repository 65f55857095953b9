//! Terminal styling, output lines, error reporting and exit codes shared by every command.

use std::fmt;
use std::io::IsTerminal;

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

/// Colours for one output stream; plain text unless the stream is a terminal and `NO_COLOR`
/// is unset.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Styling for standard output.
    pub fn stdout() -> Self {
        Self::for_terminal(std::io::stdout().is_terminal())
    }

    /// Styling for standard error.
    pub fn stderr() -> Self {
        Self::for_terminal(std::io::stderr().is_terminal())
    }

    fn for_terminal(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: is_terminal && !no_color,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Green: a good verdict.
    pub fn good(&self, text: &str) -> String {
        self.paint("1;32", text)
    }

    /// Red: a failed verdict.
    pub fn bad(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Yellow: a warning.
    pub fn warn(&self, text: &str) -> String {
        self.paint("1;33", text)
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dim: secondary detail.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
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
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints a line on standard error, ignoring a closed stream.
pub fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints `warning: TEXT` on standard error.
pub fn warning(text: &str) {
    note(&format!("{} {text}", Style::stderr().warn("warning:")));
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
