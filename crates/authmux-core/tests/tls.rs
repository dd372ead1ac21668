//! Both built-in transports over TLS, against a local server whose certificate (for
//! `localhost` only) a test CA signed: the platform verifier trusts it once the CA is
//! in `SSL_CERT_FILE`, both transports negotiate HTTP/2 by ALPN (and HTTP/1.1 when
//! the server offers only that), and a certificate for another name is refused before
//! any request is sent.
//!
//! The test runs itself again in a child process whose `SSL_CERT_FILE` names the test
//! CA (only there: the environment of this process, shared with other tests, stays
//! as it is).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authmux_core::transport::{HyperTransport, ReqwestTransport, Transport};
use authmux_core::{AuthError, TransportErrorKind};
use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// An HTTPS server offering `alpn` that answers every request with its HTTP version
/// and path; returns its port and the count of requests it answered.
async fn server(alpn: &[&[u8]]) -> (u16, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_file_iter(fixture("localhost.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("localhost.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let text = format!("{:?} {}", request.version(), request.uri().path());
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(text),
                        )))
                    }
                });
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    });
    (port, answered)
}

fn is_connect_error(err: &AuthError) -> bool {
    matches!(
        err,
        AuthError::Transport {
            kind: TransportErrorKind::Connect,
            ..
        }
    )
}

fn transports() -> [(&'static str, Arc<dyn Transport>); 2] {
    [
        ("hyper", Arc::new(HyperTransport::new().unwrap())),
        ("reqwest", Arc::new(ReqwestTransport::new().unwrap())),
    ]
}

async fn get(transport: &dyn Transport, url: &str) -> Result<String, AuthError> {
    let request = http::Request::get(url).body(Bytes::new()).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), transport.send(request))
        .await
        .expect("an answer within 10 s")?;
    Ok(String::from_utf8(answer.body().to_vec()).unwrap())
}

/// Set in the child process that runs the checks.
const CHILD: &str = "AUTHMUX_TLS_TEST_CHILD";

#[test]
fn https_is_verified_and_speaks_http2_or_http1() {
    authmux_testkit::child::checks_in_child(
        "https_is_verified_and_speaks_http2_or_http1",
        CHILD,
        &[("SSL_CERT_FILE", fixture("ca.pem").display().to_string())],
        &[],
        checks,
    );
}

async fn checks() {
    let (both, answered) = server(&[b"h2", b"http/1.1"]).await;
    let (http1, _) = server(&[b"http/1.1"]).await;
    for (name, transport) in transports() {
        let text = get(&*transport, &format!("https://localhost:{both}/h2"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(text, "HTTP/2.0 /h2", "{name}");
        let text = get(&*transport, &format!("https://localhost:{http1}/h1"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(text, "HTTP/1.1 /h1", "{name}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 2);

    // The certificate names `localhost`, not 127.0.0.1: refused while connecting, and
    // the server answers nothing.
    for (name, transport) in transports() {
        let err = get(&*transport, &format!("https://127.0.0.1:{both}/wrong-name"))
            .await
            .unwrap_err();
        assert!(is_connect_error(&err), "{name}: {err:?}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 2);
}

/// Set in the child process of the test below.
const NO_ROOTS_CHILD: &str = "AUTHMUX_TLS_NO_ROOTS_CHILD";

/// On a machine without root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR` naming
/// nothing), the default transport still builds and talks plain http to a loopback
/// server; an https request fails, typed, as a connect error saying TLS is not
/// available. (The certificates are read on the first https connection.)
#[test]
fn without_root_certificates_http_works_and_https_is_a_typed_connect_error() {
    let nowhere = fixture("no-such-file.pem").display().to_string();
    authmux_testkit::child::checks_in_child(
        "without_root_certificates_http_works_and_https_is_a_typed_connect_error",
        NO_ROOTS_CHILD,
        &[
            ("SSL_CERT_FILE", nowhere.clone()),
            ("SSL_CERT_DIR", nowhere),
        ],
        &[],
        no_roots_checks,
    );
}

async fn no_roots_checks() {
    let transport = HyperTransport::new().expect("builds without reading certificates");
    // A plain-http loopback server answering 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let io = hyper_util::rt::TokioIo::new(socket);
            let service = hyper::service::service_fn(|_request: http::Request<_>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    Bytes::from_static(b"plain"),
                )))
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    assert_eq!(
        get(&transport, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap(),
        "plain"
    );
    let (tls_port, answered) = server(&[b"http/1.1"]).await;
    let err = get(&transport, &format!("https://localhost:{tls_port}/"))
        .await
        .unwrap_err();
    assert!(is_connect_error(&err), "{err:?}");
    assert!(
        format!("{err}{err:?}").contains("TLS is not available"),
        "{err:?}"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 0);
}
