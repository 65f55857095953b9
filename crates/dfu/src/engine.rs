//! The DfuSe session: status handling, DfuSe commands, download, upload, verify, leave and detach.

use crate::control::{
    Control, Setup, State, Status, StatusRecord, DFUSE_ERASE, DFUSE_READ_UNPROTECT,
    DFUSE_SET_ADDRESS, DFU_ABORT, DFU_CLRSTATUS, DFU_DETACH, DFU_DNLOAD, DFU_GETSTATE,
    DFU_GETSTATUS, DFU_UPLOAD,
};
use crate::descriptor::FunctionalDescriptor;
use crate::error::{Error, Operation, Result, Stage};
use crate::layout::{MemoryLayout, Page, Segment};

/// Highest block number usable in wValue; data blocks start at 2.
const MAX_BLOCK: u16 = u16::MAX;

/// Tunables of a [`DfuSe`] session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Timeout of every control transfer, in ms (dfu-util: 5000).
    pub timeout_ms: u32,
    /// Timeout of the GETSTATUS polls after a mass erase, in ms (the device may block EP0).
    pub mass_erase_timeout_ms: u32,
    /// Most GETSTATUS polls answered with a busy state for one command before giving up.
    pub max_busy_polls: u32,
    /// Most milliseconds waited (sum of bwPollTimeout) for one command before giving up.
    pub max_wait_ms: u64,
    /// Bytes per DNLOAD/UPLOAD block, at most the device's wTransferSize. `None` uses
    /// wTransferSize. A smaller value disables block-number addressing (the device computes addresses with its own
    /// wTransferSize), so every block then gets its own SET_ADDRESS, as dfu-util does.
    pub chunk_size: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 5000,
            mass_erase_timeout_ms: 60_000,
            max_busy_polls: 1000,
            max_wait_ms: 600_000,
            chunk_size: None,
        }
    }
}

/// Progress events of long operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The erase pass starts.
    EraseStarted {
        /// Pages to erase.
        pages: usize,
        /// Bytes covered by those pages.
        total_bytes: u64,
    },
    /// One page was erased.
    Erased {
        /// Page address.
        address: u32,
        /// Page size.
        bytes: u32,
    },
    /// The write pass starts.
    WriteStarted {
        /// First address.
        address: u32,
        /// Bytes to write.
        total_bytes: u64,
    },
    /// One block was written.
    Written {
        /// Address of the block.
        address: u32,
        /// Bytes written so far.
        bytes_done: u64,
        /// Bytes to write in total.
        total_bytes: u64,
    },
    /// A read starts.
    ReadStarted {
        /// First address.
        address: u32,
        /// Bytes to read.
        total_bytes: u64,
    },
    /// One block was read.
    ReadProgress {
        /// Bytes read so far.
        bytes_done: u64,
        /// Bytes to read in total.
        total_bytes: u64,
    },
    /// The operation finished successfully.
    Done,
}

/// Control transfers (and waits) issued by a session, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// DFU_GETSTATUS requests.
    pub get_status: u32,
    /// DFU_GETSTATE requests.
    pub get_state: u32,
    /// DFU_CLRSTATUS requests.
    pub clear_status: u32,
    /// DFU_ABORT requests.
    pub abort: u32,
    /// DFU_DETACH requests.
    pub detach: u32,
    /// DfuSe SET_ADDRESS commands.
    pub set_address: u32,
    /// DfuSe page ERASE commands.
    pub erase: u32,
    /// DfuSe mass-erase commands.
    pub mass_erase: u32,
    /// DfuSe read-unprotect commands.
    pub read_unprotect: u32,
    /// DNLOAD requests carrying data.
    pub download: u32,
    /// Zero-length DNLOAD requests (leave).
    pub leave: u32,
    /// UPLOAD requests (data and Get Commands).
    pub upload: u32,
    /// Calls to [`Control::wait`] with a non-zero time.
    pub waits: u32,
    /// Milliseconds waited in total.
    pub waited_ms: u64,
}

impl Counters {
    /// Total control transfers.
    pub fn control_transfers(&self) -> u32 {
        self.get_status
            + self.get_state
            + self.clear_status
            + self.abort
            + self.detach
            + self.dnload_commands()
            + self.download
            + self.leave
            + self.upload
    }

    /// DNLOAD requests carrying a DfuSe command (wValue 0).
    pub fn dnload_commands(&self) -> u32 {
        self.set_address + self.erase + self.mass_erase + self.read_unprotect
    }
}

/// How [`DfuSe::download_with`] prepares memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EraseMode {
    /// Erase each erasable page the data touches, once, in address order.
    Pages,
    /// Do not erase (after a mass erase, or for RAM).
    Skip,
}

/// How the device reacted to [`DfuSe::leave`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The device answered the final GETSTATUS with this state (dfuMANIFEST,
    /// dfuMANIFEST-WAIT-RESET, or dfuDNLOAD-IDLE on Particle bootloaders) and is leaving.
    Manifesting(State),
    /// The device dropped off the bus (it is already restarting).
    Disconnected,
}

#[derive(Clone, Copy)]
enum Kind {
    GetStatus,
    GetState,
    ClearStatus,
    Abort,
    Detach,
    SetAddress,
    Erase,
    MassErase,
    ReadUnprotect,
    Download,
    Leave,
    Upload,
}

/// Sends DFU_DETACH to a runtime-mode interface. A device that drops off the bus at once
/// counts as success. If the functional descriptor lacks bitWillDetach, the caller must then
/// reset the USB device within `timeout_ms`.
pub fn detach<C: Control + ?Sized>(
    ctl: &mut C,
    interface: u16,
    timeout_ms: u16,
    transfer_timeout_ms: u32,
) -> Result<()> {
    let setup = Setup::class_out(DFU_DETACH, timeout_ms, interface, 0);
    match ctl.control_out(&setup, &[], transfer_timeout_ms) {
        Ok(_) => Ok(()),
        Err(crate::control::TransferError::NoDevice) => Ok(()),
        Err(e) => Err(Error::from_transfer(e, Operation::Detach, Stage::Request)),
    }
}

/// A DfuSe session on one DFU-mode interface and alt setting.
///
/// The transport must already have claimed `interface` and selected `alt`. The session never
/// sleeps on its own: every wait goes through [`Control::wait`].
pub struct DfuSe<'a, C: Control + ?Sized> {
    ctl: &'a mut C,
    interface: u16,
    alt: u8,
    transfer_size: u16,
    layout: MemoryLayout,
    segments: Vec<Segment>,
    options: Options,
    counters: Counters,
    /// State reported by the last GETSTATUS (or implied by a successful ABORT); cleared by
    /// every other transfer.
    known_state: Option<State>,
}

impl<'a, C: Control + ?Sized> DfuSe<'a, C> {
    /// A session with the device's wTransferSize and the alt setting's memory layout.
    pub fn new(
        ctl: &'a mut C,
        interface: u16,
        alt: u8,
        transfer_size: u16,
        layout: MemoryLayout,
    ) -> Result<Self> {
        if transfer_size == 0 {
            return Err(Error::InvalidParameter("wTransferSize is 0".into()));
        }
        let segments = layout.segments();
        Ok(DfuSe {
            ctl,
            interface,
            alt,
            transfer_size,
            layout,
            segments,
            options: Options::default(),
            counters: Counters::default(),
            known_state: None,
        })
    }

    /// A session taking the transfer size from a functional descriptor.
    pub fn from_descriptor(
        ctl: &'a mut C,
        interface: u16,
        alt: u8,
        functional: &FunctionalDescriptor,
        layout: MemoryLayout,
    ) -> Result<Self> {
        Self::new(ctl, interface, alt, functional.transfer_size, layout)
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: Options) -> Result<Self> {
        match options.chunk_size {
            Some(0) => return Err(Error::InvalidParameter("chunk size is 0".into())),
            Some(n) if n > self.transfer_size => {
                return Err(Error::InvalidParameter(format!(
                    "chunk size {n} exceeds the device's wTransferSize {}",
                    self.transfer_size
                )))
            }
            _ => {}
        }
        self.options = options;
        Ok(self)
    }

    /// The interface number.
    pub fn interface(&self) -> u16 {
        self.interface
    }

    /// The alt setting.
    pub fn alt(&self) -> u8 {
        self.alt
    }

    /// The device's wTransferSize.
    pub fn transfer_size(&self) -> u16 {
        self.transfer_size
    }

    /// The memory layout.
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// The transfer counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Resets the transfer counters.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    fn chunk(&self) -> u16 {
        self.options.chunk_size.unwrap_or(self.transfer_size)
    }

    fn block_addressing(&self) -> bool {
        self.chunk() == self.transfer_size
    }

    fn count(&mut self, kind: Kind) {
        let c = &mut self.counters;
        let f = match kind {
            Kind::GetStatus => &mut c.get_status,
            Kind::GetState => &mut c.get_state,
            Kind::ClearStatus => &mut c.clear_status,
            Kind::Abort => &mut c.abort,
            Kind::Detach => &mut c.detach,
            Kind::SetAddress => &mut c.set_address,
            Kind::Erase => &mut c.erase,
            Kind::MassErase => &mut c.mass_erase,
            Kind::ReadUnprotect => &mut c.read_unprotect,
            Kind::Download => &mut c.download,
            Kind::Leave => &mut c.leave,
            Kind::Upload => &mut c.upload,
        };
        *f = f.saturating_add(1);
    }

    fn wait(&mut self, ms: u32) {
        if ms > 0 {
            self.counters.waits = self.counters.waits.saturating_add(1);
            self.counters.waited_ms = self.counters.waited_ms.saturating_add(u64::from(ms));
            self.ctl.wait(ms);
        }
    }

    fn out(
        &mut self,
        kind: Kind,
        request: u8,
        value: u16,
        data: &[u8],
        during: Operation,
    ) -> Result<()> {
        self.known_state = None;
        let Ok(length) = u16::try_from(data.len()) else {
            return Err(Error::InvalidParameter(format!(
                "{} bytes in one request",
                data.len()
            )));
        };
        let setup = Setup::class_out(request, value, self.interface, length);
        self.count(kind);
        match self.ctl.control_out(&setup, data, self.options.timeout_ms) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(n) => Err(Error::ShortWrite {
                during,
                sent: data.len(),
                accepted: n,
            }),
            Err(e) => Err(Error::from_transfer(e, during, Stage::Request)),
        }
    }

    fn inn(
        &mut self,
        kind: Kind,
        value: u16,
        length: u16,
        during: Operation,
        stage: Stage,
        timeout_ms: u32,
    ) -> Result<Vec<u8>> {
        self.known_state = None;
        let request = match kind {
            Kind::GetStatus => DFU_GETSTATUS,
            Kind::GetState => DFU_GETSTATE,
            _ => DFU_UPLOAD,
        };
        let setup = Setup::class_in(request, value, self.interface, length);
        let mut buf = vec![0u8; usize::from(length)];
        self.count(kind);
        match self.ctl.control_in(&setup, &mut buf, timeout_ms) {
            Ok(n) => {
                buf.truncate(n.min(usize::from(length)));
                Ok(buf)
            }
            Err(e) => Err(Error::from_transfer(e, during, stage)),
        }
    }

    fn status_for(
        &mut self,
        during: Operation,
        stage: Stage,
        timeout_ms: u32,
    ) -> Result<StatusRecord> {
        let b = self.inn(
            Kind::GetStatus,
            0,
            StatusRecord::LEN as u16,
            during,
            stage,
            timeout_ms,
        )?;
        let Some(r) = StatusRecord::parse(&b) else {
            return Err(Error::ShortReply {
                during,
                expected: StatusRecord::LEN,
                got: b.len(),
            });
        };
        self.known_state = Some(r.state);
        Ok(r)
    }

    /// DFU_GETSTATUS: the device's status record.
    pub fn get_status(&mut self) -> Result<StatusRecord> {
        self.status_for(
            Operation::GetStatus,
            Stage::Request,
            self.options.timeout_ms,
        )
    }

    /// DFU_GETSTATE: the device's state.
    pub fn get_state(&mut self) -> Result<State> {
        let t = self.options.timeout_ms;
        let b = self.inn(Kind::GetState, 0, 1, Operation::GetState, Stage::Request, t)?;
        match b.first() {
            Some(&s) => Ok(State::from_u8(s)),
            None => Err(Error::ShortReply {
                during: Operation::GetState,
                expected: 1,
                got: 0,
            }),
        }
    }

    /// DFU_CLRSTATUS. Only meaningful in dfuERROR (Particle bootloaders *enter* dfuERROR when it
    /// is sent in any other state); see [`DfuSe::abort_to_idle`].
    pub fn clear_status(&mut self) -> Result<()> {
        self.out(
            Kind::ClearStatus,
            DFU_CLRSTATUS,
            0,
            &[],
            Operation::ClearStatus,
        )
    }

    /// DFU_ABORT.
    pub fn abort(&mut self) -> Result<()> {
        let before = self.known_state;
        self.out(Kind::Abort, DFU_ABORT, 0, &[], Operation::Abort)?;
        // ABORT from an idle state is defined to end in dfuIDLE.
        if matches!(
            before,
            Some(State::DfuIdle | State::DnloadIdle | State::UploadIdle)
        ) {
            self.known_state = Some(State::DfuIdle);
        }
        Ok(())
    }

    /// Brings the device to dfuIDLE: CLRSTATUS when it is in dfuERROR, ABORT otherwise, then
    /// checks with GETSTATUS. Waits out a busy state first.
    pub fn abort_to_idle(&mut self) -> Result<()> {
        let first = self.get_status()?;
        self.settle_idle(first)
    }

    fn settle_idle(&mut self, mut r: StatusRecord) -> Result<()> {
        let mut actions = 0u32;
        let mut busy_polls = 0u32;
        loop {
            match r.state {
                State::DfuIdle => return Ok(()),
                State::AppIdle | State::AppDetach => {
                    return Err(Error::RuntimeMode {
                        during: Operation::GetStatus,
                        state: r.state,
                    })
                }
                State::DnBusy | State::DnloadSync | State::ManifestSync => {
                    busy_polls += 1;
                    if busy_polls > self.options.max_busy_polls {
                        return Err(Error::StuckBusy {
                            during: Operation::GetStatus,
                            polls: busy_polls,
                            waited_ms: 0,
                        });
                    }
                    self.wait(r.poll_timeout_ms);
                }
                State::Manifest | State::ManifestWaitReset => {
                    return Err(Error::UnexpectedState {
                        during: Operation::GetStatus,
                        state: r.state,
                        status: r.status,
                        expected: "an idle state (the device is manifesting: reset it)",
                    })
                }
                state => {
                    actions += 1;
                    if actions > 2 {
                        return Err(Error::UnexpectedState {
                            during: if state == State::Error {
                                Operation::ClearStatus
                            } else {
                                Operation::Abort
                            },
                            state,
                            status: r.status,
                            expected: "dfuIDLE",
                        });
                    }
                    if state == State::Error {
                        self.clear_status()?;
                    } else {
                        self.abort()?;
                    }
                }
            }
            r = self.get_status()?;
        }
    }

    /// Makes sure DNLOAD commands are accepted (dfuIDLE or dfuDNLOAD-IDLE).
    fn ready_for_dnload(&mut self) -> Result<()> {
        if matches!(self.known_state, Some(State::DfuIdle | State::DnloadIdle)) {
            return Ok(());
        }
        let r = self.get_status()?;
        match r.state {
            State::DfuIdle | State::DnloadIdle => Ok(()),
            _ => self.settle_idle(r),
        }
    }

    /// Polls GETSTATUS after a command or block until dfuDNLOAD-IDLE, waiting bwPollTimeout
    /// between polls. A stall here is the device refusing `during`.
    fn poll(&mut self, during: Operation, timeout_ms: u32) -> Result<StatusRecord> {
        let mut polls = 0u32;
        let mut waited: u64 = 0;
        loop {
            let r = self.status_for(during, Stage::StatusPoll, timeout_ms)?;
            polls += 1;
            match r.state {
                State::DnBusy | State::DnloadSync if r.status == Status::Ok => {
                    let next = waited + u64::from(r.poll_timeout_ms);
                    if polls >= self.options.max_busy_polls || next > self.options.max_wait_ms {
                        return Err(Error::StuckBusy {
                            during,
                            polls,
                            waited_ms: waited,
                        });
                    }
                    self.wait(r.poll_timeout_ms);
                    waited = next;
                }
                State::DnloadIdle if r.status == Status::Ok => return Ok(r),
                State::Error | State::DnBusy | State::DnloadSync | State::DnloadIdle => {
                    return Err(Error::DeviceStatus {
                        during,
                        status: r.status,
                        state: r.state,
                    })
                }
                state => {
                    return Err(Error::UnexpectedState {
                        during,
                        state,
                        status: r.status,
                        expected: "dfuDNBUSY or dfuDNLOAD-IDLE",
                    })
                }
            }
        }
    }

    fn command(
        &mut self,
        kind: Kind,
        payload: &[u8],
        during: Operation,
        timeout_ms: u32,
    ) -> Result<()> {
        self.out(kind, DFU_DNLOAD, 0, payload, during)?;
        self.poll(during, timeout_ms).map(|_| ())
    }

    fn address_command(
        &mut self,
        kind: Kind,
        cmd: u8,
        address: u32,
        during: Operation,
    ) -> Result<()> {
        let a = address.to_le_bytes();
        let t = self.options.timeout_ms;
        self.command(kind, &[cmd, a[0], a[1], a[2], a[3]], during, t)
    }

    /// DfuSe Set Address Pointer.
    pub fn set_address(&mut self, address: u32) -> Result<()> {
        self.ready_for_dnload()?;
        self.address_command(
            Kind::SetAddress,
            DFUSE_SET_ADDRESS,
            address,
            Operation::SetAddress { address },
        )
    }

    /// DfuSe Erase of the page containing `address` (no layout check: use
    /// [`DfuSe::download`] for checked erases).
    pub fn erase_page(&mut self, address: u32) -> Result<()> {
        self.ready_for_dnload()?;
        self.address_command(
            Kind::Erase,
            DFUSE_ERASE,
            address,
            Operation::Erase { address },
        )
    }

    /// DfuSe mass erase (only on request; many bootloaders, Particle's included, refuse it).
    pub fn mass_erase(&mut self) -> Result<()> {
        self.ready_for_dnload()?;
        let t = self.options.mass_erase_timeout_ms;
        self.command(Kind::MassErase, &[DFUSE_ERASE], Operation::MassErase, t)
    }

    /// DfuSe Read Unprotect (only on request). The device erases itself and resets, so only the
    /// first poll (dfuDNBUSY) is read; a device that drops off the bus counts as success.
    pub fn read_unprotect(&mut self) -> Result<()> {
        self.ready_for_dnload()?;
        let during = Operation::ReadUnprotect;
        match self.out(
            Kind::ReadUnprotect,
            DFU_DNLOAD,
            0,
            &[DFUSE_READ_UNPROTECT],
            during,
        ) {
            Err(Error::Disconnected { .. }) => return Ok(()),
            other => other?,
        }
        let t = self.options.timeout_ms;
        match self.status_for(during, Stage::StatusPoll, t) {
            Ok(r) if r.state == State::DnBusy && r.status == Status::Ok => Ok(()),
            Ok(r) if r.state == State::Error || r.status != Status::Ok => {
                Err(Error::DeviceStatus {
                    during,
                    status: r.status,
                    state: r.state,
                })
            }
            Ok(r) => Err(Error::UnexpectedState {
                during,
                state: r.state,
                status: r.status,
                expected: "dfuDNBUSY",
            }),
            Err(Error::Disconnected { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// DfuSe Get Commands (UPLOAD wValue 0): the command bytes the device supports.
    pub fn get_commands(&mut self) -> Result<Vec<u8>> {
        let first = self.get_status()?;
        self.settle_idle(first)?;
        let (len, t) = (self.chunk(), self.options.timeout_ms);
        let during = Operation::GetCommands;
        let b = self.inn(Kind::Upload, 0, len, during, Stage::Request, t)?;
        self.known_state = Some(State::UploadIdle);
        self.abort()?;
        Ok(b)
    }

    fn range_end(address: u32, length: usize) -> Result<u64> {
        let end = u64::from(address) + length as u64;
        if end > 1 << 32 {
            return Err(Error::RangeOverflow {
                address,
                length: length as u64,
            });
        }
        Ok(end)
    }

    fn segment_for(&self, address: u32) -> Result<Segment> {
        self.segments
            .iter()
            .find(|s| s.contains(address))
            .copied()
            .ok_or_else(|| Error::NotInLayout {
                address,
                layout: self.layout.name.clone(),
            })
    }

    /// Checks `[address, end)` is writable and returns the erasable pages it touches, in
    /// address order, each once.
    fn plan_download(&self, address: u32, end: u64) -> Result<Vec<Page>> {
        let mut pages: Vec<Page> = Vec::new();
        let mut cur = u64::from(address);
        while cur < end {
            let a = cur as u32; // cur < end <= 2^32
            let seg = self.segment_for(a)?;
            if !seg.access.writable() {
                return Err(Error::NotWritable {
                    address: a,
                    segment_start: seg.start,
                    segment_end: seg.end,
                    access: seg.access,
                });
            }
            let stop = end.min(seg.end);
            if seg.access.erasable() {
                let mut page = seg.page_of(a);
                while let Some(p) = page {
                    if u64::from(p.address) >= stop {
                        break;
                    }
                    pages.push(p);
                    page = u32::try_from(p.end())
                        .ok()
                        .and_then(|next| seg.page_of(next));
                }
            }
            cur = stop;
        }
        pages.sort_by_key(|p| p.address);
        pages.dedup_by_key(|p| p.address);
        Ok(pages)
    }

    fn check_readable(&self, address: u32, end: u64) -> Result<()> {
        let mut cur = u64::from(address);
        while cur < end {
            let a = cur as u32;
            let seg = self.segment_for(a)?;
            if !seg.access.readable() {
                return Err(Error::NotReadable {
                    address: a,
                    segment_start: seg.start,
                    segment_end: seg.end,
                    access: seg.access,
                });
            }
            cur = end.min(seg.end);
        }
        Ok(())
    }

    /// Erases the pages `data` touches, then writes it at `address`. See
    /// [`DfuSe::download_with`].
    pub fn download(
        &mut self,
        address: u32,
        data: &[u8],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        self.download_with(address, data, EraseMode::Pages, progress)
    }

    /// Writes `data` at `address`.
    ///
    /// Before any transfer, every byte must lie in a writable segment of the layout. Then (with
    /// [`EraseMode::Pages`]) each erasable page the data touches is erased once, in address
    /// order; pages of writable but non-erasable segments are written without erase. The write
    /// sends SET_ADDRESS once per contiguous run and advances with the block number
    /// (wValue = 2 + n), starting a new run only when wValue would overflow. Every command and
    /// block is followed by GETSTATUS polls honouring bwPollTimeout. An empty `data` does
    /// nothing. On success the device is left in dfuDNLOAD-IDLE.
    pub fn download_with(
        &mut self,
        address: u32,
        data: &[u8],
        erase: EraseMode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        if data.is_empty() {
            progress(Progress::Done);
            return Ok(());
        }
        let end = Self::range_end(address, data.len())?;
        let pages = self.plan_download(address, end)?;
        self.ready_for_dnload()?;
        if erase == EraseMode::Pages && !pages.is_empty() {
            let total_bytes = pages.iter().map(|p| u64::from(p.size)).sum();
            progress(Progress::EraseStarted {
                pages: pages.len(),
                total_bytes,
            });
            for p in &pages {
                let address = p.address;
                self.address_command(
                    Kind::Erase,
                    DFUSE_ERASE,
                    address,
                    Operation::Erase { address },
                )?;
                progress(Progress::Erased {
                    address,
                    bytes: p.size,
                });
            }
        }
        let total_bytes = data.len() as u64;
        progress(Progress::WriteStarted {
            address,
            total_bytes,
        });
        let chunk = usize::from(self.chunk());
        let blocks_per_run = if self.block_addressing() {
            usize::from(MAX_BLOCK - 1)
        } else {
            1
        };
        let mut offset = 0usize;
        while offset < data.len() {
            let run_address = (u64::from(address) + offset as u64) as u32;
            self.address_command(
                Kind::SetAddress,
                DFUSE_SET_ADDRESS,
                run_address,
                Operation::SetAddress {
                    address: run_address,
                },
            )?;
            for n in 0..blocks_per_run {
                if offset >= data.len() {
                    break;
                }
                let len = chunk.min(data.len() - offset);
                let block = (n + 2) as u16; // n + 2 <= MAX_BLOCK
                let block_address = (u64::from(run_address) + (n * chunk) as u64) as u32;
                let during = Operation::Write {
                    address: block_address,
                    block,
                };
                self.out(
                    Kind::Download,
                    DFU_DNLOAD,
                    block,
                    &data[offset..offset + len],
                    during,
                )?;
                self.poll(during, self.options.timeout_ms)?;
                offset += len;
                progress(Progress::Written {
                    address: block_address,
                    bytes_done: offset as u64,
                    total_bytes,
                });
            }
        }
        progress(Progress::Done);
        Ok(())
    }

    /// Reads `length` bytes from `address`: SET_ADDRESS, ABORT to dfuIDLE, then UPLOAD blocks
    /// with wValue 2, 3, ... (the last one short if needed), then ABORT. The range must be
    /// readable in the layout. A device that sends less than asked is an error.
    pub fn upload(
        &mut self,
        address: u32,
        length: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<u8>> {
        if length == 0 {
            progress(Progress::Done);
            return Ok(Vec::new());
        }
        let end = Self::range_end(address, length)?;
        self.check_readable(address, end)?;
        let total_bytes = length as u64;
        progress(Progress::ReadStarted {
            address,
            total_bytes,
        });
        let chunk = usize::from(self.chunk());
        let blocks_per_run = if self.block_addressing() {
            usize::from(MAX_BLOCK - 1)
        } else {
            1
        };
        let mut out = Vec::with_capacity(length.min(1 << 24));
        while out.len() < length {
            let run_address = (u64::from(address) + out.len() as u64) as u32;
            self.ready_for_dnload()?;
            self.address_command(
                Kind::SetAddress,
                DFUSE_SET_ADDRESS,
                run_address,
                Operation::SetAddress {
                    address: run_address,
                },
            )?;
            self.abort()?;
            for n in 0..blocks_per_run {
                if out.len() >= length {
                    break;
                }
                let len = chunk.min(length - out.len());
                let block = (n + 2) as u16;
                let block_address = (u64::from(run_address) + (n * chunk) as u64) as u32;
                let during = Operation::Read {
                    address: block_address,
                    block,
                };
                let t = self.options.timeout_ms;
                let b = self.inn(Kind::Upload, block, len as u16, during, Stage::Request, t)?;
                if b.len() < len {
                    return Err(Error::UploadShort {
                        address: block_address,
                        requested: len,
                        received: b.len(),
                    });
                }
                out.extend_from_slice(&b);
                progress(Progress::ReadProgress {
                    bytes_done: out.len() as u64,
                    total_bytes,
                });
            }
            // dfuUPLOAD-IDLE (or dfuIDLE after a short block): back to dfuIDLE.
            self.known_state = Some(State::UploadIdle);
            self.abort()?;
        }
        progress(Progress::Done);
        Ok(out)
    }

    /// Reads back `expected.len()` bytes at `address` and compares; the error names the first
    /// differing address.
    pub fn verify(
        &mut self,
        address: u32,
        expected: &[u8],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let actual = self.upload(address, expected.len(), progress)?;
        match expected.iter().zip(&actual).position(|(e, a)| e != a) {
            None => Ok(()),
            Some(i) => Err(Error::Verify {
                address: (u64::from(address) + i as u64) as u32,
                expected: expected[i],
                actual: actual[i],
            }),
        }
    }

    /// Leaves DFU mode and starts the firmware at `address`: SET_ADDRESS(address), a zero-length
    /// DNLOAD, then one GETSTATUS. dfuMANIFEST, dfuMANIFEST-WAIT-RESET, dfuDNLOAD-IDLE (Particle)
    /// or the device vanishing (no device, or a stalled GETSTATUS) count as success.
    pub fn leave(&mut self, address: u32) -> Result<LeaveOutcome> {
        self.ready_for_dnload()?;
        self.address_command(
            Kind::SetAddress,
            DFUSE_SET_ADDRESS,
            address,
            Operation::SetAddress { address },
        )?;
        let during = Operation::Leave { address };
        match self.out(Kind::Leave, DFU_DNLOAD, 2, &[], during) {
            Ok(()) => {}
            Err(Error::Disconnected { .. }) => return Ok(LeaveOutcome::Disconnected),
            Err(e) => return Err(e),
        }
        let t = self.options.timeout_ms;
        let result = match self.status_for(during, Stage::StatusPoll, t) {
            Ok(r) => match r.state {
                State::Manifest | State::ManifestWaitReset | State::DnloadIdle
                    if r.status == Status::Ok =>
                {
                    Ok(LeaveOutcome::Manifesting(r.state))
                }
                State::Error | State::Manifest | State::ManifestWaitReset | State::DnloadIdle => {
                    Err(Error::DeviceStatus {
                        during,
                        status: r.status,
                        state: r.state,
                    })
                }
                state => Err(Error::UnexpectedState {
                    during,
                    state,
                    status: r.status,
                    expected: "dfuMANIFEST, dfuMANIFEST-WAIT-RESET or dfuDNLOAD-IDLE",
                }),
            },
            Err(Error::Disconnected { .. }) | Err(Error::Refused { .. }) => {
                Ok(LeaveOutcome::Disconnected)
            }
            Err(e) => Err(e),
        };
        self.known_state = None;
        result
    }

    /// DFU_DETACH with `timeout_ms` in wValue (dfu-util sends 1000). A device that drops off
    /// the bus counts as success.
    pub fn detach(&mut self, timeout_ms: u16) -> Result<()> {
        self.known_state = None;
        self.count(Kind::Detach);
        let t = self.options.timeout_ms;
        detach(&mut *self.ctl, self.interface, timeout_ms, t)
    }
}
