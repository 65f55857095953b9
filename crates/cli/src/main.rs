//! The `modflash` command-line tool: inspect, plan and flash Particle-style modular firmware,
//! on real devices and on virtual ones.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod report;
mod ui;

/// Safe flashing for Particle-style modular firmware.
#[derive(Parser, Debug)]
#[command(name = "modflash", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check module files: verdict, platform, versions, dependencies, addresses, CRC and SHA.
    Inspect {
        /// Files to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array (fields documented in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Virtual devices: create, show, reset, remove.
    #[command(subcommand)]
    Sim(cmd::sim::SimCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ui::EXIT_USAGE
            } else {
                ui::EXIT_OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Inspect { files, json } => cmd::inspect::run(&files, json),
        Command::Sim(sim) => cmd::sim::run(sim),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            ui::print_error(&err);
            ExitCode::from(err.code)
        }
    }
}
