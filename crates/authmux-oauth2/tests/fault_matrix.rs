//! The fault matrix (`authmux_testkit::conformance::fault_matrix`) against `FakeOAuth2`
//! with a password-grant provider: every endpoint x every fault, through a session
//! manager, with a 400 ms client timeout. Run with `--no-capture` to see the table.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::ReqwestTransport;
use authmux_core::transport::TransportConfig;
use authmux_oauth2::{OAuth2Config, OAuth2Provider};
use authmux_testkit::FakeOAuth2;
use authmux_testkit::conformance::fault_matrix::{
    self, EndpointKind, FaultTarget, MatrixFault, Outcome,
};
use authmux_testkit::oauth2::PUBLIC_CLIENT_ID;

const TIMEOUT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_survives_every_fault() {
    let fake = FakeOAuth2::start().unwrap();
    let config = OAuth2Config::new(fake.base_url().clone(), PUBLIC_CLIENT_ID)
        .with_scopes(["openid", "email", "profile", "offline_access"])
        .with_password_grant(true);
    let transport = ReqwestTransport::with_config(TransportConfig {
        timeout: TIMEOUT,
        ..TransportConfig::default()
    })
    .unwrap();
    let provider = Arc::new(OAuth2Provider::with_transport(config, Arc::new(transport)).unwrap());
    let matrix = fault_matrix::run(provider, &FaultTarget::oauth2(&fake, TIMEOUT)).await;
    matrix.assert_passed("oauth2");
    for endpoint in [
        EndpointKind::Login,
        EndpointKind::Refresh,
        EndpointKind::Send,
    ] {
        let cell = matrix.cell(endpoint, MatrixFault::Truncated).unwrap();
        assert!(
            !matches!(cell.outcome, Outcome::NotApplicable(_)),
            "{endpoint:?} did not apply"
        );
    }
}
