//! Live tests against a REAL OpenID provider: panva's `oidc-provider` 9.13.3 (OpenID
//! Certified) as `cargo xtask oidc start` runs it (`xtask/oidc/server.mjs`).
//!
//! They run when `AUTHMUX_OIDC_ISSUER` is set (with the other `AUTHMUX_OIDC_*`
//! variables that `eval "$(cargo xtask oidc env)"` exports; `cargo xtask ci` sets them).
//! Otherwise each test says loudly on stderr that it was skipped, and returns. The test
//! plays the user through the server's login and consent pages over plain HTTP.

mod common;

use std::time::Duration;

use authmux_core::{AuthError, AuthProvider, LogoutOutcome, ManualClock};
use authmux_oauth2::{ClientAuth, DevicePoll, OAuth2Config, OAuth2Provider};
use common::{Browser, Counting, Decision, LIVE_OTHER_USER, LIVE_USER, Live, reqwest_transport};

fn provider(config: OAuth2Config) -> OAuth2Provider {
    OAuth2Provider::with_transport(config, reqwest_transport()).unwrap()
}

#[tokio::test]
async fn pkce_end_to_end_with_a_wrong_state_first() {
    let Some(live) = Live::from_env("pkce_end_to_end_with_a_wrong_state_first") else {
        return;
    };
    let provider = provider(live.cli_config());
    let listener = authmux_oauth2::LoopbackListener::bind("/callback", 0)
        .await
        .unwrap();
    let redirect = listener.redirect_uri().clone();
    let request = provider.authorization_request(&redirect).await.unwrap();
    let callback = Browser::new(reqwest_transport())
        .run(
            request.url(),
            Some(&redirect),
            &live.user(LIVE_USER),
            Decision::Allow,
            None,
        )
        .await
        .unwrap()
        .expect("redirected back with a code");
    // A forged state is refused before the code is sent anywhere.
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "state" {
                "forged".to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), value)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let error = provider
        .complete_authorization(&request, &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuthError::Validation { field: Some(f), .. } if f == "state"),
        "{error:?}"
    );
    // The genuine redirect, delivered to the real loopback listener, signs in.
    let waiting = tokio::spawn(listener.wait_for_callback());
    reqwest_transport()
        .send(
            http::Request::get(callback.as_str())
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let received = waiting.await.unwrap().unwrap();
    let session = provider
        .complete_authorization(&request, &received)
        .await
        .unwrap();
    let from_id_token = session.user.clone().expect("the verified ID token's user");
    assert_eq!(from_id_token.id.as_deref(), Some(LIVE_USER));
    let user = provider.current_user(&session).await.unwrap();
    assert_eq!(user.email.as_deref(), Some(LIVE_USER));
    assert!(
        session.tokens.refresh.is_some(),
        "offline_access gives a refresh token"
    );
    // The code is single use.
    let reused = provider
        .complete_authorization(&request, &received)
        .await
        .unwrap_err();
    assert!(
        matches!(reused, AuthError::Unauthorized { .. }),
        "{reused:?}"
    );
    assert_eq!(
        provider.logout(&session).await.unwrap(),
        LogoutOutcome::Revoked
    );
    assert!(matches!(
        provider.refresh(&session).await,
        Err(AuthError::RefreshRejected)
    ));
}

#[tokio::test]
async fn pkce_denied_by_the_user_is_forbidden_and_a_wrong_password_never_signs_in() {
    let Some(live) = Live::from_env("pkce_denied_by_the_user_is_forbidden") else {
        return;
    };
    let provider = provider(live.cli_config());
    let denied = common::pkce_sign_in(&provider, &live.user(LIVE_USER), Decision::Deny)
        .await
        .unwrap_err();
    assert!(matches!(denied, AuthError::Forbidden { .. }), "{denied:?}");
    let wrong = authmux_core::Credentials::new(LIVE_USER, "not the password");
    let error = common::pkce_sign_in(&provider, &wrong, Decision::Allow)
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::InvalidCredentials), "{error:?}");
}

#[tokio::test]
async fn device_flow_end_to_end_with_slow_down() {
    let Some(live) = Live::from_env("device_flow_end_to_end_with_slow_down") else {
        return;
    };
    let provider = provider(live.cli_config());
    let device = provider.start_device_authorization().await.unwrap();
    assert_eq!(
        device.interval,
        Duration::from_secs(1),
        "the server's interval"
    );
    assert!(matches!(
        provider.poll_device_authorization(&device).await.unwrap(),
        DevicePoll::Pending
    ));
    let slowed = match provider.poll_device_authorization(&device).await.unwrap() {
        DevicePoll::SlowDown { interval } => interval,
        other => panic!("polling at once should be slow_down, got {other:?}"),
    };
    assert_eq!(slowed, Duration::from_secs(6));
    common::play_device_user(&device, &live.user(LIVE_OTHER_USER), Decision::Allow)
        .await
        .unwrap();
    let mut slower = device.clone();
    slower.interval = slowed;
    let started = std::time::Instant::now();
    let session = provider
        .wait_for_device_authorization(&slower)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= slowed,
        "waited the raised interval before polling"
    );
    let user = provider.current_user(&session).await.unwrap();
    assert_eq!(user.email.as_deref(), Some(LIVE_OTHER_USER));
    let refreshed = provider.refresh(&session).await.unwrap();
    assert_ne!(
        refreshed.tokens.refresh, session.tokens.refresh,
        "the server rotates"
    );
}

#[tokio::test]
async fn device_flow_denied_and_expired() {
    let Some(live) = Live::from_env("device_flow_denied_and_expired") else {
        return;
    };
    let provider = provider(live.cli_config());
    let denied = common::device_sign_in(&provider, &live.user(LIVE_USER), Decision::Deny)
        .await
        .unwrap_err();
    assert!(matches!(denied, AuthError::Forbidden { .. }), "{denied:?}");
    // This client's device codes live 3 s on the server.
    let expiring = provider_for_expiring(&live);
    let device = expiring.start_device_authorization().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let expired = expiring
        .poll_device_authorization(&device)
        .await
        .unwrap_err();
    assert!(matches!(expired, AuthError::SessionExpired), "{expired:?}");
}

fn provider_for_expiring(live: &Live) -> OAuth2Provider {
    provider(
        OAuth2Config::new(live.issuer.clone(), "authmux-device-expiring").with_scopes(["openid"]),
    )
}

#[tokio::test]
async fn client_secret_post_and_client_credentials() {
    let Some(live) = Live::from_env("client_secret_post_and_client_credentials") else {
        return;
    };
    let post = provider(
        OAuth2Config::new(live.issuer.clone(), "authmux-post")
            .with_client_secret(live.client_secret.as_str())
            .with_client_auth(ClientAuth::ClientSecretPost)
            .with_scopes(["openid", "email", "offline_access"]),
    );
    let session = common::device_sign_in(&post, &live.user(LIVE_USER), Decision::Allow)
        .await
        .unwrap();
    post.refresh(&session).await.unwrap();
    let service = provider(
        OAuth2Config::new(live.issuer.clone(), "authmux-service")
            .with_client_secret(live.client_secret.as_str()),
    );
    let machine = service.client_credentials().await.unwrap();
    let again = service.refresh(&machine).await.unwrap();
    assert_ne!(again.tokens.access, machine.tokens.access);
    let wrong = provider(
        OAuth2Config::new(live.issuer.clone(), "authmux-service").with_client_secret("wrong"),
    );
    assert!(matches!(
        wrong.client_credentials().await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn fifty_concurrent_requests_after_expiry_refresh_once_and_the_grant_survives() {
    let Some(live) = Live::from_env("fifty_concurrent_requests_after_expiry") else {
        return;
    };
    let counting = Counting::new();
    let clock = ManualClock::starting_now();
    let provider = OAuth2Provider::with_transport(live.cli_config(), counting.clone())
        .unwrap()
        .with_clock(clock.clone());
    let session = common::device_sign_in(&provider, &live.user(LIVE_USER), Decision::Allow)
        .await
        .unwrap();
    // `expires_in`, less a second when the access token is a JWT whose `exp` counts
    // from a whole-second `iat` (`authmux_core::token`).
    let stated = Duration::from_secs(live.access_ttl_secs);
    let whole_second_jwt = authmux_core::token::jwt_hint(session.tokens.access.expose_secret())
        .is_some_and(|hint| hint.issued_at.is_some() && hint.expires_at.is_some());
    let expected = if whole_second_jwt {
        stated - Duration::from_secs(1)
    } else {
        stated
    };
    assert_eq!(session.tokens.lifetime(), Some(expected));
    let manager = common::manager(provider.clone(), clock.clone());
    manager.sign_in_with(session.clone()).await.unwrap();
    let tokens = common::concurrent_after_expiry(&manager, &clock, 50).await;
    assert_eq!(
        counting.grants("refresh_token"),
        1,
        "one refresh for 50 callers"
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    // The grant survives (oidc-provider revokes it on refresh-token reuse): the new
    // tokens work, and refresh again.
    let user = manager.current_user().await.unwrap();
    assert_eq!(user.email.as_deref(), Some(LIVE_USER));
    manager.refresh().await.unwrap();
    manager.current_user().await.unwrap();
    assert_eq!(counting.grants("refresh_token"), 2);
    // And reuse detection is really on: the first, rotated-away refresh token revokes
    // the grant, and the manager's current tokens die with it.
    let reused = provider.refresh(&session).await.unwrap_err();
    assert!(matches!(reused, AuthError::RefreshRejected), "{reused:?}");
    let current = manager.session().unwrap();
    assert!(matches!(
        provider.refresh(&current).await,
        Err(AuthError::RefreshRejected)
    ));
}

#[tokio::test]
async fn a_session_of_another_provider_is_refused() {
    let Some(live) = Live::from_env("a_session_of_another_provider_is_refused") else {
        return;
    };
    let provider = provider(live.cli_config());
    let session = common::device_sign_in(&provider, &live.user(LIVE_USER), Decision::Allow)
        .await
        .unwrap();
    let elsewhere = OAuth2Provider::with_transport(
        OAuth2Config::new("http://127.0.0.1:1/".parse().unwrap(), "authmux-cli"),
        reqwest_transport(),
    )
    .unwrap();
    assert!(matches!(
        elsewhere.refresh(&session).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        elsewhere.current_user(&session).await,
        Err(AuthError::InsecureTransport { .. })
    ));
}
