//! [`MemoryStore`]: a session store in memory, shared by clones within one process.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{SessionStore, StoreLock, Swap, Versioned};
use crate::error::AuthError;
use crate::session::Session;

/// A store in memory, for one process. Clones share the same slot and the same refresh
/// lock, so several managers over clones of one `MemoryStore` refresh one at a time.
/// The version counter counts every write and delete, so versions never repeat.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    slot: Arc<Mutex<(u64, Option<Session>)>>,
    refresh_lock: Arc<Mutex<()>>,
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

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        let guard = Arc::clone(&self.refresh_lock).lock_owned().await;
        Ok(StoreLock::new(guard))
    }
}
