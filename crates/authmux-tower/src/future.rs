//! [`ResponseFuture`], the future of [`AuthService::call`](crate::AuthService): the
//! inner service's own future, not boxed, for an authorized request and for one passed
//! through; a boxed future takes over only on the rare paths (after a 401, while the
//! manager is waited for, an authorization that failed).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use authmux_core::Session;
use http::{Request, Response, StatusCode};
use tower_service::Service;

use crate::{Error, ReplayCopy, Shared, replay_after_401};

/// A boxed future of the rare paths.
type Boxed<R, E> = Pin<Box<dyn Future<Output = Result<Response<R>, Error<E>>> + Send>>;

/// What an authorized request needs if the answer is a 401: the manager and the
/// replay service, the session it was authorized with, and its copy to replay.
pub(crate) struct After<S, B> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) session: Arc<Session>,
    pub(crate) replay: Option<ReplayCopy<B>>,
}

pin_project_lite::pin_project! {
    /// The future of [`AuthService::call`](crate::AuthService) for a service `S` of
    /// requests with bodies `B` and answers with bodies `R`.
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<B>, Response = Response<R>>,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, B, R>
    where
        S: Service<Request<B>, Response = Response<R>>,
    {
        /// The inner service's answer is awaited; `after` is `None` for a request
        /// passed through (sent without the session's credentials).
        Sending {
            #[pin]
            future: S::Future,
            after: Option<After<S, B>>,
        },
        /// A rare path.
        Boxed {
            future: Boxed<R, S::Error>,
        },
    }
}

impl<S, B, R> ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    /// The inner service's `future`; `after` for an authorized request.
    pub(crate) fn sending(future: S::Future, after: Option<After<S, B>>) -> Self {
        Self {
            state: State::Sending { future, after },
        }
    }

    /// A boxed future of a rare path.
    pub(crate) fn boxed(future: Boxed<R, S::Error>) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<S, B, R> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    R: Send + 'static,
{
    type Output = Result<Response<R>, Error<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Sending { future, after } => {
                    let response = ready!(future.poll(cx)).map_err(Error::Service)?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(After {
                        shared,
                        session,
                        replay,
                    }) = after.take()
                    else {
                        // Passed through: a 401 that says nothing about the session.
                        return Poll::Ready(Ok(response));
                    };
                    let replayed = replay_after_401(shared, session, replay, response);
                    state.set(State::Boxed {
                        future: Box::pin(replayed),
                    });
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
            }
        }
    }
}
