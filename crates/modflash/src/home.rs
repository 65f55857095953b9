//! The modflash home directory (`$MODFLASH_HOME`, else the data directory of the system's
//! convention plus `modflash`: `$XDG_DATA_HOME/modflash` or `~/.local/share/modflash` on
//! Linux and macOS, `%APPDATA%\modflash` on Windows) and how its files change: under a lock,
//! written atomically, temporary files of killed processes removed; a home the user cannot
//! write still reads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The modflash home directory (not created here). The data directory comes from `etcetera`'s
/// base strategy (XDG everywhere but Windows, as command-line tools do); a user without any
/// home directory (no `HOME`, no password entry) gets `.local/share/modflash` under the
/// working directory, the path the XDG convention would give with a home of ".".
pub fn home() -> PathBuf {
    use etcetera::BaseStrategy as _;
    if let Some(dir) = std::env::var_os("MODFLASH_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match etcetera::choose_base_strategy() {
        Ok(strategy) => strategy.data_dir().join("modflash"),
        Err(_) => PathBuf::from(".local/share/modflash"),
    }
}

/// Where virtual devices live.
pub fn sims_dir() -> PathBuf {
    home().join("sims")
}

/// A file operation in the modflash home that failed: what was being done, to which file.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct FileOpError {
    /// What was being done ("cannot create", "cannot read", "cannot replace").
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

impl FileOpError {
    fn new<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> Self + 'p {
        move |source| Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An exclusive lock (`flock`) on a lock file of the home, held until dropped. In a home
/// the user cannot write, a lock file that exists is locked through a read-only descriptor,
/// and one that does not exist cannot be created, so nobody holds it: reading is safe either
/// way, since every file is replaced atomically.
#[derive(Debug)]
pub struct Lock {
    _file: Option<File>,
    /// Why the lock file could not be opened for writing, when it could not.
    read_only: Option<FileOpError>,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (only when not waiting).
    Busy,
    /// The lock file could not be created or locked.
    File(FileOpError),
}

impl Lock {
    /// Locks `path`, creating it when it does not exist; fails with [`LockError::Busy`]
    /// while another process holds it.
    pub fn try_take(path: &Path) -> Result<Self, LockError> {
        Self::take(path, false)
    }

    /// Locks `path`, creating it when it does not exist, waiting while another process
    /// holds it.
    pub fn wait(path: &Path) -> Result<Self, FileOpError> {
        Self::take(path, true).map_err(|e| match e {
            LockError::File(e) => e,
            LockError::Busy => {
                FileOpError::new("cannot lock", path)(io::ErrorKind::WouldBlock.into())
            }
        })
    }

    fn take(path: &Path, wait: bool) -> Result<Self, LockError> {
        let opened = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path);
        let (file, read_only) = match opened {
            Ok(file) => (Some(file), None),
            Err(e) if is_read_only(&e) => {
                let refused = FileOpError::new("cannot create", path)(e);
                match File::open(path) {
                    Ok(file) => (Some(file), Some(refused)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => (None, Some(refused)),
                    Err(_) => return Err(LockError::File(refused)),
                }
            }
            Err(e) => return Err(LockError::File(FileOpError::new("cannot create", path)(e))),
        };
        if let Some(file) = &file {
            // `flock` on Unix, `LockFileEx` on Windows: released when the file is closed.
            let locked = if wait {
                file.lock().map_err(fs::TryLockError::Error)
            } else {
                file.try_lock()
            };
            match locked {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Err(LockError::Busy),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(LockError::File(FileOpError::new("cannot lock", path)(e)))
                }
            }
        }
        Ok(Self {
            _file: file,
            read_only,
        })
    }

    /// True when the home cannot be written here.
    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// The lock, for a change: fails with the reason the home cannot be written here.
    pub fn writable(self) -> Result<Self, FileOpError> {
        match self.read_only {
            Some(refused) => Err(refused),
            None => Ok(self),
        }
    }
}

/// True for the errors of a file system or directory the user may not write.
fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Creates directory `dir` and its parents when missing.
pub fn create_dir(dir: &Path) -> Result<(), FileOpError> {
    fs::create_dir_all(dir).map_err(FileOpError::new("cannot create", dir))
}

/// The temporary file `write_atomically` writes `path` through: `NAME.tmp-PID`.
fn temporary(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{pid}"));
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same directory, flushed
/// to disk, then renamed over it. A crash leaves either the old or the new file, and at
/// worst the temporary file, which [`remove_stale_temporaries`] removes.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileOpError> {
    let tmp = temporary(path, std::process::id());
    let written = (|| {
        let mut file = File::create(&tmp).map_err(FileOpError::new("cannot create", &tmp))?;
        file.write_all(bytes)
            .map_err(FileOpError::new("cannot write", &tmp))?;
        file.sync_all()
            .map_err(FileOpError::new("cannot flush", &tmp))?;
        fs::rename(&tmp, path).map_err(FileOpError::new("cannot replace", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Removes the temporary files of `path` (`NAME.tmp-PID`) whose process is gone: a process
/// killed while writing leaves one. Returns how many were removed. Call it holding the
/// file's lock.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name();
            let pid: u32 = file.to_str()?.strip_prefix(&prefix)?.parse().ok()?;
            (!crate::os::process_exists(pid)).then(|| e.path())
        })
        .filter(|stale| fs::remove_file(stale).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_stale_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let stale = temporary(&path, gone_pid);
        let live = temporary(&path, std::process::id());
        let other = dir.path().join(format!("other.json.tmp-{gone_pid}"));
        for f in [&stale, &live, &other] {
            fs::write(f, b"half").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&path), 1);
        assert!(!stale.exists() && live.exists() && other.exists());
    }

    #[test]
    fn a_lock_is_exclusive_across_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = Lock::try_take(&path).unwrap();
        assert!(!held.is_read_only());
        assert!(matches!(Lock::try_take(&path), Err(LockError::Busy)));
        drop(held);
        assert!(Lock::wait(&path).is_ok());
    }
}
