//! The modflash home directory: `$MODFLASH_HOME`, else `$XDG_DATA_HOME/modflash`, else
//! `~/.local/share/modflash`.

use std::path::PathBuf;

/// The modflash home directory (not created here).
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODFLASH_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("modflash");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/modflash")
}

/// Where virtual devices live.
pub fn sims_dir() -> PathBuf {
    home().join("sims")
}
