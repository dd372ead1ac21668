//! Regression tests for the shared-session defects (issue 10) that a single-store test
//! in one process shows; the cross-store ones are in the test kit's store conformance
//! suite (run by every store) and the two-process ones in the CLI's tests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authmux_core::store::{StoreLock, Swap, Versioned};
use authmux_core::transport::Transport;
use authmux_core::{
    AuthError, Clock, Credentials, Expiry, ManualClock, MemoryStore, Session, SessionManager,
    SessionStore, TokenSet, async_trait,
};
use bytes::Bytes;
use support::Scripted;

fn credentials() -> Credentials {
    Credentials::new("u@example.test", "right")
}

fn manager_over(provider: &Scripted, store: impl SessionStore + 'static) -> SessionManager {
    SessionManager::builder(Arc::new(provider.clone()))
        .store(store)
        .clock(provider.clock.clone())
        .build()
}

/// Defect 4: a hydrated session whose access token is already expired is never handed
/// to concurrent callers; they wait for one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hydrated_token_is_never_handed_to_waiters() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let live = provider.new_session();
    // The caller kept tokens from long ago: the access token expired, the refresh
    // token is still good.
    let expired = TokenSet::new(
        live.tokens.access.clone(),
        live.tokens.refresh.clone(),
        Expiry::In(Duration::from_secs(60)),
        clock.now() - Duration::from_secs(3600),
    );
    let manager = manager_over(&provider, MemoryStore::new());
    let stale = expired.access.expose_secret().to_owned();
    let hydrating = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.hydrate(expired).await })
    };
    let mut callers = Vec::new();
    for _ in 0..16 {
        let manager = manager.clone();
        callers.push(tokio::spawn(async move { manager.access_token().await }));
    }
    hydrating.await.unwrap().unwrap();
    for caller in callers {
        match caller.await.unwrap() {
            Ok(token) => assert_ne!(token.expose_secret(), stale, "an expired token"),
            Err(AuthError::NotSignedIn) => {} // asked before the hydration landed
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    let token = manager.access_token().await.unwrap();
    assert_ne!(token.expose_secret(), stale);
    assert_eq!(provider.record().refresh_calls, 1);
}

/// Defect 4: a request rejected with 401 is never replayed with a session of another
/// sign-in (a logout and a new login while its refresh ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_never_uses_another_sign_in() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = Scripted::new(clock.clone());
    provider.refresh_delay = Duration::from_millis(300);
    let manager = manager_over(&provider, MemoryStore::new());
    manager.login(&credentials()).await.unwrap();
    let first = manager.session().unwrap();
    let replaying = {
        let manager = manager.clone();
        let first = first.clone();
        tokio::spawn(async move { manager.session_after_unauthorized(&first).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    manager.logout().await.unwrap();
    manager.login(&credentials()).await.unwrap();
    let second = manager.session().unwrap();
    assert_ne!(first.lineage, second.lineage);
    match replaying.await.unwrap() {
        Ok(session) => assert_eq!(
            session.lineage, first.lineage,
            "a request of the first sign-in got the second sign-in's credentials"
        ),
        Err(e) => assert!(e.needs_sign_in() || e.is_retryable(), "{e:?}"),
    }
}

/// A store whose writes fail on demand and whose lock may hang forever.
#[derive(Debug, Default)]
struct Unreliable {
    inner: MemoryStore,
    fail_writes: Arc<AtomicBool>,
    lock_hangs: Arc<AtomicBool>,
}

#[async_trait]
impl SessionStore for Unreliable {
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
                message: "disk full".into(),
                source: None,
            });
        }
        self.inner.compare_and_swap(expected, new).await
    }
    async fn lock(&self) -> Result<StoreLock, AuthError> {
        if self.lock_hangs.load(Ordering::SeqCst) {
            // A peer that took the lock and stopped.
            std::future::pending::<()>().await;
        }
        self.inner.lock().await
    }
}

/// Defect 6: a logout whose store cannot be cleared says so.
#[tokio::test]
async fn logout_returns_the_store_error() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = Unreliable::default();
    let fail_writes = Arc::clone(&store.fail_writes);
    let inner = store.inner.clone();
    let manager = manager_over(&provider, store);
    manager.login(&credentials()).await.unwrap();
    fail_writes.store(true, Ordering::SeqCst);
    let err = manager.logout().await.unwrap_err();
    assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
    // The server was still told, and the session here is over.
    assert_eq!(provider.record().logouts, 1);
    assert!(manager.session().is_none());
    assert!(
        inner.load().await.unwrap().is_some(),
        "the store could not be cleared"
    );
}

/// Defect 7: a hung peer's lock stalls no caller forever: with a valid token callers
/// are not blocked at all; with an expired one they get a typed error at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_lock_holder_blocks_nobody_forever() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = Unreliable::default();
    let lock_hangs = Arc::clone(&store.lock_hangs);
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store)
        .clock(clock.clone())
        .store_lock_timeout(Duration::from_millis(300))
        .build();
    manager.login(&credentials()).await.unwrap();
    lock_hangs.store(true, Ordering::SeqCst);
    // In the refresh window, still valid: handed out at once.
    clock.advance(Duration::from_secs(880));
    let started = Instant::now();
    manager.access_token().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // Refused by the server (401) while still valid here: a typed store error at the
    // deadline, not the refused token back.
    let refused = manager.session().unwrap();
    let started = Instant::now();
    let err = manager
        .session_after_unauthorized(&refused)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Expired: a typed store error at the deadline, and no refresh without the lock.
    clock.advance(Duration::from_secs(30));
    let started = Instant::now();
    let err = manager.access_token().await.unwrap_err();
    assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(provider.record().refresh_calls, 0);
    // The peer goes away: everything works again.
    lock_hangs.store(false, Ordering::SeqCst);
    manager.access_token().await.unwrap();
    assert_eq!(provider.record().refresh_calls, 1);
}

/// A background refresh-ahead does not hold out for another process's lock (the store
/// lock timeout, 35 s by default): it gives up at once, the valid token stays in use,
/// and the manager is idle again, so an exiting process (the CLI waits for `idle`) is
/// not kept waiting. With the lock free again, the next call in the window refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_refresh_does_not_hold_out_for_a_busy_lock() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = Unreliable::default();
    let lock_hangs = Arc::clone(&store.lock_hangs);
    let manager = manager_over(&provider, store);
    manager.login(&credentials()).await.unwrap();
    let before = manager.access_token().await.unwrap();
    lock_hangs.store(true, Ordering::SeqCst);
    // In the refresh window, still valid: handed out, and a refresh-ahead starts.
    clock.advance(Duration::from_secs(880));
    assert_eq!(manager.access_token().await.unwrap(), before);
    tokio::time::timeout(Duration::from_secs(10), manager.idle())
        .await
        .expect("the background refresh waited for the busy lock");
    assert_eq!(provider.record().refresh_calls, 0);
    assert_eq!(manager.access_token().await.unwrap(), before);
    manager.idle().await;
    // The peer goes away: the next call in the window refreshes in the background.
    lock_hangs.store(false, Ordering::SeqCst);
    manager.access_token().await.unwrap();
    manager.idle().await;
    assert_eq!(provider.record().refresh_calls, 1);
    assert_ne!(manager.access_token().await.unwrap(), before);
}

/// Defect 5: a refresh whose save failed keeps the session dirty; the next calls save
/// it once the store works, so the store never keeps the spent refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_refresh_is_saved_by_the_next_calls() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = Unreliable::default();
    let fail_writes = Arc::clone(&store.fail_writes);
    let inner = store.inner.clone();
    let manager = manager_over(&provider, store);
    manager.login(&credentials()).await.unwrap();
    fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(
        manager.refresh().await,
        Err(AuthError::Store { .. })
    ));
    assert!(matches!(
        manager.flush().await,
        Err(AuthError::Store { .. })
    ));
    let newest = manager.session().unwrap().tokens.refresh;
    assert_ne!(
        inner.load().await.unwrap().unwrap().session.tokens.refresh,
        newest
    );
    fail_writes.store(false, Ordering::SeqCst);
    // A plain call on the hot path starts the save in the background.
    manager.access_token().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while inner.load().await.unwrap().unwrap().session.tokens.refresh != newest {
        assert!(
            Instant::now() < deadline,
            "the unsaved session was never saved"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    manager.flush().await.unwrap();
}

/// Defect 9: outside a tokio runtime the manager refuses before changing anything.
#[test]
fn outside_a_runtime_nothing_changes_and_nothing_panics() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = MemoryStore::new();
    let manager = manager_over(&provider, store.clone());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(manager.login(&credentials()))
        .unwrap();
    // Now, with no runtime around (another executor, or none):
    assert!(matches!(
        poll_once(manager.logout()),
        Some(Err(AuthError::Unsupported { .. }))
    ));
    assert!(
        manager.session().is_some(),
        "the session ended although logout failed"
    );
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        poll_once(manager.refresh()),
        Some(Err(AuthError::Unsupported { .. }))
    ));
    assert!(matches!(
        poll_once(manager.access_token()),
        Some(Err(AuthError::Unsupported { .. }))
    ));
    let stored = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.load())
        .unwrap();
    assert!(stored.is_some(), "the store was changed");
}

/// Polls a future once with a no-op waker (no runtime), returning its output if ready.
fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Defect 10: one `send` is bounded as a whole, whatever the server does.
#[tokio::test]
async fn send_has_an_overall_deadline() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let manager = SessionManager::builder(Arc::new(HangingApi(provider.clone())))
        .clock(clock)
        .send_timeout(Duration::from_millis(200))
        .build();
    manager.login(&credentials()).await.unwrap();
    let started = Instant::now();
    let err = manager
        .send(http::Request::get("/slow").body(Bytes::new()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The scripted provider, with a resource server that never answers.
#[derive(Debug)]
struct HangingApi(Scripted);

#[async_trait]
impl authmux_core::AuthProvider for HangingApi {
    fn dialect(&self) -> &str {
        self.0.dialect()
    }
    fn base_url(&self) -> &url::Url {
        self.0.base_url()
    }
    fn capabilities(&self) -> authmux_core::Capabilities {
        self.0.capabilities()
    }
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(authmux_core::transport::from_fn(
            |_req: http::Request<Bytes>| async move {
                std::future::pending::<Result<http::Response<Bytes>, AuthError>>().await
            },
        ))
    }
    async fn login(&self, c: &Credentials) -> Result<authmux_core::LoginOutcome, AuthError> {
        self.0.login(c).await
    }
    async fn verify_otp(
        &self,
        c: &authmux_core::OtpChallenge,
        code: &authmux_core::OtpCode,
    ) -> Result<Session, AuthError> {
        self.0.verify_otp(c, code).await
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await
    }
    async fn logout(&self, s: &Session) -> Result<authmux_core::LogoutOutcome, AuthError> {
        self.0.logout(s).await
    }
    async fn current_user(&self, s: &Session) -> Result<authmux_core::UserProfile, AuthError> {
        self.0.current_user(s).await
    }
}

/// Issue 18's core bug: a refresh whose token is already expired on arrival (a zero
/// lifetime, or a server clock behind) is kept for its refresh token but never handed
/// out; the caller gets a typed error, without a loop.
#[tokio::test]
async fn a_token_expired_on_arrival_is_never_handed_out() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = Scripted::new(clock.clone());
    let manager = manager_over(&provider, MemoryStore::new());
    manager.login(&credentials()).await.unwrap();
    // From now on the server issues tokens that are expired when they arrive.
    provider.lifetime = Some(Duration::ZERO);
    let zero = SessionManager::builder(Arc::new(provider.clone()))
        .clock(clock.clone())
        .build();
    zero.sign_in_with(manager.session().unwrap()).await.unwrap();
    clock.advance(Duration::from_secs(1_000));
    let err = zero.access_token().await.unwrap_err();
    assert!(matches!(err, AuthError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("expired on arrival"), "{err}");
    // Exactly one refresh for that call (no loop), and the rotated refresh token is
    // kept: the next call refreshes with it, not with the spent one.
    assert_eq!(provider.record().refresh_calls, 1);
    let _ = zero.access_token().await;
    assert_eq!(provider.record().refresh_calls, 2);
    assert_eq!(provider.record().spent_presented, 0);
}

/// A store in front of a shared one that serves a stale snapshot on demand: what a
/// process sees when its refresh lock was lost (a lease that expired while it stalled)
/// and another process rotated the session in between.
#[derive(Debug)]
struct StaleOnce {
    inner: MemoryStore,
    stale: Arc<std::sync::Mutex<Option<Versioned>>>,
}

#[async_trait]
impl SessionStore for StaleOnce {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        let stale = self.stale.lock().unwrap().take();
        match stale {
            Some(snapshot) => Ok(Some(snapshot)),
            None => self.inner.load().await,
        }
    }
    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        self.inner.compare_and_swap(expected, new).await
    }
    async fn lock(&self) -> Result<StoreLock, AuthError> {
        self.inner.lock().await
    }
}

/// A refresh refused because another process already rotated the token adopts that
/// process's session from the store: the caller gets its token, and the store keeps
/// the live sign-in (it used to end the session and clear the store under the fleet).
#[tokio::test]
async fn a_refresh_refused_after_another_process_rotated_adopts_its_session() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let shared = MemoryStore::new();
    let a = manager_over(&provider, shared.clone());
    a.login(&credentials()).await.unwrap();
    let snapshot = shared.load().await.unwrap().unwrap();
    let stale = Arc::new(std::sync::Mutex::new(None));
    let b = manager_over(
        &provider,
        StaleOnce {
            inner: shared.clone(),
            stale: Arc::clone(&stale),
        },
    );
    b.restore().await.unwrap().unwrap();
    // A rotates; B then reads the store before refreshing and is served the old
    // session, so it presents the refresh token A already spent.
    let rotated = a.refresh().await.unwrap();
    *stale.lock().unwrap() = Some(snapshot);
    let got = b.refresh().await.expect("adopted, not refused");
    assert_eq!(got, rotated);
    assert_eq!(provider.record().rejections, 1, "B's refresh was refused");
    assert_eq!(b.access_token().await.unwrap(), rotated);
    let stored = shared
        .load()
        .await
        .unwrap()
        .expect("the store keeps the sign-in");
    assert_eq!(stored.session.tokens.access, rotated);
    assert_eq!(a.access_token().await.unwrap(), rotated);
}
