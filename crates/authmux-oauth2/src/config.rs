//! [`OAuth2Config`]: what an [`OAuth2Provider`](crate::OAuth2Provider) is built from,
//! with [`ClientSecret`], [`ClientAuth`] and [`Endpoints`].

use std::fmt;
use std::sync::Arc;

use authmux_core::{AuthError, ClientOptions};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;
use zeroize::Zeroizing;

/// The path of the loopback redirect URI by default: `http://127.0.0.1:<port>/callback`.
pub const DEFAULT_REDIRECT_PATH: &str = "/callback";

/// A client secret. `Debug` prints `ClientSecret(** redacted **)`; the text is zeroized
/// when the last clone is dropped and reachable only through
/// [`ClientSecret::expose_secret`]. It deserializes (a config file may hold one) but is
/// never serialized: [`OAuth2Config`] skips it, so a saved config never holds the secret
/// (name an environment variable with [`OAuth2Config::client_secret_env`] instead).
///
/// ```
/// use authmux_oauth2::ClientSecret;
/// let secret = ClientSecret::new("s3cr3t");
/// assert_eq!(format!("{secret:?}"), "ClientSecret(** redacted **)");
/// ```
#[derive(Clone)]
pub struct ClientSecret(Arc<Zeroizing<String>>);

impl ClientSecret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(text.into())))
    }

    /// The secret text: only for the token request that sends it.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(** redacted **)")
    }
}

impl PartialEq for ClientSecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for ClientSecret {}

impl<'de> Deserialize<'de> for ClientSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        Ok(Self::new(text.as_str()))
    }
}

/// How the client authenticates at the token, device and revocation endpoints when it
/// has a secret (RFC 6749 §2.3.1). A client without a secret (a public, native client)
/// sends only its `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Endpoints given explicitly, for plain OAuth 2.0 servers without discovery. Only
/// `token` is required; a grant or call whose endpoint is missing is
/// [`AuthError::Unsupported`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The authorization endpoint (authorization code grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Url>,
    /// The token endpoint.
    pub token: Url,
    /// The device authorization endpoint (RFC 8628).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization: Option<Url>,
    /// The revocation endpoint (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Url>,
    /// The OIDC userinfo endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo: Option<Url>,
    /// The issuer's JWKS, for verifying ID tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Url>,
}

/// Settings of an [`OAuth2Provider`](crate::OAuth2Provider).
///
/// With no [`endpoints`](OAuth2Config::endpoints), the provider reads them from
/// `<url>/.well-known/openid-configuration` (OpenID Connect Discovery) the first time it
/// needs one, and checks that the document names `url` as its issuer.
///
/// ```
/// use authmux_oauth2::{ClientAuth, OAuth2Config};
///
/// let config: OAuth2Config = serde_json::from_str(
///     r#"{"url": "https://login.example.com", "client_id": "cli",
///         "client_secret_env": "EXAMPLE_SECRET", "scopes": ["openid", "offline_access"]}"#,
/// ).unwrap();
/// assert_eq!(config.client_auth, ClientAuth::ClientSecretBasic);
/// assert!(config.endpoints.is_none());
/// // The secret itself is never written back out.
/// let saved = serde_json::to_string(&config.clone().with_client_secret("s3cr3t")).unwrap();
/// assert!(!saved.contains("s3cr3t"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Config {
    /// The issuer URL (OpenID Connect), or the authorization server's base URL when
    /// `endpoints` are given.
    #[serde(alias = "issuer")]
    pub url: Url,
    /// The client id (required to build a provider; defaults to empty so that a config
    /// can be completed after parsing).
    #[serde(default)]
    pub client_id: String,
    /// The client secret (confidential clients). Never serialized.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<ClientSecret>,
    /// The name of an environment variable holding the client secret, read every time
    /// the secret is needed (so only the variable's name is ever saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// How the secret is sent (default `client_secret_basic`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The scopes to ask for (default `openid`). Add `offline_access` for a refresh
    /// token from OpenID providers.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The `audience` parameter some servers (Auth0) want on token requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The `resource` indicator (RFC 8707) sent on authorization and token requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Explicit endpoints (plain OAuth 2.0); `None` means discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Allows the resource owner password grant for `login(credentials)` (legacy; off by
    /// default, and OAuth 2.1 drops it).
    #[serde(default)]
    pub password_grant: bool,
    /// The path of the loopback redirect URI (default `/callback`): register
    /// `http://127.0.0.1/callback` with the server, any port (RFC 8252 §7.3).
    #[serde(default = "default_redirect_path")]
    pub redirect_path: String,
    /// The API the access tokens are for. Sessions are bound to its origin, so the
    /// session manager sends the token there (and nowhere else). Default: `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<Url>,
    /// HTTP settings shared by every dialect.
    #[serde(flatten)]
    pub client: ClientOptions,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}

fn default_redirect_path() -> String {
    DEFAULT_REDIRECT_PATH.to_owned()
}

impl OAuth2Config {
    /// A config for the issuer at `url` and the public client `client_id`: discovery,
    /// scope `openid`, no secret.
    pub fn new(url: Url, client_id: impl Into<String>) -> Self {
        Self {
            url,
            client_id: client_id.into(),
            client_secret: None,
            client_secret_env: None,
            client_auth: ClientAuth::default(),
            scopes: default_scopes(),
            audience: None,
            resource: None,
            endpoints: None,
            password_grant: false,
            redirect_path: default_redirect_path(),
            api_url: None,
            client: ClientOptions::default(),
        }
    }

    /// Sets the client secret.
    #[must_use]
    pub fn with_client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(ClientSecret::new(secret));
        self
    }

    /// Reads the client secret from the environment variable `name` whenever needed.
    #[must_use]
    pub fn with_client_secret_env(mut self, name: impl Into<String>) -> Self {
        self.client_secret_env = Some(name.into());
        self
    }

    /// Sets how the secret is sent.
    #[must_use]
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Uses explicit endpoints instead of discovery.
    #[must_use]
    pub fn with_endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = Some(endpoints);
        self
    }

    /// Allows (or not) the resource owner password grant for `login`.
    #[must_use]
    pub fn with_password_grant(mut self, allowed: bool) -> Self {
        self.password_grant = allowed;
        self
    }

    /// Sets the `audience` parameter.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the `resource` indicator.
    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Binds sessions to the API at `url` (see [`OAuth2Config::api_url`]).
    #[must_use]
    pub fn with_api_url(mut self, url: Url) -> Self {
        self.api_url = Some(url);
        self
    }

    /// The scopes as the space-separated `scope` parameter.
    pub fn scope_param(&self) -> String {
        self.scopes.join(" ")
    }

    /// The client secret: the configured one, else the environment variable named by
    /// `client_secret_env` (read now). A named variable that is unset is an error.
    pub fn secret(&self) -> Result<Option<ClientSecret>, AuthError> {
        if let Some(secret) = &self.client_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(name) = &self.client_secret_env else {
            return Ok(None);
        };
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Ok(Some(ClientSecret::new(value))),
            _ => Err(AuthError::validation(
                "client_secret_env",
                format!("the environment variable {name} holding the client secret is not set"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_round_trip_and_never_serialize_the_secret() {
        let config: OAuth2Config = serde_json::from_str(
            r#"{"issuer":"http://127.0.0.1:9/","client_id":"c","client_secret":"top-secret-1",
                "client_auth":"client_secret_post","timeout_ms":5000}"#,
        )
        .unwrap();
        assert_eq!(config.client_auth, ClientAuth::ClientSecretPost);
        assert_eq!(config.scopes, ["openid"]);
        assert_eq!(config.redirect_path, "/callback");
        assert_eq!(config.client.timeout_ms, Some(5000));
        assert!(!format!("{config:?}").contains("top-secret-1"));
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("top-secret-1"), "{json}");
        let back: OAuth2Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back.client_secret, None);
        assert_eq!(back.with_client_secret("top-secret-1"), config);
    }

    #[test]
    fn secret_from_a_missing_environment_variable_is_a_typed_error() {
        let config = OAuth2Config::new("https://x.example".parse().unwrap(), "c")
            .with_client_secret_env("AUTHMUX_OAUTH2_TEST_SURELY_UNSET");
        let err = config.secret().unwrap_err();
        assert!(matches!(err, AuthError::Validation { .. }), "{err:?}");
        assert!(err.to_string().contains("AUTHMUX_OAUTH2_TEST_SURELY_UNSET"));
    }
}
