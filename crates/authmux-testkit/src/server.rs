//! The one HTTP server machinery every fake runs on.
//!
//! A fake is a [`Handler`]: it names its endpoints as patterns (`"POST /login"`,
//! `"DELETE /api/v1/auth/sessions/:id"`), answers a routed [`FakeRequest`] with a
//! [`FakeResponse`], and renders its dialect's error envelope for a status. Everything
//! else is shared and lives here: binding `127.0.0.1` on a free (or given) port,
//! serving HTTP/1.1 with hyper 1 on a dedicated thread, recording each request
//! ([`Recorder`]), applying scripted faults ([`Faults`]), the optional per-IP rate
//! limit, the server clock offset, the `Date` header, and graceful shutdown when the
//! [`ServerHandle`] is dropped.
//!
//! Each request goes through these steps, in order:
//! 1. the body is read and the request is routed to an endpoint pattern (or to
//!    `"<METHOD> <path>"` when nothing matches);
//! 2. it is recorded (so counters count every request that arrived, including ones
//!    answered by a fault or the rate limit);
//! 3. the rate limit, when set, may answer `429` with `Retry-After`;
//! 4. the next scripted fault for the endpoint, if any, is applied;
//! 5. an unmatched request gets [`Handler::not_found`]; a matched one [`Handler::handle`];
//! 6. the answer gets a `Date` header from the server's own clock (the injected clock
//!    plus the offset, see [`Context::now`]) unless it already has one, so a fake whose
//!    clock is set ahead or behind looks to a client exactly like a skewed real server
//!    (hyper adds a `Date` from the system clock only to answers without one).
//!
//! The server runs on its own thread with its own single-threaded tokio runtime, so a
//! fake works the same from `#[test]`, `#[tokio::test]` (either flavour) and a CLI, and
//! a test that blocks its own runtime cannot starve the server.
//!
//! Handlers are synchronous and run one at a time on that thread, so a handler's
//! check-then-act on its state is never interleaved with another request's (requests
//! still arrive concurrently, and a `Fault::Delay` sleeps without blocking others).
//! Concurrency quirks of a real server (e.g. two refreshes with one token both
//! succeeding) are modelled explicitly, e.g. with `RefreshPolicy::grace`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use authmux_core::clock::{Clock, SystemClock};
use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, DATE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER,
};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use url::Url;

use crate::faults::{Fault, Faults};
use crate::recorder::Recorder;

/// The token-shaped text inside the body of [`Fault::MalformedJson`]: a client that
/// echoes a response body into an error (a `Protocol` message, a log line) shows it,
/// and the conformance suite fails any error that contains it.
pub const MALFORMED_JSON_MARKER: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJtYXJrZXIiOiJlY2hvZWQtYm9keSJ9.c2VjcmV0LWJvZHktbWFya2Vy";

/// The body of [`Fault::MalformedJson`]: JSON cut off after a token-shaped string
/// ([`MALFORMED_JSON_MARKER`]), as a proxy or a crashed server might send.
pub const MALFORMED_JSON_BODY: &str = concat!(
    "{\"access_token\": \"",
    "eyJhbGciOiJIUzI1NiJ9.eyJtYXJrZXIiOiJlY2hvZWQtYm9keSJ9.c2VjcmV0LWJvZHktbWFya2Vy",
    "\", \"expires_in\": 3"
);

/// A request as a fake sees it: already read in full and routed.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    peer: SocketAddr,
    params: HashMap<String, String>,
}

impl FakeRequest {
    /// Builds a request by hand (for unit-testing a handler without a socket).
    ///
    /// `target` is the path with an optional query, e.g. `"/me?fields[]=id"`.
    pub fn new(method: Method, target: &str, headers: HeaderMap, body: impl Into<Bytes>) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Self {
            method,
            path,
            query,
            headers,
            body: body.into(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            params: HashMap::new(),
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string (without `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The decoded query pairs, in order (repeated keys such as `fields[]` repeat).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every value of one query key, in order (e.g. `query_all("fields[]")`).
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.query_pairs()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }

    /// The first value of one query key.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as a string (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `User-Agent` header.
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// The raw `Cookie` header(s), joined with `; ` when repeated.
    pub fn cookie_header(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The value of one cookie.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.cookie_header()?;
        header.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body parsed as JSON; an empty body is `Ok(None)`.
    pub fn json(&self) -> Result<Option<Value>, serde_json::Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.body).map(Some)
    }

    /// The body as a JSON object: empty body gives an empty object, anything that is not
    /// a JSON object gives `Err` with a human-readable reason.
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, String> {
        match self.json() {
            Ok(None) => Ok(serde_json::Map::new()),
            Ok(Some(Value::Object(map))) => Ok(map),
            Ok(Some(_)) => Err("request body must be a JSON object".to_owned()),
            Err(e) => Err(format!("request body is not valid JSON: {e}")),
        }
    }

    /// The address of the client.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// A path parameter captured by a `:name` segment of the endpoint pattern.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// A response a handler gives back. Build it with the constructors and `with_*` methods.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    status: StatusCode,
    headers: Box<HeaderMap>,
    body: Bytes,
}

impl FakeResponse {
    /// A response with a status and no body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Box::default(),
            body: Bytes::new(),
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self::empty(StatusCode::NO_CONTENT)
    }

    /// A JSON response (`Content-Type: application/json; charset=utf-8`).
    pub fn json(status: StatusCode, value: &Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Self::raw(status, "application/json; charset=utf-8", body)
    }

    /// A response with any content type and body.
    pub fn raw(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut headers = Box::new(HeaderMap::new());
        if let Ok(v) = HeaderValue::from_str(content_type) {
            headers.insert(CONTENT_TYPE, v);
        }
        Self {
            status,
            headers,
            body: body.into(),
        }
    }

    /// A `302 Found` redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        let mut resp = Self::empty(StatusCode::FOUND);
        if let Ok(v) = HeaderValue::from_str(location) {
            resp.headers.insert(LOCATION, v);
        }
        resp
    }

    /// Adds a header (appends, so `Set-Cookie` may repeat). Invalid values are ignored.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.append(n, v);
        }
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What a handler can see of the server while answering a request.
#[derive(Debug)]
pub struct Context<'a> {
    shared: &'a Shared,
}

impl Context<'_> {
    /// The server's current time: the injected clock plus the clock offset. Use it for
    /// every token timestamp and expiry check.
    pub fn now(&self) -> SystemTime {
        self.shared.now()
    }

    /// The request recorder (e.g. to record a presented refresh token).
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// The server's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &Url {
        &self.shared.base_url
    }
}

/// A dialect: the endpoints it serves, how it answers them and how it renders errors.
///
/// ```
/// use authmux_testkit::server::{Context, FakeRequest, FakeResponse, Handler};
/// use http::StatusCode;
/// use serde_json::json;
///
/// struct Ping;
/// impl Handler for Ping {
///     fn endpoints(&self) -> &[&'static str] {
///         &["GET /ping", "GET /items/:id"]
///     }
///     fn handle(&self, endpoint: &'static str, req: &FakeRequest, _cx: &Context<'_>) -> FakeResponse {
///         match endpoint {
///             "GET /ping" => FakeResponse::raw(StatusCode::OK, "text/plain", "pong"),
///             _ => FakeResponse::json(StatusCode::OK, &json!({ "id": req.param("id") })),
///         }
///     }
///     fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
///         FakeResponse::json(status, &json!({ "message": message }))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The endpoint patterns, `"<METHOD> <path>"`; a path segment `:name` matches any one
    /// segment and is readable with [`FakeRequest::param`]. The first match wins. The
    /// pattern string is also the endpoint's name for counters and faults.
    fn endpoints(&self) -> &[&'static str];

    /// Answers a request routed to `endpoint` (one of [`Handler::endpoints`]).
    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse;

    /// The dialect's error envelope for a status (used for `Fault::Status`, `429`, 404).
    fn error(&self, status: StatusCode, message: &str) -> FakeResponse;

    /// The answer to a request no endpoint matches. Defaults to a 404 error envelope.
    fn not_found(&self, req: &FakeRequest) -> FakeResponse {
        self.error(
            StatusCode::NOT_FOUND,
            &format!("Cannot {} {}", req.method(), req.path()),
        )
    }

    /// The answer when the configured rate limit refuses a request; `retry_after` is the
    /// time left in the client's window. Defaults to a 429 error envelope with
    /// `Retry-After` in whole seconds (rounded up, at least 1).
    fn rate_limited(
        &self,
        retry_after: Duration,
        _limit: RateLimit,
        _cx: &Context<'_>,
    ) -> FakeResponse {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please try again later.",
        )
        .with_header(RETRY_AFTER.as_str(), &secs.max(1).to_string())
    }
}

/// Matches `method` and `path` against endpoint patterns; returns the pattern and the
/// captured `:name` parameters.
pub fn match_endpoint(
    patterns: &[&'static str],
    method: &Method,
    path: &str,
) -> Option<(&'static str, HashMap<String, String>)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    patterns.iter().find_map(|pattern| {
        let (pm, pp) = pattern.split_once(' ')?;
        if pm != method.as_str() {
            return None;
        }
        let pat_segments: Vec<&str> = pp.trim_start_matches('/').split('/').collect();
        if pat_segments.len() != segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (p, s) in pat_segments.iter().zip(&segments) {
            if let Some(name) = p.strip_prefix(':') {
                if s.is_empty() {
                    return None;
                }
                params.insert(name.to_owned(), (*s).to_owned());
            } else if p != s {
                return None;
            }
        }
        Some((*pattern, params))
    })
}

/// A fixed-window request limit per client IP, measured on the injected clock (without
/// the clock offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window and IP.
    pub max_requests: u32,
    /// The window length.
    pub window: Duration,
}

impl RateLimit {
    /// `max_requests` per minute per IP.
    pub fn per_minute(max_requests: u32) -> Self {
        Self {
            max_requests,
            window: Duration::from_secs(60),
        }
    }
}

/// How to start a server: port, clock and rate limit.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    port: u16,
    clock: Arc<dyn Clock>,
    rate_limit: Option<RateLimit>,
    name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: 0,
            clock: Arc::new(SystemClock),
            rate_limit: None,
            name: "authmux-fake".to_owned(),
        }
    }
}

impl ServerConfig {
    /// Port 0 (a free port), the system clock, no rate limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens on this port of `127.0.0.1` (0 picks a free one).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The clock for token timestamps, expiry checks and the rate-limit window.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The per-IP rate limit (`None`: unlimited).
    #[must_use]
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// A name for the server thread (shows in panics and debuggers).
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }
}

#[derive(Debug, Default)]
struct RateState {
    limit: Option<RateLimit>,
    windows: HashMap<IpAddr, (SystemTime, u32)>,
}

pub(crate) struct Shared {
    handler: Arc<dyn Handler>,
    clock: Arc<dyn Clock>,
    offset_millis: AtomicI64,
    recorder: Recorder,
    faults: Faults,
    rate: Mutex<RateState>,
    base_url: Url,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn now(&self) -> SystemTime {
        let base = self.clock.now();
        let offset = self.offset_millis.load(Ordering::SeqCst);
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 { base + by } else { base - by }
    }

    /// `Some((time left in the window, limit))` when this request is over the limit.
    fn over_limit(&self, ip: IpAddr) -> Option<(Duration, RateLimit)> {
        let mut rate = self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let limit = rate.limit?;
        let now = self.clock.now();
        let entry = rate.windows.entry(ip).or_insert((now, 0));
        let elapsed = now.duration_since(entry.0).unwrap_or_default();
        if elapsed >= limit.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > limit.max_requests {
            let left = limit
                .window
                .saturating_sub(now.duration_since(entry.0).unwrap_or_default());
            Some((left, limit))
        } else {
            None
        }
    }

    async fn serve(
        self: Arc<Self>,
        req: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<http::Response<FakeBody>, ConnectionDropped> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(ConnectionDropped),
        };
        let mut request = FakeRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
            peer,
            params: HashMap::new(),
        };
        let routed = match_endpoint(self.handler.endpoints(), &request.method, &request.path);
        let endpoint_name = match &routed {
            Some((pattern, _)) => (*pattern).to_owned(),
            None => format!("{} {}", request.method, request.path),
        };
        if let Some((_, params)) = &routed {
            request.params.clone_from(params);
        }
        let index = self.recorder.record(&endpoint_name, &request, self.now());
        let answered = Arc::clone(&self)
            .answer(index, &endpoint_name, routed, request)
            .await;
        if let Ok(response) = &answered {
            self.recorder.record_status(index, response.status());
        }
        answered
    }

    /// The answer to the request recorded as `index`: the handler's, or what a
    /// scripted fault or the rate limit makes of it.
    async fn answer(
        self: Arc<Self>,
        index: usize,
        endpoint_name: &str,
        routed: Option<(&'static str, HashMap<String, String>)>,
        request: FakeRequest,
    ) -> Result<http::Response<FakeBody>, ConnectionDropped> {
        if let Some((left, limit)) = self.over_limit(request.peer.ip()) {
            self.recorder
                .record_fault(index, format_args!("the server's rate limit"));
            let resp = self
                .handler
                .rate_limited(left, limit, &Context { shared: &self });
            return Ok(self.finish(resp));
        }

        let fault = self.faults.next_for(endpoint_name);
        if let Some(fault) = &fault {
            self.recorder.record_fault(index, fault);
        }
        let answer = |shared: &Self| {
            let response = match &routed {
                Some((pattern, _)) => shared
                    .handler
                    .handle(pattern, &request, &Context { shared }),
                None => shared.handler.not_found(&request),
            };
            shared.recorder.record_issued(&response);
            response
        };
        let fault =
            match fault.map(|f| crate::faults::canned_answer(f, |s, m| self.handler.error(s, m))) {
                Some(Ok(canned)) => return Ok(self.finish(canned)),
                Some(Err(fault)) => Some(fault),
                None => None,
            };
        match fault {
            None => Ok(self.finish(answer(&self))),
            Some(Fault::Delay(by)) => {
                tokio::time::sleep(by).await;
                Ok(self.finish(answer(&self)))
            }
            Some(Fault::DelayAnswer(by)) => {
                // Stamped when written, like the tokens in it; then held back.
                let response = self.finish(answer(&self));
                tokio::time::sleep(by).await;
                Ok(response)
            }
            Some(Fault::DropConnection) => Err(ConnectionDropped),
            Some(Fault::TruncatedBody) => {
                let resp = answer(&self);
                let full_len = resp.body.len();
                let mut http_resp = self.finish(resp);
                let body = std::mem::replace(http_resp.body_mut(), FakeBody::empty());
                let bytes = body.into_bytes();
                let kept = bytes.slice(..bytes.len() / 2);
                *http_resp.body_mut() = FakeBody::truncated(kept);
                // Promise the full length, deliver half, then abort the connection.
                http_resp
                    .headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(full_len.max(2)));
                Ok(http_resp)
            }
            Some(Fault::OversizedBody(size)) => {
                let resp = answer(&self);
                let mut body = resp.body.to_vec();
                if body.len() < size {
                    // Trailing whitespace keeps JSON valid: only a size limit can refuse it.
                    body.resize(size, b' ');
                }
                let status = if resp.status == StatusCode::NO_CONTENT {
                    StatusCode::OK
                } else {
                    resp.status
                };
                let mut out = FakeResponse {
                    status,
                    headers: resp.headers,
                    body: Bytes::from(body),
                };
                out.headers.remove(CONTENT_LENGTH);
                Ok(self.finish(out))
            }
            Some(Fault::Hang) => {
                // Ends when the client closes the connection (hyper drops this future)
                // or the server shuts down.
                std::future::pending::<()>().await;
                Err(ConnectionDropped)
            }
            Some(Fault::EditJson { pointer, edit }) => {
                let mut resp = answer(&self);
                if let Some(body) = crate::faults::edit_json(&resp.body, &pointer, &edit) {
                    resp.body = Bytes::from(body);
                    resp.headers.remove(CONTENT_LENGTH);
                }
                Ok(self.finish(resp))
            }
            Some(canned) => unreachable!("{canned:?} is answered by `faults::canned_answer`"),
        }
    }
}

impl Shared {
    /// The wire response for `resp`, with a `Date` header on the server's clock unless
    /// the handler (or a scripted fault) set one.
    fn finish(&self, resp: FakeResponse) -> http::Response<FakeBody> {
        let mut out = into_http(resp);
        if !out.headers().contains_key(DATE)
            && let Some(date) = http_date(self.now())
        {
            out.headers_mut().insert(DATE, date);
        }
        out
    }
}

/// `at` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); `None` outside the years
/// 1970-9999 that the format (and `httpdate`) can express.
fn http_date(at: SystemTime) -> Option<HeaderValue> {
    const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    if since_epoch >= YEAR_10000 {
        return None;
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
}

fn into_http(resp: FakeResponse) -> http::Response<FakeBody> {
    let mut out = http::Response::new(FakeBody::full(resp.body));
    *out.status_mut() = resp.status;
    *out.headers_mut() = *resp.headers;
    out
}

/// The error a service returns to make hyper close the connection without answering.
#[derive(Debug)]
struct ConnectionDropped;

impl fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Response body: either whole, or a truncated one that sends its first chunk, pauses
/// (so hyper flushes the head and that chunk) and then fails, aborting the connection.
#[derive(Debug)]
struct FakeBody {
    data: Option<Bytes>,
    fail_after: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FakeBody {
    fn full(data: Bytes) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            fail_after: None,
        }
    }
    fn empty() -> Self {
        Self {
            data: None,
            fail_after: None,
        }
    }
    fn truncated(data: Bytes) -> Self {
        let pause = Box::pin(tokio::time::sleep(Duration::from_millis(50)));
        Self {
            data: Some(data),
            fail_after: Some(pause),
        }
    }
    fn into_bytes(self) -> Bytes {
        self.data.unwrap_or_default()
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = ConnectionDropped;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ConnectionDropped>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(pause) = self.fail_after.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.fail_after = None;
            return Poll::Ready(Some(Err(ConnectionDropped)));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.fail_after.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.fail_after.is_some()) {
            (_, true) => SizeHint::default(),
            (Some(d), false) => SizeHint::with_exact(d.len() as u64),
            (None, false) => SizeHint::with_exact(0),
        }
    }
}

/// A running fake server. Dropping it shuts the server down (in-flight requests get up
/// to about a second to finish) and frees the port.
///
/// Every fake's handle dereferences to its `ServerHandle`, so `base_url()`,
/// `recorder()`, `faults()` and the clock-offset setters are the same on all of them.
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `127.0.0.1:<port>` and starts serving `handler` on a dedicated thread.
    ///
    /// Works with or without a surrounding tokio runtime.
    ///
    /// # Errors
    /// When the port cannot be bound or the server thread cannot start.
    pub fn start<H: Handler>(handler: Arc<H>, config: ServerConfig) -> io::Result<Self> {
        crate::secret_log::init_tracing();
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            handler,
            clock: config.clock,
            offset_millis: AtomicI64::new(0),
            recorder: Recorder::default(),
            faults: Faults::default(),
            rate: Mutex::new(RateState {
                limit: config.rate_limit,
                windows: HashMap::new(),
            }),
            base_url,
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(config.name)
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_shared, rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:<port>` (with a trailing `/` as `Url` renders it).
    pub fn base_url(&self) -> &Url {
        &self.shared.base_url
    }

    /// An absolute URL for `path` (which may carry a query), e.g. `url("/me?fields[]=id")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the server has seen.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// The scripted faults.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The server's current time (the injected clock plus the offset).
    pub fn now(&self) -> SystemTime {
        self.shared.now()
    }

    /// Sets the server clock offset in milliseconds (positive: the server is ahead of
    /// the injected clock). Applies to token timestamps and expiry checks. The skew
    /// tests use [`crate::skew::OFFSETS_MILLIS`].
    pub fn set_clock_offset_millis(&self, millis: i64) {
        self.shared.offset_millis.store(millis, Ordering::SeqCst);
    }

    /// The injected clock's current time (without the offset): the time a client
    /// sharing that clock sees.
    pub fn clock_now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// The server clock offset in milliseconds.
    pub fn clock_offset_millis(&self) -> i64 {
        self.shared.offset_millis.load(Ordering::SeqCst)
    }

    /// Puts the server clock `by` ahead of the injected clock.
    pub fn set_clock_ahead(&self, by: Duration) {
        self.set_clock_offset_millis(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// Puts the server clock `by` behind the injected clock.
    pub fn set_clock_behind(&self, by: Duration) {
        self.set_clock_offset_millis(-i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// Changes the per-IP rate limit (`None`: unlimited) and forgets past counts.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut rate = self
            .shared
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rate.limit = limit;
        rate.windows.clear();
    }

    /// The current per-IP rate limit.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.shared
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .limit
    }

    /// Blocks the calling thread for as long as the process runs (for a standalone fake:
    /// Ctrl-C ends the process). In async code, hold the handle and
    /// `std::future::pending::<()>().await` instead.
    pub fn serve_forever(&self) -> ! {
        loop {
            std::thread::park();
        }
    }

    /// Stops the server now and waits for its thread (what dropping the handle does).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let mut conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        Arc::clone(&shared).serve(req, peer)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = conn_shutdown.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_and_capture_params() {
        let pats = [
            "GET /me",
            "DELETE /api/v1/auth/sessions/:id",
            "DELETE /api/v1/auth/sessions",
        ];
        let (p, params) =
            match_endpoint(&pats, &Method::DELETE, "/api/v1/auth/sessions/abc").unwrap();
        assert_eq!(p, "DELETE /api/v1/auth/sessions/:id");
        assert_eq!(params["id"], "abc");
        let (p, _) = match_endpoint(&pats, &Method::DELETE, "/api/v1/auth/sessions").unwrap();
        assert_eq!(p, "DELETE /api/v1/auth/sessions");
        assert!(match_endpoint(&pats, &Method::POST, "/me").is_none());
        assert!(match_endpoint(&pats, &Method::GET, "/me/x").is_none());
    }

    #[test]
    fn request_helpers_read_bearer_cookies_and_query() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("bearer abc"));
        headers.append("cookie", HeaderValue::from_static("a=1; b=2"));
        headers.append("cookie", HeaderValue::from_static("c=3"));
        let req = FakeRequest::new(
            Method::GET,
            "/me?fields%5B%5D=id&fields[]=email",
            headers,
            "",
        );
        assert_eq!(req.bearer(), Some("abc"));
        assert_eq!(req.cookie("b").as_deref(), Some("2"));
        assert_eq!(req.cookie("c").as_deref(), Some("3"));
        assert_eq!(req.query_all("fields[]"), vec!["id", "email"]);
        assert_eq!(req.json_object().unwrap().len(), 0);
    }
}
