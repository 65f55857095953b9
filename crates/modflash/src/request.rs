//! What the user asks `plan` and `flash` for — files, a Device OS release, catalogue folders,
//! a transport — turned into a planner request on an open session: the transport is checked
//! against what the connection can do before anything is planned, printed or asked.

use std::path::PathBuf;

use modflash_module::release::{platform_release, platform_releases};
use modflash_module::{ModuleFunction, ModuleRef, Platform};

use crate::catalog::{Candidate, Catalog, Origin};
use crate::error::Error;
use crate::plan::{plan, Force, Plan, Request, Via};
use crate::progress::Observer;
use crate::session::Session;

/// What to install.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    /// Module files, in the order given.
    pub files: Vec<PathBuf>,
    /// Folders of Device OS module files to meet dependencies from.
    pub catalogs: Vec<PathBuf>,
    /// Also install this Device OS release's system modules.
    pub device_os: Option<String>,
    /// The transport asked for; `None`: the best the connection can do.
    pub via: Option<Via>,
    /// Write applications to the factory-reset slot.
    pub factory: bool,
    /// Checks overridden.
    pub force: Force,
}

impl Wanted {
    /// The transport: the one asked for when the connection can do it (otherwise a refusal
    /// that says what to use), else DFU when it can, else serial.
    pub fn via(&self, session: &Session<'_>) -> Result<Via, Error> {
        let caps = session.capabilities();
        let device = session.reference();
        match self.via {
            Some(Via::Dfu) if !caps.dfu => Err(Error::Unsupported {
                device,
                what: "be written over USB DFU: it is a serial port".into(),
                help: "use --via serial, or name the USB device (--device usb) for DFU".into(),
            }),
            Some(Via::Serial) if !caps.serial => Err(Error::Unsupported {
                device,
                what: "be written through its serial console from here".into(),
                help: "use --via dfu, or name its serial port (--device serial:PORT)".into(),
            }),
            Some(via) => Ok(via),
            None if caps.dfu => Ok(Via::Dfu),
            None if caps.serial => Ok(Via::Serial),
            None => Err(Error::Unsupported {
                device,
                what: "be written (it offers neither DFU nor a serial console)".into(),
                help: "connect the device over USB".into(),
            }),
        }
    }

    /// The modules available to meet dependencies: the modflash home's catalogue, the given
    /// folders, and for virtual devices the release table's synthetic images.
    pub fn catalog(&self, session: &Session<'_>) -> Result<Catalog, Error> {
        let mut catalog = Catalog::load_home();
        for dir in &self.catalogs {
            let (c, _skipped) = Catalog::load_dir(dir)?;
            catalog.extend(c);
        }
        catalog.extend(session.synthetic_catalog());
        Ok(catalog)
    }

    /// The files asked for, then the release's system modules from `catalog`.
    pub fn targets(
        &self,
        catalog: &Catalog,
        platform: &'static Platform,
    ) -> Result<Vec<Candidate>, Error> {
        let mut targets = Vec::new();
        for path in &self.files {
            targets.push(Candidate::from_file(path, Origin::File(path.clone()))?);
        }
        if let Some(release) = &self.device_os {
            targets.extend(release_targets(catalog, platform, release)?);
        }
        Ok(targets)
    }

    /// Checks what needs no device: something is asked for. Call it before opening one.
    pub fn check(&self) -> Result<(), Error> {
        if self.files.is_empty() && self.device_os.is_none() {
            return Err(Error::BadRequest {
                what: "nothing to flash".into(),
                help: "name module files, or --device-os VERSION".into(),
            });
        }
        Ok(())
    }

    /// Reads the device, and finds and proves the plan.
    pub fn plan(
        &self,
        session: &mut Session<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Plan, Error> {
        self.check()?;
        self.via(session)?;
        let catalog = self.catalog(session)?;
        self.plan_from(session, &catalog, observer)
    }

    /// [`Wanted::plan`] meeting dependencies from `catalog` instead of the one
    /// [`Wanted::catalog`] assembles (the modflash home, `--catalog` folders, synthetic
    /// images): what a test that must not read the user's home plans with.
    pub fn plan_from(
        &self,
        session: &mut Session<'_>,
        catalog: &Catalog,
        observer: &mut dyn Observer,
    ) -> Result<Plan, Error> {
        self.check()?;
        let via = self.via(session)?;
        let targets = self.targets(catalog, session.platform())?;
        let twin = session.twin(observer)?;
        let request = Request {
            twin: &twin,
            targets,
            catalog,
            via,
            alternative: other_via(session, via),
            force: self.force,
            factory: self.factory,
        };
        Ok(plan(&request)?)
    }
}

/// The transport the session offers besides `via`, if any.
pub fn other_via(session: &Session<'_>, via: Via) -> Option<Via> {
    let caps = session.capabilities();
    match via {
        Via::Dfu => caps.serial.then_some(Via::Serial),
        Via::Serial => caps.dfu.then_some(Via::Dfu),
    }
}

/// The bootloader, radio stack and system parts of `release` for `platform`, from `catalog`
/// (a real file wins over a synthetic image of the same module).
pub fn release_targets(
    catalog: &Catalog,
    platform: &'static Platform,
    release: &str,
) -> Result<Vec<Candidate>, Error> {
    let table = platform_release(platform, release).ok_or_else(|| Error::BadRequest {
        what: format!(
            "Device OS {release} is not a release modflash knows for the {}",
            platform.display_name
        ),
        help: format!(
            "known releases: {}",
            platform_releases(platform)
                .map(|r| r.release)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let mut out = Vec::new();
    for m in table.modules_for(platform) {
        if m.function == ModuleFunction::UserPart {
            continue;
        }
        let found = catalog
            .for_platform(platform.id)
            .filter(|c| {
                c.info.function == m.function
                    && c.info.index == m.index
                    && c.info.version == m.version
            })
            .min_by_key(|c| c.origin.is_synthetic())
            .cloned();
        match found {
            Some(c) => out.push(c),
            None => {
                return Err(Error::NotInCatalog {
                    what: format!(
                        "{} version {} (Device OS {release} {}) for the {}",
                        ModuleRef::new(m.function, m.index),
                        m.version,
                        m.file_name,
                        platform.display_name
                    ),
                })
            }
        }
    }
    Ok(out)
}
