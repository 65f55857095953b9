//! A faithful model of how Device OS stores, validates, boots and updates firmware modules:
//! NOR flash with timing and power cuts, the two-copy DCT, HAL validation, the Gen2/Gen3
//! bootloader and system start, OTA staging, the describe JSON, the DfuSe device side and the
//! listening-mode console. No I/O: callers persist snapshots and move bytes.

mod boot;
pub mod cause;
pub mod console;
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
pub mod state;
mod validate;

pub use device::Device;
pub use error::DeviceError;
pub use event::DeviceEvent;
pub use flash::{FlashChip, FlashError, FlashStats, Space};
pub use ota::{OtaError, OtaOutcome};
pub use state::{BootRequest, Color, DeviceState, Led, Mode, Pattern, ResetReason};
