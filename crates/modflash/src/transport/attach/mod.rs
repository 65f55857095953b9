//! `modflash sim attach`: virtual devices plugged into an emulated USB bus (umockdev), so any
//! libusb program — dfu-util, particle-cli, modflash itself — sees real-looking devices.
//!
//! * Each device has its own hub port (`1-1`, `1-2`, …) and device number ([`bus`]).
//! * In DFU mode a device shows the bootloader's descriptors (from the device model) and every
//!   control transfer goes to the device's own DfuSe handler; SET_INTERFACE selects the alt,
//!   USBDEVFS_RESET is a bus reset.
//! * In normal, listening and safe mode it shows the firmware's descriptors (a CDC serial
//!   port plus the control interface, from the device model): Particle's vendor requests go
//!   to the device's control channel, a SET_LINE_CODING at 14400 baud sends it into DFU mode
//!   (28800: listening mode), as on hardware ([`control`]). Modelled time follows real time
//!   while the device has a mode change pending (a reset, DFU or safe mode asked for over USB
//!   happens 1 s after the reply).
//! * When a device changes how it shows on the bus (leaves DFU mode, resets into it), it is
//!   unplugged and plugged again under a new device number, each announced with udev's
//!   hotplug message ([`uevent`]), so long-lived libusb clients drop the old node and find the
//!   new one; every ioctl on the old node answers ENODEV.
//! * Device nodes poll ready only while a URB waits to be reaped ([`wake`]): an idle open
//!   handle costs no CPU.
//!
//! The usbfs ioctls the child sends arrive on umockdev's worker thread ([`node`]); each device
//! sits behind a mutex. All unsafe FFI is in [`crate::umockdev`].

mod bus;
mod control;
mod node;
mod serial;
mod uevent;
mod wake;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use modflash_device::Device;

use super::umockdev::{Testbed, Umockdev, UmockdevError, INSTALL_HELP};
use bus::Bus;

/// How often the bus looks at the devices when nothing wakes it (mode changes due on the
/// modelled clock, the command's exit).
const TICK: Duration = Duration::from_millis(5);
/// The most devices one bus takes (hub ports are numbered from 1 to this).
pub const MAX_DEVICES: usize = 127;

/// How a device shows on the bus; the numbers identify one enumeration (they change at every
/// boot, [`Device::usb_connection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    /// The bootloader's DFU interface.
    Dfu(u64),
    /// Firmware runs (normal, listening or safe mode): CDC serial + control interface.
    Normal(u64),
    /// Off, or crashing before USB starts.
    Absent,
}

fn presence(d: &Device) -> Presence {
    match d.usb_connection() {
        Some(c) if d.in_dfu_mode() => Presence::Dfu(c),
        Some(c) => Presence::Normal(c),
        None => Presence::Absent,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct BusState {
    presence: Presence,
    generation: u64,
}

/// A hub port and the virtual device plugged into it, shared by the bus (main thread) and its
/// nodes (umockdev's worker thread).
struct Port {
    /// 1-based port number (port path `1-N`).
    number: u8,
    device: Mutex<Device>,
    state: Mutex<BusState>,
    /// Wakes the main thread to replug.
    notify: Mutex<mpsc::Sender<()>>,
    trace: bool,
}

impl Port {
    /// After the device did something: if it changed how it shows on the bus, a new
    /// generation (every node of the old one goes stale) and a wake-up for the main thread.
    fn check_presence(&self) {
        let now = presence(&lock(&self.device));
        let mut state = lock(&self.state);
        if now != state.presence {
            state.presence = now;
            state.generation += 1;
            drop(state);
            let _ = lock(&self.notify).send(());
        }
    }

    fn current(&self, generation: u64) -> bool {
        lock(&self.state).generation == generation
    }

    fn presence(&self) -> (Presence, u64) {
        let state = lock(&self.state);
        (state.presence, state.generation)
    }

    /// Lets `elapsed` of real time pass on the device's modelled clock while a mode change is
    /// pending, never past the moment it is due, so the modelled time of a run counts each
    /// wait once and exactly.
    fn let_time_pass(&self, elapsed: Duration) {
        let mut device = lock(&self.device);
        if let Some(due) = device.control_deadline() {
            let now = device.flash().stats().modelled_us;
            let step = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            device.elapse(step.min(due.saturating_sub(now)));
        }
    }

    /// Lets a pending mode change happen now (the command has ended; the device acts after
    /// its delay whether or not a host is still there).
    fn settle(&self) {
        let mut device = lock(&self.device);
        if let Some(due) = device.control_deadline() {
            let now = device.flash().stats().modelled_us;
            device.elapse(due.saturating_sub(now));
        }
    }
}

/// Options of [`attach`].
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// Print every ioctl, control transfer and replug on standard error.
    pub trace: bool,
    /// Where to link each device's serial port (in the order of the devices) while attached,
    /// for programs outside the bus (`sim serve` links to it); a shorter list links fewer.
    pub serial_links: Vec<PathBuf>,
}

/// What happened while attached.
#[derive(Clone, Debug)]
pub struct Attached {
    /// The devices afterwards, in the order given.
    pub devices: Vec<Device>,
    /// The command's exit code (128 + signal when it was killed).
    pub exit_code: i32,
    /// How often a device re-enumerated.
    pub replugs: u32,
}

/// Why `attach` could not run the command.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AttachError {
    /// umockdev is not installed.
    #[error("{0}")]
    #[diagnostic(code(modflash::attach::no_umockdev), help("{}", INSTALL_HELP))]
    NoUmockdev(String),
    /// The emulated bus failed.
    #[error("the emulated USB bus failed: {0}")]
    #[diagnostic(code(modflash::attach::bus))]
    Bus(UmockdevError),
    /// More devices than one bus takes.
    #[error("{0} devices are more than one emulated USB bus takes ({MAX_DEVICES})")]
    #[diagnostic(
        code(modflash::attach::too_many),
        help("attach fewer at a time (a pattern such as 'line-1*' narrows the choice)")
    )]
    TooMany(usize),
    /// The command could not be started.
    #[error("cannot run {command}: {error}")]
    #[diagnostic(
        code(modflash::attach::spawn),
        help("check the command name and that it is on PATH")
    )]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
}

/// The preload library the child needs, if it is installed (searched where the dynamic
/// linker would look, then in ldconfig's cache; never loaded into this process, where it
/// would redirect our own /sys and /dev).
fn preload_installed() -> bool {
    const NAME: &str = "libumockdev-preload.so.0";
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/lib64",
        "/lib",
        "/usr/local/lib",
    ] {
        dirs.push(d.into());
    }
    if dirs.iter().any(|d| d.join(NAME).exists()) {
        return true;
    }
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(NAME))
}

/// Runs `program args` with `devices` plugged into an emulated USB bus, each into its own
/// port; returns the devices afterwards and the command's exit code.
pub fn attach(
    devices: Vec<Device>,
    program: &OsString,
    args: &[OsString],
    options: &AttachOptions,
) -> Result<Attached, AttachError> {
    if !cfg!(all(target_os = "linux", target_pointer_width = "64")) {
        return Err(AttachError::NoUmockdev(
            "sim attach needs Linux on a 64-bit machine (umockdev and the usbfs layout)".into(),
        ));
    }
    if devices.len() > MAX_DEVICES {
        return Err(AttachError::TooMany(devices.len()));
    }
    if !preload_installed() {
        return Err(AttachError::NoUmockdev(
            "umockdev's preload library libumockdev-preload.so.0 is not installed".into(),
        ));
    }
    let lib = Umockdev::load()
        .map_err(|e| AttachError::NoUmockdev(format!("umockdev is not available: {e}")))?;
    let testbed = Testbed::new(lib).map_err(AttachError::Bus)?;
    let (tx, rx) = mpsc::channel();
    let ports: Vec<Arc<Port>> = devices
        .into_iter()
        .zip(1u8..)
        .map(|(device, number)| {
            Arc::new(Port {
                number,
                state: Mutex::new(BusState {
                    presence: presence(&device),
                    generation: 0,
                }),
                device: Mutex::new(device),
                notify: Mutex::new(tx.clone()),
                trace: options.trace,
            })
        })
        .collect();
    let mut bus = Bus::new(testbed, ports.len(), &options.serial_links, options.trace);
    for port in &ports {
        bus.replug(port).map_err(AttachError::Bus)?;
    }
    let preload = match std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        Some(p) => {
            let mut v = OsString::from("libumockdev-preload.so.0:");
            v.push(p);
            v
        }
        None => OsString::from("libumockdev-preload.so.0"),
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload)
        .env("UMOCKDEV_DIR", bus.root())
        .spawn()
        .map_err(|error| AttachError::Spawn {
            command: program.to_string_lossy().into_owned(),
            error,
        })?;
    let mut last = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let _ = rx.recv_timeout(TICK);
        while rx.try_recv().is_ok() {}
        let now = Instant::now();
        let elapsed = now - last;
        last = now;
        for port in &ports {
            port.let_time_pass(elapsed);
            port.check_presence();
        }
        while rx.try_recv().is_ok() {}
        let replugged = ports.iter().try_for_each(|port| {
            if bus.shows(port) {
                Ok(())
            } else {
                bus.replug(port)
            }
        });
        if let Err(e) = replugged {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AttachError::Bus(e));
        }
    };
    let replugs = bus.replugs;
    drop(bus);
    let exit_code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        }),
        Err(_) => 1,
    };
    for port in &ports {
        port.settle();
    }
    let devices = ports.iter().map(|p| lock(&p.device).clone()).collect();
    Ok(Attached {
        devices,
        exit_code,
        replugs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::control::MODE_CHANGE_DELAY_US;
    use modflash_device::ResetReason;
    use modflash_testkit::device::device;

    /// A vendor IN request of Particle's service protocol (INIT 1, CHECK 2, …) as particle-usb
    /// sends it.
    fn service(request: u8, index: u16) -> modflash_dfu::Setup {
        modflash_dfu::Setup {
            request_type: 0xC0,
            request,
            value: 0,
            index,
            length: 64,
        }
    }

    fn port(device: Device) -> Port {
        Port {
            number: 1,
            state: Mutex::new(BusState {
                presence: presence(&device),
                generation: 0,
            }),
            device: Mutex::new(device),
            notify: Mutex::new(mpsc::channel().0),
            trace: false,
        }
    }

    #[test]
    fn presence_follows_the_mode() {
        let mut d = device(6).release("1.5.0").powered_on();
        let Presence::Normal(booted) = presence(&d) else {
            panic!("not in normal mode")
        };
        d.reset(ResetReason::Button, None);
        assert_ne!(
            presence(&d),
            Presence::Normal(booted),
            "a reset re-enumerates in normal mode too"
        );
        d.reset(ResetReason::Button, Some(3.0));
        let Presence::Dfu(first) = presence(&d) else {
            panic!("not in DFU mode")
        };
        d.reset(ResetReason::Button, Some(3.0));
        assert_ne!(
            presence(&d),
            Presence::Dfu(first),
            "a reset is a new enumeration"
        );
    }

    #[test]
    fn a_mode_change_asked_for_over_usb_happens_after_its_delay_and_no_later() {
        // The reset request (type 40) as particle-usb sends it: INIT, then CHECK, whose reply
        // completes it; the device resets 1 s later.
        let mut d = device(6).release("1.5.0").powered_on();
        let init = d.control(service(1, 40), &[]).unwrap();
        let id = u16::from_le_bytes([init[6], init[7]]);
        d.control(service(2, id), &[]).unwrap();
        let due = d.control_deadline().expect("a reset is pending");
        let mut exact = d.clone();
        exact.elapse(MODE_CHANGE_DELAY_US);
        let p = port(d);
        let (booted, _) = p.presence();
        let replied = lock(&p.device).flash().stats().modelled_us;
        assert_eq!(due - replied, MODE_CHANGE_DELAY_US);
        p.let_time_pass(Duration::from_millis(400));
        p.check_presence();
        assert_eq!(p.presence(), (booted, 0), "not yet");
        p.let_time_pass(Duration::from_secs(5));
        p.check_presence();
        let (now, generation) = p.presence();
        assert!(matches!(now, Presence::Normal(_)) && now != booted);
        assert_eq!(generation, 1, "one new enumeration");
        let d = lock(&p.device);
        assert_eq!(
            d.flash().stats().modelled_us,
            exact.flash().stats().modelled_us,
            "the wait counts exactly once on the modelled clock"
        );
        assert!(d.control_deadline().is_none());
    }

    #[test]
    fn a_mode_change_still_pending_at_the_end_happens() {
        let mut d = device(6).release("1.5.0").powered_on();
        // Safe mode (type 60), asked for just before the command ends.
        let init = d.control(service(1, 60), &[]).unwrap();
        let id = u16::from_le_bytes([init[6], init[7]]);
        d.control(service(2, id), &[]).unwrap();
        let p = port(d);
        p.settle();
        assert_eq!(lock(&p.device).state.mode, modflash_device::Mode::SafeMode);
    }

    #[test]
    fn idle_devices_keep_their_clock() {
        let p = port(device(6).release("1.5.0").powered_on());
        let before = lock(&p.device).flash().stats().modelled_us;
        p.let_time_pass(Duration::from_secs(3));
        assert_eq!(lock(&p.device).flash().stats().modelled_us, before);
    }
}
