//! [`FileStore`]: a session store in one JSON file, shared safely by processes, and
//! the one atomic private-file writer ([`write_private`]) everything on disk uses.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{SessionStore, StoreLock, Swap, Versioned};
use crate::error::AuthError;
use crate::session::{SESSION_FORMAT, Session};

/// How long a write waits for another process's write lock by default. Writes hold it
/// for one read and one rename, so a longer wait means the peer is stopped or hung.
const DEFAULT_WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The on-disk envelope of a [`FileStore`].
#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u64,
    session: Session,
}

/// A store in one JSON file, shared safely by several processes on one machine.
///
/// - Writes go to an exclusive temporary file in the same folder, are flushed, then
///   renamed over the old file, and the folder is flushed ([`write_private`]): a reader
///   sees the old or the new session, never half of one, and a crash keeps one of them.
/// - The file is created with mode 0600 and missing folders with 0700 (Unix). A
///   session file that group or others can read is refused with a clear
///   [`AuthError::Store`] (like ssh with a private key) and left as it is: its tokens
///   may already have been read, so a person should look (and `chmod 600` it).
/// - A file that cannot be read as a session is reported as [`AuthError::Store`] and
///   left exactly as it is: no write or delete touches it until a person has looked.
/// - Writes are serialised by an OS lock on `<file>.lock`, which also keeps the
///   location's generation: versions never repeat, even after the file is deleted
///   (and, if the lock file is deleted too, new versions start above the current time
///   in microseconds, so they still do not repeat).
/// - [`SessionStore::lock`] (the refresh lock) is an OS lock on `<file>.lock.refresh`,
///   polled, so a cancelled wait holds nothing. Lock files are opened without
///   following symlinks.
/// - Waiting for another process's write lock has a deadline
///   ([`FileStore::with_write_lock_timeout`], default 10 s): a stopped or hung peer
///   makes writes fail with [`AuthError::Store`] instead of stalling forever.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    writer: Arc<Mutex<()>>,
    write_lock_timeout: Duration,
}

impl FileStore {
    /// A store at `path` (created on first save, with its parent folders).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: Arc::new(Mutex::new(())),
            write_lock_timeout: DEFAULT_WRITE_LOCK_TIMEOUT,
        }
    }

    /// How long a write waits for another process's write lock (default 10 s).
    #[must_use]
    pub fn with_write_lock_timeout(mut self, timeout: Duration) -> Self {
        self.write_lock_timeout = timeout;
        self
    }

    /// The session file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<file><suffix>` beside the session file.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn read_sync(path: &Path) -> Result<Option<Versioned>, AuthError> {
        let cannot_read = |e| AuthError::store(format!("cannot read {}", path.display()), e);
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cannot_read(e)),
        };
        check_private(path, &file)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(cannot_read)?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| AuthError::Store {
            message: format!(
                "corrupt session file {} (line {}, column {}); it was left untouched: fix or remove it",
                path.display(),
                e.line(),
                e.column()
            ),
            source: None,
        })?;
        if envelope.session.format > SESSION_FORMAT {
            return Err(AuthError::Store {
                message: format!(
                    "session file {} has format {} but this authmux reads up to {SESSION_FORMAT}; it was left untouched",
                    path.display(),
                    envelope.session.format
                ),
                source: None,
            });
        }
        if envelope.version == 0 {
            return Err(AuthError::Store {
                message: format!(
                    "session file {} has version 0, which no store writes; it was left untouched",
                    path.display()
                ),
                source: None,
            });
        }
        Ok(Some(Versioned {
            version: envelope.version,
            session: envelope.session,
        }))
    }

    fn write_sync(path: &Path, envelope: &Envelope) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec_pretty(envelope)
            .map_err(|e| AuthError::store("cannot encode session", e))?;
        write_private(path, &bytes)
            .map_err(|e| AuthError::store(format!("cannot write {}", path.display()), e))
    }

    fn remove_sync(path: &Path) -> Result<(), AuthError> {
        match std::fs::remove_file(path) {
            Ok(()) => sync_parent(path).map_err(|e| {
                AuthError::store(format!("cannot flush the folder of {}", path.display()), e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AuthError::store(
                format!("cannot remove {}", path.display()),
                e,
            )),
        }
    }
}

/// Runs blocking file work off the async threads when a tokio runtime is there, and
/// inline otherwise (so a store works from any executor).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| AuthError::store("store task failed", e))?,
        Err(_) => f(),
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        let path = self.path.clone();
        blocking(move || Self::read_sync(&path)).await
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        // In-process writers queue here; other processes are kept out by the OS lock.
        let _writer = self.writer.lock().await;
        let path = self.path.clone();
        let lock_path = self.sibling(".lock");
        let timeout = self.write_lock_timeout;
        let new = new.cloned();
        blocking(move || {
            let mut os_lock = os_lock_blocking(&lock_path, timeout)?;
            let current = Self::read_sync(&path)?; // a corrupt file stops us here
            if current.as_ref().map(|v| v.version) != expected {
                return Ok(Swap::Conflict(current.map(Box::new)));
            }
            // The next version: above the kept generation, the current version and the
            // clock, so it is one this location never had.
            let generation = read_generation(&mut os_lock);
            let version = generation
                .max(current.as_ref().map_or(0, |v| v.version))
                .max(micros_now())
                .saturating_add(1);
            write_generation(&mut os_lock, version).map_err(|e| {
                AuthError::store(format!("cannot write {}", lock_path.display()), e)
            })?;
            match new {
                Some(session) => {
                    Self::write_sync(&path, &Envelope { version, session })?;
                    Ok(Swap::Done(version))
                }
                None => {
                    Self::remove_sync(&path)?;
                    Ok(Swap::Done(0))
                }
            }
        })
        .await
    }

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        // The refresh lock is a separate file from the write lock so a holder can still
        // save (compare_and_swap takes the write lock briefly).
        let path = self.sibling(".lock.refresh");
        let file = {
            let path = path.clone();
            blocking(move || open_lock_file(&path)).await?
        };
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock::new(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(AuthError::store(
                        format!("cannot lock {}", path.display()),
                        e,
                    ));
                }
            }
            // Polling (not a blocking flock in a thread) keeps the wait cancel-safe:
            // dropping this future drops the file, and nothing stays locked.
            let jittered = pause.mul_f64(0.5 + fastrand::f64());
            match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::time::sleep(jittered).await,
                Err(_) => std::thread::sleep(jittered),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The generation kept in the write-lock file (0 when empty or unreadable).
fn read_generation(file: &mut File) -> u64 {
    let mut text = String::new();
    if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.trim().parse().unwrap_or(0)
}

/// Records `generation` in the write-lock file (flushed before the session is written,
/// so a crash can only leave the generation ahead, never behind).
fn write_generation(file: &mut File, generation: u64) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{generation}\n").as_bytes())?;
    file.sync_data()
}

/// Refuses a session file that group or others may read (Unix).
fn check_private(path: &Path, file: &File) -> Result<(), AuthError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| AuthError::store(format!("cannot read {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(AuthError::Store {
                message: format!(
                    "session file {} is readable by group or others (mode {:o}); it was left untouched: check who could read it, then `chmod 600` it",
                    path.display(),
                    mode & 0o777
                ),
                source: None,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
    Ok(())
}

/// Creates `dir` and its missing parents; folders it creates are 0700 (owner only) on
/// Unix. Existing folders are left as they are.
fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| AuthError::store(format!("cannot create {}", dir.display()), e))
}

/// Opens (creating it, 0600) a lock file, never through a symlink.
fn open_lock_file(path: &Path) -> Result<File, AuthError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
        .open(path)
        .map_err(|e| AuthError::store(format!("cannot open lock {}", path.display()), e))
}

/// Opens a lock file and takes its exclusive OS lock, waiting at most `timeout` (a
/// blocking call, for `spawn_blocking`). The lock is released when the file is dropped.
fn os_lock_blocking(path: &Path, timeout: Duration) -> Result<File, AuthError> {
    let file = open_lock_file(path)?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause.mul_f64(0.5 + fastrand::f64()));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuthError::Store {
                    message: format!(
                        "another process has held the write lock {} for more than {} ms (stopped or hung?)",
                        path.display(),
                        timeout.as_millis()
                    ),
                    source: None,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(AuthError::store(
                    format!("cannot lock {}", path.display()),
                    e,
                ));
            }
        }
    }
}

/// Writes `bytes` to `path` atomically and privately: to an exclusive temporary file
/// with a random name in the same folder (created with `O_EXCL`, mode 0600, never
/// following a planted symlink), flushed to disk, renamed over `path`, then the folder
/// itself is flushed so the rename survives a crash. A reader sees the old content or
/// the new, never half. Missing folders are created 0700.
///
/// Every file authmux keeps on disk (sessions, profiles, pending challenges) is written
/// through this one function.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = parent_of(path);
    create_private_dir(dir).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{:016x}{:016x}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        fastrand::u64(..),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder `path` lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Flushes the folder holding `path`, so a rename or removal in it is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(parent_of(path))
}

/// Flushes a folder's entries to disk (Unix; a no-op elsewhere, where folders cannot
/// be opened as files).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
