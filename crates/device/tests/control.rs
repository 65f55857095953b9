//! The virtual device's USB control requests driven in-process by the host machine of
//! `modflash-control`: module info equals the HAL's view, old firmware stalls, firmware updates
//! go through the OTA rules, mode changes come 1 s after the reply, and random request
//! sequences never touch flash outside a firmware update.

use modflash_control::host::{DriveError, HostRequest, Response};
use modflash_control::proto::{validation, GetDeviceIdReply};
use modflash_control::proto::{
    DfuModeRequest, FinishFirmwareUpdateRequest, FirmwareUpdateDataRequest, GetDeviceIdRequest,
    GetDeviceModeReply, GetDeviceModeRequest, GetModuleInfoReply, GetModuleInfoRequest,
    GetProtectedStateRequest, GetSystemVersionReply, GetSystemVersionRequest, Request,
    SafeModeRequest, StartFirmwareUpdateReply, StartFirmwareUpdateRequest,
    StartListeningModeRequest, SystemResetRequest,
};
use modflash_control::service::{ServiceRequest, ALL_REQUESTS};
use modflash_control::{RawRequest, RequestType, Setup, Stall};
use modflash_device::control::MODE_CHANGE_DELAY_US;
use modflash_device::hal::Fetched;
use modflash_device::{ControlProtocol, Device, Mode, ResetReason};
use modflash_module::platform::Store;
use modflash_module::release::{platform_release, ReleaseModule};
use modflash_module::synth::synthesize;
use modflash_module::{platform, ModuleFunction};
use modflash_testkit::device::device;
use proptest::prelude::*;

/// Runs one request through the host machine, waiting on the device's clock.
fn send(d: &mut Device, request: HostRequest) -> Result<Response, DriveError<Stall>> {
    request.drive(|t| {
        d.elapse(u64::from(t.wait_ms) * 1000);
        d.control(t.setup, t.data)
    })
}

fn ask<R: Request>(d: &mut Device, message: &R) -> Response {
    send(d, HostRequest::message(message).unwrap())
        .unwrap_or_else(|e| panic!("{:?}: {e:?}", R::TYPE))
}

/// The module of `release` for `platform_id` with `function`/`index`, its version changed.
fn release_module(
    platform_id: u16,
    release: &str,
    function: ModuleFunction,
    index: u8,
) -> ReleaseModule {
    let p = platform(platform_id).unwrap();
    platform_release(p, release)
        .unwrap()
        .modules_for(p)
        .find(|m| m.function == function && m.index == index)
        .unwrap()
}

fn image(platform_id: u16, m: &ReleaseModule) -> Vec<u8> {
    synthesize(platform(platform_id).unwrap(), m)
}

/// START, DATA in the chunks the device asks for, FINISH: the result of each step.
fn update(d: &mut Device, file: &[u8], validate_only: bool) -> i32 {
    let start = ask(
        d,
        &StartFirmwareUpdateRequest {
            size: file.len() as u32,
            format: 0,
        },
    );
    if start.result != 0 {
        return start.result;
    }
    let chunk = start
        .decode::<StartFirmwareUpdateReply>()
        .unwrap()
        .chunk_size as usize;
    assert_eq!(chunk, 1024);
    for piece in file.chunks(chunk) {
        let r = ask(
            d,
            &FirmwareUpdateDataRequest {
                data: piece.to_vec(),
            },
        );
        if r.result != 0 {
            return r.result;
        }
    }
    ask(d, &FinishFirmwareUpdateRequest { validate_only }).result
}

fn versions(d: &Device) -> Vec<(ModuleFunction, u8, u16, Store)> {
    d.system_info()
        .iter()
        .filter_map(|f| {
            f.info
                .map(|i| (i.function, i.index, i.version, f.bounds.store))
        })
        .collect()
}

fn main_version(d: &Device, function: ModuleFunction, index: u8) -> Option<u16> {
    versions(d)
        .into_iter()
        .find(|&(f, i, _, s)| f == function && i == index && s == Store::Main)
        .map(|(_, _, v, _)| v)
}

/// What the HAL reports, in the shape `GetModuleInfoReply::entries` gives.
fn hal_entry(f: &Fetched) -> Option<(u8, u8, u16, u32, u32)> {
    let i = f.info?;
    let size = i.module_length().map_or(0, |l| l + 4);
    Some((
        i.function.to_u8(),
        i.index,
        i.version,
        size,
        u32::from(f.passed),
    ))
}

#[test]
fn module_info_is_the_hals_view_in_the_releases_format() {
    // Photon 1.5.0 and Argon 2.2.0: the old format, MAIN modules, failures as bits.
    for (platform_id, release) in [(6, "1.5.0"), (12, "2.2.0")] {
        let mut d = device(platform_id).release(release).running();
        let reply: GetModuleInfoReply = ask(&mut d, &GetModuleInfoRequest {}).decode().unwrap();
        assert!(reply.modules.is_empty(), "{release} sends the old format");
        let got: Vec<_> = reply
            .entries()
            .iter()
            .map(|e| (e.function, e.index, e.version, e.size, e.passed))
            .collect();
        let want: Vec<_> = d
            .system_info()
            .iter()
            .filter(|f| f.bounds.store == Store::Main)
            .filter_map(hal_entry)
            .filter(|e| matches!(e.0, 2 | 3 | 4 | 5 | 7 | 8))
            .map(|(f, i, v, s, passed)| {
                let checked = validation::INTEGRITY | validation::DEPENDENCIES;
                (f, i, v, s, passed & checked)
            })
            .collect();
        assert_eq!(got, want, "platform {platform_id} {release}");
        assert!(!got.is_empty());
    }
    // P2 6.2.0: the new format, every region with a module, the hash always there.
    let mut d = device(32).release("6.2.0").running();
    let reply: GetModuleInfoReply = ask(&mut d, &GetModuleInfoRequest {}).decode().unwrap();
    assert!(reply.modules_deprecated.is_empty());
    let fetched = d.system_info();
    let with_info: Vec<&Fetched> = fetched.iter().filter(|f| f.info.is_some()).collect();
    assert_eq!(reply.modules.len(), with_info.len());
    for (m, f) in reply.modules.iter().zip(&with_info) {
        let (function, index, version, size, passed) = hal_entry(f).unwrap();
        assert_eq!(
            (m.r#type, m.index, m.version, m.size, m.passed_flags),
            (
                i32::from(function),
                u32::from(index),
                u32::from(version),
                size,
                passed
            )
        );
        assert_eq!(m.checked_flags, u32::from(f.checked));
        assert_eq!(m.max_size, f.bounds.max_size);
        let hash = m.hash.as_deref().expect("field 8 is always sent");
        assert_eq!(hash.len(), 32);
        if let Some(sha) = f.sha256 {
            assert_eq!(hash, sha);
        }
    }
}

#[test]
fn firmware_without_control_requests_stalls_and_the_07_raw_requests_answer() {
    let mut d = device(6).release("0.5.2").running();
    assert_eq!(d.control_protocol(), ControlProtocol::None);
    assert_eq!(
        send(
            &mut d,
            HostRequest::message(&GetDeviceModeRequest {}).unwrap()
        ),
        Err(DriveError::Transport(Stall))
    );
    assert_eq!(
        d.control(RawRequest::SystemVersion.setup(false), &[]),
        Err(Stall)
    );

    let mut d = device(6).release("0.7.0").running();
    assert_eq!(d.control_protocol(), ControlProtocol::Raw07);
    assert_eq!(
        d.control(RawRequest::SystemVersion.setup(false), &[])
            .unwrap(),
        b"0.7.0\0\0"
    );
    let id = d.control(RawRequest::DeviceId.setup(false), &[]).unwrap();
    assert_eq!(id, b"3B0021001747353236343033\0");
    let init = ServiceRequest::Init {
        request_type: RequestType::GET_DEVICE_MODE,
        size: 0,
    };
    assert_eq!(d.control(init.setup(), &[]), Err(Stall));
    // OUT 90 queues the module-info JSON, IN 90 fetches it.
    let out = Setup::vendor_out(0x50, 0, 90, 0);
    d.control(out, &[]).unwrap();
    let json = d.control(Setup::vendor_in(0x50, 0, 90, 64), &[]);
    assert_eq!(json, Err(Stall), "the JSON is longer than 64 bytes");
    // OUT 50: DFU mode at once.
    d.control(Setup::vendor_out(0x50, 0, 50, 0), &[]).unwrap();
    assert!(d.in_dfu_mode());

    // DFU mode stalls every vendor request (the bootloader's EP0).
    assert_eq!(
        d.control(RawRequest::SystemVersion.setup(false), &[]),
        Err(Stall)
    );
}

#[test]
fn identity_requests_answer_as_an_unprotected_device() {
    let mut d = device(12).release("6.2.0").running();
    let id: GetDeviceIdReply = ask(&mut d, &GetDeviceIdRequest {}).decode().unwrap();
    assert_eq!(id.id, "3b0021001747353236343033");
    let raw = d.control(RawRequest::DeviceId.setup(false), &[]).unwrap();
    assert_eq!(raw, b"3B0021001747353236343033");
    assert_eq!(
        d.control(RawRequest::SystemVersion.setup(false), &[])
            .unwrap(),
        b"6.2.0"
    );
    let v: GetSystemVersionReply = ask(&mut d, &GetSystemVersionRequest {}).decode().unwrap();
    assert_eq!(v.version, "6.2.0");
    let protected = ask(&mut d, &GetProtectedStateRequest {});
    assert_eq!((protected.result, protected.data.len()), (0, 0));
    // Before 6.0.0 the request is unknown: −120, which particle-cli reads as unprotected.
    let mut old = device(12).release("2.2.0").running();
    assert_eq!(ask(&mut old, &GetProtectedStateRequest {}).result, -120);
    // An unknown type: −120.
    let r = send(&mut d, HostRequest::new(RequestType(9999), vec![]).unwrap()).unwrap();
    assert_eq!(r.result, -120);
    // The initial RESET-all of particle-usb's open: OK.
    let reset_all = ServiceRequest::Reset { id: ALL_REQUESTS }.setup();
    assert_eq!(d.control(reset_all, &[]).unwrap(), [1, 0, 0, 0, 0, 0]);
}

#[test]
fn get_protected_state_follows_the_bootloader_and_service_mode() {
    use modflash_control::proto::GetProtectedStateReply;
    let mut d = device(32).release("6.2.0").powered_off();
    d.install_module(&modflash_testkit::device::protected_bootloader(32, "6.2.0"))
        .unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.state.mode, Mode::App);
    let state: GetProtectedStateReply = ask(&mut d, &GetProtectedStateRequest {}).decode().unwrap();
    assert_eq!((state.state, state.overridden), (true, false));
    d.set_service_mode(true);
    let state: GetProtectedStateReply = ask(&mut d, &GetProtectedStateRequest {}).decode().unwrap();
    assert_eq!((state.state, state.overridden), (false, true));
}

#[test]
fn mode_changes_come_one_second_after_the_final_reply() {
    let mut d = device(6).release("1.5.0").running();
    assert_eq!(ask(&mut d, &DfuModeRequest {}).result, 0);
    assert_eq!(d.state.mode, Mode::App, "the host gets the reply first");
    let due = d.control_deadline().unwrap();
    assert_eq!(due, d.flash_stats().modelled_us + MODE_CHANGE_DELAY_US);
    d.elapse(MODE_CHANGE_DELAY_US - 1);
    assert_eq!(d.state.mode, Mode::App);
    d.elapse(1);
    assert!(d.in_dfu_mode());
    assert_eq!(d.control_deadline(), None);

    let mut d = device(6).release("1.5.0").running();
    ask(&mut d, &SafeModeRequest {});
    d.elapse(MODE_CHANGE_DELAY_US);
    assert_eq!(d.state.mode, Mode::SafeMode);
    ask(&mut d, &SystemResetRequest {});
    d.elapse(MODE_CHANGE_DELAY_US);
    assert_eq!(
        (d.state.mode, d.state.reset_reason),
        (Mode::App, ResetReason::User)
    );

    // Listening mode at once, and GetDeviceMode says so.
    let mode: GetDeviceModeReply = ask(&mut d, &GetDeviceModeRequest {}).decode().unwrap();
    assert_eq!(mode.mode, 0);
    ask(&mut d, &StartListeningModeRequest {});
    assert_eq!(d.state.mode, Mode::Listening);
    let mode: GetDeviceModeReply = ask(&mut d, &GetDeviceModeRequest {}).decode().unwrap();
    assert_eq!(mode.mode, 1);

    // A reset request cancelled with RESET still resets (Device OS runs the handler anyway).
    let mut d = device(6).release("1.5.0").running();
    let mut r = HostRequest::message(&SystemResetRequest {}).unwrap();
    let init = r.next().unwrap().setup;
    r.complete(&d.control(init, &[]).unwrap()).unwrap();
    d.control(r.abandon().unwrap(), &[]).unwrap();
    d.elapse(MODE_CHANGE_DELAY_US);
    assert_eq!(d.state.reset_reason, ResetReason::User);
}

#[test]
fn an_app_update_is_applied_after_the_reply_and_the_device_resets() {
    let mut d = device(6).release("1.5.0").running();
    let mut app = release_module(6, "1.5.0", ModuleFunction::UserPart, 1);
    app.version += 1;
    assert_eq!(update(&mut d, &image(6, &app), false), 0);
    assert_eq!(d.state.reset_reason, ResetReason::Update);
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(
        main_version(&d, ModuleFunction::UserPart, 1),
        Some(app.version)
    );
}

#[test]
fn validate_only_applies_nothing() {
    let mut d = device(6).release("1.5.0").running();
    let before = versions(&d);
    let mut app = release_module(6, "1.5.0", ModuleFunction::UserPart, 1);
    app.version += 1;
    assert_eq!(update(&mut d, &image(6, &app), true), 0);
    assert_eq!(d.state.reset_reason, ResetReason::PowerOn);
    d.reset(ResetReason::Button, None);
    assert_eq!(versions(&d), before);
}

#[test]
fn a_system_part_is_staged_and_installed_at_the_reset() {
    let mut d = device(6).release("1.5.0").running();
    // Part 1 of 1.5.2 needs part 2 ≥ 207, and the installed part 2 needs part 1 ≥ 1502.
    let part1 = release_module(6, "1.5.2", ModuleFunction::SystemPart, 1);
    assert_eq!(update(&mut d, &image(6, &part1), false), 0);
    assert_eq!(d.state.reset_reason, ResetReason::Update);
    assert_eq!(main_version(&d, ModuleFunction::SystemPart, 1), Some(1512));
}

#[test]
fn a_gen3_bootloader_goes_through_control_requests() {
    let mut d = device(12).release("2.2.0").running();
    let mut bootloader = release_module(12, "2.2.0", ModuleFunction::Bootloader, 0);
    bootloader.version += 1;
    assert_eq!(update(&mut d, &image(12, &bootloader), false), 0);
    assert_eq!(
        main_version(&d, ModuleFunction::Bootloader, 0),
        Some(bootloader.version)
    );
    assert_eq!(d.state.mode, Mode::App);
}

#[test]
fn a_refused_part_reports_1340_and_changes_nothing() {
    let mut d = device(6).release("1.5.0").running();
    let before = versions(&d);
    // Part 2 of 1.5.2 needs part 1 ≥ 1512; 1502 is installed.
    let part2 = release_module(6, "1.5.2", ModuleFunction::SystemPart, 2);
    assert_eq!(update(&mut d, &image(6, &part2), false), -1340);
    assert_eq!(d.state.mode, Mode::App);
    assert_eq!(d.control_deadline(), None);
    d.reset(ResetReason::Button, None);
    assert_eq!(versions(&d), before);
    // Data without START, and data beyond the announced size.
    let r = ask(&mut d, &FirmwareUpdateDataRequest { data: vec![1] });
    assert_eq!(r.result, -210);
    let r = ask(&mut d, &StartFirmwareUpdateRequest { size: 1, format: 0 });
    assert_eq!(r.result, 0);
    let r = ask(&mut d, &FirmwareUpdateDataRequest { data: vec![1, 2] });
    assert_eq!(r.result, -290);
    let r = ask(
        &mut d,
        &FinishFirmwareUpdateRequest {
            validate_only: false,
        },
    );
    assert_eq!(r.result, -210, "the failed DATA cancelled the update");
    // A size beyond the OTA region.
    let r = ask(
        &mut d,
        &StartFirmwareUpdateRequest {
            size: u32::MAX,
            format: 0,
        },
    );
    assert_eq!(r.result, -1351);
    assert_eq!(
        ask(
            &mut d,
            &StartFirmwareUpdateRequest {
                size: 10,
                format: 1
            }
        )
        .result,
        -120
    );
}

#[test]
fn normal_mode_descriptors_carry_the_control_interface() {
    let d = device(12).release("2.2.0").running();
    let u = d.normal_usb_descriptors();
    assert_eq!(u16::from_le_bytes([u.device[10], u.device[11]]), 0xC00C);
    let c = &u.configuration;
    assert_eq!(usize::from(u16::from_le_bytes([c[2], c[3]])), c.len());
    assert_eq!(c[4], 3, "CDC (2 interfaces) + the control interface");
    let control = &c[c.len() - 9..];
    assert_eq!(&control[..8], [9, 4, 2, 0, 0, 0xFF, 0xFF, 0xFF]);
    let name = u.string(control[8]).unwrap();
    let text: String = name[2..].chunks(2).map(|p| char::from(p[0])).collect();
    assert_eq!(text, "Argon CDC Mode Control Interface");
    let photon = device(6)
        .release("1.5.0")
        .running()
        .normal_usb_descriptors();
    assert_eq!(photon.configuration[photon.configuration.len() - 1], 9);
}

fn flash_images(d: &Device) -> (Vec<u8>, Option<Vec<u8>>) {
    let (_, internal, external) = d.snapshot();
    (internal, external)
}

fn any_transfer() -> impl Strategy<Value = (Setup, Vec<u8>, u32)> {
    // Request types: everything but the firmware update and the factory reset (which restores
    // the factory app by design).
    let types = prop_oneof![
        Just(1u16),
        Just(20),
        Just(21),
        Just(30),
        Just(31),
        Just(40),
        Just(50),
        Just(60),
        Just(70),
        Just(71),
        Just(72),
        Just(73),
        Just(74),
        Just(75),
        Just(76),
        Just(90),
        Just(91),
        Just(302),
        any::<u16>().prop_filter("no firmware update or factory reset", |t| {
            !(250..=253).contains(t) && *t != 41
        }),
    ];
    (
        prop_oneof![Just(0xC0u8), Just(0x40), any::<u8>()],
        prop_oneof![1u8..=5, Just(0x50), any::<u8>()],
        0u16..4,
        types,
        prop_oneof![Just(64u16), 0u16..100],
        proptest::collection::vec(any::<u8>(), 0..80),
        prop_oneof![Just(0u32), 0u32..2_000_000],
    )
        .prop_map(|(rt, request, id, ty, length, data, wait)| {
            let index = if matches!(request, 2..=5) { id } else { ty };
            (
                Setup {
                    request_type: rt,
                    request,
                    value: data.len() as u16,
                    index,
                    length,
                },
                data,
                wait,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// No request sequence outside a firmware update changes flash, and the device never
    /// holds more than four requests.
    #[test]
    fn random_requests_never_change_flash(
        transfers in proptest::collection::vec(any_transfer(), 1..40)
    ) {
        let mut d = device(6).release("1.5.0").running();
        let before = flash_images(&d);
        for (setup, data, wait) in transfers {
            let _ = d.control(setup, &data);
            d.elapse(u64::from(wait));
        }
        d.elapse(MODE_CHANGE_DELAY_US);
        prop_assert!(flash_images(&d) == before);
        prop_assert!(!d.in_dfu_mode() || d.state.reset_reason == ResetReason::User);
    }
}
