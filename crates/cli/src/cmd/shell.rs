//! `modflash completions SHELL` and `modflash man`: shell completions (clap_complete) and man
//! pages (clap_mangen), generated at run time from the same argument definitions the binary
//! parses, so they never fall behind it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::ui::{say, CliError, CmdResult, EXIT_OK};

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> CmdResult {
    let mut command = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "modflash", &mut out);
    let _ = std::io::stdout().write_all(&out);
    Ok(EXIT_OK)
}

/// Prints the man page of `modflash` (roff) on standard output, or, with `dir`, writes a
/// page for it and for every subcommand there (`modflash.1`, `modflash-flash.1`, …).
pub fn man(dir: Option<&Path>) -> CmdResult {
    let command = crate::Cli::command();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        render(&command, &mut out)?;
        let _ = std::io::stdout().write_all(&out);
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(command, dir).map_err(|e| {
        CliError::usage(format!("cannot write man pages to {}: {e}", dir.display()))
    })?;
    say(&format!("wrote the man pages to {}", dir.display()));
    Ok(EXIT_OK)
}

fn render(command: &clap::Command, out: &mut Vec<u8>) -> Result<(), CliError> {
    clap_mangen::Man::new(command.clone())
        .render(out)
        .map_err(|e| CliError::usage(format!("cannot render the man page: {e}")))
}
