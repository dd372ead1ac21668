//! Reading Linxio's answers: the token answers of `/login`, `/login/otp` and
//! `/token/refresh`, the user of `/me`, the outcome of `/logout`, and the mapping of
//! every error status onto [`AuthError`].
//!
//! Everything here is a pure function of an `http::Response<Bytes>` (plus the time, for
//! `Retry-After`), so it is unit- and property-tested without a network. The decoders
//! read `serde_json::Value`s by hand rather than through derived structs: Linxio's
//! fields are optional and loosely typed (`roleId` is a number or a string, `expireAt`
//! may be null or unparseable), and a field we do not need must never make an answer
//! fail. What we *do* need (a token) is checked strictly: a token that is not a string
//! is a [`AuthError::Protocol`], never a guess. No decoder panics on any input, and no
//! error message ever contains a body (bodies hold tokens).

use std::time::SystemTime;

use authmux_core::error::sanitize_message;
use authmux_core::wire::{loose_json, parse_json, retry_after};
use authmux_core::{AccessToken, AuthError, Expiry, LogoutOutcome, RefreshToken, UserProfile};
use bytes::Bytes;
use http::Response;
use http::header::HeaderValue;
use serde_json::{Map, Value};

/// The Linxio endpoints authmux calls. Each maps a 401 differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /login`
    Login,
    /// `POST /login/otp`
    LoginOtp,
    /// `POST /token/refresh`
    Refresh,
    /// `GET /me`
    Me,
    /// `POST /logout`
    Logout,
}

impl Endpoint {
    /// Every endpoint, for table-driven tests.
    #[cfg(test)]
    pub(crate) const ALL: [Endpoint; 5] = [
        Endpoint::Login,
        Endpoint::LoginOtp,
        Endpoint::Refresh,
        Endpoint::Me,
        Endpoint::Logout,
    ];

    /// The path, relative to the base URL.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Login => "/login",
            Endpoint::LoginOtp => "/login/otp",
            Endpoint::Refresh => "/token/refresh",
            Endpoint::Me => "/me",
            Endpoint::Logout => "/logout",
        }
    }

    /// How error messages name this endpoint's answer.
    fn what(self) -> &'static str {
        match self {
            Endpoint::Login => "login answer",
            Endpoint::LoginOtp => "OTP answer",
            Endpoint::Refresh => "refresh answer",
            Endpoint::Me => "current-user answer",
            Endpoint::Logout => "logout answer",
        }
    }
}

/// The keys under which Linxio flags a login that needs a one-time code: the API
/// reference spells it `otp_required`, one SDK page `otpRequired`.
pub(crate) const OTP_FLAGS: [&str; 2] = ["otp_required", "otpRequired"];

/// The tokens (and team hints) of a login, OTP or refresh answer. `Debug` is safe: the
/// tokens are redacted newtypes.
#[derive(Debug, Clone)]
pub(crate) struct TokenAnswer {
    /// `token`.
    pub(crate) access: AccessToken,
    /// `refreshToken`, when sent (a refresh may omit it: the old one stays valid).
    pub(crate) refresh: Option<RefreshToken>,
    /// `expireAt`, when sent and readable.
    pub(crate) expiry: Expiry,
    /// `teamType`, when sent as a string.
    pub(crate) team_type: Option<String>,
    /// `roleId`, when sent as a number or a string (numbers are converted).
    pub(crate) role_id: Option<String>,
}

/// What a `POST /login` answer says.
#[derive(Debug, Clone)]
pub(crate) enum LoginAnswer {
    /// Signed in.
    Tokens(TokenAnswer),
    /// A one-time code must be verified at `/login/otp` first (tokens, if any, ignored).
    OtpRequired,
}

/// Decodes a `POST /login` answer.
pub(crate) fn login(response: &Response<Bytes>, now: SystemTime) -> Result<LoginAnswer, AuthError> {
    let map = success_object(Endpoint::Login, response, now)?;
    if OTP_FLAGS
        .iter()
        .any(|key| map.get(*key).is_some_and(truthy))
    {
        return Ok(LoginAnswer::OtpRequired);
    }
    token_answer(Endpoint::Login, &map)?
        .map(LoginAnswer::Tokens)
        .ok_or_else(|| AuthError::protocol("login answer has neither a token nor an OTP flag"))
}

/// Decodes a `POST /login/otp` answer.
pub(crate) fn login_otp(
    response: &Response<Bytes>,
    now: SystemTime,
) -> Result<TokenAnswer, AuthError> {
    let map = success_object(Endpoint::LoginOtp, response, now)?;
    token_answer(Endpoint::LoginOtp, &map)?
        .ok_or_else(|| AuthError::protocol("OTP answer has no token"))
}

/// Decodes a `POST /token/refresh` answer.
pub(crate) fn refresh(
    response: &Response<Bytes>,
    now: SystemTime,
) -> Result<TokenAnswer, AuthError> {
    let map = success_object(Endpoint::Refresh, response, now)?;
    token_answer(Endpoint::Refresh, &map)?
        .ok_or_else(|| AuthError::protocol("refresh answer has no token"))
}

/// Decodes a `GET /me` answer: the name comes from `fullName` (else `name`), and the
/// whole object stays in [`UserProfile::raw`].
pub(crate) fn me(response: &Response<Bytes>, now: SystemTime) -> Result<UserProfile, AuthError> {
    let map = success_object(Endpoint::Me, response, now)?;
    Ok(UserProfile::from_json(
        Value::Object(map),
        &["fullName", "name"],
    ))
}

/// Decodes a `POST /logout` answer: any success (204 empty, or JSON of any shape) means
/// the server ended the session.
pub(crate) fn logout(
    response: &Response<Bytes>,
    now: SystemTime,
) -> Result<LogoutOutcome, AuthError> {
    if response.status().is_success() {
        Ok(LogoutOutcome::Revoked)
    } else {
        Err(error_for(Endpoint::Logout, response, now))
    }
}

/// The body of a successful answer as a JSON object; an error status is mapped with
/// [`error_for`].
fn success_object(
    endpoint: Endpoint,
    response: &Response<Bytes>,
    now: SystemTime,
) -> Result<Map<String, Value>, AuthError> {
    if !response.status().is_success() {
        return Err(error_for(endpoint, response, now));
    }
    match parse_json::<Value>(response, endpoint.what())? {
        Value::Object(map) => Ok(map),
        other => Err(AuthError::protocol(format!(
            "{}: expected a JSON object, got {}",
            endpoint.what(),
            json_type(&other)
        ))),
    }
}

/// Reads `token`, `refreshToken`, `expireAt`, `teamType` and `roleId`. `Ok(None)` when
/// there is no token.
fn token_answer(
    endpoint: Endpoint,
    map: &Map<String, Value>,
) -> Result<Option<TokenAnswer>, AuthError> {
    let Some(access) = token_str(endpoint, map, "token")? else {
        return Ok(None);
    };
    let refresh = token_str(endpoint, map, "refreshToken")?;
    Ok(Some(TokenAnswer {
        access: AccessToken::new(access),
        refresh: refresh.map(RefreshToken::new),
        expiry: expiry(endpoint, map),
        team_type: map
            .get("teamType")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        role_id: id_text(map.get("roleId")),
    }))
}

/// A token field: absent, null or empty is `None`; a string that can travel in a header
/// is `Some`; anything else is a protocol error (naming the field, never its value).
fn token_str(
    endpoint: Endpoint,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, AuthError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            // The access token travels in a header: refuse one that cannot, here, with a
            // clear error, rather than at the first authorized request.
            if key == "token" && HeaderValue::from_str(s).is_err() {
                return Err(AuthError::protocol(format!(
                    "{}: `{key}` contains characters a header cannot carry",
                    endpoint.what()
                )));
            }
            Ok(Some(s.clone()))
        }
        Some(other) => Err(AuthError::protocol(format!(
            "{}: `{key}` is {}, expected a string",
            endpoint.what(),
            json_type(other)
        ))),
    }
}

/// `expireAt` as an absolute expiry. Absent or null: unstated. Present but not an
/// ISO-8601 timestamp: logged at debug and treated as unstated, so the JWT's `exp`
/// decides (a bad hint must not cost the user their session).
fn expiry(endpoint: Endpoint, map: &Map<String, Value>) -> Expiry {
    match map.get("expireAt") {
        None | Some(Value::Null) => Expiry::Unstated,
        Some(Value::String(text)) => match authmux_core::timestamp::parse(text.trim()) {
            Some(at) => Expiry::At(at),
            None => {
                tracing::debug!(
                    answer = endpoint.what(),
                    "`expireAt` is not an ISO-8601 timestamp; using the token's own expiry"
                );
                Expiry::Unstated
            }
        },
        Some(other) => {
            tracing::debug!(
                answer = endpoint.what(),
                kind = json_type(other),
                "`expireAt` is not a string; using the token's own expiry"
            );
            Expiry::Unstated
        }
    }
}

/// An id sent as a string or a number, as text (`LinxioId`).
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a flag is set: `true`, a non-zero number, or `"true"`/`"1"`/`"yes"`.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What an error body says, read leniently: Linxio does not document its error
/// envelope, so `message` (a string or a list of strings), `error` (a code, or an
/// object with `message`/`code`), and a field name from `field`, `property`,
/// `propertyPath`, `errors` or `violations` are all looked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// The human message, sanitized.
    pub(crate) message: Option<String>,
    /// A machine-readable code.
    pub(crate) code: Option<String>,
    /// The offending field of a validation error.
    pub(crate) field: Option<String>,
}

impl ErrorBody {
    pub(crate) fn read(body: &Value) -> Self {
        let text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Value::Array(items) => {
                    let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    (!parts.is_empty()).then(|| parts.join("; "))
                }
                _ => None,
            }
        };
        let nested = body.get("error").filter(|e| e.is_object());
        let message = text(body.get("message"))
            .or_else(|| nested.and_then(|e| text(e.get("message"))))
            .or_else(|| text(body.get("detail")));
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .or_else(|| body.get("code").and_then(Value::as_str))
            .or_else(|| nested.and_then(|e| e.get("code")).and_then(Value::as_str))
            .filter(|c| !c.trim().is_empty())
            .map(|c| sanitize_message(c.trim()));
        // When there is no message, a textual `error` is the best description we have.
        let message = message.or_else(|| code.clone());
        Self {
            message: message.map(|m| sanitize_message(&m)),
            code,
            field: field_name(body).map(|f| sanitize_message(&f)),
        }
    }
}

fn field_name(body: &Value) -> Option<String> {
    let key_of = |v: &Value| -> Option<String> {
        ["field", "property", "propertyPath", "path", "param"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(f) = key_of(body) {
        return Some(f);
    }
    for list in ["errors", "violations"] {
        match body.get(list) {
            Some(Value::Array(items)) => {
                if let Some(f) = items.iter().find_map(key_of) {
                    return Some(f);
                }
            }
            Some(Value::Object(map)) => {
                if let Some(k) = map.keys().next() {
                    return Some(k.clone());
                }
            }
            _ => {}
        }
    }
    None
}

/// Maps an error answer of `endpoint` onto [`AuthError`]: 400/422 validation (with the
/// field when the body names one), 401 per endpoint (login: invalid credentials, OTP:
/// invalid code, refresh: refresh rejected, elsewhere: unauthorized), 403 forbidden
/// (refresh rejected on refresh),
/// 429 rate limited with `Retry-After`, 5xx server errors, anything else generically.
pub(crate) fn error_for(
    endpoint: Endpoint,
    response: &Response<Bytes>,
    now: SystemTime,
) -> AuthError {
    let status = response.status().as_u16();
    let body = ErrorBody::read(&loose_json(response));
    match status {
        400 | 422 => AuthError::Validation {
            field: body.field,
            message: body
                .message
                .unwrap_or_else(|| "rejected by the server".to_owned()),
        },
        401 => match endpoint {
            Endpoint::Login => AuthError::InvalidCredentials,
            Endpoint::LoginOtp => AuthError::InvalidOtp,
            Endpoint::Refresh => AuthError::RefreshRejected,
            Endpoint::Me | Endpoint::Logout => AuthError::Unauthorized {
                message: body.message,
            },
        },
        // A refused refresh ends the session whatever the reason (a suspended user,
        // a revoked sign-in): say so precisely.
        403 if endpoint == Endpoint::Refresh => AuthError::RefreshRejected,
        403 => AuthError::Forbidden {
            message: body.message,
        },
        429 => AuthError::RateLimited {
            retry_after: retry_after(response.headers(), now),
        },
        500..=599 => AuthError::Server {
            status,
            code: body.code,
            message: body.message,
            retry_after: retry_after(response.headers(), now),
        },
        _ => AuthError::from_status(
            status,
            body.code,
            body.message,
            retry_after(response.headers(), now),
        ),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
