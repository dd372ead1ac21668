//! [`ProviderConfig`]: one serde value that names a dialect and holds that dialect's
//! configuration, so that switching backends is a change of configuration, not of code.
//!
//! ```
//! use authmux::ProviderConfig;
//!
//! let config: ProviderConfig =
//!     r#"{"dialect": "directus", "url": "https://cms.example.com", "mode": "cookie"}"#.parse()?;
//! assert_eq!(config.dialect(), "directus");
//! assert_eq!(config.url().as_str(), "https://cms.example.com/");
//! // The same shape for every dialect: `dialect`, `url`, the dialect's own options and
//! // the shared HTTP settings (`allow_insecure_http`, `timeout_ms`, `user_agent`).
//! let linxio: ProviderConfig =
//!     r#"{"dialect": "linxio", "url": "https://api.linxio.example", "timeout_ms": 5000}"#.parse()?;
//! assert_eq!(linxio.client().timeout_ms, Some(5000));
//! # Ok::<(), authmux::AuthError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use authmux_core::error::sanitize_message;
use authmux_core::{AuthError, AuthProvider, ClientOptions, Clock, Transport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// Every dialect authmux knows, whether or not its feature is enabled in this build.
pub const DIALECTS: [&str; 4] = ["linxio", "linkutm", "directus", "oauth2"];

/// Whether `dialect`'s feature is enabled in this build.
fn enabled(dialect: &str) -> bool {
    (dialect == "linxio" && cfg!(feature = "linxio"))
        || (dialect == "linkutm" && cfg!(feature = "linkutm"))
        || (dialect == "directus" && cfg!(feature = "directus"))
        || (dialect == "oauth2" && cfg!(feature = "oauth2"))
}

/// Which backend to talk to and how: a dialect's configuration, tagged by `dialect`.
///
/// Serializes as the dialect's own configuration object with a `dialect` field added,
/// e.g. `{"dialect": "directus", "url": "https://cms.example.com", "mode": "cookie"}`.
/// [`ProviderConfig::build`] turns it into an `Arc<dyn AuthProvider>` for a
/// [`SessionManager`](authmux_core::SessionManager).
///
/// Parse it with [`ProviderConfig::from_json`] (or `str::parse`) rather than with
/// `serde_json` directly when the text comes from a user: those report an unknown or
/// missing dialect as a typed [`AuthError::Validation`] on `dialect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "dialect")]
#[non_exhaustive]
pub enum ProviderConfig {
    /// A Linxio API (feature `linxio`).
    #[cfg(feature = "linxio")]
    #[serde(rename = "linxio")]
    Linxio(authmux_linxio::LinxioConfig),
    /// A LinkUTM API (feature `linkutm`).
    #[cfg(feature = "linkutm")]
    #[serde(rename = "linkutm")]
    LinkUtm(authmux_linkutm::LinkUtmConfig),
    /// A Directus server (feature `directus`).
    #[cfg(feature = "directus")]
    #[serde(rename = "directus")]
    Directus(authmux_directus::DirectusConfig),
    /// A standard OAuth 2.0 / OpenID Connect server (feature `oauth2`). Boxed: its
    /// configuration is much larger than the others'.
    #[cfg(feature = "oauth2")]
    #[serde(rename = "oauth2")]
    OAuth2(Box<authmux_oauth2::OAuth2Config>),
}

/// What [`ProviderConfig::build_with`] plugs into the provider instead of the defaults.
#[derive(Clone, Default)]
pub struct BuildOptions {
    transport: Option<Arc<dyn Transport>>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("transport", &self.transport.as_ref().map(|_| "custom"))
            .field("clock", &self.clock)
            .finish()
    }
}

impl BuildOptions {
    /// The defaults: the reqwest transport built from the config's
    /// [`ClientOptions`], and the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends through `transport` instead of the default one.
    #[must_use]
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Stamps tokens with `clock` instead of the system clock. Give the session manager
    /// the same clock (tests and demos use a `ManualClock`).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
}

impl ProviderConfig {
    /// The configuration of `dialect` for the backend at `url`, with that dialect's
    /// defaults. An unknown dialect, or one whose feature is disabled, is
    /// [`AuthError::Validation`] on `dialect`.
    pub fn new(dialect: &str, url: Url) -> Result<Self, AuthError> {
        check_dialect(dialect)?;
        match dialect {
            #[cfg(feature = "linxio")]
            "linxio" => Ok(Self::Linxio(authmux_linxio::LinxioConfig::new(url))),
            #[cfg(feature = "linkutm")]
            "linkutm" => Ok(Self::LinkUtm(authmux_linkutm::LinkUtmConfig::new(url))),
            #[cfg(feature = "directus")]
            "directus" => Ok(Self::Directus(authmux_directus::DirectusConfig::new(url))),
            // The client id has no default: set it before building (an empty one is
            // refused then).
            #[cfg(feature = "oauth2")]
            "oauth2" => Ok(Self::OAuth2(Box::new(authmux_oauth2::OAuth2Config::new(
                url,
                String::new(),
            )))),
            other => Err(unknown_dialect(other)),
        }
    }

    /// Reads a configuration from JSON text (see [`ProviderConfig::from_value`]).
    pub fn from_json(text: &str) -> Result<Self, AuthError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde_json's syntax errors name a position, never the text.
            AuthError::validation("config", format!("not valid JSON: {e}"))
        })?;
        Self::from_value(value)
    }

    /// Reads a configuration from a JSON value. A missing, unknown or disabled
    /// `dialect` is [`AuthError::Validation`] on `dialect`; any other problem (a bad
    /// URL, a wrong option) is [`AuthError::Validation`] on `config`.
    pub fn from_value(value: Value) -> Result<Self, AuthError> {
        let Some(object) = value.as_object() else {
            return Err(AuthError::validation(
                "config",
                "expected a JSON object with a `dialect` and a `url`",
            ));
        };
        match object.get("dialect") {
            Some(Value::String(dialect)) => check_dialect(dialect)?,
            Some(_) => {
                return Err(AuthError::validation(
                    "dialect",
                    format!("`dialect` must be a string, one of {}", DIALECTS.join(", ")),
                ));
            }
            None => {
                return Err(AuthError::validation(
                    "dialect",
                    format!("missing `dialect`; expected one of {}", DIALECTS.join(", ")),
                ));
            }
        }
        serde_json::from_value(value)
            .map_err(|e| AuthError::validation("config", sanitize_message(&e.to_string())))
    }

    /// The configuration as JSON text (with its `dialect` field).
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The dialect's name: `"linxio"`, `"linkutm"`, `"directus"` or `"oauth2"`.
    pub fn dialect(&self) -> &'static str {
        match self {
            #[cfg(feature = "linxio")]
            Self::Linxio(_) => authmux_linxio::DIALECT,
            #[cfg(feature = "linkutm")]
            Self::LinkUtm(_) => authmux_linkutm::DIALECT,
            #[cfg(feature = "directus")]
            Self::Directus(_) => authmux_directus::DIALECT,
            #[cfg(feature = "oauth2")]
            Self::OAuth2(_) => authmux_oauth2::DIALECT,
        }
    }

    /// The backend's base URL.
    pub fn url(&self) -> &Url {
        match self {
            #[cfg(feature = "linxio")]
            Self::Linxio(c) => &c.url,
            #[cfg(feature = "linkutm")]
            Self::LinkUtm(c) => &c.url,
            #[cfg(feature = "directus")]
            Self::Directus(c) => &c.url,
            #[cfg(feature = "oauth2")]
            Self::OAuth2(c) => &c.url,
        }
    }

    /// The HTTP settings shared by every dialect.
    pub fn client(&self) -> &ClientOptions {
        match self {
            #[cfg(feature = "linxio")]
            Self::Linxio(c) => &c.client,
            #[cfg(feature = "linkutm")]
            Self::LinkUtm(c) => &c.client,
            #[cfg(feature = "directus")]
            Self::Directus(c) => &c.client,
            #[cfg(feature = "oauth2")]
            Self::OAuth2(c) => &c.client,
        }
    }

    /// The HTTP settings, to change (e.g. `allow_insecure_http`, `timeout_ms`).
    pub fn client_mut(&mut self) -> &mut ClientOptions {
        match self {
            #[cfg(feature = "linxio")]
            Self::Linxio(c) => &mut c.client,
            #[cfg(feature = "linkutm")]
            Self::LinkUtm(c) => &mut c.client,
            #[cfg(feature = "directus")]
            Self::Directus(c) => &mut c.client,
            #[cfg(feature = "oauth2")]
            Self::OAuth2(c) => &mut c.client,
        }
    }

    /// Builds the provider with the default transport (hyper-util, rustls) and the system
    /// clock. Plain `http://` to a non-loopback host is refused
    /// ([`AuthError::InsecureTransport`]) unless `allow_insecure_http` is set.
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    pub fn build(&self) -> Result<Arc<dyn AuthProvider>, AuthError> {
        self.build_with(BuildOptions::default())
    }

    /// Builds the provider with a custom transport and/or clock. The URL is checked
    /// first, so a refused URL never reaches a transport. Without the `hyper` and `reqwest` features a
    /// transport must be given.
    pub fn build_with(&self, options: BuildOptions) -> Result<Arc<dyn AuthProvider>, AuthError> {
        self.client().check_url(self.url())?;
        let transport = match options.transport {
            Some(transport) => transport,
            None => self.default_transport()?,
        };
        let clock = options.clock;
        Ok(match self {
            #[cfg(feature = "linxio")]
            Self::Linxio(c) => {
                let provider =
                    authmux_linxio::LinxioProvider::with_transport(c.clone(), transport)?;
                match clock {
                    Some(clock) => Arc::new(provider.with_clock(clock)),
                    None => Arc::new(provider),
                }
            }
            #[cfg(feature = "linkutm")]
            Self::LinkUtm(c) => {
                let provider =
                    authmux_linkutm::LinkUtmProvider::with_transport(c.clone(), transport)?;
                match clock {
                    Some(clock) => Arc::new(provider.with_clock(clock)),
                    None => Arc::new(provider),
                }
            }
            #[cfg(feature = "directus")]
            Self::Directus(c) => {
                let provider =
                    authmux_directus::DirectusProvider::with_transport(c.clone(), transport)?;
                match clock {
                    Some(clock) => Arc::new(provider.with_clock(clock)),
                    None => Arc::new(provider),
                }
            }
            #[cfg(feature = "oauth2")]
            Self::OAuth2(c) => {
                let provider =
                    authmux_oauth2::OAuth2Provider::with_transport((**c).clone(), transport)?;
                match clock {
                    Some(clock) => Arc::new(provider.with_clock(clock)),
                    None => Arc::new(provider),
                }
            }
        })
    }

    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    fn default_transport(&self) -> Result<Arc<dyn Transport>, AuthError> {
        self.client().build_transport()
    }

    #[cfg(not(any(feature = "hyper", feature = "reqwest")))]
    fn default_transport(&self) -> Result<Arc<dyn Transport>, AuthError> {
        Err(AuthError::Unsupported {
            capability: "default transport (enable the `hyper` or `reqwest` feature, or pass one in BuildOptions)",
        })
    }
}

impl FromStr for ProviderConfig {
    type Err = AuthError;

    /// Parses JSON text, as [`ProviderConfig::from_json`].
    fn from_str(text: &str) -> Result<Self, AuthError> {
        Self::from_json(text)
    }
}

#[cfg(feature = "linxio")]
impl From<authmux_linxio::LinxioConfig> for ProviderConfig {
    fn from(config: authmux_linxio::LinxioConfig) -> Self {
        Self::Linxio(config)
    }
}

#[cfg(feature = "linkutm")]
impl From<authmux_linkutm::LinkUtmConfig> for ProviderConfig {
    fn from(config: authmux_linkutm::LinkUtmConfig) -> Self {
        Self::LinkUtm(config)
    }
}

#[cfg(feature = "directus")]
impl From<authmux_directus::DirectusConfig> for ProviderConfig {
    fn from(config: authmux_directus::DirectusConfig) -> Self {
        Self::Directus(config)
    }
}

#[cfg(feature = "oauth2")]
impl From<authmux_oauth2::OAuth2Config> for ProviderConfig {
    fn from(config: authmux_oauth2::OAuth2Config) -> Self {
        Self::OAuth2(Box::new(config))
    }
}

fn check_dialect(dialect: &str) -> Result<(), AuthError> {
    if enabled(dialect) {
        Ok(())
    } else if DIALECTS.contains(&dialect) {
        Err(AuthError::validation(
            "dialect",
            format!(
                "the dialect {dialect:?} is not compiled in; enable the authmux feature {dialect:?}"
            ),
        ))
    } else {
        Err(unknown_dialect(dialect))
    }
}

fn unknown_dialect(dialect: &str) -> AuthError {
    let shown: String = dialect.chars().take(40).collect();
    AuthError::validation(
        "dialect",
        format!(
            "unknown dialect {:?}; expected one of {}",
            sanitize_message(&shown),
            DIALECTS.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: &AuthError) -> Option<&str> {
        match error {
            AuthError::Validation { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn each_dialect_round_trips_with_its_options() {
        let texts = [
            r#"{"dialect":"linxio","url":"https://api.linxio.example/v2/","domain":"acme","fields":["email"],"timeout_ms":1500}"#,
            r#"{"dialect":"linkutm","url":"https://api.linkutm.example/","workspace":"team-1","user_agent":"me/1"}"#,
            r#"{"dialect":"directus","url":"https://cms.example.com/","mode":"cookie","allow_insecure_http":true}"#,
        ];
        for text in texts {
            let config = ProviderConfig::from_json(text).unwrap();
            let json = config.to_json();
            let back: ProviderConfig = json.parse().unwrap();
            assert_eq!(back, config, "{text}");
            let value: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["dialect"], config.dialect());
            assert_eq!(value["url"], config.url().as_str());
        }
    }

    #[test]
    fn options_land_in_the_dialects_config() {
        let config = ProviderConfig::from_json(
            r#"{"dialect":"directus","url":"https://cms.example.com","mode":"cookie"}"#,
        )
        .unwrap();
        match &config {
            ProviderConfig::Directus(c) => {
                assert_eq!(c.mode, authmux_directus::DirectusMode::Cookie);
            }
            other => panic!("expected directus, got {other:?}"),
        }
        let config = ProviderConfig::from_json(
            r#"{"dialect":"linxio","url":"https://x.example","domain":"acme","timeout_ms":10}"#,
        )
        .unwrap();
        assert_eq!(config.client().timeout_ms, Some(10));
        match &config {
            ProviderConfig::Linxio(c) => assert_eq!(c.domain.as_deref(), Some("acme")),
            other => panic!("expected linxio, got {other:?}"),
        }
        let config = ProviderConfig::from_json(
            r#"{"dialect":"linkutm","url":"https://x.example","workspace":"w1"}"#,
        )
        .unwrap();
        match &config {
            ProviderConfig::LinkUtm(c) => assert_eq!(c.workspace.as_deref(), Some("w1")),
            other => panic!("expected linkutm, got {other:?}"),
        }
    }

    #[test]
    fn new_matches_parsing_and_sets_defaults() {
        for dialect in DIALECTS {
            let url = Url::parse("https://auth.example.com").unwrap();
            let config = ProviderConfig::new(dialect, url.clone()).unwrap();
            assert_eq!(config.dialect(), dialect);
            assert_eq!(config.url(), &url);
            assert_eq!(config.client(), &ClientOptions::default());
            let parsed = ProviderConfig::from_json(&format!(
                r#"{{"dialect":"{dialect}","url":"https://auth.example.com"}}"#
            ))
            .unwrap();
            assert_eq!(parsed, config);
        }
    }

    #[cfg(feature = "oauth2")]
    #[test]
    fn an_oauth2_config_needs_a_client_id_to_build() {
        let config: ProviderConfig = r#"{"dialect":"oauth2","url":"https://login.example.com","client_id":"cli","scopes":["openid"]}"#
            .parse()
            .unwrap();
        assert_eq!(config.dialect(), "oauth2");
        assert_eq!(config.build().unwrap().dialect(), "oauth2");
        let without =
            ProviderConfig::new("oauth2", Url::parse("https://login.example.com").unwrap())
                .unwrap();
        assert_eq!(field_of(&without.build().unwrap_err()), Some("client_id"));
    }

    #[test]
    fn unknown_missing_or_malformed_dialect_is_a_typed_error() {
        let unknown = ProviderConfig::from_json(r#"{"dialect":"okta","url":"https://x.example"}"#)
            .unwrap_err();
        assert_eq!(field_of(&unknown), Some("dialect"), "{unknown:?}");
        assert!(unknown.to_string().contains("okta"), "{unknown}");
        assert!(
            unknown
                .to_string()
                .contains("linxio, linkutm, directus, oauth2")
        );
        let new_unknown =
            ProviderConfig::new("okta", Url::parse("https://x.example").unwrap()).unwrap_err();
        assert_eq!(field_of(&new_unknown), Some("dialect"));
        let missing = ProviderConfig::from_json(r#"{"url":"https://x.example"}"#).unwrap_err();
        assert_eq!(field_of(&missing), Some("dialect"));
        let not_string =
            ProviderConfig::from_json(r#"{"dialect":7,"url":"https://x.example"}"#).unwrap_err();
        assert_eq!(field_of(&not_string), Some("dialect"));
        let not_object = ProviderConfig::from_json("[1]").unwrap_err();
        assert_eq!(field_of(&not_object), Some("config"));
        let not_json = ProviderConfig::from_json("{dialect").unwrap_err();
        assert_eq!(field_of(&not_json), Some("config"));
        // Plain serde agrees that an unknown dialect is an error.
        assert!(
            serde_json::from_str::<ProviderConfig>(r#"{"dialect":"okta","url":"https://x"}"#)
                .is_err()
        );
    }

    #[test]
    fn bad_url_or_option_is_a_config_error() {
        for text in [
            r#"{"dialect":"linxio","url":"not a url"}"#,
            r#"{"dialect":"linxio"}"#,
            r#"{"dialect":"directus","url":"https://x.example","mode":"bogus"}"#,
            r#"{"dialect":"linkutm","url":"https://x.example","timeout_ms":"soon"}"#,
        ] {
            let error = ProviderConfig::from_json(text).unwrap_err();
            assert_eq!(field_of(&error), Some("config"), "{text}: {error:?}");
        }
    }

    /// `ProviderConfig::new` plus what a dialect cannot default (the OAuth 2.0 client id).
    fn buildable(dialect: &str, url: &str) -> ProviderConfig {
        let mut config = ProviderConfig::new(dialect, Url::parse(url).unwrap()).unwrap();
        #[cfg(feature = "oauth2")]
        if let ProviderConfig::OAuth2(c) = &mut config {
            "authmux-cli".clone_into(&mut c.client_id);
        }
        config
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_or_opted_in() {
        for dialect in DIALECTS {
            let remote = buildable(dialect, "http://auth.example.com");
            let error = remote.build().unwrap_err();
            assert!(
                matches!(error, AuthError::InsecureTransport { .. }),
                "{dialect}: {error:?}"
            );
            let mut opted_in = remote.clone();
            opted_in.client_mut().allow_insecure_http = true;
            let provider = opted_in.build().unwrap();
            assert_eq!(provider.dialect(), dialect);
            let loopback = buildable(dialect, "http://127.0.0.1:9");
            assert_eq!(
                loopback.build().unwrap().base_url().as_str(),
                "http://127.0.0.1:9/"
            );
            let ftp = buildable(dialect, "ftp://auth.example.com");
            assert!(matches!(ftp.build(), Err(AuthError::Validation { .. })));
        }
    }

    #[test]
    fn the_refusal_happens_before_any_transport_is_used() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let transport = Arc::new(authmux_core::transport::from_fn(
            move |_req: http::Request<bytes::Bytes>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<http::Response<bytes::Bytes>, _>(AuthError::Timeout) }
            },
        ));
        let config =
            ProviderConfig::new("directus", Url::parse("http://cms.example.com").unwrap()).unwrap();
        let error = config
            .build_with(BuildOptions::new().transport(transport))
            .unwrap_err();
        assert!(matches!(error, AuthError::InsecureTransport { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
