//! A custom adapter for a toy dialect, with its own tiny fake built on the test kit's
//! server machinery, passing the whole conformance suite. This is the worked example
//! `docs/writing-an-adapter.md` walks through.
//!
//! The toy dialect:
//! - `POST /session {user, pass, code?}` → `200 {jwt, renew, ttl_s}`, or `202
//!   {"needs_code": true}` for users with a code (the client resends user and pass with
//!   the code), or `401 {"problem": "..."}`;
//! - `POST /session/renew {renew}` → a new `{jwt, renew, ttl_s}` (rotating), `401` for
//!   a dead renew token;
//! - `GET /whoami` (bearer) → `{id, mail, display}`;
//! - `DELETE /session` (bearer, body `{renew}`) → `204`, the renew token dies.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::provider::authorize_request;
use authmux_core::transport::Transport;
use authmux_core::wire::{self, endpoint, json_request, loose_json, parse_json};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, Expiry, LoginOutcome,
    LogoutOutcome, OtpChallenge, OtpCode, RefreshToken, ReqwestTransport, Session, TokenSet,
    UserProfile, async_trait,
};
use authmux_testkit::conformance::{self, CheckResult, Endpoints, Target};
use authmux_testkit::server::{
    Context, FakeRequest, FakeResponse, Handler, ServerConfig, ServerHandle,
};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use url::Url;

// ----- the adapter -----------------------------------------------------------------

#[derive(Debug)]
struct ToyProvider {
    url: Url,
    transport: ReqwestTransport,
}

#[derive(Deserialize)]
struct Grant {
    jwt: String,
    renew: String,
    ttl_s: u64,
}

impl ToyProvider {
    fn new(url: Url) -> Self {
        Self {
            url,
            transport: ReqwestTransport::new().unwrap(),
        }
    }

    /// With a client timeout of its own (the fault matrix uses a short one).
    fn with_timeout(url: Url, timeout: Duration) -> Self {
        let config = authmux_core::transport::TransportConfig {
            timeout,
            ..authmux_core::transport::TransportConfig::default()
        };
        Self {
            url,
            transport: ReqwestTransport::with_config(config).unwrap(),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Response<Bytes>, AuthError> {
        self.transport
            .send(json_request(
                Method::POST,
                &endpoint(&self.url, path),
                &body,
            )?)
            .await
    }

    /// The toy's error envelope `{"problem": "..."}`, mapped generically; callers refine
    /// 401 per endpoint.
    fn error(&self, response: &Response<Bytes>, on_401: AuthError) -> AuthError {
        let status = response.status().as_u16();
        if status == 401 {
            return on_401;
        }
        let message = loose_json(response)
            .get("problem")
            .and_then(|p| p.as_str())
            .map(str::to_owned);
        AuthError::from_status(
            status,
            None,
            message,
            wire::retry_after(response.headers(), std::time::SystemTime::now()),
        )
    }

    fn session(&self, grant: Grant) -> Session {
        let tokens = TokenSet::new(
            AccessToken::new(grant.jwt),
            Some(RefreshToken::new(grant.renew)),
            Expiry::In(Duration::from_secs(grant.ttl_s)),
            std::time::SystemTime::now(),
        );
        Session::new("toy", self.url.clone(), tokens)
    }

    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<LoginOutcome, AuthError> {
        let response = self
            .post(
                "/session",
                json!({ "user": email, "pass": password, "code": code }),
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(LoginOutcome::Authenticated(
                self.session(parse_json(&response, "login")?),
            )),
            StatusCode::ACCEPTED if code.is_none() => {
                let challenge =
                    OtpChallenge::new("toy", self.url.clone(), email, std::time::SystemTime::now())
                        .with_password(password.into());
                Ok(LoginOutcome::OtpRequired(challenge))
            }
            _ => Err(self.error(
                &response,
                if code.is_some() {
                    AuthError::InvalidOtp
                } else {
                    AuthError::InvalidCredentials
                },
            )),
        }
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
        Arc::new(self.transport.clone())
    }
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let code = credentials.otp.as_ref().map(OtpCode::expose_secret);
        self.sign_in(
            &credentials.email,
            credentials.password.expose_secret(),
            code,
        )
        .await
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
        match self
            .sign_in(
                &challenge.email,
                password.expose_secret(),
                Some(code.expose_secret()),
            )
            .await?
        {
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
        let response = self
            .post("/session/renew", json!({ "renew": renew.expose_secret() }))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.error(&response, AuthError::RefreshRejected));
        }
        let fresh = self.session(parse_json(&response, "refresh")?);
        Ok(session.with_tokens(fresh.tokens))
    }
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        let renew = session
            .tokens
            .refresh
            .as_ref()
            .map(RefreshToken::expose_secret);
        let mut request = json_request(
            Method::DELETE,
            &endpoint(&self.url, "/session"),
            &json!({ "renew": renew }),
        )?;
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
        let raw: serde_json::Value = parse_json(&response, "whoami")?;
        let name = raw
            .get("display")
            .and_then(|d| d.as_str())
            .map(str::to_owned);
        let mut user = UserProfile::from_json_with_name(raw.clone(), name);
        user.email = raw.get("mail").and_then(|m| m.as_str()).map(str::to_owned);
        Ok(user)
    }
}

// ----- the toy's fake server ---------------------------------------------------------

#[derive(Default)]
struct ToyState {
    n: u64,
    access: HashMap<String, String>, // token -> user
    renew: HashMap<String, String>,  // live renew token -> user
    dead: HashSet<String>,
}

struct ToyFake {
    state: Mutex<ToyState>,
}

impl ToyFake {
    fn grant(&self, user: &str, cx: &Context<'_>) -> FakeResponse {
        let mut state = self.state.lock().unwrap();
        state.n += 1;
        let (jwt, renew) = (
            format!("jwt-{}-{}", state.n, fastrand::u64(..)),
            format!("renew-{}-{}", state.n, fastrand::u64(..)),
        );
        state.access.insert(jwt.clone(), user.to_owned());
        state.renew.insert(renew.clone(), user.to_owned());
        let _ = cx.now();
        FakeResponse::json(
            StatusCode::OK,
            &json!({ "jwt": jwt, "renew": renew, "ttl_s": 600 }),
        )
    }
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
                .and_then(|v| v.as_str())
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
                cx.recorder().record_refresh_token(&renew);
                let user = self.state.lock().unwrap().renew.remove(&renew);
                match user {
                    Some(user) => {
                        self.state.lock().unwrap().dead.insert(renew);
                        self.grant(&user, cx)
                    }
                    None => self.error(StatusCode::UNAUTHORIZED, "dead renew token"),
                }
            }
            "GET /whoami" => match req
                .bearer()
                .and_then(|t| self.state.lock().unwrap().access.get(t).cloned())
            {
                Some(user) => FakeResponse::json(
                    StatusCode::OK,
                    &json!({ "id": 1, "mail": user, "display": "Ann Toy" }),
                ),
                None => self.error(StatusCode::UNAUTHORIZED, "who are you"),
            },
            _ => {
                let mut state = self.state.lock().unwrap();
                if let Some(t) = req.bearer() {
                    state.access.remove(t);
                }
                let renew = field("renew");
                state.renew.remove(&renew);
                state.dead.insert(renew);
                FakeResponse::no_content()
            }
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        FakeResponse::json(status, &json!({ "problem": message }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_adapter_passes_the_conformance_suite() {
    let fake = ServerHandle::start(
        Arc::new(ToyFake {
            state: Mutex::default(),
        }),
        ServerConfig::new(),
    )
    .unwrap();
    let provider = ToyProvider::new(fake.base_url().clone());
    let target = Target::new(Credentials::new("ann@toy.test", "toy password"))
        .with_server(
            &fake,
            Endpoints {
                login: "POST /session".into(),
                current_user: "GET /whoami".into(),
                refresh: Some("POST /session/renew".into()),
            },
        )
        .with_otp_user(
            Credentials::new("coder@toy.test", "toy password"),
            Arc::new(|| "424242".to_owned()),
        );
    let report = conformance::run_all(&provider, &target).await;
    report.assert_passed();
    // Everything applies to this dialect: nothing may have been skipped.
    assert_eq!(report.passed(), report.results.len(), "{report:?}");
    assert!(fake.recorder().count("POST /session/renew") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_adapter_gets_the_fault_matrix() {
    use authmux_testkit::conformance::fault_matrix::{self, EndpointKind, FaultTarget, Outcome};
    let fake = ServerHandle::start(
        Arc::new(ToyFake {
            state: Mutex::default(),
        }),
        ServerConfig::new(),
    )
    .unwrap();
    let timeout = Duration::from_millis(400);
    let provider = Arc::new(ToyProvider::with_timeout(fake.base_url().clone(), timeout));
    let target = Target::new(Credentials::new("ann@toy.test", "toy password"))
        .with_server(
            &fake,
            Endpoints {
                login: "POST /session".into(),
                current_user: "GET /whoami".into(),
                refresh: Some("POST /session/renew".into()),
            },
        )
        .with_otp_user(
            Credentials::new("coder@toy.test", "toy password"),
            Arc::new(|| "424242".to_owned()),
        );
    let target = FaultTarget::new(target, timeout)
        .with_otp("POST /session")
        .with_logout("DELETE /session")
        .with_token_pointer("/jwt");
    let matrix = fault_matrix::run(provider, &target).await;
    matrix.assert_passed("toy");
    // Every endpoint kind applies to the toy, the send going to its current-user path.
    for endpoint in EndpointKind::ALL {
        assert!(
            matrix
                .cells
                .iter()
                .filter(|c| c.endpoint == endpoint)
                .any(|c| !matches!(c.outcome, Outcome::NotApplicable(_))),
            "{endpoint:?} did not apply"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_broken_adapter() {
    /// An adapter that maps every login failure to "server error": the suite must say so.
    #[derive(Debug)]
    struct Sloppy(ToyProvider);
    #[async_trait]
    impl AuthProvider for Sloppy {
        fn dialect(&self) -> &str {
            "toy"
        }
        fn base_url(&self) -> &Url {
            self.0.base_url()
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        fn transport(&self) -> Arc<dyn Transport> {
            self.0.transport()
        }
        async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
            self.0.login(c).await.map_err(|_| AuthError::Server {
                status: 500,
                code: None,
                message: None,
                retry_after: None,
            })
        }
        async fn verify_otp(
            &self,
            ch: &OtpChallenge,
            code: &OtpCode,
        ) -> Result<Session, AuthError> {
            self.0.verify_otp(ch, code).await
        }
        async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
            // Forgets to rotate: hands back the same refresh token.
            let mut fresh = self.0.refresh(s).await?;
            fresh.tokens.refresh = s.tokens.refresh.clone();
            Ok(fresh)
        }
        async fn logout(&self, s: &Session) -> Result<LogoutOutcome, AuthError> {
            self.0.logout(s).await
        }
        async fn current_user(&self, s: &Session) -> Result<UserProfile, AuthError> {
            self.0.current_user(s).await
        }
    }
    let fake = ServerHandle::start(
        Arc::new(ToyFake {
            state: Mutex::default(),
        }),
        ServerConfig::new(),
    )
    .unwrap();
    let provider = Sloppy(ToyProvider::new(fake.base_url().clone()));
    let target = Target::new(Credentials::new("ann@toy.test", "toy password")).with_server(
        &fake,
        Endpoints {
            login: "POST /session".into(),
            current_user: "GET /whoami".into(),
            refresh: Some("POST /session/renew".into()),
        },
    );
    let report = conformance::run_all(&provider, &target).await;
    let failed: Vec<&str> = report.failures().iter().map(|(n, _)| *n).collect();
    assert!(failed.contains(&"wrong_password"), "{report:?}");
    assert!(failed.contains(&"login_error_mapping"), "{report:?}");
    assert!(failed.contains(&"refresh_and_rotation"), "{report:?}");
    assert!(matches!(
        report.results.iter().find(|(n, _)| *n == "otp_challenge"),
        Some((_, CheckResult::Skipped(_)))
    ));
    let _ = Clock::now(&authmux_core::SystemClock);
}
