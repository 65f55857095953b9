//! Wi-Fi credentials as Device OS takes and keeps them: the security and cipher a user picks,
//! the password (which never prints), where each platform stores its networks, the checks
//! the system makes before saving, and the two ways a user clears them.
//!
//! * **Taking them**: listening mode's `w` ([`dialogue`], `system/src/system_setup.cpp`).
//! * **Keeping them**: the Photon and P1 in WICED's part of the DCT
//!   (`platform_dct_wifi_config_t`, five `wiced_config_ap_entry_t`, newest first,
//!   `hal/src/photon/wlan_hal.cpp`); Gen3 and P2 in the file `/sys/wifi_config.bin`
//!   (`particle.firmware.WifiConfig`, up to ten networks in the order added,
//!   `hal/network/ncp/wifi/wifi_network_manager.cpp`). The model keeps that file's bytes in
//!   two alternating copies of their own (LittleFS is not modelled) next to the DCT. The
//!   Core keeps its networks in the CC3000 itself: the model keeps none.
//! * **Clearing them**: holding SETUP/MODE for 10 s in listening mode
//!   (`NETWORK_LISTEN_COMMAND_CLEAR_CREDENTIALS`, `system/src/main.cpp`), or for 10 s while
//!   resetting: the bootloader sets `NVMEM_SPARK_Reset` and the system clears them at its
//!   next start (`wlan_reset_credentials_store`, `resetSettingsToFactoryDefaultsIfNeeded`;
//!   on RTL872x platforms from 5.3.0). A 6.5 s factory reset keeps them (it resets the flag).
//!   There is no console key for it.

use std::fmt;

use modflash_module::platform::{Family, Platform};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::device::Device;
use crate::event::DeviceEvent;
use crate::flash::FlashError;
use crate::state::{Color, Led, Mode, Pattern};

pub mod dialogue;
mod store;

pub use store::StoredNetwork;

/// Longest SSID the console reads (`char ssid[33]`, `system_setup.h`).
pub const MAX_SSID: usize = 32;
/// Longest password the console reads (`char password[65]`).
pub const MAX_PASSWORD: usize = 64;

/// First system module version with the network scan before the security question, the
/// cipher question, the WPA Enterprise choices on the Photon and P1, and the password length
/// checks (0.7.0-rc.1).
const SCAN_AND_CHECKS_FROM: u16 = 200;
/// First RTL872x system version whose settings reset clears Wi-Fi credentials (5.3.0).
const RTL_SETTINGS_RESET_FROM: u16 = 5300;

/// The security a user chooses: the console's answers 0 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// An open network.
    Unsecured,
    /// WEP.
    Wep,
    /// WPA personal.
    Wpa,
    /// WPA2 personal.
    Wpa2,
}

impl Security {
    /// Every choice, in the console's order.
    pub const ALL: [Security; 4] = [Self::Unsecured, Self::Wep, Self::Wpa, Self::Wpa2];

    /// The console's answer ('0' to '3').
    pub fn digit(self) -> u8 {
        match self {
            Self::Unsecured => b'0',
            Self::Wep => b'1',
            Self::Wpa => b'2',
            Self::Wpa2 => b'3',
        }
    }

    /// The choice a console answer names.
    pub fn from_digit(digit: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.digit() == digit)
    }

    /// Stable lower-case name ("wpa2").
    pub fn name(self) -> &'static str {
        match self {
            Self::Unsecured => "none",
            Self::Wep => "wep",
            Self::Wpa => "wpa",
            Self::Wpa2 => "wpa2",
        }
    }

    /// A password goes with it.
    pub fn needs_password(self) -> bool {
        self != Self::Unsecured
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsecured => "unsecured",
            Self::Wep => "WEP",
            Self::Wpa => "WPA",
            Self::Wpa2 => "WPA2",
        })
    }
}

/// The cipher of a WPA or WPA2 network: the console's answers 1 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cipher {
    /// AES (CCMP).
    Aes,
    /// TKIP.
    Tkip,
    /// AES and TKIP.
    AesTkip,
}

impl Cipher {
    /// Every choice, in the console's order.
    pub const ALL: [Cipher; 3] = [Self::Aes, Self::Tkip, Self::AesTkip];

    /// The console's answer ('1' to '3').
    pub fn digit(self) -> u8 {
        match self {
            Self::Aes => b'1',
            Self::Tkip => b'2',
            Self::AesTkip => b'3',
        }
    }

    /// The choice a console answer names.
    pub fn from_digit(digit: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.digit() == digit)
    }

    /// Stable lower-case name ("aes_tkip").
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes => "aes",
            Self::Tkip => "tkip",
            Self::AesTkip => "aes_tkip",
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aes => "AES",
            Self::Tkip => "TKIP",
            Self::AesTkip => "AES+TKIP",
        })
    }
}

/// A Wi-Fi password: its bytes are wiped when it is dropped, and it never prints (its
/// `Debug` says how long it is, nothing more).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Takes `bytes` as the password.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The password's bytes, for the one place that sends or stores them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, b: u8) {
        self.0.push(b);
    }

    pub(crate) fn pop(&mut self) -> Option<u8> {
        self.0.pop()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password(<{} bytes, not shown>)", self.0.len())
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Why the system did not save credentials (the console says "Derp. Sorry, we couldn't save
/// the credentials.").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WifiRefusal {
    /// The SSID is empty or longer than 32 bytes (`WLAN_INVALID_SSID_LENGTH`).
    SsidLength {
        /// Its length.
        len: usize,
    },
    /// The password's length does not suit the security (`WLAN_INVALID_KEY_LENGTH`: WEP 5
    /// to 58 characters, WPA and WPA2 8 to 64; Photon and P1 from 0.7.0).
    PasswordLength {
        /// The security.
        security: Security,
        /// The password's length (never the password).
        len: usize,
        /// Shortest allowed.
        min: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A secured network without a password (Gen3 and P2: `SYSTEM_ERROR_INVALID_ARGUMENT`).
    NoPassword,
    /// WPA Enterprise was chosen: its questions (EAP type, certificates) are not modelled.
    Enterprise,
    /// Writing the configuration failed.
    Flash(FlashError),
}

impl fmt::Display for WifiRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SsidLength { len } => {
                write!(
                    f,
                    "the SSID is {len} bytes long; it must be 1 to {MAX_SSID}"
                )
            }
            Self::PasswordLength {
                security,
                len,
                min,
                max,
            } => write!(
                f,
                "a {security} password must be {min} to {max} characters long, not {len}"
            ),
            Self::NoPassword => f.write_str("a secured network needs a password"),
            Self::Enterprise => f.write_str("WPA Enterprise is not modelled"),
            Self::Flash(e) => write!(f, "writing the Wi-Fi configuration failed: {e}"),
        }
    }
}

/// How the stored credentials were cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WifiClearCause {
    /// SETUP/MODE held for 10 s in listening mode (the LED blinks blue fast).
    ListeningButton,
    /// The settings reset a 10 s hold at reset asks for (`NVMEM_SPARK_Reset`).
    SettingsReset,
}

impl fmt::Display for WifiClearCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ListeningButton => "button held 10 s in listening mode (blinking blue fast)",
            Self::SettingsReset => "settings reset requested at boot",
        })
    }
}

/// Where the model keeps a platform's networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// WICED's `platform_dct_wifi_config_t` in the DCT (Photon, P1).
    Wiced,
    /// The `/sys/wifi_config.bin` file (Gen3, RTL872x).
    File,
}

pub(crate) fn store_kind(platform: &Platform) -> Option<StoreKind> {
    if !platform.has_wifi() {
        return None;
    }
    match platform.family {
        Some(Family::Photon) => Some(StoreKind::Wiced),
        Some(Family::Gen3) | Some(Family::Rtl872x) => Some(StoreKind::File),
        _ => None,
    }
}

/// True when the model keeps Wi-Fi credentials for `platform` (every Wi-Fi platform but the
/// Core): its virtual console answers `w`.
pub fn models_credentials(platform: &Platform) -> bool {
    store_kind(platform).is_some()
}

/// The system's checks before it stores credentials (`wlan_set_credentials`): the SSID's
/// length everywhere; on the Photon and P1 from 0.7.0 the password's length for WEP, WPA and
/// WPA2; on Gen3 and P2 a password for any secured network.
pub fn check(
    platform: &Platform,
    system_version: Option<u16>,
    ssid: &[u8],
    security: Security,
    password: &Password,
) -> Result<(), WifiRefusal> {
    if ssid.is_empty() || ssid.len() > MAX_SSID {
        return Err(WifiRefusal::SsidLength { len: ssid.len() });
    }
    match store_kind(platform) {
        Some(StoreKind::Wiced) if system_version.unwrap_or(0) >= SCAN_AND_CHECKS_FROM => {
            let (min, max) = match security {
                Security::Unsecured => return Ok(()),
                Security::Wep => (5, 58),
                Security::Wpa | Security::Wpa2 => (8, 64),
            };
            if !(min..=max).contains(&password.len()) {
                return Err(WifiRefusal::PasswordLength {
                    security,
                    len: password.len(),
                    min,
                    max,
                });
            }
            Ok(())
        }
        Some(StoreKind::File) if security.needs_password() && password.is_empty() => {
            Err(WifiRefusal::NoPassword)
        }
        _ => Ok(()),
    }
}

impl Device {
    /// The networks the device keeps, newest first on the Photon and P1 and in the order
    /// added on Gen3 and P2, without their passwords (`None` where the model keeps none).
    pub fn wifi_networks(&self) -> Option<Vec<StoredNetwork>> {
        Some(match store_kind(self.platform)? {
            StoreKind::Wiced => store::wiced_networks(self),
            StoreKind::File => store::file_networks(self),
        })
    }

    fn system_from(&self, version: u16) -> bool {
        self.system_version().is_some_and(|v| v >= version)
    }

    /// The dialogue `w` holds on this device (see [`dialogue`]).
    pub(crate) fn wifi_dialogue_kind(&self) -> dialogue::Kind {
        let gen2 = store_kind(self.platform) == Some(StoreKind::Wiced);
        let scan = !gen2 || self.system_from(SCAN_AND_CHECKS_FROM);
        dialogue::Kind {
            ssid_until_given: scan,
            enterprise: gen2 && scan,
            cipher_always: scan,
        }
    }

    /// Stores a network as the system does when the console's dialogue ends, or says why
    /// not. A power cut while writing turns the device off.
    pub(crate) fn save_wifi(
        &mut self,
        ssid: &[u8],
        security: Security,
        cipher: Option<Cipher>,
        password: &Password,
    ) -> Result<(), WifiRefusal> {
        let kind = store_kind(self.platform).ok_or(WifiRefusal::Enterprise)?;
        check(
            self.platform,
            self.system_version(),
            ssid,
            security,
            password,
        )?;
        let written = match kind {
            StoreKind::Wiced => store::wiced_add(self, ssid, security, cipher, password),
            StoreKind::File => store::file_add(self, ssid, security, password),
        };
        written.map_err(|e| {
            if e == FlashError::PowerLost {
                self.power_lost();
            }
            WifiRefusal::Flash(e)
        })
    }

    /// Clears every stored network and logs it (nothing happens where the model keeps none).
    fn erase_wifi(&mut self, cause: WifiClearCause) -> Result<(), FlashError> {
        let Some(kind) = store_kind(self.platform) else {
            return Ok(());
        };
        match kind {
            StoreKind::Wiced => store::wiced_clear(self)?,
            StoreKind::File => store::file_clear(self)?,
        }
        self.event(DeviceEvent::WifiCleared(cause));
        Ok(())
    }

    /// What the 10 s button hold in listening mode does: the networks are cleared (a power
    /// cut while writing turns the device off).
    fn clear_wifi(&mut self, cause: WifiClearCause) {
        match self.erase_wifi(cause) {
            Ok(()) => {}
            Err(FlashError::PowerLost) => self.power_lost(),
            Err(e) => self.event(DeviceEvent::FlashFailed(e)),
        }
    }

    /// The settings reset at system start (`NVMEM_SPARK_Reset`): Wi-Fi credentials go,
    /// except on RTL872x systems older than 5.3.0, which only reset the flag.
    pub(crate) fn reset_settings(&mut self) -> Result<(), FlashError> {
        if self.platform.family == Some(Family::Rtl872x)
            && !self.system_from(RTL_SETTINGS_RESET_FROM)
        {
            return Ok(());
        }
        self.erase_wifi(WifiClearCause::SettingsReset)
    }

    /// SETUP/MODE held for `seconds` while the system runs (not at reset: see
    /// [`Device::reset`]): 3 s enters listening mode; in listening mode 10 s clears the Wi-Fi
    /// credentials and a hold of 3 to 8 s leaves it (`system/src/main.cpp`). A hold from
    /// running that lasts 10 s does both. The bootloader does not look at the button outside
    /// a reset, so DFU mode ignores it.
    pub fn hold_button(&mut self, seconds: f32) {
        match self.state.mode {
            Mode::Listening => {
                if seconds >= 10.0 {
                    self.clear_wifi(WifiClearCause::ListeningButton);
                } else if seconds > 3.0 && seconds < 8.0 {
                    self.exit_listening();
                }
            }
            Mode::App | Mode::SafeMode | Mode::NoApp if seconds >= 3.0 => {
                self.enter_listening();
                if seconds >= 10.0 {
                    self.clear_wifi(WifiClearCause::ListeningButton);
                }
            }
            _ => {}
        }
    }

    fn power_lost(&mut self) {
        self.set_mode(Mode::Off, Led::new(Color::Off, Pattern::Solid));
        self.event(DeviceEvent::PowerLost);
    }
}
