//! The HTTP transport: [`Transport`] takes an `http::Request<Bytes>` and returns an
//! `http::Response<Bytes>`.
//!
//! Adapters build requests and read responses; they never touch an HTTP client
//! directly. [`ReqwestTransport`] (feature `reqwest`, on by default, rustls) is the
//! default, with a per-request timeout, a response-size cap, no redirects, and a
//! `User-Agent` naming authmux. Every transport is `Debug` (so a provider holding one,
//! even as `Arc<dyn Transport>`, can derive `Debug`); [`from_fn`] turns a closure
//! `Fn(Request<Bytes>) -> impl Future<Output = Result<Response<Bytes>, AuthError>>` into
//! a transport, so tests can script answers:
//!
//! ```
//! use authmux_core::transport::{self, Transport};
//! use authmux_core::AuthError;
//! use bytes::Bytes;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let scripted = transport::from_fn(|_req: http::Request<Bytes>| async {
//!     Ok::<_, AuthError>(http::Response::builder().status(204).body(Bytes::new()).unwrap())
//! });
//! let answer = scripted.send(http::Request::new(Bytes::new())).await.unwrap();
//! assert_eq!(answer.status(), 204);
//! assert_eq!(format!("{scripted:?}"), "FnTransport");
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use url::{Host, Url};

use crate::error::AuthError;

/// The default per-request timeout (linxio-js uses the same).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default response-size cap: 4 MiB, far above any auth answer.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The `User-Agent` authmux sends unless told otherwise: `authmux/<version>`.
pub fn default_user_agent() -> String {
    format!(
        "authmux/{} (+https://crates.io/crates/authmux)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Sends one HTTP request and returns the whole response.
///
/// Implementations report failures below HTTP as [`AuthError::Timeout`] or
/// [`AuthError::Transport`]; any HTTP status, 4xx and 5xx included, is a response.
///
/// `Debug` is required so that providers holding a transport can derive `Debug`; it
/// must never print credentials (a transport holds none; requests pass through).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends `request`.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError>;

    /// Sends `request` with per-request [`RequestLimits`] (what the
    /// [`SessionManager`](crate::SessionManager) does for application traffic). The
    /// default puts `limits` in the request's extensions and calls
    /// [`Transport::send`], so a transport that reads them there needs nothing more; a
    /// transport may take them directly instead, saving the extension map.
    ///
    /// The default also holds `limits.deadline`, with a timer around
    /// [`Transport::send`]; a transport that overrides this must hold it itself.
    async fn send_with_limits(
        &self,
        mut request: Request<Bytes>,
        limits: RequestLimits,
    ) -> Result<Response<Bytes>, AuthError> {
        let deadline = limits.deadline;
        request.extensions_mut().insert(limits);
        match deadline {
            Some(deadline) => within(deadline, self.send(request)).await,
            None => self.send(request).await,
        }
    }
}

/// `future`, or [`AuthError::Timeout`] at `deadline` (no timer is armed if `future` is
/// ready at once).
pub(crate) async fn within<T>(
    deadline: tokio::time::Instant,
    future: impl Future<Output = Result<T, AuthError>>,
) -> Result<T, AuthError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .unwrap_or(Err(AuthError::Timeout))
}

/// A transport made from a closure by [`from_fn`]. Its `Debug` is `FnTransport`.
#[derive(Clone, Copy)]
pub struct FnTransport<F>(F);

impl<F> fmt::Debug for FnTransport<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnTransport")
    }
}

/// A transport that answers each request with `f(request)` (scripted answers in tests,
/// a transport wrapping another). See the [module docs](self).
pub fn from_fn<F, Fut>(f: F) -> FnTransport<F>
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response<Bytes>, AuthError>> + Send,
{
    FnTransport(f)
}

#[async_trait]
impl<F, Fut> Transport for FnTransport<F>
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response<Bytes>, AuthError>> + Send,
{
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        (self.0)(request).await
    }
}

/// Refuses plain `http://` to anything but a loopback host unless `allow_insecure_http`
/// is set, and refuses schemes other than http and https. Adapters call this on their
/// base URL when they are built.
pub fn check_base_url(url: &Url, allow_insecure_http: bool) -> Result<(), AuthError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(AuthError::InsecureTransport {
            reason: format!(
                "plain http:// to {} would expose credentials; use https or opt in to insecure http",
                url.host_str().unwrap_or("?")
            ),
        }),
        other => Err(AuthError::validation(
            "url",
            format!("unsupported scheme {other:?}; expected https"),
        )),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Per-request overrides of a transport's timeout and response-size cap, carried in the
/// request's extensions (`request.extensions_mut().insert(RequestLimits { .. })`) or
/// handed to [`Transport::send_with_limits`].
///
/// The [`SessionManager`](crate::SessionManager) attaches one to every application
/// request it sends (its `send_timeout` and `max_response_bytes` settings), so that
/// application traffic can have a longer timeout or a larger cap than the auth
/// endpoints, which are sent without one and keep the transport's own settings.
/// [`ReqwestTransport`] honours it; a custom transport should too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestLimits {
    /// The timeout of this request, connect to last byte (`None`: the transport's).
    pub timeout: Option<Duration>,
    /// The largest response body accepted for this request (`None`: the transport's).
    pub max_response_bytes: Option<usize>,
    /// A moment by which the answer must be in, whatever the timeout ([`AuthError::Timeout`]
    /// after it): the deadline of the whole call this request is part of, so that one
    /// timer holds both.
    pub deadline: Option<tokio::time::Instant>,
}

/// Settings of [`ReqwestTransport`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Per-request timeout, connect to last byte. Default 30 s.
    pub timeout: Duration,
    /// Largest accepted response body. Default 4 MiB.
    pub max_response_bytes: usize,
    /// The `User-Agent` header. Default [`default_user_agent`].
    pub user_agent: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: default_user_agent(),
        }
    }
}

/// The HTTP settings every adapter's config shares (flatten it into the config with
/// `#[serde(flatten)]`), so that "one line of config" means the same thing for every
/// dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClientOptions {
    /// Allow plain `http://` to a non-loopback host. Off by default.
    pub allow_insecure_http: bool,
    /// Per-request timeout in milliseconds (default 30 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The `User-Agent` to send (default [`default_user_agent`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl ClientOptions {
    /// The [`TransportConfig`] these options describe.
    pub fn transport_config(&self) -> TransportConfig {
        let defaults = TransportConfig::default();
        TransportConfig {
            timeout: self
                .timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            user_agent: self.user_agent.clone().unwrap_or(defaults.user_agent),
            max_response_bytes: defaults.max_response_bytes,
        }
    }

    /// Checks `base_url` against [`check_base_url`] with these options.
    pub fn check_url(&self, base_url: &Url) -> Result<(), AuthError> {
        check_base_url(base_url, self.allow_insecure_http)
    }

    /// Builds the default transport with these options.
    #[cfg(feature = "reqwest")]
    pub fn build_transport(&self) -> Result<std::sync::Arc<dyn Transport>, AuthError> {
        Ok(std::sync::Arc::new(ReqwestTransport::with_config(
            self.transport_config(),
        )?))
    }
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_impl::ReqwestTransport;

#[cfg(feature = "reqwest")]
mod reqwest_impl {
    use std::sync::Arc;

    use super::*;
    use crate::error::TransportErrorKind;

    /// The default transport: reqwest with rustls, no redirects, a timeout and a
    /// response-size cap.
    #[derive(Debug, Clone)]
    pub struct ReqwestTransport {
        client: reqwest::Client,
        /// The timeout of each exchange (`None` for a caller's client, which keeps its
        /// own).
        timeout: Option<Duration>,
        max_response_bytes: usize,
        origins: Arc<OriginCache>,
    }

    impl ReqwestTransport {
        /// A transport with the default settings.
        pub fn new() -> Result<Self, AuthError> {
            Self::with_config(TransportConfig::default())
        }

        /// A transport with the given settings.
        pub fn with_config(config: TransportConfig) -> Result<Self, AuthError> {
            let client = reqwest::Client::builder()
                .user_agent(config.user_agent)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(map_error)?;
            Ok(Self {
                client,
                timeout: Some(config.timeout),
                max_response_bytes: config.max_response_bytes,
                origins: Arc::default(),
            })
        }

        /// Wraps an existing client (its own timeout, proxy, TLS settings apply).
        pub fn from_client(client: reqwest::Client, max_response_bytes: usize) -> Self {
            Self {
                client,
                timeout: None,
                max_response_bytes,
                origins: Arc::default(),
            }
        }
    }

    /// Classifies a reqwest error (before anything is stripped from it: the
    /// classification reads the error as reqwest built it), then keeps only a sanitized
    /// message without the URL.
    fn map_error(e: reqwest::Error) -> AuthError {
        if e.is_timeout() {
            return AuthError::Timeout;
        }
        let kind = if e.is_connect() {
            TransportErrorKind::Connect
        } else if e.is_builder() {
            TransportErrorKind::Request
        } else if e.is_body() || e.is_decode() || e.is_request() {
            // A connection closed mid-answer surfaces as a request or body error.
            TransportErrorKind::Io
        } else {
            TransportErrorKind::Other
        };
        let message = crate::error::sanitize_message(&e.without_url().to_string());
        AuthError::Transport {
            kind,
            source: Some(Arc::new(std::io::Error::other(message))),
        }
    }

    /// The future of one exchange (boxed, as a `dyn Transport`'s are).
    type Exchange<'a> =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Bytes>, AuthError>> + Send + 'a>>;

    // Written out rather than with `#[async_trait]`: the request is converted and handed
    // to reqwest before the future is made, so the boxed future, allocated for every
    // request, holds only what lives across its awaits (reqwest's futures, the timer)
    // and stays small enough for the allocator's fast path.
    impl Transport for ReqwestTransport {
        fn send<'life0, 'async_trait>(
            &'life0 self,
            request: Request<Bytes>,
        ) -> Exchange<'async_trait>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let limits = request
                .extensions()
                .get::<RequestLimits>()
                .copied()
                .unwrap_or_default();
            self.send_with_limits(request, limits)
        }

        fn send_with_limits<'life0, 'async_trait>(
            &'life0 self,
            request: Request<Bytes>,
            limits: RequestLimits,
        ) -> Exchange<'async_trait>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let cap = limits.max_response_bytes.unwrap_or(self.max_response_bytes);
            // One timer for the whole exchange: the earlier of the timeout (the
            // request's own, or the transport's; a client from
            // [`ReqwestTransport::from_client`] also keeps its own) and the caller's
            // deadline. A plain `tokio` timer, armed once and raced with each step,
            // rather than reqwest's per-request timeout, which costs an allocation.
            let timeout = limits
                .timeout
                .or(self.timeout)
                .map(|timeout| tokio::time::Instant::now() + timeout);
            let until = match (timeout, limits.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match to_reqwest(request, &self.origins) {
                Ok(request) => Box::pin(exchange(self.client.execute(request), until, cap)),
                Err(error) => Box::pin(std::future::ready(Err(error))),
            }
        }
    }

    /// The rest of one exchange once reqwest has the request: its answer, the whole
    /// body (at most `cap` bytes), all before `until`.
    async fn exchange(
        pending: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
        until: Option<tokio::time::Instant>,
        cap: usize,
    ) -> Result<Response<Bytes>, AuthError> {
        let pending = std::pin::pin!(pending);
        let mut timer = std::pin::pin!(until.map(tokio::time::sleep_until));
        let mut response = race(pending, timer.as_mut().as_pin_mut()).await?;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(body_too_large(cap));
        }
        // The body chunk by chunk, counting; a body that comes in one chunk (the
        // usual small answer) is handed on without a copy. (`Response::bytes` would do
        // the same in one call, but its future alone is 568 bytes.)
        let mut body = Bytes::new();
        let mut more: Option<Vec<u8>> = None;
        loop {
            let chunk = race(
                std::pin::pin!(response.chunk()),
                timer.as_mut().as_pin_mut(),
            )
            .await?;
            let Some(chunk) = chunk else { break };
            if body.len() + more.as_ref().map_or(0, Vec::len) + chunk.len() > cap {
                return Err(body_too_large(cap));
            }
            match more.as_mut() {
                Some(more) => more.extend_from_slice(&chunk),
                None if body.is_empty() => body = chunk,
                None => {
                    let mut joined = Vec::with_capacity(body.len() + chunk.len());
                    joined.extend_from_slice(&body);
                    joined.extend_from_slice(&chunk);
                    more = Some(joined);
                }
            }
        }
        if let Some(more) = more {
            body = Bytes::from(more);
        }
        let status = response.status();
        let version = response.version();
        let headers = std::mem::take(response.headers_mut());
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.version_mut() = version;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// `step`, unless `timer` fires first ([`AuthError::Timeout`]). Both are pinned by
    /// the caller: this future holds two references, not a copy of `step`.
    async fn race<T, E: Into<Failure>>(
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

    /// An error of a step of [`race`], as an [`AuthError`].
    struct Failure(AuthError);

    impl From<reqwest::Error> for Failure {
        fn from(e: reqwest::Error) -> Self {
            Self(map_error(e))
        }
    }

    impl From<AuthError> for Failure {
        fn from(e: AuthError) -> Self {
            Self(e)
        }
    }

    /// The origin (`scheme://authority/`) of the last request, parsed: requests to the
    /// same origin (all of a session's) reuse it and only set their path and query,
    /// skipping the host parsing that dominates `Url::parse`. Holds no credentials: an
    /// authority with user information is never kept.
    #[derive(Default)]
    struct OriginCache(arc_swap::ArcSwapOption<Url>);

    impl fmt::Debug for OriginCache {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("OriginCache")
        }
    }

    impl OriginCache {
        /// The URL of `uri` (absolute), as `Url::parse` of its text would give.
        fn url_of(&self, uri: &http::Uri) -> Result<Url, AuthError> {
            let invalid = || AuthError::validation("uri", "invalid request URI");
            let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => (scheme, authority.as_str()),
                _ => return Err(AuthError::validation("uri", "request URI is not absolute")),
            };
            let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
            if let Some(origin) = self.0.load().as_deref()
                && origin.scheme() == scheme
                && &origin[url::Position::BeforeHost..url::Position::AfterPort] == authority
            {
                // The same origin text parses to the same origin: only the path and
                // query are new (`set_path` and `set_query` parse them as
                // `Url::parse` would).
                let mut url = origin.clone();
                let (path, query) = match path_and_query.split_once('?') {
                    Some((path, query)) => (path, Some(query)),
                    None => (path_and_query, None),
                };
                url.set_path(path);
                url.set_query(query);
                return Ok(url);
            }
            let mut text =
                String::with_capacity(scheme.len() + 3 + authority.len() + path_and_query.len());
            text.push_str(scheme);
            text.push_str("://");
            text.push_str(authority);
            text.push_str(path_and_query);
            let url = Url::parse(&text).map_err(|_| invalid())?;
            if !authority.contains('@') && !url.cannot_be_a_base() {
                let mut origin = url.clone();
                origin.set_path("/");
                origin.set_query(None);
                self.0.store(Some(Arc::new(origin)));
            }
            Ok(url)
        }
    }

    /// `reqwest::Request::try_from`, without its growing `String` and, for a known
    /// origin, without parsing the host again (fewer allocations and instructions
    /// matter on this path). The request's extensions are not carried over: reqwest
    /// reads none it did not set.
    fn to_reqwest(
        request: Request<Bytes>,
        origins: &OriginCache,
    ) -> Result<reqwest::Request, AuthError> {
        let (parts, body) = request.into_parts();
        let url = origins.url_of(&parts.uri)?;
        let mut out = reqwest::Request::new(parts.method, url);
        *out.headers_mut() = parts.headers;
        *out.version_mut() = parts.version;
        *out.body_mut() = Some(body.into());
        Ok(out)
    }

    fn body_too_large(cap: usize) -> AuthError {
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

        /// The cache gives what `Url::parse` of the whole text gives, for the first
        /// request to an origin and for every later one (paths, queries, dot segments,
        /// encodings, another origin, default ports, IPv6).
        #[test]
        fn origin_cache_parses_as_url_parse_does() {
            let cache = OriginCache::default();
            let uris = [
                "http://127.0.0.1:8055/items/articles",
                "http://127.0.0.1:8055/items/articles?fields=*&limit=2",
                "http://127.0.0.1:8055/a/../b/./c",
                "http://127.0.0.1:8055/%7Euser/caf%C3%A9?q=a%20b",
                "http://127.0.0.1:8055/",
                "http://127.0.0.1:8055",
                "http://127.0.0.1:8056/other/port",
                "https://API.example.com:443/x?y",
                "https://api.example.com/x?y",
                "https://api.example.com/x?",
                "http://[::1]:9000/v6",
                "http://127.0.0.1:8055/items?a=1",
            ];
            for _ in 0..2 {
                for text in uris {
                    let uri: http::Uri = text.parse().unwrap();
                    let expected = Url::parse(&uri.to_string()).unwrap();
                    assert_eq!(cache.url_of(&uri).unwrap(), expected, "{text}");
                }
            }
        }

        #[test]
        fn origin_cache_never_keeps_user_information() {
            let cache = OriginCache::default();
            let uri: http::Uri = "http://user:secret@127.0.0.1:1/x".parse().unwrap();
            let url = cache.url_of(&uri).unwrap();
            assert_eq!(url.password(), Some("secret"));
            assert!(cache.0.load().is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_refused_except_on_loopback_or_opt_in() {
        let ok = |s: &str, opt: bool| check_base_url(&Url::parse(s).unwrap(), opt).is_ok();
        assert!(ok("https://api.example.com", false));
        assert!(ok("http://127.0.0.1:8080", false));
        assert!(ok("http://[::1]:8080", false));
        assert!(ok("http://localhost:3000", false));
        assert!(!ok("http://api.example.com", false));
        assert!(!ok("http://127.0.0.1.example.com", false));
        assert!(ok("http://api.example.com", true));
        assert!(!ok("ftp://api.example.com", true));
        let err =
            check_base_url(&Url::parse("http://api.example.com").unwrap(), false).unwrap_err();
        assert!(matches!(err, AuthError::InsecureTransport { .. }));
    }
}
