//! [`DirectusConfig`] and [`DirectusMode`]: what a [`DirectusProvider`](crate::DirectusProvider)
//! is built from.

use std::fmt;
use std::str::FromStr;

use authmux_core::{AuthError, ClientOptions};
use serde::{Deserialize, Serialize};
use url::Url;

/// How Directus hands out the refresh credential at login (the `mode` of
/// `POST /auth/login`).
///
/// | mode      | login answer                     | refresh credential                          |
/// |-----------|----------------------------------|---------------------------------------------|
/// | `json`    | `access_token`, `refresh_token`  | `refresh_token` in the JSON body            |
/// | `cookie`  | `access_token`                   | the `directus_refresh_token` cookie         |
/// | `session` | only `expires`                   | the `directus_session_token` cookie (the JWT itself) |
///
/// The cookies are secrets: the provider keeps them in the session's token set (so they
/// persist through a session store like tokens) and sends them back only to the
/// session's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectusMode {
    /// Tokens in the JSON body (the default).
    #[default]
    Json,
    /// Access token in the body, refresh token in an HttpOnly cookie.
    Cookie,
    /// A session cookie holding the access JWT; no separate refresh token.
    Session,
}

impl DirectusMode {
    /// The wire name: `"json"`, `"cookie"` or `"session"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectusMode::Json => "json",
            DirectusMode::Cookie => "cookie",
            DirectusMode::Session => "session",
        }
    }
}

impl fmt::Display for DirectusMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DirectusMode {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(DirectusMode::Json),
            "cookie" => Ok(DirectusMode::Cookie),
            "session" => Ok(DirectusMode::Session),
            other => Err(AuthError::validation(
                "mode",
                format!("unknown Directus mode {other:?}; expected json, cookie or session"),
            )),
        }
    }
}

/// Settings of a [`DirectusProvider`](crate::DirectusProvider).
///
/// ```
/// use authmux_directus::{DirectusConfig, DirectusMode};
///
/// let config: DirectusConfig = serde_json::from_str(
///     r#"{"url": "https://cms.example.com", "mode": "cookie", "fields": ["id", "email", "role"]}"#,
/// ).unwrap();
/// assert_eq!(config.mode, DirectusMode::Cookie);
/// assert_eq!(DirectusConfig::new("https://cms.example.com".parse().unwrap()).mode, DirectusMode::Json);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectusConfig {
    /// The Directus base URL (a path prefix such as `https://x.example/cms` is kept).
    pub url: Url,
    /// The login mode (default `json`).
    #[serde(default)]
    pub mode: DirectusMode,
    /// The fields `GET /users/me` asks for (`?fields=a,b`); empty means the server's
    /// default (all fields the user may read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// HTTP settings shared by every dialect.
    #[serde(flatten)]
    pub client: ClientOptions,
}

impl DirectusConfig {
    /// A config for `url` with the defaults: json mode, all user fields.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            mode: DirectusMode::default(),
            fields: Vec::new(),
            client: ClientOptions::default(),
        }
    }

    /// Sets the login mode.
    #[must_use]
    pub fn with_mode(mut self, mode: DirectusMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the fields asked of `GET /users/me`.
    #[must_use]
    pub fn with_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_in_lowercase() {
        for mode in [
            DirectusMode::Json,
            DirectusMode::Cookie,
            DirectusMode::Session,
        ] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            assert_eq!(serde_json::from_str::<DirectusMode>(&json).unwrap(), mode);
            assert_eq!(mode.as_str().parse::<DirectusMode>().unwrap(), mode);
        }
        assert!(matches!(
            "Cookie".parse::<DirectusMode>(),
            Err(AuthError::Validation { .. })
        ));
    }

    #[test]
    fn config_flattens_client_options_and_defaults() {
        let config: DirectusConfig = serde_json::from_str(
            r#"{"url":"http://cms.internal","allow_insecure_http":true,"timeout_ms":5000}"#,
        )
        .unwrap();
        assert_eq!(config.mode, DirectusMode::Json);
        assert!(config.fields.is_empty());
        assert!(config.client.allow_insecure_http);
        assert_eq!(config.client.timeout_ms, Some(5000));
        let back: DirectusConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }
}
