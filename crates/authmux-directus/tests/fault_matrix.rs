//! The fault matrix (`authmux_testkit::conformance::fault_matrix`) against
//! `FakeDirectus` in JSON mode: every endpoint x every fault, through a session
//! manager, with a 400 ms client timeout. Run with `--no-capture` to see the table.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::ClientOptions;
use authmux_directus::{DirectusConfig, DirectusProvider};
use authmux_testkit::conformance::fault_matrix::{
    self, EndpointKind, FaultTarget, MatrixFault, Outcome,
};
use authmux_testkit::directus::FakeDirectus;

const TIMEOUT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_survives_every_fault() {
    let fake = FakeDirectus::start().unwrap();
    let mut config = DirectusConfig::new(fake.base_url().clone());
    config.client = ClientOptions {
        timeout_ms: Some(u64::try_from(TIMEOUT.as_millis()).unwrap()),
        ..ClientOptions::default()
    };
    let provider = Arc::new(DirectusProvider::new(config).unwrap());
    let matrix = fault_matrix::run(provider, &FaultTarget::directus(&fake, TIMEOUT)).await;
    matrix.assert_passed("directus");
    for endpoint in EndpointKind::ALL {
        let cell = matrix.cell(endpoint, MatrixFault::Drop).unwrap();
        assert!(
            !matches!(cell.outcome, Outcome::NotApplicable(_)),
            "{endpoint:?} did not apply"
        );
    }
    assert_eq!(
        matrix
            .cell(EndpointKind::Refresh, MatrixFault::RateLimited)
            .unwrap()
            .outcome,
        Outcome::Recovered
    );
}
