//! The Nordic SoftDevice's own information structure, from which Device OS derives the radio
//! stack's module version (the SoftDevice "FWID"; S140 7.0.1 is 0x00CA = 202).

/// Offset of the info structure from the SoftDevice's first byte (address 0x1000).
pub const INFO_OFFSET: usize = 0x2000;
/// Magic number at `INFO_OFFSET + 4`.
pub const MAGIC: u32 = 0x51B1_E5DB;

/// The FWID of a SoftDevice image that starts at address 0x1000, if its info structure
/// is intact.
pub fn fwid(image: &[u8]) -> Option<u16> {
    let info = image.get(INFO_OFFSET..INFO_OFFSET + 0x10)?;
    let magic = u32::from_le_bytes([info[4], info[5], info[6], info[7]]);
    (magic == MAGIC).then(|| u16::from_le_bytes([info[12], info[13]]))
}

/// Writes an info structure naming `fwid` into a synthetic SoftDevice image.
pub fn write_info(image: &mut [u8], fwid: u16) {
    if let Some(info) = image.get_mut(INFO_OFFSET..INFO_OFFSET + 0x10) {
        info[..4].copy_from_slice(&[0x2c, 0xff, 0xff, 0xff]);
        info[4..8].copy_from_slice(&MAGIC.to_le_bytes());
        info[8..12].copy_from_slice(&0x0002_7000u32.to_le_bytes());
        info[12..14].copy_from_slice(&fwid.to_le_bytes());
        info[14..16].copy_from_slice(&[0xff, 0xff]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwid_is_read_from_the_real_image() {
        let real = include_bytes!("../../../tests/fixtures/real/argon-softdevice@1.5.0.bin");
        // On the device the 24-byte prefix is dropped: the image starts at 0x1000.
        assert_eq!(fwid(&real[24..]), Some(202));
    }

    #[test]
    fn written_info_reads_back() {
        let mut image = [0u8; INFO_OFFSET + 0x10];
        assert_eq!(fwid(&image), None, "no magic");
        write_info(&mut image, 202);
        assert_eq!(fwid(&image), Some(202));
        assert_eq!(fwid(&image[..INFO_OFFSET + 8]), None, "truncated");
    }
}
