//! A memory map as an SVG picture, the terminal rendering's twin ([`super::map_text`]): per
//! flash memory a strip drawn to scale, a row per region with its fill bar and its module's
//! verdict, arrows from each module to what it depends on (green met, red failed), and the
//! dependency list. Several maps sit side by side (a plan's before and after).

use std::fmt::Write;

use modflash::map::{DeviceMap, Memory, Region, RegionKind, Verdict};
use modflash_module::{ModuleRef, Store};

use super::map_text::{
    basis_words, dependency_words, failed_words, fill_words, heading, memory_name, module_label,
    region_key, region_words, size_words,
};

const PANEL_WIDTH: u32 = 1040;
const GAP: u32 = 24;
const LEFT: u32 = 20;
const STRIP_WIDTH: u32 = 1000;
const ROW: u32 = 22;
const ADDRESS_X: u32 = 38;
const NAME_X: u32 = 122;
const LANE_X: u32 = 272;
const BAR_X: u32 = 340;
const BAR_WIDTH: u32 = 180;
const FILL_X: u32 = 530;
const MODULE_X: u32 = 700;

const VALID: &str = "#2da44e";
const INVALID: &str = "#cf222e";
const FREE: &str = "#eef1f4";
const OTA: &str = "#f7ecc4";
const DCT: &str = "#b6c2cf";
const WRITTEN: &str = "#0969da";
const BORDER: &str = "#8c959f";
const TEXT: &str = "#1f2328";
const MUTED: &str = "#59636e";
const SANS: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const MONO: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";

/// One SVG document with a panel per map, side by side, each under its title.
pub fn maps_svg(panels: &[(String, &DeviceMap)]) -> String {
    let drawn: Vec<(String, u32)> = panels.iter().map(|(t, m)| panel(t, m)).collect();
    let count = u32::try_from(drawn.len()).unwrap_or(1).max(1);
    let width = count * PANEL_WIDTH + (count - 1) * GAP;
    let height = drawn.iter().map(|(_, h)| *h).max().unwrap_or(0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"{SANS}\" font-size=\"12\">\n"
    );
    out.push_str("<defs>\n");
    for (id, colour) in [("met", VALID), ("failed", INVALID), ("open", MUTED)] {
        let _ = writeln!(
            out,
            "<marker id=\"arrow-{id}\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
             <path d=\"M0,0 L8,4 L0,8 z\" fill=\"{colour}\"/></marker>"
        );
    }
    out.push_str("</defs>\n");
    let _ = writeln!(
        out,
        "<rect width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    for (n, (body, _)) in drawn.iter().enumerate() {
        let x = u32::try_from(n).unwrap_or(0) * (PANEL_WIDTH + GAP);
        let _ = writeln!(out, "<g transform=\"translate({x},0)\">\n{body}</g>");
    }
    out.push_str("</svg>\n");
    out
}

/// The drawing of one map and its height.
fn panel(title: &str, map: &DeviceMap) -> (String, u32) {
    let mut out = String::new();
    let mut y = 28;
    text(
        &mut out,
        LEFT,
        y,
        &heading(title, map),
        "font-size=\"16\" font-weight=\"bold\"",
    );
    y += 20;
    text(
        &mut out,
        LEFT,
        y,
        &basis_words(map),
        &format!("fill=\"{MUTED}\""),
    );
    y += 16;
    let mut rows: Vec<(ModuleRef, Option<Store>, u32)> = Vec::new();
    let mut key = 0;
    for memory in &map.memories {
        y += 22;
        let title = format!(
            "{}  {:#010x}–{:#010x}  {}",
            memory_name(memory),
            memory.start,
            memory.end,
            size_words(memory.end - memory.start)
        );
        text(&mut out, LEFT, y, &title, "font-weight=\"bold\"");
        y += 10;
        strip(&mut out, memory, y, key);
        y += 40;
        for (n, region) in memory.regions.iter().enumerate() {
            row(&mut out, memory, key, n, y);
            if let Some(slot) = region.slot() {
                rows.push((slot, region.store, y));
            }
            y += ROW;
        }
        key += memory.regions.len();
    }
    arrows(&mut out, map, &rows);
    for u in &map.unplaced {
        y += 18;
        let words = format!("not placed: {}: {}", u.file, u.reason);
        text(&mut out, LEFT, y, &words, &format!("fill=\"{INVALID}\""));
    }
    y += 26;
    text(&mut out, LEFT, y, "dependencies", "font-weight=\"bold\"");
    if map.dependencies.is_empty() {
        y += 18;
        text(&mut out, LEFT, y, "none", &format!("fill=\"{MUTED}\""));
    }
    for e in &map.dependencies {
        y += 18;
        let (verdict, words) = dependency_words(e);
        let colour = match verdict {
            "PASS" => VALID,
            "FAIL" => INVALID,
            _ => MUTED,
        };
        let style = format!("fill=\"{colour}\" font-weight=\"bold\" font-family=\"{MONO}\"");
        text(&mut out, LEFT, y, verdict, &style);
        text(&mut out, LEFT + 44, y, &words, "");
    }
    y += 30;
    legend(&mut out, map, y);
    (out, y + 20)
}

/// The memory drawn to scale: each region a box, the bytes its modules take filled in.
fn strip(out: &mut String, memory: &Memory, y: u32, first_key: usize) {
    let span = f64::from(memory.end - memory.start);
    let x_of = |address: u32| {
        f64::from(LEFT)
            + f64::from(address.saturating_sub(memory.start)) / span * f64::from(STRIP_WIDTH)
    };
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{y}\" width=\"{STRIP_WIDTH}\" height=\"26\" fill=\"#ffffff\" \
         stroke=\"{BORDER}\"/>"
    );
    // Overlapping regions (the Photon's OTA area and factory slot): the OTA area first, under.
    let mut order: Vec<&Region> = memory.regions.iter().collect();
    order.sort_by_key(|r| r.kind != RegionKind::Ota);
    for region in order {
        let (x, end) = (x_of(region.start), x_of(region.end));
        let width = (end - x).max(1.5);
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"26\" fill=\"{}\" \
             stroke=\"{BORDER}\" stroke-width=\"0.6\"/>",
            background(region)
        );
        for m in &region.modules {
            let (mx, mend) = (x_of(m.start), x_of(m.start.saturating_add(m.size)));
            let stroke = if m.written {
                format!(" stroke=\"{WRITTEN}\" stroke-width=\"2\"")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "<rect x=\"{mx:.1}\" y=\"{}\" width=\"{:.1}\" height=\"20\" fill=\"{}\"{stroke}/>",
                y + 3,
                (mend - mx).max(1.5),
                if m.valid() { VALID } else { INVALID }
            );
        }
    }
    for (n, region) in memory.regions.iter().enumerate() {
        // An OTA area drawn under other regions is labelled in the part that shows.
        let visible_end = memory
            .regions
            .iter()
            .filter(|r| region.kind == RegionKind::Ota && r.kind != RegionKind::Ota)
            .map(|r| r.start)
            .filter(|&s| s > region.start && s < region.end)
            .fold(region.end, u32::min);
        let (x, end) = (x_of(region.start), x_of(visible_end));
        if end - x < 11.0 {
            continue;
        }
        // White on a module's colour, dark on free space, OTA staging and the DCT.
        let centre = region.start + (visible_end - region.start) / 2;
        let on_module = region
            .modules
            .iter()
            .any(|m| m.start <= centre && centre < m.start.saturating_add(m.size));
        let colour = if on_module { "#ffffff" } else { MUTED };
        let style = format!("text-anchor=\"middle\" font-weight=\"bold\" fill=\"{colour}\"");
        let key = region_key(first_key + n).to_string();
        text(out, ((x + end) / 2.0).round() as u32, y + 17, &key, &style);
    }
}

fn background(region: &Region) -> &'static str {
    match region.kind {
        RegionKind::Module => FREE,
        RegionKind::Ota => OTA,
        RegionKind::Dct => DCT,
    }
}

/// One region: its key, address and name, its fill bar, and its modules' verdicts.
fn row(out: &mut String, memory: &Memory, first_key: usize, n: usize, y: u32) {
    let Some(region) = memory.regions.get(n) else {
        return;
    };
    let key = region_key(first_key + n).to_string();
    text(out, LEFT, y, &key, "font-weight=\"bold\"");
    let address = format!("{:#010x}", region.start);
    text(
        out,
        ADDRESS_X,
        y,
        &address,
        &format!("font-family=\"{MONO}\" font-size=\"11\""),
    );
    text(out, NAME_X, y, &region.name(), "");
    let top = y - 11;
    let _ = writeln!(
        out,
        "<rect x=\"{BAR_X}\" y=\"{top}\" width=\"{BAR_WIDTH}\" height=\"14\" fill=\"{}\" \
         stroke=\"{BORDER}\" stroke-width=\"0.6\"/>",
        background(region)
    );
    let used = if region.size() == 0 {
        0.0
    } else {
        f64::from(region.used) / f64::from(region.size()) * f64::from(BAR_WIDTH)
    };
    if used > 0.0 {
        let colour = match region.kind {
            RegionKind::Dct => DCT,
            _ if region.valid() => VALID,
            _ => INVALID,
        };
        let stroke = if region.modules.iter().any(|m| m.written) {
            format!(" stroke=\"{WRITTEN}\" stroke-width=\"2\"")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<rect x=\"{BAR_X}\" y=\"{top}\" width=\"{:.1}\" height=\"14\" fill=\"{colour}\"{stroke}/>",
            used.max(1.5)
        );
    }
    text(
        out,
        FILL_X,
        y,
        &fill_words(region),
        &format!("fill=\"{MUTED}\""),
    );
    let words: Vec<(String, &str)> = if region.modules.is_empty() {
        vec![(region_words(memory, first_key, region), MUTED)]
    } else {
        region
            .modules
            .iter()
            .map(|m| {
                let verdict = if m.valid() {
                    "valid".to_string()
                } else {
                    failed_words(m)
                };
                let written = if m.written { ", written" } else { "" };
                let colour = if m.valid() { VALID } else { INVALID };
                (format!("{}{verdict}{written}", module_label(m)), colour)
            })
            .collect()
    };
    let line = words
        .iter()
        .map(|(w, _)| w.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let colour = words
        .iter()
        .map(|(_, c)| *c)
        .reduce(|a, b| if b == INVALID { b } else { a })
        .unwrap_or(MUTED);
    text(out, MODULE_X, y, &line, &format!("fill=\"{colour}\""));
}

/// From each module's row to the row of each module it depends on.
fn arrows(out: &mut String, map: &DeviceMap, rows: &[(ModuleRef, Option<Store>, u32)]) {
    let y_of = |slot: ModuleRef, store: Option<Store>| {
        rows.iter()
            .find(|(s, st, _)| *s == slot && *st == store)
            .map(|(_, _, y)| *y - 4)
    };
    for (n, e) in map.dependencies.iter().enumerate() {
        let (Some(from), Some(to)) = (y_of(e.slot(), e.store), y_of(e.target(), Some(Store::Main)))
        else {
            continue;
        };
        let (id, colour, dash) = match e.verdict {
            Verdict::Met | Verdict::Erased => ("met", VALID, ""),
            Verdict::Unmet | Verdict::NoRegion => ("failed", INVALID, ""),
            Verdict::NotExamined | Verdict::NotGiven => {
                ("open", MUTED, " stroke-dasharray=\"3,2\"")
            }
        };
        let bend = LANE_X + 14 + 9 * (u32::try_from(n).unwrap_or(0) % 6);
        let _ = writeln!(
            out,
            "<path d=\"M{LANE_X},{from} C{bend},{from} {bend},{to} {},{to}\" fill=\"none\" \
             stroke=\"{colour}\" stroke-width=\"1.6\"{dash} marker-end=\"url(#arrow-{id})\"/>",
            LANE_X + 2
        );
    }
}

fn legend(out: &mut String, map: &DeviceMap, y: u32) {
    let mut items = vec![
        (VALID, "valid module"),
        (INVALID, "fails a check"),
        (FREE, "free"),
        (OTA, "OTA staging"),
        (DCT, "DCT"),
    ];
    if map.modules().any(|(_, m)| m.written) {
        items.push((WRITTEN, "written by the plan"));
    }
    let mut x = LEFT;
    for (colour, words) in items {
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\" stroke=\"{BORDER}\" \
             stroke-width=\"0.6\"/>",
            y - 10
        );
        text(out, x + 17, y, words, &format!("fill=\"{MUTED}\""));
        x += 30 + 7 * u32::try_from(words.len()).unwrap_or(0);
    }
}

/// A line of text at (x, y); black unless `attributes` give a fill.
fn text(out: &mut String, x: u32, y: u32, words: &str, attributes: &str) {
    let fill = if attributes.contains("fill=") {
        String::new()
    } else {
        format!(" fill=\"{TEXT}\"")
    };
    let _ = writeln!(
        out,
        "<text x=\"{x}\" y=\"{y}\"{fill} {attributes}>{}</text>",
        escape(words)
    );
}

/// Text as XML character data.
fn escape(words: &str) -> String {
    words
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
