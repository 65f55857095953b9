//! The planner's header-level model of a device: which module each slot holds, a staged
//! bootloader, and what the Device OS rules say about such a state (OTA acceptance, the
//! system starting, the boot-time installs, every dependency met).

use std::collections::BTreeMap;

use modflash_device::Device;
use modflash_module::platform::{Layout, Platform, Store};
use modflash_module::release::platform_releases;
use modflash_module::rules::{self, Header, Installed, OtaRefusal, Part};
use modflash_module::{Dependency, ModuleFunction, ModuleRef};

use super::types::{first_release_with, Missing, Via};
use crate::catalog::Candidate;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Hdr {
    /// Module version.
    pub(super) version: u16,
    /// Dependencies as the header lists them.
    pub(super) deps: [Dependency; 2],
    /// Candidate id, or None for what was installed at the start.
    pub(super) id: Option<usize>,
    /// Its CRC holds.
    pub(super) intact: bool,
    /// Flash bytes the module occupies: `[start, end + 4)`.
    pub(super) extent: (u32, u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct State {
    /// What each slot holds.
    pub(super) slots: BTreeMap<ModuleRef, Hdr>,
    /// A bootloader staged in the OTA region with the DCT flag set (DFU path).
    pub(super) staged: Option<usize>,
    /// Factory slot content (candidate id).
    pub(super) factory: Option<usize>,
    /// Install-order ranks written so far, as a bit set (see [`install_rank`]).
    pub(super) ranks_written: u32,
    /// How the last step reached the device (`Some(Dfu)`: it is in DFU mode; at the start,
    /// `Some(Dfu)` for a device in DFU mode, `None` for one that runs its firmware).
    pub(super) last: Option<Via>,
}

/// The model's view of one platform.
pub(super) struct Model<'a> {
    /// The device's platform.
    pub(super) platform: &'static Platform,
    /// Every module that may be written: the targets first, then the catalogue.
    pub(super) pool: &'a [Candidate],
}

/// A model state as the Device OS rules read it, under the memory map it implies.
pub(super) struct View<'a> {
    state: &'a State,
    /// The memory map the state implies.
    pub(super) layout: &'static Layout,
}

impl Installed for View<'_> {
    fn has_region(&self, slot: ModuleRef) -> bool {
        self.layout.find_bounds(slot).is_some()
    }

    fn version(&self, slot: ModuleRef) -> Option<u16> {
        self.state.slots.get(&slot).map(|h| h.version)
    }

    fn modules(&self) -> impl Iterator<Item = Header> + '_ {
        self.state
            .slots
            .iter()
            .filter(|(slot, _)| self.layout.main_bounds(**slot).is_some())
            .map(|(&slot, h)| Header {
                slot,
                version: h.version,
                dependencies: h.deps,
            })
    }

    fn part(&self, slot: ModuleRef) -> Part {
        // The model does not track platforms: it only installs modules of this one.
        self.state
            .slots
            .get(&slot)
            .map_or(Part::Missing, |h| Part::Present {
                platform_ok: true,
                intact: h.intact,
            })
    }
}

pub(super) fn hdr_of(c: &Candidate, id: usize) -> Hdr {
    Hdr {
        version: c.info.version,
        deps: c.info.dependencies,
        id: Some(id),
        intact: true,
        extent: extent_of(c.info.start_address, c.info.end_address),
    }
}

pub(super) fn extent_of(start: u32, end: u32) -> (u32, u32) {
    (start, end.saturating_add(4).max(start))
}

/// True when writing `c` would overwrite a module of another slot installed in `s` (a DFU
/// write is raw: nothing stops a module built for a newer memory map from landing on a
/// module of the current one).
pub(super) fn overwrites_another(s: &State, c: &Candidate) -> bool {
    let (start, end) = extent_of(c.info.start_address, c.info.end_address);
    s.slots
        .iter()
        .any(|(slot, h)| *slot != c.slot() && h.extent.0 < end && start < h.extent.1)
}

impl Model<'_> {
    pub(super) fn layout(&self, s: &State) -> &'static Layout {
        let version = s
            .slots
            .get(&ModuleRef::new(ModuleFunction::SystemPart, 1))
            .map(|h| h.version);
        self.platform
            .layout_for(version)
            .expect("planned platforms have a memory map")
    }

    /// The state as the rules read it.
    pub(super) fn view<'s>(&self, s: &'s State) -> View<'s> {
        View {
            state: s,
            layout: self.layout(s),
        }
    }

    /// Would the device accept `c` over serial (OTA validation, spec §7.1)?
    pub(super) fn ota_refusal(&self, s: &State, id: usize) -> Result<(), OtaRefusal> {
        let c = &self.pool[id];
        let view = self.view(s);
        let layout = view.layout;
        rules::ota_fits(layout, c.bytes.len())
            .and_then(|()| rules::ota_accepts(&view, layout, self.platform.id, &c.info, true))
    }

    /// The device's refusal of `c` in state `s`, as it words it (with a typographic minus:
    /// "dependency check failed (−1340)"), and what a serial plan would need.
    pub(super) fn refusal_words(&self, s: &State, id: usize, r: &OtaRefusal) -> String {
        let c = &self.pool[id];
        let layout = self.layout(s);
        let slot = c.slot();
        let label = |r: &OtaRefusal| (r.code().name(), r.code().code().unsigned_abs());
        match r {
            OtaRefusal::NotFound => {
                let (name, number) = label(r);
                format!(
                    "the installed system firmware has no region for a {slot} ending at {:#010x} ({name}, \u{2212}{number})",
                    c.info.end_address
                )
            }
            OtaRefusal::TooLarge { .. } => format!(
                "the {slot} does not fit the {} KB OTA region",
                layout.ota.max_size / 1024
            ),
            OtaRefusal::Dependencies(u) => {
                let (name, number) = label(r);
                let d = u.required;
                let needed = ModuleRef::new(d.function, d.index);
                let example = match (d.function, first_release_with(d.version)) {
                    (ModuleFunction::SystemPart, Some(r)) => format!(" (e.g. Device OS {r})"),
                    _ => String::new(),
                };
                format!(
                    "{name} (\u{2212}{number}): {slot} needs {needed} \u{2265} {}, installed {}; \
                     a serial plan needs a {needed} \u{2265} {}{example} in the catalogue to install first",
                    d.version,
                    u.installed.map_or("none".into(), |v| v.to_string()),
                    d.version
                )
            }
            OtaRefusal::DependenciesFull(u) => {
                let (name, number) = label(r);
                format!(
                    "{name} (\u{2212}{number}): the installed {} needs {slot} \u{2265} {}",
                    u.module, u.required.version
                )
            }
            OtaRefusal::Platform(_) | OtaRefusal::Integrity => r.to_string(),
        }
    }

    pub(super) fn install(&self, s: &State, id: usize) -> State {
        let mut n = s.clone();
        n.slots
            .insert(self.pool[id].slot(), hdr_of(&self.pool[id], id));
        n
    }

    /// Whether the firmware of state `s`, running, takes modules over USB control requests
    /// ([`rules::control_protocol`]).
    pub(super) fn answers_control_requests(&self, s: &State) -> bool {
        let part1 = s
            .slots
            .get(&ModuleRef::new(ModuleFunction::SystemPart, 1))
            .map(|h| h.version);
        rules::control_protocol(self.platform, part1) == rules::ControlProtocol::Service
    }

    /// Whether the system firmware starts ([`rules::system_runnable`]).
    pub(super) fn system_runs(&self, s: &State) -> bool {
        let view = self.view(s);
        rules::system_runnable(&view, self.platform, view.layout).is_ok()
    }

    /// The system's part in a boot: Electron installs its embedded bootloader; a staged
    /// bootloader is applied. Returns None when the system cannot start.
    pub(super) fn boot(&self, s: &State) -> Option<State> {
        if !self.system_runs(s) {
            return None;
        }
        let mut n = s.clone();
        let boot_slot = ModuleRef::new(ModuleFunction::Bootloader, 0);
        if let Some(update) = rules::embedded_bootloader_update(&self.view(&n), self.platform) {
            n.slots.insert(
                boot_slot,
                Hdr {
                    version: update.version,
                    deps: [Dependency::NONE; 2],
                    id: None,
                    intact: true,
                    extent: n.slots.get(&boot_slot).map_or((0, 0), |h| h.extent),
                },
            );
        }
        if let Some(id) = n.staged.take() {
            let h = hdr_of(&self.pool[id], id);
            let header = Header::of(&self.pool[id].info);
            if rules::dependencies(&self.view(&n), &header, true).is_ok() {
                n.slots.insert(boot_slot, h);
            }
        }
        Some(n)
    }

    /// Every module's listed dependencies hold ([`rules::listed_dependencies_met`]), also for
    /// a module the installed memory map has no region for yet (an app built for a newer map
    /// needs that map's system part).
    pub(super) fn consistent(&self, s: &State) -> Result<(), Missing> {
        let view = self.view(s);
        for (&slot, h) in &s.slots {
            let header = Header {
                slot,
                version: h.version,
                dependencies: h.deps,
            };
            rules::listed_dependencies_met(&view, &header).map_err(|u| Missing {
                slot: ModuleRef::new(u.required.function, u.required.index),
                min_version: u.required.version,
                needed_by: format!("{slot} version {}", h.version),
            })?;
        }
        Ok(())
    }
}

/// Particle's install order for a slot: its position in the module list of the platform's
/// newest known release (bootloader, radio stack, system parts in the order their
/// dependencies need — Electron: index 3, 1, 2 — then the application).
pub(super) fn install_rank(platform: &Platform, slot: ModuleRef) -> u8 {
    let order = platform_releases(platform)
        .last()
        .map(|r| r.modules)
        .unwrap_or_default();
    let pos = order
        .iter()
        .position(|m| m.function == slot.function && m.index == slot.index)
        .unwrap_or(order.len());
    u8::try_from(pos + 1).unwrap_or(u8::MAX)
}

pub(super) fn initial_state(twin: &Device) -> State {
    let mut slots = BTreeMap::new();
    for f in twin.system_info() {
        if f.bounds.store != Store::Main {
            continue;
        }
        if let Some(info) = f.info {
            slots.insert(
                info.slot(),
                Hdr {
                    version: info.version,
                    deps: info.dependencies,
                    id: None,
                    intact: f.passed & modflash_device::hal::flags::INTEGRITY != 0,
                    extent: extent_of(
                        f.address,
                        f.address.saturating_add(info.module_length().unwrap_or(0)),
                    ),
                },
            );
        }
    }
    State {
        slots,
        staged: None,
        factory: None,
        ranks_written: 0,
        last: twin.in_dfu_mode().then_some(Via::Dfu),
    }
}

/// The model state once every chosen module is installed.
pub(super) fn final_state(
    model: &Model<'_>,
    start: &State,
    finals: &BTreeMap<ModuleRef, usize>,
) -> State {
    finals
        .values()
        .fold(start.clone(), |s, &id| model.install(&s, id))
}
