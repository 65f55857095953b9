//! Fuzz the DfuSe device side (`Device::dfu_control`): arbitrary SETUP packets, data stages,
//! alt settings and bus resets never panic, replies respect wLength, every transfer to a
//! device in DFU mode is counted, and no request changes flash outside the writable segments
//! while the device stays in DFU mode.
//!
//! Input: byte 0 picks the device (Photon, Argon, Electron, P1; bit 7 = standard quirks), then
//! a stream of operations, each an opcode byte followed by its operands.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modflash_device::dfuse::DfuQuirks;
use modflash_device::{Device, ResetReason, Space};
use modflash_dfu::Setup;
use modflash_module::platform::platform;

/// Internal flash no DFU request may change (the Gen2 DCT sectors change through alt 1).
const GEN2: &[(u32, usize)] = &[(0x0800_0000, 0x4000), (0x0800_C000, 0x14000)];
const GEN3: &[(u32, usize)] = &[(0, 0x1000), (0xF8000, 0x8000)];

struct Template {
    device: Device,
    untouchable: &'static [(u32, usize)],
}

fn templates() -> &'static [Template] {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        [(6, GEN2), (12, GEN3), (10, GEN2), (8, GEN2)]
            .into_iter()
            .map(|(id, untouchable)| {
                let mut device = Device::blank(platform(id).unwrap(), [0x3b; 12]).unwrap();
                device.install_release("1.5.0", true).unwrap();
                device.reset(ResetReason::Button, Some(3.5));
                assert!(device.in_dfu_mode());
                Template {
                    device,
                    untouchable,
                }
            })
            .collect()
    })
}

fn snapshot(d: &Device, regions: &[(u32, usize)]) -> Vec<Vec<u8>> {
    regions
        .iter()
        .map(|&(a, n)| d.flash().read(Space::Internal, a, n).unwrap().to_vec())
        .collect()
}

fn unchanged(d: &Device, regions: &[(u32, usize)], before: &[Vec<u8>]) -> bool {
    regions
        .iter()
        .zip(before)
        .all(|(&(a, n), b)| d.flash().read(Space::Internal, a, n) == Some(b.as_slice()))
}

/// Pulls operands off the input; missing bytes read as 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

fn setup(request_type: u8, request: u8, value: u16, length: u16) -> Setup {
    Setup {
        request_type,
        request,
        value,
        index: 0,
        length,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let choice = input.byte();
    let templates = templates();
    let template = &templates[usize::from(choice & 0x7F) % templates.len()];
    let mut d = template.device.clone();
    if choice & 0x80 != 0 {
        d.set_dfu_quirks(DfuQuirks::standard());
    }
    let before = snapshot(&d, template.untouchable);
    let connection = d.dfu_connection();
    let mut operations = d.flash_stats().operations;
    let mut steps = 0;
    while !input.0.is_empty() && steps < 256 {
        steps += 1;
        let op = input.byte();
        let transfer = match op % 8 {
            0 => {
                let _ = d.dfu_set_alt(input.byte() % 4);
                None
            }
            1 => {
                d.dfu_bus_reset();
                None
            }
            // A DfuSe command: SET_ADDRESS / ERASE / others, with an address.
            2 => {
                let n = usize::from(input.byte() % 6);
                let mut b = input.bytes(n);
                b.resize(n, 0);
                Some((setup(0x21, 1, 0, n as u16), b))
            }
            // GETSTATUS, several times as often as the rest.
            3 | 4 => Some((setup(0xA1, 3, 0, 6), Vec::new())),
            // A data block: block number, length, then a fill pattern (cheap to reach 4 KB).
            5 => {
                let block = u16::from(input.byte() % 8);
                let len = input.u16() % 4200;
                let fill = input.byte();
                Some((setup(0x21, 1, block, len), vec![fill; usize::from(len)]))
            }
            // ABORT, CLRSTATUS, GETSTATE, UPLOAD, DETACH.
            6 => Some(match input.byte() % 5 {
                0 => (setup(0x21, 6, 0, 0), Vec::new()),
                1 => (setup(0x21, 4, 0, 0), Vec::new()),
                2 => (setup(0xA1, 5, 0, 1), Vec::new()),
                3 => (setup(0xA1, 2, input.u16() % 8, input.u16()), Vec::new()),
                _ => (setup(0x21, 0, input.u16(), 0), Vec::new()),
            }),
            // Anything: raw SETUP packet and data stage from the input.
            _ => {
                let mut raw = [0u8; 8];
                raw.iter_mut().for_each(|b| *b = input.byte());
                let s = Setup::from_bytes(raw);
                let data = if s.is_in() {
                    Vec::new()
                } else {
                    input.bytes(usize::from(s.length))
                };
                Some((s, data))
            }
        };
        if let Some((s, data)) = transfer {
            let present = d.in_dfu_mode();
            let counted = d.state.control_transfers;
            match d.dfu_control(s, &data) {
                Ok(reply) => {
                    assert!(present, "a device outside DFU mode answered");
                    assert!(
                        reply.len() <= usize::from(s.length),
                        "reply longer than wLength"
                    );
                    assert!(
                        s.is_in() || reply.is_empty(),
                        "data returned for an OUT request"
                    );
                }
                Err(_) => {}
            }
            assert_eq!(d.state.control_transfers, counted + u64::from(present));
        }
        if d.dfu_connection() != connection {
            // Left DFU mode: the firmware that boots may write flash legitimately.
            return;
        }
        // Only erase and program operations change flash.
        if d.flash_stats().operations != operations {
            operations = d.flash_stats().operations;
            assert!(
                unchanged(&d, template.untouchable, &before),
                "a DFU request changed protected flash"
            );
        }
    }
});
