//! `modflash map --device REF | FILE… [--svg OUT] [--json]`: where modules sit in flash, how
//! full each region is, what depends on what and what fails — of a device, or of module files
//! placed where they would go — on the terminal, as JSON, and as an SVG picture. Also the
//! picture `plan --svg OUT` draws of a device before and after a plan.

use std::path::{Path, PathBuf};

use clap::Args;
use modflash::map::{map_of_session, maps_of_paths, plan_maps, Basis, DeviceMap};
use modflash::plan::Plan;
use modflash::Session;
use modflash_device::Device;

use crate::args::DeviceArgs;
use crate::render::Renderer;
use crate::ui::{note, say, CliError, CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK};
use crate::view::map_svg::maps_svg;
use crate::view::map_text::map_text;

/// What `map` draws, and how.
#[derive(Args, Debug)]
pub struct MapArgs {
    /// Module files to place on their platform's memory map (instead of a device).
    #[arg(conflicts_with = "device")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Also draw the map as an SVG picture into this file.
    #[arg(long, value_name = "OUT")]
    pub svg: Option<PathBuf>,
    /// Print the map as JSON: an object for a device, an array of maps for files
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Runs `map`; exit 1 when a module fails a check.
pub fn run(args: &MapArgs) -> CmdResult {
    let (titles, maps) = if args.files.is_empty() {
        let devref = args.device.require()?;
        let mut session = Session::open(&devref)?;
        let map = map_of_session(&mut session, &mut Renderer::new(false));
        // Reading a real device back over DFU moves a virtual one's clock: saved either way.
        session.save()?;
        (vec![devref.to_string()], vec![map?])
    } else {
        let maps = maps_of_paths(&args.files)?;
        let titles = maps.iter().map(|m| files_title(&args.files, m)).collect();
        (titles, maps)
    };
    if args.json {
        let value = match maps.as_slice() {
            [one] if args.files.is_empty() => serde_json::to_value(one),
            all => serde_json::to_value(all),
        };
        let text = value
            .and_then(|v| serde_json::to_string_pretty(&v))
            .map_err(|e| CliError::usage(format!("cannot format the map: {e}")))?;
        say(&text);
    } else {
        let style = Style::stdout();
        let texts: Vec<String> = titles
            .iter()
            .zip(&maps)
            .map(|(title, map)| map_text(&style, title, map))
            .collect();
        say(texts.join("\n").trim_end());
    }
    if let Some(out) = &args.svg {
        let panels: Vec<(String, &DeviceMap)> = titles.into_iter().zip(&maps).collect();
        write_svg(out, &maps_svg(&panels))?;
    }
    Ok(if maps.iter().all(DeviceMap::all_valid) {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    })
}

/// `plan --svg OUT`: the device before the plan and after it, as predicted, side by side.
pub fn plan_svg(
    session: &Session<'_>,
    twin: &Device,
    plan: &Plan,
    out: &Path,
) -> Result<(), CliError> {
    let maps = plan_maps(twin, plan, Basis::of_session(session))?;
    let panels = [
        (format!("{} before", session.reference()), &maps.before),
        ("after the plan (predicted)".to_string(), &maps.after),
    ];
    write_svg(out, &maps_svg(&panels))
}

/// "app.bin", or "3 files" for the files of one platform.
fn files_title(files: &[PathBuf], map: &DeviceMap) -> String {
    let mine: Vec<&str> = map
        .modules()
        .filter_map(|(_, m)| m.file.as_deref())
        .chain(map.unplaced.iter().map(|u| u.file.as_str()))
        .collect();
    match (files, mine.as_slice()) {
        ([one], _) => one.display().to_string(),
        (_, [one]) => (*one).to_string(),
        (_, many) => format!("{} files", many.len()),
    }
}

fn write_svg(out: &Path, svg: &str) -> Result<(), CliError> {
    std::fs::write(out, svg)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", out.display())))?;
    note(&format!("wrote {}", out.display()));
    Ok(())
}
