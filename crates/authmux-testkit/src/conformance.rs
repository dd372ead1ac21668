//! The conformance suite: the contract every adapter must meet, as public async
//! functions that take a provider (`&dyn AuthProvider`) and a [`Target`] describing the
//! server it talks to (one of the fakes, a custom fake, or a real server).
//!
//! Each check is gated on the provider's [`Capabilities`] and on what the target can do
//! (fault injection needs a fake), and reports [`CheckResult::Skipped`] with a reason
//! when it does not apply, so a report always says what was and was not proven.
//!
//! ```no_run
//! # async fn demo(provider: &dyn authmux_core::AuthProvider) {
//! use authmux_testkit::conformance::{self, Target};
//! use authmux_testkit::FakeLinxio;
//!
//! let fake = FakeLinxio::start().unwrap();
//! // ... build `provider` pointing at `fake.base_url()` ...
//! let report = conformance::run_all(provider, &Target::linxio(&fake)).await;
//! report.assert_passed(); // panics listing every failed check
//! # }
//! ```
//!
//! Checks: login and current user; wrong password; OTP challenge and completion;
//! refresh and rotation (or a typed "unsupported"); logout revokes; error mapping of
//! 401/403/409/429/5xx, malformed, truncated and oversized bodies and dropped
//! connections on the login, current-user and refresh endpoints; and, in every check, no
//! secret (password, code, token) in any error's or session's `Debug`/`Display`.
//!
//! [`fault_matrix`] runs every endpoint against every fault through a session manager.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use authmux_core::{
    AuthError, AuthProvider, Capabilities, Credentials, LoginOutcome, LogoutOutcome, OtpCode,
    Session, TransportErrorKind,
};

use crate::faults::{Fault, Faults};

pub mod fault_matrix;
use crate::recorder::Recorder;
use crate::users::{ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL, OTP_EMAIL};

/// Where one-time codes come from (the fake's user table, a TOTP secret, ...).
pub type CodeSource<'a> = Arc<dyn Fn() -> String + Send + Sync + 'a>;

/// A user who must complete a one-time-code challenge.
#[derive(Clone)]
pub struct OtpUser<'a> {
    /// Email and password (no code).
    pub credentials: Credentials,
    /// Gives the currently valid code.
    pub code: CodeSource<'a>,
}

impl fmt::Debug for OtpUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpUser")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Endpoint names (as the fake's counters and faults name them).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// The login endpoint, e.g. `"POST /login"`.
    pub login: String,
    /// The current-user endpoint.
    pub current_user: String,
    /// The refresh endpoint, when the dialect has one.
    pub refresh: Option<String>,
}

/// The server the suite runs against.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// A user who signs in with email and password alone.
    pub user: Credentials,
    /// A user who needs a one-time code, if the server has one.
    pub otp_user: Option<OtpUser<'a>>,
    /// Fault injection, when the target is a fake.
    pub faults: Option<&'a Faults>,
    /// The request recorder, when the target is a fake.
    pub recorder: Option<&'a Recorder>,
    /// Endpoint names for faults and counters.
    pub endpoints: Endpoints,
    /// How long the server keeps accepting a rotated-away refresh credential (Directus
    /// session mode: 10 s). `None`: it must be dead at once.
    pub rotation_grace: Option<Duration>,
}

impl<'a> Target<'a> {
    /// A target with only a user: no OTP user, no faults (e.g. a real server).
    pub fn new(user: Credentials) -> Self {
        Self {
            user,
            otp_user: None,
            faults: None,
            recorder: None,
            endpoints: Endpoints::default(),
            rotation_grace: None,
        }
    }

    /// Adds fault injection and recording from a fake's server handle.
    #[must_use]
    pub fn with_server(
        mut self,
        server: &'a crate::server::ServerHandle,
        endpoints: Endpoints,
    ) -> Self {
        self.faults = Some(server.faults());
        self.recorder = Some(server.recorder());
        self.endpoints = endpoints;
        self
    }

    /// Declares that the server keeps a rotated-away refresh credential alive for
    /// `grace` (so the suite does not demand it be dead at once).
    #[must_use]
    pub fn with_rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = Some(grace);
        self
    }

    /// Adds a user who needs a one-time code.
    #[must_use]
    pub fn with_otp_user(mut self, credentials: Credentials, code: CodeSource<'a>) -> Self {
        self.otp_user = Some(OtpUser { credentials, code });
        self
    }

    /// [`crate::FakeLinxio`] with its default users.
    pub fn linxio(fake: &'a crate::FakeLinxio) -> Self {
        use crate::linxio::endpoints as e;
        let codes = fake.otp_code(OTP_EMAIL).unwrap_or_default();
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(fake.server(), endpoints(e::LOGIN, e::ME, Some(e::REFRESH)))
            .with_otp_user(
                Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD),
                Arc::new(move || codes.clone()),
            )
    }

    /// [`crate::FakeLinkUtm`] with its default users (LinkUTM login has no OTP step).
    pub fn linkutm(fake: &'a crate::FakeLinkUtm) -> Self {
        use crate::linkutm::endpoints as e;
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(fake.server(), endpoints(e::LOGIN, e::PROFILE, None))
    }

    /// [`crate::directus::FakeDirectus`] with its default users (TOTP for the OTP user).
    pub fn directus(fake: &'a crate::directus::FakeDirectus) -> Self {
        use crate::directus::endpoints as e;
        let fake_for_codes: CodeSource<'a> =
            Arc::new(move || fake.totp_code(OTP_EMAIL).unwrap_or_default());
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(fake.server(), endpoints(e::LOGIN, e::ME, Some(e::REFRESH)))
            .with_otp_user(
                Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD),
                fake_for_codes,
            )
    }
}

impl<'a> Target<'a> {
    /// [`crate::FakeOAuth2`] with its default users, for a provider that signs in with
    /// the password grant (other grants are driven by wrappers in the adapter's tests,
    /// which pass their own endpoints).
    pub fn oauth2(fake: &'a crate::FakeOAuth2) -> Self {
        use crate::oauth2::endpoints as e;
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD)).with_server(
            fake.server(),
            endpoints(e::TOKEN, e::USERINFO, Some(e::TOKEN)),
        )
    }
}

fn endpoints(login: &str, me: &str, refresh: Option<&str>) -> Endpoints {
    Endpoints {
        login: login.into(),
        current_user: me.into(),
        refresh: refresh.map(Into::into),
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The contract holds.
    Passed,
    /// The check does not apply; the reason says why.
    Skipped(String),
    /// The contract is broken; the message says how.
    Failed(String),
}

/// The results of [`run_all`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each check's name and result, in the order run.
    pub results: Vec<(&'static str, CheckResult)>,
}

impl Report {
    /// The failed checks.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.results
            .iter()
            .filter_map(|(name, r)| match r {
                CheckResult::Failed(m) => Some((*name, m.as_str())),
                _ => None,
            })
            .collect()
    }

    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, r)| *r == CheckResult::Passed)
            .count()
    }

    /// Panics listing every failed check (and prints the skipped ones).
    #[allow(
        clippy::print_stderr,
        reason = "test output is where skipped checks must show"
    )]
    pub fn assert_passed(&self) {
        for (name, result) in &self.results {
            if let CheckResult::Skipped(why) = result {
                eprintln!("conformance: {name} skipped: {why}");
            }
        }
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{} conformance check(s) failed:\n{}",
            failures.len(),
            failures
                .iter()
                .map(|(n, m)| format!("  - {n}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(self.passed() > 0, "no conformance check passed");
    }
}

type Check = Result<CheckResult, String>;

/// A fault, what it must map to (for messages), and the test of the mapping.
type FaultCase = (Fault, &'static str, fn(&AuthError) -> bool);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs every check and collects the results.
pub async fn run_all(provider: &dyn AuthProvider, target: &Target<'_>) -> Report {
    let mut report = Report::default();
    let mut record = |name: &'static str, result: Check| {
        report
            .results
            .push((name, result.unwrap_or_else(CheckResult::Failed)));
    };
    record(
        "login_and_current_user",
        login_and_current_user(provider, target).await,
    );
    record("wrong_password", wrong_password(provider, target).await);
    record("otp_challenge", otp_challenge(provider, target).await);
    record(
        "refresh_and_rotation",
        refresh_and_rotation(provider, target).await,
    );
    record("logout_revokes", logout_revokes(provider, target).await);
    record(
        "login_error_mapping",
        login_error_mapping(provider, target).await,
    );
    record(
        "current_user_error_mapping",
        current_user_error_mapping(provider, target).await,
    );
    record(
        "refresh_error_mapping",
        refresh_error_mapping(provider, target).await,
    );
    report
}

/// Signs `target.user` in, expecting a session.
pub async fn sign_in(provider: &dyn AuthProvider, target: &Target<'_>) -> Result<Session, String> {
    match provider.login(&target.user).await {
        Ok(LoginOutcome::Authenticated(session)) => Ok(session),
        Ok(LoginOutcome::OtpRequired(_)) => {
            Err("the plain user was asked for a one-time code".into())
        }
        Err(e) => Err(format!("login failed: {e} ({e:?})")),
    }
}

/// Fails if `text` contains any of the secrets.
fn no_secrets(text: &str, secrets: &[&str], what: &str) -> Result<(), String> {
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        ensure!(!text.contains(secret), "{what} contains a secret");
    }
    Ok(())
}

fn session_secrets(session: &Session) -> Vec<String> {
    let mut secrets = vec![session.tokens.access.expose_secret().to_owned()];
    if let Some(r) = &session.tokens.refresh {
        secrets.push(r.expose_secret().to_owned());
    }
    secrets
}

fn error_secrets_free(error: &AuthError, secrets: &[&str]) -> Result<(), String> {
    no_secrets(
        &format!("{error} {error:?}"),
        secrets,
        "an error's Debug/Display",
    )
}

/// Login yields a session for this provider and URL whose `Debug` hides its tokens, and
/// the current user is the one who signed in.
pub async fn login_and_current_user(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let session = sign_in(provider, target).await?;
    ensure!(
        session.dialect == provider.dialect(),
        "session dialect {:?} is not the provider's",
        session.dialect
    );
    ensure!(
        session.base_url == *provider.base_url(),
        "session base URL differs from the provider's"
    );
    ensure!(!session.tokens.access.is_empty(), "empty access token");
    let secrets = session_secrets(&session);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    no_secrets(&format!("{session:?}"), &secrets, "the session's Debug")?;
    let user = provider
        .current_user(&session)
        .await
        .map_err(|e| format!("current_user failed: {e} ({e:?})"))?;
    if let Some(email) = &user.email {
        ensure!(
            email.eq_ignore_ascii_case(&target.user.email),
            "current user is {email}, not {}",
            target.user.email
        );
    } else {
        ensure!(user.id.is_some(), "current user has neither email nor id");
    }
    no_secrets(&format!("{user:?}"), &secrets, "the user's Debug")?;
    Ok(CheckResult::Passed)
}

/// A wrong password is [`AuthError::InvalidCredentials`] and the error never contains
/// the password.
pub async fn wrong_password(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let wrong = format!("{}-wrong", target.user.password.expose_secret());
    let credentials = Credentials::new(target.user.email.clone(), wrong.as_str());
    match provider.login(&credentials).await {
        Err(AuthError::InvalidCredentials) => {}
        Err(e) => {
            error_secrets_free(&e, &[&wrong])?;
            return Err(format!("expected InvalidCredentials, got {e:?}"));
        }
        Ok(_) => return Err("a wrong password signed in".into()),
    }
    let err = provider
        .login(&credentials)
        .await
        .err()
        .unwrap_or(AuthError::InvalidCredentials);
    error_secrets_free(&err, &[&wrong, target.user.password.expose_secret()])?;
    Ok(CheckResult::Passed)
}

/// A login that needs a one-time code yields a challenge that hides the password; a
/// wrong code is [`AuthError::InvalidOtp`] and leaves the challenge usable; the right
/// code yields a working session.
pub async fn otp_challenge(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    if !provider.capabilities().otp_login {
        return Ok(CheckResult::Skipped(
            "the provider has no one-time-code login".into(),
        ));
    }
    let Some(otp_user) = &target.otp_user else {
        return Ok(CheckResult::Skipped(
            "the target has no user with one-time codes".into(),
        ));
    };
    let password = otp_user.credentials.password.expose_secret();
    let challenge = match provider.login(&otp_user.credentials).await {
        Ok(LoginOutcome::OtpRequired(challenge)) => challenge,
        Ok(LoginOutcome::Authenticated(_)) => {
            return Err("signed in without the one-time code".into());
        }
        Err(e) => return Err(format!("login of the OTP user failed: {e:?}")),
    };
    no_secrets(
        &format!("{challenge:?}"),
        &[password],
        "the challenge's Debug",
    )?;
    let right = (otp_user.code)();
    let wrong = if right == "000000" {
        "999999"
    } else {
        "000000"
    };
    match provider.verify_otp(&challenge, &OtpCode::new(wrong)).await {
        Err(AuthError::InvalidOtp) => {}
        Err(e) => return Err(format!("a wrong code gave {e:?}, expected InvalidOtp")),
        Ok(_) => return Err("a wrong code signed in".into()),
    }
    let session = provider
        .verify_otp(&challenge, &OtpCode::new((otp_user.code)()))
        .await
        .map_err(|e| format!("the right code after a wrong one failed: {e:?}"))?;
    provider
        .current_user(&session)
        .await
        .map_err(|e| format!("current_user after OTP failed: {e:?}"))?;
    Ok(CheckResult::Passed)
}

/// Refresh yields new tokens; with rotation the old refresh token is dead and the
/// recorder saw exactly the token sent; without refresh, a typed "unsupported".
pub async fn refresh_and_rotation(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let caps: Capabilities = provider.capabilities();
    let session = sign_in(provider, target).await?;
    if !caps.refresh {
        return match provider.refresh(&session).await {
            Err(AuthError::Unsupported {
                capability: "refresh",
            }) => Ok(CheckResult::Passed),
            other => Err(format!("a provider without refresh answered {other:?}")),
        };
    }
    if session.tokens.refresh.is_none() {
        // No refresh token, yet refresh is supported (OAuth 2.0 client credentials: a
        // refresh fetches a new token with the client's own credentials): the refreshed
        // session must work.
        let refreshed = provider
            .refresh(&session)
            .await
            .map_err(|e| format!("refresh without a refresh token failed: {e:?}"))?;
        ensure!(
            !refreshed.tokens.access.is_empty(),
            "the refreshed session has an empty access token"
        );
        provider
            .current_user(&refreshed)
            .await
            .map_err(|e| format!("current_user with refreshed tokens: {e:?}"))?;
        return Ok(CheckResult::Passed);
    }
    let before = target.recorder.map(|r| r.refresh_tokens().len());
    let refreshed = provider
        .refresh(&session)
        .await
        .map_err(|e| format!("refresh failed: {e:?}"))?;
    // (Not "the access token changed": Directus issues byte-identical JWTs within one
    // second, so a fast refresh may legitimately return the same text.)
    ensure!(
        refreshed.tokens.refresh.is_some(),
        "the refreshed session lost its refresh token"
    );
    provider
        .current_user(&refreshed)
        .await
        .map_err(|e| format!("current_user with refreshed tokens: {e:?}"))?;
    if let (Some(recorder), Some(before), Some(old)) =
        (target.recorder, before, &session.tokens.refresh)
    {
        let seen = recorder.refresh_tokens();
        if seen.len() > before {
            ensure!(
                seen[before..].iter().any(|t| t == old.expose_secret()),
                "the server did not see the session's refresh token"
            );
        }
    }
    if refreshed.tokens.refresh != session.tokens.refresh {
        if target.rotation_grace.is_none() {
            // Rotated: the old refresh token must be dead. (With a declared grace period
            // the server may still honour it for a while; the manager never resends it.)
            match provider.refresh(&session).await {
                Err(AuthError::RefreshRejected) => {}
                other => {
                    return Err(format!(
                        "reusing a rotated refresh token gave {other:?}, expected RefreshRejected"
                    ));
                }
            }
        }
    } else {
        ensure!(
            !caps.rotating_refresh,
            "capabilities say refresh tokens rotate, but the refresh token did not change"
        );
    }
    Ok(CheckResult::Passed)
}

/// Logout ends the session on the server: its tokens stop working.
pub async fn logout_revokes(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let caps = provider.capabilities();
    let session = sign_in(provider, target).await?;
    let outcome = provider
        .logout(&session)
        .await
        .map_err(|e| format!("logout failed: {e:?}"))?;
    if !caps.server_logout {
        return match outcome {
            LogoutOutcome::LocalOnly { .. } | LogoutOutcome::SignInRevoked { .. } => {
                Ok(CheckResult::Passed)
            }
            other => Err(format!(
                "capabilities say no server logout, but logout answered {other:?}"
            )),
        };
    }
    if caps.refresh && session.tokens.refresh.is_some() {
        match provider.refresh(&session).await {
            Err(AuthError::RefreshRejected) => {}
            other => {
                return Err(format!(
                    "refresh after logout gave {other:?}, expected RefreshRejected"
                ));
            }
        }
    }
    if matches!(outcome, LogoutOutcome::SignInRevoked { .. }) {
        match provider.current_user(&session).await {
            Err(e) if matches!(e, AuthError::Unauthorized { .. }) || e.needs_sign_in() => {}
            other => {
                return Err(format!(
                    "current_user after revoking the sign-in gave {other:?}"
                ));
            }
        }
    }
    Ok(CheckResult::Passed)
}

fn faults<'a>(target: &Target<'a>, endpoint: &str) -> Result<&'a Faults, CheckResult> {
    match target.faults {
        Some(f) if !endpoint.is_empty() => Ok(f),
        Some(_) => Err(CheckResult::Skipped(
            "the target names no endpoint for this check".into(),
        )),
        None => Err(CheckResult::Skipped(
            "the target cannot inject faults (not a fake)".into(),
        )),
    }
}

/// The faults every endpoint is checked with, and the error each must map to.
fn common_faults() -> Vec<FaultCase> {
    vec![
        (
            Fault::RateLimited {
                retry_after_secs: 7,
            },
            "429 -> RateLimited(7s)",
            |e| matches!(e, AuthError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(7)),
        ),
        (Fault::Status(500), "500 -> Server(500)", |e| {
            matches!(e, AuthError::Server { status: 500, .. })
        }),
        (Fault::Status(502), "502 -> Server(502), retryable", |e| {
            matches!(e, AuthError::Server { status: 502, .. }) && e.is_retryable()
        }),
        (Fault::Status(503), "503 -> Server(503), retryable", |e| {
            matches!(e, AuthError::Server { status: 503, .. }) && e.is_retryable()
        }),
        (Fault::MalformedJson, "malformed JSON -> Protocol", |e| {
            matches!(e, AuthError::Protocol { .. })
        }),
        (
            Fault::TruncatedBody,
            "truncated body -> Protocol or Transport",
            |e| matches!(e, AuthError::Protocol { .. } | AuthError::Transport { .. }),
        ),
        (
            Fault::DropConnection,
            "dropped connection -> Transport",
            |e| matches!(e, AuthError::Transport { .. }),
        ),
        (
            Fault::OversizedBody(5 * 1024 * 1024),
            "oversized body -> Transport(BodyTooLarge)",
            |e| {
                matches!(
                    e,
                    AuthError::Transport {
                        kind: TransportErrorKind::BodyTooLarge,
                        ..
                    }
                )
            },
        ),
    ]
}

async fn expect_mapping<F, Fut>(
    faults: &Faults,
    endpoint: &str,
    cases: Vec<FaultCase>,
    secrets: &[&str],
    call: F,
) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), AuthError>>,
{
    for (fault, expectation, ok) in cases {
        faults.clear(endpoint);
        faults.push(endpoint, fault);
        let result = call().await;
        faults.clear(endpoint);
        match result {
            Err(e) => {
                error_secrets_free(&e, secrets)?;
                ensure!(ok(&e), "{endpoint}: expected {expectation}, got {e:?}");
            }
            Ok(()) => {
                return Err(format!(
                    "{endpoint}: expected {expectation}, but the call succeeded"
                ));
            }
        }
    }
    Ok(())
}

/// Login maps 401/403/409/429/5xx and broken answers to the right typed errors.
pub async fn login_error_mapping(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let faults = match faults(target, &target.endpoints.login) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let endpoint = target.endpoints.login.as_str();
    let mut cases = common_faults();
    cases.push((Fault::Status(401), "401 -> InvalidCredentials", |e| {
        matches!(e, AuthError::InvalidCredentials)
    }));
    cases.push((
        Fault::Status(403),
        "403 -> Forbidden or AccountDisabled",
        |e| matches!(e, AuthError::Forbidden { .. } | AuthError::AccountDisabled),
    ));
    cases.push((Fault::Status(409), "409 -> Conflict", |e| {
        matches!(e, AuthError::Conflict { .. })
    }));
    let password = target.user.password.expose_secret();
    expect_mapping(faults, endpoint, cases, &[password], || async {
        provider.login(&target.user).await.map(|_| ())
    })
    .await?;
    // A real forbidden user (not an injected status), where the target has one.
    let forbidden = Credentials::new(FORBIDDEN_EMAIL, DEFAULT_PASSWORD);
    if target.user.email == ALICE_EMAIL
        && let Err(e) = provider.login(&forbidden).await
    {
        error_secrets_free(&e, &[DEFAULT_PASSWORD])?;
    }
    Ok(CheckResult::Passed)
}

/// The current-user call maps 401/403/429/5xx and broken answers.
pub async fn current_user_error_mapping(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let faults = match faults(target, &target.endpoints.current_user) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let session = sign_in(provider, target).await?;
    let secrets = session_secrets(&session);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut cases = common_faults();
    cases.push((Fault::Status(401), "401 -> Unauthorized", |e| {
        matches!(e, AuthError::Unauthorized { .. })
    }));
    cases.push((Fault::Status(403), "403 -> Forbidden", |e| {
        matches!(e, AuthError::Forbidden { .. })
    }));
    expect_mapping(
        faults,
        &target.endpoints.current_user,
        cases,
        &secrets,
        || async { provider.current_user(&session).await.map(|_| ()) },
    )
    .await?;
    Ok(CheckResult::Passed)
}

/// Refresh maps 401 to [`AuthError::RefreshRejected`] (definitive) and 5xx, 429 and
/// broken answers to transient errors, so the manager keeps the session.
pub async fn refresh_error_mapping(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    if !provider.capabilities().refresh {
        return Ok(CheckResult::Skipped("the provider has no refresh".into()));
    }
    let Some(endpoint) = target.endpoints.refresh.clone() else {
        return Ok(CheckResult::Skipped(
            "the target names no refresh endpoint".into(),
        ));
    };
    let faults = match faults(target, &endpoint) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let session = sign_in(provider, target).await?;
    let secrets = session_secrets(&session);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut cases = common_faults();
    cases.push((Fault::Status(401), "401 -> RefreshRejected", |e| {
        matches!(e, AuthError::RefreshRejected)
    }));
    expect_mapping(faults, &endpoint, cases, &secrets, || async {
        provider.refresh(&session).await.map(|_| ())
    })
    .await?;
    // Transient failures must be classified transient, so a session survives them.
    for (fault, _, _) in common_faults() {
        faults.push(&endpoint, fault);
        if let Err(e) = provider.refresh(&session).await {
            ensure!(
                authmux_core::lifecycle::RefreshFailure::of(&e)
                    == authmux_core::lifecycle::RefreshFailure::Transient,
                "{endpoint}: {e:?} would end the session, but it is a transient failure"
            );
        }
        faults.clear(&endpoint);
    }
    Ok(CheckResult::Passed)
}
