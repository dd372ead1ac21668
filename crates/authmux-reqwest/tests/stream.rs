//! A 32 MiB download streams through `AuthMiddleware`: nothing buffers it.
//!
//! The server sends the first 64 KiB chunk and then waits until the test releases it.
//! The test reads that first chunk *before* releasing, so if anything between the
//! socket and the caller (the middleware, reqwest-middleware) waited for the whole body,
//! the first read would never complete and the test would fail on its timeout.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux_core::{AccessToken, Expiry, SessionManager, TokenSet};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_reqwest::AuthMiddleware;
use authmux_testkit::StreamServer;
use authmux_testkit::stream::CHUNK_BYTES;
use tokio::time::timeout;

const TOKEN: &str = "stream-token";
const SIZE: usize = 32 << 20;
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_download_streams_through_the_middleware() {
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
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(manager))
        .build();

    let mut response = timeout(
        PATIENCE,
        client.get(server.url(&format!("/download/{SIZE}"))).send(),
    )
    .await
    .expect("the answer's head arrives while the server holds the body back")
    .unwrap();
    assert_eq!(response.status(), 200, "authorized by the middleware");
    let first = timeout(PATIENCE, response.chunk())
        .await
        .expect("the first chunk arrives while the server holds the rest back")
        .unwrap()
        .expect("a first chunk");
    assert!(!first.is_empty() && first.len() <= CHUNK_BYTES);
    assert_eq!(
        server.produced(),
        CHUNK_BYTES as u64,
        "the server is still waiting"
    );

    server.release();
    let mut total = first.len();
    while let Some(chunk) = timeout(PATIENCE, response.chunk()).await.unwrap().unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, SIZE);
    assert_eq!(server.unauthorized(), 0);
}
