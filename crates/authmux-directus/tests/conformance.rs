//! The shared conformance suite (`authmux_testkit::conformance`) against `FakeDirectus`
//! in every mode, and against a real Directus 12 when `AUTHMUX_DIRECTUS_URL` is set
//! (see `tests/live.rs` for how the real server is found and what a skip looks like).
//!
//! In session mode one check does not apply as written: `refresh_and_rotation` expects
//! a rotated credential to be dead at once, but Directus keeps a refreshed session
//! usable for `SESSION_REFRESH_GRACE_PERIOD` (10 s) so that a browser's parallel
//! requests survive a refresh. Session-mode rotation is tested with that grace period
//! in `tests/fake.rs`; every other check runs in every mode.
#![allow(
    clippy::print_stderr,
    reason = "the report of what each conformance run proved belongs in the test output"
)]

mod common;

use std::sync::Arc;

use authmux_core::{AuthProvider, Credentials, Transport};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_testkit::conformance::{self, CheckResult, Report, Target};
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

/// The whole suite, except `refresh_and_rotation` in session mode (see the module docs).
async fn run(provider: &dyn AuthProvider, target: &Target<'_>, mode: DirectusMode) -> Report {
    if mode != DirectusMode::Session {
        return conformance::run_all(provider, target).await;
    }
    let mut report = Report::default();
    let mut record = |name, check: Result<CheckResult, String>| {
        report
            .results
            .push((name, check.unwrap_or_else(CheckResult::Failed)));
    };
    record(
        "login_and_current_user",
        conformance::login_and_current_user(provider, target).await,
    );
    record(
        "wrong_password",
        conformance::wrong_password(provider, target).await,
    );
    record(
        "otp_challenge",
        conformance::otp_challenge(provider, target).await,
    );
    record(
        "refresh_and_rotation",
        Ok(CheckResult::Skipped(
            "session mode: Directus keeps a refreshed session alive for a 10 s grace period \
             (tested in tests/fake.rs)"
                .into(),
        )),
    );
    record(
        "logout_revokes",
        conformance::logout_revokes(provider, target).await,
    );
    record(
        "login_error_mapping",
        conformance::login_error_mapping(provider, target).await,
    );
    record(
        "current_user_error_mapping",
        conformance::current_user_error_mapping(provider, target).await,
    );
    record(
        "refresh_error_mapping",
        conformance::refresh_error_mapping(provider, target).await,
    );
    report
}

#[tokio::test]
async fn conformance_against_the_fake_in_every_mode() {
    for mode in MODES {
        let fake = FakeDirectus::start().expect("fake starts");
        let provider = provider_for(fake.base_url(), mode, common::reqwest_transport());
        let report = run(&provider, &Target::directus(&fake), mode).await;
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
        let report = run(&provider, &target, mode).await;
        eprintln!(
            "conformance ({mode} mode, real Directus): {} checks passed",
            report.passed()
        );
        report.assert_passed();
    }
}
