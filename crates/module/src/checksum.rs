//! CRC-32 and SHA-256 as modules use them.

use sha2::{Digest, Sha256};

/// Standard CRC-32 (IEEE 802.3, zlib): reflected 0xEDB88320, init and final XOR 0xFFFFFFFF.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf],);
    }
}
