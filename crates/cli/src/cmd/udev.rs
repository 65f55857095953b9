//! `modflash udev [--install]`: the udev rules that let a normal user open Particle devices
//! (normal and DFU mode); printed, or installed in /etc/udev/rules.d.

use std::path::{Path, PathBuf};

use crate::ui::say;
use crate::ui::{CliError, CmdResult, EXIT_OK};

/// The rules file shipped in the repository (`contrib/50-particle.rules`).
pub const RULES: &str = include_str!("../../../../contrib/50-particle.rules");
/// Where `--install` writes it.
pub const INSTALL_DIR: &str = "/etc/udev/rules.d";
/// Its file name.
pub const FILE_NAME: &str = "50-particle.rules";

/// Prints the rules, or installs them into `dir` (default /etc/udev/rules.d).
pub fn run(install: bool, dir: Option<PathBuf>) -> CmdResult {
    if !install {
        print!("{RULES}");
        return Ok(EXIT_OK);
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(INSTALL_DIR));
    let path = dir.join(FILE_NAME);
    write_rules(&path).map_err(|e| {
        let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
        let err = CliError::usage(format!("cannot write {}: {e}", path.display()));
        if denied {
            err.with_help("installing udev rules needs root: run `sudo modflash udev --install`")
        } else {
            err.with_help(format!(
                "check that {} exists (is udev installed?), or save the rules with \
                 `modflash udev > {FILE_NAME}` and install them by hand",
                dir.display()
            ))
        }
    })?;
    say(&format!("wrote {}", path.display()));
    say("now reload udev and replug the device:");
    say("  sudo udevadm control --reload-rules && sudo udevadm trigger");
    Ok(EXIT_OK)
}

/// True when the process runs as root (never outside Unix, where there are no udev rules).
fn is_root() -> bool {
    #[cfg(unix)]
    return crate::unix::is_root();
    #[cfg(not(unix))]
    return false;
}

fn write_rules(path: &Path) -> std::io::Result<()> {
    if !is_root() && path.starts_with(INSTALL_DIR) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not running as root",
        ));
    }
    std::fs::write(path, RULES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every production platform's normal and DFU USB ids match a rule line.
    #[test]
    fn rules_cover_every_platform() {
        let lines: Vec<&str> = RULES
            .lines()
            .filter(|l| l.contains("MODE=") && !l.starts_with('#'))
            .collect();
        let attr = |l: &str, key: &str| -> String {
            let k = format!("ATTRS{{{key}}}==\"");
            l.split(&k)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let matches = |pattern: &str, value: &str| -> bool {
            // Only the glob forms used in the file: literal hex and [0-9a-f] classes.
            let mut p = pattern.chars().peekable();
            let mut v = value.chars();
            while let Some(c) = p.next() {
                let Some(x) = v.next() else { return false };
                if c == '[' {
                    let class: String = p.by_ref().take_while(|&c| c != ']').collect();
                    let ok = class
                        .as_bytes()
                        .chunks(3)
                        .any(|r| r.len() == 3 && (r[0] as char) <= x && x <= (r[2] as char));
                    if !ok {
                        return false;
                    }
                } else if c != x {
                    return false;
                }
            }
            v.next().is_none()
        };
        for p in modflash_module::platform::PLATFORMS {
            let Some(usb) = p.usb.filter(|_| p.production) else {
                continue;
            };
            for pid in [Some(usb.normal), usb.dfu].into_iter().flatten() {
                let (v, d) = (format!("{:04x}", usb.vendor), format!("{pid:04x}"));
                assert!(
                    lines
                        .iter()
                        .any(|l| attr(l, "idVendor") == v && matches(&attr(l, "idProduct"), &d)),
                    "{} {v}:{d} is not covered",
                    p.name
                );
            }
        }
    }

    #[test]
    fn install_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        run(true, Some(dir.path().to_path_buf())).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, RULES);
        let err = run(true, Some(dir.path().join("missing"))).unwrap_err();
        assert!(err.message.contains("cannot write"), "{}", err.message);
        assert!(err.help.is_some());
    }
}
