//! CRC-16/XMODEM and the 8-bit checksum used in block trailers.

/// The CRC-16/XMODEM algorithm of the `crc` crate's catalogue (table computed at compile time).
const XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection, no final XOR).
///
/// The check value of `b"123456789"` is `0x31C3`. On the wire the CRC is sent big-endian.
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    XMODEM.checksum(data)
}

/// 8-bit arithmetic sum of `data` (XMODEM checksum mode).
pub fn checksum8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc_bitwise(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn check_value() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn matches_bitwise() {
        let data: std::vec::Vec<u8> = (0..2000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for len in [0, 1, 2, 127, 128, 1024, 2000] {
            assert_eq!(crc16_xmodem(&data[..len]), crc_bitwise(&data[..len]));
        }
    }

    #[test]
    fn appending_crc_gives_zero_remainder() {
        let data = b"some block payload";
        let crc = crc16_xmodem(data);
        let mut framed = std::vec::Vec::from(&data[..]);
        framed.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(crc16_xmodem(&framed), 0);
    }

    #[test]
    fn checksum_wraps() {
        assert_eq!(checksum8(&[0xFF, 0x02]), 0x01);
        assert_eq!(checksum8(&[]), 0);
    }
}
