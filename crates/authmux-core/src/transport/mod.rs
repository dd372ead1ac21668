//! The HTTP transport: [`Transport`] takes an `http::Request<Bytes>` and returns an
//! `http::Response<Bytes>`.
//!
//! Adapters build requests and read responses; they never touch an HTTP client
//! directly. Two transports come with authmux, both with rustls, a per-request
//! timeout, a response-size cap, no redirects, and a `User-Agent` naming authmux:
//!
//! - [`HyperTransport`] (feature `hyper`, on by default) is the default, the one
//!   [`ClientOptions::build_transport`] builds: hyper-util's client, for a fraction of
//!   reqwest's CPU per request. Requests the environment sends through a proxy go
//!   through a [`ReqwestTransport`].
//! - [`ReqwestTransport`] (feature `reqwest`, on by default) wraps reqwest, and with
//!   [`ReqwestTransport::from_client`] a `reqwest::Client` the caller configured.
//!
//! Every transport is `Debug` (so a provider holding one, even as
//! `Arc<dyn Transport>`, can derive `Debug`); [`from_fn`] turns a closure
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
/// The built-in transports honour it; a custom transport should too.
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

/// Settings of the built-in transports ([`HyperTransport`], [`ReqwestTransport`]).
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

    /// Builds the default transport with these options: a [`HyperTransport`], or
    /// with the `hyper` feature off, a [`ReqwestTransport`].
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn build_transport(&self) -> Result<std::sync::Arc<dyn Transport>, AuthError> {
        #[cfg(feature = "hyper")]
        let transport = HyperTransport::with_config(self.transport_config())?;
        #[cfg(not(feature = "hyper"))]
        let transport = ReqwestTransport::with_config(self.transport_config())?;
        Ok(std::sync::Arc::new(transport))
    }
}

#[cfg(any(feature = "hyper", feature = "reqwest"))]
mod exchange;
#[cfg(feature = "hyper")]
mod hyper_transport;
#[cfg(feature = "reqwest")]
mod reqwest_transport;

#[cfg(feature = "hyper")]
pub use self::hyper_transport::HyperTransport;
#[cfg(feature = "reqwest")]
pub use self::reqwest_transport::ReqwestTransport;
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
