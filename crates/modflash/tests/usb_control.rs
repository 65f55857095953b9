//! modflash's host side of Particle's USB control requests against virtual devices in-process
//! (`SimVendor`: the firmware's own EP0 on its modelled clock): the module table equals the
//! device's inventory, the device id and version come back, a 0.5.2 Photon stalls, mode
//! changes act as on the device.

use modflash::inventory::Inventory;
use modflash::transport::control::{ControlClient, ControlError, ModuleTable};
use modflash::transport::sim::SimVendor;
use modflash_device::{Device, Mode};
use modflash_testkit::device::device;

/// The inventory a device sends over control requests.
fn over_usb(d: &mut Device) -> Result<Inventory, ControlError> {
    let platform = d.platform();
    let mut pipe = SimVendor::new(d);
    let table = ControlClient::new(&mut pipe).modules()?;
    Ok(match table {
        ModuleTable::Entries(entries) => Inventory::from_module_info(platform, &entries),
        ModuleTable::Describe(json) => Inventory::from_describe(&json).unwrap(),
    })
}

/// The device's own inventory, cut to what the module table of its firmware carries: no
/// addresses; before 5.6.0 the running modules only, without hashes.
fn expected(d: &Device, new_format: bool) -> Inventory {
    let mut inv = Inventory::from_device(d);
    inv.modules.retain(|m| new_format || m.is_main());
    for m in &mut inv.modules {
        m.start_address = None;
        if !new_format {
            m.sha256 = None;
        }
    }
    inv
}

#[test]
fn module_table_over_usb_equals_the_inventory() {
    for (platform_id, release, new_format) in [
        (6u16, "1.5.0", false),
        (12, "2.2.0", false),
        (32, "6.2.0", true),
    ] {
        let mut d = device(platform_id).release(release).running();
        let got = over_usb(&mut d).unwrap_or_else(|e| panic!("{release}: {e}"));
        assert_eq!(
            got,
            expected(&d, new_format),
            "platform {platform_id} {release}"
        );
        assert!(!got.modules.is_empty());
        if new_format {
            assert!(got.modules.iter().all(|m| m.sha256.is_some()), "{got:#?}");
        }
    }
}

#[test]
fn id_and_version_come_from_the_device() {
    let mut d = device(12).id([0xab; 12]).release("2.2.0").running();
    let mut pipe = SimVendor::new(&mut d);
    let mut client = ControlClient::new(&mut pipe);
    assert_eq!(client.device_id().unwrap(), "ab".repeat(12));
    assert_eq!(client.system_version().unwrap(), "2.2.0");
    assert!(!client.listening().unwrap());
    // Two raw requests; INIT and CHECK (normal mode is the empty reply, nothing to RECV).
    assert_eq!(client.transfers(), 2 + 2);
}

#[test]
fn firmware_before_0_8_stalls() {
    let mut d = device(6).release("0.5.2").running();
    let before = d.state.control_transfers;
    let err = over_usb(&mut d).unwrap_err();
    assert!(err.is_not_spoken(), "{err}");
    assert!(
        miette::Diagnostic::help(&err)
            .unwrap()
            .to_string()
            .contains("from 0.8.0"),
        "{err:?}"
    );
    assert_eq!(d.state.control_transfers, before, "stalled, never counted");
    assert_eq!(d.state.mode, Mode::App, "nothing changed");
}

#[test]
fn a_device_in_dfu_mode_is_not_on_the_normal_mode_bus() {
    let mut d = device(6).release("1.5.0").running();
    d.request_dfu();
    let err = over_usb(&mut d).unwrap_err();
    assert!(matches!(err, ControlError::Transfer { .. }), "{err}");
}

// ---- firmware updates over control requests ------------------------------------------------

use modflash::catalog::{Candidate, Catalog, Origin};
use modflash::exec::{execute, Options, Task, TaskAction};
use modflash::plan::{flash, plan, Action, FlashOptions, Force, PlanError, Request, Via};
use modflash::progress::{Cancel, Event, Evidence, Quiet};
use modflash::transport::ModeChange;
use modflash::{Error, Session};
use modflash_device::DeviceEvent;
use modflash_module::{platform, ModuleFunction};
use modflash_testkit::device::release_app;

/// The system-part version of Device OS `release` for the Photon.
fn photon_system(release: &str) -> u16 {
    modflash_module::release::platform_release(platform::platform(6).unwrap(), release)
        .unwrap()
        .system_version
}

fn releases(platform_id: u16) -> Catalog {
    let mut c = Catalog::default();
    c.add_release_table(platform::platform(platform_id).unwrap());
    c
}

fn file(name: &str, bytes: Vec<u8>) -> Candidate {
    Candidate::from_bytes(Origin::File(name.into()), bytes).unwrap()
}

fn request<'a>(
    d: &'a Device,
    targets: Vec<Candidate>,
    catalog: &'a Catalog,
    via: Via,
) -> Request<'a> {
    Request {
        twin: d,
        targets,
        catalog,
        via,
        also: Vec::new(),
        alternative: Some(Via::Dfu),
        force: Force::default(),
        factory: false,
    }
}

#[test]
fn via_usb_installs_system_parts_and_an_app_each_validated_by_the_device() {
    // A 1.5.0 Photon and an app for 2.3.1: both system parts first, then the app, every one
    // through START / DATA / FINISH and checked by the device before it takes it.
    let mut d = device(6).release("1.5.0").running();
    let catalog = releases(6);
    let app = file("app-2.3.1.bin", release_app(6, "2.3.1"));
    let p = plan(&request(&d, vec![app], &catalog, Via::Usb)).unwrap();
    assert!(
        p.steps.iter().all(|s| s.action == Action::Usb),
        "{:?}",
        p.steps
    );
    let functions: Vec<_> = p.steps.iter().map(|s| s.module.info.function).collect();
    assert!(
        functions.contains(&ModuleFunction::SystemPart),
        "{functions:?}"
    );
    assert_eq!(functions.last(), Some(&ModuleFunction::UserPart));
    let before = d.state.control_transfers;
    let mut accepted = 0;
    let mut s = Session::virtual_device(&mut d, "sim:usb");
    let flashed = flash(
        &mut s,
        &p,
        FlashOptions { backup: false },
        &mut |e: Event| {
            if let Event::StepFinished { evidence, .. } = e {
                assert_eq!(evidence, Evidence::DeviceAccepted);
                accepted += 1;
            }
        },
        &Cancel::new(),
    )
    .unwrap();
    drop(s);
    assert_eq!(accepted, p.steps.len());
    assert!(flashed.verified(), "{:?}", flashed.mismatches);
    // After each restart the device reports the file's SHA-256 for the module: the proof.
    assert!(flashed
        .proofs
        .iter()
        .all(|p| p.evidence == Evidence::Hash && p.via == Via::Usb));
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(d.system_version(), Some(photon_system("2.3.1")));
    assert!(d.state.control_transfers > before);
    // The device received each module and validated it when it arrived (the OTA path: a
    // bootloader is installed at once, the others at the next reset), not only at the boot.
    let count = |f: fn(&DeviceEvent) -> bool| d.state.events.iter().filter(|e| f(e)).count();
    let names: Vec<String> = d.state.events.iter().map(ToString::to_string).collect();
    assert_eq!(
        count(|e| matches!(e, DeviceEvent::UpdateReceiving { .. })),
        p.steps.len(),
        "{names:#?}"
    );
    assert_eq!(
        count(|e| matches!(
            e,
            DeviceEvent::UpdateValidated { .. } | DeviceEvent::BootloaderInstalled { .. }
        )),
        p.steps.len(),
        "{names:#?}"
    );
}

#[test]
fn a_refusal_is_reported_in_the_device_words_and_changes_nothing() {
    // System part 2 of 2.3.1 onto a 1.5.0 Photon: it needs system part 1 of 2.3.1 first.
    let mut d = device(6).release("1.5.0").running();
    let part2 = releases(6)
        .for_platform(6)
        .find(|c| {
            c.slot().function == ModuleFunction::SystemPart
                && c.slot().index == 2
                && c.info.version == photon_system("2.3.1")
        })
        .cloned()
        .unwrap();
    let before = (
        d.flash()
            .memory(modflash_device::Space::Internal)
            .unwrap()
            .data
            .clone(),
        modflash_device::describe::describe(&d),
    );
    let tasks = [Task {
        label: "writing system part 2 of 2.3.1".into(),
        action: TaskAction::Usb {
            name: "system-part2.bin".into(),
            data: &part2.bytes,
        },
    }];
    let mut s = Session::virtual_device(&mut d, "sim:usb");
    let options = Options {
        verify: true,
        leave_at: None,
    };
    let err = execute(&mut s, &tasks, options, &mut Quiet, &Cancel::new()).unwrap_err();
    drop(s);
    assert!(err.is_check_failure());
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
    assert!(err.help_text().unwrap().contains("nothing was changed"));
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(modflash_device::describe::describe(&d), before.1);
    // The OTA region took the bytes; every module region is as it was.
    let now = &d
        .flash()
        .memory(modflash_device::Space::Internal)
        .unwrap()
        .data;
    let layout = d.layout();
    for b in layout.bounds {
        if b.location != modflash_module::platform::Location::Internal
            || b.store != modflash_module::platform::Store::Main
        {
            continue;
        }
        let base = 0x0800_0000u32;
        let (s, e) = ((b.start - base) as usize, (b.end - base) as usize);
        assert!(now[s..e] == before.0[s..e], "{:?} changed", b.slot());
    }
}

#[test]
fn a_052_photon_cannot_take_usb_updates_and_the_default_plan_uses_dfu() {
    let d = device(6).release("0.5.2").running();
    let catalog = releases(6);
    let app = file("app-1.5.0.bin", release_app(6, "1.5.0"));
    let err = plan(&request(&d, vec![app.clone()], &catalog, Via::Usb)).unwrap_err();
    let PlanError::NoOrder { reason, help, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        reason.contains("does not answer USB control requests"),
        "{reason}"
    );
    assert!(help.contains("--via dfu"), "{help}");
    // Allowed both, the planner writes over DFU what USB cannot.
    let mut req = request(&d, vec![app], &catalog, Via::Dfu);
    req.also = vec![Via::Usb];
    let p = plan(&req).unwrap();
    assert!(!p.steps.is_empty());
    assert!(
        p.steps.iter().all(|s| s.via() == Via::Dfu),
        "{:?}",
        p.transports()
    );
}

#[test]
fn a_default_plan_mixes_transports_where_that_is_cheaper() {
    // A running Argon: its app goes over USB (no trip through DFU mode); in DFU mode the same
    // app goes over DFU.
    let catalog = releases(12);
    let app = file("app-2.2.0.bin", release_app(12, "2.2.0"));
    let running = device(12).release("2.2.0").without_app().powered_on();
    let mut req = request(&running, vec![app.clone()], &catalog, Via::Dfu);
    req.also = vec![Via::Usb];
    let p = plan(&req).unwrap();
    assert_eq!(p.transports(), [Via::Usb], "{:?}", p.steps);
    let mut in_dfu = device(12).release("2.2.0").without_app().powered_on();
    in_dfu.request_dfu();
    let mut req = request(&in_dfu, vec![app], &catalog, Via::Dfu);
    req.also = vec![Via::Usb];
    let p = plan(&req).unwrap();
    assert_eq!(p.transports(), [Via::Dfu], "{:?}", p.steps);
    // Run, each plan ends as predicted.
    let mut s = Session::virtual_device(&mut in_dfu, "sim:a");
    let flashed = flash(
        &mut s,
        &p,
        FlashOptions { backup: false },
        &mut Quiet,
        &Cancel::new(),
    )
    .unwrap();
    assert!(flashed.verified(), "{:?}", flashed.mismatches);
}

#[test]
fn mode_changes_go_through_control_requests_and_happen_a_second_later() {
    let mut d = device(6).release("1.5.0").running();
    let mut s = Session::virtual_device(&mut d, "sim:m");
    for (change, mode) in [
        (ModeChange::Listening, "listening"),
        (ModeChange::Normal, "app"),
        (ModeChange::Safe, "safe_mode"),
        (ModeChange::Reset, "app"),
        (ModeChange::Dfu, "dfu"),
    ] {
        let seen = s.change_mode(change, &mut Quiet).unwrap();
        assert_eq!(seen, Some(mode), "{change:?}");
    }
    assert!(s.control_transfers() > 0);
    drop(s);
    let asked: Vec<String> = d
        .state
        .events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::UsbModeChange(_)))
        .map(ToString::to_string)
        .collect();
    assert_eq!(asked.len(), 3, "reset, safe mode, DFU: {asked:?}");
    // A 0.5.2 Photon stalls them: the baud-rate requests still work.
    let mut d = device(6).release("0.5.2").running();
    let mut s = Session::virtual_device(&mut d, "sim:old");
    assert_eq!(
        s.change_mode(ModeChange::Dfu, &mut Quiet).unwrap(),
        Some("dfu")
    );
    assert_eq!(s.control_transfers(), 0);
}

// ---- the client never panics ---------------------------------------------------------------

mod random_replies {
    use modflash::progress::{Cancel, Quiet};
    use modflash::transport::control::{ControlClient, VendorPipe};
    use modflash_control::Setup;
    use modflash_dfu::TransferError;
    use proptest::prelude::*;

    /// A device that answers every transfer with the next scripted reply (a stall when the
    /// script says so or runs out), on a clock that moves 1 ms per transfer.
    struct Random {
        replies: Vec<Option<Vec<u8>>>,
        now: u64,
        transfers: usize,
    }

    impl VendorPipe for Random {
        fn transfer(&mut self, setup: &Setup, _: &[u8], _: u32) -> Result<Vec<u8>, TransferError> {
            self.now += 1;
            let reply = self.replies.get(self.transfers).cloned().flatten();
            self.transfers += 1;
            match reply {
                Some(mut r) => {
                    r.truncate(usize::from(setup.length));
                    Ok(r)
                }
                None => Err(TransferError::Stall),
            }
        }
        fn wait(&mut self, ms: u32) {
            self.now += u64::from(ms);
        }
        fn now_ms(&self) -> u64 {
            self.now
        }
    }

    /// Replies that are often well-formed service replies (flags 1..15, a status 0..6).
    fn reply() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            1 => Just(None),
            3 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
            6 => (1u32..16, 0u16..7, any::<u16>(), 0u32..3000, any::<i32>()).prop_map(
                |(flags, status, id, size, result)| {
                    let mut r = flags.to_le_bytes().to_vec();
                    r.extend_from_slice(&status.to_le_bytes());
                    r.extend_from_slice(&id.to_le_bytes());
                    r.extend_from_slice(&size.to_le_bytes());
                    r.extend_from_slice(&result.to_le_bytes());
                    Some(r)
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_replies_never_panic_and_every_request_ends(
            replies in proptest::collection::vec(reply(), 0..60),
            what in 0u8..5,
        ) {
            let mut pipe = Random { replies, now: 0, transfers: 0 };
            let mut client = ControlClient::new(&mut pipe);
            let _ = match what {
                0 => client.modules().map(|_| ()),
                1 => client.device_id().map(|_| ()),
                2 => client.system_version().map(|_| ()),
                3 => client.listening().map(|_| ()),
                _ => client
                    .firmware_update(&[0x5A; 3000], &mut Quiet, &Cancel::new())
                    .map(|_| ()),
            };
            // Every request stops at its time limit: at most a few of them, a minute each.
            prop_assert!(pipe.now <= 5 * 60_000 + 1_000, "{} ms", pipe.now);
        }
    }
}
