//! Planner scenarios on virtual devices: plans are found, proven and executable.

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::plan::run_steps;
use modflash::plan::{plan, Action, Force, PlanError, Request, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::Session;
use modflash_device::{Device, Mode};
use modflash_module::edit::ModuleBuilder;
use modflash_module::{platform, Dependency, ModuleFunction};
use modflash_testkit::device::device;
use modflash_testkit::fixture;

fn app(platform_id: u16, start: u32, needs: Dependency, seed: u8) -> Candidate {
    let bytes = ModuleBuilder::new(platform_id, ModuleFunction::UserPart, 1, 6, start)
        .dependency(0, needs)
        .payload(vec![seed; 3000])
        .build()
        .unwrap();
    Candidate::from_bytes(Origin::File(format!("app-{seed}.bin").into()), bytes).unwrap()
}

fn photon_app_for(version: u16) -> Candidate {
    app(
        6,
        0x080A_0000,
        Dependency::new(ModuleFunction::SystemPart, 2, version),
        0x42,
    )
}

fn releases(platform_id: u16) -> Catalog {
    let mut c = Catalog::default();
    c.add_release_table(platform::platform(platform_id).unwrap());
    c
}

fn execute(device: &mut Device, p: &modflash::plan::Plan) {
    let mut s = Session::virtual_device(device, "sim:test");
    run_steps(&mut s, &p.steps, p.via, &mut Quiet, &Cancel::new()).unwrap();
}

fn names(p: &modflash::plan::Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.module.slot(), s.module.info.version))
        .collect()
}

#[test]
fn photon_052_to_an_app_for_150_over_dfu() {
    let mut d = device(6).release("0.5.2").running();
    let catalog = releases(6);
    let req = Request {
        twin: &d,
        targets: vec![photon_app_for(1502)],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    assert_eq!(
        names(&p),
        [
            "bootloader 501",
            "system part 1 1502",
            "system part 2 1502",
            "user part 1 6"
        ]
    );
    assert!(matches!(
        p.steps[0].action,
        Action::DfuStageBootloader {
            alt: 0,
            address: 0x080C_0000
        }
    ));
    assert_eq!(p.prediction.mode, Mode::App);
    execute(&mut d, &p);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.system_version(), Some(1502));
}

#[test]
fn photon_052_to_150_over_serial_goes_through_070() {
    let mut d = device(6).release("0.5.2").running();
    let catalog = releases(6);
    let req = Request {
        twin: &d,
        targets: vec![photon_app_for(1502)],
        catalog: &catalog,
        via: Via::Serial,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    let steps = names(&p);
    assert!(
        steps.contains(&"system part 2 207".to_string()),
        "{steps:?}"
    );
    assert_eq!(steps.last().unwrap(), "user part 1 6", "{steps:?}");
    execute(&mut d, &p);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
}

#[test]
fn serial_without_an_intermediate_release_names_the_missing_module() {
    let d = device(6).release("0.5.2").running();
    let mut catalog = Catalog::default();
    for f in [
        "photon-bootloader@1.5.0+lto.bin",
        "photon-system-part1@1.5.0.bin",
        "photon-system-part2@1.5.0.bin",
    ] {
        catalog.push(Candidate::from_bytes(Origin::Catalog(f.into()), fixture(f)).unwrap());
    }
    let req = Request {
        twin: &d,
        targets: vec![photon_app_for(1502)],
        catalog: &catalog,
        via: Via::Serial,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let err = plan(&req).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PlanError::NoOrder { .. }), "{text}");
    assert!(text.contains("system part 2 \u{2265} 207"), "{text}");
    // Over DFU the same catalogue works.
    let req = Request {
        via: Via::Dfu,
        alternative: None,
        ..req
    };
    assert!(plan(&req).is_ok());
}

#[test]
fn core_image_is_refused() {
    let d = device(6).release("1.5.0").running();
    let core = Candidate::from_bytes(
        Origin::File("core_tinker.bin".into()),
        fixture("core_tinker.bin"),
    )
    .unwrap();
    let catalog = Catalog::default();
    let req = Request {
        twin: &d,
        targets: vec![core],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force { dependencies: true },
        factory: false,
    };
    let err = plan(&req).unwrap_err();
    assert!(matches!(err, PlanError::Refused { .. }));
    assert!(
        err.to_string().contains("for the Core (platform 0)"),
        "{err}"
    );
}

#[test]
fn already_installed_modules_are_skipped() {
    let mut d = device(6).release("1.5.0").running();
    let catalog = releases(6);
    let target = photon_app_for(1502);
    let req = Request {
        twin: &d,
        targets: vec![target.clone()],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    assert_eq!(names(&p), ["user part 1 6"], "only the app is written");
    execute(&mut d, &p);
    let req = Request {
        twin: &d,
        targets: vec![target],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    assert!(
        p.steps.is_empty() && p.skipped.len() == 1,
        "{:?}",
        names(&p)
    );
}

#[test]
fn electron_052_to_150_over_dfu() {
    let mut d = device(10).release("0.5.2").running();
    let catalog = releases(10);
    let app = app(
        10,
        0x0808_0000,
        Dependency::new(ModuleFunction::SystemPart, 2, 1502),
        7,
    );
    let req = Request {
        twin: &d,
        targets: vec![app],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    execute(&mut d, &p);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.layout().name, "electron");
}

#[test]
fn argon_144_to_150_over_dfu_and_serial() {
    for via in [Via::Dfu, Via::Serial] {
        let mut d = device(12).release("1.4.4").running();
        let catalog = releases(12);
        let app = app(
            12,
            0xD4000,
            Dependency::new(ModuleFunction::SystemPart, 1, 1502),
            9,
        );
        let req = Request {
            twin: &d,
            targets: vec![app],
            catalog: &catalog,
            via,
            alternative: None,
            force: Force::default(),
            factory: false,
        };
        let p = plan(&req).unwrap_or_else(|e| panic!("{via:?}: {e}"));
        execute(&mut d, &p);
        assert_eq!(d.state.mode, Mode::App, "{via:?}: {:#?}", d.state.events);
        assert_eq!(d.system_version(), Some(1502));
    }
}

#[test]
fn a_device_that_is_off_is_explained_not_disproven() {
    let d = device(6).release("1.5.0").powered_off();
    let catalog = releases(6);
    let req = Request {
        twin: &d,
        targets: vec![photon_app_for(1502)],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let err = plan(&req).unwrap_err();
    assert_eq!(err, PlanError::DeviceOff);
    assert!(miette::Diagnostic::help(&err)
        .unwrap()
        .to_string()
        .contains("power it on"));
}

#[test]
fn system_firmware_alone_on_a_device_without_an_app_is_a_plan_that_ends_without_one() {
    // An Argon with only its bootloader (DFU mode, no system): system part 1 and the radio
    // stack, no application asked for. The device then runs no app: that is what was asked.
    let mut d = Device::blank(platform::platform(12).unwrap(), [5; 12]).unwrap();
    d.install_module(&fixture("argon-bootloader@1.5.0.bin"))
        .unwrap();
    d.power_on();
    assert_ne!(d.state.mode, Mode::App);
    let mut catalog = Catalog::default();
    catalog.push(
        Candidate::from_bytes(
            Origin::Catalog("argon-softdevice@1.5.0.bin".into()),
            fixture("argon-softdevice@1.5.0.bin"),
        )
        .unwrap(),
    );
    let part1 = Candidate::from_bytes(
        Origin::File("argon-system-part1@1.5.0.bin".into()),
        fixture("argon-system-part1@1.5.0.bin"),
    )
    .unwrap();
    let req = Request {
        twin: &d,
        targets: vec![part1],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&req).unwrap();
    assert_eq!(p.prediction.mode, Mode::NoApp, "{:?}", p.prediction.events);
    execute(&mut d, &p);
    assert_eq!(d.state.mode, Mode::NoApp);
}

#[test]
fn a_missing_module_names_the_release_page_its_file_is_on() {
    let d = device(6).release("0.5.2").running();
    let catalog = Catalog::default();
    let req = Request {
        twin: &d,
        targets: vec![photon_app_for(1502)],
        catalog: &catalog,
        via: Via::Dfu,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let PlanError::Missing { help, .. } = plan(&req).unwrap_err() else {
        panic!("a missing module");
    };
    assert!(
        help.starts_with(
            "system part 2 of Device OS 1.5.0 for the Photon is on \
             https://github.com/particle-iot/device-os/releases/tag/v1.5.0; add the file"
        ),
        "{help}"
    );
    assert!(help.contains("`modflash catalog add PATH`"), "{help}");
}

#[test]
fn a_release_the_catalogue_lacks_names_its_page() {
    let photon = platform::platform(6).unwrap();
    let err = modflash::request::release_targets(&Catalog::default(), photon, "1.5.0").unwrap_err();
    assert!(
        err.to_string()
            .contains("the catalogue has no bootloader version 501"),
        "{err}"
    );
    let help = err.help_text().unwrap_or_default();
    assert!(
        help.starts_with(
            "the release's files are on \
             https://github.com/particle-iot/device-os/releases/tag/v1.5.0: add them with \
             `modflash catalog add PATH`"
        ),
        "{help}"
    );
}
