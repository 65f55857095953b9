//! Host-side USB DFU 1.1 and ST DfuSe engine over a Control trait, plus .dfu containers.
//!
//! The crate does no I/O of its own: a transport implements [`Control`] (control transfers and
//! waiting), and [`DfuSe`] drives the protocol over it. Parsers for USB descriptors, DfuSe
//! memory-layout strings and `.dfu` files never panic on malformed input.
//!
//! ```no_run
//! use modflash_dfu::{Control, DfuSe, MemoryLayout, Setup, TransferError};
//!
//! struct Usb; // e.g. a rusb handle with the DFU interface claimed and alt 0 selected
//! impl Control for Usb {
//!     fn control_in(&mut self, _: &Setup, _: &mut [u8], _: u32) -> Result<usize, TransferError> {
//!         unimplemented!()
//!     }
//!     fn control_out(&mut self, _: &Setup, _: &[u8], _: u32) -> Result<usize, TransferError> {
//!         unimplemented!()
//!     }
//!     fn wait(&mut self, ms: u32) {
//!         std::thread::sleep(std::time::Duration::from_millis(ms.into()))
//!     }
//! }
//!
//! # fn main() -> Result<(), modflash_dfu::Error> {
//! let layout = MemoryLayout::parse(
//!     "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
//! )?;
//! let app = vec![0u8; 10_000];
//! let mut usb = Usb;
//! let mut dfu = DfuSe::new(&mut usb, 0, 0, 4096, layout)?;
//! dfu.download(0x080A_0000, &app, &mut |p| eprintln!("{p:?}"))?;
//! dfu.verify(0x080A_0000, &app, &mut |_| {})?;
//! dfu.leave(0x080A_0000)?;
//! # Ok(())
//! # }
//! ```

pub mod control;
pub mod descriptor;
pub mod dfufile;
pub mod engine;
pub mod error;
pub mod layout;

pub use control::{Control, Setup, State, Status, StatusRecord, TransferError};
pub use descriptor::{
    ConfigDescriptor, DeviceDescriptor, DfuAttributes, DfuMode, FunctionalDescriptor,
    InterfaceDescriptor,
};
pub use dfufile::{DfuseElement, DfuseFile, DfuseTarget, Suffix, SuffixDetection};
pub use engine::{detach, Counters, DfuSe, EraseMode, LeaveOutcome, Options, Progress};
pub use error::{Error, Operation, Result, Stage};
pub use layout::{Access, MemoryLayout, Page, Region, SectorGroup, Segment, Unit};
