//! [`TokenSet`]: the tokens of a session and when they expire.
//!
//! Expiry comes from the first source that has it, in this order (see [`Expiry`]):
//! an absolute timestamp from the server (Linxio `expireAt`), a relative lifetime
//! (Directus `expires`, in milliseconds), the JWT's `exp` claim. With none, the expiry
//! is unknown and the token is refreshed only when the server answers 401.
//!
//! # Clock skew: expiry on the local clock
//!
//! `expires_at` is always a time on the CLIENT's clock, because that is the clock the
//! session manager compares it with. A server's absolute time (`expireAt`, a JWT's
//! `exp`) is on the SERVER's clock; read as is, a server 10 minutes behind makes every
//! token look expired on arrival, and a server 10 minutes ahead makes the client hand
//! out tokens the server already refuses. So a token the server has just issued is
//! built with [`TokenSet::issued`], which turns the server's statement into a lifetime
//! measured on the server's own clock and counts it from the local time the answer was
//! received (`received_at`):
//!
//! | the server states | local `expires_at` |
//! |---|---|
//! | a lifetime `d` ([`Expiry::In`]) | `received_at + d` (no clock involved) |
//! | an absolute time `abs` ([`Expiry::At`]), answer with a `Date` header | `received_at + (abs - date) - 1 s` |
//! | an absolute time `abs`, no `Date` header | `abs` as is |
//! | nothing, the token is a JWT with `exp` and `iat` | `received_at + (exp - iat) - 1 s` |
//! | nothing, a JWT with `exp` but no `iat`, answer with a `Date` header | `received_at + (exp - date) - 1 s` |
//! | nothing, a JWT with `exp` only, no `Date` header | `exp` as is |
//! | nothing else | unknown |
//!
//! - **The second off.** `Date` and `iat` count whole seconds: they read up to a second
//!   behind the server's "now" when it wrote the answer (a JWT library that sets
//!   `iat = floor(now)` and `exp = iat + ttl` issues a token that dies up to a second
//!   before `ttl` has passed). So a lifetime measured from one of them loses a second
//!   (at most half of it, for very short lifetimes): the local expiry may come a little
//!   early, never late. An anchor with a fraction of a second loses nothing.
//! - **The JWT's own expiry counts too.** When the access token is a JWT whose `exp`
//!   can be mapped (it has `iat`, or the answer has a `Date`), the local expiry is the
//!   earlier of the stated one and the JWT's: a server that checks the token enforces
//!   `exp`, whatever lifetime its answer stated (Directus states `expires` in
//!   milliseconds while its JWT's `exp` counts from the whole second).
//!
//! A lifetime that comes out negative counts as zero (the token is expired on arrival,
//! and the server said so). `issued_at` is `received_at`. [`server_date`] reads the
//! `Date` header. A JWT's `iat` is preferred to `Date` because it is the clock that
//! computed `exp` (a `Date` may come from a proxy in front of the server).
//!
//! Limits of the rule:
//! - **Transit.** The lifetime is counted from when the answer arrived, not when the
//!   server wrote it: the local expiry can be later than the server's by the answer's
//!   transit time (far less than the manager's proactive refresh window: at least 60 s
//!   by default, at most half the lifetime).
//! - **No server time, no correction.** An answer without a `Date` header and a token
//!   without `iat` leave the server's absolute time as is: skewed clocks then give the
//!   behaviours above.
//! - **Kept tokens are read as they are.** Tokens the caller kept ([`TokenSet::new`]:
//!   hydration, `AuthProvider::session_from_tokens`, a restored old token) come with no
//!   fresh server time: their `exp` is used as is. A JWT's `iat` cannot stand for
//!   "now" there (the token may be hours old), so no correction is possible. Sessions
//!   the manager stored keep the local `expires_at` computed when they were issued.
//! - **The server's time is trusted.** A `Date` or `iat` that is wrong (not merely
//!   skewed) gives a wrong lifetime; a 401 still ends it (refresh and replay).
//!
//! Reading `exp`/`iat` from a JWT is done WITHOUT verifying its signature
//! ([`jwt_hint`]): the client cannot verify it anyway, and the values are only a hint
//! about when to refresh, never a trust decision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::DATE;
use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, RefreshToken};

/// How far behind the server's "now" a time in whole seconds (an HTTP `Date`, an
/// integer JWT `iat`) may read.
const WHOLE_SECOND: Duration = Duration::from_secs(1);

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
    /// Builds a token set from tokens the caller KEPT (hydration, a restored session,
    /// `AuthProvider::session_from_tokens`), stamped `now`: the expiry is resolved in
    /// the documented order (the server's absolute time, else its relative lifetime
    /// counted from `now`, else the JWT's `exp`, else unknown) and absolute times are
    /// taken as they are, with no clock-skew correction (there is no fresh server time
    /// to correct with; see the module docs). For tokens the server has just issued,
    /// use [`TokenSet::issued`].
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

    /// Builds a token set the server has just ISSUED in an answer received at
    /// `received_at` (local clock), mapping the server's expiry onto the local clock
    /// with the server's own time (see the module docs for the rule and its limits):
    /// `server_date` is the answer's `Date` header ([`server_date`]), `None` when it
    /// has none (or the token did not come in an HTTP answer).
    ///
    /// ```
    /// use authmux_core::{AccessToken, Expiry, TokenSet};
    /// use std::time::{Duration, SystemTime};
    ///
    /// use std::time::UNIX_EPOCH;
    ///
    /// let received_at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_250);
    /// // The server's clock is 10 minutes behind ours; it says the token expires 20 s
    /// // after its own "now", which it states to the millisecond.
    /// let server_now = received_at - Duration::from_secs(600);
    /// let tokens = TokenSet::issued(
    ///     AccessToken::new("opaque"),
    ///     None,
    ///     Expiry::At(server_now + Duration::from_secs(20)),
    ///     received_at,
    ///     Some(server_now),
    /// );
    /// assert_eq!(tokens.expires_at, Some(received_at + Duration::from_secs(20)));
    /// assert_eq!(tokens.lifetime(), Some(Duration::from_secs(20)));
    ///
    /// // The same answer with its `Date` header, which drops the server's 250 ms: read
    /// // from it, the token seems to have 20.25 s. A time in whole seconds may be up to
    /// // a second behind, so a second comes off: 19.25 s, a little early, never late.
    /// let date = UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 600);
    /// let tokens = TokenSet::issued(
    ///     AccessToken::new("opaque"),
    ///     None,
    ///     Expiry::At(server_now + Duration::from_secs(20)),
    ///     received_at,
    ///     Some(date),
    /// );
    /// assert_eq!(tokens.lifetime(), Some(Duration::from_millis(19_250)));
    /// ```
    pub fn issued(
        access: AccessToken,
        refresh: Option<RefreshToken>,
        expiry: Expiry,
        received_at: SystemTime,
        server_date: Option<SystemTime>,
    ) -> Self {
        // `abs`, a time on the server's clock, seen from the local clock given the
        // server's "now" (`anchor`) at about the time the answer was received.
        let localize = |abs: SystemTime, anchor: SystemTime| {
            let lifetime = abs.duration_since(anchor).unwrap_or(Duration::ZERO);
            // An anchor in whole seconds (a `Date` header, an integer `iat`) reads up
            // to a second behind the server's "now": the token may have up to a second
            // less than `abs - anchor`. That second comes off (at most half the
            // lifetime), so the local expiry is never later than the server's.
            let whole = anchor
                .duration_since(UNIX_EPOCH)
                .is_ok_and(|d| d.subsec_nanos() == 0);
            let lifetime = if whole {
                lifetime - WHOLE_SECOND.min(lifetime / 2)
            } else {
                lifetime
            };
            received_at.checked_add(lifetime).unwrap_or(abs)
        };
        let hint = jwt_hint(access.expose_secret());
        // The JWT's own expiry (the one a server checking the token enforces), mapped
        // with its `iat`, else the `Date`.
        let from_jwt =
            hint.and_then(|h| Some(localize(h.expires_at?, h.issued_at.or(server_date)?)));
        let stated = match expiry {
            Expiry::At(at) => Some(server_date.map_or(at, |date| localize(at, date))),
            Expiry::In(lifetime) => received_at.checked_add(lifetime),
            Expiry::Unstated => None,
        };
        let expires_at = match (stated, from_jwt) {
            (Some(stated), Some(from_jwt)) => Some(stated.min(from_jwt)),
            (Some(at), None) | (None, Some(at)) => Some(at),
            // A JWT with `exp` and no server time at all: `exp` as is.
            (None, None) => hint.and_then(|h| h.expires_at),
        };
        Self {
            access,
            refresh,
            expires_at,
            issued_at: received_at,
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

/// The server's time when it wrote an answer: its `Date` header (RFC 9110 §6.6.1; the
/// IMF-fixdate form servers send, and the two obsolete forms recipients must accept).
/// `None` when the header is absent or not a date. Give it to [`TokenSet::issued`].
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::DATE};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(DATE, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
/// assert_eq!(
///     authmux_core::token::server_date(&headers),
///     Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
/// );
/// ```
pub fn server_date(headers: &HeaderMap) -> Option<SystemTime> {
    let text = headers.get(DATE)?.to_str().ok()?;
    httpdate::parse_http_date(text.trim()).ok()
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

    /// Local receive time in these tests; the server's clock is `skew` seconds off it.
    const RECEIVED: u64 = 1_800_000_000;

    fn secs(n: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(n)
    }

    /// The server's "now" when the local clock reads `RECEIVED`, `skew` seconds off.
    fn server_now(skew: i64) -> u64 {
        RECEIVED.checked_add_signed(skew).unwrap()
    }

    #[test]
    fn issued_relative_lifetime_counts_from_receipt() {
        let tokens = TokenSet::issued(
            AccessToken::new("opaque"),
            None,
            Expiry::In(Duration::from_secs(20)),
            secs(RECEIVED),
            // A `Date` changes nothing for a relative lifetime.
            Some(secs(RECEIVED - 600)),
        );
        assert_eq!(tokens.expires_at, Some(secs(RECEIVED + 20)));
        assert_eq!(tokens.issued_at, secs(RECEIVED));
        assert_eq!(tokens.lifetime(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn issued_absolute_expiry_is_mapped_with_the_date_header() {
        for skew in [-600, 0, 600] {
            let server = server_now(skew);
            let tokens = TokenSet::issued(
                AccessToken::new("opaque"),
                None,
                Expiry::At(secs(server + 20)),
                secs(RECEIVED),
                Some(secs(server)),
            );
            // The `Date` counts whole seconds: one comes off.
            assert_eq!(tokens.expires_at, Some(secs(RECEIVED + 19)), "skew {skew}");
            assert_eq!(tokens.issued_at, secs(RECEIVED));
        }
        // Already past on the server's clock: expired on arrival (lifetime 0), whatever
        // the local clock says.
        let past = TokenSet::issued(
            AccessToken::new("opaque"),
            None,
            Expiry::At(secs(server_now(-600) - 5)),
            secs(RECEIVED),
            Some(secs(server_now(-600))),
        );
        assert_eq!(past.expires_at, Some(secs(RECEIVED)));
        assert!(past.is_expired_at(secs(RECEIVED)));
        // Without a `Date` header the server's time is taken as is (the documented
        // limit): with the server 10 minutes behind, the token is expired on arrival.
        let undated = TokenSet::issued(
            AccessToken::new("opaque"),
            None,
            Expiry::At(secs(server_now(-600) + 20)),
            secs(RECEIVED),
            None,
        );
        assert_eq!(undated.expires_at, Some(secs(server_now(-600) + 20)));
    }

    #[test]
    fn issued_jwt_exp_is_anchored_on_iat_else_date() {
        for skew in [-600, 0, 600] {
            let server = server_now(skew);
            // `iat` wins over a `Date` (here a wrong one, as from a skewed proxy).
            let with_iat = AccessToken::new(jwt_with_payload(&format!(
                "{{\"exp\":{},\"iat\":{server}}}",
                server + 20
            )));
            for date in [None, Some(secs(server + 3_600))] {
                let tokens = TokenSet::issued(
                    with_iat.clone(),
                    None,
                    Expiry::Unstated,
                    secs(RECEIVED),
                    date,
                );
                // `iat` counts whole seconds: one comes off.
                assert_eq!(tokens.expires_at, Some(secs(RECEIVED + 19)), "skew {skew}");
            }
            // No `iat`: the `Date` header anchors `exp`.
            let exp_only =
                AccessToken::new(jwt_with_payload(&format!("{{\"exp\":{}}}", server + 20)));
            let tokens = TokenSet::issued(
                exp_only.clone(),
                None,
                Expiry::Unstated,
                secs(RECEIVED),
                Some(secs(server)),
            );
            assert_eq!(tokens.expires_at, Some(secs(RECEIVED + 19)), "skew {skew}");
            // Neither: `exp` as is.
            let tokens = TokenSet::issued(exp_only, None, Expiry::Unstated, secs(RECEIVED), None);
            assert_eq!(tokens.expires_at, Some(secs(server + 20)), "skew {skew}");
        }
        // Issued with a stated lifetime, received at RECEIVED, no `Date`.
        let stated = |access: AccessToken, lifetime: Duration| {
            TokenSet::issued(access, None, Expiry::In(lifetime), secs(RECEIVED), None).expires_at
        };
        // A stated expiry and the JWT's: the earlier (the server checking the token
        // enforces `exp`, whatever lifetime it stated).
        let jwt = AccessToken::new(jwt_with_payload("{\"exp\":5000,\"iat\":900}"));
        assert_eq!(
            stated(jwt.clone(), Duration::from_secs(7)),
            Some(secs(RECEIVED + 7))
        );
        // Directus: `expires` 3000 ms, a JWT issued at the whole second 900 for 3 s
        // (`exp` 903): it may die 2 s after arrival, and that is its local expiry.
        let directus = AccessToken::new(jwt_with_payload("{\"exp\":903,\"iat\":900}"));
        assert_eq!(
            stated(directus, Duration::from_millis(3_000)),
            Some(secs(RECEIVED + 2))
        );
        // A JWT whose `exp` cannot be mapped (no `iat`, no `Date`) does not cut a
        // stated lifetime (its `exp` is on a clock that may be anywhere).
        let unmapped = AccessToken::new(jwt_with_payload("{\"exp\":5}"));
        assert_eq!(
            stated(unmapped, Duration::from_secs(7)),
            Some(secs(RECEIVED + 7))
        );
        // A very short lifetime loses at most half of itself.
        let short = AccessToken::new(jwt_with_payload("{\"exp\":901,\"iat\":900}"));
        let tokens = TokenSet::issued(short, None, Expiry::Unstated, secs(RECEIVED), None);
        assert_eq!(tokens.lifetime(), Some(Duration::from_millis(500)));
        // `exp` before `iat`: expired on arrival.
        let backwards = AccessToken::new(jwt_with_payload("{\"exp\":800,\"iat\":900}"));
        let tokens = TokenSet::issued(backwards, None, Expiry::Unstated, secs(RECEIVED), None);
        assert_eq!(tokens.expires_at, Some(secs(RECEIVED)));
        // No `exp`, or not a JWT: unknown.
        let no_exp = AccessToken::new(jwt_with_payload("{\"iat\":900}"));
        let date = Some(secs(RECEIVED));
        for access in [no_exp, AccessToken::new("opaque")] {
            let tokens = TokenSet::issued(access, None, Expiry::Unstated, secs(RECEIVED), date);
            assert_eq!(tokens.expires_at, None);
        }
    }

    #[test]
    fn kept_tokens_are_read_without_correction() {
        // Hydration: `iat` is in the past, so it must not be taken for "now".
        let jwt = AccessToken::new(jwt_with_payload(&format!(
            "{{\"exp\":{},\"iat\":{}}}",
            RECEIVED - 3_000,
            RECEIVED - 3_600
        )));
        let kept = TokenSet::new(jwt, None, Expiry::Unstated, secs(RECEIVED));
        assert_eq!(kept.expires_at, Some(secs(RECEIVED - 3_000)));
        assert!(kept.is_expired_at(secs(RECEIVED)));
    }

    #[test]
    fn server_date_reads_http_dates_and_ignores_garbage() {
        let mut headers = HeaderMap::new();
        assert_eq!(server_date(&headers), None);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            " Sun, 06 Nov 1994 08:49:37 GMT ",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            headers.insert(DATE, http::HeaderValue::from_str(form).unwrap());
            assert_eq!(server_date(&headers), Some(secs(784_111_777)), "{form:?}");
        }
        for garbage in [
            "",
            "yesterday",
            "1800000000",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            headers.insert(DATE, http::HeaderValue::from_str(garbage).unwrap());
            assert_eq!(server_date(&headers), None, "{garbage:?}");
        }
        headers.insert(DATE, http::HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(server_date(&headers), None);
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
