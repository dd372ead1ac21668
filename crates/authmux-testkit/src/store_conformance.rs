//! The store conformance suite: the [store contract](authmux_core::store) as checks
//! that every [`SessionStore`] runs, the core's [`MemoryStore`](authmux_core::MemoryStore)
//! and [`FileStore`](authmux_core::FileStore) as well as third-party ones (a Redis
//! store, a database).
//!
//! The suite opens store handles through a function `open(location)`: each call gives a
//! new handle, and two calls with the same location name give two handles onto the
//! same stored session, as two processes (or two machines) would have. Every check uses
//! fresh location names.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use authmux_core::{FileStore, SessionStore};
//!
//! let dir = std::env::temp_dir().join("my-store-test");
//! let report = authmux_testkit::store_conformance::run(|location: String| {
//!     let path = dir.join(format!("{location}.json"));
//!     async move { Arc::new(FileStore::new(path)) as Arc<dyn SessionStore> }
//! })
//! .await;
//! report.assert_passed();
//! # }
//! ```
//!
//! Checks: compare-and-swap and stale versions; versions never repeat after a delete;
//! the refresh lock excludes across handles and a cancelled wait holds nothing; the
//! lock holder can still write; two managers on one location refresh once (a rotating
//! refresh token is never sent twice); a logout elsewhere ends the session here and is
//! never undone by this process's refresh; a login elsewhere is adopted, never
//! overwritten; a store that fails loses nothing (the refreshed session is saved once
//! the store works again, and meanwhile no other manager sends the spent token).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use authmux_core::store::{StoreLock, Swap, Versioned};
use authmux_core::{
    AccessToken, AuthError, Credentials, Expiry, ManualClock, RefreshToken, Session,
    SessionManager, SessionStore, TokenSet, async_trait,
};
use url::Url;

use crate::conformance::{CheckResult, Report};
use crate::scripted::ScriptedProvider;

type Check = Result<CheckResult, String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Distinct location names across runs in one process.
static RUN: AtomicU64 = AtomicU64::new(0);

/// Runs every check against the store opened by `open` and collects the results.
pub async fn run<F, Fut>(open: F) -> Report
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<dyn SessionStore>>,
{
    let run = format!(
        "conformance-{}-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    let name = |check: &str| format!("{run}-{check}");
    let mut report = Report::default();
    let mut record = |check: &'static str, result: Check| {
        report
            .results
            .push((check, result.unwrap_or_else(CheckResult::Failed)));
    };
    record(
        "compare_and_swap",
        compare_and_swap(open(name("cas")).await).await,
    );
    record(
        "versions_never_repeat",
        versions_never_repeat(open(name("versions")).await, open(name("versions")).await).await,
    );
    record(
        "lock_excludes_across_handles",
        lock_excludes(open(name("lock")).await, open(name("lock")).await).await,
    );
    record(
        "lock_holder_can_write",
        holder_can_write(open(name("holder")).await, open(name("holder")).await).await,
    );
    record(
        "two_managers_refresh_once",
        two_managers_refresh_once(open(name("two")).await, open(name("two")).await).await,
    );
    record(
        "logout_elsewhere_ends_the_session_here",
        logout_elsewhere(
            open(name("logout")).await,
            open(name("logout")).await,
            open(name("logout")).await,
        )
        .await,
    );
    record(
        "login_elsewhere_is_adopted",
        login_elsewhere(open(name("login")).await, open(name("login")).await).await,
    );
    record(
        "a_failing_store_loses_nothing",
        failing_store(open(name("failing")).await, open(name("failing")).await).await,
    );
    report
}

/// A session with recognisable tokens, for the raw store checks.
fn sample(n: u32) -> Session {
    let tokens = TokenSet::new(
        AccessToken::new(format!("conformance-access-{n}")),
        Some(RefreshToken::new(format!("conformance-refresh-{n}"))),
        Expiry::In(Duration::from_secs(900)),
        std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    Session::new(
        "conformance",
        Url::parse("https://store.example.test").expect("static URL"),
        tokens,
    )
}

fn err(e: AuthError) -> String {
    format!("store error: {e}")
}

/// Compare-and-swap writes only over the expected version and reports what is there.
pub async fn compare_and_swap(store: Arc<dyn SessionStore>) -> Check {
    ensure!(
        store.load().await.map_err(err)?.is_none(),
        "a new location is not empty"
    );
    match store
        .compare_and_swap(Some(1), Some(&sample(1)))
        .await
        .map_err(err)?
    {
        Swap::Conflict(None) => {}
        other => {
            return Err(format!(
                "writing over a version into an empty store: {other:?}"
            ));
        }
    }
    let Swap::Done(v1) = store
        .compare_and_swap(None, Some(&sample(1)))
        .await
        .map_err(err)?
    else {
        return Err("the first write into an empty store conflicted".into());
    };
    ensure!(v1 != 0, "a written session got version 0");
    let loaded = store.load().await.map_err(err)?;
    ensure!(
        loaded
            == Some(Versioned {
                version: v1,
                session: sample(1)
            }),
        "load does not return what was written: {loaded:?}"
    );
    let Swap::Done(v2) = store
        .compare_and_swap(Some(v1), Some(&sample(2)))
        .await
        .map_err(err)?
    else {
        return Err("a write over the current version conflicted".into());
    };
    ensure!(v2 != v1, "a write kept the version {v1}");
    match store
        .compare_and_swap(Some(v1), Some(&sample(3)))
        .await
        .map_err(err)?
    {
        Swap::Conflict(Some(current)) if current.session == sample(2) && current.version == v2 => {}
        other => {
            return Err(format!(
                "a stale write was not refused with what is there: {other:?}"
            ));
        }
    }
    match store.compare_and_swap(Some(v1), None).await.map_err(err)? {
        Swap::Conflict(Some(_)) => {}
        other => return Err(format!("a stale delete was not refused: {other:?}")),
    }
    ensure!(
        matches!(
            store.compare_and_swap(Some(v2), None).await.map_err(err)?,
            Swap::Done(_)
        ),
        "a delete of the current version conflicted"
    );
    ensure!(
        store.load().await.map_err(err)?.is_none(),
        "the session is still there after a delete"
    );
    Ok(CheckResult::Passed)
}

/// Versions never repeat for a location, across deletes and handles.
pub async fn versions_never_repeat(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) -> Check {
    let mut seen = HashSet::new();
    for n in 0..6 {
        let store = if n % 2 == 0 { &a } else { &b };
        let version = store.save(&sample(n)).await.map_err(err)?;
        ensure!(
            seen.insert(version),
            "version {version} was given twice (after a delete and a new write)"
        );
        let other = if n % 2 == 0 { &b } else { &a };
        let loaded = other.load().await.map_err(err)?.map(|v| v.version);
        ensure!(
            loaded == Some(version),
            "another handle reads version {loaded:?}, not {version}"
        );
        store.delete().await.map_err(err)?;
    }
    Ok(CheckResult::Passed)
}

/// The refresh lock excludes across handles; a cancelled wait holds nothing.
pub async fn lock_excludes(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) -> Check {
    let held = a.lock().await.map_err(err)?;
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), b.lock())
            .await
            .is_err(),
        "a second handle took the refresh lock while the first held it"
    );
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(5), b.lock())
        .await
        .map_err(|_| {
            "the lock stayed taken after its holder released it (or a cancelled wait kept it)"
                .to_string()
        })?
        .map_err(err)?;
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), a.lock())
            .await
            .is_err(),
        "the first handle took the lock back while the second held it"
    );
    drop(again);
    Ok(CheckResult::Passed)
}

/// The lock's holder (and anyone else) can still write: writes never need the lock.
pub async fn holder_can_write(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) -> Check {
    let held = a.lock().await.map_err(err)?;
    let write = async {
        let v = a.save(&sample(1)).await?;
        b.compare_and_swap(Some(v), Some(&sample(2))).await
    };
    let swap = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .map_err(|_| "writing while the refresh lock is held hung".to_string())?
        .map_err(err)?;
    ensure!(
        matches!(swap, Swap::Done(_)),
        "a write while the lock was held conflicted: {swap:?}"
    );
    drop(held);
    a.delete().await.map_err(err)?;
    Ok(CheckResult::Passed)
}

/// A provider with rotation and reuse detection, and a manager factory on one clock.
struct Rig {
    clock: ManualClock,
    provider: ScriptedProvider,
}

impl Rig {
    fn new() -> Self {
        let clock = ManualClock::at_unix(1_800_000_000);
        let mut provider = ScriptedProvider::new(clock.clone());
        provider.reuse_detection = true;
        provider.lifetime = Some(Duration::from_secs(300));
        Self { clock, provider }
    }

    fn manager(&self, store: Arc<dyn SessionStore>) -> SessionManager {
        SessionManager::builder(Arc::new(self.provider.clone()))
            .shared_store(store)
            .clock(self.clock.clone())
            .store_lock_timeout(Duration::from_millis(500))
            .build()
    }

    fn credentials() -> Credentials {
        Credentials::new("u@example.test", "right")
    }
}

/// Two managers on one location, after expiry, many callers each: one refresh, and the
/// rotated refresh token is never presented again.
pub async fn two_managers_refresh_once(
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
) -> Check {
    let rig = Rig::new();
    let first = rig.manager(a);
    let second = rig.manager(b);
    first.login(&Rig::credentials()).await.map_err(err)?;
    ensure!(
        second.restore().await.map_err(err)?.is_some(),
        "the second manager did not find the first one's session"
    );
    rig.clock.advance(Duration::from_secs(301));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let manager = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move { manager.access_token().await }));
    }
    let mut tokens = HashSet::new();
    for task in tasks {
        let token = task
            .await
            .map_err(|e| format!("a caller panicked: {e}"))?
            .map_err(|e| format!("a caller failed: {e}"))?;
        tokens.insert(token.expose_secret().to_owned());
    }
    let record = rig.provider.record();
    ensure!(
        record.refresh_calls == 1,
        "{} refreshes for one expiry through two managers on one store",
        record.refresh_calls
    );
    ensure!(
        record.spent_presented == 0,
        "a rotated refresh token was presented again"
    );
    ensure!(
        tokens.len() == 1,
        "callers got {} different tokens",
        tokens.len()
    );
    Ok(CheckResult::Passed)
}

/// A logout elsewhere while this manager refreshes: the session ends here too and the
/// store stays empty (the refresh never brings it back).
pub async fn logout_elsewhere(
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
    c: Arc<dyn SessionStore>,
) -> Check {
    let mut rig = Rig::new();
    // The server rotates at once; its answer arrives 300 ms later.
    rig.provider.refresh_answer_delay = Duration::from_millis(300);
    let refreshing = rig.manager(a);
    let leaving = rig.manager(b);
    refreshing.login(&Rig::credentials()).await.map_err(err)?;
    leaving.restore().await.map_err(err)?;
    let slow = {
        let refreshing = refreshing.clone();
        tokio::spawn(async move { refreshing.refresh().await })
    };
    // Let the refresh start (the server is answering), then sign out elsewhere.
    tokio::time::sleep(Duration::from_millis(100)).await;
    leaving.logout().await.map_err(err)?;
    let result = slow
        .await
        .map_err(|e| format!("the refresh panicked: {e}"))?;
    ensure!(
        result.is_err(),
        "the refresh succeeded although the user signed out elsewhere meanwhile"
    );
    ensure!(
        refreshing.session().is_none(),
        "the session lives on here after a logout elsewhere"
    );
    let newcomer = rig.manager(c);
    ensure!(
        newcomer.restore().await.map_err(err)?.is_none(),
        "a new process restores a session the user signed out of"
    );
    // And without a refresh in flight: the next refresh here notices and ends.
    refreshing.login(&Rig::credentials()).await.map_err(err)?;
    leaving.restore().await.map_err(err)?;
    leaving.logout().await.map_err(err)?;
    rig.clock.advance(Duration::from_secs(301));
    ensure!(
        refreshing.access_token().await.is_err(),
        "a token was handed out after a logout elsewhere"
    );
    ensure!(
        newcomer.restore().await.map_err(err)?.is_none(),
        "the store holds a session after a logout elsewhere"
    );
    Ok(CheckResult::Passed)
}

/// A login elsewhere replaces the stored session; this manager adopts it at its next
/// refresh and never overwrites it with its own sign-in.
pub async fn login_elsewhere(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) -> Check {
    let rig = Rig::new();
    let here = rig.manager(a);
    let elsewhere = rig.manager(b.clone());
    here.login(&Rig::credentials()).await.map_err(err)?;
    let theirs = match elsewhere.login(&Rig::credentials()).await.map_err(err)? {
        authmux_core::LoginOutcome::Authenticated(session) => session,
        authmux_core::LoginOutcome::OtpRequired(_) => {
            return Err("the scripted provider asked for a code".into());
        }
    };
    rig.clock.advance(Duration::from_secs(301));
    match here.access_token().await {
        Ok(_) => {
            let mine = here.session().ok_or("signed out after adopting")?;
            ensure!(
                mine.lineage == theirs.lineage,
                "this manager kept its own sign-in instead of adopting the newer one"
            );
        }
        Err(_) => ensure!(
            here.session().is_none(),
            "failed, but kept a session of the replaced sign-in"
        ),
    }
    let stored = b
        .load()
        .await
        .map_err(err)?
        .ok_or("the store was emptied")?;
    ensure!(
        stored.session.lineage == theirs.lineage,
        "the newer sign-in in the store was overwritten"
    );
    Ok(CheckResult::Passed)
}

/// A store that fails on demand, over another store.
#[derive(Debug)]
struct Failing {
    inner: Arc<dyn SessionStore>,
    fail_writes: Arc<AtomicBool>,
}

#[async_trait]
impl SessionStore for Failing {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        self.inner.load().await
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(AuthError::Store {
                message: "injected write failure".into(),
                source: None,
            });
        }
        self.inner.compare_and_swap(expected, new).await
    }

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        self.inner.lock().await
    }
}

/// A save that fails after a refresh loses nothing: the caller that asked for
/// durability hears of it, the session keeps working, no other manager sends the spent
/// refresh token meanwhile, and the save lands once the store works again.
pub async fn failing_store(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) -> Check {
    let rig = Rig::new();
    let fail_writes = Arc::new(AtomicBool::new(false));
    let flaky: Arc<dyn SessionStore> = Arc::new(Failing {
        inner: a,
        fail_writes: Arc::clone(&fail_writes),
    });
    let here = rig.manager(flaky);
    let other = rig.manager(b.clone());
    here.login(&Rig::credentials()).await.map_err(err)?;
    other.restore().await.map_err(err)?;
    let before = b.load().await.map_err(err)?.ok_or("nothing stored")?;
    fail_writes.store(true, Ordering::SeqCst);
    let refreshed = here.refresh().await;
    ensure!(
        matches!(refreshed, Err(AuthError::Store { .. })),
        "refresh() returned {refreshed:?} although its session could not be saved"
    );
    ensure!(
        here.access_token().await.is_ok(),
        "the refreshed session does not work in memory"
    );
    ensure!(
        b.load().await.map_err(err)?.map(|v| v.version) == Some(before.version),
        "the failing store changed"
    );
    // Another manager must not refresh with the refresh token this one just spent.
    rig.clock.advance(Duration::from_secs(301));
    let blocked = other.access_token().await;
    ensure!(
        blocked.is_err(),
        "another manager got a token while the newest tokens were unsaved"
    );
    ensure!(
        rig.provider.record().spent_presented == 0,
        "a spent refresh token was sent while the store was failing"
    );
    fail_writes.store(false, Ordering::SeqCst);
    here.flush()
        .await
        .map_err(|e| format!("flush after the store recovered: {e}"))?;
    let saved = b.load().await.map_err(err)?.ok_or("nothing stored")?;
    let mine = here.session().ok_or("signed out")?;
    ensure!(
        saved.session.tokens.refresh == mine.tokens.refresh,
        "the store does not hold the newest refresh token after it recovered"
    );
    ensure!(
        other.access_token().await.is_ok(),
        "the other manager cannot carry on once the store recovered"
    );
    ensure!(
        rig.provider.record().spent_presented == 0,
        "a spent refresh token was sent"
    );
    Ok(CheckResult::Passed)
}
