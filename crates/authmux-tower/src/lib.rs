#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod body;
pub mod buffer;
mod future;

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use authmux_core::provider::{RequestTarget, authorize_headers, authorize_request};
use authmux_core::session::Origin;
use authmux_core::{AuthError, SessionManager};
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use tower_layer::Layer;
use tower_service::Service;

pub use body::{NoReplay, ReplayBody};
pub use buffer::{BufferBodies, BufferBodiesLayer, Buffered, DEFAULT_BUFFER_LIMIT};
pub use future::ResponseFuture;

/// The layer: wraps a service in an [`AuthService`] authorizing with one manager's
/// session. Cheap to clone; clones share the manager.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    manager: SessionManager,
}

impl AuthLayer {
    /// A layer authorizing with `manager`'s session. The manager must be signed in (or
    /// restored) before requests to the session's origin are sent; until then they
    /// fail with [`Error::Auth`]\([`AuthError::NotSignedIn`]).
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService::new(inner, self.manager.clone())
    }
}

/// The service [`AuthLayer`] produces (see the [crate docs](crate) for every rule).
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    /// The manager and the service replays go to, behind one reference count: each
    /// authorized request's future holds one clone of it (one counter both threads
    /// touch, not two).
    shared: Arc<Shared<S>>,
}

/// What an [`AuthService`] and its clones share.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    manager: SessionManager,
    /// The provider's origin, worked out once: what every request is checked against.
    origin: Origin,
    /// A clone of `inner` for replays after a 401, made on the first authorized
    /// request and shared by the service's clones (even those made before it): the
    /// hot path hands each request's future a reference to it rather than a clone of
    /// `inner` (a hyper-util client's clone is 300 bytes and several reference counts).
    replayer: OnceLock<Mutex<S>>,
}

impl<S> AuthService<S> {
    /// Wraps `inner`, authorizing with `manager`'s session.
    pub fn new(inner: S, manager: SessionManager) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                origin: Origin::new(manager.provider().base_url()),
                manager,
                replayer: OnceLock::new(),
            }),
        }
    }

    /// The manager this service authorizes with.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// What a request's future needs for a replay (the manager, the shared clone of
    /// `inner`, made now if this is the first request needing it).
    fn for_replay(&self) -> Arc<Shared<S>>
    where
        S: Clone,
    {
        self.shared
            .replayer
            .get_or_init(|| Mutex::new(self.inner.clone()));
        Arc::clone(&self.shared)
    }
}

/// What an [`AuthService`] fails with.
#[derive(Debug)]
pub enum Error<E> {
    /// The manager could not authorize the request (not signed in, the session was
    /// refused, a refresh failed); the request was not sent.
    Auth(AuthError),
    /// The inner service failed.
    Service(E),
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(e) => write!(f, "could not authorize the request: {e}"),
            Self::Service(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Auth(e) => Some(e),
            Self::Service(e) => Some(e),
        }
    }
}

impl<S, B, R> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: ReplayBody + Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, B, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Service)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let manager = &self.shared.manager;
        let origin = &self.shared.origin;
        // The caller chose its own credentials, or the request is not for the
        // provider's origin at all: pass it through, asking the manager nothing.
        if request.headers().contains_key(AUTHORIZATION) || !origin.contains_uri(request.uri()) {
            return ResponseFuture::sending(self.inner.call(request), None);
        }
        let Some(session) = manager.try_usable_session() else {
            // No token to hand out now (none yet, expired, a refresh to wait for): the
            // slow path, in its own boxed future.
            let shared = self.for_replay();
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::boxed(Box::pin(call_after_waiting(shared, inner, request)));
        };
        if session.base_url != *origin.base_url() && !session.is_same_origin_uri(request.uri()) {
            // A session restored for another base URL than the provider's.
            return ResponseFuture::sending(self.inner.call(request), None);
        }
        // The hot path, all before the future: the copy to replay (made before the
        // credentials go in: it carries none), the credentials, and the call on the
        // service `poll_ready` made ready. A replay goes to the shared clone.
        let replay = ReplayCopy::of(&request);
        if let Err(error) = authorize(manager, &session, &mut request, replay.as_ref()) {
            return ResponseFuture::boxed(Box::pin(std::future::ready(Err(Error::Auth(error)))));
        }
        let shared = self.for_replay();
        // The inner service's future itself, not boxed: what follows a 401 is boxed
        // only when one comes.
        ResponseFuture::sending(
            self.inner.call(request),
            Some(future::After {
                shared,
                session,
                replay,
            }),
        )
    }
}

/// The requests [`AuthService`] waits for the manager for (no token to hand out now):
/// clone-and-swap happened in `call` (the service that was made ready came here, a
/// clone to be made ready by the next `poll_ready` stayed), then the same steps as the
/// hot path once the session is there.
async fn call_after_waiting<S, B, R>(
    shared: Arc<Shared<S>>,
    mut inner: S,
    mut request: Request<B>,
) -> Result<Response<R>, Error<S::Error>>
where
    S: Service<Request<B>, Response = Response<R>>,
    B: ReplayBody,
{
    let manager = &shared.manager;
    let session = manager.usable_session().await.map_err(Error::Auth)?;
    if !session.is_same_origin_uri(request.uri()) {
        // A session restored for another base URL than the provider's.
        return inner.call(request).await.map_err(Error::Service);
    }
    let replay = ReplayCopy::of(&request);
    authorize(manager, &session, &mut request, replay.as_ref()).map_err(Error::Auth)?;
    let response = inner.call(request).await.map_err(Error::Service)?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok(response);
    }
    let replayed = Box::pin(replay_after_401(shared, session, replay, response));
    replayed.await
}

/// `request` on the shared clone, once it is ready: made ready and called under one
/// lock, taken only within a poll (never held across an await).
async fn replay_on<S, B, R>(
    replayer: &OnceLock<Mutex<S>>,
    request: Request<B>,
) -> Result<Response<R>, S::Error>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    let shared = replayer.get().expect("the replayer is set before sending");
    let mut request = Some(request);
    let sent = poll_fn(|cx| {
        // A panic in another replay cannot leave a service half-called.
        let mut inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(inner.call(request.take().expect("sent once")))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await?;
    sent.await
}

/// After a 401 to a request authorized with `session`: one refresh (joining one in
/// flight), then one replay of `replay` on the shared clone (made ready first). Without a copy
/// to replay (a body that cannot be sent twice), the 401 goes back, the session
/// already refreshed for the next request.
pub(crate) async fn replay_after_401<S, B, R>(
    shared: Arc<Shared<S>>,
    session: Arc<authmux_core::Session>,
    replay: Option<ReplayCopy<B>>,
    response: Response<R>,
) -> Result<Response<R>, Error<S::Error>>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    let manager = &shared.manager;
    let refreshed = manager
        .session_after_unauthorized(&session)
        .await
        .map_err(Error::Auth)?;
    let Some(replay) = replay else {
        // The body is gone; the next request goes out with the refreshed session.
        return Ok(response);
    };
    drop(response);
    let mut replay = replay.into_request();
    authorize_request(manager.provider().as_ref(), &refreshed, &mut replay).map_err(Error::Auth)?;
    replay_on(&shared.replayer, replay)
        .await
        .map_err(Error::Service)
}

/// Adds `session`'s credentials to `request`. `copy`, the request's copy to replay
/// (the same method and path), lends the dialect what it decides by, so the request's
/// headers need not be taken out to be changed beside them.
fn authorize<B>(
    manager: &SessionManager,
    session: &authmux_core::Session,
    request: &mut Request<B>,
    copy: Option<&ReplayCopy<B>>,
) -> Result<(), AuthError> {
    let provider = manager.provider().as_ref();
    match copy {
        Some(copy) => authorize_headers(
            provider,
            session,
            RequestTarget {
                method: &copy.method,
                path: copy.uri.path(),
            },
            request.headers_mut(),
        ),
        None => authorize_request(provider, session, request),
    }
}

/// A request's copy kept for a replay after a `401`: its parts as they were before the
/// credentials went in, made into a request only if a replay happens.
pub(crate) struct ReplayCopy<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: B,
}

impl<B: ReplayBody> ReplayCopy<B> {
    /// A copy of `request`, if its body can be copied.
    fn of(request: &Request<B>) -> Option<Self> {
        Some(Self {
            body: request.body().try_clone_body()?,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            // No headers yet is common (the credentials are not in yet, and a client
            // adds its defaults later): an empty map, not a copy of one.
            headers: if request.headers().is_empty() {
                HeaderMap::new()
            } else {
                request.headers().clone()
            },
            extensions: request.extensions().clone(),
        })
    }
}

impl<B> ReplayCopy<B> {
    /// The request to replay.
    fn into_request(self) -> Request<B> {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        *request.extensions_mut() = self.extensions;
        request
    }
}
