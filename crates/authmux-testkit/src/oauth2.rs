//! `FakeOAuth2`: a fake OAuth 2.0 authorization server and OpenID Provider.
//!
//! # Endpoints ([`endpoints`])
//! - `GET /.well-known/openid-configuration`: the discovery document (issuer = the
//!   server's base URL without a trailing slash).
//! - `GET /jwks`: the Ed25519 key that signs ID tokens (`kid` [`ID_TOKEN_KID`]).
//! - `GET /authorize` (`response_type=code`, `client_id`, `redirect_uri`, `state`,
//!   `code_challenge` with `code_challenge_method=S256`, `scope`, `nonce`): a login
//!   form (`login`, `password`, the request in hidden fields) posting to
//!   `POST /authorize`, which answers `302` to the redirect URI with a code, or with
//!   `error=access_denied` when the form's `action` is `abort`; a wrong password shows
//!   the form again. PKCE is required.
//! - `POST /token`: grants `authorization_code` (single use, PKCE S256 checked,
//!   `redirect_uri` must match), `refresh_token` (rotation with reuse detection: a reused
//!   refresh token revokes the whole grant, as `oidc-provider` does),
//!   `client_credentials` (confidential client only), `password` (the user table), and
//!   the device code grant (`authorization_pending`, `slow_down` when polled faster than
//!   the interval, `expired_token`, `access_denied`).
//! - `POST /device/auth`: starts a device authorization (interval
//!   [`OAuth2Settings::device_interval`]); the user approves it at `GET /device` (a
//!   form with `user_code`, `login`, `password`; `action=abort` denies), or a test
//!   does with [`FakeOAuth2::approve_device`] / [`FakeOAuth2::deny_device`].
//! - `GET /userinfo` (bearer): `sub`, `email`, `name`.
//! - `POST /revoke` (RFC 7009): revokes a refresh token's grant or one access token;
//!   `200` for unknown tokens too.
//!
//! # Clients
//! [`PUBLIC_CLIENT_ID`] (no secret, authenticates with `client_id` alone) and
//! [`CONFIDENTIAL_CLIENT_ID`] with [`CLIENT_SECRET`] (`client_secret_basic` or
//! `client_secret_post`); any redirect URI on `127.0.0.1`.
//!
//! # Errors
//! `{"error": "<RFC 6749 code>", "error_description": "..."}`. For an injected status:
//! 400 `invalid_request`, 401 `invalid_client`, 403 `access_denied`, 503
//! `temporarily_unavailable`, other 5xx `server_error`, else `error_<status>`. The
//! userinfo endpoint answers a bad token with 401 and `WWW-Authenticate: Bearer
//! error="invalid_token"`.
//!
//! # Tokens
//! Access tokens are HS256 JWTs (`sub`, `iat`, `exp`, `jti`, `client_id`, `scope`);
//! refresh tokens are opaque. ID tokens are EdDSA JWTs with `iss`, `sub`, `aud`, `iat`,
//! `exp`, `nonce` (when sent), `email`, `name`; [`IdTokenFault`] makes the next ones
//! wrong on purpose (another key, wrong audience, expired) for verification tests.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use authmux_core::clock::{Clock, SystemClock};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use url::Url;

use crate::families::{RefreshError, RefreshPolicy, TokenFamilies};
use crate::jwt::{JwtError, JwtKeys, random_token, unix_secs};
use crate::server::{Context, FakeRequest, FakeResponse, Handler, ServerConfig, ServerHandle};
use crate::users::{User, Users};

/// The endpoint names, for counters and faults.
pub mod endpoints {
    /// `GET /.well-known/openid-configuration`
    pub const DISCOVERY: &str = "GET /.well-known/openid-configuration";
    /// `GET /jwks`
    pub const JWKS: &str = "GET /jwks";
    /// `GET /authorize` (the login form)
    pub const AUTHORIZE: &str = "GET /authorize";
    /// `POST /authorize` (the login form's submission)
    pub const AUTHORIZE_SUBMIT: &str = "POST /authorize";
    /// `GET /device` (the verification page)
    pub const DEVICE_PAGE: &str = "GET /device";
    /// `POST /device` (the verification page's submission)
    pub const DEVICE_PAGE_SUBMIT: &str = "POST /device";
    /// `POST /token`
    pub const TOKEN: &str = "POST /token";
    /// `POST /device/auth`
    pub const DEVICE: &str = "POST /device/auth";
    /// `GET /userinfo`
    pub const USERINFO: &str = "GET /userinfo";
    /// `POST /revoke`
    pub const REVOKE: &str = "POST /revoke";
}

const ENDPOINTS: &[&str] = &[
    endpoints::DISCOVERY,
    endpoints::JWKS,
    endpoints::AUTHORIZE,
    endpoints::AUTHORIZE_SUBMIT,
    endpoints::DEVICE_PAGE,
    endpoints::DEVICE_PAGE_SUBMIT,
    endpoints::TOKEN,
    endpoints::DEVICE,
    endpoints::USERINFO,
    endpoints::REVOKE,
];

/// The public client (no secret).
pub const PUBLIC_CLIENT_ID: &str = "authmux-cli";
/// The confidential client.
pub const CONFIDENTIAL_CLIENT_ID: &str = "authmux-service";
/// The confidential client's secret.
pub const CLIENT_SECRET: &str = "service-secret-0123456789";
/// The `kid` of the ID token signing key.
pub const ID_TOKEN_KID: &str = "fake-ed25519-1";

/// A deliberate defect in the ID tokens the fake issues, for verification tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    /// Signed by a key the JWKS does not publish (same `kid`).
    OtherKey,
    /// `aud` names another client.
    WrongAudience,
    /// `exp` an hour in the past.
    Expired,
    /// HS256 with the JWKS's public key bytes as the secret (algorithm confusion).
    Hmac,
}

/// Behaviour settings; change them with [`FakeOAuth2::update_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// Access token lifetime (default 5 minutes).
    pub access_lifetime: Duration,
    /// Rotate refresh tokens (default on).
    pub rotate_refresh: bool,
    /// A reused refresh token revokes its grant (default on).
    pub reuse_detection: bool,
    /// The device flow polling interval (default 1 s).
    pub device_interval: Duration,
    /// How long a device code lives (default 10 minutes).
    pub device_lifetime: Duration,
    /// Issue ID tokens (for `openid` scope; default on).
    pub id_tokens: bool,
    /// The password grant is allowed (default on).
    pub password_grant: bool,
}

impl Default for OAuth2Settings {
    fn default() -> Self {
        Self {
            access_lifetime: Duration::from_secs(300),
            rotate_refresh: true,
            reuse_detection: true,
            device_interval: Duration::from_secs(1),
            device_lifetime: Duration::from_secs(600),
            id_tokens: true,
            password_grant: true,
        }
    }
}

#[derive(Debug, Clone)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    user_id: String,
    nonce: Option<String>,
    scope: String,
    expires_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceState {
    Pending,
    Approved(String),
    Denied,
    Used,
}

#[derive(Debug, Clone)]
struct DeviceEntry {
    user_code: String,
    client_id: String,
    scope: String,
    expires_at: SystemTime,
    last_poll: Option<SystemTime>,
    state: DeviceState,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, PendingCode>,
    devices: HashMap<String, DeviceEntry>,
    /// Scope of each refresh family (family id -> (client id, scope)).
    grants: HashMap<u64, (String, String)>,
}

struct Fake {
    users: Users,
    families: TokenFamilies,
    access_keys: JwtKeys,
    id_key: EncodingKey,
    jwks: JwkSet,
    other_id_key: EncodingKey,
    hmac_secret: Vec<u8>,
    settings: Mutex<OAuth2Settings>,
    id_token_fault: Mutex<Option<IdTokenFault>>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ed25519_key() -> io::Result<EncodingKey> {
    let der = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .map_err(|_| io::Error::other("cannot generate an Ed25519 key"))?;
    Ok(EncodingKey::from_ed_der(der.as_ref()))
}

/// A running fake OAuth 2.0 / OpenID Connect server. Stops when dropped.
pub struct FakeOAuth2 {
    fake: Arc<Fake>,
    server: ServerHandle,
}

impl std::fmt::Debug for FakeOAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOAuth2")
            .field("base_url", &self.server.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl FakeOAuth2 {
    /// Starts a fake with the default users and settings on a free port.
    pub fn start() -> io::Result<Self> {
        Self::start_with(
            Users::default_list(),
            OAuth2Settings::default(),
            Arc::new(SystemClock),
        )
    }

    /// Starts a fake with these users, settings and clock.
    pub fn start_with(
        users: Vec<User>,
        settings: OAuth2Settings,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Self> {
        crate::secret_log::record(CLIENT_SECRET);
        let id_key = ed25519_key()?;
        let mut jwk = Jwk::from_encoding_key(&id_key, Algorithm::EdDSA)
            .map_err(|e| io::Error::other(format!("cannot build the JWKS: {e}")))?;
        jwk.common.key_id = Some(ID_TOKEN_KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        let hmac_secret = serde_json::to_vec(&jwk).unwrap_or_default();
        let fake = Arc::new(Fake {
            users: Users::from_list(users),
            families: TokenFamilies::default(),
            access_keys: JwtKeys::random(),
            id_key,
            jwks: JwkSet { keys: vec![jwk] },
            other_id_key: ed25519_key()?,
            hmac_secret,
            settings: Mutex::new(settings),
            id_token_fault: Mutex::new(None),
            state: Mutex::new(State::default()),
        });
        let server = ServerHandle::start(
            Arc::new(Router(fake.clone())),
            ServerConfig::new().clock(clock).name("fake-oauth2"),
        )?;
        Ok(Self { fake, server })
    }

    /// The issuer URL (`http://127.0.0.1:<port>/`).
    pub fn base_url(&self) -> &Url {
        self.server.base_url()
    }

    /// The server handle (faults, recorder, clock offset).
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The current settings.
    pub fn settings(&self) -> OAuth2Settings {
        self.fake.settings()
    }

    /// Changes the settings.
    pub fn update_settings(&self, change: impl FnOnce(&mut OAuth2Settings)) {
        change(&mut lock(&self.fake.settings));
    }

    /// Makes the ID tokens issued from now on defective (or correct again with `None`).
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        *lock(&self.fake.id_token_fault) = fault;
    }

    /// The user approves the device authorization with `user_code`, as `email`.
    /// Returns whether such a pending authorization existed.
    pub fn approve_device(&self, user_code: &str, email: &str) -> bool {
        let Some(user) = self.fake.users.by_email(email) else {
            return false;
        };
        self.fake
            .set_device_state(user_code, DeviceState::Approved(user.id))
    }

    /// The user denies the device authorization with `user_code`.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.fake.set_device_state(user_code, DeviceState::Denied)
    }

    /// How many refresh grants (sign-ins) are live, over all users.
    pub fn live_grants(&self) -> usize {
        self.fake
            .families
            .all()
            .iter()
            .filter(|f| !f.revoked)
            .count()
    }
}

struct Router(Arc<Fake>);

impl Handler for Router {
    fn endpoints(&self) -> &[&'static str] {
        ENDPOINTS
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let fake = &self.0;
        match endpoint {
            endpoints::DISCOVERY => fake.discovery(cx),
            endpoints::JWKS => FakeResponse::json(
                StatusCode::OK,
                &serde_json::to_value(&fake.jwks).unwrap_or(Value::Null),
            ),
            endpoints::AUTHORIZE | endpoints::AUTHORIZE_SUBMIT => fake.authorize(req, cx),
            endpoints::DEVICE_PAGE | endpoints::DEVICE_PAGE_SUBMIT => fake.device_page(req),
            endpoints::TOKEN => fake.token(req, cx),
            endpoints::DEVICE => fake.device(req, cx),
            endpoints::USERINFO => fake.userinfo(req, cx),
            endpoints::REVOKE => fake.revoke(req),
            _ => self.error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        let code = match status.as_u16() {
            400 => "invalid_request".to_owned(),
            401 => "invalid_client".to_owned(),
            403 => "access_denied".to_owned(),
            503 => "temporarily_unavailable".to_owned(),
            500..=599 => "server_error".to_owned(),
            other => format!("error_{other}"),
        };
        oauth_error(status, &code, message)
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        &json!({ "error": code, "error_description": description }),
    )
    .with_header("cache-control", "no-store")
}

fn bad(code: &str, description: &str) -> FakeResponse {
    oauth_error(StatusCode::BAD_REQUEST, code, description)
}

fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A login form posting to `action` with `hidden` fields, `login` and `password`.
fn login_page(action: &str, hidden: &[(String, String)], message: &str) -> FakeResponse {
    let mut html = format!(
        "<!doctype html><html><body><p>{}</p><form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"action\" value=\"login\">",
        html_escape(message)
    );
    for (name, value) in hidden {
        html.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            html_escape(name),
            html_escape(value)
        ));
    }
    html.push_str(
        "<input type=\"email\" name=\"login\" value=\"\"><input type=\"password\" name=\"password\" value=\"\">\
         <button type=\"submit\">Sign in</button></form></body></html>",
    );
    FakeResponse::raw(StatusCode::OK, "text/html; charset=utf-8", html)
}

fn form(req: &FakeRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.body())
        .into_owned()
        .collect()
}

fn issuer(cx: &Context<'_>) -> String {
    cx.base_url().as_str().trim_end_matches('/').to_owned()
}

impl Fake {
    fn settings(&self) -> OAuth2Settings {
        lock(&self.settings).clone()
    }

    fn discovery(&self, cx: &Context<'_>) -> FakeResponse {
        let iss = issuer(cx);
        FakeResponse::json(
            StatusCode::OK,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/authorize"),
                "token_endpoint": format!("{iss}/token"),
                "device_authorization_endpoint": format!("{iss}/device/auth"),
                "userinfo_endpoint": format!("{iss}/userinfo"),
                "revocation_endpoint": format!("{iss}/revoke"),
                "jwks_uri": format!("{iss}/jwks"),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:device_code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["EdDSA"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            }),
        )
    }

    /// The authenticated client of a token-endpoint request, or the error answer.
    fn client(
        &self,
        req: &FakeRequest,
        form: &HashMap<String, String>,
    ) -> Result<String, FakeResponse> {
        let invalid = || {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        };
        let basic = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic "));
        let (id, secret) = if let Some(encoded) = basic {
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
            let text = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(id), Some(decode(secret)))
        } else {
            let id = form.get("client_id").cloned().ok_or_else(invalid)?;
            (id, form.get("client_secret").cloned())
        };
        match (id.as_str(), secret.as_deref()) {
            (PUBLIC_CLIENT_ID, None) => Ok(id),
            (CONFIDENTIAL_CLIENT_ID, Some(CLIENT_SECRET)) => Ok(id),
            _ => Err(invalid()),
        }
    }

    /// `GET /authorize` shows the login form (after checking the request);
    /// `POST /authorize` signs in and redirects with a code, or with `access_denied`
    /// when the form's `action` is `abort`.
    fn authorize(&self, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let params: HashMap<String, String> = if req.method() == http::Method::POST {
            form(req)
        } else {
            req.query_pairs().into_iter().collect()
        };
        let param = |k: &str| params.get(k).cloned();
        let Some(redirect) = param("redirect_uri").and_then(|r| Url::parse(&r).ok()) else {
            return bad("invalid_request", "missing or bad redirect_uri");
        };
        if redirect.host_str() != Some("127.0.0.1") {
            return bad("invalid_request", "redirect_uri is not registered");
        }
        let client_id = param("client_id").unwrap_or_default();
        if client_id != PUBLIC_CLIENT_ID && client_id != CONFIDENTIAL_CLIENT_ID {
            return bad("invalid_request", "unknown client");
        }
        let state = param("state");
        let respond = |pairs: &[(&str, &str)]| {
            let mut target = redirect.clone();
            {
                let mut q = target.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
                if let Some(state) = &state {
                    q.append_pair("state", state);
                }
            }
            FakeResponse::redirect(target.as_str())
        };
        if param("response_type").as_deref() != Some("code") {
            return respond(&[("error", "unsupported_response_type")]);
        }
        let challenge = param("code_challenge").unwrap_or_default();
        if challenge.is_empty() || param("code_challenge_method").as_deref() != Some("S256") {
            return respond(&[
                ("error", "invalid_request"),
                ("error_description", "PKCE with S256 is required"),
            ]);
        }
        if req.method() != http::Method::POST {
            let hidden: Vec<(String, String)> =
                params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            return login_page("/authorize", &hidden, "");
        }
        if param("action").as_deref() == Some("abort") {
            return respond(&[
                ("error", "access_denied"),
                ("error_description", "the user aborted the sign-in"),
            ]);
        }
        let Some(user) = self.check_login(&params) else {
            let hidden: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "login" | "password" | "action"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return login_page("/authorize", &hidden, "Invalid email or password.");
        };
        let code = random_token(32);
        lock(&self.state).codes.insert(
            code.clone(),
            PendingCode {
                client_id,
                redirect_uri: redirect.as_str().to_owned(),
                challenge,
                user_id: user.id,
                nonce: param("nonce"),
                scope: param("scope").unwrap_or_default(),
                expires_at: cx.now() + Duration::from_secs(60),
            },
        );
        respond(&[("code", &code)])
    }

    /// The user whose `login` (email) and `password` the form carries, if right.
    fn check_login(&self, form: &HashMap<String, String>) -> Option<User> {
        let user = self.users.by_email(form.get("login")?)?;
        (form.get("password") == Some(&user.password) && !user.suspended && !user.forbidden)
            .then_some(user)
    }

    /// `GET /device` shows a form for the user code and the login; `POST /device`
    /// approves the device authorization (or denies it when `action` is `abort`).
    fn device_page(&self, req: &FakeRequest) -> FakeResponse {
        if req.method() != http::Method::POST {
            let code = req.query_param("user_code").unwrap_or_default();
            return login_page("/device", &[("user_code".into(), code)], "");
        }
        let form = form(req);
        let code = form.get("user_code").cloned().unwrap_or_default();
        if form.get("action").map(String::as_str) == Some("abort") {
            self.set_device_state(&code, DeviceState::Denied);
            return FakeResponse::raw(StatusCode::OK, "text/html", "<p>Aborted.</p>");
        }
        let Some(user) = self.check_login(&form) else {
            return login_page(
                "/device",
                &[("user_code".into(), code)],
                "Invalid email or password.",
            );
        };
        if self.set_device_state(&code, DeviceState::Approved(user.id)) {
            FakeResponse::raw(
                StatusCode::OK,
                "text/html",
                "<p>The device is signed in.</p>",
            )
        } else {
            login_page(
                "/device",
                &[("user_code".into(), String::new())],
                "Unknown code.",
            )
        }
    }

    fn set_device_state(&self, user_code: &str, new: DeviceState) -> bool {
        let mut state = lock(&self.state);
        state
            .devices
            .values_mut()
            .find(|d| {
                d.user_code.eq_ignore_ascii_case(user_code) && d.state == DeviceState::Pending
            })
            .map(|d| d.state = new)
            .is_some()
    }

    fn device(&self, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let form = form(req);
        let client_id = match self.client(req, &form) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let settings = self.settings();
        let device_code = random_token(40);
        let user_code = format!("{}-{}", random_token(4), random_token(4)).to_uppercase();
        lock(&self.state).devices.insert(
            device_code.clone(),
            DeviceEntry {
                user_code: user_code.clone(),
                client_id,
                scope: form.get("scope").cloned().unwrap_or_default(),
                expires_at: cx.now() + settings.device_lifetime,
                last_poll: None,
                state: DeviceState::Pending,
            },
        );
        let iss = issuer(cx);
        FakeResponse::json(
            StatusCode::OK,
            &json!({
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": format!("{iss}/device"),
                "verification_uri_complete": format!("{iss}/device?user_code={user_code}"),
                "expires_in": settings.device_lifetime.as_secs(),
                "interval": settings.device_interval.as_secs(),
            }),
        )
    }

    fn token(&self, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let form = form(req);
        let client_id = match self.client(req, &form) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        match get("grant_type") {
            "authorization_code" => self.code_grant(&client_id, &form, cx),
            "refresh_token" => self.refresh_grant(&client_id, get("refresh_token"), cx),
            "client_credentials" => {
                if client_id != CONFIDENTIAL_CLIENT_ID {
                    return bad(
                        "unauthorized_client",
                        "a public client cannot use client credentials",
                    );
                }
                self.issue(&client_id, &client_id, get("scope"), None, false, None, cx)
            }
            "password" => {
                if !self.settings().password_grant {
                    return bad("unsupported_grant_type", "the password grant is off");
                }
                let user = self.users.by_email(get("username"));
                match user {
                    Some(user) if user.password == get("password") => {
                        if user.suspended {
                            return bad("invalid_grant", "the account is disabled");
                        }
                        if user.forbidden {
                            return oauth_error(
                                StatusCode::FORBIDDEN,
                                "access_denied",
                                "the user may not sign in",
                            );
                        }
                        self.issue(&client_id, &user.id, get("scope"), None, true, None, cx)
                    }
                    _ => bad("invalid_grant", "invalid username or password"),
                }
            }
            "urn:ietf:params:oauth:grant-type:device_code" => {
                self.device_grant(&client_id, get("device_code"), cx)
            }
            _ => bad("unsupported_grant_type", "unsupported grant type"),
        }
    }

    fn code_grant(
        &self,
        client_id: &str,
        form: &HashMap<String, String>,
        cx: &Context<'_>,
    ) -> FakeResponse {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        // Single use: taken out whatever happens next.
        let Some(pending) = lock(&self.state).codes.remove(get("code")) else {
            return bad(
                "invalid_grant",
                "authorization code is invalid or was already used",
            );
        };
        if pending.expires_at <= cx.now() || pending.client_id != client_id {
            return bad("invalid_grant", "authorization code is invalid");
        }
        if pending.redirect_uri != get("redirect_uri") {
            return bad(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            );
        }
        let verifier = get("code_verifier");
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
        if verifier.len() < 43 || challenge != pending.challenge {
            return bad("invalid_grant", "PKCE verification failed");
        }
        self.issue(
            client_id,
            &pending.user_id,
            &pending.scope,
            pending.nonce.as_deref(),
            true,
            None,
            cx,
        )
    }

    fn device_grant(&self, client_id: &str, device_code: &str, cx: &Context<'_>) -> FakeResponse {
        let now = cx.now();
        let settings = self.settings();
        let entry = {
            let mut state = lock(&self.state);
            let Some(entry) = state.devices.get_mut(device_code) else {
                return bad("invalid_grant", "device code is invalid");
            };
            if entry.client_id != client_id {
                return bad("invalid_grant", "device code is invalid");
            }
            if entry.expires_at <= now {
                return bad("expired_token", "device code is expired");
            }
            let too_fast = entry.last_poll.is_some_and(|last| {
                now.duration_since(last).unwrap_or_default() < settings.device_interval
            });
            entry.last_poll = Some(now);
            match &entry.state {
                DeviceState::Pending if too_fast => return bad("slow_down", "polling too quickly"),
                DeviceState::Pending => {
                    return bad("authorization_pending", "the user has not finished yet");
                }
                DeviceState::Denied => return bad("access_denied", "the user denied the request"),
                DeviceState::Used => return bad("invalid_grant", "device code was already used"),
                DeviceState::Approved(_) => {}
            }
            let taken = entry.clone();
            entry.state = DeviceState::Used;
            taken
        };
        let DeviceState::Approved(user_id) = &entry.state else {
            return bad("invalid_grant", "device code is invalid");
        };
        self.issue(client_id, user_id, &entry.scope, None, true, None, cx)
    }

    fn refresh_grant(&self, client_id: &str, token: &str, cx: &Context<'_>) -> FakeResponse {
        cx.recorder().record_refresh_token(token);
        let now = cx.now();
        let settings = self.settings();
        let policy = RefreshPolicy {
            rotate: settings.rotate_refresh,
            reuse_detection: settings.reuse_detection,
            grace: None,
        };
        let Some(family) = self.families.family_of_refresh(token) else {
            return bad("invalid_grant", "grant request is invalid");
        };
        let Some((owner, scope)) = lock(&self.state).grants.get(&family).cloned() else {
            return bad("invalid_grant", "grant request is invalid");
        };
        if owner != client_id {
            return bad("invalid_grant", "grant request is invalid");
        }
        match self.families.refresh(token, now, None, policy) {
            Ok(outcome) => self.issue(
                client_id,
                &outcome.subject,
                &scope,
                None,
                true,
                Some((outcome.family, outcome.new_refresh)),
                cx,
            ),
            Err(RefreshError::Reused) => bad(
                "invalid_grant",
                "refresh token already used; the grant is revoked",
            ),
            Err(_) => bad("invalid_grant", "grant request is invalid"),
        }
    }

    /// A token answer. `user_grant`: a user signed in (refresh token and, with `openid`,
    /// an ID token); `refreshed`: the family of a refresh and its new refresh token.
    #[allow(
        clippy::too_many_arguments,
        reason = "one place builds every token answer"
    )]
    fn issue(
        &self,
        client_id: &str,
        subject: &str,
        scope: &str,
        nonce: Option<&str>,
        user_grant: bool,
        refreshed: Option<(u64, Option<String>)>,
        cx: &Context<'_>,
    ) -> FakeResponse {
        let now = cx.now();
        let settings = self.settings();
        let mut extra = Map::new();
        extra.insert("client_id".into(), client_id.into());
        extra.insert("scope".into(), scope.into());
        let (access, claims) =
            self.access_keys
                .issue(subject, now, Some(settings.access_lifetime), extra);
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": settings.access_lifetime.as_secs(),
            "scope": scope,
        });
        if user_grant {
            let (family, refresh) = match refreshed {
                Some((family, new)) => (family, new),
                None => {
                    let family = self.families.start(subject, now, None, None);
                    lock(&self.state)
                        .grants
                        .insert(family, (client_id.to_owned(), scope.to_owned()));
                    (family, Some(self.families.issue_refresh(family, now, None)))
                }
            };
            self.families.register_access(family, &claims.jti);
            if let Some(refresh) = refresh {
                body["refresh_token"] = refresh.into();
            }
            if settings.id_tokens && scope.split(' ').any(|s| s == "openid") {
                body["id_token"] = self.id_token(client_id, subject, nonce, cx).into();
            }
        }
        FakeResponse::json(StatusCode::OK, &body).with_header("cache-control", "no-store")
    }

    fn id_token(
        &self,
        client_id: &str,
        subject: &str,
        nonce: Option<&str>,
        cx: &Context<'_>,
    ) -> String {
        let now = unix_secs(cx.now());
        let fault = *lock(&self.id_token_fault);
        let user = self.users.by_id(subject);
        let mut claims = json!({
            "iss": issuer(cx),
            "sub": subject,
            "aud": if fault == Some(IdTokenFault::WrongAudience) { "someone-else" } else { client_id },
            "iat": now,
            "exp": if fault == Some(IdTokenFault::Expired) { now.saturating_sub(3600) } else { now + 300 },
            "email": user.as_ref().map(|u| u.email.clone()),
            "name": user.as_ref().map(|u| u.name.clone()),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ID_TOKEN_KID.to_owned());
        let signed = match fault {
            Some(IdTokenFault::OtherKey) => {
                jsonwebtoken::encode(&header, &claims, &self.other_id_key)
            }
            Some(IdTokenFault::Hmac) => {
                header.alg = Algorithm::HS256;
                jsonwebtoken::encode(
                    &header,
                    &claims,
                    &EncodingKey::from_secret(&self.hmac_secret),
                )
            }
            _ => jsonwebtoken::encode(&header, &claims, &self.id_key),
        };
        let signed = signed.unwrap_or_default();
        crate::secret_log::record(&signed);
        signed
    }

    fn userinfo(&self, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let unauthorized = |why: &str| {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", why).with_header(
                "www-authenticate",
                &format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
            )
        };
        let Some(token) = req.bearer() else {
            return unauthorized("no access token");
        };
        let claims = match self.access_keys.verify(token, cx.now()) {
            Ok(claims) => claims,
            Err(JwtError::Expired) => return unauthorized("access token expired"),
            Err(JwtError::Invalid) => return unauthorized("invalid access token"),
        };
        if !self.families.is_access_live(&claims.jti) {
            return unauthorized("access token revoked");
        }
        let Some(user) = self.users.by_id(&claims.sub) else {
            return unauthorized("no such user");
        };
        FakeResponse::json(
            StatusCode::OK,
            &json!({ "sub": user.id, "email": user.email, "name": user.name }),
        )
    }

    fn revoke(&self, req: &FakeRequest) -> FakeResponse {
        let form = form(req);
        if let Err(answer) = self.client(req, &form) {
            return answer;
        }
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        if !self.families.revoke_by_refresh(token)
            && let Some(claims) = crate::jwt::decode_unverified(token)
        {
            self.families.revoke_access(&claims.jti);
        }
        FakeResponse::empty(StatusCode::OK)
    }
}
