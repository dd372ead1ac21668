//! What the adapters' clock-skew tests share: the server clock offsets they run through
//! ([`OFFSETS_MILLIS`]) and the loop that asks a manager for a token every half second
//! and has the server check each one ([`every_half_second`]).

use std::time::Duration;

use authmux_core::{AccessToken, AuthProvider, Clock, ManualClock, SessionManager};

/// The server clock offsets (milliseconds, for
/// [`ServerHandle::set_clock_offset_millis`](crate::ServerHandle::set_clock_offset_millis))
/// a clock-skew test runs through: 10 minutes behind, on time and 10 minutes ahead, each
/// also with 900 ms more. With the fraction the server's whole-second times (a `Date`
/// header, a JWT's `iat`) lag its true time by 0.9 s, and a JWT dies up to a second
/// before its stated lifetime is over: the case an expiry rule that reads whole seconds
/// as exact gets wrong (`authmux_core::token`).
pub const OFFSETS_MILLIS: [i64; 6] = [-600_000, -600_000 + 900, 0, 900, 600_000, 600_000 + 900];

/// Moves `clock` on by half a second `halves` times; each time asks `manager` for a
/// usable session, lets a refresh started in the background land, and checks that the
/// token is not expired locally and that the server (on its own clock) accepts it
/// through `provider`'s `current_user`. Returns the tokens handed out, in order. Panics,
/// naming `label` and the time, at the first one refused.
pub async fn every_half_second(
    manager: &SessionManager,
    clock: &ManualClock,
    provider: &dyn AuthProvider,
    halves: u64,
    label: &str,
) -> Vec<AccessToken> {
    let mut handed_out = Vec::new();
    for half in 1..=halves {
        let at = format!("{label}, at +{} s", half as f64 / 2.0);
        clock.advance(Duration::from_millis(500));
        let session = manager
            .usable_session()
            .await
            .unwrap_or_else(|e| panic!("{at}: no usable session: {e}"));
        manager.idle().await;
        assert!(
            !session.tokens.is_expired_at(clock.now()),
            "{at}: an expired token was handed out"
        );
        provider
            .current_user(&session)
            .await
            .unwrap_or_else(|e| panic!("{at}: the server refused the token: {e}"));
        handed_out.push(session.tokens.access.clone());
    }
    handed_out
}
