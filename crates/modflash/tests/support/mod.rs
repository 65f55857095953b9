//! The sweeps' harness: a `modflash flash` command on a virtual device, run the way the CLI
//! runs it (plan on the session's twin with the library's planner, then `plan::flash`), cut
//! short at one point (a power cut, a USB fault), then run again on what is left; and the
//! checks every interrupted run must pass.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::PathBuf;

use modflash::catalog::Catalog;
use modflash::plan::{self, FlashOptions, Flashed, Plan, Via};
use modflash::progress::{Cancel, Quiet};
use modflash::request::Wanted;
use modflash::transport::sim::{PipeFault, PipeFaults, SimLink};
use modflash::{Error, Session};
use modflash_device::dct::{is_intact, DctLocation};
use modflash_device::hal::flags;
use modflash_device::{Device, Mode, Space};
use modflash_module::platform::Store;
use modflash_module::{ModuleFunction, ModuleRef};
use modflash_testkit::device::{device, release_app};

/// The sweeps judge the device, not the backups: flashing as the CLI does with `--no-backup`.
const NO_BACKUP: FlashOptions = FlashOptions { backup: false };

/// One `modflash flash …` command: the files and release asked for, the transport, and the
/// user's catalogue (the virtual device adds the release table's synthetic images).
pub struct Command {
    /// What the command line asks for.
    pub wanted: Wanted,
    /// The modules the user's catalogue holds.
    pub catalog: Catalog,
    /// Where the named files live while the command is used.
    _files: tempfile::TempDir,
}

impl Command {
    /// `modflash flash FILES… [--device-os RELEASE] --via VIA`, the files written to a
    /// temporary folder under their names.
    pub fn new(files: &[(String, Vec<u8>)], device_os: Option<&str>, via: Via) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let files = files
            .iter()
            .map(|(name, bytes)| {
                let path: PathBuf = dir.path().join(name);
                std::fs::write(&path, bytes).expect("the file is written");
                path
            })
            .collect();
        Self {
            wanted: Wanted {
                files,
                device_os: device_os.map(str::to_string),
                via: Some(via),
                ..Wanted::default()
            },
            catalog: Catalog::default(),
            _files: dir,
        }
    }

    /// Plans the command on `session`, as `modflash flash` does before it asks.
    pub fn plan_on(&self, session: &mut Session<'_>) -> Result<Plan, Error> {
        let mut catalog = self.catalog.clone();
        catalog.extend(session.synthetic_catalog());
        self.wanted.plan_with_catalog(session, &catalog, &mut Quiet)
    }

    /// The whole command on `device`: plan, then flash unless the plan has nothing to do
    /// (`None`, where `modflash flash` stops after printing the plan).
    pub fn run(&self, device: &mut Device) -> Result<Option<Flashed>, Error> {
        let mut session = Session::virtual_device(device, "sim:sweep");
        let plan = self.plan_on(&mut session)?;
        if plan.steps.is_empty() && !plan.leave_dfu {
            return Ok(None);
        }
        plan::flash(&mut session, &plan, NO_BACKUP, &mut Quiet, &Cancel::new()).map(Some)
    }
}

/// Runs an already proven plan on `link` (the part of `modflash flash` after the question).
pub fn execute(link: SimLink<'_>, plan: &Plan) -> Result<Flashed, Error> {
    let mut session = Session::from_link(Box::new(link));
    plan::flash(&mut session, plan, NO_BACKUP, &mut Quiet, &Cancel::new())
}

/// What `modflash flash` reports as done: no error and the device as predicted ("verified").
pub fn reported_success(result: &Result<Flashed, Error>) -> bool {
    matches!(result, Ok(f) if f.mismatches.is_empty())
}

/// One module as the device's HAL sees it: region, slot, version, stored SHA-256 and the
/// checks it passes.
pub type Seen = (Store, ModuleRef, u16, Option<[u8; 32]>, u8);

/// Every module the device holds, as its HAL sees them: what a finished command must end with.
pub fn modules(d: &Device) -> Vec<Seen> {
    d.system_info()
        .into_iter()
        .filter_map(|f| {
            f.info
                .map(|i| (f.bounds.store, i.slot(), i.version, f.sha256, f.passed))
        })
        .collect()
}

/// The bootloader passes its CRC check.
pub fn bootloader_intact(d: &Device) -> bool {
    d.system_info().iter().any(|f| {
        f.info
            .is_some_and(|i| i.slot() == ModuleRef::new(ModuleFunction::Bootloader, 0))
            && f.passed & flags::INTEGRITY != 0
    })
}

/// The DCT has a complete copy.
pub fn dct_intact(d: &Device) -> bool {
    is_intact(d.flash(), &DctLocation::of(d.platform()))
}

/// The update paths whose sweeps are counted in `docs/TESTING.md`.
pub struct Path {
    /// Its name in the report.
    pub name: &'static str,
    /// The device before the command.
    pub start: Device,
    /// The command.
    pub command: Command,
    /// Flash operations of one in-place bootloader copy when the path has one that Device OS
    /// does not protect either (the system firmware rewrites the bootloader's own sectors):
    /// cuts there may leave no bootloader. `None`: no cut may.
    pub unprotected_bootloader_copy: Option<u64>,
}

/// The update paths swept: every transport and kind of module `modflash flash` writes, on the
/// platforms where Device OS handles them differently. `name` is the path's id in
/// `docs/TESTING.md`.
pub fn update_paths() -> Vec<Path> {
    let file = |name: &str| (name.to_string(), modflash_testkit::fixture(name));
    let photon_app = || ("app-1.5.2.bin".to_string(), release_app(6, "1.5.2"));
    let argon_radio = || {
        [
            file("argon-softdevice@1.5.0.bin"),
            file("argon-system-part1@1.5.0.bin"),
        ]
    };
    let p2_part = || {
        (
            "p2-system-part1.bin".to_string(),
            rebuilt(
                32,
                "5.0.0",
                ModuleRef::new(ModuleFunction::SystemPart, 1),
                5003,
            ),
        )
    };
    let path = |name, start: Device, files: &[(String, Vec<u8>)], device_os, via| Path {
        name,
        start,
        command: Command::new(files, device_os, via),
        unprotected_bootloader_copy: None,
    };
    vec![
        // A Photon's app of 1.5.2 brings system parts 1 and 2 of 1.5.2.
        path(
            "photon-dfu-parts-app",
            device(6).release("1.5.0").running(),
            &[photon_app()],
            None,
            Via::Dfu,
        ),
        // The same over serial: each module staged in the OTA region, copied at the reset.
        path(
            "photon-serial-parts-app",
            device(6).release("1.5.0").running(),
            &[photon_app()],
            None,
            Via::Serial,
        ),
        // `--device-os 1.5.2` brings bootloader 502: staged with the DCT's OTA flag, which the
        // system applies by copying it over sector 0 (the one window Device OS leaves open).
        Path {
            unprotected_bootloader_copy: Some(bootloader_copy_operations(6, "1.5.2")),
            ..path(
                "photon-dfu-bootloader-ota-flag",
                device(6).release("1.5.0").running(),
                &[],
                Some("1.5.2"),
                Via::Dfu,
            )
        },
        // An Argon of 2.3.1 (bootloader 1006) to 3.1.0: bootloader 1100 through the MBR.
        path(
            "argon-dfu-bootloader-mbr",
            device(12).release("2.3.1").running(),
            &[],
            Some("3.1.0"),
            Via::Dfu,
        ),
        path(
            "argon-serial-bootloader-mbr",
            device(12).release("2.3.1").running(),
            &[],
            Some("3.1.0"),
            Via::Serial,
        ),
        // The 1.5.0 SoftDevice (written at 0x1000 without its header) and system part.
        path(
            "argon-dfu-radio-stack",
            device(12).release("1.4.4").running(),
            &argon_radio(),
            None,
            Via::Dfu,
        ),
        path(
            "argon-serial-radio-stack",
            device(12).release("1.4.4").running(),
            &argon_radio(),
            None,
            Via::Serial,
        ),
        // An Electron's three system parts of 1.5.0 (index 3, 1, 2).
        path(
            "electron-dfu-three-parts",
            device(10).release("1.4.4").running(),
            &[
                file("electron-system-part1@1.5.0.bin"),
                file("electron-system-part2@1.5.0.bin"),
                file("electron-system-part3@1.5.0.bin"),
            ],
            None,
            Via::Dfu,
        ),
        // A P2's system part (another build of 5.0.0's, 950 KB).
        path(
            "p2-dfu-system-part",
            device(32).release("5.0.0").running(),
            &[p2_part()],
            None,
            Via::Dfu,
        ),
        path(
            "p2-serial-system-part",
            device(32).release("5.0.0").running(),
            &[p2_part()],
            None,
            Via::Serial,
        ),
    ]
}

/// The one path named `name`.
pub fn update_path(name: &str) -> Path {
    update_paths()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no update path {name}"))
}

/// Flash operations of one in-place copy of the release's bootloader: the sectors it erases
/// and its 256-byte page programs (an upper bound: at most one sector per 16 KB).
fn bootloader_copy_operations(platform_id: u16, release: &str) -> u64 {
    let len = release_module(
        platform_id,
        release,
        ModuleRef::new(ModuleFunction::Bootloader, 0),
    )
    .len() as u64;
    len.div_ceil(256) + len.div_ceil(16 * 1024)
}

/// What one path's sweep saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Flash operations of the uninterrupted command.
    pub operations: u64,
    /// Cut points tried.
    pub cuts: u64,
    /// Interrupted runs `modflash flash` reported as done (must be 0).
    pub false_successes: u64,
    /// Devices the same command, run again, finished.
    pub completed_by_rerun: u64,
    /// Cut points that left no working bootloader (only inside an unprotected copy).
    pub bricks: Vec<u64>,
    /// The mode each device came back in when powered again.
    pub modes: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.cuts += other.cuts;
        self.false_successes += other.false_successes;
        self.completed_by_rerun += other.completed_by_rerun;
        self.bricks.extend(other.bricks);
        for (mode, n) in other.modes {
            *self.modes.entry(mode).or_default() += n;
        }
    }

    /// One line for the report.
    pub fn line(&self, name: &str) -> String {
        let modes: Vec<String> = self.modes.iter().map(|(m, n)| format!("{m} {n}")).collect();
        format!(
            "{name}: {} flash operations, {} cuts, {} completed by a re-run, {} false successes, {} bricks; powered again: {}",
            self.operations,
            self.cuts,
            self.completed_by_rerun,
            self.false_successes,
            self.bricks.len(),
            modes.join(", ")
        )
    }
}

/// The command once, uninterrupted: its plan, the device it leaves and the flash operations
/// it took.
pub fn reference(path: &Path) -> (Plan, Device, u64) {
    let mut d = path.start.clone();
    let plan = {
        let mut session = Session::virtual_device(&mut d, "sim:sweep");
        path.command
            .plan_on(&mut session)
            .unwrap_or_else(|e| panic!("{}: no plan: {e:?}", path.name))
    };
    assert!(!plan.steps.is_empty(), "{}: nothing to do", path.name);
    let before = d.flash_stats().operations;
    let done = execute(SimLink::borrowed(&mut d, "sim:sweep"), &plan);
    assert!(
        reported_success(&done),
        "{}: the uninterrupted command fails: {done:?}",
        path.name
    );
    assert_eq!(
        d.state.mode,
        Mode::App,
        "{}: {:#?}",
        path.name,
        d.state.events
    );
    let operations = d.flash_stats().operations - before;
    (plan, d, operations)
}

/// Cuts power at the [`cut_points`] of the command's execution (flash operations counted from
/// its start), powers the device again each time, checks what must survive and runs the
/// command again.
pub fn sweep_power_cuts(path: &Path, stride: u64, tail: u64) -> Tally {
    let (plan, done, operations) = reference(path);
    let end = modules(&done);
    let cuts = cut_points(operations, stride, tail);
    let mut tally = parallel(&cuts, |cut| power_cut(path, &plan, &end, cut));
    tally.operations = operations;
    check_bricks(path, &tally);
    tally
}

/// The cut points of a sweep: every operation with `stride` 1, else every `stride`-th plus
/// every one of the last `tail` (where the resets after the writes copy modules).
pub fn cut_points(operations: u64, stride: u64, tail: u64) -> Vec<u64> {
    let mut cuts: Vec<u64> = (1..=operations).step_by(stride.max(1) as usize).collect();
    cuts.extend(operations.saturating_sub(tail).max(1)..=operations);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn power_cut(path: &Path, plan: &Plan, end: &[Seen], cut: u64) -> Tally {
    let name = path.name;
    let mut tally = Tally {
        cuts: 1,
        ..Tally::default()
    };
    let mut d = path.start.clone();
    d.flash_mut().cut_power_after(cut);
    let first = execute(SimLink::borrowed(&mut d, "sim:sweep"), plan);
    assert!(
        !d.flash().powered(),
        "{name}, cut at operation {cut}: the cut did not happen"
    );
    if reported_success(&first) {
        tally.false_successes += 1;
        panic!("{name}, cut at operation {cut}: reported as done: {first:?}");
    }
    // The user plugs it in again.
    d.power_on();
    assert!(dct_intact(&d), "{name}, cut at operation {cut}: DCT lost");
    if !bootloader_intact(&d) {
        tally.bricks.push(cut);
        return tally;
    }
    let mode = d.state.mode;
    assert!(
        matches!(mode, Mode::App | Mode::SafeMode | Mode::NoApp | Mode::Dfu),
        "{name}, cut at operation {cut}: powered again it is in {mode:?}: {:#?}",
        d.state.events
    );
    *tally.modes.entry(mode.name()).or_default() += 1;
    rerun(path, &mut d, end, &format!("cut at operation {cut}"));
    tally.completed_by_rerun += 1;
    tally
}

/// Runs the command again on `d`: it must finish, verified, with the app running and the
/// same modules as an uninterrupted run.
pub fn rerun(path: &Path, d: &mut Device, end: &[Seen], what: &str) {
    let name = path.name;
    let again = path.command.run(d);
    match &again {
        Ok(None) => {}
        Ok(Some(f)) if f.mismatches.is_empty() => {}
        other => panic!(
            "{name}, {what}: running the command again does not finish: {other:?}\n{:#?}",
            d.state.events
        ),
    }
    assert_eq!(
        d.state.mode,
        Mode::App,
        "{name}, {what}: after the re-run: {:#?}",
        d.state.events
    );
    assert_eq!(
        modules(d),
        end,
        "{name}, {what}: the re-run ends elsewhere than an uninterrupted run"
    );
}

/// Bricks happen only where the path has an unprotected bootloader copy, and only inside one
/// copy's operations.
fn check_bricks(path: &Path, tally: &Tally) {
    if tally.bricks.is_empty() {
        return;
    }
    let Some(window) = path.unprotected_bootloader_copy else {
        panic!(
            "{}: cuts at {:?} leave no working bootloader",
            path.name, tally.bricks
        );
    };
    let first = tally.bricks[0];
    let last = *tally.bricks.last().expect("not empty");
    assert!(
        last - first < window,
        "{}: bricks at {:?} span more than the {window} operations of the bootloader copy",
        path.name,
        tally.bricks
    );
}

/// Runs `each` over `items` on every core, adding up the tallies (in item order for bricks).
pub fn parallel(items: &[u64], each: impl Fn(u64) -> Tally + Sync) -> Tally {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let mut total = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let each = &each;
                scope.spawn(move || {
                    let mut t = Tally::default();
                    for &i in part {
                        t.add(each(i));
                    }
                    t
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(t) => total.add(t),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    total
}

/// A module of a release rebuilt as another build of the same slot: `version` given, the
/// rest of the release's description kept (a different image than the one installed).
pub fn rebuilt(platform_id: u16, release: &str, slot: ModuleRef, version: u16) -> Vec<u8> {
    let p = modflash_module::platform(platform_id).expect("a known platform");
    let r = modflash_module::release::platform_release(p, release).expect("a known release");
    let mut m = r
        .modules_for(p)
        .find(|m| m.function == slot.function && m.index == slot.index)
        .expect("the release has the module");
    m.version = version;
    modflash_module::synth::synthesize(p, &m)
}

/// The release's module of `slot`, as its synthetic image.
pub fn release_module(platform_id: u16, release: &str, slot: ModuleRef) -> Vec<u8> {
    let p = modflash_module::platform(platform_id).expect("a known platform");
    let r = modflash_module::release::platform_release(p, release).expect("a known release");
    let m = r
        .modules_for(p)
        .find(|m| m.function == slot.function && m.index == slot.index)
        .expect("the release has the module");
    modflash_module::synth::synthesize(p, &m)
}

/// Internal flash bytes, for checks that a region did not change.
pub fn internal(d: &Device, address: u32, len: usize) -> Vec<u8> {
    d.flash()
        .read(Space::Internal, address, len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Control transfers the plan's execution sends (through the same link kind the faults use).
pub fn transfers_of(path: &Path, plan: &Plan) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let mut d = path.start.clone();
    let link = SimLink::borrowed(&mut d, "sim:sweep").with_pipe_faults(PipeFaults::new(move |n| {
        counter.store(n + 1, Ordering::Relaxed);
        None
    }));
    let done = execute(link, plan);
    assert!(reported_success(&done), "{}: {done:?}", path.name);
    seen.load(Ordering::Relaxed)
}

/// Injects `fault` into transfer `n` of the plan's execution; the command must not report a
/// success it did not have, and running it again (the device plugged in again, still powered)
/// must finish.
pub fn usb_fault(path: &Path, plan: &Plan, end: &[Seen], n: u64, fault: PipeFault) -> Tally {
    let name = path.name;
    let what = format!("{fault:?} at transfer {n}");
    let mut tally = Tally {
        cuts: 1,
        ..Tally::default()
    };
    let mut d = path.start.clone();
    let link = SimLink::borrowed(&mut d, "sim:sweep").with_pipe_faults(PipeFaults::at(n, fault));
    let first = execute(link, plan);
    if reported_success(&first) {
        // Only a success the device confirms: the fault came where it changed nothing.
        if d.state.mode != Mode::App || modules(&d) != end {
            tally.false_successes += 1;
            panic!(
                "{name}, {what}: reported as done, but the device is in {:?}: {first:?}",
                d.state.mode
            );
        }
        *tally.modes.entry("done despite the fault").or_default() += 1;
    } else {
        *tally.modes.entry(d.state.mode.name()).or_default() += 1;
    }
    rerun(path, &mut d, end, &what);
    tally.completed_by_rerun += 1;
    tally
}
