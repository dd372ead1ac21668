//! `AuthLayer` around a hyper-util client against the testkit's fakes (Linxio,
//! LinkUTM, Directus in its three modes): the hot path, one refresh for 50 concurrent
//! requests after expiry, 401 -> refresh -> replay (through an inner service that
//! insists on `poll_ready` before every `call`), a body that cannot be replayed,
//! foreign origins, a caller's own `Authorization`, a second 401, LinkUTM's workspace
//! header.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use authmux_core::{AuthError, Credentials, LoginOutcome, ManualClock, Session, SessionManager};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_linkutm::{LinkUtmConfig, LinkUtmProvider};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::directus::{FakeDirectus, endpoints as directus_endpoints};
use authmux_testkit::linkutm::{FakeLinkUtm, endpoints as linkutm_endpoints};
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{Fault, StreamServer};
use authmux_tower::{AuthLayer, AuthService, Error, NoReplay};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceExt};

const T0: u64 = 1_800_000_000;

type Hyper<B> = Client<HttpConnector, B>;

/// Wraps a service and panics if `call` comes without a successful `poll_ready` on the
/// same instance since the last call: what tower's contract requires, and what the
/// clone-and-swap in `AuthService` must keep.
struct Strict<S> {
    inner: S,
    ready: bool,
    calls: Arc<Mutex<usize>>,
}

impl<S: Clone> Clone for Strict<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            ready: false,
            calls: Arc::clone(&self.calls),
        }
    }
}

impl<S: Service<R>, R> Service<R> for Strict<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let poll = self.inner.poll_ready(cx);
        if matches!(poll, Poll::Ready(Ok(()))) {
            self.ready = true;
        }
        poll
    }

    fn call(&mut self, request: R) -> S::Future {
        assert!(self.ready, "call without poll_ready on this instance");
        self.ready = false;
        *self.calls.lock().unwrap() += 1;
        self.inner.call(request)
    }
}

fn hyper<B>() -> Hyper<B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

fn strict(manager: &SessionManager) -> AuthService<Strict<Hyper<Full<Bytes>>>> {
    AuthLayer::new(manager.clone()).layer(Strict {
        inner: hyper(),
        ready: false,
        calls: Arc::default(),
    })
}

async fn send<S>(service: &S, request: Request<Full<Bytes>>) -> Response<Incoming>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>> + Clone,
    S::Error: std::fmt::Debug,
{
    service.clone().oneshot(request).await.unwrap()
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// `n` GETs of `url` at once, each through its own clone of `service`; all must
/// succeed.
async fn get_concurrently<S>(service: &S, n: usize, url: &str)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let service = service.clone();
            let request = get(url.to_owned());
            tokio::spawn(async move { service.oneshot(request).await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
}

struct Linxio {
    clock: ManualClock,
    fake: FakeLinxio,
    manager: SessionManager,
}

fn linxio() -> Linxio {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let provider = LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
        .unwrap()
        .with_clock(clock.clone());
    let manager = SessionManager::builder(Arc::new(provider))
        .clock(clock.clone())
        .build();
    Linxio {
        clock,
        fake,
        manager,
    }
}

async fn login(manager: &SessionManager) -> Session {
    match manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap()
    {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => panic!("alice needs no code"),
    }
}

/// Records whether the `Authorization` header each request carries is marked
/// sensitive, then forwards it.
#[derive(Clone)]
struct Probe<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Option<bool>>>>,
}

impl<S: Service<Request<B>>, B> Service<Request<B>> for Probe<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        let sensitive = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::is_sensitive);
        self.seen.lock().unwrap().push(sensitive);
        self.inner.call(request)
    }
}

#[tokio::test]
async fn the_hot_path_authorizes_with_the_current_token_and_marks_it_sensitive() {
    let w = linxio();
    let session = login(&w.manager).await;
    let seen = Arc::default();
    let service = AuthLayer::new(w.manager.clone()).layer(Probe {
        inner: hyper::<Full<Bytes>>(),
        seen: Arc::clone(&seen),
    });
    for _ in 0..20 {
        let response = send(&service, get(w.fake.url("/api/vehicles"))).await;
        assert_eq!(response.status(), 200);
    }
    let token = session.tokens.access.expose_secret().to_owned();
    assert_eq!(
        w.fake.recorder().bearers_to(endpoints::VEHICLES),
        vec![Some(token); 20]
    );
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 0);
    assert_eq!(*seen.lock().unwrap(), vec![Some(true); 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_expiry_50_concurrent_requests_cause_exactly_one_refresh() {
    let w = linxio();
    let first = login(&w.manager).await;
    w.clock.advance(Duration::from_secs(1000));
    get_concurrently(&strict(&w.manager), 50, &w.fake.url("/api/vehicles")).await;
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let now = w.manager.session().unwrap().tokens.access;
    assert_ne!(now, first.tokens.access);
    assert_eq!(
        w.fake.recorder().bearers_to(endpoints::VEHICLES),
        vec![Some(now.expose_secret().to_owned()); 50]
    );
}

#[tokio::test]
async fn a_401_refreshes_and_replays_through_a_ready_service() {
    let w = linxio();
    let first = login(&w.manager).await;
    w.fake
        .revoke_access_token(first.tokens.access.expose_secret());
    let calls = Arc::new(Mutex::new(0));
    let service = AuthLayer::new(w.manager.clone()).layer(Strict {
        inner: hyper::<Full<Bytes>>(),
        ready: false,
        calls: Arc::clone(&calls),
    });
    let body = r#"{"name": "Truck 3"}"#;
    let request = Request::post(w.fake.url("/api/vehicles"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = send(&service, request).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(*calls.lock().unwrap(), 2);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let sent = w.fake.recorder().requests_to(endpoints::CREATE_VEHICLE);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].bearer(), Some(first.tokens.access.expose_secret()));
    let now = w.manager.session().unwrap().tokens.access;
    assert_eq!(sent[1].bearer(), Some(now.expose_secret()));
    for request in &sent {
        assert_eq!(request.body.as_ref(), body.as_bytes());
    }
}

#[tokio::test]
async fn a_body_that_cannot_be_replayed_gets_the_401_back_with_the_session_refreshed() {
    let w = linxio();
    let first = login(&w.manager).await;
    w.fake
        .revoke_access_token(first.tokens.access.expose_secret());
    let service = AuthLayer::new(w.manager.clone()).layer(hyper::<NoReplay<Full<Bytes>>>());
    let request = Request::post(w.fake.url("/api/vehicles"))
        .header("content-type", "application/json")
        .body(NoReplay(Full::new(Bytes::from_static(
            br#"{"name": "Truck 4"}"#,
        ))))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(w.fake.recorder().count(endpoints::CREATE_VEHICLE), 1);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let refreshed = w.manager.session().unwrap().tokens.access;
    assert_ne!(refreshed, first.tokens.access);
    let request = Request::get(w.fake.url("/api/vehicles"))
        .body(NoReplay(Full::default()))
        .unwrap();
    assert_eq!(service.oneshot(request).await.unwrap().status(), 200);
    assert_eq!(
        w.fake.recorder().bearers_to(endpoints::VEHICLES),
        vec![Some(refreshed.expose_secret().to_owned())]
    );
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
}

#[tokio::test]
async fn a_second_401_is_returned_as_is() {
    let w = linxio();
    login(&w.manager).await;
    w.fake
        .faults()
        .push_n(endpoints::VEHICLES, Fault::Status(401), 2);
    let response = send(&strict(&w.manager), get(w.fake.url("/api/vehicles"))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(w.fake.recorder().count(endpoints::VEHICLES), 2);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
}

#[tokio::test]
async fn a_401_whose_refresh_fails_is_a_retryable_error_and_no_replay() {
    let w = linxio();
    login(&w.manager).await;
    w.fake
        .faults()
        .push(endpoints::VEHICLES, Fault::Status(401));
    // A 500 without Retry-After: the refresh is not retried (the server may have
    // processed it), and fails.
    w.fake.faults().push(endpoints::REFRESH, Fault::Status(500));
    let error = strict(&w.manager)
        .oneshot(get(w.fake.url("/api/vehicles")))
        .await
        .unwrap_err();
    let Error::Auth(auth) = &error else {
        panic!("expected an auth error, got {error:?}");
    };
    assert!(auth.is_retryable(), "{auth:?}");
    // Not replayed with the token the server had just refused.
    assert_eq!(w.fake.recorder().count(endpoints::VEHICLES), 1);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    // The session lives on; the next request goes through.
    let response = send(&strict(&w.manager), get(w.fake.url("/api/vehicles"))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_foreign_origin_never_sees_credentials_and_its_401_is_not_refreshed() {
    let w = linxio();
    login(&w.manager).await;
    let other = FakeLinxio::start().unwrap();
    let guarded = StreamServer::with_bearer("not-ours").unwrap();
    let service = strict(&w.manager);
    let response = send(&service, get(other.url("/api/vehicles"))).await;
    assert_eq!(
        response.status(),
        401,
        "no credentials, so the fake refuses"
    );
    let response = send(&service, get(guarded.url("/download/10"))).await;
    assert_eq!(response.status(), 401);
    let seen = other.recorder().requests();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].had_authorization() && !seen[0].had_cookie());
    assert_eq!(guarded.unauthorized(), 1);
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 0);
    assert_eq!(
        w.fake.recorder().total(),
        1,
        "only the login reached our server"
    );

    // Foreign requests work before any sign-in, too: the manager is not asked.
    let signed_out = linxio();
    let mut request = get(guarded.url("/hello"));
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer not-ours"),
    );
    let response = send(&strict(&signed_out.manager), request).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_request_with_its_own_authorization_is_left_alone() {
    let w = linxio();
    login(&w.manager).await;
    let mut request = get(w.fake.url("/api/vehicles"));
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer my-own-token"),
    );
    let response = send(&strict(&w.manager), request).await;
    assert_eq!(
        response.status(),
        401,
        "the fake refuses the caller's token"
    );
    assert_eq!(
        w.fake.recorder().bearers_to(endpoints::VEHICLES),
        vec![Some("my-own-token".to_owned())]
    );
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 0);
}

#[tokio::test]
async fn not_signed_in_is_an_auth_error_and_nothing_is_sent() {
    let w = linxio();
    let error = strict(&w.manager)
        .oneshot(get(w.fake.url("/api/vehicles")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Auth(AuthError::NotSignedIn)),
        "{error:?}"
    );
    assert_eq!(w.fake.recorder().total(), 0);
}

#[tokio::test]
async fn linkutm_requests_carry_the_workspace_header_except_to_auth_routes() {
    let fake = FakeLinkUtm::start().unwrap();
    let config = LinkUtmConfig::new(fake.base_url().clone()).with_workspace("acme");
    let manager = SessionManager::new(Arc::new(LinkUtmProvider::new(config).unwrap()));
    let session = login(&manager).await;
    let service = strict(&manager);
    let response = send(&service, get(fake.url("/api/v1/links"))).await;
    assert_eq!(response.status(), 200);
    let links = fake.recorder().last(linkutm_endpoints::LINKS).unwrap();
    assert_eq!(links.header("x-workspace-id"), Some("acme"));
    assert_eq!(links.bearer(), Some(session.tokens.access.expose_secret()));
    let response = send(&service, get(fake.url("/api/v1/auth/profile"))).await;
    assert_eq!(response.status(), 200);
    let profile = fake.recorder().last(linkutm_endpoints::PROFILE).unwrap();
    assert_eq!(profile.header("x-workspace-id"), None);
    assert_eq!(
        profile.bearer(),
        Some(session.tokens.access.expose_secret())
    );
}

#[tokio::test]
async fn directus_in_every_mode_authorizes_as_send_does_and_refreshes_on_401() {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeDirectus::builder()
        .clock(clock.clone())
        .start()
        .unwrap();
    for mode in [
        DirectusMode::Json,
        DirectusMode::Cookie,
        DirectusMode::Session,
    ] {
        let config = DirectusConfig::new(fake.base_url().clone()).with_mode(mode);
        let provider = DirectusProvider::new(config)
            .unwrap()
            .with_clock(clock.clone());
        let manager = SessionManager::builder(Arc::new(provider))
            .clock(clock.clone())
            .build();
        let first = login(&manager).await;
        fake.recorder().reset();
        let service = strict(&manager);

        let sent = manager
            .send(Request::get("/users/me").body(Bytes::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(sent.status(), 200, "{mode}");
        let response = send(&service, get(fake.url("/users/me"))).await;
        assert_eq!(response.status(), 200, "{mode}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(me["data"]["email"], ALICE_EMAIL, "{mode}");
        let seen = fake.recorder().requests_to(directus_endpoints::ME);
        assert_eq!(seen.len(), 2);
        for name in ["authorization", "cookie", "x-workspace-id"] {
            assert_eq!(seen[0].header(name), seen[1].header(name), "{mode}: {name}");
        }
        assert_eq!(seen[1].bearer(), Some(first.tokens.access.expose_secret()));
        assert!(!seen[1].had_cookie(), "{mode}");

        clock.advance(Duration::from_secs(5));
        fake.faults()
            .push(directus_endpoints::ITEMS, Fault::Status(401));
        let response = send(&service, get(fake.url("/items/articles"))).await;
        assert_eq!(response.status(), 200, "{mode}");
        assert_eq!(
            fake.recorder().count(directus_endpoints::REFRESH),
            1,
            "{mode}"
        );
        let refreshed = manager.session().unwrap();
        assert_ne!(refreshed.tokens.access, first.tokens.access, "{mode}");
        let items = fake.recorder().requests_to(directus_endpoints::ITEMS);
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1].bearer(),
            Some(refreshed.tokens.access.expose_secret()),
            "{mode}"
        );
    }
}

/// The service's future stays small: the caller holds it (inline, no longer boxed) and
/// polls it at every step of the exchange (760 bytes, boxed, while it held a clone of
/// the inner service for a replay; 464 with the shared one; now the inner service's
/// future, the copy to replay and two reference counts).
#[tokio::test]
async fn the_service_future_stays_small() {
    let w = linxio();
    login(&w.manager).await;
    let mut service = AuthLayer::new(w.manager.clone()).layer(hyper::<Full<Bytes>>());
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let future = service.call(get(w.fake.url("/api/vehicles")));
    let size = std::mem::size_of_val(&future);
    assert!(
        size > 0 && size <= 600,
        "the service's future is {size} bytes"
    );
    assert_eq!(future.await.unwrap().status(), 200);
}

/// Counts its clones (shared by all of them).
struct Counted<S> {
    inner: S,
    clones: Arc<Mutex<usize>>,
}

impl<S: Clone> Clone for Counted<S> {
    fn clone(&self) -> Self {
        *self.clones.lock().unwrap() += 1;
        Self {
            inner: self.inner.clone(),
            clones: Arc::clone(&self.clones),
        }
    }
}

impl<S: Service<R>, R> Service<R> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

/// The hot path clones the inner service for no request: one clone, made on the first
/// authorized request, is kept for replays and shared.
#[tokio::test]
async fn the_hot_path_does_not_clone_the_inner_service_per_request() {
    let w = linxio();
    login(&w.manager).await;
    let clones = Arc::new(Mutex::new(0));
    let mut service = AuthLayer::new(w.manager.clone()).layer(Counted {
        inner: hyper::<Full<Bytes>>(),
        clones: Arc::clone(&clones),
    });
    for _ in 0..20 {
        let ready = service.ready().await.unwrap();
        let response = ready.call(get(w.fake.url("/api/vehicles"))).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(*clones.lock().unwrap(), 1);
}

/// Concurrent 401s, through clones of one service made before any request: one
/// refresh, and every rejected request replayed once through the shared clone of the
/// inner service, each time made ready first (`Strict` checks it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_401s_replay_through_the_shared_clone_made_ready_each_time() {
    let w = linxio();
    let first = login(&w.manager).await;
    w.fake
        .revoke_access_token(first.tokens.access.expose_secret());
    get_concurrently(&strict(&w.manager), 20, &w.fake.url("/api/vehicles")).await;
    assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
    let now = w.manager.session().unwrap().tokens.access;
    // Each request went out once with the new token: a replay, or (started after the
    // refresh) a first send. Only a 401 starts a refresh, so some went out with the
    // old one; each of those was replayed once.
    let sent = w.fake.recorder().bearers_to(endpoints::VEHICLES);
    let old = Some(first.tokens.access.expose_secret().to_owned());
    let new = Some(now.expose_secret().to_owned());
    let with_old = sent.iter().filter(|b| **b == old).count();
    assert_eq!(sent.iter().filter(|b| **b == new).count(), 20);
    assert!(with_old >= 1);
    assert_eq!(sent.len(), 20 + with_old);
}
