//! Known Device OS releases: module version ↔ release name, and per platform the modules a
//! release installs (versions, dependencies, addresses), for provisioning virtual devices and
//! for planning updates through intermediate releases.

use crate::header::{ModuleFunction, ModuleInfo};

/// A Device OS release and the module version its system parts carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Release {
    /// Release name, e.g. `"1.5.0"`.
    pub name: &'static str,
    /// System-part module version, e.g. 1502.
    pub system_version: u16,
}

/// Releases in version order.
pub static RELEASES: &[Release] = &[
    Release {
        name: "0.5.2",
        system_version: 17,
    },
    Release {
        name: "0.6.4",
        system_version: 110,
    },
    Release {
        name: "0.7.0",
        system_version: 207,
    },
    Release {
        name: "1.1.0",
        system_version: 1102,
    },
    Release {
        name: "1.4.4",
        system_version: 1406,
    },
    Release {
        name: "1.5.0",
        system_version: 1502,
    },
    Release {
        name: "1.5.2",
        system_version: 1512,
    },
    Release {
        name: "2.2.0",
        system_version: 2202,
    },
    Release {
        name: "2.3.1",
        system_version: 2302,
    },
    Release {
        name: "6.2.0",
        system_version: 6200,
    },
];

/// The release whose system parts carry `system_version`.
pub fn release_name(system_version: u16) -> Option<&'static str> {
    RELEASES
        .iter()
        .find(|r| r.system_version == system_version)
        .map(|r| r.name)
}

/// Looks a release up by name.
pub fn release_by_name(name: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.name == name)
}

/// The release a module belongs to: a system part's own version names it.
pub fn release_for_module(info: &ModuleInfo) -> Option<&'static str> {
    match info.function {
        ModuleFunction::SystemPart => release_name(info.version),
        _ => None,
    }
}
