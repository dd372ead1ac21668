//! `proptest` strategies for tokens, sessions, refresh windows, expiries, error
//! classes and lifecycle scripts (feature `proptest`; [`proptest`](mod@crate::proptest) is
//! re-exported beside them), so users can property-test their own lifecycle logic the
//! way authmux tests its own.
//!
//! The token strategies reach the edges where lifecycle code breaks: tokens already
//! expired when they arrive ([`token_set_at`] with [`Freshness::Expired`]), issued by a
//! server whose clock is ahead or behind ([`Freshness::Skewed`]), zero and sub-second
//! lifetimes ([`lifetime`]), and unknown expiry.
//!
//! A property of your own function, e.g. "never refresh a token with more than half its
//! life left, always refresh one inside the window or expired":
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use authmux_core::lifecycle::RefreshWindow;
//! use authmux_core::strategies::{refresh_window, token_set_at, Freshness};
//! use authmux_core::TokenSet;
//! use proptest::prelude::*;
//!
//! /// The function under test: refresh once the window (without jitter) is reached.
//! fn should_refresh(now: SystemTime, tokens: &TokenSet, window: &RefreshWindow) -> bool {
//!     window.refresh_at(tokens, 0.0).is_some_and(|at| now >= at)
//! }
//!
//! let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
//! proptest!(|(
//!     tokens in token_set_at(t0, Freshness::Any),
//!     window in refresh_window(),
//!     later_ms in 0u64..172_800_000,
//! )| {
//!     let now = t0 + Duration::from_millis(later_ms);
//!     if tokens.is_expired_at(now) {
//!         prop_assert!(should_refresh(now, &tokens, &window), "an expired token must be refreshed");
//!     }
//!     if let (Some(lifetime), Some(expires_at)) = (tokens.lifetime(), tokens.expires_at) {
//!         let left = expires_at.duration_since(now).unwrap_or_default();
//!         if left > lifetime / 2 {
//!             prop_assert!(!should_refresh(now, &tokens, &window), "refreshed with more than half its life left");
//!         }
//!     }
//! });
//! ```
//!
//! ```
//! use authmux_core::strategies::{session, lifecycle_script};
//! use proptest::prelude::*;
//!
//! proptest!(|(s in session(), script in lifecycle_script(20))| {
//!     // A session never prints its secrets...
//!     let debug = format!("{s:?}");
//!     prop_assert!(!debug.contains(s.tokens.access.expose_secret()));
//!     // ...and a script is a list of operations to replay against your own driver.
//!     prop_assert!(script.len() <= 20);
//! });
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;
use url::Url;

use crate::error::{AuthError, TransportErrorKind};
use crate::lifecycle::{RefreshFailure, RefreshWindow};
use crate::secret::{AccessToken, RefreshToken};
use crate::session::{SESSION_FORMAT, Session, UserProfile};
use crate::token::{Expiry, TokenSet};

/// A token-like secret: opaque random text or a JWT-shaped string, 16 to 200 chars.
pub fn secret_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{16,64}",
        (
            "[A-Za-z0-9_-]{10,40}",
            "[A-Za-z0-9_-]{10,80}",
            "[A-Za-z0-9_-]{10,60}"
        )
            .prop_map(|(h, p, s)| format!("eyJ{h}.eyJ{p}.{s}")),
    ]
}

/// An access token.
pub fn access_token() -> impl Strategy<Value = AccessToken> {
    secret_text().prop_map(AccessToken::new)
}

/// A refresh token.
pub fn refresh_token() -> impl Strategy<Value = RefreshToken> {
    secret_text().prop_map(RefreshToken::new)
}

/// A time between 2001 and 2100, with millisecond precision (what RFC 3339 keeps).
pub fn timestamp() -> impl Strategy<Value = SystemTime> {
    (1_000_000_000_000u64..4_100_000_000_000u64)
        .prop_map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// A token set: any issue time, any [`lifetime`] (zero and sub-second included) or
/// unknown, with or without a refresh token. For token sets relative to a given time
/// (already expired, skewed), see [`token_set_at`].
pub fn token_set() -> impl Strategy<Value = TokenSet> {
    (
        access_token(),
        proptest::option::of(refresh_token()),
        timestamp(),
        proptest::option::of(lifetime()),
    )
        .prop_map(|(access, refresh, issued_at, lifetime)| TokenSet {
            access,
            refresh,
            expires_at: lifetime.map(|l| issued_at + l),
            issued_at,
        })
}

/// A user profile with some raw fields.
pub fn user_profile() -> impl Strategy<Value = UserProfile> {
    (
        "[a-z0-9-]{1,36}",
        "[a-z]{1,10}@[a-z]{1,10}\\.example",
        proptest::option::of("[A-Za-z ]{1,30}"),
    )
        .prop_map(|(id, email, name)| UserProfile {
            raw: json!({ "id": id, "email": email, "name": name, "permissions": ["read"] }),
            id: Some(id),
            email: Some(email),
            name,
        })
}

/// A session of any of the three built-in dialects (or a custom one), with extras.
pub fn session() -> impl Strategy<Value = Session> {
    (
        prop_oneof![
            Just("linxio".to_string()),
            Just("linkutm".to_string()),
            Just("directus".to_string()),
            "[a-z]{3,12}",
        ],
        prop_oneof![
            Just("https://api.example.com"),
            Just("http://127.0.0.1:8055"),
            Just("https://cms.example.org/base")
        ],
        token_set(),
        proptest::option::of(user_profile()),
        proptest::option::of(prop_oneof![Just("json"), Just("cookie"), Just("session")]),
    )
        .prop_map(|(dialect, url, tokens, user, mode)| {
            let mut session =
                Session::new(dialect, Url::parse(url).expect("valid URL"), tokens).with_user(user);
            if let Some(mode) = mode {
                session = session.with_extra("mode", mode);
            }
            session.format = SESSION_FORMAT;
            session
        })
}

/// How a scripted provider answers the next refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// New access and refresh tokens (rotation).
    Rotate,
    /// A new access token; the refresh token is kept (no rotation).
    Keep,
    /// A transient failure (timeout).
    Transient,
    /// The refresh token is refused.
    Reject,
}

/// One step of a lifecycle script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleOp {
    /// Move the clock forward.
    Advance(Duration),
    /// `callers` concurrent calls for a token.
    WantToken {
        /// How many at once (1 to 8).
        callers: u8,
    },
    /// `callers` concurrent requests that the server answers 401 once.
    Unauthorized {
        /// How many at once.
        callers: u8,
    },
    /// An explicit refresh.
    Refresh,
    /// `callers` concurrent refreshes whose callers give up (are cancelled) at once.
    Cancelled {
        /// How many at once.
        callers: u8,
    },
    /// Set how the provider answers the following refreshes.
    Answer(RefreshAnswer),
    /// Sign out.
    SignOut,
    /// Sign in again (fresh tokens).
    SignIn,
}

/// A refresh answer, mostly successful.
pub fn refresh_answer() -> impl Strategy<Value = RefreshAnswer> {
    prop_oneof![
        4 => Just(RefreshAnswer::Rotate),
        2 => Just(RefreshAnswer::Keep),
        2 => Just(RefreshAnswer::Transient),
        1 => Just(RefreshAnswer::Reject),
    ]
}

/// One lifecycle operation.
pub fn lifecycle_op() -> impl Strategy<Value = LifecycleOp> {
    prop_oneof![
        4 => (0u64..1_200).prop_map(|s| LifecycleOp::Advance(Duration::from_secs(s))),
        4 => (1u8..=8).prop_map(|callers| LifecycleOp::WantToken { callers }),
        2 => (1u8..=4).prop_map(|callers| LifecycleOp::Unauthorized { callers }),
        1 => Just(LifecycleOp::Refresh),
        1 => (1u8..=4).prop_map(|callers| LifecycleOp::Cancelled { callers }),
        2 => refresh_answer().prop_map(LifecycleOp::Answer),
        1 => Just(LifecycleOp::SignOut),
        1 => Just(LifecycleOp::SignIn),
    ]
}

/// A script of up to `max_len` operations.
pub fn lifecycle_script(max_len: usize) -> impl Strategy<Value = Vec<LifecycleOp>> {
    proptest::collection::vec(lifecycle_op(), 0..=max_len)
}

/// A token lifetime: zero, sub-second (1 to 999 ms), seconds to an hour, or up to a day.
pub fn lifetime() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        2 => (1u64..1_000).prop_map(Duration::from_millis),
        4 => (1u64..3_600).prop_map(Duration::from_secs),
        2 => (3_600u64..86_400).prop_map(Duration::from_secs),
    ]
}

/// How a generated token set relates to the time it is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Issued at `now`, any [`lifetime`] (zero and sub-second included) or unknown.
    Fresh,
    /// Already expired at `now`: issued up to a day before, expired at or before
    /// `now` (a zero lifetime, or an absolute expiry from a server whose clock is
    /// behind).
    Expired,
    /// Stamped with a skewed clock: issued up to an hour before or after `now` (a
    /// server ahead or behind whose times were taken as they are).
    Skewed,
    /// Any of the above.
    Any,
}

/// A token set as seen at `now` (see [`Freshness`]), with or without a refresh token.
pub fn token_set_at(now: SystemTime, freshness: Freshness) -> BoxedStrategy<TokenSet> {
    let tokens = (access_token(), proptest::option::of(refresh_token()));
    match freshness {
        Freshness::Fresh => (tokens, proptest::option::of(lifetime()))
            .prop_map(move |((access, refresh), lifetime)| TokenSet {
                access,
                refresh,
                expires_at: lifetime.map(|l| now + l),
                issued_at: now,
            })
            .boxed(),
        Freshness::Expired => (tokens, 0u64..86_400_000, 0u64..86_400_000)
            .prop_map(move |((access, refresh), ago_ms, life_ms)| {
                let issued_at = now - Duration::from_millis(ago_ms);
                // Expired at or before `now`: the lifetime is at most the age.
                let life = Duration::from_millis(life_ms.min(ago_ms));
                TokenSet {
                    access,
                    refresh,
                    expires_at: Some(issued_at + life),
                    issued_at,
                }
            })
            .boxed(),
        Freshness::Skewed => (tokens, -3_600_000i64..3_600_000, lifetime())
            .prop_map(move |((access, refresh), skew_ms, lifetime)| {
                let by = Duration::from_millis(skew_ms.unsigned_abs());
                let issued_at = if skew_ms >= 0 { now + by } else { now - by };
                TokenSet {
                    access,
                    refresh,
                    expires_at: Some(issued_at + lifetime),
                    issued_at,
                }
            })
            .boxed(),
        Freshness::Any => prop_oneof![
            token_set_at(now, Freshness::Fresh),
            token_set_at(now, Freshness::Expired),
            token_set_at(now, Freshness::Skewed),
        ]
        .boxed(),
    }
}

/// A token set already expired at `now` (see [`Freshness::Expired`]).
pub fn expired_token_set(now: SystemTime) -> BoxedStrategy<TokenSet> {
    token_set_at(now, Freshness::Expired)
}

/// A [`RefreshWindow`]: a minimum lead up to 10 minutes (zero included), a fraction
/// and a jitter of the lifetime from 0 to 0.5.
pub fn refresh_window() -> impl Strategy<Value = RefreshWindow> {
    (0u64..600_000, 0.0f64..=0.5, 0.0f64..=0.5).prop_map(|(lead_ms, fraction, jitter)| {
        RefreshWindow {
            min_lead: Duration::from_millis(lead_ms),
            fraction,
            jitter,
        }
    })
}

/// An [`Expiry`] as a server states it around `now`: an absolute time up to a day
/// before or after `now` (already expired included), a [`lifetime`], or nothing.
pub fn expiry(now: SystemTime) -> impl Strategy<Value = Expiry> {
    prop_oneof![
        (-86_400_000i64..86_400_000).prop_map(move |ms| {
            let by = Duration::from_millis(ms.unsigned_abs());
            Expiry::At(if ms >= 0 { now + by } else { now - by })
        }),
        lifetime().prop_map(Expiry::In),
        Just(Expiry::Unstated),
    ]
}

/// An error a refresh can meet that leaves the session valid: timeouts, transport
/// failures, 5xx, 429, broken answers ([`RefreshFailure::Transient`]).
pub fn transient_error() -> impl Strategy<Value = AuthError> {
    prop_oneof![
        Just(AuthError::Timeout),
        prop_oneof![
            Just(TransportErrorKind::Connect),
            Just(TransportErrorKind::Io),
            Just(TransportErrorKind::BodyTooLarge),
        ]
        .prop_map(|kind| AuthError::Transport { kind, source: None }),
        (
            prop_oneof![Just(500u16), Just(502), Just(503), Just(504)],
            proptest::option::of(0u64..120),
        )
            .prop_map(|(status, secs)| AuthError::Server {
                status,
                code: None,
                message: None,
                retry_after: secs.map(Duration::from_secs),
            }),
        proptest::option::of(0u64..120).prop_map(|secs| AuthError::RateLimited {
            retry_after: secs.map(Duration::from_secs),
        }),
        Just(AuthError::protocol("the answer had the wrong shape")),
    ]
}

/// An error that ends the session: the refresh token was refused
/// ([`RefreshFailure::Rejected`]).
pub fn definitive_error() -> impl Strategy<Value = AuthError> {
    prop_oneof![
        Just(AuthError::RefreshRejected),
        Just(AuthError::Unauthorized { message: None }),
        Just(AuthError::InvalidCredentials),
        Just(AuthError::AccountDisabled),
    ]
}

/// A refresh error and its class, mostly transient.
pub fn refresh_error() -> impl Strategy<Value = (AuthError, RefreshFailure)> {
    prop_oneof![
        3 => transient_error().prop_map(|e| (e, RefreshFailure::Transient)),
        1 => definitive_error().prop_map(|e| (e, RefreshFailure::Rejected)),
    ]
}
