//! [`HyperTransport`] (feature `hyper`, on by default): the default transport, on
//! hyper-util's pooled client (its documentation says what it does and how it treats
//! proxies).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HeaderValue, USER_AGENT};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::exchange::{Collector, Exchange, Failure, limits_of, race, until};
use super::{RequestLimits, Transport, TransportConfig};
use crate::error::{AuthError, TransportErrorKind};

/// The default transport (feature `hyper`, on by default): what every adapter builds
/// unless given another, straight on hyper-util's pooled client.
///
/// It does what [`ReqwestTransport`](crate::transport::ReqwestTransport) does (rustls with the
/// platform's certificate verifier and aws-lc-rs, HTTP/1.1 and HTTP/2 by ALPN, no
/// redirects, one timer per exchange, a response-size cap, a `User-Agent` naming
/// authmux, `TCP_NODELAY`, pooled connections) for a fraction of reqwest's CPU per
/// request (figures in docs/benchmarks.md): it skips reqwest's own request and
/// response types and layers.
///
/// The platform's root certificates are read on the first https connection, not when
/// the transport is built: one that only talks plain http to a loopback server never
/// reads them and works on a machine without any; without them, an https request
/// fails as a connect error saying TLS is not available.
///
/// Proxies: the environment is read once, when the transport is built (`HTTP_PROXY`,
/// `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl and reqwest read them). A request
/// the environment sends through a proxy goes through a [`ReqwestTransport`](crate::transport::ReqwestTransport)
/// (built on first use, with the same settings), which speaks to proxies; with the
/// `reqwest` feature off, such a request fails with a typed connect error instead of
/// going around the proxy.
///
/// ```
/// use authmux_core::transport::{HyperTransport, TransportConfig};
/// use std::time::Duration;
///
/// let transport = HyperTransport::with_config(TransportConfig {
///     timeout: Duration::from_secs(10),
///     ..TransportConfig::default()
/// })?;
/// assert!(format!("{transport:?}").starts_with("HyperTransport"));
/// # Ok::<(), authmux_core::AuthError>(())
/// ```
#[derive(Clone)]
pub struct HyperTransport {
    client: Client<LazyTls, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
    user_agent: HeaderValue,
    proxies: Arc<Proxies>,
}

impl fmt::Debug for HyperTransport {
    // The proxy settings stay out: a proxy URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperTransport")
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// The environment's proxy rules, and the transport that takes the requests they match.
struct Proxies {
    /// `None` when the environment names no proxy at all: then no request is matched
    /// (the matcher's `NO_PROXY` check parses every request's host, which costs more
    /// than the rest of sending a request to a pooled connection takes here).
    matcher: Option<Matcher>,
    #[cfg(feature = "reqwest")]
    config: TransportConfig,
    #[cfg(feature = "reqwest")]
    transport: std::sync::OnceLock<super::ReqwestTransport>,
}

impl HyperTransport {
    /// A transport with the default settings.
    pub fn new() -> Result<Self, AuthError> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with the given settings.
    pub fn with_config(config: TransportConfig) -> Result<Self, AuthError> {
        let user_agent = HeaderValue::from_str(&config.user_agent).map_err(|_| {
            AuthError::validation("user_agent", "not a valid header value (visible ASCII)")
        })?;
        let mut http = HttpConnector::new();
        // https:// goes through the TLS layer around this connector.
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = LazyTls {
            http,
            tls: Arc::default(),
        };
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            user_agent,
            proxies: Arc::new(Proxies {
                matcher: environment_names_a_proxy().then(Matcher::from_env),
                #[cfg(feature = "reqwest")]
                config,
                #[cfg(feature = "reqwest")]
                transport: std::sync::OnceLock::new(),
            }),
        })
    }

    /// `request` as hyper's client takes it: absolute, with a `User-Agent` and an
    /// `Accept` unless it has its own.
    fn to_hyper(&self, request: Request<Bytes>) -> Result<Request<Full<Bytes>>, AuthError> {
        let (mut parts, body) = request.into_parts();
        if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
            return Err(AuthError::validation("uri", "request URI is not absolute"));
        }
        // One lookup each (`entry`), not a lookup and an insert.
        parts
            .headers
            .entry(USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        parts
            .headers
            .entry(ACCEPT)
            .or_insert_with(|| HeaderValue::from_static("*/*"));
        Ok(Request::from_parts(parts, Full::new(body)))
    }

    /// Sends a request the environment's proxy rules match.
    #[cfg(feature = "reqwest")]
    fn send_proxied(&self, request: Request<Bytes>, limits: RequestLimits) -> Exchange<'_> {
        let proxies = &self.proxies;
        let transport = match proxies.transport.get() {
            Some(transport) => transport,
            None => match super::ReqwestTransport::with_config(proxies.config.clone()) {
                Ok(built) => proxies.transport.get_or_init(|| built),
                Err(error) => return Box::pin(std::future::ready(Err(error))),
            },
        };
        transport.send_with_limits(request, limits)
    }

    /// Refuses a request the environment's proxy rules match: this build cannot speak
    /// to proxies, and going around one is not an option.
    #[cfg(not(feature = "reqwest"))]
    fn send_proxied(&self, _request: Request<Bytes>, _limits: RequestLimits) -> Exchange<'_> {
        Box::pin(std::future::ready(Err(AuthError::Transport {
            kind: TransportErrorKind::Connect,
            source: Some(Arc::new(std::io::Error::other(
                "the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) sends this request \
                 through a proxy, which needs authmux-core's `reqwest` feature",
            ))),
        })))
    }
}

impl Transport for HyperTransport {
    fn send<'life0, 'async_trait>(&'life0 self, request: Request<Bytes>) -> Exchange<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let limits = limits_of(&request);
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
        if let Some(matcher) = &self.proxies.matcher
            && matcher.intercept(request.uri()).is_some()
        {
            return self.send_proxied(request, limits);
        }
        let cap = limits.max_response_bytes.unwrap_or(self.max_response_bytes);
        // One timer for the whole exchange, armed once and raced with each step.
        let until = until(
            Some(limits.timeout.unwrap_or(self.timeout)),
            limits.deadline,
        );
        match self.to_hyper(request) {
            Ok(request) => Box::pin(exchange(self.client.request(request), until, cap)),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// The connector: plain TCP for `http://`, rustls for `https://`, whose configuration
/// (the platform's root certificates, read from disk, about 6 ms) is made on the first
/// https connection rather than when the transport is built, so that a transport
/// that only ever talks plain http to a loopback server (a test, a local
/// development server) never reads them, and works on a machine without any.
#[derive(Clone)]
struct LazyTls {
    http: HttpConnector,
    /// The TLS connector, or why it could not be made (no root certificates).
    tls: Arc<std::sync::OnceLock<Result<HttpsConnector<HttpConnector>, String>>>,
}

impl LazyTls {
    /// The TLS connector, made now if this is the first https connection.
    fn tls(&self) -> Result<HttpsConnector<HttpConnector>, String> {
        self.tls
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_platform_verifier(provider)
                    .map_err(|e| format!("TLS is not available: {e}"))?;
                Ok(builder
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(self.http.clone()))
            })
            .clone()
    }
}

/// An error of the connector (hyper-util's client classifies every one as a connect
/// error).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future of one connection.
type Connecting = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>>
            + Send,
    >,
>;

impl tower_service::Service<http::Uri> for LazyTls {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // Both connectors are always ready; each is made ready again below anyway.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: http::Uri) -> Connecting {
        if destination.scheme() == Some(&http::uri::Scheme::HTTPS) {
            match self.tls() {
                Ok(mut tls) => Box::pin(async move {
                    std::future::poll_fn(|cx| tls.poll_ready(cx)).await?;
                    tls.call(destination).await
                }),
                Err(reason) => Box::pin(std::future::ready(Err(reason.into()))),
            }
        } else {
            let mut http = self.http.clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| http.poll_ready(cx)).await?;
                Ok(MaybeHttpsStream::Http(http.call(destination).await?))
            })
        }
    }
}

/// Whether any of the variables the proxy matcher reads is set (even empty): only then
/// can a request go through a proxy.
fn environment_names_a_proxy() -> bool {
    [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some())
}

/// The rest of one exchange once the client has the request: its answer and the whole
/// body (at most `cap` bytes), all before `until`.
async fn exchange(
    pending: hyper_util::client::legacy::ResponseFuture,
    until: Option<tokio::time::Instant>,
    cap: usize,
) -> Result<Response<Bytes>, AuthError> {
    let pending = std::pin::pin!(pending);
    let mut timer = std::pin::pin!(until.map(tokio::time::sleep_until));
    let response = race(pending, timer.as_mut().as_pin_mut()).await?;
    let (parts, mut incoming) = response.into_parts();
    let mut body = Collector::new(cap, incoming.size_hint().exact())?;
    loop {
        let frame = std::future::poll_fn(|cx| {
            std::pin::Pin::new(&mut incoming)
                .poll_frame(cx)
                .map(Option::transpose)
        });
        let Some(frame) = race(std::pin::pin!(frame), timer.as_mut().as_pin_mut()).await? else {
            break;
        };
        // Trailers, if any, are dropped: no dialect sends them.
        if let Ok(data) = frame.into_data() {
            body.push(data)?;
        }
    }
    Ok(Response::from_parts(parts, body.finish()))
}

impl From<hyper_util::client::legacy::Error> for Failure {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        // Connecting covers DNS, the TCP connect and the TLS handshake; anything after
        // it may have reached the server.
        let kind = if e.is_connect() {
            TransportErrorKind::Connect
        } else {
            TransportErrorKind::Io
        };
        Self(transport_error(kind, &e))
    }
}

impl From<hyper::Error> for Failure {
    fn from(e: hyper::Error) -> Self {
        Self(transport_error(TransportErrorKind::Io, &e))
    }
}

/// A transport error whose message is `e` and its sources, sanitized (hyper's errors
/// name no URL, but a source might quote anything).
fn transport_error(kind: TransportErrorKind, e: &dyn std::error::Error) -> AuthError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    AuthError::Transport {
        kind,
        source: Some(Arc::new(std::io::Error::other(
            crate::error::sanitize_message(&message),
        ))),
    }
}
