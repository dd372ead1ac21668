//! RFC 6749 §5.2 error answers (`{"error": "invalid_grant", "error_description": ...}`),
//! RFC 8628 §3.5 device-flow codes and RFC 6750 bearer errors, mapped onto
//! [`AuthError`] by which call failed ([`Context`]): `invalid_grant` on a password login
//! is a wrong password, on a refresh a dead refresh token.

use std::time::{Duration, SystemTime};

use authmux_core::AuthError;
use authmux_core::error::scrub;
use authmux_core::wire::{loose_json, retry_after};
use bytes::Bytes;
use http::Response;
use http::header::WWW_AUTHENTICATE;
use serde_json::Value;

/// Which call an error answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A token request that signs in: password, client credentials.
    Login,
    /// A token request that finishes a user's authorization: code exchange, device poll.
    Grant,
    /// The refresh token grant (and a client-credentials re-fetch).
    Refresh,
    /// A call authorized with the access token (userinfo).
    Authorized,
    /// Discovery, JWKS, device authorization, revocation.
    Other,
}

/// An OAuth 2.0 error answer, read leniently (any body, any shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorAnswer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// `error` (or the bearer `error` from `WWW-Authenticate`).
    pub(crate) code: Option<String>,
    /// `error_description`, scrubbed of what the request sent and sanitized.
    pub(crate) description: Option<String>,
    /// The `Retry-After` header.
    pub(crate) retry_after: Option<Duration>,
}

impl ErrorAnswer {
    /// Reads an error answer; `secrets` (what the request carried) are scrubbed from the
    /// description in case the server echoes them.
    pub(crate) fn read(response: &Response<Bytes>, now: SystemTime, secrets: &[&str]) -> Self {
        let body = loose_json(response);
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| scrub(s, secrets))
        };
        let code = text("error").or_else(|| bearer_error(response));
        Self {
            status: response.status().as_u16(),
            code,
            description: text("error_description"),
            retry_after: retry_after(response.headers(), now),
        }
    }

    /// Whether the code is `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The typed error for this answer to a call of kind `context`.
    pub(crate) fn into_error(self, context: Context) -> AuthError {
        let message = self
            .description
            .clone()
            .or_else(|| self.code.clone())
            .filter(|m| !m.is_empty());
        if self.status == 429 {
            return AuthError::RateLimited {
                retry_after: self.retry_after,
            };
        }
        if self.status >= 500 {
            return AuthError::from_status(self.status, self.code, message, self.retry_after);
        }
        if context == Context::Authorized {
            // A resource server's answer to the bearer token (RFC 6750): whatever the
            // code, 401 means the token was not accepted.
            return match self.status {
                401 => AuthError::Unauthorized { message },
                403 => AuthError::Forbidden { message },
                _ => AuthError::from_status(self.status, self.code, message, self.retry_after),
            };
        }
        match (self.code.as_deref(), context) {
            (Some("invalid_grant" | "invalid_client"), Context::Refresh) => {
                AuthError::RefreshRejected
            }
            (Some("invalid_grant" | "invalid_client"), Context::Login) => {
                AuthError::InvalidCredentials
            }
            (Some("invalid_client"), _) => AuthError::InvalidCredentials,
            (Some("invalid_grant"), _) => AuthError::Unauthorized { message },
            (Some("invalid_token"), _) => AuthError::Unauthorized { message },
            (Some("expired_token"), _) => AuthError::SessionExpired,
            (Some("access_denied" | "unauthorized_client" | "insufficient_scope"), _) => {
                AuthError::Forbidden { message }
            }
            (Some("unsupported_grant_type" | "unsupported_response_type"), _) => {
                AuthError::Unsupported {
                    capability: "this grant (the server does not allow it for this client)",
                }
            }
            (Some("invalid_scope"), _) => AuthError::Validation {
                field: Some("scope".into()),
                message: message.unwrap_or_else(|| "invalid scope".into()),
            },
            (Some("invalid_request" | "invalid_target"), _) if self.status == 400 => {
                AuthError::Validation {
                    field: None,
                    message: message.unwrap_or_else(|| "rejected by the server".into()),
                }
            }
            (Some("temporarily_unavailable"), _) => AuthError::Server {
                status: 503,
                code: self.code,
                message,
                retry_after: self.retry_after,
            },
            (None, Context::Refresh) if self.status == 401 => AuthError::RefreshRejected,
            (None, Context::Login) if self.status == 401 => AuthError::InvalidCredentials,
            _ => AuthError::from_status(self.status, self.code, message, self.retry_after),
        }
    }
}

/// The `error` of a `WWW-Authenticate: Bearer error="invalid_token", ...` header.
fn bearer_error(response: &Response<Bytes>) -> Option<String> {
    let header = response.headers().get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let rest = header.trim().strip_prefix("Bearer")?;
    rest.split(',').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        (key.trim() == "error").then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response<Bytes> {
        Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn map(status: u16, body: &str, context: Context) -> AuthError {
        ErrorAnswer::read(&answer(status, body), SystemTime::UNIX_EPOCH, &[]).into_error(context)
    }

    #[test]
    fn invalid_grant_depends_on_the_call() {
        let body = r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#;
        assert!(matches!(
            map(400, body, Context::Refresh),
            AuthError::RefreshRejected
        ));
        assert!(matches!(
            map(400, body, Context::Login),
            AuthError::InvalidCredentials
        ));
        assert!(matches!(
            map(400, body, Context::Grant),
            AuthError::Unauthorized { .. }
        ));
        assert!(matches!(
            map(401, r#"{"error":"invalid_client"}"#, Context::Grant),
            AuthError::InvalidCredentials
        ));
    }

    #[test]
    fn device_and_generic_codes() {
        assert!(matches!(
            map(400, r#"{"error":"expired_token"}"#, Context::Grant),
            AuthError::SessionExpired
        ));
        assert!(matches!(
            map(400, r#"{"error":"access_denied"}"#, Context::Grant),
            AuthError::Forbidden { .. }
        ));
        assert!(matches!(
            map(400, r#"{"error":"invalid_scope"}"#, Context::Login),
            AuthError::Validation { field: Some(f), .. } if f == "scope"
        ));
        assert!(matches!(
            map(400, r#"{"error":"unsupported_grant_type"}"#, Context::Login),
            AuthError::Unsupported { .. }
        ));
        assert!(matches!(
            map(503, r#"{"error":"invalid_grant"}"#, Context::Refresh),
            AuthError::Server { status: 503, .. }
        ));
        assert!(matches!(
            map(429, "", Context::Refresh),
            AuthError::RateLimited { .. }
        ));
        assert!(matches!(
            map(401, "", Context::Refresh),
            AuthError::RefreshRejected
        ));
    }

    #[test]
    fn bearer_errors_come_from_www_authenticate() {
        let response = Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer realm="x", error="invalid_token", error_description="expired""#,
            )
            .body(Bytes::new())
            .unwrap();
        let answer = ErrorAnswer::read(&response, SystemTime::UNIX_EPOCH, &[]);
        assert!(answer.is("invalid_token"));
        assert!(matches!(
            answer.into_error(Context::Authorized),
            AuthError::Unauthorized { .. }
        ));
    }

    #[test]
    fn echoed_secrets_are_scrubbed() {
        let body =
            r#"{"error":"invalid_grant","error_description":"code abc-123-secret is unknown"}"#;
        let error = ErrorAnswer::read(
            &answer(400, body),
            SystemTime::UNIX_EPOCH,
            &["abc-123-secret"],
        )
        .into_error(Context::Grant);
        assert!(!format!("{error} {error:?}").contains("abc-123-secret"));
    }
}
