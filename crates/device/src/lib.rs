//! A faithful model of how Device OS stores, validates, boots and updates firmware modules:
//! NOR flash with timing and power cuts, the two-copy DCT, HAL validation, the Gen2/Gen3
//! bootloader and system start, OTA staging, the describe JSON, the DfuSe device side, the
//! normal-mode USB device with Particle's control requests and the listening-mode console with
//! its Wi-Fi credentials. No I/O: callers persist snapshots and move bytes.

pub mod asset;
mod boot;
pub mod cause;
pub mod console;
pub mod control;
mod copies;
mod copy;
pub mod dct;
pub mod describe;
pub mod device;
pub mod dfuse;
pub mod error;
pub mod event;
pub mod flash;
pub mod hal;
mod mbr;
pub mod ota;
pub mod protection;
pub mod state;
pub mod usb;
mod validate;
pub mod wifi;

pub use control::ControlProtocol;
pub use device::Device;
pub use error::DeviceError;
pub use event::DeviceEvent;
pub use flash::{FlashChip, FlashError, FlashStats, Space};
pub use ota::{OtaError, OtaOutcome};
pub use state::{BootRequest, Color, DeviceState, Led, Mode, Pattern, ResetReason};
