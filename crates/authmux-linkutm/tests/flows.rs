//! Every LinkUTM flow end to end against `FakeLinkUtm`, over the default reqwest
//! transport: login and profile, signup, password reset and change, sign-in sessions,
//! Google OAuth, errors and rate limiting, User-Agent, secrets kept out of output.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use authmux_core::transport::default_user_agent;
use authmux_core::{
    AuthError, AuthProvider, Credentials, OtpChallenge, OtpCode, Password, ResetToken,
    SignupRequest,
};
use authmux_linkutm::{SIGN_IN_EXTRA, WORKSPACE_EXTRA};
use authmux_testkit::linkutm::endpoints;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL};
use authmux_testkit::{FakeResponse, Fault, RateLimit};
use bytes::Bytes;
use common::{login_alice, rig, rig_in_workspace, rig_with, with_user_agent};
use http::StatusCode;
use serde_json::json;
use url::Url;

fn field(err: &AuthError) -> Option<&str> {
    match err {
        AuthError::Validation { field, .. } => field.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn login_builds_the_session_from_the_jwt_and_the_user() {
    let rig = rig();
    let session = login_alice(&rig.provider).await;
    assert_eq!(session.dialect, "linkutm");
    assert!(session.tokens.refresh.is_none());
    // Expiry from the JWT's exp: one day after the fake's (shared) clock, less the
    // second its whole-second `iat` may lag the server's clock (`authmux_core::token`).
    let expected = rig.fake.now() + rig.fake.settings().access_lifetime - Duration::from_secs(1);
    let exp = session.tokens.expires_at.expect("exp read from the JWT");
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(exp), secs(expected));
    let user = session.user.clone().expect("user object kept");
    assert_eq!(user.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(user.name.as_deref(), Some("Alice Example"));
    let alice = rig.fake.users().by_email(ALICE_EMAIL).unwrap();
    assert_eq!(user.id.as_deref(), Some(alice.id.as_str()));
    // The sign-in id the JWT names is kept; no workspace unless configured.
    let live = rig.fake.sessions_of(ALICE_EMAIL);
    assert_eq!(live.len(), 1);
    assert_eq!(session.extra_str(SIGN_IN_EXTRA), Some(live[0].id.as_str()));
    assert_eq!(session.extra_str(WORKSPACE_EXTRA), None);

    let me = rig.provider.current_user(&session).await.unwrap();
    assert_eq!(me.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(me.id, user.id);
    let profile = rig.fake.recorder().last(endpoints::PROFILE).unwrap();
    assert_eq!(
        profile.bearer(),
        Some(session.tokens.access.expose_secret())
    );
    let login = rig.fake.recorder().last(endpoints::LOGIN).unwrap();
    assert!(!login.had_authorization());
    assert_eq!(
        login.json().unwrap(),
        json!({"email": ALICE_EMAIL, "password": DEFAULT_PASSWORD})
    );
}

#[tokio::test]
async fn login_errors_are_typed() {
    let rig = rig();
    let wrong = rig
        .provider
        .login(&Credentials::new(ALICE_EMAIL, "wrong password"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, AuthError::InvalidCredentials), "{wrong:?}");
    let unknown = rig
        .provider
        .login(&Credentials::new("nobody@example.com", DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert!(matches!(unknown, AuthError::InvalidCredentials));
    let disabled = rig
        .provider
        .login(&Credentials::new(FORBIDDEN_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(disabled, AuthError::AccountDisabled),
        "{disabled:?}"
    );
    // The server's own 400 (class-validator array) names the field.
    let invalid = rig
        .provider
        .login(&Credentials::new("not-an-email", DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(field(&invalid), Some("email"), "{invalid:?}");
    assert_eq!(rig.fake.recorder().count(endpoints::LOGIN), 4);
}

#[tokio::test]
async fn no_refresh_and_no_login_otp() {
    let rig = rig();
    let caps = rig.provider.capabilities();
    assert!(!caps.refresh && !caps.rotating_refresh && !caps.otp_login);
    assert!(caps.signup && caps.password_reset && caps.password_change);
    assert!(caps.sign_in_sessions && caps.oauth && caps.server_logout);
    assert!(rig.provider.signup().is_some() && rig.provider.oauth().is_some());
    assert!(rig.provider.password_reset().is_some());
    assert!(rig.provider.password_change().is_some());
    assert!(rig.provider.sign_in_sessions().is_some());

    let session = login_alice(&rig.provider).await;
    let before = rig.fake.recorder().total();
    assert!(matches!(
        rig.provider.refresh(&session).await,
        Err(AuthError::Unsupported {
            capability: "refresh"
        })
    ));
    let challenge = OtpChallenge::new(
        "linkutm",
        rig.fake.base_url().clone(),
        ALICE_EMAIL,
        UNIX_EPOCH,
    );
    assert!(matches!(
        rig.provider
            .verify_otp(&challenge, &OtpCode::new("123456"))
            .await,
        Err(AuthError::Unsupported { .. })
    ));
    // A code given with the password would be dropped: refused, nothing sent.
    let with_code = Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD).with_otp("123456");
    assert!(matches!(
        rig.provider.login(&with_code).await,
        Err(AuthError::Unsupported { .. })
    ));
    assert_eq!(rig.fake.recorder().total(), before);
}

#[tokio::test]
async fn signup_sends_resends_and_verifies_the_code() {
    let rig = rig_in_workspace("acme");
    let signup = rig.provider.signup().unwrap();
    let email = "newbie@example.com";
    signup
        .send_code(&SignupRequest {
            email: format!("  {email} "),
            name: " Nina Newbie ".into(),
            password: Password::new("a long password"),
        })
        .await
        .unwrap();
    let sent = rig.fake.recorder().last(endpoints::SEND_OTP).unwrap();
    assert_eq!(
        sent.json().unwrap(),
        json!({"email": email, "name": "Nina Newbie", "password": "a long password"})
    );
    let first = rig.fake.last_otp(email).expect("a code was mailed");
    signup.resend_code(email).await.unwrap();
    let second = rig.fake.last_otp(email).unwrap();
    assert_eq!(rig.fake.recorder().count(endpoints::RESEND_OTP), 1);

    // A wrong code (6 digits, so it passes the client check) is InvalidOtp.
    let wrong = if second == "000000" {
        "111111"
    } else {
        "000000"
    };
    let err = signup
        .verify_code(email, &OtpCode::new(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidOtp), "{err:?}");
    if first != second {
        let err = signup
            .verify_code(email, &OtpCode::new(first.as_str()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidOtp),
            "the replaced code: {err:?}"
        );
    }

    let session = signup
        .verify_code(email, &OtpCode::new(second.as_str()))
        .await
        .unwrap();
    assert_eq!(session.user.as_ref().unwrap().email.as_deref(), Some(email));
    assert_eq!(
        session.user.as_ref().unwrap().name.as_deref(),
        Some("Nina Newbie")
    );
    assert_eq!(session.extra_str(WORKSPACE_EXTRA), Some("acme"));
    assert!(session.tokens.expires_at.is_some());
    // The account exists and the password works.
    let again = rig
        .provider
        .login(&Credentials::new(email, "a long password"))
        .await;
    assert!(again.is_ok());
    // Registering the same email again: 409.
    let dup = signup
        .send_code(&SignupRequest {
            email: email.into(),
            name: "Nina".into(),
            password: Password::new("another password"),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, AuthError::Conflict { message: Some(m) } if m.contains("already registered")),
        "{dup:?}"
    );
    // Auth calls never carry the workspace header.
    for endpoint in [
        endpoints::SEND_OTP,
        endpoints::RESEND_OTP,
        endpoints::VERIFY_OTP,
        endpoints::LOGIN,
    ] {
        assert!(
            rig.fake
                .recorder()
                .header_values(endpoint, "x-workspace-id")
                .iter()
                .all(Option::is_none),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn every_client_side_validation_sends_nothing() {
    let rig = rig();
    let session = login_alice(&rig.provider).await;
    let sent_before = rig.fake.recorder().total();
    let signup = rig.provider.signup().unwrap();
    let reset = rig.provider.password_reset().unwrap();
    let change = rig.provider.password_change().unwrap();
    let request = |email: &str, name: &str, password: &str| SignupRequest {
        email: email.into(),
        name: name.into(),
        password: Password::new(password),
    };
    let cases: Vec<(&str, AuthError)> = vec![
        (
            "email",
            signup
                .send_code(&request("", "Nina", "long enough"))
                .await
                .unwrap_err(),
        ),
        (
            "email",
            signup
                .send_code(&request("nina.example.com", "Nina", "long enough"))
                .await
                .unwrap_err(),
        ),
        (
            "name",
            signup
                .send_code(&request("nina@example.com", "  ", "long enough"))
                .await
                .unwrap_err(),
        ),
        (
            "password",
            signup
                .send_code(&request("nina@example.com", "Nina", "7 chars"))
                .await
                .unwrap_err(),
        ),
        (
            "otp",
            signup
                .verify_code("nina@example.com", &OtpCode::new("12345"))
                .await
                .unwrap_err(),
        ),
        (
            "email",
            signup
                .verify_code("nina@", &OtpCode::new("123456"))
                .await
                .unwrap_err(),
        ),
        ("email", signup.resend_code("").await.unwrap_err()),
        (
            "email",
            reset.request_reset("nobody", None).await.unwrap_err(),
        ),
        (
            "newPassword",
            reset
                .complete_reset(&ResetToken::new("tok"), &Password::new("short"))
                .await
                .unwrap_err(),
        ),
        (
            "token",
            reset
                .complete_reset(&ResetToken::new(""), &Password::new("long enough"))
                .await
                .unwrap_err(),
        ),
        (
            "newPassword",
            change
                .change_password(
                    &session,
                    &Password::new(DEFAULT_PASSWORD),
                    &Password::new("1234567"),
                )
                .await
                .unwrap_err(),
        ),
        (
            "currentPassword",
            change
                .change_password(&session, &Password::new(""), &Password::new("long enough"))
                .await
                .unwrap_err(),
        ),
    ];
    for (expected, err) in &cases {
        assert_eq!(field(err), Some(*expected), "{err:?}");
    }
    assert_eq!(
        rig.fake.recorder().total(),
        sent_before,
        "a client-side violation must not reach the server"
    );
}

#[tokio::test]
async fn server_validation_envelopes_are_joined_and_name_their_field() {
    let rig = rig();
    rig.fake.faults().push(
        endpoints::SEND_OTP,
        Fault::Respond(FakeResponse::json(
            StatusCode::BAD_REQUEST,
            &json!({"statusCode": 400, "message": ["name should not be empty", "email must be an email"], "error": "Bad Request"}),
        )),
    );
    let err = rig
        .provider
        .signup()
        .unwrap()
        .send_code(&SignupRequest {
            email: "nina@example.com".into(),
            name: "Nina".into(),
            password: Password::new("long enough"),
        })
        .await
        .unwrap_err();
    match err {
        AuthError::Validation { field, message } => {
            assert_eq!(field.as_deref(), Some("name"));
            assert_eq!(message, "name should not be empty; email must be an email");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn password_reset_end_to_end() {
    let rig = rig();
    let old = login_alice(&rig.provider).await;
    let reset = rig.provider.password_reset().unwrap();
    reset
        .request_reset(
            ALICE_EMAIL,
            Some(&Url::parse("https://ignored.example").unwrap()),
        )
        .await
        .unwrap();
    let forgot = rig
        .fake
        .recorder()
        .last(endpoints::FORGOT_PASSWORD)
        .unwrap();
    assert_eq!(forgot.json().unwrap(), json!({"email": ALICE_EMAIL}));
    // Unknown emails are answered the same way (no account enumeration).
    reset
        .request_reset("nobody@example.com", None)
        .await
        .unwrap();

    let token = rig.fake.last_reset_token(ALICE_EMAIL).unwrap();
    reset
        .complete_reset(
            &ResetToken::new(token.as_str()),
            &Password::new("brand new pass"),
        )
        .await
        .unwrap();
    let body = rig.fake.recorder().last(endpoints::RESET_PASSWORD).unwrap();
    assert_eq!(
        body.json().unwrap(),
        json!({"token": token, "newPassword": "brand new pass"})
    );
    // The token works once; a used (or unknown) token is InvalidCredentials.
    let reused = reset
        .complete_reset(
            &ResetToken::new(token.as_str()),
            &Password::new("another pass"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(reused, AuthError::InvalidCredentials),
        "{reused:?}"
    );
    assert!(matches!(
        rig.provider
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(
        rig.provider
            .login(&Credentials::new(ALICE_EMAIL, "brand new pass"))
            .await
            .is_ok()
    );
    // The fake signs the user out everywhere on reset: the old token is refused.
    assert!(matches!(
        rig.provider.current_user(&old).await,
        Err(AuthError::Unauthorized { .. })
    ));

    // An expired reset token is InvalidCredentials too.
    reset.request_reset(ALICE_EMAIL, None).await.unwrap();
    let late = rig.fake.last_reset_token(ALICE_EMAIL).unwrap();
    rig.clock.advance(Duration::from_secs(3601));
    let expired = reset
        .complete_reset(
            &ResetToken::new(late.as_str()),
            &Password::new("too late pass"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(expired, AuthError::InvalidCredentials),
        "{expired:?}"
    );
}

#[tokio::test]
async fn password_change_end_to_end() {
    let rig = rig_in_workspace("acme");
    let session = login_alice(&rig.provider).await;
    let change = rig.provider.password_change().unwrap();
    let wrong = change
        .change_password(
            &session,
            &Password::new("not my password"),
            &Password::new("next password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(wrong, AuthError::InvalidCredentials), "{wrong:?}");
    change
        .change_password(
            &session,
            &Password::new(DEFAULT_PASSWORD),
            &Password::new("next password"),
        )
        .await
        .unwrap();
    let sent = rig
        .fake
        .recorder()
        .last(endpoints::CHANGE_PASSWORD)
        .unwrap();
    assert_eq!(sent.bearer(), Some(session.tokens.access.expose_secret()));
    assert_eq!(sent.header("x-workspace-id"), None);
    assert_eq!(
        sent.json().unwrap(),
        json!({"currentPassword": DEFAULT_PASSWORD, "newPassword": "next password"})
    );
    assert!(
        rig.provider
            .login(&Credentials::new(ALICE_EMAIL, "next password"))
            .await
            .is_ok()
    );
    // With a revoked token, the 401 is about the token: Unauthorized, not bad credentials.
    rig.provider
        .sign_in_sessions()
        .unwrap()
        .revoke_all(&session)
        .await
        .unwrap();
    let dead = change
        .change_password(
            &session,
            &Password::new("next password"),
            &Password::new("third password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(dead, AuthError::Unauthorized { .. }), "{dead:?}");
}

#[tokio::test]
async fn sign_in_sessions_list_revoke_and_revoke_all() {
    let rig = rig_in_workspace("acme");
    let first = login_alice(&rig.provider).await;
    let second = login_alice(&rig.provider).await;
    let sessions = rig.provider.sign_in_sessions().unwrap();
    let list = sessions.list(&first).await.unwrap();
    assert_eq!(list.len(), 2);
    let current: Vec<_> = list.iter().filter(|r| r.current == Some(true)).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(Some(current[0].id.as_str()), first.extra_str(SIGN_IN_EXTRA));
    for record in &list {
        // The default transport's User-Agent is what the server recorded.
        assert_eq!(
            record.user_agent.as_deref(),
            Some(default_user_agent().as_str())
        );
        assert!(
            record
                .user_agent
                .as_deref()
                .unwrap()
                .starts_with("authmux/")
        );
        assert!(record.created_at.is_some());
        assert!(record.raw.get("ipAddress").is_some(), "raw record kept");
    }
    assert!(
        rig.fake
            .recorder()
            .header_values(endpoints::SESSIONS, "x-workspace-id")
            .iter()
            .all(Option::is_none)
    );

    // Revoke the second sign-in from the first: the second token dies, the first lives.
    let second_id = second.extra_str(SIGN_IN_EXTRA).unwrap().to_owned();
    sessions.revoke(&first, &second_id).await.unwrap();
    assert!(matches!(
        rig.provider.current_user(&second).await,
        Err(AuthError::Unauthorized { message: Some(ref m) }) if m.contains("revoked")
    ));
    assert!(rig.provider.current_user(&first).await.is_ok());
    // Revoking an unknown id is the server's 404.
    assert!(matches!(
        sessions.revoke(&first, "no/such id").await,
        Err(AuthError::Server { status: 404, .. })
    ));
    let revoke = rig.fake.recorder().last(endpoints::REVOKE_SESSION).unwrap();
    assert_eq!(revoke.path, "/api/v1/auth/sessions/no%2Fsuch%20id");
    assert!(matches!(
        sessions.revoke(&first, "").await,
        Err(AuthError::Validation { .. })
    ));

    let third = login_alice(&rig.provider).await;
    sessions.revoke_all(&first).await.unwrap();
    assert!(rig.fake.sessions_of(ALICE_EMAIL).is_empty());
    for gone in [&first, &third] {
        assert!(matches!(
            rig.provider.current_user(gone).await,
            Err(AuthError::Unauthorized { .. })
        ));
    }
}

#[tokio::test]
async fn user_agent_is_overridable() {
    let rig = rig_with(|b| b, |c| with_user_agent(c, "my-dashboard/2.1"));
    let session = login_alice(&rig.provider).await;
    let list = rig
        .provider
        .sign_in_sessions()
        .unwrap()
        .list(&session)
        .await
        .unwrap();
    assert_eq!(list[0].user_agent.as_deref(), Some("my-dashboard/2.1"));
    assert_eq!(
        rig.fake.recorder().user_agents(endpoints::LOGIN),
        vec![Some("my-dashboard/2.1".to_owned())]
    );
}

#[tokio::test]
async fn rate_limit_is_typed_with_retry_after() {
    let rig = rig();
    rig.fake.set_rate_limit(Some(RateLimit::per_minute(3)));
    for _ in 0..3 {
        login_alice(&rig.provider).await;
    }
    let err = rig
        .provider
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    match err {
        AuthError::RateLimited {
            retry_after: Some(wait),
        } => assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        ),
        other => panic!("expected RateLimited with Retry-After, got {other:?}"),
    }
    assert!(err_is_retryable(&rig).await);
    // After the window the server lets the client in again.
    rig.clock.advance(Duration::from_secs(61));
    login_alice(&rig.provider).await;

    // A 429 without Retry-After is still RateLimited.
    rig.fake.set_rate_limit(None);
    rig.fake.faults().push(
        endpoints::PROFILE,
        Fault::Respond(FakeResponse::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}),
        )),
    );
    let session = login_alice(&rig.provider).await;
    assert!(matches!(
        rig.provider.current_user(&session).await,
        Err(AuthError::RateLimited { retry_after: None })
    ));
}

async fn err_is_retryable(rig: &common::Rig) -> bool {
    rig.provider
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .is_err_and(|e| e.is_retryable())
}

#[tokio::test]
async fn google_oauth_end_to_end() {
    let rig = rig_with(
        |b| b.frontend_url("http://localhost:3000"),
        |c| {
            c.with_workspace("acme")
                .with_frontend_url(Url::parse("http://localhost:3000").unwrap())
        },
    );
    let oauth = rig.provider.oauth().unwrap();
    let providers = oauth.providers().await.unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].name, "google");
    assert_eq!(rig.fake.recorder().total(), 0, "providers() asks no server");

    let start = oauth.start_url("google", None).unwrap();
    assert_eq!(start.as_str(), rig.fake.google_start_url());
    assert_eq!(oauth.start_url("Google", None).unwrap(), start);
    assert_eq!(
        field(&oauth.start_url("github", None).unwrap_err()),
        Some("provider")
    );
    // The start URL is the server's redirect to Google (a browser endpoint, not JSON).
    let transport = rig.provider.transport();
    let answer = transport
        .send(
            http::Request::get(start.as_str())
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);

    // The browser comes back from Google to the server's callback, which redirects to
    // the front end with ?token=<jwt>.
    let code = rig
        .fake
        .google_authorization_code("gina@example.com", "Gina Google");
    let back = rig
        .fake
        .url(&format!("/api/v1/auth/google/callback?code={code}"));
    let redirect = transport
        .send(
            http::Request::get(back.as_str())
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap();
    let callback = Url::parse(location).unwrap();
    assert_eq!(callback.path(), "/auth/google/callback");

    let session = oauth.complete(&callback).await.unwrap();
    let user = session.user.clone().unwrap();
    assert_eq!(user.email.as_deref(), Some("gina@example.com"));
    assert_eq!(user.name.as_deref(), Some("Gina Google"));
    assert_eq!(session.extra_str(WORKSPACE_EXTRA), Some("acme"));
    assert!(session.tokens.expires_at.is_some());
    let profile = rig.fake.recorder().last(endpoints::PROFILE).unwrap();
    assert_eq!(
        profile.bearer(),
        Some(session.tokens.access.expose_secret())
    );
    assert_eq!(profile.header("x-workspace-id"), None);
}

#[tokio::test]
async fn google_callbacks_without_a_usable_token_are_refused_clearly() {
    let rig = rig_with(
        |b| b,
        |c| c.with_frontend_url(Url::parse("http://localhost:3000").unwrap()),
    );
    let oauth = rig.provider.oauth().unwrap();
    let cb = |query: &str| {
        Url::parse(&format!(
            "http://localhost:3000/auth/google/callback{query}"
        ))
        .unwrap()
    };
    let err = oauth.complete(&cb("")).await.unwrap_err();
    assert_eq!(field(&err), Some("token"), "{err:?}");
    assert!(err.to_string().contains("no token"));
    let err = oauth.complete(&cb("?token=")).await.unwrap_err();
    assert_eq!(field(&err), Some("token"));
    let err = oauth
        .complete(&cb("?error=access_denied"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("access_denied"), "{err}");
    for malformed in [
        "?token=abc",
        "?token=a.b.c",
        "?token=eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
    ] {
        let err = oauth.complete(&cb(malformed)).await.unwrap_err();
        assert_eq!(field(&err), Some("token"), "{malformed}: {err:?}");
        assert!(err.to_string().contains("not a JWT"), "{err}");
    }
    // A real JWT from this server, but without exp.
    let (no_exp, _) =
        rig.fake
            .jwt_keys()
            .issue("someone", rig.fake.now(), None, serde_json::Map::new());
    let err = oauth
        .complete(&cb(&format!("?token={no_exp}")))
        .await
        .unwrap_err();
    assert_eq!(field(&err), Some("token"));
    assert!(err.to_string().contains("exp"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&no_exp));
    // Another origin than the configured front end.
    let good = rig
        .fake
        .simulate_google_login("gina@example.com", "Gina")
        .unwrap();
    let mut elsewhere = good.clone();
    elsewhere.set_host(Some("evil.example")).unwrap();
    let err = oauth.complete(&elsewhere).await.unwrap_err();
    assert_eq!(field(&err), Some("callback"));
    assert_eq!(
        rig.fake.recorder().total(),
        0,
        "none of these reached the server"
    );

    // A profile failure is the error returned.
    rig.fake
        .faults()
        .push(endpoints::PROFILE, Fault::Status(500));
    assert!(matches!(
        oauth.complete(&good).await,
        Err(AuthError::Server { status: 500, .. })
    ));
    // A token the server no longer accepts.
    rig.fake
        .families()
        .revoke_subject(&rig.fake.users().by_email("gina@example.com").unwrap().id);
    assert!(matches!(
        oauth.complete(&good).await,
        Err(AuthError::Unauthorized { .. })
    ));
    // A token already expired on the server's own clock (`exp` = `iat`) never reaches
    // the server.
    let (dead, _) = rig.fake.jwt_keys().issue(
        "someone",
        rig.fake.now(),
        Some(Duration::ZERO),
        serde_json::Map::new(),
    );
    let before = rig.fake.recorder().total();
    assert!(matches!(
        oauth.complete(&cb(&format!("?token={dead}"))).await,
        Err(AuthError::SessionExpired)
    ));
    assert_eq!(rig.fake.recorder().total(), before);
    // A stale callback (its token's lifetime has passed since it was issued) cannot be
    // told from a fresh one on a server whose clock is behind: the server decides, and
    // refuses it.
    let stale = rig
        .fake
        .simulate_google_login("gina@example.com", "Gina")
        .unwrap();
    rig.clock.advance(rig.fake.settings().access_lifetime);
    assert!(matches!(
        oauth.complete(&stale).await,
        Err(AuthError::Unauthorized { .. })
    ));
    assert_eq!(rig.fake.recorder().total(), before + 1);
}

#[tokio::test]
async fn secrets_never_reach_debug_display_or_errors() {
    let rig = rig_in_workspace("acme");
    let session = login_alice(&rig.provider).await;
    let token = session.tokens.access.expose_secret().to_owned();
    let debug = format!("{:?} {session:?}", rig.provider);
    assert!(!debug.contains(&token));
    assert!(!debug.contains(DEFAULT_PASSWORD));
    let secret_password = "hunter2-but-longer";
    let err = rig
        .provider
        .login(&Credentials::new(ALICE_EMAIL, secret_password))
        .await
        .unwrap_err();
    let change = rig
        .provider
        .password_change()
        .unwrap()
        .change_password(
            &session,
            &Password::new(secret_password),
            &Password::new("x"),
        )
        .await
        .unwrap_err();
    rig.provider
        .sign_in_sessions()
        .unwrap()
        .revoke_all(&session)
        .await
        .unwrap();
    let dead = rig.provider.current_user(&session).await.unwrap_err();
    for e in [err, change, dead] {
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains(secret_password) && !text.contains(&token),
            "{text}"
        );
    }
}
