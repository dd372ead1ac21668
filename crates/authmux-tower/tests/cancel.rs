//! A caller that gives up while the refresh for its 401 runs: the refresh completes
//! (one, however the caller left), the request is not replayed behind its back, no spent
//! refresh token is sent again, and the next request goes out with the new session.
//! Against the test kit's scripted provider (a refresh that takes 50 ms) and an inner
//! service that answers 401 to any access token the provider no longer accepts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::{ManualClock, SessionManager};
use authmux_testkit::scripted::ScriptedProvider;
use authmux_tower::AuthLayer;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

#[tokio::test]
async fn a_request_dropped_while_its_401_refreshes_leaves_the_new_session() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut provider = ScriptedProvider::new(clock.clone());
    provider.refresh_delay = Duration::from_millis(50);
    let record = Arc::clone(&provider.record);
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .clock(clock)
        .build();
    let session = manager
        .hydrate(provider.new_session().tokens)
        .await
        .unwrap();
    let refused = session.tokens.access.expose_secret().to_owned();
    provider.revoke_access(&refused);

    // The resource server: 200 to a live access token, 401 to any other.
    let calls = Arc::new(AtomicUsize::new(0));
    let bearers = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let (calls, bearers, record) = (Arc::clone(&calls), Arc::clone(&bearers), record);
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let bearer = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_owned();
            let live = record.lock().unwrap().live_access.contains_key(&bearer);
            bearers.lock().unwrap().push(bearer);
            let status = if live {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            async move {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = status;
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut service = AuthLayer::new(manager.clone()).layer(inner);
    let get = || {
        Request::get("https://api.example.test/items")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    // The caller gives up 10 ms in: its 401 came back, the refresh (50 ms) runs.
    let first = service.ready().await.unwrap().call(get());
    assert!(
        tokio::time::timeout(Duration::from_millis(10), first)
            .await
            .is_err(),
        "the request was not cancelled mid-refresh"
    );
    manager.idle().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no replay after the cancel"
    );

    let answer = service.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let now = manager.session().unwrap().tokens.access;
    assert_ne!(now.expose_secret(), refused);
    assert_eq!(
        *bearers.lock().unwrap(),
        [refused, now.expose_secret().to_owned()]
    );
    let record = provider.record();
    assert_eq!(record.refresh_calls, 1);
    assert_eq!(record.spent_presented, 0);
}
