//! What a device shows and keeps besides its flash: mode, LED, reset reason, the request left
//! for the bootloader and the event log ([`DeviceState`], saved with the flash images).

use serde::{Deserialize, Serialize};

use crate::event::DeviceEvent;
use crate::flash::FlashStats;

/// What the device is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The bootloader's USB DFU mode.
    Dfu,
    /// Listening mode (serial console, blinking blue).
    Listening,
    /// The user application runs.
    App,
    /// Safe mode: the system runs, the application does not.
    SafeMode,
    /// The system runs and there is no application to run.
    NoApp,
    /// The system crashes at start (red SOS) and the device resets over and over.
    Panic,
    /// Power is off (after an injected power cut).
    Off,
}

impl Mode {
    /// Stable name for JSON (`"safe_mode"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Dfu => "dfu",
            Self::Listening => "listening",
            Self::App => "app",
            Self::SafeMode => "safe_mode",
            Self::NoApp => "no_app",
            Self::Panic => "panic",
            Self::Off => "off",
        }
    }
}

/// LED colours used by the system theme and the bootloader (spec §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    /// Cloud connected.
    Cyan,
    /// Safe mode, updates.
    Magenta,
    /// Factory reset, network.
    Green,
    /// DFU mode.
    Yellow,
    /// Listening mode.
    Blue,
    /// Settings reset.
    White,
    /// Errors.
    Red,
    /// Off.
    Off,
}

/// LED patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Slow fade in and out.
    Breathing,
    /// Blinking.
    Blinking,
    /// Fast blinking.
    BlinkingFast,
    /// Solid.
    Solid,
    /// Red SOS (3 short, 3 long, 3 short).
    Sos,
}

/// The RGB LED's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Led {
    /// Colour.
    pub color: Color,
    /// Pattern.
    pub pattern: Pattern,
}

impl Led {
    pub(crate) const fn new(color: Color, pattern: Pattern) -> Self {
        Self { color, pattern }
    }
}

impl std::fmt::Display for Led {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = match self.pattern {
            Pattern::Breathing => "breathing",
            Pattern::Blinking => "blinking",
            Pattern::BlinkingFast => "blinking fast",
            Pattern::Solid => "solid",
            Pattern::Sos => "SOS",
        };
        let color = match self.color {
            Color::Cyan => "cyan",
            Color::Magenta => "magenta",
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Blue => "blue",
            Color::White => "white",
            Color::Red => "red",
            Color::Off => "off",
        };
        if self.color == Color::Off {
            f.write_str("off")
        } else {
            write!(f, "{pattern} {color}")
        }
    }
}

/// Why the device last reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// Power applied.
    PowerOn,
    /// The reset button (or `sim reset`).
    Button,
    /// A firmware update was staged or applied.
    Update,
    /// Leaving DFU mode.
    DfuLeave,
    /// A factory reset was requested.
    FactoryReset,
    /// A panic (SOS) reset.
    Panic,
    /// The watchdog fired.
    Watchdog,
    /// A software request (enter DFU, safe mode).
    User,
}

/// A request left for the bootloader in backup register DR1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootRequest {
    /// 0xEDFA: enter DFU mode.
    Dfu,
    /// 0x5AFE: enter safe mode.
    SafeMode,
}

/// Everything about a device that is not flash contents; saved with the flash images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Platform id.
    pub platform_id: u16,
    /// 12-byte device id as 24 lower-case hex digits.
    pub device_id: String,
    /// Current mode.
    pub mode: Mode,
    /// What the system does outside listening mode (to return to after `x`).
    pub running_mode: Mode,
    /// LED.
    pub led: Led,
    /// Reason of the last reset.
    pub reset_reason: ResetReason,
    /// Event log, newest last.
    #[serde(with = "crate::event::saved")]
    pub events: Vec<DeviceEvent>,
    /// `Factory_Reset == 0xAAAA`: the bootloader restores the factory app at next boot.
    pub factory_reset_requested: bool,
    /// DR1 request for the bootloader.
    pub boot_request: Option<BootRequest>,
    /// `NVMEM_SPARK_Reset == 1`: the system resets its settings (Wi-Fi credentials) at its
    /// next start (a 10 s button hold at reset sets it).
    #[serde(default)]
    pub settings_reset_requested: bool,
    /// Consecutive failed system starts seen by the watchdog.
    pub watchdog_retries: u8,
    /// USB control transfers handled (DFU).
    pub control_transfers: u64,
    /// Flash counters at the time of saving.
    pub flash_stats: FlashStats,
    /// The flash operation (counted as in `flash_stats`) during which power will be cut, when
    /// a cut is armed (`modflash sim power-cut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cut_at: Option<u64>,
    /// Service mode: Device Protection's override is set (a protected device answers DFU
    /// as an open one, within limits, until it is cleared).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub security_override: bool,
    /// The asset store's files (Device OS 5.5.0 and later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<crate::asset::StoredAsset>,
}
