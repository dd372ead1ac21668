#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use authmux_core::provider::{RequestTarget, authorize_headers};
use authmux_core::session::same_origin;
use authmux_core::{AuthError, Session, SessionManager, async_trait};
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
}

impl AuthMiddleware {
    /// A middleware authorizing with `manager`'s session. The manager must be signed in
    /// (or restored) before requests to the session's origin are sent; until then
    /// they fail with [`AuthError::NotSignedIn`].
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }

    /// The manager this middleware authorizes with.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

/// Adds `session`'s credentials to `request` (the provider's rules, headers marked
/// sensitive).
fn authorize(manager: &SessionManager, session: &Session, request: &mut Request) -> Result<()> {
    // Take the headers out (no allocation) so the method and path can be borrowed.
    let mut headers = std::mem::take(request.headers_mut());
    let result = authorize_headers(
        manager.provider().as_ref(),
        session,
        RequestTarget {
            method: request.method(),
            path: request.url().path(),
        },
        &mut headers,
    );
    *request.headers_mut() = headers;
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
    *copy.headers_mut() = request.headers().clone();
    *copy.version_mut() = request.version();
    Some(copy)
}

fn auth_error(error: AuthError) -> Error {
    Error::middleware(error)
}

#[async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        // The caller chose its own credentials, or the request is not for the
        // provider's origin at all: pass it through, asking the manager nothing.
        if request.headers().contains_key(AUTHORIZATION)
            || !same_origin(self.manager.provider().base_url(), request.url())
        {
            return next.run(request, extensions).await;
        }
        // The slow paths (waiting for a refresh) are large futures: boxed only when
        // taken, so that every request's future stays small.
        let session = match self.manager.try_usable_session() {
            Some(session) => session,
            None => Box::pin(self.manager.usable_session())
                .await
                .map_err(auth_error)?,
        };
        if session.base_url != *self.manager.provider().base_url()
            && !session.is_same_origin(request.url())
        {
            // A session restored for another base URL than the provider's.
            return next.run(request, extensions).await;
        }
        // Before the credentials go in: the copy to replay carries none. `None` for a
        // streaming body, which cannot be sent twice.
        let replay = replay_copy(&request);
        authorize(&self.manager, &session, &mut request)?;
        let response = next.clone().run(request, extensions).await?;
        // A 401 from elsewhere (after a redirect to another origin, which reqwest
        // sends without the credentials) says nothing about this session.
        if response.status() != StatusCode::UNAUTHORIZED || !session.is_same_origin(response.url())
        {
            return Ok(response);
        }
        let refreshed = Box::pin(self.manager.session_after_unauthorized(&session))
            .await
            .map_err(auth_error)?;
        let Some(mut replay) = replay else {
            // The body is gone; the next request goes out with the refreshed session.
            return Ok(response);
        };
        drop(response);
        authorize(&self.manager, &refreshed, &mut replay)?;
        next.run(replay, extensions).await
    }
}
