//! The fault matrix (`authmux_testkit::conformance::fault_matrix`) against `FakeLinxio`:
//! every endpoint x every fault, through a session manager, with a 400 ms client
//! timeout. Run with `--no-capture` to see the table.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::ClientOptions;
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::FakeLinxio;
use authmux_testkit::conformance::fault_matrix::{self, EndpointKind, FaultTarget, MatrixFault};

const TIMEOUT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_survives_every_fault() {
    let fake = FakeLinxio::start().unwrap();
    let mut config = LinxioConfig::new(fake.base_url().clone());
    config.client = ClientOptions {
        timeout_ms: Some(u64::try_from(TIMEOUT.as_millis()).unwrap()),
        ..ClientOptions::default()
    };
    let provider = Arc::new(LinxioProvider::new(config).unwrap());
    let matrix = fault_matrix::run(provider, &FaultTarget::linxio(&fake, TIMEOUT)).await;
    matrix.assert_passed("linxio");
    // Every endpoint of the dialect and every fault applied.
    for endpoint in EndpointKind::ALL {
        let cell = matrix.cell(endpoint, MatrixFault::Status500).unwrap();
        assert!(
            !matches!(cell.outcome, fault_matrix::Outcome::NotApplicable(_)),
            "{endpoint:?} did not apply"
        );
    }
    // The refresh after a 429 with Retry-After 1 s recovered inside the call.
    assert_eq!(
        matrix
            .cell(EndpointKind::Refresh, MatrixFault::RateLimited)
            .unwrap()
            .outcome,
        fault_matrix::Outcome::Recovered
    );
}
