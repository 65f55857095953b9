//! Property tests: layout round trips, panic-free parsers, .dfu round trips, and an engine that
//! never reports a download as done unless the device model really stored the data.

mod support;

use modflash_dfu::descriptor::{parse_langids, parse_string_descriptor};
use modflash_dfu::dfufile::{detect_suffix, dfu_crc, split_suffix};
use modflash_dfu::{
    ConfigDescriptor, DeviceDescriptor, DfuSe, DfuseElement, DfuseFile, DfuseTarget,
    FunctionalDescriptor, MemoryLayout, TransferError,
};
use proptest::prelude::*;
use support::*;

// ------------------------------------------------------------------ layout strings

fn group() -> impl Strategy<Value = (String, u64)> {
    (
        0u32..1000,
        1usize..=4,
        1u32..1000,
        1usize..=4,
        prop::sample::select(vec!["B", "K", "M", " ", ""]),
        prop::char::range('a', 'g'),
    )
        .prop_map(|(count, cw, size, sw, unit, t)| {
            let mult: u64 = match unit {
                "K" => 1024,
                "M" => 1 << 20,
                _ => 1,
            };
            (
                format!("{count:0cw$}*{size:0sw$}{unit}{t}"),
                u64::from(count) * u64::from(size) * mult,
            )
        })
}

fn region() -> impl Strategy<Value = (String, bool)> {
    (any::<u32>(), prop::collection::vec(group(), 1..5)).prop_map(|(addr, groups)| {
        let total: u64 = groups.iter().map(|g| g.1).sum();
        let body: Vec<String> = groups.into_iter().map(|g| g.0).collect();
        (
            format!("/0x{addr:08X}/{}", body.join(",")),
            u64::from(addr) + total <= 1 << 32,
        )
    })
}

fn layout_string() -> impl Strategy<Value = (String, bool)> {
    (
        "[A-Za-z0-9 _.@-]{1,20}",
        prop::collection::vec(region(), 1..4),
    )
        .prop_map(|(name, regions)| {
            let fits = regions.iter().all(|r| r.1);
            let body: String = regions.into_iter().map(|r| r.0).collect();
            (format!("@{name}{body}"), fits)
        })
}

proptest! {
    #[test]
    fn layout_parse_display_round_trip((s, fits) in layout_string()) {
        match MemoryLayout::parse(&s) {
            Ok(l) => {
                prop_assert!(fits, "accepted an overflowing layout {s}");
                prop_assert_eq!(l.to_string(), s);
                // Every segment's pages tile it exactly.
                for seg in l.segments() {
                    prop_assert_eq!((seg.end - u64::from(seg.start)) % u64::from(seg.page_size), 0);
                    let last = (seg.end - 1) as u32;
                    let p = seg.page_of(last).unwrap();
                    prop_assert_eq!(p.end(), seg.end);
                }
            }
            Err(e) => prop_assert!(!fits, "rejected {s}: {e}"),
        }
    }

    #[test]
    fn layout_parser_never_panics(s in "(@|)[ -~]{0,60}") {
        if let Ok(l) = MemoryLayout::parse(&s) {
            // Display is a fixed point of parsing.
            let again = MemoryLayout::parse(&l.to_string()).unwrap();
            prop_assert_eq!(&again, &l);
            let _ = l.page_at(0x0800_0000);
        }
    }

    #[test]
    fn layout_parser_never_panics_on_near_valid(s in "@[A-Za-z ]{0,4}(/0[xX][0-9a-fA-F]{0,9}/([0-9]{0,11}\\*?[0-9]{0,11}[BKM a-h\u{e9}]{0,3},?){0,4}){0,3}") {
        let _ = MemoryLayout::parse(&s);
    }

    #[test]
    fn any_unicode_layout_never_panics(s in any::<String>()) {
        let _ = MemoryLayout::parse(&s);
        let _ = MemoryLayout::parse(&format!("@{s}"));
    }
}

// ------------------------------------------------------------------ descriptors

fn photon_config() -> Vec<u8> {
    let mut c = vec![0x09, 0x02, 0x24, 0x00, 0x01, 0x01, 0x02, 0xC0, 0x32];
    c.extend([0x09, 0x04, 0x00, 0x00, 0x00, 0xFE, 0x01, 0x02, 0x06]);
    c.extend([0x09, 0x04, 0x00, 0x01, 0x00, 0xFE, 0x01, 0x02, 0x07]);
    c.extend([0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01]);
    c
}

proptest! {
    #[test]
    fn descriptor_parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = DeviceDescriptor::parse(&b);
        let _ = ConfigDescriptor::parse(&b);
        let _ = FunctionalDescriptor::parse(&b);
        let _ = parse_string_descriptor(&b);
        let _ = parse_langids(&b);
    }

    #[test]
    fn mutated_config_descriptor_never_panics(
        edits in prop::collection::vec((0usize..36, any::<u8>()), 1..6),
        cut in 0usize..=36,
    ) {
        let mut c = photon_config();
        for (i, v) in edits {
            c[i] = v;
        }
        c.truncate(cut);
        if let Ok(cfg) = ConfigDescriptor::parse(&c) {
            let _ = cfg.functional_descriptor();
            prop_assert!(cfg.interfaces.len() <= 4);
        }
    }
}

// ------------------------------------------------------------------ .dfu files

fn element() -> impl Strategy<Value = DfuseElement> {
    (any::<u32>(), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(address, data)| DfuseElement { address, data })
}

fn target() -> impl Strategy<Value = DfuseTarget> {
    (
        any::<u8>(),
        prop::option::of(prop::collection::vec(1u8..=255, 0..=255)),
        prop::collection::vec(element(), 0..4),
    )
        .prop_map(|(alt, name, elements)| DfuseTarget {
            alt,
            name,
            elements,
        })
}

fn dfuse_file() -> impl Strategy<Value = DfuseFile> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        prop::collection::vec(target(), 0..4),
    )
        .prop_map(
            |(vendor_id, product_id, device_version, targets)| DfuseFile {
                vendor_id,
                product_id,
                device_version,
                targets,
            },
        )
}

fn fix_crc(b: &mut [u8]) {
    if b.len() >= 4 {
        let n = b.len() - 4;
        let crc = dfu_crc(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

proptest! {
    #[test]
    fn dfu_write_parse_round_trip(f in dfuse_file()) {
        let bytes = f.to_bytes().unwrap();
        let parsed = DfuseFile::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &f);
        prop_assert_eq!(parsed.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn dfu_parse_never_panics(b in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = DfuseFile::parse(&b);
        let _ = detect_suffix(&b);
        let _ = split_suffix(&b);
    }

    #[test]
    fn mutated_dfu_never_panics(
        f in dfuse_file(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        keep_crc_valid in any::<bool>(),
    ) {
        let mut b = f.to_bytes().unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if keep_crc_valid {
            fix_crc(&mut b);
        }
        let _ = DfuseFile::parse(&b);
        let n = cut.index(b.len() + 1);
        let mut t = b[..n].to_vec();
        fix_crc(&mut t);
        let _ = DfuseFile::parse(&t);
    }
}

// ------------------------------------------------------------------ engine under faults

fn transfer_error() -> impl Strategy<Value = TransferError> {
    prop_oneof![
        Just(TransferError::Stall),
        Just(TransferError::Timeout),
        Just(TransferError::NoDevice),
        Just(TransferError::Other("fault".into())),
    ]
}

fn fault(garbage: bool) -> BoxedStrategy<Fault> {
    let base = prop_oneof![
        transfer_error().prop_map(Fault::Lost),
        transfer_error().prop_map(Fault::ReplyLost),
        (0usize..8).prop_map(Fault::Truncate),
        (0usize..8).prop_map(Fault::ShortOut),
    ];
    if garbage {
        prop_oneof![
            base,
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Fault::Garbage)
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Random faults on an honest device: never a panic, and never Ok unless the data is in
    /// flash. Garbage replies can impersonate success, so they are only injected where the
    /// device itself cannot fail (the unprotected application area).
    #[test]
    fn download_ok_implies_device_stored_the_data(
        particle in any::<bool>(),
        protected in any::<bool>(),
        offset in 0u32..0x6_0000,
        len in 0usize..12_000,
        seed in any::<u8>(),
        faults in prop::collection::vec((0usize..60, any::<bool>()), 0..4),
        picks in prop::collection::vec(fault(true), 4),
        picks_nog in prop::collection::vec(fault(false), 4),
        slow in any::<bool>(),
    ) {
        let mut q = if particle { Quirks::particle() } else { Quirks::st() };
        if slow {
            q.erase_poll_ms = 20;
            q.write_poll_ms = 2;
            q.extra_busy_polls = 1;
        }
        let base = if protected { 0x0800_C000 } else { 0x080A_0000 };
        let address = base + offset;
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(13) ^ seed).collect();
        let faults: Vec<(usize, Fault)> = faults
            .into_iter()
            .enumerate()
            .map(|(k, (at, _))| (at, if protected { picks_nog[k].clone() } else { picks[k].clone() }))
            .collect();
        let mut t = Faulty { model: Model::photon(q), faults, n: 0 };
        let result = {
            let mut d = DfuSe::new(&mut t, 0, 0, 4096, photon_layout()).unwrap();
            let r = d.download(address, &data, &mut |_| {});
            let _ = d.verify(address, &data, &mut |_| {});
            let _ = d.leave(address);
            r
        };
        if result.is_ok() && !data.is_empty() {
            prop_assert_eq!(t.model.read(address, data.len()), &data[..]);
            prop_assert!(address >= t.model.protected_below);
        }
        if address < 0x0802_0000 && !data.is_empty() {
            prop_assert!(result.is_err(), "protected write reported as success");
        }
    }

    /// A transport answering with noise: the engine terminates with an error or a value and
    /// never panics.
    #[test]
    fn noise_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), len in 0usize..9000) {
        let mut r = Random { bytes, pos: 0, transfers: 0 };
        {
            let mut d = DfuSe::new(&mut r, 0, 0, 4096, photon_layout()).unwrap();
            let data = vec![0x42; len];
            let _ = d.download(0x080A_0000, &data, &mut |_| {});
            let _ = d.upload(0x080A_0000, len, &mut |_| {});
            let _ = d.verify(0x080A_0000, &data, &mut |_| {});
            let _ = d.leave(0x080A_0000);
            let _ = d.abort_to_idle();
            let _ = d.get_commands();
            let _ = d.mass_erase();
            let _ = d.get_state();
        }
        prop_assert!(r.transfers <= r.bytes.len() + 20);
    }
}
