//! [`DirectusProvider`]: the Directus dialect of [`AuthProvider`], with
//! [`PasswordReset`] and [`OAuth`].
//!
//! Rules this module keeps, each from how Directus 12.4 behaves:
//! - No `Authorization` header on any `/auth/*` call: an expired bearer makes Directus
//!   answer 401 `TOKEN_EXPIRED` before the route runs, even on `/auth/refresh`.
//! - The mode a session was created in is stored in [`Session::extras`] under `"mode"`,
//!   so a restored session refreshes and signs out the way it signed in.
//! - Cookie values are tokens: kept in the session's [`TokenSet`], sent back only to
//!   the session's origin, never logged.
//! - Refresh tokens rotate. This provider refreshes exactly when asked; the
//!   [`SessionManager`](authmux_core::SessionManager) makes sure only one refresh runs
//!   at a time and never resends a spent token.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use authmux_core::provider::{OAuth, OAuthProvider, PasswordReset, authorize_request};
use authmux_core::token::server_date;
use authmux_core::wire::{empty_request, endpoint, json_request};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, LoginOutcome,
    LogoutOutcome, OtpChallenge, OtpCode, Password, RefreshToken, ResetToken, Session, SystemClock,
    TokenSet, Transport, UserProfile, async_trait,
};
use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::Value;
use url::Url;

use crate::DIALECT;
use crate::config::{DirectusConfig, DirectusMode};
use crate::cookies::{REFRESH_COOKIE, SESSION_COOKIE, cookie_header, set_cookie_value};
use crate::errors::{Context, ErrorAnswer};
use crate::wire::{LoginBody, ResetBody, ResetRequestBody, TokenAnswer, TokenBody, data_object};

/// The session extra holding the mode the session was created in.
pub const MODE_EXTRA: &str = "mode";

/// A Directus backend.
///
/// Stateless with respect to sessions (each call takes the [`Session`] it acts on) and
/// cheap to share as `Arc<dyn AuthProvider>`. Holds no secret, so its `Debug` shows only
/// the configuration.
#[derive(Clone)]
pub struct DirectusProvider {
    config: DirectusConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DirectusProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectusProvider")
            .field("url", &self.config.url.as_str())
            .field("mode", &self.config.mode)
            .field("fields", &self.config.fields)
            .field("client", &self.config.client)
            .finish_non_exhaustive()
    }
}

impl DirectusProvider {
    /// A provider with the default transport (hyper-util, rustls) built from
    /// `config.client`. Refuses plain `http://` to a non-loopback host unless
    /// `config.client.allow_insecure_http` is set.
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn new(config: DirectusConfig) -> Result<Self, AuthError> {
        config.client.check_url(&config.url)?;
        let transport = config.client.build_transport()?;
        Self::with_transport(config, transport)
    }

    /// A provider sending through `transport` (a test double, a custom client).
    /// Applies the same URL check as [`DirectusProvider::new`].
    pub fn with_transport(
        config: DirectusConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AuthError> {
        config.client.check_url(&config.url)?;
        if config.url.cannot_be_a_base() || config.url.host().is_none() {
            return Err(AuthError::validation(
                "url",
                "expected an http(s) base URL with a host",
            ));
        }
        Ok(Self {
            config,
            transport,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` to stamp tokens (`issued_at`, and `expires_at` from `expires` or the
    /// JWT's lifetime).
    /// Give it the same clock as the session manager when testing with a manual clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &DirectusConfig {
        &self.config
    }

    /// The mode `session` was created in (its `"mode"` extra), else this provider's.
    pub fn session_mode(&self, session: &Session) -> Result<DirectusMode, AuthError> {
        match session.extras.get(MODE_EXTRA) {
            None | Some(Value::Null) => Ok(self.config.mode),
            Some(Value::String(mode)) => mode.parse(),
            Some(_) => Err(AuthError::validation(
                "mode",
                "the session's `mode` extra is not a string",
            )),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub(crate) fn url(&self, path: &str) -> Url {
        endpoint(&self.config.url, path)
    }

    pub(crate) async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        self.transport.send(request).await
    }

    /// The error an unsuccessful answer stands for.
    pub(crate) fn error(&self, response: &Response<Bytes>, context: Context) -> AuthError {
        ErrorAnswer::read(response, self.now()).into_error(context)
    }

    /// Refuses a session that belongs to another origin than this provider's: its
    /// credentials are only ever sent where they came from.
    pub(crate) fn check_session(&self, session: &Session) -> Result<(), AuthError> {
        if session.base_url.origin() != self.config.url.origin() {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "the session belongs to {}, this provider talks to {}; its credentials are only sent to its own origin",
                    session.base_url.origin().ascii_serialization(),
                    self.config.url.origin().ascii_serialization()
                ),
            });
        }
        Ok(())
    }

    /// An authorized request to a non-`/auth` path of the session's server.
    pub(crate) fn authorized_request(
        &self,
        session: &Session,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Request<Bytes>, AuthError> {
        self.check_session(session)?;
        let mut request = match body {
            Some(body) => json_request(method, url, body)?,
            None => empty_request(method, url)?,
        };
        authorize_request(self, session, &mut request)?;
        Ok(request)
    }

    /// `POST /auth/login` (never with `Authorization`).
    async fn post_login(
        &self,
        email: &str,
        password: &Password,
        otp: Option<&OtpCode>,
        mode: DirectusMode,
    ) -> Result<Response<Bytes>, AuthError> {
        if email.trim().is_empty() {
            return Err(AuthError::validation("email", "the email is empty"));
        }
        if password.is_empty() {
            return Err(AuthError::validation("password", "the password is empty"));
        }
        let body = LoginBody {
            email,
            password: password.expose_secret(),
            mode: mode.as_str(),
            otp: otp.map(OtpCode::expose_secret),
        };
        self.send(json_request(Method::POST, &self.url("/auth/login"), &body)?)
            .await
    }

    /// Turns a successful login or refresh answer into tokens, per mode. `previous` is
    /// the refresh credential to keep when a refresh answer carries no new one.
    fn tokens_from(
        &self,
        response: &Response<Bytes>,
        mode: DirectusMode,
        previous: Option<&RefreshToken>,
        what: &str,
    ) -> Result<TokenSet, AuthError> {
        let answer = TokenAnswer::read(response, what)?;
        let now = self.now();
        let headers = response.headers();
        let (access, refresh) = match mode {
            DirectusMode::Json => {
                let access = answer.access_token.ok_or_else(|| {
                    AuthError::protocol(format!("{what}: no `access_token` in json mode"))
                })?;
                let refresh = answer.refresh_token.map(RefreshToken::new);
                (
                    AccessToken::new(access),
                    refresh.or_else(|| previous.cloned()),
                )
            }
            DirectusMode::Cookie => {
                let access = answer.access_token.ok_or_else(|| {
                    AuthError::protocol(format!("{what}: no `access_token` in cookie mode"))
                })?;
                let refresh = set_cookie_value(headers, REFRESH_COOKIE)
                    .or(answer.refresh_token)
                    .map(RefreshToken::new)
                    .or_else(|| previous.cloned())
                    .ok_or_else(|| {
                        AuthError::protocol(format!(
                            "{what}: cookie mode answered without a {REFRESH_COOKIE} cookie"
                        ))
                    })?;
                (AccessToken::new(access), Some(refresh))
            }
            DirectusMode::Session => {
                // The session cookie IS the access JWT, and also what refreshes it: keep
                // it as both, so the session manager's rotation bookkeeping (never send
                // a spent refresh credential twice) covers session mode too.
                let jwt = set_cookie_value(headers, SESSION_COOKIE).ok_or_else(|| {
                    AuthError::protocol(format!(
                        "{what}: session mode answered without a {SESSION_COOKIE} cookie"
                    ))
                })?;
                (AccessToken::new(jwt.as_str()), Some(RefreshToken::new(jwt)))
            }
        };
        // `expires` is a lifetime, counted from now; without it, the JWT's `exp` is mapped
        // onto the local clock with its `iat` (else the answer's `Date`).
        Ok(TokenSet::issued(
            access,
            refresh,
            answer.expiry,
            now,
            server_date(headers),
        ))
    }

    fn new_session(&self, tokens: TokenSet, mode: DirectusMode) -> Session {
        Session::new(DIALECT, self.config.url.clone(), tokens).with_extra(MODE_EXTRA, mode.as_str())
    }

    /// A refresh or logout request for `session` in `mode`: the token in the body (json)
    /// or the cookie (cookie, session). Never an `Authorization` header.
    fn token_request(
        &self,
        path: &str,
        session: &Session,
        mode: DirectusMode,
    ) -> Result<Option<Request<Bytes>>, AuthError> {
        self.check_session(session)?;
        let url = self.url(path);
        let credential = match mode {
            DirectusMode::Session => session
                .tokens
                .refresh
                .as_ref()
                .map(RefreshToken::expose_secret)
                .or(Some(session.tokens.access.expose_secret()))
                .filter(|s| !s.is_empty()),
            _ => session
                .tokens
                .refresh
                .as_ref()
                .map(RefreshToken::expose_secret)
                .filter(|s| !s.is_empty()),
        };
        let Some(credential) = credential else {
            return Ok(None);
        };
        let request = match mode {
            DirectusMode::Json => json_request(
                Method::POST,
                &url,
                &TokenBody {
                    refresh_token: Some(credential),
                    mode: mode.as_str(),
                },
            )?,
            DirectusMode::Cookie | DirectusMode::Session => {
                let name = if mode == DirectusMode::Cookie {
                    REFRESH_COOKIE
                } else {
                    SESSION_COOKIE
                };
                let mut request = json_request(
                    Method::POST,
                    &url,
                    &TokenBody {
                        refresh_token: None,
                        mode: mode.as_str(),
                    },
                )?;
                let (header, value) = cookie_header(name, credential)?;
                request.headers_mut().insert(header, value);
                request
            }
        };
        Ok(Some(request))
    }
}

/// The display name Directus users have: `first_name` and `last_name`, joined.
fn display_name(user: &Value) -> Option<String> {
    let part = |key: &str| {
        user.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let name = [part("first_name"), part("last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

#[async_trait]
impl AuthProvider for DirectusProvider {
    fn dialect(&self) -> &str {
        DIALECT
    }

    fn base_url(&self) -> &Url {
        &self.config.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: true,
            rotating_refresh: true,
            otp_login: true,
            server_logout: true,
            password_reset: true,
            oauth: true,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    /// Signs in with the configured mode. Credentials with an `otp` send it at once; a
    /// login without one that Directus answers with `INVALID_OTP` (the password was
    /// right, the user has two-factor on) is [`LoginOutcome::OtpRequired`], with the
    /// password kept in the challenge, in memory only, for [`AuthProvider::verify_otp`].
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let mode = self.config.mode;
        let response = self
            .post_login(
                &credentials.email,
                &credentials.password,
                credentials.otp.as_ref(),
                mode,
            )
            .await?;
        if response.status().is_success() {
            let tokens = self.tokens_from(&response, mode, None, "login answer")?;
            return Ok(LoginOutcome::Authenticated(self.new_session(tokens, mode)));
        }
        let error = ErrorAnswer::read(&response, self.now());
        if error.is("INVALID_OTP") && credentials.otp.is_none() {
            // The password stays in the challenge, in memory only (never serialized,
            // zeroized when the last copy is dropped): Directus needs it again.
            let mut challenge = OtpChallenge::new(
                DIALECT,
                self.config.url.clone(),
                credentials.email.clone(),
                self.now(),
            )
            .with_password(credentials.password.clone());
            challenge
                .extras
                .insert(MODE_EXTRA.to_owned(), mode.as_str().into());
            return Ok(LoginOutcome::OtpRequired(challenge));
        }
        Err(error.into_error(Context::Login))
    }

    /// Re-sends the login with the code. A challenge read back from storage has no
    /// password (it is never serialized): that is a [`AuthError::Validation`] on
    /// `password`; attach it with [`OtpChallenge::with_password`].
    async fn verify_otp(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        if challenge.dialect != DIALECT {
            return Err(AuthError::validation(
                "challenge",
                format!(
                    "the challenge was issued by {:?}, not directus",
                    challenge.dialect
                ),
            ));
        }
        if challenge.base_url.origin() != self.config.url.origin() {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "the challenge belongs to {}, not {}",
                    challenge.base_url.origin().ascii_serialization(),
                    self.config.url.origin().ascii_serialization()
                ),
            });
        }
        let Some(password) = challenge.password.as_ref() else {
            return Err(AuthError::validation(
                "password",
                "Directus finishes a two-factor login by sending the password again, and this \
                 challenge has none (passwords are never stored); attach it with \
                 OtpChallenge::with_password",
            ));
        };
        if code.is_empty() {
            return Err(AuthError::validation("otp", "the one-time code is empty"));
        }
        let mode = match challenge.extras.get(MODE_EXTRA).and_then(Value::as_str) {
            Some(mode) => mode.parse()?,
            None => self.config.mode,
        };
        let response = self
            .post_login(&challenge.email, password, Some(code), mode)
            .await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Login));
        }
        let tokens = self.tokens_from(&response, mode, None, "login answer")?;
        Ok(self.new_session(tokens, mode))
    }

    /// `POST /auth/refresh` in the session's mode: json sends `refresh_token`, cookie
    /// sends the `directus_refresh_token` cookie, session sends the
    /// `directus_session_token` cookie plus `{"mode": "session"}`. The answer's new
    /// credential replaces the old one, which Directus has now invalidated.
    ///
    /// In session mode the cookie is the access JWT itself, and Directus checks its
    /// expiry before the route runs: an expired session cannot be refreshed (the answer
    /// is [`AuthError::RefreshRejected`]), so session mode relies on the manager's
    /// proactive refresh.
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        let mode = self.session_mode(session)?;
        let Some(request) = self.token_request("/auth/refresh", session, mode)? else {
            return Err(AuthError::RefreshRejected);
        };
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Refresh));
        }
        let tokens = self.tokens_from(
            &response,
            mode,
            session.tokens.refresh.as_ref(),
            "refresh answer",
        )?;
        Ok(session.with_tokens(tokens))
    }

    /// `POST /auth/logout` in the session's mode (204). Directus ignores unknown
    /// tokens, so a 2xx means the refresh credential is dead now.
    ///
    /// In session mode an EXPIRED session cookie is refused (401 `TOKEN_EXPIRED`) before
    /// the route runs, so Directus cannot be told; nothing can use that session any
    /// more either (refreshing it is refused the same way), so this is
    /// [`LogoutOutcome::LocalOnly`] rather than an error.
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        let mode = self.session_mode(session)?;
        let Some(request) = self.token_request("/auth/logout", session, mode)? else {
            return Ok(LogoutOutcome::LocalOnly {
                reason: "the session has no refresh token to revoke".into(),
            });
        };
        let response = self.send(request).await?;
        if !response.status().is_success() {
            let error = ErrorAnswer::read(&response, self.now());
            if mode == DirectusMode::Session && error.is("TOKEN_EXPIRED") {
                return Ok(LogoutOutcome::LocalOnly {
                    reason: "the session cookie had expired: Directus refuses it, so the \
                             server was not told (and nothing can use that session any more)"
                        .into(),
                });
            }
            return Err(error.into_error(Context::Other));
        }
        Ok(LogoutOutcome::Revoked)
    }

    /// `GET /users/me` (`?fields=` from the config), with the name from `first_name`
    /// and `last_name`.
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        let mut url = self.url("/users/me");
        if !self.config.fields.is_empty() {
            url.query_pairs_mut()
                .append_pair("fields", &self.config.fields.join(","));
        }
        let request = self.authorized_request(session, Method::GET, &url, None)?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Authorized));
        }
        let user = Value::Object(data_object(&response, "current user")?);
        let name = display_name(&user);
        Ok(UserProfile::from_json_with_name(user, name))
    }

    /// Sessions built from kept tokens get this provider's mode. In session mode the
    /// session cookie is both the access token and the refresh credential, so a token
    /// set without a refresh token gets the access token as one.
    fn session_from_tokens(&self, mut tokens: TokenSet) -> Session {
        if self.config.mode == DirectusMode::Session && tokens.refresh.is_none() {
            tokens.refresh = Some(RefreshToken::new(tokens.access.expose_secret()));
        }
        self.new_session(tokens, self.config.mode)
    }

    fn password_reset(&self) -> Option<&dyn PasswordReset> {
        Some(self)
    }

    fn oauth(&self) -> Option<&dyn OAuth> {
        Some(self)
    }
}

#[async_trait]
impl PasswordReset for DirectusProvider {
    /// `POST /auth/password/request {email, reset_url?}`. Directus answers 204 even
    /// for an unknown email. A `reset_url` must be in the server's
    /// `PASSWORD_RESET_URL_ALLOW_LIST`.
    async fn request_reset(&self, email: &str, reset_url: Option<&Url>) -> Result<(), AuthError> {
        if email.trim().is_empty() {
            return Err(AuthError::validation("email", "the email is empty"));
        }
        let body = ResetRequestBody {
            email,
            reset_url: reset_url.map(Url::as_str),
        };
        let request = json_request(Method::POST, &self.url("/auth/password/request"), &body)?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Other));
        }
        Ok(())
    }

    /// `POST /auth/password/reset {token, password}`. A bad, expired or already used
    /// token is [`AuthError::InvalidCredentials`] (Directus answers 403 `INVALID_TOKEN`
    /// or, for a used one, 403 `FORBIDDEN`).
    async fn complete_reset(
        &self,
        token: &ResetToken,
        new_password: &Password,
    ) -> Result<(), AuthError> {
        if token.is_empty() {
            return Err(AuthError::validation("token", "the reset token is empty"));
        }
        if new_password.is_empty() {
            return Err(AuthError::validation(
                "password",
                "the new password is empty",
            ));
        }
        let body = ResetBody {
            token: token.expose_secret(),
            password: new_password.expose_secret(),
        };
        let request = json_request(Method::POST, &self.url("/auth/password/reset"), &body)?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Reset));
        }
        Ok(())
    }
}

#[async_trait]
impl OAuth for DirectusProvider {
    /// `GET /auth` (Directus 10+), falling back to the older `GET /auth/oauth` when that
    /// answers 404. Accepts both answer shapes: a list of names (`["github"]`) and a
    /// list of objects (`[{"name": "github", "label": "GitHub", ...}]`); `null` is none.
    async fn providers(&self) -> Result<Vec<OAuthProvider>, AuthError> {
        let mut response = self
            .send(empty_request(Method::GET, &self.url("/auth"))?)
            .await?;
        if response.status() == http::StatusCode::NOT_FOUND {
            response = self
                .send(empty_request(Method::GET, &self.url("/auth/oauth"))?)
                .await?;
        }
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Other));
        }
        let body: Value = authmux_core::wire::parse_json(&response, "auth providers")?;
        let list = match body.get("data") {
            Some(Value::Array(list)) => list.as_slice(),
            // Directus 9's `/auth/oauth` answers `{"data": null}` when none is set up.
            Some(Value::Null) => &[],
            _ => {
                return Err(AuthError::protocol(
                    "auth providers: expected a `data` list",
                ));
            }
        };
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(list
            .iter()
            .filter_map(|entry| match entry {
                Value::String(name) if !name.is_empty() => Some(OAuthProvider {
                    name: name.clone(),
                    label: None,
                }),
                Value::Object(_) => Some(OAuthProvider {
                    name: text(entry, "name")?,
                    label: text(entry, "label"),
                }),
                _ => None,
            })
            .collect())
    }

    /// `<url>/auth/login/<provider>?redirect=<redirect>`.
    fn start_url(&self, provider: &str, redirect: Option<&Url>) -> Result<Url, AuthError> {
        if provider.is_empty() || provider.contains(['/', '?', '#']) {
            return Err(AuthError::validation(
                "provider",
                "expected a provider key such as \"github\"",
            ));
        }
        let mut url = self.url("/auth/login");
        url.path_segments_mut()
            .map_err(|()| AuthError::validation("url", "the base URL cannot hold a path"))?
            .push(provider);
        if let Some(redirect) = redirect {
            url.query_pairs_mut()
                .append_pair("redirect", redirect.as_str());
        }
        Ok(url)
    }

    /// Directus ends an OAuth login by setting its refresh cookie in the BROWSER and
    /// redirecting to `redirect`: the callback URL itself carries no token, so there is
    /// nothing a client outside the browser can turn into a session. This therefore
    /// returns:
    /// - the mapped error when Directus redirected with `?reason=<CODE>` (a failed
    ///   login, e.g. `INVALID_CREDENTIALS`);
    /// - a session when the callback carries a `refresh_token` (a redirect page of
    ///   yours that forwards the cookie's value), refreshed once in json mode;
    /// - otherwise [`AuthError::Validation`] on `callback`, explaining the above.
    async fn complete(&self, callback: &Url) -> Result<Session, AuthError> {
        let param = |key: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(reason) = param("reason") {
            let reason = authmux_core::error::sanitize_message(&reason);
            return Err(ErrorAnswer {
                status: 401,
                code: Some(reason),
                message: Some("the OAuth login failed".into()),
                field: None,
                retry_after: None,
            }
            .into_error(Context::Login));
        }
        let Some(refresh) = param("refresh_token") else {
            return Err(AuthError::validation(
                "callback",
                "Directus finishes OAuth by setting its refresh cookie in the browser; the \
                 callback URL carries no token. Forward the directus_refresh_token cookie as \
                 ?refresh_token= from your redirect page, or sign in with a password",
            ));
        };
        let tokens = TokenSet::new(
            AccessToken::new(""),
            Some(RefreshToken::new(refresh)),
            authmux_core::Expiry::Unstated,
            self.now(),
        );
        let session = self.new_session(tokens, DirectusMode::Json);
        self.refresh(&session).await
    }
}
