#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use authmux_core::provider::{RequestTarget, authorize_headers, authorize_in_place};
use authmux_core::session::Origin;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use authmux_core::{AuthError, Session, SessionManager};
use http::header::AUTHORIZATION;
use http::{Extensions, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next, Result};

/// The middleware: authorizes requests to the session's origin, refreshes on `401` and
/// replays once (see the [crate docs](crate) for every rule). Cheap to clone; clones
/// share the manager.
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    manager: SessionManager,
    /// The provider's origin, worked out once: what every request is checked against.
    origin: Origin,
}

impl AuthMiddleware {
    /// A middleware authorizing with `manager`'s session. The manager must be signed in
    /// (or restored) before requests to the session's origin are sent; until then
    /// they fail with [`AuthError::NotSignedIn`].
    pub fn new(manager: SessionManager) -> Self {
        Self {
            origin: Origin::new(manager.provider().base_url()),
            manager,
        }
    }

    /// The manager this middleware authorizes with.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

/// Adds `session`'s credentials to `request` (the provider's rules, headers marked
/// sensitive). `copy`, the request's copy to replay (the same method and URL), lends
/// the dialect what it decides by, so the request's headers need not be taken out to
/// be changed beside them.
fn authorize(
    manager: &SessionManager,
    session: &Session,
    request: &mut Request,
    copy: Option<&Request>,
) -> Result<()> {
    let provider = manager.provider().as_ref();
    let result = match copy {
        Some(copy) => authorize_headers(
            provider,
            session,
            RequestTarget {
                method: copy.method(),
                path: copy.url().path(),
            },
            request.headers_mut(),
        ),
        None => authorize_in_place(
            provider,
            session,
            request,
            Request::headers_mut,
            |request| RequestTarget {
                method: request.method(),
                path: request.url().path(),
            },
        ),
    };
    result.map_err(Error::middleware)
}

/// A copy of `request` to replay, `None` for a streaming body. `Request::try_clone`,
/// without its cost for the common request with no body and no timeout of its own
/// (it always stores a timeout, allocating reqwest's extension map).
fn replay_copy(request: &Request) -> Option<Request> {
    if request.body().is_some() || request.timeout().is_some() {
        return request.try_clone();
    }
    let mut copy = Request::new(request.method().clone(), request.url().clone());
    // No headers yet is common (the credentials are not in yet, and reqwest adds the
    // client's defaults later): the new request's empty map as it is.
    if !request.headers().is_empty() {
        *copy.headers_mut() = request.headers().clone();
    }
    *copy.version_mut() = request.version();
    Some(copy)
}

fn auth_error(error: AuthError) -> Error {
    Error::middleware(error)
}

/// The future of [`AuthMiddleware`]'s `handle` (boxed, as the trait's are).
type Handled<'a> = Pin<Box<dyn Future<Output = Result<Response>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`: the checks, the session and the
// credentials come before the future is made, a pass-through returns the next
// middleware's future as it is, and the slow paths are futures of their own, so the
// future boxed for every request holds little more than the request and its copy to
// replay (the `async_trait` one was 1,304 bytes, past the allocator's fast path).
impl Middleware for AuthMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        mut request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Handled<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        // The caller chose its own credentials, or the request is not for the
        // provider's origin at all: pass it through, asking the manager nothing.
        if request.headers().contains_key(AUTHORIZATION) || !self.origin.contains_url(request.url())
        {
            return next.run(request, extensions);
        }
        let Some(session) = self.manager.try_usable_session() else {
            // No token to hand out now (none yet, expired, a refresh to wait for).
            return Box::pin(self.handle_after_waiting(request, extensions, next));
        };
        if session.base_url != *self.origin.base_url() && !session.is_same_origin(request.url()) {
            // A session restored for another base URL than the provider's.
            return next.run(request, extensions);
        }
        // Before the credentials go in: the copy to replay carries none. `None` for a
        // streaming body, which cannot be sent twice.
        let replay = replay_copy(&request);
        if let Err(error) = authorize(&self.manager, &session, &mut request, replay.as_ref()) {
            return Box::pin(std::future::ready(Err(error)));
        }
        Box::pin(async move {
            let sent = next.clone().run(request, &mut *extensions);
            let response = sent.await?;
            if !is_refusal(&session, &response) {
                return Ok(response);
            }
            let replayed =
                Box::pin(self.replay_after_401(session, replay, response, extensions, next));
            replayed.await
        })
    }
}

/// Whether `response` refuses `session`: a 401 from the session's origin. (A 401 from
/// elsewhere, after a redirect to another origin, which reqwest sends without the
/// credentials, says nothing about this session.)
fn is_refusal(session: &Session, response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED && session.is_same_origin(response.url())
}

impl AuthMiddleware {
    /// The requests that wait for the manager (no token to hand out now): the same
    /// steps as the hot path once the session is there.
    async fn handle_after_waiting(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let session = self.manager.usable_session().await.map_err(auth_error)?;
        if !session.is_same_origin(request.url()) {
            // A session restored for another base URL than the provider's.
            return next.run(request, extensions).await;
        }
        let replay = replay_copy(&request);
        authorize(&self.manager, &session, &mut request, replay.as_ref())?;
        let response = next.clone().run(request, extensions).await?;
        if !is_refusal(&session, &response) {
            return Ok(response);
        }
        self.replay_after_401(session, replay, response, extensions, next)
            .await
    }

    /// After a 401 to a request authorized with `session`: one refresh (joining one in
    /// flight), then one replay of `replay`. Without a copy to replay (a streaming
    /// body), the 401 goes back, the session already refreshed for the next request.
    async fn replay_after_401(
        &self,
        session: Arc<Session>,
        replay: Option<Request>,
        response: Response,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let refreshed = self
            .manager
            .session_after_unauthorized(&session)
            .await
            .map_err(auth_error)?;
        let Some(mut replay) = replay else {
            // The body is gone; the next request goes out with the refreshed session.
            return Ok(response);
        };
        drop(response);
        authorize(&self.manager, &refreshed, &mut replay, None)?;
        next.run(replay, extensions).await
    }
}
