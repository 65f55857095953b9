//! The two ways networks are stored, byte for byte: WICED's `platform_dct_wifi_config_t` in
//! the Photon's DCT, and the protobuf `particle.firmware.WifiConfig` of Gen3 and P2 (kept by
//! the model in two copies of its own).

use modflash_module::platform::{dct as app_dct, Family};
use serde::Serialize;

use super::{Cipher, Password, Security};
use crate::boot::dct_flash;
use crate::copies::{Copies, WriteError, HEADER};
use crate::dct::{self, WIFI_CONFIG, WIFI_CONFIG_SIZE};
use crate::device::Device;
use crate::flash::{FlashError, Space};

/// A network a device keeps, as `sim show` reports it: never its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredNetwork {
    /// The network name (bytes that are not UTF-8 shown as U+FFFD).
    pub ssid: String,
    /// Its security as stored: `none`, `wep`, `wpa`, `wpa2`, `wpa_wpa2`, `wpa3`,
    /// `wpa2_wpa3`, `wpa_enterprise`, `wpa2_enterprise` or `unknown`.
    pub security: &'static str,
    /// Its cipher, where the platform stores one (the Photon and P1).
    pub cipher: Option<Cipher>,
}

// ---- WICED (Photon, P1) ------------------------------------------------------------------

/// `WICED_TRUE` in `device_configured`.
const CONFIGURED: u8 = 1;
/// `CONFIG_AP_LIST_SIZE`.
const AP_ENTRIES: usize = 5;
/// `sizeof(wiced_config_ap_entry_t)`: a packed `wiced_ap_info_t` (56 bytes with 1-byte enums
/// for the BSS type and band) then the key length and the 64-byte key.
const AP_ENTRY: usize = 121;
/// Offset of `stored_ap_list` in the Wi-Fi configuration.
const AP_LIST: usize = 1;
/// Offsets inside an entry.
const SSID_VALUE: usize = 1;
const SECURITY: usize = 46;
const KEY_LENGTH: usize = 56;
const KEY: usize = 57;
/// Offset of `country_code` in the Wi-Fi configuration.
const COUNTRY: usize = 832;

/// `wiced_security_t` bits (`wwd_constants.h`).
const WEP_ENABLED: u32 = 0x0001;
const TKIP_ENABLED: u32 = 0x0002;
const AES_ENABLED: u32 = 0x0004;
const WPA_SECURITY: u32 = 0x0020_0000;
const WPA2_SECURITY: u32 = 0x0040_0000;
const ENTERPRISE_ENABLED: u32 = 0x0200_0000;

/// `MK_CNTRY(a, b, rev)`.
fn country(a: u8, b: u8, rev: u8) -> u32 {
    u32::from(a) | u32::from(b) << 8 | u32::from(rev) << 16
}

/// `hex_nibble` of `hal/src/photon/softap.cpp`, wrap-arounds included.
fn hex_nibble(c: u8) -> u8 {
    match c {
        _ if c < b'0' => 0,
        _ if c <= b'9' => c - b'0',
        _ if c <= b'Z' => c.wrapping_sub(b'A').wrapping_add(10),
        _ if c <= b'z' => c.wrapping_sub(b'a').wrapping_add(10),
        _ => 0,
    }
}

/// `hex_decode` into at most 64 bytes: pairs of characters, the last one alone if odd.
fn hex_decode(hex: &[u8]) -> Vec<u8> {
    hex.chunks(2)
        .take(64)
        .map(|p| hex_nibble(p[0]) << 4 | p.get(1).map_or(0, |&c| hex_nibble(c)))
        .collect()
}

/// The WICED country code the system derives from the application DCT (`fetch_country_code`):
/// Japan when none is configured.
fn fetch_country_code(device: &Device) -> u32 {
    let app = device.dct();
    let code = app
        .get(app_dct::COUNTRY_CODE..app_dct::COUNTRY_CODE + 3)
        .unwrap_or(&[0xFF, 0xFF, 0xFF]);
    if code[0] == 0xFF || code[0] == 0 {
        country(b'J', b'P', 0)
    } else {
        country(code[0], code[1], hex_nibble(code[2]))
    }
}

/// `toSecurity`: the security type with the cipher's bits.
fn wiced_security(security: Security, cipher: Option<Cipher>) -> u32 {
    let base = match security {
        Security::Unsecured => 0,
        Security::Wep => WEP_ENABLED,
        Security::Wpa => WPA_SECURITY,
        Security::Wpa2 => WPA2_SECURITY,
    };
    base | match cipher {
        None => 0,
        Some(Cipher::Aes) => AES_ENABLED,
        Some(Cipher::Tkip) => TKIP_ENABLED,
        Some(Cipher::AesTkip) => AES_ENABLED | TKIP_ENABLED,
    }
}

fn wiced_security_name(sec: u32) -> &'static str {
    match sec {
        _ if sec & (WPA2_SECURITY | ENTERPRISE_ENABLED) == WPA2_SECURITY | ENTERPRISE_ENABLED => {
            "wpa2_enterprise"
        }
        _ if sec & (WPA_SECURITY | ENTERPRISE_ENABLED) == WPA_SECURITY | ENTERPRISE_ENABLED => {
            "wpa_enterprise"
        }
        _ if sec & WPA2_SECURITY != 0 => "wpa2",
        _ if sec & WPA_SECURITY != 0 => "wpa",
        _ if sec & WEP_ENABLED != 0 => "wep",
        // Open, possibly with the cipher bits the console adds (0.7.0 asks for a cipher
        // even for an open network it did not find in its scan).
        _ => "none",
    }
}

fn wiced_cipher(sec: u32) -> Option<Cipher> {
    match (sec & AES_ENABLED != 0, sec & TKIP_ENABLED != 0) {
        (true, true) => Some(Cipher::AesTkip),
        (true, false) => Some(Cipher::Aes),
        (false, true) => Some(Cipher::Tkip),
        (false, false) => None,
    }
}

fn wiced_config(device: &Device) -> Vec<u8> {
    dct::read_system(
        device.flash(),
        &device.dct_location(),
        WIFI_CONFIG,
        WIFI_CONFIG_SIZE,
    )
}

fn write_wiced_config(device: &mut Device, config: &[u8]) -> Result<(), FlashError> {
    let loc = device.dct_location();
    dct::write_system(device.flash_mut(), &loc, WIFI_CONFIG, config).map_err(dct_flash)
}

fn entry(config: &[u8], i: usize) -> &[u8] {
    let at = AP_LIST + i * AP_ENTRY;
    &config[at..at + AP_ENTRY]
}

fn entry_ssid(e: &[u8]) -> Option<&[u8]> {
    let len = usize::from(e[0]);
    (1..=32)
        .contains(&len)
        .then(|| &e[SSID_VALUE..SSID_VALUE + len])
}

pub(super) fn wiced_networks(device: &Device) -> Vec<StoredNetwork> {
    let config = wiced_config(device);
    if config[0] != CONFIGURED {
        return Vec::new();
    }
    (0..AP_ENTRIES)
        .filter_map(|i| {
            let e = entry(&config, i);
            let ssid = entry_ssid(e)?;
            let sec = u32::from_le_bytes([
                e[SECURITY],
                e[SECURITY + 1],
                e[SECURITY + 2],
                e[SECURITY + 3],
            ]);
            Some(StoredNetwork {
                ssid: String::from_utf8_lossy(ssid).into_owned(),
                security: wiced_security_name(sec),
                cipher: wiced_cipher(sec),
            })
        })
        .collect()
}

/// `add_wiced_wifi_credentials`: the same SSID is replaced in place, a new one goes first and
/// pushes the oldest out.
pub(super) fn wiced_add(
    device: &mut Device,
    ssid: &[u8],
    security: Security,
    cipher: Option<Cipher>,
    password: &Password,
) -> Result<(), FlashError> {
    let mut config = wiced_config(device);
    // initialize_dct: an unconfigured section starts from zeros; the country follows the
    // application DCT.
    let code = fetch_country_code(device);
    if config[0] != CONFIGURED {
        config.fill(0);
    }
    config[0] = CONFIGURED;
    config[COUNTRY..COUNTRY + 4].copy_from_slice(&code.to_le_bytes());
    let same = (0..AP_ENTRIES).find(|&i| entry_ssid(entry(&config, i)) == Some(ssid));
    let slot = match same {
        Some(i) => i,
        None => {
            let list = AP_LIST..AP_LIST + AP_ENTRIES * AP_ENTRY;
            config.copy_within(list.start..list.end - AP_ENTRY, list.start + AP_ENTRY);
            0
        }
    };
    let at = AP_LIST + slot * AP_ENTRY;
    let e = &mut config[at..at + AP_ENTRY];
    e.fill(0);
    let ssid = &ssid[..ssid.len().min(32)];
    e[0] = ssid.len() as u8;
    e[SSID_VALUE..SSID_VALUE + ssid.len()].copy_from_slice(ssid);
    let sec = wiced_security(security, cipher);
    let pwd = password.expose();
    // A plain WEP key is given in hex and stored decoded.
    let mut key = if sec == WEP_ENABLED && pwd.len() > 1 && pwd[0] > 4 {
        hex_decode(pwd)
    } else {
        pwd[..pwd.len().min(64)].to_vec()
    };
    e[KEY_LENGTH] = key.len() as u8;
    e[KEY..KEY + key.len()].copy_from_slice(&key);
    e[SECURITY..SECURITY + 4].copy_from_slice(&sec.to_le_bytes());
    zeroize::Zeroize::zeroize(&mut key);
    let written = write_wiced_config(device, &config);
    zeroize::Zeroize::zeroize(&mut config);
    written
}

/// `wlan_clear_credentials`: the list is zeroed, the rest kept.
pub(super) fn wiced_clear(device: &mut Device) -> Result<(), FlashError> {
    let mut config = wiced_config(device);
    config[AP_LIST..AP_LIST + AP_ENTRIES * AP_ENTRY].fill(0);
    write_wiced_config(device, &config)
}

// ---- the configuration file (Gen3, P2) ---------------------------------------------------

/// `MAX_CONFIGURED_WIFI_NETWORK_COUNT`.
const MAX_NETWORKS: usize = 10;
/// One copy of the file: a 4 KB sector.
const FILE_COPY: u32 = 4096;

/// The two copies the model keeps the file in: right after the DCT in the filesystem area
/// (Gen3: external flash 0x8000; P2: 0x08608000).
fn file_copies(device: &Device) -> Copies {
    let loc = device.dct_location();
    let after = loc.copies[0].max(loc.copies[1]) + dct::COPY_SIZE;
    let space = if device.platform().family == Some(Family::Gen3) {
        Space::External
    } else {
        loc.space
    };
    Copies {
        magic: 0x4946_4957, // "WIFI"
        space,
        starts: [after, after + FILE_COPY],
        size: FILE_COPY,
        short_crc_from: HEADER,
    }
}

/// One network of the file (`particle.firmware.WifiConfig.Network`).
struct FileNetwork {
    ssid: Vec<u8>,
    bssid: Option<Vec<u8>>,
    security: u64,
    credentials_type: u64,
    password: Password,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    // proto3: zero values are not written.
    if v != 0 {
        out.push(tag << 3);
        varint(out, v);
    }
}

fn encode(networks: &[FileNetwork]) -> Vec<u8> {
    let mut file = Vec::new();
    for n in networks {
        let mut credentials = Vec::new();
        field_varint(&mut credentials, 1, n.credentials_type);
        if !n.password.is_empty() {
            field_bytes(&mut credentials, 2, n.password.expose());
        }
        let mut m = Vec::new();
        field_bytes(&mut m, 1, &n.ssid);
        if let Some(b) = &n.bssid {
            field_bytes(&mut m, 2, b);
        }
        field_varint(&mut m, 3, n.security);
        field_bytes(&mut m, 4, &credentials);
        field_bytes(&mut file, 1, &m);
        zeroize::Zeroize::zeroize(&mut credentials);
        zeroize::Zeroize::zeroize(&mut m);
    }
    file
}

/// A protobuf field's value.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    /// A varint (fixed-size values read as 0: the file has none).
    Number(u64),
    /// Length-delimited bytes.
    Bytes(&'a [u8]),
}

/// Reads the protobuf fields of `bytes` as (tag, value); `None` when the encoding is broken.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        let value = match key & 7 {
            0 => Value::Number(read_varint(bytes, &mut at)?),
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&e| e <= bytes.len())?;
                let v = &bytes[at..end];
                at = end;
                Value::Bytes(v)
            }
            5 => {
                at = at.checked_add(4).filter(|&e| e <= bytes.len())?;
                Value::Number(0)
            }
            1 => {
                at = at.checked_add(8).filter(|&e| e <= bytes.len())?;
                Value::Number(0)
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn decode(file: &[u8]) -> Option<Vec<FileNetwork>> {
    let mut networks = Vec::new();
    for (tag, value) in fields(file)? {
        let (1, Value::Bytes(message)) = (tag, value) else {
            continue;
        };
        let mut n = FileNetwork {
            ssid: Vec::new(),
            bssid: None,
            security: 0,
            credentials_type: 0,
            password: Password::default(),
        };
        for (tag, value) in fields(message)? {
            match (tag, value) {
                (1, Value::Bytes(s)) => n.ssid = s.to_vec(),
                (2, Value::Bytes(b)) => n.bssid = Some(b.to_vec()),
                (3, Value::Number(v)) => n.security = v,
                (4, Value::Bytes(c)) => {
                    for (tag, value) in fields(c)? {
                        match (tag, value) {
                            (1, Value::Number(t)) => n.credentials_type = t,
                            (2, Value::Bytes(p)) => n.password = Password::new(p),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        networks.push(n);
    }
    Some(networks)
}

/// The file's networks; a file that does not parse is dropped, as `loadConfig` removes it.
fn read_file(device: &Device) -> Vec<FileNetwork> {
    let Some(copy) = file_copies(device).read(device.flash()) else {
        return Vec::new();
    };
    let body = &copy[HEADER as usize..];
    let len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    body.get(4..4 + len).and_then(decode).unwrap_or_default()
}

fn write_file(device: &mut Device, networks: &[FileNetwork]) -> Result<(), FlashError> {
    let mut body = encode(networks);
    let mut data = (body.len() as u32).to_le_bytes().to_vec();
    data.extend_from_slice(&body);
    let copies = file_copies(device);
    let written = if data.len() > (FILE_COPY - HEADER) as usize {
        Err(FlashError::OutOfBounds {
            space: copies.space,
            address: copies.starts[0],
            len: data.len(),
        })
    } else {
        copies
            .write(device.flash_mut(), HEADER, &data)
            .map_err(|e| match e {
                WriteError::Flash(f) => f,
                WriteError::OutOfRange => FlashError::OutOfBounds {
                    space: copies.space,
                    address: copies.starts[0],
                    len: data.len(),
                },
            })
    };
    zeroize::Zeroize::zeroize(&mut body);
    zeroize::Zeroize::zeroize(&mut data);
    written
}

fn file_security_name(v: u64) -> &'static str {
    match v {
        0 => "none",
        1 => "wep",
        2 => "wpa",
        3 => "wpa2",
        4 => "wpa_wpa2",
        5 => "wpa3",
        6 => "wpa2_wpa3",
        _ => "unknown",
    }
}

pub(super) fn file_networks(device: &Device) -> Vec<StoredNetwork> {
    read_file(device)
        .into_iter()
        .map(|n| StoredNetwork {
            ssid: String::from_utf8_lossy(&n.ssid).into_owned(),
            security: file_security_name(n.security),
            cipher: None,
        })
        .collect()
}

/// `WifiNetworkManager::setNetworkConfig`: the same SSID is replaced in place, a new one is
/// added at the end (or replaces the last once ten are kept).
pub(super) fn file_add(
    device: &mut Device,
    ssid: &[u8],
    security: Security,
    password: &Password,
) -> Result<(), FlashError> {
    let mut networks = read_file(device);
    let secured = security.needs_password();
    let network = FileNetwork {
        ssid: ssid.to_vec(),
        bssid: None,
        // toWifiSecurity: NONE, WEP, WPA_PSK, WPA2_PSK.
        security: u64::from(security.digit() - b'0'),
        credentials_type: u64::from(secured),
        password: if secured {
            password.clone()
        } else {
            Password::default()
        },
    };
    match networks.iter().position(|n| n.ssid == ssid) {
        Some(i) => networks[i] = network,
        None if networks.len() < MAX_NETWORKS => networks.push(network),
        None => {
            if let Some(last) = networks.last_mut() {
                *last = network;
            }
        }
    }
    write_file(device, &networks)
}

/// `WifiNetworkManager::clearNetworkConfig`: an empty list is saved.
pub(super) fn file_clear(device: &mut Device) -> Result<(), FlashError> {
    write_file(device, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiced_security_matches_wwd_constants() {
        assert_eq!(
            wiced_security(Security::Wpa2, Some(Cipher::Aes)),
            0x0040_0004
        );
        assert_eq!(
            wiced_security(Security::Wpa, Some(Cipher::AesTkip)),
            0x0020_0006
        );
        assert_eq!(wiced_security(Security::Wep, None), 1);
        assert_eq!(wiced_security_name(0x0040_0004), "wpa2");
        assert_eq!(wiced_security_name(AES_ENABLED), "none");
        assert_eq!(wiced_cipher(0x0020_0006), Some(Cipher::AesTkip));
    }

    #[test]
    fn hex_decode_as_the_photon_does() {
        assert_eq!(hex_decode(b"0a1B"), [0x0a, 0x1b]);
        assert_eq!(hex_decode(b"abc"), [0xab, 0xc0]);
        assert_eq!(country(b'J', b'P', 0), 0x504A);
    }

    #[test]
    fn file_round_trip_and_broken_files() {
        let networks = vec![
            FileNetwork {
                ssid: b"home".to_vec(),
                bssid: None,
                security: 3,
                credentials_type: 1,
                password: Password::new("pw-secret"),
            },
            FileNetwork {
                ssid: b"cafe".to_vec(),
                bssid: Some(vec![1, 2, 3, 4, 5, 6]),
                security: 0,
                credentials_type: 0,
                password: Password::default(),
            },
        ];
        let bytes = encode(&networks);
        // Network 1: ssid, security 3, credentials {type 1, password}.
        assert_eq!(
            &bytes[..8],
            [0x0A, 23, 0x0A, 4, b'h', b'o', b'm', b'e'],
            "{bytes:02x?}"
        );
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].password.expose(), b"pw-secret");
        assert_eq!(back[1].bssid.as_deref(), Some(&[1, 2, 3, 4, 5, 6][..]));
        assert_eq!(back[1].security, 0);
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut]);
        }
        assert!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1])
                .is_none()
        );
    }
}
