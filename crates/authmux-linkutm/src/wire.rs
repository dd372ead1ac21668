//! The LinkUTM wire format: endpoint paths, decoding of answers (token + user, the
//! profile, the sign-in list) and the mapping of the error envelope
//! `{statusCode, message, error}` onto [`AuthError`], endpoint by endpoint.
//!
//! Decoding is lenient where LinkUTM's documentation is silent (a `data` wrapper,
//! `accessToken` for `token`, numeric ids) and never panics: every function here takes
//! any bytes and returns a value or a typed error. No error message ever includes the
//! body (it may hold a token); server messages pass through
//! [`authmux_core::error::sanitize_message`].

use std::time::SystemTime;

use authmux_core::error::sanitize_message;
use authmux_core::wire::{loose_json, parse_json, retry_after};
use authmux_core::{AccessToken, AuthError, SignInRecord, UserProfile};
use bytes::Bytes;
use http::Response;
use serde_json::{Map, Value};

/// The endpoint paths, relative to the configured base URL.
pub mod paths {
    /// `POST`: email + password → token + user.
    pub const LOGIN: &str = "/api/v1/auth/login";
    /// `POST`: email, name, password → an emailed code.
    pub const SEND_OTP: &str = "/api/v1/auth/send-otp";
    /// `POST`: email, otp → token + user (the account is created).
    pub const VERIFY_OTP: &str = "/api/v1/auth/verify-otp";
    /// `POST`: email → the code again.
    pub const RESEND_OTP: &str = "/api/v1/auth/resend-otp";
    /// `POST`: email → a reset link.
    pub const FORGOT_PASSWORD: &str = "/api/v1/auth/forgot-password";
    /// `POST`: token, newPassword.
    pub const RESET_PASSWORD: &str = "/api/v1/auth/reset-password";
    /// `POST` (bearer): currentPassword, newPassword.
    pub const CHANGE_PASSWORD: &str = "/api/v1/auth/change-password";
    /// `GET` (bearer): the signed-in user.
    pub const PROFILE: &str = "/api/v1/auth/profile";
    /// `GET` (bearer): the sign-ins; `DELETE`: revoke them all; `DELETE /:id`: one.
    pub const SESSIONS: &str = "/api/v1/auth/sessions";
    /// `GET`, in a browser: starts Google OAuth.
    pub const GOOGLE: &str = "/api/v1/auth/google";
}

/// Which call an answer belongs to: the same status means different things on
/// different endpoints (a 401 on login is wrong credentials, elsewhere a dead token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `POST /login`.
    Login,
    /// `POST /send-otp`.
    SendOtp,
    /// `POST /verify-otp`.
    VerifyOtp,
    /// `POST /resend-otp`.
    ResendOtp,
    /// `POST /forgot-password`.
    ForgotPassword,
    /// `POST /reset-password`.
    ResetPassword,
    /// `POST /change-password`.
    ChangePassword,
    /// `GET /profile`.
    Profile,
    /// `GET /sessions`.
    ListSessions,
    /// `DELETE /sessions/:id`.
    RevokeSession,
    /// `DELETE /sessions`.
    RevokeAll,
}

/// The field names LinkUTM validation messages start with (class-validator style:
/// `"password must be longer than or equal to 8 characters"`).
const KNOWN_FIELDS: &[&str] = &[
    "email",
    "name",
    "password",
    "otp",
    "token",
    "newPassword",
    "currentPassword",
];

/// The messages of an error envelope: `message` as a string, or the strings of an
/// array (other items are skipped), or else the `error` text. Not yet sanitized.
fn envelope_messages(body: &Value) -> Vec<String> {
    let texts: Vec<String> = match body.get("message") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let texts: Vec<String> = texts
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if texts.is_empty() {
        body.get("error")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| vec![t.to_owned()])
            .unwrap_or_default()
    } else {
        texts
    }
}

/// The field a validation message names by its first word, in its wire spelling.
fn field_of(message: &str) -> Option<&'static str> {
    let first = message
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    KNOWN_FIELDS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(first))
        .copied()
}

fn mentions(text: &str, words: &[&str]) -> bool {
    let lower = text.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Maps an error answer (any status that is not 2xx) of `call` onto [`AuthError`]:
///
/// - 400/422: [`AuthError::Validation`], with the field when the first message's first
///   word names one; on verify-otp, a message about the code that names no field
///   (`"Invalid OTP"`, `"OTP expired"`) is [`AuthError::InvalidOtp`].
/// - 401: [`AuthError::InvalidCredentials`] on login and reset-password (expired reset
///   token), and on change-password when the message is about the password rather than
///   the token; [`AuthError::InvalidOtp`] on verify-otp; [`AuthError::Unauthorized`]
///   elsewhere.
/// - 403 on login: [`AuthError::AccountDisabled`] (a disabled or suspended account).
/// - 409: [`AuthError::Conflict`]; 429: [`AuthError::RateLimited`] with `Retry-After`.
/// - Anything else: [`AuthError::from_status`].
pub fn error_from(call: Call, response: &Response<Bytes>, now: SystemTime) -> AuthError {
    let status = response.status().as_u16();
    let body = loose_json(response);
    let messages = envelope_messages(&body);
    let message = (!messages.is_empty()).then(|| sanitize_message(&messages.join("; ")));
    let first = messages.first().map(String::as_str).unwrap_or_default();
    match status {
        400 | 422 => {
            let field = field_of(first);
            if call == Call::VerifyOtp && field.is_none() && mentions(first, &["otp", "code"]) {
                return AuthError::InvalidOtp;
            }
            AuthError::Validation {
                field: field.map(str::to_owned),
                message: message.unwrap_or_else(|| "rejected by the server".into()),
            }
        }
        401 => match call {
            Call::Login | Call::ResetPassword => AuthError::InvalidCredentials,
            Call::VerifyOtp => AuthError::InvalidOtp,
            Call::ChangePassword
                if mentions(first, &["password"]) && !mentions(first, &["token", "jwt"]) =>
            {
                AuthError::InvalidCredentials
            }
            _ => AuthError::Unauthorized { message },
        },
        403 if call == Call::Login => AuthError::AccountDisabled,
        409 => AuthError::Conflict { message },
        429 => AuthError::RateLimited {
            retry_after: retry_after(response.headers(), now),
        },
        _ => {
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .map(sanitize_message);
            AuthError::from_status(status, code, message, retry_after(response.headers(), now))
        }
    }
}

/// What login, verify-otp and (after the profile call) OAuth produce.
#[derive(Debug)]
pub struct TokenAnswer {
    /// The JWT.
    pub token: AccessToken,
    /// The user object, when the answer had one.
    pub user: Option<UserProfile>,
}

/// The object holding the payload: the top level, or a `data` object when the top
/// level does not have `key`.
fn payload<'a>(root: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    let top = root.as_object()?;
    if top.contains_key(key) {
        return Some(top);
    }
    top.get("data").and_then(Value::as_object).or(Some(top))
}

/// Checks that a token can be sent as `Authorization: Bearer <token>`.
pub fn header_safe_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 16 * 1024 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Decodes a `{token, user}` answer (login, verify-otp). `token` may also be spelled
/// `accessToken` or `access_token`, and the pair may sit in a `data` object.
pub fn token_answer(response: &Response<Bytes>, what: &str) -> Result<TokenAnswer, AuthError> {
    let root: Value = parse_json(response, what)?;
    let Some(object) = payload(&root, "token") else {
        return Err(AuthError::protocol(format!(
            "{what}: expected a JSON object"
        )));
    };
    let token = ["token", "accessToken", "access_token"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
        .ok_or_else(|| AuthError::protocol(format!("{what}: the answer has no token")))?;
    if !header_safe_token(token) {
        return Err(AuthError::protocol(format!(
            "{what}: the token is empty or has characters a header cannot carry"
        )));
    }
    let user = object
        .get("user")
        .filter(|u| u.is_object())
        .map(|u| user_profile(u.clone(), Some(token)));
    Ok(TokenAnswer {
        token: AccessToken::new(token),
        user,
    })
}

/// Keys whose values are secrets: dropped from any server object the adapter keeps
/// (a user's or a sign-in's `raw`), since those are printed by `Debug` and stored.
const SECRET_KEYS: &[&str] = &[
    "token",
    "accessToken",
    "access_token",
    "refreshToken",
    "refresh_token",
    "jwt",
    "password",
    "passwordHash",
    "password_hash",
    "otp",
    "resetToken",
    "reset_token",
];

/// Removes secrets from a server object before it is kept: keys named like a secret
/// are dropped (at any depth), and any string containing `token` (the session's
/// access token) becomes `"[redacted]"`.
pub fn scrub(value: &mut Value, token: Option<&str>) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k)));
            map.values_mut().for_each(|v| scrub(v, token));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, token)),
        Value::String(text) if token.is_some_and(|t| !t.is_empty() && text.contains(t)) => {
            "[redacted]".clone_into(text);
        }
        _ => {}
    }
}

/// A LinkUTM user object as a [`UserProfile`] (`id`, `email`, `name`), scrubbed of
/// secrets (see [`scrub`]) first.
pub fn user_profile(mut raw: Value, token: Option<&str>) -> UserProfile {
    scrub(&mut raw, token);
    UserProfile::from_json(raw, &["name", "fullName", "displayName"])
}

/// Decodes the profile answer: the user object itself, or wrapped in `user` or `data`.
/// `token` is the access token the request carried (scrubbed from what is kept).
pub fn profile(response: &Response<Bytes>, token: Option<&str>) -> Result<UserProfile, AuthError> {
    let root: Value = parse_json(response, "profile")?;
    let Some(top) = root.as_object() else {
        return Err(AuthError::protocol("profile: expected a JSON object"));
    };
    let looks_like_user = top.contains_key("id") || top.contains_key("email");
    let user = if looks_like_user {
        &root
    } else {
        ["user", "data"]
            .iter()
            .find_map(|k| top.get(*k).filter(|v| v.is_object()))
            .unwrap_or(&root)
    };
    Ok(user_profile(user.clone(), token))
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first_text(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| text_of(object.get(*k)))
}

/// Decodes the sign-in list: an array, or an object with a `sessions`, `data` or
/// `items` array. Records without an id (nothing could revoke them) are skipped; each
/// is scrubbed of secrets (see [`scrub`]) first.
pub fn sign_in_records(
    response: &Response<Bytes>,
    token: Option<&str>,
) -> Result<Vec<SignInRecord>, AuthError> {
    let root: Value = parse_json(response, "sessions")?;
    let items = match &root {
        Value::Array(items) => items,
        Value::Object(top) => ["sessions", "data", "items"]
            .iter()
            .find_map(|k| top.get(*k).and_then(Value::as_array))
            .ok_or_else(|| AuthError::protocol("sessions: expected a list of sessions"))?,
        _ => return Err(AuthError::protocol("sessions: expected a list of sessions")),
    };
    Ok(items
        .iter()
        .filter_map(|item| {
            let mut item = item.clone();
            scrub(&mut item, token);
            sign_in_record(&item)
        })
        .collect())
}

/// One sign-in record, if it is an object with an id.
pub fn sign_in_record(raw: &Value) -> Option<SignInRecord> {
    let object = raw.as_object()?;
    let id = first_text(object, &["id", "_id", "sessionId", "session_id"])?;
    if id.is_empty() {
        return None;
    }
    let current = ["current", "isCurrent", "is_current"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_bool));
    Some(SignInRecord {
        id,
        user_agent: first_text(object, &["userAgent", "user_agent", "ua"]),
        created_at: first_text(object, &["createdAt", "created_at"]),
        current,
        raw: raw.clone(),
    })
}

/// The claims of a JWT, read WITHOUT verifying its signature (see
/// [`authmux_core::token::jwt_claims`]).
pub use authmux_core::token::jwt_claims;

/// The claims LinkUTM-style servers use to name the sign-in a JWT belongs to.
pub const SIGN_IN_CLAIMS: &[&str] = &["sid", "sessionId", "session_id"];

/// The sign-in id a JWT names in one of [`SIGN_IN_CLAIMS`], if any.
pub fn sign_in_id_of(token: &str) -> Option<String> {
    let claims = jwt_claims(token)?;
    first_text(&claims, SIGN_IN_CLAIMS).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn answer(status: u16, body: &str) -> Response<Bytes> {
        Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn envelope_with_string_or_array_message() {
        let err = error_from(
            Call::SendOtp,
            &answer(
                400,
                r#"{"statusCode":400,"message":["password must be longer than or equal to 8 characters","email must be an email"],"error":"Bad Request"}"#,
            ),
            now(),
        );
        match err {
            AuthError::Validation { field, message } => {
                assert_eq!(field.as_deref(), Some("password"));
                assert_eq!(
                    message,
                    "password must be longer than or equal to 8 characters; email must be an email"
                );
            }
            other => panic!("{other:?}"),
        }
        let err = error_from(
            Call::ResetPassword,
            &answer(
                400,
                r#"{"statusCode":400,"message":"newPassword should not be empty","error":"Bad Request"}"#,
            ),
            now(),
        );
        assert!(
            matches!(err, AuthError::Validation { field: Some(ref f), .. } if f == "newPassword")
        );
        // No known field: no field, message kept; no message at all: the `error` text.
        let err = error_from(
            Call::SendOtp,
            &answer(400, r#"{"statusCode":400,"message":"Bad things"}"#),
            now(),
        );
        assert!(
            matches!(err, AuthError::Validation { field: None, ref message } if message == "Bad things")
        );
        let err = error_from(
            Call::SendOtp,
            &answer(400, r#"{"statusCode":400,"error":"Bad Request"}"#),
            now(),
        );
        assert!(
            matches!(err, AuthError::Validation { ref message, .. } if message == "Bad Request")
        );
    }

    #[test]
    fn statuses_by_endpoint() {
        let unauthorized = r#"{"statusCode":401,"message":"Unauthorized"}"#;
        let map = |call, status, body| error_from(call, &answer(status, body), now());
        assert!(matches!(
            map(Call::Login, 401, unauthorized),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            map(
                Call::ResetPassword,
                401,
                r#"{"message":"Reset token expired"}"#
            ),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            map(
                Call::ChangePassword,
                401,
                r#"{"message":"Current password is incorrect"}"#
            ),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            map(Call::ChangePassword, 401, unauthorized),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            map(Call::Profile, 401, unauthorized),
            AuthError::Unauthorized { message: Some(ref m) } if m == "Unauthorized"
        ));
        assert!(matches!(
            map(Call::VerifyOtp, 400, r#"{"message":"Invalid OTP"}"#),
            AuthError::InvalidOtp
        ));
        assert!(matches!(
            map(
                Call::VerifyOtp,
                400,
                r#"{"message":["otp must be longer than or equal to 6 characters"]}"#
            ),
            AuthError::Validation { field: Some(ref f), .. } if f == "otp"
        ));
        assert!(matches!(
            map(
                Call::VerifyOtp,
                401,
                r#"{"message":"Invalid or expired OTP"}"#
            ),
            AuthError::InvalidOtp
        ));
        assert!(matches!(
            map(Call::Login, 403, r#"{"message":"Account is disabled"}"#),
            AuthError::AccountDisabled
        ));
        assert!(matches!(
            map(Call::Profile, 403, r#"{"message":"Forbidden resource"}"#),
            AuthError::Forbidden { .. }
        ));
        assert!(matches!(
            map(Call::SendOtp, 409, r#"{"message":"Email already registered"}"#),
            AuthError::Conflict { message: Some(ref m) } if m == "Email already registered"
        ));
        assert!(matches!(
            map(Call::RevokeSession, 404, r#"{"message":"Session not found","error":"Not Found"}"#),
            AuthError::Server { status: 404, code: Some(ref c), .. } if c == "Not Found"
        ));
        assert!(matches!(
            map(Call::Profile, 500, "<html>oops</html>"),
            AuthError::Server {
                status: 500,
                message: None,
                ..
            }
        ));
    }

    #[test]
    fn rate_limit_reads_retry_after() {
        let mut response = answer(
            429,
            r#"{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}"#,
        );
        assert!(matches!(
            error_from(Call::Login, &response, now()),
            AuthError::RateLimited { retry_after: None }
        ));
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, "42".parse().unwrap());
        assert!(matches!(
            error_from(Call::Login, &response, now()),
            AuthError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(42)
        ));
    }

    #[test]
    fn error_messages_are_sanitized() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let body = format!(r#"{{"message":["token {jwt} is invalid"]}}"#);
        let err = error_from(Call::Profile, &answer(401, &body), now());
        assert!(!format!("{err} {err:?}").contains(jwt));
    }

    #[test]
    fn token_answers() {
        let ok = token_answer(
            &answer(
                200,
                r#"{"token":"a.b.c","user":{"id":"u-1","name":"Jane","email":"jane@example.com"}}"#,
            ),
            "login",
        )
        .unwrap();
        assert_eq!(ok.token.expose_secret(), "a.b.c");
        let user = ok.user.unwrap();
        assert_eq!(user.id.as_deref(), Some("u-1"));
        assert_eq!(user.name.as_deref(), Some("Jane"));
        let wrapped = token_answer(
            &answer(200, r#"{"data":{"accessToken":"t","user":{"id":7}}}"#),
            "login",
        )
        .unwrap();
        assert_eq!(wrapped.token.expose_secret(), "t");
        assert_eq!(wrapped.user.unwrap().id.as_deref(), Some("7"));
        assert!(
            token_answer(&answer(200, r#"{"token":"x"}"#), "login")
                .unwrap()
                .user
                .is_none()
        );
        for bad in [
            "",
            "[]",
            "null",
            r#"{"user":{}}"#,
            r#"{"token":""}"#,
            r#"{"token":"has space"}"#,
            r#"{"token":5}"#,
        ] {
            let err = token_answer(&answer(200, bad), "login").unwrap_err();
            assert!(matches!(err, AuthError::Protocol { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn profiles_and_sign_ins() {
        let p = profile(
            &answer(200, r#"{"id":"u1","email":"a@b.co","name":"A"}"#),
            None,
        )
        .unwrap();
        assert_eq!(p.email.as_deref(), Some("a@b.co"));
        let p = profile(&answer(200, r#"{"user":{"id":"u2"}}"#), None).unwrap();
        assert_eq!(p.id.as_deref(), Some("u2"));
        assert!(profile(&answer(200, "[1]"), None).is_err());

        let records = sign_in_records(&answer(
            200,
            r#"[{"id":"s1","userAgent":"authmux/0.1.0","createdAt":"2025-01-01T00:00:00Z","current":true},
                {"_id":2,"user_agent":"curl"},{"no":"id"},5,{"id":""}]"#,
        ), None)
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, "s1");
        assert_eq!(records[0].current, Some(true));
        assert_eq!(records[0].user_agent.as_deref(), Some("authmux/0.1.0"));
        assert_eq!(records[1].id, "2");
        assert_eq!(records[1].current, None);
        let wrapped = sign_in_records(
            &answer(200, r#"{"sessions":[{"sessionId":"x","isCurrent":false}]}"#),
            None,
        )
        .unwrap();
        assert_eq!(wrapped[0].current, Some(false));
        assert!(sign_in_records(&answer(200, r#"{"sessions":5}"#), None).is_err());
        assert!(sign_in_records(&answer(200, "\"no\""), None).is_err());
    }

    #[test]
    fn kept_objects_are_scrubbed_of_secrets() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJzLTEifQ.c2ln";
        let body = format!(
            r#"{{"id":"{token}","email":"a@b.co","password":"hash","nested":{{"accessToken":"x","note":"t={token}"}},"list":[{{"jwt":"y"}}]}}"#
        );
        let p = profile(&answer(200, &body), Some(token)).unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains(token) && !debug.contains("hash"), "{debug}");
        assert_eq!(p.id.as_deref(), Some("[redacted]"));
        assert_eq!(p.email.as_deref(), Some("a@b.co"));
        assert_eq!(p.raw["nested"], serde_json::json!({"note": "[redacted]"}));
        assert_eq!(p.raw["list"], serde_json::json!([{}]));
        let login = token_answer(
            &answer(
                200,
                &format!(r#"{{"token":"{token}","user":{{"id":"u","token":"{token}"}}}}"#),
            ),
            "login",
        )
        .unwrap();
        assert!(!format!("{:?}", login.user).contains(token));
        let records = sign_in_records(
            &answer(
                200,
                &format!(r#"[{{"id":"s","userAgent":"{token}","jti":"j"}}]"#),
            ),
            Some(token),
        )
        .unwrap();
        assert!(!format!("{records:?}").contains(token));
    }

    #[test]
    fn sign_in_claims() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"1","sid":"s-9","exp":2000000000} . sig
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwic2lkIjoicy05IiwiZXhwIjoyMDAwMDAwMDAwfQ.c2ln";
        assert_eq!(sign_in_id_of(jwt).as_deref(), Some("s-9"));
        assert_eq!(sign_in_id_of("not.a.jwt"), None);
        assert_eq!(sign_in_id_of("opaque"), None);
    }
}
