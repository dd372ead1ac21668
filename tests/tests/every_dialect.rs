//! One piece of code, every dialect: sign in through the session manager with a file
//! store, make an authorized call, resume in a "new process" from the file, sign out.
//! What differs between backends is only how the provider is built.

use std::sync::Arc;

use authmux_core::{AuthError, AuthProvider, Credentials, FileStore, LoginOutcome, SessionManager};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use bytes::Bytes;

async fn lifecycle(provider: Arc<dyn AuthProvider>, protected_path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("profile.json");
    let manager = SessionManager::builder(provider.clone())
        .store(FileStore::new(&file))
        .build();
    let outcome = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(
        matches!(outcome, LoginOutcome::Authenticated(_)),
        "{}",
        provider.dialect()
    );
    let get = || {
        http::Request::get(protected_path)
            .body(Bytes::new())
            .unwrap()
    };
    assert_eq!(
        manager.send(get()).await.unwrap().status(),
        200,
        "{}",
        provider.dialect()
    );

    // A second process resumes from the file.
    let resumed = SessionManager::builder(provider.clone())
        .store(FileStore::new(&file))
        .build();
    let session = resumed.restore().await.unwrap().expect("a stored session");
    assert_eq!(session.dialect, provider.dialect());
    assert_eq!(
        resumed.send(get()).await.unwrap().status(),
        200,
        "{}",
        provider.dialect()
    );
    let user = resumed.current_user().await.unwrap();
    assert_eq!(
        user.email.as_deref(),
        Some(ALICE_EMAIL),
        "{}",
        provider.dialect()
    );

    // The file holds the tokens, never the password.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(DEFAULT_PASSWORD));

    resumed.logout().await.unwrap();
    assert!(
        !file.exists(),
        "{}: logout must clear the store",
        provider.dialect()
    );
    assert!(matches!(
        resumed.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linxio() {
    let fake = authmux_testkit::FakeLinxio::start().unwrap();
    let config = authmux_linxio::LinxioConfig::new(fake.base_url().clone());
    lifecycle(
        Arc::new(authmux_linxio::LinxioProvider::new(config).unwrap()),
        "/api/vehicles",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkutm() {
    let fake = authmux_testkit::FakeLinkUtm::start().unwrap();
    let config =
        authmux_linkutm::LinkUtmConfig::new(fake.base_url().clone()).with_workspace("acme");
    lifecycle(
        Arc::new(authmux_linkutm::LinkUtmProvider::new(config).unwrap()),
        "/api/v1/links",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directus() {
    let fake = authmux_testkit::directus::FakeDirectus::start().unwrap();
    let config = authmux_directus::DirectusConfig::new(fake.base_url().clone());
    lifecycle(
        Arc::new(authmux_directus::DirectusProvider::new(config).unwrap()),
        "/items/articles",
    )
    .await;
}
