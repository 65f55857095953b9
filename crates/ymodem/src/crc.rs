//! CRC-16/XMODEM and the 8-bit checksum used in block trailers.

const fn make_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u16; 256] = make_table();

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection, no final XOR).
///
/// The check value of `b"123456789"` is `0x31C3`. On the wire the CRC is sent big-endian.
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        let idx = ((crc >> 8) as u8) ^ b;
        (crc << 8) ^ TABLE[usize::from(idx)]
    })
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
    fn table_matches_bitwise() {
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
