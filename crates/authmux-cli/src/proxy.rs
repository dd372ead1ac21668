//! `authmux proxy --listen 127.0.0.1:PORT`: a local reverse proxy to the profile's
//! backend that authorizes every request, so a tool in any language can use the session
//! by talking plain HTTP to loopback.
//!
//! For each request the proxy:
//! 1. checks who is asking: with a proxy token, `Proxy-Authorization: Bearer TOKEN` must
//!    match (else 407); without `--allow-remote`, the `Host` (or an absolute request
//!    URI) must name a loopback host (else 421: a page that rebinds its DNS name to
//!    127.0.0.1 gets nothing), and a browser request from a web page (an `Origin` other
//!    than the proxy's own, `Sec-Fetch-Site: cross-site`/`same-site`) is refused (403);
//! 2. forwards it to the profile's backend, always to the session's origin (the path and
//!    query are joined onto the base URL; nothing in the request can name another host),
//!    with the client's `Authorization`, `Proxy-Authorization`, `Host` and hop-by-hop
//!    headers dropped and the dialect's credentials added by
//!    [`AuthProvider::authorize`](authmux::AuthProvider::authorize) on a session from
//!    [`SessionManager::usable_session`](authmux::SessionManager::usable_session)
//!    (refreshed ahead of expiry, one refresh however many requests wait);
//! 3. on a 401 from the backend, gets a refreshed session from
//!    [`SessionManager::session_after_unauthorized`](authmux::SessionManager::session_after_unauthorized)
//!    (one refresh for every request rejected with the same token) and replays the
//!    request once, if its body was small enough to keep: bodies up to `--replay-limit`
//!    bytes (default [`DEFAULT_REPLAY_LIMIT`]) are buffered; larger ones (or bodies of
//!    unknown length that grow past it) stream to the backend as they arrive and are not
//!    replayed: the client gets the 401, and the session is refreshed for its retry;
//! 4. streams the answer back as it arrives.
//!
//! The session is the profile's: refreshes take the store's lock and re-read it first,
//! so the proxy, `authmux token`, `authmux exec` and other proxies on one profile never
//! spend a rotated refresh token twice.
//!
//! When the proxy itself cannot authorize a request it answers with an `x-authmux-error`
//! header and a one-line JSON body: 401 (no usable session: sign in again), 502 (the
//! backend or the refresh failed), 503 (rate limited while refreshing), 504 (timeout).
//!
//! Ctrl-C or SIGTERM stops accepting connections, lets requests in flight finish (up to
//! [`SHUTDOWN_GRACE`]), and exits 0.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use authmux::provider::RequestTarget;
use authmux::{AuthError, AuthProvider, Session, SessionManager};
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName,
    HeaderValue, ORIGIN, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, RETRY_AFTER, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;
use zeroize::Zeroizing;

use crate::cli::ProxyArgs;
use crate::commands::{open, session_failure};
use crate::failure::{Failure, UNAVAILABLE};
use crate::profile::Profile;

/// Request bodies up to this many bytes are kept for a replay after a 401 (1 MiB).
pub(crate) const DEFAULT_REPLAY_LIMIT: usize = 1024 * 1024;
/// How long requests in flight may take to finish after Ctrl-C or SIGTERM.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The variable holding the proxy token when `--proxy-token-file` is not given.
pub(crate) const PROXY_TOKEN_VAR: &str = "AUTHMUX_PROXY_TOKEN";
/// The shortest proxy token accepted.
const MIN_PROXY_TOKEN: usize = 16;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;
/// The proxy's own answer when a request cannot go on (boxed: it is large).
type Refusal = Box<Response<ProxyBody>>;

/// What every request handler shares.
struct Proxy {
    manager: SessionManager,
    provider: Arc<dyn AuthProvider>,
    client: reqwest::Client,
    base: Url,
    /// The port the proxy listens on (for its own `Origin`).
    port: u16,
    allow_remote: bool,
    token: Option<Zeroizing<String>>,
    replay_limit: usize,
}

/// Runs the proxy until Ctrl-C or SIGTERM.
pub(crate) async fn run(profile: &Profile, args: ProxyArgs) -> Result<(), Failure> {
    let token = proxy_token(&args)?;
    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            return Err(Failure::usage(format!(
                "refusing to listen on {}: it is not a loopback address, and anyone who can reach it would act as you; pass --allow-remote with a proxy token (--proxy-token-file or {PROXY_TOKEN_VAR}) to allow it",
                args.listen
            )));
        }
        if token.is_none() {
            return Err(Failure::usage(format!(
                "--allow-remote requires a proxy token that clients present (--proxy-token-file FILE or {PROXY_TOKEN_VAR})"
            )));
        }
    }
    let signed = open(profile).await?;
    // Fails early (exit 3) when the profile cannot authorize anything.
    let session = signed
        .manager
        .usable_session()
        .await
        .map_err(|e| session_failure(profile, e))?;
    let timeout = profile
        .read_config()?
        .map(|c| c.client().transport_config().timeout)
        .unwrap_or(authmux::transport::DEFAULT_TIMEOUT);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build()
        .map_err(|e| Failure::new(UNAVAILABLE, format!("cannot build the HTTP client: {e}")))?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(UNAVAILABLE, format!("cannot read the address: {e}")))?;
    let proxy = Arc::new(Proxy {
        manager: signed.manager,
        provider: signed.provider,
        client,
        base: session.base_url.clone(),
        port: local.port(),
        allow_remote: args.allow_remote,
        token,
        replay_limit: args.replay_limit,
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = writeln!(
            out,
            "forwarding to {} as profile {:?}; stop with Ctrl-C",
            proxy.base,
            profile.name()
        );
        let _ = out.flush();
    }
    serve(listener, proxy).await;
    Ok(())
}

/// The proxy token from `--proxy-token-file` or `$AUTHMUX_PROXY_TOKEN`.
fn proxy_token(args: &ProxyArgs) -> Result<Option<Zeroizing<String>>, Failure> {
    let token = match &args.proxy_token_file {
        Some(path) => Some(Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot read --proxy-token-file {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_owned(),
        )),
        None => std::env::var(PROXY_TOKEN_VAR)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Zeroizing::new(t.trim().to_owned())),
    };
    if let Some(token) = &token
        && (token.len() < MIN_PROXY_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Failure::usage(format!(
            "the proxy token must be at least {MIN_PROXY_TOKEN} visible ASCII characters"
        )));
    }
    Ok(token)
}

/// Accepts connections until a shutdown signal, then drains them.
async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    let _ = writeln!(std::io::stderr().lock(), "proxy stopped");
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// A request body as it goes to the backend.
enum Outgoing {
    /// Read whole (at most the replay limit): may be sent twice.
    Buffered(Bytes),
    /// Too large to keep: what was read so far, then the rest as it arrives. Sent once.
    Streaming(Upload),
}

impl Proxy {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        if let Some(refusal) = self.refuse(&request, peer) {
            return refusal;
        }
        let (parts, body) = request.into_parts();
        let url = match self.target(&parts.uri) {
            Ok(url) => url,
            Err(response) => return *response,
        };
        let method = parts.method;
        let headers = forwarded_headers(&parts.headers);
        let body = match self.read_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let session = match self.manager.usable_session().await {
            Ok(session) => session,
            Err(error) => return self.cannot_authorize(&error),
        };
        let (first, replay) = match body {
            Outgoing::Buffered(bytes) => (reqwest::Body::from(bytes.clone()), Some(bytes)),
            Outgoing::Streaming(upload) => (reqwest::Body::wrap(upload), None),
        };
        let response = match self.send(&method, &url, &headers, &session, first).await {
            Ok(response) => response,
            Err(response) => return *response,
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return relay(response);
        }
        // 401: one refresh for every request rejected with this token, then one replay.
        // If the session cannot be refreshed, the backend's own answer is the best one.
        let Ok(refreshed) = self.manager.session_after_unauthorized(&session).await else {
            return relay(response);
        };
        let Some(bytes) = replay else {
            // The body is gone; the client retries with a fresh session behind it.
            return relay(response);
        };
        match self
            .send(
                &method,
                &url,
                &headers,
                &refreshed,
                reqwest::Body::from(bytes),
            )
            .await
        {
            Ok(response) => relay(response),
            Err(response) => *response,
        }
    }

    /// A refusal, when the request may not use this proxy.
    fn refuse(&self, request: &Request<Incoming>, peer: SocketAddr) -> Option<Response<ProxyBody>> {
        if let Some(token) = &self.token {
            let presented = request
                .headers()
                .get(PROXY_AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                let mut response = error_response(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "proxy-token",
                    "present the proxy token as Proxy-Authorization: Bearer TOKEN",
                );
                response.headers_mut().insert(
                    PROXY_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"authmux\""),
                );
                return Some(response);
            }
        }
        if request.method() == Method::CONNECT {
            return Some(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "connect",
                "this is a reverse proxy to one backend; CONNECT is not supported",
            ));
        }
        if !self.allow_remote {
            if !peer.ip().is_loopback() {
                return Some(error_response(
                    StatusCode::FORBIDDEN,
                    "remote-client",
                    "only loopback clients may use this proxy",
                ));
            }
            let host = request
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    request
                        .headers()
                        .get(HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                });
            if !host.as_deref().is_some_and(is_loopback_authority) {
                return Some(error_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "foreign-host",
                    "the Host must be this proxy's loopback address (localhost, 127.0.0.1 or [::1])",
                ));
            }
        }
        if let Some(origin) = request.headers().get(ORIGIN)
            && !self.is_own_origin(origin)
        {
            return Some(error_response(
                StatusCode::FORBIDDEN,
                "cross-origin",
                "requests from web pages are refused",
            ));
        }
        let fetch_site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        if matches!(fetch_site, Some("cross-site" | "same-site")) {
            return Some(error_response(
                StatusCode::FORBIDDEN,
                "cross-origin",
                "requests from web pages are refused",
            ));
        }
        None
    }

    fn is_own_origin(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        origin.strip_prefix("http://").is_some_and(|authority| {
            is_loopback_authority(authority)
                && authority
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    == Some(self.port)
        })
    }

    /// The backend URL for a request URI: its path and query on the session's base URL.
    fn target(&self, uri: &http::Uri) -> Result<Url, Refusal> {
        let path = uri.path();
        if !path.starts_with('/') {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "bad-target",
                "the request target must be a path",
            ));
        }
        let mut url = authmux::wire::endpoint(&self.base, path);
        url.set_query(uri.query());
        // `endpoint` only sets the path, so the origin cannot change; checked anyway,
        // since credentials go nowhere else.
        if url.origin() != self.base.origin() {
            return Err(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "foreign-host",
                "the request would leave the backend's origin",
            ));
        }
        Ok(url)
    }

    /// Reads the body whole when it fits the replay limit; otherwise keeps what was
    /// read and streams the rest.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        mut body: Incoming,
    ) -> Result<Outgoing, Refusal> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.replay_limit as u64) {
            return Ok(Outgoing::Streaming(Upload::new(VecDeque::new(), body)));
        }
        let mut kept = VecDeque::new();
        let mut size = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    "client-body",
                    "the request body could not be read",
                )
            })?;
            if let Ok(data) = frame.into_data() {
                size += data.len();
                kept.push_back(data);
                if size > self.replay_limit {
                    return Ok(Outgoing::Streaming(Upload::new(kept, body)));
                }
            }
        }
        let mut whole = Vec::with_capacity(size);
        for chunk in kept {
            whole.extend_from_slice(&chunk);
        }
        Ok(Outgoing::Buffered(Bytes::from(whole)))
    }

    /// Sends one authorized request to the backend.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        session: &Session,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, Refusal> {
        if !session.is_same_origin(url) {
            return Err(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "foreign-host",
                "the request is outside the session's origin",
            ));
        }
        let mut headers = headers.clone();
        if let Err(error) = self.provider.authorize(
            session,
            RequestTarget {
                method,
                path: url.path(),
            },
            &mut headers,
        ) {
            return Err(Box::new(self.cannot_authorize(&error)));
        }
        self.client
            .request(method.clone(), url.as_str())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    refusal(
                        StatusCode::GATEWAY_TIMEOUT,
                        "backend-timeout",
                        "the backend did not answer in time",
                    )
                } else {
                    refusal(
                        StatusCode::BAD_GATEWAY,
                        "backend-unreachable",
                        "the backend could not be reached or broke the connection",
                    )
                }
            })
    }

    /// The proxy's answer when it has no session to authorize with.
    fn cannot_authorize(&self, error: &AuthError) -> Response<ProxyBody> {
        let _ = writeln!(
            std::io::stderr().lock(),
            "proxy: cannot authorize a request: {}",
            crate::failure::describe(error)
        );
        match error {
            AuthError::Timeout => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "refresh-timeout",
                "refreshing the session timed out",
            ),
            AuthError::RateLimited { retry_after } => {
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate-limited",
                    "the backend rate-limited the refresh",
                );
                if let Some(after) = retry_after
                    && let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
                {
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
                response
            }
            AuthError::Transport { .. } | AuthError::Server { .. } | AuthError::Protocol { .. } => {
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "refresh-failed",
                    "refreshing the session failed; try again",
                )
            }
            _ => error_response(
                StatusCode::UNAUTHORIZED,
                "no-session",
                &format!(
                    "the profile has no usable session ({}); run `authmux login`",
                    crate::failure::describe(error)
                ),
            ),
        }
    }
}

/// The backend's answer, streamed to the client without its hop-by-hop headers.
fn relay(response: reqwest::Response) -> Response<ProxyBody> {
    let response: Response<reqwest::Body> = response.into();
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// The client's headers as they go to the backend: no hop-by-hop headers, no `Host`
/// (the backend's is set from its URL), and never the client's own `Authorization` or
/// `Proxy-Authorization`.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    strip_hop_by_hop(&mut headers);
    for name in [HOST, AUTHORIZATION, PROXY_AUTHORIZATION] {
        headers.remove(name);
    }
    headers
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1), those the `Connection` header
/// names included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Whether `authority` (`host[:port]`) names a loopback host.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// [`error_response`], boxed.
fn refusal(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Box::new(error_response(status, code, message))
}

/// An answer of the proxy itself: `x-authmux-error: <code>` and `{"error": message}`.
fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": format!("authmux proxy: {message}") }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-authmux-error", HeaderValue::from_static(code));
    response
}

/// A request body streamed to the backend: the chunks already read, then the rest of
/// the client's body as it arrives.
struct Upload {
    read: VecDeque<Bytes>,
    rest: Incoming,
}

impl Upload {
    fn new(read: VecDeque<Bytes>, rest: Incoming) -> Self {
        Self { read, rest }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(chunk) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|c| c.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_authorities() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:9",
            "127.1.2.3:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_and_credentials_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer mine"));
        headers.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Bearer p"));
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:1"));
        headers.insert(CONNECTION, HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let forwarded = forwarded_headers(&headers);
        assert_eq!(forwarded.len(), 1, "{forwarded:?}");
        assert_eq!(forwarded["accept"], "application/json");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
