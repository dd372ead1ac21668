//! `authmux demo`: the session lifecycle on all three dialects, on fake servers started
//! in this process. One function ([`lifecycle`]) runs against each backend; only the
//! [`ProviderConfig`] differs (plus the path of an ordinary API call, and where the
//! user reads a one-time code). A manual clock, shared by the fakes, the providers and
//! the session managers, jumps past the token's expiry instead of waiting for it, so
//! the demo takes well under a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authmux::lifecycle::SessionEvent;
use authmux::{
    AccessToken, AuthError, BuildOptions, Clock, Credentials, LoginOutcome, LogoutOutcome,
    ManualClock, OtpCode, ProviderConfig, SessionManager,
};
use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::users::{DEFAULT_PASSWORD, OTP_EMAIL};
use authmux_testkit::{FakeLinkUtm, FakeLinxio};
use bytes::Bytes;

use crate::failure::{Failure, UNAVAILABLE, describe, exit_code};
use crate::output::{self, say};

/// How long the fakes' access tokens live (on the manual clock).
const LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How far the clock jumps: past the expiry.
const JUMP: Duration = Duration::from_secs(6 * 60);

/// One backend of the demo.
struct Backend {
    config: ProviderConfig,
    /// An ordinary API call of that backend, sent through `SessionManager::send`.
    resource: &'static str,
    /// Where the user reads the one-time code (their phone, their mail).
    read_code: Box<dyn Fn() -> Option<String>>,
}

/// Runs the demo.
pub(crate) async fn run() -> Result<(), Failure> {
    let started = Instant::now();
    let clock = ManualClock::starting_now();
    let cannot_start =
        |e: std::io::Error| Failure::new(UNAVAILABLE, format!("cannot start a fake server: {e}"));
    let linxio = FakeLinxio::builder()
        .clock(clock.clone())
        .access_lifetime(LIFETIME)
        .start()
        .map_err(cannot_start)?;
    let linkutm = FakeLinkUtm::builder()
        .clock(clock.clone())
        .access_lifetime(LIFETIME)
        .start()
        .map_err(cannot_start)?;
    let directus = Arc::new(
        FakeDirectus::builder()
            .clock(clock.clone())
            .access_ttl(LIFETIME)
            .start()
            .map_err(cannot_start)?,
    );
    let config = |json: String| ProviderConfig::from_json(&json).map_err(Failure::from);
    let linxio_code = linxio.otp_code(OTP_EMAIL);
    let totp = directus.clone();
    let backends = [
        Backend {
            config: config(format!(
                r#"{{"dialect": "linxio", "url": "{}"}}"#,
                linxio.base_url()
            ))?,
            resource: "/api/vehicles",
            read_code: Box::new(move || linxio_code.clone()),
        },
        Backend {
            config: config(format!(
                r#"{{"dialect": "linkutm", "url": "{}", "workspace": "demo"}}"#,
                linkutm.base_url()
            ))?,
            resource: "/api/v1/links",
            read_code: Box::new(|| None),
        },
        Backend {
            config: config(format!(
                r#"{{"dialect": "directus", "url": "{}", "mode": "json"}}"#,
                directus.base_url()
            ))?,
            resource: "/items/articles",
            read_code: Box::new(move || totp.totp_code(OTP_EMAIL)),
        },
    ];

    say("authmux demo: one lifecycle, three dialects, three fake servers in this process.");
    say(&format!(
        "User {OTP_EMAIL}; tokens live {} on a manual clock, which jumps {} ahead instead of waiting.",
        output::duration(LIFETIME),
        output::duration(JUMP)
    ));
    for backend in &backends {
        say("");
        say(&format!(
            "== {}  ({})",
            backend.config.dialect(),
            backend.config.to_json()
        ));
        let mut rows = vec![vec!["step".to_owned(), "result".to_owned()]];
        let result = lifecycle(&clock, backend, &mut rows).await;
        if let Err(error) = &result {
            rows.push(vec!["FAILED".to_owned(), describe(error)]);
        }
        say(&output::table(&rows));
        if let Err(error) = result {
            return Err(Failure::new(
                exit_code(&error),
                format!(
                    "the demo failed on {}: {}",
                    backend.config.dialect(),
                    describe(&error)
                ),
            ));
        }
    }
    say("");
    say(&format!(
        "Done in {:.2} s: the same code signed in, called the API, outlived its token and signed out on every dialect.",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Names tokens `#1`, `#2`, ... in the order they appear, so the table can show that a
/// token changed without ever printing one.
#[derive(Default)]
struct Labels(Vec<AccessToken>);

impl Labels {
    fn of(&mut self, token: &AccessToken) -> String {
        let index = match self.0.iter().position(|t| t == token) {
            Some(i) => i,
            None => {
                self.0.push(token.clone());
                self.0.len() - 1
            }
        };
        format!("token #{}", index + 1)
    }
}

fn row(rows: &mut Vec<Vec<String>>, step: impl Into<String>, result: impl Into<String>) {
    rows.push(vec![step.into(), result.into()]);
}

/// Signs in, with the one-time code when the backend asks for one.
async fn sign_in(
    manager: &SessionManager,
    backend: &Backend,
    rows: &mut Vec<Vec<String>>,
    step: &str,
) -> Result<(), AuthError> {
    let credentials = Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD);
    match manager.login(&credentials).await? {
        LoginOutcome::Authenticated(_) => row(rows, step, "signed in (no one-time code asked)"),
        LoginOutcome::OtpRequired(_) => {
            row(rows, step, "a one-time code is required");
            let code = (backend.read_code)().ok_or(AuthError::OtpRequired)?;
            manager.verify_otp(&OtpCode::new(code)).await?;
            row(rows, "one-time code", "accepted: signed in");
        }
    }
    Ok(())
}

/// `GET resource` through the session manager: status and item count.
async fn call(manager: &SessionManager, resource: &str) -> Result<String, AuthError> {
    let request = http::Request::get(resource)
        .body(Bytes::new())
        .map_err(|_| AuthError::validation("uri", "bad resource path"))?;
    let response = manager.send(request).await?;
    let items = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|body| {
            // A list, or the first list in an envelope (`{"data": [...]}`).
            body.as_array()
                .or_else(|| {
                    body.as_object()?
                        .values()
                        .find_map(serde_json::Value::as_array)
                })
                .map(Vec::len)
        });
    Ok(match items {
        Some(n) => format!("{} ({n} items)", response.status()),
        None => response.status().to_string(),
    })
}

fn expiry(manager: &SessionManager, clock: &ManualClock) -> String {
    match manager.session().and_then(|s| s.tokens.expires_at) {
        Some(at) if at <= clock.now() => format!("expired {}", output::relative(at, clock.now())),
        Some(at) => format!("expires {}", output::relative(at, clock.now())),
        None => "no stated expiry".to_owned(),
    }
}

/// The lifecycle, identical for every backend.
async fn lifecycle(
    clock: &ManualClock,
    backend: &Backend,
    rows: &mut Vec<Vec<String>>,
) -> Result<(), AuthError> {
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let provider = backend
        .config
        .build_with(BuildOptions::new().clock(shared))?;
    let can_refresh = provider.capabilities().refresh;
    let manager = SessionManager::builder(provider)
        .clock(clock.clone())
        .build();
    let mut events = manager.subscribe();
    let mut labels = Labels::default();

    sign_in(&manager, backend, rows, &format!("sign in as {OTP_EMAIL}")).await?;
    let user = manager.current_user().await?;
    row(
        rows,
        "current user",
        format!(
            "{} ({})",
            user.email.as_deref().unwrap_or("?"),
            user.name.as_deref().unwrap_or("no name")
        ),
    );
    let get = format!("GET {}", backend.resource);
    row(rows, get.clone(), call(&manager, backend.resource).await?);
    let first = manager.access_token().await?;
    row(
        rows,
        "access token",
        format!("{}, {}", labels.of(&first), expiry(&manager, clock)),
    );

    clock.advance(JUMP);
    row(
        rows,
        format!("clock +{}", output::duration(JUMP)),
        format!("{} {}", labels.of(&first), expiry(&manager, clock)),
    );
    match call(&manager, backend.resource).await {
        Ok(answer) => {
            let refreshes = std::iter::from_fn(|| events.try_recv().ok())
                .filter(|e| matches!(e, SessionEvent::Refreshed { .. }))
                .count();
            let token = manager.access_token().await?;
            row(
                rows,
                get.clone(),
                format!("{answer}, after {refreshes} refresh: {}", labels.of(&token)),
            );
        }
        Err(error) if error.needs_sign_in() && !can_refresh => {
            row(
                rows,
                get.clone(),
                format!("{} (this dialect has no refresh)", describe(&error)),
            );
            sign_in(&manager, backend, rows, "sign in again").await?;
            let token = manager.access_token().await?;
            row(
                rows,
                "access token",
                format!("{}, {}", labels.of(&token), expiry(&manager, clock)),
            );
            row(rows, get.clone(), call(&manager, backend.resource).await?);
        }
        Err(error) => return Err(error),
    }

    let outcome = match manager.logout().await? {
        LogoutOutcome::Revoked => "the server ended the session".to_owned(),
        LogoutOutcome::SignInRevoked { .. } => "the server revoked this sign-in".to_owned(),
        LogoutOutcome::LocalOnly { reason } => format!("local only: {reason}"),
        _ => "signed out".to_owned(),
    };
    row(rows, "sign out", outcome);
    match manager.access_token().await {
        Err(AuthError::NotSignedIn) => row(rows, "access token", "none: not signed in"),
        Err(other) => return Err(other),
        Ok(_) => {
            return Err(AuthError::protocol(
                "a token was handed out after signing out",
            ));
        }
    }
    Ok(())
}
