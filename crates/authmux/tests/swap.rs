//! The facade end to end: one function, three fake backends, only the config changes;
//! `build_with` plugs a manual clock into the provider so expiry can be tested without
//! sleeping.

use std::sync::Arc;
use std::time::Duration;

use authmux::{
    AuthError, BuildOptions, Clock, Credentials, LoginOutcome, ManualClock, ProviderConfig,
    SessionManager,
};
use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{FakeLinkUtm, FakeLinxio};
use bytes::Bytes;

struct Outcome {
    email: Option<String>,
    status: u16,
}

/// The code under test knows nothing about dialects.
async fn lifecycle(manager: &SessionManager, resource: &str) -> Result<Outcome, AuthError> {
    let outcome = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await?;
    assert!(matches!(outcome, LoginOutcome::Authenticated(_)));
    let user = manager.current_user().await?;
    let response = manager
        .send(http::Request::get(resource).body(Bytes::new()).unwrap())
        .await?;
    Ok(Outcome {
        email: user.email,
        status: response.status().as_u16(),
    })
}

#[tokio::test]
async fn one_function_runs_against_all_three_fakes() {
    let linxio = FakeLinxio::start().unwrap();
    let linkutm = FakeLinkUtm::start().unwrap();
    let directus = FakeDirectus::start().unwrap();
    let cases = [
        (
            format!(r#"{{"dialect":"linxio","url":"{}"}}"#, linxio.base_url()),
            "/api/vehicles",
        ),
        (
            format!(
                r#"{{"dialect":"linkutm","url":"{}","workspace":"acme"}}"#,
                linkutm.base_url()
            ),
            "/api/v1/links",
        ),
        (
            format!(
                r#"{{"dialect":"directus","url":"{}","mode":"cookie"}}"#,
                directus.base_url()
            ),
            "/items/articles",
        ),
    ];
    for (json, resource) in &cases {
        let config: ProviderConfig = json.parse().unwrap();
        let manager = SessionManager::new(config.build().unwrap());
        let outcome = lifecycle(&manager, resource).await.unwrap();
        assert_eq!(outcome.email.as_deref(), Some(ALICE_EMAIL), "{json}");
        assert_eq!(outcome.status, 200, "{json}");
        manager.logout().await.unwrap();
        assert!(matches!(
            manager.access_token().await,
            Err(AuthError::NotSignedIn)
        ));
    }
    assert_eq!(linxio.recorder().count("POST /login"), 1);
    assert_eq!(linkutm.recorder().count("POST /api/v1/auth/login"), 1);
    assert_eq!(directus.recorder().count("POST /auth/login"), 1);
}

#[tokio::test]
async fn build_with_a_manual_clock_drives_expiry_for_every_dialect() {
    let clock = ManualClock::starting_now();
    let linxio = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    let linkutm = FakeLinkUtm::builder().clock(clock.clone()).start().unwrap();
    let directus = FakeDirectus::builder()
        .clock(clock.clone())
        .start()
        .unwrap();
    let urls = [
        ("linxio", linxio.base_url().clone()),
        ("linkutm", linkutm.base_url().clone()),
        ("directus", directus.base_url().clone()),
    ];
    for (dialect, url) in urls {
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let config = ProviderConfig::new(dialect, url).unwrap();
        let provider = config
            .build_with(BuildOptions::new().clock(clock_arc))
            .unwrap();
        let can_refresh = provider.capabilities().refresh;
        let manager = SessionManager::builder(provider)
            .clock(clock.clone())
            .build();
        manager
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap();
        let first = manager.access_token().await.unwrap();
        let expires_at = manager.session().unwrap().tokens.expires_at.unwrap();
        clock.set(expires_at + Duration::from_secs(1));
        let after = manager.access_token().await;
        if can_refresh {
            let second = after.unwrap_or_else(|e| panic!("{dialect}: {e:?}"));
            assert_ne!(second, first, "{dialect}: a new token after expiry");
        } else {
            assert!(
                matches!(after, Err(AuthError::SessionExpired)),
                "{dialect}: {after:?}"
            );
        }
    }
    assert_eq!(linxio.recorder().count("POST /token/refresh"), 1);
    assert_eq!(directus.recorder().count("POST /auth/refresh"), 1);
}
