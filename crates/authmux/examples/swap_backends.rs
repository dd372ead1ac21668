//! One piece of code, three backends: the same `lifecycle` function runs against fake
//! Linxio, LinkUTM and Directus servers; only the [`ProviderConfig`] (JSON text, as it
//! would come from a config file) changes.
//!
//! Run with `cargo run -p authmux --example swap_backends`.

#![allow(clippy::print_stdout, reason = "an example prints what it does")]

use authmux::{AuthError, Credentials, LoginOutcome, ProviderConfig, SessionManager};
use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{FakeLinkUtm, FakeLinxio};
use bytes::Bytes;

/// Signs in, asks who the user is, makes an authorized call, signs out. Knows nothing
/// about dialects: everything it needs is in `config`.
async fn lifecycle(config: &ProviderConfig, resource: &str) -> Result<(), AuthError> {
    let manager = SessionManager::new(config.build()?);
    let credentials = Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD);
    match manager.login(&credentials).await? {
        LoginOutcome::Authenticated(_) => {}
        LoginOutcome::OtpRequired(_) => return Err(AuthError::OtpRequired),
    }
    let user = manager.current_user().await?;
    let request = http::Request::get(resource)
        .body(Bytes::new())
        .map_err(|_| AuthError::validation("uri", "bad resource path"))?;
    let response = manager.send(request).await?;
    let outcome = manager.logout().await?;
    println!(
        "{:<9} signed in as {:<18} GET {:<15} -> {}   sign-out: {:?}",
        config.dialect(),
        user.email.unwrap_or_default(),
        resource,
        response.status(),
        outcome
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let linxio = FakeLinxio::start()?;
    let linkutm = FakeLinkUtm::start()?;
    let directus = FakeDirectus::start()?;

    // What would come from three deployments' config files.
    let backends = [
        (
            format!(r#"{{"dialect": "linxio", "url": "{}"}}"#, linxio.base_url()),
            "/api/vehicles",
        ),
        (
            format!(
                r#"{{"dialect": "linkutm", "url": "{}", "workspace": "acme"}}"#,
                linkutm.base_url()
            ),
            "/api/v1/links",
        ),
        (
            format!(
                r#"{{"dialect": "directus", "url": "{}", "mode": "cookie"}}"#,
                directus.base_url()
            ),
            "/items/articles",
        ),
    ];
    for (json, resource) in &backends {
        let config: ProviderConfig = json.parse()?;
        lifecycle(&config, resource).await?;
    }
    Ok(())
}
