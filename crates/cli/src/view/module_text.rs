//! One module in words (`inspect`): the verdict line and one fact per line.

use modflash_module::parse::InflateCheck;
use modflash_module::platform::platform;
use modflash_module::release::release_name;
use modflash_module::{Dependency, Module, ModuleFunction, RegionCheck, ShaCoverage};

use super::module_json::extensions;
use crate::ui::Style;

/// "Device OS 1.5.0" for a system-part version, or nothing when unknown.
pub fn release_suffix(version: u16) -> String {
    release_name(version)
        .map(|r| format!(" (Device OS {r})"))
        .unwrap_or_default()
}

/// A dependency in words: "system part 1 ≥ 1502 (Device OS 1.5.0)".
pub fn describe_dependency(d: &Dependency) -> String {
    let release = if d.function == ModuleFunction::SystemPart {
        release_suffix(d.version)
    } else {
        String::new()
    };
    format!("{d}{release}")
}

/// The first line of a verdict: "valid module", "damaged: ...", or "not a module: ...".
pub fn verdict_line(style: &Style, modules: &[Result<Module<'_>, String>]) -> String {
    let mut problems = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        match m {
            Ok(m) => problems.extend(m.problems().map(|p| {
                if modules.len() > 1 {
                    format!("module {} of the chain: {p}", i + 1)
                } else {
                    p.to_string()
                }
            })),
            Err(e) if i == 0 => return format!("{} {e}", style.warn("not a module:")),
            Err(e) => problems.push(format!(
                "module {} of the chain is not a module: {e}",
                i + 1
            )),
        }
    }
    if problems.is_empty() {
        if modules.len() > 1 {
            style.good(&format!(
                "valid combined module ({} modules)",
                modules.len()
            ))
        } else {
            style.good("valid module")
        }
    } else {
        format!("{} {}", style.bad("damaged:"), problems.join("; "))
    }
}

/// Particle ships Electron system parts under file names that do not match their index
/// (spec §1.7): say which file name this one goes by.
fn electron_file_note(m: &Module<'_>) -> String {
    let three_parts = m.info.version >= modflash_module::platform::ELECTRON_THREE_PARTS_FROM;
    if m.info.platform_id != 10 || m.info.function != ModuleFunction::SystemPart || !three_parts {
        return String::new();
    }
    match m.info.index {
        1 => " — Particle ships it as \"system-part2\"".into(),
        2 => " — Particle ships it as \"system-part3\"".into(),
        3 => " — Particle ships it as \"system-part1\"".into(),
        _ => String::new(),
    }
}

/// The human description of one module, indented by two spaces, one fact per line.
pub fn module_text(style: &Style, m: &Module<'_>) -> String {
    let info = &m.info;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("  {:<13} {value}\n", style.dim(label)));
    };
    line(
        "platform",
        match platform(info.platform_id) {
            Some(p) => format!("{} ({})", p.display_name, p.id),
            None => format!("unknown platform ({})", info.platform_id),
        },
    );
    let release = match info.function {
        ModuleFunction::SystemPart => release_suffix(info.version),
        _ => String::new(),
    };
    line(
        "module",
        format!(
            "{}, version {}{release}{}",
            info.slot(),
            info.version,
            electron_file_note(m)
        ),
    );
    if info.function == ModuleFunction::UserPart {
        if let Some(d) = info
            .listed_dependencies()
            .find(|d| d.function == ModuleFunction::SystemPart)
        {
            if let Some(r) = release_name(d.version) {
                line("built for", format!("Device OS {r}"));
            }
        }
    }
    let deps: Vec<String> = info
        .listed_dependencies()
        .map(|d| describe_dependency(&d))
        .collect();
    if deps.is_empty() {
        line("depends on", "nothing".into());
    } else {
        for (i, d) in deps.iter().enumerate() {
            line(if i == 0 { "depends on" } else { "" }, d.clone());
        }
    }
    let len = u64::from(info.end_address.wrapping_sub(info.start_address)) + 4;
    let region = match &m.region {
        RegionCheck::InRegion { layout, bounds } => format!(
            "in the {} region {:#010x}..{:#010x} ({} memory map)",
            bounds.slot(),
            bounds.lowest_start(),
            bounds.end,
            layout.name
        ),
        other => modflash_module::Problem::Region(*other).to_string(),
    };
    line(
        "addresses",
        format!(
            "{:#010x}..{:#010x} ({len} bytes), {region}",
            info.start_address, info.end_address
        ),
    );
    line(
        "header",
        format!("at {:#x}, {}", m.prefix_offset, m.rule.describe()),
    );
    if info.flags.0 != 0 {
        line("flags", info.flags.names().collect::<Vec<_>>().join(", "));
    }
    if let Some(p) = m.product().filter(|p| p.is_set()) {
        line("product", format!("id {} version {}", p.id, p.version));
    }
    match m.crc {
        Some(c) if c.ok() => line(
            "CRC-32",
            format!("{} ({:08x})", style.good("ok"), c.computed),
        ),
        Some(c) => line(
            "CRC-32",
            format!(
                "{} stored {:08x}, computed {:08x}",
                style.bad("mismatch"),
                c.stored,
                c.computed
            ),
        ),
        None => line("CRC-32", "not checked (the module is incomplete)".into()),
    }
    if let (Some(sha), Some(stored)) = (m.sha, m.stored_sha256()) {
        let verdict = match sha.matched {
            Some(ShaCoverage::Whole) => style.good("ok"),
            Some(ShaCoverage::Payload) => format!("{} (over the payload only)", style.good("ok")),
            None => style.bad("mismatch"),
        };
        line("SHA-256", format!("{verdict} {}", hex::encode(stored)));
    }
    if let Some(c) = &m.compression {
        let inflated = match c.inflate {
            InflateCheck::Ok => style.good("inflates correctly"),
            InflateCheck::NotChecked => "not inflated".into(),
            _ => style.bad("inflate failed"),
        };
        line(
            "compressed",
            format!(
                "raw Deflate, {} bytes → {} bytes, {inflated}",
                c.data_len, c.original_size
            ),
        );
    }
    for (area, e) in extensions(m) {
        if e.kind == modflash_module::ExtensionKind::End {
            continue;
        }
        line(
            "extension",
            format!("{} ({area}, {} bytes)", e.kind.name(), e.length()),
        );
    }
    for p in m.problems() {
        line("problem", style.bad(&p.to_string()));
    }
    out
}
