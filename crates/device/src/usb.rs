//! The system firmware's USB device in normal mode (firmware running): its descriptors — a
//! composite CDC serial port plus the vendor "Control Interface" particle-usb looks for
//! (Device OS `usbd_composite.c` on Gen2, `usb_hal_cdc.c` / `usb_hal_control.cpp` on Gen3,
//! `rtl872x/usb_hal.cpp`). Its vendor requests are [`Device::control`]; the bootloader's DFU
//! mode has its own descriptors ([`Device::usb_descriptors`]).

use modflash_module::platform::Mcu;

use crate::device::Device;
use crate::dfuse::{string_descriptor, UsbDescriptors};

/// iInterface of the control interface on Gen2 (`USBD_COMPOSITE_USRSTR_BASE`).
const GEN2_CONTROL_STRING: u8 = 9;
/// iInterface of the control interface on Gen3 and rtl872x (the first class string after the
/// serial port's).
const CONTROL_STRING: u8 = 5;

impl Device {
    /// The normal-mode USB descriptors: device class Misc/IAD, the platform's normal-mode
    /// VID/PID, a CDC ACM port (interfaces 0 and 1 with an IAD) and interface 2, vendor
    /// 0xFF/0xFF/0xFF with no endpoints, named "<Product> Control Interface"; serial number =
    /// the device id. Strings by index: 0 LANGID, 1 manufacturer, 2 product, 3 serial, then
    /// the interface strings (empty entries are indices the device does not answer).
    pub fn normal_usb_descriptors(&self) -> UsbDescriptors {
        let platform = self.platform();
        let (vid, pid) = platform.usb.map_or((0, 0), |u| (u.vendor, u.normal));
        let name = platform.display_name;
        // bcdDevice: 2.50 on Gen2, 2.51 on rtl872x; Nordic's APP_USBD_DEVICE_VER 1.2 on Gen3.
        let (bcd, product, control_string) = match platform.mcu {
            Mcu::Nrf52840 => (0x0120, format!("{name} CDC Mode"), CONTROL_STRING),
            Mcu::Rtl872x => (0x0251, name.to_string(), CONTROL_STRING),
            _ => (0x0250, name.to_string(), GEN2_CONTROL_STRING),
        };
        let [vl, vh] = vid.to_le_bytes();
        let [pl, ph] = pid.to_le_bytes();
        let [bl, bh] = u16::to_le_bytes(bcd);
        let device = vec![
            18, 1, 0x00, 0x02, 0xEF, 0x02, 0x01, 64, vl, vh, pl, ph, bl, bh, 1, 2, 3, 1,
        ];
        let mut configuration = vec![9, 2, 0, 0, 3, 1, 0, 0xC0, 0x32];
        configuration.extend_from_slice(&[8, 0x0B, 0, 2, 2, 2, 1, 0]); // IAD
        configuration.extend_from_slice(&[9, 4, 0, 0, 1, 2, 2, 1, 0]); // CDC communication
        configuration.extend_from_slice(&[5, 0x24, 0x00, 0x10, 0x01]); // header
        configuration.extend_from_slice(&[5, 0x24, 0x01, 0x00, 0x01]); // call management
        configuration.extend_from_slice(&[4, 0x24, 0x02, 0x02]); // ACM
        configuration.extend_from_slice(&[5, 0x24, 0x06, 0x00, 0x01]); // union
        configuration.extend_from_slice(&[7, 5, 0x82, 0x03, 0x08, 0x00, 0xFF]); // notification
        configuration.extend_from_slice(&[9, 4, 1, 0, 2, 0x0A, 0, 0, 0]); // CDC data
        configuration.extend_from_slice(&[7, 5, 0x81, 0x02, 0x40, 0x00, 0x00]);
        configuration.extend_from_slice(&[7, 5, 0x01, 0x02, 0x40, 0x00, 0x00]);
        // The control interface: vendor class, no endpoints (requests go to EP0).
        configuration.extend_from_slice(&[9, 4, 2, 0, 0, 0xFF, 0xFF, 0xFF, control_string]);
        let [tl, th] = (configuration.len() as u16).to_le_bytes();
        configuration[2] = tl;
        configuration[3] = th;
        let mut strings = vec![
            vec![4, 3, 0x09, 0x04],
            string_descriptor("Particle"),
            string_descriptor(&product),
            string_descriptor(&self.state.device_id),
        ];
        if platform.mcu == Mcu::Nrf52840 {
            strings.push(string_descriptor(&format!("{name} Serial")));
        }
        strings.resize(usize::from(control_string), Vec::new());
        strings.push(string_descriptor(&format!("{product} Control Interface")));
        UsbDescriptors {
            device,
            configuration,
            strings,
        }
    }
}
