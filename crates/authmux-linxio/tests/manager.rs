//! `LinxioProvider` through `authmux_core::SessionManager` against `FakeLinxio`, with
//! one `ManualClock` shared by the manager, the provider and the fake: the whole life
//! of a session (login, proactive refresh in the window, server-side invalidation, 401
//! then refresh and replay, logout), coalesced refreshes under concurrent 401s,
//! hydration from stored tokens, OTP, and retries of idempotent requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authmux_core::lifecycle::SessionEvent;
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Credentials, Expiry, LoginOutcome, LogoutOutcome,
    ManualClock, Phase, RefreshToken, ReqwestTransport, RetryPolicy, Session, SessionManager,
    TokenSet, Transport, TransportErrorKind,
};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD, OTP_CODE, OTP_EMAIL};
use authmux_testkit::{Clock, Fault};
use bytes::Bytes;

const T0: u64 = 1_800_000_000;

/// Short delays so retries do not slow the suite (the policy is what is under test,
/// not the backoff's length).
const FAST_RETRY: RetryPolicy = RetryPolicy {
    retries: 2,
    base_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(5),
    max_retry_after: Duration::from_secs(1),
};

struct World {
    clock: ManualClock,
    fake: FakeLinxio,
    provider: Arc<LinxioProvider>,
    manager: SessionManager,
}

fn world() -> World {
    world_with_retry(FAST_RETRY)
}

fn world_with_retry(retry: RetryPolicy) -> World {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let provider = Arc::new(
        LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
            .unwrap()
            .with_clock(clock.clone())
            .with_retry(retry),
    );
    let manager = SessionManager::builder(provider.clone())
        .clock(clock.clone())
        .retry(retry)
        .build();
    World {
        clock,
        fake,
        provider,
        manager,
    }
}

fn get(path: &str) -> http::Request<Bytes> {
    http::Request::get(path).body(Bytes::new()).unwrap()
}

async fn login_alice(manager: &SessionManager) -> Session {
    match manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap()
    {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => panic!("alice needs no OTP"),
    }
}

/// How many recorded requests to `endpoint` carried `token` as their bearer.
fn sent_with(fake: &FakeLinxio, endpoint: &str, token: &AccessToken) -> usize {
    fake.recorder()
        .requests_to(endpoint)
        .iter()
        .filter(|r| r.bearer() == Some(token.expose_secret()))
        .count()
}

#[tokio::test]
async fn the_life_of_a_session() {
    let w = world();
    let mut events = w.manager.subscribe();

    // Login.
    let session = login_alice(&w.manager).await;
    let first = w.manager.access_token().await.unwrap();
    assert_eq!(first, session.tokens.access);
    assert_eq!(w.manager.phase(), Phase::Active);

    // Well before the refresh window: the hot path, no refresh.
    w.clock.advance(Duration::from_secs(600));
    assert_eq!(w.manager.access_token().await.unwrap(), first);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 0);

    // Into the window (the 900 s token is refreshed 90-99 s before expiry), still valid:
    // the next token request gets the valid token at once and starts one refresh in the
    // background (refresh-ahead); once it has landed, the new token is handed out.
    w.clock.advance(Duration::from_secs(250));
    assert_eq!(w.manager.access_token().await.unwrap(), first);
    w.manager.idle().await;
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let second = w.manager.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(w.manager.access_token().await.unwrap(), second);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let refreshed = w.manager.session().unwrap();
    // 900 s, a second off (the server's times count whole seconds).
    assert_eq!(
        refreshed.tokens.expires_at,
        Some(w.clock.now() + Duration::from_secs(899))
    );
    assert_eq!(
        refreshed.extra_str(authmux_linxio::extras::TEAM_TYPE),
        Some("client"),
        "extras survive the refresh"
    );

    // The server invalidates the token: the next request gets 401, the manager
    // refreshes and replays it once.
    w.fake.revoke_access_token(second.expose_secret());
    let response = w.manager.send(get("/api/vehicles")).await.unwrap();
    assert_eq!(response.status(), 200);
    let third = w.manager.access_token().await.unwrap();
    assert_ne!(third, second);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 2);
    assert_eq!(sent_with(&w.fake, endpoints::VEHICLES, &second), 1);
    assert_eq!(sent_with(&w.fake, endpoints::VEHICLES, &third), 1);

    // Logout: revoked on the server, forgotten locally.
    let last = w.manager.session().unwrap();
    assert_eq!(w.manager.logout().await.unwrap(), LogoutOutcome::Revoked);
    assert_eq!(w.fake.recorder().count(endpoints::LOGOUT), 1);
    assert!(matches!(
        w.manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    assert!(matches!(
        w.provider.refresh(&last).await,
        Err(AuthError::RefreshRejected)
    ));

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(match event {
            SessionEvent::SignedIn { .. } => "signed-in",
            SessionEvent::Refreshed { .. } => "refreshed",
            SessionEvent::SignedOut => "signed-out",
            _ => "other",
        });
    }
    assert_eq!(seen, ["signed-in", "refreshed", "refreshed", "signed-out"]);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_before_use() {
    let w = world();
    login_alice(&w.manager).await;
    let first = w.manager.access_token().await.unwrap();
    w.clock.advance(Duration::from_secs(3600));
    let response = w.manager.send(get("/api/vehicles")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    assert_eq!(
        sent_with(&w.fake, endpoints::VEHICLES, &first),
        0,
        "the expired token was never sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_cause_exactly_one_refresh() {
    const N: usize = 16;
    let w = world();
    login_alice(&w.manager).await;
    let old = w.manager.access_token().await.unwrap();
    w.fake.revoke_access_token(old.expose_secret());
    // Hold the refresh answer for a while, so that many 401s arrive while it is in
    // flight (the assertions below hold for any interleaving; the delay only makes the
    // interesting one the likely one).
    w.fake
        .faults()
        .push(endpoints::REFRESH, Fault::Delay(Duration::from_millis(300)));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let manager = w.manager.clone();
            tokio::spawn(async move { manager.send(get("/api/vehicles")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let new = w.manager.access_token().await.unwrap();
    assert_ne!(new, old);
    // Every caller ended with exactly one request carrying the new token; those that
    // sent the old one first got a 401 and joined the single refresh.
    assert_eq!(sent_with(&w.fake, endpoints::VEHICLES, &new), N);
    let rejected = sent_with(&w.fake, endpoints::VEHICLES, &old);
    assert!(
        rejected >= 2,
        "only {rejected} request(s) overlapped the refresh"
    );
    assert_eq!(w.fake.recorder().count(endpoints::VEHICLES), N + rejected);
}

#[tokio::test]
async fn hydration_from_token_and_refresh_token() {
    let w = world();
    let issued = w.fake.issue_tokens(ALICE_EMAIL).unwrap();
    let tokens = TokenSet::new(
        AccessToken::new(issued.token.clone()),
        Some(RefreshToken::new(issued.refresh_token.clone())),
        Expiry::Unstated,
        w.clock.now(),
    );
    let session = w.manager.hydrate(tokens).await.unwrap();
    assert_eq!(session.dialect, "linxio");
    assert_eq!(session.base_url, *w.provider.base_url());
    assert_eq!(
        session.tokens.expires_at, issued.expires_at,
        "expiry read from the JWT"
    );
    let user = w.manager.current_user().await.unwrap();
    assert_eq!(user.email.as_deref(), Some(ALICE_EMAIL));

    // A 401 is recovered with the hydrated refresh token.
    w.fake
        .revoke_access_token(session.tokens.access.expose_secret());
    assert_eq!(
        w.manager.send(get("/api/vehicles")).await.unwrap().status(),
        200
    );
    assert_eq!(w.fake.recorder().refresh_tokens(), [issued.refresh_token]);

    // current_user through the manager also refreshes on 401 and calls again.
    let current = w.manager.access_token().await.unwrap();
    w.fake.revoke_access_token(current.expose_secret());
    assert!(w.manager.current_user().await.is_ok());
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 2);
}

#[tokio::test]
async fn hydration_without_refresh_token_ends_at_the_first_401() {
    let w = world();
    let issued = w.fake.issue_tokens(ALICE_EMAIL).unwrap();
    let session = w
        .manager
        .hydrate(TokenSet::new(
            AccessToken::new(issued.token),
            None,
            Expiry::Unstated,
            w.clock.now(),
        ))
        .await
        .unwrap();
    assert_eq!(
        w.manager.send(get("/api/vehicles")).await.unwrap().status(),
        200
    );
    w.fake
        .revoke_access_token(session.tokens.access.expose_secret());
    let result = w.manager.send(get("/api/vehicles")).await;
    assert!(
        matches!(result, Err(AuthError::SessionExpired)),
        "{result:?}"
    );
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 0);
}

#[tokio::test]
async fn otp_login_through_the_manager() {
    let w = world();
    let outcome = w
        .manager
        .login(&Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(matches!(outcome, LoginOutcome::OtpRequired(_)));
    assert_eq!(w.manager.phase(), Phase::AwaitingOtp);
    assert!(matches!(
        w.manager.verify_otp(&"000000".into()).await,
        Err(AuthError::InvalidOtp)
    ));
    assert!(
        w.manager.pending_challenge().is_some(),
        "a wrong code keeps the challenge"
    );
    w.manager.verify_otp(&OTP_CODE.into()).await.unwrap();
    assert_eq!(w.manager.phase(), Phase::Active);
    let user = w.manager.current_user().await.unwrap();
    assert_eq!(user.email.as_deref(), Some(OTP_EMAIL));
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_5xx() {
    let w = world();
    login_alice(&w.manager).await;
    w.fake
        .faults()
        .push(endpoints::VEHICLES, Fault::Status(503));
    w.fake
        .faults()
        .push(endpoints::VEHICLES, Fault::Status(502));
    let response = w.manager.send(get("/api/vehicles")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(w.fake.recorder().count(endpoints::VEHICLES), 3);

    // A POST is not idempotent: its 503 comes back as is, sent once.
    w.fake
        .faults()
        .push(endpoints::CREATE_VEHICLE, Fault::Status(503));
    let post = http::Request::post("/api/vehicles")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"name": "Truck 3"}"#))
        .unwrap();
    assert_eq!(w.manager.send(post).await.unwrap().status(), 503);
    assert_eq!(w.fake.recorder().count(endpoints::CREATE_VEHICLE), 1);

    // GET /me through the manager is retried too (by the provider's policy).
    w.fake.faults().push(endpoints::ME, Fault::Status(500));
    w.fake.faults().push(endpoints::ME, Fault::Status(504));
    assert!(w.manager.current_user().await.is_ok());
    assert_eq!(w.fake.recorder().count(endpoints::ME), 3);
}

/// The default transport with the first `drops` requests to `path` failing as a reset
/// connection does (`AuthError::Transport { kind: Io }`), before reaching the server.
fn dropping(path: &'static str, drops: usize) -> Arc<dyn Transport> {
    let inner = Arc::new(ReqwestTransport::new().unwrap());
    let left = Arc::new(AtomicUsize::new(drops));
    Arc::new(authmux_core::transport::from_fn(
        move |request: http::Request<Bytes>| {
            let inner = Arc::clone(&inner);
            let left = Arc::clone(&left);
            async move {
                let drop_it = request.uri().path() == path
                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                if drop_it {
                    return Err(AuthError::Transport {
                        kind: TransportErrorKind::Io,
                        source: None,
                    });
                }
                inner.send(request).await
            }
        },
    ))
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_network_errors() {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let config = LinxioConfig::new(fake.base_url().clone());
    for (path, endpoint) in [
        ("/api/vehicles", endpoints::VEHICLES),
        ("/me", endpoints::ME),
    ] {
        let provider = Arc::new(
            LinxioProvider::with_transport(config.clone(), dropping(path, 2))
                .unwrap()
                .with_clock(clock.clone())
                .with_retry(FAST_RETRY),
        );
        let manager = SessionManager::builder(provider)
            .clock(clock.clone())
            .retry(FAST_RETRY)
            .build();
        login_alice(&manager).await;
        fake.recorder().reset();
        if endpoint == endpoints::ME {
            assert!(manager.current_user().await.is_ok());
        } else {
            assert_eq!(manager.send(get(path)).await.unwrap().status(), 200);
        }
        assert_eq!(
            fake.recorder().count(endpoint),
            1,
            "two drops, then the answer"
        );
    }
}

#[tokio::test]
async fn a_connection_the_server_drops_is_retried_for_a_get() {
    // The fake really closes the connection without answering; the default transport
    // reports that as a retryable `Transport { kind: Io }` and the GET is sent again.
    let w = world();
    login_alice(&w.manager).await;
    w.fake
        .faults()
        .push(endpoints::VEHICLES, Fault::DropConnection);
    assert_eq!(
        w.manager.send(get("/api/vehicles")).await.unwrap().status(),
        200
    );
    assert_eq!(w.fake.recorder().count(endpoints::VEHICLES), 2);

    // Without retries the failure surfaces as a transport error, and the session is
    // untouched by it.
    let w = world_with_retry(RetryPolicy::NONE);
    login_alice(&w.manager).await;
    w.fake
        .faults()
        .push(endpoints::VEHICLES, Fault::DropConnection);
    let result = w.manager.send(get("/api/vehicles")).await;
    assert!(
        matches!(
            result,
            Err(AuthError::Transport {
                kind: authmux_core::TransportErrorKind::Io,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(
        w.manager.send(get("/api/vehicles")).await.unwrap().status(),
        200
    );
}

fn too_large(result: &Result<impl std::fmt::Debug, AuthError>) -> bool {
    matches!(
        result,
        Err(AuthError::Transport {
            kind: TransportErrorKind::BodyTooLarge,
            ..
        })
    )
}

#[tokio::test]
async fn send_has_its_own_response_cap_and_the_auth_endpoints_keep_theirs() {
    const SIX_MIB: usize = 6 << 20;
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let provider = Arc::new(
        LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
            .unwrap()
            .with_clock(clock.clone())
            .with_retry(RetryPolicy::NONE),
    );
    let manager = |cap: Option<usize>| {
        let builder = SessionManager::builder(provider.clone())
            .clock(clock.clone())
            .retry(RetryPolicy::NONE);
        match cap {
            Some(cap) => builder.max_response_bytes(cap).build(),
            None => builder.build(),
        }
    };

    // The default: application answers above 4 MiB are refused.
    let default = manager(None);
    login_alice(&default).await;
    fake.faults()
        .push(endpoints::VEHICLES, Fault::OversizedBody(SIX_MIB));
    assert!(too_large(&default.send(get("/api/vehicles")).await));

    // Raised to 8 MiB: the 6 MiB application answer comes back whole...
    let roomy = manager(Some(8 << 20));
    login_alice(&roomy).await;
    fake.faults()
        .push(endpoints::VEHICLES, Fault::OversizedBody(SIX_MIB));
    let response = roomy.send(get("/api/vehicles")).await.unwrap();
    assert_eq!(response.body().len(), SIX_MIB);
    // ...while an auth endpoint's 6 MiB answer is still refused by the transport's cap.
    fake.faults()
        .push(endpoints::ME, Fault::OversizedBody(SIX_MIB));
    assert!(too_large(&roomy.current_user().await));

    // Lowered to 1 KiB: an ordinary answer padded to 2 KiB is refused.
    let tight = manager(Some(1024));
    login_alice(&tight).await;
    fake.faults()
        .push(endpoints::VEHICLES, Fault::OversizedBody(2048));
    assert!(too_large(&tight.send(get("/api/vehicles")).await));
    assert_eq!(
        tight.send(get("/api/vehicles")).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn send_has_its_own_request_timeout() {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let provider = Arc::new(
        LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
            .unwrap()
            .with_clock(clock.clone())
            .with_retry(RetryPolicy::NONE),
    );
    let manager = SessionManager::builder(provider)
        .clock(clock.clone())
        .retry(RetryPolicy::NONE)
        .request_timeout(Duration::from_millis(200))
        .build();
    login_alice(&manager).await;
    fake.faults()
        .push(endpoints::VEHICLES, Fault::Delay(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let result = manager.send(get("/api/vehicles")).await;
    assert!(matches!(result, Err(AuthError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The auth endpoints keep the transport's own (30 s) timeout.
    fake.faults()
        .push(endpoints::ME, Fault::Delay(Duration::from_millis(600)));
    assert!(manager.current_user().await.is_ok());
}
