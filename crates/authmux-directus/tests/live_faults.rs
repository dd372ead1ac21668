//! Faults in front of a REAL Directus 12: the test kit's fault proxy
//! (`authmux_testkit::fault_proxy`) sits between the adapter and the server and
//! injects the kit's faults on `/auth/refresh`, `/users/me` and `/auth/login`, so what
//! the fakes prove about failures is proven against the real server's answers too.
//!
//! Found and skipped like `tests/live.rs`: they run when `AUTHMUX_DIRECTUS_URL` is set
//! (`cargo xtask ci` sets it), else each says loudly why it did not run.
#![allow(
    clippy::print_stderr,
    reason = "the report of what each conformance run proved belongs in the test output"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use authmux_core::ClientOptions;
use authmux_core::lifecycle::RefreshFailure;
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Credentials, LoginOutcome, Phase, RefreshWindow, Session,
    SessionManager,
};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_testkit::Fault;
use authmux_testkit::conformance::fault_matrix::{self, FaultTarget};
use authmux_testkit::conformance::{self, Endpoints, Target};
use authmux_testkit::directus::endpoints as e;
use authmux_testkit::fault_proxy::FaultProxy;
use common::{Live, TestUser, reqwest_transport};

/// A live server with the fault proxy in front of it.
struct Proxied {
    live: Live,
    proxy: FaultProxy,
}

impl Proxied {
    fn from_env(test: &str) -> Option<Self> {
        let live = Live::from_env(test)?;
        let proxy = FaultProxy::start(&live.url).expect("the fault proxy starts");
        Some(Self { live, proxy })
    }

    /// A provider that talks to the server through the proxy.
    fn provider(&self, mode: DirectusMode) -> Arc<dyn AuthProvider> {
        let mut through = self.live.clone();
        through.url = self.proxy.base_url().clone();
        Arc::new(through.provider(mode, reqwest_transport()))
    }

    /// A manager through the proxy that refreshes only when asked (no proactive
    /// refresh however slow the machine), signed in as `user`.
    async fn signed_in(&self, mode: DirectusMode, user: &TestUser) -> (SessionManager, Session) {
        let manager = SessionManager::builder(self.provider(mode))
            .refresh_window(RefreshWindow {
                min_lead: Duration::ZERO,
                fraction: 0.0,
                jitter: 0.0,
            })
            .build();
        match manager.login(&user.credentials()).await {
            Ok(LoginOutcome::Authenticated(session)) => (manager, session),
            other => panic!("{} could not sign in: {other:?}", user.email),
        }
    }
}

fn assert_transient(what: &str, error: &AuthError) {
    assert_eq!(
        RefreshFailure::of(error),
        RefreshFailure::Transient,
        "{what}: {error:?} must be a transient failure"
    );
}

/// What `SessionManager::refresh` may answer while a refresh fails transiently: the
/// typed transient error, or (the core's rule: a transient failure never throws away a
/// session that is still good) the current, still valid access token. Either way the
/// session must be the one it was.
fn assert_kept(
    what: &str,
    manager: &SessionManager,
    before: &Session,
    result: Result<AccessToken, AuthError>,
) {
    match &result {
        Ok(token) => assert_eq!(
            token, &before.tokens.access,
            "{what}: a token other than the kept one"
        ),
        Err(error) => assert_transient(what, error),
    }
    let kept = manager.session().expect("the session is kept");
    assert_eq!(kept.tokens.refresh, before.tokens.refresh, "{what}");
    assert_eq!(kept.tokens.access, before.tokens.access, "{what}");
    assert_eq!(manager.phase(), Phase::Active, "{what}");
}

/// Whether an error is the one a fault must give.
type Expected = fn(&AuthError) -> bool;

/// Refresh faults the server never sees (503, 429 with a `Retry-After` longer than the
/// client waits inside a call, a dropped connection): the adapter's typed transient
/// error; through the manager, the session kept as it was; and the next refresh
/// works. The proxy's count shows that only the successful refresh reached the server.
#[tokio::test]
async fn live_refresh_faults_before_the_server_keep_the_session() {
    let Some(p) = Proxied::from_env("live_refresh_faults_before_the_server_keep_the_session")
    else {
        return;
    };
    let admin = p.live.admin().await;
    let cases: [(&str, Fault, Expected); 3] = [
        ("503", Fault::Status(503), |e| {
            matches!(e, AuthError::Server { status: 503, .. })
        }),
        (
            "429 Retry-After 30",
            Fault::RateLimited {
                retry_after_secs: 30,
            },
            |e| matches!(e, AuthError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(30)),
        ),
        ("dropped connection", Fault::DropConnection, |e| {
            matches!(e, AuthError::Transport { .. })
        }),
    ];
    for (name, fault, expected) in cases {
        let user = admin.create_user("proxy-refresh").await;
        let (manager, session) = p.signed_in(DirectusMode::Json, &user).await;
        p.proxy.reset_counts();
        p.proxy.faults().push(e::REFRESH, fault.clone());
        let error = p
            .provider(DirectusMode::Json)
            .refresh(&session)
            .await
            .expect_err(name);
        assert!(expected(&error), "{name}: {error:?}");
        assert_transient(name, &error);

        p.proxy.faults().push(e::REFRESH, fault);
        let result = manager.refresh().await;
        assert_kept(name, &manager, &session, result);
        assert_eq!(p.proxy.recorder().count(e::REFRESH), 2, "{name}");
        assert_eq!(
            p.proxy.forwarded(e::REFRESH),
            0,
            "{name}: reached the server"
        );

        manager
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("{name}: the next refresh: {e:?}"));
        let refreshed = manager.session().expect("signed in");
        assert_ne!(refreshed.tokens.refresh, session.tokens.refresh, "{name}");
        let me = manager.current_user().await.expect("current user");
        assert_eq!(me.email.as_deref(), Some(user.email.as_str()));
        assert_eq!(
            p.proxy.forwarded(e::REFRESH),
            1,
            "{name}: exactly one refresh reached the server"
        );
        eprintln!(
            "live fault proxy: refresh {name}: {error:?} (transient), session kept, next refresh ok"
        );
    }
}

/// A truncated answer to a refresh the server DID process (it rotated the refresh
/// credential): the session kept. In session mode Directus honours the just-rotated
/// credential for its 10 s grace period, so the next refresh recovers; in json mode
/// the credential is spent at once, so the session works on its access token and the
/// next refresh is refused (definitively): no client can recover an answer the
/// network lost after the server rotated (which is why a refresh is never retried
/// after one).
#[tokio::test]
async fn live_truncated_refresh_answer() {
    let Some(p) = Proxied::from_env("live_truncated_refresh_answer") else {
        return;
    };
    let admin = p.live.admin().await;
    for mode in [DirectusMode::Session, DirectusMode::Json] {
        let user = admin.create_user("proxy-truncated").await;
        let (manager, session) = p.signed_in(mode, &user).await;
        p.proxy.reset_counts();
        p.proxy.faults().push(e::REFRESH, Fault::TruncatedBody);
        let result = manager.refresh().await;
        assert_kept(
            &format!("truncated refresh ({mode})"),
            &manager,
            &session,
            result,
        );
        assert_eq!(
            p.proxy.forwarded(e::REFRESH),
            1,
            "{mode}: the server saw it"
        );
        // The access token the client still holds works.
        p.provider(mode)
            .current_user(&session)
            .await
            .unwrap_or_else(|e| panic!("{mode}: current user after the truncated refresh: {e:?}"));
        if mode == DirectusMode::Session {
            manager.refresh().await.expect("the grace period recovers");
            manager.current_user().await.expect("current user");
            eprintln!(
                "live fault proxy: truncated refresh ({mode}): recovered in the grace period"
            );
        } else {
            let next = manager.refresh().await.expect_err("spent");
            assert!(
                matches!(next, AuthError::RefreshRejected),
                "{mode}: {next:?}"
            );
            eprintln!(
                "live fault proxy: truncated refresh ({mode}): the rotated credential was lost with the answer; the next refresh is RefreshRejected"
            );
        }
    }
}

/// `/users/me` answering 500: a typed server error, the session untouched, and the
/// next call works; only that call reached the server.
#[tokio::test]
async fn live_current_user_500_keeps_the_session() {
    let Some(p) = Proxied::from_env("live_current_user_500_keeps_the_session") else {
        return;
    };
    let admin = p.live.admin().await;
    let user = admin.create_user("proxy-me").await;
    let (_manager, session) = p.signed_in(DirectusMode::Json, &user).await;
    let provider = p.provider(DirectusMode::Json);
    p.proxy.reset_counts();
    p.proxy.faults().push(e::ME, Fault::Status(500));
    let error = provider.current_user(&session).await.expect_err("500");
    assert!(
        matches!(error, AuthError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert!(!error.needs_sign_in(), "{error:?}");
    let me = provider.current_user(&session).await.expect("recovers");
    assert_eq!(me.id.as_deref(), Some(user.id.as_str()));
    assert_eq!(p.proxy.recorder().count(e::ME), 2);
    assert_eq!(p.proxy.forwarded(e::ME), 1);
}

/// The conformance suite against the real server through the proxy, so its fault
/// checks (401/403/409/429/5xx, malformed, truncated, oversized bodies and dropped
/// connections on login, current user and refresh) run against Directus's real
/// answers instead of being skipped.
#[tokio::test]
async fn live_conformance_with_faults_through_the_proxy() {
    let Some(p) = Proxied::from_env("live_conformance_with_faults_through_the_proxy") else {
        return;
    };
    let admin = p.live.admin().await;
    for mode in [
        DirectusMode::Json,
        DirectusMode::Cookie,
        DirectusMode::Session,
    ] {
        let user = admin.create_user("proxy-conformance").await;
        let provider = p.provider(mode);
        let mut target = Target::new(Credentials::new(user.email.clone(), user.password.as_str()));
        target.faults = Some(p.proxy.faults());
        target.recorder = Some(p.proxy.recorder());
        target.endpoints = Endpoints {
            login: e::LOGIN.into(),
            current_user: e::ME.into(),
            refresh: Some(e::REFRESH.into()),
        };
        if mode == DirectusMode::Session {
            target = target.with_rotation_grace(Duration::from_secs(10));
        }
        let report = conformance::run_all(provider.as_ref(), &target).await;
        eprintln!(
            "conformance ({mode} mode, real Directus through the fault proxy): {} checks passed",
            report.passed()
        );
        report.assert_passed();
    }
}

/// The client timeout of the matrix against the real server: long enough for a real
/// sign-in while the whole suite runs on 2 cores (3 s was not: the matrix's clean
/// sign-ins timed out in `cargo xtask ci`), short enough that the hang cells stay quick.
const MATRIX_TIMEOUT: Duration = Duration::from_secs(8);

/// The fault matrix (`conformance::fault_matrix`: every endpoint kind x every fault,
/// through a session manager on a `FileStore`) against the real Directus through the
/// fault proxy, with a two-factor user for the one-time-code endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_fault_matrix_through_the_proxy() {
    let Some(p) = Proxied::from_env("live_fault_matrix_through_the_proxy") else {
        return;
    };
    let admin = p.live.admin().await;
    let user = admin.create_user("proxy-matrix").await;
    let otp_user = admin.create_user("proxy-matrix-otp").await;
    let secret = p.live.enable_two_factor(&otp_user).await;
    let mut config = DirectusConfig::new(p.proxy.base_url().clone())
        .with_mode(DirectusMode::Json)
        .with_fields(["id", "email", "first_name", "last_name"]);
    config.client = ClientOptions {
        timeout_ms: Some(u64::try_from(MATRIX_TIMEOUT.as_millis()).unwrap()),
        ..ClientOptions::default()
    };
    let provider = Arc::new(DirectusProvider::new(config).expect("the proxy URL is accepted"));
    let mut target = Target::new(user.credentials()).with_otp_user(
        otp_user.credentials(),
        Arc::new(move || common::totp_now(&secret)),
    );
    target.faults = Some(p.proxy.faults());
    target.recorder = Some(p.proxy.recorder());
    target.endpoints = Endpoints {
        login: e::LOGIN.into(),
        current_user: e::ME.into(),
        refresh: Some(e::REFRESH.into()),
    };
    let target = FaultTarget::new(target, MATRIX_TIMEOUT)
        .with_otp(e::LOGIN)
        .with_logout(e::LOGOUT)
        .with_send(e::ME, "/users/me")
        .with_token_pointer("/data/access_token");
    let matrix = fault_matrix::run(provider, &target).await;
    matrix.assert_passed("directus json mode, the REAL server through the fault proxy");
}
