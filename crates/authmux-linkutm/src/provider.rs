//! [`LinkUtmProvider`]: the LinkUTM dialect behind [`AuthProvider`] and the capability
//! traits [`Signup`], [`PasswordReset`], [`PasswordChange`], [`SignInSessions`] and
//! [`OAuth`].
//!
//! The provider is stateless about sessions: each call takes the [`Session`] it acts
//! on. What it adds to a session lives in [`Session::extras`]:
//! [`WORKSPACE_EXTRA`] (the workspace authorized requests send as `x-workspace-id`) and
//! [`SIGN_IN_EXTRA`] (the sign-in id the JWT names, when it names one).
//!
//! # Logout
//! LinkUTM has no logout endpoint; a JWT stays valid until its `exp`. What the server
//! has is a list of sign-ins, each revocable. [`AuthProvider::logout`] therefore:
//! 1. does nothing on the server if the token has already expired (the server would
//!    refuse it): [`LogoutOutcome::LocalOnly`];
//! 2. otherwise lists the sign-ins and looks for this session's own: the one record
//!    flagged as current (`current`, `isCurrent` or `is_current`: true), else the
//!    record whose id (or `jti`/`tokenId`) equals the sign-in id the JWT names
//!    (`sid`, `sessionId`, `session_id`, then `jti`);
//! 3. revokes exactly that one and returns [`LogoutOutcome::SignInRevoked`];
//! 4. if no single record can be identified, revokes nothing and returns
//!    [`LogoutOutcome::LocalOnly`] with the reason.
//!
//! It never revokes all sign-ins: that signs the user out on every device, which only
//! an explicit [`SignInSessions::revoke_all`] may do.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use authmux_core::provider::{RequestTarget, bearer};
use authmux_core::token::{jwt_hint, server_date};
use authmux_core::wire::{empty_request, endpoint, json_request};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, Expiry, LoginOutcome,
    LogoutOutcome, OAuth, OAuthProvider, OtpChallenge, OtpCode, Password, PasswordChange,
    PasswordReset, ResetToken, Session, SignInRecord, SignInSessions, Signup, SignupRequest,
    SystemClock, TokenSet, Transport, UserProfile,
};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use serde::Serialize;
use url::Url;

use crate::config::{LinkUtmConfig, check_workspace};
use crate::validate;
use crate::wire::{self, Call, paths};

/// Where LinkUTM's auth routes live; requests there never carry the workspace.
const AUTH_PREFIX: &str = "/api/v1/auth/";

/// The dialect's name, stored in every session it creates.
pub const DIALECT: &str = "linkutm";

/// The session extra holding the workspace (uuid or slug) authorized requests send as
/// `x-workspace-id`.
pub const WORKSPACE_EXTRA: &str = "workspace";

/// The session extra holding the id of the sign-in the JWT belongs to, when the JWT
/// names one (claim `sid`, `sessionId` or `session_id`).
pub const SIGN_IN_EXTRA: &str = "sign_in_id";

/// The header carrying the workspace on non-auth API calls.
pub const WORKSPACE_HEADER: &str = "x-workspace-id";

/// The only OAuth provider LinkUTM offers.
pub const GOOGLE: &str = "google";

/// A client of one LinkUTM API.
///
/// ```
/// use authmux_core::AuthProvider;
/// use authmux_linkutm::{LinkUtmConfig, LinkUtmProvider};
/// # use authmux_core::AuthError;
/// # let transport = std::sync::Arc::new(authmux_core::transport::from_fn(
/// #     |_req: http::Request<bytes::Bytes>| async {
/// #         Err::<http::Response<bytes::Bytes>, _>(AuthError::Timeout)
/// #     },
/// # ));
/// let config = LinkUtmConfig::new("https://api.linkutm.com".parse().unwrap()).with_workspace("acme");
/// let provider = LinkUtmProvider::with_transport(config, transport).unwrap();
/// assert_eq!(provider.dialect(), "linkutm");
/// assert!(!provider.capabilities().refresh);
/// ```
pub struct LinkUtmProvider {
    config: LinkUtmConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for LinkUtmProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkUtmProvider")
            .field("url", &self.config.url.as_str())
            .field("workspace", &self.config.workspace)
            .field(
                "frontend_url",
                &self.config.frontend_url.as_ref().map(Url::as_str),
            )
            .field("client", &self.config.client)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct LoginBody<'a> {
    email: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct SendOtpBody<'a> {
    email: &'a str,
    name: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct VerifyOtpBody<'a> {
    email: &'a str,
    otp: &'a str,
}

#[derive(Serialize)]
struct EmailBody<'a> {
    email: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetBody<'a> {
    token: &'a str,
    new_password: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeBody<'a> {
    current_password: &'a str,
    new_password: &'a str,
}

impl LinkUtmProvider {
    /// A provider with the default transport (hyper-util, rustls, `User-Agent:
    /// authmux/<version>` unless `config.client.user_agent` says otherwise).
    ///
    /// Refuses plain `http://` to a non-loopback host unless
    /// `config.client.allow_insecure_http`, and a workspace that cannot be a header.
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn new(config: LinkUtmConfig) -> Result<Self, AuthError> {
        config.check()?;
        let transport = config.client.build_transport()?;
        Self::with_transport(config, transport)
    }

    /// A provider sending through `transport` (a test double, a custom client). The
    /// same checks as [`LinkUtmProvider::new`] apply.
    pub fn with_transport(
        config: LinkUtmConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AuthError> {
        config.check()?;
        Ok(Self {
            config,
            transport,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for token issue times, expiry checks and `Retry-After` dates
    /// (default: the system clock). Share one `ManualClock` with the session manager
    /// and a fake server in tests.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &LinkUtmConfig {
        &self.config
    }

    /// The workspace a session acts in, if it has one.
    pub fn workspace_of(session: &Session) -> Option<&str> {
        session.extra_str(WORKSPACE_EXTRA)
    }

    /// A copy of `session` acting in `workspace` (or in none). The workspace must be a
    /// valid header value (see [`check_workspace`]).
    pub fn session_in_workspace(
        session: &Session,
        workspace: Option<&str>,
    ) -> Result<Session, AuthError> {
        let mut session = session.clone();
        match workspace {
            Some(workspace) => {
                check_workspace(workspace)?;
                session
                    .extras
                    .insert(WORKSPACE_EXTRA.into(), workspace.into());
            }
            None => {
                session.extras.remove(WORKSPACE_EXTRA);
            }
        }
        Ok(session)
    }

    fn url(&self, path: &str) -> Url {
        endpoint(&self.config.url, path)
    }

    /// A new session for a token the server just gave, received now. The JWT's `exp`
    /// (server clock) becomes a local expiry: now plus `exp - iat`, else plus
    /// `exp - server_date` (the answer's `Date`), else `exp` as is (see
    /// [`TokenSet::issued`]).
    fn new_session(
        &self,
        token: AccessToken,
        user: Option<UserProfile>,
        server_date: Option<SystemTime>,
    ) -> Session {
        let tokens = TokenSet::issued(token, None, Expiry::Unstated, self.clock.now(), server_date);
        self.session_from_tokens(tokens).with_user(user)
    }

    /// A new session for a token issued in `response` (see [`Self::new_session`]).
    fn session_from_answer(
        &self,
        answer: wire::TokenAnswer,
        response: &Response<Bytes>,
    ) -> Session {
        self.new_session(answer.token, answer.user, server_date(response.headers()))
    }

    /// Credentials go only to this provider's origin: a session of another server is
    /// refused rather than sent here.
    fn check_session(&self, session: &Session) -> Result<(), AuthError> {
        if session.base_url.origin() != self.config.url.origin() {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "the session belongs to {}, not to this provider's {}",
                    session.base_url.origin().ascii_serialization(),
                    self.config.url.origin().ascii_serialization()
                ),
            });
        }
        Ok(())
    }

    /// Sends one request (never retried: the session manager retries authorized
    /// requests, and auth calls are not idempotent) and maps a non-2xx answer.
    async fn exchange(
        &self,
        call: Call,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, AuthError> {
        let response = self.transport.send(request).await?;
        tracing::debug!(dialect = DIALECT, ?call, status = %response.status(), "answer");
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(wire::error_from(call, &response, self.clock.now()))
        }
    }

    /// A JSON POST to an auth endpoint, with a bearer when `session` is given. Auth
    /// calls never carry `x-workspace-id`.
    async fn post(
        &self,
        call: Call,
        path: &str,
        body: &impl Serialize,
        session: Option<&Session>,
    ) -> Result<Response<Bytes>, AuthError> {
        let mut request = json_request(Method::POST, &self.url(path), body)?;
        if let Some(session) = session {
            self.check_session(session)?;
            request
                .headers_mut()
                .insert(AUTHORIZATION, bearer(&session.tokens)?);
        }
        self.exchange(call, request).await
    }

    /// A bodiless authenticated request to an auth endpoint (bearer only).
    async fn bare(
        &self,
        call: Call,
        method: Method,
        url: &Url,
        session: &Session,
    ) -> Result<Response<Bytes>, AuthError> {
        self.check_session(session)?;
        let mut request = empty_request(method, url)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, bearer(&session.tokens)?);
        self.exchange(call, request).await
    }

    /// The id of the sign-in `session` belongs to, among `records` (see the module
    /// docs), or why it cannot be told.
    fn own_sign_in(session: &Session, records: &[SignInRecord]) -> Result<String, String> {
        let flagged: Vec<&SignInRecord> =
            records.iter().filter(|r| r.current == Some(true)).collect();
        match flagged.as_slice() {
            [one] => return Ok(one.id.clone()),
            [] => {}
            _ => {
                return Err(format!(
                    "the server flagged {} sign-ins as current; revoking none of them",
                    flagged.len()
                ));
            }
        }
        let token = session.tokens.access.expose_secret();
        let claims = wire::jwt_claims(token).unwrap_or_default();
        let text = |key: &str| match claims.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let candidates: Vec<String> = session
            .extra_str(SIGN_IN_EXTRA)
            .map(str::to_owned)
            .into_iter()
            .chain(wire::SIGN_IN_CLAIMS.iter().filter_map(|k| text(k)))
            .chain(text("jti"))
            .collect();
        for candidate in &candidates {
            let matches = |r: &&SignInRecord| {
                r.id == *candidate
                    || ["jti", "tokenId", "token_id"].iter().any(|k| {
                        r.raw.get(*k).and_then(serde_json::Value::as_str)
                            == Some(candidate.as_str())
                    })
            };
            if let Some(record) = records.iter().find(matches) {
                return Ok(record.id.clone());
            }
        }
        Err(if records.is_empty() {
            "the server lists no active sign-in for this token".to_owned()
        } else {
            "the server's sign-in list does not say which sign-in is this session's (no \
             current flag, and no listed id matches the token's sid/sessionId/jti)"
                .to_owned()
        })
    }
}

#[async_trait]
impl AuthProvider for LinkUtmProvider {
    fn dialect(&self) -> &str {
        DIALECT
    }

    fn base_url(&self) -> &Url {
        &self.config.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: false,
            rotating_refresh: false,
            refresh_without_token: false,
            otp_login: false,
            // Logout revokes this session's own sign-in (and with it the JWT) whenever
            // the server lets it be identified, which LinkUTM's `current` flag and `sid`
            // claim do; when it cannot, the outcome says `LocalOnly`.
            server_logout: true,
            signup: true,
            password_reset: true,
            password_change: true,
            sign_in_sessions: true,
            oauth: true,
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        if credentials.otp.is_some() {
            // Sending the password without the code would silently drop it.
            return Err(AuthError::Unsupported {
                capability: "otp_login",
            });
        }
        let body = LoginBody {
            email: credentials.email.trim(),
            password: credentials.password.expose_secret(),
        };
        let response = self.post(Call::Login, paths::LOGIN, &body, None).await?;
        let answer = wire::token_answer(&response, "login")?;
        Ok(LoginOutcome::Authenticated(
            self.session_from_answer(answer, &response),
        ))
    }

    async fn verify_otp(
        &self,
        _challenge: &OtpChallenge,
        _code: &OtpCode,
    ) -> Result<Session, AuthError> {
        Err(AuthError::Unsupported {
            capability: "otp_login",
        })
    }

    async fn refresh(&self, _session: &Session) -> Result<Session, AuthError> {
        Err(AuthError::Unsupported {
            capability: "refresh",
        })
    }

    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        if session.tokens.is_expired_at(self.clock.now()) {
            return Ok(LogoutOutcome::LocalOnly {
                reason: "the token has expired, so the server cannot be asked to revoke its \
                         sign-in; LinkUTM has no logout endpoint"
                    .to_owned(),
            });
        }
        let records = self.list(session).await?;
        match Self::own_sign_in(session, &records) {
            Ok(id) => {
                self.revoke(session, &id).await?;
                Ok(LogoutOutcome::SignInRevoked { id })
            }
            Err(why) => Ok(LogoutOutcome::LocalOnly {
                reason: format!(
                    "LinkUTM has no logout endpoint and {why}; nothing was revoked (revoking \
                     every sign-in would sign the user out on all devices), so the token stays \
                     valid until it expires"
                ),
            }),
        }
    }

    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        let response = self
            .bare(
                Call::Profile,
                Method::GET,
                &self.url(paths::PROFILE),
                session,
            )
            .await?;
        wire::profile(&response, Some(session.tokens.access.expose_secret()))
    }

    /// `Authorization: Bearer <jwt>`, plus `x-workspace-id` when the session has a
    /// workspace and the request is not for an auth route: `/api/v1/auth/*` never
    /// carries the workspace, whoever sends it (the adapter or `SessionManager::send`).
    fn authorize(
        &self,
        session: &Session,
        target: RequestTarget<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(), AuthError> {
        let is_auth_route = target.path.contains(AUTH_PREFIX);
        headers.insert(AUTHORIZATION, bearer(&session.tokens)?);
        if let Some(workspace) = Self::workspace_of(session).filter(|_| !is_auth_route) {
            check_workspace(workspace)?;
            let value = HeaderValue::from_str(workspace)
                .map_err(|_| AuthError::validation("workspace", "not a valid header value"))?;
            headers.insert(HeaderName::from_static(WORKSPACE_HEADER), value);
        }
        Ok(())
    }

    fn session_from_tokens(&self, tokens: TokenSet) -> Session {
        let sign_in = wire::sign_in_id_of(tokens.access.expose_secret());
        let mut session = Session::new(DIALECT, self.config.url.clone(), tokens);
        if let Some(workspace) = &self.config.workspace {
            session = session.with_extra(WORKSPACE_EXTRA, workspace.as_str());
        }
        if let Some(id) = sign_in {
            session = session.with_extra(SIGN_IN_EXTRA, id);
        }
        session
    }

    fn signup(&self) -> Option<&dyn Signup> {
        Some(self)
    }

    fn password_reset(&self) -> Option<&dyn PasswordReset> {
        Some(self)
    }

    fn password_change(&self) -> Option<&dyn PasswordChange> {
        Some(self)
    }

    fn sign_in_sessions(&self) -> Option<&dyn SignInSessions> {
        Some(self)
    }

    fn oauth(&self) -> Option<&dyn OAuth> {
        Some(self)
    }
}

#[async_trait]
impl Signup for LinkUtmProvider {
    async fn send_code(&self, request: &SignupRequest) -> Result<(), AuthError> {
        let email = validate::email(&request.email)?;
        let name = validate::name(&request.name)?;
        let password = request.password.expose_secret();
        validate::new_password("password", password)?;
        let body = SendOtpBody {
            email,
            name,
            password,
        };
        self.post(Call::SendOtp, paths::SEND_OTP, &body, None)
            .await?;
        Ok(())
    }

    async fn verify_code(&self, email: &str, code: &OtpCode) -> Result<Session, AuthError> {
        let email = validate::email(email)?;
        let otp = validate::otp(code.expose_secret())?;
        let response = self
            .post(
                Call::VerifyOtp,
                paths::VERIFY_OTP,
                &VerifyOtpBody { email, otp },
                None,
            )
            .await?;
        let answer = wire::token_answer(&response, "verify-otp")?;
        Ok(self.session_from_answer(answer, &response))
    }

    async fn resend_code(&self, email: &str) -> Result<(), AuthError> {
        let email = validate::email(email)?;
        self.post(
            Call::ResendOtp,
            paths::RESEND_OTP,
            &EmailBody { email },
            None,
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl PasswordReset for LinkUtmProvider {
    /// LinkUTM builds the reset link itself: `reset_url` is not sent.
    async fn request_reset(&self, email: &str, _reset_url: Option<&Url>) -> Result<(), AuthError> {
        let email = validate::email(email)?;
        self.post(
            Call::ForgotPassword,
            paths::FORGOT_PASSWORD,
            &EmailBody { email },
            None,
        )
        .await?;
        Ok(())
    }

    async fn complete_reset(
        &self,
        token: &ResetToken,
        new_password: &Password,
    ) -> Result<(), AuthError> {
        validate::present("token", token.expose_secret())?;
        validate::new_password("newPassword", new_password.expose_secret())?;
        let body = ResetBody {
            token: token.expose_secret(),
            new_password: new_password.expose_secret(),
        };
        self.post(Call::ResetPassword, paths::RESET_PASSWORD, &body, None)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PasswordChange for LinkUtmProvider {
    async fn change_password(
        &self,
        session: &Session,
        current: &Password,
        new: &Password,
    ) -> Result<(), AuthError> {
        validate::present("currentPassword", current.expose_secret())?;
        validate::new_password("newPassword", new.expose_secret())?;
        let body = ChangeBody {
            current_password: current.expose_secret(),
            new_password: new.expose_secret(),
        };
        self.post(
            Call::ChangePassword,
            paths::CHANGE_PASSWORD,
            &body,
            Some(session),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SignInSessions for LinkUtmProvider {
    async fn list(&self, session: &Session) -> Result<Vec<SignInRecord>, AuthError> {
        let response = self
            .bare(
                Call::ListSessions,
                Method::GET,
                &self.url(paths::SESSIONS),
                session,
            )
            .await?;
        wire::sign_in_records(&response, Some(session.tokens.access.expose_secret()))
    }

    async fn revoke(&self, session: &Session, id: &str) -> Result<(), AuthError> {
        if id.is_empty() {
            return Err(AuthError::validation("id", "a sign-in id is required"));
        }
        let mut url = self.url(paths::SESSIONS);
        url.path_segments_mut()
            .map_err(|()| AuthError::validation("url", "the base URL cannot have a path"))?
            .push(id);
        self.bare(Call::RevokeSession, Method::DELETE, &url, session)
            .await?;
        Ok(())
    }

    async fn revoke_all(&self, session: &Session) -> Result<(), AuthError> {
        self.bare(
            Call::RevokeAll,
            Method::DELETE,
            &self.url(paths::SESSIONS),
            session,
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl OAuth for LinkUtmProvider {
    /// Google, without asking the server (LinkUTM offers nothing else and has no
    /// endpoint listing providers).
    async fn providers(&self) -> Result<Vec<OAuthProvider>, AuthError> {
        Ok(vec![OAuthProvider {
            name: GOOGLE.to_owned(),
            label: Some("Google".to_owned()),
        }])
    }

    /// `<url>/api/v1/auth/google`. The server redirects to its own configured front
    /// end at the end of the flow, so `redirect` is not sent.
    fn start_url(&self, provider: &str, _redirect: Option<&Url>) -> Result<Url, AuthError> {
        if !provider.eq_ignore_ascii_case(GOOGLE) {
            return Err(AuthError::validation(
                "provider",
                "LinkUTM offers sign-in with \"google\" only",
            ));
        }
        Ok(self.url(paths::GOOGLE))
    }

    /// Reads `token` from the callback's query, checks it is a JWT with an `exp` that has
    /// not passed, and fetches the profile with it (a failure there is the error
    /// returned). The token counts as issued now, so its lifetime is `exp - iat` on the
    /// server's own clock, whatever the skew between the clocks; a token without `iat`
    /// is compared with the local clock as is. A callback without a token, or with one
    /// that is not a JWT with `exp`, is [`AuthError::Validation`] with field `"token"`;
    /// one already expired by that reading is [`AuthError::SessionExpired`] (nothing is
    /// sent); a stale callback whose token the server no longer accepts fails at the
    /// profile ([`AuthError::Unauthorized`]); a callback on another origin than the
    /// configured `frontend_url` is [`AuthError::Validation`] with field `"callback"`.
    async fn complete(&self, callback: &Url) -> Result<Session, AuthError> {
        if let Some(frontend) = &self.config.frontend_url
            && callback.origin() != frontend.origin()
        {
            return Err(AuthError::validation(
                "callback",
                format!(
                    "the callback is not on the configured front end {}",
                    frontend.origin().ascii_serialization()
                ),
            ));
        }
        let value = |key: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let Some(token) = value("token").filter(|t| !t.is_empty()) else {
            let said = value("error")
                .or_else(|| value("message"))
                .map(|e| {
                    format!(
                        " (the server said: {})",
                        authmux_core::error::sanitize_message(&e)
                    )
                })
                .unwrap_or_default();
            return Err(AuthError::validation(
                "token",
                format!("the OAuth callback URL carries no token{said}"),
            ));
        };
        if !wire::header_safe_token(&token) || wire::jwt_claims(&token).is_none() {
            return Err(AuthError::validation(
                "token",
                "the OAuth callback's token is not a JWT",
            ));
        }
        if jwt_hint(&token).and_then(|h| h.expires_at).is_none() {
            return Err(AuthError::validation(
                "token",
                "the OAuth callback's JWT has no usable exp claim",
            ));
        }
        // The token was issued moments ago, but not in an answer to us: no `Date`, so
        // its `iat` anchors `exp` (a token without `iat` is read as is).
        let session = self.new_session(AccessToken::new(token), None, None);
        if session.tokens.is_expired_at(self.clock.now()) {
            return Err(AuthError::SessionExpired);
        }
        let user = self.current_user(&session).await?;
        Ok(session.with_user(Some(user)))
    }
}
