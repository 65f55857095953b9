//! The update matrix on virtual devices, over DFU and serial: wherever a plan exists it is
//! found, and executed it ends with the app running, with no step rejected and nothing already
//! installed rewritten; where none exists, the explanation names what is missing.

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::plan::run_steps;
use modflash::plan::{plan, Force, Plan, PlanError, Request, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::Session;
use modflash_device::{Device, Mode};
use modflash_module::release::platform_releases;
use modflash_module::{platform, ModuleFunction};
use modflash_testkit::device::device;
use modflash_testkit::fixture;

/// The release's app as a file candidate.
fn release_app(platform_id: u16, release: &str) -> Candidate {
    Candidate::from_bytes(
        Origin::File(format!("app-{release}.bin").into()),
        modflash_testkit::device::release_app(platform_id, release),
    )
    .unwrap()
}

fn run(
    mut d: Device,
    targets: Vec<Candidate>,
    catalog: &Catalog,
    via: Via,
) -> Result<(Plan, Device), PlanError> {
    let before = d.system_info();
    let req = Request {
        twin: &d,
        targets,
        catalog,
        via,
        also: Vec::new(),
        alternative: Some(match via {
            Via::Dfu => Via::Serial,
            Via::Serial | Via::Usb => Via::Dfu,
        }),
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req)?;
    for s in &p.steps {
        let rewrite = before.iter().any(|f| {
            f.sha256 == Some(s.module.sha256) && f.info.map(|i| i.slot()) == Some(s.module.slot())
        });
        assert!(
            !rewrite,
            "{via:?}: rewrites the installed {}",
            s.module.slot()
        );
    }
    let mut s = Session::virtual_device(&mut d, "sim:test");
    run_steps(&mut s, &p.steps, &mut Quiet, &Cancel::new())
        .unwrap_or_else(|e| panic!("{via:?}: a step was rejected: {e}"));
    drop(s);
    Ok((p, d))
}

#[test]
fn photon_and_p1_from_052_and_150_to_every_later_release() {
    let mut cases = 0;
    for platform_id in [6u16, 8] {
        let p = platform::platform(platform_id).unwrap();
        let mut catalog = Catalog::default();
        catalog.add_release_table(p);
        let releases: Vec<_> = platform_releases(p)
            .map(|r| (r.release, r.system_version))
            .collect();
        for from in ["0.5.2", "1.5.0"] {
            let from_version = releases.iter().find(|r| r.0 == from).unwrap().1;
            for &(to, to_version) in releases.iter().filter(|r| r.1 > from_version) {
                for via in [Via::Dfu, Via::Serial] {
                    let d = device(platform_id).release(from).running();
                    let (p, d) = run(d, vec![release_app(platform_id, to)], &catalog, via)
                        .unwrap_or_else(|e| panic!("{} {from} → {to} {via:?}: {e}", p.name));
                    assert_eq!(
                        d.state.mode,
                        Mode::App,
                        "{from} → {to} {via:?}: {:#?}",
                        d.state.events
                    );
                    assert!(
                        d.system_version().unwrap() >= to_version,
                        "{from} → {to} {via:?}"
                    );
                    assert!(p.prediction.app_runs());
                    cases += 1;
                }
            }
        }
    }
    assert!(cases >= 30, "{cases} cases");
}

#[test]
fn electron_052_to_150_two_parts_to_three() {
    let mut catalog = Catalog::default();
    for f in [
        "electron-system-part1@1.5.0.bin",
        "electron-system-part2@1.5.0.bin",
        "electron-system-part3@1.5.0.bin",
    ] {
        catalog.push(Candidate::from_bytes(Origin::Catalog(f.into()), fixture(f)).unwrap());
    }
    let app = release_app(10, "1.5.0");
    // DFU: all three parts (index 3, 1, 2 — the files system-part1, -part2, -part3), then the app.
    let (p, d) = run(
        device(10).release("0.5.2").running(),
        vec![app.clone()],
        &catalog,
        Via::Dfu,
    )
    .unwrap();
    let order: Vec<u8> = p
        .steps
        .iter()
        .filter(|s| s.module.info.function == ModuleFunction::SystemPart)
        .map(|s| s.module.info.index)
        .collect();
    let steps: Vec<String> = p
        .steps
        .iter()
        .map(|s| format!("{} {} {}", s.module.slot(), s.module.info.version, s.reason))
        .collect();
    assert_eq!(order, [3, 1, 2], "{steps:#?}");
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.layout().name, "electron");
    // Serial: the 0.5.2 system firmware has no region for system part 3, so no order works.
    let err = run(
        device(10).release("0.5.2").running(),
        vec![app],
        &catalog,
        Via::Serial,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("system part 3"), "{text}");
    assert!(
        miette::Diagnostic::help(&err)
            .unwrap()
            .to_string()
            .contains("--via dfu"),
        "{err:?}"
    );
}

#[test]
fn argon_bootloader_radio_stack_and_system_part() {
    let targets: Vec<Candidate> = [
        "argon-bootloader@1.5.0.bin",
        "argon-softdevice@1.5.0.bin",
        "argon-system-part1@1.5.0.bin",
    ]
    .iter()
    .map(|f| Candidate::from_bytes(Origin::File((*f).into()), fixture(f)).unwrap())
    .collect();
    let catalog = Catalog::default();
    for via in [Via::Dfu, Via::Serial] {
        let (p, d) = run(
            device(12).release("1.4.4").running(),
            targets.clone(),
            &catalog,
            via,
        )
        .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        assert_eq!(d.state.mode, Mode::App, "{via:?}: {:#?}", d.state.events);
        assert_eq!(d.system_version(), Some(1502));
        let functions: Vec<_> = p.steps.iter().map(|s| s.module.info.function).collect();
        assert_eq!(
            functions[0],
            ModuleFunction::Bootloader,
            "{via:?}: bootloader first on Gen3"
        );
        if via == Via::Dfu {
            let radio = p
                .steps
                .iter()
                .find(|s| s.module.info.function == ModuleFunction::RadioStack)
                .unwrap();
            assert_eq!(
                radio.address(),
                0x1000,
                "the SoftDevice payload goes to 0x1000"
            );
            assert_eq!(
                radio.bytes(),
                fixture("argon-softdevice@1.5.0.bin").len() - 24,
                "prefix dropped"
            );
        }
    }
}

#[test]
fn missing_modules_are_named() {
    // A 0.5.2 Photon, an app for 1.5.0, and an empty catalogue.
    let catalog = Catalog::default();
    let err = run(
        device(6).release("0.5.2").running(),
        vec![release_app(6, "1.5.0")],
        &catalog,
        Via::Dfu,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("system part 2 \u{2265} 1502 (e.g. Device OS 1.5.0)"),
        "{text}"
    );
    assert!(text.contains("needed by user part 1"), "{text}");
}

#[test]
fn gen3_across_memory_maps() {
    // 1.4.4/1.5.0 (system part at 0x30000, 128 KB app at 0xD4000) to apps of 3.1.0 (256 KB
    // app at 0xB4000, inside the old system part) and 6.2.0 (system part moved to 0x28000).
    for (platform_id, from) in [(12u16, "1.4.4"), (13, "1.5.0")] {
        let p = platform::platform(platform_id).unwrap();
        let mut catalog = Catalog::default();
        catalog.add_release_table(p);
        for to in ["3.1.0", "6.2.0"] {
            for via in [Via::Dfu, Via::Serial] {
                let what = format!("{} {from} → {to} {via:?}", p.name);
                match run(
                    device(platform_id).release(from).running(),
                    vec![release_app(platform_id, to)],
                    &catalog,
                    via,
                ) {
                    Ok((plan, d)) => {
                        assert_eq!(d.state.mode, Mode::App, "{what}: {:#?}", d.state.events);
                        let app = plan.steps.last().unwrap();
                        assert_eq!(app.module.info.function, ModuleFunction::UserPart, "{what}");
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
    }
}

#[test]
fn p2_apps_grow_down_and_run() {
    // The release Tinker sits below the fixed end with its DYNAMIC_LOCATION; an app for a
    // later release brings prebootloader, bootloader and system part in that order.
    let p = platform::platform(32).unwrap();
    let mut catalog = Catalog::default();
    catalog.add_release_table(p);
    for via in [Via::Dfu, Via::Serial] {
        let (plan, d) = run(
            device(32).release("5.0.0").running(),
            vec![release_app(32, "6.2.0")],
            &catalog,
            via,
        )
        .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        assert_eq!(d.state.mode, Mode::App, "{via:?}: {:#?}", d.state.events);
        assert_eq!(d.system_version(), Some(6200));
        let order: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.module.info.function, s.module.info.index))
            .collect();
        let pbl = order
            .iter()
            .position(|s| *s == (ModuleFunction::Bootloader, 2))
            .unwrap();
        let bl = order
            .iter()
            .position(|s| *s == (ModuleFunction::Bootloader, 0))
            .unwrap();
        let s1 = order
            .iter()
            .position(|s| s.0 == ModuleFunction::SystemPart)
            .unwrap();
        assert!(pbl < bl && bl < s1, "{via:?}: {order:?}");
    }
}
