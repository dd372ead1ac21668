//! [`LinkUtmConfig`]: where the LinkUTM API lives, the workspace sessions act in, where
//! the Google OAuth flow lands, and the HTTP settings shared by every dialect.

use authmux_core::{AuthError, ClientOptions};
use serde::{Deserialize, Serialize};
use url::Url;

/// Settings of a [`LinkUtmProvider`](crate::LinkUtmProvider).
///
/// Serializes as one flat object, e.g.
/// `{"url": "https://api.linkutm.com", "workspace": "acme", "timeout_ms": 10000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkUtmConfig {
    /// The API's base URL, e.g. `https://api.linkutm.com` (the adapter appends
    /// `/api/v1/auth/...`; a path prefix in the URL is kept).
    pub url: Url,
    /// The workspace (uuid or slug) sessions act in. When set, every session this
    /// provider creates carries it, and authorized requests sent through the session
    /// manager carry `x-workspace-id: <workspace>`. Auth calls never send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The front-end the server redirects to at the end of Google OAuth
    /// (`<frontend_url>/auth/google/callback?token=<jwt>`). When set, a callback URL of
    /// another origin is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_url: Option<Url>,
    /// HTTP settings (timeout, `User-Agent`, insecure-http opt-in).
    #[serde(flatten)]
    pub client: ClientOptions,
}

impl LinkUtmConfig {
    /// A configuration for the API at `url`, with no workspace, no front-end URL and
    /// default HTTP settings.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            workspace: None,
            frontend_url: None,
            client: ClientOptions::default(),
        }
    }

    /// Sets the workspace (uuid or slug).
    #[must_use]
    pub fn with_workspace(mut self, workspace: impl Into<String>) -> Self {
        self.workspace = Some(workspace.into());
        self
    }

    /// Sets the front-end URL the OAuth callback lands on.
    #[must_use]
    pub fn with_frontend_url(mut self, frontend_url: Url) -> Self {
        self.frontend_url = Some(frontend_url);
        self
    }

    /// Sets the HTTP settings.
    #[must_use]
    pub fn with_client(mut self, client: ClientOptions) -> Self {
        self.client = client;
        self
    }

    /// Checks the settings: the base URL's scheme (see
    /// [`ClientOptions::check_url`]) and the workspace's shape.
    pub fn check(&self) -> Result<(), AuthError> {
        self.client.check_url(&self.url)?;
        if let Some(workspace) = &self.workspace {
            check_workspace(workspace)?;
        }
        Ok(())
    }
}

/// Checks that a workspace id or slug can travel in the `x-workspace-id` header:
/// non-empty, at most 200 characters, visible ASCII without spaces.
pub fn check_workspace(workspace: &str) -> Result<(), AuthError> {
    if workspace.is_empty() {
        return Err(AuthError::validation(
            "workspace",
            "the workspace id or slug is empty",
        ));
    }
    if workspace.len() > 200 || !workspace.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::validation(
            "workspace",
            "a workspace id or slug is at most 200 visible ASCII characters without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_flat_and_round_trips() {
        let config = LinkUtmConfig::new(Url::parse("https://api.linkutm.com").unwrap())
            .with_workspace("acme")
            .with_frontend_url(Url::parse("https://app.linkutm.com").unwrap());
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["workspace"], "acme");
        assert_eq!(json["allow_insecure_http"], false);
        let back: LinkUtmConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        let minimal: LinkUtmConfig =
            serde_json::from_str(r#"{"url": "https://api.linkutm.com", "timeout_ms": 5}"#).unwrap();
        assert_eq!(minimal.workspace, None);
        assert_eq!(minimal.client.timeout_ms, Some(5));
    }

    #[test]
    fn workspace_shape_is_checked() {
        assert!(check_workspace("2f1c9a0e-8a44-4b8e-9d7c-1c2a3b4c5d6e").is_ok());
        assert!(check_workspace("my-team").is_ok());
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(201)] {
            let err = check_workspace(bad).unwrap_err();
            assert!(
                matches!(&err, AuthError::Validation { field: Some(f), .. } if f == "workspace"),
                "{bad:?}: {err:?}"
            );
        }
        let config = LinkUtmConfig::new(Url::parse("http://api.linkutm.com").unwrap());
        assert!(matches!(
            config.check(),
            Err(AuthError::InsecureTransport { .. })
        ));
    }
}
