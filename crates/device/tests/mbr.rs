//! Bootloader updates and power cuts (spec §6.3, §7.1). On nRF52840 with an MBR-capable
//! bootloader (≥ 1001) an update goes through the Nordic MBR: staged over the application
//! (whose pages are saved and copied back), recorded, copied, so a cut at any flash operation
//! leaves a working bootloader and the application back. Where the system firmware copies a
//! bootloader in place (Gen2, older nRF52840 bootloaders), a cut inside that copy leaves none,
//! as on a real device.

use modflash_device::hal::flags;
use modflash_device::{Device, DeviceEvent, Mode, OtaOutcome, ResetReason, Space};
use modflash_module::release::platform_release;
use modflash_module::synth::synthesize;
use modflash_module::{rules, ModuleFunction, ModuleRef};
use modflash_testkit::device::device;

const BOOTLOADER: ModuleRef = ModuleRef::new(ModuleFunction::Bootloader, 0);

fn bootloader_of(d: &Device, release: &str) -> Vec<u8> {
    let p = d.platform();
    let m = platform_release(p, release)
        .unwrap()
        .modules_for(p)
        .find(|m| m.function == ModuleFunction::Bootloader && m.index == 0)
        .unwrap();
    synthesize(p, &m)
}

/// Receives `bytes` over OTA (not reset yet).
fn receive(d: &mut Device, bytes: &[u8]) -> OtaOutcome {
    d.ota_begin(bytes.len()).unwrap();
    for (i, chunk) in bytes.chunks(512).enumerate() {
        d.ota_write(i * 512, chunk).unwrap();
    }
    d.ota_finish().unwrap()
}

/// The installed bootloader's version when it passes its CRC check.
fn working_bootloader(d: &Device) -> Option<u16> {
    d.system_info()
        .into_iter()
        .find(|f| f.info.is_some_and(|i| i.slot() == BOOTLOADER))
        .filter(|f| f.passed & flags::INTEGRITY != 0)
        .and_then(|f| f.info)
        .map(|i| i.version)
}

fn app_region(d: &Device) -> Vec<u8> {
    d.flash()
        .read(Space::Internal, 0xD4000, 0x20000)
        .unwrap()
        .to_vec()
}

#[test]
fn an_argon_bootloader_goes_through_the_mbr() {
    let mut d = device(12).release("2.3.1").running();
    assert_eq!(
        rules::bootloader_mbr_stage(&d.hal(), d.platform(), d.layout()),
        Some(0xD4000)
    );
    let app = app_region(&d);
    let image = bootloader_of(&d, "3.1.0");
    assert_eq!(receive(&mut d, &image), OtaOutcome::PendingRestart);
    assert_eq!(working_bootloader(&d), Some(1006), "nothing copied yet");
    d.reset(ResetReason::Update, None);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(working_bootloader(&d), Some(1100));
    assert_eq!(app_region(&d), app, "the application pages are back");
    let events = &d.state.events;
    let at = |wanted: &dyn Fn(&DeviceEvent) -> bool| events.iter().position(wanted);
    let staged = at(&|e| {
        matches!(
            e,
            DeviceEvent::BootloaderStaged {
                version: 1100,
                address: 0xD4000
            }
        )
    });
    let copied = at(&|e| {
        matches!(
            e,
            DeviceEvent::MbrBootloaderCopied {
                version: 1100,
                resumed: false
            }
        )
    });
    let restored = at(&|e| {
        matches!(
            e,
            DeviceEvent::BackupRestored {
                address: 0xD4000,
                ..
            }
        )
    });
    assert!(
        staged < copied && copied < restored && staged.is_some(),
        "{events:#?}"
    );
}

#[test]
fn a_power_cut_anywhere_in_an_mbr_update_leaves_a_working_bootloader_and_the_app() {
    let mut staged = device(12).release("2.3.1").running();
    let app = app_region(&staged);
    let image = bootloader_of(&staged, "3.1.0");
    receive(&mut staged, &image);
    let mut probe = staged.clone();
    let before = probe.flash_stats().operations;
    probe.reset(ResetReason::Update, None);
    let total = probe.flash_stats().operations - before;
    assert!(total > 100, "{total} operations");
    let (mut updated, mut resumed) = (0, 0);
    for cut in 1..=total {
        let mut d = staged.clone();
        d.flash_mut().cut_power_after(cut);
        d.reset(ResetReason::Update, None);
        assert_eq!(d.state.mode, Mode::Off, "cut at operation {cut}");
        d.power_on();
        let version = working_bootloader(&d);
        assert!(
            matches!(version, Some(1006 | 1100)),
            "cut at operation {cut}: bootloader {version:?}: {:#?}",
            d.state.events
        );
        assert_eq!(
            app_region(&d),
            app,
            "cut at operation {cut}: application lost"
        );
        assert_eq!(
            d.state.mode,
            Mode::App,
            "cut at operation {cut}: {:#?}",
            d.state.events
        );
        updated += usize::from(version == Some(1100));
        resumed += usize::from(
            d.state
                .events
                .iter()
                .any(|e| matches!(e, DeviceEvent::MbrBootloaderCopied { resumed: true, .. })),
        );
    }
    // Cuts before the MBR's record lose the update (the system took the flag or slot
    // already; running the update again redoes it); from the record on, the MBR finishes it.
    assert!(resumed > 100, "{resumed} copies finished after a cut");
    assert!(updated >= resumed, "{updated} updated, {resumed} resumed");
}

#[test]
fn an_in_place_bootloader_copy_has_a_window_that_bricks() {
    // The Photon's system firmware copies a bootloader over sector 0 at once; so does an
    // Argon whose bootloader predates the MBR path. A cut in that copy leaves no bootloader.
    for (platform_id, from, to) in [(6u16, "1.5.0", "1.5.2"), (12, "1.5.0", "1.5.2")] {
        let start = device(platform_id).release(from).running();
        assert_eq!(
            rules::bootloader_mbr_stage(&start.hal(), start.platform(), start.layout()),
            None
        );
        let image = bootloader_of(&start, to);
        let mut probe = start.clone();
        probe.ota_begin(image.len()).unwrap();
        for (i, chunk) in image.chunks(512).enumerate() {
            probe.ota_write(i * 512, chunk).unwrap();
        }
        let received = probe.clone();
        let before = probe.flash_stats().operations;
        assert_eq!(probe.ota_finish().unwrap(), OtaOutcome::Applied);
        let total = probe.flash_stats().operations - before;
        let mut bricked = Vec::new();
        for cut in 1..=total {
            let mut d = received.clone();
            d.flash_mut().cut_power_after(cut);
            assert!(d.ota_finish().is_err(), "cut at operation {cut}");
            d.power_on();
            if working_bootloader(&d).is_none() {
                bricked.push(cut);
            }
        }
        // The validated update's flash operations are the copy (its erases and page
        // programs): a cut at any of them leaves a torn bootloader.
        assert!(total > 40, "platform {platform_id}: {total} operations");
        assert_eq!(
            bricked,
            (1..=total).collect::<Vec<_>>(),
            "platform {platform_id}"
        );
    }
}
