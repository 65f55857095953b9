//! Test doubles: a scripted `Control` and an honest DfuSe device model with Particle quirks.
#![allow(dead_code)]

use std::collections::VecDeque;

use modflash_dfu::control::*;
use modflash_dfu::{Control, MemoryLayout, Setup, TransferError};

pub const PHOTON_LAYOUT: &str = "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg";
pub const DCT_LAYOUT: &str = "@DCT Flash   /0x00000000/01*016Kg";

pub fn photon_layout() -> MemoryLayout {
    MemoryLayout::parse(PHOTON_LAYOUT).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scripted mock
// ---------------------------------------------------------------------------------------------

/// What the scripted transport answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// IN data (may be shorter than wLength: a short read).
    In(Vec<u8>),
    /// OUT accepted in full.
    Out,
    /// OUT accepted partially.
    OutShort(usize),
    Stall,
    Timeout,
    NoDevice,
    Other(&'static str),
}

#[derive(Clone, Debug)]
pub struct Step {
    pub setup: Setup,
    /// Expected OUT payload (checked when `Some`).
    pub data: Option<Vec<u8>>,
    pub reply: Reply,
}

/// A transport that checks each request against an expectation list.
#[derive(Default)]
pub struct Script {
    pub steps: VecDeque<Step>,
    pub waits: Vec<u32>,
    pub done: usize,
}

pub fn status_bytes(state: State, status: Status, poll_ms: u32) -> Vec<u8> {
    StatusRecord {
        status,
        poll_timeout_ms: poll_ms,
        state,
        string_index: 0,
    }
    .to_bytes()
    .to_vec()
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn step(mut self, setup: Setup, data: Option<Vec<u8>>, reply: Reply) -> Self {
        self.steps.push_back(Step { setup, data, reply });
        self
    }

    /// GETSTATUS answered with a record.
    pub fn status(self, state: State, status: Status, poll_ms: u32) -> Self {
        self.step(
            Setup::class_in(DFU_GETSTATUS, 0, 0, 6),
            None,
            Reply::In(status_bytes(state, status, poll_ms)),
        )
    }

    /// GETSTATUS answered with something else.
    pub fn status_reply(self, reply: Reply) -> Self {
        self.step(Setup::class_in(DFU_GETSTATUS, 0, 0, 6), None, reply)
    }

    /// A DfuSe command (DNLOAD wValue 0) with exact payload.
    pub fn command(self, payload: &[u8]) -> Self {
        self.step(
            Setup::class_out(DFU_DNLOAD, 0, 0, payload.len() as u16),
            Some(payload.to_vec()),
            Reply::Out,
        )
    }

    pub fn set_address(self, a: u32) -> Self {
        let b = a.to_le_bytes();
        self.command(&[0x21, b[0], b[1], b[2], b[3]])
    }

    pub fn erase(self, a: u32) -> Self {
        let b = a.to_le_bytes();
        self.command(&[0x41, b[0], b[1], b[2], b[3]])
    }

    /// A command followed by the normal DNBUSY, DNLOAD-IDLE polls.
    pub fn command_ok(self, payload: &[u8]) -> Self {
        self.command(payload).busy_then_idle()
    }

    pub fn busy_then_idle(self) -> Self {
        self.status(State::DnBusy, Status::Ok, 0)
            .status(State::DnloadIdle, Status::Ok, 0)
    }

    /// DNLOAD data block (payload not checked, only length).
    pub fn dnload(self, block: u16, len: u16, reply: Reply) -> Self {
        self.step(Setup::class_out(DFU_DNLOAD, block, 0, len), None, reply)
    }

    pub fn upload(self, block: u16, len: u16, reply: Reply) -> Self {
        self.step(Setup::class_in(DFU_UPLOAD, block, 0, len), None, reply)
    }

    pub fn simple_out(self, request: u8, value: u16, reply: Reply) -> Self {
        self.step(Setup::class_out(request, value, 0, 0), Some(vec![]), reply)
    }

    pub fn assert_done(&self) {
        assert!(
            self.steps.is_empty(),
            "{} scripted steps not used: {:?}",
            self.steps.len(),
            self.steps.front()
        );
    }

    fn next(&mut self, setup: &Setup, data: Option<&[u8]>) -> Reply {
        let step = self.steps.pop_front().unwrap_or_else(|| {
            panic!(
                "unexpected request #{} {setup} (script exhausted)",
                self.done
            )
        });
        assert_eq!(*setup, step.setup, "request #{} differs", self.done);
        if let (Some(want), Some(got)) = (&step.data, data) {
            assert_eq!(got, &want[..], "request #{} payload differs", self.done);
        }
        self.done += 1;
        step.reply
    }
}

fn err(r: &Reply) -> Option<TransferError> {
    match r {
        Reply::Stall => Some(TransferError::Stall),
        Reply::Timeout => Some(TransferError::Timeout),
        Reply::NoDevice => Some(TransferError::NoDevice),
        Reply::Other(m) => Some(TransferError::Other(m.to_string())),
        _ => None,
    }
}

impl Control for Script {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        _t: u32,
    ) -> Result<usize, TransferError> {
        assert_eq!(usize::from(setup.length), buf.len());
        let r = self.next(setup, None);
        if let Some(e) = err(&r) {
            return Err(e);
        }
        match r {
            Reply::In(b) => {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Ok(n)
            }
            other => panic!("IN request {setup} scripted with {other:?}"),
        }
    }

    fn control_out(&mut self, setup: &Setup, data: &[u8], _t: u32) -> Result<usize, TransferError> {
        assert_eq!(usize::from(setup.length), data.len());
        let r = self.next(setup, Some(data));
        if let Some(e) = err(&r) {
            return Err(e);
        }
        match r {
            Reply::Out => Ok(data.len()),
            Reply::OutShort(n) => Ok(n),
            other => panic!("OUT request {setup} scripted with {other:?}"),
        }
    }

    fn wait(&mut self, ms: u32) {
        self.waits.push(ms);
    }
}

// ---------------------------------------------------------------------------------------------
// Honest device model
// ---------------------------------------------------------------------------------------------

/// Behaviour switches.
#[derive(Clone, Copy, Debug)]
pub struct Quirks {
    /// Particle: a failed erase/write STALLs the GETSTATUS after DNBUSY (no dfuERROR).
    pub stall_on_failure: bool,
    /// Particle: the GETSTATUS after leave reports dfuDNLOAD-IDLE instead of dfuMANIFEST.
    pub leave_reports_dnload_idle: bool,
    /// Particle: a wrong-state DNLOAD/UPLOAD stalls without entering dfuERROR; CLRSTATUS
    /// outside dfuERROR enters dfuERROR with errUNKNOWN.
    pub particle_states: bool,
    /// Whether mass erase (0x41 alone) is implemented.
    pub mass_erase: bool,
    /// bwPollTimeout reported for erase / write / other commands.
    pub erase_poll_ms: u32,
    pub write_poll_ms: u32,
    pub command_poll_ms: u32,
    /// Extra DNBUSY polls before an operation completes.
    pub extra_busy_polls: u32,
}

impl Quirks {
    pub fn particle() -> Self {
        Quirks {
            stall_on_failure: true,
            leave_reports_dnload_idle: true,
            particle_states: true,
            mass_erase: false,
            erase_poll_ms: 0,
            write_poll_ms: 0,
            command_poll_ms: 0,
            extra_busy_polls: 0,
        }
    }

    pub fn st() -> Self {
        Quirks {
            stall_on_failure: false,
            leave_reports_dnload_idle: false,
            particle_states: false,
            mass_erase: true,
            erase_poll_ms: 0,
            write_poll_ms: 0,
            command_poll_ms: 0,
            extra_busy_polls: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    SetAddress(u32),
    Erase(u32),
    MassErase,
    Unprotect,
    Write(u32, Vec<u8>),
}

/// Outcome of a flash operation: Ok or a DFU status code.
type OpResult = Result<(), Status>;

pub struct Model {
    pub base: u32,
    pub flash: Vec<u8>,
    /// (start, size) of each sector.
    pub sectors: Vec<(u32, u32)>,
    /// Erase/write below this address fails (Particle: 0x08020000).
    pub protected_below: u32,
    /// Writes inside this range fail with errWRITE (a bad flash cell).
    pub write_fail: Option<(u32, u32)>,
    pub transfer_size: u16,
    pub quirks: Quirks,
    pub state: State,
    pub status: Status,
    pub pointer: u32,
    pending: Option<Pending>,
    result: OpResult,
    busy_polls_left: u32,
    busy_until: u64,
    pub now: u64,
    pub waits: Vec<u32>,
    /// Every request received, with its OUT payload.
    pub log: Vec<(Setup, Vec<u8>)>,
    pub gone: bool,
    /// Address the device jumped to on leave.
    pub left_at: Option<u32>,
    /// Transfers after which the device vanishes (cable pulled).
    pub unplug_after: Option<usize>,
    pub erased: Vec<u32>,
    /// Requests made while the device was busy (the host did not honour bwPollTimeout).
    pub impatient: usize,
}

impl Model {
    /// A Photon: 1 MiB STM32F205 flash at 0x08000000, protected below 0x08020000.
    pub fn photon(quirks: Quirks) -> Self {
        let mut sectors = Vec::new();
        let mut a = 0x0800_0000u32;
        for size in [16u32, 16, 16, 16, 64, 128, 128, 128, 128, 128, 128, 128] {
            sectors.push((a, size * 1024));
            a += size * 1024;
        }
        Self::new(0x0800_0000, sectors, 4096, 0x0802_0000, quirks)
    }

    /// A flat RAM-like device: `pages` pages of `page` bytes at `base`, nothing protected.
    pub fn flat(base: u32, pages: u32, page: u32, transfer_size: u16, quirks: Quirks) -> Self {
        let sectors = (0..pages).map(|i| (base + i * page, page)).collect();
        Self::new(base, sectors, transfer_size, base, quirks)
    }

    pub fn new(
        base: u32,
        sectors: Vec<(u32, u32)>,
        ts: u16,
        protected_below: u32,
        quirks: Quirks,
    ) -> Self {
        let size: u32 = sectors.iter().map(|s| s.1).sum();
        // Not erased: a write without erase produces garbage (AND-programming).
        let flash = (0..size).map(|i| (i as u8) ^ 0x5A).collect();
        Model {
            base,
            flash,
            sectors,
            protected_below,
            write_fail: None,
            transfer_size: ts,
            quirks,
            state: State::DfuIdle,
            status: Status::Ok,
            pointer: 0x0802_0000,
            pending: None,
            result: Ok(()),
            busy_polls_left: 0,
            busy_until: 0,
            now: 0,
            waits: Vec::new(),
            log: Vec::new(),
            gone: false,
            left_at: None,
            unplug_after: None,
            erased: Vec::new(),
            impatient: 0,
        }
    }

    pub fn read(&self, addr: u32, len: usize) -> &[u8] {
        let off = (addr - self.base) as usize;
        &self.flash[off..off + len]
    }

    /// DfuSe commands (first payload byte, address) seen, in order.
    pub fn commands(&self) -> Vec<(u8, Option<u32>)> {
        self.log
            .iter()
            .filter(|(s, d)| s.request == DFU_DNLOAD && s.value == 0 && !d.is_empty())
            .map(|(_, d)| {
                let a = (d.len() == 5).then(|| u32::from_le_bytes([d[1], d[2], d[3], d[4]]));
                (d[0], a)
            })
            .collect()
    }

    pub fn count(&self, request: u8, is_in: bool) -> usize {
        self.log
            .iter()
            .filter(|(s, _)| s.request == request && s.is_in() == is_in)
            .count()
    }

    fn in_flash(&self, addr: u32, len: usize) -> bool {
        let end = u64::from(addr) + len as u64;
        addr >= self.base && end <= u64::from(self.base) + self.flash.len() as u64
    }

    fn sector_of(&self, addr: u32) -> Option<(u32, u32)> {
        self.sectors
            .iter()
            .copied()
            .find(|&(s, n)| addr >= s && u64::from(addr) < u64::from(s) + u64::from(n))
    }

    fn execute(&mut self, op: &Pending) -> OpResult {
        match op {
            Pending::SetAddress(a) => {
                self.pointer = *a;
                Ok(())
            }
            Pending::Erase(a) => {
                let (s, n) = self.sector_of(*a).ok_or(Status::ErrAddress)?;
                if s < self.protected_below {
                    return Err(Status::ErrAddress);
                }
                let off = (s - self.base) as usize;
                self.flash[off..off + n as usize].fill(0xFF);
                self.erased.push(s);
                Ok(())
            }
            Pending::MassErase => {
                if !self.quirks.mass_erase {
                    return Err(Status::ErrUnknown);
                }
                let start = (self.protected_below.max(self.base) - self.base) as usize;
                self.flash[start..].fill(0xFF);
                Ok(())
            }
            Pending::Unprotect => {
                self.gone = true;
                Ok(())
            }
            Pending::Write(a, data) => {
                if !self.in_flash(*a, data.len()) || *a < self.protected_below {
                    return Err(Status::ErrAddress);
                }
                if let Some((lo, hi)) = self.write_fail {
                    let end = *a as u64 + data.len() as u64;
                    if u64::from(lo) < end && u64::from(*a) < u64::from(hi) {
                        return Err(Status::ErrWrite);
                    }
                }
                let off = (*a - self.base) as usize;
                for (f, d) in self.flash[off..off + data.len()].iter_mut().zip(data) {
                    *f &= d;
                }
                Ok(())
            }
        }
    }

    fn poll_ms(&self, op: &Pending) -> u32 {
        match op {
            Pending::Erase(_) | Pending::MassErase => self.quirks.erase_poll_ms,
            Pending::Write(..) => self.quirks.write_poll_ms,
            _ => self.quirks.command_poll_ms,
        }
    }

    /// Wrong request for the state.
    fn stall(&mut self) -> Result<usize, TransferError> {
        if !self.quirks.particle_states {
            self.state = State::Error;
            self.status = Status::ErrStalledPkt;
        }
        Err(TransferError::Stall)
    }

    fn record(&self) -> Vec<u8> {
        status_bytes(self.state, self.status, 0)
    }

    fn tick(&mut self, setup: &Setup, data: &[u8]) -> Result<(), TransferError> {
        if self.gone {
            return Err(TransferError::NoDevice);
        }
        if let Some(n) = self.unplug_after {
            if self.log.len() >= n {
                self.gone = true;
                return Err(TransferError::NoDevice);
            }
        }
        self.log.push((*setup, data.to_vec()));
        Ok(())
    }

    fn get_status(&mut self) -> Result<Vec<u8>, TransferError> {
        match self.state {
            State::DnloadSync => {
                let op = self.pending.clone().expect("pending op");
                let ms = self.poll_ms(&op);
                self.state = State::DnBusy;
                self.busy_until = self.now + u64::from(ms);
                self.busy_polls_left = self.quirks.extra_busy_polls;
                // The ST/Particle driver runs the operation once DNBUSY has been reported.
                self.result = self.execute(&op);
                Ok(status_bytes(State::DnBusy, Status::Ok, ms))
            }
            State::DnBusy => {
                if self.now < self.busy_until {
                    self.impatient += 1;
                    self.state = State::Error;
                    self.status = Status::ErrStalledPkt;
                    return Err(TransferError::Stall);
                }
                if self.busy_polls_left > 0 {
                    self.busy_polls_left -= 1;
                    let ms = self.poll_ms(self.pending.as_ref().expect("pending"));
                    self.busy_until = self.now + u64::from(ms);
                    return Ok(status_bytes(State::DnBusy, Status::Ok, ms));
                }
                self.pending = None;
                match self.result {
                    Ok(()) => {
                        self.state = State::DnloadIdle;
                        Ok(self.record())
                    }
                    Err(code) if self.quirks.stall_on_failure => {
                        let _ = code;
                        self.state = State::DnloadIdle;
                        Err(TransferError::Stall)
                    }
                    Err(code) => {
                        self.state = State::Error;
                        self.status = code;
                        Ok(self.record())
                    }
                }
            }
            State::ManifestSync => {
                self.left_at = Some(self.pointer);
                self.gone = true;
                if self.quirks.leave_reports_dnload_idle {
                    Ok(status_bytes(State::DnloadIdle, Status::Ok, 0))
                } else {
                    Ok(status_bytes(State::Manifest, Status::Ok, 0))
                }
            }
            _ => Ok(self.record()),
        }
    }
}

impl Control for Model {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        _t: u32,
    ) -> Result<usize, TransferError> {
        self.tick(setup, &[])?;
        let reply: Vec<u8> = match (setup.request_type, setup.request) {
            (REQUEST_TYPE_CLASS_IN, DFU_GETSTATUS) => self.get_status()?,
            (REQUEST_TYPE_CLASS_IN, DFU_GETSTATE) => vec![self.state.as_u8()],
            (REQUEST_TYPE_CLASS_IN, DFU_UPLOAD) => {
                if !matches!(self.state, State::DfuIdle | State::UploadIdle) {
                    return self.stall();
                }
                let len = usize::from(setup.length);
                match setup.value {
                    0 => {
                        let mut c = vec![0x00, 0x21, 0x41];
                        if self.quirks.mass_erase {
                            c.push(0x92);
                        }
                        c.truncate(len);
                        self.state = State::DfuIdle;
                        c
                    }
                    1 => return self.stall(),
                    w => {
                        let addr = u64::from(self.pointer)
                            + u64::from(w - 2) * u64::from(self.transfer_size);
                        let Ok(addr) = u32::try_from(addr) else {
                            return self.stall();
                        };
                        if !self.in_flash(addr, len) {
                            return self.stall();
                        }
                        self.state = if len < usize::from(self.transfer_size) {
                            State::DfuIdle
                        } else {
                            State::UploadIdle
                        };
                        self.read(addr, len).to_vec()
                    }
                }
            }
            _ => return self.stall(),
        };
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        Ok(n)
    }

    fn control_out(&mut self, setup: &Setup, data: &[u8], _t: u32) -> Result<usize, TransferError> {
        self.tick(setup, data)?;
        if setup.request_type != REQUEST_TYPE_CLASS_OUT {
            return self.stall();
        }
        match setup.request {
            DFU_DNLOAD => {
                if !matches!(self.state, State::DfuIdle | State::DnloadIdle) {
                    return self.stall();
                }
                if data.is_empty() {
                    self.state = State::ManifestSync;
                    return Ok(0);
                }
                let op = match setup.value {
                    0 => match data {
                        [0x21, a, b, c, d] => {
                            Pending::SetAddress(u32::from_le_bytes([*a, *b, *c, *d]))
                        }
                        [0x41, a, b, c, d] => Pending::Erase(u32::from_le_bytes([*a, *b, *c, *d])),
                        [0x41] => Pending::MassErase,
                        [0x92] => Pending::Unprotect,
                        _ => return self.stall(),
                    },
                    1 => return self.stall(),
                    w => {
                        if data.len() > usize::from(self.transfer_size) {
                            return self.stall();
                        }
                        let addr = u64::from(self.pointer)
                            + u64::from(w - 2) * u64::from(self.transfer_size);
                        match u32::try_from(addr) {
                            Ok(a) => Pending::Write(a, data.to_vec()),
                            Err(_) => return self.stall(),
                        }
                    }
                };
                self.pending = Some(op);
                self.state = State::DnloadSync;
                Ok(data.len())
            }
            DFU_CLRSTATUS => {
                if self.state == State::Error {
                    self.state = State::DfuIdle;
                    self.status = Status::Ok;
                } else if self.quirks.particle_states {
                    self.state = State::Error;
                    self.status = Status::ErrUnknown;
                } else {
                    return self.stall();
                }
                Ok(0)
            }
            DFU_ABORT => {
                if matches!(
                    self.state,
                    State::DfuIdle
                        | State::DnloadSync
                        | State::DnloadIdle
                        | State::ManifestSync
                        | State::UploadIdle
                ) {
                    self.state = State::DfuIdle;
                    self.pending = None;
                    Ok(0)
                } else {
                    self.stall()
                }
            }
            DFU_DETACH => Ok(0),
            _ => self.stall(),
        }
    }

    fn wait(&mut self, ms: u32) {
        self.now += u64::from(ms);
        self.waits.push(ms);
    }
}

// ---------------------------------------------------------------------------------------------
// Fault injection around the model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Fault {
    /// The request never reaches the device; the host gets this error.
    Lost(TransferError),
    /// The device handles the request; the host gets this error instead of the reply.
    ReplyLost(TransferError),
    /// The device handles the request; the IN reply is cut to this many bytes.
    Truncate(usize),
    /// The device handles the request; the IN reply is replaced by these bytes.
    Garbage(Vec<u8>),
    /// The device handles the request; the host is told fewer OUT bytes were accepted.
    ShortOut(usize),
}

pub struct Faulty {
    pub model: Model,
    pub faults: Vec<(usize, Fault)>,
    pub n: usize,
}

impl Faulty {
    fn fault(&mut self) -> Option<Fault> {
        let i = self.n;
        self.n += 1;
        self.faults
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, f)| f.clone())
    }
}

impl Control for Faulty {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        t: u32,
    ) -> Result<usize, TransferError> {
        match self.fault() {
            None | Some(Fault::ShortOut(_)) => self.model.control_in(setup, buf, t),
            Some(Fault::Lost(e)) => Err(e),
            Some(Fault::ReplyLost(e)) => {
                let _ = self.model.control_in(setup, buf, t);
                Err(e)
            }
            Some(Fault::Truncate(k)) => {
                let n = self.model.control_in(setup, buf, t)?;
                Ok(n.min(k))
            }
            Some(Fault::Garbage(g)) => {
                let _ = self.model.control_in(setup, buf, t);
                let n = g.len().min(buf.len());
                buf[..n].copy_from_slice(&g[..n]);
                Ok(n)
            }
        }
    }

    fn control_out(&mut self, setup: &Setup, data: &[u8], t: u32) -> Result<usize, TransferError> {
        match self.fault() {
            None | Some(Fault::Truncate(_)) | Some(Fault::Garbage(_)) => {
                self.model.control_out(setup, data, t)
            }
            Some(Fault::Lost(e)) => Err(e),
            Some(Fault::ReplyLost(e)) => {
                let _ = self.model.control_out(setup, data, t);
                Err(e)
            }
            Some(Fault::ShortOut(k)) => {
                let n = self.model.control_out(setup, data, t)?;
                Ok(n.min(k).min(data.len().saturating_sub(1)))
            }
        }
    }

    fn wait(&mut self, ms: u32) {
        self.model.wait(ms)
    }
}

/// A transport answering every request from a byte stream (no protocol at all).
pub struct Random {
    pub bytes: Vec<u8>,
    pub pos: usize,
    pub transfers: usize,
}

impl Random {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
}

impl Control for Random {
    fn control_in(&mut self, _s: &Setup, buf: &mut [u8], _t: u32) -> Result<usize, TransferError> {
        self.transfers += 1;
        if self.pos >= self.bytes.len() {
            return Err(TransferError::NoDevice);
        }
        match self.byte() % 8 {
            0 => Err(TransferError::Stall),
            1 => Err(TransferError::Timeout),
            2 => Err(TransferError::Other("noise".into())),
            _ => {
                let n = usize::from(self.byte()) % (buf.len() + 2);
                for b in buf.iter_mut().take(n) {
                    *b = self.byte();
                }
                // Deliberately report more than the buffer sometimes: the engine must cope.
                Ok(n)
            }
        }
    }

    fn control_out(&mut self, _s: &Setup, data: &[u8], _t: u32) -> Result<usize, TransferError> {
        self.transfers += 1;
        if self.pos >= self.bytes.len() {
            return Err(TransferError::NoDevice);
        }
        match self.byte() % 6 {
            0 => Err(TransferError::Stall),
            1 => Err(TransferError::Timeout),
            2 => Ok(usize::from(self.byte())),
            _ => Ok(data.len()),
        }
    }

    fn wait(&mut self, _ms: u32) {}
}
