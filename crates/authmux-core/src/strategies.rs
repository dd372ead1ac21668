//! `proptest` strategies for tokens, sessions and lifecycle scripts (feature
//! `proptest`), so users can property-test their own lifecycle logic the way authmux
//! tests its own.
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

use crate::secret::{AccessToken, RefreshToken};
use crate::session::{SESSION_FORMAT, Session, UserProfile};
use crate::token::TokenSet;

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

/// A token set: any issue time, a lifetime from 1 s to 1 day or unknown, with or
/// without a refresh token.
pub fn token_set() -> impl Strategy<Value = TokenSet> {
    (
        access_token(),
        proptest::option::of(refresh_token()),
        timestamp(),
        proptest::option::of(1u64..86_400),
    )
        .prop_map(|(access, refresh, issued_at, lifetime)| TokenSet {
            access,
            refresh,
            expires_at: lifetime.map(|s| issued_at + Duration::from_secs(s)),
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
