//! The Directus handler: its state and one function per route, each following the
//! Directus 12.4 source (`controllers/auth.ts`, `auth/drivers/local.ts`,
//! `services/authentication.ts`, `middleware/extract-token.ts` + `authenticate.ts`,
//! `controllers/users.ts`, `services/tfa.ts`, `services/users.ts`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::{Map, Value, json};
use url::Url;

use super::wire::{self, CookieAttrs, DirectusError};
use super::{
    AuthProvider, DirectusSettings, DirectusUser, Mail, Profile, ProviderMode, REFRESH_COOKIE,
    SESSION_COOKIE, endpoints,
};
use crate::families::{FamilyId, RefreshError, RefreshPolicy, TokenFamilies};
use crate::jwt::{JwtKeys, iso8601_millis, random_token};
use crate::server::{Context, FakeRequest, FakeResponse, Handler, RateLimit};
use crate::users::Users;

type Result<T, E = DirectusError> = std::result::Result<T, E>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sign-in mode of `/auth/login` and `/auth/refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Json,
    Cookie,
    Session,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "cookie" => Some(Self::Cookie),
            "session" => Some(Self::Session),
            _ => None,
        }
    }
}

impl From<ProviderMode> for Mode {
    fn from(m: ProviderMode) -> Self {
        match m {
            ProviderMode::Json => Self::Json,
            ProviderMode::Cookie => Self::Cookie,
            ProviderMode::Session => Self::Session,
        }
    }
}

/// Tokens of one sign-in, as login or refresh produce them.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires: Duration,
    pub(crate) family: FamilyId,
}

/// Who a request is authenticated as (Directus's `accountability`).
#[derive(Debug, Clone, Default)]
struct Accountability {
    user: Option<String>,
}

/// Where the request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Query,
    Header,
    Cookie,
}

/// Session-mode bookkeeping the token families do not cover.
#[derive(Debug, Default)]
struct SessionBook {
    /// A session token retired by a session-mode refresh → (its successor, when).
    /// Within the grace period the old token still authenticates, and refreshing it
    /// again answers with the same successor (Directus's `next_token`).
    successors: HashMap<String, (String, SystemTime)>,
    /// Families revoked by reuse detection: their access tokens die too.
    reuse_revoked: HashSet<FamilyId>,
    /// json/cookie refresh tokens → when a refresh rotated them (for the opt-in
    /// concurrent-refresh window).
    rotated_at: HashMap<String, SystemTime>,
}

/// Everything the fake knows. Shared by the handler (server thread) and the handle.
#[derive(Debug)]
pub(crate) struct DirectusState {
    pub(crate) users: Users,
    pub(crate) profiles: Mutex<HashMap<String, Profile>>,
    pub(crate) keys: JwtKeys,
    pub(crate) families: TokenFamilies,
    pub(crate) settings: Mutex<DirectusSettings>,
    pub(crate) mails: Mutex<Vec<Mail>>,
    pub(crate) items: Mutex<BTreeMap<String, Vec<Value>>>,
    sessions: Mutex<SessionBook>,
    /// Authorization codes handed out by the fake SSO provider → email.
    sso_codes: Mutex<HashMap<String, String>>,
    /// Times each user's password was set, so a reset token is single-use even when
    /// the new password equals the old one (Directus hashes with a fresh salt).
    password_versions: Mutex<HashMap<String, u64>>,
}

impl DirectusState {
    pub(crate) fn new(
        users: Vec<DirectusUser>,
        settings: DirectusSettings,
        items: BTreeMap<String, Vec<Value>>,
    ) -> Self {
        let table = Users::default();
        let mut profiles = HashMap::new();
        for u in users {
            let (user, profile) = u.split();
            let user = table.add(user);
            profiles.insert(user.id, profile);
        }
        Self {
            users: table,
            profiles: Mutex::new(profiles),
            keys: JwtKeys::random(),
            families: TokenFamilies::default(),
            settings: Mutex::new(settings),
            mails: Mutex::new(Vec::new()),
            items: Mutex::new(items),
            sessions: Mutex::new(SessionBook::default()),
            sso_codes: Mutex::new(HashMap::new()),
            password_versions: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn settings(&self) -> DirectusSettings {
        lock(&self.settings).clone()
    }

    /// The combined view of a user.
    pub(crate) fn user_by_email(&self, email: &str) -> Option<DirectusUser> {
        let user = self.users.by_email(email)?;
        let profile = lock(&self.profiles)
            .get(&user.id)
            .cloned()
            .unwrap_or_default();
        Some(DirectusUser::join(user, profile))
    }

    fn user_by_id(&self, id: &str) -> Option<DirectusUser> {
        let user = self.users.by_id(id)?;
        let profile = lock(&self.profiles)
            .get(&user.id)
            .cloned()
            .unwrap_or_default();
        Some(DirectusUser::join(user, profile))
    }

    /// Writes a changed combined view back.
    pub(crate) fn store_user(&self, user: DirectusUser) {
        let (user, profile) = user.split();
        let id = user.id.clone();
        if self.users.by_id(&id).is_some() {
            self.users.update(&id, |u| *u = user);
        } else {
            self.users.add(user);
        }
        lock(&self.profiles).insert(id, profile);
    }

    fn set_profile(&self, id: &str, change: impl FnOnce(&mut Profile)) {
        if let Some(p) = lock(&self.profiles).get_mut(id) {
            change(p);
        }
    }

    fn password_hash(&self, user: &DirectusUser) -> String {
        let version = lock(&self.password_versions)
            .get(&user.user.id)
            .copied()
            .unwrap_or(0);
        // Directus signs `getSimpleHash('' + user.password)` (the argon2 hash); any
        // value that changes with every password change does the same job here.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in user.user.password.bytes().chain(version.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h & 0xffff_ffff)
    }

    fn cookie_attrs(&self) -> CookieAttrs {
        let s = lock(&self.settings);
        CookieAttrs {
            domain: s.cookie_domain.clone(),
            secure: s.cookie_secure,
            same_site: s.cookie_same_site,
        }
    }

    // ----- tokens ---------------------------------------------------------------

    fn access_claims(user: &DirectusUser, session: Option<&str>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("id".into(), Value::from(user.user.id.as_str()));
        claims.insert(
            "role".into(),
            user.role.clone().map_or(Value::Null, Value::from),
        );
        claims.insert("app_access".into(), Value::from(user.app_access));
        claims.insert("admin_access".into(), Value::from(user.admin_access));
        if let Some(session) = session {
            claims.insert("session".into(), Value::from(session));
        }
        claims
    }

    /// `AuthenticationService.login` after the checks: a new session row (family) and
    /// the tokens for `mode`.
    pub(crate) fn sign_in(
        &self,
        user: &DirectusUser,
        mode: Mode,
        now: SystemTime,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Issued {
        let s = self.settings();
        let family = self.families.start(&user.user.id, now, user_agent, ip);
        // Directus stores the session row with REFRESH_TOKEN_TTL at login, whatever the mode.
        let refresh_token = self
            .families
            .issue_refresh(family, now, Some(s.refresh_ttl));
        let (access_token, expires) = if mode == Mode::Session {
            let claims = Self::access_claims(user, Some(&refresh_token));
            (
                wire::sign(self.keys.secret(), claims, now, s.session_ttl),
                s.session_ttl,
            )
        } else {
            let claims = Self::access_claims(user, None);
            (
                wire::sign(self.keys.secret(), claims, now, s.access_ttl),
                s.access_ttl,
            )
        };
        self.families
            .register_access(family, signature(&access_token));
        self.set_profile(&user.user.id, |p| p.last_access = Some(now));
        Issued {
            access_token,
            refresh_token,
            expires,
            family,
        }
    }

    /// Whether a session token (a refresh token named in a session JWT) is usable now:
    /// its family is alive and it is the live token, or it was retired by a session
    /// refresh less than the grace period ago.
    fn session_live(&self, token: &str, now: SystemTime) -> bool {
        let Some(family) = self.families.family_of_refresh(token) else {
            return false;
        };
        if self.families.is_revoked(family) {
            return false;
        }
        if self.families.live_refresh(family).as_deref() == Some(token) {
            return true;
        }
        let grace = self.settings().session_grace;
        lock(&self.sessions)
            .successors
            .get(token)
            .is_some_and(|(_, at)| now.duration_since(*at).unwrap_or_default() < grace)
    }

    fn policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            rotate: true,
            reuse_detection: self.settings().reuse_detection,
            grace: None,
        }
    }

    fn note_refresh_error(&self, token: &str, err: RefreshError) -> DirectusError {
        if err == RefreshError::Reused
            && let Some(family) = self.families.family_of_refresh(token)
        {
            lock(&self.sessions).reuse_revoked.insert(family);
        }
        DirectusError::InvalidCredentials
    }

    /// `AuthenticationService.refresh`.
    fn refresh(
        &self,
        token: &str,
        session_mode: bool,
        now: SystemTime,
    ) -> Result<(Issued, DirectusUser)> {
        let s = self.settings();
        // The session row is looked up (and the user's status checked) before anything
        // rotates: a suspended user's live session is deleted and refused.
        let family = self
            .families
            .family_of_refresh(token)
            .ok_or(DirectusError::InvalidCredentials)?;
        let subject = self
            .families
            .info(family)
            .map(|f| f.subject)
            .ok_or(DirectusError::InvalidCredentials)?;
        let user = self
            .user_by_id(&subject)
            .ok_or(DirectusError::InvalidCredentials)?;
        let usable = if session_mode {
            self.session_live(token, now)
        } else {
            self.families.live_refresh(family).as_deref() == Some(token)
        };
        if usable && user.status != "active" {
            self.families.revoke_family(family);
            return Err(if user.status == "suspended" {
                DirectusError::UserSuspended
            } else {
                DirectusError::InvalidCredentials
            });
        }

        let (new_token, lifetime) = if session_mode {
            let successor = {
                let book = lock(&self.sessions);
                book.successors.get(token).cloned()
            };
            match successor {
                Some((next, at))
                    if now.duration_since(at).unwrap_or_default() < s.session_grace
                        && self.session_live(&next, now) =>
                {
                    (next, s.session_ttl)
                }
                _ => {
                    let out = self
                        .families
                        .refresh(token, now, Some(s.session_ttl), self.policy())
                        .map_err(|e| self.note_refresh_error(token, e))?;
                    let next = out.new_refresh.ok_or(DirectusError::InvalidCredentials)?;
                    lock(&self.sessions)
                        .successors
                        .insert(token.to_owned(), (next.clone(), now));
                    (next, s.session_ttl)
                }
            }
        } else {
            let raced = lock(&self.sessions)
                .rotated_at
                .get(token)
                .is_some_and(|at| {
                    now.duration_since(*at).unwrap_or_default() < s.concurrent_refresh_window
                });
            if raced && !self.families.is_revoked(family) {
                // The losing side of two refreshes at the same instant: Directus's
                // `UPDATE ... WHERE token = old` matched no row, so this answer's token
                // was never stored.
                (random_token(64), s.access_ttl)
            } else {
                let out = self
                    .families
                    .refresh(token, now, Some(s.refresh_ttl), self.policy())
                    .map_err(|e| self.note_refresh_error(token, e))?;
                lock(&self.sessions)
                    .rotated_at
                    .insert(token.to_owned(), now);
                (
                    out.new_refresh.ok_or(DirectusError::InvalidCredentials)?,
                    s.access_ttl,
                )
            }
        };
        let claims = Self::access_claims(&user, session_mode.then_some(new_token.as_str()));
        let access_token = wire::sign(self.keys.secret(), claims, now, lifetime);
        self.families
            .register_access(family, signature(&access_token));
        self.set_profile(&user.user.id, |p| p.last_access = Some(now));
        Ok((
            Issued {
                access_token,
                refresh_token: new_token,
                expires: lifetime,
                family,
            },
            user,
        ))
    }

    /// `AuthenticationService.logout`: deletes the session row holding `token`, if any.
    fn logout(&self, token: &str, now: SystemTime) {
        let Some(family) = self.families.family_of_refresh(token) else {
            return;
        };
        if self.families.live_refresh(family).as_deref() == Some(token) {
            self.families.revoke_family(family);
        } else if self.session_live(token, now) {
            // The retired row of a session refresh, still in its grace period: only it
            // goes; the successor session lives on.
            lock(&self.sessions).successors.remove(token);
        }
    }

    /// Kills every session of a user (`clearUserSessions`).
    pub(crate) fn clear_sessions(&self, user_id: &str) -> usize {
        self.families.revoke_subject(user_id)
    }

    // ----- request authentication -------------------------------------------------

    /// `extract-token`: `?access_token=`, then `Authorization: Bearer` (both at once is a
    /// 400), then the session cookie when neither is there.
    fn extract_token(req: &FakeRequest) -> Result<Option<(String, TokenSource)>> {
        let mut found = req
            .query_param("access_token")
            .filter(|t| !t.is_empty())
            .map(|t| (t, TokenSource::Query));
        if let Some(value) = req.header("authorization") {
            let parts: Vec<&str> = value.split(' ').collect();
            if parts.len() == 2 && parts[0].eq_ignore_ascii_case("bearer") {
                if found.is_some() {
                    return Err(DirectusError::payload(
                        "The request uses more than one method for including an access token",
                    ));
                }
                found = Some((parts[1].to_owned(), TokenSource::Header));
            }
        }
        if found.is_none()
            && let Some(cookie) = req.cookie(SESSION_COOKIE).filter(|c| !c.is_empty())
        {
            found = Some((cookie, TokenSource::Cookie));
        }
        Ok(found)
    }

    /// `getAccountabilityForToken`.
    fn accountability(&self, token: &str, now: SystemTime) -> Result<Accountability> {
        if wire::is_directus_jwt(token) {
            let claims = self.verify_access(token, now)?;
            let user = claims.get("id").and_then(Value::as_str).map(str::to_owned);
            if let Some(session) = claims.get("session") {
                let session = session.as_str().unwrap_or_default();
                let owner = self
                    .families
                    .family_of_refresh(session)
                    .and_then(|f| self.families.info(f))
                    .map(|f| f.subject);
                if !self.session_live(session, now) || owner != user {
                    return Err(DirectusError::InvalidCredentials);
                }
            }
            // Not Directus: with reuse detection on, a revoked family's access tokens die.
            if let Some(family) = self.families.family_of_access(signature(token))
                && lock(&self.sessions).reuse_revoked.contains(&family)
            {
                return Err(DirectusError::InvalidCredentials);
            }
            Ok(Accountability { user })
        } else {
            // A static token (`directus_users.token`) of an active user.
            let user = self
                .users
                .all()
                .into_iter()
                .find(|u| {
                    lock(&self.profiles).get(&u.id).is_some_and(|p| {
                        p.static_token.as_deref() == Some(token) && p.status == "active"
                    })
                })
                .ok_or(DirectusError::InvalidCredentials)?;
            Ok(Accountability {
                user: Some(user.id),
            })
        }
    }

    /// `verifyAccessJWT`: the JWT checks, then `role`, `app_access` and `admin_access`
    /// must be present.
    fn verify_access(&self, token: &str, now: SystemTime) -> Result<Map<String, Value>> {
        let claims = wire::verify(self.keys.secret(), token, now)?;
        if ["role", "app_access", "admin_access"]
            .iter()
            .any(|k| !claims.contains_key(*k))
        {
            return Err(DirectusError::InvalidToken);
        }
        Ok(claims)
    }
}

/// The last segment of a JWT: unique per token, used to register access tokens with
/// their family (Directus access tokens carry no `jti`).
fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

/// Headers and cookies an answer accumulates before it is rendered.
#[derive(Debug, Default)]
struct Outgoing {
    cookies: Vec<String>,
}

impl Handler for DirectusState {
    fn endpoints(&self) -> &[&'static str] {
        endpoints::ALL
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        let mut out = Outgoing::default();
        let resp = match self.route(endpoint, req, cx, &mut out) {
            Ok(resp) => resp,
            Err(e) => e.response(),
        };
        let mut resp = resp.with_header("x-powered-by", "Directus");
        for cookie in out.cookies {
            resp = resp.with_header("set-cookie", &cookie);
        }
        resp
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        wire::status_envelope(status, message).with_header("x-powered-by", "Directus")
    }

    fn not_found(&self, req: &FakeRequest) -> FakeResponse {
        DirectusError::RouteNotFound(req.path().to_owned())
            .response()
            .with_header("x-powered-by", "Directus")
    }

    /// `rate-limiter-ip.ts`: `Retry-After: round(msBeforeNext / 1000)` and
    /// `HitRateLimitError {limit, reset}`, "Too many requests, retry after <ms(..)>.".
    fn rate_limited(
        &self,
        retry_after: Duration,
        limit: RateLimit,
        cx: &Context<'_>,
    ) -> FakeResponse {
        let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        let reset = iso8601_millis(cx.now() + retry_after);
        wire::rate_limit_envelope(millis, limit.max_requests, &reset)
            .with_header("x-powered-by", "Directus")
            .with_header("retry-after", &((millis + 500) / 1000).to_string())
    }
}

/// A JSON answer as Directus's `respond` middleware sends it.
fn data(value: Value) -> FakeResponse {
    FakeResponse::json(StatusCode::OK, &json!({ "data": value }))
        .with_header("cache-control", "no-cache")
        .with_header("vary", "Origin, Cache-Control")
}

fn no_content() -> FakeResponse {
    FakeResponse::no_content()
        .with_header("cache-control", "no-cache")
        .with_header("vary", "Origin, Cache-Control")
}

/// `express.json()`: only an `application/json` body is parsed; anything else is `{}`.
fn parse_body(req: &FakeRequest) -> Result<Value> {
    let is_json = req
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !is_json || req.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let first = req
        .body()
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if !matches!(first, Some(b'{' | b'[')) {
        // body-parser's strict mode refuses anything but objects and arrays.
        return Err(DirectusError::payload(
            "Unexpected token in JSON at position 0",
        ));
    }
    serde_json::from_slice(req.body()).map_err(|e| {
        // Node's JSON.parse wording for the common case; other syntax errors differ.
        if e.is_eof() {
            DirectusError::payload("Unexpected end of JSON input")
        } else {
            DirectusError::payload(format!(
                "Unexpected token in JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        }
    })
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// The JS truthiness of a JSON value (`req.body.x ? ... : ...`).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Joi's `string().email()` (with its TLD check loosened to "alphabetic, 2+ letters").
fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((_, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.contains("..")
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && !s.chars().any(char::is_whitespace)
}

/// The local login schema (`email`, `password`, `mode`, `otp`; other keys allowed),
/// reporting the first failure with Joi's wording.
fn validate_login(body: &Value) -> Result<(String, String, Mode, Option<String>)> {
    let Some(obj) = body.as_object() else {
        return Err(DirectusError::payload("\"value\" must be of type object"));
    };
    let string = |key: &str, required: bool| -> Result<Option<String>> {
        match obj.get(key) {
            None => {
                if required {
                    Err(DirectusError::payload(format!("\"{key}\" is required")))
                } else {
                    Ok(None)
                }
            }
            Some(Value::String(s)) if s.is_empty() => Err(DirectusError::payload(format!(
                "\"{key}\" is not allowed to be empty"
            ))),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(DirectusError::payload(format!(
                "\"{key}\" must be a string"
            ))),
        }
    };
    let email = string("email", true)?.unwrap_or_default();
    if !looks_like_email(&email) {
        return Err(DirectusError::payload("\"email\" must be a valid email"));
    }
    let password = string("password", true)?.unwrap_or_default();
    let mode = match string("mode", false)? {
        None => Mode::Json,
        Some(m) => Mode::parse(&m).ok_or_else(|| {
            DirectusError::payload("\"mode\" must be one of [cookie, json, session]")
        })?,
    };
    let otp = string("otp", false)?;
    Ok((email, password, mode, otp))
}

impl DirectusState {
    fn route(
        &self,
        endpoint: &'static str,
        req: &FakeRequest,
        cx: &Context<'_>,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let now = cx.now();
        // The fake identity provider's pages are not Directus: no Directus middleware.
        if endpoint == endpoints::SSO_PROVIDER_AUTHORIZE {
            return self.sso_provider_authorize(req);
        }
        let body = parse_body(req)?;
        // The authenticate middleware runs before every router, /auth included: a stale
        // bearer fails the request before the route sees it.
        let acc = self.authenticate(req, now, out)?;
        match endpoint {
            endpoints::PING => Ok(FakeResponse::raw(
                StatusCode::OK,
                "text/html; charset=utf-8",
                "pong",
            )),
            endpoints::LOGIN => self.login(req, &body, now, out),
            endpoints::REFRESH => self.refresh_route(req, &body, cx, now, out),
            endpoints::LOGOUT => self.logout_route(req, &body, cx, now, out),
            endpoints::PASSWORD_REQUEST => self.password_request(&body, cx, now),
            endpoints::PASSWORD_RESET => self.password_reset(&body, now),
            endpoints::PROVIDERS => Ok(self.providers(req)),
            endpoints::LEGACY_OAUTH => self.legacy_oauth(req),
            endpoints::SSO_START => self.sso_start(req, cx, now, out),
            endpoints::SSO_CALLBACK => self.sso_callback(req, cx, now, out),
            endpoints::ME => self.me(req, &acc),
            endpoints::TFA_GENERATE => self.tfa_generate(&body, &acc),
            endpoints::TFA_ENABLE => self.tfa_enable(&body, &acc, now),
            endpoints::TFA_DISABLE => self.tfa_disable(&body, &acc, now),
            endpoints::ITEMS => self.items_route(req, &acc),
            _ => Err(DirectusError::RouteNotFound(req.path().to_owned())),
        }
    }

    fn authenticate(
        &self,
        req: &FakeRequest,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<Accountability> {
        let Some((token, source)) = Self::extract_token(req)? else {
            return Ok(Accountability::default());
        };
        match self.accountability(&token, now) {
            Ok(acc) => Ok(acc),
            Err(e) => {
                // Directus clears a session cookie that failed, so the browser can sign
                // in again (Express 4 keeps the cookie's Max-Age on a cleared cookie).
                if source == TokenSource::Cookie
                    && matches!(
                        e,
                        DirectusError::InvalidCredentials | DirectusError::InvalidToken
                    )
                {
                    self.clear_cookie(SESSION_COOKIE, out, now);
                }
                Err(e)
            }
        }
    }

    fn set_refresh_cookie(&self, token: &str, out: &mut Outgoing, now: SystemTime) {
        let ttl = self.settings().refresh_ttl;
        let c = wire::set_cookie(REFRESH_COOKIE, token, Some(ttl), &self.cookie_attrs(), now);
        out.cookies.push(c);
    }

    fn set_session_cookie(&self, jwt: &str, out: &mut Outgoing, now: SystemTime) {
        let ttl = self.settings().session_ttl;
        let c = wire::set_cookie(SESSION_COOKIE, jwt, Some(ttl), &self.cookie_attrs(), now);
        out.cookies.push(c);
    }

    /// `res.clearCookie(name, COOKIE_OPTIONS)` in Express 4.22: the options' `maxAge`
    /// wins over the `expires: new Date(1)` it merges in, so the "cleared" cookie is an
    /// empty value that lives for the cookie's usual Max-Age.
    fn clear_cookie(&self, name: &str, out: &mut Outgoing, now: SystemTime) {
        let s = self.settings();
        let ttl = if name == SESSION_COOKIE {
            s.session_ttl
        } else {
            s.refresh_ttl
        };
        out.cookies.push(wire::set_cookie(
            name,
            "",
            Some(ttl),
            &self.cookie_attrs(),
            now,
        ));
    }

    // ----- /auth ----------------------------------------------------------------

    fn login(
        &self,
        req: &FakeRequest,
        body: &Value,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let (email, password, mode, otp) = validate_login(body)?;
        let user = self
            .user_by_email(&email)
            .ok_or(DirectusError::InvalidCredentials)?;
        // Directus 12.4 refuses any inactive user (suspended included) with
        // INVALID_CREDENTIALS at login; USER_SUSPENDED only comes from /auth/refresh.
        if user.status != "active" || user.provider != "default" {
            return Err(DirectusError::InvalidCredentials);
        }
        if user.user.password != password {
            return Err(DirectusError::InvalidCredentials);
        }
        if let Some(secret) = &user.tfa_secret {
            match &otp {
                None => return Err(DirectusError::InvalidOtp),
                Some(code) if !wire::totp_check(secret, code, now) => {
                    return Err(DirectusError::InvalidOtp);
                }
                Some(_) => {}
            }
        }
        let ip = req.peer().ip().to_string();
        let issued = self.sign_in(&user, mode, now, req.user_agent(), Some(&ip));
        Ok(self.token_answer(&issued, mode, now, out))
    }

    /// `{data:{expires, refresh_token?, access_token?}}` plus the mode's cookie.
    fn token_answer(
        &self,
        issued: &Issued,
        mode: Mode,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> FakeResponse {
        let expires = u64::try_from(issued.expires.as_millis()).unwrap_or(u64::MAX);
        let mut payload = Map::new();
        payload.insert("expires".into(), Value::from(expires));
        match mode {
            Mode::Json => {
                payload.insert(
                    "refresh_token".into(),
                    Value::from(issued.refresh_token.as_str()),
                );
                payload.insert(
                    "access_token".into(),
                    Value::from(issued.access_token.as_str()),
                );
            }
            Mode::Cookie => {
                self.set_refresh_cookie(&issued.refresh_token, out, now);
                payload.insert(
                    "access_token".into(),
                    Value::from(issued.access_token.as_str()),
                );
            }
            Mode::Session => self.set_session_cookie(&issued.access_token, out, now),
        }
        data(Value::Object(payload))
    }

    /// `getCurrentMode`: `body.mode`, else `json` when the body has a `refresh_token`,
    /// else `cookie`. An unknown mode names no token (so the route answers 400).
    fn current_mode(body: &Value) -> Option<Mode> {
        if truthy(body.get("mode")) {
            return body
                .get("mode")
                .and_then(Value::as_str)
                .and_then(Mode::parse);
        }
        if truthy(body.get("refresh_token")) {
            return Some(Mode::Json);
        }
        Some(Mode::Cookie)
    }

    /// `getCurrentRefreshToken`.
    fn current_refresh_token(
        &self,
        req: &FakeRequest,
        body: &Value,
        mode: Option<Mode>,
        now: SystemTime,
    ) -> Result<Option<String>> {
        Ok(match mode {
            Some(Mode::Json) => str_field(body, "refresh_token")
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            Some(Mode::Cookie) => req.cookie(REFRESH_COOKIE).filter(|c| !c.is_empty()),
            Some(Mode::Session) => match req.cookie(SESSION_COOKIE) {
                Some(jwt) if wire::is_directus_jwt(&jwt) => self
                    .verify_access(&jwt, now)?
                    .get("session")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            },
            None => None,
        })
    }

    fn refresh_route(
        &self,
        req: &FakeRequest,
        body: &Value,
        cx: &Context<'_>,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let mode = Self::current_mode(body);
        let token = self
            .current_refresh_token(req, body, mode, now)?
            .ok_or_else(|| {
                DirectusError::payload(
                    "The refresh token is required in either the payload or cookie",
                )
            })?;
        // Record what the client presented: in session mode that is the session
        // cookie (a JWT), not the session id the server reads out of it.
        let presented = match mode {
            Some(Mode::Session) => req.cookie(SESSION_COOKIE).unwrap_or_else(|| token.clone()),
            _ => token.clone(),
        };
        cx.recorder().record_refresh_token(&presented);
        let mode = mode.unwrap_or(Mode::Cookie);
        let (issued, _user) = self.refresh(&token, mode == Mode::Session, now)?;
        Ok(self.token_answer(&issued, mode, now, out))
    }

    fn logout_route(
        &self,
        req: &FakeRequest,
        body: &Value,
        cx: &Context<'_>,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let mode = Self::current_mode(body);
        let token = self
            .current_refresh_token(req, body, mode, now)?
            .ok_or_else(|| {
                DirectusError::payload(
                    "The refresh token is required in either the payload or cookie",
                )
            })?;
        cx.recorder().record_refresh_token(&token);
        self.logout(&token, now);
        if req.cookie(REFRESH_COOKIE).is_some_and(|c| !c.is_empty()) {
            self.clear_cookie(REFRESH_COOKIE, out, now);
        }
        if req.cookie(SESSION_COOKIE).is_some_and(|c| !c.is_empty()) {
            self.clear_cookie(SESSION_COOKIE, out, now);
        }
        Ok(no_content())
    }

    fn public_url(&self, cx: &Context<'_>) -> Url {
        self.settings()
            .public_url
            .unwrap_or_else(|| cx.base_url().clone())
    }

    fn password_request(
        &self,
        body: &Value,
        cx: &Context<'_>,
        now: SystemTime,
    ) -> Result<FakeResponse> {
        let Some(email) = str_field(body, "email") else {
            return Err(DirectusError::payload("\"email\" field is required"));
        };
        let s = self.settings();
        let reset_url = body.get("reset_url").filter(|v| truthy(Some(v))).map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        });
        if let Some(url) = &reset_url
            && !url_allowed(url, &s.password_reset_allow_list)
        {
            return Err(DirectusError::payload(format!(
                "URL \"{url}\" can't be used to reset passwords"
            )));
        }
        // Unknown, inactive or SSO users: Directus throws FORBIDDEN inside and the
        // controller answers 204 anyway, so nobody learns which addresses exist.
        let Some(user) = self.user_by_email(email) else {
            return Ok(no_content());
        };
        if user.status != "active" || user.provider != "default" {
            return Ok(no_content());
        }
        let mut claims = Map::new();
        claims.insert("email".into(), Value::from(user.user.email.as_str()));
        claims.insert("scope".into(), Value::from("password-reset"));
        claims.insert("hash".into(), Value::from(self.password_hash(&user)));
        let token = wire::sign(self.keys.secret(), claims, now, Duration::from_secs(86_400));
        let base = match &reset_url {
            Some(u) => Url::parse(u).map_err(|_| {
                DirectusError::payload(format!("URL \"{u}\" can't be used to reset passwords"))
            })?,
            None => {
                let mut u = self.public_url(cx);
                u.path_segments_mut()
                    .map_err(|()| DirectusError::payload("PUBLIC_URL is not a base URL"))?
                    .pop_if_empty()
                    .extend(["admin", "reset-password"]);
                u
            }
        };
        let mut link = base.clone();
        let kept: Vec<(String, String)> = base
            .query_pairs()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        link.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("token", &token);
        lock(&self.mails).push(Mail {
            to: user.user.email.clone(),
            subject: "Password Reset Request".to_owned(),
            url: link.to_string(),
            token,
            at: now,
        });
        Ok(no_content())
    }

    fn password_reset(&self, body: &Value, now: SystemTime) -> Result<FakeResponse> {
        let Some(token) = str_field(body, "token") else {
            return Err(DirectusError::payload("\"token\" field is required"));
        };
        let Some(password) = str_field(body, "password") else {
            return Err(DirectusError::payload("\"password\" field is required"));
        };
        let claims = wire::verify(self.keys.secret(), token, now)?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let hash = claims
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if claims.get("scope").and_then(Value::as_str) != Some("password-reset") || hash.is_empty()
        {
            return Err(DirectusError::Forbidden(None));
        }
        let user = self
            .user_by_email(email)
            .filter(|u| u.status == "active" && self.password_hash(u) == hash)
            .ok_or(DirectusError::Forbidden(None))?;
        let id = user.user.id.clone();
        let password = password.to_owned();
        self.users.update(&id, |u| u.password = password);
        *lock(&self.password_versions).entry(id.clone()).or_default() += 1;
        self.set_profile(&id, |p| "active".clone_into(&mut p.status));
        // Changing the password clears every session of the user.
        self.clear_sessions(&id);
        Ok(no_content())
    }

    /// `GET /auth`: the configured providers, `{data:[{name, label?, driver, icon?}],
    /// disableDefault:false}` (`?sessionOnly` keeps SSO providers in session mode).
    fn providers(&self, req: &FakeRequest) -> FakeResponse {
        let session_only = req.query_pairs().iter().any(|(k, _)| k == "sessionOnly");
        let settings = self.settings();
        let list: Vec<Value> = settings
            .providers
            .iter()
            .filter(|_| settings.sso_licensed)
            .filter(|p| !session_only || p.mode == ProviderMode::Session)
            .map(|p| {
                let mut o = Map::new();
                o.insert("name".into(), Value::from(p.name.as_str()));
                if let Some(label) = &p.label {
                    o.insert("label".into(), Value::from(label.as_str()));
                }
                o.insert("driver".into(), Value::from(p.driver.as_str()));
                if let Some(icon) = &p.icon {
                    o.insert("icon".into(), Value::from(icon.as_str()));
                }
                Value::Object(o)
            })
            .collect();
        FakeResponse::json(
            StatusCode::OK,
            &json!({ "data": list, "disableDefault": false }),
        )
        .with_header("cache-control", "no-cache")
        .with_header("vary", "Origin, Cache-Control")
    }

    /// `GET /auth/oauth`: Directus 9's provider list, `{data:["github", ...]}` (`null`
    /// when none), served only while `legacy_oauth_route` is on.
    fn legacy_oauth(&self, req: &FakeRequest) -> Result<FakeResponse> {
        let s = self.settings();
        if !s.legacy_oauth_route {
            return Err(DirectusError::RouteNotFound(req.path().to_owned()));
        }
        let names: Vec<Value> = s
            .providers
            .iter()
            .map(|p| Value::from(p.name.as_str()))
            .collect();
        Ok(data(if names.is_empty() {
            Value::Null
        } else {
            Value::Array(names)
        }))
    }

    fn provider(&self, req: &FakeRequest) -> Result<AuthProvider> {
        let name = req.param("provider").unwrap_or_default();
        let settings = self.settings();
        let provider = settings
            .providers
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DirectusError::RouteNotFound(req.path().to_owned()))?;
        if !settings.sso_licensed {
            // `checkSsoEnabled` runs inside the provider's router, so the path it reports
            // is relative to `/auth/login/<provider>`.
            let prefix = format!("/auth/login/{name}");
            let rest = req.path().strip_prefix(&prefix).unwrap_or_default();
            let rest = if rest.is_empty() { "/" } else { rest };
            return Err(DirectusError::RouteNotFound(rest.to_owned()));
        }
        Ok(provider)
    }

    /// `GET /auth/login/:provider?redirect=`: checks the redirect, keeps the flow state in
    /// an `oauth2.<provider>` cookie and sends the browser to the provider.
    fn sso_start(
        &self,
        req: &FakeRequest,
        cx: &Context<'_>,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let provider = self.provider(req)?;
        let public = self.public_url(cx);
        let raw = req.query_param("redirect");
        let redirect =
            resolve_login_redirect(raw.as_deref(), &provider, &public).ok_or_else(|| {
                DirectusError::payload(format!(
                    "URL \"{}\" can't be used to redirect after login",
                    raw.unwrap_or_default()
                ))
            })?;
        let callback = format!("{}auth/login/{}/callback", cx.base_url(), provider.name);
        let verifier = random_token(43);
        let mut claims = Map::new();
        claims.insert("verifier".into(), Value::from(verifier.as_str()));
        claims.insert("redirect".into(), Value::from(redirect));
        claims.insert(
            "prompt".into(),
            Value::from(req.query_param("prompt").is_some_and(|p| !p.is_empty())),
        );
        if let Some(otp) = req.query_param("otp") {
            claims.insert("otp".into(), Value::from(otp));
        }
        claims.insert("callbackUrl".into(), Value::from(callback.as_str()));
        let state = wire::sign(self.keys.secret(), claims, now, Duration::from_secs(300));
        let attrs = CookieAttrs {
            domain: None,
            secure: false,
            same_site: super::SameSite::Lax,
        };
        let name = format!("oauth2.{}", provider.name);
        out.cookies
            .push(wire::set_cookie(&name, &state, None, &attrs, now));
        let mut authorize = match &provider.authorize_url {
            Some(u) => u.clone(),
            None => Url::parse(&format!(
                "{}fake-sso/{}/authorize",
                cx.base_url(),
                provider.name
            ))
            .map_err(|e| DirectusError::payload(e.to_string()))?,
        };
        authorize
            .query_pairs_mut()
            .append_pair("client_id", "authmux-fake")
            .append_pair("scope", "email")
            .append_pair("access_type", "offline")
            .append_pair("code_challenge", &verifier)
            .append_pair("code_challenge_method", "plain")
            .append_pair("state", &verifier)
            .append_pair("redirect_uri", &callback)
            .append_pair("response_type", "code");
        Ok(FakeResponse::redirect(authorize.as_str()))
    }

    /// The fake identity provider: signs in as the provider's user at once and sends the
    /// browser back to `redirect_uri?code=..&state=..`.
    fn sso_provider_authorize(&self, req: &FakeRequest) -> Result<FakeResponse> {
        let name = req.param("provider").unwrap_or_default();
        let provider = self
            .settings()
            .providers
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DirectusError::RouteNotFound(req.path().to_owned()))?;
        let redirect_uri = req
            .query_param("redirect_uri")
            .ok_or_else(|| DirectusError::payload("\"redirect_uri\" is required"))?;
        let mut back =
            Url::parse(&redirect_uri).map_err(|e| DirectusError::payload(e.to_string()))?;
        let code = random_token(24);
        lock(&self.sso_codes).insert(code.clone(), provider.user_email.clone());
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &req.query_param("state").unwrap_or_default());
        Ok(FakeResponse::redirect(back.as_str()))
    }

    /// `GET /auth/login/:provider/callback?code=&state=`: signs the provider's user in
    /// (mode from the provider, `session` by default) and redirects to the remembered
    /// URL with the mode's cookie.
    fn sso_callback(
        &self,
        req: &FakeRequest,
        _cx: &Context<'_>,
        now: SystemTime,
        out: &mut Outgoing,
    ) -> Result<FakeResponse> {
        let provider = self.provider(req)?;
        let cookie_name = format!("oauth2.{}", provider.name);
        let state = req
            .cookie(&cookie_name)
            .and_then(|c| wire::verify(self.keys.secret(), &c, now).ok())
            .ok_or(DirectusError::InvalidCredentials)?;
        let redirect = state
            .get("redirect")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_owned();
        // res.clearCookie(`oauth2.<provider>`) without options: a real expiry.
        out.cookies.push(format!(
            "{cookie_name}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ));
        let fail = |e: DirectusError| {
            let base = redirect.split('?').next().unwrap_or("/");
            FakeResponse::redirect(&format!("{base}?reason={}", e.code()))
        };
        let code = req.query_param("code").unwrap_or_default();
        let email = lock(&self.sso_codes).remove(&code);
        let Some(user) = email.and_then(|e| self.user_by_email(&e)) else {
            return Ok(fail(DirectusError::InvalidCredentials));
        };
        if user.status != "active" {
            return Ok(fail(DirectusError::InvalidCredentials));
        }
        let mode = Mode::from(provider.mode);
        let ip = req.peer().ip().to_string();
        let issued = self.sign_in(&user, mode, now, req.user_agent(), Some(&ip));
        if mode == Mode::Session {
            self.set_session_cookie(&issued.access_token, out, now);
        } else {
            self.set_refresh_cookie(&issued.refresh_token, out, now);
        }
        Ok(FakeResponse::redirect(&redirect))
    }

    // ----- /users/me ------------------------------------------------------------

    fn current_user(&self, acc: &Accountability) -> Result<DirectusUser> {
        acc.user
            .as_deref()
            .and_then(|id| self.user_by_id(id))
            .ok_or(DirectusError::InvalidCredentials)
    }

    /// `GET /users/me?fields=`: the user's row, projected. A field that does not exist
    /// makes Directus's read forbidden, which `/users/me` answers with `{data:{id}}`.
    fn me(&self, req: &FakeRequest, acc: &Accountability) -> Result<FakeResponse> {
        let user = self.current_user(acc)?;
        if user.role.is_none() && !user.admin_access {
            // No role, no policy: reading the user's own row is forbidden, which
            // `/users/me` turns into `{data:{id}}`.
            return Ok(data(json!({ "id": user.user.id })));
        }
        let row = user.row();
        let fields = requested_fields(req);
        if fields.is_empty() || fields.iter().any(|f| f == "*") {
            return Ok(data(Value::Object(row)));
        }
        let mut projected = Map::new();
        for f in &fields {
            let (head, rest) = match f.split_once('.') {
                Some((h, r)) => (h, Some(r)),
                None => (f.as_str(), None),
            };
            let Some(value) = row.get(head) else {
                return Ok(data(json!({ "id": user.user.id })));
            };
            match (head, rest) {
                ("role", Some(sub)) => {
                    let role = user.role_object();
                    let entry = projected
                        .entry("role")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let (Some(obj), Some(role)) = (entry.as_object_mut(), role.as_object()) {
                        if sub == "*" {
                            obj.extend(role.clone());
                        } else if let Some(v) = role.get(sub) {
                            obj.insert(sub.to_owned(), v.clone());
                        } else {
                            return Ok(data(json!({ "id": user.user.id })));
                        }
                    }
                }
                _ => {
                    projected.insert(head.to_owned(), value.clone());
                }
            }
        }
        Ok(data(Value::Object(projected)))
    }

    fn tfa_generate(&self, body: &Value, acc: &Accountability) -> Result<FakeResponse> {
        let user = self.current_user(acc)?;
        if !truthy(body.get("password")) {
            return Err(DirectusError::payload("\"password\" is required"));
        }
        if body.get("password").and_then(Value::as_str) != Some(user.user.password.as_str()) {
            return Err(DirectusError::InvalidCredentials);
        }
        if user.tfa_secret.is_some() {
            return Err(DirectusError::payload(
                "TFA Secret is already set for this user",
            ));
        }
        let secret = wire::new_totp_secret();
        let project = self.settings().project_name;
        let url = wire::otpauth_url(&user.user.email, &project, &secret);
        Ok(data(json!({ "secret": secret, "otpauth_url": url })))
    }

    fn tfa_enable(
        &self,
        body: &Value,
        acc: &Accountability,
        now: SystemTime,
    ) -> Result<FakeResponse> {
        let user = self.current_user(acc)?;
        if !truthy(body.get("secret")) {
            return Err(DirectusError::payload("\"secret\" is required"));
        }
        if !truthy(body.get("otp")) {
            return Err(DirectusError::payload("\"otp\" is required"));
        }
        if user.tfa_secret.is_some() {
            return Err(DirectusError::payload(
                "TFA Secret is already set for this user",
            ));
        }
        let secret = str_field(body, "secret").unwrap_or_default().to_owned();
        let otp = str_field(body, "otp").unwrap_or_default();
        if !wire::totp_check(&secret, otp, now) {
            return Err(DirectusError::payload("\"otp\" is invalid"));
        }
        self.set_profile(&user.user.id, |p| p.tfa_secret = Some(secret));
        Ok(no_content())
    }

    fn tfa_disable(
        &self,
        body: &Value,
        acc: &Accountability,
        now: SystemTime,
    ) -> Result<FakeResponse> {
        let user = self.current_user(acc)?;
        if !truthy(body.get("otp")) {
            return Err(DirectusError::payload("\"otp\" is required"));
        }
        let Some(secret) = &user.tfa_secret else {
            return Err(DirectusError::payload(format!(
                "User \"{}\" doesn't have TFA enabled",
                user.user.id
            )));
        };
        let otp = str_field(body, "otp").unwrap_or_default();
        if !wire::totp_check(secret, otp, now) {
            return Err(DirectusError::payload("\"otp\" is invalid"));
        }
        self.set_profile(&user.user.id, |p| p.tfa_secret = None);
        Ok(no_content())
    }

    // ----- /items ---------------------------------------------------------------

    /// `GET /items/:collection`: readable by users with app access; the public role
    /// (no token) and users without app access may read nothing.
    fn items_route(&self, req: &FakeRequest, acc: &Accountability) -> Result<FakeResponse> {
        let collection = req.param("collection").unwrap_or_default().to_owned();
        let forbidden = || {
            DirectusError::Forbidden(Some(format!(
                "You don't have permission to access collection \"{collection}\" or it does not exist. Queried in root."
            )))
        };
        let user = acc.user.as_deref().and_then(|id| self.user_by_id(id));
        if !user.is_some_and(|u| u.app_access || u.admin_access) {
            return Err(forbidden());
        }
        let items = lock(&self.items)
            .get(&collection)
            .cloned()
            .ok_or_else(forbidden)?;
        Ok(data(Value::Array(items)))
    }
}

/// The `fields` query as `sanitizeQuery` reads it: `fields=a,b`, `fields[]=a&fields[]=b`,
/// repeated `fields=` or `fields[0]=`; each value split on commas.
fn requested_fields(req: &FakeRequest) -> Vec<String> {
    req.query_pairs()
        .into_iter()
        .filter(|(k, _)| {
            k == "fields"
                || (k.starts_with("fields[")
                    && k.ends_with(']')
                    && k["fields[".len()..k.len() - 1]
                        .chars()
                        .all(|c| c.is_ascii_digit()))
        })
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `isUrlAllowed`: an exact match, or the same origin and path as an entry.
fn url_allowed(url: &str, allow_list: &[String]) -> bool {
    if allow_list.iter().any(|a| a == url) {
        return true;
    }
    let key = |u: &str| {
        Url::parse(u)
            .ok()
            .map(|u| format!("{}{}", u.origin().ascii_serialization(), u.path()))
    };
    let Some(wanted) = key(url) else {
        return false;
    };
    allow_list
        .iter()
        .filter_map(|a| key(a))
        .any(|a| a == wanted)
}

/// `resolveLoginRedirect`: no redirect is `/`; a relative one stays relative; an
/// absolute http(s) one must be on the provider's allow list or on PUBLIC_URL's host.
fn resolve_login_redirect(
    redirect: Option<&str>,
    provider: &AuthProvider,
    public: &Url,
) -> Option<String> {
    let Some(redirect) = redirect.filter(|r| !r.is_empty()) else {
        return Some("/".to_owned());
    };
    let Ok(absolute) = Url::parse(redirect) else {
        let dummy = Url::parse("http://dummy.local").ok()?;
        let joined = dummy.join(redirect).ok()?;
        if joined.host_str() != Some("dummy.local") || joined.scheme() != "http" {
            return None;
        }
        return Some(joined.as_str().replacen("http://dummy.local", "", 1));
    };
    if !matches!(absolute.scheme(), "http" | "https") {
        return None;
    }
    let mut allow = provider.redirect_allow_list.clone();
    if !allow.is_empty() {
        allow.push(public.to_string());
        if url_allowed(redirect, &allow) {
            return Some(absolute.to_string());
        }
    }
    (absolute.scheme() == public.scheme()
        && absolute.host_str() == public.host_str()
        && absolute.port_or_known_default() == public.port_or_known_default())
    .then(|| absolute.to_string())
}
