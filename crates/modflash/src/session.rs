//! An open device: [`Session::open`] finds what a device reference names (a virtual device,
//! a USB device, a serial port) and the session reads what is installed, builds a twin to
//! plan on, tells what the connection can do, and is what the executor runs plans on.

use modflash_device::Device;
use modflash_module::Platform;

use crate::catalog::Catalog;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::progress::Observer;
use crate::sim::SimStore;
use crate::transport::serial::{find_port, PortLink, SerialLink, LISTENING_BAUD};
use crate::transport::sim::SimLink;
use crate::transport::usb::UsbLink;
use crate::transport::{Capabilities, DeviceLink, ModeChange, Observation, Pace};
use crate::DeviceRef;

/// One device, open for the length of a command. Virtual devices are locked while open and
/// saved by [`Session::save`].
pub struct Session<'d> {
    link: Box<dyn DeviceLink + 'd>,
}

impl Session<'static> {
    /// Opens the device `devref` names; virtual devices come from the default store.
    pub fn open(devref: &DeviceRef) -> Result<Self, Error> {
        Self::open_with_store(devref, &SimStore::default())
    }

    /// Opens the device `devref` names; virtual devices come from `store`.
    pub fn open_with_store(devref: &DeviceRef, store: &SimStore) -> Result<Self, Error> {
        let link: Box<dyn DeviceLink> = match devref {
            DeviceRef::Sim(name) => Box::new(SimLink::stored(store.open(name)?)),
            DeviceRef::Usb | DeviceRef::UsbId(_) => Box::new(UsbLink::open(devref)?),
            DeviceRef::Serial(port) => {
                // A port the discovery knows gives the device id, which finds the device
                // again if it comes back on another port after a restart.
                let found = find_port(None).ok().filter(|p| p.port == *port);
                let usb = found.as_ref().map(|p| p.usb_id);
                let link = PortLink::open(port, LISTENING_BAUD)?
                    .with_device_id(found.and_then(|p| p.device_id))
                    .with_usb_id(usb);
                Box::new(SerialLink::open(link)?)
            }
        };
        Ok(Self { link })
    }
}

impl Session<'static> {
    /// Opens the device `devref` names for its serial console: a USB reference means the USB
    /// device's serial port.
    pub fn open_console(devref: &DeviceRef) -> Result<Self, Error> {
        let p = match devref {
            DeviceRef::Usb => find_port(None)?,
            DeviceRef::UsbId(id) => find_port(Some(id))?,
            DeviceRef::Sim(_) | DeviceRef::Serial(_) => return Self::open(devref),
        };
        let link = PortLink::open(&p.port, LISTENING_BAUD)?
            .with_device_id(p.device_id)
            .with_usb_id(Some(p.usb_id));
        Ok(Self {
            link: Box::new(SerialLink::open(link)?),
        })
    }
}

impl<'d> Session<'d> {
    /// A session on a device the caller keeps (a twin, a device in a test), named
    /// `reference` in messages.
    pub fn virtual_device(device: &'d mut Device, reference: impl Into<String>) -> Self {
        Self {
            link: Box::new(SimLink::borrowed(device, reference)),
        }
    }

    /// A session on any connection (tests provide their own).
    pub fn from_link(link: Box<dyn DeviceLink + 'd>) -> Self {
        Self { link }
    }

    /// The reference that names the device.
    pub fn reference(&self) -> String {
        self.link.reference()
    }

    /// "sim:demo (Photon)".
    pub fn label(&self) -> String {
        format!(
            "{} ({})",
            self.link.reference(),
            self.link.platform().display_name
        )
    }

    /// The device's platform.
    pub fn platform(&self) -> &'static Platform {
        self.link.platform()
    }

    /// The device id (24 lower-case hex digits), when the connection knows it.
    pub fn device_id(&self) -> Option<String> {
        self.link.device_id()
    }

    /// The bytes of the module installed in `slot`, when they can be had without changing
    /// the device.
    pub fn installed_image(&mut self, slot: modflash_module::ModuleRef) -> Option<Vec<u8>> {
        self.link.installed_image(slot)
    }

    /// How fast a virtual device works from now on ([`Pace::Modelled`]: in its modelled
    /// time); a real device takes its own.
    pub fn set_pace(&mut self, pace: Pace) {
        self.link.set_pace(pace);
    }

    /// What the connection can do.
    pub fn capabilities(&self) -> Capabilities {
        self.link.capabilities()
    }

    /// What is installed, read from the device now.
    pub fn inventory(&mut self, observer: &mut dyn Observer) -> Result<Inventory, Error> {
        self.link.inventory(observer)
    }

    /// A model of the device to plan on.
    pub fn twin(&mut self, observer: &mut dyn Observer) -> Result<Device, Error> {
        self.link.twin(observer)
    }

    /// The device's mode, LED and log, when it can be observed directly.
    pub fn observe(&self) -> Option<Observation> {
        self.link.observe()
    }

    /// Modules this device may receive besides the user's catalogue: the release table's
    /// synthetic images, for virtual devices only (synthetic images are not firmware).
    pub fn synthetic_catalog(&self) -> Catalog {
        let mut c = Catalog::default();
        if self.capabilities().synthetic_modules {
            c.add_release_table(self.platform());
        }
        c
    }

    /// Control transfers sent over USB so far.
    pub fn control_transfers(&self) -> u64 {
        self.link.control_transfers()
    }

    /// Puts the device in another mode (or restarts it) and keeps what changed (a virtual
    /// device is saved). Returns the mode it is seen in afterwards, when the connection can
    /// see it.
    pub fn change_mode(
        &mut self,
        change: ModeChange,
        observer: &mut dyn Observer,
    ) -> Result<Option<&'static str>, Error> {
        let seen = self.link.change_mode(change, observer);
        self.save()?;
        seen
    }

    /// The connection, for the executor.
    pub(crate) fn link(&mut self) -> &mut dyn DeviceLink {
        self.link.as_mut()
    }

    /// Saves a virtual device's state (whatever happened: its state is what it is now); a
    /// real device keeps its own.
    pub fn save(&mut self) -> Result<(), Error> {
        self.link.save()
    }
}

impl Drop for Session<'_> {
    /// Lets the device go back to what it was running (a serial device leaves listening
    /// mode), also when the command failed.
    fn drop(&mut self) {
        self.link.release();
    }
}
