//! `UsbLink`, the code that drives a real USB device, driving virtual devices on a USB bus of
//! their own in-process (`SimBus`, no serial port, as on the emulated bus): the module table
//! in normal mode without a serial port, firmware updates over control requests validated
//! per step with refusals in the device's words, and what `flash` costs from DFU mode next
//! to a plain DFU download (reading only headers and suffixes, the final state from the
//! device's own module table).

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::direct::{dfu_download, Download};
use modflash::exec::{execute, Options, Task, TaskAction};
use modflash::inventory::Inventory;
use modflash::plan::{flash, plan, Action, FlashOptions, Flashed, Force, Request, Via};
use modflash::progress::{Cancel, Evidence, Quiet};
use modflash::transport::sim::SimBus;
use modflash::transport::usb::UsbLink;
use modflash::{DeviceRef, Error, Session};
use modflash_device::{Device, DeviceEvent, Mode, ResetReason};
use modflash_module::{platform, ModuleFunction};
use modflash_testkit::device::{device, release_app};
use modflash_testkit::fixtures::fixture;

/// A session on `d` through `UsbLink` over the device's own bus, without a serial port.
fn usb_session(d: &mut Device) -> Session<'_> {
    let link = UsbLink::on_bus(SimBus::new(d).without_serial_port(), &DeviceRef::Usb).unwrap();
    Session::from_link(Box::new(link))
}

fn releases(platform_id: u16) -> Catalog {
    let mut c = Catalog::default();
    c.add_release_table(platform::platform(platform_id).unwrap());
    c
}

fn file(name: &str, bytes: Vec<u8>) -> Candidate {
    Candidate::from_bytes(Origin::File(name.into()), bytes).unwrap()
}

/// Plans `targets` for the device `session` reads, allowing `via` (and DFU where it is
/// cheaper when `mix`), and flashes it without a backup unless `backup`.
fn plan_and_flash(
    session: &mut Session<'_>,
    targets: Vec<Candidate>,
    via: Via,
    also: Vec<Via>,
    backup: bool,
) -> Result<(modflash::plan::Plan, Flashed), Error> {
    let twin = session.twin(&mut Quiet)?;
    let catalog = releases(twin.platform().id);
    let request = Request {
        twin: &twin,
        targets,
        catalog: &catalog,
        via,
        also,
        alternative: None,
        force: Force::default(),
        factory: false,
    };
    let p = plan(&request)?;
    let flashed = flash(
        session,
        &p,
        FlashOptions { backup },
        &mut Quiet,
        &Cancel::new(),
    )?;
    Ok((p, flashed))
}

#[test]
fn normal_mode_inventory_is_the_module_table_without_a_serial_port() {
    for (platform_id, release, new_format) in [
        (6u16, "1.5.0", false),
        (12, "2.2.0", false),
        (32, "6.2.0", true),
    ] {
        let mut d = device(platform_id).release(release).running();
        let mut expected = Inventory::from_device(&d);
        expected.modules.retain(|m| new_format || m.is_main());
        for m in &mut expected.modules {
            m.start_address = None;
            if !new_format {
                m.sha256 = None;
            }
        }
        let resets = d.state.events.len();
        let got = usb_session(&mut d).inventory(&mut Quiet).unwrap();
        assert_eq!(got, expected, "platform {platform_id} {release}");
        // Read in normal mode: no switch to DFU mode or any other mode.
        assert_eq!(d.state.mode, Mode::App);
        assert!(
            !d.state.events[resets..].iter().any(|e| matches!(
                e,
                DeviceEvent::DfuRequested
                    | DeviceEvent::DfuBaud
                    | DeviceEvent::DfuLeave
                    | DeviceEvent::UsbModeChange(_)
            )),
            "{:?}",
            &d.state.events[resets..]
        );
    }
}

#[test]
fn via_usb_over_the_bus_installs_system_parts_and_an_app_validated_per_step() {
    let mut d = device(6).release("1.5.0").running();
    let app = file("app-2.3.1.bin", release_app(6, "2.3.1"));
    let (p, flashed) =
        plan_and_flash(&mut usb_session(&mut d), vec![app], Via::Usb, vec![], false).unwrap();
    assert!(p.steps.iter().all(|s| s.action == Action::Usb), "{p:?}");
    assert!(p
        .steps
        .iter()
        .any(|s| s.module.info.function == ModuleFunction::SystemPart));
    // As predicted, each module validated by the device as it arrived; a module table
    // before 5.6.0 carries no hashes, so without a serial port nothing proves the bytes and
    // the result says how to prove them.
    assert!(flashed.mismatches.is_empty(), "{:?}", flashed.mismatches);
    assert!(flashed
        .proofs
        .iter()
        .all(|p| p.evidence == Evidence::DeviceAccepted && p.via == Via::Usb));
    let unproven = flashed.require_proof(&p).unwrap_err();
    assert!(matches!(unproven, Error::Unverified { .. }), "{unproven}");
    assert!(
        unproven.help_text().unwrap().contains("dfu"),
        "{unproven:?}"
    );
    assert_eq!(d.state.mode, Mode::App);
    let validated = d
        .state
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                DeviceEvent::UpdateValidated { .. } | DeviceEvent::BootloaderInstalled { .. }
            )
        })
        .count();
    assert_eq!(validated, p.steps.len());
}

#[test]
fn a_refusal_over_the_bus_is_in_the_device_words() {
    // System part 2 of 2.3.1 onto a 1.5.0 Photon: it needs system part 1 of 2.3.1 first.
    let mut d = device(6).release("1.5.0").running();
    let system =
        modflash_module::release::platform_release(platform::platform(6).unwrap(), "2.3.1")
            .unwrap()
            .system_version;
    let part2 = releases(6)
        .for_platform(6)
        .find(|c| {
            c.slot() == modflash_module::ModuleRef::new(ModuleFunction::SystemPart, 2)
                && c.info.version == system
        })
        .cloned()
        .unwrap();
    let before = modflash_device::describe::describe(&d);
    let tasks = [Task {
        label: "writing system part 2 of 2.3.1".into(),
        action: TaskAction::Usb {
            name: "system-part2.bin".into(),
            data: &part2.bytes,
        },
    }];
    let options = Options {
        verify: true,
        leave_at: None,
    };
    let err = execute(
        &mut usb_session(&mut d),
        &tasks,
        options,
        &mut Quiet,
        &Cancel::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the device refused system-part2.bin: dependency check failed (-1340)"
    );
    assert!(matches!(
        err,
        Error::Refused {
            code: Some(-1340),
            ..
        }
    ));
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(modflash_device::describe::describe(&d), before);
}

/// (control transfers, modelled µs) that `f` costs the device.
fn cost(d: &mut Device, f: impl FnOnce(&mut Device)) -> (u64, u64) {
    let (t, us) = (d.state.control_transfers, d.flash_stats().modelled_us);
    f(d);
    (
        d.state.control_transfers - t,
        d.flash_stats().modelled_us - us,
    )
}

fn photon_in_dfu_mode() -> Device {
    let mut d = device(6).release("1.5.0").running();
    d.reset(ResetReason::Button, Some(3.0));
    assert!(d.in_dfu_mode());
    d
}

#[test]
fn flash_from_dfu_mode_costs_little_more_than_a_dfu_download() {
    // bench/dfu.sh's case in-process: one app onto a 1.5.0 Photon held in DFU mode.
    let app = fixture("photon_tinker.bin");
    let mut d = photon_in_dfu_mode();
    let download = cost(&mut d, |d| {
        let how = Download {
            verify: true,
            leave: true,
            ..Download::default()
        };
        dfu_download(&mut usb_session(d), &app, how, &mut Quiet, &Cancel::new()).unwrap();
    });
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("MODFLASH_HOME", home.path());
    let mut d = photon_in_dfu_mode();
    let user = modflash_module::ModuleRef::new(ModuleFunction::UserPart, 1);
    let replaced = modflash::backup::module_image(&d, user).unwrap();
    let mut flashed = None;
    let flashing = cost(&mut d, |d| {
        let target = file("app.bin", app.clone());
        let (_, f) = plan_and_flash(
            &mut usb_session(d),
            vec![target],
            Via::Dfu,
            vec![Via::Usb],
            true,
        )
        .unwrap();
        flashed = Some(f);
    });
    let flashed = flashed.unwrap();
    // The app's header and suffix read back, its CRC checked by the device afterwards and
    // reported in its module table: the final state from the device.
    assert!(
        flashed.verified(),
        "{:?} {:?}",
        flashed.mismatches,
        flashed.proofs
    );
    assert!(flashed
        .proofs
        .iter()
        .all(|p| p.evidence == Evidence::DeviceCrc));
    // What it replaced was read in full for the backup.
    let backup = flashed.backup.as_ref().unwrap();
    let [kept] = &backup.manifest.modules[..] else {
        panic!("{:?}", backup.manifest);
    };
    let kept = std::fs::read(backup.dir.join(kept.file.as_ref().unwrap())).unwrap();
    assert_eq!(kept, replaced);
    assert_eq!(d.state.mode, Mode::App);
    // bench/dfu.sh: dfu-util takes 21 transfers and the same modelled time as the download.
    assert!(
        flashing.0 <= 42,
        "{flashing:?} vs the download's {download:?}"
    );
    assert!(
        flashing.1 * 10 <= download.1 * 11,
        "{flashing:?} vs the download's {download:?}"
    );
}

/// System part 1 of 2.3.1 for an Argon, from the release table.
fn argon_system_part() -> Candidate {
    let system =
        modflash_module::release::platform_release(platform::platform(12).unwrap(), "2.3.1")
            .unwrap()
            .system_version;
    releases(12)
        .for_platform(12)
        .find(|c| {
            c.slot() == modflash_module::ModuleRef::new(ModuleFunction::SystemPart, 1)
                && c.info.version == system
        })
        .cloned()
        .unwrap()
}

#[test]
fn a_system_part_over_dfu_is_proven_by_its_header_suffix_and_the_device_crc_check() {
    // bench/particle_cli.sh's system part: an Argon 2.2.0 in normal mode, system part 1 of
    // 2.3.1 through DFU mode. The device reports its own CRC check over GetModuleInfo
    // afterwards, so only the header and suffix are read back, not its 117 blocks.
    let part = argon_system_part();
    let blocks = part.bytes.len().div_ceil(4096) as u64;
    let mut d = device(12).release("2.2.0").running();
    let mut flashed = None;
    let spent = cost(&mut d, |d| {
        let (p, f) =
            plan_and_flash(&mut usb_session(d), vec![part], Via::Dfu, vec![], false).unwrap();
        assert!(p.steps.iter().all(|s| s.via() == Via::Dfu), "{p:?}");
        flashed = Some(f);
    });
    let flashed = flashed.unwrap();
    assert!(
        flashed.verified(),
        "{:?} {:?}",
        flashed.mismatches,
        flashed.proofs
    );
    assert!(flashed
        .proofs
        .iter()
        .all(|p| p.evidence == Evidence::DeviceCrc && p.via == Via::Dfu));
    assert_eq!(d.state.mode, Mode::App);
    // bench/particle_cli.sh: particle-cli needs 1 120 transfers and 17 862.7 ms modelled.
    assert!(
        spent.0 <= 1_120 && spent.1 <= 17_862_700,
        "{spent:?} ({blocks} blocks)"
    );
    println!("system part over DFU: {spent:?} ({blocks} blocks)");
}

#[test]
fn a_corrupted_dfu_write_fails_the_device_crc_check_and_is_not_verified() {
    // A byte that programs wrong in the middle of the module (between the header and the
    // suffix, which are read back): only the device's CRC check can tell.
    // The system part: the bootloader finds it damaged and stays in DFU mode. The app: the
    // system runs and reports the app's failed CRC check in its module table.
    for (platform_id, module, words) in [
        (12u16, argon_system_part(), "came back in DFU mode"),
        (
            12,
            file("app.bin", release_app(12, "1.5.0")),
            "user part 1 is version 6 (failing a check)",
        ),
    ] {
        assert!(module.bytes.len() > 2 * 4096, "{}", module.bytes.len());
        let mut d = device(platform_id).release("2.2.0").running();
        let middle = part_middle(&module);
        d.flash_mut()
            .corrupt_program_at(modflash_device::flash::Space::Internal, middle);
        let (p, flashed) = plan_and_flash(
            &mut usb_session(&mut d),
            vec![module],
            Via::Dfu,
            vec![],
            false,
        )
        .unwrap();
        assert!(!flashed.verified(), "{platform_id}: {:?}", flashed.proofs);
        assert!(
            flashed.mismatches.iter().any(|m| m.contains(words)),
            "{:?}",
            flashed.mismatches
        );
        assert!(
            !flashed.mismatches.is_empty(),
            "{platform_id}: {:?}",
            flashed.after
        );
        assert!(flashed
            .proofs
            .iter()
            .all(|p| p.evidence == Evidence::HeaderAndSuffix && !p.evidence.proves()));
        let unproven = flashed.require_proof(&p).unwrap_err().to_string();
        assert!(
            unproven.contains("the device did not report its own CRC check"),
            "{unproven}"
        );
        // `flash` reports the mismatch: a failed check, exit 1.
        let err = Error::NotAsPredicted {
            mismatches: flashed.mismatches.clone(),
            help: String::new(),
        };
        assert!(err.is_check_failure());
    }
    // A byte that programs wrong in the suffix: the read-back catches it at once.
    let module = argon_system_part();
    let mut d = device(12).release("2.2.0").running();
    let crc = module.info.start_address + module.bytes.len() as u32 - 2;
    d.flash_mut()
        .corrupt_program_at(modflash_device::flash::Space::Internal, crc);
    let err = plan_and_flash(
        &mut usb_session(&mut d),
        vec![module],
        Via::Dfu,
        vec![],
        false,
    )
    .unwrap_err();
    assert!(err.is_check_failure(), "{err:?}");
    assert!(err.to_string().contains("verify failed"), "{err}");
}

/// An address in the middle of `module` as installed, away from its header and suffix.
fn part_middle(module: &Candidate) -> u32 {
    let len = module.bytes.len() as u32;
    module.info.start_address + len / 2
}
