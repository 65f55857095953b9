//! A memory map on a terminal: per flash memory a strip of where each region lies and what is
//! in use, a bar per region with its fill and its module's verdict, then every dependency with
//! PASS/FAIL. The words shared with the SVG ([`super::map_svg`]) live here too.

use modflash::map::{Basis, DeviceMap, Edge, Memory, Placed, Region, RegionKind, Verdict};
use modflash_module::release::release_name;
use modflash_module::ModuleFunction;
use modflash_module::Store;

use crate::ui::Style;

/// Cells of the strip that shows a whole memory.
const STRIP_CELLS: u32 = 64;
/// Cells of a region's fill bar.
const BAR_CELLS: u32 = 24;
/// Width of the fill column ("245.1 KB of 256 KB, 96%").
const FILL_WIDTH: usize = 24;
/// Narrowest region name column ("user part 1 (factory)" and a space).
const NAME_WIDTH: usize = 22;

/// The map for people: `title` names the device or the files.
pub fn map_text(style: &Style, title: &str, map: &DeviceMap) -> String {
    let mut out = format!("{}\n", style.bold(&heading(title, map)));
    out.push_str(&format!("{}\n", style.dim(&basis_words(map))));
    let name_width = map
        .memories
        .iter()
        .flat_map(|m| &m.regions)
        .map(|r| r.name().chars().count() + 1)
        .fold(NAME_WIDTH, usize::max);
    let mut key = 0;
    for memory in &map.memories {
        out.push('\n');
        out.push_str(&memory_text(style, memory, key, name_width));
        key += memory.regions.len();
    }
    for u in &map.unplaced {
        out.push_str(&format!(
            "  {} {}: {}\n",
            style.bad("not placed:"),
            u.file,
            u.reason
        ));
    }
    out.push_str("\ndependencies\n");
    if map.dependencies.is_empty() {
        out.push_str("  none\n");
    }
    for e in &map.dependencies {
        out.push_str(&format!("  {}\n", dependency_line(style, e)));
    }
    out
}

/// "sim:demo — Photon · Device OS 0.5.2 · app (LED breathing cyan)".
pub fn heading(title: &str, map: &DeviceMap) -> String {
    let mut parts = vec![format!("{title} — {}", map.platform)];
    parts.extend(map.system.clone());
    if let Some(mode) = map.mode {
        let led = map
            .led
            .as_ref()
            .map_or(String::new(), |l| format!(" (LED {l})"));
        parts.push(format!("{}{led}", mode.replace('_', " ")));
    }
    parts.join(" · ")
}

/// Which memory map, and where the sizes come from.
pub fn basis_words(map: &DeviceMap) -> String {
    let basis = match map.basis {
        Basis::Flash => "read from the device's flash",
        Basis::ModuleList => {
            "modelled from the module list the device reports (application sizes estimated)"
        }
        Basis::Files => "where the files would go",
    };
    format!("memory map {}, {basis}", map.layout)
}

/// "internal flash", "external flash".
pub fn memory_name(memory: &Memory) -> String {
    format!("{} flash", memory.name)
}

/// The letter of the `n`th region of a map (A, B, …), as strip and rows show it.
pub fn region_key(n: usize) -> char {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    letters.get(n).map_or('?', |&b| char::from(b))
}

fn memory_text(style: &Style, memory: &Memory, first_key: usize, name_width: usize) -> String {
    let mut out = format!(
        "{}  {:#010x}–{:#010x}  {}\n",
        style.bold(&memory_name(memory)),
        memory.start,
        memory.end,
        size_words(memory.end - memory.start)
    );
    out.push_str(&format!("  {}\n", strip(style, memory, first_key)));
    out.push_str(&format!(
        "  {}\n",
        style.dim("(capitals: in use; small letters: free; ·: no region)")
    ));
    for n in 0..memory.regions.len() {
        out.push_str(&region_text(style, memory, first_key, n, name_width));
    }
    out
}

/// One character per cell of the memory: the key of the region that covers most of the cell
/// (a module region before the OTA area it overlaps), a capital when the cell holds data.
fn strip(style: &Style, memory: &Memory, first_key: usize) -> String {
    let size = u64::from(memory.end - memory.start);
    (0..u64::from(STRIP_CELLS))
        .map(|cell| {
            let start = u64::from(memory.start) + size * cell / u64::from(STRIP_CELLS);
            let end = u64::from(memory.start) + size * (cell + 1) / u64::from(STRIP_CELLS);
            let overlap = |a: u64, b: u64| end.min(b).saturating_sub(start.max(a));
            let Some((n, region)) = memory
                .regions
                .iter()
                .enumerate()
                .map(|(n, r)| (n, r, overlap(u64::from(r.start), u64::from(r.end))))
                .filter(|(_, _, o)| *o > 0)
                .max_by_key(|(_, r, o)| (*o, r.kind != RegionKind::Ota))
                .map(|(n, r, _)| (n, r))
            else {
                return style.dim("·");
            };
            let key = region_key(first_key + n);
            let in_use = region.kind == RegionKind::Dct
                || region.modules.iter().any(|m| {
                    overlap(u64::from(m.start), u64::from(m.start) + u64::from(m.size)) > 0
                });
            if !in_use {
                style.dim(&key.to_ascii_lowercase().to_string())
            } else if region.kind == RegionKind::Dct || region.valid() {
                style.good(&key.to_string())
            } else {
                style.bad(&key.to_string())
            }
        })
        .collect()
}

fn region_text(
    style: &Style,
    memory: &Memory,
    first_key: usize,
    n: usize,
    name_width: usize,
) -> String {
    let Some(region) = memory.regions.get(n) else {
        return String::new();
    };
    let filled = if region.size() == 0 {
        0
    } else {
        (u64::from(region.used) * u64::from(BAR_CELLS)).div_ceil(u64::from(region.size())) as u32
    };
    let in_use = if region.kind == RegionKind::Dct {
        "▒"
    } else {
        "█"
    };
    let used_bar = in_use.repeat(filled as usize);
    let free_bar = "░".repeat((BAR_CELLS - filled) as usize);
    let used_bar = match region.kind {
        RegionKind::Dct => style.dim(&used_bar),
        _ if region.valid() => style.good(&used_bar),
        _ => style.bad(&used_bar),
    };
    let mut modules = region.modules.iter();
    let first = modules.next().map_or_else(
        || style.dim(&region_words(memory, first_key, region)),
        |m| module_words(style, m),
    );
    let mut out = format!(
        "  {}  {:#010x}  {:<name_width$}  {used_bar}{}  {:<FILL_WIDTH$}  {first}\n",
        region_key(first_key + n),
        region.start,
        region.name(),
        style.dim(&free_bar),
        fill_words(region),
    );
    for m in modules {
        let indent = 2 + 1 + 2 + 10 + 2 + name_width + 2 + BAR_CELLS as usize + 2 + FILL_WIDTH + 2;
        out.push_str(&format!("{:indent$}{}\n", "", module_words(style, m)));
    }
    out
}

/// What an empty region is: "empty", the OTA area and what it overlaps, the DCT's contents.
pub fn region_words(memory: &Memory, first_key: usize, region: &Region) -> String {
    match region.kind {
        RegionKind::Module => "empty".into(),
        RegionKind::Dct => "two copies: keys, claim code, OTA flag".into(),
        RegionKind::Ota => {
            let overlapped: Vec<String> = memory
                .regions
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.kind != RegionKind::Ota && r.start < region.end && region.start < r.end
                })
                .map(|(n, _)| region_key(first_key + n).to_string())
                .collect();
            match overlapped.as_slice() {
                [] => "where updates are received".into(),
                keys => format!("where updates are received (overlaps {})", keys.join(", ")),
            }
        }
    }
}

/// "11.6 KB of 16 KB, 72%"; the DCT and the OTA area by their size.
pub fn fill_words(region: &Region) -> String {
    match region.kind {
        RegionKind::Module if region.used == 0 => format!("0 of {}", size_words(region.size())),
        RegionKind::Module => format!(
            "{} of {}, {}%",
            size_words(region.used),
            size_words(region.size()),
            percent(region.used, region.size())
        ),
        _ => size_words(region.size()),
    }
}

fn module_words(style: &Style, m: &Placed) -> String {
    let verdict = if m.valid() {
        style.good("valid")
    } else {
        style.bad(&failed_words(m))
    };
    let written = if m.written { " (written)" } else { "" };
    format!("{}{verdict}{written}", module_label(m))
}

/// "app.bin: v6 (1.5.0) " — the file when there is one, the version and its releases.
pub fn module_label(m: &Placed) -> String {
    let file = m.file.as_ref().map_or(String::new(), |f| format!("{f}: "));
    format!("{file}v{}{} ", m.version, releases_words(&m.releases))
}

/// "FAIL integrity, dependencies".
pub fn failed_words(m: &Placed) -> String {
    let checks: Vec<&str> = m.failed.iter().map(|c| c.name()).collect();
    format!("FAIL {}", checks.join(", "))
}

/// " (0.5.2)", " (1.5.0–1.5.2)", or nothing.
fn releases_words(releases: &[&str]) -> String {
    match releases {
        [] => String::new(),
        [one] => format!(" ({one})"),
        [first, .., last] => format!(" ({first}–{last})"),
    }
}

/// PASS / FAIL / SKIP / "?" and the sentence for one dependency.
pub fn dependency_words(e: &Edge) -> (&'static str, String) {
    let from = match e.store {
        Some(Store::Main) | None => e.slot().to_string(),
        Some(store) => format!("{} ({})", e.slot(), store.name()),
    };
    let needs = format!(
        "{from} v{} → {} ≥ {}",
        e.version,
        e.target(),
        e.needs.version
    );
    let installed = |v: u16| match (e.needs.function, release_name(v)) {
        (ModuleFunction::SystemPart, Some(r)) => format!("installed {v} ({r})"),
        _ => format!("installed {v}"),
    };
    let (verdict, detail) = match e.verdict {
        Verdict::Met => ("PASS", e.installed.map(installed).unwrap_or_default()),
        Verdict::Erased => (
            "PASS",
            "nothing installed (an erased region passes the device's check)".into(),
        ),
        Verdict::NotExamined => ("SKIP", "not examined: dependency 1 is empty".into()),
        Verdict::NotGiven => ("?", "not among the files".into()),
        Verdict::Unmet => ("FAIL", e.installed.map(installed).unwrap_or_default()),
        Verdict::NoRegion => ("FAIL", "the platform has no such module".into()),
    };
    let fix = e
        .fix
        .as_ref()
        .map_or(String::new(), |f| format!("; flash {f}"));
    (verdict, format!("{needs}: {detail}{fix}"))
}

fn dependency_line(style: &Style, e: &Edge) -> String {
    let (verdict, words) = dependency_words(e);
    let verdict = match verdict {
        "PASS" => style.good("PASS"),
        "FAIL" => style.bad("FAIL"),
        other => style.dim(&format!("{other:<4}")),
    };
    format!("{verdict}  {words}")
}

/// "16 KB", "11.6 KB", "1.5 MB", "512 B".
pub fn size_words(bytes: u32) -> String {
    const KB: f64 = 1024.0;
    let b = f64::from(bytes);
    let (value, unit) = if b >= KB * KB {
        (b / (KB * KB), "MB")
    } else if b >= KB {
        (b / KB, "KB")
    } else {
        return format!("{bytes} B");
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// `part` of `whole` in whole percent, rounded.
pub fn percent(part: u32, whole: u32) -> u64 {
    if whole == 0 {
        0
    } else {
        (u64::from(part) * 100 + u64::from(whole) / 2) / u64::from(whole)
    }
}
