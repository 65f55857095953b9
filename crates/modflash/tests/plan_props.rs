//! Property: for random devices, apps and catalogues, every plan the planner returns replays on
//! a fresh twin with every step accepted and ends with the app running; plans are
//! deterministic; a refused request never comes with steps.

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::plan::run_steps;
use modflash::plan::{plan, Force, Request, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::Session;
use modflash_device::Mode;
use modflash_module::release::platform_releases;
use modflash_module::synth::synthesize;
use modflash_module::{platform, ModuleFunction};
use modflash_testkit::device::device;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn returned_plans_replay_and_end_with_the_app(
        platform_id in prop::sample::select(vec![6u16, 8, 10, 12]),
        from in 0usize..16,
        to in 0usize..16,
        keep in proptest::collection::vec(any::<bool>(), 64),
        serial in any::<bool>(),
    ) {
        let p = platform::platform(platform_id).unwrap();
        let releases: Vec<_> = platform_releases(p).collect();
        let from = releases[from % releases.len()];
        let to = releases[to % releases.len()];
        let twin = device(platform_id).release(from.release).powered_on();
        // The app of the target release, and a random subset of the release table.
        let app_module = to.modules_for(p).find(|m| m.function == ModuleFunction::UserPart).unwrap();
        let app = Candidate::from_bytes(Origin::File("app.bin".into()), synthesize(p, &app_module)).unwrap();
        let mut full = Catalog::default();
        full.add_release_table(p);
        let mut catalog = Catalog::default();
        for (c, k) in full.modules.into_iter().zip(keep.iter().cycle()) {
            if *k { catalog.push(c); }
        }
        let via = if serial { Via::Serial } else { Via::Dfu };
        let req = Request { twin: &twin, targets: vec![app], catalog: &catalog, via, also: Vec::new(), alternative: None, force: Force::default(), factory: false };
        let first = plan(&req);
        let second = plan(&req);
        match (&first, &second) {
            (Ok(a), Ok(b)) => {
                let key = |p: &modflash::plan::Plan| p.steps.iter().map(|s| (s.module.sha256, s.address())).collect::<Vec<_>>();
                prop_assert_eq!(key(a), key(b), "deterministic");
                let mut fresh = twin.clone();
                let mut target = Session::virtual_device(&mut fresh, "sim:test");
                let replay = run_steps(&mut target, &a.steps, &mut Quiet, &Cancel::new());
                drop(target);
                prop_assert!(replay.is_ok(), "{:?}", replay);
                prop_assert_eq!(fresh.state.mode, Mode::App, "{:#?}", fresh.state.events);
                // Nothing already installed is rewritten.
                let installed = twin.system_info();
                for s in &a.steps {
                    let same = installed.iter().any(|f| f.sha256 == Some(s.module.sha256) && f.info.map(|i| i.slot()) == Some(s.module.slot()));
                    prop_assert!(!same, "rewrote {}", s.module.origin);
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b, "deterministic refusal"),
            _ => prop_assert!(false, "one run found a plan, the other did not"),
        }
    }
}
