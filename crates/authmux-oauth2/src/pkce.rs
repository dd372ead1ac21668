//! PKCE (RFC 7636, method `S256`), `state` and `nonce` values, and
//! [`AuthorizationRequest`]: one started authorization code flow.
//!
//! Every random value is 32 bytes from aws-lc-rs's CSPRNG, base64url-encoded without
//! padding (43 characters, inside RFC 7636's 43..=128 for the verifier).

use std::fmt;

use authmux_core::AuthError;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;
use zeroize::Zeroizing;

/// 32 random bytes, base64url without padding.
pub(crate) fn random_token() -> Result<String, AuthError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice())
        .map_err(|_| AuthError::protocol("the system random number generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes.as_slice()))
}

/// The S256 code challenge of a verifier: `BASE64URL(SHA256(verifier))`.
///
/// ```
/// // RFC 7636 Appendix B.
/// assert_eq!(
///     authmux_oauth2::pkce::s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
/// );
/// ```
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

/// A started authorization code flow: the URL to open in a browser, and what completing
/// it needs (the `state` to check, the PKCE verifier, the nonce, the redirect URI).
///
/// Keep it in memory until the callback arrives; its `Debug` hides the verifier.
#[derive(Clone)]
pub struct AuthorizationRequest {
    pub(crate) url: Url,
    pub(crate) state: String,
    pub(crate) verifier: Zeroizing<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) redirect_uri: Url,
}

impl AuthorizationRequest {
    /// The authorization URL to open in the browser.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The redirect URI the server will send the browser back to.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The `state` value the callback must carry back.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The `nonce` sent (OpenID Connect), which the ID token must carry back.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("verifier", &"** redacted **")
            .finish_non_exhaustive()
    }
}

/// What a callback URL says: a code (with the state it carried), or an error.
#[derive(Debug)]
pub(crate) enum Callback {
    Code { code: Zeroizing<String> },
    Error(AuthError),
}

/// Reads the callback URL of `request`: checks that it is for the request's redirect URI
/// and carries its `state` (compared in constant time), then returns the code or the
/// authorization server's error (RFC 6749 §4.1.2.1).
pub(crate) fn read_callback(
    request: &AuthorizationRequest,
    callback: &Url,
) -> Result<Callback, AuthError> {
    let expected = &request.redirect_uri;
    if callback.origin() != expected.origin() || callback.path() != expected.path() {
        return Err(AuthError::validation(
            "callback",
            "the callback is not for this authorization request's redirect URI",
        ));
    }
    let mut state = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    for (key, value) in callback.query_pairs() {
        match key.as_ref() {
            "state" => state = Some(value.into_owned()),
            "code" => code = Some(Zeroizing::new(value.into_owned())),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    let state_matches = state
        .as_deref()
        .is_some_and(|s| constant_time_eq(s.as_bytes(), request.state.as_bytes()));
    if !state_matches {
        return Err(AuthError::validation(
            "state",
            "the callback's state does not match the authorization request (a forged or stale redirect)",
        ));
    }
    if let Some(error) = error {
        let message =
            authmux_core::error::sanitize_message(description.as_deref().unwrap_or(error.as_str()));
        let mapped = match error.as_str() {
            "access_denied" => AuthError::Forbidden {
                message: Some(message),
            },
            "invalid_scope" => AuthError::validation("scope", message),
            "temporarily_unavailable" => AuthError::Server {
                status: 503,
                code: Some(error),
                message: Some(message),
                retry_after: None,
            },
            "server_error" => AuthError::Server {
                status: 500,
                code: Some(error),
                message: Some(message),
                retry_after: None,
            },
            _ => AuthError::Validation {
                field: None,
                message,
            },
        };
        return Ok(Callback::Error(mapped));
    }
    match code.filter(|c| !c.is_empty()) {
        Some(code) => Ok(Callback::Code { code }),
        None => Err(AuthError::protocol(
            "the callback carries neither a code nor an error",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            url: "https://as.example/auth".parse().unwrap(),
            state: "state-1".into(),
            verifier: Zeroizing::new("v".repeat(43)),
            nonce: None,
            redirect_uri: "http://127.0.0.1:4000/callback".parse().unwrap(),
        }
    }

    #[test]
    fn random_tokens_are_43_url_safe_characters_and_differ() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, random_token().unwrap());
    }

    #[test]
    fn callbacks_are_checked() {
        let r = request();
        let ok = Url::parse("http://127.0.0.1:4000/callback?code=c1&state=state-1").unwrap();
        assert!(
            matches!(read_callback(&r, &ok), Ok(Callback::Code { code }) if code.as_str() == "c1")
        );
        let wrong_state = Url::parse("http://127.0.0.1:4000/callback?code=c1&state=x").unwrap();
        assert!(matches!(
            read_callback(&r, &wrong_state),
            Err(AuthError::Validation { field: Some(f), .. }) if f == "state"
        ));
        let no_state = Url::parse("http://127.0.0.1:4000/callback?code=c1").unwrap();
        assert!(read_callback(&r, &no_state).is_err());
        let other_port =
            Url::parse("http://127.0.0.1:4001/callback?code=c1&state=state-1").unwrap();
        assert!(read_callback(&r, &other_port).is_err());
        let denied =
            Url::parse("http://127.0.0.1:4000/callback?error=access_denied&state=state-1").unwrap();
        assert!(matches!(
            read_callback(&r, &denied),
            Ok(Callback::Error(AuthError::Forbidden { .. }))
        ));
        assert!(!format!("{r:?}").contains(&"v".repeat(43)));
    }
}
