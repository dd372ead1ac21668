//! A 32 MiB download streams through `AuthService` around a hyper-util client: nothing
//! buffers it.
//!
//! The server sends the first 64 KiB chunk and then waits until the test releases it.
//! The test reads that first chunk *before* releasing, so if anything between the
//! socket and the caller waited for the whole body, the first read would never complete
//! and the test would fail on its timeout.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux_core::{AccessToken, Expiry, SessionManager, TokenSet};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::StreamServer;
use authmux_testkit::stream::CHUNK_BYTES;
use authmux_tower::AuthLayer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::timeout;
use tower::{Layer, ServiceExt};

const TOKEN: &str = "stream-token";
const SIZE: usize = 32 << 20;
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_download_streams_through_the_layer() {
    let server = StreamServer::with_bearer(TOKEN).unwrap();
    let provider = LinxioProvider::new(LinxioConfig::new(server.base_url().clone())).unwrap();
    let manager = SessionManager::new(Arc::new(provider));
    let tokens = TokenSet::new(
        AccessToken::new(TOKEN),
        None,
        Expiry::In(Duration::from_secs(3600)),
        SystemTime::now(),
    );
    manager.hydrate(tokens).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = AuthLayer::new(manager).layer(client);

    let request = http::Request::get(server.url(&format!("/download/{SIZE}")))
        .body(Full::default())
        .unwrap();
    let response = timeout(PATIENCE, service.oneshot(request))
        .await
        .expect("the answer's head arrives while the server holds the body back")
        .unwrap();
    assert_eq!(response.status(), 200, "authorized by the layer");
    let mut body = response.into_body();
    let first = next(&mut body).await.expect("a first chunk");
    assert!(!first.is_empty() && first.len() <= CHUNK_BYTES);
    assert_eq!(
        server.produced(),
        CHUNK_BYTES as u64,
        "the server is still waiting"
    );

    server.release();
    let mut total = first.len();
    while let Some(chunk) = next(&mut body).await {
        total += chunk.len();
    }
    assert_eq!(total, SIZE);
    assert_eq!(server.unauthorized(), 0);
}

/// The next data chunk of `body`, or `None` at its end.
async fn next(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    timeout(PATIENCE, body.frame())
        .await
        .expect("a chunk arrives")
        .map(|frame| frame.unwrap().into_data().unwrap_or_default())
}
