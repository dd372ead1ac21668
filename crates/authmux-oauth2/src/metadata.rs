//! The authorization server's metadata ([`ServerMetadata`], from OpenID Connect Discovery
//! or explicit [`Endpoints`]) and ID token verification against the issuer's JWKS.
//!
//! An ID token's claims are trusted only after `verify_id_token`: a signature by a
//! key of the issuer's JWKS with an asymmetric algorithm (never `none` or HMAC), `iss`
//! equal to the issuer, `aud` containing the client id (and `azp`, when present, equal
//! to it), `exp` in the future by the provider's clock (60 s leeway), and the `nonce`
//! that was sent, when one was.

use std::time::{Duration, SystemTime};

use authmux_core::AuthError;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::config::Endpoints;

/// How far past `exp` an ID token is still accepted (clock skew between the client and
/// the server).
pub const ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// What the client knows about the authorization server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerMetadata {
    /// The issuer identifier; ID tokens must carry it as `iss`. `None` for a plain
    /// OAuth 2.0 server configured with explicit endpoints.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The authorization endpoint.
    #[serde(default, rename = "authorization_endpoint")]
    pub authorization: Option<Url>,
    /// The token endpoint.
    #[serde(rename = "token_endpoint")]
    pub token: Url,
    /// The device authorization endpoint.
    #[serde(default, rename = "device_authorization_endpoint")]
    pub device_authorization: Option<Url>,
    /// The revocation endpoint.
    #[serde(default, rename = "revocation_endpoint")]
    pub revocation: Option<Url>,
    /// The userinfo endpoint.
    #[serde(default, rename = "userinfo_endpoint")]
    pub userinfo: Option<Url>,
    /// The JWKS URI.
    #[serde(default, rename = "jwks_uri")]
    pub jwks: Option<Url>,
}

impl ServerMetadata {
    /// Metadata from explicit endpoints (no issuer: ID tokens cannot be verified, so
    /// they are ignored).
    pub fn from_endpoints(endpoints: &Endpoints) -> Self {
        Self {
            issuer: None,
            authorization: endpoints.authorization.clone(),
            token: endpoints.token.clone(),
            device_authorization: endpoints.device_authorization.clone(),
            revocation: endpoints.revocation.clone(),
            userinfo: endpoints.userinfo.clone(),
            jwks: endpoints.jwks.clone(),
        }
    }

    /// Every endpoint URL, for the transport check.
    pub(crate) fn urls(&self) -> impl Iterator<Item = &Url> {
        [
            Some(&self.token),
            self.authorization.as_ref(),
            self.device_authorization.as_ref(),
            self.revocation.as_ref(),
            self.userinfo.as_ref(),
            self.jwks.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

/// Whether the discovery document's `issuer` is the configured issuer URL (compared
/// without a trailing slash, which `Url` adds to a bare origin).
pub(crate) fn same_issuer(configured: &Url, issuer: &str) -> bool {
    configured.as_str().trim_end_matches('/') == issuer.trim_end_matches('/')
}

/// What an ID token must satisfy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) now: SystemTime,
}

/// Why an ID token was refused, or that the key set must be fetched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdTokenError {
    /// No key of the set has the token's `kid` (the issuer may have rotated its keys).
    UnknownKey,
    /// Refused, with the reason.
    Rejected(String),
}

impl IdTokenError {
    pub(crate) fn into_auth_error(self) -> AuthError {
        match self {
            IdTokenError::UnknownKey => AuthError::protocol(
                "ID token rejected: signed by a key the issuer does not publish",
            ),
            IdTokenError::Rejected(why) => AuthError::protocol(format!("ID token rejected: {why}")),
        }
    }
}

fn rejected(why: impl Into<String>) -> IdTokenError {
    IdTokenError::Rejected(why.into())
}

/// Verifies an ID token against `keys` and returns its claims.
pub(crate) fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    expected: Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| rejected("not a signed JWT"))?;
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(rejected(
            "symmetric (HMAC) signatures are not accepted for ID tokens",
        ));
    }
    let jwk = find_key(keys, header.kid.as_deref(), header.alg)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| rejected("the issuer's key is unusable"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    // Expiry is checked below against the provider's clock, not the system's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                rejected("the signature does not verify with the issuer's key")
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                rejected("wrong audience (not issued for this client)")
            }
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => rejected("wrong issuer"),
            jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) => {
                rejected(format!("missing the `{claim}` claim"))
            }
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                rejected("the algorithm does not match the issuer's key")
            }
            _ => rejected("malformed token"),
        },
    )?;
    let claims = data.claims;
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or_else(|| rejected("`exp` is not a number"))?;
    let expires_at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(exp.min(1e12));
    if expected.now > expires_at + ID_TOKEN_LEEWAY {
        return Err(rejected("expired"));
    }
    if let Some(azp) = claims.get("azp").and_then(Value::as_str)
        && azp != expected.client_id
    {
        return Err(rejected("`azp` names another client"));
    }
    if let Some(nonce) = expected.nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(nonce)
    {
        return Err(rejected(
            "the nonce does not match the authorization request",
        ));
    }
    Ok(claims)
}

/// The key for `kid` (or, without a `kid`, the only key usable with `alg`).
fn find_key<'k>(
    keys: &'k JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'k Jwk, IdTokenError> {
    let usable = |jwk: &&Jwk| {
        jwk.common
            .key_algorithm
            .is_none_or(|a| Algorithm::try_from(a).is_ok_and(|a| a == alg))
            && !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
    };
    match kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or(IdTokenError::UnknownKey),
        None => {
            let mut candidates =
                keys.keys.iter().filter(usable).filter(|k| {
                    DecodingKey::from_jwk(k).is_ok_and(|key| key.family() == alg.family())
                });
            match (candidates.next(), candidates.next()) {
                (Some(key), None) => Ok(key),
                (None, _) => Err(IdTokenError::UnknownKey),
                (Some(_), Some(_)) => Err(rejected(
                    "no `kid` and several keys of the issuer could have signed it",
                )),
            }
        }
    }
}
