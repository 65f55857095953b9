//! Power cuts at every 50th flash operation, during a DfuSe write of a system part and during
//! an OTA apply: the bootloader and the DCT are never damaged and the device always reaches
//! at least DFU mode when powered again.

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
