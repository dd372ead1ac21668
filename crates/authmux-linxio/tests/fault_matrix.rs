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

// ----- the refresh retry rule (`authmux_core::retry::RefreshRetry`) -----------------

mod refresh_retry {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use authmux_core::{ClientOptions, Credentials, RefreshRetry, SessionManager};
    use authmux_linxio::{LinxioConfig, LinxioProvider};
    use authmux_testkit::linxio::endpoints::REFRESH;
    use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
    use authmux_testkit::{FakeLinxio, FakeResponse, Fault};
    use http::StatusCode;
    use tokio::net::TcpListener;
    use tokio::task::{JoinHandle, JoinSet};
    use url::Url;

    use super::TIMEOUT;

    fn provider_at(url: &Url) -> Arc<LinxioProvider> {
        let mut config = LinxioConfig::new(url.clone());
        config.client = ClientOptions {
            timeout_ms: Some(u64::try_from(TIMEOUT.as_millis()).unwrap()),
            ..ClientOptions::default()
        };
        Arc::new(LinxioProvider::new(config).unwrap())
    }

    async fn signed_in(url: &Url) -> SessionManager {
        let manager = SessionManager::new(provider_at(url));
        manager
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap();
        manager
    }

    /// Refreshes with `fault` on the refresh endpoint; returns how many refresh requests
    /// the server received and whether the token changed.
    async fn refresh_with(fake: &FakeLinxio, fault: Fault) -> (usize, bool) {
        let manager = signed_in(fake.base_url()).await;
        let old = manager.session().unwrap().tokens.access;
        fake.faults().push(REFRESH, fault);
        let before = fake.recorder().count(REFRESH);
        // A failed refresh is the caller's error, and the still-valid session is kept.
        let refreshed = match manager.refresh().await {
            Ok(token) => token != old,
            Err(error) => {
                assert!(
                    authmux_testkit::conformance::fault_matrix::is_transient(&error),
                    "{error:?}"
                );
                assert_eq!(manager.session().unwrap().tokens.access, old, "kept");
                false
            }
        };
        fake.faults().clear_all();
        (fake.recorder().count(REFRESH) - before, refreshed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_the_server_did_not_process_is_retried_once_and_succeeds() {
        let fake = FakeLinxio::start().unwrap();
        let rate_limited = Fault::RateLimited {
            retry_after_secs: 1,
        };
        assert_eq!(refresh_with(&fake, rate_limited).await, (2, true));
        let unavailable = Fault::Respond(
            FakeResponse::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "maintenance", "message": "back soon"}),
            )
            .with_header("retry-after", "1"),
        );
        assert_eq!(refresh_with(&fake, unavailable).await, (2, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_the_server_may_have_processed_is_not_retried() {
        let fake = FakeLinxio::start().unwrap();
        for fault in [
            Fault::Status(500),
            Fault::Status(503),
            Fault::DropConnection,
            Fault::TruncatedBody,
            Fault::Hang,
            // Over the 2 s bound: returned, not waited for.
            Fault::RateLimited {
                retry_after_secs: 3,
            },
        ] {
            let what = format!("{fault:?}");
            assert_eq!(refresh_with(&fake, fault).await, (1, false), "{what}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_retry_follows_the_configured_bound() {
        let fake = FakeLinxio::start().unwrap();
        let refresh_once = |rule: RefreshRetry, retry_after_secs: u64| {
            let fake = &fake;
            async move {
                let manager = SessionManager::builder(provider_at(fake.base_url()))
                    .refresh_retry(rule)
                    .build();
                manager
                    .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
                    .await
                    .unwrap();
                fake.faults()
                    .push(REFRESH, Fault::RateLimited { retry_after_secs });
                let before = fake.recorder().count(REFRESH);
                let _ = manager.refresh().await;
                fake.recorder().count(REFRESH) - before
            }
        };
        // Turned off: one request.
        assert_eq!(refresh_once(RefreshRetry::NONE, 1).await, 1);
        // A bound of 3 s waits for a Retry-After of 3 s (the default 2 s does not).
        let patient = RefreshRetry {
            max_retry_after: Duration::from_secs(3),
            ..RefreshRetry::default()
        };
        assert_eq!(refresh_once(patient, 3).await, 2);
    }

    /// A TCP forwarder to `to` on `listener`, which a test can stop (every connection
    /// closed, the port refusing) and start again on the same port.
    fn forward(listener: TcpListener, to: SocketAddr) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_is_retried_and_reaches_a_server_that_came_back() {
        let fake = FakeLinxio::start().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = Url::parse(&format!("http://{addr}")).unwrap();
        let forwarder = forward(listener, fake.addr());
        let manager = signed_in(&url).await;
        let old = manager.session().unwrap().tokens.access;
        // The server goes away: the port refuses connections.
        forwarder.abort();
        let _ = forwarder.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... and comes back 100 ms later, before the retry (250 ms by default).
        let server = fake.addr();
        let back = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let listener = TcpListener::bind(addr).await.unwrap();
            // Serve until the test ends (the runtime drops this task).
            forward(listener, server).await.ok();
        });
        let before = fake.recorder().count(REFRESH);
        let started = Instant::now();
        let token = manager.refresh().await.unwrap();
        assert_ne!(token, old, "the retried refresh succeeded");
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The first attempt never reached the server.
        assert_eq!(fake.recorder().count(REFRESH) - before, 1);
        back.abort();
    }
}
