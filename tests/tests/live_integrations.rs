//! `AuthMiddleware` (reqwest-middleware) and `AuthLayer` (tower, around a hyper-util
//! client) against a REAL Directus 12, in its three modes.
//!
//! They run when `AUTHMUX_DIRECTUS_URL` is set (`cargo xtask ci` sets it, with the
//! other `AUTHMUX_DIRECTUS_*` variables); otherwise each test says loudly on stderr
//! that it was skipped and why, and returns. The connection, the admin and the test
//! users are the Directus adapter's live-test helpers, shared by path.
//!
//! The manager's clock is a `ManualClock`, so the tests decide what the manager
//! believes: moving it into the refresh window makes the next requests refresh
//! proactively (the server still accepts the token); leaving it frozen while real time
//! passes the token's expiry makes the server answer 401 to a token the manager
//! believes fresh, so the only way to a refresh is the integrations' 401 path.
//!
//! Directus's pressure limiter answers `503` when its event loop lags, which 50
//! concurrent requests can cause on a busy machine. Neither integration retries (that
//! is a retry layer's job), so the middleware's client has `reqwest-retry` outside it,
//! as the crate documents, and the layer's requests are retried on `503` by the test
//! itself; the refresh counts are exact either way.

#[path = "../../crates/authmux-directus/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use authmux_core::{LoginOutcome, ManualClock, Session, SessionManager};
use authmux_directus::DirectusMode;
use authmux_reqwest::AuthMiddleware;
use authmux_tower::{AuthLayer, AuthService};
use bytes::Bytes;
use common::{Live, Logging, TestUser, reqwest_transport, skip};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tower::{Layer, ServiceExt};

type Layered = AuthService<Client<HttpConnector, Full<Bytes>>>;

struct World {
    live: Live,
    user: TestUser,
    log: Arc<Logging>,
    clock: ManualClock,
    manager: SessionManager,
    middleware: ClientWithMiddleware,
    layered: Layered,
}

async fn world(test: &str, mode: DirectusMode) -> Option<(World, Session)> {
    let live = Live::from_env(test)?;
    let admin = live.admin().await;
    let user = admin.create_user("integrations").await;
    let log = Logging::new(reqwest_transport());
    let clock = ManualClock::starting_now();
    let provider = Arc::new(live.provider(mode, log.clone()).with_clock(clock.clone()));
    let manager = SessionManager::builder(provider)
        .clock(clock.clone())
        .build();
    let session = match manager.login(&user.credentials()).await {
        Ok(LoginOutcome::Authenticated(session)) => session,
        other => panic!("{} could not sign in: {other:?}", user.email),
    };
    let retry = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(50), Duration::from_millis(500))
        .build_with_max_retries(5);
    let middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(AuthMiddleware::new(manager.clone()))
        .build();
    let layered = AuthLayer::new(manager.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    Some((
        World {
            live,
            user,
            log,
            clock,
            manager,
            middleware,
            layered,
        },
        session,
    ))
}

impl World {
    fn me_url(&self) -> String {
        format!(
            "{}/users/me?fields=id,email",
            self.live.url.as_str().trim_end_matches('/')
        )
    }

    /// `GET /users/me` through the middleware: the status and the email it names.
    async fn me_via_middleware(&self) -> (u16, Option<String>) {
        let response = self.middleware.get(self.me_url()).send().await.unwrap();
        let status = response.status().as_u16();
        (status, email_in(&response.bytes().await.unwrap()))
    }

    /// `GET /users/me` through the layer: the status and the email it names.
    async fn me_via_layer(&self) -> (u16, Option<String>) {
        layer_get(self.layered.clone(), &self.me_url()).await
    }

    /// 25 requests through the middleware and 25 through the layer, all at once.
    async fn fifty_at_once(&self) -> Vec<(u16, Option<String>)> {
        let me = Arc::new(self.me_url());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let url = Arc::clone(&me);
            if i % 2 == 0 {
                let client = self.middleware.clone();
                tasks.push(tokio::spawn(async move {
                    let response = client.get(url.as_str()).send().await.unwrap();
                    let status = response.status().as_u16();
                    (status, email_in(&response.bytes().await.unwrap()))
                }));
            } else {
                let service = self.layered.clone();
                tasks.push(tokio::spawn(async move {
                    layer_get(service, url.as_str()).await
                }));
            }
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }
}

/// `GET url` through the layer, retried on `503` (Directus's pressure limiter) up to
/// five times: the status and the email the answer names.
async fn layer_get(service: Layered, url: &str) -> (u16, Option<String>) {
    for attempt in 1.. {
        let request = http::Request::get(url).body(Full::default()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status != 503 || attempt == 6 {
            return (status, email_in(&body));
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
    unreachable!("the loop returns")
}

/// The statuses of the `/auth/refresh` requests the provider sent, except `503`s from
/// Directus's pressure limiter (the provider's transport retries those: the same
/// refresh, not another one).
fn refreshes(log: &Logging) -> Vec<u16> {
    log.seen()
        .iter()
        .filter(|s| s.path.ends_with("/auth/refresh") && s.status != 503)
        .map(|s| s.status)
        .collect()
}

fn email_in(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .pointer("/data/email")?
        .as_str()
        .map(str::to_owned)
}

/// Sign in, the hot path through both integrations, then proactive refresh: with the
/// manager's clock in the refresh window, 50 concurrent requests (half through each
/// integration) succeed and cause exactly one refresh (in the background), in the
/// mode's own way.
async fn hot_path_and_proactive_refresh(test: &str, mode: DirectusMode) {
    let Some((w, first)) = world(test, mode).await else {
        return;
    };
    let me = (200, Some(w.user.email.clone()));
    assert_eq!(w.me_via_middleware().await, me, "{mode}");
    assert_eq!(w.me_via_layer().await, me, "{mode}");
    assert_eq!(
        refreshes(&w.log),
        Vec::<u16>::new(),
        "{mode}: the hot path refreshed"
    );

    let lifetime = first
        .tokens
        .lifetime()
        .expect("Directus tokens say when they expire");
    // Past any refresh point of the default window, still before expiry (for the
    // server, whose clock has not moved, the token is as fresh as ever).
    w.clock.advance(lifetime.mul_f64(0.95));
    for answer in w.fifty_at_once().await {
        assert_eq!(answer, me, "{mode}");
    }
    // Inside the window of a still-valid token the manager hands the token out at once
    // and refreshes in the background: wait (at most 20 s) for that refresh to land.
    // (Directus may issue the very same access JWT within one second of the last one,
    // so the refresh request itself is what shows the refresh.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while refreshes(&w.log).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{mode}: no refresh after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.manager.idle().await;
    assert_eq!(refreshes(&w.log), [200], "{mode}: one refresh for 50");
    let refreshed = w.manager.session().unwrap();
    assert!(
        refreshed.tokens.expires_at > first.tokens.expires_at
            || refreshed.tokens.refresh != first.tokens.refresh
            || refreshed.tokens.access != first.tokens.access,
        "{mode}: the session did not take the refreshed tokens"
    );
    assert_eq!(refreshed.extra_str("mode"), Some(mode.as_str()));
    w.log.assert_no_authorization_on_auth();
}

/// A token the server has expired while the manager's clock stands still: 50
/// concurrent requests (half through each integration) are refused with 401, cause
/// exactly one refresh, and are replayed with the new token.
async fn refresh_after_401(test: &str, mode: DirectusMode) {
    let Some((w, first)) = world(test, mode).await else {
        return;
    };
    let Some(lifetime) = first
        .tokens
        .lifetime()
        .filter(|l| *l <= Duration::from_secs(30))
    else {
        skip(
            test,
            "the server's access tokens live over 30 s, or say nothing",
        );
        return;
    };
    // Counted from after the sign-in answer (the server's `exp` is from when it
    // answered), plus JWT `exp`'s whole seconds: the server surely says TOKEN_EXPIRED.
    tokio::time::sleep(lifetime + Duration::from_millis(1200)).await;
    let me = (200, Some(w.user.email.clone()));
    for answer in w.fifty_at_once().await {
        assert_eq!(answer, me, "{mode}");
    }
    assert_eq!(refreshes(&w.log), [200], "{mode}: one refresh for 50");
    assert_ne!(
        w.manager.session().unwrap().tokens.access,
        first.tokens.access
    );
    w.log.assert_no_authorization_on_auth();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_integrations_hot_path_and_proactive_refresh_json() {
    hot_path_and_proactive_refresh(
        "live_integrations_hot_path_and_proactive_refresh_json",
        DirectusMode::Json,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_integrations_hot_path_and_proactive_refresh_cookie() {
    hot_path_and_proactive_refresh(
        "live_integrations_hot_path_and_proactive_refresh_cookie",
        DirectusMode::Cookie,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_integrations_hot_path_and_proactive_refresh_session() {
    hot_path_and_proactive_refresh(
        "live_integrations_hot_path_and_proactive_refresh_session",
        DirectusMode::Session,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_integrations_refresh_after_401_json() {
    refresh_after_401(
        "live_integrations_refresh_after_401_json",
        DirectusMode::Json,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_integrations_refresh_after_401_cookie() {
    refresh_after_401(
        "live_integrations_refresh_after_401_cookie",
        DirectusMode::Cookie,
    )
    .await;
}

// Session mode has no 401 test: there the session cookie is the access token, and
// Directus refuses to refresh an expired one (the adapter documents this), so a session
// relies on the proactive refresh tested above.
