//! A module that fails its integrity check is not installed, whatever its header says: the
//! planner rewrites it (a requested file of the same SHA-256, a Device OS module another one
//! depends on, or one no request touches), and a device left in DFU mode with everything
//! written is reset into its firmware.

mod support;

use modflash::catalog::Catalog;
use modflash::plan::{plan, PlanError, Request, Via};
use modflash::Session;
use modflash_device::hal::flags::INTEGRITY;
use modflash_device::{Device, Mode, ResetReason, Space};
use modflash_module::{ModuleFunction, ModuleRef};
use modflash_testkit::device::{device, release_app};
use support::Command;

const BOOTLOADER: ModuleRef = ModuleRef::new(ModuleFunction::Bootloader, 0);
const PART1: ModuleRef = ModuleRef::new(ModuleFunction::SystemPart, 1);
const PART2: ModuleRef = ModuleRef::new(ModuleFunction::SystemPart, 2);
const APP: ModuleRef = ModuleRef::new(ModuleFunction::UserPart, 1);

/// Clears one byte of the body of the module in `slot` (past its header, before its suffix):
/// its CRC fails, its header and stored SHA-256 stay.
fn damage(d: &mut Device, slot: ModuleRef) {
    let f = d
        .system_info()
        .into_iter()
        .find(|f| f.info.is_some_and(|i| i.slot() == slot))
        .unwrap_or_else(|| panic!("no {slot}"));
    let body = d.flash().read(Space::Internal, f.address, 0x2000).unwrap();
    let at = (0x400..0x2000).find(|&i| body[i] != 0).unwrap() as u32;
    d.flash_mut()
        .program(Space::Internal, f.address + at, &[0])
        .unwrap();
    assert!(!intact(d, slot), "{slot} still passes");
}

fn intact(d: &Device, slot: ModuleRef) -> bool {
    d.system_info()
        .iter()
        .any(|f| f.info.is_some_and(|i| i.slot() == slot) && f.passed & INTEGRITY != 0)
}

fn steps(p: &modflash::plan::Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.module.slot(), s.module.info.version))
        .collect()
}

#[test]
fn a_release_whose_modules_fail_integrity_is_repaired() {
    // `flash --device-os 1.5.0` on a 1.5.0 Photon whose bootloader and parts fail their CRC
    // (used to be "no plan": same SHA-256, so "already installed").
    let mut d = device(6).release("1.5.0").running();
    for slot in [BOOTLOADER, PART1, PART2] {
        damage(&mut d, slot);
    }
    d.reset(ResetReason::Button, None);
    let command = Command::new(&[], Some("1.5.0"), Via::Dfu);
    let plan = {
        let mut s = Session::virtual_device(&mut d, "sim:damaged");
        command.plan_on(&mut s).unwrap()
    };
    let mut written = steps(&plan);
    written.sort();
    assert_eq!(
        written,
        ["bootloader 501", "system part 1 1502", "system part 2 1502"]
    );
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    let done = command.run(&mut d).unwrap().unwrap();
    assert!(done.mismatches.is_empty(), "{:?}", done.mismatches);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    for slot in [BOOTLOADER, PART1, PART2] {
        assert!(intact(&d, slot), "{slot}");
    }
}

#[test]
fn a_damaged_dependency_is_rewritten_in_its_own_version() {
    let mut d = device(6).release("1.5.0").running();
    damage(&mut d, PART2);
    d.reset(ResetReason::Button, None);
    // Another build of the app: a different file, the same dependency on part 2 ≥ 1502.
    let other_app = support::rebuilt(6, "1.5.0", APP, 7);
    let command = Command::new(&[("app.bin".into(), other_app)], None, Via::Dfu);
    let plan = {
        let mut s = Session::virtual_device(&mut d, "sim:damaged");
        command.plan_on(&mut s).unwrap()
    };
    assert_eq!(steps(&plan), ["system part 2 1502", "user part 1 7"]);
    assert!(
        plan.steps[0].reason.contains("fails its integrity check"),
        "{}",
        plan.steps[0].reason
    );
    let done = command.run(&mut d).unwrap().unwrap();
    assert!(done.mismatches.is_empty(), "{:?}", done.mismatches);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
}

#[test]
fn a_damaged_module_another_one_needs_newer_is_chosen_newer() {
    // Part 1 1502 is damaged; the app of 1.5.2 needs part 2 ≥ 1512, which needs part 1 ≥
    // 1512: the replacement first chosen (1502, its own version) is chosen again.
    let mut d = device(6).release("1.5.0").running();
    damage(&mut d, PART1);
    let command = Command::new(
        &[("app.bin".into(), release_app(6, "1.5.2"))],
        None,
        Via::Dfu,
    );
    let done = command.run(&mut d).unwrap().unwrap();
    assert!(done.mismatches.is_empty(), "{:?}", done.mismatches);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.system_version(), Some(1512));
}

#[test]
fn a_damaged_module_the_catalogue_lacks_is_named() {
    let mut d = device(6).release("1.5.0").running();
    damage(&mut d, PART2);
    let app = modflash::catalog::Candidate::from_bytes(
        modflash::catalog::Origin::File("app.bin".into()),
        support::rebuilt(6, "1.5.0", APP, 7),
    )
    .unwrap();
    let catalog = Catalog::default();
    let err = plan(&Request {
        twin: &d,
        targets: vec![app],
        catalog: &catalog,
        via: Via::Dfu,
        also: Vec::new(),
        alternative: None,
        force: Default::default(),
        factory: false,
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::Missing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("system part 2 version 1502 fails its integrity check"),
        "{text}"
    );
}

#[test]
fn with_everything_written_a_device_in_dfu_mode_is_reset_into_its_firmware() {
    let mut d = device(6).release("1.5.0").running();
    d.reset(ResetReason::Button, Some(3.0));
    assert_eq!(d.state.mode, Mode::Dfu);
    let command = Command::new(&[], Some("1.5.0"), Via::Dfu);
    let plan = {
        let mut s = Session::virtual_device(&mut d, "sim:dfu");
        command.plan_on(&mut s).unwrap()
    };
    assert!(plan.steps.is_empty());
    assert!(plan.leave_dfu);
    assert_eq!(plan.prediction.mode, Mode::App);
    let done = command.run(&mut d).unwrap().unwrap();
    assert!(done.mismatches.is_empty(), "{:?}", done.mismatches);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    // A running device with nothing to write is left alone.
    let plan = {
        let mut s = Session::virtual_device(&mut d, "sim:dfu");
        command.plan_on(&mut s).unwrap()
    };
    assert!(plan.steps.is_empty() && !plan.leave_dfu);
    assert!(command.run(&mut d).unwrap().is_none());
}
