//! Fuzz the .dfu (DfuSe container + suffix) parser: no panics, and parse→write→parse is stable.
//! Each input is parsed as is, then again with a valid DfuSe suffix and CRC forced onto its last
//! 16 bytes, so the fuzzer reaches the container structure behind the CRC check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modflash_dfu::dfufile::{detect_suffix, dfu_crc, split_suffix};
use modflash_dfu::DfuseFile;

fn check(data: &[u8]) {
    let _ = detect_suffix(data);
    let (payload, _) = split_suffix(data);
    assert!(payload.len() <= data.len());
    if let Ok(file) = DfuseFile::parse(data) {
        let bytes = file.to_bytes().expect("a parsed file can be written");
        let again = DfuseFile::parse(&bytes).expect("our own output parses");
        assert_eq!(again, file);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 16 {
        let mut fixed = data.to_vec();
        let n = fixed.len();
        fixed[n - 10..n - 8].copy_from_slice(&0x011Au16.to_le_bytes());
        fixed[n - 8..n - 5].copy_from_slice(b"UFD");
        fixed[n - 5] = 16;
        let crc = dfu_crc(&fixed[..n - 4]);
        fixed[n - 4..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
