//! [`BufferBodiesLayer`]: makes small streaming request bodies replayable by reading
//! them into memory, up to a limit, before the request goes out.
//!
//! [`AuthService`](crate::AuthService) replays a request after a `401` only when its
//! body can be copied ([`ReplayBody`]). A service whose requests carry streaming bodies
//! (hyper's `Incoming` in a proxy, a `StreamBody`) puts this layer *outside* the
//! [`AuthLayer`](crate::AuthLayer):
//!
//! ```
//! use authmux_core::SessionManager;
//! use authmux_tower::{AuthLayer, BufferBodiesLayer, Buffered};
//! use bytes::Bytes;
//! use http_body_util::combinators::UnsyncBoxBody;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//!
//! type Streaming = UnsyncBoxBody<Bytes, std::io::Error>;
//!
//! fn stack(manager: SessionManager) {
//!     let client = Client::builder(TokioExecutor::new()).build_http::<Buffered<Streaming>>();
//!     let service = ServiceBuilder::new()
//!         .layer(BufferBodiesLayer::new(64 * 1024)) // bodies up to 64 KiB can be replayed
//!         .layer(AuthLayer::new(manager))
//!         .service(client);
//!     # let _ = service;
//! }
//! ```
//!
//! The rules ([`Buffered::read`]):
//! - A body whose size hint says it is longer than the limit is not read at all: it
//!   streams through and is not replayed.
//! - Otherwise its frames are read as they come. A body that ends within the limit
//!   becomes one [`Bytes`] (plus its trailers) and can be replayed. One that passes the
//!   limit stops being read: the frames already read go out first, then the rest of
//!   the stream, and it is not replayed. Nothing is lost and nothing is reordered.
//! - A body that fails while being read is sent as far as it was read, and then fails
//!   the same way, so the inner service sees the error where it happened.
//! - Reading happens before the request is sent, so a small body produced slowly delays
//!   the request by as long as it takes; a body that never ends within the limit is
//!   not waited for beyond it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::ReplayBody;

/// The limit [`BufferBodiesLayer::default`] uses: 64 KiB.
pub const DEFAULT_BUFFER_LIMIT: usize = 64 * 1024;

/// A layer reading request bodies of up to `limit` bytes into memory so that they can
/// be replayed (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct BufferBodiesLayer {
    limit: usize,
}

impl BufferBodiesLayer {
    /// Buffers bodies of up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl Default for BufferBodiesLayer {
    /// Buffers bodies of up to [`DEFAULT_BUFFER_LIMIT`] bytes.
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_LIMIT)
    }
}

impl<S> Layer<S> for BufferBodiesLayer {
    type Service = BufferBodies<S>;

    fn layer(&self, inner: S) -> BufferBodies<S> {
        BufferBodies {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`BufferBodiesLayer`] produces: turns `Request<B>` into
/// `Request<Buffered<B>>` for the inner service.
#[derive(Debug, Clone)]
pub struct BufferBodies<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for BufferBodies<S>
where
    S: Service<Request<Buffered<B>>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Clone-and-swap, as in `AuthService`: the ready service goes into the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = Buffered::read(body, limit).await;
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// A request body read into memory when it was small enough, else the stream it was
/// (see the [module docs](self)). Replayable ([`ReplayBody`]) only in the first case.
pub struct Buffered<B: Body> {
    state: State<B>,
}

enum State<B: Body> {
    /// The whole body; `sent` says whether this copy's data went out already.
    Complete {
        data: Bytes,
        trailers: Option<HeaderMap>,
        sent: bool,
    },
    /// The frames read before the limit (or an error) was reached, then the rest.
    Streaming {
        read: VecDeque<Frame<Bytes>>,
        error: Option<B::Error>,
        rest: Option<B>,
    },
}

impl<B: Body> fmt::Debug for Buffered<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lengths only: a body may carry secrets.
        match &self.state {
            State::Complete { data, .. } => f
                .debug_struct("Buffered::Complete")
                .field("len", &data.len())
                .finish_non_exhaustive(),
            State::Streaming { read, .. } => f
                .debug_struct("Buffered::Streaming")
                .field("frames_read", &read.len())
                .finish_non_exhaustive(),
        }
    }
}

impl<B: Body + Unpin> Buffered<B> {
    /// Reads `body` into memory if it ends within `limit` bytes (see the
    /// [module docs](self) for every case).
    pub async fn read(mut body: B, limit: usize) -> Self {
        let too_long = body
            .size_hint()
            .upper()
            .is_some_and(|upper| upper > limit as u64);
        if too_long {
            return Self::streaming(VecDeque::new(), None, Some(body));
        }
        let mut read = VecDeque::new();
        let mut len = 0usize;
        loop {
            match body.frame().await {
                None => return Self::complete(read),
                Some(Err(error)) => return Self::streaming(read, Some(error), Some(body)),
                Some(Ok(frame)) => {
                    let frame = frame.map_data(|mut data| data.copy_to_bytes(data.remaining()));
                    len = len.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                    read.push_back(frame);
                    if len > limit {
                        return Self::streaming(read, None, Some(body));
                    }
                }
            }
        }
    }

    /// Whether the body was read whole (and so can be replayed).
    pub fn is_buffered(&self) -> bool {
        matches!(self.state, State::Complete { .. })
    }

    fn complete(frames: VecDeque<Frame<Bytes>>) -> Self {
        let mut trailers: Option<HeaderMap> = None;
        let mut chunks = Vec::new();
        for frame in frames {
            match frame.into_data() {
                Ok(data) => chunks.push(data),
                Err(frame) => {
                    if let Ok(more) = frame.into_trailers() {
                        trailers.get_or_insert_with(HeaderMap::new).extend(more);
                    }
                }
            }
        }
        let data = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in chunks {
                    all.extend_from_slice(&chunk);
                }
                all.freeze()
            }
        };
        Self {
            state: State::Complete {
                data,
                trailers,
                sent: false,
            },
        }
    }

    fn streaming(read: VecDeque<Frame<Bytes>>, error: Option<B::Error>, rest: Option<B>) -> Self {
        Self {
            state: State::Streaming { read, error, rest },
        }
    }
}

// Nothing inside is ever pinned: the stream is `Unpin`, and a stashed error is only
// moved out.
impl<B: Body + Unpin> Unpin for Buffered<B> {}

impl<B: Body> ReplayBody for Buffered<B> {
    fn try_clone_body(&self) -> Option<Self> {
        match &self.state {
            State::Complete { data, trailers, .. } => Some(Self {
                state: State::Complete {
                    data: data.clone(),
                    trailers: trailers.clone(),
                    sent: false,
                },
            }),
            State::Streaming { .. } => None,
        }
    }
}

impl<B: Body + Unpin> Body for Buffered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().state {
            State::Complete {
                data,
                trailers,
                sent,
            } => {
                if !*sent {
                    *sent = true;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            State::Streaming { read, error, rest } => {
                if let Some(frame) = read.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(error) = error.take() {
                    *rest = None;
                    return Poll::Ready(Some(Err(error)));
                }
                let Some(body) = rest else {
                    return Poll::Ready(None);
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    ))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => {
                        *rest = None;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Complete {
                data,
                trailers,
                sent,
            } => (*sent || data.is_empty()) && trailers.is_none(),
            State::Streaming { read, error, rest } => {
                read.is_empty() && error.is_none() && rest.as_ref().is_none_or(B::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Complete { data, sent, .. } => {
                SizeHint::with_exact(if *sent { 0 } else { data.len() as u64 })
            }
            State::Streaming { read, rest, .. } => {
                let read: u64 = read
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|d| d.len() as u64)
                    .sum();
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), B::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(read));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(read));
                }
                hint
            }
        }
    }
}
