//! The Directus error envelope, `{"errors":[{"message": "...", "extensions": {"code":
//! "..."}}]}`, and its mapping onto [`AuthError`].
//!
//! The mapping goes by `extensions.code` first, then by HTTP status, and depends on
//! which call failed ([`Context`]): `INVALID_CREDENTIALS` on a login is a wrong
//! password, on a refresh it is a dead refresh token.

use std::time::{Duration, SystemTime};

use authmux_core::AuthError;
use authmux_core::error::sanitize_message;
use authmux_core::wire::{loose_json, retry_after};
use bytes::Bytes;
use http::Response;
use serde_json::Value;

/// Which call an error answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// `POST /auth/login`, with or without a one-time code.
    Login,
    /// `POST /auth/refresh`.
    Refresh,
    /// `POST /auth/password/reset`.
    Reset,
    /// A call authorized with the session's access token (`GET /users/me`), where
    /// Directus answers a token it does not accept (garbage, or a session-mode JWT whose
    /// session is gone) with 401 `INVALID_CREDENTIALS`.
    Authorized,
    /// `/users/me/tfa/enable` and `/disable`, where a wrong code is 400
    /// `INVALID_PAYLOAD` `"otp" is invalid`.
    Tfa,
    /// Anything else.
    Other,
}

/// A Directus error answer, read leniently (any body, any shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorAnswer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// `errors[0].extensions.code`, when present.
    pub(crate) code: Option<String>,
    /// `errors[0].message`, sanitized.
    pub(crate) message: Option<String>,
    /// `errors[0].extensions.field`, when present (validation errors).
    pub(crate) field: Option<String>,
    /// The `Retry-After` header.
    pub(crate) retry_after: Option<Duration>,
}

impl ErrorAnswer {
    /// Reads an error answer. Never fails: a body that is not the envelope gives an
    /// answer with only the status.
    pub(crate) fn read(response: &Response<Bytes>, now: SystemTime) -> Self {
        let body = loose_json(response);
        let first = body
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|errors| errors.first());
        let text = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(sanitize_message)
        };
        let extensions = first.and_then(|e| e.get("extensions"));
        Self {
            status: response.status().as_u16(),
            code: text(extensions.and_then(|x| x.get("code"))),
            message: text(first.and_then(|e| e.get("message"))),
            field: text(extensions.and_then(|x| x.get("field"))),
            retry_after: retry_after(response.headers(), now),
        }
    }

    /// Whether the code is `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The typed error for this answer to a call of kind `context`.
    pub(crate) fn into_error(self, context: Context) -> AuthError {
        let message = self.message.clone();
        if self.status == 429 || self.is("REQUESTS_EXCEEDED") {
            return AuthError::RateLimited {
                retry_after: self.retry_after,
            };
        }
        match (self.code.as_deref(), context) {
            (Some("INVALID_CREDENTIALS" | "TOKEN_EXPIRED" | "INVALID_TOKEN"), Context::Refresh) => {
                AuthError::RefreshRejected
            }
            (Some("INVALID_CREDENTIALS"), Context::Authorized) => {
                AuthError::Unauthorized { message }
            }
            (Some("INVALID_CREDENTIALS"), _) => AuthError::InvalidCredentials,
            (Some("TOKEN_EXPIRED" | "INVALID_TOKEN" | "FORBIDDEN"), Context::Reset) => {
                // The reset token from the email is the credential here: a bad one is
                // INVALID_TOKEN, a used one (bound to the old password's hash) FORBIDDEN.
                AuthError::InvalidCredentials
            }
            (Some("TOKEN_EXPIRED" | "INVALID_TOKEN"), _) => AuthError::Unauthorized { message },
            (Some("INVALID_OTP"), _) => AuthError::InvalidOtp,
            (Some("USER_SUSPENDED"), _) => AuthError::AccountDisabled,
            (Some("INVALID_PAYLOAD"), Context::Tfa)
                if message.as_deref().is_some_and(|m| m.contains("\"otp\"")) =>
            {
                AuthError::InvalidOtp
            }
            (Some("INVALID_PAYLOAD" | "FAILED_VALIDATION" | "INVALID_QUERY"), _) => {
                AuthError::Validation {
                    field: self.field,
                    message: message.unwrap_or_else(|| "rejected by the server".into()),
                }
            }
            (Some("FORBIDDEN"), _) => AuthError::Forbidden { message },
            (None, Context::Refresh) if self.status == 401 => AuthError::RefreshRejected,
            (None, Context::Login | Context::Reset) if self.status == 401 => {
                AuthError::InvalidCredentials
            }
            (None, _) => AuthError::from_status(self.status, None, message, self.retry_after),
            // An unknown code keeps code and message: the statuses with a typed meaning
            // (400, 401, 403, 409, 422) keep it, with the code in the message (a 401
            // stays `Unauthorized` so that the session manager refreshes on it);
            // anything else is `Server` with both.
            (Some(code), _) if matches!(self.status, 400 | 401 | 403 | 409 | 422) => {
                let message = Some(match message {
                    Some(m) => format!("{code}: {m}"),
                    None => code.to_owned(),
                });
                AuthError::from_status(self.status, self.code, message, self.retry_after)
            }
            (Some(_), _) => AuthError::Server {
                status: self.status,
                code: self.code,
                message,
                retry_after: self.retry_after.filter(|_| self.status >= 500),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, retry: Option<&str>) -> ErrorAnswer {
        let mut builder = Response::builder().status(status);
        if let Some(r) = retry {
            builder = builder.header("retry-after", r);
        }
        ErrorAnswer::read(
            &builder.body(Bytes::from(body.to_owned())).unwrap(),
            SystemTime::UNIX_EPOCH,
        )
    }

    fn envelope(code: &str, message: &str) -> String {
        serde_json::json!({"errors": [{"message": message, "extensions": {"code": code}}]})
            .to_string()
    }

    #[test]
    fn codes_map_by_context() {
        use Context::*;
        let e = |status, code, ctx| answer(status, &envelope(code, "m"), None).into_error(ctx);
        assert!(matches!(
            e(401, "INVALID_CREDENTIALS", Login),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            e(401, "INVALID_CREDENTIALS", Refresh),
            AuthError::RefreshRejected
        ));
        assert!(matches!(
            e(401, "INVALID_OTP", Login),
            AuthError::InvalidOtp
        ));
        assert!(matches!(
            e(401, "TOKEN_EXPIRED", Other),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            e(403, "INVALID_TOKEN", Other),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            e(401, "TOKEN_EXPIRED", Refresh),
            AuthError::RefreshRejected
        ));
        assert!(matches!(
            e(403, "INVALID_TOKEN", Refresh),
            AuthError::RefreshRejected
        ));
        assert!(matches!(
            e(403, "INVALID_TOKEN", Reset),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            e(401, "USER_SUSPENDED", Login),
            AuthError::AccountDisabled
        ));
        assert!(matches!(
            e(400, "INVALID_PAYLOAD", Login),
            AuthError::Validation { .. }
        ));
        assert!(matches!(
            e(403, "FORBIDDEN", Other),
            AuthError::Forbidden { .. }
        ));
        match e(418, "TEAPOT", Other) {
            AuthError::Server {
                status: 418,
                code: Some(code),
                message: Some(m),
                ..
            } => {
                assert_eq!((code.as_str(), m.as_str()), ("TEAPOT", "m"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match e(401, "SOMETHING_NEW", Other) {
            AuthError::Unauthorized { message: Some(m) } => assert_eq!(m, "SOMETHING_NEW: m"),
            other => panic!("unexpected {other:?}"),
        }
        match e(409, "RECORD_NOT_UNIQUE", Other) {
            AuthError::Conflict { message: Some(m) } => assert_eq!(m, "RECORD_NOT_UNIQUE: m"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            e(401, "INVALID_CREDENTIALS", Authorized),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            e(401, "TOKEN_EXPIRED", Authorized),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            e(401, "USER_SUSPENDED", Refresh),
            AuthError::AccountDisabled
        ));
        assert!(matches!(
            e(400, "INVALID_PAYLOAD", Tfa),
            AuthError::Validation { .. }
        ));
        let wrong_code = answer(
            400,
            &envelope("INVALID_PAYLOAD", "Invalid payload. \"otp\" is invalid."),
            None,
        );
        assert!(matches!(
            wrong_code.clone().into_error(Tfa),
            AuthError::InvalidOtp
        ));
        assert!(matches!(
            wrong_code.into_error(Other),
            AuthError::Validation { .. }
        ));
    }

    #[test]
    fn rate_limit_keeps_retry_after_and_bare_statuses_fall_back() {
        let limited = answer(
            429,
            &envelope("REQUESTS_EXCEEDED", "Too many requests"),
            Some("7"),
        )
        .into_error(Context::Login);
        assert!(
            matches!(limited, AuthError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7))
        );
        assert!(matches!(
            answer(429, "", None).into_error(Context::Other),
            AuthError::RateLimited { retry_after: None }
        ));
        assert!(matches!(
            answer(401, "<html>", None).into_error(Context::Refresh),
            AuthError::RefreshRejected
        ));
        assert!(matches!(
            answer(401, "", None).into_error(Context::Login),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            answer(401, "", None).into_error(Context::Authorized),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            answer(503, "oops", None).into_error(Context::Other),
            AuthError::Server {
                status: 503,
                code: None,
                ..
            }
        ));
        let field = answer(
            400,
            r#"{"errors":[{"message":"bad","extensions":{"code":"FAILED_VALIDATION","field":"email"}}]}"#,
            None,
        );
        assert!(matches!(
            field.into_error(Context::Other),
            AuthError::Validation { field: Some(f), .. } if f == "email"
        ));
    }

    #[test]
    fn messages_are_sanitized() {
        let secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNlY3JldA";
        let err = answer(418, &envelope("X", &format!("token {secret} bad")), None)
            .into_error(Context::Other);
        assert!(!format!("{err} {err:?}").contains(secret));
    }
}
