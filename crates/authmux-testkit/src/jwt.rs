//! Real HS256 JWTs for the fakes: signing with a per-server random secret, and
//! server-side verification with expiry checked against the server's clock.
//!
//! Claims are `sub`, `iat`, `exp` (optional: some dialect settings issue tokens without
//! one), `jti` and any dialect extras. Verification checks the signature itself and
//! compares `exp` with the time it is given (the fake passes the injected clock plus the
//! clock offset), so expiry follows a `ManualClock`, not the wall clock.
//!
//! ```
//! use authmux_testkit::jwt::{JwtError, JwtKeys};
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let keys = JwtKeys::random();
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let (token, claims) = keys.issue("user-1", now, Some(Duration::from_secs(60)), Default::default());
//! assert_eq!(claims.exp, Some(1_700_000_060));
//! assert_eq!(keys.verify(&token, now).unwrap().sub, "user-1");
//! assert_eq!(keys.verify(&token, now + Duration::from_secs(60)), Err(JwtError::Expired));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The claims the fakes put in their JWTs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the user id.
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds; absent for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// A unique token id (the fakes use it to revoke single tokens and whole families).
    #[serde(default)]
    pub jti: String,
    /// Dialect extras (e.g. `email`, `sid`, `role`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWT, or not signed with this server's secret.
    Invalid,
    /// Signed correctly but `exp` has passed on the server's clock.
    Expired,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid token",
            Self::Expired => "token expired",
        })
    }
}

impl std::error::Error for JwtError {}

/// An HS256 signing and verification key pair built from one secret.
#[derive(Clone)]
pub struct JwtKeys {
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKeys(** redacted **)")
    }
}

impl JwtKeys {
    /// Keys from a fresh random 32-byte secret (one per fake server).
    pub fn random() -> Self {
        let secret: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
            .take(32)
            .collect();
        Self::from_secret(&secret)
    }

    /// Keys from a known secret (for tests that need to forge or inspect tokens).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// The secret, so a test can sign its own tokens for this server.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Signs claims as an HS256 JWT.
    ///
    /// # Panics
    /// Never in practice: HS256 signing of serializable claims cannot fail.
    pub fn sign(&self, claims: &Claims) -> String {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        crate::secret_log::record(&token);
        token
    }

    /// Issues a token for `sub` at `now`, expiring after `lifetime` (`None`: no `exp`),
    /// with a fresh random `jti` and `extra` claims. Returns the token and its claims.
    pub fn issue(
        &self,
        sub: &str,
        now: SystemTime,
        lifetime: Option<Duration>,
        extra: Map<String, Value>,
    ) -> (String, Claims) {
        let iat = unix_secs(now);
        let claims = Claims {
            sub: sub.to_owned(),
            iat,
            exp: lifetime.map(|l| iat.saturating_add(l.as_secs())),
            jti: random_id(16),
            extra,
        };
        (self.sign(&claims), claims)
    }

    /// Checks the signature and `exp` (expired when `now >= exp`, no leeway).
    ///
    /// # Errors
    /// [`JwtError::Invalid`] for a bad token or signature, [`JwtError::Expired`] past `exp`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, JwtError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| JwtError::Invalid)?;
        match data.claims.exp {
            Some(exp) if unix_secs(now) >= exp => Err(JwtError::Expired),
            _ => Ok(data.claims),
        }
    }
}

/// Reads a JWT's claims without checking anything (for tests inspecting a token).
pub fn decode_unverified(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    serde_json::from_slice(&bytes).ok()
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Unix seconds of a time (0 before the epoch).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An ISO-8601 UTC timestamp with milliseconds, as JavaScript's `toISOString()` prints
/// it: `2026-11-22T02:30:00.000Z`.
pub fn iso8601_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A random alphanumeric string of `len` characters, for opaque tokens, codes and
/// passwords: recorded in the secret log ([`crate::secret_log`]).
pub fn random_token(len: usize) -> String {
    let token = random_id(len);
    crate::secret_log::record(&token);
    token
}

/// A random alphanumeric string of `len` characters that is not a secret (a `jti`).
fn random_id(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

/// A random version-4 UUID in its usual hyphenated form.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_another_secret_are_invalid() {
        let now = SystemTime::now();
        let (token, _) = JwtKeys::random().issue("u", now, None, Map::new());
        assert_eq!(
            JwtKeys::random().verify(&token, now),
            Err(JwtError::Invalid)
        );
        assert_eq!(
            JwtKeys::random().verify("not-a-jwt", now),
            Err(JwtError::Invalid)
        );
    }

    #[test]
    fn tokens_without_exp_never_expire_and_decode_unverified() {
        let keys = JwtKeys::random();
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut extra = Map::new();
        extra.insert("email".into(), Value::from("a@b.c"));
        let (token, claims) = keys.issue("u", now, None, extra);
        assert_eq!(claims.exp, None);
        assert!(
            keys.verify(&token, now + Duration::from_secs(10_000_000))
                .is_ok()
        );
        let seen = decode_unverified(&token).unwrap();
        assert_eq!(seen, claims);
        assert_eq!(seen.extra["email"], "a@b.c");
    }

    #[test]
    fn iso8601_matches_javascript_to_iso_string() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(iso8601_millis(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(at(1_700_000_000)),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(iso8601_millis(at(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(at(4_102_444_799) + Duration::from_millis(7)),
            "2099-12-31T23:59:59.007Z"
        );
    }

    #[test]
    fn uuids_look_like_v4() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
