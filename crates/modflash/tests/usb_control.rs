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
