//! The default transport and the environment's proxy settings: with `HTTP_PROXY` set,
//! a request goes through the proxy (in absolute form, with the proxy's credentials
//! from the URL and none of them in the transport's `Debug`); a host `NO_PROXY` names
//! is reached directly.
//!
//! The test runs its checks in a child process whose environment names the proxy (the
//! environment of this process, shared with other tests, stays as it is); the proxy
//! and the server run here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::transport::{HyperTransport, Transport};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Set in the child process that runs the checks, to the direct server's port.
const CHILD: &str = "AUTHMUX_PROXY_TEST_CHILD";
const TEST: &str = "requests_the_environment_proxies_go_through_the_proxy";

/// A server answering every request with `name` and the request's head, recording
/// each head.
async fn server(name: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                seen.lock().unwrap().push(head.clone());
                let body = format!("{name}\n{head}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, heads)
}

#[test]
fn requests_the_environment_proxies_go_through_the_proxy() {
    // The child reads the direct server's port from `CHILD`.
    if authmux_testkit::child::run_if_child(CHILD, || async {
        checks(&std::env::var(CHILD).unwrap()).await;
    }) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (proxy, proxied) = runtime.block_on(server("proxy"));
    let (direct, reached) = runtime.block_on(server("direct"));
    authmux_testkit::child::rerun(
        TEST,
        &[
            (CHILD, direct.to_string()),
            (
                "HTTP_PROXY",
                format!("http://proxy-user:proxy-pass@127.0.0.1:{proxy}"),
            ),
            ("NO_PROXY", "localhost".to_owned()),
        ],
        &[
            "http_proxy",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
            "REQUEST_METHOD",
        ],
    );
    // What each server saw: the proxy one absolute-form request with the proxy's
    // credentials, the server one direct request.
    let proxied = proxied.lock().unwrap().clone();
    assert_eq!(proxied.len(), 1, "{proxied:?}");
    assert!(
        proxied[0]
            .starts_with(&format!("get http://127.0.0.1:{direct}/through HTTP/1.1").to_lowercase()),
        "{proxied:?}"
    );
    // base64("proxy-user:proxy-pass"), lowercased with the rest of the head.
    assert!(
        proxied[0].contains("proxy-authorization: basic chjvehktdxnlcjpwcm94es1wyxnz"),
        "{proxied:?}"
    );
    let reached = reached.lock().unwrap().clone();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert!(
        reached[0].starts_with("get /around http/1.1"),
        "{reached:?}"
    );
}

async fn checks(direct: &str) {
    let transport = HyperTransport::new().unwrap();
    let debug = format!("{transport:?}");
    assert!(!debug.contains("proxy-pass"), "{debug}");
    let get = |url: String| {
        let transport = &transport;
        async move {
            let request = http::Request::get(url).body(Bytes::new()).unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(10), transport.send(request))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            String::from_utf8(answer.body().to_vec()).unwrap()
        }
    };
    let through = get(format!("http://127.0.0.1:{direct}/through")).await;
    assert!(through.starts_with("proxy\n"), "{through}");
    // `NO_PROXY=localhost`: straight to the server.
    let around = get(format!("http://localhost:{direct}/around")).await;
    assert!(around.starts_with("direct\n"), "{around}");
}
