//! What the user asks `plan` and `flash` for — files, a Device OS release, catalogue folders,
//! a transport — turned into a planner request on an open session: the transport is checked
//! against what the connection can do before anything is planned, printed or asked.

use std::path::PathBuf;

use modflash_device::Device;
use modflash_module::release::{platform_release, platform_releases};
use modflash_module::{rules, ModuleFunction, ModuleRef, Platform};

use crate::bundle::{is_bundle_path, Bundle};
use crate::catalog::{module_words, several_images_words, Candidate, Catalog, Origin};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::plan::{plan, Force, Plan, Request, Via};
use crate::progress::{Event, Observer};
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
            Some(Via::Usb) if !caps.usb => Err(Error::Unsupported {
                device,
                what: "take modules through USB control requests: it is a serial port".into(),
                help: "use --via serial, or name the USB device (--device usb)".into(),
            }),
            Some(via) => Ok(via),
            // Assets go through the system's update path.
            None if caps.serial && self.files.iter().any(|f| is_bundle_path(f)) => Ok(Via::Serial),
            None if caps.dfu => Ok(Via::Dfu),
            None if caps.serial => Ok(Via::Serial),
            None => Err(Error::Unsupported {
                device,
                what: "be written (it offers neither DFU nor a serial console)".into(),
                help: "connect the device over USB".into(),
            }),
        }
    }

    /// The transports a plan may use for single steps besides [`Wanted::via`]: none when one
    /// was asked for; with the connection's default (DFU), USB control requests where the
    /// connection offers them — for what DFU cannot write, and where they cost the device
    /// less time.
    pub fn also(&self, session: &Session<'_>, via: Via) -> Vec<Via> {
        let caps = session.capabilities();
        if self.via.is_none() && via == Via::Dfu && caps.usb {
            vec![Via::Usb]
        } else {
            Vec::new()
        }
    }

    /// The modules available to meet dependencies: the modflash home's catalogue, the given
    /// folders, and for virtual devices the release table's synthetic images.
    pub fn catalog(
        &self,
        session: &Session<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Catalog, Error> {
        let mut catalog = self.user_catalog(observer)?;
        catalog.extend(session.synthetic_catalog());
        Ok(catalog)
    }

    /// The user's modules: the modflash home's catalogue, then the given folders.
    pub fn user_catalog(&self, observer: &mut dyn Observer) -> Result<Catalog, Error> {
        let mut catalog = Catalog::load_home(observer);
        for dir in &self.catalogs {
            catalog.extend(Catalog::load_dir(dir)?);
        }
        Ok(catalog)
    }

    /// The files asked for, then the release's system modules from `catalog`.
    pub fn targets(
        &self,
        catalog: &Catalog,
        platform: &'static Platform,
    ) -> Result<Vec<Candidate>, Error> {
        self.targets_with(self.read_files()?, catalog, platform)
    }

    /// The files asked for, read: module files, and for a bundle its application and its
    /// assets, each wrapped in the asset module that installs it.
    pub fn read_files(&self) -> Result<Vec<Candidate>, Error> {
        let mut files = Vec::new();
        for path in &self.files {
            if !is_bundle_path(path) {
                files.push(Candidate::from_file(path, Origin::File(path.clone()))?);
                continue;
            }
            let bundle = Bundle::read(path)?;
            let origin = |entry: String| Origin::Bundle {
                bundle: path.clone(),
                entry,
            };
            files.push(Candidate::from_bytes(
                origin(bundle.application_name.clone()),
                bundle.application.clone(),
            )?);
            for a in &bundle.assets {
                let module = a.module().map_err(|e| Error::BadRequest {
                    what: format!(
                        "{}: asset `{}` cannot be put in an asset module: {e}",
                        path.display(),
                        a.name
                    ),
                    help: "check the asset's name and size".into(),
                })?;
                files.push(Candidate::from_bytes(
                    origin(format!("assets/{}", a.name)),
                    module,
                )?);
            }
        }
        Ok(files)
    }

    /// `files` (the files asked for, read), then the release's system modules from
    /// `catalog`.
    pub fn targets_with(
        &self,
        mut files: Vec<Candidate>,
        catalog: &Catalog,
        platform: &'static Platform,
    ) -> Result<Vec<Candidate>, Error> {
        if let Some(release) = &self.device_os {
            files.extend(release_targets(catalog, platform, release)?);
        }
        Ok(files)
    }

    /// The platforms the named files are built for (files that are not modules count for
    /// nothing here; planning says what is wrong with them).
    pub fn platforms(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for f in &self.files {
            if let Ok(c) = Candidate::from_file(f, Origin::File(f.clone())) {
                if !out.contains(&c.info.platform_id) {
                    out.push(c.info.platform_id);
                }
            }
        }
        out
    }

    /// What one device of a fleet takes when the files are builds for several platforms:
    /// the files for its own platform (and files that are not modules, for planning to
    /// explain). With files for one platform only, everything stays, and planning refuses a
    /// device of another platform.
    pub fn for_platform(&self, platform: &'static Platform) -> Result<Wanted, Error> {
        let platforms = self.platforms();
        if platforms.len() <= 1 {
            return Ok(self.clone());
        }
        let files: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|f| {
                Candidate::from_file(f, Origin::File((*f).clone()))
                    .map_or(true, |c| c.info.platform_id == platform.id)
            })
            .cloned()
            .collect();
        if files.is_empty() {
            let names: Vec<String> = platforms
                .iter()
                .map(|id| {
                    modflash_module::platform(*id)
                        .map_or_else(|| format!("platform {id}"), |p| p.display_name.to_string())
                })
                .collect();
            return Err(Error::BadRequest {
                what: format!(
                    "none of the files is built for the {}: they are for the {}",
                    platform.display_name,
                    names.join(", the ")
                ),
                help: format!(
                    "add the {} build, or leave this device out of --device",
                    platform.display_name
                ),
            });
        }
        Ok(Wanted {
            files,
            ..self.clone()
        })
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
        self.plan_from(session, observer).map(|p| p.plan)
    }

    /// Reads the device, and finds and proves the plan; also says what was installed before.
    pub fn plan_from(
        &self,
        session: &mut Session<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Planned, Error> {
        let (plan, twin) = self.plan_on_twin(session, observer)?;
        Ok(Planned {
            plan,
            before: Inventory::from_device(&twin),
        })
    }

    /// Reads the device, and finds and proves the plan; also gives the twin it was proven on.
    pub fn plan_on_twin(
        &self,
        session: &mut Session<'_>,
        observer: &mut dyn Observer,
    ) -> Result<(Plan, Device), Error> {
        self.check()?;
        let via = self.via(session)?;
        let catalog = self.catalog(session, observer)?;
        self.plan_on_twin_with(session, via, &catalog, observer)
    }

    /// [`Wanted::plan`] meeting dependencies from `catalog` instead of the one
    /// [`Wanted::catalog`] assembles (the modflash home, `--catalog` folders, synthetic
    /// images): what a test that must not read the user's home plans with.
    pub fn plan_with_catalog(
        &self,
        session: &mut Session<'_>,
        catalog: &Catalog,
        observer: &mut dyn Observer,
    ) -> Result<Plan, Error> {
        self.check()?;
        let via = self.via(session)?;
        let (plan, _) = self.plan_on_twin_with(session, via, catalog, observer)?;
        Ok(plan)
    }

    fn plan_on_twin_with(
        &self,
        session: &mut Session<'_>,
        via: Via,
        catalog: &Catalog,
        observer: &mut dyn Observer,
    ) -> Result<(Plan, Device), Error> {
        let targets = self.targets(catalog, session.platform())?;
        let twin = session.twin(observer)?;
        let request = Request {
            twin: &twin,
            targets,
            catalog,
            via,
            also: self.also(session, via),
            alternative: other_via(session, via),
            force: self.force,
            factory: self.factory,
        };
        let plan = plan(&request)?;
        warn_other_images(&plan, catalog, observer);
        warn_bootloader_copy(&plan, &twin, observer);
        Ok((plan, twin))
    }
}

/// Warns about each module the plan writes of which the catalogue holds other images of the
/// same version, naming them all and the one the plan uses.
pub fn warn_other_images(plan: &Plan, catalog: &Catalog, observer: &mut dyn Observer) {
    for step in &plan.steps {
        let used = &step.module;
        let others = catalog.other_images(used);
        if others.is_empty() || used.origin.is_synthetic() {
            continue;
        }
        let names: Vec<String> = std::iter::once(used)
            .chain(others)
            .map(|c| c.origin.to_string())
            .collect();
        let module = module_words(
            used.info.platform_id,
            &used.slot().to_string(),
            used.info.version,
        );
        observer.event(Event::warning(several_images_words(
            &module,
            &names,
            &format!("this plan uses {}", used.origin),
        )));
    }
}

/// Warns, before anything is written, when the plan updates a bootloader that Device OS
/// copies over itself ([`rules::bootloader_update_survives_power_loss`]): the one moment of
/// an update when losing power bricks the device.
fn warn_bootloader_copy(plan: &Plan, twin: &Device, observer: &mut dyn Observer) {
    let boot = ModuleRef::new(ModuleFunction::Bootloader, 0);
    if !plan.steps.iter().any(|s| s.module.slot() == boot) {
        return;
    }
    let installed = rules::installed_version(&twin.hal(), boot);
    if rules::bootloader_update_survives_power_loss(twin.platform(), installed) {
        return;
    }
    observer.event(Event::warning(format!(
        "keep the {} powered and connected until the update ends: Device OS copies the new \
         bootloader over the old one in place, and a power cut during that copy (a fraction of \
         a second after the reset) leaves it without a bootloader, which only a debugger (SWD) \
         brings back",
        twin.platform().display_name
    )));
}

/// A plan and the device it was made for.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// What the device had installed when it was planned (its twin's view).
    pub before: Inventory,
}

/// The transport the session offers besides `via`, if any.
pub fn other_via(session: &Session<'_>, via: Via) -> Option<Via> {
    let caps = session.capabilities();
    match via {
        Via::Dfu => caps.serial.then_some(Via::Serial),
        Via::Serial | Via::Usb => caps.dfu.then_some(Via::Dfu),
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
                    page: crate::catalog::releases::release_page(release),
                })
            }
        }
    }
    Ok(out)
}
