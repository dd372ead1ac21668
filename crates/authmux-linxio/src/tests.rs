//! The provider against a scripted transport: the requests it builds (paths, bodies,
//! headers, the `fields[]` query), what it makes of the answers, the checks it does
//! before sending anything, and that no secret reaches a `Debug` or an error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authmux_core::{AccessToken, Expiry, ManualClock, Password, RefreshToken};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const T0: u64 = 1_800_000_000;

/// Answers requests from a queue and keeps what it was sent.
#[derive(Clone, Default)]
struct Script {
    seen: Arc<Mutex<Vec<Request<Bytes>>>>,
    answers: Arc<Mutex<VecDeque<Response<Bytes>>>>,
}

impl Script {
    fn answer(&self, status: u16, body: &Value) -> &Self {
        let bytes = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(serde_json::to_vec(body).unwrap())
        };
        self.answer_raw(Response::builder().status(status).body(bytes).unwrap())
    }

    fn answer_raw(&self, response: Response<Bytes>) -> &Self {
        self.answers.lock().unwrap().push_back(response);
        self
    }

    fn transport(&self) -> Arc<dyn Transport> {
        let script = self.clone();
        Arc::new(authmux_core::transport::from_fn(
            move |request: Request<Bytes>| {
                let script = script.clone();
                async move {
                    script.seen.lock().unwrap().push(request);
                    script
                        .answers
                        .lock()
                        .unwrap()
                        .pop_front()
                        .ok_or_else(|| AuthError::protocol("the script has no answer left"))
                }
            },
        ))
    }

    fn requests(&self) -> Vec<Request<Bytes>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(authmux_core::retry::clone_request)
            .collect()
    }

    fn last(&self) -> Request<Bytes> {
        self.requests().pop().expect("a request was sent")
    }
}

fn body_json(request: &Request<Bytes>) -> Value {
    serde_json::from_slice(request.body()).unwrap()
}

fn setup(config: LinxioConfig) -> (Script, LinxioProvider, ManualClock) {
    let script = Script::default();
    let clock = ManualClock::at_unix(T0);
    let provider = LinxioProvider::with_transport(config, script.transport())
        .unwrap()
        .with_clock(clock.clone())
        .with_retry(RetryPolicy::NONE);
    (script, provider, clock)
}

fn config() -> LinxioConfig {
    LinxioConfig::new("https://api.linxio.example/v2".parse().unwrap())
}

fn session(provider: &LinxioProvider, refresh: Option<&str>) -> Session {
    provider
        .session_from_tokens(TokenSet::new(
            AccessToken::new("access-1"),
            refresh.map(RefreshToken::new),
            Expiry::Unstated,
            UNIX_EPOCH + Duration::from_secs(T0),
        ))
        .with_extra(extras::TEAM_TYPE, "client")
        .with_user(Some(UserProfile::from_json(json!({"id": 1}), &[])))
}

fn authenticated(outcome: LoginOutcome) -> Session {
    match outcome {
        LoginOutcome::Authenticated(s) => s,
        LoginOutcome::OtpRequired(_) => panic!("expected a session"),
    }
}

#[tokio::test]
async fn login_posts_email_password_and_domain_under_the_base_path() {
    let (script, provider, _) = setup(config().with_domain("fleet.example"));
    script.answer(
        200,
        &json!({"token": "t", "refreshToken": "r", "expireAt": "2027-01-01T00:00:00.000Z",
                "teamType": "admin", "roleId": 9}),
    );
    let session = authenticated(
        provider
            .login(&Credentials::new("ann@example.com", "pw"))
            .await
            .unwrap(),
    );
    let request = script.last();
    assert_eq!(request.method(), Method::POST);
    assert_eq!(
        request.uri().to_string(),
        "https://api.linxio.example/v2/login"
    );
    assert_eq!(request.headers()["content-type"], "application/json");
    assert!(request.headers().get("authorization").is_none());
    assert_eq!(
        body_json(&request),
        json!({"email": "ann@example.com", "password": "pw", "domain": "fleet.example"})
    );
    assert_eq!(session.dialect, DIALECT);
    assert_eq!(session.tokens.access.expose_secret(), "t");
    assert_eq!(
        session.tokens.refresh.as_ref().unwrap().expose_secret(),
        "r"
    );
    assert_eq!(
        session.tokens.expires_at,
        authmux_core::timestamp::parse("2027-01-01T00:00:00Z")
    );
    assert_eq!(
        session.tokens.issued_at,
        UNIX_EPOCH + Duration::from_secs(T0)
    );
    assert_eq!(session.extra_str(extras::EMAIL), Some("ann@example.com"));
    assert_eq!(session.extra_str(extras::TEAM_TYPE), Some("admin"));
    assert_eq!(session.extra_str(extras::ROLE_ID), Some("9"));
}

#[tokio::test]
async fn login_without_domain_sends_no_domain_key() {
    let (script, provider, _) = setup(config());
    script.answer(200, &json!({"token": "t"}));
    provider
        .login(&Credentials::new("ann@example.com", "pw"))
        .await
        .unwrap();
    assert_eq!(
        body_json(&script.last()),
        json!({"email": "ann@example.com", "password": "pw"})
    );
}

#[tokio::test]
async fn otp_login_gives_a_challenge_without_password_then_verifies() {
    let (script, provider, clock) = setup(config());
    script.answer(200, &json!({"otpRequired": true}));
    let outcome = provider
        .login(&Credentials::new("otp@example.com", "pw-otp"))
        .await
        .unwrap();
    let LoginOutcome::OtpRequired(challenge) = outcome else {
        panic!("expected a challenge")
    };
    assert_eq!(challenge.email, "otp@example.com");
    assert!(
        challenge.password.is_none(),
        "Linxio's OTP step needs no password"
    );
    assert_eq!(challenge.dialect, DIALECT);
    assert_eq!(challenge.issued_at, clock.now());

    script.answer(401, &json!({"message": "Invalid OTP code"}));
    let err = provider
        .verify_otp(&challenge, &OtpCode::new("000000"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidOtp));

    script.answer(200, &json!({"token": "t-otp", "refreshToken": "r-otp"}));
    let session = provider
        .verify_otp(&challenge, &OtpCode::new(" 123456 "))
        .await
        .unwrap();
    let request = script.last();
    assert_eq!(request.uri().path(), "/v2/login/otp");
    assert_eq!(
        body_json(&request),
        json!({"email": "otp@example.com", "code": "123456"})
    );
    assert_eq!(session.tokens.access.expose_secret(), "t-otp");
    assert_eq!(session.extra_str(extras::EMAIL), Some("otp@example.com"));
}

#[tokio::test]
async fn a_code_given_with_the_credentials_completes_the_otp_step_at_once() {
    let (script, provider, _) = setup(config());
    script
        .answer(200, &json!({"otp_required": true}))
        .answer(200, &json!({"token": "t", "refreshToken": "r"}));
    let session = authenticated(
        provider
            .login(&Credentials::new("otp@example.com", "pw").with_otp("123456"))
            .await
            .unwrap(),
    );
    assert_eq!(session.tokens.access.expose_secret(), "t");
    let paths: Vec<String> = script
        .requests()
        .iter()
        .map(|r| r.uri().path().to_owned())
        .collect();
    assert_eq!(paths, ["/v2/login", "/v2/login/otp"]);
}

#[tokio::test]
async fn input_and_challenge_checks_happen_before_sending() {
    let (script, provider, _) = setup(config());
    let err = provider
        .login(&Credentials::new(" ", "pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Validation { field: Some(f), .. } if f == "email"));
    let err = provider
        .login(&Credentials::new("a@b.c", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Validation { field: Some(f), .. } if f == "password"));
    let challenge = OtpChallenge::new(DIALECT, config().url, "a@b.c", SystemTime::UNIX_EPOCH);
    let err = provider
        .verify_otp(&challenge, &OtpCode::new("  "))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Validation { field: Some(f), .. } if f == "code"));
    let foreign = OtpChallenge::new("directus", config().url, "a@b.c", SystemTime::UNIX_EPOCH);
    assert!(
        provider
            .verify_otp(&foreign, &OtpCode::new("1"))
            .await
            .is_err()
    );
    let elsewhere = OtpChallenge::new(
        DIALECT,
        "https://evil.example".parse().unwrap(),
        "a@b.c",
        SystemTime::UNIX_EPOCH,
    );
    assert!(
        provider
            .verify_otp(&elsewhere, &OtpCode::new("1"))
            .await
            .is_err()
    );
    assert!(script.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn refresh_keeps_the_old_refresh_token_unless_a_new_one_comes() {
    let (script, provider, clock) = setup(config());
    let old = session(&provider, Some("refresh-1"));
    clock.advance(Duration::from_secs(60));

    script.answer(200, &json!({"token": "access-2"}));
    let kept = provider.refresh(&old).await.unwrap();
    let request = script.last();
    assert_eq!(request.uri().path(), "/v2/token/refresh");
    assert!(request.headers().get("authorization").is_none());
    assert_eq!(body_json(&request), json!({"refreshToken": "refresh-1"}));
    assert_eq!(kept.tokens.access.expose_secret(), "access-2");
    assert_eq!(
        kept.tokens.refresh.as_ref().unwrap().expose_secret(),
        "refresh-1"
    );
    assert_eq!(kept.tokens.issued_at, clock.now());
    assert_eq!(kept.extras, old.extras, "extras survive a refresh");
    assert_eq!(kept.user, old.user, "the user survives a refresh");

    script.answer(
        200,
        &json!({"token": "access-3", "refreshToken": "refresh-2"}),
    );
    let rotated = provider.refresh(&kept).await.unwrap();
    assert_eq!(
        rotated.tokens.refresh.as_ref().unwrap().expose_secret(),
        "refresh-2"
    );
    assert_eq!(
        body_json(&script.last()),
        json!({"refreshToken": "refresh-1"})
    );
}

#[tokio::test]
async fn refresh_without_a_refresh_token_is_rejected_without_a_request() {
    let (script, provider, _) = setup(config());
    let err = provider
        .refresh(&session(&provider, None))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::RefreshRejected));
    assert!(script.requests().is_empty());
}

#[tokio::test]
async fn sessions_of_another_origin_or_dialect_are_refused_before_sending() {
    let (script, provider, _) = setup(config());
    let mut foreign = session(&provider, Some("r"));
    foreign.base_url = "https://elsewhere.example/v2".parse().unwrap();
    assert!(matches!(
        provider.refresh(&foreign).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        provider.current_user(&foreign).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        provider.logout(&foreign).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    let mut other_dialect = session(&provider, Some("r"));
    other_dialect.dialect = "directus".into();
    assert!(matches!(
        provider.refresh(&other_dialect).await,
        Err(AuthError::Validation { .. })
    ));
    assert!(script.requests().is_empty());
}

#[tokio::test]
async fn me_sends_the_bearer_and_repeated_percent_encoded_fields_keys() {
    let (script, provider, _) = setup(config().with_fields(["email", "team name&x=1", "a[b]"]));
    let s = session(&provider, Some("r"));
    script.answer(200, &json!({"email": "ann@example.com"}));
    let user = provider.current_user(&s).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("ann@example.com"));
    let request = script.last();
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/v2/me");
    assert_eq!(request.headers()["authorization"], "Bearer access-1");
    let query = request.uri().query().unwrap();
    assert_eq!(
        query,
        "fields%5B%5D=email&fields%5B%5D=team+name%26x%3D1&fields%5B%5D=a%5Bb%5D"
    );
    let decoded: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        decoded,
        [
            ("fields[]".to_owned(), "email".to_owned()),
            ("fields[]".to_owned(), "team name&x=1".to_owned()),
            ("fields[]".to_owned(), "a[b]".to_owned()),
        ]
    );

    // An explicit empty projection asks for everything: no query at all.
    script.answer(200, &json!({"fullName": "Ann"}));
    let user = provider
        .current_user_with_fields::<&str>(&s, &[])
        .await
        .unwrap();
    assert_eq!(user.name.as_deref(), Some("Ann"));
    assert_eq!(script.last().uri().query(), None);
}

#[tokio::test]
async fn me_is_retried_per_the_policy_but_posts_never_are() {
    let script = Script::default();
    let provider = LinxioProvider::with_transport(config(), script.transport())
        .unwrap()
        .with_retry(RetryPolicy {
            retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        });
    let s = session(&provider, Some("r"));
    script
        .answer(503, &json!({"message": "busy"}))
        .answer(502, &Value::Null)
        .answer(200, &json!({"id": 1}));
    assert_eq!(
        provider.current_user(&s).await.unwrap().id.as_deref(),
        Some("1")
    );
    assert_eq!(script.requests().len(), 3);

    script.answer(503, &Value::Null);
    assert!(matches!(
        provider.refresh(&s).await,
        Err(AuthError::Server { status: 503, .. })
    ));
    assert_eq!(script.requests().len(), 4, "a refresh is not retried");
}

#[tokio::test]
async fn logout_posts_an_empty_object_with_the_bearer() {
    let (script, provider, _) = setup(config());
    let s = session(&provider, Some("r"));
    script.answer(204, &Value::Null);
    assert_eq!(provider.logout(&s).await.unwrap(), LogoutOutcome::Revoked);
    let request = script.last();
    assert_eq!(request.method(), Method::POST);
    assert_eq!(request.uri().path(), "/v2/logout");
    assert_eq!(request.headers()["authorization"], "Bearer access-1");
    assert_eq!(body_json(&request), json!({}));
    script.answer(200, &json!({"success": true}));
    assert_eq!(provider.logout(&s).await.unwrap(), LogoutOutcome::Revoked);
    script.answer(401, &json!({"message": "Token expired"}));
    assert!(matches!(
        provider.logout(&s).await,
        Err(AuthError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn no_secret_reaches_debug_or_errors() {
    let (script, provider, _) = setup(config());
    // A server that echoes the password and the code back in its messages.
    script.answer(
        400,
        &json!({"message": "password pw-SECRET-9 is too weak", "field": "password"}),
    );
    let err = provider
        .login(&Credentials::new("a@b.c", "pw-SECRET-9"))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("too weak") && !shown.contains("pw-SECRET-9"),
        "{shown}"
    );

    let challenge = OtpChallenge::new(DIALECT, config().url, "a@b.c", SystemTime::UNIX_EPOCH);
    script.answer(500, &json!({"message": "code 918273 failed"}));
    let err = provider
        .verify_otp(&challenge, &OtpCode::new("918273"))
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("918273"));

    script.answer(
        200,
        &json!({"token": "tok-SECRET-1", "refreshToken": "ref-SECRET-2"}),
    );
    let session = authenticated(
        provider
            .login(&Credentials::new("a@b.c", "pw-SECRET-9"))
            .await
            .unwrap(),
    );
    let shown = format!("{session:?} {provider:?} {:?}", provider.config());
    for secret in ["tok-SECRET-1", "ref-SECRET-2", "pw-SECRET-9"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let credentials = Credentials::new("a@b.c", Password::new("pw-SECRET-9"));
    assert!(!format!("{credentials:?}").contains("pw-SECRET-9"));
}

#[test]
fn construction_checks_the_url_and_config_round_trips() {
    let script = Script::default();
    let plain = LinxioConfig::new("http://api.linxio.example".parse().unwrap());
    assert!(matches!(
        LinxioProvider::with_transport(plain.clone(), script.transport()),
        Err(AuthError::InsecureTransport { .. })
    ));
    let mut opted_in = plain;
    opted_in.client.allow_insecure_http = true;
    assert!(LinxioProvider::with_transport(opted_in, script.transport()).is_ok());
    let local = LinxioConfig::new("http://127.0.0.1:8080".parse().unwrap());
    assert!(LinxioProvider::with_transport(local, script.transport()).is_ok());
    #[cfg(any(feature = "hyper", feature = "reqwest"))]
    {
        let plain = LinxioConfig::new("http://api.linxio.example".parse().unwrap());
        assert!(LinxioProvider::new(plain).is_err());
        assert!(LinxioProvider::new(config()).is_ok());
    }

    let config = config().with_domain("d").with_fields(["email", "teamType"]);
    let text = serde_json::to_string(&config).unwrap();
    let back: LinxioConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, config);
    let minimal: LinxioConfig =
        serde_json::from_str(r#"{"url": "https://api.linxio.example"}"#).unwrap();
    assert_eq!(
        minimal,
        LinxioConfig::new("https://api.linxio.example".parse().unwrap())
    );
    assert_eq!(
        minimal.client.transport_config().timeout,
        Duration::from_secs(30),
        "the SDK's default timeout"
    );
}

#[test]
fn capabilities_say_what_linxio_has() {
    let (_, provider, _) = setup(config());
    let caps = provider.capabilities();
    assert!(caps.refresh && caps.otp_login && caps.server_logout);
    assert!(!caps.rotating_refresh && !caps.signup && !caps.oauth);
    assert!(provider.signup().is_none() && provider.oauth().is_none());
    assert_eq!(provider.dialect(), "linxio");
}

fn any_answer() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<String>().prop_map(String::into_bytes),
        Just(br#"{"token":"t","refreshToken":"r","expireAt":"2027-01-01T00:00:00Z"}"#.to_vec()),
        Just(br#"{"otp_required":true}"#.to_vec()),
        Just(br#"{"token":7}"#.to_vec()),
        Just(br#"{"message":["a",1],"field":{}}"#.to_vec()),
    ];
    (
        prop_oneof![Just(200u16), Just(204), Just(401), 100u16..600],
        body,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every provider call, whatever the server answers, returns (never panics), and a
    /// success status never turns into anything but success or a protocol error.
    #[test]
    fn every_call_survives_any_answer((status, body) in any_answer()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (script, provider, _) = setup(config());
        let s = session(&provider, Some("r"));
        let challenge = OtpChallenge::new(DIALECT, config().url, "a@b.c", SystemTime::UNIX_EPOCH);
        let respond = || {
            script.answer_raw(Response::builder().status(status).body(Bytes::from(body.clone())).unwrap());
        };
        let results: Vec<Result<(), AuthError>> = runtime.block_on(async {
            let mut out = Vec::new();
            respond();
            out.push(provider.login(&Credentials::new("a@b.c", "pw")).await.map(drop));
            script.answers.lock().unwrap().clear();
            respond();
            out.push(provider.verify_otp(&challenge, &OtpCode::new("1")).await.map(drop));
            respond();
            out.push(provider.refresh(&s).await.map(drop));
            respond();
            out.push(provider.current_user(&s).await.map(drop));
            respond();
            out.push(provider.logout(&s).await.map(drop));
            out
        });
        for result in results {
            if let Err(e) = result {
                let _ = format!("{e} {e:?}");
                if (200..300).contains(&status) {
                    prop_assert!(matches!(e, AuthError::Protocol { .. }), "{status}: {e:?}");
                }
            }
        }
    }
}
