//! `LinxioProvider` end to end against `FakeLinxio` over real HTTP (reqwest): logins,
//! the OTP user under both flag spellings, refresh with and without rotation, expiry
//! with and without `expireAt`, the `fields[]` projection as the server sees it, logout
//! answered with 204 and with JSON, and every error mapping (faults for 429, 5xx,
//! malformed, truncated and dropped answers).

use std::time::{Duration, UNIX_EPOCH};

use authmux_core::{
    AuthError, AuthProvider, Credentials, LoginOutcome, LogoutOutcome, OtpCode, RetryPolicy,
    Session, TransportErrorKind,
};
use authmux_linxio::{LinxioConfig, LinxioProvider, LinxioUserExt, extras};
use authmux_testkit::linxio::{
    ExpiryStyle, FakeLinxio, LinxioBuilder, LogoutStyle, OtpFlag, RefreshTokenPolicy, endpoints,
};
use authmux_testkit::users::{
    ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL, OTP_CODE, OTP_EMAIL, SUSPENDED_EMAIL,
};
use authmux_testkit::{FakeResponse, Fault, ManualClock};
use serde_json::json;

const T0: u64 = 1_800_000_000;

struct World {
    clock: ManualClock,
    fake: FakeLinxio,
    provider: LinxioProvider,
}

fn world_with(builder: LinxioBuilder, config: impl FnOnce(LinxioConfig) -> LinxioConfig) -> World {
    let clock = ManualClock::at_unix(T0);
    let fake = builder.clock(clock.clone()).start().unwrap();
    let provider = LinxioProvider::new(config(LinxioConfig::new(fake.base_url().clone())))
        .unwrap()
        .with_clock(clock.clone())
        .with_retry(RetryPolicy::NONE);
    World {
        clock,
        fake,
        provider,
    }
}

fn world() -> World {
    world_with(FakeLinxio::builder(), |c| c)
}

fn alice() -> Credentials {
    Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD)
}

async fn login(w: &World, credentials: &Credentials) -> Session {
    match w.provider.login(credentials).await.unwrap() {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => panic!("expected a session"),
    }
}

fn at(secs: u64) -> Option<std::time::SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[tokio::test]
async fn login_gives_tokens_expiry_and_team_hints() {
    let w = world();
    let session = login(&w, &alice()).await;
    assert_eq!(session.dialect, "linxio");
    assert!(session.tokens.refresh.is_some());
    // 900 s, less the second the server's whole-second `Date` and `iat` may lag its
    // clock (`authmux_core::token`).
    assert_eq!(session.tokens.expires_at, at(T0 + 899));
    assert_eq!(session.extra_str(extras::EMAIL), Some(ALICE_EMAIL));
    assert_eq!(session.extra_str(extras::TEAM_TYPE), Some("client"));
    assert_eq!(session.extra_str(extras::ROLE_ID), Some("3"));
    let sent = w
        .fake
        .recorder()
        .last(endpoints::LOGIN)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        sent,
        json!({"email": ALICE_EMAIL, "password": DEFAULT_PASSWORD})
    );
}

#[tokio::test]
async fn the_domain_hint_reaches_the_server() {
    let w = world_with(FakeLinxio::builder(), |c| c.with_domain("fleet.example"));
    login(&w, &alice()).await;
    let sent = w
        .fake
        .recorder()
        .last(endpoints::LOGIN)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sent["domain"], "fleet.example");
}

#[tokio::test]
async fn otp_user_under_both_flag_spellings() {
    for flag in [OtpFlag::Snake, OtpFlag::Camel] {
        let w = world_with(FakeLinxio::builder().otp_flag(flag), |c| c);
        let outcome = w
            .provider
            .login(&Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap();
        let LoginOutcome::OtpRequired(challenge) = outcome else {
            panic!("{flag:?}: expected an OTP challenge")
        };
        assert_eq!(challenge.email, OTP_EMAIL);
        assert!(challenge.password.is_none());
        let wrong = w
            .provider
            .verify_otp(&challenge, &OtpCode::new("999999"))
            .await;
        assert!(matches!(wrong, Err(AuthError::InvalidOtp)), "{wrong:?}");
        let session = w
            .provider
            .verify_otp(&challenge, &OtpCode::new(OTP_CODE))
            .await
            .unwrap();
        let sent = w
            .fake
            .recorder()
            .last(endpoints::LOGIN_OTP)
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(sent, json!({"email": OTP_EMAIL, "code": OTP_CODE}));
        let user = w.provider.current_user(&session).await.unwrap();
        assert_eq!(user.email.as_deref(), Some(OTP_EMAIL));
    }
}

#[tokio::test]
async fn otp_without_a_login_first_is_an_invalid_code() {
    let w = world();
    let challenge =
        authmux_core::OtpChallenge::new("linxio", w.fake.base_url().clone(), OTP_EMAIL, UNIX_EPOCH);
    let result = w
        .provider
        .verify_otp(&challenge, &OtpCode::new(OTP_CODE))
        .await;
    assert!(matches!(result, Err(AuthError::InvalidOtp)), "{result:?}");
}

#[tokio::test]
async fn refresh_with_rotation_replaces_the_refresh_token_and_retires_the_old_one() {
    let w = world();
    let first = login(&w, &alice()).await;
    w.clock.advance(Duration::from_secs(120));
    let second = w.provider.refresh(&first).await.unwrap();
    assert_ne!(second.tokens.access, first.tokens.access);
    assert_ne!(second.tokens.refresh, first.tokens.refresh);
    assert_eq!(second.tokens.expires_at, at(T0 + 120 + 899));
    assert_eq!(second.extras, first.extras, "extras kept");
    assert_eq!(
        w.fake.recorder().refresh_tokens(),
        [first.tokens.refresh.as_ref().unwrap().expose_secret()]
    );
    // The rotated-away token is dead; the new one works.
    assert!(matches!(
        w.provider.refresh(&first).await,
        Err(AuthError::RefreshRejected)
    ));
    assert!(w.provider.refresh(&second).await.is_ok());
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_refresh_token() {
    for policy in [RefreshTokenPolicy::Omit, RefreshTokenPolicy::Echo] {
        let w = world_with(FakeLinxio::builder().refresh_token(policy), |c| c);
        let first = login(&w, &alice()).await;
        let second = w.provider.refresh(&first).await.unwrap();
        let third = w.provider.refresh(&second).await.unwrap();
        assert_ne!(third.tokens.access, first.tokens.access, "{policy:?}");
        assert_eq!(third.tokens.refresh, first.tokens.refresh, "{policy:?}");
        assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 2);
    }
}

#[tokio::test]
async fn expiry_from_expire_at_from_the_jwt_or_unknown() {
    // 120 s, a second off (the server's times count whole seconds).
    for (style, expected) in [
        (ExpiryStyle::ExpireAtAndExp, at(T0 + 119)),
        (ExpiryStyle::ExpOnly, at(T0 + 119)),
        (ExpiryStyle::NoExpiry, None),
    ] {
        let w = world_with(
            FakeLinxio::builder()
                .expiry(style)
                .access_lifetime(Duration::from_secs(120)),
            |c| c,
        );
        let session = login(&w, &alice()).await;
        assert_eq!(session.tokens.expires_at, expected, "login, {style:?}");
        w.clock.advance(Duration::from_secs(60));
        let refreshed = w.provider.refresh(&session).await.unwrap();
        assert_eq!(
            refreshed.tokens.expires_at,
            expected.map(|t| t + Duration::from_secs(60)),
            "refresh, {style:?}"
        );
    }
}

#[tokio::test]
async fn fields_projection_reaches_the_server_as_repeated_keys() {
    let w = world_with(FakeLinxio::builder(), |c| {
        c.with_fields(["email", "teamType", "permissions"])
    });
    let session = login(&w, &alice()).await;
    let user = w.provider.current_user(&session).await.unwrap();
    let query = w
        .fake
        .recorder()
        .last(endpoints::ME)
        .unwrap()
        .query
        .unwrap();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        pairs,
        [
            ("fields[]".to_owned(), "email".to_owned()),
            ("fields[]".to_owned(), "teamType".to_owned()),
            ("fields[]".to_owned(), "permissions".to_owned()),
        ]
    );
    // The server applied it: only those fields came back.
    let keys: Vec<&str> = user
        .raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(user.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(user.name, None);
    assert_eq!(user.team_type(), Some("client"));
    assert_eq!(user.permissions(), ["vehicle.view", "vehicle.edit"]);

    // Per call: an explicit projection overrides the configured one.
    let user = w
        .provider
        .current_user_with_fields(&session, &["fullName"])
        .await
        .unwrap();
    assert_eq!(user.name.as_deref(), Some("Alice Example"));
    assert_eq!(user.raw.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn without_projection_the_whole_user_comes_back() {
    let w = world();
    let session = login(&w, &alice()).await;
    let user = w.provider.current_user(&session).await.unwrap();
    assert_eq!(w.fake.recorder().last(endpoints::ME).unwrap().query, None);
    assert_eq!(user.id.as_deref(), Some("1"));
    assert_eq!(user.name.as_deref(), Some("Alice Example"));
    assert_eq!(user.team_type(), Some("client"));
    assert!(user.team().is_some_and(|t| t.contains_key("name")));
    assert!(!user.permissions().is_empty());
}

#[tokio::test]
async fn logout_answered_with_204_or_json_revokes_the_session() {
    for style in [LogoutStyle::NoContent, LogoutStyle::Json] {
        let w = world_with(FakeLinxio::builder().logout(style), |c| c);
        let session = login(&w, &alice()).await;
        assert_eq!(
            w.provider.logout(&session).await.unwrap(),
            LogoutOutcome::Revoked,
            "{style:?}"
        );
        let logout = w.fake.recorder().last(endpoints::LOGOUT).unwrap();
        assert!(logout.had_bearer());
        // Really revoked: neither token works any more.
        assert!(matches!(
            w.provider.current_user(&session).await,
            Err(AuthError::Unauthorized { .. })
        ));
        assert!(matches!(
            w.provider.refresh(&session).await,
            Err(AuthError::RefreshRejected)
        ));
    }
}

#[tokio::test]
async fn credential_and_permission_errors() {
    let w = world();
    for credentials in [
        Credentials::new(ALICE_EMAIL, "wrong password"),
        Credentials::new("nobody@example.com", DEFAULT_PASSWORD),
    ] {
        let result = w.provider.login(&credentials).await;
        assert!(
            matches!(result, Err(AuthError::InvalidCredentials)),
            "{result:?}"
        );
    }
    for email in [FORBIDDEN_EMAIL, SUSPENDED_EMAIL] {
        let result = w
            .provider
            .login(&Credentials::new(email, DEFAULT_PASSWORD))
            .await;
        assert!(
            matches!(result, Err(AuthError::Forbidden { .. })),
            "{result:?}"
        );
    }
    let session = login(&w, &alice()).await;
    w.fake
        .revoke_access_token(session.tokens.access.expose_secret());
    let result = w.provider.current_user(&session).await;
    assert!(
        matches!(&result, Err(AuthError::Unauthorized { message: Some(m) }) if m == "Token revoked"),
        "{result:?}"
    );
    let mut bogus = session.clone();
    bogus.tokens.refresh = Some(authmux_core::RefreshToken::new("not-a-real-refresh-token"));
    assert!(matches!(
        w.provider.refresh(&bogus).await,
        Err(AuthError::RefreshRejected)
    ));
}

/// Runs one provider call against one endpoint, with a session and an open OTP
/// challenge ready.
async fn call(w: &World, endpoint: &str, session: &Session) -> Result<(), AuthError> {
    let challenge =
        authmux_core::OtpChallenge::new("linxio", w.fake.base_url().clone(), OTP_EMAIL, UNIX_EPOCH);
    match endpoint {
        endpoints::LOGIN => w.provider.login(&alice()).await.map(drop),
        endpoints::LOGIN_OTP => w
            .provider
            .verify_otp(&challenge, &OtpCode::new(OTP_CODE))
            .await
            .map(drop),
        endpoints::REFRESH => w.provider.refresh(session).await.map(drop),
        endpoints::ME => w.provider.current_user(session).await.map(drop),
        endpoints::LOGOUT => w.provider.logout(session).await.map(drop),
        other => unreachable!("{other}"),
    }
}

const ALL: [&str; 5] = [
    endpoints::LOGIN,
    endpoints::LOGIN_OTP,
    endpoints::REFRESH,
    endpoints::ME,
    endpoints::LOGOUT,
];

#[tokio::test]
async fn injected_faults_map_the_same_way_on_every_endpoint() {
    let w = world();
    let session = login(&w, &alice()).await;
    for endpoint in ALL {
        w.fake.faults().push(
            endpoint,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        );
        let result = call(&w, endpoint, &session).await;
        assert!(
            matches!(result, Err(AuthError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7)),
            "{endpoint}: {result:?}"
        );

        for status in [500, 502, 503, 504] {
            w.fake.faults().push(endpoint, Fault::Status(status));
            let result = call(&w, endpoint, &session).await;
            assert!(
                matches!(&result, Err(AuthError::Server { status: s, code: Some(_), .. }) if *s == status),
                "{endpoint} {status}: {result:?}"
            );
        }

        w.fake.faults().push(
            endpoint,
            Fault::Respond(FakeResponse::json(
                http::StatusCode::BAD_REQUEST,
                &json!({"message": "email must be an email", "error": "validation_failed", "field": "email"}),
            )),
        );
        let result = call(&w, endpoint, &session).await;
        assert!(
            matches!(&result, Err(AuthError::Validation { field: Some(f), message }) if f == "email" && message == "email must be an email"),
            "{endpoint}: {result:?}"
        );

        w.fake.faults().push(endpoint, Fault::Status(401));
        let result = call(&w, endpoint, &session).await;
        let expected = match endpoint {
            endpoints::LOGIN => matches!(result, Err(AuthError::InvalidCredentials)),
            endpoints::LOGIN_OTP => matches!(result, Err(AuthError::InvalidOtp)),
            endpoints::REFRESH => matches!(result, Err(AuthError::RefreshRejected)),
            _ => matches!(result, Err(AuthError::Unauthorized { .. })),
        };
        assert!(expected, "401 on {endpoint}: {result:?}");

        w.fake.faults().push(endpoint, Fault::Status(403));
        let result = call(&w, endpoint, &session).await;
        if endpoint == endpoints::REFRESH {
            assert!(
                matches!(result, Err(AuthError::RefreshRejected)),
                "{result:?}"
            );
        } else {
            assert!(
                matches!(result, Err(AuthError::Forbidden { .. })),
                "403 on {endpoint}: {result:?}"
            );
        }

        w.fake.faults().push(endpoint, Fault::DropConnection);
        let result = call(&w, endpoint, &session).await;
        assert!(
            matches!(result, Err(AuthError::Transport { .. })),
            "{endpoint}: {result:?}"
        );

        w.fake.faults().push(endpoint, Fault::MalformedJson);
        let result = call(&w, endpoint, &session).await;
        if endpoint == endpoints::LOGOUT {
            // A logout succeeds by its status: a 200 is a success whatever its body.
            assert_eq!(result.unwrap(), ());
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, AuthError::Protocol { .. }),
                "{endpoint}: {err:?}"
            );
            assert!(
                !format!("{err} {err:?}").contains("eyJhbGciOi"),
                "no body in errors"
            );
        }
    }
    assert!(
        w.provider.current_user(&session).await.is_ok(),
        "the session survived"
    );
}

#[tokio::test]
async fn a_truncated_body_is_a_transport_error_not_a_half_read_answer() {
    let w = world();
    let session = login(&w, &alice()).await;
    for endpoint in [endpoints::LOGIN, endpoints::REFRESH, endpoints::ME] {
        w.fake.faults().push(endpoint, Fault::TruncatedBody);
        let result = call(&w, endpoint, &session).await;
        // The server promised more bytes than it sent, then aborted: the transport sees
        // the broken body and no half of it is ever decoded.
        assert!(
            matches!(
                result,
                Err(AuthError::Transport {
                    kind: TransportErrorKind::Io,
                    ..
                })
            ),
            "{endpoint}: {result:?}"
        );
    }
}

#[tokio::test]
async fn no_secret_in_any_debug_or_error_over_http() {
    let w = world();
    let session = login(&w, &alice()).await;
    let token = session.tokens.access.expose_secret().to_owned();
    let refresh = session
        .tokens
        .refresh
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let mut shown = format!("{session:?} {:?}", w.provider);
    let wrong = w
        .provider
        .login(&Credentials::new(ALICE_EMAIL, "pw-not-the-right-one"))
        .await
        .unwrap_err();
    shown.push_str(&format!("{wrong} {wrong:?}"));
    w.fake
        .faults()
        .push(endpoints::REFRESH, Fault::MalformedJson);
    let malformed = w.provider.refresh(&session).await.unwrap_err();
    shown.push_str(&format!("{malformed} {malformed:?}"));
    for secret in [
        token.as_str(),
        refresh.as_str(),
        DEFAULT_PASSWORD,
        "pw-not-the-right-one",
    ] {
        assert!(!shown.contains(secret), "a secret leaked into: {shown}");
    }
}
