//! [`TokenSet`]: the tokens of a session and when they expire.
//!
//! Expiry comes from the first source that has it, in this order (see [`Expiry`]):
//! an absolute timestamp from the server (Linxio `expireAt`), a relative lifetime
//! (Directus `expires`, in milliseconds), the JWT's `exp` claim. With none, the expiry
//! is unknown and the token is refreshed only when the server answers 401.
//!
//! Reading `exp`/`iat` from a JWT is done WITHOUT verifying its signature
//! ([`jwt_hint`]): the client cannot verify it anyway, and the values are only a hint
//! about when to refresh, never a trust decision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, RefreshToken};

/// The tokens of a signed-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The bearer token sent on authorized requests.
    pub access: AccessToken,
    /// The refresh token, for dialects that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshToken>,
    /// When the access token expires; `None` when unknown.
    #[serde(default, with = "crate::timestamp::option")]
    pub expires_at: Option<SystemTime>,
    /// When the client received the access token (its own clock).
    #[serde(with = "crate::timestamp")]
    pub issued_at: SystemTime,
}

/// What the server said about the access token's expiry, before resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// An absolute time given by the server.
    At(SystemTime),
    /// A lifetime counted from when the answer was received.
    In(Duration),
    /// Nothing: fall back to the JWT's `exp`, else unknown.
    #[default]
    Unstated,
}

impl TokenSet {
    /// Builds a token set received at `now`, resolving the expiry in the documented
    /// order: the server's absolute time, else its relative lifetime, else the JWT's
    /// `exp`, else unknown.
    pub fn new(
        access: AccessToken,
        refresh: Option<RefreshToken>,
        expiry: Expiry,
        now: SystemTime,
    ) -> Self {
        let expires_at = match expiry {
            Expiry::At(at) => Some(at),
            Expiry::In(lifetime) => Some(now + lifetime),
            Expiry::Unstated => jwt_hint(access.expose_secret()).and_then(|h| h.expires_at),
        };
        Self {
            access,
            refresh,
            expires_at,
            issued_at: now,
        }
    }

    /// The lifetime the server granted, when the expiry is known and after issuance.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at?.duration_since(self.issued_at).ok()
    }

    /// Whether the access token is past its expiry at `now` (false when unknown).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// All claims of a JWT's payload, read WITHOUT verifying the signature: for hints such
/// as a session id (`sid`) or the subject, never for trust decisions. `None` if the text
/// is not a JWT whose payload is a JSON object.
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    // `insecure_decode` decodes the header too, so a string that merely has two dots is
    // not taken for a JWT.
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Map<String, serde_json::Value>>(token)
        .ok()
        .map(|data| data.claims)
}

/// Claims read from a JWT without verification. A hint, never a trust decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JwtHint {
    /// The `exp` claim.
    pub expires_at: Option<SystemTime>,
    /// The `iat` claim.
    pub issued_at: Option<SystemTime>,
}

/// Reads `exp` and `iat` from a JWT's payload without checking its signature.
/// Returns `None` if the text is not a JWT with a JSON payload.
///
/// ```
/// // {"alg":"HS256"} . {"exp":2000000000} . signature (not checked)
/// let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDB9.c2ln";
/// let hint = authmux_core::token::jwt_hint(jwt).unwrap();
/// assert_eq!(hint.expires_at, Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000)));
/// ```
pub fn jwt_hint(token: &str) -> Option<JwtHint> {
    let claims = jwt_claims(token)?;
    let number = |key: &str| match claims.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(()),
    };
    let to_time = |secs: Option<f64>| {
        let secs = secs?;
        (secs.is_finite() && (0.0..1e12).contains(&secs))
            .then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
    };
    let (exp, iat) = (number("exp").ok()?, number("iat").ok()?);
    Some(JwtHint {
        expires_at: to_time(exp),
        issued_at: to_time(iat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with_payload(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            base64_url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"),
            base64_url(payload)
        )
    }

    fn base64_url(text: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn expiry_sources_in_order() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let jwt = AccessToken::new(jwt_with_payload("{\"exp\":5000,\"iat\":900}"));
        let at = UNIX_EPOCH + Duration::from_secs(3_000);
        assert_eq!(
            TokenSet::new(jwt.clone(), None, Expiry::At(at), now).expires_at,
            Some(at)
        );
        let relative = TokenSet::new(
            jwt.clone(),
            None,
            Expiry::In(Duration::from_millis(900_000)),
            now,
        );
        assert_eq!(relative.expires_at, Some(now + Duration::from_secs(900)));
        assert_eq!(relative.lifetime(), Some(Duration::from_secs(900)));
        let from_jwt = TokenSet::new(jwt, None, Expiry::Unstated, now);
        assert_eq!(
            from_jwt.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(5_000))
        );
        let opaque = TokenSet::new(AccessToken::new("opaque"), None, Expiry::Unstated, now);
        assert_eq!(opaque.expires_at, None);
        assert!(!opaque.is_expired_at(now + Duration::from_secs(1 << 30)));
    }

    #[test]
    fn jwt_hint_tolerates_garbage() {
        assert_eq!(jwt_hint("not a jwt"), None);
        assert_eq!(jwt_hint(""), None);
        assert_eq!(jwt_hint(&jwt_with_payload("[1,2]")), None);
        assert_eq!(
            jwt_hint(&jwt_with_payload("{\"exp\":-5}"))
                .unwrap()
                .expires_at,
            None
        );
        assert_eq!(jwt_hint(&jwt_with_payload("{\"exp\":\"soon\"}")), None);
        assert_eq!(
            jwt_hint(&jwt_with_payload("{}")).unwrap(),
            JwtHint::default()
        );
    }
}
