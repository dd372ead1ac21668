//! `FakeLinxio`: a fake Linxio auth server (seeds 000 and 001, `dialects.md`).
//!
//! # Endpoints ([`endpoints`])
//! - `POST /login` `{email, password, domain?}` → `200 {token, refreshToken, expireAt?,
//!   teamType?, roleId?}`; for an OTP user `200 {"otp_required": true}` with no token (the
//!   flag's spelling is [`OtpFlag`]: `otp_required` by default, or `otpRequired`), which
//!   opens an OTP challenge for five minutes.
//! - `POST /login/otp` `{email, code}` → `200 {token, refreshToken, expireAt?}`. Without
//!   an open challenge (no password login first) or with a wrong code: 401.
//! - `POST /token/refresh` `{refreshToken}` → `200 {token, refreshToken?, expireAt?}`;
//!   what comes back is set by [`RefreshTokenPolicy`] (rotate, omit, echo) and
//!   [`ExpiryStyle`]; with `reuse_detection`, a retired refresh token revokes its family.
//! - `GET /me` with `fields[]=a&fields[]=b` projection over `id` (a number), `email`,
//!   `fullName`, `teamType`, `permissions`, `team` (`{id, name, type}`); unknown fields
//!   are ignored, and no `fields[]` gives them all. A plain `fields=a` is *not* a
//!   projection (it is ignored), so a client that drops the brackets is caught.
//! - `POST /logout` (bearer; body empty or `{}`) → `204` empty by default, or
//!   `200 {"success": true}` ([`LogoutStyle::Json`]); revokes the sign-in's family.
//! - `GET /api/vehicles` (bearer) → `200 {"items": [...], "total": n}` and
//!   `POST /api/vehicles` (bearer; `{name}`) → `201 {id, name}`: ordinary protected API
//!   endpoints, for authorized sends and 401-refresh-replay (GET is idempotent, POST not).
//!
//! Every response is top-level JSON: no `data` wrapper.
//!
//! # Error envelope (an assumption)
//! Linxio does not document its error body. This fake answers
//! `{"message": "<human text>", "error": "<snake_case_code>"}` with the HTTP status:
//! - 400 `validation_failed` (a required field missing or not a string, body not a JSON object)
//! - 401 `invalid_credentials` (unknown email or wrong password), `otp_not_requested`,
//!   `invalid_otp`, `invalid_refresh_token` (unknown, retired, reused or revoked),
//!   `refresh_token_expired`, `missing_token`, `invalid_token` (bad signature or revoked),
//!   `token_expired`
//! - 403 `forbidden` (a forbidden user), `user_suspended`
//! - 404 `not_found`; 429 `too_many_requests` (only from faults or a configured rate
//!   limit: Linxio documents none); 5xx from faults: `server_error`, `bad_gateway`,
//!   `service_unavailable`, `gateway_timeout`.
//!
//! # Tokens
//! Access tokens are HS256 JWTs with `sub` (the user's number as a string), `iat`, `exp`
//! (unless [`ExpiryStyle::NoExpiry`]), `jti`, `email` and `teamType`. `expireAt` is
//! ISO-8601 in UTC with milliseconds, as JavaScript prints it
//! (`2026-11-22T02:30:00.000Z`). Refresh tokens are opaque 48-character strings.

use std::collections::HashMap;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authmux_core::clock::{Clock, SystemClock};
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::families::{FamilyId, RefreshError, RefreshPolicy, TokenFamilies};
use crate::jwt::{Claims, JwtError, JwtKeys, iso8601_millis};
use crate::server::{
    Context, FakeRequest, FakeResponse, Handler, RateLimit, ServerConfig, ServerHandle,
};
use crate::users::{User, Users};

/// The endpoint names, for counters and faults.
pub mod endpoints {
    /// `POST /login`
    pub const LOGIN: &str = "POST /login";
    /// `POST /login/otp`
    pub const LOGIN_OTP: &str = "POST /login/otp";
    /// `POST /token/refresh`
    pub const REFRESH: &str = "POST /token/refresh";
    /// `GET /me`
    pub const ME: &str = "GET /me";
    /// `POST /logout`
    pub const LOGOUT: &str = "POST /logout";
    /// `GET /api/vehicles` (a protected, idempotent API call)
    pub const VEHICLES: &str = "GET /api/vehicles";
    /// `POST /api/vehicles` (a protected, non-idempotent API call)
    pub const CREATE_VEHICLE: &str = "POST /api/vehicles";
}

const ENDPOINTS: &[&str] = &[
    endpoints::LOGIN,
    endpoints::LOGIN_OTP,
    endpoints::REFRESH,
    endpoints::ME,
    endpoints::LOGOUT,
    endpoints::VEHICLES,
    endpoints::CREATE_VEHICLE,
];

/// How long a password login's OTP challenge stays open.
pub const OTP_CHALLENGE_LIFETIME: Duration = Duration::from_secs(300);

/// How the "OTP required" flag is spelled in the login answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtpFlag {
    /// `otp_required` (the API reference; default).
    #[default]
    Snake,
    /// `otpRequired` (one SDK page).
    Camel,
}

impl OtpFlag {
    fn key(self) -> &'static str {
        match self {
            Self::Snake => "otp_required",
            Self::Camel => "otpRequired",
        }
    }
}

/// What `POST /token/refresh` does with the refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshTokenPolicy {
    /// Issue a new refresh token, return it as `refreshToken`, retire the old one (default).
    #[default]
    Rotate,
    /// Keep the old token valid and send no `refreshToken` field.
    Omit,
    /// Keep the old token valid and send it back as `refreshToken`.
    Echo,
}

/// How token expiry is told to the client (login, OTP and refresh answers alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryStyle {
    /// `expireAt` in the answer and `exp` in the JWT (default).
    #[default]
    ExpireAtAndExp,
    /// Only the JWT's `exp`.
    ExpOnly,
    /// Neither: a JWT without `exp`, valid until revoked (refreshed only on 401).
    NoExpiry,
}

/// How `POST /logout` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogoutStyle {
    /// `204 No Content`, empty body (default).
    #[default]
    NoContent,
    /// `200 {"success": true}`.
    Json,
}

/// Behaviour settings; change them at any time with [`FakeLinxio::update_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinxioSettings {
    /// Access-token lifetime (default 15 minutes).
    pub access_lifetime: Duration,
    /// Refresh-token lifetime (default 30 days; `None`: forever).
    pub refresh_lifetime: Option<Duration>,
    /// The OTP flag's spelling.
    pub otp_flag: OtpFlag,
    /// What a refresh does with the refresh token.
    pub refresh_token: RefreshTokenPolicy,
    /// Whether presenting a retired refresh token revokes its whole family (default off).
    pub reuse_detection: bool,
    /// How expiry is told.
    pub expiry: ExpiryStyle,
    /// How logout answers.
    pub logout: LogoutStyle,
}

impl Default for LinxioSettings {
    fn default() -> Self {
        Self {
            access_lifetime: Duration::from_secs(15 * 60),
            refresh_lifetime: Some(Duration::from_secs(30 * 24 * 3600)),
            otp_flag: OtpFlag::default(),
            refresh_token: RefreshTokenPolicy::default(),
            reuse_detection: false,
            expiry: ExpiryStyle::default(),
            logout: LogoutStyle::default(),
        }
    }
}

/// Tokens as the fake issued them (from [`FakeLinxio::issue_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinxioTokens {
    /// The JWT access token.
    pub token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// The access token's expiry (server time), when it has one.
    pub expires_at: Option<SystemTime>,
    /// The sign-in's token family.
    pub family: FamilyId,
}

/// Builds a [`FakeLinxio`].
#[derive(Debug)]
pub struct LinxioBuilder {
    users: Vec<User>,
    settings: LinxioSettings,
    clock: Arc<dyn Clock>,
    port: u16,
    rate_limit: Option<RateLimit>,
}

impl Default for LinxioBuilder {
    fn default() -> Self {
        Self {
            users: Users::default_list(),
            settings: LinxioSettings::default(),
            clock: Arc::new(SystemClock),
            port: 0,
            rate_limit: None,
        }
    }
}

impl LinxioBuilder {
    /// Replaces the default users.
    #[must_use]
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self
    }

    /// Adds a user to the list (the defaults, unless replaced).
    #[must_use]
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// The starting settings.
    #[must_use]
    pub fn settings(mut self, settings: LinxioSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The access-token lifetime.
    #[must_use]
    pub fn access_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.access_lifetime = lifetime;
        self
    }

    /// The refresh-token lifetime (`None`: forever).
    #[must_use]
    pub fn refresh_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.settings.refresh_lifetime = lifetime;
        self
    }

    /// The OTP flag's spelling.
    #[must_use]
    pub fn otp_flag(mut self, flag: OtpFlag) -> Self {
        self.settings.otp_flag = flag;
        self
    }

    /// What a refresh does with the refresh token.
    #[must_use]
    pub fn refresh_token(mut self, policy: RefreshTokenPolicy) -> Self {
        self.settings.refresh_token = policy;
        self
    }

    /// Turns refresh-token reuse detection on or off.
    #[must_use]
    pub fn reuse_detection(mut self, on: bool) -> Self {
        self.settings.reuse_detection = on;
        self
    }

    /// How expiry is told.
    #[must_use]
    pub fn expiry(mut self, style: ExpiryStyle) -> Self {
        self.settings.expiry = style;
        self
    }

    /// How logout answers.
    #[must_use]
    pub fn logout(mut self, style: LogoutStyle) -> Self {
        self.settings.logout = style;
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

    /// A per-IP rate limit (default none: Linxio documents none).
    #[must_use]
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(self) -> io::Result<FakeLinxio> {
        let state = Arc::new(LinxioState {
            users: Users::from_list(self.users),
            keys: JwtKeys::random(),
            families: TokenFamilies::default(),
            settings: Mutex::new(self.settings),
            challenges: Mutex::new(HashMap::new()),
            vehicles: Mutex::new(vec![
                json!({ "id": 1, "name": "Truck 1", "plate": "LX-001" }),
                json!({ "id": 2, "name": "Van 2", "plate": "LX-002" }),
            ]),
        });
        let config = ServerConfig::new()
            .port(self.port)
            .clock(self.clock)
            .rate_limit(self.rate_limit)
            .name("fake-linxio");
        let server = ServerHandle::start(Arc::clone(&state), config)?;
        Ok(FakeLinxio { server, state })
    }
}

/// A running fake Linxio server. Dereferences to [`ServerHandle`] for `base_url()`,
/// `recorder()`, `faults()`, the clock offset and shutdown (on drop).
///
/// ```
/// use authmux_testkit::linxio::{FakeLinxio, endpoints};
/// use authmux_testkit::Fault;
///
/// let linxio = FakeLinxio::start().unwrap();
/// linxio.faults().push(endpoints::LOGIN, Fault::Status(503));
/// let tokens = linxio.issue_tokens("alice@example.com").unwrap();
/// assert!(linxio.families().live_refresh(tokens.family).is_some());
/// ```
#[derive(Debug)]
pub struct FakeLinxio {
    server: ServerHandle,
    state: Arc<LinxioState>,
}

impl Deref for FakeLinxio {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.server
    }
}

impl FakeLinxio {
    /// Starts a fake with the default users and settings on a free port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// A builder for users, settings, clock and port.
    pub fn builder() -> LinxioBuilder {
        LinxioBuilder::default()
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

    /// The user table (add users at any time).
    pub fn users(&self) -> &Users {
        &self.state.users
    }

    /// The token families (one per sign-in).
    pub fn families(&self) -> &TokenFamilies {
        &self.state.families
    }

    /// Kills one access token on the server (as a server-side invalidation would),
    /// leaving its refresh token alive: the next request with it gets 401. Panics if
    /// `token` is not one of this fake's JWTs.
    pub fn revoke_access_token(&self, token: &str) {
        let claims = crate::jwt::decode_unverified(token).expect("an access token of this fake");
        self.state.families.revoke_access(&claims.jti);
    }

    /// The signing keys (to forge or inspect tokens).
    pub fn jwt_keys(&self) -> &JwtKeys {
        &self.state.keys
    }

    /// The current settings.
    pub fn settings(&self) -> LinxioSettings {
        self.state.settings().clone()
    }

    /// Changes the settings.
    pub fn update_settings(&self, change: impl FnOnce(&mut LinxioSettings)) {
        change(&mut self.state.settings());
    }

    /// The OTP code of a user (what the user would read on their device).
    pub fn otp_code(&self, email: &str) -> Option<String> {
        self.state.users.by_email(email)?.otp_code
    }

    /// Signs a user in without HTTP (e.g. to hydrate a client from stored tokens).
    pub fn issue_tokens(&self, email: &str) -> Option<LinxioTokens> {
        let user = self.state.users.by_email(email)?;
        let now = self.server.now();
        let family = self
            .state
            .families
            .start(&user.number.to_string(), now, None, None);
        let settings = self.state.settings().clone();
        let refresh_token =
            self.state
                .families
                .issue_refresh(family, now, settings.refresh_lifetime);
        let (token, claims) = self.state.access_token(&user, family, now, &settings);
        let expires_at = claims
            .exp
            .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
        Some(LinxioTokens {
            token,
            refresh_token,
            expires_at,
            family,
        })
    }

    /// Revokes every sign-in of a user (all their tokens stop working); returns how many.
    pub fn revoke_user(&self, email: &str) -> usize {
        self.state.users.by_email(email).map_or(0, |u| {
            self.state.families.revoke_subject(&u.number.to_string())
        })
    }
}

#[derive(Debug)]
struct LinxioState {
    users: Users,
    keys: JwtKeys,
    families: TokenFamilies,
    settings: Mutex<LinxioSettings>,
    /// Open OTP challenges: lower-case email → when opened.
    challenges: Mutex<HashMap<String, SystemTime>>,
    vehicles: Mutex<Vec<Value>>,
}

fn error_body(status: StatusCode, code: &str, message: &str) -> FakeResponse {
    FakeResponse::json(status, &json!({ "message": message, "error": code }))
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "validation_failed",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        429 => "too_many_requests",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "server_error",
    }
}

type Reply = Result<FakeResponse, FakeResponse>;

fn required_str(body: &Map<String, Value>, field: &str) -> Result<String, FakeResponse> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(error_body(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            &format!("{field} is required"),
        )),
        Some(_) => Err(error_body(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            &format!("{field} must be a string"),
        )),
    }
}

fn json_body(req: &FakeRequest) -> Result<Map<String, Value>, FakeResponse> {
    req.json_object()
        .map_err(|m| error_body(StatusCode::BAD_REQUEST, "validation_failed", &m))
}

impl LinxioState {
    fn settings(&self) -> std::sync::MutexGuard<'_, LinxioSettings> {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn access_token(
        &self,
        user: &User,
        family: FamilyId,
        now: SystemTime,
        settings: &LinxioSettings,
    ) -> (String, Claims) {
        let lifetime = match settings.expiry {
            ExpiryStyle::NoExpiry => None,
            _ => Some(settings.access_lifetime),
        };
        let mut extra = Map::new();
        extra.insert("email".into(), Value::from(user.email.clone()));
        if let Some(t) = &user.team_type {
            extra.insert("teamType".into(), Value::from(t.clone()));
        }
        let (token, claims) = self
            .keys
            .issue(&user.number.to_string(), now, lifetime, extra);
        self.families.register_access(family, &claims.jti);
        (token, claims)
    }

    /// `{token, expireAt?}` for a fresh access token.
    fn token_fields(
        &self,
        user: &User,
        family: FamilyId,
        now: SystemTime,
        settings: &LinxioSettings,
    ) -> Map<String, Value> {
        let (token, claims) = self.access_token(user, family, now, settings);
        let mut out = Map::new();
        out.insert("token".into(), Value::from(token));
        if let (ExpiryStyle::ExpireAtAndExp, Some(exp)) = (settings.expiry, claims.exp) {
            out.insert(
                "expireAt".into(),
                Value::from(iso8601_millis(UNIX_EPOCH + Duration::from_secs(exp))),
            );
        }
        out
    }

    fn sign_in(
        &self,
        user: &User,
        req: &FakeRequest,
        now: SystemTime,
        team_fields: bool,
    ) -> FakeResponse {
        let settings = self.settings().clone();
        let ip = req.peer().ip().to_string();
        let family =
            self.families
                .start(&user.number.to_string(), now, req.user_agent(), Some(&ip));
        let refresh = self
            .families
            .issue_refresh(family, now, settings.refresh_lifetime);
        let mut out = self.token_fields(user, family, now, &settings);
        out.insert("refreshToken".into(), Value::from(refresh));
        if team_fields {
            if let Some(t) = &user.team_type {
                out.insert("teamType".into(), Value::from(t.clone()));
            }
            if let Some(r) = user.role_id {
                out.insert("roleId".into(), Value::from(r));
            }
        }
        FakeResponse::json(StatusCode::OK, &Value::Object(out))
    }

    fn check_credentials(&self, body: &Map<String, Value>) -> Result<User, FakeResponse> {
        let email = required_str(body, "email")?;
        let password = required_str(body, "password")?;
        if body
            .get("domain")
            .is_some_and(|d| !(d.is_string() || d.is_null()))
        {
            return Err(error_body(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "domain must be a string",
            ));
        }
        let user = self
            .users
            .by_email(&email)
            .filter(|u| u.password == password)
            .ok_or_else(|| {
                error_body(
                    StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "Invalid email or password",
                )
            })?;
        if user.suspended {
            return Err(error_body(
                StatusCode::FORBIDDEN,
                "user_suspended",
                "User is suspended",
            ));
        }
        if user.forbidden {
            return Err(error_body(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Access denied",
            ));
        }
        Ok(user)
    }

    fn login(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = json_body(req)?;
        let user = self.check_credentials(&body)?;
        if user.otp_code.is_some() {
            self.challenges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(user.email.to_ascii_lowercase(), cx.now());
            let flag = self.settings().otp_flag.key();
            return Ok(FakeResponse::json(StatusCode::OK, &json!({ flag: true })));
        }
        Ok(self.sign_in(&user, req, cx.now(), true))
    }

    fn login_otp(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = json_body(req)?;
        let email = required_str(&body, "email")?;
        let code = required_str(&body, "code")?;
        let now = cx.now();
        let key = email.to_ascii_lowercase();
        let mut challenges = self
            .challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = challenges
            .get(&key)
            .is_some_and(|at| now.duration_since(*at).unwrap_or_default() < OTP_CHALLENGE_LIFETIME);
        if !open {
            return Err(error_body(
                StatusCode::UNAUTHORIZED,
                "otp_not_requested",
                "No OTP challenge is open for this email: log in with the password first",
            ));
        }
        let user = self
            .users
            .by_email(&email)
            .filter(|u| u.otp_code.as_deref() == Some(code.as_str()));
        let Some(user) = user else {
            return Err(error_body(
                StatusCode::UNAUTHORIZED,
                "invalid_otp",
                "Invalid OTP code",
            ));
        };
        challenges.remove(&key);
        drop(challenges);
        Ok(self.sign_in(&user, req, now, false))
    }

    fn refresh(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = json_body(req)?;
        let presented = required_str(&body, "refreshToken")?;
        cx.recorder().record_refresh_token(&presented);
        let now = cx.now();
        let settings = self.settings().clone();
        let policy = RefreshPolicy {
            rotate: settings.refresh_token == RefreshTokenPolicy::Rotate,
            reuse_detection: settings.reuse_detection,
            grace: None,
        };
        let outcome = self
            .families
            .refresh(&presented, now, settings.refresh_lifetime, policy)
            .map_err(|e| {
                let (code, message) = match e {
                    RefreshError::Expired => ("refresh_token_expired", "Refresh token expired"),
                    RefreshError::Unknown => ("invalid_refresh_token", "Invalid refresh token"),
                    RefreshError::Retired => {
                        ("invalid_refresh_token", "Refresh token was already used")
                    }
                    RefreshError::Reused => (
                        "invalid_refresh_token",
                        "Refresh token reuse detected: session revoked",
                    ),
                    RefreshError::Revoked => ("invalid_refresh_token", "Session revoked"),
                };
                error_body(StatusCode::UNAUTHORIZED, code, message)
            })?;
        let user = self
            .users
            .all()
            .into_iter()
            .find(|u| u.number.to_string() == outcome.subject)
            .filter(|u| !u.forbidden && !u.suspended)
            .ok_or_else(|| {
                error_body(
                    StatusCode::UNAUTHORIZED,
                    "invalid_refresh_token",
                    "User no longer active",
                )
            })?;
        let mut out = self.token_fields(&user, outcome.family, now, &settings);
        match settings.refresh_token {
            RefreshTokenPolicy::Rotate => {
                if let Some(new) = outcome.new_refresh {
                    out.insert("refreshToken".into(), Value::from(new));
                }
            }
            RefreshTokenPolicy::Echo => {
                out.insert("refreshToken".into(), Value::from(presented));
            }
            RefreshTokenPolicy::Omit => {}
        }
        Ok(FakeResponse::json(StatusCode::OK, &Value::Object(out)))
    }

    /// Checks the bearer: the user and the token's claims.
    fn authenticate(
        &self,
        req: &FakeRequest,
        cx: &Context<'_>,
    ) -> Result<(User, Claims), FakeResponse> {
        let token = req.bearer().ok_or_else(|| {
            error_body(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "Authorization bearer token required",
            )
        })?;
        let claims = self.keys.verify(token, cx.now()).map_err(|e| match e {
            JwtError::Expired => {
                error_body(StatusCode::UNAUTHORIZED, "token_expired", "Token expired")
            }
            JwtError::Invalid => {
                error_body(StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token")
            }
        })?;
        if !self.families.is_access_live(&claims.jti) {
            return Err(error_body(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Token revoked",
            ));
        }
        let user = self
            .users
            .all()
            .into_iter()
            .find(|u| u.number.to_string() == claims.sub)
            .ok_or_else(|| error_body(StatusCode::UNAUTHORIZED, "invalid_token", "Unknown user"))?;
        if let Some(f) = self.families.family_of_access(&claims.jti) {
            self.families.touch(f, cx.now());
        }
        Ok((user, claims))
    }

    fn me(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let (user, _) = self.authenticate(req, cx)?;
        let mut full = Map::new();
        full.insert("id".into(), Value::from(user.number));
        full.insert("email".into(), Value::from(user.email.clone()));
        full.insert("fullName".into(), Value::from(user.name.clone()));
        if let Some(t) = &user.team_type {
            full.insert("teamType".into(), Value::from(t.clone()));
        }
        full.insert("permissions".into(), Value::from(user.permissions.clone()));
        full.insert(
            "team".into(),
            json!({
                "id": 100 + user.number,
                "name": format!("{}'s team", user.name),
                "type": user.team_type,
            }),
        );
        let fields = req.query_all("fields[]");
        if fields.is_empty() {
            return Ok(FakeResponse::json(StatusCode::OK, &Value::Object(full)));
        }
        let projected: Map<String, Value> = full
            .into_iter()
            .filter(|(k, _)| fields.iter().any(|f| f == k))
            .collect();
        Ok(FakeResponse::json(
            StatusCode::OK,
            &Value::Object(projected),
        ))
    }

    fn logout(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        let body = json_body(req)?;
        if let Some(Value::String(rt)) = body.get("refreshToken") {
            cx.recorder().record_refresh_token(rt);
        }
        let (_, claims) = self.authenticate(req, cx)?;
        match self.families.family_of_access(&claims.jti) {
            Some(f) => {
                self.families.revoke_family(f);
            }
            None => self.families.revoke_access(&claims.jti),
        }
        Ok(match self.settings().logout {
            LogoutStyle::NoContent => FakeResponse::no_content(),
            LogoutStyle::Json => FakeResponse::json(StatusCode::OK, &json!({ "success": true })),
        })
    }

    fn vehicles(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        self.authenticate(req, cx)?;
        let items = self
            .vehicles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let total = items.len();
        Ok(FakeResponse::json(
            StatusCode::OK,
            &json!({ "items": items, "total": total }),
        ))
    }

    fn create_vehicle(&self, req: &FakeRequest, cx: &Context<'_>) -> Reply {
        self.authenticate(req, cx)?;
        let body = json_body(req)?;
        let name = required_str(&body, "name")?;
        let mut vehicles = self
            .vehicles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let vehicle = json!({ "id": vehicles.len() + 1, "name": name });
        vehicles.push(vehicle.clone());
        Ok(FakeResponse::json(StatusCode::CREATED, &vehicle))
    }
}

impl Handler for LinxioState {
    fn endpoints(&self) -> &[&'static str] {
        ENDPOINTS
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let reply = match endpoint {
            endpoints::LOGIN => self.login(req, cx),
            endpoints::LOGIN_OTP => self.login_otp(req, cx),
            endpoints::REFRESH => self.refresh(req, cx),
            endpoints::ME => self.me(req, cx),
            endpoints::LOGOUT => self.logout(req, cx),
            endpoints::VEHICLES => self.vehicles(req, cx),
            endpoints::CREATE_VEHICLE => self.create_vehicle(req, cx),
            _ => Err(self.not_found(req)),
        };
        reply.unwrap_or_else(|e| e)
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        error_body(status, code_for(status), message)
    }
}
