//! Orchestration for modflash: open a device ([`Session`]), read what is installed, plan on a
//! twin, and carry plans out with the one executor, reporting progress as operation events and
//! failures as one diagnostic [`Error`] type.
//!
//! Layers (see `docs/ARCHITECTURE.md`): [`transport`] reaches devices (virtual, USB, serial);
//! [`session`] opens one; [`plan`] finds and proves plans; [`exec`] runs them; [`inventory`],
//! [`catalog`], [`twin`], [`precheck`] and [`dfucheck`] hold the facts they use; [`files`]
//! reads what the user names, [`home`] keeps modflash's own files.

pub mod backup;
pub mod bundle;
pub mod catalog;
pub mod describe;
pub mod devices;
pub mod devref;
pub mod dfucheck;
pub mod diagnose;
pub mod direct;
pub mod error;
pub mod exec;
pub mod files;
pub mod fleet;
pub mod history;
pub mod home;
pub mod inventory;
pub mod map;
pub mod offline;
pub mod os;
pub mod plan;
pub mod precheck;
pub mod progress;
pub mod request;
pub mod session;
pub mod sim;
pub mod transport;
pub mod twin;
pub mod wifi;

pub use devref::DeviceRef;
pub use error::{Error, Result};
pub use session::Session;
