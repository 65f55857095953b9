//! Power cuts during `modflash flash`, for every update path (`support::update_paths`): at
//! a flash operation of the command's run the power goes; the run must not report success,
//! the bootloader and the DCT must survive (except inside an in-place bootloader copy, a window
//! Device OS has too), the device must come back in DFU mode, safe mode or running, and the
//! same command run again must finish with the app running and the modules of an
//! uninterrupted run. CI cuts at every `CI_STRIDE`-th operation and each of the last `CI_TAIL`;
//! `every_operation_of_every_path` (ignored: 42 000 cuts, about 25 minutes of CPU) cuts at
//! every one. Below them, the original lower-level checks: a DfuSe write and an OTA apply cut
//! every 50th operation.

mod support;

use support::{sweep_power_cuts, update_path, update_paths, Tally};

use modflash::progress::Quiet;
use modflash::transport::dfu::WriteCheck;
use modflash::transport::sim::SimLink;
use modflash::transport::DeviceLink;
use modflash_device::dct::{is_intact, DctLocation};
use modflash_device::{Device, Mode, ResetReason};
use modflash_module::release::platform_release;
use modflash_module::rules;
use modflash_module::synth::synthesize;
use modflash_module::{platform, ModuleFunction, ModuleRef};
use modflash_testkit::device::device;

/// CI cuts at every `CI_STRIDE`-th flash operation of a path…
const CI_STRIDE: u64 = 89;
/// …and at each of its last `CI_TAIL` (the resets after the last write, which apply what was
/// staged).
const CI_TAIL: u64 = 64;

/// Sweeps one path with CI's cut points; prints its line of the report.
fn ci_sweep(name: &str) -> Tally {
    let tally = sweep_power_cuts(&update_path(name), CI_STRIDE, CI_TAIL);
    eprintln!("{}", tally.line(name));
    assert_eq!(tally.false_successes, 0);
    tally
}

#[test]
fn photon_dfu_parts_and_app() {
    let t = ci_sweep("photon-dfu-parts-app");
    // A torn system part cannot run: the watchdog path ends in DFU mode.
    assert!(t.modes.contains_key("dfu"), "{:?}", t.modes);
}

#[test]
fn photon_serial_parts_and_app() {
    let t = ci_sweep("photon-serial-parts-app");
    // The OTA region holds the module until the bootloader's copy is done: the device
    // always comes back running.
    assert_eq!(
        t.modes.keys().copied().collect::<Vec<_>>(),
        ["app"],
        "{:?}",
        t.modes
    );
}

#[test]
fn photon_dfu_bootloader_through_the_ota_flag() {
    let t = ci_sweep("photon-dfu-bootloader-ota-flag");
    // CI's tail reaches the system's in-place copy of the bootloader: Device OS's window.
    assert!(!t.bricks.is_empty(), "the in-place copy was not reached");
}

#[test]
fn argon_dfu_bootloader_through_the_mbr() {
    ci_sweep("argon-dfu-bootloader-mbr");
}

#[test]
fn argon_serial_bootloader_through_the_mbr() {
    ci_sweep("argon-serial-bootloader-mbr");
}

#[test]
fn argon_dfu_radio_stack() {
    ci_sweep("argon-dfu-radio-stack");
}

#[test]
fn argon_serial_radio_stack() {
    ci_sweep("argon-serial-radio-stack");
}

#[test]
fn electron_dfu_three_parts() {
    ci_sweep("electron-dfu-three-parts");
}

#[test]
fn p2_dfu_system_part() {
    ci_sweep("p2-dfu-system-part");
}

#[test]
fn p2_serial_system_part() {
    ci_sweep("p2-serial-system-part");
}

/// The full sweep recorded in `docs/TESTING.md`:
/// `cargo test --release -p modflash --test powercut -- --ignored --nocapture`.
#[test]
#[ignore = "cuts at every flash operation of every path: about 25 minutes of CPU"]
fn every_operation_of_every_path() {
    let started = std::time::Instant::now();
    let mut cuts = 0;
    for path in update_paths() {
        let tally = sweep_power_cuts(&path, 1, 0);
        println!("{}", tally.line(path.name));
        assert_eq!(tally.cuts, tally.operations);
        cuts += tally.cuts;
    }
    println!("{cuts} cuts in {:.0?}", started.elapsed());
}

// ---- the original checks, one layer down ----------------------------------------------------

const STRIDE: u64 = 50;

fn system_part(release: &str, index: u8) -> Vec<u8> {
    let p = platform::platform(6).unwrap();
    let r = platform_release(p, release).unwrap();
    let m = r
        .modules_for(p)
        .find(|m| m.function == ModuleFunction::SystemPart && m.index == index)
        .unwrap();
    synthesize(p, &m)
}

/// Powers the device again and checks what must survive any cut.
fn check_survivor(mut d: Device, cut: u64, what: &str) -> Mode {
    d.power_on();
    let bootloader =
        rules::installed_version(&d.hal(), ModuleRef::new(ModuleFunction::Bootloader, 0));
    assert_eq!(
        bootloader,
        Some(501),
        "{what}, cut at op {cut}: bootloader damaged"
    );
    let boot_ok = d
        .system_info()
        .iter()
        .find(|f| {
            f.info
                .is_some_and(|i| i.function == ModuleFunction::Bootloader)
        })
        .is_some_and(|f| f.passed & modflash_device::hal::flags::INTEGRITY != 0);
    assert!(boot_ok, "{what}, cut at op {cut}: bootloader CRC fails");
    assert!(
        is_intact(d.flash(), &DctLocation::of(d.platform())),
        "{what}, cut at op {cut}: DCT lost"
    );
    let mode = d.state.mode;
    assert!(
        matches!(mode, Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Dfu),
        "{what}, cut at op {cut}: ended in {mode:?}: {:#?}",
        d.state.events
    );
    mode
}

#[test]
fn power_cuts_during_a_dfuse_write_of_a_system_part() {
    let part = system_part("1.5.2", 1);
    let mut base = device(6).release("1.5.0").running();
    base.reset(ResetReason::Button, Some(3.0));
    assert_eq!(base.state.mode, Mode::Dfu);
    // How many flash operations the whole write takes.
    let mut probe = base.clone();
    let before = probe.flash_stats().operations;
    SimLink::borrowed(&mut probe, "sim:probe")
        .dfu_write(0, 0x0802_0000, &part, &WriteCheck::EveryByte, &mut Quiet)
        .unwrap();
    let total = probe.flash_stats().operations - before;
    assert!(total > 50, "{total} operations");
    let mut modes = Vec::new();
    let mut cut = 1;
    while cut <= total {
        let mut d = base.clone();
        d.flash_mut().cut_power_after(cut);
        let result = SimLink::borrowed(&mut d, "sim:cut").dfu_write(
            0,
            0x0802_0000,
            &part,
            &WriteCheck::EveryByte,
            &mut Quiet,
        );
        assert!(result.is_err(), "cut at op {cut} went unnoticed");
        modes.push(check_survivor(d, cut, "DfuSe write"));
        cut += STRIDE;
    }
    // A torn system part cannot run: the watchdog path ends in DFU mode.
    assert!(modes.contains(&Mode::Dfu), "{modes:?}");
}

#[test]
fn power_cuts_during_an_ota_apply() {
    let part = system_part("1.5.2", 1);
    let mut staged = device(6).release("1.5.0").running();
    staged.ota_begin(part.len()).unwrap();
    staged.ota_write(0, &part).unwrap();
    staged.ota_finish().unwrap();
    // The bootloader copies the module at the next reset: count its operations.
    let mut probe = staged.clone();
    let before = probe.flash_stats().operations;
    probe.reset(ResetReason::Update, None);
    assert_eq!(probe.system_version(), Some(1512));
    let total = probe.flash_stats().operations - before;
    let mut cut = 1;
    let mut runs = 0;
    while cut <= total {
        let mut d = staged.clone();
        d.flash_mut().cut_power_after(cut);
        d.reset(ResetReason::Update, None);
        assert_eq!(d.state.mode, Mode::Off, "cut at op {cut}");
        let mode = check_survivor(d.clone(), cut, "OTA apply");
        // The pending slot is freed only after the copy, so the copy is redone and completes.
        let mut again = d;
        again.power_on();
        assert_eq!(
            again.system_version(),
            Some(1512),
            "cut at op {cut}: {mode:?}"
        );
        runs += 1;
        cut += STRIDE;
    }
    assert!(runs >= 2, "{runs} cut points over {total} operations");
}
