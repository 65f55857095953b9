//! The DfuSe device side driven by a host that replays dfu-util 0.11's control transfers
//! (spec dfu-and-harnesses.md §1.6, §1.9), against virtual Photon, Argon and Electron devices.

use modflash_device::dfuse::{DfuQuirks, Stall, TRANSFER_SIZE};
use modflash_device::{Color, Device, DeviceEvent, Mode, Pattern, ResetReason, Space};
use modflash_dfu::Setup;
use modflash_module::platform::dct;
use modflash_module::rules;
use modflash_module::{ModuleFunction, ModuleRef};
use modflash_testkit::device::{device, release_app, DEVICE_ID};
use modflash_testkit::fixture;
use proptest::prelude::*;

const SERIAL: &str = "3b0021001747353236343033";

// bState / bStatus values used in assertions.
const DFU_IDLE: u8 = 2;
const DNBUSY: u8 = 4;
const DNLOAD_IDLE: u8 = 5;
const MANIFEST: u8 = 7;
const UPLOAD_IDLE: u8 = 9;
const DFU_ERROR: u8 = 10;
const ERR_TARGET: u8 = 0x01;
const ERR_UNKNOWN: u8 = 0x0E;
const ERR_STALLEDPKT: u8 = 0x0F;

const SET_ADDRESS: u8 = 0x21;
const ERASE_PAGE: u8 = 0x41;

/// A device provisioned with `release`, then reset with SETUP held 3.5 s (DFU mode).
fn in_dfu(platform_id: u16, release: &str, with_app: bool) -> Device {
    let mut builder = device(platform_id).release(release);
    if !with_app {
        builder = builder.without_app();
    }
    let mut d = builder.powered_off();
    d.reset(ResetReason::Button, Some(3.5));
    assert_eq!(d.state.mode, Mode::Dfu, "{:#?}", d.state.events);
    d
}

fn d_read(d: &Device, address: u32, len: usize) -> Vec<u8> {
    d.flash()
        .read(Space::Internal, address, len)
        .unwrap()
        .to_vec()
}

fn internal(d: &Device) -> Vec<u8> {
    d.flash().memory(Space::Internal).unwrap().data.clone()
}

// ---- the host --------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Status {
    status: u8,
    poll_ms: u32,
    state: u8,
}

/// A minimal USB host that sends what dfu-util 0.11 sends (dfu.c, dfuse.c, dfu_load.c).
struct Host<'a> {
    dev: &'a mut Device,
    /// Every SETUP packet sent, in order.
    trace: Vec<Setup>,
    /// Every GETSTATUS answer received.
    statuses: Vec<Status>,
    /// Sum of the poll timeouts the host waited.
    slept_ms: u64,
}

impl<'a> Host<'a> {
    fn new(dev: &'a mut Device) -> Self {
        Self {
            dev,
            trace: Vec::new(),
            statuses: Vec::new(),
            slept_ms: 0,
        }
    }

    fn control(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        length: u16,
        data: &[u8],
    ) -> Result<Vec<u8>, Stall> {
        let setup = Setup {
            request_type,
            request,
            value,
            index,
            length,
        };
        self.trace.push(setup);
        let reply = self.dev.dfu_control(setup, data)?;
        assert!(
            reply.len() <= usize::from(length),
            "reply longer than wLength"
        );
        Ok(reply)
    }

    fn get_status(&mut self) -> Result<Status, Stall> {
        let r = self.control(0xA1, 3, 0, 0, 6, &[])?;
        assert_eq!(r.len(), 6);
        let s = Status {
            status: r[0],
            poll_ms: u32::from_le_bytes([r[1], r[2], r[3], 0]),
            state: r[4],
        };
        self.statuses.push(s);
        Ok(s)
    }

    fn get_state(&mut self) -> Result<u8, Stall> {
        Ok(self.control(0xA1, 5, 0, 0, 1, &[])?[0])
    }

    fn dnload(&mut self, block: u16, data: &[u8]) -> Result<(), Stall> {
        self.control(0x21, 1, block, 0, data.len() as u16, data)
            .map(drop)
    }

    fn upload(&mut self, block: u16, len: u16) -> Result<Vec<u8>, Stall> {
        self.control(0xA1, 2, block, 0, len, &[])
    }

    fn abort(&mut self) -> Result<(), Stall> {
        self.control(0x21, 6, 0, 0, 0, &[]).map(drop)
    }

    fn clear_status(&mut self) -> Result<(), Stall> {
        self.control(0x21, 4, 0, 0, 0, &[]).map(drop)
    }

    /// libusb_get_string_descriptor_ascii: GET_DESCRIPTOR(string) with wLength 255.
    fn string(&mut self, index: u8, langid: u16) -> Result<Vec<u8>, Stall> {
        self.control(0x80, 6, 0x0300 | u16::from(index), langid, 255, &[])
    }

    fn ascii(d: &[u8]) -> String {
        assert_eq!(usize::from(d[0]), d.len());
        assert_eq!(d[1], 3);
        let units: Vec<u16> = d[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    }

    /// `dfu-util -l` opens the device once per alt setting and reads these strings.
    fn probe(&mut self, alt: u8) -> (String, String) {
        let langids = self.string(0, 0).unwrap();
        assert_eq!(langids, [4, 3, 0x09, 0x04]);
        let name = Self::ascii(&self.string(6 + alt, 0x0409).unwrap());
        self.string(0, 0).unwrap();
        let serial = Self::ascii(&self.string(3, 0x0409).unwrap());
        (name, serial)
    }

    /// Claim, SET_INTERFACE, "Determining device status" (dfu-util main.c).
    fn open(&mut self, alt: u8) -> Result<(), String> {
        self.probe(alt);
        self.dev
            .dfu_set_alt(alt)
            .map_err(|_| "Cannot set alt interface")?;
        let s = self.get_status().map_err(|_| "error get_status")?;
        self.slept_ms += u64::from(s.poll_ms);
        match s.state {
            DFU_ERROR => self.clear_status().map_err(|_| "error clear_status")?,
            DNLOAD_IDLE | UPLOAD_IDLE => self.abort().map_err(|_| "can't send DFU_ABORT")?,
            _ => {}
        }
        if s.status != 0 {
            self.clear_status().map_err(|_| "error clear_status")?;
            let s = self.get_status().map_err(|_| "error get_status")?;
            if s.status != 0 {
                return Err(format!("Status is not OK: {}", s.status));
            }
        }
        Ok(())
    }

    /// dfuse_special_command.
    fn special(&mut self, address: u32, command: u8) -> Result<(), String> {
        let mut buf = vec![command];
        buf.extend_from_slice(&address.to_le_bytes());
        self.dnload(0, &buf)
            .map_err(|_| format!("Error during special command {command:#04x} download"))?;
        let mut first = true;
        loop {
            let s = self
                .get_status()
                .map_err(|_| format!("Error during special command {command:#04x} get_status"))?;
            if first && s.state != DNBUSY {
                return Err(format!("Wrong state after command {command:#04x} download"));
            }
            first = false;
            self.slept_ms += u64::from(s.poll_ms);
            if s.state != DNBUSY {
                if s.status != 0 {
                    return Err(format!("{command:#04x} not correctly executed"));
                }
                return Ok(());
            }
        }
    }

    /// dfuse_dnload_chunk.
    fn dnload_chunk(&mut self, data: &[u8], block: u16) -> Result<Status, String> {
        self.dnload(block, data)
            .map_err(|_| "Error during download".to_string())?;
        loop {
            let s = self
                .get_status()
                .map_err(|_| "Error during download get_status".to_string())?;
            self.slept_ms += u64::from(s.poll_ms);
            if matches!(s.state, DNLOAD_IDLE | DFU_ERROR | MANIFEST) {
                if s.status != 0 {
                    return Err(format!(
                        "state({}) = {}, status({}) = failed",
                        s.state, s.state, s.status
                    ));
                }
                return Ok(s);
            }
        }
    }

    /// dfu_abort_to_idle.
    fn abort_to_idle(&mut self) -> Result<(), String> {
        self.abort()
            .map_err(|_| "Error sending dfu abort request")?;
        let s = self
            .get_status()
            .map_err(|_| "Error during abort get_status")?;
        if s.state != DFU_IDLE {
            return Err("Failed to enter idle state on abort".into());
        }
        self.slept_ms += u64::from(s.poll_ms);
        Ok(())
    }

    /// The alt setting's DfuSe layout, read from its string descriptor like dfu-util does.
    fn layout(&mut self, alt: u8) -> Vec<(u64, u64, u64, u8)> {
        let s = Self::ascii(&self.string(6 + alt, 0x0409).unwrap());
        parse_layout(&s)
    }

    /// `dfu-util -a ALT -s ADDRESS[:leave] -D file` (raw binary, dfuse_dnload_element).
    fn download(&mut self, alt: u8, address: u32, data: &[u8], leave: bool) -> Result<(), String> {
        self.open(alt)?;
        let layout = self.layout(alt);
        let xfer = usize::from(TRANSFER_SIZE);
        let find = |a: u64| layout.iter().copied().find(|s| a >= s.0 && a < s.1);
        // Erase pass.
        let mut last_erased = None;
        for p in (0..data.len()).step_by(xfer) {
            let at = u64::from(address) + p as u64;
            let Some((_, _, page, attrs)) = find(at) else {
                continue;
            };
            if attrs & 2 == 0 {
                continue;
            }
            let chunk = xfer.min(data.len() - p) as u64;
            let mut erase = at & !(page - 1);
            while erase < at + chunk {
                if last_erased != Some(erase) {
                    self.special(erase as u32, ERASE_PAGE)?;
                    last_erased = Some(erase);
                }
                erase += page;
            }
        }
        // Write pass.
        for (i, chunk) in data.chunks(xfer).enumerate() {
            self.special(address + (i * xfer) as u32, SET_ADDRESS)?;
            self.dnload_chunk(chunk, 2)?;
        }
        self.abort_to_idle()?;
        if leave {
            self.special(address, SET_ADDRESS)?;
            self.dnload_chunk(&[], 2)?;
        }
        Ok(())
    }

    /// `dfu-util -a ALT -s ADDRESS:LEN -U file`.
    fn upload_file(&mut self, alt: u8, address: u32, len: usize) -> Result<Vec<u8>, String> {
        self.open(alt)?;
        self.special(address, SET_ADDRESS)?;
        self.abort_to_idle()?;
        let mut out = Vec::new();
        let mut block = 2;
        loop {
            let want = usize::from(TRANSFER_SIZE).min(len - out.len());
            let got = self
                .upload(block, want as u16)
                .map_err(|_| "Error during upload".to_string())?;
            block += 1;
            out.extend_from_slice(&got);
            if got.len() < want || out.len() >= len {
                break;
            }
        }
        self.abort_to_idle()?;
        Ok(out)
    }
}

/// dfuse_mem.c, enough for the catalogue strings: (start, end, page size, attributes).
fn parse_layout(s: &str) -> Vec<(u64, u64, u64, u8)> {
    let mut fields = s.strip_prefix('@').unwrap().split('/').skip(1);
    let mut out = Vec::new();
    while let (Some(addr), Some(segs)) = (fields.next(), fields.next()) {
        let mut at = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
        for seg in segs.split(',') {
            let (count, rest) = seg.split_once('*').unwrap();
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
            let size: u64 = rest[..digits].parse().unwrap();
            let mult = match &rest[digits..digits + 1] {
                "K" => 1024,
                "M" => 1024 * 1024,
                _ => 1,
            };
            let page = size * mult;
            let end = at + count.parse::<u64>().unwrap() * page;
            out.push((at, end, page, rest.as_bytes()[rest.len() - 1] & 7));
            at = end;
        }
    }
    out
}

// ---- descriptors -----------------------------------------------------------------------------

#[test]
fn descriptors_are_the_photon_bootloader_bytes() {
    let mut d = in_dfu(6, "1.5.0", true);
    let desc = d.usb_descriptors();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let spec = |s: &str| s.replace(' ', "").to_lowercase();
    // Spec §1.4, multi-byte fields as they appear on the wire.
    assert_eq!(
        hex(&desc.device),
        spec("12 01 0002 00 00 00 40 042B 06D0 5002 01 02 03 01")
    );
    assert_eq!(
        desc.device,
        [
            0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x04, 0x2B, 0x06, 0xD0, 0x50, 0x02,
            0x01, 0x02, 0x03, 0x01
        ]
    );
    assert_eq!(
        hex(&desc.configuration),
        spec(concat!(
            "09 02 2400 01 01 02 C0 32",
            "09 04 00 00 00 FE 01 02 06",
            "09 04 00 01 00 FE 01 02 07",
            "09 21 0B FF00 0010 1A01"
        ))
    );
    assert_eq!(
        desc.functional(),
        [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01]
    );
    assert_eq!(desc.sysfs().len(), 18 + 36);

    let mut host = Host::new(&mut d);
    // Over the wire: GET_DESCRIPTOR device / configuration (9-byte header first, like libusb).
    assert_eq!(
        host.control(0x80, 6, 0x0100, 0, 64, &[]).unwrap(),
        desc.device
    );
    let head = host.control(0x80, 6, 0x0200, 0, 9, &[]).unwrap();
    assert_eq!(head, desc.configuration[..9]);
    let total = u16::from_le_bytes([head[2], head[3]]);
    assert_eq!(
        host.control(0x80, 6, 0x0200, 0, total, &[]).unwrap(),
        desc.configuration
    );
    assert_eq!(
        host.control(0x81, 6, 0x2100, 0, 9, &[]).unwrap(),
        desc.functional()
    );
    // Strings.
    let strings: Vec<String> = (1..=7)
        .map(|i| Host::ascii(&host.string(i, 0x0409).unwrap()))
        .collect();
    assert_eq!(
        strings,
        [
            "Particle",
            "Photon DFU Mode",
            SERIAL,
            "DFU",
            "DFU",
            "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
            "@DCT Flash   /0x00000000/01*016Kg",
        ]
    );
    assert_eq!(host.string(8, 0x0409), Err(Stall));
    assert_eq!(
        host.control(0x80, 6, 0x0600, 0, 10, &[]),
        Err(Stall),
        "no device qualifier"
    );
    // Truncated to wLength.
    assert_eq!(host.string(1, 0x0409).unwrap().len(), 18);
    assert_eq!(
        host.control(0x80, 6, 0x0301, 0x0409, 4, &[]).unwrap(),
        [18, 3, b'P', 0]
    );

    // `dfu-util -l`: per alt, LANGID, iInterface, LANGID, iSerial; no class requests.
    let before = host.trace.len();
    let alt1 = host.probe(1);
    let alt0 = host.probe(0);
    assert_eq!(alt0.0, strings[5]);
    assert_eq!(alt1.0, strings[6]);
    assert_eq!((alt0.1.as_str(), alt1.1.as_str()), (SERIAL, SERIAL));
    let probes: Vec<[u8; 8]> = host.trace[before..].iter().map(|s| s.to_bytes()).collect();
    assert_eq!(probes.len(), 8);
    assert_eq!(probes[0], [0x80, 6, 0x00, 3, 0, 0, 255, 0]);
    assert_eq!(probes[1], [0x80, 6, 0x07, 3, 0x09, 0x04, 255, 0]);
    assert_eq!(probes[3], [0x80, 6, 0x03, 3, 0x09, 0x04, 255, 0]);
    assert_eq!(probes[5], [0x80, 6, 0x06, 3, 0x09, 0x04, 255, 0]);
    // The state machine was not touched.
    assert_eq!(
        host.get_status().unwrap(),
        Status {
            status: 0,
            poll_ms: 0,
            state: DFU_IDLE
        }
    );
}

#[test]
fn descriptors_follow_the_platform() {
    let p1 = in_dfu(8, "1.5.0", true).usb_descriptors();
    assert_eq!(p1.device[8..12], [0x04, 0x2B, 0x08, 0xD0]);
    assert_eq!(p1.configuration.len(), 9 + 3 * 9 + 9);
    assert_eq!(p1.configuration[2], 45);
    assert_eq!(p1.configuration[9 + 2 * 9 + 8], 8, "iInterface of alt 2");
    assert_eq!(Host::ascii(p1.string(2).unwrap()), "P1 DFU Mode");
    assert_eq!(
        Host::ascii(p1.string(8).unwrap()),
        "@Serial Flash   /0x00000000/256*004Kg"
    );
    let argon = in_dfu(12, "1.5.0", true).usb_descriptors();
    assert_eq!(argon.device[8..12], [0x04, 0x2B, 0x0C, 0xD0]);
    assert_eq!(Host::ascii(argon.string(2).unwrap()), "Argon DFU Mode");
    assert_eq!(argon.strings.len(), 9);
}

// ---- downloads -------------------------------------------------------------------------------

#[test]
fn photon_download_writes_the_app_and_leave_runs_it() {
    let mut d = in_dfu(6, "1.5.0", true);
    let app = fixture("photon_tinker.bin"); // 3952 bytes, smaller than the 1.5.0 Tinker
    let transfers = d.state.control_transfers;
    let time = d.flash_stats().modelled_us;
    let erased = d.flash_stats().sectors_erased;
    assert!(d.dfu_connection().is_some());
    let mut host = Host::new(&mut d);
    host.download(0, 0x080A_0000, &app, true).unwrap();
    let sent = host.trace.len() as u64;
    let last = *host.statuses.last().unwrap();
    let commands = host
        .trace
        .iter()
        .filter(|s| s.request_type == 0x21 && s.request == 1 && s.value == 0)
        .count();
    assert_eq!(
        commands, 3,
        "erase, SET_ADDRESS for the chunk, SET_ADDRESS before leave"
    );
    // Particle: the leave is answered with dfuDNLOAD-IDLE, then the device resets.
    assert_eq!(
        last,
        Status {
            status: 0,
            poll_ms: 1,
            state: DNLOAD_IDLE
        }
    );
    assert_eq!(d.dfu_connection(), None);
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(
        (d.state.led.color, d.state.led.pattern),
        (Color::Cyan, Pattern::Breathing)
    );
    assert!(d.state.events.contains(&DeviceEvent::DfuLeave));
    // photon_tinker.bin is user part version 2 (the 1.5.0 Tinker it replaced is version 6).
    assert_eq!(
        d.state.events.last(),
        Some(&DeviceEvent::AppRunning { version: 2 }),
        "{:#?}",
        d.state.events
    );
    // Byte-identical, and the rest of the sector was erased (the old Tinker is gone).
    let sector = d
        .flash()
        .read(Space::Internal, 0x080A_0000, 0x20000)
        .unwrap();
    assert_eq!(&sector[..app.len()], app.as_slice());
    assert!(sector[app.len()..].iter().all(|&b| b == 0xFF));
    assert_eq!(d.state.control_transfers, transfers + sent);
    assert!(d.flash_stats().sectors_erased > erased);
    // At least 1 ms per transfer plus the 128 KB sector erase (922 ms on the STM32F205).
    assert!(d.flash_stats().modelled_us >= time + sent * 1_000 + 922_000);
    // And the next control transfer finds no DFU device.
    assert_eq!(
        d.dfu_control(Setup::from_bytes([0xA1, 3, 0, 0, 0, 0, 6, 0]), &[]),
        Err(Stall)
    );
    assert_eq!(d.state.control_transfers, transfers + sent);
}

#[test]
fn dfu_util_sequence_is_the_traced_one() {
    // 10000 bytes at 0x080A0000 with :leave, as traced in spec §1.9.
    let mut d = in_dfu(6, "1.5.0", true);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut host = Host::new(&mut d);
    host.download(0, 0x080A_0000, &data, false).unwrap();
    // After the 8 probe/descriptor string requests: GETSTATUS, erase + 2 polls, then per chunk
    // SET_ADDRESS + 2 polls + data + 2 polls, then ABORT + GETSTATUS.
    let dfu: Vec<(u8, u8, u16, u16)> = host
        .trace
        .iter()
        .filter(|s| s.request_type & 0x60 == 0x20)
        .map(|s| (s.request_type, s.request, s.value, s.length))
        .collect();
    let mut expected = vec![
        (0xA1, 3, 0, 6),
        (0x21, 1, 0, 5),
        (0xA1, 3, 0, 6),
        (0xA1, 3, 0, 6),
    ];
    for len in [4096, 4096, 1808] {
        expected.extend([(0x21, 1, 0, 5), (0xA1, 3, 0, 6), (0xA1, 3, 0, 6)]);
        expected.extend([(0x21, 1, 2, len), (0xA1, 3, 0, 6), (0xA1, 3, 0, 6)]);
    }
    expected.extend([(0x21, 6, 0, 0), (0xA1, 3, 0, 6)]);
    assert_eq!(dfu, expected);
    let states: Vec<u8> = host.statuses.iter().map(|s| s.state).collect();
    assert_eq!(&states[..3], [DFU_IDLE, DNBUSY, DNLOAD_IDLE]);
    assert!(host
        .statuses
        .iter()
        .all(|s| s.poll_ms == 0 && s.status == 0));
    assert_eq!(host.slept_ms, 0, "internal flash reports 0 ms");
    assert_eq!(
        d.flash()
            .read(Space::Internal, 0x080A_0000, 10_000)
            .unwrap(),
        data
    );
    assert!(d.in_dfu_mode(), "no :leave, still in DFU mode");
}

#[test]
fn upload_returns_flash_contents() {
    let mut d = in_dfu(6, "1.5.0", true);
    let expected = d
        .flash()
        .read(Space::Internal, 0x0802_0000, 10_000)
        .unwrap()
        .to_vec();
    let mut host = Host::new(&mut d);
    let got = host.upload_file(0, 0x0802_0000, 10_000).unwrap();
    assert_eq!(got, expected);
    let uploads: Vec<(u16, u16)> = host
        .trace
        .iter()
        .filter(|s| s.request_type == 0xA1 && s.request == 2)
        .map(|s| (s.value, s.length))
        .collect();
    assert_eq!(uploads, [(2, 4096), (3, 4096), (4, 1808)]);

    // Reading up to the end of flash ends with a short block; a block wholly past it stalls.
    let tail = host.upload_file(0, 0x080F_F800, 3 * 4096).unwrap();
    assert_eq!(tail, d_read(host.dev, 0x080F_F800, 2048));
    let tail = host.upload_file(0, 0x080F_F000, 3 * 4096).unwrap();
    assert_eq!(tail.len(), 4096, "a zero-length block at the very end");
    host.special(0x0810_1000, SET_ADDRESS).unwrap();
    host.abort_to_idle().unwrap();
    assert_eq!(host.upload(2, 64), Err(Stall));
    host.abort().unwrap();
    // Get Commands.
    host.abort().unwrap();
    assert_eq!(host.upload(0, 3).unwrap(), [0x00, 0x21, 0x41]);
    assert_eq!(host.get_state().unwrap(), UPLOAD_IDLE);
    host.abort().unwrap();
    // The DCT over alt 1: offsets into the application DCT.
    let dct = host.upload_file(1, 0, 4096).unwrap();
    assert_eq!(dct, host.dev.dct()[..4096]);
    let id = host.upload_file(1, dct::DEVICE_ID as u32, 12).unwrap();
    assert_eq!(id, DEVICE_ID);
    // Past the end of the DCT: stall.
    host.dev.dfu_set_alt(1).unwrap();
    host.special(0x4000, SET_ADDRESS).unwrap();
    host.abort_to_idle().unwrap();
    assert_eq!(host.upload(2, 16), Err(Stall));
}

#[test]
fn dct_write_over_alt_1_lands_in_the_dct() {
    let mut d = in_dfu(6, "1.5.0", true);
    let claim: Vec<u8> = (0..64).map(|i| b'a' + (i % 26)).collect();
    let mut host = Host::new(&mut d);
    // dfu-util -a 1 -s 1762:64 -D claim.bin: erases "page" 0 (16 KB, erasable), then writes.
    host.download(1, 1762, &claim, false).unwrap();
    let erases: Vec<&Setup> = host
        .trace
        .iter()
        .filter(|s| s.request == 1 && s.value == 0)
        .collect();
    assert_eq!(erases.len(), 2, "one erase, one SET_ADDRESS");
    // Particle DCT poll timeouts: 500 ms after the erase (stale in the DNLOAD-IDLE reply
    // too), 1 ms after the SET_ADDRESS and the write.
    let polls: Vec<(u8, u32)> = host.statuses.iter().map(|s| (s.state, s.poll_ms)).collect();
    assert_eq!(
        polls,
        [
            (DFU_IDLE, 0),
            (DNBUSY, 500),
            (DNLOAD_IDLE, 500),
            (DNBUSY, 1),
            (DNLOAD_IDLE, 1),
            (DNBUSY, 1),
            (DNLOAD_IDLE, 1),
            (DFU_IDLE, 0)
        ]
    );
    assert_eq!(host.slept_ms, 1004);
    assert_eq!(d.dct()[1762..1826], claim);
    assert!(d.in_dfu_mode());
    // Past the end of the DCT fails (stall on the GETSTATUS that runs it).
    let end = d.dct().len();
    let mut host = Host::new(&mut d);
    assert_eq!(
        host.download(1, end as u32 - 2, &[1, 2, 3, 4], false),
        Err("Error during download get_status".into())
    );
}

#[test]
fn protected_writes_stall_and_change_nothing() {
    let mut d = in_dfu(6, "1.5.0", true);
    let before = internal(&d);
    let dct = d.dct();
    let app = fixture("photon_tinker.bin");
    let mut host = Host::new(&mut d);
    // dfu-util -s 0x08000000:force -D app.bin: no erase (segment not erasable), SET_ADDRESS +
    // data; the write fails on the GETSTATUS that runs it: a STALL with a 0 ms poll timeout,
    // which dfu-util reports as fatal.
    assert_eq!(
        host.download(0, 0x0800_0000, &app, false),
        Err("Error during download get_status".into())
    );
    // The device then reports dfuDNLOAD-IDLE, bStatus OK, as the real one.
    assert_eq!(
        host.get_status().unwrap(),
        Status {
            status: 0,
            poll_ms: 0,
            state: DNLOAD_IDLE
        }
    );
    // The EEPROM sectors are writable in the alt string but protected by the bootloader; the
    // DCT sectors are read-only; past the end of flash does not exist.
    for address in [0x0800_4000, 0x0800_C000, 0x0801_FFFF, 0x0810_0000] {
        assert_eq!(
            host.special(address, ERASE_PAGE),
            Err(format!(
                "Error during special command {ERASE_PAGE:#04x} get_status"
            )),
            "{address:#x}"
        );
        // The failed GETSTATUS left the device in dfuDNLOAD-SYNC: DNLOAD stalls until the
        // host polls or aborts.
        assert_eq!(host.get_state().unwrap(), 3);
        host.abort().unwrap();
        host.special(address, SET_ADDRESS).unwrap();
        assert_eq!(
            host.dnload_chunk(&[0; 16], 2),
            Err("Error during download get_status".into())
        );
        host.abort().unwrap();
    }
    // A write straddling the protection boundary fails too.
    host.special(0x0801_FFF8, SET_ADDRESS).unwrap();
    assert!(host.dnload_chunk(&[0; 16], 2).is_err());
    host.abort().unwrap();
    assert_eq!(internal(host.dev), before);
    assert_eq!(host.dev.dct(), dct);
    assert!(host
        .dev
        .state
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::DfuRefused { .. })));

    // A standard DfuSe device reports dfuERROR/errTARGET instead.
    host.dev.set_dfu_quirks(DfuQuirks::standard());
    let err = host.download(0, 0x0800_0000, &app, false).unwrap_err();
    assert!(
        err.contains("state(10)") && err.contains("status(1)"),
        "{err}"
    );
    assert_eq!(host.get_status().unwrap().status, ERR_TARGET);
    host.clear_status().unwrap();
    assert_eq!(
        host.get_status().unwrap(),
        Status {
            status: 0,
            poll_ms: 0,
            state: DFU_IDLE
        }
    );
    assert_eq!(internal(host.dev), before);
}

#[test]
fn block_numbers_address_consecutive_transfer_blocks() {
    let mut d = in_dfu(6, "1.5.0", true);
    let blocks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![0x10 + i; 4096]).collect();
    let mut host = Host::new(&mut d);
    host.open(0).unwrap();
    host.special(0x080C_0000, ERASE_PAGE).unwrap();
    host.special(0x080C_0000, SET_ADDRESS).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        host.dnload_chunk(b, 2 + i as u16).unwrap();
    }
    // wValue 1 is ignored (ST code); the pointer is unchanged.
    host.dnload_chunk(&[0; 8], 1).unwrap();
    host.abort_to_idle().unwrap();
    let flash = host
        .dev
        .flash()
        .read(Space::Internal, 0x080C_0000, 3 * 4096)
        .unwrap();
    assert_eq!(flash, blocks.concat());
    // Uploads use the same formula.
    for (i, b) in blocks.iter().enumerate().rev() {
        assert_eq!(host.upload(2 + i as u16, 4096).unwrap(), *b);
    }
    host.abort().unwrap();
    // Writing again without an erase stores the AND (NOR flash), as the real part does.
    host.special(0x080C_0000, SET_ADDRESS).unwrap();
    host.dnload_chunk(&[0x0F; 16], 2).unwrap();
    assert_eq!(
        host.dev
            .flash()
            .read(Space::Internal, 0x080C_0000, 1)
            .unwrap(),
        [0x10 & 0x0F]
    );
}

#[test]
fn wrong_states_and_unsupported_commands_stall() {
    let mut d = in_dfu(6, "1.5.0", true);
    let before = internal(&d);
    let mut host = Host::new(&mut d);
    host.open(0).unwrap();
    // UPLOAD in dfuDNLOAD-IDLE: STALL without dfuERROR.
    host.special(0x080A_0000, SET_ADDRESS).unwrap();
    assert_eq!(host.upload(2, 64), Err(Stall));
    assert_eq!(host.get_state().unwrap(), DNLOAD_IDLE);
    // DNLOAD in dfuUPLOAD-IDLE.
    host.abort().unwrap();
    host.upload(2, 64).unwrap();
    assert_eq!(host.dnload(2, &[0; 4]), Err(Stall));
    assert_eq!(host.get_state().unwrap(), UPLOAD_IDLE);
    host.abort().unwrap();
    // CLRSTATUS outside dfuERROR enters dfuERROR/errUNKNOWN.
    host.clear_status().unwrap();
    assert_eq!(
        host.get_status().unwrap(),
        Status {
            status: ERR_UNKNOWN,
            poll_ms: 0,
            state: DFU_ERROR
        }
    );
    assert_eq!(
        host.dnload(0, &[0x21, 0, 0, 0, 0]),
        Err(Stall),
        "DNLOAD in dfuERROR"
    );
    host.clear_status().unwrap();
    assert_eq!(host.get_state().unwrap(), DFU_IDLE);
    // UPLOAD wValue=1: STALL, and ST's bug leaves 0x0F in the state byte.
    assert_eq!(host.upload(1, 64), Err(Stall));
    assert_eq!(host.get_state().unwrap(), 0x0F);
    host.abort().unwrap();
    assert_eq!(
        host.get_state().unwrap(),
        0x0F,
        "ABORT does not leave the bogus state"
    );
    host.clear_status().unwrap();
    host.clear_status().unwrap();
    assert_eq!(host.get_state().unwrap(), DFU_IDLE);
    // Mass erase and read unprotect are not recognised: DNBUSY, then a STALL.
    for command in [vec![0x41], vec![0x92], vec![0x21, 1, 2], vec![0x55; 5]] {
        host.dnload(0, &command).unwrap();
        assert_eq!(host.get_status(), Err(Stall), "{command:02x?}");
        assert_eq!(host.get_status().unwrap().state, DNLOAD_IDLE);
        host.abort().unwrap();
    }
    // Unknown requests, wrong direction, wrong interface, more than wTransferSize.
    assert_eq!(host.control(0x21, 7, 0, 0, 0, &[]), Err(Stall));
    assert_eq!(host.control(0x21, 3, 0, 0, 6, &[0; 6]), Err(Stall));
    assert_eq!(host.control(0xA1, 3, 0, 1, 6, &[]), Err(Stall));
    assert_eq!(host.control(0x21, 1, 2, 0, 4097, &[0; 4097]), Err(Stall));
    assert_eq!(
        host.control(0x21, 1, 2, 0, 16, &[0; 8]),
        Err(Stall),
        "short data stage"
    );
    assert_eq!(
        host.control(0xC0, 1, 0, 0, 1, &[]),
        Err(Stall),
        "vendor request"
    );
    assert_eq!(host.dev.dfu_set_alt(2), Err(Stall));
    assert_eq!(host.get_state().unwrap(), DFU_IDLE);
    assert_eq!(internal(host.dev), before);

    // The same mistakes on a standard device end in dfuERROR/errSTALLEDPKT.
    host.dev.set_dfu_quirks(DfuQuirks::standard());
    host.special(0x080A_0000, SET_ADDRESS).unwrap();
    assert_eq!(host.upload(2, 64), Err(Stall));
    assert_eq!(
        host.get_status().unwrap(),
        Status {
            status: ERR_STALLEDPKT,
            poll_ms: 0,
            state: DFU_ERROR
        }
    );
    host.clear_status().unwrap();
    assert_eq!(
        host.clear_status(),
        Err(Stall),
        "CLRSTATUS outside dfuERROR"
    );
    host.clear_status().unwrap();
    assert_eq!(host.upload(1, 64), Err(Stall));
    assert_eq!(host.get_state().unwrap(), DFU_ERROR);
}

#[test]
fn counters_and_modelled_time() {
    let mut d = in_dfu(6, "1.5.0", true);
    let n = d.state.control_transfers;
    let t = d.flash_stats().modelled_us;
    let status = Setup::from_bytes([0xA1, 3, 0, 0, 0, 0, 6, 0]);
    d.dfu_control(status, &[]).unwrap();
    // 1 ms per transfer + 50 µs per 64-byte packet.
    assert_eq!(
        (d.state.control_transfers, d.flash_stats().modelled_us),
        (n + 1, t + 1_050)
    );
    // A stall counts as a transfer too.
    assert!(d
        .dfu_control(Setup::from_bytes([0x21, 9, 0, 0, 0, 0, 0, 0]), &[])
        .is_err());
    assert_eq!(d.state.control_transfers, n + 2);
    // A 4096-byte block: 64 packets, then 4096 bytes programmed at 4 µs/byte on GETSTATUS.
    let mut host = Host::new(&mut d);
    host.special(0x080C_0000, SET_ADDRESS).unwrap();
    let t = host.dev.flash_stats().modelled_us;
    host.dnload(2, &[0xAB; 4096]).unwrap();
    assert_eq!(host.dev.flash_stats().modelled_us, t + 1_000 + 64 * 50);
    host.get_status().unwrap();
    assert_eq!(
        host.dev.flash_stats().modelled_us,
        t + 4_200 + 1_050 + 4096 * 4
    );
    // Particle DETACH busy-waits wValue ms and stays in DFU mode.
    let t = host.dev.flash_stats().modelled_us;
    host.control(0x21, 0, 1000, 0, 0, &[]).unwrap();
    assert_eq!(host.dev.flash_stats().modelled_us, t + 1_000 + 1_000_000);
    assert!(host.dev.in_dfu_mode());
    // Outside DFU mode nothing answers and nothing is counted.
    let mut app = in_dfu(6, "1.5.0", true);
    app.reset(ResetReason::Button, None);
    assert_eq!(app.state.mode, Mode::App);
    let n = app.state.control_transfers;
    assert_eq!(app.dfu_control(status, &[]), Err(Stall));
    assert_eq!(app.dfu_set_alt(0), Err(Stall));
    assert_eq!(app.state.control_transfers, n);
}

#[test]
fn standard_poll_timeouts_follow_the_flash_timing_model() {
    let mut d = in_dfu(6, "1.5.0", true);
    d.set_dfu_quirks(DfuQuirks::standard());
    let mut host = Host::new(&mut d);
    host.open(0).unwrap();
    host.special(0x080C_0000, ERASE_PAGE).unwrap();
    // 128 KB STM32F205 sector: 154 ms + 6 ms/KB = 922 ms.
    assert_eq!(
        host.statuses[1],
        Status {
            status: 0,
            poll_ms: 922,
            state: DNBUSY
        }
    );
    assert_eq!(host.statuses[2].poll_ms, 0, "not stale in standard mode");
    host.special(0x080C_0000, SET_ADDRESS).unwrap();
    host.dnload_chunk(&[0; 4096], 2).unwrap();
    let n = host.statuses.len();
    assert_eq!(
        host.statuses[n - 2].poll_ms,
        17,
        "4096 bytes × 4 µs = 16.4 ms"
    );
    host.abort_to_idle().unwrap();
    // Standard mass erase: every erasable, unprotected sector (0x08020000..) becomes 0xFF.
    host.dnload(0, &[0x41]).unwrap();
    let s = host.get_status().unwrap();
    assert_eq!(s.state, DNBUSY);
    assert!(s.poll_ms >= 7 * 922, "{s:?}");
    assert_eq!(host.get_status().unwrap().state, DNLOAD_IDLE);
    let f = host
        .dev
        .flash()
        .read(Space::Internal, 0x0802_0000, 0xE_0000)
        .unwrap();
    assert!(f.iter().all(|&b| b == 0xFF));
    assert!(
        host.dev
            .flash()
            .read(Space::Internal, 0x0800_0000, 4)
            .unwrap()
            != [0xFF; 4]
    );
    // Leave reports dfuMANIFEST on a standard device; it then resets (no system firmware
    // left, so it comes straight back in DFU mode as a new connection).
    let connection = host.dev.dfu_connection().unwrap();
    host.abort_to_idle().unwrap();
    let s = host.dnload_chunk(&[], 2).unwrap();
    assert_eq!(s.state, MANIFEST);
    assert_eq!(host.dev.state.mode, Mode::Dfu);
    assert_ne!(host.dev.dfu_connection(), Some(connection));
    assert_eq!(
        host.dev.dfu_quirks(),
        DfuQuirks::standard(),
        "quirks survive resets"
    );
}

#[test]
fn leave_with_no_firmware_reenumerates_in_dfu_mode() {
    let mut d = device(6).powered_on();
    assert_eq!(d.state.mode, Mode::Dfu);
    let c = d.dfu_connection().unwrap();
    let mut host = Host::new(&mut d);
    host.open(0).unwrap();
    host.dnload_chunk(&[], 2).unwrap();
    assert_eq!(d.state.mode, Mode::Dfu);
    assert_eq!(d.dfu_connection(), Some(c + 1));
}

#[test]
fn bus_reset_returns_to_idle() {
    let mut d = in_dfu(6, "1.5.0", true);
    let mut host = Host::new(&mut d);
    host.dev.dfu_set_alt(1).unwrap();
    host.clear_status().unwrap();
    assert_eq!(host.get_state().unwrap(), DFU_ERROR);
    let c = host.dev.dfu_connection();
    host.dev.dfu_bus_reset();
    assert_eq!(host.get_state().unwrap(), DFU_IDLE);
    assert_eq!(
        host.control(0x81, 10, 0, 0, 1, &[]).unwrap(),
        [0],
        "alt 0 again"
    );
    assert_eq!(host.dev.dfu_connection(), c);
    // SET_INTERFACE as a control transfer works too.
    host.control(0x01, 11, 1, 0, 0, &[]).unwrap();
    assert_eq!(host.control(0x81, 10, 0, 0, 1, &[]).unwrap(), [1]);
}

// ---- other platforms -------------------------------------------------------------------------

#[test]
fn argon_download_internal_external_and_dct() {
    let mut d = in_dfu(12, "1.5.0", false);
    let app = release_app(12, "1.5.0");
    let before = internal(&d);
    let mut host = Host::new(&mut d);
    // Gen3 bootloader area (0xF8000, marked `a`) and the MBR page are read-only.
    assert!(host.download(0, 0xF8000, &[0; 64], false).is_err());
    assert!(host.download(0, 0x0, &[0; 64], false).is_err());
    assert_eq!(internal(host.dev), before);
    // External flash (alt 2) at 0x80000000 + offset.
    let blob: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    host.download(2, 0x8020_0000, &blob, false).unwrap();
    assert_eq!(
        host.dev
            .flash()
            .read(Space::External, 0x20_0000, blob.len())
            .unwrap(),
        blob
    );
    assert_eq!(host.upload_file(2, 0x8020_0000, blob.len()).unwrap(), blob);
    // The DCT (in the external-flash filesystem on Gen3).
    host.download(1, dct::CLAIM_CODE as u32, b"claimed!", false)
        .unwrap();
    assert_eq!(
        &host.dev.dct()[dct::CLAIM_CODE..dct::CLAIM_CODE + 8],
        b"claimed!"
    );
    // The app with 4 KB page erases, then leave.
    let trace_start = host.trace.len();
    host.download(0, 0xD4000, &app, true).unwrap();
    let erases = host.trace[trace_start..]
        .iter()
        .filter(|s| s.request_type == 0x21 && s.request == 1 && s.value == 0)
        .count();
    assert_eq!(
        erases,
        app.len().div_ceil(4096) * 2 + 1,
        "an erase and a SET_ADDRESS per 4 KB chunk, + leave"
    );
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(
        d.flash().read(Space::Internal, 0xD4000, app.len()).unwrap(),
        app
    );
}

#[test]
fn electron_download_and_leave() {
    let mut d = in_dfu(10, "1.5.0", false);
    let app = release_app(10, "1.5.0");
    let mut host = Host::new(&mut d);
    assert!(
        host.download(0, 0x0801_0000, &app, false).is_err(),
        "protected on Gen2"
    );
    host.download(0, 0x0808_0000, &app, true).unwrap();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(
        d.flash()
            .read(Space::Internal, 0x0808_0000, app.len())
            .unwrap(),
        app
    );
}

// ---- the bootloader update path and the DCT quirk ------------------------------------------------

#[test]
fn photon_0_5_2_to_1_5_0_with_the_bootloader_through_the_ota_region() {
    let mut d = in_dfu(6, "0.5.2", true);
    assert_eq!(d_bootloader_version(&d), Some(7));
    let mut host = Host::new(&mut d);
    host.download(
        0,
        0x080C_0000,
        &fixture("photon-bootloader@1.5.0+lto.bin"),
        false,
    )
    .unwrap();
    host.download(
        1,
        dct::OTA_UPDATE_FLAG as u32,
        &fixture("ota-flag-a5.bin"),
        false,
    )
    .unwrap();
    host.download(
        0,
        0x0802_0000,
        &fixture("photon-system-part1@1.5.0.bin"),
        false,
    )
    .unwrap();
    host.download(
        0,
        0x0806_0000,
        &fixture("photon-system-part2@1.5.0.bin"),
        true,
    )
    .unwrap();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
    assert_eq!(
        (d.state.led.color, d.state.led.pattern),
        (Color::Cyan, Pattern::Breathing)
    );
    assert_eq!(d_bootloader_version(&d), Some(501));
    assert_eq!(d.system_version(), Some(1502));
    assert_eq!(d.dct()[dct::OTA_UPDATE_FLAG], 0xFF, "the flag was consumed");
    assert!(
        d.state
            .events
            .contains(&DeviceEvent::BootloaderInstalled { version: 501 }),
        "{:#?}",
        d.state.events
    );
}

fn d_bootloader_version(d: &Device) -> Option<u16> {
    rules::installed_version(&d.hal(), ModuleRef::new(ModuleFunction::Bootloader, 0))
}

#[test]
fn photon_dct_access_needs_intact_system_parts_with_new_bootloaders() {
    let mut d = in_dfu(6, "1.5.0", true);
    assert_eq!(d_bootloader_version(&d), Some(501));
    let dct_before = d.dct();
    // Corrupt system part 2 (a bit cleared in its code) while the device sits in DFU mode.
    d.flash_mut()
        .program(Space::Internal, 0x0806_1000, &[0x00])
        .unwrap();
    let mut host = Host::new(&mut d);
    assert_eq!(
        host.download(1, dct::OTA_UPDATE_FLAG as u32, &[0xA5], false),
        Err("Error during download get_status".into())
    );
    host.abort().unwrap();
    assert_eq!(
        host.upload_file(1, 0, 64),
        Err("Error during upload".into())
    );
    assert_eq!(host.dev.dct(), dct_before);
    // The same on a Photon whose part 2 is erased over DFU (flashing parts before the flag).
    let mut d = in_dfu(6, "1.5.0", true);
    let mut host = Host::new(&mut d);
    host.download(0, 0x0806_0000, &[0xFF; 16], false).unwrap();
    assert!(host
        .download(1, dct::OTA_UPDATE_FLAG as u32, &[0xA5], false)
        .is_err());
    // Intact parts: the DCT is reachable.
    let mut d = in_dfu(6, "1.5.0", true);
    let mut host = Host::new(&mut d);
    host.download(1, dct::OTA_UPDATE_FLAG as u32, &[0xA5], false)
        .unwrap();
    assert_eq!(d.dct()[dct::OTA_UPDATE_FLAG], 0xA5);
    // Old bootloaders (0.5.2, version 7) have their own DCT code.
    let mut d = in_dfu(6, "0.5.2", true);
    d.flash_mut()
        .program(Space::Internal, 0x0806_1000, &[0x00])
        .unwrap();
    let mut host = Host::new(&mut d);
    host.download(1, dct::OTA_UPDATE_FLAG as u32, &[0xA5], false)
        .unwrap();
    // And the switch turns the quirk off.
    let mut d = in_dfu(6, "1.5.0", true);
    d.flash_mut()
        .program(Space::Internal, 0x0806_1000, &[0x00])
        .unwrap();
    d.set_dfu_quirks(DfuQuirks {
        dct_needs_system_parts: false,
        ..DfuQuirks::particle()
    });
    let mut host = Host::new(&mut d);
    host.download(1, dct::OTA_UPDATE_FLAG as u32, &[0xA5], false)
        .unwrap();
}

#[test]
fn power_cut_during_a_dfu_write_turns_the_device_off() {
    let mut d = in_dfu(6, "1.5.0", true);
    let mut host = Host::new(&mut d);
    host.special(0x080C_0000, SET_ADDRESS).unwrap();
    host.dnload(2, &[0; 256]).unwrap();
    host.dev.flash_mut().cut_power_after(1);
    assert_eq!(host.get_status(), Err(Stall));
    assert_eq!(d.state.mode, Mode::Off);
    assert_eq!(d.dfu_connection(), None);
    d.power_on();
    assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
}

// ---- property: arbitrary traffic ----------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    /// Any SETUP packet and data stage.
    Raw([u8; 8], Vec<u8>),
    /// DNLOAD (0x21/1) with this block number and data (wLength = data length).
    Dnload(u16, Vec<u8>),
    /// UPLOAD of `len` bytes from a block.
    Upload(u16, u16),
    /// Another DFU class request without data (GETSTATUS, CLRSTATUS, GETSTATE, ABORT, DETACH).
    Class(u8),
    /// What dfu-util does per chunk: back to dfuIDLE (CLRSTATUS or ABORT as needed), [ERASE +
    /// 2 polls], SET_ADDRESS + 2 polls, data + 2 polls.
    Chunk(bool, u32, Vec<u8>),
    SetAlt(u8),
    BusReset,
}

impl Step {
    fn transfers(&self) -> Vec<(Setup, Vec<u8>)> {
        let setup = |request_type, request, value, length| Setup {
            request_type,
            request,
            value,
            index: 0,
            length,
        };
        let status = (setup(0xA1, 3, 0, 6), Vec::new());
        let command = |c: u8, a: u32| {
            let mut b = vec![c];
            b.extend_from_slice(&a.to_le_bytes());
            (setup(0x21, 1, 0, 5), b)
        };
        if let Step::Chunk(erase, address, data) = self {
            let mut out = Vec::new();
            if *erase {
                out.extend([command(0x41, *address), status.clone(), status.clone()]);
            }
            out.extend([command(0x21, *address), status.clone(), status.clone()]);
            out.extend([
                (setup(0x21, 1, 2, data.len() as u16), data.clone()),
                status.clone(),
                status,
            ]);
            return out;
        }
        self.transfer().into_iter().collect()
    }

    fn transfer(&self) -> Option<(Setup, Vec<u8>)> {
        let setup = |request_type, request, value, length| Setup {
            request_type,
            request,
            value,
            index: 0,
            length,
        };
        Some(match self {
            Step::Raw(b, data) => (Setup::from_bytes(*b), data.clone()),
            Step::Dnload(block, data) => (setup(0x21, 1, *block, data.len() as u16), data.clone()),
            Step::Upload(block, len) => (setup(0xA1, 2, *block, *len), Vec::new()),
            Step::Class(r @ (3 | 5)) => {
                (setup(0xA1, *r, 0, if *r == 3 { 6 } else { 1 }), Vec::new())
            }
            Step::Class(r) => (setup(0x21, *r, 10, 0), Vec::new()),
            Step::SetAlt(_) | Step::BusReset | Step::Chunk(..) => return None,
        })
    }
}

fn interesting_address() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0x0800_0000u32,
            0x0800_4000,
            0x0800_8000,
            0x0800_C000,
            0x0801_0000,
            0x0801_FFF0,
            0x0802_0000,
            0x0806_0000,
            0x080A_0000,
            0x080C_0000,
            0x080E_0000,
            0x080F_F000,
            0x080F_FFF0,
            0x0810_0000,
            0,
            0x0FF0,
            0x1000,
            0x30000,
            0xD4000,
            0xF7FF0,
            0xF8000,
            0xFF000,
            0x8000_0000,
            0x8020_0000,
            0x803F_F000,
            1753,
            1762,
            0x2000,
            0x2280,
            0xFFFF_F000,
        ]),
        1 => any::<u32>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let command = (
        prop_oneof![
            6 => prop::sample::select(vec![0x21u8, 0x41]),
            1 => prop::sample::select(vec![0x92u8, 0x00, 0x55]),
        ],
        interesting_address(),
        prop_oneof![8 => Just(5usize), 1 => Just(1), 1 => 0usize..8],
    )
        .prop_map(|(c, a, n)| {
            let mut b = vec![c];
            b.extend_from_slice(&a.to_le_bytes());
            b.resize(n, 0);
            Step::Dnload(0, b)
        });
    let data = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 1..64),
        2 => (1usize..=4200, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => Just(Vec::new()),
    ];
    let write = (
        prop_oneof![6 => Just(2u16), 3 => 1u16..8, 1 => any::<u16>()],
        data,
    )
        .prop_map(|(block, data)| Step::Dnload(block, data));
    let upload = (
        prop_oneof![3 => 2u16..6, 1 => 0u16..2, 1 => any::<u16>()],
        prop_oneof![3 => Just(TRANSFER_SIZE), 2 => 0u16..80, 1 => any::<u16>()],
    )
        .prop_map(|(b, n)| Step::Upload(b, n));
    let raw = (
        any::<[u8; 8]>(),
        prop_oneof![
            prop::sample::select(vec![0x21u8, 0xA1, 0x80, 0x81, 0x00, 0x01]),
            any::<u8>()
        ],
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(mut b, rt, data)| {
            b[0] = rt;
            b[1] %= 12;
            b[4] = 0;
            b[5] = 0;
            Step::Raw(b, data)
        });
    let chunk = (
        any::<bool>(),
        interesting_address(),
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 1..64),
            1 => (1usize..=4096, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ],
    )
        .prop_map(|(erase, address, data)| Step::Chunk(erase, address, data));
    prop_oneof![
        4 => chunk,
        5 => command,
        4 => write,
        12 => prop_oneof![8 => Just(3u8), 2 => Just(4), 1 => Just(5), 3 => Just(6), 1 => Just(0)]
            .prop_map(Step::Class),
        2 => upload,
        2 => raw,
        1 => (0u8..4).prop_map(Step::SetAlt),
        1 => Just(Step::BusReset),
    ]
}

/// Photon and Argon templates in DFU mode (provisioning is the slow part).
fn template(argon: bool) -> &'static Device {
    use std::sync::OnceLock;
    static PHOTON: OnceLock<Device> = OnceLock::new();
    static ARGON: OnceLock<Device> = OnceLock::new();
    if argon {
        ARGON.get_or_init(|| in_dfu(12, "1.5.0", true))
    } else {
        PHOTON.get_or_init(|| in_dfu(6, "1.5.0", true))
    }
}

/// Internal flash no DFU request may change: Gen2 bootloader and EEPROM sectors (the DCT
/// sectors change through alt 1), Gen3 MBR and bootloader.
fn untouchable(argon: bool) -> &'static [(u32, usize)] {
    if argon {
        &[(0, 0x1000), (0xF8000, 0x8000)]
    } else {
        &[(0x0800_0000, 0x4000), (0x0800_C000, 0x14000)]
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_never_panic_or_touch_protected_flash(
        argon in any::<bool>(),
        standard in any::<bool>(),
        steps in prop::collection::vec(step(), 1..96),
    ) {
        let mut d = template(argon).clone();
        if standard {
            d.set_dfu_quirks(DfuQuirks::standard());
        }
        let regions = untouchable(argon);
        let snapshot = |d: &Device| -> Vec<Vec<u8>> {
            regions
                .iter()
                .map(|&(a, n)| d.flash().read(Space::Internal, a, n).unwrap().to_vec())
                .collect()
        };
        let before = snapshot(&d);
        let connection = d.dfu_connection();
        // One control transfer; only counted while the DFU device is on the bus.
        let send = |d: &mut Device, s: Setup, data: &[u8]| -> Result<Result<Vec<u8>, Stall>, TestCaseError> {
            let transfers = d.state.control_transfers;
            let present = d.in_dfu_mode();
            let reply = d.dfu_control(s, data);
            if let Ok(reply) = &reply {
                prop_assert!(present);
                prop_assert!(reply.len() <= usize::from(s.length));
                prop_assert!(s.is_in() || reply.is_empty());
            }
            prop_assert_eq!(d.state.control_transfers, transfers + u64::from(present));
            Ok(reply)
        };
        for step in steps {
            match &step {
                Step::SetAlt(alt) => {
                    let _ = d.dfu_set_alt(*alt);
                }
                Step::BusReset => d.dfu_bus_reset(),
                _ => {
                    if let Step::Chunk(..) = step {
                        // dfu-util's "Determining device status".
                        let status = Setup::from_bytes([0xA1, 3, 0, 0, 0, 0, 6, 0]);
                        let state = send(&mut d, status, &[])?.map_or(0, |r| r[4]);
                        let request = if state == 10 { 4 } else { 6 };
                        send(&mut d, Setup::from_bytes([0x21, request, 0, 0, 0, 0, 0, 0]), &[])?.ok();
                    }
                    for (s, data) in step.transfers() {
                        send(&mut d, s, &data)?.ok();
                    }
                }
            }
            if d.dfu_connection() != connection {
                // The device left DFU mode (and booted its firmware, which may legitimately
                // write flash): the DFU session is over. Nothing changed before the reset:
                // the leave request itself writes nothing.
                break;
            }
            prop_assert_eq!(&snapshot(&d), &before);
        }
    }
}

// ---- Device Protection ---------------------------------------------------------------------

/// `platform_id` at `release`, its bootloader replaced by the same one carrying the
/// SECURITY_MODE "protected" extension, powered off.
fn protected(platform_id: u16, release: &str) -> Device {
    let mut d = device(platform_id).release(release).powered_off();
    d.install_module(&modflash_testkit::device::protected_bootloader(
        platform_id,
        release,
    ))
    .unwrap();
    d
}

#[test]
fn a_protected_bootloader_reports_its_state_and_refuses_flash_access() {
    use modflash_module::rules::Protection;
    // Open devices report "sm=o" from the 6.2.0 bootloader on; older ones have no 0xFA string.
    let open = in_dfu(32, "6.2.0", true).usb_descriptors();
    assert_eq!(Host::ascii(open.string(0xFA).unwrap()), "sm=o");
    assert!(in_dfu(32, "5.9.0", true)
        .usb_descriptors()
        .string(0xFA)
        .is_none());

    for platform_id in [32u16, 35, 12] {
        let mut d = protected(platform_id, "6.2.0");
        assert_eq!(d.protection(), Protection::Protected);
        d.reset(ResetReason::Button, Some(3.5));
        assert_eq!(d.state.mode, Mode::Dfu);
        assert_eq!(
            Host::ascii(d.usb_descriptors().string(0xFA).unwrap()),
            "sm=p"
        );
        let before = internal(&d);
        let app = release_app(platform_id, "6.2.0");
        let start = modflash_module::Module::parse(&app)
            .unwrap()
            .info
            .start_address;
        let mut host = Host::new(&mut d);
        assert!(
            host.download(0, start, &app, false).is_err(),
            "{platform_id}"
        );
        host.abort().unwrap();
        assert!(
            host.upload_file(0, start, 256).is_err(),
            "{platform_id}: no reads"
        );
        drop(host);
        assert_eq!(internal(&d), before, "{platform_id}: nothing written");
        assert!(d
            .state
            .events
            .iter()
            .any(|e| matches!(e, DeviceEvent::DfuRefused { .. })));

        // Service mode: the application region is writable again.
        d.set_service_mode(true);
        d.reset(ResetReason::Button, Some(3.5));
        assert_eq!(
            Host::ascii(d.usb_descriptors().string(0xFA).unwrap()),
            "sm=s"
        );
        let mut host = Host::new(&mut d);
        host.download(0, start, &app, false)
            .unwrap_or_else(|e| panic!("{platform_id}: {e}"));
        drop(host);
        assert_eq!(
            d.flash()
                .read(Space::Internal, start, app.len())
                .map(<[u8]>::to_vec),
            Some(app),
            "{platform_id}"
        );
    }
}
