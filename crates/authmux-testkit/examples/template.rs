//! A template adapter to copy: a password login with rotating refresh tokens, no
//! one-time codes, its fake server, and the conformance run. Copy this file into your
//! crate, rename `Acme`, and change what the comments marked `DIALECT` point at.
//! `cargo run -p authmux-testkit --example template` runs it; `tests/template.rs`
//! runs it too.
//!
//! The "Acme" dialect it speaks:
//! - `POST /auth/login {email, password}` → `200 {access_token, refresh_token,
//!   expires_in}` (seconds), or `401 {"error": "..."}`;
//! - `POST /auth/refresh {refresh_token}` → the same answer, with a new refresh token
//!   (the old one dies), or `401`;
//! - `GET /auth/me` (bearer) → `{id, email, name}`;
//! - `POST /auth/logout {refresh_token}` (bearer) → `204`.
//!
//! Dependencies (`Cargo.toml`): `authmux-core` (it re-exports `bytes`, `http`, `url`
//! and `serde_json`); for the tests, `authmux-testkit` and `tokio`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::bytes::Bytes;
use authmux_core::http::{Method, Response, StatusCode};
use authmux_core::provider::authorize_request;
use authmux_core::serde_json::{Value, json};
use authmux_core::transport::Transport;
use authmux_core::url::Url;
use authmux_core::wire::{self, endpoint, json_request, loose_json, parse_json};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, ClientOptions, Clock, Credentials, Expiry,
    LoginOutcome, LogoutOutcome, RefreshToken, Session, SystemClock, TokenSet, UserProfile,
    async_trait,
};
use authmux_testkit::conformance::{self, Endpoints, Target};
use authmux_testkit::jwt::random_token;
use authmux_testkit::server::{
    Context, FakeRequest, FakeResponse, Handler, ServerConfig, ServerHandle,
};

/// The dialect's name, stored in sessions. DIALECT
const DIALECT: &str = "acme";

// ----- the adapter -----------------------------------------------------------------

/// A client of one Acme server.
#[derive(Debug)]
pub struct AcmeProvider {
    url: Url,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
}

impl AcmeProvider {
    /// A provider for the server at `url`, with the HTTP settings every dialect shares.
    pub fn new(url: Url, options: &ClientOptions) -> Result<Self, AuthError> {
        Self::with_transport(url, options, options.build_transport()?)
    }

    /// The same, sending through `transport` (a test transport, a shared client).
    pub fn with_transport(
        url: Url,
        options: &ClientOptions,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AuthError> {
        options.check_url(&url)?;
        Ok(Self {
            url,
            transport,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for every "now" (default: the system clock). Give it the same clock
    /// as the session manager.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Response<Bytes>, AuthError> {
        let request = json_request(Method::POST, &endpoint(&self.url, path), body)?;
        self.transport.send(request).await
    }

    /// The dialect's error envelope, mapped; `on_401` says what a 401 means here.
    /// DIALECT: where the message (and a 429's delay) is.
    fn error(&self, response: &Response<Bytes>, on_401: AuthError) -> AuthError {
        let status = response.status().as_u16();
        if status == 401 {
            return on_401;
        }
        let message = loose_json(response)
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let retry_after = wire::retry_after(response.headers(), self.clock.now());
        AuthError::from_status(status, None, message, retry_after)
    }

    /// The tokens of a login or refresh answer, stamped on the provider's clock.
    /// DIALECT: field names, and the unit of the lifetime.
    fn tokens(&self, response: &Response<Bytes>, what: &str) -> Result<TokenSet, AuthError> {
        let answer: Value = parse_json(response, what)?;
        let text = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| AuthError::protocol(format!("the {what} answer has no {name}")))
        };
        let expiry = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(Expiry::Unstated, |secs| {
                Expiry::In(Duration::from_secs(secs))
            });
        Ok(TokenSet::new(
            AccessToken::new(text("access_token")?),
            Some(RefreshToken::new(text("refresh_token")?)),
            expiry,
            self.clock.now(),
        ))
    }
}

#[async_trait]
impl AuthProvider for AcmeProvider {
    fn dialect(&self) -> &str {
        DIALECT
    }

    fn base_url(&self) -> &Url {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: true,
            rotating_refresh: true,
            server_logout: true,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let body = json!({
            "email": credentials.email,
            "password": credentials.password.expose_secret(),
        });
        let response = self.post("/auth/login", &body).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::InvalidCredentials));
        }
        let tokens = self.tokens(&response, "login")?;
        Ok(LoginOutcome::Authenticated(
            self.session_from_tokens(tokens),
        ))
    }

    // No `verify_otp`: the default answers `Unsupported` (and `otp_login` is false).

    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        let Some(refresh) = &session.tokens.refresh else {
            return Err(AuthError::RefreshRejected);
        };
        let body = json!({ "refresh_token": refresh.expose_secret() });
        let response = self.post("/auth/refresh", &body).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::RefreshRejected));
        }
        Ok(session.with_tokens(self.tokens(&response, "refresh")?))
    }

    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        let refresh = session
            .tokens
            .refresh
            .as_ref()
            .map(RefreshToken::expose_secret);
        let url = endpoint(&self.url, "/auth/logout");
        let mut request = json_request(Method::POST, &url, &json!({ "refresh_token": refresh }))?;
        authorize_request(self, session, &mut request)?;
        let response = self.transport.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, AuthError::Unauthorized { message: None }));
        }
        Ok(LogoutOutcome::Revoked)
    }

    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        let mut request = wire::empty_request(Method::GET, &endpoint(&self.url, "/auth/me"))?;
        authorize_request(self, session, &mut request)?;
        let response = self.transport.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::Unauthorized { message: None }));
        }
        let raw: Value = parse_json(&response, "me")?;
        let name = raw.get("name").and_then(Value::as_str).map(str::to_owned);
        Ok(UserProfile::from_json_with_name(raw, name))
    }
}

// ----- the fake server (written from the dialect's documentation) --------------------

/// The access-token lifetime the fake grants.
pub const LIFETIME: Duration = Duration::from_secs(900);
/// The fake's user.
pub const EMAIL: &str = "ann@acme.test";
/// Their password.
pub const PASSWORD: &str = "acme password";

/// An in-memory Acme server: one user, rotating refresh tokens.
#[derive(Default)]
pub struct AcmeFake {
    access: Mutex<HashMap<String, String>>, // access token -> email
    refresh: Mutex<HashMap<String, String>>, // live refresh token -> email
}

impl AcmeFake {
    fn grant(&self, email: &str) -> FakeResponse {
        let access = format!("acme-at-{}", random_token(24));
        let refresh = format!("acme-rt-{}", random_token(24));
        self.access
            .lock()
            .unwrap()
            .insert(access.clone(), email.to_owned());
        self.refresh
            .lock()
            .unwrap()
            .insert(refresh.clone(), email.to_owned());
        // `access_token` and `refresh_token` are names the server's secret scan knows.
        let answer = json!({
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": LIFETIME.as_secs(),
        });
        FakeResponse::json(StatusCode::OK, &answer)
    }
}

impl Handler for AcmeFake {
    fn endpoints(&self) -> &[&'static str] {
        &[
            "POST /auth/login",
            "POST /auth/refresh",
            "GET /auth/me",
            "POST /auth/logout",
        ]
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let body = req.json().ok().flatten().unwrap_or_default();
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match endpoint {
            "POST /auth/login" if field("email") == EMAIL && field("password") == PASSWORD => {
                self.grant(EMAIL)
            }
            "POST /auth/login" => self.error(StatusCode::UNAUTHORIZED, "wrong email or password"),
            "POST /auth/refresh" => {
                let presented = field("refresh_token");
                cx.recorder().record_refresh_token(&presented);
                let owner = self.refresh.lock().unwrap().remove(&presented);
                match owner {
                    Some(email) => self.grant(&email),
                    None => self.error(StatusCode::UNAUTHORIZED, "invalid refresh token"),
                }
            }
            "GET /auth/me" => {
                let owner = req
                    .bearer()
                    .and_then(|t| self.access.lock().unwrap().get(t).cloned());
                match owner {
                    Some(email) => FakeResponse::json(
                        StatusCode::OK,
                        &json!({ "id": "u-1", "email": email, "name": "Ann Acme" }),
                    ),
                    None => self.error(StatusCode::UNAUTHORIZED, "invalid access token"),
                }
            }
            _ => {
                if let Some(t) = req.bearer() {
                    self.access.lock().unwrap().remove(t);
                }
                self.refresh.lock().unwrap().remove(&field("refresh_token"));
                FakeResponse::no_content()
            }
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        FakeResponse::json(status, &json!({ "error": message }))
    }
}

/// The conformance target for an Acme fake.
pub fn target(fake: &ServerHandle) -> Target<'_> {
    let endpoints = Endpoints {
        login: "POST /auth/login".into(),
        current_user: "GET /auth/me".into(),
        refresh: Some("POST /auth/refresh".into()),
    };
    Target::new(Credentials::new(EMAIL, PASSWORD))
        .with_server(fake, endpoints)
        .with_lifetime(LIFETIME)
}

/// Runs the conformance suite against the fake; panics listing any failed check.
#[tokio::main]
pub async fn main() {
    let clock = conformance::far_clock();
    let config = ServerConfig::new().clock(Arc::new(clock.clone()));
    let fake = ServerHandle::start(Arc::new(AcmeFake::default()), config).expect("fake starts");
    let provider = AcmeProvider::new(fake.base_url().clone(), &ClientOptions::default())
        .expect("a loopback URL is accepted")
        .with_clock(clock);
    let report = conformance::run_all(&provider, &target(&fake)).await;
    report.assert_passed();
    // Only the one-time-code check does not apply to this dialect.
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|(_, r)| matches!(r, conformance::CheckResult::Skipped(_)))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(skipped, ["otp_challenge"], "{report:?}");
}
