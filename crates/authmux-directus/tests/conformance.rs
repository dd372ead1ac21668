//! The shared conformance suite (`authmux_testkit::conformance`) against `FakeDirectus`
//! in every mode, and against a real Directus 12 when `AUTHMUX_DIRECTUS_URL` is set
//! (see `tests/live.rs` for how the real server is found and what a skip looks like).
//!
//! In session mode Directus keeps a refreshed session usable for
//! `SESSION_REFRESH_GRACE_PERIOD` (10 s) so that a browser's parallel requests survive a
//! refresh; the target declares that grace, so `refresh_and_rotation` checks everything
//! but the immediate death of the old credential (tested after the grace in
//! `tests/fake.rs`).
#![allow(
    clippy::print_stderr,
    reason = "the report of what each conformance run proved belongs in the test output"
)]

mod common;

use std::sync::Arc;

use authmux_core::{AuthProvider, Credentials, Transport};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_testkit::conformance::{self, Report, Target};
use authmux_testkit::directus::FakeDirectus;

const MODES: [DirectusMode; 3] = [
    DirectusMode::Json,
    DirectusMode::Cookie,
    DirectusMode::Session,
];

fn provider_for(
    url: &url::Url,
    mode: DirectusMode,
    transport: Arc<dyn Transport>,
) -> DirectusProvider {
    DirectusProvider::with_transport(DirectusConfig::new(url.clone()).with_mode(mode), transport)
        .expect("loopback URL is accepted")
}

/// The whole suite; in session mode with Directus's 10 s grace period declared (see
/// the module docs).
async fn run(provider: &dyn AuthProvider, target: Target<'_>, mode: DirectusMode) -> Report {
    let target = if mode == DirectusMode::Session {
        target.with_rotation_grace(std::time::Duration::from_secs(10))
    } else {
        target
    };
    conformance::run_all(provider, &target).await
}

#[tokio::test]
async fn conformance_against_the_fake_in_every_mode() {
    for mode in MODES {
        // One manual clock far from the system clock, so `injected_clock` runs.
        let clock = conformance::far_clock();
        let fake = FakeDirectus::builder()
            .clock(clock.clone())
            .start()
            .expect("fake starts");
        let provider =
            provider_for(fake.base_url(), mode, common::reqwest_transport()).with_clock(clock);
        // Session mode's token is the session itself: it lives SESSION_COOKIE_TTL.
        let settings = fake.settings();
        let lifetime = if mode == DirectusMode::Session {
            settings.session_ttl
        } else {
            settings.access_ttl
        };
        let target = Target::directus(&fake).with_lifetime(lifetime);
        let report = run(&provider, target, mode).await;
        eprintln!(
            "conformance ({mode} mode, fake): {} checks passed",
            report.passed()
        );
        report.assert_passed();
    }
}

#[tokio::test]
async fn conformance_against_the_real_server() {
    let Some(live) = common::Live::from_env("conformance_against_the_real_server") else {
        return;
    };
    let admin = live.admin().await;
    for mode in MODES {
        let user = admin.create_user("conformance").await;
        let otp_user = admin.create_user("conformance-otp").await;
        let secret = live.enable_two_factor(&otp_user).await;
        let provider = provider_for(&live.url, mode, common::reqwest_transport());
        let target = Target::new(Credentials::new(user.email.clone(), user.password.as_str()))
            .with_otp_user(
                Credentials::new(otp_user.email.clone(), otp_user.password.as_str()),
                Arc::new(move || common::totp_now(&secret)),
            );
        // The xtask's server grants ACCESS_TOKEN_TTL in the json and cookie modes (the
        // session mode's token lives SESSION_COOKIE_TTL, which it does not state).
        let target = match live.access_ttl {
            Some(ttl) if mode != DirectusMode::Session => target.with_lifetime(ttl),
            _ => target,
        };
        let report = run(&provider, target, mode).await;
        eprintln!(
            "conformance ({mode} mode, real Directus): {} checks passed",
            report.passed()
        );
        report.assert_passed();
    }
}
