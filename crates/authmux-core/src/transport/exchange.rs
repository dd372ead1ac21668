//! What the built-in transports share once the request is on its way: one timer for
//! the whole exchange ([`until`], [`race`]) and a body read in chunks under a size cap
//! ([`Collector`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{AuthError, TransportErrorKind};

/// The future of one exchange (boxed, as a `dyn Transport`'s are).
pub(crate) type Exchange<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, AuthError>> + Send + 'a>>;

/// The [`RequestLimits`](super::RequestLimits) a request carries in its extensions
/// (none: the transport's own settings).
pub(crate) fn limits_of<B>(request: &http::Request<B>) -> super::RequestLimits {
    request
        .extensions()
        .get::<super::RequestLimits>()
        .copied()
        .unwrap_or_default()
}

/// The moment an exchange must be done by: the earlier of `timeout` from now and
/// `deadline` (`None`: no limit).
pub(crate) fn until(
    timeout: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    let timeout = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    match (timeout, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `step`, unless `timer` fires first ([`AuthError::Timeout`]). Both are pinned by the
/// caller: this future holds two references, not a copy of `step`.
pub(crate) async fn race<T, E: Into<Failure>>(
    mut step: std::pin::Pin<&mut impl Future<Output = Result<T, E>>>,
    mut timer: Option<std::pin::Pin<&mut tokio::time::Sleep>>,
) -> Result<T, AuthError> {
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(result) = step.as_mut().poll(cx) {
            return std::task::Poll::Ready(result.map_err(|e| e.into().0));
        }
        if let Some(timer) = timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return std::task::Poll::Ready(Err(AuthError::Timeout));
        }
        std::task::Poll::Pending
    })
    .await
}

/// An error of a step of [`race`], as an [`AuthError`] (each transport maps its
/// client's errors with a `From` impl).
pub(crate) struct Failure(pub(crate) AuthError);

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Self(e)
    }
}

/// A response body gathered chunk by chunk, counting against a cap. A body that comes
/// in one chunk (the usual small answer) is handed on without a copy.
pub(crate) struct Collector {
    body: Bytes,
    more: Option<Vec<u8>>,
    cap: usize,
}

impl Collector {
    /// An empty body that may grow to `cap` bytes; a declared `length` above the cap is
    /// refused at once.
    pub(crate) fn new(cap: usize, length: Option<u64>) -> Result<Self, AuthError> {
        if length.is_some_and(|n| n > cap as u64) {
            return Err(body_too_large(cap));
        }
        Ok(Self {
            body: Bytes::new(),
            more: None,
            cap,
        })
    }

    /// Adds `chunk`, or refuses it if the body would pass the cap.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Result<(), AuthError> {
        let held = self.body.len() + self.more.as_ref().map_or(0, Vec::len);
        if held + chunk.len() > self.cap {
            return Err(body_too_large(self.cap));
        }
        match self.more.as_mut() {
            Some(more) => more.extend_from_slice(&chunk),
            None if self.body.is_empty() => self.body = chunk,
            None => {
                // From here on the body lives in `more` alone (counted once).
                let first = std::mem::take(&mut self.body);
                let mut joined = Vec::with_capacity(first.len() + chunk.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                self.more = Some(joined);
            }
        }
        Ok(())
    }

    /// The whole body.
    pub(crate) fn finish(self) -> Bytes {
        self.more.map_or(self.body, Bytes::from)
    }
}

/// The error of a body larger than `cap`.
pub(crate) fn body_too_large(cap: usize) -> AuthError {
    AuthError::Transport {
        kind: TransportErrorKind::BodyTooLarge,
        source: Some(Arc::new(std::io::Error::other(format!(
            "response body larger than {cap} bytes"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_joined_and_capped() {
        let mut one = Collector::new(10, None).unwrap();
        let chunk = Bytes::from_static(b"abcd");
        one.push(chunk.clone()).unwrap();
        let whole = one.finish();
        // One chunk is the body itself, not a copy.
        assert_eq!(whole.as_ptr(), chunk.as_ptr());
        let mut three = Collector::new(10, Some(10)).unwrap();
        for piece in [&b"abc"[..], b"def", b"ghij"] {
            three.push(Bytes::copy_from_slice(piece)).unwrap();
        }
        assert_eq!(three.finish(), Bytes::from_static(b"abcdefghij"));
        // A body of exactly the cap in many chunks is accepted (each byte counted once).
        let mut exact = Collector::new(100, None).unwrap();
        for _ in 0..10 {
            exact.push(Bytes::from_static(b"0123456789")).unwrap();
        }
        assert_eq!(exact.finish().len(), 100);
        let mut over = Collector::new(10, None).unwrap();
        over.push(Bytes::from_static(b"abcdef")).unwrap();
        assert!(over.push(Bytes::from_static(b"ghijk")).is_err());
        assert!(Collector::new(10, Some(11)).is_err());
    }
}
