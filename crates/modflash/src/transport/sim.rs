//! A virtual device as a connection, in-process: its DfuSe handler as a control pipe
//! ([`SimControl`]), its firmware's EP0 for Particle's vendor requests ([`SimVendor`]), its
//! listening-mode console as a serial link on a virtual clock ([`ConsoleLink`]), and
//! [`SimLink`], the device as the executor drives it — a stored `sim:NAME` (saved when
//! closed) or a device borrowed from the caller (a planner's twin). [`SimBus`] puts a virtual
//! device on a USB bus of its own, so [`crate::transport::usb::UsbLink`] drives it exactly as
//! it drives a real one, on the device's modelled clock.
//! For tests of how the executor copes with a misbehaving USB pipe, a [`SimLink`] can inject
//! [`PipeFault`]s into chosen control transfers ([`SimLink::with_pipe_faults`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use modflash_control::proto::{
    DfuModeRequest, SafeModeRequest, StartListeningModeRequest, StopListeningModeRequest,
    SystemResetRequest,
};
use modflash_device::console::{Console as DeviceConsole, ConsoleConfig};
use modflash_device::{ControlProtocol, Device, Mode, ResetReason};
use modflash_dfu::descriptor::ConfigDescriptor;
use modflash_dfu::{Control, Setup, TransferError};
use modflash_module::{ModuleRef, Platform};
use modflash_ymodem::SenderConfig;

use super::control::{ControlClient, ControlError, UpdateVerdict, VendorPipe};
use super::dfu::{DfuInfo, DfuMemo, DfuOpError, DfuPort, DfuSession, WriteCheck};
use super::serial::{
    Console, FlashReport, Link, SerialError, Verdict, WifiAnswers, WifiExchange, WifiVerdict,
    DFU_BAUD, LISTENING_BAUD,
};
use super::usb::{UsbBus, UsbDevice, UsbError, UsbMode};
use super::{AfterLeave, Capabilities, DeviceLink, ModeChange, Observation, Pace};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::{Cancel, Event, Observer};
use crate::sim::SimHandle;

/// A fault injected into one control transfer of a virtual device's USB pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipeFault {
    /// The device stalls the request and does not carry it out.
    Stall,
    /// The device carries the request out, but its answer never reaches the host, which
    /// times out.
    Timeout,
    /// The device carries the request out and the answer arrives short: half the bytes of an
    /// IN data stage, or half of an OUT data stage counted as accepted.
    Short,
    /// The device is gone from the bus (unplugged; it keeps its own power and state): this
    /// transfer and every later one on the link fail without reaching it.
    Gone,
}

/// Which control transfers of a [`SimLink`] fail, and how: `schedule` is asked for each
/// transfer in order (numbered from 0: GET_DESCRIPTOR, SET_INTERFACE and DFU requests alike).
pub struct PipeFaults {
    schedule: Box<dyn FnMut(u64) -> Option<PipeFault>>,
    transfers: u64,
    gone: bool,
}

impl PipeFaults {
    /// Faults chosen by `schedule`.
    pub fn new(schedule: impl FnMut(u64) -> Option<PipeFault> + 'static) -> Self {
        Self {
            schedule: Box::new(schedule),
            transfers: 0,
            gone: false,
        }
    }

    /// `fault` at transfer `n` only.
    pub fn at(n: u64, fault: PipeFault) -> Self {
        Self::new(move |i| (i == n).then_some(fault))
    }

    /// The fault of the next transfer.
    fn next(&mut self) -> Option<PipeFault> {
        let n = self.transfers;
        self.transfers += 1;
        if self.gone {
            return Some(PipeFault::Gone);
        }
        let fault = (self.schedule)(n);
        self.gone = fault == Some(PipeFault::Gone);
        fault
    }
}

/// Real time kept to a virtual device's modelled clock (its flash chip's `modelled_us`, which
/// counts flash operations, USB requests and restarts) under [`Pace::Modelled`]: started
/// before a call into the device, it sleeps after it for what the call cost the device, less
/// what it took here.
struct Pacer(Option<(Instant, u64)>);

impl Pacer {
    fn start(pace: Pace, device: &Device) -> Self {
        Self((pace == Pace::Modelled).then(|| (Instant::now(), modelled_us(device))))
    }

    fn keep_up(self, device: &Device) {
        if let Some((started, before)) = self.0 {
            let cost = Duration::from_micros(modelled_us(device).saturating_sub(before));
            if let Some(left) = cost.checked_sub(started.elapsed()) {
                std::thread::sleep(left);
            }
        }
    }
}

fn modelled_us(device: &Device) -> u64 {
    device.flash().stats().modelled_us
}

/// `modflash_dfu::Control` over a virtual device's DfuSe handler.
pub struct SimControl<'a> {
    device: &'a mut Device,
    connection: Option<u64>,
    faults: Option<&'a mut PipeFaults>,
    pace: Pace,
}

impl<'a> SimControl<'a> {
    /// Connects to a device in DFU mode.
    pub fn new(device: &'a mut Device) -> Self {
        let connection = device.dfu_connection();
        Self {
            device,
            connection,
            faults: None,
            pace: Pace::Instant,
        }
    }

    /// The same connection, working at `pace`.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// The device behind the pipe.
    pub fn device(&self) -> &Device {
        self.device
    }

    fn transfer(&mut self, setup: &Setup, data: &[u8]) -> Result<Vec<u8>, TransferError> {
        if self.connection.is_none() || self.device.dfu_connection() != self.connection {
            return Err(TransferError::NoDevice);
        }
        let pacer = Pacer::start(self.pace, self.device);
        let reply = self
            .device
            .dfu_control(*setup, data)
            .map_err(|_| TransferError::Stall);
        pacer.keep_up(self.device);
        if self.device.state.mode == Mode::Off {
            // Power was lost during the request: the device left the bus.
            self.connection = None;
            return Err(TransferError::NoDevice);
        }
        if self.device.dfu_connection() != self.connection {
            // The device answered, then reset (leave).
            self.connection = None;
        }
        reply
    }
}

impl Control for SimControl<'_> {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        _timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        let fault = self.faults.as_mut().and_then(|f| f.next());
        let reply = match fault {
            Some(PipeFault::Stall) => return Err(TransferError::Stall),
            Some(PipeFault::Gone) => return Err(TransferError::NoDevice),
            _ => self.transfer(setup, &[])?,
        };
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        match fault {
            Some(PipeFault::Timeout) => Err(TransferError::Timeout),
            Some(PipeFault::Short) => Ok(n / 2),
            _ => Ok(n),
        }
    }

    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        _timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        let fault = self.faults.as_mut().and_then(|f| f.next());
        match fault {
            Some(PipeFault::Stall) => return Err(TransferError::Stall),
            Some(PipeFault::Gone) => return Err(TransferError::NoDevice),
            _ => self.transfer(setup, data)?,
        };
        match fault {
            Some(PipeFault::Timeout) => Err(TransferError::Timeout),
            Some(PipeFault::Short) => Ok(data.len() / 2),
            _ => Ok(data.len()),
        }
    }

    fn wait(&mut self, ms: u32) {
        let pacer = Pacer::start(self.pace, self.device);
        self.device.flash_mut().add_time_us(u64::from(ms) * 1000);
        pacer.keep_up(self.device);
    }
}

impl DfuPort for SimControl<'_> {
    /// SET_INTERFACE: a stall when the device has no such alternate setting.
    fn select_alt(&mut self, _interface: u16, alt: u8) -> Result<(), TransferError> {
        let fault = self.faults.as_mut().and_then(|f| f.next());
        match fault {
            Some(PipeFault::Stall) => return Err(TransferError::Stall),
            Some(PipeFault::Gone) => return Err(TransferError::NoDevice),
            _ => {}
        }
        if self.connection.is_none() || self.device.dfu_connection() != self.connection {
            return Err(TransferError::NoDevice);
        }
        self.device
            .dfu_set_alt(alt)
            .map_err(|_| TransferError::Stall)?;
        match fault {
            Some(PipeFault::Timeout) => Err(TransferError::Timeout),
            _ => Ok(()),
        }
    }
}

/// A virtual device's EP0 for Particle's vendor requests while its firmware runs
/// ([`Device::control`]), in-process, on its modelled clock: waiting lets modelled time pass
/// ([`Device::elapse`]), so a mode change requested over USB happens as on the device.
pub struct SimVendor<'a> {
    device: &'a mut Device,
}

impl<'a> SimVendor<'a> {
    /// The vendor pipe of `device`.
    pub fn new(device: &'a mut Device) -> Self {
        Self { device }
    }

    /// The device behind the pipe.
    pub fn device(&mut self) -> &mut Device {
        self.device
    }

    /// Lets modelled time pass until a mode change the device has scheduled (a reset, DFU or
    /// safe mode asked for over USB) has happened.
    pub fn settle(&mut self) {
        if let Some(at) = self.device.control_deadline() {
            let now = self.device.flash_stats().modelled_us;
            self.device.elapse(at.saturating_sub(now));
        }
    }
}

impl VendorPipe for SimVendor<'_> {
    /// A stall is the firmware's answer; a device in DFU mode, off or crash-looping has no
    /// normal-mode USB device to talk to.
    fn transfer(
        &mut self,
        setup: &Setup,
        data: &[u8],
        _timeout_ms: u32,
    ) -> Result<Vec<u8>, TransferError> {
        if matches!(self.device.state.mode, Mode::Dfu | Mode::Off | Mode::Panic) {
            return Err(TransferError::NoDevice);
        }
        let mut reply = self
            .device
            .control(*setup, data)
            .map_err(|_| TransferError::Stall)?;
        reply.truncate(usize::from(setup.length));
        Ok(reply)
    }

    fn wait(&mut self, ms: u32) {
        self.device.elapse(u64::from(ms) * 1000);
    }

    fn now_ms(&self) -> u64 {
        self.device.flash_stats().modelled_us / 1000
    }
}

/// The DFU interface a virtual device in DFU mode describes.
fn dfu_info(device: &Device) -> Result<DfuInfo, DfuOpError> {
    if !device.in_dfu_mode() {
        return Err(DfuOpError::NotDfu(format!(
            "it is in {} mode, not DFU mode",
            device.state.mode.name()
        )));
    }
    let d = device.usb_descriptors();
    let config = ConfigDescriptor::parse(&d.configuration).map_err(|source| DfuOpError::Dfu {
        context: "reading the configuration descriptor".into(),
        source,
    })?;
    DfuInfo::from_config(&config)
}

/// A DFU session on a virtual device in DFU mode, in-process (the device's own descriptors).
pub fn sim_session(device: &mut Device) -> Result<DfuSession<SimControl<'_>>, DfuOpError> {
    let info = dfu_info(device)?;
    Ok(DfuSession::new(SimControl::new(device), info))
}

/// A virtual device shared by the pipes of a [`SimBus`].
type Shared<'d> = Rc<RefCell<&'d mut Device>>;

/// A virtual device alone on a USB bus, in-process: it shows up (with its platform's USB ids,
/// a new address at every reset, its device id as the serial number) in DFU mode or while its
/// firmware runs; its DFU interface is its own DfuSe handler, its vendor pipe its own
/// control-request handlers; waiting lets its modelled time pass. What
/// [`crate::transport::usb::UsbLink`] does on this bus is what it does on a real one, counted
/// in the device's own statistics.
pub struct SimBus<'d> {
    device: Shared<'d>,
    serial_port: bool,
}

impl<'d> SimBus<'d> {
    /// A bus with `device` on it; its serial port shows (it can be read in listening mode).
    pub fn new(device: &'d mut Device) -> Self {
        Self {
            device: Rc::new(RefCell::new(device)),
            serial_port: true,
        }
    }

    /// Hides the device's serial port, as on an emulated bus or without the cdc_acm driver.
    pub fn without_serial_port(mut self) -> Self {
        self.serial_port = false;
        self
    }
}

impl<'d> UsbBus for SimBus<'d> {
    type Dfu = SimBusPort<'d>;

    fn devices(&mut self) -> Result<Vec<UsbDevice>, UsbError> {
        let d = self.device.borrow();
        let Some(connection) = d.usb_connection() else {
            return Ok(Vec::new());
        };
        let platform = d.platform();
        let dfu = d.in_dfu_mode();
        let (vendor, product) = platform.usb.map_or((0, 0), |u| {
            (
                u.vendor,
                if dfu {
                    u.dfu.unwrap_or(u.normal)
                } else {
                    u.normal
                },
            )
        });
        Ok(vec![UsbDevice {
            bus: 1,
            address: u8::try_from(connection % 126 + 2).unwrap_or(2),
            port_path: "1-1".into(),
            vendor,
            product,
            platform,
            mode: if dfu { UsbMode::Dfu } else { UsbMode::Normal },
            device_id: Some(d.state.device_id.to_ascii_lowercase()),
            access_error: None,
        }])
    }

    fn open_dfu(&mut self, _: &UsbDevice) -> Result<(SimBusPort<'d>, DfuInfo), UsbError> {
        let d = self.device.borrow();
        let info = dfu_info(&d)?;
        let port = SimBusPort {
            device: Rc::clone(&self.device),
            connection: d.dfu_connection(),
        };
        Ok((port, info))
    }

    fn open_vendor(&mut self, _: &UsbDevice) -> Result<Box<dyn VendorPipe + '_>, UsbError> {
        Ok(Box::new(SimBusVendor {
            device: Rc::clone(&self.device),
        }))
    }

    /// What the firmware does with a line-rate change (through the serial port, or a
    /// SET_LINE_CODING on an emulated bus).
    fn baud_request(&mut self, _: &UsbDevice, baud: u32) -> Result<(), UsbError> {
        let mut d = self.device.borrow_mut();
        let running = matches!(
            d.state.mode,
            Mode::App | Mode::NoApp | Mode::SafeMode | Mode::Listening
        );
        if running && baud == DFU_BAUD {
            d.request_dfu();
        } else if running && baud == LISTENING_BAUD {
            d.enter_listening();
        }
        Ok(())
    }

    fn console_inventory(&mut self, _: &UsbDevice) -> Result<Inventory, Error> {
        if !self.serial_port {
            return Err(SerialError::Discovery(
                "no Particle device found on a USB serial port".into(),
            )
            .into());
        }
        let mut d = self.device.borrow_mut();
        let name = format!("virtual device {}", d.state.device_id);
        let mut console = Console::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), name));
        let inventory = console.listening_inventory();
        let _ = console.exit_listening();
        Ok(inventory?)
    }

    fn sleep(&mut self, time: Duration) {
        let us = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.device.borrow_mut().elapse(us);
    }

    fn elapsed(&self) -> Duration {
        Duration::from_micros(self.device.borrow().flash_stats().modelled_us)
    }
}

/// The DFU interface of a [`SimBus`]'s device: its DfuSe handler, one transfer at a time.
pub struct SimBusPort<'d> {
    device: Shared<'d>,
    connection: Option<u64>,
}

impl SimBusPort<'_> {
    /// Runs `f` on a [`SimControl`] of the device for this connection.
    fn with<T>(&mut self, f: impl FnOnce(&mut SimControl<'_>) -> T) -> T {
        let mut d = self.device.borrow_mut();
        let mut control = SimControl {
            device: &mut d,
            connection: self.connection,
            faults: None,
            pace: Pace::Instant,
        };
        let out = f(&mut control);
        self.connection = control.connection;
        out
    }
}

impl Control for SimBusPort<'_> {
    fn control_in(
        &mut self,
        setup: &Setup,
        buf: &mut [u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        self.with(|c| c.control_in(setup, buf, timeout_ms))
    }

    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        self.with(|c| c.control_out(setup, data, timeout_ms))
    }

    fn wait(&mut self, ms: u32) {
        self.with(|c| c.wait(ms));
    }
}

impl DfuPort for SimBusPort<'_> {
    fn select_alt(&mut self, interface: u16, alt: u8) -> Result<(), TransferError> {
        self.with(|c| c.select_alt(interface, alt))
    }
}

/// The vendor pipe of a [`SimBus`]'s device.
struct SimBusVendor<'d> {
    device: Shared<'d>,
}

impl VendorPipe for SimBusVendor<'_> {
    fn transfer(
        &mut self,
        setup: &Setup,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<Vec<u8>, TransferError> {
        let mut d = self.device.borrow_mut();
        SimVendor::new(&mut d).transfer(setup, data, timeout_ms)
    }

    fn wait(&mut self, ms: u32) {
        self.device.borrow_mut().elapse(u64::from(ms) * 1000);
    }

    fn now_ms(&self) -> u64 {
        self.device.borrow().flash_stats().modelled_us / 1000
    }
}

/// A virtual device's listening-mode console, in-process, on a virtual clock: waiting costs
/// no real time, so the device's 5 s timeouts are free and runs are deterministic.
#[derive(Debug)]
pub struct ConsoleLink<'d> {
    device: &'d mut Device,
    console: DeviceConsole,
    now: u64,
    pending: VecDeque<u8>,
    name: String,
    pace: Pace,
}

impl<'d> ConsoleLink<'d> {
    /// The console of `device` with `config` timing; `name` appears in messages
    /// ("virtual device sim:bench").
    pub fn new(device: &'d mut Device, config: ConsoleConfig, name: impl Into<String>) -> Self {
        ConsoleLink {
            device,
            console: DeviceConsole::new(config),
            now: 0,
            pending: VecDeque::new(),
            name: name.into(),
            pace: Pace::Instant,
        }
    }

    /// The same console, working at `pace`.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// The console's timers that are due by `now`, run at the link's pace.
    fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let pacer = Pacer::start(self.pace, self.device);
        self.console.handle_timeout(self.device, self.now);
        pacer.keep_up(self.device);
    }

    /// The device.
    pub fn device(&mut self) -> &mut Device {
        self.device
    }

    /// Runs the console until nothing is scheduled any more (a pending restart happens).
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            self.collect();
            match self.console.next_deadline() {
                Some(t) if self.console.restart_pending() || !self.console.is_receiving() => {
                    self.handle_timeout(t);
                }
                _ => return,
            }
        }
    }

    fn collect(&mut self) {
        if self.console.has_output() {
            self.pending.extend(self.console.drain_output());
        }
    }
}

impl Link for ConsoleLink<'_> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let end = self
            .now
            .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        loop {
            self.collect();
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                for (slot, b) in buf.iter_mut().zip(self.pending.drain(..n)) {
                    *slot = b;
                }
                return Ok(n);
            }
            match self.console.next_deadline() {
                Some(t) if t <= end => self.handle_timeout(t),
                _ => {
                    self.now = self.now.max(end);
                    return Ok(0);
                }
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let pacer = Pacer::start(self.pace, self.device);
        self.console.feed(self.device, bytes, self.now);
        pacer.keep_up(self.device);
        Ok(())
    }

    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.console.set_baud(self.device, baud, self.now);
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.collect();
        self.pending.clear();
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// The error of a virtual device that cannot enter listening mode for `what`.
fn listening_refused(device: String, mode: Mode, what: &str) -> Error {
    Error::WrongMode {
        device,
        mode: mode.name().into(),
        what: what.into(),
        help: "reset the device into its firmware (`modflash sim reset NAME`): only a running system has listening mode".into(),
    }
}

/// The console timing of virtual devices: the device's own, unless
/// `MODFLASH_SIM_YMODEM_TIMEOUT_MS` shortens the YMODEM timeout (tests with lrzsz use ~50 ms;
/// the pause before the restart and the quiet time after a failed receive shrink with it).
pub fn console_config() -> ConsoleConfig {
    let base = ConsoleConfig::device();
    match std::env::var("MODFLASH_SIM_YMODEM_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
    {
        Some(ms) => ConsoleConfig {
            ymodem_timeout_ms: ms,
            restart_delay_ms: base.restart_delay_ms.min(ms),
            quiet_after_failure_ms: base.quiet_after_failure_ms.min(ms),
        },
        None => base,
    }
}

/// Where a [`SimLink`]'s device lives.
enum Backing<'d> {
    /// A `sim:NAME` from the store, locked; saved by [`DeviceLink::save`].
    Stored(Box<SimHandle>),
    /// A device owned by the caller (a twin the planner proves a plan on).
    Borrowed(&'d mut Device),
}

/// A virtual device as a connection: DFU through its own DfuSe handler, serial through its
/// own console, both on its modelled clock; its mode and LED can be observed.
pub struct SimLink<'d> {
    reference: String,
    backing: Backing<'d>,
    /// The DFU session between operations, with the connection it belongs to.
    dfu: Option<(Option<u64>, DfuMemo)>,
    /// Control transfers of DFU sessions that ended, and of control requests.
    transfers: u64,
    /// Faults to inject into the USB pipe.
    faults: Option<PipeFaults>,
    pace: Pace,
}

impl SimLink<'static> {
    /// The stored device `handle` (`sim:NAME`).
    pub fn stored(handle: SimHandle) -> Self {
        Self {
            reference: format!("sim:{}", handle.name()),
            backing: Backing::Stored(Box::new(handle)),
            dfu: None,
            transfers: 0,
            faults: None,
            pace: Pace::Instant,
        }
    }
}

impl<'d> SimLink<'d> {
    /// A device the caller keeps, named `reference` in messages.
    pub fn borrowed(device: &'d mut Device, reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            backing: Backing::Borrowed(device),
            dfu: None,
            transfers: 0,
            faults: None,
            pace: Pace::Instant,
        }
    }

    /// The same link with `faults` injected into its USB control transfers: how tests see
    /// what the executor makes of stalls, timeouts, short answers and an unplugged device.
    pub fn with_pipe_faults(mut self, faults: PipeFaults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// The device.
    pub fn device(&self) -> &Device {
        match &self.backing {
            Backing::Stored(h) => &h.device,
            Backing::Borrowed(d) => d,
        }
    }

    fn device_mut(&mut self) -> &mut Device {
        match &mut self.backing {
            Backing::Stored(h) => &mut h.device,
            Backing::Borrowed(d) => d,
        }
    }

    /// Runs `f` with a control-request client on the device's vendor pipe, counting its
    /// transfers; then lets a mode change it asked for happen.
    fn with_control<T>(
        &mut self,
        f: impl FnOnce(&mut ControlClient<'_>) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut pipe = SimVendor::new(self.device_mut());
        let mut client = ControlClient::new(&mut pipe);
        let result = f(&mut client);
        let sent = client.transfers();
        pipe.settle();
        self.transfers += sent;
        result
    }

    /// The firmware answers Particle's service requests now.
    fn speaks_control_requests(&self) -> bool {
        let d = self.device();
        d.control_protocol() == ControlProtocol::Service
    }

    /// Runs `f` on a DFU session with the device, resuming the previous one while the device
    /// stays in the same DFU connection.
    fn with_dfu<T>(
        &mut self,
        f: impl FnOnce(&mut DfuSession<SimControl<'_>>) -> Result<T, DfuOpError>,
    ) -> Result<T, Error> {
        let connection = self.device().dfu_connection();
        enum Start {
            Resume(DfuMemo),
            Fresh(DfuInfo),
        }
        let start = match self.dfu.take() {
            Some((c, memo)) if c == connection => Start::Resume(memo),
            previous => {
                if let Some((_, old)) = previous {
                    self.transfers += u64::from(old.control_transfers());
                }
                Start::Fresh(dfu_info(self.device())?)
            }
        };
        let pace = self.pace;
        let device = match &mut self.backing {
            Backing::Stored(h) => &mut h.device,
            Backing::Borrowed(d) => &mut **d,
        };
        let port = SimControl {
            connection: device.dfu_connection(),
            device,
            faults: self.faults.as_mut(),
            pace,
        };
        let mut session = match start {
            Start::Resume(memo) => DfuSession::resume(port, memo),
            Start::Fresh(info) => DfuSession::new(port, info),
        };
        let result = f(&mut session);
        let (_, memo) = session.suspend();
        self.dfu = Some((connection, memo));
        Ok(result?)
    }
}

impl DeviceLink for SimLink<'_> {
    fn reference(&self) -> String {
        self.reference.clone()
    }

    fn platform(&self) -> &'static Platform {
        self.device().platform()
    }

    fn device_id(&self) -> Option<String> {
        Some(self.device().state.device_id.clone())
    }

    fn installed_image(&mut self, slot: ModuleRef) -> Option<Vec<u8>> {
        crate::backup::module_image(self.device(), slot)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dfu: true,
            serial: true,
            usb: true,
            synthetic_modules: true,
        }
    }

    /// In DFU mode the modules are read back over DFU, as on a real device (the bootloader
    /// has no other way to tell); otherwise the device's own HAL lists them.
    fn inventory(&mut self, observer: &mut dyn Observer) -> Result<Inventory, Error> {
        if !self.device().in_dfu_mode() {
            return Ok(Inventory::from_device(self.device()));
        }
        let platform = self.platform();
        let read = self.with_dfu(|s| s.read_inventory(platform, observer))?;
        for n in read.notes {
            observer.event(Event::note(n));
        }
        Ok(read.inventory)
    }

    /// An exact copy, without the faults armed on the device (a model predicts what the
    /// device does when nothing goes wrong).
    fn twin(&mut self, _: &mut dyn Observer) -> Result<Device, Error> {
        let mut twin = self.device().clone();
        twin.flash_mut().clear_fault();
        Ok(twin)
    }

    fn set_pace(&mut self, pace: Pace) {
        self.pace = pace;
    }

    fn in_dfu_mode(&self) -> bool {
        self.device().in_dfu_mode()
    }

    fn observe(&self) -> Option<Observation> {
        let d = self.device();
        Some(Observation {
            mode: d.state.mode,
            led: d.state.led,
            events: d.state.events.clone(),
        })
    }

    fn enter_dfu(&mut self, observer: &mut dyn Observer) -> Result<(), Error> {
        let reference = self.reference.clone();
        match self.device().state.mode {
            Mode::Dfu => Ok(()),
            Mode::Off => Err(Error::WrongMode {
                device: reference,
                mode: "off".into(),
                what: "enter DFU mode".into(),
                help: "power the device on (`modflash sim reset NAME`)".into(),
            }),
            // A device stuck in a reset loop is put in DFU mode with the button, as a user
            // would have to do with a real one.
            Mode::Panic => {
                observer.event(Event::warning(format!(
                    "{reference} crashes at start (red SOS): holding its button for 3 s to \
                     enter DFU mode, as you would on a real device"
                )));
                self.device_mut().reset(ResetReason::Button, Some(3.0));
                Ok(())
            }
            // Running firmware: the DFU-mode control request (50) when it answers them, as a
            // host does over USB; the 14400-baud request otherwise.
            _ => {
                if self.speaks_control_requests() {
                    self.with_control(|c| c.command(&DfuModeRequest {}))?;
                } else {
                    self.device_mut().request_dfu();
                }
                Ok(())
            }
        }
    }

    fn dfu_alt_name(&mut self, alt: u8) -> Result<String, Error> {
        self.with_dfu(|s| s.alt_name(alt))
    }

    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        check: &WriteCheck,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        self.with_dfu(|s| s.write(alt, address, data, check, observer))
    }

    /// Its modules are read from its own HAL in normal mode, which checks every CRC.
    fn reports_integrity(&self, _system: Option<u16>) -> bool {
        true
    }

    fn dfu_read(
        &mut self,
        alt: u8,
        address: u32,
        length: usize,
        observer: &mut dyn Observer,
    ) -> Result<Vec<u8>, Error> {
        self.with_dfu(|s| s.upload(alt, address, length, (0, length as u64), observer))
    }

    fn dfu_leave(&mut self, address: u32, _: &mut dyn Observer) -> Result<AfterLeave, Error> {
        self.with_dfu(|s| s.leave(address))?;
        Ok(if self.device().in_dfu_mode() {
            AfterLeave::Dfu
        } else {
            AfterLeave::Firmware
        })
    }

    /// As a host asks it over USB when the firmware answers Particle's control requests
    /// (reset 40, DFU 50, safe mode 60, listening mode 70 / 71, each acted on as the device
    /// does: a mode change 1 s of modelled time after the reply); otherwise as the device's
    /// own requests do it (the baud-rate tricks, a reset, a DFU leave).
    fn change_mode(
        &mut self,
        change: ModeChange,
        observer: &mut dyn Observer,
    ) -> Result<Option<&'static str>, Error> {
        let reference = self.reference.clone();
        let mode = self.device().state.mode;
        if self.speaks_control_requests() {
            let asked = match (change, mode) {
                (ModeChange::Reset, _) | (ModeChange::Normal, Mode::SafeMode) => {
                    Some(self.with_control(|c| c.command(&SystemResetRequest {})))
                }
                (ModeChange::Dfu, _) => Some(self.with_control(|c| c.command(&DfuModeRequest {}))),
                (ModeChange::Safe, _) => {
                    Some(self.with_control(|c| c.command(&SafeModeRequest {})))
                }
                (ModeChange::Listening, _) => {
                    Some(self.with_control(|c| c.command(&StartListeningModeRequest {})))
                }
                (ModeChange::Normal, Mode::Listening) => {
                    Some(self.with_control(|c| c.command(&StopListeningModeRequest {})))
                }
                (ModeChange::Normal, _) => None,
            };
            if let Some(asked) = asked {
                asked?;
                return Ok(Some(self.device().state.mode.name()));
            }
        }
        let wrong_mode = |help: &str| Error::WrongMode {
            device: reference.clone(),
            mode: mode.name().into(),
            what: change.describe().into(),
            help: help.into(),
        };
        match change {
            ModeChange::Dfu => self.enter_dfu(observer)?,
            ModeChange::Reset => self.device_mut().reset(ResetReason::User, None),
            ModeChange::Safe if mode == Mode::Off => {
                return Err(wrong_mode("power the device on (`modflash reset`)"))
            }
            ModeChange::Safe => self.device_mut().request_safe_mode(),
            ModeChange::Listening => {
                if mode == Mode::Dfu {
                    self.device_mut().reset(ResetReason::DfuLeave, None);
                }
                if !self.device_mut().enter_listening() {
                    let now = self.device().state.mode.name();
                    return Err(Error::WrongMode {
                        device: reference,
                        mode: now.into(),
                        what: change.describe().into(),
                        help: "only running firmware has listening mode: \
                               `modflash doctor` says why it does not run"
                            .into(),
                    });
                }
            }
            ModeChange::Normal => match mode {
                Mode::Dfu => self.device_mut().reset(ResetReason::DfuLeave, None),
                Mode::Listening => self.device_mut().exit_listening(),
                Mode::SafeMode | Mode::Off | Mode::Panic => {
                    self.device_mut().reset(ResetReason::User, None)
                }
                Mode::App | Mode::NoApp => {}
            },
        }
        Ok(Some(self.device().state.mode.name()))
    }

    /// Through the firmware's own control-request handlers on the modelled clock: the same
    /// transfers a host sends over USB, validated by the device's OTA path.
    fn usb_flash(
        &mut self,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<UpdateVerdict, Error> {
        let mode = self.device().state.mode;
        if !self.speaks_control_requests() {
            let help = match self.device().control_protocol() {
                ControlProtocol::None if mode == Mode::Dfu => {
                    "leave DFU mode first (`modflash mode normal`), or use --via dfu"
                }
                ControlProtocol::None if matches!(mode, Mode::Off | Mode::Panic) => {
                    "its firmware does not run: `modflash doctor` says why; use --via dfu"
                }
                _ => "its Device OS answers control requests from 0.8.0 on: use --via dfu or --via serial",
            };
            return Err(Error::WrongMode {
                device: self.reference.clone(),
                mode: mode.name().into(),
                what: "take a module through USB control requests".into(),
                help: help.into(),
            });
        }
        Ok(self.with_control(|c| c.firmware_update(data, observer, cancel))?)
    }

    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        observer: &mut dyn Observer,
        cancel: &Cancel,
    ) -> Result<FlashReport, Error> {
        let reference = self.reference.clone();
        let pace = self.pace;
        let device = self.device_mut();
        // Through the device's own listening-mode console and YMODEM receiver, on the
        // console's clock: the same bytes a serial port would carry.
        if !device.enter_listening() {
            return Err(Error::WrongMode {
                device: reference,
                mode: device.state.mode.name().into(),
                what: "enter listening mode for a serial update".into(),
                help: "reset the device into its firmware (`modflash sim reset NAME`) or use DFU"
                    .into(),
            });
        }
        let link = ConsoleLink::new(
            device,
            ConsoleConfig::device(),
            format!("virtual device {reference}"),
        )
        .with_pace(pace);
        let mut console = Console::new(link);
        console.enter_listening()?;
        let sent = console.flash(name, data, SenderConfig::device_os(), observer, cancel);
        match &sent {
            Ok(r) if matches!(r.verdict, Verdict::Accepted { .. }) => console.link().settle(),
            Ok(_) => {
                let _ = console.wait_quiet(300);
                let _ = console.exit_listening();
            }
            Err(_) => {
                let _ = console.wait_quiet(300);
            }
        }
        drop(console);
        Ok(sent?)
    }

    fn wifi_configure(&mut self, answers: &WifiAnswers<'_>) -> Result<WifiExchange, Error> {
        let reference = self.reference.clone();
        let platform = self.platform();
        if !modflash_device::wifi::models_credentials(platform) {
            return Err(super::unsupported(
                reference,
                &format!(
                    "take Wi-Fi credentials: the virtual {} does not model them (a real one keeps them in its Wi-Fi module)",
                    platform.display_name
                ),
                "use a virtual Photon, P1, Argon, P2 or M-SoM",
            ));
        }
        let device = self.device_mut();
        if !device.enter_listening() {
            return Err(listening_refused(
                reference,
                device.state.mode,
                "take Wi-Fi credentials",
            ));
        }
        let link = ConsoleLink::new(
            device,
            ConsoleConfig::device(),
            format!("virtual device {reference}"),
        );
        let mut console = Console::new(link);
        let exchange = console.configure_wifi(answers);
        if !matches!(&exchange, Ok(e) if e.verdict == WifiVerdict::Saved) {
            // Back to what it was running, as the session ends on a serial port.
            let _ = console.wait_quiet(300);
            let _ = console.exit_listening();
        }
        Ok(exchange?)
    }

    /// SETUP/MODE held for 10 s: a running device enters listening mode at 3 s and Device OS
    /// clears the credentials at 10 s; then `x` takes it back to what it was running.
    fn wifi_clear(&mut self, observer: &mut dyn Observer) -> Result<(), Error> {
        let reference = self.reference.clone();
        let device = self.device_mut();
        let was = device.state.mode;
        if !matches!(
            was,
            Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
        ) {
            return Err(listening_refused(
                reference,
                was,
                "clear its Wi-Fi credentials",
            ));
        }
        observer.event(Event::note(format!(
            "holding the SETUP button of {reference} for 10 s in listening mode: Device OS clears its Wi-Fi credentials (blinking blue fast)"
        )));
        device.hold_button(10.0);
        if was != Mode::Listening {
            device.exit_listening();
            observer.event(Event::note(format!(
                "{reference} left listening mode (`x`)"
            )));
        }
        Ok(())
    }

    fn control_transfers(&self) -> u64 {
        self.transfers
            + self
                .dfu
                .as_ref()
                .map_or(0, |(_, m)| u64::from(m.control_transfers()))
    }

    fn save(&mut self) -> Result<(), Error> {
        match &mut self.backing {
            Backing::Stored(h) => Ok(h.save()?),
            Backing::Borrowed(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::serial::SerialError;
    use modflash_testkit::device::device;
    use modflash_testkit::fixture;

    #[test]
    fn session_over_the_in_process_console() {
        let mut d = device(6).id([0xab; 12]).release("1.5.0").powered_on();
        let mut s = Console::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
        // Not listening yet: the console is quiet.
        let err = s.describe().unwrap_err();
        assert!(
            matches!(err, SerialError::NoReply { command: 's', .. }),
            "{err}"
        );
        s.enter_listening().unwrap();
        let inv = s.inventory().unwrap();
        assert_eq!(inv.platform_id, 6);
        assert_eq!(inv.system_version(), Some(1502));
        assert_eq!(s.identify().unwrap().device_id, "ab".repeat(12));
        assert_eq!(s.version().unwrap(), "1.5.0");
        assert_eq!(s.mac().unwrap(), "02:ab:ab:ab:ab:ab");
        s.exit_listening().unwrap();
        drop(s);
        assert_eq!(d.state.mode, Mode::App);
    }

    #[test]
    fn flash_app_then_refused_part() {
        let mut d = device(6).release("0.5.2").powered_on();
        let app = fixture("photon_tinker.bin");
        {
            let mut s = Console::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
            s.enter_listening().unwrap();
            let mut seen = Vec::new();
            let r = s
                .flash(
                    "binary",
                    &app,
                    SenderConfig::device_os(),
                    &mut |e| {
                        if let Event::Progress { done, .. } = e {
                            seen.push(done);
                        }
                    },
                    &Cancel::new(),
                )
                .unwrap();
            assert_eq!(
                r.verdict,
                Verdict::Accepted {
                    name: "binary".into(),
                    size: app.len() as u64,
                    restarting: true
                },
                "{}",
                r.device_text
            );
            assert_eq!(*seen.last().unwrap(), app.len() as u64);
            assert_eq!(r.stats.retransmissions, 0);
            // Header, 3 × 1K, 7 × 128 (the last 880 bytes), EOT, end of batch.
            assert!(r.stats.round_trips < 16, "{:?}", r.stats);
        }
        assert_eq!(d.state.mode, Mode::App, "restarted into the app");
        let part2 = fixture("photon-system-part2@1.5.0.bin");
        let before = modflash_device::describe::describe(&d);
        let mut s = Console::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
        s.enter_listening().unwrap();
        let r = s
            .flash(
                "binary",
                &part2,
                SenderConfig::device_os(),
                &mut crate::progress::Quiet,
                &Cancel::new(),
            )
            .unwrap();
        assert_eq!(r.verdict, Verdict::Refused { code: Some(-1340) });
        let after = s.describe().unwrap();
        assert_eq!(after, before, "nothing changed");
    }

    #[test]
    fn wifi_dialogue_over_the_in_process_console() {
        use crate::transport::serial::{Question, WifiAnswers, WifiVerdict};
        use modflash_device::wifi::{Cipher, Password, Security};
        let mut d = device(6).release("1.5.0").powered_on();
        let short = Password::new("short");
        let answers = |password| WifiAnswers {
            ssid: "home",
            security: Security::Wpa2,
            cipher: Cipher::AesTkip,
            password,
        };
        {
            let mut s = Console::new(ConsoleLink::new(&mut d, ConsoleConfig::device(), "sim:t"));
            // Not in listening mode: nothing answers `w`.
            let err = s.configure_wifi(&answers(&short)).unwrap_err();
            assert!(
                matches!(err, SerialError::NoReply { command: 'w', .. }),
                "{err}"
            );
            s.enter_listening().unwrap();
            // The device's own refusal ("Derp"): it stays in listening mode.
            let refused = s.configure_wifi(&answers(&short)).unwrap();
            assert_eq!(refused.verdict, WifiVerdict::NotSaved);
            let good = Password::new("correct horse");
            let saved = s.configure_wifi(&answers(&good)).unwrap();
            assert_eq!(saved.verdict, WifiVerdict::Saved);
            assert_eq!(
                saved.asked,
                [
                    Question::Ssid,
                    Question::Security,
                    Question::Cipher,
                    Question::Password
                ]
            );
        }
        assert_eq!(d.state.mode, Mode::App);
        let stored = d.wifi_networks().unwrap();
        assert_eq!(stored[0].ssid, "home");
        assert_eq!(stored[0].cipher, Some(Cipher::AesTkip));
        // An open network on a Photon 0.5.2: SSID and security only.
        let mut old = device(6).release("0.5.2").powered_on();
        let mut s = Console::new(ConsoleLink::new(&mut old, ConsoleConfig::device(), "sim:o"));
        s.enter_listening().unwrap();
        let none = Password::default();
        let open = WifiAnswers {
            ssid: "cafe",
            security: Security::Unsecured,
            cipher: Cipher::Aes,
            password: &none,
        };
        let e = s.configure_wifi(&open).unwrap();
        assert_eq!(e.asked, [Question::Ssid, Question::Security]);
        assert_eq!(e.verdict, WifiVerdict::Saved);
    }
}
