//! Signs in to a Linxio API through a `SessionManager`, prints the user, signs out.
//!
//! The credentials come from the environment, the pattern linxio-js recommends:
//!
//! ```sh
//! LINXIO_URL=https://api.linxio.example LINXIO_EMAIL=ann@example.com \
//! LINXIO_PASSWORD=... [LINXIO_OTP=123456] cargo run -p authmux-linxio --example linxio
//! ```
//!
//! No token is ever printed.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example's job is to print"
)]

use std::process::ExitCode;
use std::sync::Arc;

use authmux_linxio::authmux_core::{AuthError, Credentials, LoginOutcome, SessionManager};
use authmux_linxio::{LinxioConfig, LinxioProvider, LinxioUserExt};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} in the environment"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let url = env("LINXIO_URL")?
        .parse()
        .map_err(|e| format!("LINXIO_URL: {e}"))?;
    let credentials = Credentials::new(env("LINXIO_EMAIL")?, env("LINXIO_PASSWORD")?);
    let config = LinxioConfig::new(url);
    let provider = LinxioProvider::new(config).map_err(|e| e.to_string())?;
    let manager = SessionManager::new(Arc::new(provider));

    let show = |e: AuthError| e.to_string();
    if let LoginOutcome::OtpRequired(challenge) = manager.login(&credentials).await.map_err(show)? {
        let code = std::env::var("LINXIO_OTP").map_err(|_| {
            format!(
                "Linxio asks for a one-time code for {}: set LINXIO_OTP",
                challenge.email
            )
        })?;
        manager.verify_otp(&code.into()).await.map_err(show)?;
    }

    let user = manager.current_user().await.map_err(show)?;
    println!(
        "signed in as {}",
        user.name.as_deref().unwrap_or("(no name)")
    );
    println!("  id:          {}", user.id.as_deref().unwrap_or("-"));
    println!("  email:       {}", user.email.as_deref().unwrap_or("-"));
    println!("  team type:   {}", user.team_type().unwrap_or("-"));
    println!(
        "  role:        {}",
        user.role_id().as_deref().unwrap_or("-")
    );
    println!("  permissions: {}", user.permissions().join(", "));
    if let Some(expires_at) = manager.session().and_then(|s| s.tokens.expires_at) {
        println!(
            "  token valid until {}",
            authmux_linxio::authmux_core::timestamp::format(expires_at)
        );
    }

    let outcome = manager.logout().await.map_err(show)?;
    println!("signed out: {outcome:?}");
    Ok(())
}
