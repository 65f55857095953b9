//! Protected devices (Device OS 6.x Device Protection) planned for as particle-cli does: no
//! DFU (the bootloader refuses), nothing below Device OS 6.1.1, with the reason and the fix;
//! what is allowed still flashes, and a bootloader written keeps the device protected.

use std::sync::OnceLock;

use modflash::plan::{self, FlashOptions, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::request::Wanted;
use modflash::{Error, Session};
use modflash_device::{Device, Mode, ResetReason};
use modflash_module::rules::Protection;
use modflash_testkit::device::{device, protected_bootloader, release_app};

fn private_home() {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("MODFLASH_HOME", dir.path());
        dir
    });
}

fn protected_p2(release: &str) -> Device {
    let mut d = device(32).release(release).powered_off();
    d.install_module(&protected_bootloader(32, release))
        .unwrap();
    d.reset(ResetReason::Button, None);
    assert_eq!(d.protection(), Protection::Protected);
    d
}

fn flash(d: &mut Device, wanted: Wanted) -> Result<plan::Plan, Error> {
    private_home();
    let mut s = Session::virtual_device(d, "sim:test");
    let plan = wanted.plan(&mut s, &mut Quiet)?;
    plan::flash(
        &mut s,
        &plan,
        FlashOptions { backup: false },
        &mut Quiet,
        &Cancel::new(),
    )?;
    Ok(plan)
}

#[test]
fn dfu_is_refused_with_the_reason_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.bin");
    std::fs::write(&app, release_app(32, "5.9.0")).unwrap();
    let mut d = protected_p2("6.2.0");
    let before = d.flash_stats().bytes_programmed;
    let err = flash(
        &mut d,
        Wanted {
            files: vec![app.clone()],
            via: Some(Via::Dfu),
            ..Wanted::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("the device is protected"), "{err}");
    assert!(err.help_text().unwrap().contains("service mode"), "{err:?}");
    assert_eq!(d.flash_stats().bytes_programmed, before);
    // Over serial the application goes in, and the device runs it.
    flash(
        &mut d,
        Wanted {
            files: vec![app],
            via: Some(Via::Serial),
            ..Wanted::default()
        },
    )
    .unwrap();
    assert_eq!(d.state.mode, Mode::App);
}

#[test]
fn a_downgrade_below_611_is_refused() {
    let mut d = protected_p2("6.2.0");
    let before = d.flash_stats().bytes_programmed;
    let err = flash(
        &mut d,
        Wanted {
            device_os: Some("5.9.0".into()),
            via: Some(Via::Serial),
            ..Wanted::default()
        },
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("a protected device is not downgraded below Device OS 6.1.1"),
        "{text}"
    );
    assert!(err.help_text().unwrap().contains("6.1.1 or later"));
    assert_eq!(d.flash_stats().bytes_programmed, before, "nothing written");
    // An upgrade is allowed, and the bootloader it writes keeps the device protected.
    let plan = flash(
        &mut d,
        Wanted {
            device_os: Some("6.3.3".into()),
            via: Some(Via::Serial),
            ..Wanted::default()
        },
    )
    .unwrap();
    assert!(!plan.steps.is_empty());
    assert_eq!(d.device_os(), Some("6.3.3"));
    assert_eq!(d.protection(), Protection::Protected);
}
