//! Opening the device a `--device` reference names, whatever its kind, behind one interface:
//! inventory, a twin for planning, a target for executing, and saving afterwards.

use modflash::catalog::Catalog;
use modflash::exec::{Target, VirtualTarget};
use modflash::inventory::Inventory;
use modflash::serial::SerialTarget;
use modflash::sim::{SimHandle, SimStore};
use modflash::usb::UsbTarget;
use modflash::DeviceRef;
use modflash_device::Device;
use modflash_module::Platform;

use crate::ui::CliError;

/// An open device.
pub enum Connection {
    /// A virtual device, locked for the duration of the command.
    Sim(SimHandle),
    /// A real device over USB (libusb): DFU read-back, DFU writes, serial for the rest.
    Usb(UsbTarget),
    /// A real device on a serial port: listening-mode inventory, YMODEM updates.
    Serial {
        /// The port's path.
        port: String,
        /// The device's platform, from its inventory.
        platform: &'static Platform,
        /// The inventory read when the port was opened (the planner's starting point).
        inventory: Inventory,
        /// The executor target.
        target: Box<SerialTarget>,
    },
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
                    err.with_help_opt(help)
                })?;
                Ok(Self::Sim(h))
            }
            DeviceRef::Usb | DeviceRef::UsbId(_) => UsbTarget::open(devref)
                .map(Self::Usb)
                .map_err(crate::cmd::dfu::usb_error),
            DeviceRef::Serial(_) => {
                let link = crate::source::open_serial(devref)?;
                let port = link.path().to_string();
                let mut target = Box::new(SerialTarget::new(link));
                let inventory =
                    modflash::exec::Target::inventory(target.as_mut()).map_err(|e| {
                        CliError::usage(format!("cannot read the modules on {port}: {e}"))
                    })?;
                let platform =
                    modflash_module::platform(inventory.platform_id).ok_or_else(|| {
                        CliError::usage(format!(
                        "the device on {port} reports platform {}, which modflash does not know",
                        inventory.platform_id
                    ))
                    })?;
                Ok(Self::Serial {
                    port,
                    platform,
                    inventory,
                    target,
                })
            }
        }
    }

    /// "sim:demo (Photon)".
    pub fn label(&self) -> String {
        match self {
            Self::Sim(h) => format!("sim:{} ({})", h.name(), h.device.platform().display_name),
            Self::Usb(t) => format!("{} ({})", t.device().reference(), t.platform().display_name),
            Self::Serial { port, platform, .. } => {
                format!("serial:{port} ({})", platform.display_name)
            }
        }
    }

    /// The device's platform.
    pub fn platform(&self) -> &'static Platform {
        match self {
            Self::Sim(h) => h.device.platform(),
            Self::Usb(t) => t.platform(),
            Self::Serial { platform, .. } => platform,
        }
    }

    /// What is installed.
    pub fn inventory(&mut self) -> Result<Inventory, CliError> {
        match self {
            Self::Sim(h) => Ok(Inventory::from_device(&h.device)),
            Self::Usb(t) => {
                let inventory = modflash::exec::Target::inventory(t).map_err(|e| {
                    CliError::usage(format!("cannot read the modules of {}: {e}", t.device()))
                });
                for n in t.take_notes() {
                    eprintln!("note: {n}");
                }
                inventory
            }
            Self::Serial { port, target, .. } => modflash::exec::Target::inventory(target.as_mut())
                .map_err(|e| CliError::usage(format!("cannot read the modules on {port}: {e}"))),
        }
    }

    /// A twin to plan on (for a virtual device, an exact copy).
    pub fn twin(&mut self) -> Result<Device, CliError> {
        match self {
            Self::Sim(h) => Ok(h.device.clone()),
            Self::Serial {
                platform,
                inventory,
                ..
            } => modflash::twin::twin_from_inventory(platform, inventory).map_err(|e| {
                CliError::usage(format!("cannot model the device from its modules: {e}"))
            }),
            Self::Usb(_) => {
                let platform = self.platform();
                let inventory = self.inventory()?;
                modflash::twin::twin_from_inventory(platform, &inventory).map_err(|e| {
                    CliError::usage(format!("cannot model the device from its modules: {e}"))
                })
            }
        }
    }

    /// The virtual device itself, when this is one.
    pub fn virtual_device(&self) -> Option<&Device> {
        match self {
            Self::Sim(h) => Some(&h.device),
            Self::Usb(_) | Self::Serial { .. } => None,
        }
    }

    /// Modules this kind of device may receive besides the user's catalogue: the release
    /// table's synthetic images, for virtual devices only.
    pub fn extra_catalog(&self) -> Catalog {
        let mut c = Catalog::default();
        match self {
            Self::Sim(h) => c.add_release_table(h.device.platform()),
            // Real devices only get the user's files: synthetic images are not firmware.
            Self::Usb(_) | Self::Serial { .. } => {}
        }
        c
    }

    /// An executor target.
    pub fn target(&mut self) -> Box<dyn Target + '_> {
        match self {
            Self::Sim(h) => Box::new(VirtualTarget::new(&mut h.device)),
            Self::Usb(t) => Box::new(t),
            Self::Serial { target, .. } => Box::new(target.as_mut()),
        }
    }

    /// Saves a virtual device's state.
    pub fn finish(&mut self) -> Result<(), CliError> {
        match self {
            Self::Sim(h) => h
                .save()
                .map_err(|e| CliError::usage(format!("cannot save the virtual device: {e}"))),
            Self::Usb(t) => {
                for n in t.take_notes() {
                    eprintln!("note: {n}");
                }
                Ok(())
            }
            Self::Serial { .. } => Ok(()),
        }
    }
}
