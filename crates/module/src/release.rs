//! Known Device OS releases: module version ↔ release name, and per platform the modules a
//! release installs (versions, dependencies, addresses, sizes), for provisioning virtual
//! devices and for planning updates through intermediate releases. Pure data and lookups:
//! `synth` builds images from these entries.
//!
//! Sources: docs/research/releases.md (Particle's device-restore headers, `system-versions.md`,
//! `system_module_version.mk`, and the real binaries in tests/fixtures).

use crate::header::{Dependency, ModuleFunction, ModuleInfo};
use crate::platform::{Family, Platform};

/// A Device OS release and the module version its system parts carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Release {
    /// Release name, e.g. `"1.5.0"`.
    pub name: &'static str,
    /// System-part module version, e.g. 1502.
    pub system_version: u16,
}

const fn r(name: &'static str, system_version: u16) -> Release {
    Release {
        name,
        system_version,
    }
}

/// General releases in version order (prereleases omitted; see docs/research/releases.md).
pub static RELEASES: &[Release] = &[
    r("0.4.3", 3),
    r("0.4.4", 5),
    r("0.4.5", 6),
    r("0.4.6", 7),
    r("0.4.7", 8),
    r("0.4.9", 11),
    r("0.5.0", 13),
    r("0.5.1", 15),
    r("0.5.2", 17),
    r("0.5.3", 21),
    r("0.5.4", 22),
    r("0.5.5", 23),
    r("0.6.0", 102),
    r("0.6.1", 105),
    r("0.6.2", 108),
    r("0.6.3", 109),
    r("0.6.4", 110),
    r("0.7.0", 207),
    r("0.8.0-rc.27", 326),
    r("0.9.0", 403),
    r("1.0.0", 1000),
    r("1.0.1", 1002),
    r("1.1.0", 1102),
    r("1.1.1", 1104),
    r("1.2.1", 1213),
    r("1.3.1", 1321),
    r("1.4.0", 1401),
    r("1.4.1", 1403),
    r("1.4.2", 1404),
    r("1.4.3", 1405),
    r("1.4.4", 1406),
    r("1.5.0", 1502),
    r("1.5.1", 1511),
    r("1.5.2", 1512),
    r("2.0.0", 2008),
    r("2.0.1", 2011),
    r("2.0.2", 2021),
    r("2.1.0", 2101),
    r("2.2.0", 2202),
    r("2.3.0", 2301),
    r("2.3.1", 2302),
    r("3.0.0", 3005),
    r("3.1.0", 3103),
    r("3.2.0", 3201),
    r("3.3.0", 3301),
    r("3.3.1", 3302),
    r("4.0.0", 4003),
    r("4.0.1", 4005),
    r("4.0.2", 4006),
    r("4.1.0", 4100),
    r("4.2.0", 4200),
    r("5.0.0", 5002),
    r("5.0.1", 5003),
    r("5.1.0", 5004),
    r("5.2.0", 5200),
    r("5.3.0", 5300),
    r("5.3.1", 5301),
    r("5.3.2", 5302),
    r("5.4.0", 5400),
    r("5.4.1", 5410),
    r("5.5.0", 5501),
    r("5.6.0", 5600),
    r("5.7.0", 5700),
    r("5.8.0", 5800),
    r("5.8.2", 5802),
    r("5.9.0", 5901),
    r("6.1.0", 6100),
    r("6.1.1", 6101),
    r("6.2.0", 6200),
    r("6.2.1", 6201),
    r("6.3.0", 6302),
    r("6.3.2", 6303),
    r("6.3.3", 6304),
];

/// The release whose system parts carry `system_version`.
pub fn release_name(system_version: u16) -> Option<&'static str> {
    RELEASES
        .iter()
        .find(|r| r.system_version == system_version)
        .map(|r| r.name)
}

/// Looks a release up by name (a leading `v` is ignored).
pub fn release_by_name(name: &str) -> Option<&'static Release> {
    let name = name.strip_prefix('v').unwrap_or(name);
    RELEASES.iter().find(|r| r.name == name)
}

/// The release a module belongs to: a system part's (or Core mono firmware's) own version
/// names it.
pub fn release_for_module(info: &ModuleInfo) -> Option<&'static str> {
    match info.function {
        ModuleFunction::SystemPart | ModuleFunction::MonoFirmware => release_name(info.version),
        _ => None,
    }
}

/// The releases of `platform` that install exactly this module version, oldest first (a
/// bootloader or radio stack is shared by several releases; a system part names one).
pub fn releases_installing(
    platform: &Platform,
    function: ModuleFunction,
    index: u8,
    version: u16,
) -> impl Iterator<Item = &'static str> + '_ {
    platform_releases(platform)
        .filter(move |r| {
            r.modules_for(platform)
                .any(|m| m.function == function && m.index == index && m.version == version)
        })
        .map(|r| r.release)
}

/// One module a release installs, as its real header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseModule {
    /// Module function.
    pub function: ModuleFunction,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// `module_start_address`.
    pub start: u32,
    /// File size in bytes (`end − start + 4`); synthetic payloads are sized to match.
    pub size: u32,
    /// Offset of the header in the file (vector table / image header size).
    pub prefix_offset: u16,
    /// Header dependencies in slot order.
    pub dependencies: [Dependency; 2],
    /// Module flags byte (0x01 for the SoftDevice).
    pub flags: u8,
    /// The name Particle ships the file under, e.g. `"system-part1"`.
    pub file_name: &'static str,
}

/// The modules of one release for one platform family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlatformRelease {
    /// Release name.
    pub release: &'static str,
    /// System-part version of the release.
    pub system_version: u16,
    /// Modules in the order Particle installs them (bootloader first, user app last).
    pub modules: &'static [ReleaseModule],
    /// Electron only: the bootloader version whose image the system firmware carries and
    /// installs at boot when the installed bootloader is older (spec §4.3).
    pub embedded_bootloader: Option<u16>,
}

impl PlatformRelease {
    /// The modules as they are built for `platform`: Argon system parts of 3.0.0 and later
    /// list their two dependencies in swapped order (a Device OS build quirk).
    pub fn modules_for(&self, platform: &Platform) -> impl Iterator<Item = ReleaseModule> + '_ {
        let swap = platform.id == 12 && self.system_version >= 3000;
        self.modules.iter().map(move |m| {
            let mut m = *m;
            if swap && m.function == ModuleFunction::SystemPart {
                m.dependencies.swap(0, 1);
            }
            m
        })
    }

    /// The system-part modules of the release.
    pub fn system_parts(&self) -> impl Iterator<Item = &ReleaseModule> {
        self.modules
            .iter()
            .filter(|m| m.function == ModuleFunction::SystemPart)
    }
}

use ModuleFunction::{
    Bootloader as B, MonoFirmware as M, RadioStack as R, SystemPart as S, UserPart as U,
};

const NONE: Dependency = Dependency::NONE;

const fn d(function: ModuleFunction, index: u8, version: u16) -> Dependency {
    Dependency::new(function, index, version)
}

#[allow(clippy::too_many_arguments)]
const fn rm(
    file_name: &'static str,
    function: ModuleFunction,
    index: u8,
    version: u16,
    start: u32,
    size: u32,
    prefix_offset: u16,
    dep1: Dependency,
    dep2: Dependency,
) -> ReleaseModule {
    ReleaseModule {
        function,
        index,
        version,
        start,
        size,
        prefix_offset,
        dependencies: [dep1, dep2],
        flags: 0,
        file_name,
    }
}

const fn pr(
    release: &'static str,
    system_version: u16,
    modules: &'static [ReleaseModule],
) -> PlatformRelease {
    PlatformRelease {
        release,
        system_version,
        modules,
        embedded_bootloader: None,
    }
}

// ---- Photon and P1 (same versions and dependencies; sizes from Photon builds) -------------

const G2_BL: u32 = 0x0800_0000;
const G2_S1: u32 = 0x0802_0000;
const G2_S2: u32 = 0x0806_0000;
const PHOTON_APP: u32 = 0x080A_0000;
const VT2: u16 = 0x184;

macro_rules! photon_release {
    ($name:literal, $v:expr, bl $blv:expr, $bls:expr; p1 $p1s:expr, $p1d:expr; p2 $p2s:expr, $p2d2:expr; app $appv:expr, $apps:expr) => {
        pr(
            $name,
            $v,
            &[
                rm("bootloader", B, 0, $blv, G2_BL, $bls, VT2, NONE, NONE),
                rm("system-part1", S, 1, $v, G2_S1, $p1s, VT2, $p1d, NONE),
                rm(
                    "system-part2",
                    S,
                    2,
                    $v,
                    G2_S2,
                    $p2s,
                    VT2,
                    d(S, 1, $v),
                    $p2d2,
                ),
                rm(
                    "tinker",
                    U,
                    1,
                    $appv,
                    PHOTON_APP,
                    $apps,
                    0,
                    d(S, 2, $v),
                    NONE,
                ),
            ],
        )
    };
}

static PHOTON_RELEASES: &[PlatformRelease] = &[
    // 0.4.6: the release of the describe JSON published in Particle's docs (spec §8.1).
    photon_release!("0.4.6", 7, bl 4, 14000; p1 240000, NONE; p2 180000, NONE; app 3, 5324),
    photon_release!("0.5.2", 17, bl 7, 14148; p1 250956, NONE; p2 187492, NONE; app 3, 5324),
    photon_release!("0.6.2", 108, bl 11, 14200; p1 251000, NONE; p2 190000, NONE; app 4, 6888),
    photon_release!("0.7.0", 207, bl 101, 15236; p1 252000, NONE; p2 200000, d(B, 0, 101); app 5, 7000),
    photon_release!("1.2.1", 1213, bl 311, 15300; p1 237000, d(S, 2, 204); p2 258000, d(B, 0, 311); app 6, 13000),
    photon_release!("1.4.4", 1406, bl 501, 15336; p1 237608, d(S, 2, 207); p2 258560, d(B, 0, 400); app 6, 13504),
    photon_release!("1.5.0", 1502, bl 501, 15336; p1 238408, d(S, 2, 207); p2 261048, d(B, 0, 400); app 6, 13600),
    photon_release!("1.5.2", 1512, bl 502, 15336; p1 238520, d(S, 2, 207); p2 261448, d(B, 0, 400); app 6, 13616),
    photon_release!("2.2.0", 2202, bl 1006, 15124; p1 241496, d(S, 2, 207); p2 260840, d(B, 0, 1003); app 6, 12640),
    photon_release!("2.3.1", 2302, bl 1006, 15784; p1 241496, d(S, 2, 207); p2 261112, d(B, 0, 1003); app 6, 12720),
    photon_release!("3.3.1", 3302, bl 1100, 15188; p1 244680, d(S, 2, 207); p2 251608, d(B, 0, 1003); app 6, 6784),
];

// ---- Electron ----------------------------------------------------------------------------

const E_APP: u32 = 0x0808_0000;
const E_IDX1: u32 = 0x0802_0000;
const E_IDX2: u32 = 0x0804_0000;
const E_IDX3: u32 = 0x0806_0000;

const fn electron(
    release: &'static str,
    v: u16,
    bootloader: u16,
    modules: &'static [ReleaseModule],
) -> PlatformRelease {
    PlatformRelease {
        release,
        system_version: v,
        modules,
        embedded_bootloader: if v >= 105 { Some(bootloader) } else { None },
    }
}

macro_rules! electron3 {
    ($name:literal, $v:expr, bl $blv:expr, $bls:expr; i3 $s3:expr, $d3:expr; i1 $s1:expr; i2 $s2:expr, $d2b:expr; app $appv:expr, $apps:expr) => {
        electron(
            $name,
            $v,
            $blv,
            &[
                rm("bootloader", B, 0, $blv, G2_BL, $bls, VT2, NONE, NONE),
                rm("system-part1", S, 3, $v, E_IDX3, $s3, 0, $d3, NONE),
                rm(
                    "system-part2",
                    S,
                    1,
                    $v,
                    E_IDX1,
                    $s1,
                    VT2,
                    d(S, 3, $v),
                    NONE,
                ),
                rm(
                    "system-part3",
                    S,
                    2,
                    $v,
                    E_IDX2,
                    $s2,
                    VT2,
                    d(S, 1, $v),
                    $d2b,
                ),
                rm("tinker", U, 1, $appv, E_APP, $apps, 0, d(S, 2, $v), NONE),
            ],
        )
    };
}

static ELECTRON_RELEASES: &[PlatformRelease] = &[
    electron(
        "0.5.2",
        17,
        7,
        &[
            rm("bootloader", B, 0, 7, G2_BL, 14148, VT2, NONE, NONE),
            rm("system-part1", S, 1, 17, E_IDX1, 122916, VT2, NONE, NONE),
            rm(
                "system-part2",
                S,
                2,
                17,
                E_IDX2,
                120724,
                VT2,
                d(S, 1, 17),
                NONE,
            ),
            rm("tinker", U, 1, 3, E_APP, 5776, 0, d(S, 2, 17), NONE),
        ],
    ),
    electron3!("0.6.4", 110, bl 11, 14200; i3 55004, NONE; i1 123712; i2 114848, NONE; app 4, 10464),
    electron3!("0.7.0", 207, bl 101, 15600; i3 54732, d(S, 2, 110); i1 123800; i2 121576, d(B, 0, 101); app 5, 10500),
    electron3!("1.4.4", 1406, bl 501, 15972; i3 79440, d(S, 2, 110); i1 115044; i2 123392, d(B, 0, 400); app 6, 11264),
    electron3!("1.5.0", 1502, bl 501, 15972; i3 79920, d(S, 2, 110); i1 115956; i2 126808, d(B, 0, 400); app 6, 11300),
    electron3!("1.5.2", 1512, bl 502, 15968; i3 79968, d(S, 2, 110); i1 116132; i2 127224, d(B, 0, 400); app 6, 11360),
    electron3!("2.2.0", 2202, bl 1006, 15672; i3 87468, d(S, 2, 110); i1 114012; i2 122364, d(B, 0, 1003); app 6, 10336),
    electron3!("2.3.1", 2302, bl 1006, 15672; i3 87468, d(S, 2, 110); i1 114012; i2 123052, d(B, 0, 1003); app 6, 10336),
    electron3!("3.1.0", 3103, bl 1100, 15680; i3 88428, d(S, 2, 110); i1 115628; i2 125084, d(B, 0, 1003); app 6, 10400),
];

// ---- Gen3 nRF52840 (Argon order of dependencies is applied by `modules_for`) ---------------

const VT3: u16 = 0x200;
const SOFTDEVICE: ReleaseModule = ReleaseModule {
    function: R,
    index: 0,
    version: 202,
    start: 0x1000,
    size: 153048,
    prefix_offset: 0,
    dependencies: [d(B, 0, 501), d(S, 1, 1321)],
    flags: 0x01,
    file_name: "softdevice",
};

macro_rules! gen3 {
    ($name:literal, $v:expr, bl $blv:expr, $bls:expr, $bld:expr; s1 $start:expr, $s1s:expr, $s1b:expr; app $idx:expr, $appstart:expr, $apps:expr) => {
        pr(
            $name,
            $v,
            &[
                rm("bootloader", B, 0, $blv, 0xF4000, $bls, VT3, $bld, NONE),
                SOFTDEVICE,
                rm(
                    "system-part1",
                    S,
                    1,
                    $v,
                    $start,
                    $s1s,
                    VT3,
                    d(B, 0, $s1b),
                    d(R, 0, 202),
                ),
                rm("tinker", U, $idx, 6, $appstart, $apps, 0, d(S, 1, $v), NONE),
            ],
        )
    };
}

static GEN3_RELEASES: &[PlatformRelease] = &[
    gen3!("1.4.4", 1406, bl 501, 41916, NONE; s1 0x30000, 652160, 501; app 1, 0xD4000, 12284),
    gen3!("1.5.0", 1502, bl 501, 41948, d(S, 1, 1102); s1 0x30000, 634692, 501; app 1, 0xD4000, 12400),
    gen3!("1.5.2", 1512, bl 502, 42028, d(S, 1, 1102); s1 0x30000, 635412, 501; app 1, 0xD4000, 12448),
    gen3!("2.2.0", 2202, bl 1006, 47292, NONE; s1 0x30000, 471556, 1005; app 1, 0xD4000, 12000),
    gen3!("2.3.1", 2302, bl 1006, 47292, NONE; s1 0x30000, 476852, 1005; app 1, 0xD4000, 12000),
    gen3!("3.1.0", 3103, bl 1100, 46900, NONE; s1 0x30000, 447574, 1100; app 2, 0xB4000, 11996),
    gen3!("4.2.0", 4200, bl 1200, 45940, NONE; s1 0x30000, 477786, 1200; app 2, 0xB4000, 11000),
    gen3!("5.5.0", 5501, bl 2300, 46022, NONE; s1 0x30000, 498820, 2300; app 2, 0xB4000, 9000),
    gen3!("6.2.0", 6200, bl 3100, 48586, NONE; s1 0x28000, 512604, 3100; app 2, 0xB4000, 8710),
    gen3!("6.3.3", 6304, bl 3101, 48802, NONE; s1 0x28000, 525804, 3100; app 2, 0xB4000, 8710),
];

// ---- RTL872x (P2, Tracker-M, M-SoM) --------------------------------------------------------

const RTL_HDR: u16 = 0x20;
/// RTL872x user parts end at 0x08600000 − 4 and grow downward.
pub const RTL_USER_END: u32 = 0x0860_0000 - 4;

macro_rules! rtl {
    ($name:literal, $v:expr, pbl $pv:expr, $ps:expr; bl $blv:expr, $bls:expr; s1 $s1s:expr; app $apps:expr) => {
        pr(
            $name,
            $v,
            &[
                rm(
                    "prebootloader-mbr",
                    B,
                    1,
                    2,
                    0x0800_0000,
                    6144,
                    RTL_HDR,
                    NONE,
                    NONE,
                ),
                rm(
                    "prebootloader-part1",
                    B,
                    2,
                    $pv,
                    0x0801_4000,
                    $ps,
                    RTL_HDR,
                    NONE,
                    NONE,
                ),
                rm(
                    "bootloader",
                    B,
                    0,
                    $blv,
                    0x0800_4000,
                    $bls,
                    RTL_HDR,
                    d(B, 2, $pv),
                    NONE,
                ),
                rm(
                    "system-part1",
                    S,
                    1,
                    $v,
                    0x0806_0000,
                    $s1s,
                    0,
                    d(B, 0, $blv),
                    NONE,
                ),
                rm(
                    "tinker",
                    U,
                    1,
                    6,
                    RTL_USER_END + 4 - $apps,
                    $apps,
                    0,
                    d(S, 1, $v),
                    NONE,
                ),
            ],
        )
    };
}

static RTL_RELEASES: &[PlatformRelease] = &[
    rtl!("5.0.0", 5002, pbl 3, 19596; bl 2000, 52556; s1 971078; app 49152),
    rtl!("5.5.0", 5501, pbl 7, 20152; bl 2300, 53420; s1 1028212; app 49152),
    rtl!("5.9.0", 5901, pbl 9, 79204; bl 2700, 56356; s1 1216776; app 49152),
    rtl!("6.2.0", 6200, pbl 9, 79204; bl 3100, 58260; s1 1219048; app 49152),
    rtl!("6.3.3", 6304, pbl 10, 79820; bl 3101, 61748; s1 1240356; app 49152),
];

// ---- Core (monolithic) -------------------------------------------------------------------

static CORE_RELEASES: &[PlatformRelease] = &[
    pr(
        "0.7.0",
        207,
        &[rm(
            "tinker",
            M,
            0,
            207,
            0x0800_5000,
            98932,
            0x10C,
            NONE,
            NONE,
        )],
    ),
    pr(
        "1.4.4",
        1406,
        &[rm(
            "tinker",
            M,
            0,
            1406,
            0x0800_5000,
            99000,
            0x10C,
            NONE,
            NONE,
        )],
    ),
];

/// First and last system version a platform supports (the whole range unless it differs from
/// its family's).
pub fn supported_range(platform: &Platform) -> (u16, u16) {
    match platform.id {
        0 => (0, 1406),          // Core: last release 1.4.4
        6 | 8 | 10 => (0, 3302), // Photon, P1, Electron: last release 3.3.1
        14 => (312, 1512),       // Xenon: 0.8.0 … 1.5.2
        22 | 24 => (1100, 1406), // A-SoM, X-SoM: 1.1.0 … 1.4.4
        25 => (1407, u16::MAX),  // B5-SoM from 1.4.5
        26 => (1503, u16::MAX),  // Tracker from 1.5.1-tracker
        15 => (4000, u16::MAX),  // E-SoM-X from 4.0.0
        28 => (5000, u16::MAX),  // Tracker-M from 5.0.0
        35 => (5500, u16::MAX),  // M-SoM from 5.5.0
        _ => (0, u16::MAX),
    }
}

/// The releases whose modules are known for `platform`, oldest first.
pub fn platform_releases(platform: &Platform) -> impl Iterator<Item = &'static PlatformRelease> {
    let all: &'static [PlatformRelease] = match platform.family {
        Some(Family::Photon) => PHOTON_RELEASES,
        Some(Family::Electron) => ELECTRON_RELEASES,
        Some(Family::Gen3) => GEN3_RELEASES,
        Some(Family::Rtl872x) => RTL_RELEASES,
        Some(Family::Core) => CORE_RELEASES,
        None => &[],
    };
    let (first, last) = supported_range(platform);
    all.iter()
        .filter(move |r| r.system_version >= first && r.system_version <= last)
}

/// The modules of release `name` for `platform`, if known.
pub fn platform_release(platform: &Platform, name: &str) -> Option<&'static PlatformRelease> {
    let name = name.strip_prefix('v').unwrap_or(name);
    platform_releases(platform).find(|r| r.release == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{platform, PLATFORMS};

    #[test]
    fn names_and_versions_are_unique_and_ordered() {
        for w in RELEASES.windows(2) {
            assert!(w[0].system_version < w[1].system_version, "{:?}", w);
        }
        assert_eq!(release_name(1502), Some("1.5.0"));
        assert_eq!(release_name(5002), Some("5.0.0"));
        assert_eq!(
            release_by_name("v2.2.0").map(|r| r.system_version),
            Some(2202)
        );
    }

    #[test]
    fn every_platform_release_names_a_known_release() {
        for p in PLATFORMS {
            for pr in platform_releases(p) {
                assert_eq!(
                    release_name(pr.system_version),
                    Some(pr.release),
                    "{}",
                    pr.release
                );
                for w in pr.modules.windows(2) {
                    assert!(w[0] != w[1]);
                }
            }
        }
    }

    #[test]
    fn real_fixtures_agree_with_the_table() {
        // photon-system-part2@1.5.0.bin: system 2 v1502, deps s1>=1502, b0>=400.
        let photon = platform(6).unwrap();
        let r = platform_release(photon, "1.5.0").unwrap();
        let p2 = r
            .modules
            .iter()
            .find(|m| m.index == 2 && m.function == S)
            .unwrap();
        assert_eq!(p2.dependencies, [d(S, 1, 1502), d(B, 0, 400)]);
        assert_eq!(p2.size, 261048);
        let argon = platform(12).unwrap();
        let r = platform_release(argon, "6.2.0").unwrap();
        let s1 = r.modules_for(argon).find(|m| m.function == S).unwrap();
        assert_eq!(
            s1.dependencies,
            [d(R, 0, 202), d(B, 0, 3100)],
            "Argon swaps from 3.0.0"
        );
        assert!(
            platform_release(platform(14).unwrap(), "2.2.0").is_none(),
            "Xenon ended at 1.5.2"
        );
    }
}
