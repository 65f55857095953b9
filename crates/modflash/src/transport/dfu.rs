//! DFU operations shared by every transport: a [`DfuSession`] over any [`DfuPort`] (libusb, or
//! a virtual device in-process) that writes and verifies, reads memory, leaves DFU mode, and
//! reads the installed modules back (headers and CRC through upload) into the one
//! [`Inventory`] shape.
//!
//! Writing uses the DfuSe engine ([`modflash_dfu::DfuSe`]): erase only the pages the data
//! touches, one SET_ADDRESS per contiguous run, block-number addressing. Verification reads the
//! data back right after the download without another SET_ADDRESS (the address pointer still
//! points at the run), and leaving skips the SET_ADDRESS when the pointer already holds the
//! jump address: the fewest control transfers that still prove every byte. Reading modules
//! back sets the pointer once and reads any block from there (UPLOAD block n reads
//! `pointer + (n − 2) × wTransferSize`), so scattered headers and suffixes cost one transfer
//! each.

use std::collections::BTreeMap;

use modflash_device::{Device, DeviceError, Space};
use modflash_dfu::control::{DFU_ABORT, DFU_DNLOAD, DFU_GETSTATUS, DFU_UPLOAD};
use modflash_dfu::descriptor::{get_descriptor, parse_string_descriptor, ConfigDescriptor};
use modflash_dfu::{
    Control, Counters, DfuSe, LeaveOutcome, MemoryLayout, Operation as DfuOperation, Progress,
    Setup, Stage, State, Status, StatusRecord, TransferError,
};
use modflash_module::platform::{Location, Store};
use modflash_module::rules::DfuAlt;
use modflash_module::softdevice;
use modflash_module::{ModuleFunction, ModuleRef, Platform};

use crate::inventory::Inventory;
use crate::progress::{Event, Observer, Operation};

/// Timeout of every control transfer this module sends itself (dfu-util uses 5000 ms).
const TIMEOUT_MS: u32 = 5000;
/// US English, the language every Particle bootloader answers in.
const LANGID_EN_US: u16 = 0x0409;
/// Bytes of a module region read to find its header: the HAL looks at the first 0x200 bytes
/// to choose the header offset (up to 0x200 on nRF52840), then reads the header there.
const HEAD_BYTES: u32 = 0x200 + modflash_module::ModuleInfo::SIZE as u32;
/// Bytes at the end of a fixed-end region that hold the suffix of a module growing downward.
const TAIL_BYTES: u32 = 4096 + 4;
/// Where a module's SHA-256 starts, counted back from its end (the CRC follows the end): the
/// suffix ends with the hash and the suffix size (spec §2.1).
const SUFFIX_HASH_OFFSET: u32 = 34;

/// How much of each module reading back takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    /// Header and suffix: what the module is, not whether its bytes are intact.
    Headers,
    /// Every byte, for the CRC check.
    Full,
}

/// A control pipe to a device in DFU mode that can also select an alternate setting.
pub trait DfuPort: Control {
    /// SET_INTERFACE: selects `alt` on DFU interface `interface` (libusb sends it out of
    /// band; a virtual device gets it directly).
    fn select_alt(&mut self, interface: u16, alt: u8) -> Result<(), TransferError>;
}

/// One alternate setting of the DFU interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AltSetting {
    /// bAlternateSetting.
    pub alt: u8,
    /// iInterface: the string holding the DfuSe memory layout.
    pub name_index: u8,
    /// The layout string, once read.
    pub name: Option<String>,
}

/// What the descriptors say about a device's DFU interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DfuInfo {
    /// Interface number.
    pub interface: u16,
    /// wTransferSize.
    pub transfer_size: u16,
    /// bcdDFUVersion 0x011A (ST DfuSe).
    pub dfuse: bool,
    /// The alternate settings in order.
    pub alts: Vec<AltSetting>,
}

impl DfuInfo {
    /// From a parsed configuration descriptor: the first DFU-mode interface, its alt settings
    /// and the functional descriptor.
    pub fn from_config(config: &ConfigDescriptor) -> Result<Self, DfuOpError> {
        let functional = config
            .functional_descriptor()
            .ok_or_else(|| DfuOpError::NotDfu("it has no DFU functional descriptor".into()))?;
        let mut alts: Vec<AltSetting> = Vec::new();
        let mut interface = None;
        for i in config.dfu_interfaces() {
            if i.dfu_mode() != Some(modflash_dfu::DfuMode::Dfu) {
                continue;
            }
            let number = *interface.get_or_insert(i.number);
            if i.number != number || alts.iter().any(|a| a.alt == i.alt_setting) {
                continue;
            }
            alts.push(AltSetting {
                alt: i.alt_setting,
                name_index: i.name_index,
                name: None,
            });
        }
        let interface = interface.ok_or_else(|| {
            DfuOpError::NotDfu("it has no DFU-mode interface (class FE/01/02)".into())
        })?;
        if functional.transfer_size == 0 {
            return Err(DfuOpError::NotDfu(
                "its DFU functional descriptor says wTransferSize 0".into(),
            ));
        }
        Ok(Self {
            interface: u16::from(interface),
            transfer_size: functional.transfer_size,
            dfuse: functional.is_dfuse(),
            alts,
        })
    }
}

/// Why a DFU operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DfuOpError {
    /// The protocol engine reported an error.
    #[error("{context}: {source}")]
    #[diagnostic(code(modflash::dfu::protocol), help("{}", engine_help(source)))]
    Dfu {
        /// What modflash was doing.
        context: String,
        /// The engine's error (what the device did).
        #[source]
        source: modflash_dfu::Error,
    },
    /// The device is not a DFU device as modflash needs it.
    #[error("the device is not usable for DFU: {0}")]
    #[diagnostic(code(modflash::dfu::not_dfu))]
    NotDfu(String),
    /// No such alternate setting.
    #[error("the device has no alternate setting {alt} (it has {count})")]
    #[diagnostic(
        code(modflash::dfu::no_alt),
        help("alt 0 is internal flash, alt 1 the DCT")
    )]
    NoAlt {
        /// Requested alt.
        alt: u8,
        /// How many it has.
        count: usize,
    },
    /// The alternate setting's name is not a usable DfuSe memory layout.
    #[error("alternate setting {alt} (\"{name}\") is not a usable DfuSe memory layout: {reason}")]
    #[diagnostic(code(modflash::dfu::layout))]
    Layout {
        /// The alt.
        alt: u8,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// SET_INTERFACE failed.
    #[error("cannot select alternate setting {alt}: {error}")]
    #[diagnostic(code(modflash::dfu::select_alt), help("replug the device and retry"))]
    SelectAlt {
        /// The alt.
        alt: u8,
        /// The transport's error.
        error: TransferError,
    },
    /// The modules read back could not be evaluated.
    #[error("cannot evaluate the modules read back over DFU: {0}")]
    #[diagnostic(code(modflash::dfu::model))]
    Model(#[from] DeviceError),
}

impl DfuOpError {
    fn dfu(context: impl Into<String>) -> impl FnOnce(modflash_dfu::Error) -> Self {
        move |source| Self::Dfu {
            context: context.into(),
            source,
        }
    }

    /// True when the device refused the operation or the read-back differs (the checked
    /// thing failed), rather than the transport failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Dfu {
                source: modflash_dfu::Error::Verify { .. }
                    | modflash_dfu::Error::Refused { .. }
                    | modflash_dfu::Error::DeviceStatus { .. }
                    | modflash_dfu::Error::NotWritable { .. }
                    | modflash_dfu::Error::NotReadable { .. }
                    | modflash_dfu::Error::NotInLayout { .. },
                ..
            }
        )
    }
}

/// What to do about an engine error.
fn engine_help(e: &modflash_dfu::Error) -> &'static str {
    match e {
        modflash_dfu::Error::Disconnected { .. } => {
            "the device left the bus: check the cable, put it back in DFU mode (blinking \
             yellow) and run the command again"
        }
        modflash_dfu::Error::Timeout { .. } | modflash_dfu::Error::StuckBusy { .. } => {
            "replug the device, put it in DFU mode and retry"
        }
        modflash_dfu::Error::Verify { .. } => {
            "the flash does not hold what was written: run the command again; if it keeps \
             failing the flash may be worn or protected"
        }
        modflash_dfu::Error::NotWritable { .. }
        | modflash_dfu::Error::NotReadable { .. }
        | modflash_dfu::Error::NotInLayout { .. } => {
            "check the address and the alternate setting against `dfu-util -l`"
        }
        _ => {
            "run the command again; if it fails again, reset the device into DFU mode (hold \
             SETUP, tap RESET, release SETUP when it blinks yellow)"
        }
    }
}

/// Result of reading the installed modules back over DFU.
#[derive(Clone, Debug)]
pub struct ReadBack {
    /// The modules, as the device's own HAL would list them.
    pub inventory: Inventory,
    /// Bytes read.
    pub bytes_read: u64,
    /// What the read did not establish: memories without an alternate setting, module bodies
    /// left unread.
    pub notes: Vec<String>,
}

/// Memory images built from what was read over DFU (0xFF where nothing was read).
#[derive(Clone, Debug)]
struct Shadow {
    platform: &'static Platform,
    internal: Vec<u8>,
    internal_base: u32,
    external: Option<(Vec<u8>, u32)>,
    /// Ranges already read, per space: start → end.
    read: [BTreeMap<u32, u32>; 2],
}

impl Shadow {
    fn new(platform: &'static Platform) -> Result<Self, DfuOpError> {
        let blank = Device::blank(platform, [0; 12])?;
        let mem = |space| {
            blank
                .flash()
                .memory(space)
                .map(|m| (vec![0xFF; m.data.len()], m.geometry.base))
        };
        let (internal, internal_base) = mem(Space::Internal).ok_or(DfuOpError::Model(
            DeviceError::NoMemoryMap(platform.display_name),
        ))?;
        Ok(Self {
            platform,
            internal,
            internal_base,
            external: mem(Space::External),
            read: [BTreeMap::new(), BTreeMap::new()],
        })
    }

    fn image(&mut self, space: Space) -> Option<(&mut Vec<u8>, u32)> {
        match space {
            Space::Internal => Some((&mut self.internal, self.internal_base)),
            Space::External => self.external.as_mut().map(|(v, b)| (v, *b)),
        }
    }

    fn slot(space: Space) -> usize {
        usize::from(space == Space::External)
    }

    /// `[start, end)` clipped to the memory, minus what was read already.
    fn missing(&mut self, space: Space, start: u32, end: u32) -> Vec<(u32, u32)> {
        let Some((img, base)) = self.image(space) else {
            return Vec::new();
        };
        let mem_end = u64::from(base) + img.len() as u64;
        let start = start.max(base);
        let end = u64::from(end).min(mem_end) as u32;
        let mut out = Vec::new();
        let mut cur = start;
        for (&s, &e) in self.read[Self::slot(space)].range(..end) {
            if e <= cur {
                continue;
            }
            if s > cur {
                out.push((cur, s.min(end)));
            }
            cur = cur.max(e);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            out.push((cur, end));
        }
        out
    }

    fn store(&mut self, space: Space, address: u32, bytes: &[u8]) {
        if let Some((img, base)) = self.image(space) {
            let Some(off) = address.checked_sub(base).map(|o| o as usize) else {
                return;
            };
            if let Some(dst) = img.get_mut(off..off.saturating_add(bytes.len())) {
                dst.copy_from_slice(bytes);
            }
        }
        let end = address.saturating_add(bytes.len() as u32);
        let map = &mut self.read[Self::slot(space)];
        // Merge with overlapping or adjacent ranges.
        let mut start = address;
        let mut stop = end;
        let overlapping: Vec<(u32, u32)> = map
            .range(..=end)
            .filter(|(_, &e)| e >= address)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            map.remove(&s);
            start = start.min(s);
            stop = stop.max(e);
        }
        map.insert(start, stop);
    }

    fn erase(&mut self, space: Space, start: u32, end: u64) {
        if let Some((img, base)) = self.image(space) {
            let from = start.saturating_sub(base) as usize;
            let to = (end.saturating_sub(u64::from(base)) as usize).min(img.len());
            if let Some(dst) = img.get_mut(from..to) {
                dst.fill(0xFF);
            }
        }
    }

    fn device(&self) -> Result<Device, DfuOpError> {
        let mut d = Device::blank(self.platform, [0; 12])?;
        d.flash_mut()
            .load(Space::Internal, self.internal.clone())
            .map_err(|source| DeviceError::Image {
                space: Space::Internal,
                source,
            })?;
        if let Some((ext, _)) = &self.external {
            d.flash_mut()
                .load(Space::External, ext.clone())
                .map_err(|source| DeviceError::Image {
                    space: Space::External,
                    source,
                })?;
        }
        Ok(d)
    }
}

/// Where a flash space shows up over DFU.
#[derive(Clone, Copy, Debug)]
struct SpaceAlt {
    alt: u8,
    /// Alt address = flash address + delta (the alt's [`modflash_module::rules::AltWindow`]).
    delta: i64,
}

/// What of a DFU write is read back and compared with what was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteCheck {
    /// Nothing (the user asked not to verify).
    Nothing,
    /// Every byte.
    EveryByte,
    /// The transfer blocks holding these byte ranges of the data (a module's header and its
    /// suffix with the CRC, when the device checks the CRC over the rest itself), compared in
    /// full.
    Blocks(Vec<std::ops::Range<usize>>),
}

impl WriteCheck {
    /// Whether block `n` (from 0) of `size` bytes is read back.
    fn reads_block(&self, n: usize, size: usize) -> bool {
        let (start, end) = (n * size, (n + 1) * size);
        match self {
            Self::Nothing => false,
            Self::EveryByte => true,
            Self::Blocks(ranges) => ranges.iter().any(|r| r.start < end && start < r.end),
        }
    }
}

/// What a suspended [`DfuSession`] knows apart from its port.
#[derive(Clone, Debug)]
pub struct DfuMemo {
    info: DfuInfo,
    alt: Option<u8>,
    pointer: Option<u32>,
    counters: Counters,
    descriptor_reads: u32,
    shadow: Option<Shadow>,
    staged: bool,
}

impl DfuMemo {
    /// Every control transfer the session sent.
    pub fn control_transfers(&self) -> u32 {
        self.counters.control_transfers() + self.descriptor_reads
    }
}

/// A DFU session on one device: alternate settings, writes with read-back verification,
/// reads, leave, and the installed modules read back. Counts every control transfer.
pub struct DfuSession<P: DfuPort> {
    port: P,
    info: DfuInfo,
    alt: Option<u8>,
    /// The DfuSe address pointer when known, for the selected alt, with the device idle.
    pointer: Option<u32>,
    /// The address pointer block reads left, for the selected alt (the device in dfuIDLE or
    /// dfuUPLOAD-IDLE): more blocks can be read from it without setting it again.
    read_base: Option<u32>,
    counters: Counters,
    descriptor_reads: u32,
    shadow: Option<Shadow>,
    /// A DCT write happened: the next boot may apply staged updates the shadow cannot show.
    staged: bool,
}

impl<P: DfuPort> DfuSession<P> {
    /// A session on `port`, described by `info` (alt names are read when first needed).
    pub fn new(port: P, info: DfuInfo) -> Self {
        Self {
            port,
            info,
            alt: None,
            pointer: None,
            read_base: None,
            counters: Counters::default(),
            descriptor_reads: 0,
            shadow: None,
            staged: false,
        }
    }

    /// The DFU interface description.
    pub fn info(&self) -> &DfuInfo {
        &self.info
    }

    /// The port.
    pub fn port(&mut self) -> &mut P {
        &mut self.port
    }

    /// Gives the port back.
    pub fn into_port(self) -> P {
        self.port
    }

    /// Splits the session into its port and what it knows (alt names, the address pointer,
    /// counters, the modules read back), so a port that is only borrowed for one operation
    /// can be given back and the session resumed later with [`DfuSession::resume`].
    pub fn suspend(self) -> (P, DfuMemo) {
        let memo = DfuMemo {
            info: self.info,
            alt: self.alt,
            pointer: self.pointer,
            counters: self.counters,
            descriptor_reads: self.descriptor_reads,
            shadow: self.shadow,
            staged: self.staged,
        };
        (self.port, memo)
    }

    /// A suspended session on `port` again.
    pub fn resume(port: P, memo: DfuMemo) -> Self {
        Self {
            port,
            info: memo.info,
            alt: memo.alt,
            pointer: memo.pointer,
            read_base: None,
            counters: memo.counters,
            descriptor_reads: memo.descriptor_reads,
            shadow: memo.shadow,
            staged: memo.staged,
        }
    }

    /// DFU requests sent so far, by kind (GET_DESCRIPTOR reads are in
    /// [`DfuSession::control_transfers`] only).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Every control transfer sent so far, string descriptor reads included.
    pub fn control_transfers(&self) -> u32 {
        self.counters.control_transfers() + self.descriptor_reads
    }

    /// The memory-layout string of `alt` (read from the device once).
    pub fn alt_name(&mut self, alt: u8) -> Result<String, DfuOpError> {
        let count = self.info.alts.len();
        let entry = self
            .info
            .alts
            .iter()
            .position(|a| a.alt == alt)
            .ok_or(DfuOpError::NoAlt { alt, count })?;
        if let Some(name) = &self.info.alts[entry].name {
            return Ok(name.clone());
        }
        let index = self.info.alts[entry].name_index;
        if index == 0 {
            return Err(DfuOpError::Layout {
                alt,
                name: String::new(),
                reason: "the alternate setting has no name string".into(),
            });
        }
        self.descriptor_reads += 1;
        let raw = get_descriptor(&mut self.port, 3, index, LANGID_EN_US, 255)
            .map_err(DfuOpError::dfu(format!("reading the name of alt {alt}")))?;
        let name = parse_string_descriptor(&raw)
            .map_err(DfuOpError::dfu(format!("reading the name of alt {alt}")))?;
        self.info.alts[entry].name = Some(name.clone());
        Ok(name)
    }

    /// The DfuSe memory layout of `alt`.
    pub fn layout(&mut self, alt: u8) -> Result<MemoryLayout, DfuOpError> {
        let name = self.alt_name(alt)?;
        MemoryLayout::parse(&name).map_err(|e| DfuOpError::Layout {
            alt,
            name: name.clone(),
            reason: e.to_string(),
        })
    }

    fn select(&mut self, alt: u8) -> Result<(), DfuOpError> {
        if self.alt == Some(alt) {
            return Ok(());
        }
        if !self.info.alts.iter().any(|a| a.alt == alt) {
            return Err(DfuOpError::NoAlt {
                alt,
                count: self.info.alts.len(),
            });
        }
        self.port
            .select_alt(self.info.interface, alt)
            .map_err(|error| DfuOpError::SelectAlt { alt, error })?;
        self.alt = Some(alt);
        self.pointer = None;
        self.read_base = None;
        Ok(())
    }

    /// Runs `f` with an engine on `alt`, adding its transfers to the session's counters.
    fn with_engine<T>(
        &mut self,
        alt: u8,
        f: impl FnOnce(&mut DfuSe<'_, P>) -> Result<T, DfuOpError>,
    ) -> Result<T, DfuOpError> {
        let layout = self.layout(alt)?;
        if self.alt.is_none() {
            self.settle_first_contact(alt, &layout)?;
        }
        self.select(alt)?;
        self.pointer = None;
        self.read_base = None;
        let (interface, ts) = (self.info.interface, self.info.transfer_size);
        let mut engine = DfuSe::new(&mut self.port, interface, alt, ts, layout)
            .map_err(DfuOpError::dfu("starting a DfuSe session"))?;
        let result = f(&mut engine);
        let c = engine.counters();
        add_counters(&mut self.counters, &c);
        result
    }

    /// Brings a device this session has not talked to yet to dfuIDLE before it selects an
    /// alternate setting. A session cut off mid-command (a stalled or lost transfer, an
    /// unplugged cable, a killed process) can leave a command pending, which the device would
    /// carry out at the next GETSTATUS — on whatever setting is selected by then, and after
    /// the flash has changed under the new session's plan. GETSTATE does not run it; ABORT
    /// drops it.
    fn settle_first_contact(&mut self, alt: u8, layout: &MemoryLayout) -> Result<(), DfuOpError> {
        let (interface, ts) = (self.info.interface, self.info.transfer_size);
        let mut engine = DfuSe::new(&mut self.port, interface, alt, ts, layout.clone())
            .map_err(DfuOpError::dfu("starting a DfuSe session"))?;
        let settled = match engine.get_state() {
            Ok(State::DfuIdle) => Ok(()),
            Ok(State::DnloadSync | State::DnloadIdle | State::UploadIdle | State::ManifestSync) => {
                engine.abort().and_then(|()| engine.abort_to_idle())
            }
            Ok(_) => engine.abort_to_idle(),
            Err(e) => Err(e),
        }
        .map_err(DfuOpError::dfu("bringing the device to dfuIDLE"));
        let c = engine.counters();
        add_counters(&mut self.counters, &c);
        settled
    }

    fn raw_out(
        &mut self,
        request: u8,
        value: u16,
        data: &[u8],
        during: DfuOperation,
    ) -> Result<(), DfuOpError> {
        let setup = Setup::class_out(request, value, self.info.interface, data.len() as u16);
        match request {
            DFU_ABORT => self.counters.abort += 1,
            DFU_DNLOAD if data.is_empty() => self.counters.leave += 1,
            _ => self.counters.download += 1,
        }
        self.port
            .control_out(&setup, data, TIMEOUT_MS)
            .map(|_| ())
            .map_err(|e| DfuOpError::Dfu {
                context: "talking to the device".into(),
                source: modflash_dfu::Error::from_transfer(e, during, Stage::Request),
            })
    }

    /// Writes `data` at `address` of `alt`: erase what it touches, download, then read back
    /// and compare what `check` says. Reports the erase, write and verify operations.
    pub fn write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        check: &WriteCheck,
        observer: &mut dyn Observer,
    ) -> Result<(), DfuOpError> {
        if data.is_empty() {
            return Ok(());
        }
        let total = data.len();
        let context = format!("writing {total} bytes at {address:#010x} (alt {alt})");
        let mut events = EngineEvents::new(observer);
        let downloaded = self.with_engine(alt, |engine| {
            engine
                .download(address, data, &mut |p| events.on(p))
                .map_err(DfuOpError::dfu(context))
        });
        events.end(&downloaded);
        downloaded?;
        // One SET_ADDRESS run (fewer than 65534 blocks): the pointer holds `address`.
        let blocks = total.div_ceil(usize::from(self.info.transfer_size));
        let pointer_known = blocks < usize::from(u16::MAX - 2);
        self.record_write(alt, address, data);
        if *check != WriteCheck::Nothing {
            let what = match check {
                WriteCheck::Blocks(_) => {
                    format!("the header and suffix of {total} bytes at {address:#010x}")
                }
                _ => format!("{total} bytes at {address:#010x}"),
            };
            crate::progress::operation(
                observer,
                Operation::Verify,
                what,
                Some(total as u64),
                |observer| {
                    if pointer_known {
                        self.verify_at_pointer(address, data, check, observer)
                    } else {
                        let context =
                            format!("verifying {total} bytes at {address:#010x} (alt {alt})");
                        self.with_engine(alt, |engine| {
                            engine
                                .verify(address, data, &mut |p| {
                                    if let Progress::ReadProgress { bytes_done, .. } = p {
                                        observer.event(Event::Progress {
                                            operation: Operation::Verify,
                                            done: bytes_done,
                                            total: total as u64,
                                        });
                                    }
                                })
                                .map_err(DfuOpError::dfu(context))
                        })
                    }
                },
            )?;
        }
        // Idle (dfuIDLE after the verify, dfuDNLOAD-IDLE without it) with the pointer at
        // `address` when the download was one SET_ADDRESS run.
        self.pointer = pointer_known.then_some(address);
        Ok(())
    }

    /// Reads back from the address pointer (just set by the download) the transfer blocks of
    /// `data` that `check` names and compares them: ABORT, UPLOAD of each block by its number,
    /// ABORT. (Beyond one pointer run, `write` reads every byte through the engine.)
    fn verify_at_pointer(
        &mut self,
        address: u32,
        data: &[u8],
        check: &WriteCheck,
        observer: &mut dyn Observer,
    ) -> Result<(), DfuOpError> {
        let context = format!("verifying {} bytes at {address:#010x}", data.len());
        self.raw_out(DFU_ABORT, 0, &[], DfuOperation::Abort)?;
        let ts = usize::from(self.info.transfer_size);
        let blocks = data.chunks(ts).enumerate();
        for (n, chunk) in blocks.filter(|&(n, _)| check.reads_block(n, ts)) {
            let block = (n + 2) as u16; // checked by the caller: fewer than 65534 blocks
            let block_address = address.wrapping_add((n * ts) as u32);
            let during = DfuOperation::Read {
                address: block_address,
                block,
            };
            let setup = Setup::class_in(DFU_UPLOAD, block, self.info.interface, chunk.len() as u16);
            let mut buf = vec![0u8; chunk.len()];
            self.counters.upload += 1;
            let got = self
                .port
                .control_in(&setup, &mut buf, TIMEOUT_MS)
                .map_err(|e| DfuOpError::Dfu {
                    context: context.clone(),
                    source: modflash_dfu::Error::from_transfer(e, during, Stage::Request),
                })?;
            if got < chunk.len() {
                return Err(DfuOpError::Dfu {
                    context,
                    source: modflash_dfu::Error::UploadShort {
                        address: block_address,
                        requested: chunk.len(),
                        received: got,
                    },
                });
            }
            observer.event(Event::Progress {
                operation: Operation::Verify,
                done: ((n * ts) + chunk.len()) as u64,
                total: data.len() as u64,
            });
            if let Some(i) = chunk.iter().zip(&buf).position(|(a, b)| a != b) {
                return Err(DfuOpError::Dfu {
                    context,
                    source: modflash_dfu::Error::Verify {
                        address: block_address.wrapping_add(i as u32),
                        expected: chunk[i],
                        actual: buf[i],
                    },
                });
            }
        }
        self.raw_out(DFU_ABORT, 0, &[], DfuOperation::Abort)
    }

    /// Reads `length` bytes at `address` of `alt`, reporting [`Operation::Read`] progress as
    /// `(done, total)` of a larger read: `done` counts from `of.0`, out of `of.1` (0 when the
    /// total is not known), so several reads can add up to one operation.
    pub fn upload(
        &mut self,
        alt: u8,
        address: u32,
        length: usize,
        of: (u64, u64),
        observer: &mut dyn Observer,
    ) -> Result<Vec<u8>, DfuOpError> {
        let (offset, total) = of;
        let context = format!("reading {length} bytes at {address:#010x} (alt {alt})");
        self.with_engine(alt, |engine| {
            engine
                .upload(address, length, &mut |p| {
                    if let Progress::ReadProgress { bytes_done, .. } = p {
                        observer.event(Event::Progress {
                            operation: Operation::Read,
                            done: offset + bytes_done,
                            total,
                        });
                    }
                })
                .map_err(DfuOpError::dfu(context))
        })
    }

    /// Leaves DFU mode for the firmware at `address` (alt 0). When the address pointer already
    /// holds `address` (right after a verified write there), only the zero-length DNLOAD and
    /// its GETSTATUS are sent.
    pub fn leave(&mut self, address: u32) -> Result<LeaveOutcome, DfuOpError> {
        self.read_base = None;
        let context = format!("leaving DFU mode for {address:#010x}");
        if self.alt == Some(0) && self.pointer == Some(address) {
            self.pointer = None;
            let during = DfuOperation::Leave { address };
            match self.raw_out(DFU_DNLOAD, 2, &[], during) {
                Ok(()) => {}
                Err(DfuOpError::Dfu {
                    source: modflash_dfu::Error::Disconnected { .. },
                    ..
                }) => return Ok(LeaveOutcome::Disconnected),
                Err(e) => return Err(e),
            }
            let setup = Setup::class_in(DFU_GETSTATUS, 0, self.info.interface, 6);
            let mut buf = [0u8; 6];
            self.counters.get_status += 1;
            return match self.port.control_in(&setup, &mut buf, TIMEOUT_MS) {
                Ok(n) => match StatusRecord::parse(buf.get(..n).unwrap_or(&[])) {
                    Some(r) => leave_outcome(r, during).map_err(DfuOpError::dfu(context)),
                    None => Err(DfuOpError::Dfu {
                        context,
                        source: modflash_dfu::Error::ShortReply {
                            during,
                            expected: 6,
                            got: n,
                        },
                    }),
                },
                Err(TransferError::NoDevice | TransferError::Stall) => {
                    Ok(LeaveOutcome::Disconnected)
                }
                Err(e) => Err(DfuOpError::Dfu {
                    context,
                    source: modflash_dfu::Error::from_transfer(e, during, Stage::StatusPoll),
                }),
            };
        }
        self.with_engine(0, |engine| {
            engine.leave(address).map_err(DfuOpError::dfu(context))
        })
    }

    /// The first alternate setting the device shows `space` on ([`DfuAlt`]).
    fn space_alt(&mut self, space: Space, platform: &'static Platform) -> Option<SpaceAlt> {
        let layout = platform.layout_for(None)?;
        // No alt name needs reading for a memory the platform does not have.
        if space == Space::External && layout.external.is_none() {
            return None;
        }
        let alts: Vec<u8> = self.info.alts.iter().map(|a| a.alt).collect();
        alts.into_iter().find_map(|alt| {
            let window = DfuAlt::parse(&self.alt_name(alt).ok()?)?.window(layout)?;
            (Space::of(window.location) == space).then_some(SpaceAlt {
                alt,
                delta: window.offset,
            })
        })
    }

    /// Reads into `shadow` what it misses of `ranges` (flash addresses of `space`, read
    /// through `via`), with the address pointer set once: each missing run is read from the
    /// start of the wTransferSize block it begins in, one UPLOAD per block touched, and later
    /// calls read on from the same pointer. A run the pointer cannot reach, or that is not
    /// readable in the alt's layout, goes through the engine's upload (which says why it
    /// cannot be read).
    fn read_into(
        &mut self,
        shadow: &mut Shadow,
        (space, via): (Space, SpaceAlt),
        ranges: &[(u32, u32)],
        bytes_read: &mut u64,
        observer: &mut dyn Observer,
    ) -> Result<(), DfuOpError> {
        let mut runs = Vec::new();
        for &(start, end) in ranges {
            for (s, e) in shadow.missing(space, start, end) {
                let alt_start = i64::from(s) + via.delta;
                let alt_end = i64::from(e) + via.delta;
                if let (Ok(s), Ok(e)) = (u32::try_from(alt_start), u32::try_from(alt_end)) {
                    runs.push((s, e));
                }
            }
        }
        let Some(lowest) = runs.iter().map(|r| r.0).min() else {
            return Ok(());
        };
        let layout = self.layout(via.alt)?;
        let ts = u32::from(self.info.transfer_size.max(1));
        let base = match self.read_base {
            Some(b) if self.alt == Some(via.alt) && b <= lowest => b,
            // The start of the memory keeps blocks on sector boundaries.
            _ => layout
                .segments()
                .first()
                .map(|seg| seg.start)
                .filter(|&start| start <= lowest)
                .unwrap_or(lowest),
        };
        let readable = |start: u32, end: u32| {
            layout.segment_at(start).is_some_and(|seg| {
                seg.access.readable()
                    && u64::from(end) <= seg.end
                    && layout
                        .segment_at(end - 1)
                        .is_some_and(|s| s.access.readable())
            })
        };
        // Block number → bytes wanted from the block's start.
        let mut blocks: BTreeMap<u16, u32> = BTreeMap::new();
        let mut by_engine = Vec::new();
        for (s, e) in runs {
            let first = (s - base) / ts;
            let last = (e - 1 - base) / ts;
            let reachable = last + 2 <= u32::from(u16::MAX);
            let block_start = base + first * ts;
            if !reachable || !readable(block_start, e) {
                by_engine.push((s, e));
                continue;
            }
            for k in first..=last {
                let start = base + k * ts;
                let want = e.min(start.saturating_add(ts)) - start;
                let entry = blocks.entry((k + 2) as u16).or_insert(0);
                *entry = (*entry).max(want);
            }
        }
        if !blocks.is_empty() && self.read_base != Some(base) {
            let context = format!(
                "setting the address pointer to {base:#010x} (alt {})",
                via.alt
            );
            self.with_engine(via.alt, |engine| {
                engine
                    .set_address(base)
                    .and_then(|()| engine.abort())
                    .map_err(DfuOpError::dfu(context))
            })?;
            self.read_base = Some(base);
        }
        for (block, len) in blocks {
            let address = base + u32::from(block - 2) * ts;
            let bytes = self.upload_block(address, block, len)?;
            *bytes_read += bytes.len() as u64;
            observer.event(Event::Progress {
                operation: Operation::Read,
                done: *bytes_read,
                total: 0,
            });
            if let Ok(flash) = u32::try_from(i64::from(address) - via.delta) {
                shadow.store(space, flash, &bytes);
            }
        }
        for (s, e) in by_engine {
            let bytes = self.upload(via.alt, s, (e - s) as usize, (*bytes_read, 0), observer)?;
            *bytes_read += bytes.len() as u64;
            if let Ok(flash) = u32::try_from(i64::from(s) - via.delta) {
                shadow.store(space, flash, &bytes);
            }
        }
        Ok(())
    }

    /// UPLOAD of `block` (at `address`) from the pointer block reads set: `len` bytes.
    fn upload_block(&mut self, address: u32, block: u16, len: u32) -> Result<Vec<u8>, DfuOpError> {
        let context = format!("reading {len} bytes at {address:#010x}");
        let during = DfuOperation::Read { address, block };
        let setup = Setup::class_in(DFU_UPLOAD, block, self.info.interface, len as u16);
        let mut buf = vec![0u8; len as usize];
        self.counters.upload += 1;
        let got = self
            .port
            .control_in(&setup, &mut buf, TIMEOUT_MS)
            .map_err(|e| {
                self.read_base = None;
                DfuOpError::Dfu {
                    context: context.clone(),
                    source: modflash_dfu::Error::from_transfer(e, during, Stage::Request),
                }
            })?;
        if got < buf.len() {
            self.read_base = None;
            return Err(DfuOpError::Dfu {
                context,
                source: modflash_dfu::Error::UploadShort {
                    address,
                    requested: buf.len(),
                    received: got,
                },
            });
        }
        Ok(buf)
    }

    /// Reads the installed modules back, as one [`Operation::Read`]: the header area of every
    /// module region of every memory map the platform has had (to pick the map in force as the
    /// device does), then each module found in full (for its CRC and SHA-256), and evaluates
    /// them with the device's own HAL rules. The images are kept, so
    /// [`DfuSession::predicted_inventory`] can follow later writes.
    pub fn read_inventory(
        &mut self,
        platform: &'static Platform,
        observer: &mut dyn Observer,
    ) -> Result<ReadBack, DfuOpError> {
        crate::progress::operation(
            observer,
            Operation::Read,
            "the installed modules",
            None,
            |o| self.read_modules_back(platform, Depth::Full, o),
        )
    }

    /// Reads only what identifies the installed modules, as one [`Operation::Read`]: the
    /// header area of every module region of every map, then each module's suffix (its
    /// SHA-256), not its body. The inventory is the HAL's without the CRC check, which counts
    /// as not made ([`Inventory::from_headers`]): the device checks it itself at boot and
    /// reports it in its module table. [`DfuSession::module_image`] reads a body when needed.
    pub fn read_headers(
        &mut self,
        platform: &'static Platform,
        observer: &mut dyn Observer,
    ) -> Result<ReadBack, DfuOpError> {
        crate::progress::operation(
            observer,
            Operation::Read,
            "the installed modules' headers",
            None,
            |o| self.read_modules_back(platform, Depth::Headers, o),
        )
    }

    fn read_modules_back(
        &mut self,
        platform: &'static Platform,
        depth: Depth,
        observer: &mut dyn Observer,
    ) -> Result<ReadBack, DfuOpError> {
        let mut shadow = Shadow::new(platform)?;
        let mut notes = Vec::new();
        let mut bytes_read = 0u64;
        let mut vias = [None, None];
        for space in [Space::Internal, Space::External] {
            if shadow.image(space).is_none() {
                continue;
            }
            vias[Shadow::slot(space)] = self.space_alt(space, platform);
            if vias[Shadow::slot(space)].is_none() {
                notes.push(format!(
                    "the device shows no DFU alternate setting for its {} flash; modules \
                     there were not read",
                    if space == Space::Internal {
                        "internal"
                    } else {
                        "external"
                    }
                ));
            }
        }
        let via = |space: Space| vias[Shadow::slot(space)];
        // 1. Header areas of every region of every map.
        let mut heads: [Vec<(u32, u32)>; 2] = [Vec::new(), Vec::new()];
        for layout in platform.layouts() {
            for b in layout.bounds {
                let space = match b.location {
                    Location::Internal => Space::Internal,
                    Location::External => Space::External,
                    Location::Ncp => continue,
                };
                let range = if b.function == ModuleFunction::RadioStack {
                    (
                        b.start,
                        b.start.saturating_add(softdevice::INFO_OFFSET as u32 + 16),
                    )
                } else if b.fixed_end {
                    (b.end.saturating_sub(TAIL_BYTES), b.end)
                } else {
                    (b.start, b.start.saturating_add(HEAD_BYTES).min(b.end))
                };
                heads[Shadow::slot(space)].push(range);
            }
        }
        for space in [Space::Internal, Space::External] {
            let Some(v) = via(space) else { continue };
            let ranges = &heads[Shadow::slot(space)];
            self.read_into(&mut shadow, (space, v), ranges, &mut bytes_read, observer)?;
        }
        // 2. Every module found under the map in force: in full, or only its suffix.
        let device = shadow.device()?;
        let layout = device.layout();
        let hal = device.hal();
        let mut bodies: [Vec<(u32, u32)>; 2] = [Vec::new(), Vec::new()];
        for b in layout.bounds {
            let space = match b.location {
                Location::Internal => Space::Internal,
                Location::External => Space::External,
                Location::Ncp => continue,
            };
            if b.function == ModuleFunction::RadioStack {
                continue; // the HAL trusts the SoftDevice's own info structure
            }
            let Some((info, start)) = hal.read_info(b) else {
                continue;
            };
            let in_range = layout
                .find_bounds(info.slot())
                .is_some_and(|r| r.end_in_range(info.end_address));
            let Some(length) = info.module_length().filter(|_| in_range) else {
                continue;
            };
            let end = start.saturating_add(length);
            let from = match depth {
                Depth::Full => start,
                Depth::Headers => end.saturating_sub(SUFFIX_HASH_OFFSET).max(start),
            };
            bodies[Shadow::slot(space)].push((from, end.saturating_add(4)));
        }
        drop(device);
        for space in [Space::Internal, Space::External] {
            let Some(v) = via(space) else { continue };
            let ranges = &bodies[Shadow::slot(space)];
            self.read_into(&mut shadow, (space, v), ranges, &mut bytes_read, observer)?;
        }
        let device = shadow.device()?;
        let inventory = match depth {
            Depth::Full => Inventory::from_device(&device),
            Depth::Headers => {
                notes.push(
                    "the modules' headers and suffixes were read over DFU, not their bodies: \
                     their CRC is checked by the device when it boots"
                        .into(),
                );
                Inventory::from_headers(&device)
            }
        };
        self.shadow = Some(shadow);
        self.staged = false;
        Ok(ReadBack {
            inventory,
            bytes_read,
            notes,
        })
    }

    /// The image of the module installed in `slot` (its main region), reading what the
    /// modules read back left out of it (the body after [`DfuSession::read_headers`]).
    /// `None` when nothing was read back, the slot is empty or a radio stack, or a read fails.
    pub fn module_image(
        &mut self,
        slot: ModuleRef,
        observer: &mut dyn Observer,
    ) -> Option<Vec<u8>> {
        let mut shadow = self.shadow.take()?;
        let image = self.complete_module(&mut shadow, slot, observer);
        self.shadow = Some(shadow);
        image
    }

    fn complete_module(
        &mut self,
        shadow: &mut Shadow,
        slot: ModuleRef,
        observer: &mut dyn Observer,
    ) -> Option<Vec<u8>> {
        let device = shadow.device().ok()?;
        let bounds = device
            .layout()
            .bounds
            .iter()
            .find(|b| b.slot() == slot && b.store == Store::Main)?;
        let (info, start) = device.hal().read_info(bounds)?;
        let end = start
            .saturating_add(info.module_length()?)
            .saturating_add(4);
        let space = Space::of(bounds.location);
        drop(device);
        let via = self.space_alt(space, shadow.platform)?;
        let mut bytes_read = 0;
        self.read_into(
            shadow,
            (space, via),
            &[(start, end)],
            &mut bytes_read,
            observer,
        )
        .ok()?;
        if !shadow.missing(space, start, end).is_empty() {
            return None;
        }
        crate::backup::module_image(&shadow.device().ok()?, slot)
    }

    fn record_write(&mut self, alt: u8, address: u32, data: &[u8]) {
        let Some(shadow) = self.shadow.as_mut() else {
            return;
        };
        let platform = shadow.platform;
        let spaces = [Space::Internal, Space::External];
        let mut hit = None;
        for space in spaces {
            if let Some(v) = self.space_alt(space, platform) {
                if v.alt == alt {
                    hit = Some((space, v));
                }
            }
        }
        let Some((space, via)) = hit else {
            // The DCT (an OTA flag, a key): the next boot may act on it.
            self.staged = true;
            return;
        };
        let Ok(layout) = self.layout(alt) else {
            return;
        };
        let Some(shadow) = self.shadow.as_mut() else {
            return;
        };
        let end = u64::from(address) + data.len() as u64;
        let mut cur = u64::from(address);
        while cur < end {
            let Some(page) = layout.page_at(cur as u32) else {
                break;
            };
            if page.access.erasable() {
                let s = (i64::from(page.address) - via.delta).max(0) as u32;
                shadow.erase(space, s, (page.end() as i64 - via.delta).max(0) as u64);
            }
            cur = page.end().max(cur + 1);
        }
        let Ok(physical) = u32::try_from(i64::from(address) - via.delta) else {
            return;
        };
        shadow.store(space, physical, data);
    }

    /// The device as read back over DFU (with every verified write since), when it was read.
    pub fn read_back_device(&self) -> Option<Device> {
        self.shadow.as_ref()?.device().ok()
    }

    /// The inventory the device will report, from the modules read back by
    /// [`DfuSession::read_inventory`] plus every verified write since. `None` when nothing
    /// was read back, or when a DCT write (an OTA flag) lets the next boot apply a staged
    /// update this cannot show.
    pub fn predicted_inventory(&self) -> Option<Inventory> {
        if self.staged {
            return None;
        }
        let device = self.shadow.as_ref()?.device().ok()?;
        Some(Inventory::from_device(&device))
    }
}

fn add_counters(total: &mut Counters, c: &Counters) {
    total.get_status += c.get_status;
    total.get_state += c.get_state;
    total.clear_status += c.clear_status;
    total.abort += c.abort;
    total.detach += c.detach;
    total.set_address += c.set_address;
    total.erase += c.erase;
    total.mass_erase += c.mass_erase;
    total.read_unprotect += c.read_unprotect;
    total.download += c.download;
    total.leave += c.leave;
    total.upload += c.upload;
    total.waits += c.waits;
    total.waited_ms += c.waited_ms;
}

/// The engine's reading of the GETSTATUS after a leave request.
fn leave_outcome(
    r: StatusRecord,
    during: DfuOperation,
) -> Result<LeaveOutcome, modflash_dfu::Error> {
    match r.state {
        State::Manifest | State::ManifestWaitReset | State::DnloadIdle
            if r.status == Status::Ok =>
        {
            Ok(LeaveOutcome::Manifesting(r.state))
        }
        State::Error | State::Manifest | State::ManifestWaitReset | State::DnloadIdle => {
            Err(modflash_dfu::Error::DeviceStatus {
                during,
                status: r.status,
                state: r.state,
            })
        }
        state => Err(modflash_dfu::Error::UnexpectedState {
            during,
            state,
            status: r.status,
            expected: "dfuMANIFEST, dfuMANIFEST-WAIT-RESET or dfuDNLOAD-IDLE",
        }),
    }
}

/// Turns the DfuSe engine's download callbacks into erase and write operation events.
struct EngineEvents<'o> {
    observer: &'o mut dyn Observer,
    running: Option<(Operation, u64, u64)>,
}

impl<'o> EngineEvents<'o> {
    fn new(observer: &'o mut dyn Observer) -> Self {
        Self {
            observer,
            running: None,
        }
    }

    fn start(&mut self, operation: Operation, what: String, total: u64) {
        if let Some((op, _, _)) = self.running.take() {
            self.observer.event(Event::Finished { operation: op });
        }
        self.observer.event(Event::Started {
            operation,
            what,
            total: Some(total),
        });
        self.running = Some((operation, 0, total));
    }

    fn on(&mut self, p: Progress) {
        match p {
            Progress::EraseStarted { pages, total_bytes } => self.start(
                Operation::Erase,
                format!("{pages} page{}", if pages == 1 { "" } else { "s" }),
                total_bytes,
            ),
            Progress::Erased { bytes, .. } => {
                if let Some((operation, done, total)) = &mut self.running {
                    *done += u64::from(bytes);
                    self.observer.event(Event::Progress {
                        operation: *operation,
                        done: *done,
                        total: *total,
                    });
                }
            }
            Progress::WriteStarted {
                address,
                total_bytes,
            } => self.start(
                Operation::Write,
                format!("{total_bytes} bytes at {address:#010x}"),
                total_bytes,
            ),
            Progress::Written {
                bytes_done,
                total_bytes,
                ..
            } => self.observer.event(Event::Progress {
                operation: Operation::Write,
                done: bytes_done,
                total: total_bytes,
            }),
            _ => {}
        }
    }

    fn end<T>(&mut self, result: &Result<T, DfuOpError>) {
        if let Some((operation, _, _)) = self.running.take() {
            self.observer.event(match result {
                Ok(_) => Event::Finished { operation },
                Err(e) => Event::Failed {
                    operation,
                    reason: e.to_string(),
                },
            });
        }
    }
}
