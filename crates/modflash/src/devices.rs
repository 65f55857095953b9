//! Every device modflash can reach now: Particle devices on USB (normal and DFU mode), their
//! serial ports, and the virtual devices in the store.

use modflash_module::Platform;

use crate::sim::SimStore;
use crate::transport::{serial, usb};

/// How a device is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A USB device (libusb).
    Usb,
    /// A serial port.
    Serial,
    /// A virtual device.
    Virtual,
}

impl Kind {
    /// Stable name (`kind` in `devices --json`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Usb => "usb",
            Self::Serial => "serial",
            Self::Virtual => "virtual",
        }
    }
}

/// One reachable device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// How it is reached.
    pub kind: Kind,
    /// The `--device` value that names it.
    pub reference: String,
    /// Its platform, when known.
    pub platform: Option<&'static Platform>,
    /// Its mode ("dfu", "normal", or a virtual device's mode).
    pub mode: Option<String>,
    /// Its device id, when known.
    pub device_id: Option<String>,
    /// The Device OS release its system firmware belongs to, when known without talking to
    /// the device (virtual devices).
    pub device_os: Option<String>,
    /// USB vendor and product id.
    pub usb_id: Option<(u16, u16)>,
    /// The USB device node.
    pub node: Option<String>,
    /// The USB port path.
    pub port_path: Option<String>,
    /// The serial port.
    pub port: Option<String>,
    /// Why it cannot be used, with what to do.
    pub error: Option<String>,
}

/// What was found, and what could not be looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reachable {
    /// The devices, USB first, then serial ports, then virtual devices.
    pub devices: Vec<Found>,
    /// Sources that could not be listed ("USB: libusb failed to start").
    pub problems: Vec<String>,
}

fn blank(kind: Kind, reference: String) -> Found {
    Found {
        kind,
        reference,
        platform: None,
        mode: None,
        device_id: None,
        device_os: None,
        usb_id: None,
        node: None,
        port_path: None,
        port: None,
        error: None,
    }
}

/// Lists every reachable device; virtual devices come from `store`.
pub fn reachable(store: &SimStore) -> Reachable {
    let mut out = real();
    virtual_devices(store, &mut out);
    out
}

/// Particle devices on USB and their serial ports.
fn real() -> Reachable {
    let mut out = Reachable::default();
    match usb::discover() {
        Ok(list) => out.devices.extend(list.into_iter().map(|d| {
            Found {
                platform: Some(d.platform),
                mode: Some(d.mode.name().to_string()),
                device_id: d.device_id.clone(),
                usb_id: Some((d.vendor, d.product)),
                node: Some(d.node()),
                port_path: Some(d.port_path.clone()),
                error: d
                    .access_error
                    .as_ref()
                    .map(|e| format!("{e} (help: {})", usb::UDEV_HELP)),
                ..blank(Kind::Usb, d.reference())
            }
        })),
        Err(e) => out.problems.push(format!("USB: {e}")),
    }
    match serial::discover() {
        Ok(ports) => out.devices.extend(ports.into_iter().map(|p| Found {
            platform: Some(p.platform),
            mode: Some("normal".into()),
            device_id: p.device_id.clone(),
            port: Some(p.port.clone()),
            ..blank(Kind::Serial, format!("serial:{}", p.port))
        })),
        Err(e) => out.problems.push(format!("serial ports: {e}")),
    }
    out
}

/// The virtual devices in `store`.
fn virtual_devices(store: &SimStore, out: &mut Reachable) {
    match store.list() {
        Ok(names) => {
            for name in names {
                let reference = format!("sim:{name}");
                out.devices.push(match store.open(&name) {
                    Ok(h) => Found {
                        platform: Some(h.device.platform()),
                        mode: Some(h.device.state.mode.name().to_string()),
                        device_id: Some(h.device.state.device_id.clone()),
                        device_os: Some(
                            h.device
                                .device_os()
                                .map_or_else(|| h.device.system_words(), str::to_string),
                        ),
                        ..blank(Kind::Virtual, reference)
                    },
                    Err(e) => Found {
                        error: Some(e.to_string()),
                        ..blank(Kind::Virtual, reference)
                    },
                });
            }
        }
        Err(e) => out.problems.push(format!("virtual devices: {e}")),
    }
}

/// What to pass to `--device` here: the devices there are now, as `--device` values, or how to
/// get one when there is none.
pub fn which_devices(store: &SimStore) -> String {
    let found = reachable(store);
    let refs: Vec<String> = found
        .devices
        .iter()
        .filter(|d| d.error.is_none())
        .map(|d| format!("--device {}", d.reference))
        .collect();
    match refs.len() {
        0 => "no device is reachable now: connect one over USB, or create a virtual one with \
              `modflash sim create demo --platform photon --device-os 1.5.0`"
            .into(),
        n if n <= 8 => format!("the devices here: {}", refs.join(", ")),
        n => format!(
            "the devices here: {}, and {} more (`modflash devices`)",
            refs[..8].join(", "),
            n - 8
        ),
    }
}

/// The real devices attached now (USB in any mode, serial ports), one entry per device: a
/// serial port whose device also shows on USB is the same device and is left out. Virtual
/// devices are never among them.
pub fn attached() -> Reachable {
    let mut all = real();
    let usb_ids: Vec<String> = all
        .devices
        .iter()
        .filter(|d| d.kind == Kind::Usb)
        .filter_map(|d| d.device_id.clone())
        .collect();
    all.devices.retain(|d| {
        d.kind != Kind::Serial || d.device_id.as_ref().is_none_or(|id| !usb_ids.contains(id))
    });
    all
}

/// The devices one `--device` value names: `all` (every attached device of one of
/// `platforms`, or of any platform when empty), a `sim:` pattern with `*`/`?`/`[...]` (every
/// matching virtual device), or one reference.
pub fn expand(
    spec: &str,
    platforms: &[u16],
    store: &SimStore,
) -> Result<Vec<crate::DeviceRef>, crate::Error> {
    if spec == "all" {
        return Ok(attached()
            .devices
            .into_iter()
            .filter(|d| {
                platforms.is_empty() || d.platform.is_some_and(|p| platforms.contains(&p.id))
            })
            .filter_map(|d| d.reference.parse().ok())
            .collect());
    }
    if let Some(pattern) = spec
        .strip_prefix("sim:")
        .filter(|p| p.contains(['*', '?', '[']))
    {
        return Ok(store
            .select(pattern)?
            .into_iter()
            .map(crate::DeviceRef::Sim)
            .collect());
    }
    spec.parse::<crate::DeviceRef>()
        .map(|r| vec![r])
        .map_err(|e| crate::Error::BadRequest {
            what: e.to_string(),
            help: which_devices(store),
        })
}
