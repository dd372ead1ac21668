//! Session stores: [`SessionStore`] (load, save, delete, compare-and-swap on a version,
//! and an exclusive lock for refreshes shared between processes), [`MemoryStore`] and
//! [`FileStore`].
//!
//! A store holds one session (one profile). Every write bumps a version number;
//! [`SessionStore::compare_and_swap`] writes only if the version is still the one the
//! caller read, so two processes sharing a file cannot silently overwrite each other.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::AuthError;
use crate::session::{SESSION_FORMAT, Session};

/// A stored session and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Incremented on every write.
    pub version: u64,
    /// The session.
    pub session: Session,
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub enum Swap {
    /// Written; the new version (0 after a delete).
    Done(u64),
    /// Not written: the store held something else. Here is what it holds.
    Conflict(Option<Box<Versioned>>),
}

/// Held while a process refreshes a shared session; dropping it releases the lock.
pub struct StoreLock(
    #[allow(dead_code, reason = "held for its Drop")] Option<Box<dyn Send + Sync>>,
);

impl StoreLock {
    /// A lock that locks nothing (stores used by one process only).
    pub fn none() -> Self {
        StoreLock(None)
    }

    /// A lock released when `guard` is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        StoreLock(Some(Box::new(guard)))
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "StoreLock(held)"
        } else {
            "StoreLock(none)"
        })
    }
}

/// Where sessions are kept between calls and processes.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The stored session, if any. A corrupt store is an error, never `None`.
    async fn load(&self) -> Result<Option<Versioned>, AuthError>;

    /// Writes `new` (or deletes, with `None`) only if the store's current version is
    /// `expected` (`None`: the store must be empty).
    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError>;

    /// Writes unconditionally; returns the new version.
    async fn save(&self, session: &Session) -> Result<u64, AuthError> {
        loop {
            let current = self.load().await?.map(|v| v.version);
            if let Swap::Done(v) = self.compare_and_swap(current, Some(session)).await? {
                return Ok(v);
            }
        }
    }

    /// Deletes unconditionally.
    async fn delete(&self) -> Result<(), AuthError> {
        loop {
            let Some(current) = self.load().await?.map(|v| v.version) else {
                return Ok(());
            };
            if let Swap::Done(_) = self.compare_and_swap(Some(current), None).await? {
                return Ok(());
            }
        }
    }

    /// Takes the store's exclusive lock, which a process holds from reading the session
    /// to saving its refreshed tokens, so that two processes never refresh with the same
    /// (rotating) token. The default locks nothing, which is right for stores used by
    /// one process.
    async fn lock(&self) -> Result<StoreLock, AuthError> {
        Ok(StoreLock::none())
    }
}

/// A store in memory, for one process. Clones share the same slot.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    slot: Arc<Mutex<(u64, Option<Session>)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        let slot = self.slot.lock().await;
        Ok(slot.1.clone().map(|session| Versioned {
            version: slot.0,
            session,
        }))
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        let mut slot = self.slot.lock().await;
        let current = slot.1.as_ref().map(|_| slot.0);
        if current != expected {
            let current = slot.1.clone().map(|session| {
                Box::new(Versioned {
                    version: slot.0,
                    session,
                })
            });
            return Ok(Swap::Conflict(current));
        }
        slot.0 += 1;
        slot.1 = new.cloned();
        Ok(Swap::Done(if new.is_some() { slot.0 } else { 0 }))
    }
}

/// The on-disk envelope of a [`FileStore`].
#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u64,
    session: Session,
}

/// A store in one JSON file, shared safely by several processes.
///
/// - Writes go to a temporary file in the same folder, are flushed, then renamed over
///   the old file: a reader sees the old or the new session, never half of one.
/// - The file is created with mode 0600 (owner only) on Unix.
/// - A file that cannot be read as a session is reported as [`AuthError::Store`] and
///   left exactly as it is: no write or delete touches it until a person has looked.
/// - [`SessionStore::lock`] takes an exclusive OS file lock on `<file>.lock`.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    writer: Arc<Mutex<()>>,
}

impl FileStore {
    /// A store at `path` (created on first save, with its parent folders).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// The session file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    fn read_sync(path: &Path) -> Result<Option<Versioned>, AuthError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(AuthError::store(
                    format!("cannot read {}", path.display()),
                    e,
                ));
            }
        };
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
        Ok(Some(Versioned {
            version: envelope.version,
            session: envelope.session,
        }))
    }

    fn write_sync(path: &Path, envelope: &Envelope) -> Result<(), AuthError> {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let bytes = serde_json::to_vec_pretty(envelope)
            .map_err(|e| AuthError::store("cannot encode session", e))?;
        let tmp = dir.join(format!(
            ".{}.{}.{:x}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            fastrand::u64(..)
        ));
        let result = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            AuthError::store(format!("cannot write {}", path.display()), e)
        })
    }

    fn remove_sync(path: &Path) -> Result<(), AuthError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AuthError::store(
                format!("cannot remove {}", path.display()),
                e,
            )),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::store("store task failed", e))?
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
        let lock_path = self.lock_path();
        let new = new.cloned();
        blocking(move || {
            let _os_lock = os_lock(&lock_path)?;
            let current = Self::read_sync(&path)?; // a corrupt file stops us here
            if current.as_ref().map(|v| v.version) != expected {
                return Ok(Swap::Conflict(current.map(Box::new)));
            }
            match new {
                Some(session) => {
                    let version = expected.unwrap_or(0) + 1;
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
        let mut name = self.lock_path().into_os_string();
        name.push(".refresh");
        let path = PathBuf::from(name);
        let file = blocking(move || os_lock(&path)).await?;
        Ok(StoreLock::new(file))
    }
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

/// Opens `path` (creating it, 0600) and takes an exclusive OS lock on it, waiting as
/// long as another process holds it. The lock is released when the file is dropped.
fn os_lock(path: &Path) -> Result<std::fs::File, AuthError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| AuthError::store(format!("cannot open lock {}", path.display()), e))?;
    file.lock()
        .map_err(|e| AuthError::store(format!("cannot lock {}", path.display()), e))?;
    Ok(file)
}
