//! Fuzz the device side of Particle's control requests: arbitrary vendor SETUP packets and data
//! stages into `modflash_control::channel::Channel` (with an owner that completes every request
//! with a reply of a fuzzed size) and into a virtual Photon's `Device::control` never panic,
//! replies respect wLength, and the channel never holds more than four requests.
//!
//! Input: a stream of operations, each an opcode byte followed by its operands.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modflash_control::channel::Channel;
use modflash_control::service::MAX_ACTIVE_REQUESTS;
use modflash_control::Setup;
use modflash_device::{Device, ResetReason};
use modflash_module::platform::platform;

fn photon() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let mut d = Device::blank(platform(6).unwrap(), [0x3b; 12]).unwrap();
        d.install_release("1.5.0", true).unwrap();
        d.reset(ResetReason::Button, None);
        d
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = data.split_at_checked(n)?;
    *data = tail;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut channel: Channel<u8> = Channel::new();
    let mut device = photon().clone();
    while let Some(op) = take(&mut input, 1) {
        match op[0] % 4 {
            // A SETUP packet and up to 255 bytes of data stage, to the channel and the device.
            0 | 1 => {
                let Some(setup) = take(&mut input, 8) else {
                    break;
                };
                let setup = Setup::from_bytes(setup.try_into().unwrap());
                let len = take(&mut input, 1).map_or(0, |n| usize::from(n[0]));
                let available = input.len();
                let stage = take(&mut input, len.min(available)).unwrap_or(&[]);
                if let Ok(reply) = channel.setup(&setup, stage) {
                    assert!(setup.is_in() || reply.is_empty());
                    assert!(reply.len() <= usize::from(setup.length).max(14));
                }
                if let Ok(reply) = device.control(setup, stage) {
                    assert!(reply.len() <= usize::from(setup.length).max(14));
                }
            }
            // The owner's turn: every ready request completes with a reply of a fuzzed size.
            2 => {
                let size = take(&mut input, 2)
                    .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
                channel.allocate();
                while let Some(ready) = channel.take_ready() {
                    channel.complete(ready.id, 0, vec![0xA5; size % 5000], Some(op[0]));
                }
                while channel.take_completed().is_some() {}
            }
            // Time passes on the device; or a bus reset.
            _ => {
                let ms = take(&mut input, 1).map_or(0, |b| u64::from(b[0]));
                device.elapse(ms * 10_000);
                if ms == 0 {
                    channel.bus_reset();
                    device.control_bus_reset();
                }
            }
        }
        assert!(channel.active_count() <= MAX_ACTIVE_REQUESTS);
    }
});
