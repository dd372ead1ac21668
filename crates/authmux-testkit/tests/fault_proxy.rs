//! The fault proxy, driven over real HTTP with a plain client, in front of the fake
//! Directus and the streaming server: what it forwards, what it answers itself, what
//! reaches the upstream, and that bodies stream through. (In front of the real
//! Directus: `crates/authmux-directus/tests/live_faults.rs`.)

mod common;

use std::time::{Duration, Instant};

use authmux_testkit::Fault;
use authmux_testkit::directus::{FakeDirectus, endpoints};
use authmux_testkit::fault_proxy::FaultProxy;
use authmux_testkit::stream::{CHUNK_BYTES, StreamServer};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use common::{client, post_json, send, with_json};
use serde_json::json;

fn login_body() -> serde_json::Value {
    json!({"email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "json"})
}

/// Signs in through the proxy; returns the refresh token.
async fn login(proxy: &FaultProxy) -> String {
    let r = post_json(&proxy.url("/auth/login"), &login_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["data"]["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

#[tokio::test]
async fn forwards_unfaulted_requests_and_counts_what_reached_the_server() {
    let fake = FakeDirectus::start().unwrap();
    let proxy = FaultProxy::start(fake.base_url()).unwrap();
    let refresh = login(&proxy).await;
    let r = post_json(
        &proxy.url("/auth/refresh"),
        &json!({"refresh_token": refresh, "mode": "json"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = send(
        client()
            .get(proxy.url("/users/me?fields=id,email"))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["data"]["email"], ALICE_EMAIL);
    // The fake saw the query and the bearer the proxy forwarded.
    let seen = fake.recorder().last(endpoints::ME).unwrap();
    assert_eq!(seen.query.as_deref(), Some("fields=id,email"));
    assert_eq!(seen.bearer(), Some(access.as_str()));
    assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));
    // Bodies of requests to named endpoints are recorded on both sides.
    let presented = proxy
        .reached()
        .last(endpoints::REFRESH)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(presented["refresh_token"], refresh.as_str());
    for endpoint in [endpoints::LOGIN, endpoints::REFRESH, endpoints::ME] {
        assert_eq!(proxy.recorder().count(endpoint), 1, "{endpoint}");
        assert_eq!(proxy.forwarded(endpoint), 1, "{endpoint}");
        assert_eq!(fake.recorder().count(endpoint), 1, "{endpoint}");
    }
}

#[tokio::test]
async fn answers_status_429_and_malformed_itself_without_reaching_the_server() {
    let fake = FakeDirectus::start().unwrap();
    let proxy = FaultProxy::start(fake.base_url()).unwrap();
    let faults = proxy.faults();
    faults.push(endpoints::LOGIN, Fault::Status(503));
    faults.push(
        endpoints::LOGIN,
        Fault::RateLimited {
            retry_after_secs: 3,
        },
    );
    faults.push(endpoints::LOGIN, Fault::MalformedJson);
    let url = proxy.url("/auth/login");
    let r = post_json(&url, &login_body()).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["errors"][0]["extensions"]["code"],
        "SERVICE_UNAVAILABLE"
    );
    let r = post_json(&url, &login_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(
        r.json()["errors"][0]["extensions"]["code"],
        "REQUESTS_EXCEEDED"
    );
    let r = post_json(&url, &login_body()).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    assert_eq!(proxy.recorder().count(endpoints::LOGIN), 3);
    assert_eq!(
        proxy
            .recorder()
            .last(endpoints::LOGIN)
            .unwrap()
            .json()
            .unwrap()["email"],
        ALICE_EMAIL
    );
    assert_eq!(proxy.reached().total(), 0);
    assert_eq!(proxy.forwarded(endpoints::LOGIN), 0);
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 0);
    // The queue is spent: the next login goes through.
    login(&proxy).await;
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 1);
}

#[tokio::test]
async fn drops_the_connection_before_the_server_sees_the_request() {
    let fake = FakeDirectus::start().unwrap();
    let proxy = FaultProxy::start(fake.base_url()).unwrap();
    proxy.faults().push(endpoints::LOGIN, Fault::DropConnection);
    let err = with_json(client().post(proxy.url("/auth/login")), &login_body())
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 0);
    login(&proxy).await;
}

#[tokio::test]
async fn truncates_the_real_answer_after_the_server_processed_the_request() {
    let fake = FakeDirectus::start().unwrap();
    let proxy = FaultProxy::start(fake.base_url()).unwrap();
    let refresh = login(&proxy).await;
    proxy
        .faults()
        .push(endpoints::REFRESH, Fault::TruncatedBody);
    let resp = with_json(
        client().post(proxy.url("/auth/refresh")),
        &json!({"refresh_token": refresh, "mode": "json"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body must break off");
    // The server rotated the token: the old one is dead, as after a lost answer.
    assert_eq!(proxy.forwarded(endpoints::REFRESH), 1);
    let again = post_json(
        &proxy.url("/auth/refresh"),
        &json!({"refresh_token": refresh, "mode": "json"}),
    )
    .await;
    assert_eq!(again.status, 401);
}

#[tokio::test]
async fn pads_oversized_answers_and_delays() {
    let fake = FakeDirectus::start().unwrap();
    let proxy = FaultProxy::start(fake.base_url()).unwrap();
    let faults = proxy.faults();
    faults.push(endpoints::LOGIN, Fault::OversizedBody(3 * 1024 * 1024));
    let r = post_json(&proxy.url("/auth/login"), &login_body()).await;
    assert_eq!(r.status, 200);
    assert!(r.text.len() >= 3 * 1024 * 1024);
    assert!(r.json()["data"]["access_token"].is_string());

    faults.push(endpoints::LOGIN, Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    login(&proxy).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The server handles a delayed answer's request at once; the answer comes later.
    faults.push(endpoints::LOGIN, Fault::DelayAnswer(Duration::from_secs(1)));
    let started = Instant::now();
    let url = proxy.url("/auth/login");
    let pending = tokio::spawn(async move { post_json(&url, &login_body()).await });
    while fake.recorder().count(endpoints::LOGIN) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the login never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The server has handled it; the client has no answer yet.
    assert!(!pending.is_finished());
    assert_eq!(pending.await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(proxy.forwarded(endpoints::LOGIN), 3);
}

#[tokio::test]
async fn streams_the_answer_body_through() {
    let upstream = StreamServer::start().unwrap();
    let proxy = FaultProxy::builder(upstream.base_url())
        .endpoints(&["GET /download/:bytes"])
        .start()
        .unwrap();
    let total = 8 * CHUNK_BYTES;
    let mut resp = client()
        .get(proxy.url(&format!("/download/{total}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The first chunk arrives while the server still holds the rest back: nothing in
    // the proxy waited for the whole body.
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the first chunk arrives before the server releases the rest")
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    assert!(upstream.produced() < total as u64);
    upstream.release();
    let mut read = first.len();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        read += chunk.len();
    }
    assert_eq!(read, total);
    assert_eq!(proxy.forwarded("GET /download/:bytes"), 1);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let upstream = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let proxy = FaultProxy::start(&upstream).unwrap();
    let r = post_json(&proxy.url("/auth/login"), &login_body()).await;
    assert_eq!(r.status, 502);
    assert!(FaultProxy::start(&url::Url::parse("https://example.com").unwrap()).is_err());
}
