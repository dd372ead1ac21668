//! `FakeLinkUtm`: a fake LinkUTM auth server (seed 002, `dialects.md`), a NestJS-style
//! API under `/api/v1/auth/*`.
//!
//! # Endpoints ([`endpoints`])
//! Status codes follow NestJS defaults: every `POST` answers `201` except `login`, which
//! answers `200` (as `@HttpCode(200)` login routes do); a client must accept any 2xx.
//! - `POST send-otp` `{email, name, password}` → `201 {"message"}`; mails a 6-digit code
//!   (read it with [`FakeLinkUtm::last_otp`]); `409` when the email is registered.
//! - `POST verify-otp` `{email, otp}` → `201 {token, user: {id, name, email}}`; creates
//!   the account and a session. Wrong, expired or unrequested code: `400`.
//! - `POST resend-otp` `{email}` → `201 {"message"}`; a new code replaces the old one.
//! - `POST login` `{email, password}` → `200 {token, user}`; `401` for wrong credentials,
//!   `403` for a forbidden or suspended user.
//! - `POST forgot-password` `{email}` → `201 {"message"}` whether or not the email is
//!   known; a known one gets a reset token in the mailbox ([`FakeLinkUtm::last_reset_token`]).
//! - `POST reset-password` `{token, newPassword}` → `201 {"message"}`; the token works
//!   once, for an hour; a bad, used or expired one is `401`. A reset signs the user out
//!   everywhere (revokes every session).
//! - `POST change-password` (bearer) `{currentPassword, newPassword}` → `201 {"message"}`;
//!   a wrong current password is `401`. Other sessions stay signed in.
//! - `GET profile` (bearer) → `200 {id, name, email}`.
//! - `GET sessions` (bearer) → `200 [{id, userAgent, ipAddress, createdAt, lastActiveAt,
//!   current}]`: a top-level array of the user's live sessions, oldest first, timestamps
//!   ISO-8601; `current` marks the caller's own session; `lastActiveAt` moves with every
//!   authorized request of that session. (The docs only say the User-Agent is captured;
//!   the rest is what a sessions page of this server family shows.)
//! - `DELETE sessions/:id` (bearer) → `200 {"message"}`; `404` for an unknown session or
//!   one of another user. `DELETE sessions` (bearer) → `200 {"message", "count"}`: every
//!   session of the user, the caller's included, is revoked.
//! - `GET google` → `302` to a fake Google consent URL ([`LinkUtmSettings::google_authorize_url`]).
//! - `GET google/callback?code=` → `302` to `<frontend_url>/auth/google/callback?token=<jwt>`
//!   for a code from [`FakeLinkUtm::google_authorization_code`] (creating the user on
//!   first sign-in); a bad or missing code is `401`. [`FakeLinkUtm::simulate_google_login`]
//!   does the whole dance without HTTP and returns the callback URL.
//! - `GET /api/v1/links` (bearer) → `200 {"workspaceId", "data": [...]}`: an ordinary
//!   API route that requires `x-workspace-id` (`400` without it), as the non-auth
//!   LinkUTM API does. Auth routes never look at that header.
//!
//! # Errors
//! Every error is `{"statusCode": n, "message": ..., "error": "<reason phrase>"}`. In
//! validation errors (`400` from a request body check) `message` is an array of
//! class-validator strings such as `"password must be longer than or equal to 8
//! characters"`; otherwise it is a string. `401` covers a missing, invalid, expired or
//! revoked JWT. Over the rate limit (default 100 requests a minute per IP, measured on
//! the injected clock) the answer is `429` with `Retry-After`.
//!
//! # Tokens
//! JWT only, no refresh token. Claims: `sub` (user UUID), `email`, `sid` (session id),
//! `iat`, `exp`, `jti`. A revoked session's tokens are refused with `401`.

use std::collections::HashMap;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use authmux_core::clock::{Clock, SystemClock};
use http::StatusCode;
use serde_json::{Map, Value, json};
use url::Url;

use crate::families::{FamilyId, FamilyInfo, TokenFamilies};
use crate::jwt::{Claims, JwtError, JwtKeys, iso8601_millis, random_token};
use crate::server::{
    Context, FakeRequest, FakeResponse, Handler, RateLimit, ServerConfig, ServerHandle,
};
use crate::users::{User, Users};

/// The endpoint names, for counters and faults.
pub mod endpoints {
    /// `POST /api/v1/auth/send-otp`
    pub const SEND_OTP: &str = "POST /api/v1/auth/send-otp";
    /// `POST /api/v1/auth/verify-otp`
    pub const VERIFY_OTP: &str = "POST /api/v1/auth/verify-otp";
    /// `POST /api/v1/auth/resend-otp`
    pub const RESEND_OTP: &str = "POST /api/v1/auth/resend-otp";
    /// `POST /api/v1/auth/login`
    pub const LOGIN: &str = "POST /api/v1/auth/login";
    /// `POST /api/v1/auth/forgot-password`
    pub const FORGOT_PASSWORD: &str = "POST /api/v1/auth/forgot-password";
    /// `POST /api/v1/auth/reset-password`
    pub const RESET_PASSWORD: &str = "POST /api/v1/auth/reset-password";
    /// `POST /api/v1/auth/change-password`
    pub const CHANGE_PASSWORD: &str = "POST /api/v1/auth/change-password";
    /// `GET /api/v1/auth/profile`
    pub const PROFILE: &str = "GET /api/v1/auth/profile";
    /// `GET /api/v1/auth/sessions`
    pub const SESSIONS: &str = "GET /api/v1/auth/sessions";
    /// `DELETE /api/v1/auth/sessions/:id`
    pub const REVOKE_SESSION: &str = "DELETE /api/v1/auth/sessions/:id";
    /// `DELETE /api/v1/auth/sessions`
    pub const REVOKE_ALL_SESSIONS: &str = "DELETE /api/v1/auth/sessions";
    /// `GET /api/v1/auth/google`
    pub const GOOGLE: &str = "GET /api/v1/auth/google";
    /// `GET /api/v1/auth/google/callback`
    pub const GOOGLE_CALLBACK: &str = "GET /api/v1/auth/google/callback";
    /// `GET /api/v1/links` (a protected non-auth route that needs `x-workspace-id`)
    pub const LINKS: &str = "GET /api/v1/links";
}

const ENDPOINTS: &[&str] = &[
    endpoints::SEND_OTP,
    endpoints::VERIFY_OTP,
    endpoints::RESEND_OTP,
    endpoints::LOGIN,
    endpoints::FORGOT_PASSWORD,
    endpoints::RESET_PASSWORD,
    endpoints::CHANGE_PASSWORD,
    endpoints::PROFILE,
    endpoints::SESSIONS,
    endpoints::REVOKE_SESSION,
    endpoints::REVOKE_ALL_SESSIONS,
    endpoints::GOOGLE,
    endpoints::GOOGLE_CALLBACK,
    endpoints::LINKS,
];

/// The minimum password length the server enforces.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The minimum OTP length the server enforces.
pub const MIN_OTP_LEN: usize = 6;
/// The default rate limit: 100 requests a minute per IP.
pub const DEFAULT_RATE_LIMIT: u32 = 100;

/// Behaviour settings; change them with [`FakeLinkUtm::update_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUtmSettings {
    /// JWT lifetime (default 1 day).
    pub access_lifetime: Duration,
    /// How long a signup code stays valid (default 10 minutes).
    pub otp_lifetime: Duration,
    /// How long a reset token stays valid (default 1 hour).
    pub reset_token_lifetime: Duration,
    /// Where the Google callback sends the browser (default `http://localhost:3000`).
    pub frontend_url: String,
    /// The fake Google consent page `GET google` redirects to
    /// (default `https://accounts.google.test/o/oauth2/v2/auth`, a name that never resolves).
    pub google_authorize_url: String,
}

impl Default for LinkUtmSettings {
    fn default() -> Self {
        Self {
            access_lifetime: Duration::from_secs(24 * 3600),
            otp_lifetime: Duration::from_secs(600),
            reset_token_lifetime: Duration::from_secs(3600),
            frontend_url: "http://localhost:3000".to_owned(),
            google_authorize_url: "https://accounts.google.test/o/oauth2/v2/auth".to_owned(),
        }
    }
}

/// What the fake "sent" by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    /// A signup code (from `send-otp` or `resend-otp`).
    SignupOtp {
        /// The recipient.
        to: String,
        /// The code.
        code: String,
    },
    /// A password-reset link.
    PasswordReset {
        /// The recipient.
        to: String,
        /// The reset token.
        token: String,
        /// The link: `<frontend_url>/reset-password?token=<token>`.
        link: String,
    },
}

/// A session as [`FakeLinkUtm::sessions_of`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUtmSession {
    /// The session id (as in `GET sessions` and the JWT's `sid`).
    pub id: String,
    /// The token family behind it.
    pub family: FamilyInfo,
}

/// Builds a [`FakeLinkUtm`].
#[derive(Debug)]
pub struct LinkUtmBuilder {
    users: Vec<User>,
    settings: LinkUtmSettings,
    clock: Arc<dyn Clock>,
    port: u16,
    rate_limit: Option<RateLimit>,
}

impl Default for LinkUtmBuilder {
    fn default() -> Self {
        Self {
            users: Users::default_list(),
            settings: LinkUtmSettings::default(),
            clock: Arc::new(SystemClock),
            port: 0,
            rate_limit: Some(RateLimit::per_minute(DEFAULT_RATE_LIMIT)),
        }
    }
}

impl LinkUtmBuilder {
    /// Replaces the default users.
    #[must_use]
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self
    }

    /// Adds a user.
    #[must_use]
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// The starting settings.
    #[must_use]
    pub fn settings(mut self, settings: LinkUtmSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The JWT lifetime.
    #[must_use]
    pub fn access_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.access_lifetime = lifetime;
        self
    }

    /// The frontend URL the Google callback redirects to.
    #[must_use]
    pub fn frontend_url(mut self, url: &str) -> Self {
        url.clone_into(&mut self.settings.frontend_url);
        self
    }

    /// Requests allowed per minute and IP (default 100); `None` turns the limit off.
    #[must_use]
    pub fn rate_limit_per_minute(mut self, max: Option<u32>) -> Self {
        self.rate_limit = max.map(RateLimit::per_minute);
        self
    }

    /// The clock (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The port (default 0: a free one).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(self) -> io::Result<FakeLinkUtm> {
        let state = Arc::new(LinkUtmState {
            users: Users::from_list(self.users),
            keys: JwtKeys::random(),
            families: TokenFamilies::default(),
            settings: Mutex::new(self.settings),
            data: Mutex::new(Data::default()),
        });
        let config = ServerConfig::new()
            .port(self.port)
            .clock(self.clock)
            .rate_limit(self.rate_limit)
            .name("fake-linkutm");
        let server = ServerHandle::start(Arc::clone(&state), config)?;
        Ok(FakeLinkUtm { server, state })
    }
}

/// A running fake LinkUTM server. Dereferences to [`ServerHandle`] for `base_url()`,
/// `recorder()`, `faults()`, `set_rate_limit`, the clock offset and shutdown (on drop).
///
/// ```
/// use authmux_testkit::linkutm::FakeLinkUtm;
///
/// let linkutm = FakeLinkUtm::start().unwrap();
/// let callback = linkutm.simulate_google_login("gina@example.com", "Gina").unwrap();
/// assert!(callback.as_str().starts_with("http://localhost:3000/auth/google/callback?token="));
/// assert_eq!(linkutm.sessions_of("gina@example.com").len(), 1);
/// ```
#[derive(Debug)]
pub struct FakeLinkUtm {
    server: ServerHandle,
    state: Arc<LinkUtmState>,
}

impl Deref for FakeLinkUtm {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.server
    }
}

impl FakeLinkUtm {
    /// Starts a fake with the default users and settings on a free port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// A builder for users, settings, rate limit, clock and port.
    pub fn builder() -> LinkUtmBuilder {
        LinkUtmBuilder::default()
    }

    /// The shared server handle.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Gives up the fake-specific accessors and keeps only the server (which goes on
    /// serving: the handler owns the state). For a standalone run:
    /// `fake.into_server().serve_forever()`.
    pub fn into_server(self) -> ServerHandle {
        self.server
    }

    /// The user table (accounts created by `verify-otp` or Google show up here).
    pub fn users(&self) -> &Users {
        &self.state.users
    }

    /// The token families (one per session).
    pub fn families(&self) -> &TokenFamilies {
        &self.state.families
    }

    /// The signing keys (to forge or inspect tokens).
    pub fn jwt_keys(&self) -> &JwtKeys {
        &self.state.keys
    }

    /// The current settings.
    pub fn settings(&self) -> LinkUtmSettings {
        self.state.settings().clone()
    }

    /// Changes the settings.
    pub fn update_settings(&self, change: impl FnOnce(&mut LinkUtmSettings)) {
        change(&mut self.state.settings());
    }

    /// Every mail "sent", in order.
    pub fn mailbox(&self) -> Vec<Mail> {
        self.state.data().mailbox.clone()
    }

    /// The last signup code mailed to `email`.
    pub fn last_otp(&self, email: &str) -> Option<String> {
        self.state
            .data()
            .mailbox
            .iter()
            .rev()
            .find_map(|m| match m {
                Mail::SignupOtp { to, code } if to.eq_ignore_ascii_case(email) => {
                    Some(code.clone())
                }
                _ => None,
            })
    }

    /// The last password-reset token mailed to `email`.
    pub fn last_reset_token(&self, email: &str) -> Option<String> {
        self.state
            .data()
            .mailbox
            .iter()
            .rev()
            .find_map(|m| match m {
                Mail::PasswordReset { to, token, .. } if to.eq_ignore_ascii_case(email) => {
                    Some(token.clone())
                }
                _ => None,
            })
    }

    /// The URL a browser opens to start Google sign-in.
    pub fn google_start_url(&self) -> String {
        self.server.url("/api/v1/auth/google")
    }

    /// A one-time code that `GET google/callback?code=` accepts, as if Google had
    /// authenticated `email` (the account is created on first use, named `name`).
    pub fn google_authorization_code(&self, email: &str, name: &str) -> String {
        let code = random_token(24);
        self.state
            .data()
            .google_codes
            .insert(code.clone(), (email.to_owned(), name.to_owned()));
        code
    }

    /// Simulates a finished Google sign-in of `email` and returns the URL the browser
    /// would land on: `<frontend_url>/auth/google/callback?token=<jwt>`. The session is
    /// recorded with the User-Agent `Google OAuth (simulated)`.
    pub fn simulate_google_login(&self, email: &str, name: &str) -> Option<Url> {
        let token = self.state.google_sign_in(
            email,
            name,
            self.server.now(),
            Some("Google OAuth (simulated)"),
            None,
        );
        self.state.frontend_callback(&token).ok()
    }

    /// Signs a user in without HTTP (e.g. to hydrate a client); returns the JWT.
    pub fn issue_token(&self, email: &str, user_agent: Option<&str>) -> Option<String> {
        let user = self.state.users.by_email(email)?;
        Some(
            self.state
                .sign_in(&user, self.server.now(), user_agent, None),
        )
    }

    /// The live sessions of a user, oldest first.
    pub fn sessions_of(&self, email: &str) -> Vec<LinkUtmSession> {
        let Some(user) = self.state.users.by_email(email) else {
            return Vec::new();
        };
        let data = self.state.data();
        self.state
            .families
            .live_for(&user.id)
            .into_iter()
            .filter_map(|family| {
                let id = data.session_ids.get(&family.id)?.clone();
                Some(LinkUtmSession { id, family })
            })
            .collect()
    }
}

#[derive(Debug)]
struct PendingSignup {
    name: String,
    password: String,
    code: String,
    sent_at: SystemTime,
}

#[derive(Debug)]
struct ResetToken {
    user_id: String,
    expires_at: SystemTime,
    used: bool,
}

#[derive(Debug, Default)]
struct Data {
    pending: HashMap<String, PendingSignup>,
    mailbox: Vec<Mail>,
    resets: HashMap<String, ResetToken>,
    google_codes: HashMap<String, (String, String)>,
    session_ids: HashMap<FamilyId, String>,
}

#[derive(Debug)]
struct LinkUtmState {
    users: Users,
    keys: JwtKeys,
    families: TokenFamilies,
    settings: Mutex<LinkUtmSettings>,
    data: Mutex<Data>,
}

type Reply = Result<FakeResponse, FakeResponse>;

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

fn error_body(status: StatusCode, message: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        &json!({ "statusCode": status.as_u16(), "message": message, "error": reason(status) }),
    )
}

fn validation_error(messages: Vec<String>) -> FakeResponse {
    FakeResponse::json(
        StatusCode::BAD_REQUEST,
        &json!({ "statusCode": 400, "message": messages, "error": "Bad Request" }),
    )
}

fn unauthorized(message: &str) -> FakeResponse {
    error_body(StatusCode::UNAUTHORIZED, message)
}

/// class-validator-style checks over a JSON body, collecting every message.
struct Checks<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Checks<'a> {
    fn parse(req: &FakeRequest) -> Result<Map<String, Value>, FakeResponse> {
        req.json_object().map_err(|m| validation_error(vec![m]))
    }

    fn of(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Vec::new(),
        }
    }

    fn string(&mut self, field: &str) -> Option<&'a str> {
        match self.body.get(field) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn not_empty(&mut self, field: &str) -> String {
        match self.string(field) {
            Some(s) if !s.is_empty() => s.to_owned(),
            Some(_) => {
                self.errors.push(format!("{field} should not be empty"));
                String::new()
            }
            None => {
                self.errors.push(format!("{field} should not be empty"));
                self.errors.push(format!("{field} must be a string"));
                String::new()
            }
        }
    }

    fn email(&mut self, field: &str) -> String {
        let value = self.string(field).unwrap_or_default().to_owned();
        let valid = value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !value.contains(' ');
        if !valid {
            if value.is_empty() {
                self.errors.push(format!("{field} should not be empty"));
            }
            self.errors.push(format!("{field} must be an email"));
        }
        value
    }

    fn min_len(&mut self, field: &str, min: usize) -> String {
        match self.string(field) {
            Some(s) if s.chars().count() >= min => s.to_owned(),
            Some(_) => {
                self.errors.push(format!(
                    "{field} must be longer than or equal to {min} characters"
                ));
                String::new()
            }
            None => {
                self.errors.push(format!(
                    "{field} must be longer than or equal to {min} characters"
                ));
                self.errors.push(format!("{field} must be a string"));
                String::new()
            }
        }
    }

    fn finish(self) -> Result<(), FakeResponse> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(validation_error(self.errors))
        }
    }
}

fn user_json(user: &User) -> Value {
    json!({ "id": user.id, "name": user.name, "email": user.email })
}

fn random_code() -> String {
    let code = format!("{:06}", fastrand::u32(0..1_000_000));
    crate::secret_log::record(&code);
    code
}

impl LinkUtmState {
    fn settings(&self) -> MutexGuard<'_, LinkUtmSettings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session and returns its JWT.
    fn sign_in(
        &self,
        user: &User,
        now: SystemTime,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> String {
        let family = self.families.start(&user.id, now, user_agent, ip);
        let sid = crate::jwt::random_uuid();
        self.data().session_ids.insert(family, sid.clone());
        let mut extra = Map::new();
        extra.insert("email".into(), Value::from(user.email.clone()));
        extra.insert("sid".into(), Value::from(sid));
        let lifetime = self.settings().access_lifetime;
        let (token, claims) = self.keys.issue(&user.id, now, Some(lifetime), extra);
        self.families.register_access(family, &claims.jti);
        token
    }

    fn sign_in_reply(
        &self,
        user: &User,
        req: &FakeRequest,
        cx: &Context<'_>,
        status: StatusCode,
    ) -> FakeResponse {
        let ip = req.peer().ip().to_string();
        let token = self.sign_in(user, cx.now(), req.user_agent(), Some(&ip));
        FakeResponse::json(status, &json!({ "token": token, "user": user_json(user) }))
    }

    fn google_sign_in(
        &self,
        email: &str,
        name: &str,
        now: SystemTime,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> String {
        let user = self.users.by_email(email).unwrap_or_else(|| {
            self.users
                .add(User::new(email, &random_token(32)).name(name))
        });
        self.sign_in(&user, now, user_agent, ip)
    }

    fn frontend_callback(&self, token: &str) -> Result<Url, url::ParseError> {
        let base = self.settings().frontend_url.clone();
        let mut url = Url::parse(base.trim_end_matches('/'))?;
        let path = format!("{}/auth/google/callback", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut().clear().append_pair("token", token);
        Ok(url)
    }

    /// The caller's user, claims and session family.
    fn authenticate(
        &self,
        req: &FakeRequest,
        cx: &Context<'_>,
    ) -> Result<(User, Claims, Option<FamilyId>), FakeResponse> {
        let token = req.bearer().ok_or_else(|| unauthorized("Unauthorized"))?;
        let claims = self.keys.verify(token, cx.now()).map_err(|e| match e {
            JwtError::Expired => unauthorized("Token expired"),
            JwtError::Invalid => unauthorized("Invalid token"),
        })?;
        if !self.families.is_access_live(&claims.jti) {
            return Err(unauthorized("Session has been revoked"));
        }
        let user = self
            .users
            .by_id(&claims.sub)
            .ok_or_else(|| unauthorized("Unauthorized"))?;
        let family = self.families.family_of_access(&claims.jti);
        if let Some(f) = family {
            self.families.touch(f, cx.now());
        }
        Ok((user, claims, family))
    }

    fn send_otp(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let email = c.email("email");
        let name = c.not_empty("name");
        let password = c.min_len("password", MIN_PASSWORD_LEN);
        c.finish()?;
        if self.users.by_email(&email).is_some() {
            return Err(error_body(StatusCode::CONFLICT, "Email already registered"));
        }
        let code = random_code();
        let mut data = self.data();
        data.pending.insert(
            email.to_ascii_lowercase(),
            PendingSignup {
                name,
                password,
                code: code.clone(),
                sent_at: cx.now(),
            },
        );
        data.mailbox.push(Mail::SignupOtp { to: email, code });
        Ok(FakeResponse::json(
            StatusCode::CREATED,
            &json!({ "message": "OTP sent to your email" }),
        ))
    }

    fn resend_otp(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let email = c.email("email");
        c.finish()?;
        if self.users.by_email(&email).is_some() {
            return Err(error_body(StatusCode::CONFLICT, "Email already registered"));
        }
        let code = random_code();
        let mut data = self.data();
        let Some(pending) = data.pending.get_mut(&email.to_ascii_lowercase()) else {
            return Err(error_body(
                StatusCode::BAD_REQUEST,
                "No pending signup for this email",
            ));
        };
        pending.code.clone_from(&code);
        pending.sent_at = cx.now();
        data.mailbox.push(Mail::SignupOtp { to: email, code });
        Ok(FakeResponse::json(
            StatusCode::CREATED,
            &json!({ "message": "OTP resent to your email" }),
        ))
    }

    fn verify_otp(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let email = c.email("email");
        let otp = c.min_len("otp", MIN_OTP_LEN);
        c.finish()?;
        if self.users.by_email(&email).is_some() {
            return Err(error_body(StatusCode::CONFLICT, "Email already registered"));
        }
        let key = email.to_ascii_lowercase();
        let lifetime = self.settings().otp_lifetime;
        let pending = {
            let mut data = self.data();
            let Some(pending) = data.pending.get(&key) else {
                return Err(error_body(StatusCode::BAD_REQUEST, "Invalid OTP"));
            };
            if cx.now().duration_since(pending.sent_at).unwrap_or_default() >= lifetime {
                return Err(error_body(StatusCode::BAD_REQUEST, "OTP has expired"));
            }
            if pending.code != otp {
                return Err(error_body(StatusCode::BAD_REQUEST, "Invalid OTP"));
            }
            data.pending
                .remove(&key)
                .ok_or_else(|| error_body(StatusCode::BAD_REQUEST, "Invalid OTP"))?
        };
        let user = self
            .users
            .add(User::new(&email, &pending.password).name(&pending.name));
        Ok(self.sign_in_reply(&user, req, cx, StatusCode::CREATED))
    }

    fn login(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let email = c.email("email");
        let password = c.not_empty("password");
        c.finish()?;
        let user = self
            .users
            .by_email(&email)
            .filter(|u| u.password == password)
            .ok_or_else(|| unauthorized("Invalid credentials"))?;
        if user.forbidden || user.suspended {
            return Err(error_body(StatusCode::FORBIDDEN, "Account is disabled"));
        }
        Ok(self.sign_in_reply(&user, req, cx, StatusCode::OK))
    }

    fn forgot_password(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let email = c.email("email");
        c.finish()?;
        if let Some(user) = self.users.by_email(&email) {
            let token = random_token(40);
            let settings = self.settings().clone();
            let link = format!(
                "{}/reset-password?token={token}",
                settings.frontend_url.trim_end_matches('/')
            );
            let mut data = self.data();
            data.resets.insert(
                token.clone(),
                ResetToken {
                    user_id: user.id.clone(),
                    expires_at: cx.now() + settings.reset_token_lifetime,
                    used: false,
                },
            );
            data.mailbox.push(Mail::PasswordReset {
                to: user.email,
                token,
                link,
            });
        }
        Ok(FakeResponse::json(
            StatusCode::CREATED,
            &json!({ "message": "If that email is registered, a password reset link has been sent" }),
        ))
    }

    fn reset_password(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let token = c.not_empty("token");
        let new_password = c.min_len("newPassword", MIN_PASSWORD_LEN);
        c.finish()?;
        let user_id = {
            let mut data = self.data();
            let entry = data
                .resets
                .get_mut(&token)
                .filter(|r| !r.used && cx.now() < r.expires_at)
                .ok_or_else(|| unauthorized("Invalid or expired reset token"))?;
            entry.used = true;
            entry.user_id.clone()
        };
        self.users.update(&user_id, |u| u.password = new_password);
        self.families.revoke_subject(&user_id);
        Ok(FakeResponse::json(
            StatusCode::CREATED,
            &json!({ "message": "Password has been reset" }),
        ))
    }

    fn change_password(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, _) = self.authenticate(req, cx)?;
        let body = Checks::parse(req)?;
        let mut c = Checks::of(&body);
        let current = c.not_empty("currentPassword");
        let new_password = c.min_len("newPassword", MIN_PASSWORD_LEN);
        c.finish()?;
        if user.password != current {
            return Err(unauthorized("Current password is incorrect"));
        }
        self.users.update(&user.id, |u| u.password = new_password);
        Ok(FakeResponse::json(
            StatusCode::CREATED,
            &json!({ "message": "Password changed successfully" }),
        ))
    }

    fn profile(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, _) = self.authenticate(req, cx)?;
        Ok(FakeResponse::json(StatusCode::OK, &user_json(&user)))
    }

    fn sessions(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, current) = self.authenticate(req, cx)?;
        let data = self.data();
        let list: Vec<Value> = self
            .families
            .live_for(&user.id)
            .into_iter()
            .map(|f| {
                json!({
                    "id": data.session_ids.get(&f.id).cloned().unwrap_or_default(),
                    "userAgent": f.user_agent,
                    "ipAddress": f.ip,
                    "createdAt": iso8601_millis(f.created_at),
                    "lastActiveAt": iso8601_millis(f.last_used_at),
                    "current": Some(f.id) == current,
                })
            })
            .collect();
        Ok(FakeResponse::json(StatusCode::OK, &Value::Array(list)))
    }

    fn revoke_session(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, _) = self.authenticate(req, cx)?;
        let wanted = req.param("id").unwrap_or_default();
        let family = self
            .data()
            .session_ids
            .iter()
            .find(|(_, sid)| sid.as_str() == wanted)
            .map(|(f, _)| *f);
        let owned = family
            .and_then(|f| self.families.info(f))
            .filter(|f| f.subject == user.id && !f.revoked);
        let Some(info) = owned else {
            return Err(error_body(StatusCode::NOT_FOUND, "Session not found"));
        };
        self.families.revoke_family(info.id);
        Ok(FakeResponse::json(
            StatusCode::OK,
            &json!({ "message": "Session revoked" }),
        ))
    }

    fn revoke_all(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, _) = self.authenticate(req, cx)?;
        let count = self.families.revoke_subject(&user.id);
        Ok(FakeResponse::json(
            StatusCode::OK,
            &json!({ "message": "All sessions revoked", "count": count }),
        ))
    }

    fn google(&self, cx: &Context<'_>) -> FakeResponse {
        let authorize = self.settings().google_authorize_url.clone();
        let callback = format!("{}api/v1/auth/google/callback", cx.base_url());
        match Url::parse(&authorize) {
            Ok(mut url) => {
                url.query_pairs_mut()
                    .append_pair("client_id", "linkutm-fake-client-id")
                    .append_pair("redirect_uri", &callback)
                    .append_pair("response_type", "code")
                    .append_pair("scope", "email profile");
                FakeResponse::redirect(url.as_str())
            }
            Err(_) => error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Bad google_authorize_url setting",
            ),
        }
    }

    fn google_callback(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let code = req.query_param("code").unwrap_or_default();
        let who = self.data().google_codes.remove(&code);
        let Some((email, name)) = who else {
            return Err(unauthorized("Google authentication failed"));
        };
        let ip = req.peer().ip().to_string();
        let token = self.google_sign_in(&email, &name, cx.now(), req.user_agent(), Some(&ip));
        let url = self.frontend_callback(&token).map_err(|_| {
            error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Bad frontend_url setting",
            )
        })?;
        Ok(FakeResponse::redirect(url.as_str()))
    }

    fn links(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _, _) = self.authenticate(req, cx)?;
        let Some(workspace) = req
            .header("x-workspace-id")
            .filter(|w| !w.trim().is_empty())
        else {
            return Err(error_body(
                StatusCode::BAD_REQUEST,
                "x-workspace-id header is required",
            ));
        };
        Ok(FakeResponse::json(
            StatusCode::OK,
            &json!({
                "workspaceId": workspace,
                "data": [
                    { "id": "lnk_1", "slug": "spring-sale", "ownerId": user.id },
                    { "id": "lnk_2", "slug": "newsletter", "ownerId": user.id },
                ],
            }),
        ))
    }
}

impl Handler for LinkUtmState {
    fn endpoints(&self) -> &[&'static str] {
        ENDPOINTS
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let reply = match endpoint {
            endpoints::SEND_OTP => self.send_otp(req, cx),
            endpoints::VERIFY_OTP => self.verify_otp(req, cx),
            endpoints::RESEND_OTP => self.resend_otp(req, cx),
            endpoints::LOGIN => self.login(req, cx),
            endpoints::FORGOT_PASSWORD => self.forgot_password(req, cx),
            endpoints::RESET_PASSWORD => self.reset_password(req, cx),
            endpoints::CHANGE_PASSWORD => self.change_password(req, cx),
            endpoints::PROFILE => self.profile(req, cx),
            endpoints::SESSIONS => self.sessions(req, cx),
            endpoints::REVOKE_SESSION => self.revoke_session(req, cx),
            endpoints::REVOKE_ALL_SESSIONS => self.revoke_all(req, cx),
            endpoints::GOOGLE => Ok(self.google(cx)),
            endpoints::GOOGLE_CALLBACK => self.google_callback(req, cx),
            endpoints::LINKS => self.links(req, cx),
            _ => Err(self.not_found(req)),
        };
        reply.unwrap_or_else(|e| e)
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        error_body(status, message)
    }
}
