//! The worked example of `docs/writing-an-adapter.md`: an adapter for a toy dialect,
//! its own fake server built on the test kit's server machinery, and a conformance run
//! on a manual clock far from the system clock. `cargo run -p authmux-testkit --example
//! toy_adapter` runs it; `tests/custom_adapter.rs` runs it too, and proves the suite
//! fails deliberately wrong variants of this adapter.
//!
//! The toy dialect:
//! - `POST /session {user, pass, code?}` → `200 {jwt, renew, ttl_s}` (`ttl_s`: the
//!   access token's lifetime in seconds), or `202 {"needs_code": true}` for users with a
//!   code (the client resends user and pass with the code), or `401 {"problem": "..."}`;
//! - `POST /session/renew {renew}` → a new `{jwt, renew, ttl_s}` (rotating), `401` for
//!   a dead renew token;
//! - `GET /whoami` (bearer) → `{id, mail, display}`;
//! - `DELETE /session` (bearer, body `{renew}`) → `204`, the renew token dies;
//! - errors are `{"problem": "..."}`; a `429` says how long to wait in its body,
//!   `{"problem": "...", "retry_in_s": 7}`, not in a `Retry-After` header.

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
    LoginOutcome, LogoutOutcome, OtpChallenge, OtpCode, RefreshToken, Session, SystemClock,
    TokenSet, UserProfile, async_trait,
};
use authmux_testkit::conformance::{self, Endpoints, Target};
use authmux_testkit::jwt::random_token;
use authmux_testkit::server::{
    Context, FakeRequest, FakeResponse, Handler, RateLimit, ServerConfig, ServerHandle,
};

// ----- the adapter -----------------------------------------------------------------

/// A client of one toy server. Its helpers are public so that the test kit's
/// deliberately wrong variants can reuse them; a real adapter keeps them private.
#[derive(Debug)]
pub struct ToyProvider {
    url: Url,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
}

impl ToyProvider {
    /// A provider for the server at `url`: the URL is checked (plain `http://` only to
    /// loopback unless the options allow it) and the default transport is built from
    /// the same options every dialect shares.
    pub fn new(url: Url, options: &ClientOptions) -> Result<Self, AuthError> {
        options.check_url(&url)?;
        Ok(Self {
            url,
            transport: options.build_transport()?,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for every "now" (token issue times, `Retry-After` dates, OTP
    /// challenges); the default is the system clock. Give it the same clock as the
    /// session manager, or proactive refresh is decided on one clock and stamped on
    /// another.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sends a JSON `POST` to `path`.
    pub async fn post(&self, path: &str, body: Value) -> Result<Response<Bytes>, AuthError> {
        let request = json_request(Method::POST, &endpoint(&self.url, path), &body)?;
        self.transport.send(request).await
    }

    /// The toy's error envelope `{"problem": "..."}`, mapped generically; callers say
    /// what a 401 means on their endpoint. A 429 carries its delay in the body.
    pub fn error(&self, response: &Response<Bytes>, on_401: AuthError) -> AuthError {
        let status = response.status().as_u16();
        if status == 401 {
            return on_401;
        }
        let body = loose_json(response);
        let message = body
            .get("problem")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let retry_after = body
            .get("retry_in_s")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .or_else(|| wire::retry_after(response.headers(), self.clock.now()));
        AuthError::from_status(status, None, message, retry_after)
    }

    /// A session from a `{jwt, renew, ttl_s}` grant, stamped on the provider's clock.
    pub fn session(&self, grant: &Value) -> Result<Session, AuthError> {
        let field = |name: &str| {
            grant
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| AuthError::protocol(format!("the grant has no {name}")))
        };
        let ttl_s = grant
            .get("ttl_s")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::protocol("the grant has no ttl_s"))?;
        let tokens = TokenSet::new(
            AccessToken::new(field("jwt")?),
            Some(RefreshToken::new(field("renew")?)),
            Expiry::In(Duration::from_secs(ttl_s)),
            self.clock.now(),
        );
        Ok(Session::new("toy", self.url.clone(), tokens))
    }

    /// The answer to `POST /session`: a session, a code challenge, or an error.
    pub fn sign_in_answer(
        &self,
        response: &Response<Bytes>,
        email: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<LoginOutcome, AuthError> {
        match response.status() {
            StatusCode::OK => {
                let grant: Value = parse_json(response, "login")?;
                Ok(LoginOutcome::Authenticated(self.session(&grant)?))
            }
            StatusCode::ACCEPTED if code.is_none() => {
                let challenge = OtpChallenge::new("toy", self.url.clone(), email, self.clock.now())
                    .with_password(password.into());
                Ok(LoginOutcome::OtpRequired(challenge))
            }
            _ => Err(self.error(
                response,
                if code.is_some() {
                    AuthError::InvalidOtp
                } else {
                    AuthError::InvalidCredentials
                },
            )),
        }
    }

    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<LoginOutcome, AuthError> {
        let body = json!({ "user": email, "pass": password, "code": code });
        let response = self.post("/session", body).await?;
        self.sign_in_answer(&response, email, password, code)
    }
}

#[async_trait]
impl AuthProvider for ToyProvider {
    fn dialect(&self) -> &str {
        "toy"
    }

    fn base_url(&self) -> &Url {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: true,
            rotating_refresh: true,
            otp_login: true,
            server_logout: true,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let code = credentials.otp.as_ref().map(OtpCode::expose_secret);
        let password = credentials.password.expose_secret();
        self.sign_in(&credentials.email, password, code).await
    }

    async fn verify_otp(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        let password = challenge
            .password
            .as_ref()
            .ok_or_else(|| AuthError::validation("password", "needed again"))?;
        let email = &challenge.email;
        let code = Some(code.expose_secret());
        match self.sign_in(email, password.expose_secret(), code).await? {
            LoginOutcome::Authenticated(session) => Ok(session),
            LoginOutcome::OtpRequired(_) => Err(AuthError::InvalidOtp),
        }
    }

    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        let renew = session
            .tokens
            .refresh
            .as_ref()
            .ok_or(AuthError::RefreshRejected)?;
        let body = json!({ "renew": renew.expose_secret() });
        let response = self.post("/session/renew", body).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::RefreshRejected));
        }
        let grant: Value = parse_json(&response, "refresh")?;
        // Keeps the user and extras; the grant always carries a new renew token.
        Ok(session.with_tokens(self.session(&grant)?.tokens))
    }

    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        let renew = session
            .tokens
            .refresh
            .as_ref()
            .map(RefreshToken::expose_secret);
        let url = endpoint(&self.url, "/session");
        let mut request = json_request(Method::DELETE, &url, &json!({ "renew": renew }))?;
        authorize_request(self, session, &mut request)?;
        let response = self.transport.send(request).await?;
        if response.status() != StatusCode::NO_CONTENT {
            return Err(self.error(&response, AuthError::Unauthorized { message: None }));
        }
        Ok(LogoutOutcome::Revoked)
    }

    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        let mut request = wire::empty_request(Method::GET, &endpoint(&self.url, "/whoami"))?;
        authorize_request(self, session, &mut request)?;
        let response = self.transport.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::Unauthorized { message: None }));
        }
        let raw: Value = parse_json(&response, "whoami")?;
        let name = raw
            .get("display")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut user = UserProfile::from_json_with_name(raw.clone(), name);
        user.email = raw.get("mail").and_then(Value::as_str).map(str::to_owned);
        Ok(user)
    }
}

// ----- the toy's fake server ---------------------------------------------------------

/// The lifetime the toy server grants, in seconds.
pub const TTL_S: u64 = 600;

#[derive(Default)]
struct ToyState {
    n: u64,
    access: HashMap<String, String>, // token -> user
    renew: HashMap<String, String>,  // live renew token -> user
}

/// The toy server, written from the dialect's description (never from the adapter's
/// code: a misreading shared by both would hide).
pub struct ToyFake {
    state: Mutex<ToyState>,
    /// Whether the refresh handler records the renew token it was shown (on; turned
    /// off to show that the suite then reports that check as skipped).
    pub record_refresh_tokens: bool,
}

impl Default for ToyFake {
    fn default() -> Self {
        Self::new()
    }
}

impl ToyFake {
    /// A fake with no sessions.
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            record_refresh_tokens: true,
        }
    }

    fn grant(&self, user: &str, cx: &Context<'_>) -> FakeResponse {
        let mut state = self.state.lock().unwrap();
        state.n += 1;
        let jwt = format!("jwt-{}-{}", state.n, random_token(24));
        let renew = format!("renew-{}-{}", state.n, random_token(24));
        state.access.insert(jwt.clone(), user.to_owned());
        state.renew.insert(renew.clone(), user.to_owned());
        // `jwt` is found in the answer by the server's own scan; `renew` is not a name
        // it knows, so the fake says it issued a secret (the suite scans every `Debug`
        // and error for it).
        cx.recorder().record_secret(&renew);
        FakeResponse::json(
            StatusCode::OK,
            &json!({ "jwt": jwt, "renew": renew, "ttl_s": TTL_S }),
        )
    }
}

/// The toy's `429`: the delay in the body, no `Retry-After` header.
pub fn rate_limited_answer(secs: u64) -> FakeResponse {
    FakeResponse::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({ "problem": "slow down", "retry_in_s": secs }),
    )
}

impl Handler for ToyFake {
    fn endpoints(&self) -> &[&'static str] {
        &[
            "POST /session",
            "POST /session/renew",
            "GET /whoami",
            "DELETE /session",
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
            "POST /session" => {
                let (user, pass, code) = (field("user"), field("pass"), field("code"));
                let needs_code = user == "coder@toy.test";
                if !(user == "ann@toy.test" || needs_code) || pass != "toy password" {
                    return self.error(StatusCode::UNAUTHORIZED, "bad login");
                }
                if needs_code && code.is_empty() {
                    return FakeResponse::json(
                        StatusCode::ACCEPTED,
                        &json!({ "needs_code": true }),
                    );
                }
                if needs_code && code != "424242" {
                    return self.error(StatusCode::UNAUTHORIZED, "bad code");
                }
                self.grant(&user, cx)
            }
            "POST /session/renew" => {
                let renew = field("renew");
                if self.record_refresh_tokens {
                    cx.recorder().record_refresh_token(&renew);
                }
                let user = self.state.lock().unwrap().renew.remove(&renew);
                match user {
                    Some(user) => self.grant(&user, cx),
                    None => self.error(StatusCode::UNAUTHORIZED, "dead renew token"),
                }
            }
            "GET /whoami" => {
                let user = req
                    .bearer()
                    .and_then(|t| self.state.lock().unwrap().access.get(t).cloned());
                match user {
                    Some(user) => FakeResponse::json(
                        StatusCode::OK,
                        &json!({ "id": 1, "mail": user, "display": "Ann Toy" }),
                    ),
                    None => self.error(StatusCode::UNAUTHORIZED, "who are you"),
                }
            }
            _ => {
                let mut state = self.state.lock().unwrap();
                if let Some(t) = req.bearer() {
                    state.access.remove(t);
                }
                state.renew.remove(&field("renew"));
                FakeResponse::no_content()
            }
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        FakeResponse::json(status, &json!({ "problem": message }))
    }

    fn rate_limited(&self, retry_after: Duration, _: RateLimit, _: &Context<'_>) -> FakeResponse {
        rate_limited_answer(retry_after.as_secs().max(1))
    }
}

/// Starts `fake` on `clock`.
pub fn start(fake: ToyFake, clock: impl Clock + 'static) -> ServerHandle {
    ServerHandle::start(Arc::new(fake), ServerConfig::new().clock(Arc::new(clock)))
        .expect("the fake starts")
}

/// What the conformance suite needs to know about a toy server: its users, endpoints,
/// the lifetime it grants, and where its 429 says how long to wait.
pub fn target(fake: &ServerHandle) -> Target<'_> {
    Target::new(Credentials::new("ann@toy.test", "toy password"))
        .with_server(
            fake,
            Endpoints {
                login: "POST /session".into(),
                current_user: "GET /whoami".into(),
                refresh: Some("POST /session/renew".into()),
            },
        )
        .with_otp_user(
            Credentials::new("coder@toy.test", "toy password"),
            Arc::new(|| "424242".to_owned()),
        )
        .with_lifetime(Duration::from_secs(TTL_S))
        .with_rate_limit_answer(rate_limited_answer)
}

/// Runs the conformance suite against the toy fake; panics listing any failed check.
#[tokio::main]
pub async fn main() {
    // One manual clock, far from the system clock, for the fake and the provider.
    let clock = conformance::far_clock();
    let fake = start(ToyFake::new(), clock.clone());
    let provider = ToyProvider::new(fake.base_url().clone(), &ClientOptions::default())
        .expect("a loopback URL is accepted")
        .with_clock(clock);
    let report = conformance::run_all(&provider, &target(&fake)).await;
    report.assert_passed();
    // Everything applies to this dialect: nothing may have been skipped.
    assert_eq!(report.passed(), report.results.len(), "{report:?}");
}
