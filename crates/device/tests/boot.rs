//! Boot, validation and OTA scenarios on virtual devices (spec §5–§8).

use modflash_device::cause::{FactoryResetCause, InvalidUserPart, SafeModeCause, SlotContent};
use modflash_device::describe::describe;
use modflash_device::hal::flags;
use modflash_device::{
    Color, Device, DeviceError, DeviceEvent, Mode, OtaError, Pattern, ResetReason,
};
use modflash_module::{ModuleFunction, ModuleRef};
use modflash_testkit::device::device;
use modflash_testkit::fixture;

fn ota(d: &mut Device, bytes: &[u8]) -> Result<modflash_device::OtaOutcome, OtaError> {
    d.ota_begin(bytes.len())?;
    for (i, chunk) in bytes.chunks(512).enumerate() {
        d.ota_write(i * 512, chunk)?;
    }
    d.ota_finish()
}

#[test]
fn provisioned_release_runs_its_app() {
    let d = device(6).release("1.5.0").powered_on();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(
        (d.state.led.color, d.state.led.pattern),
        (Color::Cyan, Pattern::Breathing)
    );
    assert_eq!(d.system_version(), Some(1502));
}

#[test]
fn core_image_in_the_user_slot_restores_the_factory_app() {
    let mut d = device(6).release("1.5.0").powered_on();
    d.install_factory_app(&fixture("photon_tinker.bin"))
        .unwrap();
    d.install_user_app(&fixture("core_tinker.bin")).unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    let events = &d.state.events;
    let invalid = events
        .iter()
        .find(|e| {
            matches!(
                e,
                DeviceEvent::FactoryResetNeeded(FactoryResetCause::AppHeader(InvalidUserPart {
                    holds: Some(SlotContent { platform_id: 0, .. }),
                    ..
                }))
            )
        })
        .unwrap_or_else(|| panic!("the user part header is invalid: {events:#?}"));
    assert!(
        invalid.to_string().contains("Core"),
        "the log names the Core image: {invalid}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DeviceEvent::FactoryAppRestored { .. })),
        "{events:#?}"
    );
    // Tinker (the factory app, photon_tinker.bin v2) now runs from the user slot.
    let user = d
        .system_info()
        .into_iter()
        .find(|f| f.bounds.start == 0x080A_0000)
        .unwrap();
    assert_eq!(user.info.unwrap().version, 2);
}

#[test]
fn app_for_newer_system_firmware_gives_safe_mode() {
    let mut d = device(6).release("0.5.2").powered_on();
    d.install_user_app(&fixture("photon_doctor.bin")).unwrap(); // needs system part 2 >= 108
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::SafeMode, "{:#?}", d.state.events);
    assert_eq!(
        (d.state.led.color, d.state.led.pattern),
        (Color::Magenta, Pattern::Breathing)
    );
    let Some(DeviceEvent::SafeMode(SafeModeCause::Unmet(unmet))) = d.state.events.last() else {
        panic!("safe mode for a dependency: {:#?}", d.state.events);
    };
    assert_eq!(
        unmet.to_string(),
        "user part 1 needs system part 2 \u{2265} 108, installed 17"
    );
    let json: serde_json::Value = serde_json::from_str(&describe(&d)).unwrap();
    let user = json["m"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["f"] == "u" && m["l"] == "m")
        .unwrap();
    assert_eq!(user["vc"], 30);
    assert_eq!(
        user["vv"].as_u64().unwrap() & 4,
        0,
        "vv lacks the dependency bit"
    );
    assert_eq!(user["vv"], 26);
}

#[test]
fn ota_part2_of_a_newer_release_is_refused_on_052() {
    let mut d = device(6).release("0.5.2").powered_on();
    let before = d.snapshot().1;
    let part2 = fixture("photon-system-part2@1.5.0.bin");
    let err = ota(&mut d, &part2).unwrap_err();
    assert_eq!(err.code(), -1340);
    assert!(
        err.to_string()
            .contains("system part 2 needs system part 1 \u{2265} 1502, installed 17"),
        "{err}"
    );
    d.reset(ResetReason::Update, None);
    assert_eq!(d.state.mode, Mode::App);
    // Only the OTA region (sector 10) changed; every module is as it was.
    let after = d.snapshot().1;
    // The 256 KB OTA region overlaps the factory sector (spec §4.2): both may change.
    let ota_region = 0xC0000..0x100000;
    let dct = 0x4000..0xC000;
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if !ota_region.contains(&i) && !dct.contains(&i) {
            assert_eq!(a, b, "byte {i:#x} changed");
        }
    }
}

#[test]
fn ota_update_in_the_right_order_reaches_the_new_release() {
    let mut d = device(6).release("0.7.0").powered_on();
    for (name, expect) in [
        (
            "photon-bootloader@1.5.0+lto.bin",
            modflash_device::OtaOutcome::Applied,
        ),
        (
            "photon-system-part1@1.5.0.bin",
            modflash_device::OtaOutcome::PendingRestart,
        ),
        (
            "photon-system-part2@1.5.0.bin",
            modflash_device::OtaOutcome::PendingRestart,
        ),
    ] {
        assert_eq!(
            ota(&mut d, &fixture(name)),
            Ok(expect),
            "{name}: {:#?}",
            d.state.events
        );
        d.reset(ResetReason::Update, None);
        assert!(matches!(d.state.mode, Mode::App | Mode::SafeMode), "{name}");
    }
    // The 0.7.0 Tinker depends on part 2 >= 207: still satisfied.
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.system_version(), Some(1502));
}

#[test]
fn published_describe_json_is_reproduced() {
    // Spec §8.1: a Photon of the 0.4.6 era: bootloader 4, system parts 7, user part v3.
    let published = r#"{"p":6,"m":[{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":4,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":7,"d":[]},{"s":262144,"l":"m","vc":30,"vv":30,"f":"s","n":"2","v":7,"d":[{"f":"s","n":"1","v":7,"_":""}]},{"s":131072,"l":"m","vc":30,"vv":30,"u":"5CC350CE567187492F6FA800655CECF42DCFE1236EC7E23CDB17ECBC1774EDAF","f":"u","n":"1","v":3,"d":[{"f":"s","n":"2","v":7,"_":""}]},{"s":131072,"l":"f","vc":30,"vv":0,"d":[]}]}"#;
    let d = device(6).release("0.4.6").powered_on();
    let ours = describe(&d);
    // We do not have that user binary: compare everything but its hash.
    let hash_at = published.find("\"u\":\"").unwrap() + 5;
    assert_eq!(ours[..hash_at], published[..hash_at]);
    assert_eq!(ours[hash_at + 64..], published[hash_at + 64..]);

    // With photon_tinker.bin (the second published copy: "u":"2BA4E71E…943A","v":2, s2>=1).
    let mut d = device(6).release("0.4.6").powered_on();
    d.install_user_app(&fixture("photon_tinker.bin")).unwrap();
    d.reset(ResetReason::Button, None);
    let ours = describe(&d);
    assert!(ours.contains(r#""u":"2BA4E71E"#), "{ours}");
    assert!(
        ours.contains(r#"943A","f":"u","n":"1","v":2,"d":[{"f":"s","n":"2","v":1,"_":""}]}"#),
        "{ours}"
    );
}

#[test]
fn modern_describe_lists_both_dependencies() {
    let d = device(6).release("2.2.0").powered_on();
    let s = describe(&d);
    assert!(
        s.contains(r#"{"s":16384,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":1006,"d":[]}"#),
        "{s}"
    );
    assert!(
        s.contains(r#""f":"s","n":"1","v":2202,"d":[{"f":"s","n":"2","v":207}]}"#),
        "{s}"
    );
    assert!(
        s.contains(
            r#""n":"2","v":2202,"d":[{"f":"s","n":"1","v":2202},{"f":"b","n":"0","v":1003}]}"#
        ),
        "{s}"
    );
    assert!(
        !s.contains(r#""l":"f""#),
        "no factory image: not listed in 2.x"
    );
}

#[test]
fn button_holds_select_modes() {
    let mut d = device(6).release("1.5.0").powered_on();
    d.reset(ResetReason::Button, Some(3.2));
    assert_eq!(d.state.mode, Mode::Dfu);
    assert_eq!(
        (d.state.led.color, d.state.led.pattern),
        (Color::Yellow, Pattern::Blinking)
    );
    d.reset(ResetReason::Button, Some(1.5));
    assert_eq!(d.state.mode, Mode::SafeMode);
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::App);
}

#[test]
fn electron_052_updates_its_bootloader_from_the_system_firmware() {
    let mut d = device(10).release("0.5.2").powered_on();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(d.layout().name, "electron-0.5");
    // The 1.5.0 system parts only: the bootloader comes from the system firmware itself.
    for name in [
        "electron-system-part1@1.5.0.bin",
        "electron-system-part2@1.5.0.bin",
        "electron-system-part3@1.5.0.bin",
    ] {
        d.install_module(&fixture(name)).unwrap();
    }
    d.install_user_app(&fixture("electron_tinker.bin")).unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.layout().name, "electron");
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert!(d
        .state
        .events
        .contains(&DeviceEvent::BootloaderUpdated { from: 7, to: 501 }));
}

#[test]
fn argon_release_boots() {
    let d = device(12).release("1.5.0").powered_on();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    let s = describe(&d);
    assert!(s.contains(r#""f":"a","n":"0","v":202"#), "{s}");
}

#[test]
fn corrupt_system_part_ends_in_dfu_mode() {
    let mut d = device(6).release("1.5.0").powered_on();
    d.write_raw(modflash_device::Space::Internal, 0x0803_0000, &[0u8; 16])
        .unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::Dfu, "{:#?}", d.state.events);
}

#[test]
fn corrupt_system_part_2_gives_safe_mode() {
    // Spec §6.2: HAL_Core_Validate_Modules fails on part 2's CRC -> safe mode (the bootloader
    // only needs part 1, which it jumps into without a CRC check).
    let mut d = device(6).release("1.5.0").powered_on();
    d.flash_mut()
        .program(modflash_device::Space::Internal, 0x0807_0000, &[0x00])
        .unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::SafeMode, "{:#?}", d.state.events);
    assert!(
        matches!(
            d.state.events.last(),
            Some(DeviceEvent::SafeMode(SafeModeCause::ModuleFailed { module, checks }))
                if *module == ModuleRef::new(ModuleFunction::SystemPart, 2)
                    && checks & flags::INTEGRITY != 0
        ),
        "{:#?}",
        d.state.events
    );
}

#[test]
fn provisioning_failures_say_what_failed() {
    let mut d = device(6).powered_off();
    let err = d.install_release("9.9.9", true).unwrap_err();
    assert!(
        matches!(&err, DeviceError::UnknownRelease { release, .. } if release == "9.9.9"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("no module table for Device OS 9.9.9 on the Photon; known: 0.4.6, "),
        "{err}"
    );
    assert!(matches!(
        d.install_module(&[0xA5]),
        Err(DeviceError::NotAModule(_))
    ));
    // RTL872x platforms (the P2 here) have no factory-reset slot.
    let mut p2 = device(32).powered_off();
    let err = p2
        .install_factory_app(&fixture("photon_tinker.bin"))
        .unwrap_err();
    assert_eq!(err, DeviceError::NoFactorySlot("P2"));
    assert_eq!(err.to_string(), "the P2 has no factory-reset slot");
}
