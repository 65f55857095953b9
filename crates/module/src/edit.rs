//! Building and editing modules: create from a payload, change header fields, recompute
//! SHA-256 and CRC, compress and decompress, combine and split, add and remove extensions.

use alloc::{vec, vec::Vec};
use core::fmt;

use crate::checksum::{crc32, sha256};
use crate::extension::{ExtensionKind, RawExtension};
use crate::header::{Dependency, ModuleFlags, ModuleFunction, ModuleInfo};
use crate::parse::{
    chain, Module, NotAModule, Product, ShaCoverage, BASE_SUFFIX_SIZE, COMPRESSION_HEADER_SIZE,
};

/// Why an edit could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditError {
    /// The input is not a module.
    NotAModule(NotAModule),
    /// The input module is damaged in a way that makes the edit meaningless.
    Damaged(&'static str),
    /// The edit does not apply to this module.
    Unsupported(&'static str),
    /// The result would not fit the 32-bit address space or a 16-bit length field.
    TooLarge,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAModule(why) => write!(f, "not a module: {why}"),
            Self::Damaged(what) => write!(f, "the module is damaged: {what}"),
            Self::Unsupported(what) => f.write_str(what),
            Self::TooLarge => f.write_str("the result would be too large for a module"),
        }
    }
}

/// Assembles a module: `[vector table][header][prefix extensions][payload][suffix][CRC]`.
/// `end_address`, the suffix size, SHA-256 and CRC are computed by [`ModuleBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleBuilder {
    /// Header fields; `end_address` is overwritten when building.
    pub info: ModuleInfo,
    /// Bytes before the header (a vector table or image header); its length is the prefix offset.
    pub vector_table: Vec<u8>,
    /// Encoded prefix extensions including the END extension (empty = none).
    pub prefix_extensions: Vec<u8>,
    /// The module body between the prefix and the suffix.
    pub payload: Vec<u8>,
    /// Suffix bytes below the 36-byte base suffix (product fields or suffix extensions).
    pub suffix_extra: Vec<u8>,
    /// The suffix's reserved field.
    pub suffix_reserved: u16,
    /// What the SHA-256 covers.
    pub sha_coverage: ShaCoverage,
}

impl ModuleBuilder {
    /// A module of `function`/`index` at `version` for `platform_id`, starting at `start_address`,
    /// with an empty payload, no dependencies and a 40-byte suffix ("not a product").
    pub fn new(
        platform_id: u16,
        function: ModuleFunction,
        index: u8,
        version: u16,
        start_address: u32,
    ) -> Self {
        Self {
            info: ModuleInfo {
                start_address,
                end_address: start_address,
                mcu_target: 0,
                flags: ModuleFlags::default(),
                version,
                platform_id,
                function,
                index,
                dependencies: [Dependency::NONE; 2],
            },
            vector_table: Vec::new(),
            prefix_extensions: Vec::new(),
            payload: Vec::new(),
            suffix_extra: legacy_product(Product {
                id: 0xFFFF,
                version: 0xFFFF,
            }),
            suffix_reserved: 0,
            sha_coverage: ShaCoverage::Whole,
        }
    }

    /// Decomposes a parsed module so that `build()` reproduces it byte for byte (when its
    /// SHA-256 and CRC were correct).
    pub fn from_module(m: &Module<'_>) -> Result<Self, EditError> {
        let suffix = m
            .suffix
            .map_err(|_| EditError::Damaged("its suffix is unreadable"))?;
        if m.size == crate::parse::SizeCheck::EndBeforeStart {
            return Err(EditError::Damaged(
                "its end address is below its start address",
            ));
        }
        let b = m.bytes;
        let header_end = m.prefix_offset + ModuleInfo::SIZE;
        Ok(Self {
            info: m.info,
            vector_table: b[..m.prefix_offset].to_vec(),
            prefix_extensions: b[header_end..m.payload_offset].to_vec(),
            payload: b[m.payload_offset..suffix.offset].to_vec(),
            suffix_extra: b[suffix.offset..b.len() - 4 - BASE_SUFFIX_SIZE].to_vec(),
            suffix_reserved: suffix.reserved,
            sha_coverage: m.sha.and_then(|s| s.matched).unwrap_or(ShaCoverage::Whole),
        })
    }

    /// Parses `bytes` and decomposes the first module.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EditError> {
        Self::from_module(&Module::parse(bytes).map_err(EditError::NotAModule)?)
    }

    /// Sets dependency slot 0 or 1.
    pub fn dependency(mut self, slot: usize, dep: Dependency) -> Self {
        if let Some(d) = self.info.dependencies.get_mut(slot) {
            *d = dep;
        }
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the bytes before the header.
    pub fn vector_table(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vector_table = bytes.into();
        self
    }

    /// Uses a 40-byte suffix with these product fields.
    pub fn product(mut self, product: Product) -> Self {
        self.suffix_extra = legacy_product(product);
        self
    }

    /// Uses the bare 36-byte suffix (no product fields).
    pub fn base_suffix(mut self) -> Self {
        self.suffix_extra.clear();
        self
    }

    /// Appends a prefix extension (the END extension is kept last).
    pub fn prefix_extension(mut self, kind: ExtensionKind, payload: &[u8]) -> Self {
        let end = encode_extension(ExtensionKind::End, &[]);
        if self.prefix_extensions.ends_with(&end) {
            self.prefix_extensions
                .truncate(self.prefix_extensions.len() - end.len());
        }
        self.prefix_extensions
            .extend_from_slice(&encode_extension(kind, payload));
        self.prefix_extensions.extend_from_slice(&end);
        self
    }

    /// Appends a suffix extension. A legacy 4-byte product block is replaced by a
    /// PRODUCT_DATA extension first, so the suffix stays well-formed.
    pub fn suffix_extension(mut self, kind: ExtensionKind, payload: &[u8]) -> Self {
        if self.suffix_extra.len() == 4 {
            let id = u16::from_le_bytes([self.suffix_extra[0], self.suffix_extra[1]]);
            let version = u16::from_le_bytes([self.suffix_extra[2], self.suffix_extra[3]]);
            self.suffix_extra.clear();
            let mut data = Vec::with_capacity(6);
            data.extend_from_slice(&((u32::from(id) << 16) | 0xFFFF).to_le_bytes());
            data.extend_from_slice(&version.to_le_bytes());
            self.suffix_extra
                .extend_from_slice(&encode_extension(kind, payload));
            self.suffix_extra
                .extend_from_slice(&encode_extension(ExtensionKind::ProductData, &data));
        } else {
            let mut ext = encode_extension(kind, payload);
            ext.extend_from_slice(&self.suffix_extra);
            self.suffix_extra = ext;
        }
        self
    }

    /// Assembles the module, computing the end address, suffix size, SHA-256 and CRC.
    pub fn build(&self) -> Result<Vec<u8>, EditError> {
        let prefix_offset = self.vector_table.len();
        let payload_start = prefix_offset + ModuleInfo::SIZE + self.prefix_extensions.len();
        let suffix_start = payload_start + self.payload.len();
        let suffix_size = self.suffix_extra.len() + BASE_SUFFIX_SIZE;
        let total = suffix_start + suffix_size + 4;
        let suffix_size = u16::try_from(suffix_size).map_err(|_| EditError::TooLarge)?;
        let module_length = u32::try_from(total - 4).map_err(|_| EditError::TooLarge)?;
        let mut info = self.info;
        info.end_address = info
            .start_address
            .checked_add(module_length)
            .ok_or(EditError::TooLarge)?;
        info.flags = info.flags.with(
            ModuleFlags::PREFIX_EXTENSIONS,
            !self.prefix_extensions.is_empty(),
        );

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.vector_table);
        out.extend_from_slice(&info.to_bytes());
        out.extend_from_slice(&self.prefix_extensions);
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.suffix_extra);
        out.extend_from_slice(&self.suffix_reserved.to_le_bytes());
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(&suffix_size.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let sha = match self.sha_coverage {
            ShaCoverage::Whole => sha256(&out[..total - 38]),
            ShaCoverage::Payload => sha256(&out[payload_start..suffix_start]),
        };
        out[total - 38..total - 6].copy_from_slice(&sha);
        let crc = crc32(&out[..total - 4]);
        out[total - 4..].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

fn legacy_product(p: Product) -> Vec<u8> {
    let mut v = Vec::with_capacity(4);
    v.extend_from_slice(&p.id.to_le_bytes());
    v.extend_from_slice(&p.version.to_le_bytes());
    v
}

/// Encodes one extension: `u16 type, u16 length (incl. header), payload`.
pub fn encode_extension(kind: ExtensionKind, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + 4).min(usize::from(u16::MAX));
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&kind.to_u16().to_le_bytes());
    v.extend_from_slice(&(len as u16).to_le_bytes());
    v.extend_from_slice(&payload[..len - 4]);
    v
}

/// Rebuilds the first module of `bytes` after `edit` changes its parts; SHA-256 and CRC are
/// recomputed. Example: `edit_module(&bytes, |b| b.info.version = 7)`.
pub fn edit_module(
    bytes: &[u8],
    edit: impl FnOnce(&mut ModuleBuilder),
) -> Result<Vec<u8>, EditError> {
    let mut builder = ModuleBuilder::from_bytes(bytes)?;
    edit(&mut builder);
    builder.build()
}

/// Recomputes the SHA-256 (with the module's own coverage) and the CRC of a module in place.
pub fn update_checksums(bytes: &mut [u8]) -> Result<(), EditError> {
    let rebuilt = edit_module(bytes, |_| {})?;
    if rebuilt.len() != bytes.len() {
        return Err(EditError::Damaged(
            "its length does not match its addresses",
        ));
    }
    bytes.copy_from_slice(&rebuilt);
    Ok(())
}

/// Compresses a module the way Device OS expects (spec §1.10): the header (at offset 0) with
/// the COMPRESSED flag, an 8-byte compression header, the raw-Deflate stream of the whole
/// original module (or only its payload for DROP_MODULE_INFO modules), the original suffix.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, EditError> {
    let m = Module::parse(bytes).map_err(EditError::NotAModule)?;
    if !m.is_valid() {
        return Err(EditError::Damaged("only a valid module can be compressed"));
    }
    if m.info.flags.contains(ModuleFlags::COMPRESSED) {
        return Err(EditError::Unsupported("the module is already compressed"));
    }
    if m.info.flags.contains(ModuleFlags::COMBINED) {
        return Err(EditError::Unsupported(
            "split a combined module before compressing it",
        ));
    }
    let original = ModuleBuilder::from_module(&m)?;
    let drop_info = m.info.flags.contains(ModuleFlags::DROP_MODULE_INFO);
    let source: &[u8] = if drop_info {
        &original.payload
    } else {
        m.bytes
    };
    let original_size = u32::try_from(source.len()).map_err(|_| EditError::TooLarge)?;
    let deflated = miniz_oxide::deflate::compress_to_vec(source, 9);
    let mut payload = Vec::with_capacity(COMPRESSION_HEADER_SIZE + deflated.len());
    payload.extend_from_slice(&(COMPRESSION_HEADER_SIZE as u16).to_le_bytes());
    payload.push(0); // method: raw Deflate
    payload.push(0); // window bits: default (15)
    payload.extend_from_slice(&original_size.to_le_bytes());
    payload.extend_from_slice(&deflated);
    let mut container = original;
    container.vector_table.clear();
    container.payload = payload;
    container.info.flags = container.info.flags.with(ModuleFlags::COMPRESSED, true);
    container.build()
}

/// Reverses [`compress`]: inflates the payload and restores the original module.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, EditError> {
    let m = Module::parse(bytes).map_err(EditError::NotAModule)?;
    let c = m
        .compression
        .ok_or(EditError::Unsupported("the module is not compressed"))?;
    if !m.crc_ok() {
        return Err(EditError::Damaged("its CRC does not match"));
    }
    let data = m
        .bytes
        .get(c.data_offset..c.data_offset + c.data_len)
        .ok_or(EditError::Damaged(
            "its compressed data is not inside the module",
        ))?;
    let inflated =
        miniz_oxide::inflate::decompress_to_vec_with_limit(data, c.original_size as usize)
            .map_err(|_| EditError::Damaged("its compressed data does not inflate"))?;
    if inflated.len() != c.original_size as usize {
        return Err(EditError::Damaged(
            "it inflates to a different size than declared",
        ));
    }
    if !m.info.flags.contains(ModuleFlags::DROP_MODULE_INFO) {
        return Ok(inflated);
    }
    let mut restored = ModuleBuilder::from_module(&m)?;
    restored.payload = inflated;
    restored.info.flags = restored.info.flags.with(ModuleFlags::COMPRESSED, false);
    restored.build()
}

/// Concatenates modules into one combined image: every module but the last gets the COMBINED
/// flag (and new SHA-256 and CRC).
pub fn combine(modules: &[&[u8]]) -> Result<Vec<u8>, EditError> {
    let mut out = Vec::new();
    for (i, bytes) in modules.iter().enumerate() {
        let last = i + 1 == modules.len();
        let mut b = ModuleBuilder::from_bytes(bytes)?;
        b.info.flags = b.info.flags.with(ModuleFlags::COMBINED, !last);
        out.extend_from_slice(&b.build()?);
    }
    Ok(out)
}

/// Splits a combined image into its modules, clearing the COMBINED flag of each.
pub fn split(bytes: &[u8]) -> Result<Vec<Vec<u8>>, EditError> {
    let mut out = Vec::new();
    for m in chain(bytes) {
        let m = m.map_err(EditError::NotAModule)?;
        let mut b = ModuleBuilder::from_module(&m)?;
        b.info.flags = b.info.flags.with(ModuleFlags::COMBINED, false);
        out.push(b.build()?);
    }
    Ok(out)
}

/// Lists the prefix and suffix extensions of a module, prefix first.
pub fn list_extensions<'a>(m: &Module<'a>) -> Vec<RawExtension<'a>> {
    m.prefix_extensions()
        .chain(m.suffix_extensions())
        .filter_map(Result::ok)
        .filter(|e| e.kind != ExtensionKind::End)
        .collect()
}

/// Adds a suffix extension to a module.
pub fn add_suffix_extension(
    bytes: &[u8],
    kind: ExtensionKind,
    payload: &[u8],
) -> Result<Vec<u8>, EditError> {
    let b = ModuleBuilder::from_bytes(bytes)?.suffix_extension(kind, payload);
    b.build()
}

/// Removes every prefix and suffix extension of `kind` from a module.
pub fn remove_extensions(bytes: &[u8], kind: ExtensionKind) -> Result<Vec<u8>, EditError> {
    let m = Module::parse(bytes).map_err(EditError::NotAModule)?;
    if kind == ExtensionKind::End {
        return Err(EditError::Unsupported(
            "the END extension cannot be removed",
        ));
    }
    let mut b = ModuleBuilder::from_module(&m)?;
    let keep = |e: &RawExtension<'_>| e.kind != kind;
    let mut prefix = Vec::new();
    for e in m.prefix_extensions().filter_map(Result::ok).filter(keep) {
        if e.kind != ExtensionKind::End {
            prefix.extend_from_slice(&encode_extension(e.kind, e.payload));
        }
    }
    if !prefix.is_empty() {
        prefix.extend_from_slice(&encode_extension(ExtensionKind::End, &[]));
    }
    b.prefix_extensions = prefix;
    if m.suffix_extensions().next().is_some() {
        let mut suffix = Vec::new();
        for e in m.suffix_extensions().filter_map(Result::ok).filter(keep) {
            suffix.extend_from_slice(&encode_extension(e.kind, e.payload));
        }
        b.suffix_extra = suffix;
    }
    b.build()
}

/// Puts `payloads` into a module as extensions of `kind`, in place of the ones of `kind` it
/// has (none: it loses them), where binary-version-reader's `addModuleExtensions` with
/// `replaceWithSameType` puts them:
///
/// - in the **prefix** when the module has prefix extensions already or its region grows down
///   from a fixed end (the P2 family's application): the end address stays, the start moves
///   down by what the prefix grows, kept 8-byte aligned by the END extension's padding, and
///   the suffix's DYNAMIC_LOCATION names the new start;
/// - in the **suffix** otherwise, before the extensions it keeps; an END closes the list
///   unless PRODUCT_DATA does, and without a PRODUCT_DATA extension the raw product id and
///   version (0xFFFF when the module had none) stay right below the base suffix.
///
/// For a module without extensions of `kind` the result is byte for byte
/// binary-version-reader's. One difference, deliberate: when the prefix has extensions
/// already, binary-version-reader appends the new ones after the old END, where Device OS,
/// which stops at the first END, never reads them; here the list keeps one END, last.
pub fn replace_extensions(
    bytes: &[u8],
    kind: ExtensionKind,
    payloads: &[Vec<u8>],
) -> Result<Vec<u8>, EditError> {
    if matches!(kind, ExtensionKind::End | ExtensionKind::Invalid) {
        return Err(EditError::Unsupported(
            "END marks the end of a list; it is not replaced",
        ));
    }
    let m = Module::parse(bytes).map_err(EditError::NotAModule)?;
    if m.info.flags.contains(ModuleFlags::COMPRESSED) {
        return Err(EditError::Unsupported(
            "extensions cannot be changed in a compressed module: decompress it first",
        ));
    }
    if m.info.flags.contains(ModuleFlags::COMBINED) {
        return Err(EditError::Unsupported(
            "extensions cannot be changed in a combined module: split it first",
        ));
    }
    if m.size != crate::parse::SizeCheck::Exact {
        return Err(EditError::Damaged(
            "its length does not match its addresses",
        ));
    }
    let malformed = |_| EditError::Damaged("its extensions are malformed");
    let prefix: Vec<RawExtension<'_>> = m
        .prefix_extensions()
        .collect::<Result<_, _>>()
        .map_err(malformed)?;
    let suffix: Vec<RawExtension<'_>> = m
        .suffix_extensions()
        .collect::<Result<_, _>>()
        .map_err(malformed)?;
    let mut added = Vec::new();
    for p in payloads {
        if p.len() + 4 > usize::from(u16::MAX) {
            return Err(EditError::TooLarge);
        }
        added.push(encode_extension(kind, p));
    }
    let slot = m.info.slot();
    let grows_down = m
        .platform
        .layouts()
        .iter()
        .any(|l| l.main_bounds(slot).is_some_and(|b| b.fixed_end));
    let mut b = ModuleBuilder::from_module(&m)?;
    if m.info.flags.contains(ModuleFlags::PREFIX_EXTENSIONS) || grows_down {
        if m.prefix_offset != 0 {
            return Err(EditError::Unsupported(
                "prefix extensions need the header at the start of the module",
            ));
        }
        let mut list: Vec<u8> = prefix
            .iter()
            .filter(|e| e.kind != kind && e.kind != ExtensionKind::End)
            .flat_map(|e| encode_extension(e.kind, e.payload))
            .collect();
        added.iter().for_each(|e| list.extend_from_slice(e));
        let rest = b.payload.len() + b.suffix_extra.len() + BASE_SUFFIX_SIZE;
        let unpadded = ModuleInfo::SIZE + list.len() + rest + usize::from(!list.is_empty()) * 4;
        let length = |total: usize| u32::try_from(total).map_err(|_| EditError::TooLarge);
        let end = m.info.end_address;
        let unaligned_start = end
            .checked_sub(length(unpadded)?)
            .ok_or(EditError::TooLarge)?;
        if !list.is_empty() {
            let padding = (unaligned_start % 8) as usize;
            list.extend_from_slice(&encode_extension(ExtensionKind::End, &vec![0; padding]));
        }
        let start = end
            .checked_sub(length(ModuleInfo::SIZE + list.len() + rest)?)
            .ok_or(EditError::TooLarge)?;
        b.prefix_extensions = list;
        b.info.start_address = start;
        if let Ok(s) = m.suffix {
            for e in suffix
                .iter()
                .filter(|e| e.kind == ExtensionKind::DynamicLocation)
            {
                let at = e.offset + 4 - s.offset;
                if let Some(field) = b.suffix_extra.get_mut(at..at + 4) {
                    field.copy_from_slice(&start.to_le_bytes());
                }
            }
        }
    } else {
        let mut list: Vec<(ExtensionKind, Vec<u8>)> =
            added.into_iter().map(|e| (kind, e)).collect();
        list.extend(
            suffix
                .iter()
                .filter(|e| e.kind != kind)
                .map(|e| (e.kind, encode_extension(e.kind, e.payload))),
        );
        let closed = matches!(
            list.last(),
            None | Some((ExtensionKind::End | ExtensionKind::ProductData, _))
        );
        if !closed {
            list.push((
                ExtensionKind::End,
                encode_extension(ExtensionKind::End, &[]),
            ));
        }
        let has_product_data = list.iter().any(|(k, _)| *k == ExtensionKind::ProductData);
        let had_product = m.product().is_some();
        let mut extra: Vec<u8> = list.into_iter().flat_map(|(_, e)| e).collect();
        if !has_product_data && (!extra.is_empty() || had_product) {
            let p = m.product().unwrap_or(Product {
                id: 0xFFFF,
                version: 0xFFFF,
            });
            extra.extend_from_slice(&legacy_product(p));
        }
        b.suffix_extra = extra;
    }
    let out = b.build()?;
    let fits =
        |r: &crate::parse::RegionCheck| !matches!(r, crate::parse::RegionCheck::OutOfRange { .. });
    match Module::parse(&out) {
        Ok(rebuilt) if fits(&rebuilt.region) || !fits(&m.region) => Ok(out),
        _ => Err(EditError::TooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{RegionCheck, SizeCheck};
    use std::{vec, vec::Vec};

    fn photon_app(payload_len: usize) -> Vec<u8> {
        ModuleBuilder::new(6, ModuleFunction::UserPart, 1, 6, 0x080A_0000)
            .dependency(0, Dependency::new(ModuleFunction::SystemPart, 2, 1502))
            .payload((0..payload_len).map(|i| (i * 7) as u8).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn built_module_parses_back_valid() {
        let bytes = photon_app(1000);
        let m = Module::parse(&bytes).unwrap();
        assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
        assert_eq!(m.size, SizeCheck::Exact);
        assert_eq!(m.info.end_address as usize - 0x080A_0000 + 4, bytes.len());
        assert!(matches!(m.region, RegionCheck::InRegion { .. }));
        assert_eq!(
            ModuleBuilder::from_module(&m).unwrap().build().unwrap(),
            bytes
        );
    }

    #[test]
    fn compress_round_trip() {
        let bytes = photon_app(20_000);
        let c = compress(&bytes).unwrap();
        let m = Module::parse(&c).unwrap();
        assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
        assert!(c.len() < bytes.len());
        assert_eq!(decompress(&c).unwrap(), bytes);
    }

    #[test]
    fn combine_split_round_trip() {
        let a = photon_app(100);
        let b = photon_app(300);
        let combined = combine(&[&a, &b]).unwrap();
        let parts: Vec<_> = chain(&combined).map(|m| m.unwrap().is_valid()).collect();
        assert_eq!(parts, [true, true]);
        assert_eq!(split(&combined).unwrap(), [a, b]);
    }

    #[test]
    fn suffix_extensions_add_and_remove() {
        let bytes = photon_app(64);
        let with = add_suffix_extension(&bytes, ExtensionKind::Name, b"blink").unwrap();
        let m = Module::parse(&with).unwrap();
        assert!(m.is_valid(), "{:?}", m.problems().collect::<Vec<_>>());
        let kinds: Vec<_> = list_extensions(&m).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ExtensionKind::Name, ExtensionKind::ProductData]);
        let without = remove_extensions(&with, ExtensionKind::Name).unwrap();
        let m = Module::parse(&without).unwrap();
        assert!(m.is_valid());
        assert_eq!(list_extensions(&m).len(), 1);
    }

    #[test]
    fn prefix_extensions_round_trip() {
        let bytes = ModuleBuilder::new(32, ModuleFunction::UserPart, 1, 6, 0x085F_0000)
            .prefix_extension(ExtensionKind::Name, b"app")
            .payload(vec![1, 2, 3])
            .build()
            .unwrap();
        let m = Module::parse(&bytes).unwrap();
        assert!(m.prefix_extensions.is_ok());
        assert_eq!(list_extensions(&m)[0].payload, b"app");
        assert_eq!(m.payload_offset, 24 + 7 + 4);
    }
}
