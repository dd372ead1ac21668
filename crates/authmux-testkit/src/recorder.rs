//! What a fake server saw: every request, per-endpoint counters, and the refresh tokens
//! presented, for tests to assert on.
//!
//! The server records each request before rate limiting and faults, so a request
//! answered by a fault still counts. Endpoints are named by their handler pattern
//! (`"POST /login"`); a request no pattern matches is named `"<METHOD> <path>"`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::server::FakeRequest;

/// One request as recorded.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The endpoint name (pattern), e.g. `"POST /login"`.
    pub endpoint: String,
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// All headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The server time when it arrived (clock plus offset).
    pub at: SystemTime,
}

impl RecordedRequest {
    /// One header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `User-Agent`.
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// The bearer token of an `Authorization: Bearer` header.
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Whether an `Authorization: Bearer` header came with the request.
    pub fn had_bearer(&self) -> bool {
        self.bearer().is_some()
    }

    /// Whether any `Authorization` header came with the request.
    pub fn had_authorization(&self) -> bool {
        self.headers.contains_key("authorization")
    }

    /// The `Cookie` header(s), joined with `; `.
    pub fn cookies(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Whether a `Cookie` header came with the request.
    pub fn had_cookie(&self) -> bool {
        self.headers.contains_key("cookie")
    }

    /// The body parsed as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    counts: HashMap<String, usize>,
    refresh_tokens: Vec<String>,
}

/// The thread-safe request log. Reach it with `handle.recorder()`.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Log>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a request (the server calls this).
    pub fn record(&self, endpoint: &str, req: &FakeRequest, at: SystemTime) {
        let mut log = self.lock();
        *log.counts.entry(endpoint.to_owned()).or_default() += 1;
        log.requests.push(RecordedRequest {
            endpoint: endpoint.to_owned(),
            method: req.method().clone(),
            path: req.path().to_owned(),
            query: req.query().map(str::to_owned),
            headers: req.headers().clone(),
            body: req.body().clone(),
            at,
        });
    }

    /// Records a refresh token presented to a refresh or logout endpoint (handlers call
    /// this, valid or not, in arrival order).
    pub fn record_refresh_token(&self, token: &str) {
        self.lock().refresh_tokens.push(token.to_owned());
    }

    /// How many requests reached `endpoint`.
    pub fn count(&self, endpoint: &str) -> usize {
        self.lock().counts.get(endpoint).copied().unwrap_or(0)
    }

    /// How many requests arrived in all.
    pub fn total(&self) -> usize {
        self.lock().requests.len()
    }

    /// Every endpoint's count.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.lock().counts.clone()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The requests to one endpoint, in arrival order.
    pub fn requests_to(&self, endpoint: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// The last request to one endpoint.
    pub fn last(&self, endpoint: &str) -> Option<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .rev()
            .find(|r| r.endpoint == endpoint)
            .cloned()
    }

    /// The `User-Agent` of each request to `endpoint`, in order (`None` when absent).
    pub fn user_agents(&self, endpoint: &str) -> Vec<Option<String>> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.user_agent().map(str::to_owned))
            .collect()
    }

    /// The value of header `name` on each request to `endpoint`, in order.
    pub fn header_values(&self, endpoint: &str, name: &str) -> Vec<Option<String>> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.header(name).map(str::to_owned))
            .collect()
    }

    /// Every refresh token presented, in order.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh_tokens.clone()
    }

    /// Forgets everything recorded so far.
    pub fn reset(&self) {
        *self.lock() = Log::default();
    }
}
