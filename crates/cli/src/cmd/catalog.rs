//! `modflash catalog add|list`: the Device OS module files modflash may use to meet
//! dependencies, kept in the modflash home.

use std::path::PathBuf;

use clap::Subcommand;
use modflash::catalog::Catalog;

use crate::ui::{print_error, CliError, CmdResult, EXIT_CHECK_FAILED, EXIT_OK};

/// Catalogue subcommands.
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Add module files (or every file of a directory) to the catalogue.
    Add {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the catalogue.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a catalogue subcommand.
pub fn run(cmd: CatalogCommand) -> CmdResult {
    match cmd {
        CatalogCommand::Add { paths } => {
            let mut files = Vec::new();
            for p in paths {
                if p.is_dir() {
                    let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", p.display())))?
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.is_file())
                        .collect();
                    entries.sort();
                    files.extend(entries);
                } else {
                    files.push(p);
                }
            }
            let mut exit = EXIT_OK;
            for f in files {
                match Catalog::add_to_home(&f) {
                    Ok(e) => println!(
                        "added {}: {} {} {} version {}{}",
                        e.file,
                        e.platform.as_deref().unwrap_or("?"),
                        e.function,
                        e.index,
                        e.version,
                        e.device_os
                            .map(|r| format!(" (Device OS {r})"))
                            .unwrap_or_default()
                    ),
                    Err(e) => {
                        exit = EXIT_CHECK_FAILED;
                        print_error(&CliError::check(format!("skipped: {e}")));
                    }
                }
            }
            Ok(exit)
        }
        CatalogCommand::List { json } => {
            let index = Catalog::home_index();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&index).unwrap_or_default()
                );
            } else if index.is_empty() {
                println!("the catalogue is empty (add Device OS module files with `modflash catalog add DIR`)");
            } else {
                for e in index {
                    println!(
                        "{:<9} {:<10} {} v{:<5} {:<8} {}  {}",
                        e.platform.as_deref().unwrap_or("?"),
                        e.function,
                        e.index,
                        e.version,
                        e.device_os.as_deref().unwrap_or(""),
                        &e.sha256[..12],
                        e.file
                    );
                }
            }
            Ok(EXIT_OK)
        }
    }
}
