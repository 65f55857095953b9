//! The catalogue in words: what `catalog add` did with each file and its summary, and the
//! catalogue listed by platform and Device OS release.

use modflash::catalog::add::AddReport;
use modflash::catalog::releases::PlatformGroup;
use modflash::catalog::IndexEntry;

use crate::ui::Style;

/// Non-modules named one by one in the summary before "and N more".
const NOT_MODULES_NAMED: usize = 5;

/// "photon-system-part1@1.5.0.bin: Photon system part 1 version 1502 (Device OS 1.5.0)".
pub fn entry_words(e: &IndexEntry) -> String {
    let release = e
        .device_os
        .as_ref()
        .map(|r| format!(" (Device OS {r})"))
        .unwrap_or_default();
    format!("{}: {}{release}", e.file, e.module_words())
}

/// A line per module found: added, or already in the catalogue (and under which name).
pub fn add_lines(style: &Style, report: &AddReport) -> Vec<String> {
    let added = report
        .added
        .iter()
        .map(|a| format!("{} {}", style.good("added"), entry_words(&a.entry)));
    let already = report.already.iter().map(|(place, e)| {
        let name = place.rsplit(['/', ' ']).next().unwrap_or(place);
        let as_before = if name == e.file {
            String::new()
        } else {
            format!(", added as {}", e.file)
        };
        format!(
            "already in the catalogue: {name} ({}{as_before})",
            e.module_words()
        )
    });
    added.chain(already).collect()
}

/// "2 modules added, 1 already in the catalogue, 3 files are not modules (README.md, …),
/// 1 damaged (not added)".
pub fn summary(report: &AddReport) -> String {
    let mut parts = vec![count(report.added.len(), "module", "modules") + " added"];
    if !report.already.is_empty() {
        parts.push(format!("{} already in the catalogue", report.already.len()));
    }
    if !report.not_modules.is_empty() {
        let names: Vec<&str> = report
            .not_modules
            .iter()
            .take(NOT_MODULES_NAMED)
            .map(String::as_str)
            .collect();
        let more = match report.not_modules.len().saturating_sub(NOT_MODULES_NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let verb = if report.not_modules.len() == 1 {
            "is not a module"
        } else {
            "are not modules"
        };
        parts.push(format!(
            "{} {verb} ({}{more})",
            count(report.not_modules.len(), "file", "files"),
            names.join(", ")
        ));
    }
    if !report.refused.is_empty() {
        parts.push(format!(
            "{} damaged or unreadable (not added)",
            report.refused.len()
        ));
    }
    parts.join(", ")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The catalogue by platform, then by release (complete or what it lacks, and where the
/// release's files are), then the other modules.
pub fn list_text(style: &Style, groups: &[PlatformGroup]) -> String {
    let mut out = String::new();
    for g in groups {
        out.push_str(&format!("{}\n", style.bold(&g.platform)));
        for r in &g.releases {
            let state = if r.complete() {
                style.good("complete")
            } else {
                style.warn(&format!(
                    "incomplete, lacks {} ({})",
                    r.missing.join(", "),
                    r.page
                ))
            };
            out.push_str(&format!("  Device OS {}: {state}\n", r.release));
            for e in &r.entries {
                out.push_str(&entry_line(style, e));
            }
        }
        if !g.others.is_empty() {
            out.push_str(&format!("  {}\n", style.dim("other modules")));
            for e in &g.others {
                out.push_str(&entry_line(style, e));
            }
        }
    }
    out
}

fn entry_line(style: &Style, e: &IndexEntry) -> String {
    let slot = modflash_module::ModuleFunction::from_name(&e.function).map_or_else(
        || format!("{} {}", e.function, e.index),
        |f| modflash_module::ModuleRef::new(f, e.index).to_string(),
    );
    format!(
        "    {:<22} v{:<5}  {}  {}\n",
        slot,
        e.version,
        style.dim(e.sha256.get(..12).unwrap_or(&e.sha256)),
        e.file
    )
}
