//! Directus wire details: the error envelope, `Set-Cookie` rendering, JWT claims and
//! RFC 6238 codes, each as Directus 12.4 produces them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

use super::SameSite;
use crate::jwt::unix_secs;
use crate::server::FakeResponse;

/// A Directus error: what `@directus/errors` defines, with the same status, code and
/// message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirectusError {
    /// 401 `INVALID_CREDENTIALS` "Invalid user credentials."
    InvalidCredentials,
    /// 401 `INVALID_OTP` "Invalid user OTP."
    InvalidOtp,
    /// 401 `TOKEN_EXPIRED` "Token expired."
    TokenExpired,
    /// 403 `INVALID_TOKEN` "Invalid token."
    InvalidToken,
    /// 401 `USER_SUSPENDED` "User suspended."
    UserSuspended,
    /// 400 `INVALID_PAYLOAD` "Invalid payload. {reason}."
    InvalidPayload(String),
    /// 403 `FORBIDDEN`, with an optional reason replacing the default message.
    Forbidden(Option<String>),
    /// 404 `ROUTE_NOT_FOUND` "Route {path} doesn't exist."
    RouteNotFound(String),
}

impl DirectusError {
    pub(crate) fn payload(reason: impl Into<String>) -> Self {
        Self::InvalidPayload(reason.into())
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::InvalidCredentials
            | Self::InvalidOtp
            | Self::TokenExpired
            | Self::UserSuspended => StatusCode::UNAUTHORIZED,
            Self::InvalidToken | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::InvalidPayload(_) => StatusCode::BAD_REQUEST,
            Self::RouteNotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::InvalidOtp => "INVALID_OTP",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::UserSuspended => "USER_SUSPENDED",
            Self::InvalidPayload(_) => "INVALID_PAYLOAD",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::RouteNotFound(_) => "ROUTE_NOT_FOUND",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::InvalidCredentials => "Invalid user credentials.".to_owned(),
            Self::InvalidOtp => "Invalid user OTP.".to_owned(),
            Self::TokenExpired => "Token expired.".to_owned(),
            Self::InvalidToken => "Invalid token.".to_owned(),
            Self::UserSuspended => "User suspended.".to_owned(),
            Self::InvalidPayload(reason) => format!("Invalid payload. {reason}."),
            Self::Forbidden(Some(reason)) => reason.clone(),
            Self::Forbidden(None) => "You don't have permission to access this.".to_owned(),
            Self::RouteNotFound(path) => format!("Route {path} doesn't exist."),
        }
    }

    /// The extensions besides `code` (Directus spreads the error's own extensions first).
    fn extensions(&self) -> Map<String, Value> {
        let mut ext = Map::new();
        match self {
            Self::InvalidPayload(reason) | Self::Forbidden(Some(reason)) => {
                ext.insert("reason".into(), Value::from(reason.as_str()));
            }
            Self::RouteNotFound(path) => {
                ext.insert("path".into(), Value::from(path.as_str()));
            }
            _ => {}
        }
        ext
    }

    /// `{"errors":[{"message", "extensions":{..., "code"}}]}` with the error's status.
    pub(crate) fn response(&self) -> FakeResponse {
        let mut ext = self.extensions();
        ext.insert("code".into(), Value::from(self.code()));
        envelope(self.status(), &self.message(), ext)
    }
}

/// The error envelope for any status, e.g. for injected faults: the code is the one
/// Directus uses for that status.
pub(crate) fn status_envelope(status: StatusCode, message: &str) -> FakeResponse {
    let code = match status.as_u16() {
        400 => "INVALID_PAYLOAD",
        401 => "INVALID_CREDENTIALS",
        403 => "FORBIDDEN",
        404 => "ROUTE_NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        413 => "CONTENT_TOO_LARGE",
        429 => "REQUESTS_EXCEEDED",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    };
    let message = if status.is_server_error() && status.as_u16() != 503 {
        "An unexpected error occurred.".to_owned()
    } else {
        message.to_owned()
    };
    let mut ext = Map::new();
    ext.insert("code".into(), Value::from(code));
    envelope(status, &message, ext)
}

/// `HitRateLimitError`: 429 `REQUESTS_EXCEEDED` with `limit` and `reset` (ISO time)
/// in the extensions and the wait, as the `ms` package prints it, in the message.
pub(crate) fn rate_limit_envelope(wait_ms: u64, limit: u32, reset: &str) -> FakeResponse {
    let mut ext = Map::new();
    ext.insert("limit".into(), Value::from(limit));
    ext.insert("reset".into(), Value::from(reset));
    ext.insert("code".into(), Value::from("REQUESTS_EXCEEDED"));
    let message = format!("Too many requests, retry after {}.", ms_short(wait_ms));
    envelope(StatusCode::TOO_MANY_REQUESTS, &message, ext)
}

/// The `ms` package's short format: `734ms`, `9s`, `2m`, `1h`, `3d` (rounded).
fn ms_short(ms: u64) -> String {
    let round = |unit: u64| (ms + unit / 2) / unit;
    match ms {
        m if m >= 86_400_000 => format!("{}d", round(86_400_000)),
        m if m >= 3_600_000 => format!("{}h", round(3_600_000)),
        m if m >= 60_000 => format!("{}m", round(60_000)),
        m if m >= 1_000 => format!("{}s", round(1_000)),
        m => format!("{m}ms"),
    }
}

fn envelope(status: StatusCode, message: &str, extensions: Map<String, Value>) -> FakeResponse {
    let body = json!({ "errors": [{ "message": message, "extensions": extensions }] });
    FakeResponse::json(status, &body)
}

/// Renders a `Set-Cookie` value the way Express 4 (`res.cookie`, cookie 0.7) does:
/// `name=value; Max-Age=<s>; Domain=<d>; Path=/; Expires=<http-date>; HttpOnly; Secure;
/// SameSite=<s>`. `max_age` `None` gives a session cookie (no Max-Age or Expires).
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<Duration>,
    attrs: &CookieAttrs,
    now: SystemTime,
) -> String {
    let mut out = format!("{name}={value}");
    if let Some(max_age) = max_age {
        let _ = write!(out, "; Max-Age={}", max_age.as_secs());
    }
    if let Some(domain) = &attrs.domain {
        let _ = write!(out, "; Domain={domain}");
    }
    out.push_str("; Path=/");
    if let Some(max_age) = max_age {
        let _ = write!(out, "; Expires={}", http_date(now + max_age));
    }
    out.push_str("; HttpOnly");
    if attrs.secure {
        out.push_str("; Secure");
    }
    out.push_str(match attrs.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    out
}

/// The cookie attributes Directus takes from its environment.
#[derive(Debug, Clone)]
pub(crate) struct CookieAttrs {
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
}

/// An IMF-fixdate, as `Date.prototype.toUTCString()` prints it:
/// `Thu, 01 Jan 1970 00:00:00 GMT`.
pub(crate) fn http_date(at: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_secs(at);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        day,
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        year,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days` for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Why a Directus JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtRefusal {
    /// `jsonwebtoken`'s `TokenExpiredError`: `now >= exp`.
    Expired,
    /// `JsonWebTokenError`: malformed, bad signature, wrong issuer.
    Invalid,
}

impl From<JwtRefusal> for DirectusError {
    fn from(r: JwtRefusal) -> Self {
        match r {
            JwtRefusal::Expired => Self::TokenExpired,
            JwtRefusal::Invalid => Self::InvalidToken,
        }
    }
}

/// Signs `claims` (an object without `iat`/`exp`/`iss`) as Directus does with
/// `jwt.sign(claims, SECRET, {expiresIn, issuer: "directus"})`: HS256, then `iat`, `exp`
/// and `iss` appended in that order.
pub(crate) fn sign(
    secret: &[u8],
    mut claims: Map<String, Value>,
    now: SystemTime,
    lifetime: Duration,
) -> String {
    let iat = unix_secs(now);
    claims.insert("iat".into(), Value::from(iat));
    claims.insert(
        "exp".into(),
        Value::from(iat.saturating_add(lifetime.as_secs())),
    );
    claims.insert("iss".into(), Value::from("directus"));
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of a JSON object cannot fail");
    crate::secret_log::record(&token);
    token
}

/// `verifyJWT(token, SECRET)`: signature, then `exp` against `now`, then `iss`.
pub(crate) fn verify(
    secret: &[u8],
    token: &str,
    now: SystemTime,
) -> Result<Map<String, Value>, JwtRefusal> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &DecodingKey::from_secret(secret),
        &validation,
    )
    .map_err(|_| JwtRefusal::Invalid)?;
    let claims = data.claims;
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64)
        && unix_secs(now) >= exp
    {
        return Err(JwtRefusal::Expired);
    }
    if claims.get("iss").and_then(Value::as_str) != Some("directus") {
        return Err(JwtRefusal::Invalid);
    }
    Ok(claims)
}

/// `isDirectusJWT`: the string decodes as a JWT whose (unverified) `iss` is `directus`.
pub(crate) fn is_directus_jwt(token: &str) -> bool {
    unverified_claims(token)
        .and_then(|c| {
            c.get("iss")
                .and_then(Value::as_str)
                .map(|i| i == "directus")
        })
        .unwrap_or(false)
}

/// A JWT's payload without any check (for the handle's inspection helpers).
pub(crate) fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&base64url_decode(payload)?).ok()
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The six-digit RFC 6238 code (SHA-1, 30 s step) of a base32 secret at `at`, as
/// otplib's `authenticator` computes it; `None` for a secret that is not base32.
pub(crate) fn totp_code(secret_base32: &str, at: SystemTime) -> Option<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32.to_ascii_uppercase()).ok()?;
    let totp = totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .with_skew(0)
        .build_noncompliant();
    crate::secret_log::record(secret_base32);
    let code = totp.generate(unix_secs(at)).to_string();
    crate::secret_log::record(&code);
    Some(code)
}

/// otplib's `authenticator.check` with its default window of 0: the code must be the
/// current step's, exactly.
pub(crate) fn totp_check(secret_base32: &str, code: &str, at: SystemTime) -> bool {
    totp_code(secret_base32, at).is_some_and(|c| c == code)
}

/// A fresh secret as `authenticator.generateSecret()` makes one: 10 random bytes in
/// base32 (16 characters, no padding).
pub(crate) fn new_totp_secret() -> String {
    let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(10)
        .collect();
    totp_rs::Secret::from(bytes).to_base32()
}

/// otplib's `keyuri`: `otpauth://totp/<issuer>:<account>?secret=..&period=30&digits=6&algorithm=SHA1&issuer=<issuer>`.
pub(crate) fn otpauth_url(account: &str, issuer: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // encodeURIComponent leaves fewer characters alone than form encoding, but the
    // only ones that matter here (`@`, space) encode the same apart from space.
    let component = |s: &str| enc(s).replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={secret}&period=30&digits=6&algorithm=SHA1&issuer={}",
        component(issuer),
        component(account),
        component(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn http_dates_match_javascript() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn totp_matches_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", truncated to 6 digits.
        let secret = totp_rs::Secret::from(b"12345678901234567890".to_vec()).to_base32();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(totp_code(&secret, at(59)).unwrap(), "287082");
        assert_eq!(totp_code(&secret, at(1_111_111_109)).unwrap(), "081804");
        assert_eq!(totp_code(&secret, at(20_000_000_000)).unwrap(), "353130");
        assert!(totp_check(&secret, "287082", at(59)));
        assert!(
            !totp_check(&secret, "287082", at(60)),
            "no tolerance window"
        );
        assert_eq!(new_totp_secret().len(), 16);
    }

    #[test]
    fn jwts_round_trip_and_expire_on_the_given_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut claims = Map::new();
        claims.insert("id".into(), Value::from("u1"));
        let token = sign(b"s", claims, now, Duration::from_secs(900));
        assert!(is_directus_jwt(&token));
        let c = verify(b"s", &token, now).unwrap();
        assert_eq!(c["exp"], 1_000_900);
        assert_eq!(verify(b"other", &token, now), Err(JwtRefusal::Invalid));
        assert_eq!(
            verify(b"s", &token, now + Duration::from_secs(900)),
            Err(JwtRefusal::Expired)
        );
        assert!(!is_directus_jwt("nope"));
    }

    #[test]
    fn ms_prints_like_the_ms_package() {
        assert_eq!(ms_short(734), "734ms");
        assert_eq!(ms_short(9_400), "9s");
        assert_eq!(ms_short(9_500), "10s");
        assert_eq!(ms_short(90_000), "2m");
    }

    #[test]
    fn cookies_render_like_express() {
        let attrs = CookieAttrs {
            domain: None,
            secure: false,
            same_site: SameSite::Lax,
        };
        let c = set_cookie("a", "b", Some(Duration::from_secs(60)), &attrs, UNIX_EPOCH);
        assert_eq!(
            c,
            "a=b; Max-Age=60; Path=/; Expires=Thu, 01 Jan 1970 00:01:00 GMT; HttpOnly; SameSite=Lax"
        );
    }
}
