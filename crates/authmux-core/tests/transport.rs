//! The default reqwest transport against a minimal raw-TCP HTTP server: the timeout,
//! the response-size cap (with and without `Content-Length`), the `User-Agent`, no
//! redirects followed, and connection failures, each mapped to the right `AuthError`.

use std::time::Duration;

use authmux_core::transport::{ReqwestTransport, Transport, TransportConfig, default_user_agent};
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

fn transport(timeout_ms: u64, cap: usize, ua: Option<&str>) -> ReqwestTransport {
    ReqwestTransport::with_config(TransportConfig {
        timeout: Duration::from_millis(timeout_ms),
        max_response_bytes: cap,
        user_agent: ua.map_or_else(default_user_agent, str::to_owned),
    })
    .unwrap()
}

#[tokio::test]
async fn sends_a_user_agent_naming_authmux_and_lets_callers_override_it() {
    let base = server().await;
    let answer = transport(5_000, 1 << 20, None)
        .send(get(&format!("{base}/ua")))
        .await
        .unwrap();
    let ua = String::from_utf8(answer.body().to_vec()).unwrap();
    assert!(
        ua.starts_with(&format!("authmux/{}", env!("CARGO_PKG_VERSION"))),
        "{ua}"
    );
    let answer = transport(5_000, 1 << 20, Some("my-app/2.0"))
        .send(get(&format!("{base}/ua")))
        .await
        .unwrap();
    assert_eq!(answer.body(), &Bytes::from_static(b"my-app/2.0"));
}

#[tokio::test]
async fn times_out_as_a_typed_timeout() {
    let base = server().await;
    let err = transport(200, 1 << 20, None)
        .send(get(&format!("{base}/slow")))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Timeout), "{err:?}");
    assert!(err.is_retryable());
    // The server may have processed it: a refresh is not retried after a timeout.
    assert_eq!(RefreshRetry::default().delay_for(&err), None);
}

#[tokio::test]
async fn caps_response_size_with_and_without_content_length() {
    let base = server().await;
    let small = transport(5_000, 1 << 20, None);
    for path in ["/big", "/stream"] {
        let err = small.send(get(&format!("{base}{path}"))).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Transport {
                    kind: TransportErrorKind::BodyTooLarge,
                    ..
                }
            ),
            "{path}: {err:?}"
        );
    }
    let roomy = transport(5_000, 4 << 20, None);
    assert_eq!(
        roomy
            .send(get(&format!("{base}/stream")))
            .await
            .unwrap()
            .body()
            .len(),
        3 << 20
    );
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let base = server().await;
    let answer = transport(5_000, 1 << 20, None)
        .send(get(&format!("{base}/redirect")))
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = transport(5_000, 1 << 20, None)
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Transport {
                kind: TransportErrorKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // Nothing was sent: the one transport failure after which a refresh is retried.
    assert!(RefreshRetry::default().delay_for(&err).is_some());
}

#[tokio::test]
async fn a_dropped_connection_is_a_retryable_io_error() {
    let base = server().await;
    let err = transport(5_000, 1 << 20, None)
        .send(get(&format!("{base}/drop")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Transport {
                kind: TransportErrorKind::Io,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // The request was sent (the server may have acted on it): distinguishable from a
    // refused connection, and a refresh is never retried after it.
    assert_eq!(RefreshRetry::default().delay_for(&err), None);
    assert!(
        !format!("{err} {err:?}").contains("127.0.0.1"),
        "the URL is stripped: {err:?}"
    );
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
    let small = transport(5_000, 1 << 20, None);
    for path in ["/big", "/stream"] {
        let roomy = RequestLimits {
            max_response_bytes: Some(4 << 20),
            ..RequestLimits::default()
        };
        let answer = small.send(with(path, roomy)).await.unwrap();
        assert_eq!(answer.body().len(), 3 << 20, "{path}");
    }
    // ...and a 4 MiB one refuses them when the request says 1 MiB.
    let tight = RequestLimits {
        max_response_bytes: Some(1 << 20),
        ..RequestLimits::default()
    };
    let err = transport(5_000, 4 << 20, None)
        .send(with("/stream", tight))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Transport {
                kind: TransportErrorKind::BodyTooLarge,
                ..
            }
        ),
        "{err:?}"
    );
    // The request's timeout replaces the client's, both ways.
    let short = RequestLimits {
        timeout: Some(Duration::from_millis(200)),
        ..RequestLimits::default()
    };
    let err = transport(10_000, 1 << 20, None)
        .send(with("/slow", short))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Timeout), "{err:?}");
    let long = RequestLimits {
        timeout: Some(Duration::from_secs(10)),
        ..RequestLimits::default()
    };
    let answer = transport(200, 1 << 20, None)
        .send(with("/slow", long))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
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
        let started = std::time::Instant::now();
        let limits = authmux_core::transport::RequestLimits {
            deadline: Some(tokio::time::Instant::now() + deadline),
            ..Default::default()
        };
        let err = transport(timeout_ms, 1 << 20, None)
            .send_with_limits(get(&format!("{base}/slow")), limits)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Timeout), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{timeout_ms} ms timeout, {deadline:?} deadline: {:?}",
            started.elapsed()
        );
    }
}
