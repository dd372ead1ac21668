//! What a fake server saw: every request, per-endpoint counters, the refresh tokens
//! presented, and every secret it issued, for tests to assert on.
//!
//! Issued secrets are what the conformance suite scans every `Debug` and `Display` for.
//! The server records them from each answer a handler gives (JSON string fields named
//! like a credential, at any depth: `token`, `access_token`, `refreshToken`,
//! `id_token`, `jwt`, `session_token`; and the values of `Set-Cookie` cookies whose
//! name contains `token` or `session`); a handler that issues secrets under other names
//! records them itself with [`Recorder::record_secret`].
//!
//! The server records each request before rate limiting and faults, so a request
//! answered by a fault still counts. Endpoints are named by their handler pattern
//! (`"POST /login"`); a request no pattern matches is named `"<METHOD> <path>"`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::server::{FakeRequest, FakeResponse};

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
    /// What the server did instead of answering normally (a scripted fault, its rate
    /// limit), as `Debug` text; `None` for a normal answer.
    pub fault: Option<String>,
    /// The status the server answered with; `None` while it is being answered, and
    /// when it answered none (a dropped connection, a hang).
    pub status: Option<u16>,
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
    secrets: Vec<String>,
}

/// Collects the string values of credential-named fields (see the module docs).
fn secret_fields(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let key: String = key
                    .chars()
                    .filter(|c| *c != '_' && *c != '-')
                    .collect::<String>()
                    .to_ascii_lowercase();
                let credential = matches!(
                    key.as_str(),
                    "token" | "accesstoken" | "refreshtoken" | "idtoken" | "jwt" | "sessiontoken"
                );
                match v {
                    serde_json::Value::String(s) if credential => out.push(s.clone()),
                    _ => secret_fields(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secret_fields(v, out)),
        _ => {}
    }
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

    /// Records a request (the server calls this); returns its index, for
    /// [`Recorder::record_fault`].
    pub fn record(&self, endpoint: &str, req: &FakeRequest, at: SystemTime) -> usize {
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
            fault: None,
            status: None,
        });
        log.requests.len() - 1
    }

    /// Notes what the server did instead of answering request `index` normally (the
    /// server calls this): [`RecordedRequest::fault`].
    pub fn record_fault(&self, index: usize, fault: impl std::fmt::Debug) {
        self.update(index, |request| request.fault = Some(format!("{fault:?}")));
    }

    /// Notes the status request `index` was answered with (the server calls this):
    /// [`RecordedRequest::status`].
    pub fn record_status(&self, index: usize, status: http::StatusCode) {
        self.update(index, |request| request.status = Some(status.as_u16()));
    }

    /// Changes what request `index` records (nothing when there is no such request).
    fn update(&self, index: usize, change: impl FnOnce(&mut RecordedRequest)) {
        if let Some(request) = self.lock().requests.get_mut(index) {
            change(request);
        }
    }

    /// Records a refresh token presented to a refresh or logout endpoint (handlers call
    /// this, valid or not, in arrival order).
    pub fn record_refresh_token(&self, token: &str) {
        self.lock().refresh_tokens.push(token.to_owned());
    }

    /// Records a secret the server issued (a token, a session id) that must never show
    /// in a client's `Debug`, `Display`, logs or errors. Handlers call this for secrets
    /// the automatic scan (see the module docs) does not find.
    pub fn record_secret(&self, secret: &str) {
        let mut log = self.lock();
        // A masked value (`"**********"`) is not a secret.
        let secret_like = secret.chars().any(char::is_alphanumeric);
        if secret_like && !log.secrets.iter().any(|s| s == secret) {
            log.secrets.push(secret.to_owned());
        }
    }

    /// Records the secrets in an answer (the server calls this for every handler
    /// answer; see the module docs for what counts).
    pub fn record_issued(&self, response: &FakeResponse) {
        let mut found = Vec::new();
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(response.body()) {
            secret_fields(&value, &mut found);
        }
        for cookie in response.headers().get_all(http::header::SET_COOKIE) {
            let Some((name, rest)) = cookie.to_str().ok().and_then(|c| c.split_once('=')) else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let value = rest.split(';').next().unwrap_or_default().trim();
            if (name.contains("token") || name.contains("session")) && !value.is_empty() {
                found.push(value.to_owned());
            }
        }
        for secret in found {
            self.record_secret(&secret);
        }
    }

    /// Every secret the server issued, in order (see the module docs).
    pub fn secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
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

    /// The bearer token of each request to `endpoint`, in order (`None` where it had
    /// none).
    pub fn bearers_to(&self, endpoint: &str) -> Vec<Option<String>> {
        self.each_to(endpoint, |r| r.bearer().map(str::to_owned))
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
        self.each_to(endpoint, |r| r.user_agent().map(str::to_owned))
    }

    /// The value of header `name` on each request to `endpoint`, in order.
    pub fn header_values(&self, endpoint: &str, name: &str) -> Vec<Option<String>> {
        self.each_to(endpoint, |r| r.header(name).map(str::to_owned))
    }

    /// `read` of each request to `endpoint`, in order.
    fn each_to<T>(&self, endpoint: &str, read: impl Fn(&RecordedRequest) -> T) -> Vec<T> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(read)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn issued_secrets_are_found_by_name_at_any_depth_and_in_cookies() {
        let recorder = Recorder::default();
        let body = serde_json::json!({
            "data": { "access_token": "at-secret-1", "expires": 900_000, "refresh_token": "rt-secret-2" },
            "token_type": "Bearer",
            "token_endpoint": "https://issuer.example/token",
            "items": [{ "jwt": "jwt-secret-3" }],
            "token": "**********",
        });
        let response = FakeResponse::json(StatusCode::OK, &body)
            .with_header(
                "set-cookie",
                "directus_session_token=cookie-secret-4; HttpOnly",
            )
            .with_header("set-cookie", "theme=dark");
        recorder.record_issued(&response);
        recorder.record_secret("renew-secret-5");
        assert_eq!(
            recorder.secrets(),
            [
                "at-secret-1",
                "rt-secret-2",
                "jwt-secret-3",
                "cookie-secret-4",
                "renew-secret-5"
            ]
        );
    }

    #[test]
    fn the_malformed_json_body_is_not_json_and_carries_the_marker() {
        use crate::server::{MALFORMED_JSON_BODY, MALFORMED_JSON_MARKER};
        assert!(serde_json::from_str::<serde_json::Value>(MALFORMED_JSON_BODY).is_err());
        assert!(MALFORMED_JSON_BODY.contains(MALFORMED_JSON_MARKER));
    }
}
