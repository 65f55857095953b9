//! The checks of `modflash dfu download`, a safe dfu-util: what a file is (a module, a DfuSe
//! `.dfu` container, raw bytes), where it goes, and whether writing it there is allowed.
//!
//! * A module goes to its own start address (prefix dropped for DROP_MODULE_INFO modules) and
//!   is checked first: platform (a mismatch is refused, always), CRC/SHA, size, range.
//! * Writes touching the bootloader or the DCT (the DCT alt, or the DCT sectors of internal
//!   flash), and a module written outside the regions it belongs in (its own slot, the factory
//!   slot for apps, the OTA staging region) are refused unless forced.
//! * A `.dfu` file is written element by element, each checked the same way; its suffix
//!   VID:PID must name this device's DFU id (or "any").

use modflash_device::Space;
use modflash_dfu::dfufile::{split_suffix, DfuseFile};
use modflash_dfu::layout::MemoryLayout;
use modflash_module::platform::{Location, ModuleBounds, Store};
use modflash_module::rules::{self, AltMemory, DfuAlt, Protected, ProtectedArea};
use modflash_module::{Module, ModuleFlags, ModuleInfo, Platform};

/// What the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A Particle module.
    Module,
    /// A DfuSe container.
    Dfuse,
    /// Anything else (written as is).
    Raw,
}

impl FileKind {
    /// `"module"`, `"dfuse"`, `"raw"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Dfuse => "dfuse",
            Self::Raw => "raw",
        }
    }
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOp {
    /// Alternate setting.
    pub alt: u8,
    /// Address in that alt.
    pub address: u32,
    /// Bytes.
    pub data: Vec<u8>,
    /// What is written, for messages ("application (user part 1) version 6").
    pub what: String,
}

/// The checked writes of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadPlan {
    /// The file's kind.
    pub kind: FileKind,
    /// The writes, in order.
    pub writes: Vec<WriteOp>,
    /// Checks that `--force` overrode.
    pub forced: Vec<String>,
}

impl DownloadPlan {
    /// Where a leave request jumps: the first write's address.
    pub fn leave_address(&self) -> u32 {
        self.writes.first().map_or(0, |w| w.address)
    }
}

/// Why a download is refused (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum Refusal {
    /// The file is for another platform: never written.
    #[error("refused, nothing was written: {0}")]
    #[diagnostic(
        code(modflash::download::platform),
        help("use the file built for this device's platform (`modflash inspect FILE` shows which platform a module is for)")
    )]
    Platform(String),
    /// Checks failed that `--force` can override.
    #[error("refused, nothing was written: {}", .0.join("; "))]
    #[diagnostic(
        code(modflash::download::needs_force),
        help("if you really mean it, add --force; to install modules safely use `modflash flash FILE --device REF`, which stages bootloaders and checks dependencies")
    )]
    NeedsForce(Vec<String>),
    /// The request itself is wrong (missing address, conflicting options, a broken file).
    #[error("refused, nothing was written: {0}")]
    #[diagnostic(
        code(modflash::download::usage),
        help("see `modflash dfu download --help`")
    )]
    Usage(String),
    /// An upload the device cannot answer (no such alternate setting, memory it does not
    /// have).
    #[error("refused, nothing was read: {0}")]
    #[diagnostic(
        code(modflash::upload::usage),
        help("`dfu-util -l` shows the device's alternate settings and memory; see `modflash dfu upload --help`")
    )]
    Upload(String),
}

impl Refusal {
    /// True when the request is wrong (exit 2) rather than refused by a check (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_) | Self::Upload(_))
    }
}

fn region_name(b: &ModuleBounds) -> String {
    let store = match b.store {
        Store::Main => "",
        Store::Factory => " factory",
        Store::Backup => " backup",
        Store::Scratchpad => " scratchpad",
    };
    format!(
        "{}{store} region {:#010x}..{:#010x}",
        b.slot(),
        b.start,
        b.end
    )
}

/// A protected range in words: "the bootloader (0x08000000..0x08004000)".
fn protected_words(p: &Protected) -> String {
    let (start, end) = (p.start, p.end);
    match p.area {
        ProtectedArea::Bootloader => format!("the bootloader ({start:#010x}..{end:#010x})"),
        ProtectedArea::Dct => {
            format!("the DCT ({start:#010x}..{end:#010x}: keys, claim code, OTA flags)")
        }
    }
}

/// Regions a module may be written to: its own slot in any memory map, the factory slot
/// for applications, and the OTA staging region.
fn allowed_regions(platform: &Platform, info: &ModuleInfo) -> Vec<ModuleBounds> {
    let mut out: Vec<ModuleBounds> = Vec::new();
    for layout in platform.layouts() {
        for b in layout.bounds.iter().chain(std::iter::once(&layout.ota)) {
            let own = b.function == info.function && b.index == info.index;
            let staging = b.store == Store::Scratchpad || *b == layout.ota;
            if (own || staging) && !out.contains(b) {
                out.push(*b);
            }
        }
    }
    out
}

/// A running-copy region of another module that `[start, stop)` overlaps in some memory map
/// of the platform.
fn overlapped_slot(
    platform: &Platform,
    info: &ModuleInfo,
    space: Space,
    start: i64,
    stop: i64,
) -> Option<(&'static str, ModuleBounds)> {
    platform.layouts().iter().find_map(|l| {
        l.bounds
            .iter()
            .find(|b| {
                // Another function's module (applications of both sizes share space by
                // design: the legacy 128 KB slot lies inside the 256 KB one).
                b.store == Store::Main
                    && b.function != info.function
                    && location_space(b.location) == Some(space)
                    && start < i64::from(b.end)
                    && stop > i64::from(b.lowest_start())
            })
            .map(|b| (l.name, *b))
    })
}

fn location_space(l: Location) -> Option<Space> {
    match l {
        Location::Internal => Some(Space::Internal),
        Location::External => Some(Space::External),
        Location::Ncp => None,
    }
}

/// Checks one write against the platform's protected areas and, for a module, its regions.
/// Returns the checks that failed (empty = allowed).
fn check_write(
    platform: &Platform,
    alt_name: &str,
    op: &WriteOp,
    module: Option<&ModuleInfo>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let end = u64::from(op.address) + op.data.len() as u64;
    let alt = DfuAlt::parse(alt_name);
    if alt.is_some_and(|a| a.memory == AltMemory::Dct) {
        failed.push(format!(
            "the write goes to the DCT (alt {}, offset {:#x}): keys, claim code and OTA flags live there",
            op.alt, op.address
        ));
        return failed;
    }
    let window = alt
        .zip(platform.layout_for(None))
        .and_then(|(a, l)| a.window(l));
    let Some(window) = window else {
        return failed; // an alt modflash does not know: the layout check still applies
    };
    let space = Space::of(window.location);
    let start = i64::from(op.address) - window.offset;
    let stop = end as i64 - window.offset;
    for p in rules::dfu_protected(platform) {
        let touches = start < i64::from(p.end) && stop > i64::from(p.start);
        if location_space(p.location) == Some(space) && touches {
            failed.push(format!(
                "{:#010x}..{:#010x} touches {}",
                op.address,
                end,
                protected_words(&p)
            ));
        }
    }
    if let Some(info) = module {
        let fits = allowed_regions(platform, info).iter().any(|r| {
            location_space(r.location) == Some(space)
                && start >= i64::from(r.lowest_start())
                && stop <= i64::from(r.end)
        });
        if !fits {
            let own: Vec<String> = allowed_regions(platform, info)
                .iter()
                .filter(|r| r.function == info.function && r.index == info.index)
                .map(region_name)
                .collect();
            failed.push(format!(
                "{} does not belong at {:#010x}..{end:#010x} (it belongs in {})",
                info.slot(),
                op.address,
                if own.is_empty() {
                    "no region of this platform".to_string()
                } else {
                    own.join(" or ")
                }
            ));
        } else if let Some((layout, other)) = overlapped_slot(platform, info, space, start, stop) {
            // The module belongs here in some memory map, but under another one this range
            // holds a different module: a device running that system firmware loses it.
            failed.push(format!(
                "{:#010x}..{end:#010x} is the {} region under the {} memory map: on a device with that system firmware this overwrites its {}; `modflash flash` plans the system parts first",
                op.address,
                other.slot(),
                layout,
                other.slot()
            ));
        }
    }
    failed
}

fn module_words(info: &ModuleInfo) -> String {
    format!("{} version {}", info.slot(), info.version)
}

/// Plans and checks the download of `file` to a device of `platform` with DFU id
/// `vendor:product`. `alt_name(n)` gives the memory-layout string of alt n (read from the
/// device only for the alts the file uses).
pub fn plan_download(
    platform: &'static Platform,
    dfu_id: (u16, u16),
    alt_name: &mut dyn FnMut(u8) -> Option<String>,
    file: &[u8],
    address: Option<u32>,
    alt: Option<u8>,
    force: bool,
) -> Result<DownloadPlan, Refusal> {
    if file.is_empty() {
        return Err(Refusal::Usage("the file is empty".into()));
    }
    let mut failed = Vec::new();
    let (kind, writes, modules): (FileKind, Vec<WriteOp>, Vec<Option<ModuleInfo>>) = if let Some(
        dfuse,
    ) =
        parse_dfuse(file)?
    {
        if address.is_some() || alt.is_some() {
            return Err(Refusal::Usage(
                "a .dfu file carries its own addresses and alternate settings: drop \
                     --address and --alt"
                    .into(),
            ));
        }
        let any = 0xFFFF;
        if (dfuse.vendor_id != any && dfuse.vendor_id != dfu_id.0)
            || (dfuse.product_id != any && dfuse.product_id != dfu_id.1)
        {
            return Err(Refusal::Platform(format!(
                    "the .dfu file is for USB device {:04x}:{:04x}, this device is {:04x}:{:04x} ({} in DFU mode)",
                    dfuse.vendor_id, dfuse.product_id, dfu_id.0, dfu_id.1, platform.display_name
                )));
        }
        let mut writes = Vec::new();
        let mut modules = Vec::new();
        for t in &dfuse.targets {
            for e in &t.elements {
                let info = element_module(platform, &e.data)?;
                if let Ok(m) = Module::parse(&e.data) {
                    for p in m.problems() {
                        failed.push(format!(
                            "the module in the element at {:#010x} is damaged: {p}",
                            e.address
                        ));
                    }
                }
                writes.push(WriteOp {
                    alt: t.alt,
                    address: e.address,
                    data: e.data.clone(),
                    what: info
                        .as_ref()
                        .map_or_else(|| format!("{} bytes", e.data.len()), module_words),
                });
                modules.push(info);
            }
        }
        if writes.is_empty() {
            return Err(Refusal::Usage("the .dfu file has no elements".into()));
        }
        (FileKind::Dfuse, writes, modules)
    } else if let Ok(m) = Module::parse(file) {
        if m.platform.id != platform.id {
            return Err(Refusal::Platform(format!(
                    "the file is a {} module for the {} (platform {}), not for this device's platform, the {} (platform {})",
                    m.info.function.name(),
                    m.platform.display_name,
                    m.platform.id,
                    platform.display_name,
                    platform.id
                )));
        }
        for p in m.problems() {
            failed.push(format!("the module is damaged: {p}"));
        }
        if m.info.flags.contains(ModuleFlags::COMBINED) {
            // Written as one blob at the first module's address, the second module would
            // never reach its own region.
            return Err(Refusal::Usage(
                "the file is a combined image of several modules: write them one at a time".into(),
            ));
        }
        let info = m.info;
        let data = if info.flags.contains(ModuleFlags::DROP_MODULE_INFO) {
            file.get(ModuleInfo::SIZE..).unwrap_or_default().to_vec()
        } else {
            file.to_vec()
        };
        let address = address.unwrap_or(info.start_address);
        let w = WriteOp {
            alt: alt.unwrap_or(0),
            address,
            data,
            what: module_words(&info),
        };
        (FileKind::Module, vec![w], vec![Some(info)])
    } else {
        let Some(address) = address else {
            return Err(Refusal::Usage(
                "the file is not a module or a .dfu file, so modflash does not know where it \
                     goes: give --address"
                    .into(),
            ));
        };
        let w = WriteOp {
            alt: alt.unwrap_or(0),
            address,
            data: file.to_vec(),
            what: format!("{} raw bytes", file.len()),
        };
        (FileKind::Raw, vec![w], vec![None])
    };
    for (w, m) in writes.iter().zip(&modules) {
        let Some(name) = alt_name(w.alt) else {
            return Err(Refusal::Usage(format!(
                "the device has no alternate setting {} (see `modflash devices` or `dfu-util -l`)",
                w.alt
            )));
        };
        if let Some(outside) = outside_layout(&name, w.alt, w.address, w.data.len() as u64) {
            return Err(Refusal::Usage(outside));
        }
        failed.extend(check_write(platform, &name, w, m.as_ref()));
    }
    let forced = if failed.is_empty() {
        Vec::new()
    } else if force {
        failed
    } else {
        return Err(Refusal::NeedsForce(failed));
    };
    Ok(DownloadPlan {
        kind,
        writes,
        forced,
    })
}

/// Checks an upload of `length` bytes at `address` of alternate setting `alt` against the
/// memory layout `alt_name` gives (from the platform's documented layout before the device
/// is switched to DFU mode): the alt must exist and show every byte asked for.
pub fn check_upload(
    alt_name: &mut dyn FnMut(u8) -> Option<String>,
    alt: u8,
    address: u32,
    length: u64,
) -> Result<(), Refusal> {
    let Some(name) = alt_name(alt) else {
        return Err(Refusal::Upload(format!(
            "the device has no alternate setting {alt} (see `modflash devices` or `dfu-util -l`)"
        )));
    };
    match outside_layout(&name, alt, address, length) {
        Some(outside) => Err(Refusal::Upload(outside)),
        None => Ok(()),
    }
}

/// When `[address, address + len)` is not all in the memory layout string `alt_name` of
/// alternate setting `alt`: what lies outside, in words. A string modflash cannot read
/// leaves the check to the device.
fn outside_layout(alt_name: &str, alt: u8, address: u32, len: u64) -> Option<String> {
    let layout = MemoryLayout::parse(alt_name).ok()?;
    let segments = layout.segments();
    let end = u64::from(address) + len;
    let mut at = u64::from(address);
    while at < end {
        let covering = u32::try_from(at)
            .ok()
            .and_then(|a| segments.iter().find(|s| s.contains(a)));
        match covering {
            Some(s) => at = s.end,
            None => {
                let mut spans: Vec<(u64, u64)> = Vec::new();
                for s in &segments {
                    match spans.last_mut() {
                        Some(last) if last.1 == u64::from(s.start) => last.1 = s.end,
                        _ => spans.push((u64::from(s.start), s.end)),
                    }
                }
                let spans: Vec<String> = spans
                    .iter()
                    .map(|(a, b)| format!("{a:#010x}..{b:#010x}"))
                    .collect();
                return Some(format!(
                    "{address:#010x}..{end:#010x} is not in the memory of alt {alt} ({}: {}); {at:#010x} is outside it",
                    layout.name.trim(),
                    spans.join(", ")
                ));
            }
        }
    }
    None
}

fn parse_dfuse(file: &[u8]) -> Result<Option<DfuseFile>, Refusal> {
    let (payload, _) = split_suffix(file);
    if !payload.starts_with(b"DfuSe") {
        return Ok(None);
    }
    DfuseFile::parse(file)
        .map(Some)
        .map_err(|e| Refusal::Usage(format!("the .dfu file is malformed: {e}")))
}

/// A module inside a .dfu element: platform refused always; `None` when not a module.
fn element_module(platform: &Platform, data: &[u8]) -> Result<Option<ModuleInfo>, Refusal> {
    match Module::parse(data) {
        Ok(m) if m.platform.id != platform.id => Err(Refusal::Platform(format!(
            "the .dfu file holds a {} module for the {} (platform {}), not for this device's platform, the {}",
            m.info.function.name(),
            m.platform.display_name,
            m.platform.id,
            platform.display_name
        ))),
        Ok(m) => Ok(Some(m.info)),
        Err(_) => Ok(None),
    }
}

/// An address or length that is not a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a number (use 0x080A0000 or 1762)")]
pub struct BadNumber(pub String);

/// Parses an address or length: `0x080A0000`, `1762`.
pub fn parse_number(text: &str) -> Result<u32, BadNumber> {
    let t = text.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(&h.replace('_', ""), 16),
        None => t.replace('_', "").parse::<u32>(),
    };
    r.map_err(|_| BadNumber(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modflash_module::platform::platform;
    use modflash_testkit::fixture;

    fn photon() -> &'static Platform {
        platform(6).unwrap()
    }

    fn alts() -> impl FnMut(u8) -> Option<String> {
        |a| {
            photon()
                .layout_for(None)
                .unwrap()
                .dfu_alts
                .get(usize::from(a))
                .map(|s| s.to_string())
        }
    }

    const DFU_ID: (u16, u16) = (0x2b04, 0xd006);

    #[test]
    fn an_app_goes_to_its_own_address() {
        let app = fixture("photon_tinker.bin");
        let p = plan_download(photon(), DFU_ID, &mut alts(), &app, None, None, false).unwrap();
        assert_eq!(p.kind, FileKind::Module);
        assert_eq!(p.writes[0].address, 0x080A_0000);
        assert_eq!(p.writes[0].data, app);
        assert!(p.forced.is_empty());
    }

    #[test]
    fn a_core_image_is_refused_even_with_force() {
        let core = fixture("core_tinker.bin");
        let e = plan_download(photon(), DFU_ID, &mut alts(), &core, None, None, true).unwrap_err();
        assert!(matches!(e, Refusal::Platform(_)), "{e}");
    }

    #[test]
    fn bootloader_dct_and_wrong_regions_need_force() {
        let app = fixture("photon_tinker.bin");
        for (address, alt, needle) in [
            (Some(0x0800_0000), None, "bootloader"),
            (Some(0x0802_0000), None, "does not belong"),
            (Some(1753), Some(1), "DCT"),
        ] {
            let e = plan_download(photon(), DFU_ID, &mut alts(), &app, address, alt, false)
                .unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            let ok =
                plan_download(photon(), DFU_ID, &mut alts(), &app, address, alt, true).unwrap();
            assert!(!ok.forced.is_empty());
        }
        // The factory slot is a place an app belongs.
        plan_download(
            photon(),
            DFU_ID,
            &mut alts(),
            &app,
            Some(0x080E_0000),
            None,
            false,
        )
        .unwrap();
        // Raw bytes into the DCT sectors.
        let e = plan_download(
            photon(),
            DFU_ID,
            &mut alts(),
            &[1, 2, 3],
            Some(0x0800_4000),
            None,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("DCT"), "{e}");
        // Raw bytes need an address.
        assert!(matches!(
            plan_download(photon(), DFU_ID, &mut alts(), &[1, 2, 3], None, None, false),
            Err(Refusal::Usage(_))
        ));
    }

    #[test]
    fn a_damaged_module_needs_force() {
        let mut app = fixture("photon_tinker.bin");
        app[100] ^= 0xFF;
        let e = plan_download(photon(), DFU_ID, &mut alts(), &app, None, None, false).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }

    #[test]
    fn dfuse_files_are_written_per_element_and_checked() {
        let app = fixture("photon_tinker.bin");
        let file = DfuseFile {
            vendor_id: 0x2b04,
            product_id: 0xd006,
            device_version: 0xFFFF,
            targets: vec![modflash_dfu::DfuseTarget {
                alt: 0,
                name: None,
                elements: vec![modflash_dfu::DfuseElement {
                    address: 0x080A_0000,
                    data: app.clone(),
                }],
            }],
        }
        .to_bytes()
        .unwrap();
        let p = plan_download(photon(), DFU_ID, &mut alts(), &file, None, None, false).unwrap();
        assert_eq!(p.kind, FileKind::Dfuse);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].data, app);
        let e = plan_download(
            photon(),
            (0x2b04, 0xd00a),
            &mut alts(),
            &file,
            None,
            None,
            true,
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::Platform(_)));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x080A0000"), Ok(0x080A_0000));
        assert_eq!(parse_number("1762"), Ok(1762));
        assert!(parse_number("zz").is_err());
    }
}
