//! `.dfu` files: the DFU suffix (DFU 1.1 appendix B) and the ST DfuSe container (UM0391).

use crate::error::{Error, Result};

/// Length of the standard DFU suffix.
pub const SUFFIX_LEN: usize = 16;
/// bcdDFU of plain DFU 1.0/1.1 files.
pub const DFU_VERSION_1_0: u16 = 0x0100;
/// bcdDFU of DfuSe files.
pub const DFU_VERSION_DFUSE: u16 = 0x011A;
/// Value meaning "any" for bcdDevice, idProduct and idVendor.
pub const ANY_ID: u16 = 0xFFFF;

const PREFIX_LEN: usize = 11;
const TARGET_PREFIX_LEN: usize = 274;
const TARGET_NAME_LEN: usize = 255;
const ELEMENT_HEADER_LEN: usize = 8;

/// The DFU file CRC: reflected CRC-32 (0xEDB88320, init 0xFFFFFFFF) without the final XOR.
pub fn dfu_crc(data: &[u8]) -> u32 {
    !crc32fast::hash(data)
}

/// The DFU suffix at the end of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Suffix {
    /// bcdDevice (0xFFFF = any).
    pub device_version: u16,
    /// idProduct (0xFFFF = any).
    pub product_id: u16,
    /// idVendor (0xFFFF = any).
    pub vendor_id: u16,
    /// bcdDFU: 0x0100 plain DFU, 0x011A DfuSe.
    pub dfu_version: u16,
    /// bLength: suffix length, at least 16.
    pub length: u8,
    /// dwCRC as stored.
    pub crc: u32,
}

impl Suffix {
    /// A 16-byte suffix for the given IDs (the CRC is filled in by [`Suffix::append_to`]).
    pub fn new(vendor_id: u16, product_id: u16, device_version: u16, dfu_version: u16) -> Self {
        Suffix {
            device_version,
            product_id,
            vendor_id,
            dfu_version,
            length: 16,
            crc: 0,
        }
    }

    /// Appends the suffix (as 16 bytes, with a freshly computed CRC) to `payload`.
    pub fn append_to(&self, payload: &mut Vec<u8>) {
        payload.extend_from_slice(&self.device_version.to_le_bytes());
        payload.extend_from_slice(&self.product_id.to_le_bytes());
        payload.extend_from_slice(&self.vendor_id.to_le_bytes());
        payload.extend_from_slice(&self.dfu_version.to_le_bytes());
        payload.extend_from_slice(b"UFD");
        payload.push(SUFFIX_LEN as u8);
        let crc = dfu_crc(payload);
        payload.extend_from_slice(&crc.to_le_bytes());
    }
}

/// What [`detect_suffix`] found at the end of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuffixDetection {
    /// No "UFD" signature (a raw binary).
    Absent,
    /// A suffix with a matching CRC; the payload is the first `payload_len` bytes.
    Valid {
        /// The suffix.
        suffix: Suffix,
        /// Bytes before the suffix.
        payload_len: usize,
    },
    /// A signature but a wrong CRC or impossible length (dfu-util treats this as no suffix).
    Invalid {
        /// The suffix as read.
        suffix: Suffix,
        /// The CRC computed over the file.
        computed_crc: u32,
    },
}

/// Looks for a DFU suffix at the end of `file`.
pub fn detect_suffix(file: &[u8]) -> SuffixDetection {
    let Some(start) = file.len().checked_sub(SUFFIX_LEN) else {
        return SuffixDetection::Absent;
    };
    let s = &file[start..];
    if &s[8..11] != b"UFD" {
        return SuffixDetection::Absent;
    }
    let w = |i: usize| u16::from_le_bytes([s[i], s[i + 1]]);
    let suffix = Suffix {
        device_version: w(0),
        product_id: w(2),
        vendor_id: w(4),
        dfu_version: w(6),
        length: s[11],
        crc: u32::from_le_bytes([s[12], s[13], s[14], s[15]]),
    };
    let computed_crc = dfu_crc(&file[..file.len() - 4]);
    let len = usize::from(suffix.length);
    if computed_crc != suffix.crc || len < SUFFIX_LEN || len > file.len() {
        return SuffixDetection::Invalid {
            suffix,
            computed_crc,
        };
    }
    SuffixDetection::Valid {
        suffix,
        payload_len: file.len() - len,
    }
}

/// Splits a file into payload and valid suffix; files without a valid suffix are all payload.
pub fn split_suffix(file: &[u8]) -> (&[u8], Option<Suffix>) {
    match detect_suffix(file) {
        SuffixDetection::Valid {
            suffix,
            payload_len,
        } => (&file[..payload_len], Some(suffix)),
        _ => (file, None),
    }
}

/// Whether `payload` starts with the DfuSe prefix signature.
pub fn is_dfuse(payload: &[u8]) -> bool {
    payload.starts_with(b"DfuSe")
}

/// One image element: data to be written at an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DfuseElement {
    /// dwElementAddress.
    pub address: u32,
    /// The data.
    pub data: Vec<u8>,
}

/// One target: the elements for one alt setting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DfuseTarget {
    /// bAlternateSetting.
    pub alt: u8,
    /// szTargetName when bTargetNamed is set (bytes up to the first NUL, at most 255).
    pub name: Option<Vec<u8>>,
    /// The elements.
    pub elements: Vec<DfuseElement>,
}

impl DfuseTarget {
    /// The name as text (lossy), if named.
    pub fn name_lossy(&self) -> Option<String> {
        self.name
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
    }
}

/// A DfuSe container (UM0391) with its suffix IDs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DfuseFile {
    /// Suffix idVendor.
    pub vendor_id: u16,
    /// Suffix idProduct.
    pub product_id: u16,
    /// Suffix bcdDevice.
    pub device_version: u16,
    /// The targets.
    pub targets: Vec<DfuseTarget>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.b.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Error::File {
                offset: self.pos,
                reason: format!(
                    "{what} needs {n} bytes but only {} remain",
                    self.b.len().saturating_sub(self.pos)
                ),
            }),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

fn file_err<T>(offset: usize, reason: impl Into<String>) -> Result<T> {
    Err(Error::File {
        offset,
        reason: reason.into(),
    })
}

impl DfuseFile {
    /// Parses a whole `.dfu` file: prefix, targets, elements and a valid DfuSe suffix.
    ///
    /// Rejects bad signatures, versions, CRCs, element overruns, target sizes that disagree with
    /// their elements, and bytes left over before the suffix. DFUImageSize is not checked
    /// (tools disagree whether it includes the suffix; dfu-util ignores it).
    pub fn parse(file: &[u8]) -> Result<Self> {
        let (payload, suffix) = match detect_suffix(file) {
            SuffixDetection::Valid { suffix, payload_len } => (&file[..payload_len], suffix),
            SuffixDetection::Absent => {
                return file_err(file.len(), "no DFU suffix (\"UFD\" signature) at the end")
            }
            SuffixDetection::Invalid { suffix, computed_crc } => {
                return file_err(
                    file.len().saturating_sub(4),
                    format!(
                        "DFU suffix is corrupt: CRC 0x{:08x} stored, 0x{computed_crc:08x} computed, bLength {}",
                        suffix.crc, suffix.length
                    ),
                )
            }
        };
        if suffix.dfu_version != DFU_VERSION_DFUSE {
            return file_err(
                file.len() - 10,
                format!(
                    "bcdDFU is 0x{:04x}, a DfuSe file needs 0x011a",
                    suffix.dfu_version
                ),
            );
        }
        let mut r = Reader { b: payload, pos: 0 };
        let prefix = r.take(PREFIX_LEN, "DfuSe prefix")?;
        if &prefix[..5] != b"DfuSe" {
            return file_err(0, "missing \"DfuSe\" signature");
        }
        if prefix[5] != 1 {
            return file_err(5, format!("DfuSe version {} is not 1", prefix[5]));
        }
        let target_count = prefix[10];
        let mut targets = Vec::new();
        for t in 0..target_count {
            let at = r.pos;
            let tp = r.take(TARGET_PREFIX_LEN, "target prefix")?;
            if &tp[..6] != b"Target" {
                return file_err(at, format!("target {t}: missing \"Target\" signature"));
            }
            let alt = tp[6];
            let named = u32::from_le_bytes([tp[7], tp[8], tp[9], tp[10]]) != 0;
            let raw_name = &tp[11..11 + TARGET_NAME_LEN];
            let name_len = raw_name
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(TARGET_NAME_LEN);
            let name = named.then(|| raw_name[..name_len].to_vec());
            let target_size = u32::from_le_bytes([tp[266], tp[267], tp[268], tp[269]]);
            let element_count = u32::from_le_bytes([tp[270], tp[271], tp[272], tp[273]]);
            let body_start = r.pos;
            let mut elements = Vec::new();
            for e in 0..element_count {
                let address = r.u32("element address")?;
                let size = r.u32("element size")?;
                let data = usize::try_from(size)
                    .ok()
                    .and_then(|n| r.take(n, "element data").ok())
                    .ok_or_else(|| Error::File {
                        offset: r.pos - ELEMENT_HEADER_LEN,
                        reason: format!(
                            "target {t} element {e}: {size} bytes at 0x{address:08x} run past the end of the image"
                        ),
                    })?;
                elements.push(DfuseElement {
                    address,
                    data: data.to_vec(),
                });
            }
            let used = r.pos - body_start;
            if used as u64 != u64::from(target_size) {
                return file_err(
                    at + 266,
                    format!("target {t}: dwTargetSize says {target_size} bytes but its elements take {used}"),
                );
            }
            targets.push(DfuseTarget {
                alt,
                name,
                elements,
            });
        }
        if r.pos != payload.len() {
            return file_err(
                r.pos,
                format!(
                    "{} unexpected bytes after the last target",
                    payload.len() - r.pos
                ),
            );
        }
        Ok(DfuseFile {
            vendor_id: suffix.vendor_id,
            product_id: suffix.product_id,
            device_version: suffix.device_version,
            targets,
        })
    }

    /// Serialises the container with a DfuSe suffix. DFUImageSize is the whole file length,
    /// suffix included (as dfuse-pack writes it). Fails for more than 255 targets, names over
    /// 255 bytes or containing NUL, or sizes over 4 GiB.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let Ok(target_count) = u8::try_from(self.targets.len()) else {
            return file_err(
                10,
                format!("{} targets, at most 255 fit", self.targets.len()),
            );
        };
        let mut out = Vec::new();
        out.extend_from_slice(b"DfuSe");
        out.push(1);
        out.extend_from_slice(&[0; 4]); // DFUImageSize, patched below
        out.push(target_count);
        for (t, target) in self.targets.iter().enumerate() {
            let at = out.len();
            let mut body_len: u64 = 0;
            for e in &target.elements {
                if u32::try_from(e.data.len()).is_err() {
                    return file_err(at, format!("target {t}: element over 4 GiB"));
                }
                body_len += (ELEMENT_HEADER_LEN + e.data.len()) as u64;
            }
            let Ok(body_len) = u32::try_from(body_len) else {
                return file_err(at, format!("target {t}: over 4 GiB"));
            };
            let Ok(element_count) = u32::try_from(target.elements.len()) else {
                return file_err(at, format!("target {t}: too many elements"));
            };
            out.extend_from_slice(b"Target");
            out.push(target.alt);
            let mut name = [0u8; TARGET_NAME_LEN];
            match &target.name {
                Some(n) => {
                    if n.len() > TARGET_NAME_LEN || n.contains(&0) {
                        return file_err(
                            at + 11,
                            format!("target {t}: name must be at most 255 bytes without NUL"),
                        );
                    }
                    name[..n.len()].copy_from_slice(n);
                    out.extend_from_slice(&1u32.to_le_bytes());
                }
                None => out.extend_from_slice(&0u32.to_le_bytes()),
            }
            out.extend_from_slice(&name);
            out.extend_from_slice(&body_len.to_le_bytes());
            out.extend_from_slice(&element_count.to_le_bytes());
            for e in &target.elements {
                out.extend_from_slice(&e.address.to_le_bytes());
                out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
                out.extend_from_slice(&e.data);
            }
        }
        let Ok(image_size) = u32::try_from(out.len() + SUFFIX_LEN) else {
            return file_err(0, "file over 4 GiB");
        };
        out[6..10].copy_from_slice(&image_size.to_le_bytes());
        Suffix::new(
            self.vendor_id,
            self.product_id,
            self.device_version,
            DFU_VERSION_DFUSE,
        )
        .append_to(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib_complement() {
        // zlib.crc32(b"123456789") == 0xCBF43926
        assert_eq!(dfu_crc(b"123456789"), !0xCBF4_3926);
    }

    #[test]
    fn suffix_detection() {
        let mut f = b"firmware".to_vec();
        assert_eq!(detect_suffix(&f), SuffixDetection::Absent);
        Suffix::new(0x2b04, 0xd006, ANY_ID, DFU_VERSION_1_0).append_to(&mut f);
        assert_eq!(f.len(), 24);
        assert_eq!(
            &f[8..20],
            &[0xff, 0xff, 0x06, 0xd0, 0x04, 0x2b, 0x00, 0x01, b'U', b'F', b'D', 16]
        );
        let (payload, s) = split_suffix(&f);
        assert_eq!(payload, b"firmware");
        let s = s.unwrap();
        assert_eq!(
            (s.vendor_id, s.product_id, s.dfu_version),
            (0x2b04, 0xd006, 0x0100)
        );
        f[0] ^= 1;
        assert!(matches!(detect_suffix(&f), SuffixDetection::Invalid { .. }));
        assert_eq!(split_suffix(&f).1, None);
        assert_eq!(detect_suffix(&f[..15]), SuffixDetection::Absent);
    }

    fn sample() -> DfuseFile {
        DfuseFile {
            vendor_id: 0x2b04,
            product_id: 0xd006,
            device_version: 0,
            targets: vec![
                DfuseTarget {
                    alt: 0,
                    name: Some(b"ST...".to_vec()),
                    elements: vec![
                        DfuseElement {
                            address: 0x080A_0000,
                            data: vec![1, 2, 3],
                        },
                        DfuseElement {
                            address: 0x0802_0000,
                            data: vec![],
                        },
                    ],
                },
                DfuseTarget {
                    alt: 1,
                    name: None,
                    elements: vec![DfuseElement {
                        address: 1762,
                        data: vec![9; 64],
                    }],
                },
            ],
        }
    }

    #[test]
    fn container_round_trip_and_layout() {
        let f = sample();
        let b = f.to_bytes().unwrap();
        assert_eq!(&b[..6], b"DfuSe\x01");
        assert_eq!(
            u32::from_le_bytes(b[6..10].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(b[10], 2);
        assert_eq!(&b[11..17], b"Target");
        assert_eq!(b.len(), 11 + 274 + 8 + 3 + 8 + 274 + 8 + 64 + 16);
        assert_eq!(DfuseFile::parse(&b).unwrap(), f);
    }

    #[test]
    fn container_rejections() {
        let good = sample().to_bytes().unwrap();
        let refix = |mut b: Vec<u8>| {
            let n = b.len() - 4;
            let crc = dfu_crc(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut bad_crc = good.clone();
        bad_crc[20] ^= 0xff;
        assert!(DfuseFile::parse(&bad_crc).is_err());
        let mut sig = good.clone();
        sig[0] = b'X';
        assert!(DfuseFile::parse(&refix(sig)).is_err());
        let mut ver = good.clone();
        ver[5] = 2;
        assert!(DfuseFile::parse(&refix(ver)).is_err());
        let mut tsize = good.clone();
        tsize[11 + 266] += 1;
        assert!(DfuseFile::parse(&refix(tsize)).is_err());
        let mut esize = good.clone();
        esize[11 + 274 + 4] = 0xff;
        assert!(DfuseFile::parse(&refix(esize)).is_err());
        let mut extra = good[..good.len() - 16].to_vec();
        extra.push(0);
        Suffix::new(0x2b04, 0xd006, 0, DFU_VERSION_DFUSE).append_to(&mut extra);
        assert!(DfuseFile::parse(&extra).is_err(), "trailing byte");
        let mut plain = good[..good.len() - 16].to_vec();
        Suffix::new(0x2b04, 0xd006, 0, DFU_VERSION_1_0).append_to(&mut plain);
        assert!(DfuseFile::parse(&plain).is_err(), "bcdDFU 0x0100");
        assert!(
            DfuseFile::parse(&good[..good.len() - 16]).is_err(),
            "no suffix"
        );
        let long = DfuseFile {
            targets: vec![DfuseTarget {
                alt: 0,
                name: Some(vec![b'a'; 256]),
                elements: vec![],
            }],
            ..sample()
        };
        assert!(long.to_bytes().is_err());
        let nul = DfuseFile {
            targets: vec![DfuseTarget {
                alt: 0,
                name: Some(b"a\0b".to_vec()),
                elements: vec![],
            }],
            ..sample()
        };
        assert!(nul.to_bytes().is_err());
    }
}
