//! A faithful model of how Device OS stores, validates, boots and updates firmware modules:
//! NOR flash with timing and power cuts, the two-copy DCT, HAL validation, the Gen2/Gen3
//! bootloader and system start, OTA staging, the describe JSON, the DfuSe device side and the
//! listening-mode console. No I/O: callers persist snapshots and move bytes.

pub mod console;
pub mod dct;
pub mod describe;
pub mod device;
pub mod dfuse;
pub mod flash;
pub mod hal;

pub use device::{
    BootRequest, Color, Device, DeviceState, Led, Mode, OtaError, OtaOutcome, Pattern, ResetReason,
};
pub use flash::{FlashChip, FlashError, FlashStats, Space};
