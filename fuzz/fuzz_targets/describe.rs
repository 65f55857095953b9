//! Fuzz the describe reader: any text is read or refused with the fields named, never a
//! panic; a document that reads settles its platform (or says why not) and gives a twin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash::describe::{Describe, PlatformHints};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(describe) = Describe::parse(text) else {
        return;
    };
    let _ = describe.clone().settle(&PlatformHints {
        given: None,
        usb: Some((0x2b04, 0xc006)),
        files: &[6, 8],
    });
    if let Ok(settled) = describe.settle(&PlatformHints::default()) {
        let _ = modflash::twin::twin_of(&settled.inventory);
    }
});
