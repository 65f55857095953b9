//! Searching for a plan: the module each slot must end with, then the cheapest order of
//! writes the device accepts step by step (Dijkstra over model states), and why each step is
//! there.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use modflash_module::release::{platform_release, release_name};
use modflash_module::rules::{self, DfuPlace, OtaRefusal, ERASED};
use modflash_module::Platform;
use modflash_module::{ModuleFunction, ModuleRef};

use super::model::{final_state, install_rank, overwrites_another, Model, State};
use super::types::{Force, PlanError, Request, Via};
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

/// Picks the module each slot must end with: the targets, then for every unmet dependency
/// the lowest sufficient version available (preferring the dependent module's own release).
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
    let mut missing = Vec::new();
    loop {
        let mut state = start.clone();
        for &id in finals.values() {
            state = model.install(&state, id);
        }
        let state = model.boot(&state).unwrap_or(state);
        let Err(m) = model.consistent(&state) else {
            break;
        };
        if finals.contains_key(&m.slot) {
            // A chosen module is too old for another chosen module.
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

/// Dijkstra over model states: cost = (bytes written, resets, steps whose result would not
/// boot, candidate ids for determinism). Serial steps must each be accepted by the device.
pub(super) fn search(
    model: &Model<'_>,
    start: &State,
    finals: &BTreeMap<ModuleRef, usize>,
    req: &Request<'_>,
) -> Result<Vec<usize>, PlanError> {
    const MAX_NODES: usize = 50_000;
    let final_layout = model.layout(&final_state(model, start, finals));
    // Intermediates (serial only): modules of the final slots with versions between what is
    // installed and what the slot ends with.
    let mut usable: Vec<usize> = finals.values().copied().collect();
    if req.via == Via::Serial {
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
    // Cost: synthetic images written (real files first), bytes, resets, steps whose result
    // would not boot, inversions of Particle's install order.
    type Cost = (usize, usize, usize, usize, usize);
    let mut best: HashMap<State, Cost> = HashMap::new();
    let mut heap = BinaryHeap::new();
    best.insert(start.clone(), (0, 0, 0, 0, 0));
    heap.push(Reverse((
        (0, 0, 0, 0, 0),
        Vec::<usize>::new(),
        start.clone(),
    )));
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
            let done = match req.via {
                Via::Dfu => model
                    .boot(&s)
                    .is_some_and(|b| model.consistent(&b).is_ok() || req.force.dependencies),
                Via::Serial => model.consistent(&s).is_ok() || req.force.dependencies,
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
            let next = match req.via {
                Via::Serial => {
                    if let Err(refusal) = model.ota_refusal(&s, id) {
                        refusals.note(&s, id, refusal);
                        continue;
                    }
                    let mut installed = model.install(&s, id);
                    if slot == ModuleRef::new(ModuleFunction::UserPart, 2) {
                        // The device's copy erases the legacy app's first page (v6.2 HAL).
                        installed
                            .slots
                            .remove(&ModuleRef::new(ModuleFunction::UserPart, 1));
                    }
                    // The device resets after each module; it must come back up to take the next.
                    match model.boot(&installed) {
                        Some(b) => b,
                        None => continue,
                    }
                }
                Via::Dfu => {
                    let Some(place) =
                        rules::dfu_place(model.platform, model.layout(&s), final_layout, &c.info)
                    else {
                        continue;
                    };
                    if matches!(place, DfuPlace::Stage { .. }) {
                        // Setting the OTA flag needs the DCT.
                        let dct_reachable = rules::dct_reachable(&model.view(&s), model.platform);
                        if s.staged.is_some() || !dct_reachable {
                            continue;
                        }
                        let mut n = s.clone();
                        n.staged = Some(id);
                        n
                    } else if overwrites_another(&s, c) {
                        refusals.other.get_or_insert(format!(
                            "{}: writing it now would overwrite another installed module",
                            c.origin
                        ));
                        continue;
                    } else {
                        model.install(&s, id)
                    }
                }
            };
            let unbootable = usize::from(model.boot(&next).is_none());
            let resets = usize::from(req.via == Via::Serial);
            // Prefer Particle's install order: count the kinds already written that should
            // have come after this one.
            let rank = install_rank(model.platform, slot).min(31);
            let inversion = (s.ranks_written >> (rank + 1)).count_ones() as usize;
            let mut next = next;
            next.ranks_written |= 1 << rank;
            let ncost = (
                cost.0 + usize::from(c.origin.is_synthetic()),
                cost.1 + c.bytes.len(),
                cost.2 + resets,
                cost.3 + unbootable,
                cost.4 + inversion,
            );
            if best.get(&next).is_none_or(|b| ncost < *b) {
                best.insert(next.clone(), ncost);
                let mut npath = path.clone();
                npath.push(id);
                heap.push(Reverse((ncost, npath, next)));
            }
        }
    }
    Err(PlanError::NoOrder {
        via: req.via.name(),
        reason: refusals
            .explain(model)
            .unwrap_or_else(|| "the device would not accept any order of these modules".into()),
        help: match (req.via, req.alternative) {
            (Via::Serial, Some(Via::Dfu)) => {
                "add the module named above to the catalogue (`modflash catalog add FILE` or --catalog DIR), or use --via dfu, which validates nothing per step"
                    .into()
            }
            (Via::Serial, _) => {
                "add the module named above to the catalogue (`modflash catalog add FILE` or --catalog DIR); over USB (--device usb) DFU validates nothing per step"
                    .into()
            }
            (Via::Dfu, _) => "check the catalogue".into(),
        },
    })
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
