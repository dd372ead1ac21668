//! Retries of idempotent requests: [`RetryPolicy`] (how many, how long between) and
//! [`send_with_retry`], the one loop every authorized request goes through.
//!
//! Retried: connection failures, timeouts, 500/502/503/504 (linxio-js retries any
//! 5xx; 501 and 505+ are not transient), and 429/503 after their `Retry-After`. Only idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) are retried,
//! unless the caller marks a request idempotent. Delays grow exponentially from
//! `base_delay` up to `max_delay`, with full jitter.
//!
//! A refresh is not such a request: it is a POST that may rotate the refresh token, so
//! repeating one the server did process sends a spent token. [`RefreshRetry`] is the
//! rule the session manager applies to it instead: retried once, inside the same call,
//! only when the server certainly did not process it.

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use crate::error::AuthError;
use crate::transport::Transport;
use crate::wire::retry_after;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub retries: u32,
    /// The first delay's upper bound.
    pub base_delay: Duration,
    /// No delay exceeds this (except a server's `Retry-After`, which is honoured up to
    /// `max_retry_after`).
    pub max_delay: Duration,
    /// The longest `Retry-After` the client is willing to wait; longer ones are
    /// returned to the caller as [`AuthError::RateLimited`] / a 503 instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_retry_after: Duration::ZERO,
    };

    /// The delay before retry number `attempt` (1-based): uniformly random in
    /// `[0, min(max_delay, base_delay * 2^(attempt-1))]` (full jitter).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            fastrand::u64(0..=nanos)
        })
    }
}

/// When a refresh is retried inside the same call: only when the server certainly did
/// not process it, so the refresh token it carried is not spent.
///
/// - the connection was never opened ([`TransportErrorKind::Connect`]: refused, DNS,
///   TLS handshake): retried after [`RefreshRetry::refused_delay`];
/// - `429` with a `Retry-After` of at most [`RefreshRetry::max_retry_after`]: retried
///   after it;
/// - `503` with a `Retry-After` of at most the same bound: retried after it.
///
/// Never after a timeout, a dropped or truncated answer, a malformed one, or a 5xx
/// without `Retry-After`: the server may have rotated the token, and sending the old one
/// again would be refused (or, with reuse detection, revoke the whole sign-in). Those
/// are returned as transient failures and the session is kept. One retry at most.
///
/// ```
/// use authmux_core::retry::RefreshRetry;
/// use authmux_core::AuthError;
/// use std::time::Duration;
///
/// let rule = RefreshRetry::default();
/// let limited = AuthError::RateLimited { retry_after: Some(Duration::from_secs(1)) };
/// assert_eq!(rule.delay_for(&limited), Some(Duration::from_secs(1)));
/// assert_eq!(rule.delay_for(&AuthError::Timeout), None);
/// ```
///
/// [`TransportErrorKind::Connect`]: crate::error::TransportErrorKind::Connect
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRetry {
    /// The longest `Retry-After` (429, 503) waited for inside the call; longer ones are
    /// returned as errors. Default 2 s; zero turns the retry after 429/503 off.
    pub max_retry_after: Duration,
    /// The wait before retrying a refresh whose connection was refused or never
    /// opened. Default 250 ms.
    pub refused_delay: Duration,
    /// Whether a refused connection is retried at all. Default `true`.
    pub retry_refused: bool,
}

impl Default for RefreshRetry {
    fn default() -> Self {
        Self {
            max_retry_after: Duration::from_secs(2),
            refused_delay: Duration::from_millis(250),
            retry_refused: true,
        }
    }
}

impl RefreshRetry {
    /// Never retry a refresh.
    pub const NONE: RefreshRetry = RefreshRetry {
        max_retry_after: Duration::ZERO,
        refused_delay: Duration::ZERO,
        retry_refused: false,
    };

    /// How long to wait before retrying a refresh that failed with `error`, or `None`
    /// when it must not be retried (the server may have processed it).
    pub fn delay_for(&self, error: &AuthError) -> Option<Duration> {
        let bounded = |wait: Duration| {
            (!self.max_retry_after.is_zero() && wait <= self.max_retry_after).then_some(wait)
        };
        match error {
            AuthError::Transport {
                kind: crate::error::TransportErrorKind::Connect,
                ..
            } if self.retry_refused => Some(self.refused_delay),
            AuthError::RateLimited {
                retry_after: Some(wait),
            } => bounded(*wait),
            AuthError::Server {
                status: 503,
                retry_after: Some(wait),
                ..
            } => bounded(*wait),
            _ => None,
        }
    }
}

/// Whether a method is idempotent by definition (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// What to do after one attempt.
enum Verdict {
    Done,
    RetryAfter(Duration),
}

fn judge(
    result: &Result<Response<Bytes>, AuthError>,
    policy: &RetryPolicy,
    attempt: u32,
    now: SystemTime,
) -> Verdict {
    match result {
        Ok(response) => match response.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                match retry_after(response.headers(), now) {
                    Some(wait) if wait <= policy.max_retry_after => Verdict::RetryAfter(wait),
                    Some(_) => Verdict::Done,
                    None if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        Verdict::RetryAfter(policy.backoff(attempt))
                    }
                    None => Verdict::Done,
                }
            }
            StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::GATEWAY_TIMEOUT => Verdict::RetryAfter(policy.backoff(attempt)),
            _ => Verdict::Done,
        },
        Err(e) if e.is_retryable() => Verdict::RetryAfter(policy.backoff(attempt)),
        Err(_) => Verdict::Done,
    }
}

/// Sends `request`, retrying it per `policy` when it is idempotent (by method, or
/// because the caller says so with `idempotent`). Returns the last answer.
pub async fn send_with_retry(
    transport: &dyn Transport,
    request: Request<Bytes>,
    policy: &RetryPolicy,
    idempotent: bool,
    now: impl Fn() -> SystemTime,
) -> Result<Response<Bytes>, AuthError> {
    let retryable = idempotent || is_idempotent(request.method());
    if !retryable || policy.retries == 0 {
        return transport.send(request).await;
    }
    send_attempts(
        |request| transport.send(request),
        || Ok(clone_request(&request)),
        policy,
        now,
        None,
    )
    .await
}

/// The retry loop of [`send_with_retry`] for a request the caller already judged
/// retryable: each attempt sends what `make` builds through `send`, so a caller that
/// keeps its own template (an unauthorized request it may replay after a 401) copies
/// it once per attempt rather than once more for the loop. With a `deadline`, a wait
/// for the next attempt that would end past it ends the loop with
/// [`AuthError::Timeout`] at once (`send` holds the deadline for each attempt).
///
/// (Not an `async fn`, whose arguments the future would hold twice: the block uses
/// them in place.)
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in its future"
)]
pub fn send_attempts<Fut>(
    send: impl Fn(Request<Bytes>) -> Fut,
    mut make: impl FnMut() -> Result<Request<Bytes>, AuthError>,
    policy: &RetryPolicy,
    now: impl Fn() -> SystemTime,
    deadline: Option<tokio::time::Instant>,
) -> impl Future<Output = Result<Response<Bytes>, AuthError>>
where
    Fut: Future<Output = Result<Response<Bytes>, AuthError>>,
{
    async move {
        let mut attempt = 0;
        loop {
            // The result is dropped before the wait, and the wait's timer is boxed: this
            // future, part of every request's, holds little more than the attempt's.
            let wait = {
                // (Not `send(make()?).await`: a temporary of the statement lives across
                // the await, so the future would hold a request it has handed on.)
                let request = make()?;
                let pending = send(request);
                let result = pending.await;
                attempt += 1;
                if attempt > policy.retries {
                    return result;
                }
                match judge(&result, policy, attempt, now()) {
                    Verdict::Done => return result,
                    Verdict::RetryAfter(wait) => wait,
                }
            };
            tracing::debug!(
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying idempotent request"
            );
            if deadline.is_some_and(|d| tokio::time::Instant::now() + wait >= d) {
                return Err(AuthError::Timeout);
            }
            Box::pin(tokio::time::sleep(wait)).await;
        }
    }
}

/// Copies a request: method, URI, version, headers, body and extensions (so per-request
/// settings such as [`RequestLimits`](crate::transport::RequestLimits) hold on every
/// attempt).
pub fn clone_request(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::TransportErrorKind;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            ..RetryPolicy::default()
        }
    }

    fn scripted(statuses: Vec<Result<u16, ()>>, count: Arc<AtomicU32>) -> impl Transport {
        crate::transport::from_fn(move |_req: Request<Bytes>| {
            let n = count.fetch_add(1, Ordering::SeqCst) as usize;
            let step = statuses.get(n).copied().unwrap_or(Ok(200));
            async move {
                match step {
                    Ok(status) => Ok(Response::builder()
                        .status(status)
                        .header("retry-after", "1")
                        .body(Bytes::new())
                        .unwrap()),
                    Err(()) => Err(AuthError::Transport {
                        kind: TransportErrorKind::Connect,
                        source: None,
                    }),
                }
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn get_is_retried_on_transient_failures_then_succeeds() {
        let count = Arc::new(AtomicU32::new(0));
        let t = scripted(vec![Err(()), Ok(502), Ok(503)], count.clone());
        let req = Request::get("http://127.0.0.1/x")
            .body(Bytes::new())
            .unwrap();
        let started = tokio::time::Instant::now();
        let res = send_with_retry(&t, req, &policy(), false, SystemTime::now)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 4);
        // The 503 carried Retry-After: 1, which was honoured.
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn post_is_not_retried_unless_marked_idempotent() {
        let count = Arc::new(AtomicU32::new(0));
        let t = scripted(vec![Ok(503), Ok(503)], count.clone());
        let req = || {
            Request::post("http://127.0.0.1/x")
                .body(Bytes::new())
                .unwrap()
        };
        assert_eq!(
            send_with_retry(&t, req(), &policy(), false, SystemTime::now)
                .await
                .unwrap()
                .status(),
            503
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(
            send_with_retry(&t, req(), &policy(), true, SystemTime::now)
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_configured_retries_and_not_on_client_errors() {
        let count = Arc::new(AtomicU32::new(0));
        let t = scripted(vec![Ok(504); 10], count.clone());
        let req = Request::get("http://127.0.0.1/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            send_with_retry(&t, req, &policy(), false, SystemTime::now)
                .await
                .unwrap()
                .status(),
            504
        );
        assert_eq!(count.load(Ordering::SeqCst), 4);
        let count = Arc::new(AtomicU32::new(0));
        let t = scripted(vec![Ok(404), Ok(502)], count.clone());
        let req = Request::get("http://127.0.0.1/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            send_with_retry(&t, req, &policy(), false, SystemTime::now)
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_refresh_is_retried_only_when_the_server_did_not_process_it() {
        let rule = RefreshRetry::default();
        let secs = Duration::from_secs;
        let refused = AuthError::Transport {
            kind: TransportErrorKind::Connect,
            source: None,
        };
        assert_eq!(rule.delay_for(&refused), Some(rule.refused_delay));
        let limited = |wait| AuthError::RateLimited { retry_after: wait };
        assert_eq!(rule.delay_for(&limited(Some(secs(2)))), Some(secs(2)));
        assert_eq!(
            rule.delay_for(&limited(Some(secs(3)))),
            None,
            "over the bound"
        );
        assert_eq!(rule.delay_for(&limited(None)), None);
        let server = |status, wait| AuthError::Server {
            status,
            code: None,
            message: None,
            retry_after: wait,
        };
        assert_eq!(rule.delay_for(&server(503, Some(secs(1)))), Some(secs(1)));
        assert_eq!(rule.delay_for(&server(503, None)), None);
        assert_eq!(rule.delay_for(&server(500, Some(secs(1)))), None);
        assert_eq!(rule.delay_for(&server(502, None)), None);
        assert_eq!(rule.delay_for(&AuthError::Timeout), None);
        let after_sending = AuthError::Transport {
            kind: TransportErrorKind::Io,
            source: None,
        };
        assert_eq!(rule.delay_for(&after_sending), None);
        assert_eq!(rule.delay_for(&AuthError::protocol("truncated")), None);
        assert_eq!(rule.delay_for(&AuthError::RefreshRejected), None);
        assert_eq!(RefreshRetry::NONE.delay_for(&refused), None);
        assert_eq!(RefreshRetry::NONE.delay_for(&limited(Some(secs(1)))), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let p = policy();
        for attempt in 1..20 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
        assert_eq!(RetryPolicy::NONE.backoff(3), Duration::ZERO);
    }
}
