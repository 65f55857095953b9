//! Device events: each prints the line the event log held before events were typed, and the
//! saved log reads back typed, old logs and unknown events as their lines.

use modflash_device::cause::{
    CopyRefusal, Crash, CrashCause, FactoryResetCause, InvalidUserPart, SafeModeCause, SlotContent,
    SystemFault,
};
use modflash_device::event::{ButtonHold, DeviceEvent, RefusedOperation};
use modflash_device::hal::{flags, HeaderFault};
use modflash_device::wifi::{WifiClearCause, WifiRefusal};
use modflash_device::{DeviceState, FlashError, OtaError, Space};
use modflash_module::rules::{OtaRefusal, Unmet};
use modflash_module::{Dependency, ModuleFunction, ModuleRef};
use modflash_testkit::device::device;

fn part(function: ModuleFunction, index: u8) -> ModuleRef {
    ModuleRef::new(function, index)
}

fn unmet() -> Unmet {
    Unmet {
        module: part(ModuleFunction::UserPart, 1),
        required: Dependency {
            function: ModuleFunction::SystemPart,
            index: 2,
            version: 108,
        },
        installed: Some(17),
    }
}

/// One event of every kind, each with the line the string log held before events were
/// typed: `sim show`, `doctor` and saved logs depend on these texts.
fn every_event() -> Vec<(DeviceEvent, &'static str)> {
    use DeviceEvent as E;
    let system_part_2 = part(ModuleFunction::SystemPart, 2);
    let invalid = InvalidUserPart {
        fault: HeaderFault::Start {
            found: 0x0800_0000,
            expected: 0x080A_0000,
        },
        holds: Some(SlotContent {
            platform_id: 0,
            function: ModuleFunction::MonoFirmware,
        }),
    };
    vec![
        (E::PowerOn, "power on"),
        (E::PowerLost, "power lost"),
        (
            E::FlashFailed(FlashError::OutOfBounds {
                space: Space::External,
                address: 0x10,
                len: 4,
            }),
            "flash error: 4 bytes at 0x00000010 are outside the external flash; entering DFU mode",
        ),
        (E::ResetLoop, "the device keeps resetting (hold SETUP for 3 s to enter DFU mode)"),
        (E::DfuRequested, "bootloader: DFU mode requested"),
        (E::WatchdogFactoryReset, "bootloader: second failed start, trying a factory reset"),
        (E::WatchdogDfu, "bootloader: third failed start, entering DFU mode"),
        (
            E::ButtonHeld(ButtonHold::SettingsReset),
            "bootloader: button held 10 s: settings reset (blinking white), then factory reset",
        ),
        (
            E::ButtonHeld(ButtonHold::FactoryReset),
            "bootloader: button held 6.5 s: factory reset (blinking green fast)",
        ),
        (E::ButtonHeld(ButtonHold::Dfu), "bootloader: button held 3 s: DFU mode (blinking yellow)"),
        (E::ButtonHeld(ButtonHold::SafeMode), "bootloader: button held 1 s: safe mode requested"),
        (
            E::NoFactoryResetImage,
            "bootloader: factory reset failed: this platform has no factory-reset image",
        ),
        (
            E::FactoryResetFailed(CopyRefusal::Function {
                found: ModuleFunction::MonoFirmware,
                expected: ModuleFunction::UserPart,
            }),
            "bootloader: factory reset failed: it is a monolithic firmware, the slot expects a user part",
        ),
        (
            E::FactoryAppRestored { version: 2 },
            "bootloader: blinking green fast: restored the factory app (user part version 2)",
        ),
        (
            E::PendingUpdateInstalled {
                module: system_part_2,
                version: 1502,
                address: 0x0806_0000,
            },
            "bootloader: blinking magenta fast: installed system part 2 version 1502 at 0x08060000",
        ),
        (
            E::PendingUpdateRefused(CopyRefusal::Crc),
            "bootloader: pending update refused: its CRC does not match",
        ),
        (
            E::PendingUpdateRefused(CopyRefusal::BadHeader {
                function: ModuleFunction::SystemPart,
                source: 0x080C_0000,
            }),
            "bootloader: pending update refused: the system part header at 0x080c0000 is invalid or longer than the slot",
        ),
        (
            E::BackupRestored {
                address: 0xD4000,
                length: 49152,
            },
            "bootloader: blinking magenta fast: copied the 49152 saved bytes back to 0x000d4000",
        ),
        (
            E::BootloaderStaged {
                version: 1100,
                address: 0xD4000,
            },
            "bootloader: blinking magenta fast: staged bootloader version 1100 at 0x000d4000 (the pages it covers saved) for the MBR to copy",
        ),
        (
            E::NoValidSystem(SystemFault::ForeignHeader {
                address: 0x0802_0000,
                module: part(ModuleFunction::SystemPart, 1),
            }),
            "bootloader: solid red: no valid system firmware (the header at 0x08020000 is not a system part 1 for this device); entering DFU mode",
        ),
        (E::DfuLeave, "bootloader: DFU leave request: resetting into the firmware"),
        (E::DfuReadUnprotect, "bootloader: DFU read unprotect: flash erased, resetting"),
        (
            E::DfuRefused {
                operation: RefusedOperation::Write {
                    len: 16,
                    address: 0x0800_0000,
                },
                alt: 0,
            },
            "bootloader: DFU refused the write of 16 bytes at 0x08000000 (alt 0)",
        ),
        (
            E::DfuRefused {
                operation: RefusedOperation::Command(0x92),
                alt: 1,
            },
            "bootloader: DFU refused the command 0x92 (alt 1)",
        ),
        (
            E::Sos(Crash {
                cause: CrashCause::Missing(system_part_2),
                watchdog: true,
            }),
            "system: red SOS: the system part 2 is missing; the watchdog resets the device",
        ),
        (
            E::Sos(Crash {
                cause: CrashCause::Corrupt {
                    module: system_part_2,
                    address: 0x0806_0000,
                    platform: false,
                    integrity: true,
                },
                watchdog: false,
            }),
            "system: red SOS: the system part 2 at 0x08060000 is corrupt (integrity failed); the device resets",
        ),
        (
            E::BootloaderUpdated { from: 7, to: 501 },
            "system: updated the bootloader from version 7 to 501 (image carried by the system firmware)",
        ),
        (E::OtaFlagSet, "system: OTA flag 0xA5 set: applying the image in the OTA region"),
        (
            E::OtaFlagImageRefused(OtaError::Refused(OtaRefusal::Integrity)),
            "system: the staged image was refused: integrity check failed (-1330): the CRC does not match",
        ),
        (
            E::SafeMode(SafeModeCause::Unmet(unmet())),
            "system: safe mode: user part 1 needs system part 2 \u{2265} 108, installed 17",
        ),
        (E::SafeMode(SafeModeCause::Requested), "system: safe mode: requested at boot"),
        (
            E::SafeMode(SafeModeCause::ModuleFailed {
                module: system_part_2,
                checks: flags::INTEGRITY,
            }),
            "system: safe mode: the system part 2 failed integrity",
        ),
        (
            E::SafeMode(SafeModeCause::AppIntegrity),
            "system: safe mode: the application fails its CRC check",
        ),
        (
            E::SafeMode(SafeModeCause::AppHeader(invalid.clone())),
            "system: safe mode: the user part header is invalid (it starts at 0x08000000, expected 0x080a0000); the slot holds a Core image (platform 0, monolithic firmware)",
        ),
        (
            E::FactoryResetNeeded(FactoryResetCause::UserPartEmpty),
            "system: restoring the factory app: the user part is empty",
        ),
        (
            E::AppRunning { version: 6 },
            "system: breathing cyan: running the application (user part version 6)",
        ),
        (E::NoApp, "system: no application installed"),
        (
            E::UpdateReceiving { len: 4096 },
            "system: blinking magenta fast: receiving a 4096-byte update",
        ),
        (E::BootloaderInstalled { version: 501 }, "system: installed bootloader version 501"),
        (
            E::BootloaderRefused(CopyRefusal::Platform {
                found: 10,
                expected: 6,
            }),
            "system: bootloader update refused: platform 10, expected 6",
        ),
        (
            E::MbrBootloaderCopied {
                version: 1100,
                resumed: false,
            },
            "mbr: copied the staged bootloader into place (version 1100)",
        ),
        (
            E::MbrBootloaderCopied {
                version: 1100,
                resumed: true,
            },
            "mbr: after a reset, finished copying the staged bootloader into place (version 1100)",
        ),
        (
            E::UpdateValidated {
                module: system_part_2,
                version: 1502,
            },
            "system: system part 2 version 1502 validated; it will be installed at the next reset",
        ),
        (
            E::YmodemRefused(OtaError::NotStarted),
            "system: YMODEM update refused: no update in progress",
        ),
        (E::ListeningEntered, "system: blinking blue: listening mode"),
        (E::ListeningLeft, "system: left listening mode"),
        (
            E::DfuBaud,
            "system: the host opened the serial port at 14400 baud: resetting into DFU mode",
        ),
        (
            E::WifiSaved {
                ssid: "home".into(),
                secured: true,
            },
            "system: saved secured Wi-Fi credentials for network \"home\"",
        ),
        (
            E::WifiNotSaved {
                ssid: "home".into(),
                reason: WifiRefusal::NoPassword,
            },
            "system: did not save the Wi-Fi credentials for network \"home\": a secured network needs a password",
        ),
        (
            E::WifiCleared(WifiClearCause::SettingsReset),
            "system: Wi-Fi credentials cleared: settings reset requested at boot",
        ),
        (E::Text("anything at all".into()), "anything at all"),
    ]
}

#[test]
fn every_event_prints_the_line_the_string_log_held() {
    for (event, line) in every_event() {
        assert_eq!(event.to_string(), line, "{event:?}");
        let origin = event.origin().map(|o| format!("{o}: ")).unwrap_or_default();
        assert_eq!(format!("{origin}{}", event.message()), line);
    }
}

/// A device state whose log holds `events`.
fn state_with(events: Vec<DeviceEvent>) -> DeviceState {
    let mut state = device(6).powered_off().snapshot().0;
    state.events = events;
    state
}

#[test]
fn a_saved_log_reads_back_typed_and_carries_its_lines() {
    let state = state_with(every_event().into_iter().map(|(e, _)| e).collect());
    let json = serde_json::to_value(&state).unwrap();
    for (entry, (_, line)) in json["events"].as_array().unwrap().iter().zip(every_event()) {
        assert_eq!(entry["text"], line);
    }
    assert_eq!(serde_json::from_value::<DeviceState>(json).unwrap(), state);
}

#[test]
fn lines_of_older_logs_and_unknown_events_read_as_text() {
    // The state of a Photon as modflash saved it before events were typed.
    let old = r#"{"platform_id":6,"device_id":"154a1824b490d11e90cbf401","mode":"safe_mode","running_mode":"safe_mode","led":{"color":"magenta","pattern":"breathing"},"reset_reason":"power_on","events":["power on","system: safe mode: user part 1 needs system part 2 ≥ 108, installed 17"],"factory_reset_requested":false,"boot_request":null,"watchdog_retries":0,"control_transfers":0,"flash_stats":{"sectors_erased":8,"bytes_programmed":477182,"operations":1879,"modelled_us":7268728}}"#;
    let state: DeviceState = serde_json::from_str(old).unwrap();
    let lines = [
        "power on",
        "system: safe mode: user part 1 needs system part 2 \u{2265} 108, installed 17",
    ];
    assert_eq!(state.events, lines.map(|l| DeviceEvent::Text(l.into())));
    assert_eq!(
        state
            .events
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        lines
    );

    // An event of a later version keeps its line; known ones read typed.
    let mut json = serde_json::to_value(state_with(vec![DeviceEvent::PowerOn])).unwrap();
    json["events"].as_array_mut().unwrap().push(
        serde_json::json!({"event": {"from_a_later_version": 1}, "text": "system: something new"}),
    );
    let state: DeviceState = serde_json::from_value(json).unwrap();
    assert_eq!(
        state.events,
        [
            DeviceEvent::PowerOn,
            DeviceEvent::Text("system: something new".into())
        ]
    );
}

#[test]
fn button_holds_follow_the_bootloader_thresholds() {
    let held = ButtonHold::of;
    assert_eq!(held(0.5), None);
    assert_eq!(held(1.5), Some(ButtonHold::SafeMode));
    assert_eq!(held(3.2), Some(ButtonHold::Dfu));
    assert_eq!(held(6.5), Some(ButtonHold::FactoryReset));
    assert_eq!(held(12.0), Some(ButtonHold::SettingsReset));
}
