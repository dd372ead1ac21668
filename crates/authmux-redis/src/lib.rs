//! A Redis session store for authmux: one session shared by a fleet (see also the
//! crate README).
//!
//! Where users outgrow one machine (workers or CI jobs using one service account whose
//! refresh token rotates), a file lock no longer coordinates them, and each machine
//! refreshing on its own kills the session: Directus keeps only the last rotation, and
//! Linxio-style servers revoke the whole token family when a spent refresh token comes
//! back. [`RedisStore`] keeps the session in Redis and coordinates the fleet with a
//! lease lock, so a rotated refresh token is sent once across all of it.
//!
//! ```no_run
//! # async fn demo(provider: std::sync::Arc<dyn authmux_core::AuthProvider>) -> Result<(), authmux_core::AuthError> {
//! use authmux_core::SessionManager;
//! use authmux_redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0", "authmux:ci-bot").await?;
//! let manager = SessionManager::builder(provider).store(store).build();
//! manager.restore().await?; // the session another machine signed in
//! let token = manager.access_token().await?; // refreshed once for the whole fleet
//! # let _ = token; Ok(()) }
//! ```
//!
//! # Keys
//!
//! For a store key `K` (for example `authmux:ci-bot`):
//!
//! | key | type | what | expiry |
//! | --- | --- | --- | --- |
//! | `K` | hash | `v`: the version; `s`: the session as JSON | the refresh token's lifetime when known (see [`RedisStore::with_ttl`]) |
//! | `K:gen` | string | the generation counter versions are drawn from; survives deletes, so a version never repeats | none |
//! | `K:lock` | string | the refresh lock: a random owner id, set with `NX PX <lease>` | the lease, renewed by its holder |
//!
//! In a Redis Cluster the three keys must live in one slot, so the key must contain a
//! hash tag (`{authmux:ci-bot}`); [`RedisStore::connect_cluster`] refuses one without.
//!
//! # How it keeps the contract of [`SessionStore`]
//!
//! - [`load`](SessionStore::load) is one `HMGET`. A value authmux cannot read (another
//!   type at `K`, a missing field, JSON that is not a session, a newer format) is an
//!   [`AuthError::Store`] and is never overwritten: every write goes through the
//!   compare-and-swap script, which refuses to touch a value it cannot read.
//! - [`compare_and_swap`](SessionStore::compare_and_swap) is one Lua script over `K` and
//!   `K:gen`, atomic on the server (no `WATCH`, which a multiplexed connection cannot
//!   use). A new version is the next value of `K:gen`, which starts at a random point
//!   below 2^40 and is only ever incremented, so versions never repeat for a key, even
//!   after a delete or if the counter itself is lost.
//! - [`lock`](SessionStore::lock) is a lease: `SET K:lock <random owner> NX PX <lease>`.
//!   Held by another process: wait with jittered backoff (the manager bounds the wait
//!   with its own deadline, then re-reads and adopts what the holder wrote). Redis
//!   failing: [`AuthError::Store`], never an uncoordinated refresh. While held, a task
//!   renews the lease (only if still the owner, by script); dropping the guard releases
//!   it (compare-and-delete, by script). A holder that dies (SIGKILL, a dropped future,
//!   a lost network) stops renewing, and the lease expires: another process takes over.
//! - Commands have a response timeout and the connection reconnects by itself, so a
//!   Redis restart shows as [`AuthError::Store`] errors on the calls that touch Redis
//!   (loads, saves, refreshes) until it is back. The manager's hot path (a fresh
//!   token) never touches the store.
//!
//! A dropped lock guard releases the lock in a spawned task; a program that exits right
//! after its last call (a command-line tool) awaits [`settle`] first, or the next
//! process waits for the lease to expire.
//!
//! If a lock holder dies after the server rotated the refresh token but before it saved
//! the new one, the session is lost: the store still holds the spent token, and the
//! next refresh is refused ([`AuthError::RefreshRejected`]: sign in again). Nothing on
//! the client side can prevent that; the lease only guarantees nobody waits forever.

mod lock;
mod scripts;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use authmux_core::session::SESSION_FORMAT;
use authmux_core::store::{StoreLock, Swap};
use authmux_core::{AuthError, Session, SessionStore, Versioned};
use redis::Value;
use redis::aio::ConnectionManager;

pub use lock::{RedisLockGuard, settle};

/// Default lease of the refresh lock.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Default timeout of one Redis command, and of establishing a connection.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Added to the refresh token's remaining lifetime for the session key's TTL, so a
/// clock a little behind the server's never drops a session that is still usable.
const TTL_MARGIN: Duration = Duration::from_secs(60);

/// A connection to a single Redis or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, through redis-rs's auto-reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// A Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Settings of a [`RedisStore`], set with its `with_*` methods.
#[derive(Debug, Clone, Copy)]
struct Options {
    lease: Duration,
    ttl: Option<Duration>,
}

/// A [`SessionStore`] in Redis, shared by every process and machine that opens the same
/// key: see the [crate documentation](crate) for the keys and the guarantees.
///
/// Cloning is cheap and gives another handle on the same connection and key.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    key: String,
    gen_key: String,
    lock_key: String,
    /// Where the store is, for messages: scheme, host, port and database, never a
    /// password.
    location: String,
    options: Options,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.location)
            .field("key", &self.key)
            .field("lease", &self.options.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT/DB`, or
    /// `rediss://` with the `tls` feature) and keeps the session at `key`.
    ///
    /// Fails with [`AuthError::Store`] when Redis cannot be reached; later, the
    /// connection reconnects by itself.
    pub async fn connect(url: &str, key: impl Into<String>) -> Result<RedisStore, AuthError> {
        let location = describe(url);
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| AuthError::store(format!("bad Redis URL {location}"), e))?;
        #[cfg(feature = "tls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // Errs only when a provider is already installed, which is as good.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = redis::Client::open(info)
            .map_err(|e| AuthError::store(format!("bad Redis URL {location}"), e))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| AuthError::store(format!("cannot connect to Redis at {location}"), e))?;
        Ok(RedisStore::from_parts(
            Conn::Single(conn),
            key.into(),
            location,
        ))
    }

    /// Connects to a Redis Cluster through any of `urls` and keeps the session at `key`,
    /// which must contain a hash tag (`{...}`) so that `key`, `key:gen` and `key:lock`
    /// share a slot.
    #[cfg(feature = "cluster")]
    pub async fn connect_cluster(
        urls: &[&str],
        key: impl Into<String>,
    ) -> Result<RedisStore, AuthError> {
        let key = key.into();
        if !has_hash_tag(&key) {
            return Err(AuthError::Store {
                message: format!(
                    "Redis Cluster key {key:?} has no hash tag: use one such as \"{{{key}}}\" so the session, its generation and its lock share a slot"
                ),
                source: None,
            });
        }
        let location = urls.first().map(|u| describe(u)).unwrap_or_default();
        let client = redis::cluster::ClusterClientBuilder::new(urls.iter().copied())
            .connection_timeout(DEFAULT_COMMAND_TIMEOUT)
            .response_timeout(DEFAULT_COMMAND_TIMEOUT)
            .build()
            .map_err(|e| AuthError::store(format!("bad Redis Cluster URLs {location}"), e))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            AuthError::store(format!("cannot connect to Redis Cluster at {location}"), e)
        })?;
        Ok(RedisStore::from_parts(Conn::Cluster(conn), key, location))
    }

    fn from_parts(conn: Conn, key: String, location: String) -> RedisStore {
        RedisStore {
            conn,
            gen_key: format!("{key}:gen"),
            lock_key: format!("{key}:lock"),
            key,
            location,
            options: Options {
                lease: DEFAULT_LEASE,
                ttl: None,
            },
        }
    }

    /// Another handle on the same connection, for the session at `key`.
    #[must_use]
    pub fn with_key(&self, key: impl Into<String>) -> RedisStore {
        RedisStore {
            options: self.options,
            ..RedisStore::from_parts(self.conn.clone(), key.into(), self.location.clone())
        }
    }

    /// The lease of the refresh lock (default [`DEFAULT_LEASE`]): how long a holder that
    /// died keeps the others waiting. A live holder renews it every third of the lease.
    /// At least 100 ms.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> RedisStore {
        self.options.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// The session key's expiry when the session does not say: by default the key
    /// expires when its refresh token does (its JWT `exp`, plus a minute) or, without a
    /// refresh token, when the access token does; with neither known it does not
    /// expire, unless `ttl` is given here.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> RedisStore {
        self.options.ttl = ttl;
        self
    }

    /// The session's key (`<key>`; the others are `<key>:gen` and `<key>:lock`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease of the refresh lock.
    pub fn lease(&self) -> Duration {
        self.options.lease
    }

    /// How long the session key should live, from the session's tokens.
    fn ttl_for(&self, session: &Session, now: SystemTime) -> Option<Duration> {
        let until = match &session.tokens.refresh {
            Some(refresh) => {
                authmux_core::token::jwt_hint(refresh.expose_secret()).and_then(|h| h.expires_at)
            }
            None => session.tokens.expires_at,
        };
        match until {
            Some(at) => Some(at.duration_since(now).unwrap_or(Duration::ZERO) + TTL_MARGIN),
            None => self.options.ttl,
        }
    }

    fn error(&self, what: &str, e: redis::RedisError) -> AuthError {
        AuthError::store(
            format!("Redis at {}: {what} {}", self.location, self.key),
            e,
        )
    }

    fn corrupt(&self, why: &str) -> AuthError {
        AuthError::Store {
            message: format!(
                "corrupt session in Redis at {}, key {} ({why}); it was left untouched: fix or delete the key",
                self.location, self.key
            ),
            source: None,
        }
    }

    /// Reads a stored `(version, session JSON)` pair.
    fn decode(&self, version: &[u8], session: &[u8]) -> Result<Versioned, AuthError> {
        let version = std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v != 0)
            .ok_or_else(|| self.corrupt("the version is not a positive number"))?;
        let session: Session = serde_json::from_slice(session).map_err(|e| {
            self.corrupt(&format!(
                "not a session: line {}, column {}",
                e.line(),
                e.column()
            ))
        })?;
        if session.format > SESSION_FORMAT {
            return Err(self.corrupt(&format!(
                "session format {} but this authmux reads up to {SESSION_FORMAT}",
                session.format
            )));
        }
        Ok(Versioned { version, session })
    }
}

/// `scheme://host:port/db` of a Redis URL, without user or password.
fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// Whether a key has a Redis Cluster hash tag: a `{`, later a `}`, something between.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        let mut conn = self.conn.clone();
        let (version, session): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&self.key)
            .arg("v")
            .arg("s")
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                if e.code() == Some("WRONGTYPE") {
                    self.corrupt("not a hash")
                } else {
                    self.error("cannot read", e)
                }
            })?;
        match (version, session) {
            (None, None) => Ok(None),
            (Some(v), Some(s)) => self.decode(&v, &s).map(Some),
            _ => Err(self.corrupt("a field is missing")),
        }
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        let payload = match new {
            Some(session) => Some(
                serde_json::to_vec(session)
                    .map_err(|e| AuthError::store("cannot encode session", e))?,
            ),
            None => None,
        };
        let ttl_ms = new
            .and_then(|s| self.ttl_for(s, SystemTime::now()))
            .map_or(0, |ttl| {
                u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
            });
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = scripts::CAS
            .key(&self.key)
            .key(&self.gen_key)
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(if payload.is_some() { "set" } else { "del" })
            .arg(payload.unwrap_or_default())
            .arg(ttl_ms)
            .arg(fastrand::u64(1..1 << 40))
            .arg(SESSION_FORMAT)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("cannot write", e))?;
        scripts::cas_outcome(&reply)
            .ok_or_else(|| self.corrupt("unreadable while writing"))
            .and_then(|outcome| match outcome {
                scripts::CasOutcome::Corrupt => Err(self.corrupt("not a session hash")),
                scripts::CasOutcome::Done(version) => Ok(Swap::Done(version)),
                scripts::CasOutcome::ConflictEmpty => Ok(Swap::Conflict(None)),
                scripts::CasOutcome::Conflict(version, session) => self
                    .decode(&version, &session)
                    .map(|v| Swap::Conflict(Some(Box::new(v)))),
            })
    }

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        lock::acquire(self).await.map(StoreLock::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_never_show_a_password() {
        assert_eq!(
            describe("redis://:hunter2@10.0.0.5:6380/2"),
            "redis://10.0.0.5:6380/2"
        );
        assert_eq!(
            describe("rediss://user:hunter2@cache.example/0"),
            "rediss://cache.example/0"
        );
        assert_eq!(describe("redis://a:hunter2@[::1/"), "(unparsable URL)");
    }

    #[test]
    fn hash_tags_are_recognized() {
        assert!(has_hash_tag("{authmux:bot}"));
        assert!(has_hash_tag("authmux:{bot}"));
        assert!(!has_hash_tag("authmux:bot"));
        assert!(!has_hash_tag("authmux:{}"));
        assert!(!has_hash_tag("authmux:}{"));
    }
}
