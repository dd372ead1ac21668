//! Retries of idempotent requests: [`RetryPolicy`] (how many, how long between) and
//! [`send_with_retry`], the one loop every authorized request goes through.
//!
//! Retried: connection failures, timeouts, 500/502/503/504 (linxio-js retries any
//! 5xx; 501 and 505+ are not transient), and 429/503 after their `Retry-After`. Only idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) are retried,
//! unless the caller marks a request idempotent. Delays grow exponentially from
//! `base_delay` up to `max_delay`, with full jitter.

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
    let mut attempt = 0;
    loop {
        let result = transport.send(clone_request(&request)).await;
        attempt += 1;
        if attempt > policy.retries {
            return result;
        }
        match judge(&result, policy, attempt, now()) {
            Verdict::Done => return result,
            Verdict::RetryAfter(wait) => {
                tracing::debug!(
                    attempt,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "retrying idempotent request"
                );
                tokio::time::sleep(wait).await;
            }
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
        move |_req: Request<Bytes>| {
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
        }
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
    fn backoff_is_bounded() {
        let p = policy();
        for attempt in 1..20 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
        assert_eq!(RetryPolicy::NONE.backoff(3), Duration::ZERO);
    }
}
