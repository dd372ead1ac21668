//! [`StreamServer`]: a small application server that streams, for testing that an auth
//! layer (the reqwest middleware, the tower layer) passes bodies through without
//! buffering them, and for benchmarking those layers against a server in another
//! process (its `serve` function runs it standalone).
//!
//! The fakes of the other modules read every request and answer whole bodies, which
//! is right for auth endpoints and cannot show streaming. This server:
//! - answers `GET /download/<bytes>` with `<bytes>` bytes of `x` in 64 KiB chunks,
//!   produced lazily (a bounded channel: the producer waits while the client does not
//!   read). After the **first** chunk it waits until the test calls
//!   [`StreamServer::release`], so a client that sees the first chunk before
//!   releasing proves that nothing between it and the socket waited for the whole
//!   body; [`StreamServer::produced`] says how many bytes the server has produced;
//! - answers `GET /hello` with `200 hello` (the benchmark's request);
//! - answers `POST /upload` with the number of body bytes it read, reading them as they
//!   arrive;
//! - answers `401` to any request without `Authorization: Bearer <token>` when built
//!   with [`StreamServer::with_bearer`], and counts requests, unauthorized ones apart.
//!
//! Like the fakes, it serves HTTP/1.1 with hyper 1 on its own thread and runtime, and
//! stops when dropped.

use std::convert::Infallible;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::sync::{Semaphore, mpsc, watch};
use url::Url;

/// The size of each chunk `GET /download/<bytes>` sends.
pub const CHUNK_BYTES: usize = 64 * 1024;

static CHUNK: [u8; CHUNK_BYTES] = [b'x'; CHUNK_BYTES];

#[derive(Debug)]
struct State {
    bearer: Option<String>,
    /// One permit per download allowed past its first chunk.
    release: Semaphore,
    produced: AtomicU64,
    requests: AtomicU64,
    unauthorized: AtomicU64,
}

/// A running streaming server (see the module docs). Dropping it stops it.
#[derive(Debug)]
pub struct StreamServer {
    state: Arc<State>,
    base_url: Url,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamServer {
    /// Starts a server on a free port of `127.0.0.1` that answers every request.
    ///
    /// # Errors
    /// When no port can be bound or the thread cannot start.
    pub fn start() -> io::Result<Self> {
        Self::spawn(None, 0)
    }

    /// Starts a server that answers `401` unless a request carries `Authorization:
    /// Bearer <token>`.
    ///
    /// # Errors
    /// When no port can be bound or the thread cannot start.
    pub fn with_bearer(token: &str) -> io::Result<Self> {
        Self::spawn(Some(token.to_owned()), 0)
    }

    /// Like [`StreamServer::with_bearer`] (or [`StreamServer::start`] for `None`) on a
    /// given port (0: a free one).
    ///
    /// # Errors
    /// When the port cannot be bound or the thread cannot start.
    pub fn spawn(bearer: Option<String>, port: u16) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let state = Arc::new(State {
            bearer,
            release: Semaphore::new(0),
            produced: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
        });
        let (tx, rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("authmux-stream-server".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_state, rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            state,
            base_url,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:<port>/`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// An absolute URL for `path`, e.g. `url("/download/1024")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url.as_str().trim_end_matches('/'), path)
    }

    /// Lets one download (the one waiting, or the next) go past its first chunk.
    pub fn release(&self) {
        self.state.release.add_permits(1);
    }

    /// Bytes of download bodies produced so far, across all requests.
    pub fn produced(&self) -> u64 {
        self.state.produced.load(Ordering::SeqCst)
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered `401` for a missing or wrong bearer.
    pub fn unauthorized(&self) -> u64 {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// Blocks the calling thread for as long as the process runs (for a server in a
    /// process of its own, e.g. a benchmark's).
    pub fn serve_forever(&self) -> ! {
        loop {
            std::thread::park();
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let mut conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        serve(Arc::clone(&state), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = conn_shutdown.changed() => {}
                    }
                });
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<StreamBody> {
    let mut response = Response::new(StreamBody::Full(Some(body.into())));
    *response.status_mut() = status;
    response
}

async fn serve(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<StreamBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(token) = &state.bearer {
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            state.unauthorized.fetch_add(1, Ordering::SeqCst);
            return Ok(text(StatusCode::UNAUTHORIZED, "unauthorized"));
        }
    }
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/hello") => Ok(text(StatusCode::OK, "hello")),
        (&Method::POST, "/upload") => {
            let mut body = request.into_body();
            let mut read = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => read += frame.data_ref().map_or(0, Bytes::len),
                    Err(_) => return Ok(text(StatusCode::BAD_REQUEST, "body failed")),
                }
            }
            Ok(text(StatusCode::OK, read.to_string()))
        }
        (&Method::GET, p) if p.starts_with("/download/") => {
            let Ok(total) = p["/download/".len()..].parse::<usize>() else {
                return Ok(text(StatusCode::BAD_REQUEST, "bad size"));
            };
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(produce(state, total, tx));
            let mut response = Response::new(StreamBody::Channel(rx));
            response.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(total as u64),
            );
            Ok(response)
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    }
}

/// Sends `total` bytes into `tx`, pausing after the first chunk until released.
async fn produce(state: Arc<State>, total: usize, tx: mpsc::Sender<Bytes>) {
    let mut left = total;
    let mut first = true;
    while left > 0 {
        let n = left.min(CHUNK_BYTES);
        if tx.send(Bytes::from_static(&CHUNK[..n])).await.is_err() {
            return;
        }
        state.produced.fetch_add(n as u64, Ordering::SeqCst);
        left -= n;
        if first && left > 0 {
            first = false;
            match state.release.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return,
            }
        }
    }
}

/// A whole body, or chunks from the producer.
#[derive(Debug)]
enum StreamBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Channel(_) => SizeHint::default(),
        }
    }
}
