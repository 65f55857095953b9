//! The device's event log: what the bootloader and the system did, as typed events that print
//! as the plain-words lines `sim show` and `doctor` show, and that are saved with the device.

use std::fmt;

use modflash_module::ModuleRef;
use serde::{Deserialize, Serialize};

use crate::asset::AssetStoreError;
use crate::cause::{CopyRefusal, Crash, FactoryResetCause, SafeModeCause, SystemFault};
use crate::flash::FlashError;
use crate::ota::OtaError;
use crate::wifi::{WifiClearCause, WifiRefusal};

/// Which firmware logged an event: the start of its line ("bootloader: …", "system: …").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The bootloader (boot requests, module copies, DFU mode).
    Bootloader,
    /// The system firmware (start, OTA, listening mode).
    System,
    /// The Nordic MBR (nRF52840), which runs before the bootloader.
    Mbr,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bootloader => "bootloader",
            Self::System => "system",
            Self::Mbr => "mbr",
        })
    }
}

/// Something the device did, newest last in [`crate::DeviceState::events`]. Its `Display` is
/// the line of the event log ("system: safe mode: user part 1 needs system part 2 ≥ 108,
/// installed 17").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceEvent {
    // ---- power and the boot loop ----
    /// Power was applied.
    PowerOn,
    /// Power was cut during a flash operation; the device is off.
    PowerLost,
    /// A flash operation failed outside a power cut; the bootloader falls back to DFU mode.
    FlashFailed(FlashError),
    /// The boot never settled: the device keeps resetting.
    ResetLoop,

    // ---- bootloader ----
    /// DFU mode was requested in backup register DR1.
    DfuRequested,
    /// The watchdog saw a second failed start: the bootloader tries a factory reset.
    WatchdogFactoryReset,
    /// The watchdog saw a third failed start: the bootloader enters DFU mode.
    WatchdogDfu,
    /// The SETUP/MODE button was held at reset.
    ButtonHeld(ButtonHold),
    /// A factory reset was asked for on a platform without a factory-reset image.
    NoFactoryResetImage,
    /// The factory-reset copy was refused.
    FactoryResetFailed(CopyRefusal),
    /// The factory application was copied into the user slot.
    FactoryAppRestored {
        /// Its user part version.
        version: u16,
    },
    /// A module queued in a DCT slot was copied to its region.
    PendingUpdateInstalled {
        /// Its slot.
        module: ModuleRef,
        /// Its version.
        version: u16,
        /// Where it was copied.
        address: u32,
    },
    /// A module queued in a DCT slot was refused; nothing was erased.
    PendingUpdateRefused(CopyRefusal),
    /// Pages saved before a bootloader was staged over them were copied back.
    BackupRestored {
        /// Where they were copied back to.
        address: u32,
        /// How many bytes.
        length: u32,
    },
    /// A bootloader queued in a DCT slot was staged in the application region (whose pages
    /// were saved first) for the MBR to copy.
    BootloaderStaged {
        /// Its version.
        version: u16,
        /// Where it was staged.
        address: u32,
    },
    /// The system part the bootloader jumps into is not valid: DFU mode.
    NoValidSystem(SystemFault),
    /// The host sent the zero-length DNLOAD that leaves DFU mode.
    DfuLeave,
    /// The host sent DfuSe READ UNPROTECT: the flash was erased.
    DfuReadUnprotect,
    /// The bootloader refused a DfuSe operation (write protection, a bad address).
    DfuRefused {
        /// The operation.
        operation: RefusedOperation,
        /// The alternate setting it was sent to.
        alt: u8,
    },

    // ---- system ----
    /// The system cannot start: red SOS, then a reset.
    Sos(Crash),
    /// The Electron's system firmware installed the newer bootloader it carries.
    BootloaderUpdated {
        /// The bootloader version that was installed.
        from: u16,
        /// The version that replaced it.
        to: u16,
    },
    /// The DCT's OTA flag (0xA5) asks the system to apply the image staged in the OTA region.
    OtaFlagSet,
    /// The image staged with the OTA flag was refused.
    OtaFlagImageRefused(OtaError),
    /// The system runs in safe mode (breathing magenta): the application does not run.
    SafeMode(SafeModeCause),
    /// The system asks the bootloader to restore the factory application.
    FactoryResetNeeded(FactoryResetCause),
    /// The application runs (breathing cyan).
    AppRunning {
        /// Its user part version.
        version: u16,
    },
    /// There is no application to run.
    NoApp,
    /// An OTA update of `len` bytes is being received (blinking magenta fast).
    UpdateReceiving {
        /// Its announced length.
        len: usize,
    },
    /// A bootloader received over OTA was copied in place at once.
    BootloaderInstalled {
        /// Its version.
        version: u16,
    },
    /// A bootloader received over OTA was refused by the copy's checks.
    BootloaderRefused(CopyRefusal),
    /// An asset module received as an update was stored in the asset store.
    AssetStored {
        /// The asset's name.
        name: String,
        /// The module's length.
        len: usize,
    },
    /// A stored asset the application does not require was removed to make way for another.
    AssetRemoved {
        /// The asset's name.
        name: String,
    },
    /// An asset module received as an update was not stored.
    AssetRefused(AssetStoreError),

    // ---- the Nordic MBR ----
    /// The MBR copied a staged bootloader into place (again after a power cut: `resumed`).
    MbrBootloaderCopied {
        /// The bootloader version now in place.
        version: u16,
        /// The copy was recorded before a reset and carried out again.
        resumed: bool,
    },
    /// A module received over OTA was validated and queued for the bootloader.
    UpdateValidated {
        /// Its slot.
        module: ModuleRef,
        /// Its version.
        version: u16,
    },
    /// A module received over YMODEM was refused.
    YmodemRefused(OtaError),
    /// The device entered listening mode (blinking blue).
    ListeningEntered,
    /// The device left listening mode.
    ListeningLeft,
    /// The host opened the serial port at 14400 baud: the system resets into DFU mode.
    DfuBaud,
    /// Wi-Fi credentials were saved from the listening-mode console.
    WifiSaved {
        /// The network name.
        ssid: String,
        /// Whether a password was given.
        secured: bool,
    },
    /// The system refused the Wi-Fi credentials given on the console ("Derp").
    WifiNotSaved {
        /// The network name.
        ssid: String,
        /// Why (never the password).
        reason: WifiRefusal,
    },
    /// The stored Wi-Fi credentials were cleared.
    WifiCleared(WifiClearCause),

    /// A USB control request changes the mode (the device resets).
    UsbModeChange(UsbModeChange),
    /// A firmware update over USB control requests was refused (or could not be installed).
    UsbUpdateRefused(OtaError),
    /// A line of text: logged by a modflash from before events were typed, or an event this
    /// version does not know. Shown as is and never interpreted.
    Text(String),
}

impl DeviceEvent {
    /// Which firmware logged it (none for power events, a failed flash, the reset loop and
    /// [`DeviceEvent::Text`]).
    pub fn origin(&self) -> Option<Origin> {
        match self {
            Self::PowerOn
            | Self::PowerLost
            | Self::FlashFailed(_)
            | Self::ResetLoop
            | Self::Text(_) => None,
            Self::DfuRequested
            | Self::WatchdogFactoryReset
            | Self::WatchdogDfu
            | Self::ButtonHeld(_)
            | Self::NoFactoryResetImage
            | Self::FactoryResetFailed(_)
            | Self::FactoryAppRestored { .. }
            | Self::PendingUpdateInstalled { .. }
            | Self::PendingUpdateRefused(_)
            | Self::BackupRestored { .. }
            | Self::BootloaderStaged { .. }
            | Self::NoValidSystem(_)
            | Self::DfuLeave
            | Self::DfuReadUnprotect
            | Self::DfuRefused { .. } => Some(Origin::Bootloader),
            Self::Sos(_)
            | Self::BootloaderUpdated { .. }
            | Self::OtaFlagSet
            | Self::OtaFlagImageRefused(_)
            | Self::SafeMode(_)
            | Self::FactoryResetNeeded(_)
            | Self::AppRunning { .. }
            | Self::NoApp
            | Self::UpdateReceiving { .. }
            | Self::BootloaderInstalled { .. }
            | Self::BootloaderRefused(_)
            | Self::AssetStored { .. }
            | Self::AssetRemoved { .. }
            | Self::AssetRefused(_)
            | Self::UpdateValidated { .. }
            | Self::YmodemRefused(_)
            | Self::ListeningEntered
            | Self::ListeningLeft
            | Self::DfuBaud
            | Self::WifiSaved { .. }
            | Self::UsbModeChange(_)
            | Self::UsbUpdateRefused(_)
            | Self::WifiNotSaved { .. }
            | Self::WifiCleared(_) => Some(Origin::System),
            Self::MbrBootloaderCopied { .. } => Some(Origin::Mbr),
        }
    }

    /// The line without its origin ("safe mode: user part 1 needs …").
    pub fn message(&self) -> Message<'_> {
        Message(self)
    }
}

/// "origin: message", or the message alone for events without an origin.
impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = self.origin() {
            write!(f, "{origin}: ")?;
        }
        self.message().fmt(f)
    }
}

/// An event's line without its origin; see [`DeviceEvent::message`].
#[derive(Clone, Copy, Debug)]
pub struct Message<'a>(&'a DeviceEvent);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DeviceEvent as E;
        match self.0 {
            E::PowerOn => f.write_str("power on"),
            E::PowerLost => f.write_str("power lost"),
            E::FlashFailed(e) => write!(f, "flash error: {e}; entering DFU mode"),
            E::ResetLoop => f.write_str(
                "the device keeps resetting (hold SETUP for 3 s to enter DFU mode)",
            ),
            E::DfuRequested => f.write_str("DFU mode requested"),
            E::WatchdogFactoryReset => {
                f.write_str("second failed start, trying a factory reset")
            }
            E::WatchdogDfu => f.write_str("third failed start, entering DFU mode"),
            E::ButtonHeld(hold) => hold.fmt(f),
            E::NoFactoryResetImage => {
                f.write_str("factory reset failed: this platform has no factory-reset image")
            }
            E::FactoryResetFailed(why) => write!(f, "factory reset failed: {why}"),
            E::FactoryAppRestored { version } => write!(
                f,
                "blinking green fast: restored the factory app (user part version {version})"
            ),
            E::PendingUpdateInstalled {
                module,
                version,
                address,
            } => write!(
                f,
                "blinking magenta fast: installed {module} version {version} at {address:#010x}"
            ),
            E::PendingUpdateRefused(why) => write!(f, "pending update refused: {why}"),
            E::BackupRestored { address, length } => write!(
                f,
                "blinking magenta fast: copied the {length} saved bytes back to {address:#010x}"
            ),
            E::BootloaderStaged { version, address } => write!(
                f,
                "blinking magenta fast: staged bootloader version {version} at {address:#010x} \
                 (the pages it covers saved) for the MBR to copy"
            ),
            E::NoValidSystem(why) => write!(
                f,
                "solid red: no valid system firmware ({why}); entering DFU mode"
            ),
            E::DfuLeave => f.write_str("DFU leave request: resetting into the firmware"),
            E::DfuReadUnprotect => f.write_str("DFU read unprotect: flash erased, resetting"),
            E::DfuRefused { operation, alt } => {
                write!(f, "DFU refused the {operation} (alt {alt})")
            }
            E::Sos(crash) => write!(f, "red SOS: {crash}"),
            E::BootloaderUpdated { from, to } => write!(
                f,
                "updated the bootloader from version {from} to {to} (image carried by the system firmware)"
            ),
            E::OtaFlagSet => {
                f.write_str("OTA flag 0xA5 set: applying the image in the OTA region")
            }
            E::OtaFlagImageRefused(e) => write!(f, "the staged image was refused: {e}"),
            E::SafeMode(why) => write!(f, "safe mode: {why}"),
            E::FactoryResetNeeded(why) => write!(f, "restoring the factory app: {why}"),
            E::AppRunning { version } => write!(
                f,
                "breathing cyan: running the application (user part version {version})"
            ),
            E::NoApp => f.write_str("no application installed"),
            E::UpdateReceiving { len } => {
                write!(f, "blinking magenta fast: receiving a {len}-byte update")
            }
            E::BootloaderInstalled { version } => {
                write!(f, "installed bootloader version {version}")
            }
            E::BootloaderRefused(why) => write!(f, "bootloader update refused: {why}"),
            E::AssetStored { name, len } => {
                write!(f, "stored asset `{name}` ({len}-byte asset module)")
            }
            E::AssetRemoved { name } => {
                write!(f, "removed asset `{name}`, which the application does not require")
            }
            E::AssetRefused(why) => write!(f, "asset update refused: {why}"),
            E::MbrBootloaderCopied { version, resumed } => write!(
                f,
                "{} the staged bootloader into place (version {version})",
                if *resumed {
                    "after a reset, finished copying"
                } else {
                    "copied"
                }
            ),
            E::UpdateValidated { module, version } => write!(
                f,
                "{module} version {version} validated; it will be installed at the next reset"
            ),
            E::YmodemRefused(e) => write!(f, "YMODEM update refused: {e}"),
            E::ListeningEntered => f.write_str("blinking blue: listening mode"),
            E::ListeningLeft => f.write_str("left listening mode"),
            E::DfuBaud => f.write_str(
                "the host opened the serial port at 14400 baud: resetting into DFU mode",
            ),
            E::WifiSaved { ssid, secured } => write!(
                f,
                "saved {} Wi-Fi credentials for network \"{ssid}\"",
                if *secured { "secured" } else { "unsecured" }
            ),
            E::UsbModeChange(change) => write!(f, "USB control request: {change}"),
            E::UsbUpdateRefused(e) => write!(f, "USB firmware update refused: {e}"),
            E::WifiNotSaved { ssid, reason } => write!(
                f,
                "did not save the Wi-Fi credentials for network \"{ssid}\": {reason}"
            ),
            E::WifiCleared(cause) => write!(f, "Wi-Fi credentials cleared: {cause}"),
            E::Text(line) => f.write_str(line),
        }
    }
}

/// The mode change a USB control request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsbModeChange {
    /// Reset (request 40, or the raw reset).
    Reset,
    /// Factory reset (41).
    FactoryReset,
    /// Reset into DFU mode (50).
    Dfu,
    /// Reset into safe mode (60).
    SafeMode,
}

impl fmt::Display for UsbModeChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reset => "resetting",
            Self::FactoryReset => "factory reset",
            Self::Dfu => "resetting into DFU mode",
            Self::SafeMode => "resetting into safe mode",
        })
    }
}

/// How long the SETUP/MODE button was held at reset, and what the bootloader does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonHold {
    /// 1 s: safe mode.
    SafeMode,
    /// 3 s: DFU mode.
    Dfu,
    /// 6.5 s: factory reset.
    FactoryReset,
    /// 10 s: settings reset, then factory reset.
    SettingsReset,
}

impl ButtonHold {
    /// What holding the button for `seconds` selects (None under 1 s).
    pub fn of(seconds: f32) -> Option<Self> {
        match seconds {
            s if s >= 10.0 => Some(Self::SettingsReset),
            s if s >= 6.5 => Some(Self::FactoryReset),
            s if s >= 3.0 => Some(Self::Dfu),
            s if s >= 1.0 => Some(Self::SafeMode),
            _ => None,
        }
    }
}

impl fmt::Display for ButtonHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SafeMode => "button held 1 s: safe mode requested",
            Self::Dfu => "button held 3 s: DFU mode (blinking yellow)",
            Self::FactoryReset => "button held 6.5 s: factory reset (blinking green fast)",
            Self::SettingsReset => {
                "button held 10 s: settings reset (blinking white), then factory reset"
            }
        })
    }
}

/// A DfuSe operation the bootloader refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedOperation {
    /// A data block.
    Write {
        /// Its length.
        len: usize,
        /// Where it was to go.
        address: u32,
    },
    /// A page erase.
    Erase {
        /// The address erased.
        address: u32,
    },
    /// Another DfuSe command.
    Command(u8),
}

impl fmt::Display for RefusedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { len, address } => write!(f, "write of {len} bytes at {address:#010x}"),
            Self::Erase { address } => write!(f, "erase at {address:#010x}"),
            Self::Command(command) => write!(f, "command {command:#04x}"),
        }
    }
}

/// The saved form of the event log: each event as `{"event": <typed>, "text": "<line>"}`. The
/// line keeps a log readable when its typed form is not (an event of a later version); logs
/// saved before events were typed are arrays of lines. Both read as [`DeviceEvent::Text`].
pub(crate) mod saved {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::DeviceEvent;

    #[derive(Serialize)]
    struct Entry<'a> {
        event: &'a DeviceEvent,
        text: String,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Typed { event: DeviceEvent },
        Line { text: String },
        Untyped(String),
    }

    pub fn serialize<S: Serializer>(events: &[DeviceEvent], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(events.iter().map(|event| Entry {
            event,
            text: event.to_string(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceEvent>, D::Error> {
        let saved = Vec::<Saved>::deserialize(d)?;
        Ok(saved
            .into_iter()
            .map(|s| match s {
                Saved::Typed { event } => event,
                Saved::Line { text } | Saved::Untyped(text) => DeviceEvent::Text(text),
            })
            .collect())
    }
}
