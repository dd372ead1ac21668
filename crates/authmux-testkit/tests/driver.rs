//! The lifecycle driver (`authmux_testkit::driver`) against the pure machine and the
//! real session manager: generated scripts under several server configurations (zero,
//! sub-second and unknown lifetimes, any refresh window, reuse detection:
//! `driver::driver_config()`), and fixed scripts showing that
//! a run exercises what it claims (tokens handed out, refreshes, expected errors).

use std::time::Duration;

use authmux_core::proptest::prelude::*;
use authmux_testkit::driver::{
    self, DriverConfig, LifecycleOp, RefreshAnswer, driver_config, lifecycle_script,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_pure_machine_keeps_every_invariant(script in lifecycle_script(40), config in driver_config()) {
        driver::check_lifecycle(&script, &config)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_manager_keeps_every_invariant(script in lifecycle_script(25), config in driver_config()) {
        driver::check_manager_blocking(&script, &config)?;
    }
}

/// A script both drivers run; what each did is counted.
fn both(script: &[LifecycleOp], config: &DriverConfig) -> [driver::Outcome; 2] {
    let pure = driver::check_lifecycle(script, config).unwrap();
    let manager = driver::check_manager_blocking(script, config).unwrap();
    [pure, manager]
}

#[test]
fn a_refresh_window_script_refreshes_and_hands_out_tokens() {
    let script = [
        LifecycleOp::WantToken { callers: 2 },
        LifecycleOp::Advance(Duration::from_secs(880)),
        LifecycleOp::WantToken { callers: 4 },
        LifecycleOp::Advance(Duration::from_secs(900)),
        LifecycleOp::WantToken { callers: 4 },
    ];
    for outcome in both(&script, &DriverConfig::default()) {
        assert!(outcome.tokens_handed_out >= 10, "{outcome:?}");
        assert!(outcome.refreshes >= 2, "{outcome:?}");
        assert_eq!(outcome.errors, 0, "{outcome:?}");
    }
}

#[test]
fn a_rejection_ends_the_session_with_typed_errors() {
    let script = [
        LifecycleOp::Answer(RefreshAnswer::Reject),
        LifecycleOp::Advance(Duration::from_secs(901)),
        LifecycleOp::WantToken { callers: 3 },
        LifecycleOp::WantToken { callers: 1 },
    ];
    for outcome in both(&script, &DriverConfig::default()) {
        assert_eq!(outcome.tokens_handed_out, 0, "{outcome:?}");
        assert!(outcome.errors >= 4, "{outcome:?}");
    }
}

#[test]
fn tokens_expired_on_arrival_are_never_handed_out() {
    let zero = DriverConfig {
        lifetime: Some(Duration::ZERO),
        ..DriverConfig::default()
    };
    let script = [
        LifecycleOp::WantToken { callers: 3 },
        LifecycleOp::Refresh,
        LifecycleOp::Unauthorized { callers: 2 },
    ];
    for outcome in both(&script, &zero) {
        assert_eq!(outcome.tokens_handed_out, 0, "{outcome:?}");
        assert!(outcome.errors > 0 && outcome.refreshes > 0, "{outcome:?}");
    }
}
