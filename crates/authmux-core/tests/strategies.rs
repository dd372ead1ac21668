//! The exported strategies keep their promises: "expired" token sets are expired,
//! "fresh" ones are issued at the given time, lifetimes reach zero and sub-second
//! values, windows stay in range, and each error strategy is classified as it says.

#![cfg(feature = "proptest")]

use std::time::{Duration, UNIX_EPOCH};

use authmux_core::lifecycle::RefreshFailure;
use authmux_core::strategies::{
    Freshness, definitive_error, expired_token_set, expiry, lifetime, refresh_error,
    refresh_window, token_set_at, transient_error,
};
use authmux_core::{Expiry, TokenSet};
use proptest::prelude::*;

fn t0() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

proptest! {
    #[test]
    fn expired_token_sets_are_expired(tokens in expired_token_set(t0())) {
        prop_assert!(tokens.is_expired_at(t0()));
        prop_assert!(tokens.issued_at <= t0());
    }

    #[test]
    fn fresh_token_sets_are_issued_now(tokens in token_set_at(t0(), Freshness::Fresh)) {
        prop_assert_eq!(tokens.issued_at, t0());
    }

    #[test]
    fn skewed_token_sets_are_within_an_hour(tokens in token_set_at(t0(), Freshness::Skewed)) {
        let off = tokens.issued_at.duration_since(t0())
            .or_else(|_| t0().duration_since(tokens.issued_at)).unwrap();
        prop_assert!(off < Duration::from_secs(3_600));
    }

    #[test]
    fn windows_stay_in_range(w in refresh_window()) {
        prop_assert!(w.min_lead < Duration::from_secs(600));
        prop_assert!((0.0..=0.5).contains(&w.fraction) && (0.0..=0.5).contains(&w.jitter));
    }

    #[test]
    fn error_classes_are_what_they_say(
        t in transient_error(),
        d in definitive_error(),
        (e, class) in refresh_error(),
    ) {
        prop_assert_eq!(RefreshFailure::of(&t), RefreshFailure::Transient);
        prop_assert_eq!(RefreshFailure::of(&d), RefreshFailure::Rejected);
        prop_assert_eq!(RefreshFailure::of(&e), class);
    }

    #[test]
    fn stated_expiries_resolve(e in expiry(t0())) {
        let tokens = TokenSet::new(authmux_core::AccessToken::new("opaque"), None, e, t0());
        match e {
            Expiry::At(at) => prop_assert_eq!(tokens.expires_at, Some(at)),
            Expiry::In(d) => prop_assert_eq!(tokens.expires_at, Some(t0() + d)),
            Expiry::Unstated => prop_assert_eq!(tokens.expires_at, None),
        }
    }
}

#[test]
fn lifetimes_reach_zero_and_sub_second_values() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut zero, mut sub_second) = (false, false);
    for _ in 0..500 {
        let l = lifetime().new_tree(&mut runner).unwrap().current();
        zero |= l.is_zero();
        sub_second |= !l.is_zero() && l < Duration::from_secs(1);
    }
    assert!(zero && sub_second);
}
