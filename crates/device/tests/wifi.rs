//! Wi-Fi credentials on the virtual device: listening mode's `w` dialogue as each Device OS
//! holds it, where the networks are kept (WICED's DCT section, the Gen3/P2 file), that they
//! survive resets and power cycles, never show the password, and are cleared the ways a user
//! clears them.

use modflash_device::console::{Console, ConsoleConfig, LISTENING_BAUD};
use modflash_device::dct::{self, WIFI_CONFIG};
use modflash_device::wifi::dialogue::{
    CIPHER_PROMPT, NOT_SAVED, PASSWORD_PROMPT, SECURITY_PROMPT, SECURITY_PROMPT_ENTERPRISE,
    SSID_PROMPT,
};
use modflash_device::wifi::{Cipher, StoredNetwork, WifiClearCause, WifiRefusal};
use modflash_device::{Device, DeviceEvent, Mode, ResetReason, Space};
use modflash_testkit::device::device;

const PASSWORD: &str = "correct horse battery";

fn listening(platform: u16, release: &str) -> (Device, Console) {
    let mut d = device(platform).release(release).powered_on();
    let mut c = Console::new(ConsoleConfig::fast(50));
    c.set_baud(&mut d, LISTENING_BAUD, 0);
    assert_eq!(d.state.mode, Mode::Listening);
    (d, c)
}

/// Answers the device's questions like a host: each answer after its prompt. Returns
/// everything the device wrote.
fn answer(d: &mut Device, c: &mut Console, answers: &[(&str, &str)]) -> String {
    c.feed(d, b"w", 0);
    let mut wire = String::from_utf8_lossy(&c.drain_output()).into_owned();
    for (prompt, reply) in answers {
        assert!(wire.ends_with(prompt), "expected {prompt:?}, got {wire:?}");
        c.feed(d, format!("{reply}\n").as_bytes(), 0);
        wire.push_str(&String::from_utf8_lossy(&c.drain_output()));
    }
    wire
}

fn network(ssid: &str, security: &'static str, cipher: Option<Cipher>) -> StoredNetwork {
    StoredNetwork {
        ssid: ssid.into(),
        security,
        cipher,
    }
}

fn photon_wpa2(d: &mut Device, c: &mut Console, ssid: &str, password: &str) -> String {
    answer(
        d,
        c,
        &[
            (SSID_PROMPT, ssid),
            (SECURITY_PROMPT_ENTERPRISE, "3"),
            (CIPHER_PROMPT, "1"),
            (PASSWORD_PROMPT, password),
        ],
    )
}

/// Nothing the device keeps outside its flash holds the password: not its saved state
/// (events included) and not its describe JSON.
fn assert_password_only_in_flash(d: &Device, password: &str) {
    let (state, internal, external) = d.snapshot();
    let json = serde_json::to_string(&state).unwrap();
    assert!(!json.contains(password), "{json}");
    for e in &d.state.events {
        assert!(!e.to_string().contains(password), "{e}");
    }
    assert!(!modflash_device::describe::describe(d).contains(password));
    let needle = password.as_bytes();
    let in_flash = [Some(internal), external]
        .into_iter()
        .flatten()
        .any(|image| image.windows(needle.len()).any(|w| w == needle));
    assert!(
        in_flash,
        "the device keeps the password in flash, as Device OS does"
    );
}

#[test]
fn photon_150_saves_into_wiced_dct_and_keeps_them_across_resets() {
    let (mut d, mut c) = listening(6, "1.5.0");
    let wire = photon_wpa2(&mut d, &mut c, "home", PASSWORD);
    assert!(wire.contains("Thanks! Wait while I save those credentials..."));
    assert!(wire.contains("    Particle <3 you!\r\n"), "{wire}");
    // The device echoes what it reads, the password too (as a real Photon does).
    assert!(wire.contains(&format!("Password: {PASSWORD}\r\n")));
    assert_eq!(
        d.state.mode,
        Mode::App,
        "it leaves listening mode to connect"
    );
    let stored = vec![network("home", "wpa2", Some(Cipher::Aes))];
    assert_eq!(d.wifi_networks(), Some(stored.clone()));
    // WICED's layout: device_configured, then the first wiced_config_ap_entry_t.
    let loc = d.dct_location();
    let config = dct::read_system(d.flash(), &loc, WIFI_CONFIG, 200);
    assert_eq!(config[0], 1, "device_configured");
    assert_eq!(&config[1..6], b"\x04home");
    assert_eq!(&config[47..51], &0x0040_0004u32.to_le_bytes(), "WPA2 | AES");
    assert_eq!(usize::from(config[57]), PASSWORD.len());
    assert_eq!(&config[58..58 + PASSWORD.len()], PASSWORD.as_bytes());
    assert_password_only_in_flash(&d, PASSWORD);

    d.reset(ResetReason::Button, None);
    assert_eq!(d.wifi_networks(), Some(stored.clone()));
    let (state, internal, external) = d.snapshot();
    let mut again = Device::restore(state, internal, external).unwrap();
    again.power_on();
    assert_eq!(again.wifi_networks(), Some(stored));
}

#[test]
fn photon_keeps_five_newest_first_and_replaces_the_same_ssid() {
    let (mut d, mut c) = listening(6, "1.5.0");
    for n in 0..6 {
        photon_wpa2(&mut d, &mut c, &format!("net{n}"), PASSWORD);
        c.set_baud(&mut d, LISTENING_BAUD, 0);
    }
    let names = |d: &Device| -> Vec<String> {
        d.wifi_networks()
            .unwrap()
            .into_iter()
            .map(|n| n.ssid)
            .collect()
    };
    assert_eq!(names(&d), ["net5", "net4", "net3", "net2", "net1"]);
    answer(
        &mut d,
        &mut c,
        &[
            (SSID_PROMPT, "net3"),
            (SECURITY_PROMPT_ENTERPRISE, "2"),
            (CIPHER_PROMPT, "2"),
            (PASSWORD_PROMPT, PASSWORD),
        ],
    );
    assert_eq!(names(&d), ["net5", "net4", "net3", "net2", "net1"]);
    assert_eq!(
        d.wifi_networks().unwrap()[2],
        network("net3", "wpa", Some(Cipher::Tkip))
    );
}

#[test]
fn photon_150_refuses_a_short_wpa2_password_and_stays_listening() {
    let (mut d, mut c) = listening(6, "1.5.0");
    let wire = photon_wpa2(&mut d, &mut c, "home", "short");
    assert!(wire.ends_with(NOT_SAVED), "{wire}");
    assert_eq!(d.state.mode, Mode::Listening);
    assert_eq!(d.wifi_networks(), Some(vec![]));
    assert_eq!(
        d.state.events.last(),
        Some(&DeviceEvent::WifiNotSaved {
            ssid: "home".into(),
            reason: WifiRefusal::PasswordLength {
                security: modflash_device::wifi::Security::Wpa2,
                len: 5,
                min: 8,
                max: 64
            }
        })
    );
    let line = d.state.events.last().unwrap().to_string();
    assert_eq!(
        line,
        "system: did not save the Wi-Fi credentials for network \"home\": a WPA2 password must be 8 to 64 characters long, not 5"
    );
}

#[test]
fn photon_052_asks_the_cipher_only_for_wpa_and_takes_any_password() {
    let (mut d, mut c) = listening(6, "0.5.2");
    answer(
        &mut d,
        &mut c,
        &[(SSID_PROMPT, "cafe"), (SECURITY_PROMPT, "0")],
    );
    assert_eq!(d.state.mode, Mode::App);
    c.set_baud(&mut d, LISTENING_BAUD, 0);
    let wire = answer(
        &mut d,
        &mut c,
        &[
            (SSID_PROMPT, "lab"),
            (SECURITY_PROMPT, "3"),
            (CIPHER_PROMPT, "3"),
            (PASSWORD_PROMPT, "abc"),
        ],
    );
    assert!(wire.contains("Particle <3 you!"), "{wire}");
    assert_eq!(
        d.wifi_networks().unwrap(),
        [
            network("lab", "wpa2", Some(Cipher::AesTkip)),
            network("cafe", "none", None)
        ]
    );
    // WEP: no cipher question; the key is given in hex and kept decoded.
    c.set_baud(&mut d, LISTENING_BAUD, 0);
    answer(
        &mut d,
        &mut c,
        &[
            (SSID_PROMPT, "old"),
            (SECURITY_PROMPT, "1"),
            (PASSWORD_PROMPT, "0102030405"),
        ],
    );
    let config = dct::read_system(d.flash(), &d.dct_location(), WIFI_CONFIG, 200);
    assert_eq!(config[57], 5, "key length after hex decoding");
    assert_eq!(&config[58..63], &[1, 2, 3, 4, 5]);
}

#[test]
fn answers_are_read_like_serial_read_line() {
    let (mut d, mut c) = listening(6, "1.5.0");
    c.feed(&mut d, b"w", 0);
    c.drain_output();
    // Backspace takes a byte back (and echoes it); an empty SSID is asked again.
    c.feed(&mut d, b"\r", 0);
    assert_eq!(c.drain_output(), format!("\r\n{SSID_PROMPT}").as_bytes());
    c.feed(&mut d, b"hox\x08me", 0);
    assert_eq!(c.drain_output(), b"hox\x08me");
    // The line ends at CR; the LF already waiting is dropped with it.
    c.feed(&mut d, b"\r\n", 0);
    c.drain_output();
    // A wrong choice is asked again; "3" then anything ends a one-byte answer.
    c.feed(&mut d, b"9\n", 0);
    assert!(String::from_utf8_lossy(&c.drain_output()).ends_with(SECURITY_PROMPT_ENTERPRISE));
    c.feed(&mut d, b"3", 0);
    c.feed(&mut d, b"x", 0);
    assert!(String::from_utf8_lossy(&c.drain_output()).ends_with(CIPHER_PROMPT));
    c.feed(&mut d, b"1\n", 0);
    c.feed(&mut d, format!("{PASSWORD}\n").as_bytes(), 0);
    assert_eq!(d.wifi_networks().unwrap()[0].ssid, "home");
}

#[test]
fn argon_and_p2_keep_the_file_in_the_order_added() {
    for (platform, release) in [(12, "1.5.0"), (32, "5.5.0")] {
        let (mut d, mut c) = listening(platform, release);
        let wire = answer(
            &mut d,
            &mut c,
            &[
                (SSID_PROMPT, "home"),
                (SECURITY_PROMPT, "3"),
                (CIPHER_PROMPT, "1"),
                (PASSWORD_PROMPT, PASSWORD),
            ],
        );
        assert!(wire.contains("Particle <3 you!"), "{wire}");
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        answer(
            &mut d,
            &mut c,
            &[
                (SSID_PROMPT, "cafe"),
                (SECURITY_PROMPT, "0"),
                (CIPHER_PROMPT, "1"),
            ],
        );
        assert_eq!(
            d.wifi_networks().unwrap(),
            [network("home", "wpa2", None), network("cafe", "none", None)],
            "platform {platform}"
        );
        assert_password_only_in_flash(&d, PASSWORD);
        // The DCT is untouched by the file.
        assert!(dct::is_intact(d.flash(), &d.dct_location()));
        d.reset(ResetReason::Button, None);
        assert_eq!(d.wifi_networks().unwrap().len(), 2);
        // An empty password for a secured network is refused (Gen3, P2).
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        let wire = answer(
            &mut d,
            &mut c,
            &[
                (SSID_PROMPT, "x"),
                (SECURITY_PROMPT, "2"),
                (CIPHER_PROMPT, "1"),
                (PASSWORD_PROMPT, ""),
            ],
        );
        assert!(wire.ends_with(NOT_SAVED), "{wire}");
    }
    let argon = device(12).release("1.5.0").powered_on();
    let file = argon
        .flash()
        .read(Space::External, 0x8000, 16)
        .unwrap()
        .to_vec();
    assert_eq!(
        file,
        vec![0xFF; 16],
        "nothing written before a network is added"
    );
}

#[test]
fn cellular_devices_do_not_answer_w() {
    let (mut d, mut c) = listening(10, "1.5.0");
    c.feed(&mut d, b"w", 0);
    assert!(c.drain_output().is_empty());
    assert_eq!(d.wifi_networks(), None);
}

fn photon_with_network() -> (Device, Console) {
    let (mut d, mut c) = listening(6, "1.5.0");
    photon_wpa2(&mut d, &mut c, "home", PASSWORD);
    assert_eq!(d.wifi_networks().unwrap().len(), 1);
    (d, c)
}

#[test]
fn ten_seconds_of_setup_in_listening_mode_clears_them() {
    let (mut d, mut c) = photon_with_network();
    c.set_baud(&mut d, LISTENING_BAUD, 0);
    d.hold_button(5.0);
    assert_eq!(d.state.mode, Mode::App, "3 to 8 s leaves listening mode");
    assert_eq!(d.wifi_networks().unwrap().len(), 1);
    d.hold_button(1.0);
    assert_eq!(d.state.mode, Mode::App);
    // From a running system: listening mode at 3 s, cleared at 10 s.
    d.hold_button(10.0);
    assert_eq!(d.state.mode, Mode::Listening);
    assert_eq!(d.wifi_networks(), Some(vec![]));
    assert_eq!(
        d.state.events.last(),
        Some(&DeviceEvent::WifiCleared(WifiClearCause::ListeningButton))
    );
    assert_eq!(
        d.state.events.last().unwrap().to_string(),
        "system: Wi-Fi credentials cleared: button held 10 s in listening mode (blinking blue fast)"
    );
    let (mut dfu, _) = photon_with_network();
    dfu.reset(ResetReason::Button, Some(3.0));
    dfu.hold_button(10.0);
    assert_eq!(dfu.state.mode, Mode::Dfu);
    assert_eq!(dfu.wifi_networks().unwrap().len(), 1, "DFU mode ignores it");
}

#[test]
fn a_settings_reset_clears_them_and_a_factory_reset_keeps_them() {
    let (mut d, _) = photon_with_network();
    d.reset(ResetReason::Button, Some(6.5));
    assert_eq!(d.wifi_networks().unwrap().len(), 1, "factory reset");
    d.reset(ResetReason::Button, Some(10.0));
    assert_eq!(d.wifi_networks(), Some(vec![]), "settings reset");
    assert!(d
        .state
        .events
        .contains(&DeviceEvent::WifiCleared(WifiClearCause::SettingsReset)));
    assert!(!d.state.settings_reset_requested);
    // The P2 clears them at a settings reset from 5.3.0 on.
    for (release, kept) in [("5.0.0", 1), ("5.5.0", 0)] {
        let (mut p2, mut c) = listening(32, release);
        answer(
            &mut p2,
            &mut c,
            &[
                (SSID_PROMPT, "home"),
                (SECURITY_PROMPT, "3"),
                (CIPHER_PROMPT, "1"),
                (PASSWORD_PROMPT, PASSWORD),
            ],
        );
        p2.reset(ResetReason::Button, Some(10.0));
        assert_eq!(p2.wifi_networks().unwrap().len(), kept, "P2 {release}");
    }
}

#[test]
fn a_power_cut_while_saving_leaves_the_old_or_the_new_networks() {
    let (d0, _) = photon_with_network();
    for cut in 1..=8 {
        let mut d = d0.clone();
        let mut c = Console::new(ConsoleConfig::fast(50));
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        d.flash_mut().cut_power_after(cut);
        photon_wpa2(&mut d, &mut c, "second", PASSWORD);
        d.power_on();
        let names: Vec<String> = d
            .wifi_networks()
            .unwrap()
            .into_iter()
            .map(|n| n.ssid)
            .collect();
        assert!(
            names == ["home"] || names == ["second", "home"],
            "cut {cut}: {names:?}"
        );
        assert!(dct::is_intact(d.flash(), &d.dct_location()), "cut {cut}");
    }
}
