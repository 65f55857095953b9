//! Crafted inputs: each gets a precise verdict, never a panic.

use modflash_module::edit::{edit_module, update_checksums, ModuleBuilder};
use modflash_module::parse::{InflateCheck, SuffixError};
use modflash_module::{
    Dependency, ExtensionError, Module, ModuleFunction, NotAModule, Problem, RegionCheck, SizeCheck,
};
use modflash_testkit::fixture;

fn problems(bytes: &[u8]) -> Vec<Problem> {
    Module::parse(bytes).expect("a module").problems().collect()
}

/// xorshift: deterministic "random" bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn short_files_are_not_modules() {
    assert_eq!(Module::parse(&[]).unwrap_err(), NotAModule::Empty);
    assert_eq!(
        Module::parse(&[0]).unwrap_err(),
        NotAModule::TooShort { len: 1 }
    );
    assert_eq!(
        Module::parse(&[7; 10]).unwrap_err(),
        NotAModule::TooShort { len: 10 }
    );
    let flag = fixture("ota-flag-a5.bin");
    assert_eq!(
        Module::parse(&flag).unwrap_err(),
        NotAModule::TooShort { len: 1 }
    );
}

#[test]
fn truncated_system_part_says_so() {
    let bytes = fixture("photon-system-part1@1.5.0.bin");
    let p = problems(&bytes[..1000]);
    assert_eq!(
        p,
        [Problem::Size(SizeCheck::Truncated {
            declared: bytes.len(),
            available: 1000
        })]
    );
    assert!(p[0].to_string().contains("only 1000"));
}

#[test]
fn flipped_byte_is_a_crc_error() {
    let mut bytes = fixture("photon_tinker.bin");
    bytes[2000] ^= 0x40;
    let p = problems(&bytes);
    assert!(matches!(p[0], Problem::Crc(_)), "{p:?}");
    // The SHA also no longer matches; both are reported, and nothing was recomputed.
    let sha = p.iter().find(|p| matches!(p, Problem::Sha { .. })).unwrap();
    assert!(
        sha.to_string()
            .contains("the content changed after the module was built"),
        "{sha}"
    );
    assert!(!sha.to_string().contains("recomputed"), "{sha}");
}

#[test]
fn flipped_byte_with_recomputed_crc_is_a_sha_error() {
    let mut bytes = fixture("photon_tinker.bin");
    bytes[2000] ^= 0x40;
    let len = bytes.len();
    let crc = crc32fast::hash(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_be_bytes());
    let p = problems(&bytes);
    assert!(matches!(p.as_slice(), [Problem::Sha { .. }]), "{p:?}");
    assert!(p[0].to_string().contains("CRC was recomputed"));
}

#[test]
fn random_and_erased_blocks_are_not_modules() {
    for seed in 1..50 {
        let bytes = noise(4096, seed);
        assert!(
            matches!(Module::parse(&bytes), Err(NotAModule::NoHeader { .. })),
            "seed {seed}"
        );
    }
    assert_eq!(
        Module::parse(&[0xFF; 4096]).unwrap_err(),
        NotAModule::Erased { len: 4096 }
    );
}

#[test]
fn padding_after_a_module_is_named_and_the_module_still_checks() {
    let mut bytes = fixture("p1_tinker.bin");
    let len = bytes.len();
    bytes.extend_from_slice(&[0xFF; 100]);
    let m = Module::parse(&bytes).unwrap();
    assert!(m.crc_ok());
    assert_eq!(
        m.problems().collect::<Vec<_>>(),
        [Problem::Size(SizeCheck::Trailing {
            declared: len,
            extra: 100,
            all_ff: true
        })]
    );
}

#[test]
fn realtek_images_are_not_modules() {
    let mut image2 = noise(4096, 9);
    image2[..8].copy_from_slice(b"81958711");
    assert_eq!(
        Module::parse(&image2).unwrap_err(),
        NotAModule::RealtekImage
    );
    let mut headed = noise(4096, 11);
    headed[..4].copy_from_slice(&0x9696_9999u32.to_le_bytes());
    headed[4..8].copy_from_slice(&0xFC66_CC3Fu32.to_le_bytes());
    assert_eq!(
        Module::parse(&headed).unwrap_err(),
        NotAModule::RealtekImage
    );
}

#[test]
fn non_module_fixtures_have_reasons() {
    let err = Module::parse(&fixture("cc3000-patch-programmer.bin")).unwrap_err();
    assert!(matches!(err, NotAModule::NoHeader { .. }));
    assert!(err.to_string().contains("no module header"), "{err}");
}

#[test]
fn end_before_start() {
    // The builder always derives end from start, so the header is edited by hand.
    let mut bytes = fixture("photon_tinker.bin");
    bytes[4..8].copy_from_slice(&0x0809_0000u32.to_le_bytes());
    let p = problems(&bytes);
    assert_eq!(p[0], Problem::Size(SizeCheck::EndBeforeStart));
    // The end is also below the user region, which is reported too.
    assert!(matches!(
        p[1],
        Problem::Region(RegionCheck::OutOfRange { .. })
    ));
}

#[test]
fn addresses_outside_flash_are_out_of_range() {
    let bytes = ModuleBuilder::new(6, ModuleFunction::UserPart, 1, 6, 0x2000_0000)
        .payload(vec![0; 256])
        .build()
        .unwrap();
    let p = problems(&bytes);
    assert!(
        matches!(
            p.as_slice(),
            [Problem::Region(RegionCheck::OutOfRange { .. })]
        ),
        "{p:?}"
    );
    assert!(
        p[0].to_string().contains("0x080a0000..0x080c0000"),
        "{}",
        p[0]
    );
}

#[test]
fn misplaced_start_is_named() {
    let bytes = ModuleBuilder::new(6, ModuleFunction::UserPart, 1, 6, 0x080A_1000)
        .payload(vec![0; 256])
        .build()
        .unwrap();
    assert!(matches!(
        problems(&bytes).as_slice(),
        [Problem::Region(RegionCheck::Misplaced { .. })]
    ));
}

#[test]
fn wrong_function_for_the_platform() {
    let bytes = ModuleBuilder::new(6, ModuleFunction::RadioStack, 0, 1, 0x0800_1000)
        .payload(vec![0; 64])
        .build()
        .unwrap();
    assert_eq!(
        problems(&bytes),
        [Problem::Region(RegionCheck::FunctionNotAllowed)]
    );
}

#[test]
fn extension_running_past_the_end() {
    let mut bytes = fixture("tinker-5.0.0-p2.bin");
    let len = bytes.len();
    // The DYNAMIC_LOCATION extension header sits at len-4-62; make it claim 200 bytes.
    let at = len - 4 - 62;
    bytes[at + 2..at + 4].copy_from_slice(&200u16.to_le_bytes());
    update_checksums_raw(&mut bytes);
    let p = problems(&bytes);
    assert!(
        matches!(
            p.as_slice(),
            [Problem::Suffix(SuffixError::Extension(
                ExtensionError::Overrun { length: 200, .. }
            ))]
        ),
        "{p:?}"
    );
}

#[test]
fn prefix_extension_running_past_the_end() {
    let bytes = ModuleBuilder::new(32, ModuleFunction::UserPart, 1, 6, 0x085F_0000)
        .prefix_extension(modflash_module::ExtensionKind::Name, b"app")
        .payload(vec![0; 16])
        .build()
        .unwrap();
    let mut bytes = bytes;
    bytes[24 + 2..24 + 4].copy_from_slice(&0x7000u16.to_le_bytes());
    update_checksums_raw(&mut bytes);
    let p = problems(&bytes);
    assert!(
        matches!(p.first(), Some(Problem::PrefixExtensions(_))),
        "{p:?}"
    );
}

#[test]
fn compressed_module_that_lies_about_its_size() {
    let app = ModuleBuilder::new(6, ModuleFunction::UserPart, 1, 6, 0x080A_0000)
        .dependency(0, Dependency::new(ModuleFunction::SystemPart, 2, 1502))
        .payload((0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>())
        .build()
        .unwrap();
    let compressed = modflash_module::edit::compress(&app).unwrap();
    let lie = edit_module(&compressed, |b| {
        let size = u32::from_le_bytes(b.payload[4..8].try_into().unwrap());
        b.payload[4..8].copy_from_slice(&(size + 10).to_le_bytes());
    })
    .unwrap();
    let p = problems(&lie);
    assert!(
        matches!(
            p.as_slice(),
            [Problem::Compression(InflateCheck::SizeMismatch { .. })]
        ),
        "{p:?}"
    );
}

#[test]
fn checksum_update_round_trip() {
    let mut bytes = fixture("photon_doctor.bin");
    let original = bytes.clone();
    bytes[100] ^= 1;
    update_checksums(&mut bytes).unwrap();
    assert!(Module::parse(&bytes).unwrap().is_valid());
    assert_ne!(bytes, original);
}

/// Re-CRC only (keeps the SHA as is), to isolate structural problems.
fn update_checksums_raw(bytes: &mut [u8]) {
    let len = bytes.len();
    let sha: [u8; 32] = modflash_module::checksum::sha256(&bytes[..len - 38]);
    bytes[len - 38..len - 6].copy_from_slice(&sha);
    let crc = crc32fast::hash(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_header_only_the_scan_finds_is_a_module_the_device_cannot_find() {
    // A Photon application (the device reads its header at offset 0) built behind a
    // 0x184-byte vector table: the scan finds the header, the device would not.
    let app = ModuleBuilder::new(6, ModuleFunction::UserPart, 1, 6, 0x080A_0000)
        .vector_table(vec![0u8; 0x184])
        .payload(noise(2048, 7))
        .build()
        .unwrap();
    let m = Module::parse(&app).expect("found by scanning");
    assert_eq!(m.rule, modflash_module::HeaderRule::Scan);
    assert_eq!(
        problems(&app),
        [Problem::HeaderNotWhereDeviceLooks { offset: 0x184 }]
    );
    assert!(problems(&app)[0].to_string().contains("would not find"));
}

#[test]
fn every_module_of_a_long_chain_is_walked_and_checked() {
    let app = fixture("photon_tinker.bin");
    let len = app.len();
    let copies: Vec<&[u8]> = std::iter::repeat_n(app.as_slice(), 40).collect();
    let mut combined = modflash_module::edit::combine(&copies).unwrap();
    let walked: Vec<bool> = modflash_module::chain(&combined)
        .map(|m| m.expect("a module").is_valid())
        .collect();
    assert_eq!(walked, vec![true; 40]);

    // The 33rd module damaged: found, and only it.
    combined[32 * len + len / 2] ^= 0xFF;
    let damaged: Vec<usize> = modflash_module::chain(&combined)
        .enumerate()
        .filter(|(_, m)| !m.as_ref().is_ok_and(Module::is_valid))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(damaged, [32]);

    // Cut anywhere, the walk ends within the bytes it has, with the last module named.
    for cut in (0..combined.len()).step_by(len / 3 + 1) {
        let walked = modflash_module::chain(&combined[..cut]).count();
        assert!(walked <= cut / len + 1, "cut at {cut}: {walked} modules");
    }
}
