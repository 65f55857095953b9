//! `modflash catalog add|list|rm`: the Device OS module files modflash may use to meet
//! dependencies, kept in the modflash home.

use std::path::PathBuf;

use clap::Subcommand;
use modflash::catalog::add::add_from;
use modflash::catalog::releases::group;
use modflash::catalog::store::{HomeCatalog, IndexDamage};
use modflash::catalog::{several_images_words, IndexEntry};

use crate::ui::{say, warning, CliError, CmdResult, Style, EXIT_OK};
use crate::view::catalog::{add_lines, entry_words, list_text, summary};

/// Catalogue subcommands.
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Add Device OS module files: files, folders (at any depth) and .zip archives (a Device
    /// OS release's files, an application bundle). Files that are not modules are counted and
    /// left; a damaged file or archive entry is reported and the rest added.
    Add {
        /// Files, folders or .zip archives.
        #[arg(required_unless_present = "from_particle_cli")]
        paths: Vec<PathBuf>,
        /// Also add the module files particle-cli keeps: its npm package folder (the Tinker
        /// apps it ships) or its ~/.particle folder (the Device OS modules it downloaded).
        #[arg(long, value_name = "DIR")]
        from_particle_cli: Option<PathBuf>,
    },
    /// List the catalogue by platform and Device OS release, and which releases are complete.
    List {
        /// Print JSON: every module, one object each (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Remove modules from the catalogue.
    Rm {
        /// The file name a module was added as, or the start of its SHA-256 (8 hex digits
        /// or more).
        #[arg(required = true, value_name = "NAME|SHA256")]
        modules: Vec<String>,
    },
}

/// Runs a catalogue subcommand.
pub fn run(cmd: CatalogCommand) -> CmdResult {
    match cmd {
        CatalogCommand::Add {
            paths,
            from_particle_cli,
        } => add(&paths, from_particle_cli),
        CatalogCommand::List { json } => list(json),
        CatalogCommand::Rm { modules } => rm(&modules),
    }
}

/// Adds what the paths hold; exit 1 when they hold no module at all.
fn add(paths: &[PathBuf], particle_cli: Option<PathBuf>) -> CmdResult {
    let store = HomeCatalog::default();
    let report = add_from(&store, paths, particle_cli.as_deref()).map_err(modflash::Error::from)?;
    if let Some(damage) = &report.repaired {
        warning(&format!(
            "{damage}: rebuilt it from the stored files (the damaged one is kept as index.json.damaged)"
        ));
    }
    let style = Style::stdout();
    for line in add_lines(&style, &report) {
        say(&line);
    }
    for added in &report.added {
        if !added.other_images.is_empty() {
            let e = &added.entry;
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
    for refused in &report.refused {
        warning(&format!("not added: {refused}"));
    }
    say(&summary(&report));
    if report.found_no_module() {
        return Err(CliError::check("found no Device OS module file to add").with_help(
            "name module files (.bin), folders or .zip archives of them; `modflash inspect FILE` says what a file is",
        ));
    }
    Ok(EXIT_OK)
}

fn list(json: bool) -> CmdResult {
    let index = HomeCatalog::default().index();
    if let Some(damage) = &index.damage {
        warning(&damage_words(damage));
    }
    if json {
        say(&serde_json::to_string_pretty(&index.entries).unwrap_or_default());
    } else if index.entries.is_empty() {
        say("the catalogue is empty (add Device OS module files with `modflash catalog add PATH`: files, folders or a release's .zip)");
    } else {
        say(list_text(&Style::stdout(), &group(&index.entries)).trim_end());
    }
    Ok(EXIT_OK)
}

fn rm(modules: &[String]) -> CmdResult {
    let store = HomeCatalog::default();
    for what in modules {
        for e in store.remove(what).map_err(modflash::Error::from)? {
            say(&format!("removed {}", entry_words(&e)));
        }
    }
    Ok(EXIT_OK)
}

fn damage_words(damage: &IndexDamage) -> String {
    format!("{damage}: listed as rebuilt from the stored files (the next `modflash catalog add` rewrites it)")
}
