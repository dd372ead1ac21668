//! The session manager against a scripted provider: hot path, single-flight refresh,
//! refresh-and-replay on 401, rejection and transient failures, events, stores shared
//! by two managers, origin checks.

mod support;

use std::sync::Arc;
use std::time::Duration;

use authmux_core::lifecycle::SessionEvent;
use authmux_core::strategies::RefreshAnswer;
use authmux_core::{
    AuthError, Credentials, ManualClock, MemoryStore, Phase, SessionManager, SessionStore,
};
use bytes::Bytes;
use support::Scripted;

fn setup() -> (ManualClock, Scripted, SessionManager, MemoryStore) {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let store = MemoryStore::new();
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .clock(clock.clone())
        .build();
    (clock, provider, manager, store)
}

fn get(path: &str) -> http::Request<Bytes> {
    http::Request::get(path).body(Bytes::new()).unwrap()
}

/// A signed-in manager on a scripted provider whose refresh takes 50 ms (long enough
/// for a caller to give up while it runs).
async fn signed_in_with_a_slow_refresh() -> (Scripted, SessionManager) {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = Scripted::new(clock.clone());
    provider.refresh_delay = Duration::from_millis(50);
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .clock(clock)
        .build();
    login(&manager).await;
    (provider, manager)
}

async fn login(manager: &SessionManager) {
    manager
        .login(&Credentials::new("u@example.test", "right"))
        .await
        .unwrap();
}

#[tokio::test]
async fn login_persists_and_hot_path_needs_no_refresh() {
    let (_clock, provider, manager, store) = setup();
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    assert!(matches!(
        manager
            .login(&Credentials::new("u@example.test", "wrong"))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    login(&manager).await;
    let token = manager.access_token().await.unwrap();
    assert_eq!(token, manager.access_token().await.unwrap());
    assert_eq!(provider.record().refresh_calls, 0);
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.session.tokens.access, token);
    assert_eq!(manager.phase(), Phase::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_in_the_window_get_the_valid_token_and_one_background_refresh() {
    let (clock, mut provider, _, store) = setup();
    provider.refresh_delay = Duration::from_millis(200);
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store)
        .clock(clock.clone())
        .build();
    login(&manager).await;
    let old = manager.access_token().await.unwrap();
    clock.advance(Duration::from_secs(890)); // inside the window, still valid
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.access_token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    // Nobody waited for the 200 ms refresh: everyone got the still-valid token ...
    assert!(tokens.iter().all(|t| *t == old));
    // ... and exactly one refresh ran in the background.
    manager.idle().await;
    assert_eq!(provider.record().refresh_calls, 1);
    let new = manager.access_token().await.unwrap();
    assert_ne!(new, old);
    assert_eq!(provider.record().refresh_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_never_handed_out_and_a_storm_refreshes_once() {
    let (clock, provider, manager, _) = setup();
    login(&manager).await;
    clock.advance(Duration::from_secs(1_000)); // past expiry
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.access_token().await })
        })
        .collect();
    for t in tasks {
        let token = t.await.unwrap().unwrap();
        let expiry = provider.record().issued_access[token.expose_secret()];
        assert!(expiry.unwrap() > authmux_core::Clock::now(&clock));
    }
    assert_eq!(provider.record().refresh_calls, 1);
}

#[tokio::test]
async fn send_refreshes_once_on_401_and_replays_once() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    let before = manager.access_token().await.unwrap();
    provider.revoke_access(before.expose_secret());
    let response = manager.send(get("/things?a=1")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.body(),
        &Bytes::from_static(b"{\"path\":\"/things\"}")
    );
    assert_eq!(provider.record().refresh_calls, 1);
    assert_eq!(provider.record().api_calls, 2);
    assert_ne!(manager.access_token().await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_share_one_refresh() {
    let (_clock, mut provider, _, store) = setup();
    provider.refresh_delay = Duration::from_millis(10);
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store)
        .build();
    // The manager uses the system clock here, the provider a manual one set in the
    // future: tokens look long-lived to both.
    login(&manager).await;
    let token = manager.access_token().await.unwrap();
    provider.revoke_access(token.expose_secret());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.send(get("/x")).await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(provider.record().refresh_calls, 1);
}

/// A 401 on an old token is answered with the token another process refreshed (adopted
/// from the store) only while that one is fresh: one already in its refresh window may
/// be refused too (the window is where the local expiry's margin of error lies), so the
/// refused caller gets a refresh instead.
#[tokio::test]
async fn after_a_401_a_fresh_replacement_is_taken_and_one_in_its_window_refreshed() {
    let (clock, provider, a, store) = setup();
    login(&a).await;
    let b = SessionManager::builder(Arc::new(provider.clone()))
        .store(store)
        .clock(clock.clone())
        .build();
    b.restore().await.unwrap().unwrap();
    let first = a.session().unwrap();

    // Another process (B) refreshed; A still holds the first token when it is refused.
    clock.advance(Duration::from_secs(600));
    let second = b.refresh().await.unwrap();
    let replacement = a.session_after_unauthorized(&first).await.unwrap();
    assert_eq!(replacement.tokens.access, second, "the fresh replacement");
    assert_eq!(
        provider.record().refresh_calls,
        1,
        "taken without a refresh"
    );

    // B refreshes again; A is refused on the second token when the third (which it has
    // not seen yet) is valid for 10 s more, inside its window.
    clock.advance(Duration::from_secs(100));
    let third = b.refresh().await.unwrap();
    clock.advance(Duration::from_secs(890));
    let replacement = a.session_after_unauthorized(&replacement).await.unwrap();
    assert_ne!(
        replacement.tokens.access, third,
        "a token in its window after a 401"
    );
    assert_ne!(replacement.tokens.access, second);
    assert_eq!(
        provider.record().refresh_calls,
        3,
        "one refresh, by the refused caller"
    );
    let expiry = provider.record().issued_access[replacement.tokens.access.expose_secret()];
    assert!(expiry.unwrap() > authmux_core::Clock::now(&clock) + Duration::from_secs(800));
}

/// A 401 whose refresh fails transiently gives the caller that failure (to retry), not
/// a replay with the token the server just refused; the session is kept.
#[tokio::test]
async fn a_401_whose_refresh_fails_transiently_is_that_failure_not_a_replay() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    let token = manager.access_token().await.unwrap();
    provider.revoke_access(token.expose_secret());
    provider.script([RefreshAnswer::Transient]);
    let error = manager.send(get("/x")).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(
        !matches!(error, AuthError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(
        provider.record().api_calls,
        1,
        "replayed with the refused token"
    );
    assert_eq!(provider.record().refresh_calls, 1);
    assert!(manager.session().is_some(), "the session was dropped");
    // The next call refreshes and goes through.
    let response = manager.send(get("/x")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(provider.record().refresh_calls, 2);
}

#[tokio::test]
async fn a_second_401_is_a_typed_error() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    provider
        .api_always_401
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = manager.send(get("/x")).await.unwrap_err();
    assert!(matches!(err, AuthError::Unauthorized { .. }), "{err:?}");
    // One refresh, one replay, no loop.
    assert_eq!(provider.record().refresh_calls, 1);
    assert_eq!(provider.record().api_calls, 2);
    // The session itself is fine (the refresh succeeded); the resource said no.
    assert!(manager.session().is_some());
}

#[tokio::test]
async fn rejection_ends_the_session_and_clears_the_store() {
    let (clock, provider, manager, store) = setup();
    let mut events = manager.subscribe();
    login(&manager).await;
    provider.script([RefreshAnswer::Reject]);
    clock.advance(Duration::from_secs(895));
    // In the window the still-valid token is handed out; the background refresh is
    // refused and ends the session.
    assert!(manager.access_token().await.is_ok());
    manager.idle().await;
    assert!(store.load().await.unwrap().is_none());
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    assert_eq!(manager.phase(), Phase::SignedOut);
    // Past expiry, a refused refresh is the caller's error.
    login(&manager).await;
    provider.script([RefreshAnswer::Reject]);
    clock.advance(Duration::from_secs(1_000));
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::RefreshRejected)
    ));
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(matches!(seen[0], SessionEvent::SignedIn { .. }));
    assert!(seen.iter().any(|e| matches!(
        e,
        SessionEvent::RefreshFailed {
            session_kept: false,
            ..
        }
    )));
    assert!(matches!(seen.last(), Some(SessionEvent::SignedOut)));
}

#[tokio::test]
async fn transient_failures_back_off_while_the_token_is_valid() {
    let (clock, provider, _, store) = setup();
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .clock(clock.clone())
        .config(authmux_core::ManagerConfig {
            backoff: authmux_core::RefreshBackoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(2),
            },
            ..authmux_core::ManagerConfig::default()
        })
        .build();
    login(&manager).await;
    let old = manager.access_token().await.unwrap();
    provider.script([RefreshAnswer::Transient]);
    clock.advance(Duration::from_secs(880)); // in the window, still valid
    // The background refresh fails; the still-valid token is handed out.
    assert_eq!(manager.access_token().await.unwrap(), old);
    manager.idle().await;
    assert_eq!(provider.record().refresh_calls, 1);
    assert!(store.load().await.unwrap().is_some());
    // While backing off, calls neither wait nor start new refreshes.
    for _ in 0..5 {
        assert_eq!(manager.access_token().await.unwrap(), old);
        manager.idle().await;
    }
    assert_eq!(provider.record().refresh_calls, 1);
    // After the backoff, the next call tries again (in the background) and succeeds.
    clock.advance(Duration::from_secs(3));
    assert_eq!(manager.access_token().await.unwrap(), old);
    manager.idle().await;
    assert_eq!(provider.record().refresh_calls, 2);
    let new = manager.access_token().await.unwrap();
    assert_ne!(new, old);
    // Past expiry, a caller waits for one attempt and gets its typed error; the
    // session stays.
    provider.script([RefreshAnswer::Transient]);
    clock.advance(Duration::from_secs(2_000));
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::Timeout)
    ));
    assert!(manager.session().is_some());
    assert!(manager.access_token().await.is_ok());
}

#[tokio::test]
async fn without_refresh_expiry_is_a_typed_error_and_no_loop() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = Scripted::new(clock.clone());
    provider.can_refresh = false;
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .clock(clock.clone())
        .build();
    login(&manager).await;
    clock.advance(Duration::from_secs(899));
    assert!(manager.access_token().await.is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::SessionExpired)
    ));
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::SessionExpired)
    ));
    assert!(matches!(
        manager.send(get("/x")).await,
        Err(AuthError::SessionExpired)
    ));
    assert!(matches!(
        manager.refresh().await,
        Err(AuthError::SessionExpired)
    ));
    assert_eq!(provider.record().refresh_calls, 0);
    assert_eq!(provider.record().api_calls, 0);
}

#[tokio::test]
async fn explicit_refresh_rotates_and_the_old_token_is_never_sent_again() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    for _ in 0..5 {
        manager.refresh().await.unwrap();
    }
    let record = provider.record();
    assert_eq!(record.refresh_calls, 5);
    assert_eq!(record.spent_presented, 0);
    let unique: std::collections::HashSet<_> = record.presented.iter().collect();
    assert_eq!(unique.len(), 5);
}

#[tokio::test]
async fn hydration_and_restore() {
    let (_clock, provider, manager, store) = setup();
    let tokens = provider.new_session().tokens;
    manager.hydrate(tokens.clone()).await.unwrap();
    assert_eq!(manager.access_token().await.unwrap(), tokens.access);
    let again = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .build();
    let restored = again.restore().await.unwrap().unwrap();
    assert_eq!(restored.tokens, tokens);
    assert_eq!(again.access_token().await.unwrap(), tokens.access);
}

#[tokio::test]
async fn two_managers_sharing_a_store_never_refresh_with_the_same_token() {
    let (clock, provider, a, store) = setup();
    login(&a).await;
    let b = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .clock(clock.clone())
        .build();
    b.restore().await.unwrap();
    clock.advance(Duration::from_secs(895));
    a.access_token().await.unwrap();
    a.idle().await; // a's background refresh lands
    let ta = a.access_token().await.unwrap();
    // b still holds the old refresh token in memory; it must adopt a's result.
    b.access_token().await.unwrap();
    b.idle().await;
    let tb = b.access_token().await.unwrap();
    assert_eq!(ta, tb);
    assert_eq!(provider.record().refresh_calls, 1);
    assert_eq!(provider.record().spent_presented, 0);
    // Logging out in one ends the other at its next refresh (in the background while
    // its token is still valid).
    a.logout().await.unwrap();
    clock.advance(Duration::from_secs(895));
    let _ = b.access_token().await;
    b.idle().await;
    assert!(b.session().is_none());
    assert!(matches!(
        b.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
}

#[tokio::test]
async fn logout_revokes_and_forgets() {
    let (_clock, provider, manager, store) = setup();
    login(&manager).await;
    assert_eq!(
        manager.logout().await.unwrap(),
        authmux_core::LogoutOutcome::Revoked
    );
    assert_eq!(provider.record().logouts, 1);
    assert!(store.load().await.unwrap().is_none());
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    assert!(matches!(
        manager.logout().await,
        Err(AuthError::NotSignedIn)
    ));
}

#[tokio::test]
async fn credentials_only_go_to_the_session_origin() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    for url in [
        "https://evil.example/x",
        "http://api.example.test/x",
        "https://api.example.test:8443/x",
    ] {
        assert!(
            matches!(
                manager.send(get(url)).await,
                Err(AuthError::InsecureTransport { .. })
            ),
            "{url}"
        );
    }
    assert_eq!(provider.record().api_calls, 0);
    assert_eq!(
        manager
            .send(get("https://api.example.test/ok"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn current_user_goes_through_the_refresh_rule() {
    let (_clock, provider, manager, _) = setup();
    login(&manager).await;
    let token = manager.access_token().await.unwrap();
    provider.revoke_access(token.expose_secret());
    let user = manager.current_user().await.unwrap();
    assert_eq!(user.id.as_deref(), Some("u1"));
    assert_eq!(provider.record().refresh_calls, 1);
}

/// A store whose writes always fail, to check that sign-in reports it.
#[derive(Debug, Default)]
struct BrokenStore;

#[authmux_core::async_trait]
impl SessionStore for BrokenStore {
    async fn load(&self) -> Result<Option<authmux_core::Versioned>, AuthError> {
        Ok(None)
    }
    async fn compare_and_swap(
        &self,
        _: Option<u64>,
        _: Option<&authmux_core::Session>,
    ) -> Result<authmux_core::store::Swap, AuthError> {
        Err(AuthError::Store {
            message: "disk full".into(),
            source: None,
        })
    }
    async fn lock(&self) -> Result<authmux_core::store::StoreLock, AuthError> {
        Ok(authmux_core::store::StoreLock::none())
    }
}

#[tokio::test]
async fn a_failed_save_at_sign_in_is_reported_and_the_session_still_works() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let manager = SessionManager::builder(Arc::new(provider))
        .store(BrokenStore)
        .clock(clock)
        .build();
    let err = manager
        .login(&Credentials::new("u@example.test", "right"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
    // Nothing is lost: the session is live in memory.
    assert!(manager.access_token().await.is_ok());
}

#[tokio::test]
async fn a_caller_cancelled_during_a_refresh_does_not_break_the_session() {
    let (provider, manager) = signed_in_with_a_slow_refresh().await;
    let before = manager.access_token().await.unwrap();
    // The caller gives up while its refresh is in flight (a timeout, a dropped future).
    assert!(
        tokio::time::timeout(Duration::from_millis(10), manager.refresh())
            .await
            .is_err()
    );
    // The refresh it started goes on; a new caller joins it rather than starting
    // another, and gets its (rotated) answer.
    let after = manager.refresh().await.unwrap();
    assert_ne!(after, before);
    assert_eq!(manager.access_token().await.unwrap(), after);
    // And the session keeps working: the next refresh uses the new refresh token.
    manager.refresh().await.unwrap();
    let record = provider.record();
    assert_eq!(record.refresh_calls, 2);
    assert_eq!(
        record.spent_presented, 0,
        "the rotated refresh token was sent again"
    );
}

#[tokio::test]
async fn a_refresh_that_panics_leaves_the_session_usable() {
    /// Panics on its first refresh, then behaves.
    #[derive(Debug)]
    struct PanicsOnce(Scripted, std::sync::atomic::AtomicBool);
    #[authmux_core::async_trait]
    impl authmux_core::AuthProvider for PanicsOnce {
        fn dialect(&self) -> &str {
            self.0.dialect()
        }
        fn base_url(&self) -> &url::Url {
            self.0.base_url()
        }
        fn capabilities(&self) -> authmux_core::Capabilities {
            self.0.capabilities()
        }
        fn transport(&self) -> Arc<dyn authmux_core::Transport> {
            self.0.transport()
        }
        async fn login(&self, c: &Credentials) -> Result<authmux_core::LoginOutcome, AuthError> {
            self.0.login(c).await
        }
        async fn verify_otp(
            &self,
            ch: &authmux_core::OtpChallenge,
            code: &authmux_core::OtpCode,
        ) -> Result<authmux_core::Session, AuthError> {
            self.0.verify_otp(ch, code).await
        }
        async fn refresh(
            &self,
            s: &authmux_core::Session,
        ) -> Result<authmux_core::Session, AuthError> {
            assert!(
                self.1.swap(true, std::sync::atomic::Ordering::SeqCst),
                "provider bug"
            );
            self.0.refresh(s).await
        }
        async fn logout(
            &self,
            s: &authmux_core::Session,
        ) -> Result<authmux_core::LogoutOutcome, AuthError> {
            self.0.logout(s).await
        }
        async fn current_user(
            &self,
            s: &authmux_core::Session,
        ) -> Result<authmux_core::UserProfile, AuthError> {
            self.0.current_user(s).await
        }
    }
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = PanicsOnce(Scripted::new(clock.clone()), Default::default());
    let manager = SessionManager::builder(Arc::new(provider))
        .clock(clock.clone())
        .build();
    login(&manager).await;
    let err = manager.refresh().await.unwrap_err();
    assert!(
        err.is_retryable(),
        "a refresh that never answered is transient: {err:?}"
    );
    assert!(manager.session().is_some());
    // The next refresh runs normally.
    manager.refresh().await.unwrap();
    assert!(manager.access_token().await.is_ok());
}

#[tokio::test]
async fn a_cancelled_logout_still_ends_the_session_here_and_on_the_server() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = Scripted::new(clock.clone());
    provider.logout_delay = Duration::from_millis(50);
    let store = MemoryStore::new();
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .clock(clock)
        .build();
    login(&manager).await;
    // The caller gives up while the server is answering the logout.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), manager.logout())
            .await
            .is_err()
    );
    assert!(store.load().await.unwrap().is_none());
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    // The server call goes on and revokes the session there too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(provider.record().logouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_fresh_refreshes_an_idle_session_and_stops_with_its_handle_or_the_session() {
    let (clock, provider, manager, _) = setup();
    login(&manager).await;
    let handle = manager.keep_fresh().unwrap();
    // No calls at all: the task refreshes once the window opens.
    clock.advance(Duration::from_secs(890));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while provider.record().refresh_calls < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "keep_fresh never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.idle().await;
    // Fresh again: it waits for the next window instead of refreshing again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(provider.record().refresh_calls, 1);
    assert!(handle.is_running());
    // Dropped: no more refreshes, even in the next window.
    drop(handle);
    clock.advance(Duration::from_secs(890));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(provider.record().refresh_calls, 1);
    // A new one stops by itself when the session ends.
    let handle = manager.keep_fresh().unwrap();
    manager.logout().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handle.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "keep_fresh outlived the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_explicit_refresh_that_fails_is_an_error_while_the_valid_session_is_kept() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let provider = Scripted::new(clock.clone());
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .clock(clock.clone())
        .build();
    login(&manager).await;
    let old = manager.access_token().await.unwrap();
    provider.script([RefreshAnswer::Transient]);
    // Asked for, the refresh reports its failure...
    assert!(matches!(manager.refresh().await, Err(AuthError::Timeout)));
    assert_eq!(provider.record().refresh_calls, 1);
    // ...while the still-valid token goes on serving every caller.
    assert_eq!(manager.access_token().await.unwrap(), old);
    // A refresh asked for once the script is empty succeeds and returns the new token.
    let new = manager.refresh().await.unwrap();
    assert_ne!(new, old);
    assert_eq!(manager.access_token().await.unwrap(), new);
}

/// `send`'s future is part of every caller's future and is polled at every step of an
/// exchange, so its size is a cost on every request (memory touched, bytes moved). It
/// was 1,736 bytes before the slow paths were boxed and the request stopped being
/// stored twice; this keeps it from growing back unnoticed.
#[tokio::test]
async fn the_send_future_stays_small() {
    let (_clock, _provider, manager, _store) = setup();
    login(&manager).await;
    let future = manager.send(get("/items"));
    let size = std::mem::size_of_val(&future);
    assert!(size <= 640, "send's future is {size} bytes");
    drop(future);
    let future = manager.send_idempotent(get("/items"));
    assert!(std::mem::size_of_val(&future) <= 640);
}

/// The hot path's per-thread copies of the session end with it: after a logout nothing
/// the hot path kept, on any worker thread, holds the old session (its refresh token
/// included) alive, even on threads that make no more calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_paths_copies_of_a_session_end_with_it() {
    let (_clock, _provider, manager, _store) = setup();
    login(&manager).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { Arc::downgrade(&manager.try_usable_session().unwrap()) })
        })
        .collect();
    let mut copies = Vec::new();
    for task in tasks {
        copies.push(task.await.unwrap());
    }
    copies.push(Arc::downgrade(&manager.try_usable_session().unwrap()));
    // Signed in, they are kept for the next request.
    assert!(copies.iter().all(|copy| copy.upgrade().is_some()));
    manager.logout().await.unwrap();
    assert!(copies.iter().all(|copy| copy.upgrade().is_none()));
}

/// A thread that takes turns with two managers refills its copy at every turn; the
/// copy it replaces is dropped, so the manager keeps one per thread, not one per
/// turn.
#[tokio::test]
async fn a_thread_keeps_one_copy_per_manager_however_often_it_refills() {
    let (_clock, _provider, a, _store) = setup();
    let (_clock, _provider, b, _store) = setup();
    login(&a).await;
    login(&b).await;
    let first = Arc::downgrade(&a.try_usable_session().unwrap());
    for _ in 0..10 {
        b.try_usable_session().unwrap();
        a.try_usable_session().unwrap();
    }
    assert!(first.upgrade().is_none());
    // The current copy is kept for the next request.
    let current = Arc::downgrade(&a.try_usable_session().unwrap());
    assert!(current.upgrade().is_some());
}

/// A request cancelled while the refresh for its 401 runs: the refresh completes (its
/// rotated answer is kept), and the next request goes out with the new token, with no
/// second refresh and no spent refresh token sent again.
#[tokio::test]
async fn a_send_cancelled_while_its_401_refreshes_leaves_the_new_session() {
    let (provider, manager) = signed_in_with_a_slow_refresh().await;
    let refused = manager.access_token().await.unwrap();
    provider.revoke_access(refused.expose_secret());
    assert!(
        tokio::time::timeout(Duration::from_millis(10), manager.send(get("/x")))
            .await
            .is_err(),
        "the send was not cancelled mid-refresh"
    );
    manager.idle().await;
    let response = manager.send(get("/x")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(manager.access_token().await.unwrap(), refused);
    let record = provider.record();
    assert_eq!(record.refresh_calls, 1);
    assert_eq!(record.spent_presented, 0);
}
