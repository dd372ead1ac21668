//! The fault matrix (`authmux_testkit::conformance::fault_matrix`) against
//! `FakeLinkUtm`: every endpoint the dialect has (no OTP login, no refresh) x every
//! fault, through a session manager, with a 400 ms client timeout. Run with
//! `--no-capture` to see the table.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::ClientOptions;
use authmux_linkutm::{LinkUtmConfig, LinkUtmProvider};
use authmux_testkit::FakeLinkUtm;
use authmux_testkit::conformance::fault_matrix::{
    self, EndpointKind, FaultTarget, MatrixFault, Outcome,
};

const TIMEOUT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_survives_every_fault() {
    let fake = FakeLinkUtm::builder()
        .rate_limit_per_minute(None)
        .start()
        .unwrap();
    let config = LinkUtmConfig::new(fake.base_url().clone()).with_client(ClientOptions {
        timeout_ms: Some(u64::try_from(TIMEOUT.as_millis()).unwrap()),
        ..ClientOptions::default()
    });
    let provider = Arc::new(LinkUtmProvider::new(config).unwrap());
    let matrix = fault_matrix::run(provider, &FaultTarget::linkutm(&fake, TIMEOUT)).await;
    matrix.assert_passed("linkutm");
    for endpoint in [
        EndpointKind::Login,
        EndpointKind::CurrentUser,
        EndpointKind::Logout,
        EndpointKind::Send,
    ] {
        let cell = matrix.cell(endpoint, MatrixFault::Hang).unwrap();
        assert!(
            !matches!(cell.outcome, Outcome::NotApplicable(_)),
            "{endpoint:?} did not apply"
        );
    }
}
