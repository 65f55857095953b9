//! Opening the device a `--device` reference names, whatever its kind, behind one interface:
//! inventory, a twin for planning, a target for executing, and saving afterwards.

use modflash::catalog::Catalog;
use modflash::exec::{Target, VirtualTarget};
use modflash::inventory::Inventory;
use modflash::sim::{SimHandle, SimStore};
use modflash::DeviceRef;
use modflash_device::Device;
use modflash_module::Platform;

use crate::ui::CliError;

/// An open device.
pub enum Connection {
    /// A virtual device, locked for the duration of the command.
    Sim(SimHandle),
}

/// Turns a `--device` string into a reference with a helpful error.
pub fn parse_ref(text: &str) -> Result<DeviceRef, CliError> {
    text.parse::<DeviceRef>().map_err(|e| {
        CliError::usage(e.to_string()).with_help("for example --device sim:demo or --device usb")
    })
}

impl Connection {
    /// Opens the device.
    pub fn open(devref: &DeviceRef) -> Result<Self, CliError> {
        match devref {
            DeviceRef::Sim(name) => {
                let h = SimStore::default().open(name).map_err(|e| {
                    let help = e.help();
                    let err = CliError::usage(e.to_string());
                    match help {
                        Some(h) => err.with_help(h),
                        None => err,
                    }
                })?;
                Ok(Self::Sim(h))
            }
            other => Err(CliError::usage(format!(
                "{other}: this command cannot reach USB or serial devices in this build"
            ))
            .with_help("use a virtual device (--device sim:NAME)")),
        }
    }

    /// "sim:demo (Photon)".
    pub fn label(&self) -> String {
        match self {
            Self::Sim(h) => format!("sim:{} ({})", h.name(), h.device.platform().display_name),
        }
    }

    /// The device's platform.
    pub fn platform(&self) -> &'static Platform {
        match self {
            Self::Sim(h) => h.device.platform(),
        }
    }

    /// What is installed.
    pub fn inventory(&mut self) -> Result<Inventory, CliError> {
        match self {
            Self::Sim(h) => Ok(Inventory::from_device(&h.device)),
        }
    }

    /// A twin to plan on (for a virtual device, an exact copy).
    pub fn twin(&mut self) -> Result<Device, CliError> {
        match self {
            Self::Sim(h) => Ok(h.device.clone()),
        }
    }

    /// The virtual device itself, when this is one.
    pub fn virtual_device(&self) -> Option<&Device> {
        match self {
            Self::Sim(h) => Some(&h.device),
        }
    }

    /// Modules this kind of device may receive besides the user's catalogue: the release
    /// table's synthetic images, for virtual devices only.
    pub fn extra_catalog(&self) -> Catalog {
        let mut c = Catalog::default();
        match self {
            Self::Sim(h) => c.add_release_table(h.device.platform()),
        }
        c
    }

    /// An executor target.
    pub fn target(&mut self) -> Box<dyn Target + '_> {
        match self {
            Self::Sim(h) => Box::new(VirtualTarget::new(&mut h.device)),
        }
    }

    /// Saves a virtual device's state.
    pub fn finish(&mut self) -> Result<(), CliError> {
        match self {
            Self::Sim(h) => h
                .save()
                .map_err(|e| CliError::usage(format!("cannot save the virtual device: {e}"))),
        }
    }
}
