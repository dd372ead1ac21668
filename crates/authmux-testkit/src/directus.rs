//! `FakeDirectus`: a fake Directus 12.4 auth server (seed 003, `dialects.md`, and the
//! Directus 12.4.0 source, which wins where they disagree).
//!
//! # Endpoints ([`endpoints`])
//! - `POST /auth/login` `{email, password, mode?, otp?}` → `200 {data:{expires,
//!   refresh_token, access_token}}` (`mode` `json`, the default);
//!   `{data:{expires, access_token}}` plus an HttpOnly `directus_refresh_token` cookie
//!   (`cookie`); `{data:{expires}}` plus an HttpOnly `directus_session_token` cookie
//!   holding the JWT (`session`). `expires` is a lifetime in **milliseconds**: the access
//!   TTL, or in session mode the session TTL (the session JWT lives that long).
//!   Refusals: 400 `INVALID_PAYLOAD` (Joi's wording, e.g. `"email" is required`,
//!   `"otp" is not allowed to be empty`); 401 `INVALID_CREDENTIALS` for an unknown
//!   email, a wrong password **or an inactive (e.g. suspended) user**; 401 `INVALID_OTP`
//!   when the user has two-factor on and the password was right but `otp` is missing
//!   (that means "OTP required") or wrong.
//! - `POST /auth/refresh`: the token comes from `body.refresh_token` (json), the
//!   `directus_refresh_token` cookie (cookie, the default without a body token) or the
//!   `session` claim of the `directus_session_token` cookie with `{mode:"session"}`.
//!   Answers like login. The presented token is **rotated**: in json and cookie mode the
//!   old one is dead at once (401 `INVALID_CREDENTIALS`); in session mode the old
//!   session keeps working for the grace period (10 s) and refreshing it again answers
//!   with the same new session. No token: 400. A suspended user's session: 401
//!   `USER_SUSPENDED` (and the session is deleted).
//! - `POST /auth/logout` (token found as for refresh) → `204`, also for an unknown
//!   token; the session is deleted. Cookies that came with it are "cleared" the way
//!   Express 4 does it with Directus's options: an **empty value with the usual
//!   Max-Age**, not an expired cookie.
//! - `POST /auth/password/request {email, reset_url?}` → `204` (also for an unknown
//!   user); a `reset_url` not on the allow list is 400 `INVALID_PAYLOAD`. For an active
//!   user a [`Mail`] is captured whose link carries `?token=<reset JWT>`.
//! - `POST /auth/password/reset {token, password}` → `204`; the token is single-use
//!   (403 `FORBIDDEN` after), and every session of the user is cleared.
//! - `GET /auth` → `{data:[{name, label?, driver, icon?}], disableDefault:false}`;
//!   `GET /auth/oauth` → Directus 9's `{data:["github", ...]}` (`null` when none), a
//!   route 12.4 no longer has (see [`DirectusSettings::legacy_oauth_route`]).
//! - `GET /auth/login/:provider?redirect=` → `302` to the provider (by default the fake's
//!   own `GET /fake-sso/:provider/authorize`, which signs in as the provider's
//!   [`AuthProvider::user_email`] and comes back to
//!   `GET /auth/login/:provider/callback`, which sets the mode's cookie and redirects to
//!   `redirect`). Unknown provider: 404 `ROUTE_NOT_FOUND`.
//! - `GET /users/me?fields=` (`fields=a,b`, `fields[]=a&fields[]=b`, `role.name`) →
//!   `{data:{id, first_name, last_name, email, password:"**********", status, role,
//!   tfa_secret:"**********"|null, ...}}`; without a user: 401 `INVALID_CREDENTIALS`. A
//!   field that does not exist gives `{data:{id}}`, as Directus does.
//! - `POST /users/me/tfa/generate {password}` → `{data:{secret, otpauth_url}}`;
//!   `POST /users/me/tfa/enable {secret, otp}` → 204; `POST /users/me/tfa/disable {otp}`
//!   → 204. Codes are RFC 6238 TOTP (SHA-1, 6 digits, 30 s) on the server clock with
//!   **no** tolerance window; a wrong code is 400 `INVALID_PAYLOAD` `"otp" is invalid`.
//! - `GET /items/:collection` → `{data:[...]}` for a user with app access (the fake
//!   starts with an `articles` collection); otherwise 403 `FORBIDDEN`.
//! - `GET /server/ping` → `pong`.
//!
//! # Authentication on every route
//! As Directus's `authenticate` middleware runs before every router, **every** request
//! (the `/auth/*` ones included) is authenticated first: the token is `?access_token=`,
//! else `Authorization: Bearer` (both: 400), else the session cookie. An expired JWT
//! answers 401 `TOKEN_EXPIRED` and a badly signed one 403 `INVALID_TOKEN` before the
//! route runs, so a client that sends a stale bearer to `/auth/refresh` is caught. A
//! session JWT whose session is gone answers 401 `INVALID_CREDENTIALS`, and a failing
//! session cookie is cleared.
//!
//! # Errors
//! `{"errors":[{"message":"...","extensions":{"code":"..."}}]}`; `INVALID_PAYLOAD`
//! errors also carry `extensions.reason`. Messages are Directus's ("Invalid user
//! credentials.", "Invalid user OTP.", "Token expired.", "Invalid token.", "User
//! suspended.", "Invalid payload. {reason}.").
//!
//! # Tokens
//! Access tokens are HS256 JWTs with Directus's claims and nothing else: `id` (the user
//! id), `role`, `app_access`, `admin_access`, `session` (session mode only), `iat`,
//! `exp` and `iss: "directus"` (no `sub`, no `jti`). Refresh tokens are opaque. Tokens
//! of one sign-in form a family in [`TokenFamilies`]; with
//! [`DirectusSettings::reuse_detection`] (off by default: real Directus has none), a
//! retired refresh token revokes its whole family, access tokens included.
//!
//! # Where the fake knowingly differs from Directus 12.4
//! Checked side by side with a real 12.4.0 (same requests with curl):
//! - JSON object keys come in alphabetical order, not Directus's insertion order.
//! - Refresh tokens are 48 alphanumerics (the shared token families), not 64-character
//!   nanoids; the JWT header is `{"typ","alg"}` instead of `{"alg","typ"}`.
//! - A request to an unknown route is 404 even with an expired bearer (Directus
//!   authenticates first and answers 401 `TOKEN_EXPIRED`); routes with a trailing slash
//!   (`/users/me/tfa/generate/`) are unknown to the fake, Express accepts them.
//! - `GET /auth/oauth` answers (Directus 9's shape) unless
//!   [`DirectusSettings::legacy_oauth_route`] is off; 12.4 has no such route.
//! - SSO is licensed by default ([`DirectusSettings::sso_licensed`]); a free-licence
//!   12.4 hides providers. The provider is the fake's own page, and `prompt`/`otp`
//!   query options of the SSO start are only carried along.
//! - JSON syntax errors other than a truncated body are worded differently from Node's.
//! - Permissions are reduced to "app or admin access reads `/items`, a role reads its
//!   own user"; fault-injected 429s use the generic wording; no `enforce_tfa`, shares,
//!   invites or registration.
//! - Simultaneous refreshes with one token: handlers run one at a time, so the second
//!   is refused at once; [`DirectusSettings::concurrent_refresh_window`] reproduces the
//!   real server's "both succeed, one token is dead".
//!
//! # Default users ([`default_users`])
//! The shared users of [`crate::users`], password [`DEFAULT_PASSWORD`]:
//! `alice@example.com` (an administrator), `otp@example.com` (two-factor on with the
//! TOTP secret [`OTP_TOTP_SECRET`]: get its code with [`FakeDirectus::totp_code`]),
//! `forbidden@example.com` (signs in, but has no app access, so `/items` is 403) and
//! `suspended@example.com` (status `suspended`).
//!
//! ```
//! use authmux_testkit::directus::{FakeDirectus, endpoints};
//! use authmux_testkit::users::OTP_EMAIL;
//!
//! let directus = FakeDirectus::start().unwrap();
//! assert_eq!(directus.totp_code(OTP_EMAIL).unwrap().len(), 6);
//! assert_eq!(directus.recorder().count(endpoints::LOGIN), 0);
//! ```

mod state;
mod wire;

use std::collections::BTreeMap;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use authmux_core::clock::{Clock, SystemClock};
use serde_json::{Map, Value, json};
use url::Url;

use crate::families::{FamilyId, FamilyInfo, TokenFamilies};
use crate::jwt::JwtKeys;
use crate::recorder::RecordedRequest;
use crate::server::{RateLimit, ServerConfig, ServerHandle};
pub use crate::users::DEFAULT_PASSWORD;
use crate::users::{User, Users};
use state::{DirectusState, Mode};

/// Directus's error envelope for an HTTP status, `{"errors":[{"message", "extensions":
/// {"code"}}]}` with the code Directus uses for it: what the fake (and
/// [`crate::fault_proxy::FaultProxy`] in front of a real Directus) answers an injected
/// [`crate::Fault::Status`] with.
pub fn error_envelope(status: http::StatusCode, message: &str) -> crate::server::FakeResponse {
    wire::status_envelope(status, message)
}

/// The cookie Directus keeps the refresh token in (`REFRESH_TOKEN_COOKIE_NAME`).
pub const REFRESH_COOKIE: &str = "directus_refresh_token";
/// The cookie Directus keeps the session JWT in (`SESSION_COOKIE_NAME`).
pub const SESSION_COOKIE: &str = "directus_session_token";

/// The endpoint names (patterns) the fake serves: use them with `recorder().count(..)`
/// and `faults().push(..)`.
pub mod endpoints {
    /// `POST /auth/login`.
    pub const LOGIN: &str = "POST /auth/login";
    /// `POST /auth/refresh`.
    pub const REFRESH: &str = "POST /auth/refresh";
    /// `POST /auth/logout`.
    pub const LOGOUT: &str = "POST /auth/logout";
    /// `POST /auth/password/request`.
    pub const PASSWORD_REQUEST: &str = "POST /auth/password/request";
    /// `POST /auth/password/reset`.
    pub const PASSWORD_RESET: &str = "POST /auth/password/reset";
    /// `GET /auth`: the provider list.
    pub const PROVIDERS: &str = "GET /auth";
    /// `GET /auth/oauth`: Directus 9's provider list.
    pub const LEGACY_OAUTH: &str = "GET /auth/oauth";
    /// `GET /auth/login/:provider`: the start of an SSO sign-in.
    pub const SSO_START: &str = "GET /auth/login/:provider";
    /// `GET /auth/login/:provider/callback`: the end of an SSO sign-in.
    pub const SSO_CALLBACK: &str = "GET /auth/login/:provider/callback";
    /// `GET /fake-sso/:provider/authorize`: the fake identity provider (not Directus).
    pub const SSO_PROVIDER_AUTHORIZE: &str = "GET /fake-sso/:provider/authorize";
    /// `GET /users/me`.
    pub const ME: &str = "GET /users/me";
    /// `POST /users/me/tfa/generate`.
    pub const TFA_GENERATE: &str = "POST /users/me/tfa/generate";
    /// `POST /users/me/tfa/enable`.
    pub const TFA_ENABLE: &str = "POST /users/me/tfa/enable";
    /// `POST /users/me/tfa/disable`.
    pub const TFA_DISABLE: &str = "POST /users/me/tfa/disable";
    /// `GET /items/:collection`: an ordinary protected data endpoint.
    pub const ITEMS: &str = "GET /items/:collection";
    /// `GET /server/ping`.
    pub const PING: &str = "GET /server/ping";

    /// Every endpoint, in routing order.
    pub const ALL: &[&str] = &[
        LOGIN,
        REFRESH,
        LOGOUT,
        PASSWORD_REQUEST,
        PASSWORD_RESET,
        PROVIDERS,
        LEGACY_OAUTH,
        SSO_CALLBACK,
        SSO_START,
        SSO_PROVIDER_AUTHORIZE,
        ME,
        TFA_GENERATE,
        TFA_ENABLE,
        TFA_DISABLE,
        ITEMS,
        PING,
    ];

    /// Whether an endpoint is one of Directus's `/auth/*` routes.
    pub fn is_auth(endpoint: &str) -> bool {
        endpoint
            .split_once(' ')
            .is_some_and(|(_, path)| path == "/auth" || path.starts_with("/auth/"))
    }
}

/// The role id of the default administrator.
pub const ADMIN_ROLE_ID: &str = "6a7c1b5e-0d2f-4e1a-9b3c-5d4e3f2a1b00";
/// The role id of default users with app access.
pub const EDITOR_ROLE_ID: &str = "6a7c1b5e-0d2f-4e1a-9b3c-5d4e3f2a1b01";
/// The role id of default users without app access.
pub const NO_APP_ROLE_ID: &str = "6a7c1b5e-0d2f-4e1a-9b3c-5d4e3f2a1b02";
/// The base32 TOTP secret of the default OTP user (`otp@example.com`), and of any
/// shared [`User`] with an OTP code that becomes a [`DirectusUser`].
pub const OTP_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

/// The `SameSite` attribute of Directus's cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (Directus's default).
    #[default]
    Lax,
    /// `SameSite=None`.
    None,
}

/// How an SSO provider hands the sign-in over (`AUTH_<PROVIDER>_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderMode {
    /// A `directus_session_token` cookie (Directus's default for SSO).
    #[default]
    Session,
    /// A `directus_refresh_token` cookie.
    Cookie,
    /// Treated like `Cookie` on a redirect (Directus always redirects at the end).
    Json,
}

/// An SSO provider (`AUTH_PROVIDERS` and its `AUTH_<NAME>_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProvider {
    /// The provider's name, e.g. `github` (the path segment of `/auth/login/<name>`).
    pub name: String,
    /// The driver: `oauth2`, `openid`, `ldap`, `saml`.
    pub driver: String,
    /// The label shown on the login page.
    pub label: Option<String>,
    /// The icon name.
    pub icon: Option<String>,
    /// How the sign-in is handed over at the end of the flow.
    pub mode: ProviderMode,
    /// Absolute redirect URLs allowed besides `PUBLIC_URL`'s host
    /// (`AUTH_<NAME>_REDIRECT_ALLOW_LIST`).
    pub redirect_allow_list: Vec<String>,
    /// Where `/auth/login/<name>` sends the browser; `None`: the fake's own
    /// `/fake-sso/<name>/authorize`.
    pub authorize_url: Option<Url>,
    /// Who the fake provider signs in as (a user of the fake).
    pub user_email: String,
}

impl AuthProvider {
    /// An `oauth2` provider that signs in as `user_email`.
    pub fn oauth2(name: &str, user_email: &str) -> Self {
        Self {
            name: name.to_owned(),
            driver: "oauth2".to_owned(),
            label: None,
            icon: None,
            mode: ProviderMode::Session,
            redirect_allow_list: Vec::new(),
            authorize_url: None,
            user_email: user_email.to_owned(),
        }
    }

    /// Sets the driver.
    #[must_use]
    pub fn driver(mut self, driver: &str) -> Self {
        driver.clone_into(&mut self.driver);
        self
    }

    /// Sets the label.
    #[must_use]
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    /// Sets the icon.
    #[must_use]
    pub fn icon(mut self, icon: &str) -> Self {
        self.icon = Some(icon.to_owned());
        self
    }

    /// Sets the hand-over mode.
    #[must_use]
    pub fn mode(mut self, mode: ProviderMode) -> Self {
        self.mode = mode;
        self
    }

    /// Allows an absolute redirect URL.
    #[must_use]
    pub fn allow_redirect(mut self, url: &str) -> Self {
        self.redirect_allow_list.push(url.to_owned());
        self
    }

    /// Sends the browser to this authorize URL instead of the fake's own.
    #[must_use]
    pub fn authorize_url(mut self, url: Url) -> Self {
        self.authorize_url = Some(url);
        self
    }
}

/// What the fake can be told, as Directus reads it from its environment. Change it at
/// run time with [`FakeDirectus::update_settings`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectusSettings {
    /// `ACCESS_TOKEN_TTL` (15 min).
    pub access_ttl: Duration,
    /// `REFRESH_TOKEN_TTL` (7 days): refresh token lifetime and refresh cookie Max-Age.
    pub refresh_ttl: Duration,
    /// `SESSION_COOKIE_TTL` (1 day): session JWT lifetime and session cookie Max-Age.
    pub session_ttl: Duration,
    /// `SESSION_REFRESH_GRACE_PERIOD` (10 s).
    pub session_grace: Duration,
    /// Not Directus (off by default): presenting a retired refresh token revokes the
    /// whole family (every access and refresh token of that sign-in).
    pub reuse_detection: bool,
    /// `REFRESH_TOKEN_COOKIE_SECURE` / `SESSION_COOKIE_SECURE` (false).
    pub cookie_secure: bool,
    /// `REFRESH_TOKEN_COOKIE_SAME_SITE` / `SESSION_COOKIE_SAME_SITE` (Lax).
    pub cookie_same_site: SameSite,
    /// `REFRESH_TOKEN_COOKIE_DOMAIN` / `SESSION_COOKIE_DOMAIN` (none).
    pub cookie_domain: Option<String>,
    /// `PASSWORD_RESET_URL_ALLOW_LIST` (empty: only the default link).
    pub password_reset_allow_list: Vec<String>,
    /// `AUTH_PROVIDERS` (none).
    pub providers: Vec<AuthProvider>,
    /// Serve Directus 9's `GET /auth/oauth` (on). Directus 12.4 answers 404 there; turn
    /// it off to test that.
    pub legacy_oauth_route: bool,
    /// Whether the licence includes SSO (on). A free-licence Directus 12.4 lists no
    /// providers at `GET /auth` and answers 404 at `/auth/login/<provider>` even when
    /// providers are configured; turn this off to reproduce that.
    pub sso_licensed: bool,
    /// Not a Directus setting (zero by default): for this long after a json or cookie
    /// refresh rotated a token, presenting the old token again still answers 200, with
    /// a new refresh token that was never stored (dead at its first use). That is what a
    /// real Directus does with refreshes sent at the same instant with one token: each
    /// succeeds, but only the first rotation's token stays alive.
    pub concurrent_refresh_window: Duration,
    /// The project name, the issuer in `otpauth://` URLs ("Directus").
    pub project_name: String,
    /// `PUBLIC_URL` (`None`: the fake's base URL).
    pub public_url: Option<Url>,
}

impl Default for DirectusSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 86_400),
            session_ttl: Duration::from_secs(86_400),
            session_grace: Duration::from_secs(10),
            reuse_detection: false,
            cookie_secure: false,
            cookie_same_site: SameSite::Lax,
            cookie_domain: None,
            password_reset_allow_list: Vec::new(),
            providers: Vec::new(),
            legacy_oauth_route: true,
            sso_licensed: true,
            concurrent_refresh_window: Duration::ZERO,
            project_name: "Directus".to_owned(),
            public_url: None,
        }
    }
}

/// Directus-only details of a user, kept beside the shared [`User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    first_name: Option<String>,
    last_name: Option<String>,
    role: Option<String>,
    role_name: Option<String>,
    admin_access: bool,
    app_access: bool,
    status: String,
    tfa_secret: Option<String>,
    static_token: Option<String>,
    provider: String,
    last_access: Option<SystemTime>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            first_name: None,
            last_name: None,
            role: Some(EDITOR_ROLE_ID.to_owned()),
            role_name: Some("Editor".to_owned()),
            admin_access: false,
            app_access: true,
            status: "active".to_owned(),
            tfa_secret: None,
            static_token: None,
            provider: "default".to_owned(),
            last_access: None,
        }
    }
}

/// A Directus user: a shared [`User`] (id, email, password) plus Directus's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectusUser {
    /// The shared part: `id` (a UUID), `email`, `password`.
    pub user: User,
    /// `first_name`.
    pub first_name: Option<String>,
    /// `last_name`.
    pub last_name: Option<String>,
    /// The role id. `None`: no role, as for a user created without one; such a user
    /// signs in (`role: null` in the JWT) but may read none of its own fields, so
    /// `/users/me` answers `{data:{id}}`.
    pub role: Option<String>,
    /// The role's name (for `fields=role.name`).
    pub role_name: Option<String>,
    /// The `admin_access` claim.
    pub admin_access: bool,
    /// The `app_access` claim; without it (and without admin) `/items` is forbidden.
    pub app_access: bool,
    /// `status`: `active`, `suspended`, `draft`, `invited`, `archived`...
    pub status: String,
    /// The base32 TOTP secret when two-factor is on.
    pub tfa_secret: Option<String>,
    /// A static token (`directus_users.token`) usable as a bearer.
    pub static_token: Option<String>,
    /// The auth provider (`default` for email and password).
    pub provider: String,
    /// When the user last signed in or refreshed (server time).
    pub last_access: Option<SystemTime>,
}

impl DirectusUser {
    /// An active user with app access (role "Editor"), no two-factor.
    pub fn new(email: &str, password: &str) -> Self {
        Self::from(User::new(email, password))
    }

    /// Makes the user an administrator (admin and app access, role "Administrator").
    #[must_use]
    pub fn admin(mut self) -> Self {
        self.admin_access = true;
        self.app_access = true;
        self.role = Some(ADMIN_ROLE_ID.to_owned());
        self.role_name = Some("Administrator".to_owned());
        self
    }

    /// Takes app access away (role "No App").
    #[must_use]
    pub fn without_app_access(mut self) -> Self {
        self.admin_access = false;
        self.app_access = false;
        self.role = Some(NO_APP_ROLE_ID.to_owned());
        self.role_name = Some("No App".to_owned());
        self
    }

    /// Sets first and last name.
    #[must_use]
    pub fn names(mut self, first: &str, last: &str) -> Self {
        self.first_name = Some(first.to_owned());
        self.last_name = Some(last.to_owned());
        self
    }

    /// Sets the status (e.g. `suspended`).
    #[must_use]
    pub fn status(mut self, status: &str) -> Self {
        status.clone_into(&mut self.status);
        self
    }

    /// Turns two-factor on with this base32 secret.
    #[must_use]
    pub fn tfa_secret(mut self, secret: &str) -> Self {
        self.tfa_secret = Some(secret.to_owned());
        self
    }

    /// Removes the role (and app and admin access).
    #[must_use]
    pub fn without_role(mut self) -> Self {
        self.role = None;
        self.role_name = None;
        self.admin_access = false;
        self.app_access = false;
        self
    }

    /// Gives the user a static token.
    #[must_use]
    pub fn static_token(mut self, token: &str) -> Self {
        self.static_token = Some(token.to_owned());
        self
    }

    /// Fixes the user id.
    #[must_use]
    pub fn id(mut self, id: &str) -> Self {
        self.user = self.user.id(id);
        self
    }

    fn split(self) -> (User, Profile) {
        let profile = Profile {
            first_name: self.first_name,
            last_name: self.last_name,
            role: self.role,
            role_name: self.role_name,
            admin_access: self.admin_access,
            app_access: self.app_access,
            status: self.status,
            tfa_secret: self.tfa_secret,
            static_token: self.static_token,
            provider: self.provider,
            last_access: self.last_access,
        };
        (self.user, profile)
    }

    fn join(user: User, p: Profile) -> Self {
        Self {
            user,
            first_name: p.first_name,
            last_name: p.last_name,
            role: p.role,
            role_name: p.role_name,
            admin_access: p.admin_access,
            app_access: p.app_access,
            status: p.status,
            tfa_secret: p.tfa_secret,
            static_token: p.static_token,
            provider: p.provider,
            last_access: p.last_access,
        }
    }

    /// The `directus_users` row as an administrator reads it (secrets masked).
    fn row(&self) -> Map<String, Value> {
        let masked = |set: bool| {
            if set {
                Value::from("**********")
            } else {
                Value::Null
            }
        };
        let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::from);
        let row = json!({
            "id": self.user.id,
            "first_name": opt(&self.first_name),
            "last_name": opt(&self.last_name),
            "email": self.user.email,
            "password": masked(!self.user.password.is_empty()),
            "location": null,
            "title": null,
            "description": null,
            "tags": null,
            "avatar": null,
            "language": null,
            "tfa_secret": masked(self.tfa_secret.is_some()),
            "status": self.status,
            "role": opt(&self.role),
            "token": masked(self.static_token.is_some()),
            "last_access": self.last_access.map_or(Value::Null, |at| {
                // SQLite's datetime as Directus returns it: `2026-11-22T02:22:22`.
                Value::from(crate::jwt::iso8601_millis(at)[..19].to_owned())
            }),
            "last_page": null,
            "provider": self.provider,
            "external_identifier": null,
            "auth_data": null,
            "email_notifications": true,
            "appearance": null,
            "theme_dark": null,
            "theme_light": null,
            "theme_light_overrides": null,
            "theme_dark_overrides": null,
            "text_direction": "auto",
            "policies": [],
        });
        match row {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The role as `fields=role.*` expands it.
    fn role_object(&self) -> Value {
        match &self.role {
            Some(id) => json!({
                "id": id,
                "name": self.role_name,
                "icon": "supervised_user_circle",
                "description": null,
                "parent": null,
                "children": [],
                "policies": [],
                "users": [self.user.id],
            }),
            None => Value::Null,
        }
    }
}

impl From<User> for DirectusUser {
    /// Maps the shared flags: `suspended` → status `suspended`; an OTP code →
    /// two-factor with [`OTP_TOTP_SECRET`]; `forbidden` → no app access (Directus has no
    /// "forbidden at sign-in"). The name splits into first and last name.
    fn from(user: User) -> Self {
        let mut names = user.name.splitn(2, ' ');
        let first = names.next().map(str::to_owned).filter(|s| !s.is_empty());
        let last = names.next().map(str::to_owned);
        let forbidden = user.forbidden;
        let suspended = user.suspended;
        let otp = user.otp_code.is_some();
        let mut out = Self::join(user, Profile::default());
        out.first_name = first;
        out.last_name = last;
        if suspended {
            "suspended".clone_into(&mut out.status);
        }
        if otp {
            out.tfa_secret = Some(OTP_TOTP_SECRET.to_owned());
        }
        if forbidden {
            out = out.without_app_access();
        }
        out
    }
}

/// The default users: the shared defaults, with `alice@example.com` an administrator.
pub fn default_users() -> Vec<DirectusUser> {
    Users::default_list()
        .into_iter()
        .map(|u| {
            let admin = u.email == crate::users::ALICE_EMAIL;
            let d = DirectusUser::from(u);
            if admin { d.admin() } else { d }
        })
        .collect()
}

/// A captured password-reset mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient.
    pub to: String,
    /// The subject ("Password Reset Request").
    pub subject: String,
    /// The link: `reset_url` (or `PUBLIC_URL/admin/reset-password`) with `?token=`.
    pub url: String,
    /// The reset token in the link.
    pub token: String,
    /// When it was sent (server time).
    pub at: SystemTime,
}

/// How [`FakeDirectus::issue_tokens`] hands the tokens over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMode {
    /// Access and refresh token in the JSON body.
    Json,
    /// Access token in the body, refresh token in a cookie.
    Cookie,
    /// A session JWT in a cookie.
    Session,
}

/// Tokens issued without HTTP by [`FakeDirectus::issue_tokens`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectusTokens {
    /// The access JWT (in session mode, the session JWT for the cookie).
    pub access_token: String,
    /// The refresh token (in session mode, the session id in the JWT).
    pub refresh_token: String,
    /// The `expires` value login would answer, in milliseconds.
    pub expires_ms: u64,
    /// The token family (the session).
    pub family: FamilyId,
}

/// Builds a [`FakeDirectus`].
#[derive(Debug)]
pub struct DirectusBuilder {
    users: Vec<DirectusUser>,
    settings: DirectusSettings,
    items: BTreeMap<String, Vec<Value>>,
    clock: Arc<dyn Clock>,
    port: u16,
    rate_limit: Option<RateLimit>,
}

impl Default for DirectusBuilder {
    fn default() -> Self {
        let mut items = BTreeMap::new();
        items.insert(
            "articles".to_owned(),
            vec![
                json!({ "id": 1, "title": "Hello", "status": "published" }),
                json!({ "id": 2, "title": "World", "status": "draft" }),
            ],
        );
        Self {
            users: default_users(),
            settings: DirectusSettings::default(),
            items,
            clock: Arc::new(SystemClock),
            port: 0,
            rate_limit: None,
        }
    }
}

impl DirectusBuilder {
    /// Replaces the users (shared [`User`]s convert with `From`).
    #[must_use]
    pub fn users<U: Into<DirectusUser>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user (replacing one with the same email).
    #[must_use]
    pub fn user(mut self, user: impl Into<DirectusUser>) -> Self {
        let user = user.into();
        self.users
            .retain(|u| !u.user.email.eq_ignore_ascii_case(&user.user.email));
        self.users.push(user);
        self
    }

    /// Replaces all settings.
    #[must_use]
    pub fn settings(mut self, settings: DirectusSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Changes some settings.
    #[must_use]
    pub fn configure(mut self, change: impl FnOnce(&mut DirectusSettings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// `ACCESS_TOKEN_TTL`.
    #[must_use]
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.settings.access_ttl = ttl;
        self
    }

    /// `REFRESH_TOKEN_TTL`.
    #[must_use]
    pub fn refresh_ttl(mut self, ttl: Duration) -> Self {
        self.settings.refresh_ttl = ttl;
        self
    }

    /// `SESSION_COOKIE_TTL`.
    #[must_use]
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.settings.session_ttl = ttl;
        self
    }

    /// `SESSION_REFRESH_GRACE_PERIOD`.
    #[must_use]
    pub fn session_grace(mut self, grace: Duration) -> Self {
        self.settings.session_grace = grace;
        self
    }

    /// Refresh-token reuse detection (not Directus; off by default).
    #[must_use]
    pub fn reuse_detection(mut self, on: bool) -> Self {
        self.settings.reuse_detection = on;
        self
    }

    /// Adds an SSO provider.
    #[must_use]
    pub fn provider(mut self, provider: AuthProvider) -> Self {
        self.settings.providers.push(provider);
        self
    }

    /// Allows a `reset_url` for password-reset requests.
    #[must_use]
    pub fn allow_reset_url(mut self, url: &str) -> Self {
        self.settings.password_reset_allow_list.push(url.to_owned());
        self
    }

    /// Sets (or replaces) the items of a collection.
    #[must_use]
    pub fn items(mut self, collection: &str, items: Vec<Value>) -> Self {
        self.items.insert(collection.to_owned(), items);
        self
    }

    /// The clock for token timestamps, expiry, TOTP and the rate-limit window.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Listens on this port (0, the default, picks a free one).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Directus's rate limiter (`RATE_LIMITER_POINTS` per `RATE_LIMITER_DURATION` per
    /// IP, off by default): over it, 429 `REQUESTS_EXCEEDED` with `Retry-After` seconds.
    #[must_use]
    pub fn rate_limit(mut self, points: u32, duration: Duration) -> Self {
        self.rate_limit = Some(RateLimit {
            max_requests: points,
            window: duration,
        });
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(self) -> io::Result<FakeDirectus> {
        let state = Arc::new(DirectusState::new(self.users, self.settings, self.items));
        let config = ServerConfig::new()
            .port(self.port)
            .clock(self.clock)
            .rate_limit(self.rate_limit)
            .name("fake-directus");
        let server = ServerHandle::start(Arc::clone(&state), config)?;
        Ok(FakeDirectus { server, state })
    }
}

/// A running fake Directus. Dereferences to [`ServerHandle`] for `base_url()`, `url()`,
/// `recorder()` (per-endpoint counters, every request with its headers, every refresh
/// token presented), `faults()`, the clock offset and the rate limit; dropping it shuts
/// the server down.
///
/// ```
/// use authmux_testkit::directus::{FakeDirectus, SignInMode, endpoints};
/// use authmux_testkit::Fault;
///
/// let directus = FakeDirectus::builder().reuse_detection(true).start().unwrap();
/// directus.faults().push(endpoints::REFRESH, Fault::Status(503));
/// let tokens = directus.issue_tokens("alice@example.com", SignInMode::Json).unwrap();
/// assert_eq!(tokens.expires_ms, 900_000);
/// assert!(directus.families().live_refresh(tokens.family).is_some());
/// ```
#[derive(Debug)]
pub struct FakeDirectus {
    server: ServerHandle,
    state: Arc<DirectusState>,
}

impl Deref for FakeDirectus {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.server
    }
}

impl FakeDirectus {
    /// Starts a fake with the default users and settings on a free port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// A builder for users, settings, clock, port and rate limit.
    pub fn builder() -> DirectusBuilder {
        DirectusBuilder::default()
    }

    /// The shared server machinery.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Gives up the Directus accessors and keeps only the server (which goes on serving:
    /// the handler owns the state). For a standalone run:
    /// `fake.into_server().serve_forever()`.
    pub fn into_server(self) -> ServerHandle {
        self.server
    }

    /// The user table (shared part: ids, emails, passwords).
    pub fn users(&self) -> &Users {
        &self.state.users
    }

    /// A user with its Directus fields.
    pub fn user(&self, email: &str) -> Option<DirectusUser> {
        self.state.user_by_email(email)
    }

    /// Adds a user, or replaces the one with the same email.
    pub fn add_user(&self, user: impl Into<DirectusUser>) {
        let mut user = user.into();
        if let Some(old) = self.state.user_by_email(&user.user.email) {
            user.user.id = old.user.id;
        }
        self.state.store_user(user);
    }

    /// Changes a user (e.g. `|u| u.status = "suspended".into()`); returns whether the
    /// user exists. This is a direct change of the row, as when Directus suspends a
    /// user after too many failed logins: sessions survive it, so the next refresh
    /// answers `USER_SUSPENDED`. An admin changing the status or password through the
    /// API also ends the user's sessions: follow with [`FakeDirectus::revoke_user`].
    pub fn update_user(&self, email: &str, change: impl FnOnce(&mut DirectusUser)) -> bool {
        let Some(mut user) = self.state.user_by_email(email) else {
            return false;
        };
        let id = user.user.id.clone();
        change(&mut user);
        user.user.id = id;
        self.state.store_user(user);
        true
    }

    /// The token families (one per sign-in).
    pub fn families(&self) -> &TokenFamilies {
        &self.state.families
    }

    /// The live sign-ins of a user, oldest first.
    pub fn live_sessions(&self, email: &str) -> Vec<FamilyInfo> {
        self.state
            .users
            .by_email(email)
            .map(|u| self.state.families.live_for(&u.id))
            .unwrap_or_default()
    }

    /// The JWT keys (Directus's `SECRET`), so a test can forge or inspect tokens.
    pub fn jwt_keys(&self) -> &JwtKeys {
        &self.state.keys
    }

    /// The current settings.
    pub fn settings(&self) -> DirectusSettings {
        self.state.settings()
    }

    /// Changes settings while the server runs.
    pub fn update_settings(&self, change: impl FnOnce(&mut DirectusSettings)) {
        change(
            &mut self
                .state
                .settings
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// The user's current two-factor code on the server clock (clock plus offset);
    /// `None` without two-factor.
    pub fn totp_code(&self, email: &str) -> Option<String> {
        self.totp_code_at(email, self.server.now())
    }

    /// The user's two-factor code at a given server time.
    pub fn totp_code_at(&self, email: &str, at: SystemTime) -> Option<String> {
        let secret = self.state.user_by_email(email)?.tfa_secret?;
        wire::totp_code(&secret, at)
    }

    /// The code of any base32 secret at a server time (e.g. for a secret from
    /// `/users/me/tfa/generate`).
    pub fn totp_code_for_secret(secret: &str, at: SystemTime) -> Option<String> {
        wire::totp_code(secret, at)
    }

    /// Every password-reset mail sent, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        self.state
            .mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last password-reset mail.
    pub fn last_mail(&self) -> Option<Mail> {
        self.mails().pop()
    }

    /// The token of the last password-reset mail.
    pub fn last_reset_token(&self) -> Option<String> {
        self.last_mail().map(|m| m.token)
    }

    /// Every refresh token presented to `/auth/refresh` and `/auth/logout`, valid or not,
    /// in order (for session mode: the session id from the cookie's JWT).
    pub fn refresh_tokens_presented(&self) -> Vec<String> {
        self.server.recorder().refresh_tokens()
    }

    /// Every request to an `/auth/*` route, in order.
    pub fn auth_requests(&self) -> Vec<RecordedRequest> {
        self.server
            .recorder()
            .requests()
            .into_iter()
            .filter(|r| endpoints::is_auth(&r.endpoint))
            .collect()
    }

    /// The `/auth/*` requests that carried an `Authorization: Bearer` header (a client
    /// should send none).
    pub fn auth_requests_with_bearer(&self) -> Vec<RecordedRequest> {
        self.auth_requests()
            .into_iter()
            .filter(RecordedRequest::had_bearer)
            .collect()
    }

    /// The `User-Agent` of the last request to `endpoint`.
    pub fn last_user_agent(&self, endpoint: &str) -> Option<String> {
        self.server
            .recorder()
            .last(endpoint)
            .and_then(|r| r.user_agent().map(str::to_owned))
    }

    /// Signs a user in without HTTP and without any check (status, password or
    /// two-factor), e.g. to hydrate a client from stored tokens.
    pub fn issue_tokens(&self, email: &str, mode: SignInMode) -> Option<DirectusTokens> {
        let user = self.state.user_by_email(email)?;
        let mode = match mode {
            SignInMode::Json => Mode::Json,
            SignInMode::Cookie => Mode::Cookie,
            SignInMode::Session => Mode::Session,
        };
        let issued = self
            .state
            .sign_in(&user, mode, self.server.now(), None, None);
        Some(DirectusTokens {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
            expires_ms: u64::try_from(issued.expires.as_millis()).unwrap_or(u64::MAX),
            family: issued.family,
        })
    }

    /// A stateless access JWT for a user issued at `issued_at` (server time) and living
    /// `lifetime`: e.g. an already expired one for the "stale bearer" trap.
    pub fn access_token_at(
        &self,
        email: &str,
        issued_at: SystemTime,
        lifetime: Duration,
    ) -> Option<String> {
        let user = self.state.user_by_email(email)?;
        let mut claims = Map::new();
        claims.insert("id".into(), Value::from(user.user.id.as_str()));
        claims.insert("role".into(), user.role.map_or(Value::Null, Value::from));
        claims.insert("app_access".into(), Value::from(user.app_access));
        claims.insert("admin_access".into(), Value::from(user.admin_access));
        Some(wire::sign(
            self.state.keys.secret(),
            claims,
            issued_at,
            lifetime,
        ))
    }

    /// Ends every session of a user (what a password change does); returns how many.
    pub fn revoke_user(&self, email: &str) -> usize {
        self.state
            .users
            .by_email(email)
            .map_or(0, |u| self.state.clear_sessions(&u.id))
    }

    /// Sets (or replaces) the items of a collection.
    pub fn set_items(&self, collection: &str, items: Vec<Value>) {
        self.state
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(collection.to_owned(), items);
    }

    /// A JWT's claims without verification (for assertions on what the fake issued).
    pub fn claims(token: &str) -> Option<Map<String, Value>> {
        wire::unverified_claims(token)
    }
}
