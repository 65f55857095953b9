//! Orchestration for modflash: where things live on disk, virtual-device persistence, device
//! references, and (in later modules) transports, inventory, catalogue, planner and executor.

pub mod attach;
pub mod catalog;
pub mod devref;
pub mod dfucheck;
pub mod dfuops;
pub mod exec;
pub mod home;
pub mod inventory;
pub mod plan;
pub mod precheck;
pub mod serial;
pub mod sim;
pub mod twin;
pub mod umockdev;
pub mod usb;

pub use devref::DeviceRef;
