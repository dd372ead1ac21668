//! [`FileStore`]: a session store in one JSON file, shared safely by processes, and
//! the one atomic private-file writer ([`write_private`]) everything on disk uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{SessionStore, StoreLock, Swap, Versioned};
use crate::error::AuthError;
use crate::session::{SESSION_FORMAT, Session};

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
        let bytes = serde_json::to_vec_pretty(envelope)
            .map_err(|e| AuthError::store("cannot encode session", e))?;
        write_private(path, &bytes)
            .map_err(|e| AuthError::store(format!("cannot write {}", path.display()), e))
    }

    fn remove_sync(path: &Path) -> Result<(), AuthError> {
        match std::fs::remove_file(path) {
            Ok(()) => sync_parent(path).map_err(|e| {
                AuthError::store(format!("cannot sync after removing {}", path.display()), e)
            }),
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
