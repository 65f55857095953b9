//! Fuzz the DfuSe memory-layout parser: no panics, and Display is a fixed point of parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_dfu::MemoryLayout;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(layout) = MemoryLayout::parse(&s) {
        let printed = layout.to_string();
        let again = MemoryLayout::parse(&printed).expect("Display output must parse");
        assert_eq!(again, layout);
        assert_eq!(again.to_string(), printed);
        for seg in layout.segments() {
            let page = seg.page_of(seg.start).expect("segment start is in the segment");
            assert_eq!(page.address, seg.start);
            let last = (seg.end - 1) as u32;
            assert!(seg.page_of(last).is_some());
        }
        let probe = u32::from_le_bytes([
            data.first().copied().unwrap_or(0),
            data.get(1).copied().unwrap_or(0),
            data.get(2).copied().unwrap_or(0),
            data.get(3).copied().unwrap_or(0),
        ]);
        if let Some(p) = layout.page_at(probe) {
            assert!(p.address <= probe && u64::from(probe) < p.end());
        }
    }
});
