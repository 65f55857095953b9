//! The listening-mode serial console (`system_setup.cpp`, spec §8), sans-IO.
//!
//! A [`Console`] sits between a serial line and a [`Device`]: the caller feeds the bytes the
//! host wrote with [`Console::feed`], writes what [`Console::drain_output`] returns back to
//! the host, and calls [`Console::handle_timeout`] once [`Console::next_deadline`] has passed.
//! Time is a caller-chosen millisecond counter that never goes backwards.
//!
//! The console only answers while the device is in [`Mode::Listening`]; in any other mode the
//! line is quiet and input is dropped. [`Console::set_baud`] models the host changing the line
//! rate: 28800 baud enters listening mode, 14400 baud resets the device into DFU mode.
//!
//! Keys: `i` (device id), `m` (MAC address), `s` (module info JSON), `v` (system firmware
//! version), `f` (YMODEM firmware receive), `x` (leave listening mode), `w` (Wi-Fi
//! credentials where the model keeps them: [`crate::wifi::dialogue`]), `c` (claimed state). A first byte of SOH or STX starts a
//! YMODEM receive directly. The receiver is modflash-ymodem's [`Receiver`] with
//! [`ReceiverConfig::device_os`]: no initial `C`, CRC not checked, and the final ACK only
//! after the device has validated the image with [`Device::ota_finish`].
//!
//! ```
//! use modflash_device::console::{Console, ConsoleConfig};
//! use modflash_device::Device;
//! let mut d = Device::blank(modflash_module::platform(6).unwrap(), [1; 12]).unwrap();
//! d.install_release("1.5.0", true).unwrap();
//! d.power_on();
//! let mut console = Console::new(ConsoleConfig::default());
//! console.set_baud(&mut d, 28800, 0);
//! console.feed(&mut d, b"v", 0);
//! assert_eq!(console.drain_output(), b"system firmware version: 1.5.0\n\r\n");
//! ```

use std::fmt::Write as _;

use modflash_module::release::release_name;
use modflash_module::rules;
use modflash_ymodem::{Event, Receiver, ReceiverConfig, RecvError, CAN};

use crate::device::Device;
use crate::event::DeviceEvent;
use crate::state::{Color, Led, Mode, Pattern, ResetReason};
use crate::wifi::{self, dialogue::Dialogue, dialogue::Progress};

/// The line rate that puts a running device into listening mode
/// (`START_YMODEM_FLASHER_SERIAL_SPEED`).
pub const LISTENING_BAUD: u32 = 28_800;
/// The line rate that resets a running device into DFU mode (`START_DFU_FLASHER_SERIAL_SPEED`).
pub const DFU_BAUD: u32 = 14_400;

/// The prompt printed when a YMODEM receive starts.
pub const YMODEM_PROMPT: &str = "Waiting for the binary file to be sent ... (press 'a' to abort)";
/// Printed after a validated image, before the restart.
pub const DOWNLOAD_OK: &str = "Downloaded file successfully!";
/// Printed right before the device resets to apply an update.
pub const RESTARTING: &str = "Restarting system to apply firmware update...";
/// Printed (after CAN CAN) when the header announces a file larger than the OTA region.
pub const TOO_BIG: &str = "The file size is higher than the allowed space memory!";
/// Prefix of the line printed (after CAN CAN) when the image fails validation.
pub const VALIDATION_FAILED: &str = "Validation failed: ";
/// Printed when the user pressed `a` during a receive.
pub const ABORTED: &str = "Aborted by user.";
/// Printed when a receive failed for any other reason.
pub const RECEIVE_FAILED: &str = "Failed to receive the file!";

/// Cellular platforms (Electron, Boron, B SoM, B5 SoM, Tracker), as in the describe JSON.
const CELLULAR_PLATFORMS: &[u16] = &[10, 13, 23, 25, 26];

/// Console timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// YMODEM receive timeout (`NAK_TIMEOUT`): the wait for a block before the device asks
    /// again with `C`, and the longest silence inside a block. 5000 ms on a device.
    pub ymodem_timeout_ms: u64,
    /// Pause between "Downloaded file successfully!" and the restart. 1000 ms on a device.
    pub restart_delay_ms: u64,
    /// After a receive broken off mid-stream, input is dropped until the line has been quiet
    /// this long, so the rest of an aborted block is not taken for console keys (a modflash
    /// addition; a refused image or header needs no such pause).
    pub quiet_after_failure_ms: u64,
}

impl ConsoleConfig {
    /// The device's own timing: 5000 ms YMODEM timeout, 1000 ms before the restart (and
    /// 200 ms of quiet after a failed receive).
    pub const fn device() -> Self {
        ConsoleConfig {
            ymodem_timeout_ms: 5_000,
            restart_delay_ms: 1_000,
            quiet_after_failure_ms: 200,
        }
    }

    /// Every timeout set to `ms` (tests use ~50 ms).
    pub const fn fast(ms: u64) -> Self {
        ConsoleConfig {
            ymodem_timeout_ms: ms,
            restart_delay_ms: ms,
            quiet_after_failure_ms: ms,
        }
    }

    /// The receiver configuration the console uses.
    pub fn receiver(&self) -> ReceiverConfig {
        let timeout = self.ymodem_timeout_ms.max(1);
        ReceiverConfig {
            block_timeout_ms: timeout,
            byte_timeout_ms: timeout,
            ..ReceiverConfig::device_os()
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self::device()
    }
}

/// Something that changed the device, reported by [`Console::take_events`] (a host saves
/// the device after each one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// A console command ran (the key).
    Command(char),
    /// The line rate changed the device's mode (the new mode).
    ModeChanged(Mode),
    /// A YMODEM receive ended with the device's verdict.
    Transfer(TransferOutcome),
    /// The device reset after an accepted update.
    Restarted,
}

/// How a YMODEM receive ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The image passed validation and is applied at the restart.
    Accepted {
        /// File name from the header.
        name: String,
        /// Bytes received.
        size: u64,
    },
    /// The image failed validation (`Validation failed: <code>`).
    Refused {
        /// Device OS error code.
        code: i32,
        /// The device's reason in words.
        reason: String,
    },
    /// The header announced more than the OTA region holds.
    TooLarge {
        /// Announced size.
        size: u64,
    },
    /// Aborted (user key, sender's cancel) or failed (too many errors, write failure).
    Failed {
        /// What happened.
        reason: String,
    },
}

/// A receive in progress.
#[derive(Debug)]
struct Transfer {
    rx: Receiver,
    name: String,
    size: Option<u64>,
    files: u32,
    /// The OTA region was prepared (a header was accepted).
    begun: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a key.
    Idle,
    /// YMODEM receive.
    Receiving(Box<Transfer>),
    /// Validated; restarting at this instant.
    Restarting { at: u64 },
    /// Dropping input until the line is quiet (after a failed receive).
    Quiet { until: u64 },
    /// The Wi-Fi credentials dialogue (`w`).
    Wifi(Box<Dialogue>),
}

/// The listening-mode console of one device. See the [module documentation](self).
#[derive(Debug)]
pub struct Console {
    cfg: ConsoleConfig,
    state: State,
    out: Vec<u8>,
    events: Vec<ConsoleEvent>,
}

impl Console {
    /// A console with `config` timing, waiting for a key.
    pub fn new(config: ConsoleConfig) -> Self {
        Console {
            cfg: config,
            state: State::Idle,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The timing in force.
    pub fn config(&self) -> ConsoleConfig {
        self.cfg
    }

    /// Bytes the device wrote since the last call.
    pub fn drain_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True while output is waiting for [`drain_output`](Console::drain_output).
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Changes since the last call (save the device after any).
    pub fn take_events(&mut self) -> Vec<ConsoleEvent> {
        std::mem::take(&mut self.events)
    }

    /// True while a YMODEM receive runs.
    pub fn is_receiving(&self) -> bool {
        matches!(self.state, State::Receiving(_))
    }

    /// True between an accepted update and the restart.
    pub fn restart_pending(&self) -> bool {
        matches!(self.state, State::Restarting { .. })
    }

    /// When [`handle_timeout`](Console::handle_timeout) should be called next.
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.state {
            State::Receiving(t) => t.rx.next_deadline(),
            State::Restarting { at } => Some(*at),
            State::Quiet { until } => Some(*until),
            _ => None,
        }
    }

    /// The host set the line rate to `baud`: 28800 enters listening mode (from a running
    /// system), 14400 resets the device into DFU mode; other rates change nothing. Setting
    /// the same rate again counts (a real host re-sends the line coding when it opens the
    /// port).
    pub fn set_baud(&mut self, device: &mut Device, baud: u32, now_ms: u64) {
        let _ = now_ms;
        match baud {
            LISTENING_BAUD => {
                let before = device.state.mode;
                if device.enter_listening() && before != Mode::Listening {
                    self.state = State::Idle;
                    self.events.push(ConsoleEvent::ModeChanged(Mode::Listening));
                }
            }
            DFU_BAUD => {
                if matches!(
                    device.state.mode,
                    Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Listening
                ) {
                    self.state = State::Idle;
                    device.event(DeviceEvent::DfuBaud);
                    device.request_dfu();
                    self.events
                        .push(ConsoleEvent::ModeChanged(device.state.mode));
                }
            }
            _ => {}
        }
    }

    /// Feeds bytes the host wrote. Dropped unless the device is in listening mode.
    pub fn feed(&mut self, device: &mut Device, input: &[u8], now_ms: u64) {
        let mut rest = input;
        let mut stalls = 0u32;
        while !rest.is_empty() {
            if device.state.mode != Mode::Listening {
                // The system is not running the console: nothing answers.
                if self.is_receiving() {
                    self.state = State::Idle;
                }
                return;
            }
            let before = rest.len();
            match &mut self.state {
                State::Receiving(_) => {
                    let used = self.feed_receiver(device, rest, now_ms);
                    rest = rest.get(used..).unwrap_or(&[]);
                }
                State::Restarting { .. } => return,
                State::Quiet { until } => {
                    // Every byte extends the quiet period.
                    *until = now_ms.saturating_add(self.cfg.quiet_after_failure_ms);
                    return;
                }
                State::Idle => {
                    let (&b, tail) = match rest.split_first() {
                        Some(x) => x,
                        None => return,
                    };
                    if b == modflash_ymodem::SOH || b == modflash_ymodem::STX {
                        // `handle_peek`: the byte is not consumed; the receiver reads it.
                        self.start_receive(device, now_ms);
                        continue;
                    }
                    rest = tail;
                    self.key(device, b, now_ms);
                }
                State::Wifi(dialogue) => {
                    let (&b, tail) = match rest.split_first() {
                        Some(x) => x,
                        None => return,
                    };
                    rest = tail;
                    match dialogue.byte(device, b, &mut self.out) {
                        Progress::Reading => {}
                        // `read_line` drops the input already waiting after a line.
                        Progress::LineRead => return,
                        Progress::Finished => {
                            self.state = State::Idle;
                            self.events.push(ConsoleEvent::Command('w'));
                            return;
                        }
                    }
                }
            }
            if rest.len() == before {
                stalls += 1;
                if stalls > 4 {
                    // Defensive: never spin on input nothing consumes.
                    return;
                }
            } else {
                stalls = 0;
            }
        }
    }

    /// Acts on an expired deadline: YMODEM timeouts, the restart after an update, the end
    /// of a quiet period.
    pub fn handle_timeout(&mut self, device: &mut Device, now_ms: u64) {
        match &mut self.state {
            State::Receiving(t) => {
                t.rx.handle_timeout(now_ms);
                self.after_receiver(device, now_ms);
            }
            State::Restarting { at } if now_ms >= *at => {
                self.line(RESTARTING);
                self.state = State::Idle;
                device.reset(ResetReason::Update, None);
                self.events.push(ConsoleEvent::Restarted);
            }
            State::Quiet { until } if now_ms >= *until => self.state = State::Idle,
            _ => {}
        }
    }

    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn key(&mut self, device: &mut Device, key: u8, now_ms: u64) {
        match key {
            b'i' => {
                let text = identity_text(device);
                self.out.extend_from_slice(text.as_bytes());
            }
            b'm' => {
                let mac = mac_address(&device.state.device_id);
                self.line("Your device MAC address is");
                self.line(&mac);
            }
            b's' => {
                let json = crate::describe::describe(device);
                self.line(&json);
            }
            b'v' => {
                let version = match device.system_version() {
                    Some(v) => match release_name(v) {
                        Some(name) => name.to_string(),
                        None => format!("unknown (system module version {v})"),
                    },
                    None => "unknown (no system firmware)".to_string(),
                };
                let text = format!("system firmware version: {version}\n\r\n");
                self.out.extend_from_slice(text.as_bytes());
            }
            b'f' => {
                self.start_receive(device, now_ms);
                return;
            }
            b'x' => {
                device.exit_listening();
            }
            b'c' => self.line("Device claimed: no"),
            b'w' if wifi::models_credentials(device.platform()) => {
                self.state = State::Wifi(Box::new(Dialogue::start(device, &mut self.out)));
                return;
            }
            _ => return,
        }
        self.events.push(ConsoleEvent::Command(char::from(key)));
    }

    fn start_receive(&mut self, device: &mut Device, now_ms: u64) {
        self.line(YMODEM_PROMPT);
        let mut rx = Receiver::new(self.cfg.receiver());
        // Arms the first timeout (the device sends no initial `C`).
        if let Some(b) = rx.poll_transmit(now_ms) {
            self.out.extend_from_slice(b);
        }
        let _ = device;
        self.state = State::Receiving(Box::new(Transfer {
            rx,
            name: String::new(),
            size: None,
            files: 0,
            begun: false,
        }));
    }

    /// Feeds the receiver; returns the bytes consumed.
    fn feed_receiver(&mut self, device: &mut Device, input: &[u8], now_ms: u64) -> usize {
        let State::Receiving(t) = &mut self.state else {
            return 0;
        };
        let used = t.rx.handle_input(input, now_ms);
        self.after_receiver(device, now_ms);
        used
    }

    /// Handles the receiver's events, sends its replies and ends the transfer when it is over.
    fn after_receiver(&mut self, device: &mut Device, now_ms: u64) {
        let State::Receiving(t) = &mut self.state else {
            return;
        };
        let mut verdict: Option<TransferOutcome> = None;
        let mut terminal: Option<(RecvError, bool)> = None;
        let mut reject = false;
        let mut accept = false;
        while let Some(ev) = t.rx.poll_event() {
            match ev {
                Event::FileHeader { name, size, .. } => {
                    t.files = t.files.saturating_add(1);
                    if t.files > 1 {
                        // One module per update: a second file cannot be staged.
                        reject = true;
                        verdict = Some(TransferOutcome::Failed {
                            reason: "a second file in the batch (one module per update)".into(),
                        });
                        continue;
                    }
                    t.name = String::from_utf8_lossy(name).into_owned();
                    t.size = size;
                    let len = size.unwrap_or(u64::from(device.ota_region().max_size));
                    let fits = usize::try_from(len)
                        .ok()
                        .filter(|&l| rules::ota_fits(device.layout(), l).is_ok());
                    match fits {
                        Some(len) => match device.ota_begin(len) {
                            Ok(()) => t.begun = true,
                            Err(e) => {
                                reject = true;
                                verdict = Some(TransferOutcome::Failed {
                                    reason: e.to_string(),
                                });
                            }
                        },
                        None => {
                            reject = true;
                            verdict = Some(TransferOutcome::TooLarge { size: len });
                        }
                    }
                }
                Event::Data { offset, data, .. } => {
                    if !t.begun || reject {
                        continue;
                    }
                    let Ok(offset) = usize::try_from(offset) else {
                        reject = true;
                        continue;
                    };
                    if let Err(e) = device.ota_write(offset, data) {
                        reject = true;
                        verdict = Some(TransferOutcome::Failed {
                            reason: format!("flash write failed at offset {offset}: {e}"),
                        });
                    }
                }
                Event::EndOfFile { .. } => {}
                Event::EndOfBatch { .. } => {
                    if !t.begun {
                        reject = true;
                        verdict = Some(TransferOutcome::Failed {
                            reason: "the batch held no file".into(),
                        });
                        continue;
                    }
                    t.begun = false;
                    match device.ota_finish() {
                        Ok(_) => {
                            accept = true;
                            let size = t.rx.stats().bytes_received;
                            verdict = Some(TransferOutcome::Accepted {
                                name: t.name.clone(),
                                size,
                            });
                        }
                        Err(e) => {
                            reject = true;
                            device.event(DeviceEvent::YmodemRefused(e));
                            verdict = Some(TransferOutcome::Refused {
                                code: e.code(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Event::Cancelled(e) => terminal = Some((e, true)),
                Event::Failed(e) => terminal = Some((e, false)),
            }
        }
        if reject {
            t.rx.reject();
            // The terminal event of our own rejection.
            while t.rx.poll_event().is_some() {}
        } else if accept {
            t.rx.accept();
        }
        if let Some(b) = t.rx.poll_transmit(now_ms) {
            self.out.extend_from_slice(b);
        }
        let finished = t.rx.is_finished();
        if !finished && verdict.is_none() && terminal.is_none() {
            return;
        }
        if !finished {
            // A verdict without a finished receiver cannot happen (accept/reject end it),
            // but never leave a dead transfer behind.
            return;
        }
        let outcome = match (verdict, terminal) {
            (Some(v), _) => v,
            (None, Some((e, _))) => TransferOutcome::Failed {
                reason: e.to_string(),
            },
            (None, None) => TransferOutcome::Failed {
                reason: "the transfer ended".into(),
            },
        };
        let user_abort = matches!(
            t.rx.status(),
            modflash_ymodem::RecvStatus::Failed(RecvError::AbortedByUser { .. })
        );
        match &outcome {
            TransferOutcome::Accepted { name, size } => {
                self.out.extend_from_slice(b"\r\n");
                self.line(DOWNLOAD_OK);
                self.line(&format!("Name: {name}"));
                self.line(&format!("Size: {size} bytes"));
                self.state = State::Restarting {
                    at: now_ms.saturating_add(self.cfg.restart_delay_ms),
                };
            }
            TransferOutcome::Refused { code, .. } => {
                // The sender has finished: keys work again at once.
                self.line(&format!("{VALIDATION_FAILED}{code}"));
                self.fail_state(device, now_ms, false);
            }
            TransferOutcome::TooLarge { .. } => {
                // Refused at the header: the sender is waiting, not streaming.
                self.line(TOO_BIG);
                self.fail_state(device, now_ms, false);
            }
            TransferOutcome::Failed { .. } => {
                // Broken off mid-stream: the rest of a block may still be on the way.
                self.line(if user_abort { ABORTED } else { RECEIVE_FAILED });
                self.fail_state(device, now_ms, true);
            }
        }
        self.events.push(ConsoleEvent::Transfer(outcome));
    }

    /// Back to the console after a failed receive: listening LED again; after a transfer
    /// broken off mid-stream, input is ignored until the line is quiet.
    fn fail_state(&mut self, device: &mut Device, now_ms: u64, quiet: bool) {
        if device.state.mode == Mode::Listening {
            device.state.led = Led {
                color: Color::Blue,
                pattern: Pattern::Blinking,
            };
        }
        self.state = if quiet {
            State::Quiet {
                until: now_ms.saturating_add(self.cfg.quiet_after_failure_ms),
            }
        } else {
            State::Idle
        };
    }
}

/// The `i` answer: `Your device id is <id>` on Gen2 Wi-Fi platforms; `Device ID: <id>` and
/// one `Name: value` line per HAL key/value elsewhere.
pub fn identity_text(device: &Device) -> String {
    let id = &device.state.device_id;
    let platform = device.platform();
    let cellular = CELLULAR_PLATFORMS.contains(&platform.id);
    let gen3_or_later = platform.generation.is_some_and(|g| g >= 3);
    if !cellular && !gen3_or_later {
        return format!("Your device id is {id}\r\n");
    }
    let mut out = format!("Device ID: {id}\r\n");
    if gen3_or_later {
        let _ = write!(
            out,
            "Device Secret: {}\r\nSerial Number: {}\r\n",
            derived_code(id, b"secret", ""),
            serial_number(device).unwrap_or_default()
        );
    }
    if cellular {
        // The same values the describe JSON carries.
        let describe = crate::describe::describe(device);
        let value = |key: &str| -> String {
            serde_json::from_str::<serde_json::Value>(&describe)
                .ok()
                .and_then(|v| v.get(key).and_then(|s| s.as_str()).map(str::to_string))
                .unwrap_or_default()
        };
        let _ = write!(
            out,
            "IMEI: {}\r\nICCID: {}\r\nCell Radio Version: {}\r\n",
            value("imei"),
            value("iccid"),
            value("cellfw")
        );
    }
    out
}

/// The serial number the HAL reports (`hal_get_device_serial_number`): Gen3 and later only.
pub fn serial_number(device: &Device) -> Option<String> {
    let platform = device.platform();
    platform.generation.is_some_and(|g| g >= 3).then(|| {
        derived_code(
            &device.state.device_id,
            b"serial",
            &serial_prefix(platform.name),
        )
    })
}

fn serial_prefix(name: &str) -> String {
    let mut p: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    while p.len() < 3 {
        p.push('X');
    }
    p
}

/// A stable 15-character code (digits and upper-case letters) derived from the device id.
fn derived_code(id: &str, salt: &[u8], prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut seed = Vec::with_capacity(id.len() + salt.len());
    seed.extend_from_slice(salt);
    seed.extend_from_slice(id.as_bytes());
    let digest = modflash_module::checksum::sha256(&seed);
    let mut out = prefix.to_string();
    for b in digest.iter() {
        if out.len() >= 15 {
            break;
        }
        out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    out
}

/// The `m` answer's address: a locally administered unicast MAC built from the last five
/// bytes of the device id.
pub fn mac_address(device_id: &str) -> String {
    let bytes: Vec<u8> = (0..device_id.len() / 2)
        .filter_map(|i| u8::from_str_radix(device_id.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut mac = [0x02u8, 0, 0, 0, 0, 0];
    for (slot, b) in mac[1..].iter_mut().zip(bytes.iter().rev().take(5).rev()) {
        *slot = *b;
    }
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// True if `bytes` contain the device's cancel (two CANs in a row).
pub fn contains_cancel(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == [CAN, CAN])
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::platform::platform;
    use modflash_testkit::fixture;
    use modflash_ymodem::{crc16_xmodem, ACK, EOT, NAK, SOH, STX};

    const T: u64 = 50;

    // Not the testkit's device builder: in this crate's own unit tests its `Device` would be
    // a second copy of the type (the testkit depends on this crate).
    fn device(release: &str) -> Device {
        let mut d = Device::blank(platform(6).unwrap(), [0x3b; 12]).unwrap();
        d.install_release(release, true).unwrap();
        d.power_on();
        d
    }

    fn listening(release: &str) -> (Device, Console) {
        let mut d = device(release);
        let mut c = Console::new(ConsoleConfig::fast(T));
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        assert_eq!(d.state.mode, Mode::Listening);
        c.take_events();
        (d, c)
    }

    fn text(c: &mut Console) -> String {
        String::from_utf8_lossy(&c.drain_output()).into_owned()
    }

    fn block(seq: u8, payload: &[u8], big: bool) -> Vec<u8> {
        let size = if big { 1024 } else { 128 };
        let mut body = payload.to_vec();
        body.resize(size, 0x1A);
        let mut v = vec![if big { STX } else { SOH }, seq, !seq];
        v.extend_from_slice(&body);
        v.extend_from_slice(&crc16_xmodem(&body).to_be_bytes());
        v
    }

    fn header(name: &str, size: usize) -> Vec<u8> {
        let mut p = name.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(format!("{size} ").as_bytes());
        block(0, &p, false)
    }

    /// Sends `image` the way a good sender does; returns everything the console wrote.
    fn send(d: &mut Device, c: &mut Console, image: &[u8], corrupt: Option<usize>) -> String {
        let mut now = 1;
        let mut wire = Vec::new();
        c.feed(d, b"f", now);
        wire.extend(c.drain_output());
        c.feed(d, &header("binary", image.len()), now);
        let out = c.drain_output();
        assert_eq!(out, [ACK, b'C'], "header: {:?}", c.take_events());
        wire.extend(out);
        for (i, chunk) in image.chunks(1024).enumerate() {
            let mut b = block((i + 1) as u8, chunk, true);
            if let Some(at) = corrupt {
                if at / 1024 == i {
                    b[3 + at % 1024] ^= 0x10;
                }
            }
            now += 1;
            c.feed(d, &b, now);
            let out = c.drain_output();
            assert_eq!(out, [ACK], "block {}", i + 1);
            wire.extend(out);
        }
        c.feed(d, &[EOT], now);
        let out = c.drain_output();
        assert_eq!(out, [ACK], "EOT: ACK and no C");
        wire.extend(out);
        c.feed(d, &block(0, &[0; 128], false), now);
        wire.extend(c.drain_output());
        // The restart follows after the delay.
        now += T;
        c.handle_timeout(d, now);
        wire.extend(c.drain_output());
        String::from_utf8_lossy(&wire).into_owned()
    }

    #[test]
    fn quiet_outside_listening_mode() {
        let mut d = device("1.5.0");
        let mut c = Console::new(ConsoleConfig::fast(T));
        assert_eq!(d.state.mode, Mode::App);
        c.feed(&mut d, b"sivm", 0);
        assert!(c.drain_output().is_empty());
        c.set_baud(&mut d, 9600, 0);
        c.feed(&mut d, b"s", 0);
        assert!(c.drain_output().is_empty());
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        assert_eq!(d.state.mode, Mode::Listening);
        assert_eq!(
            c.take_events(),
            [ConsoleEvent::ModeChanged(Mode::Listening)]
        );
        c.feed(&mut d, b"x", 0);
        assert_ne!(d.state.mode, Mode::Listening);
        c.feed(&mut d, b"s", 0);
        assert!(c.drain_output().is_empty(), "quiet again after x");
    }

    #[test]
    fn keys_print_what_the_device_prints() {
        let (mut d, mut c) = listening("1.5.0");
        c.feed(&mut d, b"i", 0);
        assert_eq!(
            text(&mut c),
            "Your device id is 3b3b3b3b3b3b3b3b3b3b3b3b\r\n"
        );
        c.feed(&mut d, b"m", 0);
        assert_eq!(
            text(&mut c),
            "Your device MAC address is\r\n02:3b:3b:3b:3b:3b\r\n"
        );
        c.feed(&mut d, b"v", 0);
        assert_eq!(text(&mut c), "system firmware version: 1.5.0\n\r\n");
        c.feed(&mut d, b"s", 0);
        let s = text(&mut c);
        assert_eq!(s, format!("{}\r\n", crate::describe::describe(&d)));
        assert!(s.starts_with("{\"p\":6,\"m\":["));
        c.feed(&mut d, b"?Z\r\n", 0);
        assert!(c.drain_output().is_empty(), "unknown keys are ignored");
    }

    #[test]
    fn cellular_and_gen3_identity_use_the_key_value_form() {
        let mut e = Device::blank(platform(10).unwrap(), [0x12; 12]).unwrap();
        e.install_release("1.5.0", true).unwrap();
        e.power_on();
        let t = identity_text(&e);
        assert!(
            t.starts_with("Device ID: 121212121212121212121212\r\nIMEI: 35"),
            "{t}"
        );
        assert!(
            t.contains("\r\nICCID: 89") && t.contains("Cell Radio Version: "),
            "{t}"
        );
        let mut a = Device::blank(platform(12).unwrap(), [0x34; 12]).unwrap();
        a.install_release("1.5.0", true).unwrap();
        a.power_on();
        let t = identity_text(&a);
        assert!(t.starts_with("Device ID: 343434343434343434343434\r\nDevice Secret: "));
        let serial = t
            .lines()
            .find(|l| l.starts_with("Serial Number: "))
            .unwrap();
        assert_eq!(serial.len(), "Serial Number: ".len() + 15);
        assert!(serial.contains("ARG"), "{serial}");
        assert_eq!(t, identity_text(&a), "stable");
    }

    #[test]
    fn accepted_app_is_applied_at_the_restart() {
        let (mut d, mut c) = listening("1.5.0");
        let app = fixture("photon_tinker.bin");
        let wire = send(&mut d, &mut c, &app, None);
        assert!(wire.starts_with(YMODEM_PROMPT), "{wire}");
        assert!(
            wire.contains(&format!(
                "{DOWNLOAD_OK}\r\nName: binary\r\nSize: {} bytes\r\n",
                app.len()
            )),
            "{wire}"
        );
        assert!(wire.ends_with(&format!("{RESTARTING}\r\n")), "{wire}");
        assert_eq!(d.state.mode, Mode::App, "{:#?}", d.state.events);
        let user = d
            .system_info()
            .into_iter()
            .find(|f| {
                f.info
                    .is_some_and(|i| i.function == modflash_module::ModuleFunction::UserPart)
            })
            .unwrap();
        assert_eq!(
            user.info.unwrap().version,
            2,
            "photon_tinker.bin is version 2"
        );
        let events = c.take_events();
        assert!(
            matches!(&events[0], ConsoleEvent::Transfer(TransferOutcome::Accepted { size, .. }) if *size == app.len() as u64),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&ConsoleEvent::Restarted));
    }

    #[test]
    fn part2_onto_052_is_refused_with_1340_and_nothing_changes() {
        let (mut d, mut c) = listening("0.5.2");
        let before = crate::describe::describe(&d);
        let part2 = fixture("photon-system-part2@1.5.0.bin");
        let wire = send(&mut d, &mut c, &part2, None);
        assert!(contains_cancel(wire.as_bytes()), "CAN CAN");
        assert!(wire.contains("Validation failed: -1340\r\n"), "{wire}");
        assert!(!wire.contains(DOWNLOAD_OK));
        assert_eq!(d.state.mode, Mode::Listening, "no restart");
        assert_eq!(crate::describe::describe(&d), before);
        d.reset(ResetReason::Button, None);
        assert_eq!(crate::describe::describe(&d), before, "nothing pending");
        let ev = c.take_events();
        assert!(
            matches!(&ev[0], ConsoleEvent::Transfer(TransferOutcome::Refused { code: -1340, reason }) if reason.contains("system part 2 needs system part 1 \u{2265} 1502, installed 17")),
            "{ev:?}"
        );
    }

    #[test]
    fn corrupted_image_is_never_applied() {
        // The device does not check the block CRC: the flipped byte is written, and the
        // module CRC-32 check at ota_finish refuses the image.
        let (mut d, mut c) = listening("1.5.0");
        let app = fixture("photon_tinker.bin");
        let before = crate::describe::describe(&d);
        let wire = send(&mut d, &mut c, &app, Some(3000));
        assert!(wire.contains("Validation failed: -1330\r\n"), "{wire}");
        d.reset(ResetReason::Button, None);
        assert_eq!(crate::describe::describe(&d), before);
    }

    #[test]
    fn too_big_header_is_cancelled_with_the_message() {
        let (mut d, mut c) = listening("1.5.0");
        c.feed(&mut d, b"f", 0);
        text(&mut c);
        c.feed(&mut d, &header("huge", 4 << 20), 1);
        let out = c.drain_output();
        assert_eq!(&out[..2], &[CAN, CAN]);
        assert!(String::from_utf8_lossy(&out).contains(TOO_BIG));
        assert!(matches!(
            c.take_events()[0],
            ConsoleEvent::Transfer(TransferOutcome::TooLarge { size }) if size == 4 << 20
        ));
    }

    #[test]
    fn no_initial_c_then_c_on_timeout_and_abort_key() {
        let (mut d, mut c) = listening("1.5.0");
        c.feed(&mut d, b"f", 0);
        assert_eq!(text(&mut c), format!("{YMODEM_PROMPT}\r\n"));
        assert_eq!(c.next_deadline(), Some(T));
        c.handle_timeout(&mut d, T);
        assert_eq!(c.drain_output(), b"C");
        c.feed(&mut d, b"a", T + 1);
        let out = c.drain_output();
        assert_eq!(&out[..2], &[CAN, CAN]);
        assert!(String::from_utf8_lossy(&out).contains(ABORTED));
        // Input is dropped until the line is quiet, then keys work again.
        c.feed(&mut d, b"s", T + 2);
        assert!(c.drain_output().is_empty());
        let q = c.next_deadline().unwrap();
        c.handle_timeout(&mut d, q);
        c.feed(&mut d, b"v", q + 1);
        assert!(text(&mut c).starts_with("system firmware version"));
    }

    #[test]
    fn soh_first_byte_starts_a_receive() {
        let (mut d, mut c) = listening("1.5.0");
        let app = fixture("photon_tinker.bin");
        c.feed(&mut d, &header("app.bin", app.len()), 0);
        let out = c.drain_output();
        assert!(out.ends_with(&[ACK, b'C']), "{out:?}");
        assert!(c.is_receiving());
    }

    #[test]
    fn wrong_sequence_is_naked_and_sender_cancel_is_acked() {
        let (mut d, mut c) = listening("1.5.0");
        c.feed(&mut d, b"f", 0);
        text(&mut c);
        c.feed(&mut d, &header("x", 3000), 0);
        c.drain_output();
        c.feed(&mut d, &block(2, &[1; 1024], true), 1);
        assert_eq!(c.drain_output(), [NAK]);
        c.feed(&mut d, &[CAN, CAN], 2);
        let out = c.drain_output();
        assert_eq!(out[0], ACK);
        assert!(String::from_utf8_lossy(&out).contains(RECEIVE_FAILED));
    }

    #[test]
    fn baud_14400_resets_into_dfu() {
        let (mut d, mut c) = listening("1.5.0");
        c.set_baud(&mut d, DFU_BAUD, 0);
        assert_eq!(d.state.mode, Mode::Dfu);
        c.feed(&mut d, b"s", 0);
        assert!(c.drain_output().is_empty());
        c.set_baud(&mut d, LISTENING_BAUD, 0);
        assert_eq!(d.state.mode, Mode::Dfu, "the bootloader has no console");
    }

    #[test]
    fn wifi_dialogue() {
        // Device OS 1.5.0 on a Photon: it scans for the network (the virtual device finds
        // none), so it asks for the security with the Enterprise choices, then the cipher.
        let (mut d, mut c) = listening("1.5.0");
        c.feed(&mut d, b"w", 0);
        assert_eq!(text(&mut c), "SSID: ");
        c.feed(&mut d, b"home\r", 0);
        assert!(text(&mut c).ends_with(
            "Security 0=unsecured, 1=WEP, 2=WPA, 3=WPA2, 4=WPA Enterprise, 5=WPA2 Enterprise: "
        ));
        c.feed(&mut d, b"3\r", 0);
        assert!(text(&mut c).ends_with("Security Cipher 1=AES, 2=TKIP, 3=AES+TKIP: "));
        c.feed(&mut d, b"1\r", 0);
        assert!(text(&mut c).ends_with("Password: "));
        c.feed(&mut d, b"secret-wpa2\r", 0);
        assert!(text(&mut c).contains("Particle <3 you!"));
        assert_ne!(d.state.mode, Mode::Listening);
        assert!(d.state.events.iter().any(
            |e| matches!(e, DeviceEvent::WifiSaved { ssid, secured: true } if ssid == "home")
        ));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let (d0, _) = listening("1.5.0");
        let mut x = 0x1234_5678_9abc_def0u64;
        for round in 0..40 {
            let mut d = d0.clone();
            let mut c = Console::new(ConsoleConfig::fast(T));
            let mut now = 0;
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = (x % 40) as usize;
                let bytes: Vec<u8> = (0..n)
                    .map(|i| {
                        let v = (x >> (i % 8 * 8)) as u8;
                        match round % 3 {
                            0 => v,
                            1 => b"fsivmx\x01\x02\x04\x18aw\r"[usize::from(v) % 13],
                            _ => v & 0x1F,
                        }
                    })
                    .collect();
                c.feed(&mut d, &bytes, now);
                c.drain_output();
                now += x % 80;
                c.handle_timeout(&mut d, now);
                if x.is_multiple_of(17) {
                    c.set_baud(&mut d, LISTENING_BAUD, now);
                }
            }
        }
    }
}
