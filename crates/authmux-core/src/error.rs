//! [`AuthError`]: the one typed error of authmux, with structured variants.
//!
//! Variants carry data, not preformatted strings, so callers can branch on them
//! (`RateLimited { retry_after }`, `Validation { field, .. }`). The `Display` text is for
//! humans and is not a stable interface. No variant ever holds a secret: server
//! messages pass through [`sanitize_message`], which truncates them and redacts
//! anything shaped like a token.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, shareable error source. `Arc` rather than `Box` so that [`AuthError`] is
/// `Clone`: the session manager hands the result of one refresh to every caller that
/// joined it, errors included.
pub type Source = Arc<dyn StdError + Send + Sync + 'static>;

/// What went wrong at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be established (DNS, refused, TLS handshake).
    Connect,
    /// The connection broke while the request or response was in flight.
    Io,
    /// The response body exceeded the configured size cap.
    BodyTooLarge,
    /// The request could not be built (bad URL, bad header value).
    Request,
    /// Anything else the transport reported.
    Other,
}

/// Every error authmux returns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The server rejected the email/password (or reset token) pair.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The account exists but may not sign in (suspended, disabled).
    #[error("account disabled or suspended")]
    AccountDisabled,
    /// The login needs a one-time code; finish it with `verify_otp`.
    #[error("a one-time code is required to finish signing in")]
    OtpRequired,
    /// The one-time code was wrong, expired or missing.
    #[error("invalid one-time code")]
    InvalidOtp,
    /// The session's access token has expired and cannot be refreshed: sign in again.
    #[error("session expired: sign in again")]
    SessionExpired,
    /// There is no session (never signed in, signed out, or ended by the server).
    #[error("not signed in")]
    NotSignedIn,
    /// The server definitively refused the refresh token: sign in again.
    #[error("refresh token rejected: sign in again")]
    RefreshRejected,
    /// The server answered 401 to an authorized request (even after a refresh).
    #[error("unauthorized{}", fmt_message(message))]
    Unauthorized {
        /// The server's message, sanitized.
        message: Option<String>,
    },
    /// The server answered 403.
    #[error("forbidden{}", fmt_message(message))]
    Forbidden {
        /// The server's message, sanitized.
        message: Option<String>,
    },
    /// The server answered 409 (e.g. email already registered).
    #[error("conflict{}", fmt_message(message))]
    Conflict {
        /// The server's message, sanitized.
        message: Option<String>,
    },
    /// Input was rejected, by the client before sending or by the server (400).
    #[error("invalid {}: {message}", field.as_deref().unwrap_or("input"))]
    Validation {
        /// The offending field, when known.
        field: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// Too many requests; try again after `retry_after` when given.
    #[error("rate limited{}", retry_after.map(|d| format!(": retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The dialect does not offer this capability.
    #[error("not supported by this backend: {capability}")]
    Unsupported {
        /// The capability's name, e.g. `"refresh"`.
        capability: &'static str,
    },
    /// Plain `http://` to a non-loopback host without an explicit opt-in, or a request
    /// to another origin than the session's.
    #[error("refused to send credentials: {reason}")]
    InsecureTransport {
        /// Why the request was refused (contains the host, never a secret).
        reason: String,
    },
    /// The request timed out.
    #[error("request timed out")]
    Timeout,
    /// The request failed below HTTP.
    #[error("transport error ({kind:?})")]
    Transport {
        /// What failed.
        kind: TransportErrorKind,
        /// The underlying error.
        #[source]
        source: Option<Source>,
    },
    /// The server answered with a status the dialect does not map more precisely.
    #[error("server error {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), fmt_message(message))]
    Server {
        /// HTTP status.
        status: u16,
        /// The dialect's error code, when it has one (e.g. Directus `extensions.code`).
        code: Option<String>,
        /// The server's message, sanitized.
        message: Option<String>,
        /// The server's `Retry-After`, when it sent one (a `503` with it promises the
        /// request was not processed: see [`crate::retry::RefreshRetry`]).
        retry_after: Option<Duration>,
    },
    /// The server's answer did not have the expected shape.
    #[error("malformed answer from server: {message}")]
    Protocol {
        /// What was wrong (never includes the body).
        message: String,
    },
    /// A session store failed (I/O, corrupt file, version conflict).
    #[error("session store: {message}")]
    Store {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Source>,
    },
}

fn fmt_message(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl AuthError {
    /// Whether retrying the same request later may succeed: timeouts, connection
    /// failures, 429 and 500/502/503/504.
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::Timeout | AuthError::RateLimited { .. } => true,
            AuthError::Transport { kind, .. } => {
                matches!(kind, TransportErrorKind::Connect | TransportErrorKind::Io)
            }
            AuthError::Server { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether the user has to sign in again (no usable session remains).
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self,
            AuthError::SessionExpired
                | AuthError::NotSignedIn
                | AuthError::RefreshRejected
                | AuthError::InvalidCredentials
                | AuthError::AccountDisabled
        )
    }

    /// The same error with every occurrence of the given secrets (what the request
    /// carried: a password, a code) replaced by `[redacted]` in its messages, for servers
    /// that echo input back.
    #[must_use]
    pub fn scrubbed(self, secrets: &[&str]) -> Self {
        let clean = |m: String| scrub(&m, secrets);
        match self {
            AuthError::Unauthorized { message } => AuthError::Unauthorized {
                message: message.map(clean),
            },
            AuthError::Forbidden { message } => AuthError::Forbidden {
                message: message.map(clean),
            },
            AuthError::Conflict { message } => AuthError::Conflict {
                message: message.map(clean),
            },
            AuthError::Validation { field, message } => AuthError::Validation {
                field: field.map(clean),
                message: clean(message),
            },
            AuthError::Server {
                status,
                code,
                message,
                retry_after,
            } => AuthError::Server {
                status,
                code,
                message: message.map(clean),
                retry_after,
            },
            AuthError::Protocol { message } => AuthError::Protocol {
                message: clean(message),
            },
            other => other,
        }
    }

    /// A store error with a source.
    pub fn store(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        AuthError::Store {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// A protocol error (the answer had the wrong shape).
    pub fn protocol(message: impl Into<String>) -> Self {
        AuthError::Protocol {
            message: message.into(),
        }
    }

    /// A validation error for `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AuthError::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The generic mapping of an HTTP error status, used by adapters for statuses
    /// they do not map more precisely. `message` is sanitized here; `retry_after` (the
    /// answer's `Retry-After`) is kept for 429 and for 5xx.
    pub fn from_status(
        status: u16,
        code: Option<String>,
        message: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let message = message.map(|m| sanitize_message(&m));
        match status {
            400 | 422 => AuthError::Validation {
                field: None,
                message: message.unwrap_or_else(|| "rejected by the server".into()),
            },
            401 => AuthError::Unauthorized { message },
            403 => AuthError::Forbidden { message },
            409 => AuthError::Conflict { message },
            429 => AuthError::RateLimited { retry_after },
            _ => AuthError::Server {
                status,
                code,
                message,
                retry_after: retry_after.filter(|_| status >= 500),
            },
        }
    }
}

/// Makes a server-provided message safe to keep in an error: keeps at most 300
/// characters and replaces anything that looks like a token (a JWT, or a long run of
/// token characters) with `[redacted]`.
pub fn sanitize_message(message: &str) -> String {
    let mut out = String::new();
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if looks_like_secret(word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
    }
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

/// [`sanitize_message`], after replacing every occurrence of the given secrets (what
/// the request sent: a password, a code, a token) with `[redacted]`, for servers that
/// echo input back in their error messages.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    sanitize_message(&text)
}

fn looks_like_secret(word: &str) -> bool {
    let token_chars =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '/');
    let core = word.trim_matches(|c: char| !token_chars(c));
    let is_jwt = core.split('.').count() == 3 && core.len() > 20;
    let is_long_token = core.len() >= 24
        && core.chars().all(token_chars)
        && core.chars().any(|c| c.is_ascii_digit());
    is_jwt || is_long_token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_redacts_jwts_and_long_tokens_but_keeps_prose() {
        let msg = "Token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl is invalid";
        assert_eq!(sanitize_message(msg), "Token [redacted] is invalid");
        assert_eq!(
            sanitize_message("bad refresh token yuOJkjdPXMd8a7sd6f5as4d3f2"),
            "bad refresh token [redacted]"
        );
        assert_eq!(
            sanitize_message("Invalid user credentials."),
            "Invalid user credentials."
        );
        assert!(sanitize_message(&"a".repeat(1000)).chars().count() <= 301);
    }

    #[test]
    fn scrubbed_errors_lose_echoed_input() {
        let e = AuthError::Validation {
            field: Some("password".into()),
            message: "hunter2! is too weak".into(),
        };
        assert!(!format!("{:?}", e.scrubbed(&["hunter2!"])).contains("hunter2!"));
    }

    #[test]
    fn scrub_removes_echoed_input() {
        assert_eq!(
            scrub("password 'hunter2!' is too weak", &["hunter2!", ""]),
            "password '[redacted]' is too weak"
        );
    }

    #[test]
    fn status_mapping_and_retryability() {
        assert!(matches!(
            AuthError::from_status(400, None, Some("x".into()), None),
            AuthError::Validation { .. }
        ));
        assert!(matches!(
            AuthError::from_status(409, None, None, None),
            AuthError::Conflict { .. }
        ));
        let limited = AuthError::from_status(429, None, None, Some(Duration::from_secs(7)));
        assert!(
            matches!(limited, AuthError::RateLimited { retry_after: Some(d) } if d.as_secs() == 7)
        );
        assert!(limited.is_retryable());
        assert!(AuthError::from_status(503, None, None, None).is_retryable());
        assert!(!AuthError::from_status(501, None, None, None).is_retryable());
        assert!(!AuthError::InvalidCredentials.is_retryable());
        assert!(AuthError::RefreshRejected.needs_sign_in());
        assert_eq!(
            AuthError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
            .to_string(),
            "rate limited: retry after 3s"
        );
    }
}
