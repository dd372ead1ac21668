//! The shared conformance suite (`authmux_testkit::conformance`) against `FakeLinxio`,
//! under each quirk of the dialect the fake can show: both OTP flag spellings, refresh
//! with rotation, without a returned refresh token and with it echoed, each way of
//! telling expiry, and both logout answers.

use authmux_core::{ManualClock, RetryPolicy};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::conformance::{self, Target};
use authmux_testkit::linxio::{
    ExpiryStyle, FakeLinxio, LinxioBuilder, LogoutStyle, OtpFlag, RefreshTokenPolicy,
};

async fn conforms(builder: LinxioBuilder) {
    let clock = ManualClock::at_unix(1_800_000_000);
    let fake = builder.clock(clock.clone()).start().unwrap();
    // The suite checks how each single answer maps, so the provider must not retry
    // `GET /me` past an injected 5xx (its default policy would).
    let provider = LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
        .unwrap()
        .with_clock(clock)
        .with_retry(RetryPolicy::NONE);
    let report = conformance::run_all(&provider, &Target::linxio(&fake)).await;
    report.assert_passed();
    assert!(
        report.failures().is_empty() && report.passed() == report.results.len(),
        "every check applies to Linxio and passes: {report:?}"
    );
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
    conforms(FakeLinxio::builder().expiry(ExpiryStyle::NoExpiry)).await;
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
