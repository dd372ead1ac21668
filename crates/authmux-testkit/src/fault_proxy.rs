//! A fault proxy: a loopback HTTP/1.1 reverse proxy in front of a REAL server (e.g. the
//! real Directus `cargo xtask directus start` runs) that injects the same [`Fault`]s the
//! fakes do, from the same [`Faults`] queues, so one test (or the conformance suite)
//! drives a fake and a real server alike.
//!
//! Each request is routed to an endpoint name with the fakes' patterns
//! ([`crate::server::match_endpoint`]; `"<METHOD> <path>"` when no pattern matches)
//! and recorded in [`FaultProxy::recorder`] (every request that arrived). The body of
//! a request to a named endpoint (an auth call: small) is read first, so both
//! recorders hold it (e.g. the refresh token a refresh presented); any other request's
//! body streams through and is recorded empty. Then:
//!
//! | fault | what the proxy does | reaches the server |
//! |---|---|---|
//! | none | forwards; both bodies stream through | yes |
//! | [`Fault::Status`], [`Fault::RateLimited`], [`Fault::Unavailable`], [`Fault::Html`], [`Fault::EmptyOk`], [`Fault::MalformedJson`], [`Fault::Respond`] | answers itself (the error envelope of [`FaultProxyBuilder::error_envelope`], Directus's by default) | no |
//! | [`Fault::DropConnection`] | closes the connection without answering | no |
//! | [`Fault::Hang`] | never answers (until the client gives up) | no |
//! | [`Fault::EditJson`] | forwards; edits one value of the real JSON answer | yes |
//! | [`Fault::Delay`] | waits, then forwards | yes |
//! | [`Fault::DelayAnswer`] | forwards at once, holds the whole answer back | yes |
//! | [`Fault::TruncatedBody`] | forwards; sends the real head with the full `Content-Length` and half the body, then aborts | yes |
//! | [`Fault::OversizedBody`] | forwards; pads the real body with spaces (a `204` becomes `200`) | yes |
//!
//! [`FaultProxy::reached`] records the requests that reached the server, and
//! [`FaultProxy::forwarded`] counts them per endpoint (so a test can count the
//! refreshes the real server processed), beside the recorder of requests that arrived.
//!
//! Each request goes upstream on a fresh connection (no pooling: a fault that aborts a
//! connection never poisons the next request). The upstream must be `http://`.
//!
//! ```
//! use authmux_testkit::fault_proxy::FaultProxy;
//! use authmux_testkit::server::{Context, FakeRequest, FakeResponse, Handler, ServerConfig, ServerHandle};
//! use authmux_testkit::Fault;
//! use http::StatusCode;
//! use std::sync::Arc;
//!
//! # struct Hello;
//! # impl Handler for Hello {
//! #     fn endpoints(&self) -> &[&'static str] { &["GET /hello"] }
//! #     fn handle(&self, _: &'static str, _: &FakeRequest, _: &Context<'_>) -> FakeResponse {
//! #         FakeResponse::raw(StatusCode::OK, "text/plain", "hello")
//! #     }
//! #     fn error(&self, status: StatusCode, _: &str) -> FakeResponse { FakeResponse::empty(status) }
//! # }
//! // Any server will do as the upstream; in the live tests it is the real Directus.
//! let upstream = ServerHandle::start(Arc::new(Hello), ServerConfig::new()).unwrap();
//! let proxy = FaultProxy::builder(upstream.base_url())
//!     .endpoints(&["GET /hello"])
//!     .start()
//!     .unwrap();
//! proxy.faults().push("GET /hello", Fault::Status(503));
//! // A client pointed at `proxy.base_url()` now gets one 503, then the real answers;
//! // `proxy.forwarded("GET /hello")` counts only the requests the upstream saw.
//! assert_eq!(proxy.forwarded("GET /hello"), 0);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use url::Url;

use crate::faults::{Fault, Faults};
use crate::recorder::Recorder;
use crate::server::{FakeRequest, FakeResponse, match_endpoint};

/// The Directus endpoints the live tests inject faults on, named as
/// [`crate::directus::endpoints`] names them (the default of [`FaultProxy::builder`]).
pub const DIRECTUS_ENDPOINTS: &[&str] = &[
    crate::directus::endpoints::LOGIN,
    crate::directus::endpoints::REFRESH,
    crate::directus::endpoints::LOGOUT,
    crate::directus::endpoints::ME,
    crate::directus::endpoints::PASSWORD_REQUEST,
    crate::directus::endpoints::PASSWORD_RESET,
];

/// How a [`Fault::Status`] or [`Fault::RateLimited`] answer is rendered: the upstream
/// dialect's error envelope for a status and a message.
pub type ErrorEnvelope = Arc<dyn Fn(StatusCode, &str) -> FakeResponse + Send + Sync>;

/// Configures and starts a [`FaultProxy`].
pub struct FaultProxyBuilder {
    upstream: Url,
    endpoints: Vec<&'static str>,
    port: u16,
    envelope: ErrorEnvelope,
}

impl fmt::Debug for FaultProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxyBuilder")
            .field("upstream", &self.upstream.as_str())
            .field("endpoints", &self.endpoints)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl FaultProxyBuilder {
    /// The endpoint patterns requests are named by (as a fake's
    /// [`crate::server::Handler::endpoints`]); default [`DIRECTUS_ENDPOINTS`].
    #[must_use]
    pub fn endpoints(mut self, patterns: &[&'static str]) -> Self {
        self.endpoints = patterns.to_vec();
        self
    }

    /// Listens on this port of `127.0.0.1` (0, the default, picks a free one).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Renders injected error statuses (default: Directus's `{"errors": [...]}`).
    #[must_use]
    pub fn error_envelope(
        mut self,
        envelope: impl Fn(StatusCode, &str) -> FakeResponse + Send + Sync + 'static,
    ) -> Self {
        self.envelope = Arc::new(envelope);
        self
    }

    /// Binds the port and starts proxying on a dedicated thread (with or without a
    /// surrounding tokio runtime).
    ///
    /// # Errors
    /// When the upstream is not an `http://` URL with a host, or the port cannot be
    /// bound, or the thread cannot start.
    pub fn start(self) -> io::Result<FaultProxy> {
        crate::secret_log::init_tracing();
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
        if self.upstream.scheme() != "http" {
            return Err(invalid(
                "the fault proxy forwards to http:// upstreams only",
            ));
        }
        let host = self
            .upstream
            .host_str()
            .ok_or_else(|| invalid("the upstream URL has no host"))?
            .to_owned();
        let port = self.upstream.port_or_known_default().unwrap_or(80);
        let authority = match self.upstream.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let host_header =
            HeaderValue::from_str(&authority).map_err(|_| invalid("the upstream host"))?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            upstream: self.upstream,
            upstream_addr: (host, port),
            host_header,
            endpoints: self.endpoints,
            envelope: self.envelope,
            faults: Faults::default(),
            recorder: Recorder::default(),
            reached: Recorder::default(),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("authmux-fault-proxy".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_shared, rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(FaultProxy {
            shared,
            addr,
            base_url,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A running fault proxy. Dropping it stops it and frees the port.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: Url,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("base_url", &self.base_url.as_str())
            .field("upstream", &self.shared.upstream.as_str())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// A proxy to `upstream` naming the [`DIRECTUS_ENDPOINTS`], on a free port.
    ///
    /// # Errors
    /// As [`FaultProxyBuilder::start`].
    pub fn start(upstream: &Url) -> io::Result<Self> {
        Self::builder(upstream).start()
    }

    /// A builder for a proxy to `upstream`.
    pub fn builder(upstream: &Url) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstream: upstream.clone(),
            endpoints: DIRECTUS_ENDPOINTS.to_vec(),
            port: 0,
            envelope: Arc::new(crate::directus::error_envelope),
        }
    }

    /// The proxy's base URL, `http://127.0.0.1:<port>/`: point the client here.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// An absolute URL on the proxy for `path` (which may carry a query).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy forwards to.
    pub fn upstream(&self) -> &Url {
        &self.shared.upstream
    }

    /// The scripted faults (the same type the fakes use).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every request that arrived, faulted or not (bodies of requests to named
    /// endpoints only; others stream through and are recorded empty).
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// Every request forwarded to the upstream server (recorded as it went out).
    pub fn reached(&self) -> &Recorder {
        &self.shared.reached
    }

    /// How many requests to `endpoint` were forwarded to the upstream server.
    pub fn forwarded(&self, endpoint: &str) -> usize {
        self.shared.reached.count(endpoint)
    }

    /// Every endpoint's count of requests forwarded to the upstream server.
    pub fn forwarded_counts(&self) -> HashMap<String, usize> {
        self.shared.reached.counts()
    }

    /// Forgets what both recorders hold (faults stay).
    pub fn reset_counts(&self) {
        self.shared.recorder.reset();
        self.shared.reached.reset();
    }

    /// Blocks the calling thread for as long as the process runs.
    pub fn serve_forever(&self) -> ! {
        loop {
            std::thread::park();
        }
    }

    /// Stops the proxy now and waits for its thread (what dropping it does).
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

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    upstream: Url,
    upstream_addr: (String, u16),
    host_header: HeaderValue,
    endpoints: Vec<&'static str>,
    envelope: ErrorEnvelope,
    faults: Faults,
    recorder: Recorder,
    reached: Recorder,
}

/// A request on its way upstream: its body either read (named endpoints) or streaming.
enum Outgoing {
    Read(Request<Full<Bytes>>),
    Streaming(Request<Incoming>),
}

/// Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

impl Shared {
    async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        let routed = match_endpoint(&self.endpoints, request.method(), request.uri().path());
        let endpoint = routed.as_ref().map_or_else(
            || format!("{} {}", request.method(), request.uri().path()),
            |(pattern, _)| (*pattern).to_owned(),
        );
        let (method, headers) = (request.method().clone(), request.headers().clone());
        let (request, body) = if routed.is_some() {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| ProxyError("the request body broke off"))?
                .to_bytes();
            (
                Outgoing::Read(Request::from_parts(parts, Full::new(body.clone()))),
                body,
            )
        } else {
            (Outgoing::Streaming(request), Bytes::new())
        };
        let head = FakeRequest::new(method, &target, headers, body);
        let index = self
            .recorder
            .record(&endpoint, &head, std::time::SystemTime::now());
        let answered = self.answer(index, &endpoint, (request, head)).await;
        if let Ok(response) = &answered {
            self.recorder.record_status(index, response.status());
        }
        answered
    }

    /// The answer to the request recorded as `index`: the upstream's, or what a
    /// scripted fault makes of it.
    async fn answer(
        &self,
        index: usize,
        endpoint: &str,
        request: (Outgoing, FakeRequest),
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let Some(fault) = self.faults.next_for(endpoint) else {
            return self.forward(endpoint, request).await;
        };
        self.recorder.record_fault(index, &fault);
        let fault = match crate::faults::canned_answer(fault, |status, message| {
            (self.envelope)(status, message)
        }) {
            Ok(canned) => return Ok(fake(canned)),
            Err(fault) => fault,
        };
        match fault {
            Fault::Hang => {
                // Ends when the client closes the connection (hyper drops this future)
                // or the proxy shuts down.
                std::future::pending::<()>().await;
                Err(ProxyError("hung by fault injection"))
            }
            Fault::EditJson { pointer, edit } => {
                let (mut parts, body) = self.forward_buffered(endpoint, request).await?;
                let body = match crate::faults::edit_json(&body, &pointer, &edit) {
                    Some(edited) => {
                        parts.headers.remove(CONTENT_LENGTH);
                        Bytes::from(edited)
                    }
                    None => body,
                };
                Ok(Response::from_parts(parts, ProxyBody::full(body)))
            }
            Fault::DropConnection => Err(ProxyError("connection dropped by fault injection")),
            Fault::Delay(by) => {
                tokio::time::sleep(by).await;
                self.forward(endpoint, request).await
            }
            Fault::DelayAnswer(by) => {
                let (parts, body) = self.forward_buffered(endpoint, request).await?;
                tokio::time::sleep(by).await;
                Ok(Response::from_parts(parts, ProxyBody::full(body)))
            }
            Fault::TruncatedBody => {
                let (mut parts, body) = self.forward_buffered(endpoint, request).await?;
                let full_len = body.len();
                // Promise the full length, deliver half, then abort the connection.
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(full_len.max(2)));
                let kept = body.slice(..body.len() / 2);
                Ok(Response::from_parts(parts, ProxyBody::truncated(kept)))
            }
            Fault::OversizedBody(size) => {
                let (mut parts, body) = self.forward_buffered(endpoint, request).await?;
                let mut padded = body.to_vec();
                if padded.len() < size {
                    // Trailing whitespace keeps JSON valid: only a size limit can refuse it.
                    padded.resize(size, b' ');
                }
                if parts.status == StatusCode::NO_CONTENT {
                    parts.status = StatusCode::OK;
                }
                parts.headers.remove(CONTENT_LENGTH);
                Ok(Response::from_parts(parts, ProxyBody::full(padded.into())))
            }
            canned => unreachable!("{canned:?} is answered by `faults::canned_answer`"),
        }
    }

    /// Sends `request` upstream on a fresh connection; the answer's body streams.
    async fn send_upstream(
        &self,
        endpoint: &str,
        (request, head): (Outgoing, FakeRequest),
    ) -> Result<Response<Incoming>, ProxyError> {
        match request {
            Outgoing::Read(request) => self.send_upstream_with(endpoint, request, &head).await,
            Outgoing::Streaming(request) => self.send_upstream_with(endpoint, request, &head).await,
        }
    }

    async fn send_upstream_with<B>(
        &self,
        endpoint: &str,
        request: Request<B>,
        head: &FakeRequest,
    ) -> Result<Response<Incoming>, ProxyError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(HOST, self.host_header.clone());
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse::<Uri>()
            .map_err(|_| ProxyError("the request target cannot be forwarded"))?;
        let (host, port) = &self.upstream_addr;
        let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .map_err(|_| ProxyError("the upstream server refused the connection"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ProxyError("the upstream handshake failed"))?;
        tokio::spawn(connection);
        self.reached
            .record(endpoint, head, std::time::SystemTime::now());
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|_| ProxyError("the upstream server did not answer"))
    }

    /// Forwards and streams the answer back, minus its hop-by-hop headers. An upstream
    /// that cannot be reached gives `502`.
    async fn forward(
        &self,
        endpoint: &str,
        request: (Outgoing, FakeRequest),
    ) -> Result<Response<ProxyBody>, ProxyError> {
        match self.send_upstream(endpoint, request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, ProxyBody::Stream(body)))
            }
            Err(ProxyError(why)) => Ok(fake((self.envelope)(StatusCode::BAD_GATEWAY, why))),
        }
    }

    /// Forwards and reads the whole answer (for the faults that rewrite it).
    async fn forward_buffered(
        &self,
        endpoint: &str,
        request: (Outgoing, FakeRequest),
    ) -> Result<(http::response::Parts, Bytes), ProxyError> {
        let response = self.send_upstream(endpoint, request).await?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        let body = body
            .collect()
            .await
            .map_err(|_| ProxyError("the upstream answer broke off"))?
            .to_bytes();
        Ok((parts, body))
    }
}

fn fake(resp: FakeResponse) -> Response<ProxyBody> {
    let mut out = Response::new(ProxyBody::full(resp.body().clone()));
    *out.status_mut() = resp.status();
    *out.headers_mut() = resp.headers().clone();
    out
}

/// Why the proxy closed a connection without an answer (hyper closes it when the
/// service or the body fails).
#[derive(Debug)]
struct ProxyError(&'static str);

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProxyError {}

/// An answer's body: the upstream's, streamed; a whole one; or a truncated one that
/// sends its bytes, pauses (so hyper flushes them) and then fails, aborting the
/// connection.
enum ProxyBody {
    Stream(Incoming),
    Full(Option<Bytes>),
    Truncated {
        data: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
    },
}

impl ProxyBody {
    fn full(data: Bytes) -> Self {
        Self::Full((!data.is_empty()).then_some(data))
    }

    fn truncated(data: Bytes) -> Self {
        Self::Truncated {
            data: Some(data),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        match self.get_mut() {
            Self::Stream(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|_| ProxyError("the upstream answer broke off")),
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Truncated { data, pause } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(ProxyError("answer truncated by fault injection"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Stream(body) => body.is_end_stream(),
            Self::Full(data) => data.is_none(),
            Self::Truncated { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Stream(body) => body.size_hint(),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Truncated { .. } => SizeHint::default(),
        }
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
                let Ok((stream, _peer)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let mut conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        Arc::clone(&shared).serve(req)
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
