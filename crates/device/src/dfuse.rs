//! The bootloader's USB DFU mode: descriptors, DfuSe state machine and Particle quirks (spec §1).

use modflash_dfu::control::{
    DFUSE_ERASE, DFUSE_GET_COMMANDS, DFUSE_READ_UNPROTECT, DFUSE_SET_ADDRESS, DFU_ABORT,
    DFU_CLRSTATUS, DFU_DETACH, DFU_DNLOAD, DFU_GETSTATE, DFU_GETSTATUS, DFU_UPLOAD,
    GET_CONFIGURATION, GET_DESCRIPTOR, GET_INTERFACE, GET_STATUS, SET_ADDRESS, SET_CONFIGURATION,
    SET_INTERFACE,
};
use modflash_dfu::descriptor::{
    DESCRIPTOR_CONFIGURATION, DESCRIPTOR_DEVICE, DESCRIPTOR_DFU_FUNCTIONAL, DESCRIPTOR_STRING,
};
use modflash_dfu::{Setup, State, Status, StatusRecord};
use modflash_module::rules::{self, AltMemory, DfuAlt};
use modflash_module::{ModuleFunction, ModuleRef};

use crate::dct as dct_store;
use crate::device::Device;
use crate::event::{DeviceEvent, RefusedOperation};
use crate::flash::{FlashError, Space};
use crate::state::{Color, Led, Mode, Pattern, ResetReason};

/// wTransferSize of the functional descriptor: the block size of DNLOAD/UPLOAD and the unit of
/// the DfuSe block-number addressing (`usbd_conf.h` XFERSIZE).
pub const TRANSFER_SIZE: u16 = 4096;

/// bcdDevice of current Particle bootloaders (older ones report 0x0200).
const BCD_DEVICE: u16 = 0x0250;
/// bMaxPacketSize0.
const EP0_SIZE: u8 = 64;
/// The DFU functional descriptor: CanDnload | CanUpload | WillDetach, detach 255 ms,
/// wTransferSize 4096, bcdDFU 0x011A (DfuSe).
const FUNCTIONAL: [u8; 9] = [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01];
/// First string index of the alt-setting names (iInterface of alt n = 6 + n).
const FIRST_ALT_STRING: u8 = 6;

// Modelled USB time, full speed (12 Mbit/s, USB 2.0 §5.5 control transfers, §8.4 frames): a
// synchronous control transfer (SETUP, optional DATA, STATUS stages, scheduled in 1 ms
// frames) completes in about one frame, so ~1 ms per transfer; each 64-byte data packet adds
// ~50 µs on the wire (64 bytes + SYNC/PID/CRC16/handshake + bit stuffing ≈ 600 bit times).
const USB_TRANSFER_US: u64 = 1_000;
const USB_PACKET_US: u64 = 50;
/// The bootloader resets about 500 ms after the leave request (MANIFEST-WAIT-RESET).
const LEAVE_RESET_US: u64 = 500_000;

/// The value ST's code stores in the state byte on UPLOAD wValue=1 (it assigns
/// `STATUS_ERRSTALLEDPKT` to `DeviceState`): not a DFU state.
const BOGUS_STATE: State = State::Unknown(Status::ErrStalledPkt.as_u8());
/// The bStatus of a refused erase, write or read (the address is not valid for the alt
/// setting).
const ERR_TARGET: Status = Status::ErrTarget;

/// The device answered a control transfer with a STALL on EP0 (the host sees `EPIPE` /
/// `LIBUSB_ERROR_PIPE`). Also returned for every request while the device is not in DFU mode
/// (see [`Device::dfu_connection`]).
pub use modflash_control::Stall;

/// Where the Particle bootloader departs from DFU 1.1 and ST's DfuSe reference code
/// (spec §1.5 "Photon bootloader specifics"). [`DfuQuirks::particle`] (the default) switches
/// them all on, [`DfuQuirks::standard`] all off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DfuQuirks {
    /// The GETSTATUS after the leave request reports dfuDNLOAD-IDLE instead of dfuMANIFEST.
    pub leave_reports_dnload_idle: bool,
    /// A failed erase or write (or an unknown DfuSe command) STALLs the status stage of the
    /// GETSTATUS that reported dfuDNBUSY, instead of entering dfuERROR with errTARGET.
    pub stall_on_failed_operation: bool,
    /// Poll timeouts: internal and external flash report 0 ms, the DCT 500 ms after an erase
    /// and 1 ms after anything else, and the value stays stale in the dfuDNLOAD-IDLE reply.
    /// Off: the modelled duration of the operation (flash timing model), rounded up to ms.
    pub particle_poll_timeouts: bool,
    /// Mass erase (a 1-byte 0x41) and read unprotect (0x92) are not recognised: dfuDNBUSY,
    /// then a failed command. Off: both erase every erasable, unprotected sector of the alt
    /// setting, and read unprotect then resets the device.
    pub no_mass_erase: bool,
    /// A request in the wrong state (DNLOAD, UPLOAD, an unknown request) STALLs without
    /// entering dfuERROR, and ABORT outside the abortable states is ignored. Off: STALL and
    /// dfuERROR/errSTALLEDPKT.
    pub wrong_state_stalls_without_error: bool,
    /// CLRSTATUS outside dfuERROR enters dfuERROR/errUNKNOWN. Off: STALL.
    pub clrstatus_outside_error_enters_error: bool,
    /// UPLOAD wValue=1 STALLs and leaves 0x0F in the state byte (ST's code stores
    /// errSTALLEDPKT in the state). Off: STALL and dfuERROR/errSTALLEDPKT.
    pub upload_block1_corrupts_state: bool,
    /// DETACH in DFU mode busy-waits wValue ms (the detach-capability test uses the wrong
    /// bit) and the device stays in DFU mode. Off: DETACH only resets the state.
    pub detach_busy_waits: bool,
    /// Photon/P1 bootloaders of the 0.7.0 line and later (version ≥ 100) reach the DCT
    /// through system part 2, so DCT reads and writes (alt 1) fail unless system parts 1 and
    /// 2 pass their CRC check (device-os.md §6.1).
    pub dct_needs_system_parts: bool,
}

impl DfuQuirks {
    /// The Particle bootloader: every quirk on.
    pub const fn particle() -> Self {
        Self {
            leave_reports_dnload_idle: true,
            stall_on_failed_operation: true,
            particle_poll_timeouts: true,
            no_mass_erase: true,
            wrong_state_stalls_without_error: true,
            clrstatus_outside_error_enters_error: true,
            upload_block1_corrupts_state: true,
            detach_busy_waits: true,
            dct_needs_system_parts: true,
        }
    }

    /// A textbook DfuSe device (DFU 1.1 error handling, ST command set): every quirk off.
    pub const fn standard() -> Self {
        Self {
            leave_reports_dnload_idle: false,
            stall_on_failed_operation: false,
            particle_poll_timeouts: false,
            no_mass_erase: false,
            wrong_state_stalls_without_error: false,
            clrstatus_outside_error_enters_error: false,
            upload_block1_corrupts_state: false,
            detach_busy_waits: false,
            dct_needs_system_parts: false,
        }
    }
}

impl Default for DfuQuirks {
    fn default() -> Self {
        Self::particle()
    }
}

/// The USB descriptors of a device, byte for byte as it serves them: the bootloader's in DFU
/// mode ([`Device::usb_descriptors`]), the firmware's in normal mode
/// ([`Device::normal_usb_descriptors`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDescriptors {
    /// Device descriptor (18 bytes).
    pub device: Vec<u8>,
    /// Configuration descriptor: one interface with an alt setting per DfuSe memory, then the
    /// DFU functional descriptor.
    pub configuration: Vec<u8>,
    /// String descriptors by index: 0 LANGID, 1 manufacturer, 2 product, 3 serial (device
    /// id), 4–5 "DFU", 6+n the alt setting names.
    pub strings: Vec<Vec<u8>>,
}

impl UsbDescriptors {
    /// Device and configuration descriptor back to back, as Linux sysfs `descriptors` shows
    /// them (what a umockdev device definition needs).
    pub fn sysfs(&self) -> Vec<u8> {
        [self.device.as_slice(), self.configuration.as_slice()].concat()
    }

    /// String descriptor `index`, if the device has it (an empty entry is an index it does
    /// not answer).
    pub fn string(&self, index: u8) -> Option<&[u8]> {
        self.strings
            .get(usize::from(index))
            .filter(|s| !s.is_empty())
            .map(Vec::as_slice)
    }

    /// The DFU functional descriptor (the last 9 bytes of the configuration).
    pub fn functional(&self) -> &[u8] {
        let n = self.configuration.len();
        &self.configuration[n.saturating_sub(FUNCTIONAL.len())..]
    }
}

/// A DNLOAD block received and waiting for the GETSTATUS that executes it.
#[derive(Clone, Debug)]
struct Pending {
    block: u16,
    data: Vec<u8>,
}

/// The bootloader's USB DFU state (RAM only: never saved, reset at every boot).
#[derive(Clone, Debug)]
pub(crate) struct DfuSession {
    /// Model switches; kept across boots.
    quirks: DfuQuirks,
    /// Counts boots; identifies one USB connection while in DFU mode. Kept across boots.
    connection: u64,
    state: State,
    status: Status,
    poll_timeout_ms: u32,
    /// The DfuSe address pointer; `None` = the bootloader's initial value.
    pointer: Option<u32>,
    alt: u8,
    pending: Option<Pending>,
}

impl Default for DfuSession {
    fn default() -> Self {
        Self {
            quirks: DfuQuirks::particle(),
            connection: 0,
            state: State::DfuIdle,
            status: Status::Ok,
            poll_timeout_ms: 0,
            pointer: None,
            alt: 0,
            pending: None,
        }
    }
}

impl DfuSession {
    /// The state after a boot: everything back to power-on values except the quirk switches;
    /// a new connection number.
    pub(crate) fn reset(&mut self) {
        *self = Self {
            quirks: self.quirks,
            connection: self.connection.wrapping_add(1),
            ..Self::default()
        };
    }
}

// ---- DfuSe memory layout strings (dfu-util dfuse_mem.c, UM0424 §4.3.2) ---------------------

const READABLE: u8 = 1;
const ERASABLE: u8 = 2;
const WRITABLE: u8 = 4;

#[derive(Clone, Copy, Debug)]
struct Segment {
    start: u64,
    end: u64,
    attrs: u8,
}

/// A parsed alt-setting string.
#[derive(Clone, Debug)]
struct AltMap {
    /// The memory it shows and the address of its first region.
    alt: DfuAlt,
    segments: Vec<Segment>,
}

impl AltMap {
    /// Parses `@Name/0xADDR/count*size<mult><type>,…[/0xADDR/…]`.
    fn parse(s: &str) -> Option<Self> {
        let alt = DfuAlt::parse(s)?;
        let mut fields = s.strip_prefix('@')?.split('/');
        fields.next()?; // the name, read by `DfuAlt::parse`
        let mut segments = Vec::new();
        while let Some(address) = fields.next() {
            let address = address.trim();
            if address.is_empty() {
                break;
            }
            let hex = address
                .strip_prefix("0x")
                .or_else(|| address.strip_prefix("0X"))?;
            let start = u32::from_str_radix(hex, 16).ok()?;
            let mut at = u64::from(start);
            for run in fields.next()?.split(',') {
                let (count, rest) = run.trim().split_once('*')?;
                let count: u64 = count.trim().parse().ok()?;
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let size: u64 = rest[..digits].parse().ok()?;
                let mut tail = rest[digits..].chars();
                let (multiplier, kind_letter) = match (tail.next(), tail.next()) {
                    (Some('K'), t) => (1024, t),
                    (Some('M'), t) => (1024 * 1024, t),
                    (Some(c @ 'a'..='g'), None) => (1, Some(c)),
                    (Some(_), t) => (1, t),
                    (None, _) => (1, None),
                };
                let attrs = kind_letter.map_or(0, |c| (c as u8) & 7);
                let len = count.checked_mul(size)?.checked_mul(multiplier)?;
                segments.push(Segment {
                    start: at,
                    end: at.checked_add(len)?,
                    attrs,
                });
                at += len;
            }
        }
        Some(Self { alt, segments })
    }

    /// True when every byte of `[address, address+len)` lies in segments with `bit`.
    fn allows(&self, address: u64, len: u64, bit: u8) -> bool {
        let end = address.saturating_add(len);
        let mut at = address;
        while at < end {
            match self.segments.iter().find(|s| at >= s.start && at < s.end) {
                Some(s) if s.attrs & bit != 0 => at = s.end,
                _ => return false,
            }
        }
        true
    }
}

/// Why an erase, write or command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Refused; the standard device reports this bStatus.
    Refused(Status),
    /// Power was cut (fault injection).
    PowerLost,
}

impl From<FlashError> for Failure {
    fn from(e: FlashError) -> Self {
        match e {
            FlashError::PowerLost => Self::PowerLost,
            FlashError::OutOfBounds { .. } => Self::Refused(ERR_TARGET),
        }
    }
}

/// What a pending block asked for (decides the Particle poll timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    SetAddress,
    Erase,
    MassErase,
    ReadUnprotect,
    Write,
    BadCommand,
}

fn truncated(mut reply: Vec<u8>, length: u16) -> Vec<u8> {
    reply.truncate(usize::from(length));
    reply
}

pub(crate) fn string_descriptor(text: &str) -> Vec<u8> {
    let units: Vec<u16> = text.encode_utf16().take(126).collect();
    let mut d = Vec::with_capacity(2 + 2 * units.len());
    d.push((2 + 2 * units.len()) as u8);
    d.push(3);
    for u in units {
        d.extend_from_slice(&u.to_le_bytes());
    }
    d
}

/// Modelled time of one control transfer with `data_len` bytes in its data stage.
pub fn usb_time_us(data_len: usize) -> u64 {
    USB_TRANSFER_US + USB_PACKET_US * data_len.div_ceil(usize::from(EP0_SIZE)) as u64
}

impl Device {
    /// The DFU-mode USB descriptors (whatever mode the device is in): the platform's DFU
    /// VID/PID, bcdDevice 0x0250, one alt setting per DfuSe memory string of the layout.
    pub fn usb_descriptors(&self) -> UsbDescriptors {
        let (vid, pid) = self
            .platform()
            .usb
            .map_or((0, 0), |u| (u.vendor, u.dfu.unwrap_or(u.normal)));
        let [vl, vh] = vid.to_le_bytes();
        let [pl, ph] = pid.to_le_bytes();
        let [bl, bh] = BCD_DEVICE.to_le_bytes();
        let device = vec![
            18, 1, 0x00, 0x02, 0, 0, 0, EP0_SIZE, vl, vh, pl, ph, bl, bh, 1, 2, 3, 1,
        ];
        let alts: Vec<&str> = self.layout().dfu_alts.iter().copied().take(16).collect();
        let total = (9 + 9 * alts.len() + FUNCTIONAL.len()) as u16;
        let [tl, th] = total.to_le_bytes();
        let mut configuration = vec![9, 2, tl, th, 1, 1, 2, 0xC0, 0x32];
        for alt in 0..alts.len() as u8 {
            configuration.extend_from_slice(&[9, 4, 0, alt, 0, 0xFE, 1, 2, FIRST_ALT_STRING + alt]);
        }
        configuration.extend_from_slice(&FUNCTIONAL);
        let mut strings = vec![
            vec![4, 3, 0x09, 0x04],
            string_descriptor("Particle"),
            string_descriptor(&format!("{} DFU Mode", self.platform().display_name)),
            string_descriptor(&self.state.device_id),
            string_descriptor("DFU"),
            string_descriptor("DFU"),
        ];
        strings.extend(alts.iter().map(|a| string_descriptor(a)));
        UsbDescriptors {
            device,
            configuration,
            strings,
        }
    }

    /// True while the bootloader's USB DFU interface is on the bus.
    pub fn in_dfu_mode(&self) -> bool {
        self.state.mode == Mode::Dfu
    }

    /// Identifies the current USB DFU connection: `None` when the device is not in DFU mode
    /// (it runs firmware, is off, or has just left DFU mode), otherwise a number that changes
    /// whenever the device resets. A host compares it around a transfer to see that the
    /// device dropped off the bus, even when it came straight back into DFU mode (for example
    /// after leaving with no valid firmware): a new number means a new enumeration.
    pub fn dfu_connection(&self) -> Option<u64> {
        self.in_dfu_mode().then_some(self.dfu.connection)
    }

    /// Identifies the device's current USB enumeration in any mode: `None` while nothing
    /// answers on USB (off, or crashing before USB starts), otherwise a number that changes at
    /// every boot. A host or an emulated bus that sees it change knows the device dropped off
    /// the bus and came back (a reset, a mode change), even into the same mode.
    pub fn usb_connection(&self) -> Option<u64> {
        (self.in_dfu_mode() || self.answers_usb()).then_some(self.dfu.connection)
    }

    /// The DfuSe quirk switches in force.
    pub fn dfu_quirks(&self) -> DfuQuirks {
        self.dfu.quirks
    }

    /// Chooses the DfuSe quirk switches (they stay across resets).
    pub fn set_dfu_quirks(&mut self, quirks: DfuQuirks) {
        self.dfu.quirks = quirks;
    }

    /// SET_INTERFACE on the DFU interface (libusb's `set_interface_alt_setting`, which usbfs
    /// sends out of band): selects the memory DNLOAD/UPLOAD address. Stalls for an alt
    /// setting the device does not have, or outside DFU mode.
    pub fn dfu_set_alt(&mut self, alt: u8) -> Result<(), Stall> {
        if !self.in_dfu_mode() || usize::from(alt) >= self.layout().dfu_alts.len() {
            return Err(Stall);
        }
        self.dfu.alt = alt;
        Ok(())
    }

    /// A USB bus reset while in DFU mode (`USBDEVFS_RESET`, `dfu-util -R`): the DFU class is
    /// de- and re-initialised (dfuIDLE, status OK, alt 0); the address pointer survives.
    pub fn dfu_bus_reset(&mut self) {
        if self.in_dfu_mode() {
            self.dfu = DfuSession {
                quirks: self.dfu.quirks,
                connection: self.dfu.connection,
                pointer: self.dfu.pointer,
                ..DfuSession::default()
            };
        }
    }

    /// Handles one control transfer on EP0: `setup`, plus the host's data stage for OUT
    /// requests (`data_out`, at least wLength bytes; ignored for IN requests). Returns the IN
    /// data stage (at most wLength bytes; empty for OUT requests) or a STALL.
    ///
    /// Served: GET_DESCRIPTOR (device, configuration, string, DFU functional), GET_STATUS,
    /// GET/SET_CONFIGURATION, GET/SET_INTERFACE, SET_ADDRESS, and the DFU class requests with
    /// the DfuSe extensions. Each transfer counts in `state.control_transfers` and adds
    /// modelled USB time.
    ///
    /// Outside DFU mode every request stalls and nothing is counted: the model has no
    /// runtime USB interface. The GETSTATUS that answers a leave request (a zero-length
    /// DNLOAD) is answered, then the device resets into its firmware before this returns;
    /// [`Device::dfu_connection`] tells the caller that the device left the bus.
    pub fn dfu_control(&mut self, setup: Setup, data_out: &[u8]) -> Result<Vec<u8>, Stall> {
        if !self.in_dfu_mode() {
            return Err(Stall);
        }
        self.state.control_transfers += 1;
        let result = match setup.request_type & 0x60 {
            0x00 => self.standard_request(setup),
            0x20 => self.class_request(setup, data_out),
            _ => Err(Stall),
        };
        let data_len = match (&result, setup.is_in()) {
            (Ok(reply), true) => reply.len(),
            (Err(_), true) => 0,
            (_, false) => data_out.len().min(usize::from(setup.length)),
        };
        self.flash_mut().add_time_us(usb_time_us(data_len));
        result
    }

    // ---- standard requests ------------------------------------------------------------------

    fn standard_request(&mut self, s: Setup) -> Result<Vec<u8>, Stall> {
        let recipient = s.request_type & 0x1F;
        let reply = match (s.is_in(), recipient, s.request) {
            // Self powered (bmAttributes 0xC0), no remote wakeup.
            (true, 0, GET_STATUS) => vec![1, 0],
            (true, 1 | 2, GET_STATUS) if s.index == 0 => vec![0, 0],
            (true, 0 | 1, GET_DESCRIPTOR) => self.descriptor(recipient, s.value)?,
            (true, 0, GET_CONFIGURATION) => vec![1],
            (false, 0, SET_CONFIGURATION) if s.value <= 1 => Vec::new(),
            (false, 0, SET_ADDRESS) if s.value <= 127 => Vec::new(),
            (true, 1, GET_INTERFACE) if s.index == 0 => vec![self.dfu.alt],
            (false, 1, SET_INTERFACE) if s.index == 0 => {
                self.dfu_set_alt(u8::try_from(s.value).map_err(|_| Stall)?)?;
                Vec::new()
            }
            _ => return Err(Stall),
        };
        Ok(truncated(reply, s.length))
    }

    fn descriptor(&self, recipient: u8, value: u16) -> Result<Vec<u8>, Stall> {
        let [index, kind] = value.to_le_bytes();
        let d = self.usb_descriptors();
        match (recipient, kind, index) {
            (0, DESCRIPTOR_DEVICE, 0) => Ok(d.device),
            (0, DESCRIPTOR_CONFIGURATION, 0) => Ok(d.configuration),
            (0, DESCRIPTOR_STRING, i) => d.string(i).map(<[u8]>::to_vec).ok_or(Stall),
            (0 | 1, DESCRIPTOR_DFU_FUNCTIONAL, 0) => Ok(FUNCTIONAL.to_vec()),
            _ => Err(Stall),
        }
    }

    // ---- DFU class requests -----------------------------------------------------------------

    fn class_request(&mut self, s: Setup, data: &[u8]) -> Result<Vec<u8>, Stall> {
        if s.request_type & 0x1F != 1 || s.index != 0 {
            return Err(Stall); // not addressed to the DFU interface (0)
        }
        let wants_in = matches!(s.request, DFU_UPLOAD | DFU_GETSTATUS | DFU_GETSTATE);
        if s.request > DFU_ABORT || s.is_in() != wants_in {
            return self.dfu_stall();
        }
        match s.request {
            DFU_DETACH => Ok(self.detach(s.value)),
            DFU_DNLOAD => self.dnload(s, data),
            DFU_UPLOAD => self.upload(s),
            DFU_GETSTATUS => self.get_status(s.length),
            DFU_CLRSTATUS => self.clear_status(),
            DFU_GETSTATE => Ok(truncated(vec![self.dfu.state.as_u8()], s.length)),
            _ => self.abort(),
        }
    }

    /// A STALL for an unexpected request: DFU 1.1 also enters dfuERROR/errSTALLEDPKT.
    fn dfu_stall(&mut self) -> Result<Vec<u8>, Stall> {
        if !self.dfu.quirks.wrong_state_stalls_without_error {
            self.dfu.state = State::Error;
            self.dfu.status = Status::ErrStalledPkt;
            self.dfu.pending = None;
        }
        Err(Stall)
    }

    /// Back to dfuIDLE with status OK (ABORT, DETACH, CLRSTATUS).
    fn enter_idle(&mut self) {
        self.dfu.state = State::DfuIdle;
        self.dfu.status = Status::Ok;
        self.dfu.poll_timeout_ms = 0;
        self.dfu.pending = None;
    }

    fn abortable(&self) -> bool {
        matches!(
            self.dfu.state,
            State::DfuIdle
                | State::DnloadSync
                | State::DnloadIdle
                | State::ManifestSync
                | State::UploadIdle
        )
    }

    fn detach(&mut self, timeout_ms: u16) -> Vec<u8> {
        if self.abortable() {
            self.enter_idle();
        }
        if self.dfu.quirks.detach_busy_waits {
            self.flash_mut().add_time_us(u64::from(timeout_ms) * 1_000);
        }
        Vec::new()
    }

    fn abort(&mut self) -> Result<Vec<u8>, Stall> {
        if self.abortable() {
            self.enter_idle();
        } else if !self.dfu.quirks.wrong_state_stalls_without_error {
            return self.dfu_stall();
        }
        Ok(Vec::new())
    }

    fn clear_status(&mut self) -> Result<Vec<u8>, Stall> {
        if self.dfu.state == State::Error {
            self.enter_idle();
        } else if self.dfu.quirks.clrstatus_outside_error_enters_error {
            self.dfu.state = State::Error;
            self.dfu.status = Status::ErrUnknown;
            self.dfu.poll_timeout_ms = 0;
            self.dfu.pending = None;
        } else {
            return self.dfu_stall();
        }
        Ok(Vec::new())
    }

    fn dnload(&mut self, s: Setup, data: &[u8]) -> Result<Vec<u8>, Stall> {
        if !matches!(self.dfu.state, State::DfuIdle | State::DnloadIdle) {
            return self.dfu_stall();
        }
        if s.length == 0 {
            // Leave: the GETSTATUS that follows answers and the device resets.
            self.dfu.state = State::ManifestSync;
            self.dfu.poll_timeout_ms = 0;
            return Ok(Vec::new());
        }
        // The real bootloader would overrun its 4096-byte buffer with a longer block.
        let block = match data.get(..usize::from(s.length)) {
            Some(block) if s.length <= TRANSFER_SIZE => block,
            _ => return self.dfu_stall(),
        };
        self.dfu.pending = Some(Pending {
            block: s.value,
            data: block.to_vec(),
        });
        self.dfu.state = State::DnloadSync;
        Ok(Vec::new())
    }

    fn upload(&mut self, s: Setup) -> Result<Vec<u8>, Stall> {
        if s.length == 0 {
            // ST's code: a zero-length UPLOAD returns to dfuIDLE from any state.
            self.dfu.state = State::DfuIdle;
            self.dfu.poll_timeout_ms = 0;
            self.dfu.pending = None;
            return Ok(Vec::new());
        }
        if !matches!(self.dfu.state, State::DfuIdle | State::UploadIdle) {
            return self.dfu_stall();
        }
        let len = usize::from(s.length);
        match s.value {
            0 => {
                let mut commands = vec![DFUSE_GET_COMMANDS, DFUSE_SET_ADDRESS, DFUSE_ERASE];
                if !self.dfu.quirks.no_mass_erase {
                    commands.push(DFUSE_READ_UNPROTECT);
                }
                self.dfu.state = if len > commands.len() {
                    State::DfuIdle
                } else {
                    State::UploadIdle
                };
                self.dfu.poll_timeout_ms = 0;
                Ok(truncated(commands, s.length))
            }
            1 if self.dfu.quirks.upload_block1_corrupts_state => {
                self.dfu.state = BOGUS_STATE;
                self.dfu.poll_timeout_ms = 0;
                Err(Stall)
            }
            1 => self.dfu_stall(),
            block => {
                self.dfu.state = State::UploadIdle;
                self.dfu.poll_timeout_ms = 0;
                let address = self.block_address(block);
                match self.alt_read(address, len) {
                    Some(bytes) => Ok(bytes),
                    None if self.dfu.quirks.wrong_state_stalls_without_error => Err(Stall),
                    None => {
                        self.dfu.state = State::Error;
                        self.dfu.status = ERR_TARGET;
                        Err(Stall)
                    }
                }
            }
        }
    }

    fn status_reply(&self, state: State, length: u16) -> Vec<u8> {
        let record = StatusRecord {
            status: self.dfu.status,
            poll_timeout_ms: self.dfu.poll_timeout_ms.min(0xFF_FFFF),
            state,
            string_index: 0,
        };
        truncated(record.to_bytes().to_vec(), length)
    }

    fn get_status(&mut self, length: u16) -> Result<Vec<u8>, Stall> {
        match self.dfu.state {
            State::DnloadSync => match self.dfu.pending.take() {
                Some(pending) => return self.execute(pending, length),
                None => {
                    self.dfu.state = State::DnloadIdle;
                    if !self.dfu.quirks.particle_poll_timeouts {
                        self.dfu.poll_timeout_ms = 0;
                    }
                }
            },
            State::ManifestSync => return Ok(self.leave(length)),
            _ => {}
        }
        Ok(self.status_reply(self.dfu.state, length))
    }

    /// The GETSTATUS after a zero-length DNLOAD: answers, then the bootloader resets.
    fn leave(&mut self, length: u16) -> Vec<u8> {
        self.dfu.state = State::Manifest;
        self.dfu.poll_timeout_ms = 1;
        let reported = if self.dfu.quirks.leave_reports_dnload_idle {
            State::DnloadIdle
        } else {
            State::Manifest
        };
        let reply = self.status_reply(reported, length);
        self.event(DeviceEvent::DfuLeave);
        self.flash_mut().add_time_us(LEAVE_RESET_US);
        self.reset(ResetReason::DfuLeave, None);
        reply
    }

    /// The GETSTATUS that reports dfuDNBUSY: the command or write runs once the reply is on
    /// its way (ST's `EP0_TxSent`); a failure STALLs that transfer's status stage (Particle)
    /// or shows as dfuERROR in the next GETSTATUS (standard).
    fn execute(&mut self, pending: Pending, length: u16) -> Result<Vec<u8>, Stall> {
        self.dfu.state = State::DnBusy;
        let before = self.flash().stats().modelled_us;
        let (operation, outcome) = self.run(&pending);
        let elapsed_us = self.flash().stats().modelled_us.saturating_sub(before);
        let memory = self.alt_map().map(|m| m.alt.memory);
        self.dfu.poll_timeout_ms = if self.dfu.quirks.particle_poll_timeouts {
            match (memory, operation) {
                (Some(AltMemory::Dct), Operation::Erase | Operation::MassErase) => 500,
                (Some(AltMemory::Dct), _) => 1,
                _ => 0,
            }
        } else {
            u32::try_from(elapsed_us.div_ceil(1_000)).unwrap_or(u32::MAX)
        };
        let reply = self.status_reply(State::DnBusy, length);
        self.dfu.state = State::DnloadSync;
        match outcome {
            Ok(()) if operation == Operation::ReadUnprotect => {
                self.event(DeviceEvent::DfuReadUnprotect);
                self.reset(ResetReason::DfuLeave, None);
                Ok(reply)
            }
            Ok(()) => Ok(reply),
            Err(Failure::PowerLost) => {
                self.state.mode = Mode::Off;
                self.state.led = Led {
                    color: Color::Off,
                    pattern: Pattern::Solid,
                };
                self.event(DeviceEvent::PowerLost);
                Err(Stall)
            }
            Err(Failure::Refused(status)) => {
                let operation = match operation {
                    Operation::Write => RefusedOperation::Write {
                        len: pending.data.len(),
                        address: self.block_address(pending.block),
                    },
                    Operation::Erase => RefusedOperation::Erase {
                        address: self.pointer(),
                    },
                    _ => RefusedOperation::Command(pending.data.first().copied().unwrap_or(0)),
                };
                self.event(DeviceEvent::DfuRefused {
                    operation,
                    alt: self.dfu.alt,
                });
                if self.dfu.quirks.stall_on_failed_operation {
                    Err(Stall)
                } else {
                    self.dfu.state = State::Error;
                    self.dfu.status = status;
                    Ok(reply)
                }
            }
        }
    }

    /// Runs a pending DNLOAD block: a DfuSe command (block 0) or data (block ≥ 2).
    fn run(&mut self, p: &Pending) -> (Operation, Result<(), Failure>) {
        let address = || {
            p.data
                .get(1..5)
                .map(|a| u32::from_le_bytes([a[0], a[1], a[2], a[3]]))
        };
        match p.block {
            0 => match (p.data.first().copied(), p.data.len(), address()) {
                (Some(DFUSE_SET_ADDRESS), 5, Some(a)) => {
                    self.dfu.pointer = Some(a);
                    (Operation::SetAddress, Ok(()))
                }
                (Some(DFUSE_ERASE), 5, Some(a)) => {
                    self.dfu.pointer = Some(a);
                    (Operation::Erase, self.alt_erase(a))
                }
                (Some(DFUSE_ERASE), 1, _) if !self.dfu.quirks.no_mass_erase => {
                    (Operation::MassErase, self.alt_mass_erase())
                }
                (Some(DFUSE_READ_UNPROTECT), 1, _) if !self.dfu.quirks.no_mass_erase => {
                    (Operation::ReadUnprotect, self.alt_mass_erase())
                }
                // ST's code accepts a 1-byte "get commands" download and does nothing.
                (Some(DFUSE_GET_COMMANDS), 1, _) => (Operation::SetAddress, Ok(())),
                _ => (
                    Operation::BadCommand,
                    Err(Failure::Refused(Status::ErrStalledPkt)),
                ),
            },
            // ST's code ignores block 1 (neither a command nor data).
            1 => (Operation::Write, Ok(())),
            block => {
                let address = self.block_address(block);
                (Operation::Write, self.alt_write(address, &p.data))
            }
        }
    }

    // ---- memory access per alt setting --------------------------------------------------------

    fn alt_map(&self) -> Option<AltMap> {
        self.layout()
            .dfu_alts
            .get(usize::from(self.dfu.alt))
            .and_then(|s| AltMap::parse(s))
    }

    /// The address pointer (initially where the bootloader starts the firmware).
    fn pointer(&self) -> u32 {
        self.dfu.pointer.unwrap_or_else(|| {
            let layout = self.layout();
            layout
                .main_bounds(ModuleRef::new(ModuleFunction::SystemPart, 1))
                .or_else(|| layout.main_bounds(ModuleRef::new(ModuleFunction::MonoFirmware, 0)))
                .map_or(layout.internal.base, |b| b.start)
        })
    }

    /// DfuSe block addressing: pointer + (wValue − 2) × wTransferSize (32-bit, as the C code).
    fn block_address(&self, block: u16) -> u32 {
        self.pointer()
            .wrapping_add(u32::from(block.saturating_sub(2)).wrapping_mul(u32::from(TRANSFER_SIZE)))
    }

    /// Flash space and address behind an alt-setting address, and the offset to add to a
    /// flash address to get back to the alt address ([`rules::AltWindow`]).
    fn map_address(&self, map: &AltMap, address: u32) -> Option<(Space, u32, i64)> {
        let window = map.alt.window(self.layout())?;
        let physical = window.flash_address(address)?;
        Some((Space::of(window.location), physical, window.offset))
    }

    /// The bootloader's own refusal to erase or write at alt address `address`
    /// ([`rules::dfu_refuses`]).
    fn protected(&self, map: &AltMap, address: u64) -> bool {
        let (Some(window), Ok(address)) = (map.alt.window(self.layout()), u32::try_from(address))
        else {
            return false;
        };
        window
            .flash_address(address)
            .is_some_and(|a| rules::dfu_refuses(self.platform(), window.location, a))
    }

    /// Whether the bootloader can reach the DCT ([`rules::dct_reachable`]).
    fn dct_reachable(&self) -> bool {
        !self.dfu.quirks.dct_needs_system_parts
            || rules::dct_reachable(&self.hal(), self.platform())
    }

    fn alt_erase(&mut self, address: u32) -> Result<(), Failure> {
        let map = self.alt_map().ok_or(Failure::Refused(ERR_TARGET))?;
        if map.alt.memory == AltMemory::Dct {
            return Ok(()); // DCT_IF_Erase: nothing to do
        }
        let (space, physical, delta) = self
            .map_address(&map, address)
            .ok_or(Failure::Refused(ERR_TARGET))?;
        let (start, size) = self
            .flash()
            .sector_at(space, physical)
            .ok_or(Failure::Refused(ERR_TARGET))?;
        let alt_start = u64::try_from(i64::from(start) + delta).unwrap_or(u64::MAX);
        if !map.allows(alt_start, u64::from(size), ERASABLE) || self.protected(&map, alt_start) {
            return Err(Failure::Refused(ERR_TARGET));
        }
        self.flash_mut().erase_sector(space, physical)?;
        Ok(())
    }

    fn alt_mass_erase(&mut self) -> Result<(), Failure> {
        let map = self.alt_map().ok_or(Failure::Refused(ERR_TARGET))?;
        if map.alt.memory == AltMemory::Dct {
            return Ok(());
        }
        let window = map
            .alt
            .window(self.layout())
            .ok_or(Failure::Refused(ERR_TARGET))?;
        let space = Space::of(window.location);
        let Some(memory) = self.flash().memory(space) else {
            return Err(Failure::Refused(ERR_TARGET));
        };
        // Alt address = flash address + delta (external alts show the chip at their base).
        let delta = window.offset;
        let sectors: Vec<(u32, u32)> = memory.geometry.sectors_iter().collect();
        for (start, size) in sectors {
            let Ok(alt_start) = u64::try_from(i64::from(start) + delta) else {
                continue;
            };
            if map.allows(alt_start, u64::from(size), ERASABLE) && !self.protected(&map, alt_start)
            {
                self.flash_mut().erase_sector(space, start)?;
            }
        }
        Ok(())
    }

    fn alt_write(&mut self, address: u32, data: &[u8]) -> Result<(), Failure> {
        let map = self.alt_map().ok_or(Failure::Refused(ERR_TARGET))?;
        if map.alt.memory == AltMemory::Dct {
            if !self.dct_reachable() {
                return Err(Failure::Refused(ERR_TARGET));
            }
            let loc = self.dct_location();
            return dct_store::write(self.flash_mut(), &loc, address as usize, data).map_err(|e| {
                match e {
                    dct_store::DctError::Flash(f) => f.into(),
                    dct_store::DctError::OutOfRange { .. } => Failure::Refused(ERR_TARGET),
                }
            });
        }
        let len = data.len() as u64;
        if !map.allows(u64::from(address), len, WRITABLE) || self.protected(&map, address.into()) {
            return Err(Failure::Refused(ERR_TARGET));
        }
        let (space, physical, _) = self
            .map_address(&map, address)
            .ok_or(Failure::Refused(ERR_TARGET))?;
        self.flash_mut().program(space, physical, data)?;
        Ok(())
    }

    /// Reads up to `len` bytes; a read reaching past the end of the memory comes back short
    /// (empty exactly at the end); a read starting outside the memory fails.
    fn alt_read(&self, address: u32, len: usize) -> Option<Vec<u8>> {
        let map = self.alt_map()?;
        if map.alt.memory == AltMemory::Dct {
            if !self.dct_reachable() {
                return None;
            }
            let dct = self.dct();
            let offset = address as usize;
            let end = offset.saturating_add(len).min(dct.len());
            return dct.get(offset..end).map(<[u8]>::to_vec);
        }
        let (space, physical, _) = self.map_address(&map, address)?;
        let memory = self.flash().memory(space)?;
        let available = memory.geometry.end().checked_sub(physical)? as usize;
        if available > 0 && !map.allows(u64::from(address), 1, READABLE) {
            return None;
        }
        // At the very end: an empty (short) block ends the upload.
        self.flash()
            .read(space, physical, len.min(available))
            .map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_strings_parse_like_dfu_util() {
        let m = AltMap::parse("@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg")
            .unwrap();
        assert_eq!(m.alt.memory, AltMemory::Internal);
        assert_eq!(m.alt.base, 0x0800_0000);
        assert!(!m.allows(0x0800_8000, 4, WRITABLE));
        assert!(m.allows(0x0800_C000, 0x4000, ERASABLE | WRITABLE));
        assert!(m.allows(0x080A_0000, 0x60000, WRITABLE));
        assert!(!m.allows(0x080F_FFFF, 2, WRITABLE), "past the end");
        let d = AltMap::parse("@DCT Flash   /0x00000000/1*016Ke").unwrap();
        assert_eq!(d.alt.memory, AltMemory::Dct);
        assert!(d.allows(0, 0x4000, WRITABLE) && !d.allows(0, 1, ERASABLE));
        let e = AltMap::parse("@External Flash   /0x80000000/1024*004Kg").unwrap();
        assert_eq!(
            (e.alt.memory, e.alt.base),
            (AltMemory::External, 0x8000_0000)
        );
        assert!(e.allows(0x803F_F000, 0x1000, WRITABLE));
        assert!(AltMap::parse("Internal").is_none());
        assert!(AltMap::parse("@x/0xZZ/1*1Ka").is_none());
    }
}
