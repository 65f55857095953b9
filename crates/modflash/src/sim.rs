//! Persistence of virtual devices (`sim:NAME`): one image file per device in the modflash home,
//! written atomically (temp file + rename) and locked while a process uses it. In a home the
//! user cannot write, devices open read-only: what only reads them works.
//!
//! File format: `MODFLASH-SIM 1\n`, then three length-prefixed (u32 LE) blocks: the state as
//! JSON, the internal flash image, the external flash image (length 0xFFFFFFFF = none). The
//! state's event log is an array of `{"event": <typed event>, "text": <its line>}`; images
//! saved before events were typed hold an array of lines, which open as text events
//! ([`modflash_device::DeviceEvent::Text`]).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use modflash_device::{Device, DeviceError, DeviceState};
use modflash_module::Platform;

use crate::files::{self, Expected, FileError};
use crate::home::{self, FileOpError, Lock, LockError};

const MAGIC: &[u8] = b"MODFLASH-SIM 1\n";
const NO_IMAGE: u32 = u32::MAX;

/// Why a virtual device could not be opened, created or saved.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SimError {
    /// No device of that name.
    #[error("there is no virtual device named `{name}` (looked in {dir})")]
    #[diagnostic(code(modflash::sim::not_found))]
    NotFound {
        /// Device name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The device probably meant (a similar name), or how to create it.
        #[help]
        help: String,
    },
    /// A device of that name exists already.
    #[error("a virtual device named `{0}` already exists")]
    #[diagnostic(
        code(modflash::sim::exists),
        help("remove it first with `modflash sim rm {0}`, or pick another name")
    )]
    Exists(String),
    /// Another process holds the device.
    #[error("virtual device `{0}` is in use by another modflash process")]
    #[diagnostic(
        code(modflash::sim::busy),
        help("wait for the other command (e.g. `sim serve` or `sim attach`) to finish; `sim serve` can run beside `sim attach` when the attach starts first (it links to the serial port the attach serves)")
    )]
    Busy(String),
    /// A name pattern that is not one.
    #[error("`{pattern}` is not a usable name pattern: {reason}")]
    #[diagnostic(
        code(modflash::sim::bad_pattern),
        help("use * and ? as in a shell, e.g. 'line-*'")
    )]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name is not usable.
    #[error("`{0}` is not a valid device name (use letters, digits, '.', '-' and '_', up to 64 characters)")]
    #[diagnostic(code(modflash::sim::bad_name))]
    BadName(String),
    /// The image file is damaged.
    #[error("the image of virtual device `{name}` at {path} is damaged: {reason}")]
    #[diagnostic(
        code(modflash::sim::corrupt),
        help("remove it with `modflash sim rm {name}` and create it again")
    )]
    Corrupt {
        /// Device name.
        name: String,
        /// Image path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        reason: ImageDamage,
    },
    /// The device could not be built as asked (a release the platform does not have, a file
    /// that is not a module of it, a slot the platform lacks).
    #[error("cannot build virtual device `{name}`: {}{source}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    #[diagnostic(code(modflash::sim::provision))]
    Build {
        /// Device name.
        name: String,
        /// The module file being installed, when the failure is about one.
        file: Option<String>,
        /// What did not fit.
        source: DeviceError,
        /// The release probably meant, when a release was not known.
        #[help]
        help: Option<String>,
    },
    /// The image is not a file modflash reads (a FIFO, a directory, far too large).
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] FileError),
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    #[diagnostic(code(modflash::sim::io))]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl From<FileOpError> for SimError {
    fn from(e: FileOpError) -> Self {
        Self::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SimError + 'a {
    move |source| SimError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// True for names usable as `sim:NAME`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A stable device id for a virtual device: the first 12 bytes of SHA-256("modflash:" + name).
pub fn device_id_for(name: &str) -> [u8; 12] {
    let digest = modflash_module::checksum::sha256(format!("modflash:{name}").as_bytes());
    let mut id = [0u8; 12];
    id.copy_from_slice(&digest[..12]);
    id
}

/// What a new virtual device starts with.
#[derive(Clone, Debug)]
pub struct Provision {
    /// Its platform.
    pub platform: &'static Platform,
    /// A Device OS release to install (synthetic modules with the release's real headers).
    pub release: Option<String>,
    /// Module files to install, each with its name for messages.
    pub modules: Vec<(String, Vec<u8>)>,
    /// Bytes written raw into the application slot (unchecked, like a user's mistake); the
    /// release's own app is left out then.
    pub user_app: Option<Vec<u8>>,
    /// Bytes written raw into the factory-reset slot.
    pub factory_app: Option<Vec<u8>>,
}

/// For a release the platform does not have, the releases it does have that start with what
/// was typed (`1.5` → 1.5.0, 1.5.2).
fn release_meant(error: &DeviceError) -> Option<String> {
    let DeviceError::UnknownRelease { release, platform } = error else {
        return None;
    };
    let prefix = format!("{}.", release.trim_end_matches('.'));
    let close: Vec<&str> = modflash_module::release::platform_releases(platform)
        .map(|r| r.release)
        .filter(|r| r.starts_with(&prefix))
        .collect();
    Some(match close.as_slice() {
        [] => "give a full release number, one of those listed".to_string(),
        [one] => format!("did you mean --device-os {one}?"),
        several => format!("did you mean one of {}?", several.join(", ")),
    })
}

impl Provision {
    /// Builds the device named `name` and boots it once.
    pub fn build(&self, name: &str) -> Result<Device, SimError> {
        let fail = |file: Option<&str>| {
            let file = file.map(str::to_string);
            move |source: DeviceError| SimError::Build {
                name: name.to_string(),
                file,
                help: release_meant(&source),
                source,
            }
        };
        let mut device = Device::blank(self.platform, device_id_for(name)).map_err(fail(None))?;
        if let Some(release) = &self.release {
            device
                .install_release(release, self.user_app.is_none())
                .map_err(fail(None))?;
        }
        for (file, bytes) in &self.modules {
            device
                .install_module(bytes)
                .map_err(fail(Some(file.as_str())))?;
        }
        if let Some(app) = &self.user_app {
            device.install_user_app(app).map_err(fail(None))?;
        }
        if let Some(app) = &self.factory_app {
            device.install_factory_app(app).map_err(fail(None))?;
        }
        device.power_on();
        Ok(device)
    }
}

/// A release's Tinker application, synthesized with the release's real header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseApp {
    /// The module file.
    pub bytes: Vec<u8>,
    /// Its first dependency (the system part it needs).
    pub needs: modflash_module::Dependency,
}

/// The application of Device OS `release` for `platform`, to try modflash on virtual devices.
pub fn release_app(platform: &'static Platform, release: &str) -> Result<ReleaseApp, crate::Error> {
    let known = || {
        modflash_module::release::platform_releases(platform)
            .map(|r| r.release)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let table = modflash_module::release::platform_release(platform, release).ok_or_else(|| {
        crate::Error::BadRequest {
            what: format!(
                "Device OS {release} is not a release modflash knows for the {}",
                platform.display_name
            ),
            help: format!("known releases: {}", known()),
        }
    })?;
    let app = table
        .modules_for(platform)
        .find(|m| m.function == modflash_module::ModuleFunction::UserPart)
        .ok_or_else(|| crate::Error::BadRequest {
            what: format!(
                "Device OS {release} has no application for the {}",
                platform.display_name
            ),
            help: format!("known releases: {}", known()),
        })?;
    Ok(ReleaseApp {
        bytes: modflash_module::synth::synthesize(platform, &app),
        needs: app.dependencies[0],
    })
}

/// The directory holding virtual devices.
#[derive(Clone, Debug)]
pub struct SimStore {
    dir: PathBuf,
}

impl Default for SimStore {
    fn default() -> Self {
        Self::new(crate::home::sims_dir())
    }
}

impl SimStore {
    /// A store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn image_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sim"))
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// Names of every virtual device, sorted.
    pub fn list(&self) -> Result<Vec<String>, SimError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot read", &self.dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".sim")
                    .map(str::to_string)
            })
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The devices `spec` names: every device whose name matches, in name order, when it is a
    /// pattern (with `*`, `?` or `[...]`); otherwise `spec` itself (which may not exist).
    pub fn select(&self, spec: &str) -> Result<Vec<String>, SimError> {
        if !spec.contains(['*', '?', '[']) {
            return Ok(vec![spec.to_string()]);
        }
        let matcher = glob::Pattern::new(spec).map_err(|e| SimError::BadPattern {
            pattern: spec.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self
            .list()?
            .into_iter()
            .filter(|n| matcher.matches(n))
            .collect())
    }

    /// Where `sim attach` links the serial port of device `name` while the device is on an
    /// emulated bus; `sim serve` links to it there instead of opening the device.
    pub fn attached_serial_port(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.tty"))
    }

    /// True when a device of that name exists.
    pub fn exists(&self, name: &str) -> bool {
        self.image_path(name).exists()
    }

    /// Locks device `name`; for a change (`write`), fails when the home cannot be written.
    fn lock(&self, name: &str, write: bool) -> Result<Lock, SimError> {
        if !valid_name(name) {
            return Err(SimError::BadName(name.to_string()));
        }
        if write {
            home::create_dir(&self.dir)?;
        } else if !self.dir.is_dir() {
            return Err(self.not_found(name));
        }
        let lock = match Lock::try_take(&self.lock_path(name)) {
            Ok(lock) => lock,
            Err(LockError::Busy) => return Err(SimError::Busy(name.to_string())),
            Err(LockError::File(e)) => return Err(e.into()),
        };
        Ok(if write { lock.writable()? } else { lock })
    }

    /// Creates a new device file holding `device` (fails if the name is taken).
    pub fn create(&self, name: &str, device: Device) -> Result<SimHandle, SimError> {
        let lock = self.lock(name, true)?;
        if self.exists(name) {
            return Err(SimError::Exists(name.to_string()));
        }
        let mut handle = SimHandle {
            name: name.to_string(),
            path: self.image_path(name),
            _lock: lock,
            as_loaded: None,
            device,
        };
        handle.save()?;
        Ok(handle)
    }

    /// Locks and loads a device. In a home the user cannot write it opens read-only: see
    /// [`SimHandle::save`].
    pub fn open(&self, name: &str) -> Result<SimHandle, SimError> {
        let lock = self.lock(name, false)?;
        let device = self.load(name)?;
        // Encoded again, not as read: an image in an older format re-encodes differently.
        let as_loaded = lock.is_read_only().then(|| Loaded {
            counters: Counters::of(&device),
            image: encode(&device),
        });
        Ok(SimHandle {
            name: name.to_string(),
            path: self.image_path(name),
            _lock: lock,
            as_loaded,
            device,
        })
    }

    /// Loads a device to look at, without locking it (its image is always replaced whole, so
    /// a concurrent save cannot tear what is read).
    pub fn peek(&self, name: &str) -> Result<Device, SimError> {
        self.load(name)
    }

    fn load(&self, name: &str) -> Result<Device, SimError> {
        if !valid_name(name) {
            return Err(SimError::BadName(name.to_string()));
        }
        let path = self.image_path(name);
        let bytes = match files::read(&path, Expected::VirtualDevice) {
            Ok(b) => b,
            Err(FileError::Unreadable { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                return Err(self.not_found(name))
            }
            Err(FileError::Unreadable { source, .. }) => {
                return Err(io_err("cannot read", &path)(source))
            }
            Err(e) => return Err(e.into()),
        };
        decode(&bytes).map_err(|reason| SimError::Corrupt {
            name: name.to_string(),
            path: path.clone(),
            reason,
        })
    }

    /// The error for a device `name` that does not exist: the similar name probably meant, or
    /// how to create it.
    fn not_found(&self, name: &str) -> SimError {
        let names = self.list().unwrap_or_default();
        let similar = names
            .iter()
            .map(|n| (strsim::jaro_winkler(name, n), n))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| n.clone());
        let help = match similar {
            Some(n) => format!("did you mean sim:{n}? (`modflash sim list` lists them)"),
            None => format!(
                "create it with `modflash sim create {name} --platform photon --device-os 1.5.0`{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!("; the virtual devices here: {}", names.join(", "))
                }
            ),
        };
        SimError::NotFound {
            name: name.to_string(),
            dir: self.dir.clone(),
            help,
        }
    }

    /// Deletes a device (waiting for nobody: fails if it is in use).
    pub fn remove(&self, name: &str) -> Result<(), SimError> {
        let _lock = self.lock(name, true)?;
        let path = self.image_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = fs::remove_file(self.lock_path(name));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(name)),
            Err(e) => Err(io_err("cannot remove", &path)(e)),
        }
    }
}

/// An open, locked virtual device. Call [`SimHandle::save`] to persist changes.
#[derive(Debug)]
pub struct SimHandle {
    name: String,
    path: PathBuf,
    _lock: Lock,
    /// The image as read, for a device opened in a home the user cannot write.
    as_loaded: Option<Loaded>,
    /// The device.
    pub device: Device,
}

/// A virtual device's image as it was read (encoded), and its counters then.
#[derive(Debug)]
struct Loaded {
    image: Vec<u8>,
    counters: Counters,
}

/// What reading a device changes besides the device itself: the control transfers it
/// counted and its flash statistics (with its modelled clock).
#[derive(Clone, Copy, Debug)]
struct Counters {
    control_transfers: u64,
    flash: modflash_device::FlashStats,
}

impl Counters {
    fn of(device: &Device) -> Self {
        Self {
            control_transfers: device.state.control_transfers,
            flash: device.flash().stats(),
        }
    }
}

impl SimHandle {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes the device atomically: a temporary file in the same directory, flushed, then
    /// renamed over the old image. A crash leaves either the old or the new image, and
    /// temporary files of processes killed meanwhile are removed here.
    ///
    /// A device opened read-only (the home cannot be written) is not written: when only its
    /// counters moved (a read over DFU counts transfers and time) there is nothing to keep;
    /// any other change fails, saying what could not be created.
    pub fn save(&mut self) -> Result<(), SimError> {
        if let Some(loaded) = &self.as_loaded {
            let (mut state, internal, external) = self.device.snapshot();
            state.control_transfers = loaded.counters.control_transfers;
            state.flash_stats = loaded.counters.flash;
            if encode_parts(&state, &internal, external.as_deref()) == loaded.image {
                return Ok(());
            }
        }
        home::remove_stale_temporaries(&self.path);
        Ok(home::write_atomically(&self.path, &encode(&self.device))?)
    }
}

fn encode(device: &Device) -> Vec<u8> {
    let (state, internal, external) = device.snapshot();
    encode_parts(&state, &internal, external.as_deref())
}

fn encode_parts(state: &DeviceState, internal: &[u8], external: Option<&[u8]>) -> Vec<u8> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + json.len() + internal.len());
    out.extend_from_slice(MAGIC);
    for block in [Some(json.as_slice()), Some(internal), external] {
        match block {
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&NO_IMAGE.to_le_bytes()),
        }
    }
    out
}

/// What is wrong with a damaged image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageDamage {
    /// The file does not start with `MODFLASH-SIM 1`.
    #[error("it does not start with the modflash image signature")]
    Signature,
    /// A block (state, internal flash, external flash) is missing.
    #[error("the {0} block is missing")]
    Missing(&'static str),
    /// A block is shorter than its length says.
    #[error("the {0} block is truncated")]
    Truncated(&'static str),
    /// The state block is not the JSON of a device state.
    #[error("the state is not valid: {0}")]
    State(#[source] serde_json::Error),
    /// The state and flash images do not make a device of the state's platform.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

fn decode(bytes: &[u8]) -> Result<Device, ImageDamage> {
    let mut r = bytes.strip_prefix(MAGIC).ok_or(ImageDamage::Signature)?;
    let mut block = |what: &'static str| -> Result<Option<Vec<u8>>, ImageDamage> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)
            .map_err(|_| ImageDamage::Missing(what))?;
        let len = u32::from_le_bytes(len);
        if len == NO_IMAGE {
            return Ok(None);
        }
        let len = len as usize;
        if r.len() < len {
            return Err(ImageDamage::Truncated(what));
        }
        let (head, tail) = r.split_at(len);
        r = tail;
        Ok(Some(head.to_vec()))
    };
    let state = block("state")?.ok_or(ImageDamage::Missing("state"))?;
    let internal = block("internal flash")?.ok_or(ImageDamage::Missing("internal flash"))?;
    let external = block("external flash")?;
    let state: DeviceState = serde_json::from_slice(&state).map_err(ImageDamage::State)?;
    Ok(Device::restore(state, internal, external)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_device::cause::SafeModeCause;
    use modflash_device::{DeviceEvent, Mode};
    use modflash_testkit::device::device;
    use modflash_testkit::fixture;

    #[test]
    fn create_open_save_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SimStore::new(dir.path().to_path_buf());
        let h = store
            .create("bench", device(6).release("1.5.0").powered_on())
            .unwrap();
        assert!(
            matches!(store.open("bench"), Err(SimError::Busy(_))),
            "locked while open"
        );
        drop(h);
        let mut h = store.open("bench").unwrap();
        assert_eq!(h.device.state.mode, Mode::App);
        h.device
            .reset(modflash_device::ResetReason::Button, Some(3.0));
        h.save().unwrap();
        drop(h);
        assert_eq!(store.open("bench").unwrap().device.state.mode, Mode::Dfu);
        assert_eq!(store.list().unwrap(), ["bench"]);
        assert!(matches!(
            store.create("bench", device(6).release("1.5.0").powered_on()),
            Err(SimError::Exists(_))
        ));
        store.remove("bench").unwrap();
        assert!(matches!(
            store.open("bench"),
            Err(SimError::NotFound { .. })
        ));
    }

    #[test]
    fn patterns_select_devices_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = SimStore::new(dir.path().to_path_buf());
        for name in ["line-2", "line-1", "bench"] {
            drop(
                store
                    .create(name, device(6).release("1.5.0").powered_on())
                    .unwrap(),
            );
        }
        assert_eq!(store.select("line-*").unwrap(), ["line-1", "line-2"]);
        assert_eq!(store.select("bench").unwrap(), ["bench"]);
        assert_eq!(store.select("nothing").unwrap(), ["nothing"]);
        assert!(store.select("x-*").unwrap().is_empty());
        assert!(matches!(
            store.select("line-[").unwrap_err(),
            SimError::BadPattern { .. }
        ));
    }

    #[test]
    fn a_file_that_is_not_a_module_is_named_with_the_device_error_as_source() {
        let provision = Provision {
            platform: modflash_module::platform(6).unwrap(),
            release: None,
            modules: vec![("junk.bin".into(), vec![0xA5])],
            user_app: None,
            factory_app: None,
        };
        let err = provision.build("x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot build virtual device `x`: junk.bin: not a module: "),
            "{err}"
        );
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<DeviceError>());
        assert!(
            matches!(source, Some(DeviceError::NotAModule(_))),
            "{err:?}"
        );
    }

    #[test]
    fn an_image_saved_before_events_were_typed_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = SimStore::new(dir.path().to_path_buf());
        // What modflash wrote for `sim create old --platform photon --device-os 0.5.2
        // --user-app photon_doctor.bin` while the event log was a list of lines.
        let state = r#"{"platform_id":6,"device_id":"154a1824b490d11e90cbf401","mode":"safe_mode","running_mode":"safe_mode","led":{"color":"magenta","pattern":"breathing"},"reset_reason":"power_on","events":["power on","system: safe mode: user part 1 needs system part 2 ≥ 108, installed 17"],"factory_reset_requested":false,"boot_request":null,"watchdog_retries":0,"control_transfers":0,"flash_stats":{"sectors_erased":8,"bytes_programmed":477182,"operations":1879,"modelled_us":7268728}}"#;
        let mut d = device(6).release("0.5.2").powered_off();
        d.install_user_app(&fixture("photon_doctor.bin")).unwrap();
        let internal = d.snapshot().1;
        let mut image = b"MODFLASH-SIM 1\n".to_vec();
        for block in [state.as_bytes(), &internal] {
            image.extend_from_slice(&(block.len() as u32).to_le_bytes());
            image.extend_from_slice(block);
        }
        image.extend_from_slice(&u32::MAX.to_le_bytes());
        fs::write(dir.path().join("old.sim"), image).unwrap();

        let mut h = store.open("old").unwrap();
        assert_eq!(h.device.state.mode, Mode::SafeMode);
        let lines: Vec<String> = h
            .device
            .state
            .events
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "power on",
                "system: safe mode: user part 1 needs system part 2 \u{2265} 108, installed 17"
            ]
        );
        // Booted again and saved, it logs typed events and still opens.
        h.device.reset(modflash_device::ResetReason::Button, None);
        h.save().unwrap();
        drop(h);
        let h = store.open("old").unwrap();
        assert!(
            matches!(
                h.device.state.events.last(),
                Some(DeviceEvent::SafeMode(SafeModeCause::Unmet(_)))
            ),
            "{:#?}",
            h.device.state.events
        );
    }

    #[test]
    fn damaged_images_are_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SimStore::new(dir.path().to_path_buf());
        drop(
            store
                .create("x", device(6).release("1.5.0").powered_on())
                .unwrap(),
        );
        let path = dir.path().join("x.sim");
        let good = fs::read(&path).unwrap();
        for cut in [0, 5, MAGIC.len() + 2, MAGIC.len() + 100, good.len() - 1] {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(
                matches!(store.open("x"), Err(SimError::Corrupt { .. })),
                "cut at {cut}"
            );
        }
    }
}
