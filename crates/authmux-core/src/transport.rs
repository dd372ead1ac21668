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
/// request's extensions (`request.extensions_mut().insert(RequestLimits { .. })`).
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
        max_response_bytes: usize,
    }

    impl ReqwestTransport {
        /// A transport with the default settings.
        pub fn new() -> Result<Self, AuthError> {
            Self::with_config(TransportConfig::default())
        }

        /// A transport with the given settings.
        pub fn with_config(config: TransportConfig) -> Result<Self, AuthError> {
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .user_agent(config.user_agent)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(map_error)?;
            Ok(Self {
                client,
                max_response_bytes: config.max_response_bytes,
            })
        }

        /// Wraps an existing client (its own timeout, proxy, TLS settings apply).
        pub fn from_client(client: reqwest::Client, max_response_bytes: usize) -> Self {
            Self {
                client,
                max_response_bytes,
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

    #[async_trait]
    impl Transport for ReqwestTransport {
        async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
            let limits = request
                .extensions()
                .get::<RequestLimits>()
                .copied()
                .unwrap_or_default();
            let cap = limits.max_response_bytes.unwrap_or(self.max_response_bytes);
            let mut request = reqwest::Request::try_from(request).map_err(map_error)?;
            if let Some(timeout) = limits.timeout {
                // Overrides the client's timeout for this request only.
                *request.timeout_mut() = Some(timeout);
            }
            let mut response = self.client.execute(request).await.map_err(map_error)?;
            if response.content_length().is_some_and(|n| n > cap as u64) {
                return Err(body_too_large(cap));
            }
            let mut builder = Response::builder()
                .status(response.status())
                .version(response.version());
            if let Some(headers) = builder.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(map_error)? {
                if body.len() + chunk.len() > cap {
                    return Err(body_too_large(cap));
                }
                body.extend_from_slice(&chunk);
            }
            builder
                .body(Bytes::from(body))
                .map_err(|e| AuthError::protocol(format!("bad response: {e}")))
        }
    }

    fn body_too_large(cap: usize) -> AuthError {
        AuthError::Transport {
            kind: TransportErrorKind::BodyTooLarge,
            source: Some(Arc::new(std::io::Error::other(format!(
                "response body larger than {cap} bytes"
            )))),
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
