//! End-to-end behaviour against `FakeOAuth2`: ID token verification failures, the
//! PKCE callback checks, the device flow's states, client authentication methods,
//! explicit endpoints, and refresh-token rotation under concurrency.

mod common;

use std::time::Duration;

use authmux_core::{
    AuthError, AuthProvider, Credentials, LoginOutcome, LogoutOutcome, ManualClock, Session,
};
use authmux_oauth2::{
    ClientAuth, DevicePoll, Endpoints, OAuth2Config, OAuth2Provider, SUBJECT_EXTRA,
};
use authmux_testkit::FakeOAuth2;
use authmux_testkit::oauth2::{
    CLIENT_SECRET, CONFIDENTIAL_CLIENT_ID, IdTokenFault, PUBLIC_CLIENT_ID, endpoints,
};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use common::{Browser, Counting, Decision, reqwest_transport};

fn config(fake: &FakeOAuth2) -> OAuth2Config {
    OAuth2Config::new(fake.base_url().clone(), PUBLIC_CLIENT_ID)
        .with_scopes(["openid", "email", "offline_access"])
        .with_password_grant(true)
}

fn provider(fake: &FakeOAuth2) -> OAuth2Provider {
    OAuth2Provider::with_transport(config(fake), reqwest_transport()).unwrap()
}

fn alice() -> Credentials {
    Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD)
}

async fn password_login(provider: &OAuth2Provider) -> Result<Session, AuthError> {
    match provider.login(&alice()).await? {
        LoginOutcome::Authenticated(session) => Ok(session),
        LoginOutcome::OtpRequired(_) => panic!("no OTP in OAuth 2.0"),
    }
}

#[tokio::test]
async fn a_verified_id_token_gives_the_user() {
    let fake = FakeOAuth2::start().unwrap();
    let session = password_login(&provider(&fake)).await.unwrap();
    let user = session.user.expect("the ID token's user");
    assert_eq!(user.email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(
        session.extras.get(SUBJECT_EXTRA),
        user.id.map(Into::into).as_ref()
    );
}

#[tokio::test]
async fn id_tokens_signed_by_another_key_for_another_audience_expired_or_hmac_are_rejected() {
    let fake = FakeOAuth2::start().unwrap();
    let provider = provider(&fake);
    for (fault, reason) in [
        (IdTokenFault::OtherKey, "signature"),
        (IdTokenFault::WrongAudience, "audience"),
        (IdTokenFault::Expired, "expired"),
        (IdTokenFault::Hmac, "HMAC"),
    ] {
        fake.set_id_token_fault(Some(fault));
        let error = password_login(&provider).await.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, AuthError::Protocol { .. })
                && text.contains("ID token rejected")
                && text.contains(reason),
            "{fault:?}: {error:?}"
        );
    }
    fake.set_id_token_fault(None);
    password_login(&provider)
        .await
        .expect("a correct ID token is accepted again");
}

#[tokio::test]
async fn a_pkce_callback_with_a_wrong_state_is_refused_before_anything_is_sent() {
    let fake = FakeOAuth2::start().unwrap();
    let provider = provider(&fake);
    let redirect: url::Url = "http://127.0.0.1:9/callback".parse().unwrap();
    let request = provider.authorization_request(&redirect).await.unwrap();
    assert!(
        request
            .url()
            .query()
            .unwrap()
            .contains("code_challenge_method=S256")
    );
    let callback = Browser::new(reqwest_transport())
        .run(
            request.url(),
            Some(&redirect),
            &alice(),
            Decision::Allow,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "state" {
                    "forged".into()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let before = fake.server().recorder().count(endpoints::TOKEN);
    let error = provider
        .complete_authorization(&request, &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuthError::Validation { field: Some(f), .. } if f == "state"),
        "{error:?}"
    );
    assert_eq!(
        fake.server().recorder().count(endpoints::TOKEN),
        before,
        "the code was not sent"
    );
    // The genuine callback still works, once: the code is single use.
    let session = provider
        .complete_authorization(&request, &callback)
        .await
        .unwrap();
    assert!(session.tokens.refresh.is_some());
    let again = provider
        .complete_authorization(&request, &callback)
        .await
        .unwrap_err();
    assert!(matches!(again, AuthError::Unauthorized { .. }), "{again:?}");
}

#[tokio::test]
async fn a_denied_pkce_authorization_is_forbidden() {
    let fake = FakeOAuth2::start().unwrap();
    let provider = provider(&fake);
    let error = common::pkce_sign_in(&provider, &alice(), Decision::Deny)
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::Forbidden { .. }), "{error:?}");
}

#[tokio::test]
async fn device_flow_pending_slow_down_denied_and_expired() {
    let fake = FakeOAuth2::start().unwrap();
    let provider = provider(&fake);
    let device = provider.start_device_authorization().await.unwrap();
    assert_eq!(device.interval, Duration::from_secs(1));
    assert!(matches!(
        provider.poll_device_authorization(&device).await.unwrap(),
        DevicePoll::Pending
    ));
    // Polled again at once: slow down, and the interval grows by 5 s.
    match provider.poll_device_authorization(&device).await.unwrap() {
        DevicePoll::SlowDown { interval } => assert_eq!(interval, Duration::from_secs(6)),
        other => panic!("expected slow_down, got {other:?}"),
    }
    assert!(fake.deny_device(&device.user_code));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let denied = provider
        .poll_device_authorization(&device)
        .await
        .unwrap_err();
    assert!(matches!(denied, AuthError::Forbidden { .. }), "{denied:?}");

    let expiring = provider.start_device_authorization().await.unwrap();
    fake.server().set_clock_ahead(Duration::from_secs(601));
    let expired = provider
        .wait_for_device_authorization(&expiring)
        .await
        .unwrap_err();
    assert!(matches!(expired, AuthError::SessionExpired), "{expired:?}");
}

#[tokio::test]
async fn device_flow_completes_after_the_user_signs_in() {
    let fake = FakeOAuth2::start().unwrap();
    let provider = provider(&fake);
    let session = common::device_sign_in(&provider, &alice(), Decision::Allow)
        .await
        .unwrap();
    let user = provider.current_user(&session).await.unwrap();
    assert_eq!(user.email.as_deref(), Some(ALICE_EMAIL));
}

#[tokio::test]
async fn client_secret_basic_and_post_both_authenticate() {
    let fake = FakeOAuth2::start().unwrap();
    for auth in [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost] {
        let config = OAuth2Config::new(fake.base_url().clone(), CONFIDENTIAL_CLIENT_ID)
            .with_client_secret(CLIENT_SECRET)
            .with_client_auth(auth);
        let provider = OAuth2Provider::with_transport(config, reqwest_transport()).unwrap();
        let session = provider.client_credentials().await.unwrap();
        let request = fake.server().recorder().last(endpoints::TOKEN).unwrap();
        let basic = request
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic "));
        assert_eq!(basic, auth == ClientAuth::ClientSecretBasic);
        assert!(!format!("{session:?} {provider:?}").contains(CLIENT_SECRET));
        assert!(session.tokens.refresh.is_none());
        let refreshed = provider.refresh(&session).await.unwrap();
        assert_ne!(refreshed.tokens.access, session.tokens.access);
        assert_eq!(
            provider.logout(&refreshed).await.unwrap(),
            LogoutOutcome::Revoked
        );
    }
    let wrong = OAuth2Config::new(fake.base_url().clone(), CONFIDENTIAL_CLIENT_ID)
        .with_client_secret("wrong-secret");
    let error = OAuth2Provider::with_transport(wrong, reqwest_transport())
        .unwrap()
        .client_credentials()
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::InvalidCredentials), "{error:?}");
}

#[tokio::test]
async fn explicit_endpoints_work_without_discovery() {
    let fake = FakeOAuth2::start().unwrap();
    let url = |path: &str| fake.base_url().join(path).unwrap();
    let config = config(&fake).with_endpoints(Endpoints {
        authorization: None,
        token: url("token"),
        device_authorization: None,
        revocation: None,
        userinfo: Some(url("userinfo")),
        jwks: None,
    });
    let provider = OAuth2Provider::with_transport(config, reqwest_transport()).unwrap();
    assert!(!provider.capabilities().server_logout);
    let session = password_login(&provider).await.unwrap();
    assert!(
        session.user.is_none(),
        "an ID token that cannot be verified is not used"
    );
    assert_eq!(fake.server().recorder().count(endpoints::DISCOVERY), 0);
    assert!(matches!(
        provider.logout(&session).await.unwrap(),
        LogoutOutcome::LocalOnly { .. }
    ));
    assert!(matches!(
        provider.start_device_authorization().await,
        Err(AuthError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn fifty_concurrent_requests_after_expiry_refresh_once_and_the_grant_survives() {
    let fake = FakeOAuth2::start().unwrap();
    let counting = Counting::new();
    let clock = ManualClock::starting_now();
    let provider = OAuth2Provider::with_transport(config(&fake), counting.clone())
        .unwrap()
        .with_clock(clock.clone());
    let session = password_login(&provider).await.unwrap();
    let manager = common::manager(provider.clone(), clock.clone());
    manager.sign_in_with(session.clone()).await.unwrap();
    let tokens = common::concurrent_after_expiry(&manager, &clock, 50).await;
    assert_eq!(
        counting.grants("refresh_token"),
        1,
        "one refresh for 50 callers"
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_ne!(tokens[0], session.tokens.access.expose_secret());
    // The grant survives: no reuse was detected, the new tokens work and refresh again.
    assert_eq!(fake.live_grants(), 1);
    manager.current_user().await.unwrap();
    manager.refresh().await.unwrap();
    assert_eq!(counting.grants("refresh_token"), 2);
    assert_eq!(fake.live_grants(), 1);
    // Reuse of the first, rotated-away refresh token revokes the whole grant.
    let reused = provider.refresh(&session).await.unwrap_err();
    assert!(matches!(reused, AuthError::RefreshRejected), "{reused:?}");
    assert_eq!(fake.live_grants(), 0);
    let current = manager.session().unwrap();
    assert!(matches!(
        provider.refresh(&current).await,
        Err(AuthError::RefreshRejected)
    ));
}

#[tokio::test]
async fn the_manager_refreshes_a_client_credentials_session_without_a_refresh_token() {
    let fake = FakeOAuth2::start().unwrap();
    let counting = Counting::new();
    let clock = ManualClock::starting_now();
    let config = OAuth2Config::new(fake.base_url().clone(), CONFIDENTIAL_CLIENT_ID)
        .with_client_secret(CLIENT_SECRET);
    let provider = OAuth2Provider::with_transport(config, counting.clone())
        .unwrap()
        .with_clock(clock.clone());
    assert!(provider.capabilities().refresh_without_token);
    let session = provider.client_credentials().await.unwrap();
    let manager = common::manager(provider, clock.clone());
    manager.sign_in_with(session.clone()).await.unwrap();
    let tokens = common::concurrent_after_expiry(&manager, &clock, 10).await;
    assert_eq!(
        counting.grants("client_credentials"),
        2,
        "sign-in, then one re-fetch"
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_ne!(tokens[0], session.tokens.access.expose_secret());
}

#[tokio::test]
async fn sessions_are_bound_to_the_api_url_when_one_is_configured() {
    let fake = FakeOAuth2::start().unwrap();
    let api: url::Url = "https://api.example.com/v1/".parse().unwrap();
    let provider = OAuth2Provider::with_transport(
        config(&fake).with_api_url(api.clone()),
        reqwest_transport(),
    )
    .unwrap();
    assert_eq!(provider.base_url(), &api);
    let session = password_login(&provider).await.unwrap();
    assert!(session.is_same_origin(&"https://api.example.com/items".parse().unwrap()));
    assert!(!session.is_same_origin(fake.base_url()));
    // The provider's own endpoints still work for it.
    provider.refresh(&session).await.unwrap();
    assert_eq!(
        provider.logout(&session).await.unwrap(),
        LogoutOutcome::Revoked
    );
    // Plain http to a non-loopback API is refused like any other URL.
    let insecure = config(&fake).with_api_url("http://api.example.com".parse().unwrap());
    assert!(matches!(
        OAuth2Provider::with_transport(insecure, reqwest_transport()),
        Err(AuthError::InsecureTransport { .. })
    ));
}
