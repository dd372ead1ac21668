//! The shared machinery, driven over real HTTP with a minimal handler.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use authmux_testkit::server::{
    Context, FakeRequest, FakeResponse, Handler, RateLimit, ServerConfig, ServerHandle,
};
use authmux_testkit::{Fault, ManualClock};
use common::{client, send};
use http::StatusCode;
use serde_json::json;

struct Echo;

impl Handler for Echo {
    fn endpoints(&self) -> &[&'static str] {
        &[
            "GET /hello",
            "POST /echo",
            "DELETE /things/:id",
            "GET /now",
            "GET /dated",
        ]
    }

    fn handle(&self, endpoint: &'static str, req: &FakeRequest, cx: &Context<'_>) -> FakeResponse {
        match endpoint {
            "GET /hello" => FakeResponse::json(StatusCode::OK, &json!({ "hello": "world" })),
            "POST /echo" => FakeResponse::json(StatusCode::OK, &req.json().unwrap().unwrap()),
            "DELETE /things/:id" => {
                FakeResponse::json(StatusCode::OK, &json!({ "deleted": req.param("id") }))
            }
            "GET /dated" => {
                FakeResponse::no_content().with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            }
            _ => {
                let secs = authmux_testkit::jwt::unix_secs(cx.now());
                FakeResponse::json(StatusCode::OK, &json!({ "now": secs }))
            }
        }
    }

    fn error(&self, status: StatusCode, message: &str) -> FakeResponse {
        FakeResponse::json(
            status,
            &json!({ "status": status.as_u16(), "message": message }),
        )
    }
}

fn start() -> ServerHandle {
    ServerHandle::start(Arc::new(Echo), ServerConfig::new()).unwrap()
}

#[tokio::test]
async fn routes_params_and_not_found_use_the_envelope() {
    let s = start();
    let r = send(client().delete(s.url("/things/42"))).await;
    assert_eq!(r.json(), json!({ "deleted": "42" }));
    let r = send(client().get(s.url("/nope"))).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "Cannot GET /nope");
    assert_eq!(s.recorder().count("DELETE /things/:id"), 1);
    assert_eq!(s.recorder().count("GET /nope"), 1);
    assert_eq!(s.recorder().total(), 2);
}

#[tokio::test]
async fn recorder_captures_user_agent_bearer_cookie_headers_and_body() {
    let s = start();
    send(
        client()
            .post(s.url("/echo"))
            .header("user-agent", "probe/2")
            .header("authorization", "Bearer tok")
            .header("cookie", "a=1")
            .header("x-workspace-id", "ws-1")
            .body(r#"{"x":1}"#),
    )
    .await;
    send(client().get(s.url("/hello"))).await;
    let posted = s.recorder().last("POST /echo").unwrap();
    assert_eq!(posted.user_agent(), Some("probe/2"));
    assert_eq!(posted.bearer(), Some("tok"));
    assert!(posted.had_cookie());
    assert_eq!(posted.header("x-workspace-id"), Some("ws-1"));
    assert_eq!(posted.json().unwrap(), json!({ "x": 1 }));
    let hello = s.recorder().last("GET /hello").unwrap();
    assert!(!hello.had_bearer() && !hello.had_cookie());
    assert_eq!(
        s.recorder().user_agents("GET /hello"),
        vec![Some("testkit-tests/1.0".to_owned())]
    );
    s.recorder().reset();
    assert_eq!(s.recorder().total(), 0);
}

#[tokio::test]
async fn status_fault_uses_the_envelope_then_normal_service_resumes() {
    let s = start();
    s.faults().push_n("GET /hello", Fault::Status(502), 2);
    for _ in 0..2 {
        let r = send(client().get(s.url("/hello"))).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.json(), json!({ "status": 502, "message": "Bad Gateway" }));
    }
    assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
    assert_eq!(s.recorder().count("GET /hello"), 3);
}

#[tokio::test]
async fn always_faults_stay_until_cleared_and_any_endpoint_matches_all() {
    let s = start();
    s.faults().always("GET /hello", Fault::Status(500));
    for _ in 0..3 {
        assert_eq!(send(client().get(s.url("/hello"))).await.status, 500);
    }
    s.faults().clear("GET /hello");
    assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
    s.faults().push("*", Fault::Status(503));
    assert_eq!(send(client().delete(s.url("/things/1"))).await.status, 503);
    assert_eq!(send(client().delete(s.url("/things/1"))).await.status, 200);
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let s = start();
    s.faults()
        .push("GET /hello", Fault::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    let r = send(client().get(s.url("/hello"))).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json(), json!({ "hello": "world" }));
    // A client timeout shorter than the delay fails.
    s.faults()
        .push("GET /hello", Fault::Delay(Duration::from_millis(500)));
    let err = client()
        .get(s.url("/hello"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(err.unwrap_err().is_timeout());
}

#[tokio::test]
async fn dropped_connection_gives_no_response() {
    let s = start();
    s.faults().push("GET /hello", Fault::DropConnection);
    let err = client().get(s.url("/hello")).send().await.unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
}

#[tokio::test]
async fn malformed_json_is_200_and_unparseable() {
    let s = start();
    s.faults().push("GET /hello", Fault::MalformedJson);
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
}

#[tokio::test]
async fn truncated_body_fails_while_reading() {
    let s = start();
    s.faults().push("GET /hello", Fault::TruncatedBody);
    let resp = client().get(s.url("/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn oversized_body_is_still_valid_json() {
    let s = start();
    s.faults()
        .push("GET /hello", Fault::OversizedBody(3 * 1024 * 1024));
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.text.len(), 3 * 1024 * 1024);
    assert_eq!(r.json(), json!({ "hello": "world" }));
}

#[tokio::test]
async fn rate_limited_fault_sets_retry_after() {
    let s = start();
    s.faults().push(
        "GET /hello",
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json()["status"], 429);
}

#[tokio::test]
async fn respond_fault_answers_verbatim() {
    let s = start();
    s.faults().push(
        "POST /echo",
        Fault::Respond(FakeResponse::raw(
            StatusCode::IM_A_TEAPOT,
            "text/plain",
            "tea",
        )),
    );
    let r = send(client().post(s.url("/echo")).body("{}")).await;
    assert_eq!((r.status, r.text.as_str()), (418, "tea"));
}

#[tokio::test]
async fn rate_limit_follows_the_injected_clock() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let s = ServerHandle::start(
        Arc::new(Echo),
        ServerConfig::new()
            .clock(Arc::new(clock.clone()))
            .rate_limit(Some(RateLimit::per_minute(3))),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
    }
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    clock.advance(Duration::from_secs(45));
    assert_eq!(
        send(client().get(s.url("/hello")))
            .await
            .header("retry-after"),
        Some("15")
    );
    clock.advance(Duration::from_secs(15));
    assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
    s.set_rate_limit(None);
    for _ in 0..5 {
        assert_eq!(send(client().get(s.url("/hello"))).await.status, 200);
    }
}

#[tokio::test]
async fn clock_offset_moves_server_time() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let s =
        ServerHandle::start(Arc::new(Echo), ServerConfig::new().clock(Arc::new(clock))).unwrap();
    assert_eq!(
        send(client().get(s.url("/now"))).await.json()["now"],
        1_700_000_000
    );
    s.set_clock_ahead(Duration::from_secs(90));
    assert_eq!(
        send(client().get(s.url("/now"))).await.json()["now"],
        1_700_000_090
    );
    s.set_clock_behind(Duration::from_secs(30));
    assert_eq!(s.clock_offset_millis(), -30_000);
    assert_eq!(
        send(client().get(s.url("/now"))).await.json()["now"],
        1_699_999_970
    );
}

#[tokio::test]
async fn every_answer_is_dated_on_the_server_clock_offset_included() {
    let clock = ManualClock::at_unix(1_700_000_000);
    let s = ServerHandle::start(
        Arc::new(Echo),
        ServerConfig::new().clock(Arc::new(clock.clone())),
    )
    .unwrap();
    let date_of = |r: &common::Resp| {
        assert_eq!(
            r.headers.get_all("date").iter().count(),
            1,
            "one Date header"
        );
        authmux_core::token::server_date(&r.headers).expect("a Date header")
    };
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.header("date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    for (offset, expected) in [
        (600_000, 1_700_000_600),
        (-600_000, 1_699_999_400),
        (0, 1_700_000_000),
    ] {
        s.set_clock_offset_millis(offset);
        let at = UNIX_EPOCH + Duration::from_secs(expected);
        // Handler answers, the 404 envelope, and answers made by faults alike.
        assert_eq!(date_of(&send(client().get(s.url("/hello"))).await), at);
        assert_eq!(date_of(&send(client().get(s.url("/nope"))).await), at);
        s.faults().push("GET /hello", Fault::Status(503));
        assert_eq!(date_of(&send(client().get(s.url("/hello"))).await), at);
        s.faults()
            .push("GET /hello", Fault::Respond(FakeResponse::no_content()));
        assert_eq!(date_of(&send(client().get(s.url("/hello"))).await), at);
    }
    // The clock moves, the Date follows.
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        date_of(&send(client().get(s.url("/hello"))).await),
        UNIX_EPOCH + Duration::from_secs(1_700_000_005)
    );
    // A handler's own Date wins over the server's and over hyper's.
    let r = send(client().get(s.url("/dated"))).await;
    assert_eq!(date_of(&r), UNIX_EPOCH + Duration::from_secs(784_111_777));
    // A clock outside what an HTTP date can say: no Date from the fake (hyper's own).
    clock.set(UNIX_EPOCH);
    s.set_clock_behind(Duration::from_secs(60));
    let r = send(client().get(s.url("/hello"))).await;
    assert_eq!(r.status, 200);
    let hypers = date_of(&r);
    let system = std::time::SystemTime::now();
    assert!(
        hypers + Duration::from_secs(60) > system && hypers < system + Duration::from_secs(60),
        "hyper's Date is the system time"
    );
}

#[tokio::test]
async fn given_port_and_shutdown_on_drop_free_the_port() {
    let s = start();
    let port = s.port();
    drop(s);
    // The port is free again: a new server can take it and the old one is gone.
    let again = ServerHandle::start(Arc::new(Echo), ServerConfig::new().port(port)).unwrap();
    assert_eq!(again.port(), port);
    assert_eq!(send(client().get(again.url("/hello"))).await.status, 200);
    again.shutdown();
    assert!(
        client()
            .get(format!("http://127.0.0.1:{port}/hello"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn works_without_a_tokio_runtime() {
    let s = start();
    let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with(r#"{"hello":"world"}"#));
}
