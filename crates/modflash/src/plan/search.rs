//! Searching for a plan: the module each slot must end with, then the cheapest order of
//! writes the device accepts step by step (Dijkstra over model states), and why each step is
//! there.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use modflash_module::release::{platform_release, release_name};
use modflash_module::rules::{self, DfuPlace, OtaRefusal, ERASED};
use modflash_module::Platform;
use modflash_module::{ModuleFunction, ModuleRef};

use super::cost::Costs;
use super::model::{final_state, install_rank, overwrites_another, Model, State};
use super::types::{Force, Missing, PlanError, Request, Via};
use crate::catalog::releases::where_to_get;
use crate::catalog::Candidate;

/// True when Device OS `release` ships `c` for `platform` (same slot and version).
fn ships(platform: &'static Platform, release: &str, c: &Candidate) -> bool {
    platform_release(platform, release).is_some_and(|r| {
        r.modules_for(platform).any(|m| {
            m.function == c.info.function && m.index == c.info.index && m.version == c.info.version
        })
    })
}

/// Picks the module each slot must end with: the targets, a replacement for every damaged
/// Device OS module ([`replace_damaged`]), then for every unmet dependency the lowest
/// sufficient version available (preferring the dependent module's own release); a module
/// picked here that another one needs newer is picked again.
pub(super) fn choose_finals(
    model: &Model<'_>,
    start: &State,
    targets: &[usize],
    force: Force,
) -> Result<BTreeMap<ModuleRef, usize>, PlanError> {
    let mut finals: BTreeMap<ModuleRef, usize> = BTreeMap::new();
    for &id in targets {
        let slot = model.pool[id].slot();
        if let Some(prev) = finals.insert(slot, id) {
            return Err(PlanError::Refused {
                file: model.pool[id].origin.to_string(),
                reason: format!(
                    "{} and this file are both a {slot}",
                    model.pool[prev].origin
                ),
                help: "name one module per slot".into(),
            });
        }
    }
    let mut missing = replace_damaged(model, start, &mut finals);
    loop {
        let mut state = start.clone();
        for &id in finals.values() {
            state = model.install(&state, id);
        }
        let state = model.boot(&state).unwrap_or(state);
        let Err(m) = model.consistent(&state) else {
            break;
        };
        if finals.get(&m.slot).is_some_and(|id| targets.contains(id)) {
            // A requested module is too old for another chosen module. (One the planner
            // chose itself is chosen again below, newer.)
            let chosen = &model.pool[finals[&m.slot]];
            return Err(PlanError::Refused {
                file: chosen.origin.to_string(),
                reason: format!(
                    "{} needs {} \u{2265} {}, but this file is version {}",
                    m.needed_by, m.slot, m.min_version, chosen.info.version
                ),
                help: "use matching modules from one Device OS release".into(),
            });
        }
        // A real file always wins over a synthetic image (those only fill gaps); then the
        // module of the dependent's own release (e.g. the 1.5.0 bootloader for a 1.5.0 system
        // part), then the lowest sufficient version.
        let dependent_release = m
            .needed_by
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(release_name);
        let best = model
            .pool
            .iter()
            .enumerate()
            .filter(|(_, c)| c.slot() == m.slot && c.info.version >= m.min_version)
            .min_by_key(|(id, c)| {
                let same_release = dependent_release.is_some_and(|r| match &c.origin {
                    // A release-table image belongs to exactly one release.
                    crate::catalog::Origin::Release { release, .. } => *release == r,
                    _ => ships(model.platform, r, c),
                });
                (
                    c.origin.is_synthetic(),
                    !same_release,
                    c.info.version,
                    c.bytes.len(),
                    *id,
                )
            })
            .map(|(id, _)| id);
        match best {
            Some(id) => {
                finals.insert(m.slot, id);
            }
            None => {
                missing.push(m);
                break;
            }
        }
    }
    if !missing.is_empty() && !force.dependencies {
        let sources: Vec<String> = missing
            .iter()
            .filter_map(|m| where_to_get(model.platform.id, m.slot, m.min_version))
            .collect();
        let source = match sources.as_slice() {
            [] => String::new(),
            some => format!("{}; ", some.join("; ")),
        };
        return Err(PlanError::Missing {
            help: format!("{source}add the file, a folder or the release's .zip to the catalogue (`modflash catalog add PATH`, or --catalog DIR); --force dependencies flashes anyway and leaves the device in safe mode"),
            missing,
        });
    }
    Ok(finals)
}

/// A Device OS module on the device that fails its integrity check (a cut write, a flipped
/// bit) is not installed, whatever its header says: unless the request already replaces it,
/// the slot ends with the same version from the pool (a real file first), else the lowest
/// newer one. Returns the damaged modules the pool cannot replace. The application is the
/// user's own: a damaged one is only replaced when asked for.
fn replace_damaged(
    model: &Model<'_>,
    start: &State,
    finals: &mut BTreeMap<ModuleRef, usize>,
) -> Vec<Missing> {
    let mut missing = Vec::new();
    for (&slot, h) in &start.slots {
        if h.intact || slot.function == ModuleFunction::UserPart || finals.contains_key(&slot) {
            continue;
        }
        let best = model
            .pool
            .iter()
            .enumerate()
            .filter(|(_, c)| c.slot() == slot && c.info.version >= h.version)
            .min_by_key(|(id, c)| {
                (
                    c.origin.is_synthetic(),
                    c.info.version != h.version,
                    c.info.version,
                    c.bytes.len(),
                    *id,
                )
            })
            .map(|(id, _)| id);
        match best {
            Some(id) => {
                finals.insert(slot, id);
            }
            None => missing.push(Missing {
                slot,
                min_version: h.version,
                needed_by: format!(
                    "the device, whose {slot} version {} fails its integrity check",
                    h.version
                ),
            }),
        }
    }
    missing
}

/// Dijkstra over model states: cost = (synthetic images written, bytes written — or the
/// modelled time when the request allows several transports, [`Costs`] —, resets, steps whose
/// result would not boot, inversions of Particle's install order). Each step goes over one of
/// the transports allowed (`req.via`, then `req.also`); serial and USB steps must each be
/// accepted by the device. Returns each step's candidate and transport.
pub(super) fn search(
    model: &Model<'_>,
    start: &State,
    finals: &BTreeMap<ModuleRef, usize>,
    req: &Request<'_>,
) -> Result<Vec<(usize, Via)>, PlanError> {
    const MAX_NODES: usize = 50_000;
    let final_layout = model.layout(&final_state(model, start, finals));
    let mut vias = vec![req.via];
    vias.extend(req.also.iter().copied().filter(|v| *v != req.via));
    let mixed = vias.len() > 1;
    let costs = Costs::new(req.twin);
    // Intermediates (transports the device validates on): modules of the final slots with
    // versions between what is installed and what the slot ends with.
    let mut usable: Vec<usize> = finals.values().copied().collect();
    if vias.iter().any(|v| v.validated_per_step()) {
        for (slot, &fid) in finals {
            let now = start.slots.get(slot).map_or(0, |h| h.version);
            let end = model.pool[fid].info.version;
            for (id, c) in model.pool.iter().enumerate() {
                if c.slot() == *slot
                    && c.info.version > now
                    && c.info.version < end
                    && !usable.contains(&id)
                {
                    usable.push(id);
                }
            }
        }
    }
    usable.sort_unstable();
    let goal = |s: &State| {
        finals.iter().all(|(slot, id)| {
            s.slots.get(slot).and_then(|h| h.id) == Some(*id) || s.staged == Some(*id)
        })
    };
    type Cost = (usize, usize, usize, usize, usize);
    type Path = Vec<(usize, Via)>;
    let mut best: HashMap<State, Cost> = HashMap::new();
    let mut heap = BinaryHeap::new();
    best.insert(start.clone(), (0, 0, 0, 0, 0));
    heap.push(Reverse(((0, 0, 0, 0, 0), Path::new(), start.clone())));
    let mut refusals = Refusals::default();
    let mut nodes = 0;
    while let Some(Reverse((cost, path, s))) = heap.pop() {
        if best.get(&s).is_some_and(|c| *c < cost) {
            continue;
        }
        nodes += 1;
        if nodes > MAX_NODES {
            break;
        }
        if goal(&s) {
            // After DFU writes the device still has to boot them; after a validated step it
            // already has.
            let boots_next = match s.last {
                Some(v) => v == Via::Dfu,
                None => req.via == Via::Dfu,
            };
            let done = if boots_next {
                model
                    .boot(&s)
                    .is_some_and(|b| model.consistent(&b).is_ok() || req.force.dependencies)
            } else {
                model.consistent(&s).is_ok() || req.force.dependencies
            };
            if done {
                return Ok(path);
            }
        }
        for &id in &usable {
            let c = &model.pool[id];
            let slot = c.slot();
            if s.slots.get(&slot).and_then(|h| h.id) == Some(id) || s.staged == Some(id) {
                continue;
            }
            for &via in &vias {
                let Some(next) = step(model, &s, id, via, final_layout, &mut refusals) else {
                    continue;
                };
                let unbootable = usize::from(model.boot(&next).is_none());
                let resets = usize::from(via.validated_per_step());
                let spent = if mixed {
                    let place =
                        rules::dfu_place(model.platform, model.layout(&s), final_layout, &c.info);
                    let us =
                        costs.step_us(via, &c.info, c.bytes.len(), place, model.layout(&s), s.last);
                    usize::try_from(us).unwrap_or(usize::MAX)
                } else {
                    c.bytes.len()
                };
                // Prefer Particle's install order: count the kinds already written that should
                // have come after this one.
                let rank = install_rank(model.platform, slot).min(31);
                let inversion = (s.ranks_written >> (rank + 1)).count_ones() as usize;
                let mut next = next;
                next.ranks_written |= 1 << rank;
                next.last = Some(via);
                let ncost = (
                    cost.0 + usize::from(c.origin.is_synthetic()),
                    cost.1.saturating_add(spent),
                    cost.2 + resets,
                    cost.3 + unbootable,
                    cost.4 + inversion,
                );
                if best.get(&next).is_none_or(|b| ncost < *b) {
                    best.insert(next.clone(), ncost);
                    let mut npath = path.clone();
                    npath.push((id, via));
                    heap.push(Reverse((ncost, npath, next)));
                }
            }
        }
    }
    Err(PlanError::NoOrder {
        via: req.via.name(),
        reason: refusals
            .explain(model)
            .unwrap_or_else(|| "the device would not accept any order of these modules".into()),
        help: no_order_help(req),
    })
}

/// The state after writing candidate `id` over `via` in state `s`, or `None` when that step
/// cannot be taken there (the refusal is noted).
fn step(
    model: &Model<'_>,
    s: &State,
    id: usize,
    via: Via,
    final_layout: &'static modflash_module::platform::Layout,
    refusals: &mut Refusals,
) -> Option<State> {
    let c = &model.pool[id];
    let slot = c.slot();
    match via {
        Via::Serial | Via::Usb => {
            // The firmware takes the module: after DFU writes the device boots them first.
            let running = if s.last == Some(Via::Dfu) {
                model.boot(s)?
            } else {
                s.clone()
            };
            if via == Via::Usb && !model.answers_control_requests(&running) {
                refusals.other.get_or_insert(format!(
                    "{}: the installed system firmware does not answer USB control requests \
                     (Device OS 0.8.0 and later do)",
                    c.origin
                ));
                return None;
            }
            if let Err(refusal) = model.ota_refusal(&running, id) {
                refusals.note(&running, id, refusal);
                return None;
            }
            let mut installed = model.install(&running, id);
            if slot == ModuleRef::new(ModuleFunction::UserPart, 2) {
                // The device's copy erases the legacy app's first page (v6.2 HAL).
                installed
                    .slots
                    .remove(&ModuleRef::new(ModuleFunction::UserPart, 1));
            }
            // The device resets after each module; it must come back up to take the next.
            model.boot(&installed)
        }
        Via::Dfu => {
            let place = rules::dfu_place(model.platform, model.layout(s), final_layout, &c.info)?;
            if matches!(place, DfuPlace::Stage { .. }) {
                // Setting the OTA flag needs the DCT.
                let dct_reachable = rules::dct_reachable(&model.view(s), model.platform);
                if s.staged.is_some() || !dct_reachable {
                    return None;
                }
                let mut n = s.clone();
                n.staged = Some(id);
                Some(n)
            } else if overwrites_another(s, c) {
                refusals.other.get_or_insert(format!(
                    "{}: writing it now would overwrite another installed module",
                    c.origin
                ));
                None
            } else {
                Some(model.install(s, id))
            }
        }
    }
}

/// What to do when no order works on the transports asked for.
fn no_order_help(req: &Request<'_>) -> String {
    let catalog = "add the module named above to the catalogue (`modflash catalog add FILE` or --catalog DIR)";
    match (req.via, req.alternative) {
        (Via::Serial, Some(Via::Dfu)) => {
            format!("{catalog}, or use --via dfu, which validates nothing per step")
        }
        (Via::Serial, _) => format!(
            "{catalog}; over USB (--device usb) DFU validates nothing per step"
        ),
        (Via::Usb, _) => format!(
            "{catalog}, or use --via dfu (or leave --via out: DFU then writes what USB control requests cannot)"
        ),
        (Via::Dfu, _) => "check the catalogue".into(),
    }
}

pub(super) fn reason_for(
    model: &Model<'_>,
    start: &State,
    targets: &[usize],
    finals: &BTreeMap<ModuleRef, usize>,
    id: usize,
) -> String {
    let c = &model.pool[id];
    if targets.contains(&id) {
        return "requested".into();
    }
    let slot = c.slot();
    if let Some(damaged) = start.slots.get(&slot).filter(|h| !h.intact) {
        if finals.get(&slot) == Some(&id) {
            return format!(
                "the installed {slot} (version {}) fails its integrity check",
                damaged.version
            );
        }
    }
    let installed = start
        .slots
        .get(&slot)
        .map(|h| h.version)
        .filter(|&v| v != ERASED);
    let needers: Vec<String> = finals
        .values()
        .filter(|&&f| f != id)
        .filter_map(|&f| {
            let fc = &model.pool[f];
            fc.info
                .listed_dependencies()
                .find(|d| {
                    d.function == slot.function
                        && d.index == slot.index
                        && d.version > installed.unwrap_or(0)
                })
                .map(|d| {
                    format!(
                        "{} {} needs {slot} \u{2265} {}",
                        fc.slot(),
                        fc.info.version,
                        d.version
                    )
                })
        })
        .collect();
    let installed_text =
        installed.map_or("none installed".to_string(), |v| format!("installed {v}"));
    if finals.values().any(|&f| f == id) {
        if needers.is_empty() {
            format!("dependency ({installed_text})")
        } else {
            format!("{} ({installed_text})", needers.join("; "))
        }
    } else {
        let release = release_name(c.info.version)
            .map(|r| format!(" (Device OS {r})"))
            .unwrap_or_default();
        format!("intermediate{release}: the device only accepts the final version once this one is installed ({installed_text})")
    }
}

/// The device's refusals met during a search, to explain a search that found nothing.
#[derive(Default)]
struct Refusals {
    /// Each refused module, the state it was refused in, and why: the first refusal of each.
    ota: Vec<(usize, State, OtaRefusal)>,
    /// A refusal that is not the device's (a DFU write over another module).
    other: Option<String>,
}

impl Refusals {
    fn note(&mut self, s: &State, id: usize, refusal: OtaRefusal) {
        if !self.ota.iter().any(|(i, _, _)| *i == id) {
            self.ota.push((id, s.clone(), refusal));
        }
    }

    /// What is really missing. A refusal for a dependency no module of the pool can meet
    /// names it; when every dependency has a module that is itself refused (part 2 of 1.5.0
    /// needs part 1 of 1.5.0, which needs part 2 ≥ 207 first), the need to report is the one
    /// an intermediate version would meet — the lower bound below every module offered.
    fn explain(&self, model: &Model<'_>) -> Option<String> {
        let offered = |slot: ModuleRef, min: u16| -> Vec<u16> {
            model
                .pool
                .iter()
                .filter(|c| c.slot() == slot && c.info.version >= min)
                .map(|c| c.info.version)
                .collect()
        };
        let need = |r: &OtaRefusal| match r {
            OtaRefusal::Dependencies(u) => Some((
                ModuleRef::new(u.required.function, u.required.index),
                u.required.version,
            )),
            _ => None,
        };
        let pick = self
            .ota
            .iter()
            .find(|(_, _, r)| need(r).is_some_and(|(slot, min)| offered(slot, min).is_empty()))
            .or_else(|| {
                self.ota
                    .iter()
                    .filter(|(_, _, r)| {
                        need(r)
                            .is_some_and(|(slot, min)| offered(slot, min).iter().all(|&v| v > min))
                    })
                    .min_by_key(|(_, _, r)| need(r).map(|(_, min)| min))
            })
            .or_else(|| self.ota.first());
        match pick {
            Some((id, s, r)) => Some(format!(
                "{}: {}",
                model.pool[*id].origin,
                model.refusal_words(s, *id, r)
            )),
            None => self.other.clone(),
        }
    }
}
