//! Every flow and error mapping of the Directus adapter against `FakeDirectus` (an
//! in-process fake of Directus 12.4 with a request recorder and fault injection), plus
//! a property test that no server answer makes the adapter panic.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux_core::{
    AccessToken, AuthError, AuthProvider, Credentials, Expiry, LoginOutcome, LogoutOutcome,
    ManualClock, OtpChallenge, OtpCode, Password, Phase, RefreshToken, ResetToken, Session,
    SessionManager, TokenSet, Transport,
};
use authmux_directus::{
    DIALECT, DirectusConfig, DirectusMode, DirectusProvider, REFRESH_COOKIE, SESSION_COOKIE,
};
use authmux_testkit::directus::{
    self, DEFAULT_PASSWORD, DirectusUser, FakeDirectus, SignInMode, endpoints,
};
use authmux_testkit::users::{ALICE_EMAIL, OTP_EMAIL, SUSPENDED_EMAIL};
use authmux_testkit::{FakeResponse, Fault};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use url::Url;

const MODES: [DirectusMode; 3] = [
    DirectusMode::Json,
    DirectusMode::Cookie,
    DirectusMode::Session,
];
const ANN: &str = "ann@example.com";

fn provider(fake: &FakeDirectus, mode: DirectusMode) -> DirectusProvider {
    DirectusProvider::with_transport(
        DirectusConfig::new(fake.base_url().clone()).with_mode(mode),
        common::reqwest_transport(),
    )
    .unwrap()
}

fn fake() -> FakeDirectus {
    FakeDirectus::builder()
        .user(DirectusUser::new(ANN, DEFAULT_PASSWORD).names("Ann", "Lee"))
        .allow_reset_url("https://app.example.com/reset")
        .start()
        .unwrap()
}

fn alice() -> Credentials {
    Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD)
}

async fn login(provider: &DirectusProvider, credentials: &Credentials) -> Session {
    match provider.login(credentials).await {
        Ok(LoginOutcome::Authenticated(session)) => session,
        other => panic!("login: {other:?}"),
    }
}

fn refresh_secret(session: &Session) -> &str {
    session.tokens.refresh.as_ref().unwrap().expose_secret()
}

// ----- login, modes, cookies ---------------------------------------------------------

#[tokio::test]
async fn login_in_each_mode_keeps_the_mode_and_the_right_credentials() {
    let fake = fake();
    for mode in MODES {
        let session = login(&provider(&fake, mode), &alice()).await;
        assert_eq!(session.dialect, DIALECT);
        assert_eq!(session.extra_str("mode"), Some(mode.as_str()));
        let refresh = refresh_secret(&session);
        match mode {
            DirectusMode::Json | DirectusMode::Cookie => {
                assert_ne!(refresh, session.tokens.access.expose_secret());
                // `expires` is 900000 ms: fifteen minutes of lifetime, less the second
                // the JWT's whole-second `iat` may have cost it (`authmux_core::token`).
                assert_eq!(session.tokens.lifetime(), Some(Duration::from_secs(899)));
            }
            DirectusMode::Session => {
                assert_eq!(refresh, session.tokens.access.expose_secret());
                assert!(
                    FakeDirectus::claims(refresh)
                        .unwrap()
                        .contains_key("session")
                );
                // The session cookie's day, a second off likewise.
                assert_eq!(session.tokens.lifetime(), Some(Duration::from_secs(86_399)));
            }
        }
        let login = fake.recorder().last(endpoints::LOGIN).unwrap();
        assert_eq!(login.json().unwrap()["mode"], mode.as_str());
        assert!(login.json().unwrap().get("otp").is_none());
        assert!(!login.had_authorization() && !login.had_cookie());
    }
}

#[tokio::test]
async fn cookie_mode_stores_the_set_cookie_value_and_sends_it_back_as_a_cookie() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Cookie);
    let session = login(&provider, &alice()).await;
    let refreshed = provider.refresh(&session).await.unwrap();
    let request = fake.recorder().last(endpoints::REFRESH).unwrap();
    assert_eq!(
        request.cookies().unwrap(),
        format!("{REFRESH_COOKIE}={}", refresh_secret(&session))
    );
    assert_eq!(request.json().unwrap(), json!({"mode": "cookie"}));
    assert!(!request.had_authorization());
    assert_eq!(
        fake.refresh_tokens_presented(),
        vec![refresh_secret(&session).to_owned()]
    );
    assert_ne!(refresh_secret(&refreshed), refresh_secret(&session));

    provider.logout(&refreshed).await.unwrap();
    let logout = fake.recorder().last(endpoints::LOGOUT).unwrap();
    assert_eq!(
        logout.cookies().unwrap(),
        format!("{REFRESH_COOKIE}={}", refresh_secret(&refreshed))
    );
    assert_eq!(logout.json().unwrap(), json!({"mode": "cookie"}));
}

#[tokio::test]
async fn session_mode_sends_the_session_cookie_and_mode_and_uses_bearer_elsewhere() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Session);
    let session = login(&provider, &alice()).await;
    let me = provider.current_user(&session).await.unwrap();
    assert_eq!(me.email.as_deref(), Some(ALICE_EMAIL));
    let me_request = fake.recorder().last(endpoints::ME).unwrap();
    assert_eq!(
        me_request.bearer(),
        Some(session.tokens.access.expose_secret())
    );
    assert!(!me_request.had_cookie(), "cookies go to /auth/* only");

    let refreshed = provider.refresh(&session).await.unwrap();
    let request = fake.recorder().last(endpoints::REFRESH).unwrap();
    assert_eq!(
        request.cookies().unwrap(),
        format!("{SESSION_COOKIE}={}", session.tokens.access.expose_secret())
    );
    assert_eq!(request.json().unwrap(), json!({"mode": "session"}));
    assert!(!request.had_authorization());
    assert_ne!(refreshed.tokens.access, session.tokens.access);
    assert_eq!(
        refresh_secret(&refreshed),
        refreshed.tokens.access.expose_secret()
    );
    provider.current_user(&refreshed).await.unwrap();
}

#[tokio::test]
async fn json_mode_sends_the_refresh_token_in_the_body_only() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let session = login(&provider, &alice()).await;
    provider.refresh(&session).await.unwrap();
    let request = fake.recorder().last(endpoints::REFRESH).unwrap();
    assert_eq!(
        request.json().unwrap(),
        json!({"refresh_token": refresh_secret(&session), "mode": "json"})
    );
    assert!(!request.had_cookie() && !request.had_authorization());
}

// ----- rotation, grace, logout -----------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_the_old_token_is_rejected() {
    let fake = fake();
    for mode in [DirectusMode::Json, DirectusMode::Cookie] {
        let provider = provider(&fake, mode);
        let session = login(&provider, &alice()).await;
        let refreshed = provider.refresh(&session).await.unwrap();
        assert_ne!(refreshed.tokens.refresh, session.tokens.refresh);
        assert_eq!(refreshed.extras, session.extras, "mode survives a refresh");
        assert!(matches!(
            provider.refresh(&session).await,
            Err(AuthError::RefreshRejected)
        ));
        provider
            .refresh(&refreshed)
            .await
            .expect("the new token works");
    }
}

#[tokio::test]
async fn session_mode_rotation_has_a_grace_period() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Session);
    let session = login(&provider, &alice()).await;
    let refreshed = provider.refresh(&session).await.unwrap();
    // Within the 10 s grace period the old session answers with the same new one.
    let again = provider.refresh(&session).await.unwrap();
    assert_eq!(again.tokens.access, refreshed.tokens.access);
    fake.set_clock_ahead(Duration::from_secs(11));
    assert!(matches!(
        provider.refresh(&session).await,
        Err(AuthError::RefreshRejected)
    ));
    provider
        .refresh(&refreshed)
        .await
        .expect("the new session works");
}

#[tokio::test]
async fn an_expired_session_cookie_can_neither_refresh_nor_log_out() {
    // As on a real Directus 12.4 with SESSION_COOKIE_TTL=5s: both answer 401
    // TOKEN_EXPIRED before the route runs.
    let fake = FakeDirectus::builder()
        .session_ttl(Duration::from_secs(5))
        .start()
        .unwrap();
    let provider = provider(&fake, DirectusMode::Session);
    let session = login(&provider, &alice()).await;
    // 5 s stated; the session JWT's `exp` counts from a whole-second `iat`, so the
    // local expiry takes a second off (`authmux_core::token`).
    assert_eq!(session.tokens.lifetime(), Some(Duration::from_secs(4)));
    fake.set_clock_ahead(Duration::from_secs(6));
    assert!(matches!(
        provider.refresh(&session).await,
        Err(AuthError::RefreshRejected)
    ));
    assert!(matches!(
        provider.logout(&session).await,
        Ok(LogoutOutcome::LocalOnly { .. })
    ));
}

#[tokio::test]
async fn logout_in_each_mode_revokes_the_refresh_credential() {
    let fake = fake();
    for mode in MODES {
        let provider = provider(&fake, mode);
        let session = login(&provider, &alice()).await;
        assert_eq!(
            provider.logout(&session).await.unwrap(),
            LogoutOutcome::Revoked
        );
        let request = fake.recorder().last(endpoints::LOGOUT).unwrap();
        assert!(!request.had_authorization());
        assert!(matches!(
            provider.refresh(&session).await,
            Err(AuthError::RefreshRejected)
        ));
    }
    // Nothing to revoke: said so, nothing sent.
    let provider = provider(&fake, DirectusMode::Json);
    let before = fake.recorder().count(endpoints::LOGOUT);
    let bare = provider.session_from_tokens(TokenSet::new(
        AccessToken::new("a"),
        None,
        Expiry::Unstated,
        SystemTime::now(),
    ));
    assert!(matches!(
        provider.logout(&bare).await.unwrap(),
        LogoutOutcome::LocalOnly { .. }
    ));
    assert_eq!(fake.recorder().count(endpoints::LOGOUT), before);
}

#[tokio::test]
async fn a_restored_session_refreshes_the_way_it_signed_in() {
    let fake = fake();
    let cookie = login(&provider(&fake, DirectusMode::Cookie), &alice()).await;
    let stored = serde_json::to_string(&cookie).unwrap();
    let restored: Session = serde_json::from_str(&stored).unwrap();
    // A provider configured for json mode still refreshes a cookie session by cookie.
    let json_provider = provider(&fake, DirectusMode::Json);
    json_provider.refresh(&restored).await.unwrap();
    let request = fake.recorder().last(endpoints::REFRESH).unwrap();
    assert_eq!(request.json().unwrap(), json!({"mode": "cookie"}));
    assert!(request.cookies().unwrap().starts_with(REFRESH_COOKIE));

    let mut odd = restored.clone();
    odd.extras.insert("mode".into(), json!("carrier-pigeon"));
    assert!(matches!(
        json_provider.refresh(&odd).await,
        Err(AuthError::Validation { .. })
    ));
}

#[tokio::test]
async fn hydrated_tokens_get_the_providers_mode() {
    let fake = fake();
    let issued = fake.issue_tokens(ALICE_EMAIL, SignInMode::Session).unwrap();
    let provider = provider(&fake, DirectusMode::Session);
    let manager = SessionManager::new(Arc::new(provider));
    let session = manager
        .hydrate(TokenSet::new(
            AccessToken::new(issued.access_token.as_str()),
            None,
            Expiry::Unstated,
            SystemTime::now(),
        ))
        .await
        .unwrap();
    assert_eq!(session.extra_str("mode"), Some("session"));
    assert_eq!(refresh_secret(&session), issued.access_token);
    manager
        .refresh()
        .await
        .expect("a hydrated session-mode session refreshes");
    assert_eq!(
        fake.recorder()
            .last(endpoints::REFRESH)
            .unwrap()
            .cookies()
            .unwrap(),
        format!("{SESSION_COOKIE}={}", issued.access_token)
    );
}

#[tokio::test]
async fn credentials_go_only_to_the_sessions_origin() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Cookie);
    let mut session = login(&provider, &alice()).await;
    session.base_url = Url::parse("https://elsewhere.example").unwrap();
    let before = fake.recorder().total();
    assert!(matches!(
        provider.refresh(&session).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        provider.logout(&session).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        provider.current_user(&session).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert_eq!(fake.recorder().total(), before, "nothing was sent");
}

// ----- no bearer on /auth/*, the manager on top ------------------------------------------

#[tokio::test]
async fn no_authorization_on_auth_routes_even_with_an_expired_bearer() {
    let fake = fake();
    for mode in [DirectusMode::Json, DirectusMode::Cookie] {
        // The manager's clock is frozen: it believes the token is fresh; the fake's
        // clock moves past the expiry, so /items answers 401 TOKEN_EXPIRED.
        let clock = Arc::new(ManualClock::starting_now());
        let provider = Arc::new(provider(&fake, mode).with_clock(clock.clone()));
        let manager = SessionManager::builder(provider)
            .clock(clock.clone())
            .build();
        manager.login(&alice()).await.unwrap();
        fake.set_clock_ahead(Duration::from_secs(16 * 60));
        let response = manager
            .send(Request::get("/items/articles").body(Bytes::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        manager.logout().await.unwrap();
        fake.set_clock_ahead(Duration::ZERO);
    }
    assert!(fake.recorder().count(endpoints::REFRESH) >= 2);
    assert!(
        fake.auth_requests_with_bearer().is_empty(),
        "Authorization went to /auth/*"
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_on_an_expired_token_cause_one_refresh() {
    let fake = fake();
    let clock = Arc::new(ManualClock::starting_now());
    let provider = Arc::new(provider(&fake, DirectusMode::Cookie).with_clock(clock.clone()));
    let manager = SessionManager::builder(provider)
        .clock(clock.clone())
        .build();
    manager.login(&alice()).await.unwrap();
    clock.advance(Duration::from_secs(16 * 60));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move {
                manager
                    .send(Request::get("/users/me").body(Bytes::new()).unwrap())
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    let presented = fake.refresh_tokens_presented();
    assert_eq!(presented.len(), 1);
}

// ----- two-factor ----------------------------------------------------------------------

#[tokio::test]
async fn otp_challenge_keeps_the_password_in_memory_and_completes() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Cookie);
    let credentials = Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD);
    let LoginOutcome::OtpRequired(challenge) = provider.login(&credentials).await.unwrap() else {
        panic!("expected a challenge");
    };
    assert_eq!(challenge.dialect, DIALECT);
    assert_eq!(challenge.email, OTP_EMAIL);
    assert!(challenge.password.is_some());
    assert_eq!(challenge.extras["mode"], "cookie");
    let stored = serde_json::to_string(&challenge).unwrap();
    assert!(!stored.contains(DEFAULT_PASSWORD));
    assert!(!format!("{challenge:?}").contains(DEFAULT_PASSWORD));

    let wrong = OtpCode::new("000000");
    assert!(matches!(
        provider.verify_otp(&challenge, &wrong).await,
        Err(AuthError::InvalidOtp)
    ));
    let code = OtpCode::new(fake.totp_code(OTP_EMAIL).unwrap());
    let session = provider.verify_otp(&challenge, &code).await.unwrap();
    assert_eq!(session.extra_str("mode"), Some("cookie"));
    let login = fake
        .recorder()
        .last(endpoints::LOGIN)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(login["otp"], code.expose_secret());
    assert_eq!(login["password"], DEFAULT_PASSWORD);
    assert_eq!(login["mode"], "cookie");

    // Read back from disk: no password, a clear error; supplied again, it works.
    let restored: OtpChallenge = serde_json::from_str(&stored).unwrap();
    let before = fake.recorder().count(endpoints::LOGIN);
    assert!(matches!(
        provider.verify_otp(&restored, &code).await,
        Err(AuthError::Validation { field: Some(f), .. }) if f == "password"
    ));
    assert_eq!(fake.recorder().count(endpoints::LOGIN), before);
    let restored = restored.with_password(Password::new(DEFAULT_PASSWORD));
    provider.verify_otp(&restored, &code).await.unwrap();
}

#[tokio::test]
async fn credentials_with_a_code_are_sent_at_once() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let code = fake.totp_code(OTP_EMAIL).unwrap();
    let credentials = Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD).with_otp(code.as_str());
    login(&provider, &credentials).await;
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 1);
    let bad = Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD).with_otp("000000");
    assert!(matches!(
        provider.login(&bad).await,
        Err(AuthError::InvalidOtp)
    ));
    let wrong_password = Credentials::new(OTP_EMAIL, "nope");
    assert!(matches!(
        provider.login(&wrong_password).await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn the_manager_drives_an_otp_login() {
    let fake = fake();
    let manager = SessionManager::new(Arc::new(provider(&fake, DirectusMode::Json)));
    let outcome = manager
        .login(&Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(matches!(outcome, LoginOutcome::OtpRequired(_)));
    assert_eq!(manager.phase(), Phase::AwaitingOtp);
    assert!(matches!(
        manager.verify_otp(&OtpCode::new("000000")).await,
        Err(AuthError::InvalidOtp)
    ));
    assert!(
        manager.pending_challenge().is_some(),
        "a wrong code keeps the challenge"
    );
    let code = OtpCode::new(fake.totp_code(OTP_EMAIL).unwrap());
    manager.verify_otp(&code).await.unwrap();
    assert_eq!(manager.phase(), Phase::Active);
    assert!(manager.pending_challenge().is_none());
}

#[tokio::test]
async fn two_factor_set_up_helpers() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let session = login(&provider, &Credentials::new(ANN, DEFAULT_PASSWORD)).await;
    assert!(matches!(
        provider
            .tfa_generate(&session, &Password::new("wrong"))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    let (secret, url) = provider
        .tfa_generate(&session, &Password::new(DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(url.expose_secret().starts_with("otpauth://totp/"));
    assert!(url.expose_secret().contains(secret.expose_secret()));
    assert!(!format!("{secret:?} {url:?}").contains(secret.expose_secret()));
    let generate = fake.recorder().last(endpoints::TFA_GENERATE).unwrap();
    assert_eq!(
        generate.bearer(),
        Some(session.tokens.access.expose_secret())
    );

    assert!(matches!(
        provider
            .tfa_enable(&session, &secret, &OtpCode::new("000000"))
            .await,
        Err(AuthError::InvalidOtp)
    ));
    let code = || {
        OtpCode::new(
            FakeDirectus::totp_code_for_secret(secret.expose_secret(), fake.now()).unwrap(),
        )
    };
    provider
        .tfa_enable(&session, &secret, &code())
        .await
        .unwrap();
    assert!(matches!(
        provider
            .login(&Credentials::new(ANN, DEFAULT_PASSWORD))
            .await,
        Ok(LoginOutcome::OtpRequired(_))
    ));
    assert!(matches!(
        provider
            .tfa_disable(&session, &OtpCode::new("000000"))
            .await,
        Err(AuthError::InvalidOtp)
    ));
    provider.tfa_disable(&session, &code()).await.unwrap();
    login(&provider, &Credentials::new(ANN, DEFAULT_PASSWORD)).await;
}

// ----- current user ------------------------------------------------------------------

#[tokio::test]
async fn current_user_asks_for_fields_and_joins_the_name() {
    let fake = fake();
    let provider = DirectusProvider::with_transport(
        DirectusConfig::new(fake.base_url().clone()).with_fields([
            "id",
            "email",
            "first_name",
            "last_name",
        ]),
        common::reqwest_transport(),
    )
    .unwrap();
    let session = login(&provider, &Credentials::new(ANN, DEFAULT_PASSWORD)).await;
    let me = provider.current_user(&session).await.unwrap();
    assert_eq!(me.name.as_deref(), Some("Ann Lee"));
    assert_eq!(me.email.as_deref(), Some(ANN));
    assert!(me.id.is_some());
    assert_eq!(me.field("first_name"), Some(&json!("Ann")));
    let request = fake.recorder().last(endpoints::ME).unwrap();
    assert_eq!(
        request.query.as_deref(),
        Some("fields=id%2Cemail%2Cfirst_name%2Clast_name")
    );

    fake.update_user(ANN, |u| u.last_name = None);
    assert_eq!(
        provider
            .current_user(&session)
            .await
            .unwrap()
            .name
            .as_deref(),
        Some("Ann")
    );
    fake.update_user(ANN, |u| u.first_name = None);
    assert_eq!(provider.current_user(&session).await.unwrap().name, None);
}

// ----- password reset ----------------------------------------------------------------

#[tokio::test]
async fn password_reset_request_and_completion() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let reset = provider.password_reset().unwrap();
    let page = Url::parse("https://app.example.com/reset").unwrap();
    reset.request_reset(ANN, Some(&page)).await.unwrap();
    let request = fake.recorder().last(endpoints::PASSWORD_REQUEST).unwrap();
    assert_eq!(
        request.json().unwrap(),
        json!({"email": ANN, "reset_url": "https://app.example.com/reset"})
    );
    assert!(!request.had_authorization());
    let mail = fake.last_mail().unwrap();
    assert!(mail.url.starts_with("https://app.example.com/reset?token="));
    reset
        .request_reset("nobody@example.com", None)
        .await
        .unwrap();
    let elsewhere = Url::parse("https://evil.example/reset").unwrap();
    assert!(matches!(
        reset.request_reset(ANN, Some(&elsewhere)).await,
        Err(AuthError::Validation { .. })
    ));
    assert!(matches!(
        reset.request_reset("  ", None).await,
        Err(AuthError::Validation { .. })
    ));

    let token = ResetToken::new(mail.token);
    let new_password = Password::new("a whole new password");
    assert!(matches!(
        reset
            .complete_reset(&ResetToken::new("garbage"), &new_password)
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    reset.complete_reset(&token, &new_password).await.unwrap();
    login(&provider, &Credentials::new(ANN, "a whole new password")).await;
    assert!(matches!(
        provider
            .login(&Credentials::new(ANN, DEFAULT_PASSWORD))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        reset.complete_reset(&token, &Password::new("again")).await,
        Err(AuthError::InvalidCredentials)
    ));
}

// ----- OAuth ----------------------------------------------------------------------------

#[tokio::test]
async fn oauth_providers_from_auth_with_fallback_to_the_old_route() {
    let fake = FakeDirectus::builder()
        .provider(directus::AuthProvider::oauth2("github", ALICE_EMAIL).label("GitHub"))
        .start()
        .unwrap();
    let provider = provider(&fake, DirectusMode::Json);
    let oauth = provider.oauth().unwrap();
    let list = oauth.providers().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "github");
    assert_eq!(list[0].label.as_deref(), Some("GitHub"));
    assert_eq!(fake.recorder().count(endpoints::LEGACY_OAUTH), 0);

    // A server without `GET /auth` (404): the older `GET /auth/oauth` and its shape.
    fake.faults().push(endpoints::PROVIDERS, Fault::Status(404));
    let list = oauth.providers().await.unwrap();
    assert_eq!(
        list.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["github"]
    );
    assert_eq!(list[0].label, None);
    assert_eq!(fake.recorder().count(endpoints::LEGACY_OAUTH), 1);
    assert!(fake.auth_requests_with_bearer().is_empty());
}

#[tokio::test]
async fn oauth_start_url_and_callbacks() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let oauth = provider.oauth().unwrap();
    let redirect = Url::parse("https://app.example.com/done?x=1&y=2").unwrap();
    let start = oauth.start_url("github", Some(&redirect)).unwrap();
    assert_eq!(start.path(), "/auth/login/github");
    assert_eq!(
        start.query_pairs().collect::<Vec<_>>(),
        [("redirect".into(), redirect.as_str().into())]
    );
    assert_eq!(oauth.start_url("github", None).unwrap().query(), None);
    for bad in ["", "a/b", "a?b"] {
        assert!(matches!(
            oauth.start_url(bad, None),
            Err(AuthError::Validation { .. })
        ));
    }

    // Directus puts the session in a browser cookie: a plain callback has nothing.
    let callback = Url::parse("https://app.example.com/done").unwrap();
    assert!(matches!(
        oauth.complete(&callback).await,
        Err(AuthError::Validation { field: Some(f), .. }) if f == "callback"
    ));
    let failed = Url::parse("https://app.example.com/done?reason=INVALID_CREDENTIALS").unwrap();
    assert!(matches!(
        oauth.complete(&failed).await,
        Err(AuthError::InvalidCredentials)
    ));
    // A callback page that forwards the refresh cookie's value works.
    let tokens = fake.issue_tokens(ALICE_EMAIL, SignInMode::Cookie).unwrap();
    let mut forwarded = callback.clone();
    forwarded
        .query_pairs_mut()
        .append_pair("refresh_token", &tokens.refresh_token);
    let session = oauth.complete(&forwarded).await.unwrap();
    assert_eq!(
        provider
            .current_user(&session)
            .await
            .unwrap()
            .email
            .as_deref(),
        Some(ALICE_EMAIL)
    );
}

// ----- error mapping -------------------------------------------------------------------

fn envelope(status: u16, code: &str, message: &str) -> Fault {
    Fault::Respond(FakeResponse::json(
        StatusCode::from_u16(status).unwrap(),
        &json!({"errors": [{"message": message, "extensions": {"code": code}}]}),
    ))
}

#[tokio::test]
async fn error_codes_map_by_endpoint() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    let session = login(&provider, &alice()).await;
    let is_validation = |e: &AuthError| matches!(e, AuthError::Validation { .. });
    let is_forbidden = |e: &AuthError| matches!(e, AuthError::Forbidden { .. });
    let is_unauthorized = |e: &AuthError| matches!(e, AuthError::Unauthorized { .. });
    type Case = (u16, &'static str, fn(&AuthError) -> bool);
    let login_cases: Vec<Case> = vec![
        (401, "INVALID_CREDENTIALS", |e| {
            matches!(e, AuthError::InvalidCredentials)
        }),
        (401, "USER_SUSPENDED", |e| {
            matches!(e, AuthError::AccountDisabled)
        }),
        (400, "INVALID_PAYLOAD", is_validation),
        (403, "FORBIDDEN", is_forbidden),
        (401, "TOKEN_EXPIRED", is_unauthorized),
    ];
    for (status, code, ok) in login_cases {
        fake.faults()
            .push(endpoints::LOGIN, envelope(status, code, "m"));
        let err = provider.login(&alice()).await.unwrap_err();
        assert!(ok(&err), "login {code}: {err:?}");
    }
    // INVALID_OTP with a code sent is a wrong code (without one it is a challenge).
    fake.faults().push(
        endpoints::LOGIN,
        envelope(401, "INVALID_OTP", "Invalid user OTP."),
    );
    let with_code = alice().with_otp("123456");
    assert!(matches!(
        provider.login(&with_code).await,
        Err(AuthError::InvalidOtp)
    ));
    fake.faults().push(
        endpoints::LOGIN,
        envelope(401, "INVALID_OTP", "Invalid user OTP."),
    );
    assert!(matches!(
        provider.login(&alice()).await,
        Ok(LoginOutcome::OtpRequired(_))
    ));

    let refresh_cases: Vec<Case> = vec![
        (401, "INVALID_CREDENTIALS", |e| {
            matches!(e, AuthError::RefreshRejected)
        }),
        (401, "TOKEN_EXPIRED", |e| {
            matches!(e, AuthError::RefreshRejected)
        }),
        (403, "INVALID_TOKEN", |e| {
            matches!(e, AuthError::RefreshRejected)
        }),
        (401, "USER_SUSPENDED", |e| {
            matches!(e, AuthError::AccountDisabled)
        }),
        (400, "INVALID_PAYLOAD", is_validation),
    ];
    for (status, code, ok) in refresh_cases {
        fake.faults()
            .push(endpoints::REFRESH, envelope(status, code, "m"));
        let err = provider.refresh(&session).await.unwrap_err();
        assert!(ok(&err), "refresh {code}: {err:?}");
    }

    let me_cases: Vec<Case> = vec![
        (401, "TOKEN_EXPIRED", is_unauthorized),
        (403, "INVALID_TOKEN", is_unauthorized),
        (401, "INVALID_CREDENTIALS", is_unauthorized),
        (403, "FORBIDDEN", is_forbidden),
        (400, "INVALID_QUERY", is_validation),
    ];
    for (status, code, ok) in me_cases {
        fake.faults()
            .push(endpoints::ME, envelope(status, code, "m"));
        let err = provider.current_user(&session).await.unwrap_err();
        assert!(ok(&err), "me {code}: {err:?}");
    }

    // Rate limited, with its Retry-After.
    fake.faults().push(
        endpoints::LOGIN,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    assert!(matches!(
        provider.login(&alice()).await,
        Err(AuthError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7)
    ));
    // Unknown codes keep their code and message.
    fake.faults()
        .push(endpoints::ME, envelope(418, "TEAPOT", "short and stout"));
    match provider.current_user(&session).await.unwrap_err() {
        AuthError::Server {
            status: 418,
            code: Some(code),
            message: Some(message),
            ..
        } => {
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("TEAPOT", "short and stout")
            );
        }
        other => panic!("unknown code: {other:?}"),
    }
    fake.faults()
        .push(endpoints::ME, envelope(409, "RECORD_NOT_UNIQUE", "taken"));
    assert!(matches!(
        provider.current_user(&session).await,
        Err(AuthError::Conflict { message: Some(m) }) if m == "RECORD_NOT_UNIQUE: taken"
    ));
}

#[tokio::test]
async fn real_refusals_of_the_fake() {
    let fake = FakeDirectus::builder()
        .rate_limit(3, Duration::from_secs(30))
        .start()
        .unwrap();
    let provider = provider(&fake, DirectusMode::Json);
    // A suspended user cannot sign in: Directus says only "invalid credentials".
    assert!(matches!(
        provider
            .login(&Credentials::new(SUSPENDED_EMAIL, DEFAULT_PASSWORD))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    // Suspended behind Directus's back while signed in: the refresh says so.
    let session = login(&provider, &alice()).await;
    fake.update_user(ALICE_EMAIL, |u| u.status = "suspended".into());
    assert!(matches!(
        provider.refresh(&session).await,
        Err(AuthError::AccountDisabled)
    ));
    // Over the rate limit: typed, with Retry-After.
    let mut limited = None;
    for _ in 0..5 {
        if let Err(AuthError::RateLimited { retry_after }) = provider.login(&alice()).await {
            limited = Some(retry_after);
            break;
        }
    }
    let retry_after = limited.expect("rate limited").expect("with Retry-After");
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30));
}

#[tokio::test]
async fn empty_input_is_refused_before_sending() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Json);
    for credentials in [
        Credentials::new("", "pw"),
        Credentials::new(ALICE_EMAIL, ""),
    ] {
        assert!(matches!(
            provider.login(&credentials).await,
            Err(AuthError::Validation { .. })
        ));
    }
    assert_eq!(fake.recorder().total(), 0);
}

// ----- secrets --------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_in_debug_or_errors() {
    let fake = fake();
    let provider = provider(&fake, DirectusMode::Cookie);
    let session = login(&provider, &alice()).await;
    let secrets = [
        session.tokens.access.expose_secret().to_owned(),
        refresh_secret(&session).to_owned(),
        DEFAULT_PASSWORD.to_owned(),
    ];
    let refreshed = provider.refresh(&session).await.unwrap();
    let reused = provider.refresh(&session).await.unwrap_err();
    let wrong = provider
        .login(&Credentials::new(ALICE_EMAIL, "wrong-password-123"))
        .await
        .unwrap_err();
    // A server message quoting a token is redacted.
    fake.faults().push(
        endpoints::ME,
        envelope(
            418,
            "X",
            &format!("bad token {}", refreshed.tokens.access.expose_secret()),
        ),
    );
    let quoted = provider.current_user(&refreshed).await.unwrap_err();
    let text = format!(
        "{provider:?} {session:?} {refreshed:?} {reused} {reused:?} {wrong} {wrong:?} {quoted} {quoted:?}"
    );
    for secret in secrets
        .iter()
        .chain([refreshed.tokens.access.expose_secret().to_owned()].iter())
    {
        assert!(!text.contains(secret.as_str()), "a secret leaked");
    }
    assert!(!text.contains("wrong-password-123"));
}

#[tokio::test]
async fn the_session_manager_persists_cookies_like_tokens() {
    let fake = fake();
    let dir = std::env::temp_dir().join(format!("authmux-directus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("session.json");
    let store = authmux_core::FileStore::new(&path);
    let manager = SessionManager::builder(Arc::new(provider(&fake, DirectusMode::Session)))
        .store(store)
        .build();
    let LoginOutcome::Authenticated(session) = manager.login(&alice()).await.unwrap() else {
        panic!("signed in");
    };
    // A new process restores the session (cookie included) and refreshes by cookie.
    let again = SessionManager::builder(Arc::new(provider(&fake, DirectusMode::Json)))
        .store(authmux_core::FileStore::new(&path))
        .build();
    let restored = again.restore().await.unwrap().expect("stored");
    assert_eq!(restored.tokens, session.tokens);
    again.refresh().await.unwrap();
    let request = fake.recorder().last(endpoints::REFRESH).unwrap();
    assert_eq!(
        request.cookies().unwrap(),
        format!("{SESSION_COOKIE}={}", session.tokens.access.expose_secret())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- never panic --------------------------------------------------------------------

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("data".to_owned()),
            Just("errors".to_owned()),
            Just("access_token".to_owned()),
            Just("refresh_token".to_owned()),
            Just("expires".to_owned()),
            Just("message".to_owned()),
            Just("extensions".to_owned()),
            Just("code".to_owned()),
            Just("name".to_owned()),
            Just("secret".to_owned()),
            Just("otpauth_url".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn scripted(status: u16, body: Vec<u8>, cookie: Option<String>) -> Arc<dyn Transport> {
    Arc::new(authmux_core::transport::from_fn(
        move |_request: Request<Bytes>| {
            let mut builder = Response::builder().status(status);
            if let Some(cookie) = &cookie {
                builder = builder
                    .header("set-cookie", cookie.as_str())
                    .header("retry-after", "x");
            }
            let response = builder.body(Bytes::from(body.clone())).unwrap();
            async move { Ok::<_, AuthError>(response) }
        },
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// No answer, however odd, makes any call panic.
    #[test]
    fn arbitrary_answers_never_panic(
        json in arbitrary_json(),
        raw in prop::collection::vec(any::<u8>(), 0..64),
        use_raw in any::<bool>(),
        status in prop_oneof![Just(200u16), Just(204), Just(400), Just(401), Just(403), Just(404), Just(429), Just(500), 100u16..600],
        cookie in proptest::option::of("[ -~]{0,40}"),
        mode in prop_oneof![Just(DirectusMode::Json), Just(DirectusMode::Cookie), Just(DirectusMode::Session)],
    ) {
        let body = if use_raw { raw } else { serde_json::to_vec(&json).unwrap() };
        let cookie = cookie.map(|c| format!("{}={c}", if mode == DirectusMode::Cookie { REFRESH_COOKIE } else { SESSION_COOKIE }));
        let transport = scripted(status, body, cookie);
        let provider = DirectusProvider::with_transport(
            DirectusConfig::new(Url::parse("http://127.0.0.1:9").unwrap()).with_mode(mode),
            transport,
        ).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let session = provider.session_from_tokens(TokenSet::new(
                AccessToken::new("a.b.c"),
                Some(RefreshToken::new("r")),
                Expiry::Unstated,
                SystemTime::now(),
            ));
            let _ = provider.login(&alice()).await;
            let _ = provider.login(&alice().with_otp("123456")).await;
            let _ = provider.refresh(&session).await;
            let _ = provider.logout(&session).await;
            let _ = provider.current_user(&session).await;
            let _ = provider.tfa_generate(&session, &Password::new("p")).await;
            let oauth = provider.oauth().unwrap();
            let _ = oauth.providers().await;
            let _ = oauth.complete(&Url::parse("https://x.example/?refresh_token=r").unwrap()).await;
            let reset = provider.password_reset().unwrap();
            let _ = reset.request_reset("a@b.c", None).await;
            let _ = reset.complete_reset(&ResetToken::new("t"), &Password::new("p")).await;
        });
    }
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let config = DirectusConfig::new(Url::parse("http://cms.example.com").unwrap());
    assert!(matches!(
        DirectusProvider::new(config.clone()),
        Err(AuthError::InsecureTransport { .. })
    ));
    let mut opted_in = config;
    opted_in.client.allow_insecure_http = true;
    assert!(DirectusProvider::new(opted_in).is_ok());
}
