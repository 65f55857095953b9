//! Fuzz the USB descriptor parsers (device, configuration, functional, string): no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_dfu::descriptor::{parse_langids, parse_string_descriptor};
use modflash_dfu::{ConfigDescriptor, DeviceDescriptor, FunctionalDescriptor};

fuzz_target!(|data: &[u8]| {
    let _ = DeviceDescriptor::parse(data);
    let _ = FunctionalDescriptor::parse(data);
    let _ = parse_langids(data);
    if let Ok(s) = parse_string_descriptor(data) {
        assert!(s.encode_utf16().count() <= data.len() / 2);
    }
    if let Ok(cfg) = ConfigDescriptor::parse(data) {
        assert!(usize::from(cfg.total_length) <= data.len());
        // Every interface descriptor takes at least 9 bytes.
        assert!(cfg.interfaces.len() * 9 <= data.len());
        let _ = cfg.functional_descriptor();
        for i in cfg.dfu_interfaces() {
            assert!(i.dfu_mode().is_some());
        }
    }
});
