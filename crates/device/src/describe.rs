//! The system module info JSON exactly as the device prints it for the `s` command and the
//! describe message (`system_info_to_json`, spec §8.1), in the format of the installed release.

use std::fmt::Write;

use modflash_module::platform::Store;
use modflash_module::{ModuleFunction, Platform};

use crate::device::Device;
use crate::hal::Fetched;

/// Releases before 0.6.0 list only the first dependency, each ending with `"_":""`, and print
/// regions where no module was found.
const MODERN_FORMAT_FROM: u16 = 100;

fn is_cellular(p: &Platform) -> bool {
    matches!(p.id, 10 | 13 | 23 | 25 | 26)
}

/// The describe JSON, without the trailing `\r\n`.
pub fn describe(device: &Device) -> String {
    let platform = device.platform();
    let modern = device
        .system_version()
        .is_none_or(|v| v >= MODERN_FORMAT_FROM && v != 0xFFFF);
    let mut out = format!("{{\"p\":{}", platform.id);
    if is_cellular(platform) {
        let id = &device.state.device_id;
        let digits: String = id
            .chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| char::from_digit(c.to_digit(16).unwrap_or(0) % 10, 10).unwrap_or('0'))
            .collect();
        let _ = write!(
            out,
            ",\"imei\":\"35{}\",\"iccid\":\"89{}\",\"cellfw\":\"{}\"",
            &digits[..13.min(digits.len())],
            &digits[..18.min(digits.len())],
            if platform.id == 10 {
                "23.60"
            } else {
                "L0.0.00.00.05.08"
            }
        );
    }
    out.push_str(",\"m\":[");
    let mut first = true;
    for f in device.system_info() {
        if modern && !modern_lists(&f) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        module_json(&mut out, &f, modern);
    }
    out.push_str("]}");
    out
}

/// Device OS ≥ 2.x skips regions with no module and factory images that fail integrity.
fn modern_lists(f: &Fetched) -> bool {
    match f.info {
        None => false,
        Some(i) if i.function == ModuleFunction::None => false,
        Some(_) if f.bounds.store == Store::Factory => f.passed & crate::hal::flags::INTEGRITY != 0,
        Some(_) => true,
    }
}

fn module_json(out: &mut String, f: &Fetched, modern: bool) {
    let _ = write!(
        out,
        "{{\"s\":{},\"l\":\"{}\",\"vc\":{},\"vv\":{}",
        f.bounds.max_size,
        f.bounds.store.code(),
        f.checked,
        f.passed
    );
    if let Some(info) = f.info {
        if info.function == ModuleFunction::UserPart {
            if let Some(sha) = f.sha256 {
                out.push_str(",\"u\":\"");
                for b in sha {
                    let _ = write!(out, "{b:02X}");
                }
                out.push('"');
            }
        }
        let _ = write!(
            out,
            ",\"f\":\"{}\",\"n\":\"{}\",\"v\":{}",
            info.function.code(),
            info.index,
            info.version
        );
    }
    out.push_str(",\"d\":[");
    if let Some(info) = f.info {
        let deps: Vec<_> = if modern {
            info.listed_dependencies().collect()
        } else {
            info.dependencies
                .iter()
                .copied()
                .take(1)
                .filter(|d| !d.is_none())
                .collect()
        };
        for (i, d) in deps.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"f\":\"{}\",\"n\":\"{}\",\"v\":{}{}}}",
                d.function.code(),
                d.index,
                d.version,
                if modern { "" } else { ",\"_\":\"\"" }
            );
        }
    }
    out.push_str("]}");
}
