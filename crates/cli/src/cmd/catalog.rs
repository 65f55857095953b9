//! `modflash catalog add|list`: the Device OS module files modflash may use to meet
//! dependencies, kept in the modflash home.

use anstream::println;
use std::path::PathBuf;

use clap::Subcommand;
use modflash::catalog::store::{HomeCatalog, IndexDamage};
use modflash::catalog::{several_images_words, IndexEntry};

use crate::ui::{print_error, warning, CliError, CmdResult, EXIT_OK};

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
        CatalogCommand::Add { paths } => add(paths),
        CatalogCommand::List { json } => list(json),
    }
}

fn add(paths: Vec<PathBuf>) -> CmdResult {
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
    let store = HomeCatalog::default();
    let mut exit = EXIT_OK;
    for f in files {
        match store.add(&f) {
            Ok(added) => {
                if let Some(damage) = &added.repaired {
                    warning(&format!(
                        "{damage}: rebuilt it from the stored files (the damaged one is kept as index.json.damaged)"
                    ));
                }
                let e = &added.entry;
                println!(
                    "added {}: {} {} {} version {}{}",
                    e.file,
                    e.platform.as_deref().unwrap_or("?"),
                    e.function,
                    e.index,
                    e.version,
                    e.device_os
                        .as_ref()
                        .map(|r| format!(" (Device OS {r})"))
                        .unwrap_or_default()
                );
                if !added.other_images.is_empty() {
                    let names: Vec<String> = std::iter::once(e)
                        .chain(&added.other_images)
                        .map(IndexEntry::name_words)
                        .collect();
                    warning(&several_images_words(
                        &e.module_words(),
                        &names,
                        "a plan takes one of them and names it",
                    ));
                }
            }
            Err(e @ modflash::catalog::store::CatalogError::Io(_)) => {
                return Err(modflash::Error::from(e).into())
            }
            Err(e) => {
                let mut err = CliError::from(modflash::Error::from(e));
                err.message = format!("skipped: {}", err.message);
                exit = exit.max(err.code);
                print_error(&err);
            }
        }
    }
    Ok(exit)
}

fn list(json: bool) -> CmdResult {
    let index = HomeCatalog::default().index();
    if let Some(damage) = &index.damage {
        warning(&damage_words(damage));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&index.entries).unwrap_or_default()
        );
    } else if index.entries.is_empty() {
        println!(
            "the catalogue is empty (add Device OS module files with `modflash catalog add DIR`)"
        );
    } else {
        for e in &index.entries {
            println!(
                "{:<9} {:<10} {} v{:<5} {:<8} {}  {}",
                e.platform.as_deref().unwrap_or("?"),
                e.function,
                e.index,
                e.version,
                e.device_os.as_deref().unwrap_or(""),
                e.sha256.get(..12).unwrap_or(&e.sha256),
                e.file
            );
        }
    }
    Ok(EXIT_OK)
}

fn damage_words(damage: &IndexDamage) -> String {
    format!("{damage}: listed as rebuilt from the stored files (the next `modflash catalog add` rewrites it)")
}
