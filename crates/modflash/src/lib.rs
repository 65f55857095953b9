//! Orchestration for modflash: where things live on disk, virtual-device persistence, device
//! references, and (in later modules) transports, inventory, catalogue, planner and executor.

pub mod devref;
pub mod home;
pub mod inventory;
pub mod sim;

pub use devref::DeviceRef;
