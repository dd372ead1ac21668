//! `AuthMiddleware` composed with `reqwest-retry`, against an in-process fake Linxio:
//! the retry middleware goes first (outermost), the auth middleware after it. A
//! transient `503` is retried (each attempt authorized with the current token), and a
//! `401` is answered by one refresh and one replay inside the attempt.
//!
//! Run with `cargo run -p authmux-reqwest --example with_retry`.

use std::sync::Arc;

use authmux_core::{Credentials, SessionManager};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_reqwest::AuthMiddleware;
use authmux_testkit::Fault;
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let fake = FakeLinxio::start()?;
    let provider = LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))?;
    let manager = SessionManager::new(Arc::new(provider));
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await?;

    let retry = ExponentialBackoff::builder().build_with_max_retries(3);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(retry)) // outer: 5xx, timeouts
        .with(AuthMiddleware::new(manager)) // inner: credentials, 401 -> refresh -> replay
        .build();

    // The server answers 503 once, then 401 once (as if the token had been revoked).
    fake.faults().push(endpoints::VEHICLES, Fault::Status(503));
    fake.faults().push(endpoints::VEHICLES, Fault::Status(401));
    let response = client.get(fake.url("/api/vehicles")).send().await?;
    let recorder = fake.recorder();
    #[allow(clippy::print_stdout)]
    {
        println!("status: {}", response.status());
        println!(
            "requests: {}, refreshes: {}",
            recorder.count(endpoints::VEHICLES),
            recorder.count(endpoints::REFRESH)
        );
    }
    assert_eq!(response.status(), 200);
    assert_eq!(recorder.count(endpoints::VEHICLES), 3);
    assert_eq!(recorder.count(endpoints::REFRESH), 1);
    Ok(())
}
