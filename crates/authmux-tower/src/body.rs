//! [`ReplayBody`]: which request bodies [`AuthService`](crate::AuthService) can send a
//! second time after a `401`, and [`NoReplay`], the wrapper for bodies that cannot.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full};

/// A request body that may be copied for one replay after a `401`.
///
/// Implemented for the buffered bodies (`Full`, `Empty`, `Bytes`, `String`: copies are
/// reference-counted or small), and, returning `None`, for the type-erased streaming
/// ones (`BoxBody`, `UnsyncBoxBody`) and [`NoReplay`]. For your own body type, return a
/// copy when one is cheap, `None` otherwise:
///
/// ```
/// use authmux_tower::ReplayBody;
///
/// struct Upload(bytes::Bytes);
/// impl ReplayBody for Upload {
///     fn try_clone_body(&self) -> Option<Self> {
///         Some(Upload(self.0.clone()))
///     }
/// }
/// ```
pub trait ReplayBody: Sized {
    /// A copy of this body that sends the same bytes, or `None` when it cannot be
    /// replayed (a stream, already being read).
    fn try_clone_body(&self) -> Option<Self>;
}

impl<D: Buf + Clone> ReplayBody for Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

impl ReplayBody for Bytes {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for String {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D, E> ReplayBody for BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

/// Wraps any body (a stream, hyper's `Incoming`; it must be `Unpin`, or boxed) as one
/// that is never replayed: a `401` to a request carrying it is returned, with the
/// session refreshed for the next request. It forwards every frame as is.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay<B>(pub B);

impl<B> ReplayBody for NoReplay<B> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for NoReplay<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}
