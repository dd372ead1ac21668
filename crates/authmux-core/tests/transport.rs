//! Both built-in transports ([`HyperTransport`], the default, and
//! [`ReqwestTransport`]) against a minimal raw-TCP HTTP server: the timeout, the
//! response-size cap (with and without `Content-Length`), the `User-Agent`, no redirects
//! followed, and connection failures, each mapped to the right `AuthError`. Every test
//! runs each case through both.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::transport::{
    HyperTransport, ReqwestTransport, Transport, TransportConfig, default_user_agent,
};
use authmux_core::{AuthError, RefreshRetry, TransportErrorKind};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves each connection by path: `/ua` echoes the User-Agent, `/slow` answers after
/// 2 s, `/big` sends a 3 MiB body with its length, `/stream` sends 3 MiB chunked,
/// `/redirect` answers 302.
async fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let ua = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("user-agent: ")
                            .or_else(|| l.strip_prefix("User-Agent: "))
                    })
                    .unwrap_or("")
                    .to_owned();
                if path == "/drop" {
                    // Close without answering, as a crashing server or proxy would.
                    drop(socket);
                    return;
                }
                let big = vec![b'x'; 3 * 1024 * 1024];
                let response: Vec<u8> = match path.as_str() {
                    "/ua" => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{ua}",
                        ua.len()
                    )
                    .into_bytes(),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
                    }
                    "/big" => [
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", big.len())
                            .into_bytes(),
                        big,
                    ]
                    .concat(),
                    "/stream" => {
                        let mut out =
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        for piece in big.chunks(64 * 1024) {
                            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                        out
                    }
                    _ => {
                        b"HTTP/1.1 302 Found\r\nlocation: /ua\r\ncontent-length: 0\r\n\r\n".to_vec()
                    }
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn get(url: &str) -> http::Request<Bytes> {
    http::Request::get(url).body(Bytes::new()).unwrap()
}

/// The built-in transports with these settings, each named.
fn transports(
    timeout_ms: u64,
    cap: usize,
    ua: Option<&str>,
) -> [(&'static str, Arc<dyn Transport>); 2] {
    let config = TransportConfig {
        timeout: Duration::from_millis(timeout_ms),
        max_response_bytes: cap,
        user_agent: ua.map_or_else(default_user_agent, str::to_owned),
    };
    [
        (
            "hyper",
            Arc::new(HyperTransport::with_config(config.clone()).unwrap()),
        ),
        (
            "reqwest",
            Arc::new(ReqwestTransport::with_config(config).unwrap()),
        ),
    ]
}

fn transport_kind(err: &AuthError) -> Option<TransportErrorKind> {
    match err {
        AuthError::Transport { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn sends_a_user_agent_naming_authmux_and_lets_callers_override_it() {
    let base = server().await;
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let answer = transport.send(get(&format!("{base}/ua"))).await.unwrap();
        let ua = String::from_utf8(answer.body().to_vec()).unwrap();
        assert!(
            ua.starts_with(&format!("authmux/{}", env!("CARGO_PKG_VERSION"))),
            "{name}: {ua}"
        );
    }
    for (name, transport) in transports(5_000, 1 << 20, Some("my-app/2.0")) {
        let answer = transport.send(get(&format!("{base}/ua"))).await.unwrap();
        assert_eq!(answer.body(), &Bytes::from_static(b"my-app/2.0"), "{name}");
    }
    // A request's own User-Agent wins over the transport's.
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let mut request = get(&format!("{base}/ua"));
        request
            .headers_mut()
            .insert("user-agent", http::HeaderValue::from_static("caller/1"));
        let answer = transport.send(request).await.unwrap();
        assert_eq!(answer.body(), &Bytes::from_static(b"caller/1"), "{name}");
    }
}

#[tokio::test]
async fn times_out_as_a_typed_timeout() {
    let base = server().await;
    for (name, transport) in transports(200, 1 << 20, None) {
        let err = transport
            .send(get(&format!("{base}/slow")))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Timeout), "{name}: {err:?}");
        assert!(err.is_retryable());
        // The server may have processed it: a refresh is not retried after a timeout.
        assert_eq!(RefreshRetry::default().delay_for(&err), None);
    }
}

#[tokio::test]
async fn caps_response_size_with_and_without_content_length() {
    let base = server().await;
    for (name, small) in transports(5_000, 1 << 20, None) {
        for path in ["/big", "/stream"] {
            let err = small.send(get(&format!("{base}{path}"))).await.unwrap_err();
            assert_eq!(
                transport_kind(&err),
                Some(TransportErrorKind::BodyTooLarge),
                "{name} {path}: {err:?}"
            );
        }
    }
    // A cap of exactly the body's size takes it, in one piece or in many chunks.
    for (name, exact) in transports(5_000, 3 << 20, None) {
        for path in ["/big", "/stream"] {
            let answer = exact.send(get(&format!("{base}{path}"))).await.unwrap();
            assert_eq!(answer.body().len(), 3 << 20, "{name} {path}");
        }
    }
    for (name, roomy) in transports(5_000, 4 << 20, None) {
        for path in ["/big", "/stream"] {
            let answer = roomy.send(get(&format!("{base}{path}"))).await.unwrap();
            assert_eq!(answer.body().len(), 3 << 20, "{name} {path}");
            assert!(answer.body().iter().all(|&b| b == b'x'), "{name} {path}");
        }
    }
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let base = server().await;
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let answer = transport
            .send(get(&format!("{base}/redirect")))
            .await
            .unwrap();
        assert_eq!(answer.status(), 302, "{name}");
        assert_eq!(answer.headers()["location"], "/ua", "{name}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let err = transport
            .send(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert_eq!(
            transport_kind(&err),
            Some(TransportErrorKind::Connect),
            "{name}: {err:?}"
        );
        assert!(err.is_retryable());
        // Nothing was sent: the one transport failure after which a refresh is retried.
        assert!(RefreshRetry::default().delay_for(&err).is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_dropped_connection_is_a_retryable_io_error() {
    let base = server().await;
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let err = transport
            .send(get(&format!("{base}/drop")))
            .await
            .unwrap_err();
        assert_eq!(
            transport_kind(&err),
            Some(TransportErrorKind::Io),
            "{name}: {err:?}"
        );
        assert!(err.is_retryable());
        // The request was sent (the server may have acted on it): distinguishable from
        // a refused connection, and a refresh is never retried after it.
        assert_eq!(RefreshRetry::default().delay_for(&err), None, "{name}");
        assert!(
            !format!("{err} {err:?}").contains("127.0.0.1"),
            "{name}: the URL is stripped: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_relative_uri_is_a_typed_request_error() {
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let err = transport.send(get("/no/origin")).await.unwrap_err();
        assert!(
            matches!(err, AuthError::Validation { .. }),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn request_limits_override_the_timeout_and_cap_for_one_request() {
    use authmux_core::transport::RequestLimits;
    let base = server().await;
    let with = |path: &str, limits: RequestLimits| {
        let mut request = get(&format!("{base}{path}"));
        request.extensions_mut().insert(limits);
        request
    };
    // A 1 MiB transport accepts the 3 MiB answers when the request says 4 MiB...
    for (name, small) in transports(5_000, 1 << 20, None) {
        for path in ["/big", "/stream"] {
            let roomy = RequestLimits {
                max_response_bytes: Some(4 << 20),
                ..RequestLimits::default()
            };
            let answer = small.send(with(path, roomy)).await.unwrap();
            assert_eq!(answer.body().len(), 3 << 20, "{name} {path}");
        }
    }
    // ...and a 4 MiB one refuses them when the request says 1 MiB.
    let tight = RequestLimits {
        max_response_bytes: Some(1 << 20),
        ..RequestLimits::default()
    };
    for (name, roomy) in transports(5_000, 4 << 20, None) {
        let err = roomy.send(with("/stream", tight)).await.unwrap_err();
        assert_eq!(
            transport_kind(&err),
            Some(TransportErrorKind::BodyTooLarge),
            "{name}: {err:?}"
        );
    }
    // The request's timeout replaces the client's, both ways.
    let short = RequestLimits {
        timeout: Some(Duration::from_millis(200)),
        ..RequestLimits::default()
    };
    for (name, patient) in transports(10_000, 1 << 20, None) {
        let err = patient.send(with("/slow", short)).await.unwrap_err();
        assert!(matches!(err, AuthError::Timeout), "{name}: {err:?}");
    }
    let long = RequestLimits {
        timeout: Some(Duration::from_secs(10)),
        ..RequestLimits::default()
    };
    for (name, hasty) in transports(200, 1 << 20, None) {
        let answer = hasty.send(with("/slow", long)).await.unwrap();
        assert_eq!(answer.status(), 200, "{name}");
    }
}

/// `send_with_limits` holds the caller's deadline when it comes before the timeout
/// (one timer for both), and the timeout when it comes first.
#[tokio::test]
async fn a_request_deadline_holds_before_the_timeout() {
    let base = server().await;
    // Deadline first (200 ms, timeout 10 s), then timeout first (200 ms, deadline 10 s).
    for (timeout_ms, deadline) in [
        (10_000, Duration::from_millis(200)),
        (200, Duration::from_secs(10)),
    ] {
        for (name, transport) in transports(timeout_ms, 1 << 20, None) {
            let started = std::time::Instant::now();
            let limits = authmux_core::transport::RequestLimits {
                deadline: Some(tokio::time::Instant::now() + deadline),
                ..Default::default()
            };
            let err = transport
                .send_with_limits(get(&format!("{base}/slow")), limits)
                .await
                .unwrap_err();
            assert!(matches!(err, AuthError::Timeout), "{name}: {err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{name}, {timeout_ms} ms timeout, {deadline:?} deadline: {:?}",
                started.elapsed()
            );
        }
    }
}

/// Connections are kept and reused: ten requests in a row open one connection.
#[tokio::test]
async fn connections_are_pooled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    for (name, transport) in transports(5_000, 1 << 20, None) {
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..10 {
            let answer = transport
                .send(get(&format!("http://{addr}/")))
                .await
                .unwrap();
            assert_eq!(answer.body(), &Bytes::from_static(b"ok"), "{name}");
        }
        let opened = accepted.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert_eq!(opened, 1, "{name}: {opened} connections for 10 requests");
    }
}
