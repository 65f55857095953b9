//! Property tests: parsing never panics on any input, and every built module parses back
//! with the fields it was built from.

use modflash_module::edit::ModuleBuilder;
use modflash_module::{chain, Dependency, Module, ModuleFlags, ModuleFunction, Product, SizeCheck};
use proptest::prelude::*;

fn any_function() -> impl Strategy<Value = ModuleFunction> {
    (0u8..=12).prop_map(ModuleFunction::from_u8)
}

fn any_dependency() -> impl Strategy<Value = Dependency> {
    (any_function(), any::<u8>(), any::<u16>()).prop_map(|(f, i, v)| Dependency::new(f, i, v))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for m in chain(&bytes).take(20).flatten() {
            {
                let _ = m.problems().count();
                let _ = m.prefix_extensions().count();
                let _ = m.suffix_extensions().count();
            }
        }
    }

    #[test]
    fn mutated_real_header_never_panics(offset in 0usize..64, value in any::<u8>(), cut in 0usize..4000) {
        let mut bytes = include_bytes!("../../../tests/fixtures/real/photon_tinker.bin").to_vec();
        if let Some(b) = bytes.get_mut(offset) { *b = value; }
        bytes.truncate(cut.max(1));
        if let Ok(m) = Module::parse(&bytes) {
            let _ = m.problems().count();
        }
    }

    #[test]
    fn built_modules_parse_back(
        platform in prop::sample::select(vec![0u16, 6, 8, 10, 12, 13, 26, 32]),
        function in any_function(),
        index in any::<u8>(),
        version in any::<u16>(),
        start in any::<u32>(),
        deps in (any_dependency(), any_dependency()),
        flags in 0u8..=0x1F,
        product in proptest::option::of((any::<u16>(), any::<u16>())),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // Flags that change the layout are exercised by dedicated tests.
        let flags = ModuleFlags(flags & (ModuleFlags::DROP_MODULE_INFO | ModuleFlags::ENCRYPTED));
        let mut b = ModuleBuilder::new(platform, function, index, version, start)
            .dependency(0, deps.0)
            .dependency(1, deps.1)
            .payload(payload.clone());
        b.info.flags = flags;
        b = match product {
            Some((id, version)) => b.product(Product { id, version }),
            None => b.base_suffix(),
        };
        let Ok(bytes) = b.build() else { return Ok(()) }; // start + length overflowed
        let Ok(m) = Module::parse(&bytes) else {
            // Only an implausible header (function none/unknown, bad dependency) is refused.
            prop_assert!(modflash_module::parse::plausibility(&b.info).is_err());
            return Ok(());
        };
        prop_assert_eq!(m.prefix_offset, 0);
        prop_assert_eq!(m.info.platform_id, platform);
        prop_assert_eq!(m.info.function, function);
        prop_assert_eq!(m.info.index, index);
        prop_assert_eq!(m.info.version, version);
        prop_assert_eq!(m.info.start_address, start);
        prop_assert_eq!(m.info.dependencies, [deps.0, deps.1]);
        prop_assert_eq!(m.info.flags, flags);
        prop_assert_eq!(m.size, SizeCheck::Exact);
        prop_assert!(m.crc_ok());
        prop_assert!(m.sha.unwrap().matched.is_some());
        prop_assert_eq!(m.product(), product.map(|(id, version)| Product { id, version }));
        prop_assert_eq!(&m.bytes[m.payload_offset..m.suffix.unwrap().offset], payload.as_slice());
    }
}
