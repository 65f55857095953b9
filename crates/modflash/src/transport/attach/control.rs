//! EP0 of the system firmware's USB device on the emulated bus: standard requests (the
//! normal-mode descriptors), the CDC serial port's line coding (14400 baud enters DFU mode,
//! 28800 listening mode, as on hardware) and Particle's vendor requests, which the device
//! model answers itself ([`Device::control`]).

use modflash_device::dfuse::usb_time_us;
use modflash_device::Device;
use modflash_dfu::Setup;

/// One control transfer to the firmware's USB device; `line` is the CDC line coding of this
/// enumeration. Vendor requests (bmRequestType 0xC0 / 0x40) go to [`Device::control`], which
/// counts them and their modelled time; every other transfer is counted and timed here, as
/// the bootloader's EP0 counts its own. The IN data stage (empty for OUT), or `None` for a
/// STALL.
pub(super) fn normal_control(
    d: &mut Device,
    s: Setup,
    data: &[u8],
    line: &mut [u8; 7],
) -> Option<Vec<u8>> {
    if s.is_vendor() {
        return d.control(s, data).ok();
    }
    d.state.control_transfers += 1;
    let reply = firmware_request(d, s, data, line);
    let stage = match (&reply, s.is_in()) {
        (Some(r), true) => r.len(),
        (None, true) => 0,
        (_, false) => data.len().min(usize::from(s.length)),
    };
    d.elapse(usb_time_us(stage));
    reply
}

fn firmware_request(d: &mut Device, s: Setup, data: &[u8], line: &mut [u8; 7]) -> Option<Vec<u8>> {
    let mut reply = match (s.request_type, s.request) {
        (0x80, 6) => {
            let [index, kind] = s.value.to_le_bytes();
            let descriptors = d.normal_usb_descriptors();
            match (kind, index) {
                (1, 0) => descriptors.device,
                (2, 0) => descriptors.configuration,
                (3, i) => descriptors.string(i)?.to_vec(),
                _ => return None,
            }
        }
        (0x80, 0) => vec![1, 0],
        (0x80, 8) => vec![1],
        (0x00, 9) | (0x21, 0x22) => Vec::new(),
        (0x21, 0x20) if s.index == 0 && data.len() >= 7 => {
            line.copy_from_slice(&data[..7]);
            match u32::from_le_bytes([data[0], data[1], data[2], data[3]]) {
                crate::transport::serial::DFU_BAUD => d.request_dfu(),
                crate::transport::serial::LISTENING_BAUD => {
                    d.enter_listening();
                }
                _ => {}
            }
            Vec::new()
        }
        (0xA1, 0x21) if s.index == 0 => line.to_vec(),
        _ => return None,
    };
    reply.truncate(usize::from(s.length));
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::Mode;
    use modflash_testkit::device::device;

    fn line_coding(baud: u32) -> (Setup, Vec<u8>) {
        let setup = Setup {
            request_type: 0x21,
            request: 0x20,
            value: 0,
            index: 0,
            length: 7,
        };
        let data = baud.to_le_bytes().into_iter().chain([0, 0, 8]).collect();
        (setup, data)
    }

    #[test]
    fn line_coding_at_14400_baud_enters_dfu_mode() {
        let mut d = device(6).release("1.5.0").powered_on();
        let mut line = [0u8; 7];
        let (setup, data) = line_coding(9600);
        normal_control(&mut d, setup, &data, &mut line).unwrap();
        assert_eq!(d.state.mode, Mode::App);
        let get = Setup {
            request_type: 0xA1,
            request: 0x21,
            value: 0,
            index: 0,
            length: 7,
        };
        assert_eq!(normal_control(&mut d, get, &[], &mut line).unwrap(), data);
        let (setup, data) = line_coding(14400);
        normal_control(&mut d, setup, &data, &mut line).unwrap();
        assert!(d.in_dfu_mode());
    }

    #[test]
    fn vendor_requests_reach_the_device_and_count_once() {
        // A raw 0x50 request for the device id (type 20): answered by Device OS 1.5.0.
        let id = Setup {
            request_type: 0xC0,
            request: 0x50,
            value: 0,
            index: 20,
            length: 64,
        };
        let mut line = [0u8; 7];
        let mut d = device(6).release("1.5.0").powered_on();
        let reply = normal_control(&mut d, id, &[], &mut line).unwrap();
        assert!(!reply.is_empty());
        assert_eq!(d.state.control_transfers, 1);
        // Standard requests count here.
        let get_device = Setup {
            request_type: 0x80,
            request: 6,
            value: 0x0100,
            index: 0,
            length: 18,
        };
        let before = d.flash().stats().modelled_us;
        assert_eq!(
            normal_control(&mut d, get_device, &[], &mut line)
                .unwrap()
                .len(),
            18
        );
        assert_eq!(d.state.control_transfers, 2);
        assert!(
            d.flash().stats().modelled_us > before,
            "USB time is modelled"
        );
        // Device OS 0.5.2 stalls vendor requests.
        let mut old = device(6).release("0.5.2").powered_on();
        assert_eq!(normal_control(&mut old, id, &[], &mut line), None);
    }
}
