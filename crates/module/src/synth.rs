//! Synthetic release images: deterministic stand-ins for Particle's binaries, built from the
//! release table's headers, for provisioning virtual devices and for tests.

use alloc::vec::Vec;

use crate::edit::ModuleBuilder;
use crate::extension::ExtensionKind;
use crate::header::{ModuleFlags, ModuleFunction, ModuleInfo};
use crate::parse::{ShaCoverage, BASE_SUFFIX_SIZE, PRODUCT_SUFFIX_SIZE, REALTEK_HEADER_SIGNATURE};
use crate::platform::{Mcu, Platform};
use crate::release::ReleaseModule;
use crate::softdevice;

/// A deterministic, release-specific synthetic image of `m` for `platform`: the real header
/// (addresses, version, dependencies, flags), a vector table or image header of the right size
/// whose first word makes the device rules find the header, a generated payload, and a correct
/// SHA-256 and CRC. The same inputs always give the same bytes.
pub fn synthesize(platform: &Platform, m: &ReleaseModule) -> Vec<u8> {
    let mut seed = (u64::from(platform.id) << 48)
        ^ (u64::from(m.function.to_u8()) << 40)
        ^ (u64::from(m.index) << 32)
        ^ (u64::from(m.version) << 16)
        ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as u8
    };
    let prefix = usize::from(m.prefix_offset);
    let mut vector_table: Vec<u8> = (0..prefix).map(|_| next()).collect();
    if prefix >= 8 {
        let first: [u32; 2] = match platform.mcu {
            Mcu::Rtl872x => REALTEK_HEADER_SIGNATURE,
            Mcu::Nrf52840 => [0x2003_F000, m.start + prefix as u32 + 1],
            _ => [0x2002_0000, m.start + prefix as u32 + 1],
        };
        vector_table[..4].copy_from_slice(&first[0].to_le_bytes());
        vector_table[4..8].copy_from_slice(&first[1].to_le_bytes());
    }
    let drop_info = m.flags & ModuleFlags::DROP_MODULE_INFO != 0;
    // RTL872x applications grow down from a fixed end: the device finds their start in a
    // DYNAMIC_LOCATION suffix extension (62-byte suffix with PRODUCT_DATA, spec §2.3).
    let dynamic = platform.mcu == Mcu::Rtl872x && m.function == ModuleFunction::UserPart;
    let suffix = if drop_info {
        BASE_SUFFIX_SIZE
    } else if dynamic {
        BASE_SUFFIX_SIZE + 16 + 10
    } else {
        PRODUCT_SUFFIX_SIZE
    };
    let overhead = prefix + ModuleInfo::SIZE + suffix + 4;
    let payload_len = (m.size as usize).saturating_sub(overhead);
    let mut payload: Vec<u8> = (0..payload_len).map(|_| next()).collect();
    if m.function == ModuleFunction::RadioStack {
        softdevice::write_info(&mut payload, m.version);
    }
    let mut b = ModuleBuilder::new(platform.id, m.function, m.index, m.version, m.start)
        .vector_table(vector_table)
        .payload(payload)
        .dependency(0, m.dependencies[0])
        .dependency(1, m.dependencies[1]);
    b.info.flags = ModuleFlags(m.flags);
    if drop_info {
        b = b.base_suffix();
        b.sha_coverage = ShaCoverage::Payload;
    }
    if dynamic {
        let mut location = Vec::with_capacity(12);
        location.extend_from_slice(&m.start.to_le_bytes());
        location.extend_from_slice(&(m.start + 0x88).to_le_bytes());
        location.extend_from_slice(&0x023F_54E8u32.to_le_bytes());
        b = b.suffix_extension(ExtensionKind::DynamicLocation, &location);
    }
    // The builder only fails past 4 GB; the table never gets near that.
    b.build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{HeaderRule, Module};
    use crate::platform::{platform, PLATFORMS};
    use crate::release::{platform_release, platform_releases};

    #[test]
    fn synthetic_modules_are_valid_and_match_the_table() {
        for p in PLATFORMS {
            for pr in platform_releases(p) {
                for m in pr.modules_for(p) {
                    let bytes = synthesize(p, &m);
                    let parsed = Module::parse(&bytes).unwrap_or_else(|e| {
                        panic!("{} {} {}: {e}", p.name, pr.release, m.file_name)
                    });
                    assert!(
                        parsed.is_valid(),
                        "{} {} {}: {:?}",
                        p.name,
                        pr.release,
                        m.file_name,
                        parsed.problems().collect::<std::vec::Vec<_>>()
                    );
                    assert_eq!(bytes.len(), m.size as usize);
                    assert_eq!(parsed.prefix_offset, usize::from(m.prefix_offset));
                    assert_ne!(parsed.rule, HeaderRule::Scan, "a device rule finds it");
                    assert_eq!(parsed.info.version, m.version);
                    assert_eq!(parsed.info.dependencies, m.dependencies);
                    assert_eq!(synthesize(p, &m), bytes, "deterministic");
                }
            }
        }
    }

    #[test]
    fn synthetic_softdevice_carries_its_fwid() {
        let argon = platform(12).unwrap();
        let softdevice_module = platform_release(argon, "1.5.0")
            .unwrap()
            .modules
            .iter()
            .find(|m| m.function == ModuleFunction::RadioStack)
            .unwrap();
        let synthetic = synthesize(argon, softdevice_module);
        // As on the device: the 24-byte prefix is dropped, the image starts at 0x1000.
        assert_eq!(softdevice::fwid(&synthetic[24..]), Some(202));
    }
}
