//! The catalogue by Device OS release: its modules grouped by platform and release, which
//! releases it holds completely, and where the file of a module it lacks comes from.

use modflash_module::release::{platform_releases, PlatformRelease, ReleaseModule};
use modflash_module::{platform, ModuleFunction, ModuleRef, Platform};
use serde::Serialize;

use super::IndexEntry;

/// Where Particle publishes each Device OS release's module files, by tag (`v1.5.0`).
const RELEASE_PAGES: &str = "https://github.com/particle-iot/device-os/releases/tag/v";

/// The page of Device OS release `release` ("1.5.0"), where its module files are.
pub fn release_page(release: &str) -> String {
    format!("{RELEASE_PAGES}{release}")
}

/// The module of the platform's releases that fills `slot` at `min_version` or later: the
/// release that first ships one, and the module.
pub fn first_release_with(
    platform: &'static Platform,
    slot: ModuleRef,
    min_version: u16,
) -> Option<(&'static PlatformRelease, ReleaseModule)> {
    platform_releases(platform).find_map(|r| {
        r.modules_for(platform)
            .find(|m| ModuleRef::new(m.function, m.index) == slot && m.version >= min_version)
            .map(|m| (r, m))
    })
}

/// Where the file of a module `slot` ≥ `min_version` for platform `platform_id` comes from,
/// in a sentence: "system part 1 of Device OS 1.5.0 for the Photon is on
/// https://github.com/particle-iot/device-os/releases/tag/v1.5.0".
pub fn where_to_get(platform_id: u16, slot: ModuleRef, min_version: u16) -> Option<String> {
    let platform = platform(platform_id)?;
    let (release, _) = first_release_with(platform, slot, min_version)?;
    Some(format!(
        "{slot} of Device OS {} for the {} is on {}",
        release.release,
        platform.display_name,
        release_page(release.release)
    ))
}

/// The modules of one platform in the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct PlatformGroup {
    /// The platform's name for people ("Photon"), or "platform N".
    pub platform: String,
    /// Platform id.
    pub platform_id: u16,
    /// The Device OS releases the catalogue holds a system module of, oldest first.
    pub releases: Vec<ReleaseGroup>,
    /// Modules of no release listed there (applications, modules of unknown releases).
    pub others: Vec<IndexEntry>,
}

/// The modules of one Device OS release in the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseGroup {
    /// The release ("1.5.0").
    pub release: &'static str,
    /// The catalogue's modules that this release installs.
    pub entries: Vec<IndexEntry>,
    /// The release's system modules (all but its Tinker app) the catalogue lacks,
    /// in words ("bootloader version 501").
    pub missing: Vec<String>,
    /// Where the release's files are.
    pub page: String,
}

impl ReleaseGroup {
    /// The catalogue holds every system module of the release: it can install it.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The catalogue's entries grouped by platform (in platform id order) and release: a
/// release is listed when a system part (or a Core's firmware) of it is there; its other
/// modules (bootloader, radio stack) join it.
pub fn group(entries: &[IndexEntry]) -> Vec<PlatformGroup> {
    let mut ids: Vec<u16> = entries.iter().map(|e| e.platform_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mine: Vec<&IndexEntry> = entries.iter().filter(|e| e.platform_id == id).collect();
            platform_group(id, &mine)
        })
        .collect()
}

fn platform_group(id: u16, entries: &[&IndexEntry]) -> PlatformGroup {
    let name = platform(id).map_or_else(|| format!("platform {id}"), |p| p.display_name.into());
    let Some(p) = platform(id) else {
        return PlatformGroup {
            platform: name,
            platform_id: id,
            releases: Vec::new(),
            others: entries.iter().map(|e| (*e).clone()).collect(),
        };
    };
    let mut releases = Vec::new();
    let mut placed = vec![false; entries.len()];
    for r in platform_releases(p) {
        if !entries
            .iter()
            .any(|e| e.device_os.as_deref() == Some(r.release))
        {
            continue;
        }
        let mut group = ReleaseGroup {
            release: r.release,
            entries: Vec::new(),
            missing: Vec::new(),
            page: release_page(r.release),
        };
        // Its Tinker app is no part of it: an application is the user's own.
        for m in r
            .modules_for(p)
            .filter(|m| m.function != ModuleFunction::UserPart)
        {
            let held: Vec<usize> = (0..entries.len())
                .filter(|&n| is_module(entries[n], &m))
                .collect();
            if held.is_empty() {
                let slot = ModuleRef::new(m.function, m.index);
                group.missing.push(format!("{slot} version {}", m.version));
            }
            for n in held {
                placed[n] = true;
                group.entries.push(entries[n].clone());
            }
        }
        releases.push(group);
    }
    let others = entries
        .iter()
        .zip(placed)
        .filter(|(_, placed)| !placed)
        .map(|(e, _)| (*e).clone())
        .collect();
    PlatformGroup {
        platform: name,
        platform_id: id,
        releases,
        others,
    }
}

/// `entry` is release module `m` (same function, index and version).
fn is_module(entry: &IndexEntry, m: &ReleaseModule) -> bool {
    ModuleFunction::from_name(&entry.function) == Some(m.function)
        && entry.index == m.index
        && entry.version == m.version
}
