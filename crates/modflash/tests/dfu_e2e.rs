//! In-process end-to-end DFU against virtual Photon, Electron and Argon devices: download,
//! upload, verify, leave through the DfuSe engine and each device's own DfuSe handler, and the
//! modules read back over DFU equal the device's own inventory.

use modflash::inventory::Inventory;
use modflash::progress::Quiet;
use modflash::transport::dfu::WriteCheck;
use modflash::transport::sim::sim_session;
use modflash_device::{Device, Mode, ResetReason};
use modflash_dfu::LeaveOutcome;
use modflash_module::release::platform_release;
use modflash_module::synth::synthesize;
use modflash_module::{platform, ModuleFunction, ModuleInfo};
use modflash_testkit::device::device;

fn into_dfu(d: &mut Device) {
    d.reset(ResetReason::Button, Some(3.0));
    assert!(d.in_dfu_mode(), "{:#?}", d.state.events);
}

/// The release's app, rebuilt with a different payload so it differs from what is installed.
fn other_app(d: &Device, release: &str) -> (Vec<u8>, ModuleInfo) {
    let p = d.platform();
    let r = platform_release(p, release).unwrap();
    let mut app = r
        .modules_for(p)
        .find(|m| m.function == ModuleFunction::UserPart)
        .unwrap();
    app.version += 1;
    let bytes = synthesize(p, &app);
    let info = modflash_module::Module::parse(&bytes).unwrap().info;
    (bytes, info)
}

fn sha_hex(bytes: &[u8]) -> String {
    let m = modflash_module::Module::parse(bytes).unwrap();
    hex::encode(m.stored_sha256().unwrap())
}

fn round_trip(platform_id: u16, release: &str) {
    let mut d = device(platform_id).release(release).running();
    into_dfu(&mut d);
    let own = Inventory::from_device(&d);
    assert!(!own.modules.is_empty());
    let (app, info) = other_app(&d, release);
    let before = d.state.control_transfers;
    {
        let mut s = sim_session(&mut d).unwrap();
        // modules over DFU == the device's own inventory
        let read = s
            .read_inventory(d_platform(platform_id), &mut Quiet)
            .unwrap();
        assert_eq!(read.inventory, own, "platform {platform_id}");
        assert!(read.notes.is_empty(), "{:?}", read.notes);
        // download + verify
        s.write(
            0,
            info.start_address,
            &app,
            &WriteCheck::EveryByte,
            &mut Quiet,
        )
        .unwrap();
        // upload what was written
        let back = s
            .upload(0, info.start_address, app.len(), (0, 0), &mut Quiet)
            .unwrap();
        assert_eq!(back, app);
        // the prediction from read-back + verified writes
        let predicted = s.predicted_inventory().unwrap();
        let user = predicted
            .modules
            .iter()
            .find(|m| {
                m.function == "user" && m.is_main() && m.start_address == Some(info.start_address)
            })
            .unwrap();
        assert_eq!(user.version, info.version);
        assert_eq!(user.sha256.as_deref(), Some(sha_hex(&app).as_str()));
        // rewrite then leave without a SET_ADDRESS
        s.write(
            0,
            info.start_address,
            &app,
            &WriteCheck::EveryByte,
            &mut Quiet,
        )
        .unwrap();
        let out = s.leave(info.start_address).unwrap();
        assert!(matches!(
            out,
            LeaveOutcome::Manifesting(_) | LeaveOutcome::Disconnected
        ));
        assert!(s.control_transfers() > 0);
    }
    assert!(d.state.control_transfers > before);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    let after = Inventory::from_device(&d);
    let user = after
        .modules
        .iter()
        .find(|m| {
            m.function == "user" && m.is_main() && m.start_address == Some(info.start_address)
        })
        .unwrap();
    assert_eq!(user.version, info.version);
    assert!(user.checks.all());
}

fn d_platform(id: u16) -> &'static modflash_module::Platform {
    platform::platform(id).unwrap()
}

#[test]
fn photon_download_upload_verify_leave() {
    round_trip(6, "1.5.0");
}

#[test]
fn electron_download_upload_verify_leave() {
    round_trip(10, "1.5.0");
}

#[test]
fn argon_download_upload_verify_leave() {
    round_trip(12, "1.5.0");
}

#[test]
fn inventory_over_dfu_equals_the_device_for_every_release() {
    for (id, releases) in [
        (6u16, &["0.5.2", "1.5.0", "2.3.1", "3.3.1"][..]),
        (10, &["1.5.0", "2.2.0"][..]),
        (12, &["1.5.0", "3.3.1", "6.2.0"][..]),
    ] {
        for release in releases {
            let p = d_platform(id);
            if platform_release(p, release).is_none() {
                continue;
            }
            let mut d = device(id).release(release).running();
            into_dfu(&mut d);
            let own = Inventory::from_device(&d);
            let mut s = sim_session(&mut d).unwrap();
            let read = s.read_inventory(p, &mut Quiet).unwrap();
            assert_eq!(read.inventory, own, "{} {release}", p.name);
        }
    }
}

#[test]
fn headers_and_suffixes_identify_every_module_and_bodies_are_read_on_demand() {
    for (id, release) in [(6u16, "1.5.0"), (10, "2.2.0"), (12, "6.2.0")] {
        let p = d_platform(id);
        let mut d = device(id).release(release).running();
        into_dfu(&mut d);
        let mut own = Inventory::from_device(&d);
        // The same verdicts; the header read says the CRC was not checked, the HAL checked it.
        for m in &mut own.modules {
            assert!(m.checks.integrity_checked);
            m.checks.integrity_checked = false;
        }
        let user = d
            .system_info()
            .iter()
            .filter_map(|f| f.info)
            .find(|i| i.function == ModuleFunction::UserPart)
            .unwrap()
            .slot();
        let installed = modflash::backup::module_image(&d, user).unwrap();
        let (full_bytes, full_transfers) = {
            let mut s = sim_session(&mut d).unwrap();
            let read = s.read_inventory(p, &mut Quiet).unwrap();
            (read.bytes_read, s.control_transfers())
        };
        let mut s = sim_session(&mut d).unwrap();
        let read = s.read_headers(p, &mut Quiet).unwrap();
        // The same inventory (every module intact: the CRC not checked counts as passed).
        assert_eq!(read.inventory, own, "{} {release}", p.name);
        assert!(read.bytes_read * 4 < full_bytes, "{} {release}", p.name);
        assert!(
            s.control_transfers() * 2 < full_transfers,
            "{} {release}",
            p.name
        );
        // A body left unread is read when asked for, the same bytes as installed.
        assert_eq!(s.module_image(user, &mut Quiet), Some(installed));
    }
}

#[test]
fn headers_cannot_see_a_corrupt_body_which_the_full_read_does() {
    let mut d = device(6).release("1.5.0").running();
    let app = d
        .system_info()
        .into_iter()
        .find(|f| {
            f.info
                .is_some_and(|i| i.function == ModuleFunction::UserPart)
        })
        .unwrap();
    d.flash_mut()
        .program(modflash_device::Space::Internal, app.address + 0x300, &[0])
        .unwrap();
    into_dfu(&mut d);
    let mut s = sim_session(&mut d).unwrap();
    let headers = s.read_headers(d_platform(6), &mut Quiet).unwrap();
    assert!(headers.inventory.modules.iter().all(|m| m.checks.integrity));
    let full = s.read_inventory(d_platform(6), &mut Quiet).unwrap();
    assert!(full.inventory.modules.iter().any(|m| !m.checks.integrity));
}

#[test]
fn a_refused_write_is_an_error_and_changes_nothing() {
    let mut d = device(6).release("1.5.0").running();
    into_dfu(&mut d);
    let before = d
        .flash()
        .read(modflash_device::Space::Internal, 0x0800_0000, 0x4000)
        .unwrap()
        .to_vec();
    {
        let mut s = sim_session(&mut d).unwrap();
        let err = s
            .write(
                0,
                0x0800_0000,
                &[0u8; 16],
                &WriteCheck::EveryByte,
                &mut Quiet,
            )
            .unwrap_err();
        assert!(err.to_string().contains("0x08000000"), "{err}");
        assert!(miette::Diagnostic::help(&err).is_some());
    }
    let after = d
        .flash()
        .read(modflash_device::Space::Internal, 0x0800_0000, 0x4000)
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_corrupt_module_reads_back_as_failing_integrity() {
    let mut d = device(6).release("1.5.0").running();
    let sp2 = d
        .system_info()
        .into_iter()
        .find(|f| {
            f.info
                .is_some_and(|i| i.function == ModuleFunction::SystemPart && i.index == 2)
        })
        .unwrap();
    let body = d
        .flash()
        .read(modflash_device::Space::Internal, sp2.address, 0x4000)
        .unwrap();
    let at = (0x400..0x4000).find(|&i| body[i] != 0).unwrap() as u32;
    d.flash_mut()
        .program(modflash_device::Space::Internal, sp2.address + at, &[0])
        .unwrap();
    into_dfu(&mut d);
    let own = Inventory::from_device(&d);
    let mut s = sim_session(&mut d).unwrap();
    let read = s.read_inventory(d_platform(6), &mut Quiet).unwrap();
    assert_eq!(read.inventory, own);
    assert!(read.inventory.modules.iter().any(|m| !m.checks.integrity));
}

/// A pipe that loses the device after `left` transfers.
struct Flaky<'a> {
    inner: modflash::transport::sim::SimControl<'a>,
    left: u32,
}

impl modflash_dfu::Control for Flaky<'_> {
    fn control_in(
        &mut self,
        setup: &modflash_dfu::Setup,
        buf: &mut [u8],
        t: u32,
    ) -> Result<usize, modflash_dfu::TransferError> {
        if self.left == 0 {
            return Err(modflash_dfu::TransferError::NoDevice);
        }
        self.left -= 1;
        self.inner.control_in(setup, buf, t)
    }

    fn control_out(
        &mut self,
        setup: &modflash_dfu::Setup,
        data: &[u8],
        t: u32,
    ) -> Result<usize, modflash_dfu::TransferError> {
        if self.left == 0 {
            return Err(modflash_dfu::TransferError::NoDevice);
        }
        self.left -= 1;
        self.inner.control_out(setup, data, t)
    }

    fn wait(&mut self, ms: u32) {
        self.inner.wait(ms)
    }
}

impl modflash::transport::dfu::DfuPort for Flaky<'_> {
    fn select_alt(&mut self, i: u16, alt: u8) -> Result<(), modflash_dfu::TransferError> {
        modflash::transport::dfu::DfuPort::select_alt(&mut self.inner, i, alt)
    }
}

#[test]
fn a_device_gone_mid_write_is_an_error_at_every_transfer() {
    let template = {
        let mut d = device(6).release("1.5.0").running();
        into_dfu(&mut d);
        d
    };
    let (app, info) = other_app(&template, "1.5.0");
    let mut n = 0;
    loop {
        let mut d = template.clone();
        let info_desc = {
            let s = sim_session(&mut d).unwrap();
            s.info().clone()
        };
        let port = Flaky {
            inner: modflash::transport::sim::SimControl::new(&mut d),
            left: n,
        };
        let mut s = modflash::transport::dfu::DfuSession::new(port, info_desc);
        match s.write(
            0,
            info.start_address,
            &app,
            &WriteCheck::EveryByte,
            &mut Quiet,
        ) {
            Ok(()) => {
                assert!(n > 10, "succeeded after only {n} transfers");
                break;
            }
            Err(e) => {
                assert!(miette::Diagnostic::help(&e).is_some(), "{e}");
                assert!(!e.to_string().is_empty());
            }
        }
        n += 1;
        assert!(n < 200, "never succeeded");
    }
}

/// The device's DFU state, read with GETSTATE (which, unlike GETSTATUS, runs nothing).
fn dfu_state(d: &mut Device) -> modflash_dfu::State {
    let setup = modflash_dfu::Setup::class_in(modflash_dfu::control::DFU_GETSTATE, 0, 0, 1);
    let reply = d.dfu_control(setup, &[]).unwrap();
    modflash_dfu::State::from_u8(reply[0])
}

#[test]
fn a_command_a_cut_off_session_left_pending_is_dropped_not_run() {
    let template = {
        let mut d = device(6).release("1.5.0").running();
        into_dfu(&mut d);
        d
    };
    let (app, info) = other_app(&template, "1.5.0");
    let app_before = |d: &Device| {
        d.flash()
            .read(modflash_device::Space::Internal, info.start_address, 0x100)
            .unwrap()
            .to_vec()
    };
    // Cut the pipe after the DNLOAD of an erase of the app's page, before the GETSTATUS that
    // would run it.
    let runs_an_erase = |d: &Device| {
        let mut probe = d.clone();
        let setup = modflash_dfu::Setup::class_in(modflash_dfu::control::DFU_GETSTATUS, 0, 0, 6);
        let _ = probe.dfu_control(setup, &[]);
        app_before(&probe) != app_before(d)
    };
    let mut d = (0..40)
        .find_map(|n| {
            let mut d = template.clone();
            let info_desc = sim_session(&mut d).unwrap().info().clone();
            let port = Flaky {
                inner: modflash::transport::sim::SimControl::new(&mut d),
                left: n,
            };
            let mut s = modflash::transport::dfu::DfuSession::new(port, info_desc);
            assert!(s
                .write(
                    0,
                    info.start_address,
                    &app,
                    &WriteCheck::EveryByte,
                    &mut Quiet
                )
                .is_err());
            drop(s);
            (dfu_state(&mut d) == modflash_dfu::State::DnloadSync && runs_an_erase(&d)).then_some(d)
        })
        .expect("some cut leaves an erase pending");
    let untouched = app_before(&d);
    assert_eq!(untouched, app_before(&template), "nothing erased yet");
    // A new session (the same command run again) writes elsewhere: the erase the first one
    // left pending must not run now, under a plan made on the flash as it was.
    let mut s = sim_session(&mut d).unwrap();
    s.write(
        0,
        0x080C_0000,
        &[0x5A; 64],
        &WriteCheck::EveryByte,
        &mut Quiet,
    )
    .unwrap();
    drop(s);
    assert_eq!(app_before(&d), untouched, "the dropped erase did not run");
}
