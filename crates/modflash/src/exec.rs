//! The executor: runs a plan's steps on a target (a virtual device in-process, or a real
//! device over USB or serial), with progress events; every write is verified, and the device's
//! own verdict is reported.

use std::fmt;

use modflash_device::console::ConsoleConfig;
use modflash_device::{Device, Mode, ResetReason};

use crate::serial::{ConsoleLink, Session};
use modflash_dfu::descriptor::ConfigDescriptor;
use modflash_dfu::layout::MemoryLayout;
use modflash_dfu::{Control, DfuSe, Progress as DfuProgress, Setup, TransferError};

use crate::inventory::Inventory;
use crate::plan::{Action, Step, Via, OTA_FLAG_OFFSET};

/// Progress of a plan's execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The device is being put into the mode the transport needs.
    Preparing(&'static str),
    /// Step `n` (1-based) of `total` starts.
    StepStarted {
        /// Step number.
        n: usize,
        /// Steps in the plan.
        total: usize,
        /// What is written.
        label: String,
        /// Bytes to send.
        bytes: usize,
    },
    /// Bytes of the current step sent so far.
    Bytes {
        /// Done.
        done: usize,
        /// Total.
        total: usize,
    },
    /// The current step was verified (read back or accepted by the device).
    StepVerified {
        /// Step number.
        n: usize,
    },
    /// The device is resetting into its firmware.
    Resetting,
}

/// Why execution stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The device is not in a mode where it can take this step.
    #[error("the device is in {mode} mode and cannot {what}")]
    WrongMode {
        /// Its mode.
        mode: String,
        /// What was attempted.
        what: String,
    },
    /// A DFU transfer failed.
    #[error("DFU {0}")]
    Dfu(String),
    /// The device refused a module (its own validation).
    #[error("the device refused {module}: {verdict}")]
    Refused {
        /// The module.
        module: String,
        /// The device's words.
        verdict: String,
    },
    /// The device went away.
    #[error("the device disconnected: {0}")]
    Gone(String),
    /// Any other transport failure.
    #[error("{0}")]
    Transport(String),
}

/// A device the executor can drive.
pub trait Target {
    /// What is installed now.
    fn inventory(&mut self) -> Result<Inventory, ExecError>;
    /// Puts the device in DFU mode (no-op when it already is).
    fn enter_dfu(&mut self) -> Result<(), ExecError>;
    /// Downloads `data` at `address` of alternate setting `alt` and verifies it by reading it
    /// back.
    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError>;
    /// Leaves DFU mode and waits for the device to boot its firmware.
    fn dfu_leave(&mut self, address: u32) -> Result<(), ExecError>;
    /// Sends a module over serial; returns when the device has accepted it and restarted.
    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError>;
}

impl<T: Target + ?Sized> Target for &mut T {
    fn inventory(&mut self) -> Result<Inventory, ExecError> {
        (**self).inventory()
    }

    fn enter_dfu(&mut self) -> Result<(), ExecError> {
        (**self).enter_dfu()
    }

    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        (**self).dfu_write(alt, address, data, progress)
    }

    fn dfu_leave(&mut self, address: u32) -> Result<(), ExecError> {
        (**self).dfu_leave(address)
    }

    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        (**self).serial_flash(name, data, progress)
    }
}

/// Runs `steps` in order.
pub fn run_steps(
    target: &mut dyn Target,
    steps: &[Step],
    via: Via,
    progress: &mut dyn FnMut(Event),
) -> Result<(), ExecError> {
    if steps.is_empty() {
        return Ok(());
    }
    if via == Via::Dfu {
        progress(Event::Preparing("switching the device to DFU mode"));
        target.enter_dfu()?;
    }
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        progress(Event::StepStarted {
            n,
            total,
            label: match step.action {
                Action::DfuErase { address, len, .. } => {
                    format!("erasing {len} bytes at {address:#010x} (the legacy app)")
                }
                _ => format!(
                    "writing {} version {} ({})",
                    step.module.slot(),
                    step.module.info.version,
                    step.module.origin
                ),
            },
            bytes: step.bytes(),
        });
        match step.action {
            Action::DfuWrite { alt, address } => {
                target.dfu_write(alt, address, step.module.flash_bytes(), progress)?;
            }
            Action::DfuStageBootloader { alt, address } => {
                target.dfu_write(alt, address, &step.module.bytes, progress)?;
                target.dfu_write(
                    1,
                    OTA_FLAG_OFFSET,
                    &[modflash_module::platform::dct::OTA_UPDATE_PENDING],
                    &mut |_| {},
                )?;
            }
            Action::DfuErase { alt, address, len } => {
                // Written as 0xFF: the download erases the page first, so the result is erased.
                target.dfu_write(alt, address, &vec![0xFF; len as usize], progress)?;
            }
            Action::Serial => {
                let name = step.module.origin.to_string();
                target.serial_flash(&name, &step.module.bytes, progress)?;
            }
        }
        progress(Event::StepVerified { n });
    }
    if via == Via::Dfu {
        progress(Event::Resetting);
        let address = steps.last().map_or(0, Step::address);
        target.dfu_leave(address)?;
    }
    Ok(())
}

/// A virtual device driven in-process, honouring each transport's rules: DFU goes through the
/// DfuSe engine and the device's own DfuSe handler; serial goes through the device's OTA
/// validation.
pub struct VirtualTarget<'a> {
    device: &'a mut Device,
}

impl<'a> VirtualTarget<'a> {
    /// Drives `device`.
    pub fn new(device: &'a mut Device) -> Self {
        Self { device }
    }
}

/// `modflash_dfu::Control` over a virtual device's DfuSe handler.
pub struct SimControl<'a> {
    device: &'a mut Device,
    connection: Option<u64>,
}

impl<'a> SimControl<'a> {
    /// Connects to a device in DFU mode.
    pub fn new(device: &'a mut Device) -> Self {
        let connection = device.dfu_connection();
        Self { device, connection }
    }

    /// SET_INTERFACE: selects alternate setting `alt` (a stall when the device has no such
    /// alt setting).
    pub fn select_alt(&mut self, alt: u8) -> Result<(), TransferError> {
        if self.connection.is_none() || self.device.dfu_connection() != self.connection {
            return Err(TransferError::NoDevice);
        }
        self.device
            .dfu_set_alt(alt)
            .map_err(|_| TransferError::Stall)
    }

    /// The device behind the pipe.
    pub fn device(&self) -> &Device {
        self.device
    }

    fn transfer(&mut self, setup: &Setup, data: &[u8]) -> Result<Vec<u8>, TransferError> {
        if self.connection.is_none() || self.device.dfu_connection() != self.connection {
            return Err(TransferError::NoDevice);
        }
        let reply = self
            .device
            .dfu_control(*setup, data)
            .map_err(|_| TransferError::Stall);
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
        let reply = self.transfer(setup, &[])?;
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        Ok(n)
    }

    fn control_out(
        &mut self,
        setup: &Setup,
        data: &[u8],
        _timeout_ms: u32,
    ) -> Result<usize, TransferError> {
        self.transfer(setup, data)?;
        Ok(data.len())
    }

    fn wait(&mut self, ms: u32) {
        self.device.flash_mut().add_time_us(u64::from(ms) * 1000);
    }
}

fn dfu_err(e: impl fmt::Display) -> ExecError {
    ExecError::Dfu(e.to_string())
}

/// Runs `f` with a DfuSe engine on alternate setting `alt` of an in-process device.
fn with_engine<T>(
    device: &mut Device,
    alt: u8,
    f: impl FnOnce(&mut DfuSe<'_, SimControl<'_>>) -> Result<T, ExecError>,
) -> Result<T, ExecError> {
    let descriptors = device.usb_descriptors();
    let config = ConfigDescriptor::parse(&descriptors.configuration).map_err(dfu_err)?;
    let functional = config
        .functional_descriptor()
        .ok_or_else(|| ExecError::Dfu("the device has no DFU functional descriptor".into()))?;
    let alt_string = device
        .layout()
        .dfu_alts
        .get(usize::from(alt))
        .ok_or_else(|| ExecError::Dfu(format!("the device has no alternate setting {alt}")))?;
    let layout: MemoryLayout = alt_string.parse().map_err(dfu_err)?;
    device
        .dfu_set_alt(alt)
        .map_err(|_| ExecError::Dfu(format!("SET_INTERFACE alt {alt} stalled")))?;
    let mut ctl = SimControl::new(device);
    let mut engine =
        DfuSe::new(&mut ctl, 0, alt, functional.transfer_size, layout).map_err(dfu_err)?;
    f(&mut engine)
}

impl Target for VirtualTarget<'_> {
    fn inventory(&mut self) -> Result<Inventory, ExecError> {
        Ok(Inventory::from_device(self.device))
    }

    fn enter_dfu(&mut self) -> Result<(), ExecError> {
        match self.device.state.mode {
            Mode::Dfu => Ok(()),
            Mode::Off => Err(ExecError::WrongMode {
                mode: "off".into(),
                what: "enter DFU mode".into(),
            }),
            // Running firmware: the 14400-baud request. A device stuck in a reset loop is
            // put in DFU mode with the button, as a user would.
            Mode::Panic => {
                self.device.reset(ResetReason::Button, Some(3.0));
                Ok(())
            }
            _ => {
                self.device.request_dfu();
                Ok(())
            }
        }
    }

    fn dfu_write(
        &mut self,
        alt: u8,
        address: u32,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        let total = data.len();
        with_engine(self.device, alt, |engine| {
            engine
                .download(address, data, &mut |p| {
                    if let DfuProgress::Written { bytes_done, .. } = p {
                        progress(Event::Bytes {
                            done: bytes_done as usize,
                            total,
                        });
                    }
                })
                .map_err(dfu_err)?;
            engine.verify(address, data, &mut |_| {}).map_err(dfu_err)
        })
    }

    fn dfu_leave(&mut self, address: u32) -> Result<(), ExecError> {
        with_engine(self.device, 0, |engine| {
            engine.leave(address).map(|_| ()).map_err(dfu_err)
        })?;
        if self.device.in_dfu_mode() && self.device.state.mode == Mode::Dfu {
            // Came straight back: the firmware is not valid. The caller compares states.
        }
        Ok(())
    }

    fn serial_flash(
        &mut self,
        name: &str,
        data: &[u8],
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), ExecError> {
        // Through the device's own listening-mode console and YMODEM receiver, on the
        // console's clock: the same bytes a serial port would carry.
        if !self.device.enter_listening() {
            return Err(ExecError::WrongMode {
                mode: self.device.state.mode.name().into(),
                what: "enter listening mode for a serial update".into(),
            });
        }
        let link = ConsoleLink::new(self.device, ConsoleConfig::device(), "sim");
        let mut session = Session::new(link);
        crate::serial::flash_and_wait(&mut session, name, data, progress, &mut |s| {
            s.link().settle();
            Ok(())
        })?;
        drop(session);
        if self.device.state.mode == Mode::Listening {
            self.device.exit_listening();
        }
        Ok(())
    }
}
