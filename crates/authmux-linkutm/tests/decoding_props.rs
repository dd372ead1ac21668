//! Property tests: whatever a server answers (any status, any JSON tree, any bytes),
//! every LinkUTM operation returns a value or a typed error, never panics, never puts
//! the session's token or a password in an error, and every session it produces can
//! authorize a request.

use std::sync::{Arc, Mutex};

use authmux_core::{
    AuthError, AuthProvider, Clock, Credentials, LoginOutcome, ManualClock, OtpCode, Password,
    ResetToken, Session, SignupRequest, Transport,
};
use authmux_linkutm::{LinkUtmConfig, LinkUtmProvider};
use authmux_testkit::jwt::{Claims, JwtKeys};
use bytes::Bytes;
use http::{Request, Response};
use proptest::prelude::*;
use serde_json::{Map, Value};
use url::Url;

const PASSWORD: &str = "pw-Secret-9f8e7d6c";

const NOW: u64 = 1_760_000_000;

/// A LinkUTM-shaped JWT (sid claim, exp a day after `NOW`), the same on every call so
/// that the answers can contain it and the leak check can look for it.
fn jwt() -> String {
    let mut extra = Map::new();
    extra.insert("sid".into(), Value::from("s-1"));
    JwtKeys::from_secret(b"property-test-key").sign(&Claims {
        sub: "user-1".into(),
        iat: NOW,
        exp: Some(NOW + 86_400),
        jti: "jti-1".into(),
        extra,
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "token", "accessToken", "access_token", "user", "id", "_id", "email", "name",
            "data", "sessions", "items", "message", "statusCode", "error", "current",
            "isCurrent", "userAgent", "createdAt", "sessionId", "jti",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

fn leaf(token: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            token,
            "s-1".to_owned(),
            "password must be longer than or equal to 8 characters".to_owned(),
            "Invalid OTP".to_owned(),
            "a.b.c".to_owned(),
            String::new(),
        ])
        .prop_map(Value::String),
    ]
}

fn json_tree(token: String) -> impl Strategy<Value = Value> {
    leaf(token).prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![200u16, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 503]),
        1 => 100u16..600,
    ]
}

fn retry_after() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        (0u64..100_000).prop_map(|s| s.to_string()),
        Just("Sun, 06 Nov 1994 08:49:47 GMT".to_owned()),
        "[ -~]{0,12}",
    ])
}

/// A scripted server: every request gets the same answer.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<(u16, Bytes, Option<String>)>>);

impl Script {
    fn set(&self, status: u16, body: Bytes, retry_after: Option<String>) {
        *self.0.lock().unwrap() = (status, body, retry_after);
    }

    fn transport(&self) -> Arc<dyn Transport> {
        let script = self.clone();
        Arc::new(authmux_core::transport::from_fn(
            move |_request: Request<Bytes>| {
                let (status, body, retry_after) = script.0.lock().unwrap().clone();
                async move {
                    let mut builder = Response::builder().status(status);
                    if let Some(value) = retry_after {
                        builder = builder.header("retry-after", value);
                    }
                    Ok::<_, AuthError>(builder.body(body).unwrap())
                }
            },
        ))
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    provider: LinkUtmProvider,
    script: Script,
    session: Session,
    token: String,
}

fn harness() -> Harness {
    let clock = ManualClock::at_unix(NOW);
    let script = Script::default();
    let config =
        LinkUtmConfig::new(Url::parse("https://api.linkutm.test").unwrap()).with_workspace("acme");
    let provider = LinkUtmProvider::with_transport(config, script.transport())
        .unwrap()
        .with_clock(clock.clone());
    let token = jwt();
    let session = provider.session_from_tokens(authmux_core::TokenSet::new(
        token.as_str().into(),
        None,
        authmux_core::Expiry::Unstated,
        clock.now(),
    ));
    Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        provider,
        script,
        session,
        token,
    }
}

/// Runs every operation against the scripted answer and checks the invariants.
fn exercise(h: &Harness) -> Result<(), TestCaseError> {
    h.runtime.block_on(async {
        let p = &h.provider;
        let s = &h.session;
        let mut errors: Vec<AuthError> = Vec::new();
        let mut sessions: Vec<Session> = Vec::new();
        let mut keep = |r: Result<Option<Session>, AuthError>| match r {
            Ok(Some(session)) => sessions.push(session),
            Ok(None) => {}
            Err(e) => errors.push(e),
        };
        keep(
            p.login(&Credentials::new("jane@example.com", PASSWORD))
                .await
                .map(|o| match o {
                    LoginOutcome::Authenticated(s) => Some(s),
                    LoginOutcome::OtpRequired(_) => None,
                }),
        );
        let signup = p.signup().unwrap();
        keep(
            signup
                .send_code(&SignupRequest {
                    email: "jane@example.com".into(),
                    name: "Jane".into(),
                    password: Password::new(PASSWORD),
                })
                .await
                .map(|()| None),
        );
        keep(
            signup
                .verify_code("jane@example.com", &OtpCode::new("123456"))
                .await
                .map(Some),
        );
        keep(signup.resend_code("jane@example.com").await.map(|()| None));
        let reset = p.password_reset().unwrap();
        keep(
            reset
                .request_reset("jane@example.com", None)
                .await
                .map(|()| None),
        );
        keep(
            reset
                .complete_reset(&ResetToken::new("reset-token"), &Password::new(PASSWORD))
                .await
                .map(|()| None),
        );
        keep(
            p.password_change()
                .unwrap()
                .change_password(s, &Password::new(PASSWORD), &Password::new(PASSWORD))
                .await
                .map(|()| None),
        );
        keep(p.current_user(s).await.map(|_| None));
        let sign_ins = p.sign_in_sessions().unwrap();
        keep(sign_ins.list(s).await.map(|_| None));
        keep(sign_ins.revoke(s, "s-1").await.map(|()| None));
        keep(sign_ins.revoke_all(s).await.map(|()| None));
        keep(p.logout(s).await.map(|_| None));
        let callback = Url::parse(&format!(
            "http://localhost:3000/auth/google/callback?token={}",
            h.token
        ))
        .unwrap();
        keep(p.oauth().unwrap().complete(&callback).await.map(Some));

        for error in &errors {
            let text = format!("{error} {error:?}");
            prop_assert!(!text.contains(&h.token), "token leaked: {}", text);
            prop_assert!(!text.contains(PASSWORD), "password leaked: {}", text);
        }
        for session in &sessions {
            let mut request = http::Request::get("/api/v1/links")
                .body(bytes::Bytes::new())
                .unwrap();
            prop_assert!(
                authmux_core::provider::authorize_request(p, session, &mut request).is_ok()
            );
            prop_assert_eq!(session.dialect.as_str(), "linkutm");
            prop_assert_eq!(session.extra_str("workspace"), Some("acme"));
            let debug = format!("{session:?}");
            prop_assert!(!debug.contains(session.tokens.access.expose_secret()));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_answer_is_decoded_or_refused_without_panicking(
        status in status(),
        body in json_tree(jwt()),
        retry_after in retry_after(),
    ) {
        let h = harness();
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        h.script.set(status, bytes, retry_after);
        exercise(&h)?;
    }

    #[test]
    fn any_bytes_answer_is_decoded_or_refused_without_panicking(
        status in status(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let h = harness();
        h.script.set(status, Bytes::from(body), None);
        exercise(&h)?;
    }
}
