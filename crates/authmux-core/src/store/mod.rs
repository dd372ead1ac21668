//! Session stores: [`SessionStore`] (load, save, delete, compare-and-swap on a version,
//! and an exclusive lock for refreshes shared between processes), [`MemoryStore`] and
//! [`FileStore`].
//!
//! A store holds one session (one profile). Every write bumps a version number;
//! [`SessionStore::compare_and_swap`] writes only if the version is still the one the
//! caller read, so two processes sharing a file cannot silently overwrite each other.

mod file;
mod memory;

pub use file::{FileStore, write_private};
pub use memory::MemoryStore;

use std::fmt;

use async_trait::async_trait;

use crate::error::AuthError;
use crate::session::Session;

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
