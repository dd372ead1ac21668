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
//! refresh and rotation (two refreshes in a row, whatever the capabilities say, or a
//! typed "unsupported"); that the server saw the refresh token the session held; the
//! token lifetime against the one the target declares ([`Target::with_lifetime`]); that
//! the provider stamps tokens on its injected clock (a fake on a manual clock far from
//! the system clock, see [`far_clock`]); logout revokes; error mapping of
//! 401/403/409/429/5xx, malformed, truncated and oversized bodies and dropped
//! connections on the login, current-user and refresh endpoints (a 429 carrying its
//! retry delay where the dialect puts it, see [`Target::with_rate_limit_answer`]).
//!
//! And in every check, afterwards: the provider's `Debug`, and the `Display` and `Debug`
//! of every error, session, challenge, user and logout outcome it returned, must not
//! contain any secret: the target's passwords, every secret the fake issued (see
//! [`Recorder::secrets`]), every token of every session returned, and the token-shaped
//! marker inside the malformed-JSON fault's body
//! ([`MALFORMED_JSON_MARKER`]).
//!
//! A part of a check that cannot run (no fake, nothing recorded, nothing declared) is
//! its own check reported as [`CheckResult::Skipped`], never as passed.
//!
//! [`fault_matrix`] runs every endpoint against every fault through a session manager.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use authmux_core::provider::{
    OAuth, PasswordChange, PasswordReset, RequestTarget, SignInSessions, Signup,
};
use authmux_core::transport::Transport;
use authmux_core::{
    AuthError, AuthProvider, Capabilities, Credentials, LoginOutcome, LogoutOutcome, ManualClock,
    OtpChallenge, OtpCode, Session, TokenSet, TransportErrorKind, UserProfile, async_trait,
};
use http::HeaderMap;
use url::Url;

use crate::faults::{Fault, Faults};

pub mod fault_matrix;
use crate::recorder::Recorder;
use crate::server::{FakeResponse, MALFORMED_JSON_MARKER, ServerHandle};
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

/// Builds the dialect's `429` answer asking the client to retry after the given number
/// of seconds (see [`Target::with_rate_limit_answer`]).
#[derive(Clone)]
pub struct RateLimitAnswer<'a>(pub Arc<dyn Fn(u64) -> FakeResponse + Send + Sync + 'a>);

impl fmt::Debug for RateLimitAnswer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RateLimitAnswer(..)")
    }
}

/// The Unix time of [`far_clock`]: 2096-10-02, far from any system clock a test runs
/// on, so that a provider stamping tokens with the system clock cannot pass
/// [`injected_clock`].
pub const FAR_CLOCK_UNIX: u64 = 4_000_000_000;

/// A manual clock far from the system clock ([`FAR_CLOCK_UNIX`]). Start the fake and
/// the provider on clones of it (`FakeX::builder().clock(clock.clone())`,
/// `provider.with_clock(clock)`) so [`injected_clock`] can tell whether the provider
/// uses the clock it is given.
pub fn far_clock() -> ManualClock {
    ManualClock::at_unix(FAR_CLOCK_UNIX)
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
    /// The fake's server handle (its clock), when the target is a fake.
    pub server: Option<&'a ServerHandle>,
    /// The access-token lifetime the server grants (`None`: not declared, or the
    /// server states no expiry).
    pub lifetime: Option<Duration>,
    /// The dialect's 429 answer, when it carries the retry delay somewhere other than
    /// `Retry-After` (`None`: the handler's error envelope with `Retry-After`).
    pub rate_limit_answer: Option<RateLimitAnswer<'a>>,
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
            server: None,
            lifetime: None,
            rate_limit_answer: None,
        }
    }

    /// Declares the lifetime of the access tokens the server grants, so that
    /// [`token_lifetime`] checks `expires_at - issued_at` against it (a lifetime read
    /// in the wrong unit fails).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Declares where the dialect puts the retry delay of a `429`: `answer(secs)` builds
    /// the dialect's answer asking to retry after `secs` seconds (a body field, another
    /// header). The error-mapping checks inject it and expect
    /// [`AuthError::RateLimited`] with that delay.
    #[must_use]
    pub fn with_rate_limit_answer(
        mut self,
        answer: impl Fn(u64) -> FakeResponse + Send + Sync + 'a,
    ) -> Self {
        self.rate_limit_answer = Some(RateLimitAnswer(Arc::new(answer)));
        self
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
        self.server = Some(server);
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
        let settings = fake.settings();
        let target = Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(fake.server(), endpoints(e::LOGIN, e::ME, Some(e::REFRESH)))
            .with_otp_user(
                Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD),
                Arc::new(move || codes.clone()),
            );
        if settings.expiry == crate::linxio::ExpiryStyle::NoExpiry {
            target
        } else {
            target.with_lifetime(settings.access_lifetime)
        }
    }

    /// [`crate::FakeLinkUtm`] with its default users (LinkUTM login has no OTP step).
    pub fn linkutm(fake: &'a crate::FakeLinkUtm) -> Self {
        use crate::linkutm::endpoints as e;
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(fake.server(), endpoints(e::LOGIN, e::PROFILE, None))
            .with_lifetime(fake.settings().access_lifetime)
    }

    /// [`crate::directus::FakeDirectus`] with its default users (TOTP for the OTP user),
    /// declaring the access-token lifetime of the JSON and cookie modes; in session
    /// mode the token is the session, so declare `session_ttl` with
    /// [`Target::with_lifetime`].
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
            .with_lifetime(fake.settings().access_ttl)
    }
}

impl<'a> Target<'a> {
    /// [`crate::FakeOAuth2`] with its default users, for a provider that signs in with
    /// the password grant (other grants are driven by wrappers in the adapter's tests,
    /// which pass their own endpoints).
    pub fn oauth2(fake: &'a crate::FakeOAuth2) -> Self {
        use crate::oauth2::endpoints as e;
        Self::new(Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .with_server(
                fake.server(),
                endpoints(e::TOKEN, e::USERINFO, Some(e::TOKEN)),
            )
            .with_lifetime(fake.settings().access_lifetime)
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
    record("token_lifetime", token_lifetime(provider, target).await);
    record("injected_clock", injected_clock(provider, target).await);
    record("wrong_password", wrong_password(provider, target).await);
    record("otp_challenge", otp_challenge(provider, target).await);
    record(
        "refresh_and_rotation",
        refresh_and_rotation(provider, target).await,
    );
    record(
        "refresh_token_sent",
        refresh_token_sent(provider, target).await,
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

/// Declares the public checks: each runs its body against a [`Watched`] provider, then
/// scans what the provider printed and returned for secrets ([`Watched::verdict`]).
macro_rules! watched_checks {
    ($($(#[$doc:meta])* $name:ident => $body:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// Afterwards, the provider's `Debug` and everything it returned are scanned for
        /// secrets (see the [module docs](self)).
        pub async fn $name(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
            let watched = Watched::new(provider);
            let result = $body(&watched, target).await;
            watched.verdict(target, result)
        }
    )*};
}

/// A provider seen through the suite: every call is delegated, and the `Display` and
/// `Debug` of every error and the `Debug` of every value returned are kept, with the
/// tokens of every session returned, for [`Watched::verdict`] to scan.
struct Watched<'p> {
    inner: &'p dyn AuthProvider,
    texts: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
}

impl fmt::Debug for Watched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.inner, f)
    }
}

impl<'p> Watched<'p> {
    fn new(inner: &'p dyn AuthProvider) -> Self {
        Self {
            inner,
            texts: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    fn lock(m: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn text(&self, text: String) {
        Self::lock(&self.texts).push(text);
    }

    fn tokens_of(&self, tokens: &TokenSet) {
        let mut kept = Self::lock(&self.tokens);
        kept.push(tokens.access.expose_secret().to_owned());
        if let Some(r) = &tokens.refresh {
            kept.push(r.expose_secret().to_owned());
        }
    }

    fn see<T: fmt::Debug>(&self, result: Result<T, AuthError>) -> Result<T, AuthError> {
        match &result {
            Ok(value) => self.text(format!("{value:?}")),
            Err(e) => self.text(format!("{e} {e:?}")),
        }
        result
    }

    fn see_session(&self, result: Result<Session, AuthError>) -> Result<Session, AuthError> {
        if let Ok(session) = &result {
            self.tokens_of(&session.tokens);
        }
        self.see(result)
    }

    /// Every secret the check may have met: the target's passwords, what the fake
    /// issued and was shown, every token the provider returned, and the malformed-JSON
    /// fault's marker.
    fn secrets(&self, target: &Target<'_>) -> Vec<String> {
        let mut secrets = vec![
            target.user.password.expose_secret().to_owned(),
            MALFORMED_JSON_MARKER.to_owned(),
        ];
        if let Some(otp) = &target.otp_user {
            secrets.push(otp.credentials.password.expose_secret().to_owned());
        }
        if let Some(recorder) = target.recorder {
            secrets.extend(recorder.secrets());
            secrets.extend(recorder.refresh_tokens());
        }
        secrets.extend(Self::lock(&self.tokens).iter().cloned());
        secrets
    }

    /// The check's result, failed if the provider's `Debug` or anything it returned
    /// contains a secret.
    fn verdict(&self, target: &Target<'_>, result: Check) -> Check {
        let secrets = self.secrets(target);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let leak = no_secrets(
            &format!("{:?}", self.inner),
            &secrets,
            "the provider's Debug",
        )
        .and_then(|()| {
            Self::lock(&self.texts).iter().try_for_each(|text| {
                no_secrets(
                    text,
                    &secrets,
                    "an error's Display/Debug (or a returned value's Debug)",
                )
            })
        });
        match (result, leak) {
            (result, Ok(())) => result,
            (Err(failure), Err(leak)) => Err(format!("{failure}; and {leak}")),
            (Ok(_), Err(leak)) => Err(leak),
        }
    }
}

#[async_trait]
impl AuthProvider for Watched<'_> {
    fn dialect(&self) -> &str {
        self.inner.dialect()
    }
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn transport(&self) -> Arc<dyn Transport> {
        self.inner.transport()
    }
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let result = self.inner.login(credentials).await;
        if let Ok(LoginOutcome::Authenticated(session)) = &result {
            self.tokens_of(&session.tokens);
        }
        self.see(result)
    }
    async fn verify_otp(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        self.see_session(self.inner.verify_otp(challenge, code).await)
    }
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        self.see_session(self.inner.refresh(session).await)
    }
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        self.see(self.inner.logout(session).await)
    }
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        self.see(self.inner.current_user(session).await)
    }
    fn authorize(
        &self,
        session: &Session,
        target: RequestTarget<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(), AuthError> {
        self.inner.authorize(session, target, headers)
    }
    fn session_from_tokens(&self, tokens: TokenSet) -> Session {
        self.inner.session_from_tokens(tokens)
    }
    fn signup(&self) -> Option<&dyn Signup> {
        self.inner.signup()
    }
    fn password_reset(&self) -> Option<&dyn PasswordReset> {
        self.inner.password_reset()
    }
    fn password_change(&self) -> Option<&dyn PasswordChange> {
        self.inner.password_change()
    }
    fn sign_in_sessions(&self) -> Option<&dyn SignInSessions> {
        self.inner.sign_in_sessions()
    }
    fn oauth(&self) -> Option<&dyn OAuth> {
        self.inner.oauth()
    }
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

async fn login_and_current_user_unwatched(
    provider: &dyn AuthProvider,
    target: &Target<'_>,
) -> Check {
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

async fn wrong_password_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
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

async fn otp_challenge_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
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

async fn refresh_and_rotation_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
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
    // A second refresh from the first one's answer, whatever the capabilities say: an
    // adapter that keeps a refresh token the server rotated away logs its user out here.
    let again = provider.refresh(&refreshed).await.map_err(|e| {
        format!(
            "a second refresh, with the first refresh's session, failed: {e:?} (was a rotated \
             refresh token kept?)"
        )
    })?;
    provider
        .current_user(&again)
        .await
        .map_err(|e| format!("current_user after two refreshes: {e:?}"))?;
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

/// The server saw exactly the refresh token the session held. Skipped when the target
/// records no refresh tokens (not a fake, or a fake whose refresh handler does not call
/// [`Recorder::record_refresh_token`]), or the dialect has no refresh token.
async fn refresh_token_sent_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    if !provider.capabilities().refresh {
        return Ok(CheckResult::Skipped("the provider has no refresh".into()));
    }
    let Some(recorder) = target.recorder else {
        return Ok(CheckResult::Skipped(
            "the target records no requests (not a fake)".into(),
        ));
    };
    let session = sign_in(provider, target).await?;
    let Some(sent) = session.tokens.refresh.clone() else {
        return Ok(CheckResult::Skipped(
            "the session holds no refresh token".into(),
        ));
    };
    let before = recorder.refresh_tokens().len();
    provider
        .refresh(&session)
        .await
        .map_err(|e| format!("refresh failed: {e:?}"))?;
    let seen = recorder.refresh_tokens();
    if seen.len() <= before {
        return Ok(CheckResult::Skipped(
            "the fake recorded no refresh token (its refresh handler does not call \
             Recorder::record_refresh_token)"
                .into(),
        ));
    }
    ensure!(
        seen[before..].iter().any(|t| t == sent.expose_secret()),
        "the server did not see the session's refresh token"
    );
    Ok(CheckResult::Passed)
}

/// How far `expires_at - issued_at` may be from the declared lifetime: servers state
/// expiry in whole seconds, and adapters map it through the `Date` header.
fn lifetime_tolerance(lifetime: Duration) -> Duration {
    (lifetime / 100).max(Duration::from_secs(2))
}

fn lifetime_matches(tokens: &TokenSet, declared: Duration, what: &str) -> Result<(), String> {
    let Some(expires_at) = tokens.expires_at else {
        return Err(format!(
            "{what}: the target declares a {declared:?} lifetime, but the session has no expiry"
        ));
    };
    let got = expires_at
        .duration_since(tokens.issued_at)
        .unwrap_or(Duration::ZERO);
    let off = got.abs_diff(declared);
    ensure!(
        off <= lifetime_tolerance(declared),
        "{what}: the token lives {got:?} (expires_at - issued_at), but the server grants \
         {declared:?} (a lifetime read in the wrong unit?)"
    );
    Ok(())
}

/// The session's lifetime (`expires_at - issued_at`) is the one the target declares
/// ([`Target::with_lifetime`]), after login and after a refresh. Skipped when the
/// target declares none.
async fn token_lifetime_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let Some(declared) = target.lifetime else {
        return Ok(CheckResult::Skipped(
            "the target declares no token lifetime (Target::with_lifetime)".into(),
        ));
    };
    let session = sign_in(provider, target).await?;
    lifetime_matches(&session.tokens, declared, "after login")?;
    if provider.capabilities().refresh {
        let refreshed = provider
            .refresh(&session)
            .await
            .map_err(|e| format!("refresh failed: {e:?}"))?;
        lifetime_matches(&refreshed.tokens, declared, "after a refresh")?;
    }
    Ok(CheckResult::Passed)
}

/// How far from the system clock the fake's clock must be for [`injected_clock`] to
/// tell a provider that ignores its clock from one that uses it.
const FAR_FROM_SYSTEM: Duration = Duration::from_secs(24 * 3600);

/// How far a session's `issued_at` may be from the injected clock.
const STAMP_TOLERANCE: Duration = Duration::from_secs(60);

fn distance(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or(Duration::ZERO)
}

fn stamped_on(tokens: &TokenSet, clock_now: SystemTime, what: &str) -> Result<(), String> {
    let off = distance(tokens.issued_at, clock_now);
    ensure!(
        off <= STAMP_TOLERANCE,
        "{what}: the session was issued {off:?} away from the injected clock: the provider \
         ignores the clock it was given (take it with `with_clock`, use it for every `now`)"
    );
    if let Some(expires_at) = tokens.expires_at {
        ensure!(
            expires_at > clock_now,
            "{what}: the fresh token is already expired on the injected clock"
        );
    }
    Ok(())
}

/// The provider stamps tokens with its injected clock: against a fake whose clock is far
/// from the system clock (see [`far_clock`]), a fresh session is issued at the fake's
/// time, after login and after a refresh. Skipped when the target is not a fake or the
/// fake runs near the system clock.
async fn injected_clock_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let Some(server) = target.server else {
        return Ok(CheckResult::Skipped(
            "the target is not a fake (no clock to compare with)".into(),
        ));
    };
    if distance(server.clock_now(), SystemTime::now()) < FAR_FROM_SYSTEM {
        return Ok(CheckResult::Skipped(
            "the fake runs on (or near) the system clock: start the fake and the provider \
             on one manual clock far from it (conformance::far_clock())"
                .into(),
        ));
    }
    let session = sign_in(provider, target).await?;
    stamped_on(&session.tokens, server.clock_now(), "after login")?;
    if provider.capabilities().refresh {
        let refreshed = provider
            .refresh(&session)
            .await
            .map_err(|e| format!("refresh failed: {e:?}"))?;
        stamped_on(&refreshed.tokens, server.clock_now(), "after a refresh")?;
    }
    Ok(CheckResult::Passed)
}

async fn logout_revokes_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
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
    // What can be observed of the revocation; nothing observed is not "passed".
    let mut observed = false;
    if caps.refresh && session.tokens.refresh.is_some() {
        observed = true;
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
        observed = true;
        match provider.current_user(&session).await {
            Err(e) if matches!(e, AuthError::Unauthorized { .. }) || e.needs_sign_in() => {}
            other => {
                return Err(format!(
                    "current_user after revoking the sign-in gave {other:?}"
                ));
            }
        }
    }
    if !observed {
        return Ok(CheckResult::Skipped(format!(
            "logout answered {outcome:?}, but nothing shows the revocation: no refresh token \
             to reuse, and the access token may live on until it expires"
        )));
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

/// The faults every endpoint is checked with, and the error each must map to. The 429
/// asks for a 7-second wait where the dialect puts it ([`Target::rate_limit_answer`]).
fn common_faults(target: &Target<'_>) -> Vec<FaultCase> {
    let rate_limited = match &target.rate_limit_answer {
        Some(answer) => Fault::Respond((answer.0)(7)),
        None => Fault::RateLimited {
            retry_after_secs: 7,
        },
    };
    vec![
        (
            rate_limited,
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

async fn login_error_mapping_unwatched(provider: &dyn AuthProvider, target: &Target<'_>) -> Check {
    let faults = match faults(target, &target.endpoints.login) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let endpoint = target.endpoints.login.as_str();
    let mut cases = common_faults(target);
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

async fn current_user_error_mapping_unwatched(
    provider: &dyn AuthProvider,
    target: &Target<'_>,
) -> Check {
    let faults = match faults(target, &target.endpoints.current_user) {
        Ok(f) => f,
        Err(skip) => return Ok(skip),
    };
    let session = sign_in(provider, target).await?;
    let secrets = session_secrets(&session);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut cases = common_faults(target);
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

async fn refresh_error_mapping_unwatched(
    provider: &dyn AuthProvider,
    target: &Target<'_>,
) -> Check {
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
    let mut cases = common_faults(target);
    cases.push((Fault::Status(401), "401 -> RefreshRejected", |e| {
        matches!(e, AuthError::RefreshRejected)
    }));
    expect_mapping(faults, &endpoint, cases, &secrets, || async {
        provider.refresh(&session).await.map(|_| ())
    })
    .await?;
    // Transient failures must be classified transient, so a session survives them.
    for (fault, _, _) in common_faults(target) {
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

watched_checks! {
    /// Login yields a session for this provider and URL whose `Debug` hides its tokens, and
    /// the current user is the one who signed in.
    login_and_current_user => login_and_current_user_unwatched;
    /// A wrong password is [`AuthError::InvalidCredentials`] and the error never contains
    /// the password.
    wrong_password => wrong_password_unwatched;
    /// A login that needs a one-time code yields a challenge that hides the password; a
    /// wrong code is [`AuthError::InvalidOtp`] and leaves the challenge usable; the right
    /// code yields a working session.
    otp_challenge => otp_challenge_unwatched;
    /// Refresh yields new tokens, twice in a row (the second from the first's answer),
    /// whatever the capabilities say; with rotation the old refresh token is dead;
    /// without refresh, a typed "unsupported".
    refresh_and_rotation => refresh_and_rotation_unwatched;
    /// The server saw exactly the refresh token the session held. Skipped when the
    /// target records no refresh tokens (not a fake, or a fake whose refresh handler does
    /// not call [`Recorder::record_refresh_token`]), or the dialect has no refresh token.
    refresh_token_sent => refresh_token_sent_unwatched;
    /// The session's lifetime (`expires_at - issued_at`) is the one the target declares
    /// ([`Target::with_lifetime`]), after login and after a refresh. Skipped when the
    /// target declares none.
    token_lifetime => token_lifetime_unwatched;
    /// The provider stamps tokens with its injected clock: against a fake whose clock is
    /// far from the system clock (see [`far_clock`]), a fresh session is issued at the
    /// fake's time, after login and after a refresh. Skipped when the target is not a
    /// fake or the fake runs near the system clock.
    injected_clock => injected_clock_unwatched;
    /// Logout ends the session on the server: its tokens stop working.
    logout_revokes => logout_revokes_unwatched;
    /// Login maps 401/403/409/429/5xx and broken answers to the right typed errors.
    login_error_mapping => login_error_mapping_unwatched;
    /// The current-user call maps 401/403/429/5xx and broken answers.
    current_user_error_mapping => current_user_error_mapping_unwatched;
    /// Refresh maps 401 to [`AuthError::RefreshRejected`] (definitive) and 5xx, 429 and
    /// broken answers to transient errors, so the manager keeps the session.
    refresh_error_mapping => refresh_error_mapping_unwatched;
}
