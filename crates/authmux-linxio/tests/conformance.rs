//! The shared conformance suite (`authmux_testkit::conformance`) against `FakeLinxio`,
//! under each quirk of the dialect the fake can show: both OTP flag spellings, refresh
//! with rotation, without a returned refresh token and with it echoed, each way of
//! telling expiry, and both logout answers.

use authmux_core::RetryPolicy;
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::conformance::{self, CheckResult, Target};
use authmux_testkit::linxio::{
    ExpiryStyle, FakeLinxio, LinxioBuilder, LogoutStyle, OtpFlag, RefreshTokenPolicy,
};

/// Runs the suite on a manual clock far from the system clock (so `injected_clock`
/// runs); every check must pass but `skipped`.
async fn conforms_skipping(builder: LinxioBuilder, skipped: &[&str]) {
    let clock = conformance::far_clock();
    let fake = builder.clock(clock.clone()).start().unwrap();
    // The suite checks how each single answer maps, so the provider must not retry
    // `GET /me` past an injected 5xx (its default policy would).
    let provider = LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
        .unwrap()
        .with_clock(clock)
        .with_retry(RetryPolicy::NONE);
    let report = conformance::run_all(&provider, &Target::linxio(&fake)).await;
    report.assert_passed();
    let not_run: Vec<&str> = report
        .results
        .iter()
        .filter(|(_, r)| matches!(r, CheckResult::Skipped(_)))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(not_run, skipped, "{report:?}");
}

async fn conforms(builder: LinxioBuilder) {
    conforms_skipping(builder, &[]).await;
}

#[tokio::test]
async fn default_fake() {
    conforms(FakeLinxio::builder()).await;
}

#[tokio::test]
async fn camel_case_otp_flag() {
    conforms(FakeLinxio::builder().otp_flag(OtpFlag::Camel)).await;
}

#[tokio::test]
async fn refresh_token_omitted_or_echoed() {
    conforms(FakeLinxio::builder().refresh_token(RefreshTokenPolicy::Omit)).await;
    conforms(FakeLinxio::builder().refresh_token(RefreshTokenPolicy::Echo)).await;
}

#[tokio::test]
async fn expiry_from_the_jwt_only_or_unknown() {
    conforms(FakeLinxio::builder().expiry(ExpiryStyle::ExpOnly)).await;
    // No expiry stated anywhere: there is no lifetime to check.
    conforms_skipping(
        FakeLinxio::builder().expiry(ExpiryStyle::NoExpiry),
        &["token_lifetime"],
    )
    .await;
}

#[tokio::test]
async fn json_logout_and_reuse_detection() {
    conforms(
        FakeLinxio::builder()
            .logout(LogoutStyle::Json)
            .reuse_detection(true),
    )
    .await;
}
