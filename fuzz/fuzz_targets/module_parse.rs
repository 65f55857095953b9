//! Fuzz the module parser: any bytes give a verdict, never a panic; every reported module's
//! checks, extensions and chain can be walked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in modflash_module::chain(data).take(32).flatten() {
        let _ = m.problems().count();
        let _ = m.prefix_extensions().count();
        for e in m.suffix_extensions().flatten() {
            let _ = e.decode();
        }
        let _ = modflash_module::release::release_for_module(&m.info);
    }
    let _ = modflash_module::edit::split(data);
    let _ = modflash_module::edit::decompress(data);
});
