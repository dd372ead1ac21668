//! [`OAuth2Provider`]: standard OAuth 2.0 / OpenID Connect as an [`AuthProvider`].
//!
//! Ways to sign in, each yielding a [`Session`]:
//! - authorization code with PKCE ([`OAuth2Provider::authorization_request`], then
//!   [`OAuth2Provider::complete_authorization`] with the callback URL; the loopback
//!   listener in [`crate::loopback`] receives it for native apps);
//! - device authorization ([`OAuth2Provider::start_device_authorization`], then
//!   [`OAuth2Provider::wait_for_device_authorization`] or single polls);
//! - client credentials ([`OAuth2Provider::client_credentials`]): such a session has no
//!   refresh token, and refreshing it fetches a new token with the client credentials;
//! - the resource owner password grant, as [`AuthProvider::login`], only when
//!   [`OAuth2Config::password_grant`] is set.
//!
//! Refresh uses the `refresh_token` grant and keeps the old refresh token when the
//! answer carries none (servers that do not rotate). Logout revokes the refresh and
//! access tokens (RFC 7009) when the server has a revocation endpoint, else it is local
//! only and says so. The grant a session came from is kept in its extras under
//! [`GRANT_EXTRA`], and the verified ID token's subject under [`SUBJECT_EXTRA`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use authmux_core::provider::bearer;
use authmux_core::transport::check_base_url;
use authmux_core::wire::{endpoint, parse_json};
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, Expiry, LoginOutcome,
    LogoutOutcome, OtpChallenge, OtpCode, RefreshToken, Session, SystemClock, TokenSet, Transport,
    UserProfile, async_trait,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use url::Url;
use url::form_urlencoded;
use zeroize::Zeroizing;

use crate::DIALECT;
use crate::config::{ClientAuth, OAuth2Config};
use crate::device::{DeviceAnswer, DeviceAuthorization, DevicePoll};
use crate::errors::{Context, ErrorAnswer};
use crate::metadata::{Expected, IdTokenError, ServerMetadata, same_issuer, verify_id_token};
use crate::pkce::{AuthorizationRequest, Callback, random_token, read_callback, s256_challenge};

/// The session extra naming the grant the session came from: `authorization_code`,
/// `device_code`, `client_credentials` or `password`.
pub const GRANT_EXTRA: &str = "grant";
/// The session extra holding the `sub` of the verified ID token.
pub const SUBJECT_EXTRA: &str = "sub";

/// The grant type names, as stored in [`GRANT_EXTRA`].
pub mod grant {
    /// Authorization code (with PKCE).
    pub const AUTHORIZATION_CODE: &str = "authorization_code";
    /// Device authorization (RFC 8628).
    pub const DEVICE_CODE: &str = "device_code";
    /// Client credentials.
    pub const CLIENT_CREDENTIALS: &str = "client_credentials";
    /// Resource owner password.
    pub const PASSWORD: &str = "password";
}

const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A standard OAuth 2.0 / OpenID Connect authorization server.
///
/// Cheap to clone and share as `Arc<dyn AuthProvider>`. It caches the discovery
/// document and the issuer's JWKS (fetched again when an ID token names a key it does
/// not know). Its `Debug` shows the configuration without the client secret.
#[derive(Clone)]
pub struct OAuth2Provider {
    inner: Arc<Inner>,
}

struct Inner {
    config: OAuth2Config,
    base_url: Url,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    metadata: OnceCell<Arc<ServerMetadata>>,
    jwks: Mutex<Option<Arc<JwkSet>>>,
}

impl fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Provider")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A token endpoint's successful answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

impl OAuth2Provider {
    /// A provider with the default transport (hyper-util, rustls) built from
    /// `config.client`. Refuses plain `http://` to a non-loopback host unless
    /// `config.client.allow_insecure_http` is set.
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn new(config: OAuth2Config) -> Result<Self, AuthError> {
        config.client.check_url(&config.url)?;
        let transport = config.client.build_transport()?;
        Self::with_transport(config, transport)
    }

    /// A provider sending through `transport`, with the same checks as
    /// [`OAuth2Provider::new`] (on the issuer, the API URL and explicit endpoints).
    pub fn with_transport(
        config: OAuth2Config,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AuthError> {
        let allow = config.client.allow_insecure_http;
        check_base_url(&config.url, allow)?;
        if config.url.cannot_be_a_base() || config.url.host().is_none() {
            return Err(AuthError::validation(
                "url",
                "expected an http(s) issuer URL with a host",
            ));
        }
        if config.client_id.trim().is_empty() {
            return Err(AuthError::validation("client_id", "the client id is empty"));
        }
        if !config.redirect_path.starts_with('/') {
            return Err(AuthError::validation(
                "redirect_path",
                "the redirect path must start with `/`",
            ));
        }
        if let Some(api) = &config.api_url {
            check_base_url(api, allow)?;
        }
        let metadata = OnceCell::new();
        if let Some(endpoints) = &config.endpoints {
            let explicit = ServerMetadata::from_endpoints(endpoints);
            for url in explicit.urls() {
                check_base_url(url, allow)?;
            }
            let _ = metadata.set(Arc::new(explicit));
        }
        let base_url = config.api_url.clone().unwrap_or_else(|| config.url.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                base_url,
                transport,
                clock: Arc::new(SystemClock),
                metadata,
                jwks: Mutex::new(None),
            }),
        })
    }

    /// Uses `clock` to stamp tokens and check ID token expiry. Give it the same clock
    /// as the session manager when testing with a manual clock.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                config: inner.config.clone(),
                base_url: inner.base_url.clone(),
                transport: inner.transport.clone(),
                clock: Arc::new(clock),
                metadata: inner.metadata.clone(),
                jwks: Mutex::new(inner.jwks.lock().map(|j| j.clone()).unwrap_or(None)),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OAuth2Config {
        &self.inner.config
    }

    fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// The server's metadata: the explicit endpoints, or the discovery document (fetched
    /// once, then cached; a failed fetch is retried on the next call). The document must
    /// name the configured URL as its issuer, and every endpoint must pass the same
    /// transport check as the issuer.
    pub async fn metadata(&self) -> Result<Arc<ServerMetadata>, AuthError> {
        self.inner
            .metadata
            .get_or_try_init(|| self.discover())
            .await
            .cloned()
    }

    async fn discover(&self) -> Result<Arc<ServerMetadata>, AuthError> {
        let config = &self.inner.config;
        let url = endpoint(&config.url, "/.well-known/openid-configuration");
        let response = self.send(get(&url)?).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Other, &[]));
        }
        let metadata: ServerMetadata = parse_json(&response, "discovery document")?;
        let issuer = metadata.issuer.as_deref().unwrap_or_default();
        if !same_issuer(&config.url, issuer) {
            return Err(AuthError::protocol(format!(
                "the discovery document names the issuer {:?}, not the configured {}",
                authmux_core::error::sanitize_message(issuer),
                config.url
            )));
        }
        for url in metadata.urls() {
            check_base_url(url, config.client.allow_insecure_http)?;
        }
        tracing::debug!(issuer, "authmux-oauth2: discovered the server's endpoints");
        Ok(Arc::new(metadata))
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        self.inner.transport.send(request).await
    }

    fn error(&self, response: &Response<Bytes>, context: Context, secrets: &[&str]) -> AuthError {
        ErrorAnswer::read(response, self.now(), secrets).into_error(context)
    }

    /// Refuses a session of another dialect or origin: its credentials are only ever
    /// sent where they came from.
    fn check_session(&self, session: &Session) -> Result<(), AuthError> {
        if session.base_url.origin() != self.inner.base_url.origin() {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "the session belongs to {}, this provider's sessions to {}",
                    session.base_url.origin().ascii_serialization(),
                    self.inner.base_url.origin().ascii_serialization()
                ),
            });
        }
        Ok(())
    }

    /// A form POST to `url` with the client's authentication (RFC 6749 §2.3.1): HTTP
    /// Basic or `client_secret` in the body for a confidential client, `client_id` alone
    /// for a public one.
    fn client_form(&self, url: &Url, params: &[(&str, &str)]) -> Result<Request<Bytes>, AuthError> {
        let config = &self.inner.config;
        let secret = config.secret()?;
        let mut form = Zeroizing::new(String::new());
        {
            let mut serializer = form_urlencoded::Serializer::new(&mut *form);
            for (key, value) in params {
                serializer.append_pair(key, value);
            }
            match (&secret, config.client_auth) {
                (Some(secret), ClientAuth::ClientSecretPost) => {
                    serializer.append_pair("client_id", &config.client_id);
                    serializer.append_pair("client_secret", secret.expose_secret());
                }
                (Some(_), ClientAuth::ClientSecretBasic) => {}
                (None, _) => {
                    serializer.append_pair("client_id", &config.client_id);
                }
            }
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Bytes::from(form.as_bytes().to_vec()))
            .map_err(|e| AuthError::protocol(format!("cannot build request: {e}")))?;
        if let (Some(secret), ClientAuth::ClientSecretBasic) = (&secret, config.client_auth) {
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = Zeroizing::new(format!(
                "{}:{}",
                encode(&config.client_id),
                encode(secret.expose_secret())
            ));
            let mut value =
                HeaderValue::try_from(format!("Basic {}", STANDARD.encode(pair.as_bytes())))
                    .map_err(|_| {
                        AuthError::validation("client_secret", "not usable in a header")
                    })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// The secrets a request for `params` carries, to scrub from error messages.
    fn request_secrets(&self, params: &[(&str, &str)]) -> Vec<String> {
        let mut secrets: Vec<String> = params
            .iter()
            .filter(|(k, _)| {
                matches!(
                    *k,
                    "password"
                        | "refresh_token"
                        | "code"
                        | "code_verifier"
                        | "device_code"
                        | "token"
                )
            })
            .map(|(_, v)| (*v).to_owned())
            .collect();
        if let Ok(Some(secret)) = self.inner.config.secret() {
            secrets.push(secret.expose_secret().to_owned());
        }
        secrets
    }

    /// Params every grant request carries besides its own: `scope` when asked for,
    /// `audience` and `resource` when configured.
    fn extra_params<'a>(
        &'a self,
        params: &mut Vec<(&'a str, &'a str)>,
        with_scope: bool,
        scope: &'a str,
    ) {
        let config = &self.inner.config;
        if with_scope && !scope.is_empty() {
            params.push(("scope", scope));
        }
        if let Some(audience) = &config.audience {
            params.push(("audience", audience));
        }
        if let Some(resource) = &config.resource {
            params.push(("resource", resource));
        }
    }

    /// POSTs a grant to the token endpoint; a non-2xx answer is mapped for `context`.
    async fn token_request(
        &self,
        params: &[(&str, &str)],
        context: Context,
    ) -> Result<(TokenAnswer, SystemTime), AuthError> {
        let metadata = self.metadata().await?;
        let response = self
            .send(self.client_form(&metadata.token, params)?)
            .await?;
        let secrets = self.request_secrets(params);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        if !response.status().is_success() {
            return Err(self.error(&response, context, &secrets));
        }
        let answer: TokenAnswer = parse_json(&response, "token answer")?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(AuthError::protocol(format!(
                "token answer: token type {:?} is not supported (only Bearer)",
                authmux_core::error::sanitize_message(kind)
            )));
        }
        if answer.access_token.is_empty() {
            return Err(AuthError::protocol("token answer: empty access_token"));
        }
        Ok((answer, self.now()))
    }

    fn token_set(
        answer: &TokenAnswer,
        previous: Option<&RefreshToken>,
        now: SystemTime,
    ) -> TokenSet {
        let expiry = match answer.expires_in {
            Some(secs) if secs.is_finite() && secs > 0.0 => {
                Expiry::In(Duration::from_secs_f64(secs.min(1e9)))
            }
            _ => Expiry::Unstated,
        };
        let refresh = answer
            .refresh_token
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(RefreshToken::new)
            .or_else(|| previous.cloned());
        TokenSet::new(
            AccessToken::new(answer.access_token.as_str()),
            refresh,
            expiry,
            now,
        )
    }

    /// A new session from a token answer: the ID token, when present and verifiable,
    /// gives the user.
    async fn new_session(
        &self,
        answer: &TokenAnswer,
        now: SystemTime,
        grant: &str,
        nonce: Option<&str>,
    ) -> Result<Session, AuthError> {
        let tokens = Self::token_set(answer, None, now);
        let mut session = Session::new(DIALECT, self.inner.base_url.clone(), tokens)
            .with_extra(GRANT_EXTRA, grant);
        if let Some(id_token) = &answer.id_token
            && let Some(claims) = self.verified_claims(id_token, nonce).await?
        {
            if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
                session = session.with_extra(SUBJECT_EXTRA, sub);
            }
            session = session.with_user(Some(profile(Value::Object(claims))));
        }
        Ok(session)
    }

    /// Verifies an ID token and returns its claims; `None` when the server has no issuer
    /// or JWKS to verify it with (plain OAuth 2.0 with explicit endpoints), in which case
    /// nothing of it is used.
    pub(crate) async fn verified_claims(
        &self,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<Option<Map<String, Value>>, AuthError> {
        let metadata = self.metadata().await?;
        let (Some(issuer), Some(_)) = (metadata.issuer.as_deref(), metadata.jwks.as_ref()) else {
            return Ok(None);
        };
        let expected = Expected {
            issuer,
            client_id: &self.inner.config.client_id,
            nonce,
            now: self.now(),
        };
        let cached = self.inner.jwks.lock().ok().and_then(|j| j.clone());
        let keys = match cached {
            Some(keys) => keys,
            None => self.fetch_jwks(&metadata).await?,
        };
        match verify_id_token(id_token, &keys, expected) {
            Ok(claims) => Ok(Some(claims)),
            // The issuer may have rotated its keys since they were cached: fetch once more.
            Err(IdTokenError::UnknownKey) => {
                let keys = self.fetch_jwks(&metadata).await?;
                verify_id_token(id_token, &keys, expected)
                    .map(Some)
                    .map_err(IdTokenError::into_auth_error)
            }
            Err(e) => Err(e.into_auth_error()),
        }
    }

    async fn fetch_jwks(&self, metadata: &ServerMetadata) -> Result<Arc<JwkSet>, AuthError> {
        let Some(url) = &metadata.jwks else {
            return Err(AuthError::protocol("the server publishes no JWKS"));
        };
        let response = self.send(get(url)?).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, Context::Other, &[]));
        }
        let keys: Arc<JwkSet> = Arc::new(parse_json(&response, "JWKS")?);
        if let Ok(mut cache) = self.inner.jwks.lock() {
            *cache = Some(keys.clone());
        }
        Ok(keys)
    }

    // ---- authorization code with PKCE ----

    /// Starts an authorization code flow with PKCE (S256), a fresh `state` and, when the
    /// scopes include `openid`, a `nonce`. Open [`AuthorizationRequest::url`] in a
    /// browser; the server redirects to `redirect_uri` (for a native app, the loopback
    /// listener's [`crate::LoopbackListener::redirect_uri`]). Asking for `offline_access`
    /// adds `prompt=consent`, which OpenID providers require to issue a refresh token.
    pub async fn authorization_request(
        &self,
        redirect_uri: &Url,
    ) -> Result<AuthorizationRequest, AuthError> {
        let metadata = self.metadata().await?;
        let Some(authorize) = &metadata.authorization else {
            return Err(AuthError::Unsupported {
                capability: "authorization code (the server has no authorization endpoint)",
            });
        };
        let config = &self.inner.config;
        let state = random_token()?;
        let verifier = Zeroizing::new(random_token()?);
        let nonce = config
            .scopes
            .iter()
            .any(|s| s == "openid")
            .then(random_token)
            .transpose()?;
        let mut url = authorize.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &config.client_id)
                .append_pair("redirect_uri", redirect_uri.as_str())
                .append_pair("state", &state)
                .append_pair("code_challenge", &s256_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
            if !config.scopes.is_empty() {
                query.append_pair("scope", &config.scope_param());
            }
            if let Some(nonce) = &nonce {
                query.append_pair("nonce", nonce);
            }
            if config.scopes.iter().any(|s| s == "offline_access") {
                query.append_pair("prompt", "consent");
            }
            if let Some(audience) = &config.audience {
                query.append_pair("audience", audience);
            }
            if let Some(resource) = &config.resource {
                query.append_pair("resource", resource);
            }
        }
        Ok(AuthorizationRequest {
            url,
            state,
            verifier,
            nonce,
            redirect_uri: redirect_uri.clone(),
        })
    }

    /// Finishes an authorization code flow from the URL the browser was redirected to:
    /// checks the redirect URI and the `state` (a mismatch is [`AuthError::Validation`]
    /// on `state` and nothing is sent), maps an error the server put in the callback,
    /// then exchanges the code with the PKCE verifier and verifies the ID token (with
    /// the nonce).
    pub async fn complete_authorization(
        &self,
        request: &AuthorizationRequest,
        callback: &Url,
    ) -> Result<Session, AuthError> {
        let code = match read_callback(request, callback)? {
            Callback::Code { code } => code,
            Callback::Error(error) => return Err(error),
        };
        let redirect = request.redirect_uri.as_str();
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", request.verifier.as_str()),
        ];
        if let Some(resource) = &self.inner.config.resource {
            params.push(("resource", resource));
        }
        let (answer, now) = self.token_request(&params, Context::Grant).await?;
        self.new_session(
            &answer,
            now,
            grant::AUTHORIZATION_CODE,
            request.nonce.as_deref(),
        )
        .await
    }

    // ---- device authorization ----

    /// Starts a device authorization (RFC 8628 §3.1): show the user
    /// [`DeviceAuthorization::verification_uri`] and [`DeviceAuthorization::user_code`],
    /// then poll.
    pub async fn start_device_authorization(&self) -> Result<DeviceAuthorization, AuthError> {
        let metadata = self.metadata().await?;
        let Some(url) = &metadata.device_authorization else {
            return Err(AuthError::Unsupported {
                capability: "device authorization (the server has no device authorization endpoint)",
            });
        };
        let scope = self.inner.config.scope_param();
        let mut params = Vec::new();
        self.extra_params(&mut params, true, &scope);
        let response = self.send(self.client_form(url, &params)?).await?;
        if !response.status().is_success() {
            let secrets = self.request_secrets(&params);
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            return Err(self.error(&response, Context::Login, &secrets));
        }
        let answer: DeviceAnswer = parse_json(&response, "device authorization answer")?;
        answer.into_authorization(self.now())
    }

    /// Polls the token endpoint once for a device authorization: still
    /// [`DevicePoll::Pending`], [`DevicePoll::SlowDown`] (the interval to use from now on,
    /// already raised by 5 s as RFC 8628 §3.5 says), or the session. A denied or expired
    /// authorization is [`AuthError::Forbidden`] or [`AuthError::SessionExpired`].
    pub async fn poll_device_authorization(
        &self,
        device: &DeviceAuthorization,
    ) -> Result<DevicePoll, AuthError> {
        let params = [
            ("grant_type", DEVICE_GRANT_TYPE),
            ("device_code", device.device_code.as_str()),
        ];
        let metadata = self.metadata().await?;
        let response = self
            .send(self.client_form(&metadata.token, &params)?)
            .await?;
        if response.status().is_success() {
            let answer: TokenAnswer = parse_json(&response, "token answer")?;
            let session = self
                .new_session(&answer, self.now(), grant::DEVICE_CODE, None)
                .await?;
            return Ok(DevicePoll::Complete(Box::new(session)));
        }
        let secrets = self.request_secrets(&params);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let error = ErrorAnswer::read(&response, self.now(), &secrets);
        if error.status == 400 && error.is("authorization_pending") {
            return Ok(DevicePoll::Pending);
        }
        if error.status == 400 && error.is("slow_down") {
            return Ok(DevicePoll::SlowDown {
                interval: device.interval + Duration::from_secs(5),
            });
        }
        Err(error.into_error(Context::Grant))
    }

    /// Polls until the user finishes (or denies) the device authorization, waiting the
    /// server's interval between polls and 5 s more after each `slow_down`. Gives up
    /// with [`AuthError::SessionExpired`] once the device code has expired.
    pub async fn wait_for_device_authorization(
        &self,
        device: &DeviceAuthorization,
    ) -> Result<Session, AuthError> {
        let mut device = device.clone();
        loop {
            tokio::time::sleep(device.interval).await;
            if self.now() >= device.expires_at {
                return Err(AuthError::SessionExpired);
            }
            match self.poll_device_authorization(&device).await? {
                DevicePoll::Complete(session) => return Ok(*session),
                DevicePoll::Pending => {}
                DevicePoll::SlowDown { interval } => {
                    tracing::debug!(?interval, "authmux-oauth2: the server asked to slow down");
                    device.interval = interval;
                }
            }
        }
    }

    // ---- client credentials ----

    /// Signs the client itself in with the client credentials grant (no user). The
    /// session has no refresh token; refreshing it fetches a new token the same way.
    pub async fn client_credentials(&self) -> Result<Session, AuthError> {
        let (answer, now) = self.client_credentials_answer(Context::Login).await?;
        self.new_session(&answer, now, grant::CLIENT_CREDENTIALS, None)
            .await
    }

    async fn client_credentials_answer(
        &self,
        context: Context,
    ) -> Result<(TokenAnswer, SystemTime), AuthError> {
        if self.inner.config.secret()?.is_none() {
            return Err(AuthError::validation(
                "client_secret",
                "the client credentials grant needs a client secret",
            ));
        }
        let scope = self.client_credentials_scope();
        let mut params = vec![("grant_type", "client_credentials")];
        self.extra_params(&mut params, true, &scope);
        self.token_request(&params, context).await
    }

    /// The scopes without the user-only ones (`openid`, `offline_access`), which
    /// servers refuse for the client credentials grant.
    fn client_credentials_scope(&self) -> String {
        self.inner
            .config
            .scopes
            .iter()
            .filter(|s| !matches!(s.as_str(), "openid" | "offline_access"))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ---- revocation ----

    async fn revoke(&self, url: &Url, token: &str, hint: &str) -> Result<(), AuthError> {
        let params = [("token", token), ("token_type_hint", hint)];
        let response = self.send(self.client_form(url, &params)?).await?;
        if response.status().is_success() {
            return Ok(());
        }
        let secrets = self.request_secrets(&params);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Err(self.error(&response, Context::Other, &secrets))
    }
}

/// The profile of an OpenID Connect claims object: `sub` as the id, `email`, and `name`
/// (else `preferred_username`).
fn profile(claims: Value) -> UserProfile {
    let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::to_owned);
    UserProfile {
        id: text("sub"),
        email: text("email"),
        name: text("name").or_else(|| text("preferred_username")),
        raw: claims,
    }
}

fn get(url: &Url) -> Result<Request<Bytes>, AuthError> {
    authmux_core::wire::empty_request(Method::GET, url)
}

#[async_trait]
impl AuthProvider for OAuth2Provider {
    fn dialect(&self) -> &str {
        DIALECT
    }

    /// The origin sessions are bound to: [`OAuth2Config::api_url`], else the issuer.
    fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Refresh always (the refresh token grant, or client credentials again, so also
    /// without a refresh token); rotation
    /// is the server's choice and handled either way, so it is not claimed; server
    /// logout when the server has a revocation endpoint (known once the metadata is
    /// loaded; assumed before discovery).
    fn capabilities(&self) -> Capabilities {
        let server_logout = self
            .inner
            .metadata
            .get()
            .is_none_or(|m| m.revocation.is_some());
        Capabilities {
            refresh: true,
            refresh_without_token: true,
            server_logout,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        self.inner.transport.clone()
    }

    /// The resource owner password grant, when [`OAuth2Config::password_grant`] allows
    /// it; else [`AuthError::Unsupported`] (sign in with a browser, a device code or the
    /// client credentials instead).
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        if !self.inner.config.password_grant {
            return Err(AuthError::Unsupported {
                capability: "password login (enable `password_grant`, or use the browser, device or client credentials sign-in)",
            });
        }
        if credentials.email.trim().is_empty() {
            return Err(AuthError::validation("email", "the user name is empty"));
        }
        if credentials.password.is_empty() {
            return Err(AuthError::validation("password", "the password is empty"));
        }
        let scope = self.inner.config.scope_param();
        let mut params = vec![
            ("grant_type", "password"),
            ("username", credentials.email.as_str()),
            ("password", credentials.password.expose_secret()),
        ];
        self.extra_params(&mut params, true, &scope);
        let (answer, now) = self.token_request(&params, Context::Login).await?;
        let session = self
            .new_session(&answer, now, grant::PASSWORD, None)
            .await?;
        Ok(LoginOutcome::Authenticated(session))
    }

    /// OAuth 2.0 has no one-time-code step of its own (the server's login page asks).
    async fn verify_otp(
        &self,
        _challenge: &OtpChallenge,
        _code: &OtpCode,
    ) -> Result<Session, AuthError> {
        Err(AuthError::Unsupported {
            capability: "one-time codes (the server's own login page asks for them)",
        })
    }

    /// The refresh token grant, keeping the refresh token when the answer has no new
    /// one; a new ID token is verified. A session without a refresh token from the
    /// client credentials grant fetches a new token with the client credentials; any
    /// other session without one is [`AuthError::RefreshRejected`] (sign in again).
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        self.check_session(session)?;
        let Some(refresh) = session.tokens.refresh.as_ref().filter(|r| !r.is_empty()) else {
            if session.extra_str(GRANT_EXTRA) == Some(grant::CLIENT_CREDENTIALS) {
                let (answer, now) = self.client_credentials_answer(Context::Refresh).await?;
                return Ok(session.with_tokens(Self::token_set(&answer, None, now)));
            }
            return Err(AuthError::RefreshRejected);
        };
        let mut params = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
        ];
        if let Some(resource) = &self.inner.config.resource {
            params.push(("resource", resource));
        }
        let (answer, now) = self.token_request(&params, Context::Refresh).await?;
        let mut refreshed = session.with_tokens(Self::token_set(&answer, Some(refresh), now));
        if let Some(id_token) = &answer.id_token
            && let Some(claims) = self.verified_claims(id_token, None).await?
        {
            let sub = claims.get("sub").and_then(Value::as_str);
            if let (Some(sub), Some(known)) = (sub, session.extra_str(SUBJECT_EXTRA))
                && sub != known
            {
                return Err(AuthError::protocol(
                    "ID token rejected: the refreshed ID token is for another user",
                ));
            }
            refreshed.user = Some(profile(Value::Object(claims)));
        }
        Ok(refreshed)
    }

    /// Revokes the refresh token, then the access token (RFC 7009), when the server has
    /// a revocation endpoint; else forgets the session locally and says so.
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        self.check_session(session)?;
        let metadata = self.metadata().await?;
        let Some(url) = &metadata.revocation else {
            return Ok(LogoutOutcome::LocalOnly {
                reason:
                    "the server has no revocation endpoint; the tokens stay valid until they expire"
                        .into(),
            });
        };
        if let Some(refresh) = session.tokens.refresh.as_ref().filter(|r| !r.is_empty()) {
            self.revoke(url, refresh.expose_secret(), "refresh_token")
                .await?;
        }
        self.revoke(url, session.tokens.access.expose_secret(), "access_token")
            .await?;
        Ok(LogoutOutcome::Revoked)
    }

    /// The OIDC userinfo endpoint, whose `sub` must be the ID token's. A client
    /// credentials session is the client itself: its profile is the client id, with no
    /// server call. Without a userinfo endpoint, the user from the ID token, if any.
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        self.check_session(session)?;
        if session.extra_str(GRANT_EXTRA) == Some(grant::CLIENT_CREDENTIALS) {
            let client_id = &self.inner.config.client_id;
            return Ok(UserProfile {
                id: Some(client_id.clone()),
                email: None,
                name: None,
                raw: json!({ "client_id": client_id, GRANT_EXTRA: grant::CLIENT_CREDENTIALS }),
            });
        }
        let metadata = self.metadata().await?;
        let Some(url) = &metadata.userinfo else {
            return session.user.clone().ok_or(AuthError::Unsupported {
                capability: "current user (the server has no userinfo endpoint and sent no ID token)",
            });
        };
        let mut request = get(url)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, bearer(&session.tokens)?);
        let response = self.send(request).await?;
        if !response.status().is_success() {
            let access = session.tokens.access.expose_secret();
            return Err(self.error(&response, Context::Authorized, &[access]));
        }
        let claims: Value = parse_json(&response, "userinfo answer")?;
        if !claims.is_object() {
            return Err(AuthError::protocol("userinfo answer: not a JSON object"));
        }
        let sub = claims.get("sub").and_then(Value::as_str);
        if let (Some(known), Some(sub)) = (session.extra_str(SUBJECT_EXTRA), sub)
            && known != sub
        {
            return Err(AuthError::protocol(
                "userinfo answer: `sub` is not the ID token's subject",
            ));
        }
        Ok(profile(claims))
    }
}
