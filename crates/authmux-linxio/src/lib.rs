#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod decode;
pub mod extras;
mod user;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use authmux_core::provider::authorize_request;
use authmux_core::token::server_date;
use authmux_core::wire::{empty_request, endpoint, json_request};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, ClientOptions, Clock, Credentials, Expiry,
    LoginOutcome, LogoutOutcome, OtpChallenge, OtpCode, RefreshToken, RetryPolicy, Session,
    SystemClock, TokenSet, Transport, UserProfile,
};
use bytes::Bytes;
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::decode::{Endpoint, TokenAnswer};

/// Re-exported so that a crate depending on `authmux-linxio` alone reaches the session
/// manager, errors and token types.
pub use authmux_core;
pub use user::LinxioUserExt;

/// The dialect's name, as stored in [`Session::dialect`].
pub const DIALECT: &str = "linxio";

/// How to reach a Linxio API.
///
/// Serializes to one small object; the HTTP settings of [`ClientOptions`] are flattened
/// into it:
///
/// ```
/// let config: authmux_linxio::LinxioConfig = serde_json::from_str(
///     r#"{"url": "https://api.linxio.example", "fields": ["email", "teamType"], "timeout_ms": 10000}"#,
/// ).unwrap();
/// assert_eq!(config.fields, ["email", "teamType"]);
/// assert_eq!(config.client.timeout_ms, Some(10_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinxioConfig {
    /// The API's base URL (`https://...`; a path prefix is kept).
    pub url: Url,
    /// The optional tenant-domain hint sent with `POST /login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The default `fields[]` projection of `GET /me` (empty: every field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// HTTP settings shared by every dialect (timeout, User-Agent, insecure http).
    #[serde(flatten)]
    pub client: ClientOptions,
}

impl LinxioConfig {
    /// A configuration for the API at `url`, with no domain hint, no projection and the
    /// default HTTP settings (30 s timeout, https only except on loopback).
    pub fn new(url: Url) -> Self {
        Self {
            url,
            domain: None,
            fields: Vec::new(),
            client: ClientOptions::default(),
        }
    }

    /// Sets the tenant-domain hint sent at login.
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the default `fields[]` projection of `GET /me`.
    #[must_use]
    pub fn with_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }
}

/// The Linxio dialect: `POST /login`, `POST /login/otp`, `POST /token/refresh`,
/// `GET /me` and `POST /logout`.
///
/// Stateless: every call takes the [`Session`] it acts on. Use it through an
/// [`authmux_core::SessionManager`] for proactive refresh, refresh-and-replay on 401 and
/// retries of authorized requests. Cheap to clone.
#[derive(Clone)]
pub struct LinxioProvider {
    config: Arc<LinxioConfig>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl fmt::Debug for LinxioProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No secrets live here; the transport is left out because it may not be Debug.
        f.debug_struct("LinxioProvider")
            .field("url", &self.config.url.as_str())
            .field("domain", &self.config.domain)
            .field("fields", &self.config.fields)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// `POST /login` body. Borrowed, so the password is not copied into another `String`.
#[derive(Serialize)]
struct LoginBody<'a> {
    email: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
}

/// `POST /login/otp` body.
#[derive(Serialize)]
struct OtpBody<'a> {
    email: &'a str,
    code: &'a str,
}

/// `POST /token/refresh` body.
#[derive(Serialize)]
struct RefreshBody<'a> {
    #[serde(rename = "refreshToken")]
    refresh_token: &'a str,
}

impl LinxioProvider {
    /// A provider with the default transport (hyper-util, rustls) built from
    /// `config.client`. Refuses plain `http://` to a non-loopback host unless
    /// `config.client.allow_insecure_http` is set.
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn new(config: LinxioConfig) -> Result<Self, AuthError> {
        config.client.check_url(&config.url)?;
        let transport = config.client.build_transport()?;
        Self::with_transport(config, transport)
    }

    /// A provider sending through `transport` (a custom client, or a scripted closure in
    /// tests). The URL is checked as in [`LinxioProvider::new`].
    pub fn with_transport(
        config: LinxioConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AuthError> {
        config.client.check_url(&config.url)?;
        Ok(Self {
            config: Arc::new(config),
            transport,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
        })
    }

    /// Uses `clock` for token issue times and OTP challenges (default: the system
    /// clock). Give it the same clock as the session manager.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The retry policy of `GET /me`, the one idempotent call of this dialect (default:
    /// [`RetryPolicy::default`]). Logins, OTP checks, refreshes and logouts are POSTs
    /// and are never retried.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &LinxioConfig {
        &self.config
    }

    /// `GET /me` with an explicit `fields[]` projection instead of the configured one
    /// (an empty list asks for every field). Call it inside
    /// [`SessionManager::authorized`](authmux_core::SessionManager::authorized) to get
    /// the manager's refresh-and-retry on 401.
    pub async fn current_user_with_fields<S: AsRef<str>>(
        &self,
        session: &Session,
        fields: &[S],
    ) -> Result<UserProfile, AuthError> {
        self.check_session(session)?;
        let mut url = endpoint(&self.config.url, Endpoint::Me.path());
        if !fields.is_empty() {
            let mut query = url.query_pairs_mut();
            for field in fields {
                query.append_pair("fields[]", field.as_ref());
            }
        }
        let mut request = empty_request(Method::GET, &url)?;
        authorize_request(self, session, &mut request)?;
        let clock = &self.clock;
        let response = authmux_core::retry::send_with_retry(
            self.transport.as_ref(),
            request,
            &self.retry,
            false,
            || clock.now(),
        )
        .await?;
        decode::me(&response, self.clock.now())
    }

    async fn post_json(
        &self,
        at: Endpoint,
        body: &impl Serialize,
        session: Option<&Session>,
    ) -> Result<Response<Bytes>, AuthError> {
        let mut request: Request<Bytes> =
            json_request(Method::POST, &endpoint(&self.config.url, at.path()), body)?;
        if let Some(session) = session {
            authorize_request(self, session, &mut request)?;
        }
        self.transport.send(request).await
    }

    /// Tokens the server has just issued in `response`: the expiry (`expireAt`, else the
    /// JWT's `exp`) is mapped onto the local clock with the server's own time (the
    /// answer's `Date`, the JWT's `iat`), so a skewed server clock changes nothing (see
    /// [`TokenSet::issued`]).
    fn issued(
        &self,
        access: AccessToken,
        refresh: Option<RefreshToken>,
        expiry: Expiry,
        response: &Response<Bytes>,
    ) -> TokenSet {
        TokenSet::issued(
            access,
            refresh,
            expiry,
            self.clock.now(),
            server_date(response.headers()),
        )
    }

    /// A session from a token answer received in `response`, with the email and the
    /// team hints as extras.
    fn session_from(
        &self,
        answer: TokenAnswer,
        email: &str,
        response: &Response<Bytes>,
    ) -> Session {
        let tokens = self.issued(answer.access, answer.refresh, answer.expiry, response);
        let mut session =
            Session::new(DIALECT, self.config.url.clone(), tokens).with_extra(extras::EMAIL, email);
        if let Some(team_type) = answer.team_type {
            session = session.with_extra(extras::TEAM_TYPE, team_type);
        }
        if let Some(role_id) = answer.role_id {
            session = session.with_extra(extras::ROLE_ID, role_id);
        }
        session
    }

    /// Credentials go only to this provider's origin: a session of another dialect or
    /// server is refused before anything is sent.
    fn check_session(&self, session: &Session) -> Result<(), AuthError> {
        if session.dialect != DIALECT {
            return Err(AuthError::validation(
                "session",
                format!("a {:?} session cannot be used with Linxio", session.dialect),
            ));
        }
        if session.base_url.origin() != self.config.url.origin() {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "the session belongs to {}, not to {}",
                    session.base_url.origin().ascii_serialization(),
                    self.config.url.origin().ascii_serialization()
                ),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl AuthProvider for LinxioProvider {
    fn dialect(&self) -> &str {
        DIALECT
    }

    fn base_url(&self) -> &Url {
        &self.config.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: true,
            // Linxio *may* rotate ("a new refresh token when Linxio rotates it"); the
            // session manager handles both, and a rotated token is never sent again.
            rotating_refresh: false,
            otp_login: true,
            server_logout: true,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        Arc::clone(&self.transport)
    }

    /// `POST /login {email, password, domain?}`. An answer flagged `otp_required` (or
    /// `otpRequired`) gives [`LoginOutcome::OtpRequired`]; the challenge holds only the
    /// email, which is all `/login/otp` needs. When `credentials` already carry a code,
    /// it is verified at once and the outcome is the session.
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        if credentials.email.trim().is_empty() {
            return Err(AuthError::validation(
                "email",
                "an email address is required",
            ));
        }
        if credentials.password.is_empty() {
            return Err(AuthError::validation("password", "a password is required"));
        }
        let body = LoginBody {
            email: &credentials.email,
            password: credentials.password.expose_secret(),
            domain: self.config.domain.as_deref(),
        };
        let response = self.post_json(Endpoint::Login, &body, None).await?;
        let answer = decode::login(&response, self.clock.now())
            .map_err(|e| e.scrubbed(&[credentials.password.expose_secret()]))?;
        match answer {
            decode::LoginAnswer::Tokens(answer) => Ok(LoginOutcome::Authenticated(
                self.session_from(answer, &credentials.email, &response),
            )),
            decode::LoginAnswer::OtpRequired => {
                let challenge = OtpChallenge::new(
                    DIALECT,
                    self.config.url.clone(),
                    credentials.email.clone(),
                    self.clock.now(),
                );
                match &credentials.otp {
                    Some(code) => Ok(LoginOutcome::Authenticated(
                        self.verify_otp(&challenge, code).await?,
                    )),
                    None => Ok(LoginOutcome::OtpRequired(challenge)),
                }
            }
        }
    }

    /// `POST /login/otp {email, code}`.
    async fn verify_otp(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        if challenge.dialect != DIALECT {
            return Err(AuthError::validation(
                "challenge",
                format!(
                    "a {:?} challenge cannot be completed at Linxio",
                    challenge.dialect
                ),
            ));
        }
        if challenge.base_url.origin() != self.config.url.origin() {
            return Err(AuthError::validation(
                "challenge",
                "the challenge was issued by another server",
            ));
        }
        let code_text = code.expose_secret().trim();
        if code_text.is_empty() {
            return Err(AuthError::validation("code", "a one-time code is required"));
        }
        let body = OtpBody {
            email: &challenge.email,
            code: code_text,
        };
        let response = self.post_json(Endpoint::LoginOtp, &body, None).await?;
        let answer =
            decode::login_otp(&response, self.clock.now()).map_err(|e| e.scrubbed(&[code_text]))?;
        Ok(self.session_from(answer, &challenge.email, &response))
    }

    /// `POST /token/refresh {refreshToken}`. A returned `refreshToken` replaces the old
    /// one; when none is returned the old one is kept. User and extras are kept.
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        self.check_session(session)?;
        let Some(refresh) = &session.tokens.refresh else {
            // Without a refresh token there is nothing to exchange: sign in again.
            return Err(AuthError::RefreshRejected);
        };
        let body = RefreshBody {
            refresh_token: refresh.expose_secret(),
        };
        let response = self.post_json(Endpoint::Refresh, &body, None).await?;
        let answer = decode::refresh(&response, self.clock.now())?;
        let refresh = answer.refresh.or_else(|| session.tokens.refresh.clone());
        Ok(session.with_tokens(self.issued(answer.access, refresh, answer.expiry, &response)))
    }

    /// `POST /logout` with the bearer and `{}`: a 204 or any JSON success is
    /// [`LogoutOutcome::Revoked`].
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        self.check_session(session)?;
        let response = self
            .post_json(Endpoint::Logout, &serde_json::json!({}), Some(session))
            .await?;
        decode::logout(&response, self.clock.now())
    }

    /// `GET /me` with the configured `fields[]` projection (see
    /// [`LinxioProvider::current_user_with_fields`]). Retried per the provider's
    /// [`RetryPolicy`] on network errors and 5xx.
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        self.current_user_with_fields(session, &self.config.fields)
            .await
    }
}

#[cfg(test)]
mod tests;
