//! Helpers shared by the integration tests: a plain reqwest client, never an adapter.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A plain client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("testkit-tests/1.0")
        .build()
        .expect("client")
}

/// A response read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn read(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    Resp {
        status,
        headers,
        text,
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    read(req.send().await.expect("request")).await
}

pub fn with_json(req: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    req.header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
}

pub async fn post_json(url: &str, body: &Value) -> Resp {
    send(with_json(client().post(url), body)).await
}

pub async fn get_bearer(url: &str, token: &str) -> Resp {
    send(client().get(url).bearer_auth(token)).await
}
