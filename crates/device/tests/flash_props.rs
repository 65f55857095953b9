//! Property tests of the NOR flash rules against a plain reference model: erase sets a whole
//! sector to 0xFF, programming stores old AND new, nothing outside the touched range changes,
//! and a power cut leaves every byte either as before or as a completed operation would.

use modflash_device::{FlashChip, FlashError, Space};
use modflash_module::platform::platform;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Erase(u32),
    Program(u32, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    // The Photon's sectors 3..=5 (16 KB, 64 KB, 128 KB) at 0x0800C000..0x08040000.
    let addr = 0x0800_C000u32..0x0804_0000;
    prop_oneof![
        addr.clone().prop_map(Op::Erase),
        (addr, proptest::collection::vec(any::<u8>(), 1..700)).prop_map(|(a, d)| Op::Program(a, d)),
    ]
}

fn chip() -> FlashChip {
    let p = platform(6).unwrap();
    FlashChip::new(p.layout_for(None).unwrap(), p.mcu)
}

/// The reference model applies an operation to a plain byte vector.
fn apply(model: &mut [u8], base: u32, f: &FlashChip, op: &Op) {
    match op {
        Op::Erase(a) => {
            let (start, size) = f.sector_at(Space::Internal, *a).unwrap();
            let o = (start - base) as usize;
            model[o..o + size as usize].fill(0xFF);
        }
        Op::Program(a, d) => {
            let o = (a - base) as usize;
            let end = (o + d.len()).min(model.len());
            for (m, n) in model[o..end].iter_mut().zip(d) {
                *m &= n;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn flash_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut f = chip();
        let base = 0x0800_0000;
        let mut model = f.read(Space::Internal, base, 0x10_0000).unwrap().to_vec();
        for op in &ops {
            let r = match op {
                Op::Erase(a) => f.erase_sector(Space::Internal, *a).map(|_| ()),
                Op::Program(a, d) => f.program(Space::Internal, *a, d),
            };
            match r {
                Ok(()) => apply(&mut model, base, &f, op),
                Err(FlashError::OutOfBounds { .. }) => {} // nothing changes
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            prop_assert!(f.read(Space::Internal, base, 0x10_0000).unwrap() == model.as_slice());
        }
    }

    #[test]
    fn a_power_cut_only_touches_the_interrupted_operation(
        ops in proptest::collection::vec(op(), 1..20),
        cut in 1u64..60,
    ) {
        let mut f = chip();
        let base = 0x0800_0000;
        f.cut_power_after(cut);
        let mut model = f.read(Space::Internal, base, 0x10_0000).unwrap().to_vec();
        for op in &ops {
            let before = model.clone();
            let r = match op {
                Op::Erase(a) => f.erase_sector(Space::Internal, *a).map(|_| ()),
                Op::Program(a, d) => f.program(Space::Internal, *a, d),
            };
            match r {
                Ok(()) => apply(&mut model, base, &f, op),
                Err(FlashError::OutOfBounds { .. }) => {}
                Err(FlashError::PowerLost) => {
                    // Every byte is either as it was or as the completed operation leaves it.
                    let mut done = before.clone();
                    apply(&mut done, base, &f, op);
                    let now = f.read(Space::Internal, base, 0x10_0000).unwrap();
                    for i in 0..now.len() {
                        prop_assert!(now[i] == before[i] || now[i] == done[i], "byte {i:#x}");
                    }
                    // And nothing more happens until power returns.
                    prop_assert_eq!(f.program(Space::Internal, 0x0800_C000, &[0]), Err(FlashError::PowerLost));
                    return Ok(());
                }
            }
        }
    }
}
