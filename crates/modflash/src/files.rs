//! Reading the files a user names (module files, DFU images, describe documents): regular
//! files only, and never more bytes than the largest file of that kind can have, so a FIFO,
//! `/dev/zero` or a huge sparse file is refused at once instead of hanging or filling memory.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use modflash_module::platform::largest_module_region;
use modflash_module::Platform;

/// Room for what a file carries besides the flash image itself: a module's prefix and
/// suffix beyond its region, a `.dfu` container's headers.
const SLACK: u64 = 64 * 1024;

/// The largest describe document read from a file (a device prints a few kilobytes).
pub const MAX_DESCRIBE: u64 = 256 * 1024;

/// The largest zip archive opened (every platform's modules of a few releases fit).
pub const MAX_ARCHIVE: u64 = 1024 * 1024 * 1024;

/// Room for a virtual device's saved state besides its flash (its event log is bounded).
const MAX_DEVICE_STATE: u64 = 4 * 1024 * 1024;

/// What a file is expected to hold: it decides the size bound and the words of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A module file (or modules combined in one file).
    Module,
    /// A file `dfu download` writes (a module, a DfuSe `.dfu` container or a raw image) to a
    /// device with this much flash.
    Image {
        /// Bytes of flash the device has.
        flash_size: u64,
    },
    /// A describe JSON document.
    Describe,
    /// A virtual device's image file (its state and flash).
    VirtualDevice,
    /// An application bundle (a zip of the application and its assets).
    Bundle,
    /// A zip archive of module files (a Device OS release archive, an application bundle):
    /// opened and read entry by entry, never whole.
    Archive,
}

impl Expected {
    /// The most bytes a file of this kind may have.
    pub fn limit(self) -> u64 {
        match self {
            Self::Module => u64::from(largest_module_region()) + SLACK,
            Self::Image { flash_size } => flash_size + SLACK,
            Self::Describe => MAX_DESCRIBE,
            Self::VirtualDevice => {
                let largest_flash = modflash_module::platform::PLATFORMS
                    .iter()
                    .map(Platform::flash_size)
                    .max()
                    .unwrap_or(0);
                largest_flash + MAX_DEVICE_STATE
            }
            Self::Bundle => crate::bundle::MAX_BUNDLE,
            Self::Archive => MAX_ARCHIVE,
        }
    }

    /// What is larger than the limit, in words ("any module file").
    fn bound_words(self) -> &'static str {
        match self {
            Self::Module => "any module file can be",
            Self::Image { .. } => "the device's flash",
            Self::Describe => "any describe document",
            Self::VirtualDevice => "any virtual device's image",
            Self::Bundle => "any application bundle",
            Self::Archive => "any archive of Device OS modules",
        }
    }

    /// What to do with a directory given for a file of this kind.
    fn directory_help(self) -> &'static str {
        match self {
            Self::Module => "name a module file; a folder of Device OS module files is given with --catalog DIR (or added with `modflash catalog add DIR`)",
            Self::Image { .. } => "name the file to write",
            Self::Describe => "a folder of describe documents is given with --inventories DIR",
            Self::VirtualDevice => "remove it: virtual devices are files",
            Self::Bundle => "name the bundle's .zip file",
            Self::Archive => "name the .zip file",
        }
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FileError {
    /// The operating system refused (no such file, no permission, ...).
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(
        code(modflash::file::unreadable),
        help("check the path and permissions")
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A directory where a file was expected.
    #[error("{} is a directory, not a file", path.display())]
    #[diagnostic(code(modflash::file::directory), help("{help}"))]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What to do instead.
        help: &'static str,
    },
    /// A FIFO, a device, a socket: reading it could block forever or never end.
    #[error("{} is {kind}, not a regular file", path.display())]
    #[diagnostic(
        code(modflash::file::special),
        help("name a regular file: modflash reads no device, pipe or socket")
    )]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device").
        kind: &'static str,
    },
    /// Larger than any file of its kind can be; it was not read beyond the limit.
    #[error("{} is {} bytes, larger than {bound} (at most {limit} bytes)", path.display(), size_words(*size, *limit))]
    #[diagnostic(
        code(modflash::file::too_large),
        help("check that this is the file you meant")
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size when known (`None`: it grew past the limit while being read).
        size: Option<u64>,
        /// The most bytes a file of its kind may have.
        limit: u64,
        /// What it is larger than, in words.
        bound: &'static str,
    },
    /// A describe document that is not UTF-8 text.
    #[error("{} is not text (it is not UTF-8)", path.display())]
    #[diagnostic(
        code(modflash::file::not_text),
        help("a describe document is the JSON a device prints for `s`")
    )]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

fn size_words(size: Option<u64>, limit: u64) -> String {
    size.map_or_else(|| format!("more than {limit}"), |s| s.to_string())
}

/// Reads a module file (or modules combined in one file).
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, FileError> {
    read(path, Expected::Module)
}

/// Reads a file `dfu download` writes to a device of `platform`: at most the platform's
/// flash (with room for a `.dfu` container's headers).
pub fn read_image_file(path: &Path, platform: &Platform) -> Result<Vec<u8>, FileError> {
    let flash_size = platform.flash_size();
    let expected = if flash_size == 0 {
        Expected::Module
    } else {
        Expected::Image { flash_size }
    };
    read(path, expected)
}

/// Reads a describe JSON document.
pub fn read_describe_file(path: &Path) -> Result<String, FileError> {
    let bytes = read(path, Expected::Describe)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// Reads `path`, a regular file of at most `expected.limit()` bytes: anything else is
/// refused before a byte is read (its type and size are looked at first, without opening
/// it) or, when it changes meanwhile, as soon as the open file shows it.
pub fn read(path: &Path, expected: Expected) -> Result<Vec<u8>, FileError> {
    let file = open(path, expected)?;
    read_at_most(file, expected.limit())
        .map_err(|source| FileError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| FileError::TooLarge {
            path: path.to_path_buf(),
            size: None,
            limit: expected.limit(),
            bound: expected.bound_words(),
        })
}

/// Opens `path`, a regular file of at most `expected.limit()` bytes, for reading: anything
/// else is refused before it is opened (its type and size are looked at first) or, when it
/// changes meanwhile, as soon as the open file shows it.
pub fn open(path: &Path, expected: Expected) -> Result<File, FileError> {
    let unreadable = |source| FileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let limit = expected.limit();
    let too_large = |size| FileError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
        bound: expected.bound_words(),
    };
    let regular = |meta: &std::fs::Metadata| -> Result<(), FileError> {
        check_type(path, meta.file_type(), expected)?;
        if meta.len() > limit {
            return Err(too_large(Some(meta.len())));
        }
        Ok(())
    };
    regular(&std::fs::metadata(path).map_err(unreadable)?)?;
    // Non-blocking, so that a file replaced by a FIFO since the look above cannot hang the
    // open; never the controlling terminal.
    let file = crate::os::open_input(OpenOptions::new().read(true))
        .open(path)
        .map_err(unreadable)?;
    regular(&file.metadata().map_err(unreadable)?)?;
    Ok(file)
}

fn check_type(path: &Path, kind: FileType, expected: Expected) -> Result<(), FileError> {
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(FileError::Directory {
            path: path.to_path_buf(),
            help: expected.directory_help(),
        });
    }
    Err(FileError::NotRegular {
        path: path.to_path_buf(),
        kind: crate::os::special_file_kind(kind),
    })
}

/// Everything `reader` gives when that is at most `limit` bytes; `None`, after reading
/// `limit + 1` bytes and no more, when it gives more.
fn read_at_most(reader: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_reader_is_read_one_byte_past_the_limit_and_no_further() {
        let mut endless = io::repeat(0);
        assert_eq!(read_at_most(&mut endless, 10).unwrap(), None);
        assert_eq!(
            read_at_most(&[1u8, 2, 3][..], 3).unwrap(),
            Some(vec![1, 2, 3])
        );
        let mut counted = io::repeat(7).take(1000);
        assert_eq!(read_at_most(&mut counted, 99).unwrap(), None);
        assert_eq!(counted.limit(), 1000 - 100, "101 bytes read");
    }

    #[test]
    fn special_files_and_directories_are_named() {
        let err = read_module_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_module_file(dir.path()).unwrap_err();
        assert!(matches!(err, FileError::Directory { .. }), "{err}");
        assert!(
            miette::Diagnostic::help(&err)
                .unwrap()
                .to_string()
                .contains("--catalog DIR"),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_checked_before_reading() {
        use std::fs::File;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        File::create(&path)
            .unwrap()
            .set_len(MAX_DESCRIBE + 1)
            .unwrap();
        let err = read_describe_file(&path).unwrap_err();
        assert!(
            matches!(err, FileError::TooLarge { size: Some(s), .. } if s == MAX_DESCRIBE + 1),
            "{err}"
        );
        std::fs::write(&path, [0xFF, 0xFE]).unwrap();
        assert!(matches!(
            read_describe_file(&path),
            Err(FileError::NotText { .. })
        ));
        let photon = modflash_module::platform(6).unwrap();
        assert_eq!(
            Expected::Image {
                flash_size: photon.flash_size()
            }
            .limit(),
            1024 * 1024 + SLACK
        );
    }
}
