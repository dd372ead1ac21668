//! The shared conformance suite (`authmux_testkit::conformance`) against `FakeLinkUtm`,
//! through the default reqwest transport.

mod common;

use authmux_testkit::conformance::{self, CheckResult, Target};

#[tokio::test]
async fn linkutm_passes_the_conformance_suite() {
    let rig = common::rig();
    let report = conformance::run_all(rig.provider.as_ref(), &Target::linkutm(&rig.fake)).await;
    report.assert_passed();
    // What LinkUTM cannot do is skipped, and nothing else.
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|(_, r)| matches!(r, CheckResult::Skipped(_)))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        skipped,
        [
            "otp_challenge",
            "refresh_token_sent",
            "refresh_error_mapping"
        ]
    );
}
