//! `AuthLayer` around a hyper-util client over HTTPS (hyper-rustls with the platform's
//! certificate verifier), signed in to a Directus server.
//!
//! ```sh
//! AUTHMUX_EMAIL=you@example.com AUTHMUX_PASSWORD=... \
//!     cargo run -p authmux-tower --example https -- https://cms.example.com
//! ```
//!
//! It prints the status of `GET /users/me`, authorized by the layer (and refreshed and
//! replayed on a `401`). A loopback `http://` URL works too, for a local Directus.

use std::sync::Arc;

use authmux_core::{Credentials, LoginOutcome, SessionManager};
use authmux_directus::{DirectusConfig, DirectusProvider};
use authmux_tower::AuthLayer;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let base = std::env::args()
        .nth(1)
        .ok_or("usage: https <base URL of a Directus server>")?;
    let email = std::env::var("AUTHMUX_EMAIL").map_err(|_| "set AUTHMUX_EMAIL")?;
    let password = std::env::var("AUTHMUX_PASSWORD").map_err(|_| "set AUTHMUX_PASSWORD")?;

    let provider = DirectusProvider::new(DirectusConfig::new(base.parse()?))?;
    let manager = SessionManager::new(Arc::new(provider));
    match manager.login(&Credentials::new(email, password)).await? {
        LoginOutcome::Authenticated(_) => {}
        LoginOutcome::OtpRequired(_) => return Err("this user needs a one-time code".into()),
    }

    // The TLS connector: rustls, the OS's trust store, HTTPS (and plain HTTP, which the
    // provider allows only for loopback).
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_platform_verifier()
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    let service = AuthLayer::new(manager.clone()).layer(client);

    let request = http::Request::get(format!("{}/users/me", base.trim_end_matches('/')))
        .body(Full::default())?;
    let response = service.oneshot(request).await?;
    #[allow(clippy::print_stdout, reason = "the example's output")]
    {
        println!("GET /users/me: {}", response.status());
    }
    manager.logout().await?;
    Ok(())
}
