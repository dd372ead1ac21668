//! Session stores: the [`SessionStore`] contract, [`MemoryStore`] (one process) and
//! [`FileStore`] (processes on one machine). Other crates add more (the Redis store
//! for fleets); `authmux_testkit::store_conformance` is the suite every store passes.
//!
//! # The store contract
//!
//! A store location holds at most one session (one profile), with a version.
//!
//! - **Versions never repeat.** Every write and every delete of a location gives it a
//!   version (a non-zero `u64`) that the location never had before, even after a
//!   delete and a new sign-in. Versions are compared for equality only. A process that
//!   last saw version `v` therefore notices any change since, including "deleted and
//!   signed in again".
//! - **[`SessionStore::compare_and_swap`] is atomic.** It writes (or deletes) only if
//!   the location still holds `expected`, and otherwise returns
//!   [`Swap::Conflict`] with what the location holds now. The session manager never
//!   resolves a conflict by overwriting: an empty location means "signed out
//!   elsewhere" (this process ends the session too), another session means "signed in
//!   or refreshed elsewhere" (this process adopts it).
//! - **[`SessionStore::lock`] is the refresh lock.** It is exclusive across every
//!   handle and every process sharing the location (clones, other managers, other
//!   processes, other machines for a networked store). A process holds it from
//!   re-reading the session to saving its refreshed tokens, so a rotating refresh
//!   token is never sent twice. Taking it waits until it is free and is cancel-safe:
//!   dropping the future never leaves the lock held (a networked store uses a lease
//!   that expires). The manager bounds the wait with its own deadline
//!   ([`ManagerConfig::store_lock_timeout`](crate::ManagerConfig::store_lock_timeout));
//!   a store returns an error only when the store itself fails, never because the lock
//!   is busy. Writing never needs the lock: its holder writes while holding it.
//! - **Nothing is lost or invented.** A value the store cannot read is an
//!   [`AuthError::Store`] error, never `None`, and is left untouched. A failed write
//!   leaves the previous value in place.

#[cfg(feature = "encryption")]
mod encrypted;
mod file;
mod memory;

#[cfg(feature = "encryption")]
pub use encrypted::{
    DecryptError, ENCRYPTED_DIALECT, ENCRYPTED_EXTRA, EncryptedStore, EncryptionKey,
};
pub use file::{FileStore, write_private};
pub use memory::MemoryStore;

use std::fmt;

use async_trait::async_trait;

use crate::error::AuthError;
use crate::session::Session;

/// A stored session and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The location's version: never repeated, compared for equality only.
    pub version: u64,
    /// The session.
    pub session: Session,
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub enum Swap {
    /// Written; the location's new version (after a delete, `0`: the location is
    /// empty, and its next write gets a version it never had).
    Done(u64),
    /// Not written: the location holds something else. Here is what it holds.
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

/// Where sessions are kept between calls and processes. See the
/// [module docs](self) for the contract every implementation keeps.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The stored session, if any. A corrupt store is an error, never `None`.
    async fn load(&self) -> Result<Option<Versioned>, AuthError>;

    /// Atomically writes `new` (or deletes, with `None`) only if the location's current
    /// version is `expected` (`None`: the location must be empty). The new version is
    /// one the location never had.
    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError>;

    /// Writes unconditionally (a new sign-in replaces whatever was stored); returns
    /// the new version. Never used to settle a conflict.
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

    /// Takes the location's exclusive refresh lock, waiting while another handle or
    /// process holds it; the lock is released when the returned [`StoreLock`] is
    /// dropped. Cancel-safe. An error means the store failed, not that it is busy.
    async fn lock(&self) -> Result<StoreLock, AuthError>;
}
