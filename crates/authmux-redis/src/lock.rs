//! The refresh lock of a [`RedisStore`]: a lease on `<key>:lock`, renewed while held,
//! released by compare-and-delete when its guard is dropped.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::AuthError;
use tokio::task::JoinHandle;

use crate::{Conn, RedisStore, scripts};

/// Releases spawned by dropped guards and not yet known to be finished (see [`settle`]).
static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits (at most `timeout`) for the releases of refresh locks whose guards were
/// dropped: a guard releases its lock in a spawned task, which a program that exits
/// right away (a command-line tool) would cancel, leaving the others to wait for the
/// lease to expire. Such programs call this before they return from `main`.
pub async fn settle(timeout: Duration) {
    let pending: Vec<JoinHandle<()>> = std::mem::take(
        &mut *PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let _ = tokio::time::timeout(timeout, async {
        for task in pending {
            let _ = task.await;
        }
    })
    .await;
}

/// First wait while another process holds the lock; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest wait between two tries to take a held lock.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Holds the refresh lock of a [`RedisStore`]'s key. While it lives, a task renews the
/// lease every third of it; dropping it stops the renewal and releases the lock (if
/// still held by this guard) in a spawned task (a program about to exit awaits
/// [`settle`] so that task runs). Without a runtime to spawn on, the lease simply
/// expires.
///
/// The lock is a lease: a holder stalled longer than the lease (a stopped process, a
/// partition from Redis) loses it to the next process. Writes stay safe even then,
/// because they are compare-and-swaps on the session's version.
pub struct RedisLockGuard {
    conn: Conn,
    lock_key: String,
    owner: String,
    held: Arc<AtomicBool>,
    renewal: JoinHandle<()>,
}

impl fmt::Debug for RedisLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockGuard")
            .field("key", &self.lock_key)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl RedisLockGuard {
    /// Whether the lease is still ours as far as this guard knows: false once a renewal
    /// found another owner (or none).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for RedisLockGuard {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.is_held() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the lease expires by itself
        };
        let mut conn = self.conn.clone();
        let key = std::mem::take(&mut self.lock_key);
        let owner = std::mem::take(&mut self.owner);
        let task = runtime.spawn(async move {
            let released: Result<i64, _> = scripts::RELEASE
                .key(&key)
                .arg(&owner)
                .invoke_async(&mut conn)
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, key, "cannot release the Redis refresh lock; its lease will expire");
            }
        });
        let mut pending = PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|task| !task.is_finished());
        pending.push(task);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Takes the refresh lock of `store`, waiting with jittered backoff while another owner
/// holds it. Fails only when Redis does.
pub(crate) async fn acquire(store: &RedisStore) -> Result<RedisLockGuard, AuthError> {
    let owner = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let lease = store.options.lease;
    let mut conn = store.conn.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&store.lock_key)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease))
            .query_async(&mut conn)
            .await
            .map_err(|e| store.error("cannot take the refresh lock of", e))?;
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let held = Arc::new(AtomicBool::new(true));
    let renewal = tokio::spawn(renew(
        conn.clone(),
        store.lock_key.clone(),
        owner.clone(),
        lease,
        Arc::clone(&held),
    ));
    Ok(RedisLockGuard {
        conn,
        lock_key: store.lock_key.clone(),
        owner,
        held,
        renewal,
    })
}

/// Extends the lease every third of it for as long as `owner` holds the lock.
async fn renew(mut conn: Conn, key: String, owner: String, lease: Duration, held: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed: Result<i64, _> = scripts::RENEW
            .key(&key)
            .arg(&owner)
            .arg(millis(lease))
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                held.store(false, Ordering::SeqCst);
                tracing::warn!(
                    key,
                    "the Redis refresh lock's lease expired while held; another process may be refreshing"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(%error, key, "cannot renew the Redis refresh lock; retrying");
            }
        }
    }
}
