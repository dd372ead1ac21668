//! Live tests against a REAL Directus 12 (12.4.0 as `cargo xtask directus` installs it).
//!
//! They run when `AUTHMUX_DIRECTUS_URL` is set (with the admin credentials and the other
//! `AUTHMUX_DIRECTUS_*` variables that `eval "$(cargo xtask directus env)"` exports;
//! `cargo xtask ci` sets them). Otherwise each test says loudly on stderr that it was
//! skipped and why, and returns. Every test creates its own users (unique emails), so
//! the tests are independent and run in parallel. Access tokens on the test server live
//! a few seconds; only the proactive-refresh and refresh-after-401 tests wait in real
//! time, and only as long as the server needs to consider a token due or expired.
mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux_core::wire::json_request;
use authmux_core::{
    AuthError, AuthProvider, Credentials, LoginOutcome, LogoutOutcome, ManualClock, OtpChallenge,
    OtpCode, Password, Phase, RefreshWindow, ResetToken, Session, SessionManager,
};
use authmux_directus::{DirectusMode, REFRESH_COOKIE};
use bytes::Bytes;
use common::{Live, Logging, TestUser, reqwest_transport, skip, totp_now};
use http::{Method, Request};
use serde_json::json;

const MODES: [DirectusMode; 3] = [
    DirectusMode::Json,
    DirectusMode::Cookie,
    DirectusMode::Session,
];

async fn sign_in(manager: &SessionManager, user: &TestUser) -> Session {
    match manager.login(&user.credentials()).await {
        Ok(LoginOutcome::Authenticated(session)) => session,
        other => panic!("{} could not sign in: {other:?}", user.email),
    }
}

fn get_me() -> Request<Bytes> {
    Request::get("/users/me?fields=id,email")
        .body(Bytes::new())
        .unwrap()
}

/// `POST /auth/refresh` with `token` the way `mode` sends it, sent by hand (not through
/// the adapter): the status and error code the server answers.
async fn raw_refresh(live: &Live, mode: DirectusMode, token: &str) -> (u16, Option<String>) {
    let url = authmux_core::wire::endpoint(&live.url, "/auth/refresh");
    let mut request = match mode {
        DirectusMode::Json => json_request(
            Method::POST,
            &url,
            &json!({"refresh_token": token, "mode": "json"}),
        ),
        _ => json_request(Method::POST, &url, &json!({"mode": mode.as_str()})),
    }
    .unwrap();
    if mode != DirectusMode::Json {
        let name = if mode == DirectusMode::Cookie {
            REFRESH_COOKIE
        } else {
            authmux_directus::SESSION_COOKIE
        };
        request.headers_mut().insert(
            http::header::COOKIE,
            format!("{name}={token}").parse().unwrap(),
        );
    }
    let response = reqwest_transport()
        .send(request)
        .await
        .expect("refresh answered");
    let code = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|b| {
            b["errors"][0]["extensions"]["code"]
                .as_str()
                .map(str::to_owned)
        });
    (response.status().as_u16(), code)
}

#[tokio::test]
async fn live_login_refresh_and_logout_in_all_three_modes() {
    let Some(live) = Live::from_env("live_login_refresh_and_logout_in_all_three_modes") else {
        return;
    };
    let admin = live.admin().await;
    for mode in MODES {
        let user = admin.create_user("modes").await;
        let log = Logging::new(reqwest_transport());
        let provider = Arc::new(live.provider(mode, log.clone()));
        // Refresh only at expiry (not after half the short lifetime), so that only the
        // explicit refresh below happens, however slow the machine.
        let manager = SessionManager::builder(provider.clone())
            .refresh_window(RefreshWindow {
                min_lead: Duration::ZERO,
                fraction: 0.0,
                jitter: 0.0,
            })
            .build();
        let session = sign_in(&manager, &user).await;

        assert_eq!(session.extra_str("mode"), Some(mode.as_str()), "{mode}");
        let refresh = session
            .tokens
            .refresh
            .clone()
            .expect("a refresh credential");
        if mode == DirectusMode::Session {
            // The session cookie is the access JWT and what refreshes it.
            assert_eq!(
                refresh.expose_secret(),
                session.tokens.access.expose_secret()
            );
        } else {
            assert_ne!(
                refresh.expose_secret(),
                session.tokens.access.expose_secret()
            );
            if let Some(ttl) = live.access_ttl {
                // `expires` is milliseconds of lifetime, but the JWT's `exp` counts from
                // a whole-second `iat`: the token may die up to a second sooner, and
                // that second comes off (`authmux_core::token`).
                assert_eq!(
                    session.tokens.lifetime(),
                    Some(ttl - Duration::from_secs(1)),
                    "{mode}"
                );
            }
        }
        let debug = format!("{session:?}");
        assert!(!debug.contains(refresh.expose_secret()) && !debug.contains(&user.password));

        let me = manager.current_user().await.expect("current user");
        assert_eq!(me.id.as_deref(), Some(user.id.as_str()), "{mode}");
        assert_eq!(me.email.as_deref(), Some(user.email.as_str()), "{mode}");
        assert_eq!(me.name.as_deref(), Some("Ann Lee"), "{mode}");

        // An explicit refresh rotates the refresh credential.
        manager.refresh().await.expect("refresh");
        let refreshed = manager.session().expect("still signed in");
        assert_ne!(refreshed.tokens.refresh, session.tokens.refresh, "{mode}");
        assert_eq!(refreshed.extra_str("mode"), Some(mode.as_str()));
        manager
            .current_user()
            .await
            .expect("current user after refresh");
        assert_eq!(
            log.refresh_credentials(),
            vec![refresh.expose_secret().to_owned()],
            "{mode}: the refresh credential went out once, in the mode's place"
        );
        if mode != DirectusMode::Session {
            // json and cookie rotate at once (session mode has a 10 s grace period).
            assert!(matches!(
                provider.refresh(&session).await,
                Err(AuthError::RefreshRejected)
            ));
        }

        // Logout kills the refresh credential.
        assert_eq!(
            manager.logout().await.expect("logout"),
            LogoutOutcome::Revoked
        );
        assert_eq!(manager.phase(), Phase::SignedOut);
        let current = refreshed.tokens.refresh.as_ref().unwrap().expose_secret();
        assert_eq!(
            raw_refresh(&live, mode, current).await,
            (401, Some("INVALID_CREDENTIALS".to_owned())),
            "{mode}: the refresh credential still works after logout"
        );
        assert!(matches!(
            provider.refresh(&refreshed).await,
            Err(AuthError::RefreshRejected)
        ));
        log.assert_no_authorization_on_auth();
    }
}

#[tokio::test]
async fn live_two_factor_challenge_and_completion() {
    let Some(live) = Live::from_env("live_two_factor_challenge_and_completion") else {
        return;
    };
    let admin = live.admin().await;
    let user = admin.create_user("tfa").await;
    let provider = live.provider(DirectusMode::Cookie, reqwest_transport());

    // Set-up through the API: a wrong password and a wrong code are typed errors.
    let plain = match provider.login(&user.credentials()).await.unwrap() {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => panic!("two-factor is not on yet"),
    };
    assert!(matches!(
        provider
            .tfa_generate(&plain, &Password::new("wrong-password"))
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    let (secret, _) = provider
        .tfa_generate(&plain, &Password::new(user.password.as_str()))
        .await
        .expect("generate");
    let wrong = if totp_now(secret.expose_secret()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(matches!(
        provider
            .tfa_enable(&plain, &secret, &OtpCode::new(wrong))
            .await,
        Err(AuthError::InvalidOtp)
    ));
    provider
        .tfa_enable(
            &plain,
            &secret,
            &OtpCode::new(totp_now(secret.expose_secret())),
        )
        .await
        .expect("enable");
    let code = || OtpCode::new(totp_now(secret.expose_secret()));

    // A login without a code is a challenge holding the password in memory only.
    let challenge = match provider.login(&user.credentials()).await.unwrap() {
        LoginOutcome::OtpRequired(challenge) => challenge,
        LoginOutcome::Authenticated(_) => panic!("signed in without the code"),
    };
    assert!(challenge.password.is_some());
    let stored = serde_json::to_string(&challenge).unwrap();
    assert!(!stored.contains(&user.password) && !format!("{challenge:?}").contains(&user.password));
    assert!(matches!(
        provider.verify_otp(&challenge, &OtpCode::new(wrong)).await,
        Err(AuthError::InvalidOtp)
    ));
    let session = provider
        .verify_otp(&challenge, &code())
        .await
        .expect("verify");
    assert_eq!(session.extra_str("mode"), Some("cookie"));
    provider.current_user(&session).await.expect("current user");

    // A challenge read back from disk has no password: a clear error, until given one.
    let restored: OtpChallenge = serde_json::from_str(&stored).unwrap();
    assert!(matches!(
        provider.verify_otp(&restored, &code()).await,
        Err(AuthError::Validation { field: Some(f), .. }) if f == "password"
    ));
    let restored = restored.with_password(Password::new(user.password.as_str()));
    provider
        .verify_otp(&restored, &code())
        .await
        .expect("verify with the password again");

    // Through the manager, and with the code sent at once.
    let manager = SessionManager::new(Arc::new(
        live.provider(DirectusMode::Json, reqwest_transport()),
    ));
    assert!(matches!(
        manager.login(&user.credentials()).await,
        Ok(LoginOutcome::OtpRequired(_))
    ));
    assert_eq!(manager.phase(), Phase::AwaitingOtp);
    manager.verify_otp(&code()).await.expect("manager verify");
    assert_eq!(
        manager.current_user().await.unwrap().email.as_deref(),
        Some(user.email.as_str())
    );
    let at_once = user.credentials().with_otp(code());
    assert!(matches!(
        provider.login(&at_once).await,
        Ok(LoginOutcome::Authenticated(_))
    ));
    // A wrong password is still a wrong password, not a code request.
    let wrong_password = Credentials::new(user.email.clone(), "not-the-password");
    assert!(matches!(
        provider.login(&wrong_password).await,
        Err(AuthError::InvalidCredentials)
    ));

    // And off again, with a session just signed in (the test server's access tokens
    // live a few seconds: the one above may have expired on a loaded machine).
    let Ok(LoginOutcome::Authenticated(fresh)) =
        provider.login(&user.credentials().with_otp(code())).await
    else {
        panic!("signed in with the code")
    };
    provider
        .tfa_disable(&fresh, &code())
        .await
        .expect("disable");
    assert!(matches!(
        provider.login(&user.credentials()).await,
        Ok(LoginOutcome::Authenticated(_))
    ));
}

#[tokio::test]
async fn live_proactive_refresh() {
    let Some(live) = Live::from_env("live_proactive_refresh") else {
        return;
    };
    let Some(ttl) = live.access_ttl.filter(|t| *t <= Duration::from_secs(30)) else {
        skip(
            "live_proactive_refresh",
            "AUTHMUX_DIRECTUS_ACCESS_TTL_SECS is unset or over 30 s",
        );
        return;
    };
    let admin = live.admin().await;
    let user = admin.create_user("proactive").await;
    let log = Logging::new(reqwest_transport());
    let manager = SessionManager::new(Arc::new(live.provider(DirectusMode::Json, log.clone())));
    let session = sign_in(&manager, &user).await;
    // A second off the stated lifetime, as above.
    let lifetime = ttl - Duration::from_secs(1);
    assert_eq!(session.tokens.lifetime(), Some(lifetime));

    // The default window refreshes a token this short after half its lifetime.
    let due = session.tokens.issued_at + lifetime / 2;
    if SystemTime::now() + Duration::from_millis(500) < due {
        manager.access_token().await.unwrap();
        assert_eq!(
            log.count("/auth/refresh"),
            0,
            "refreshed before the token was due"
        );
    }
    let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;

    // Refresh-ahead: in the window the still-valid token comes at once and one refresh
    // runs in the background.
    let still = manager.access_token().await.expect("token");
    assert_eq!(
        still, session.tokens.access,
        "a caller waited for the refresh"
    );
    manager.idle().await;
    let token = manager.access_token().await.expect("token");
    assert_eq!(log.count("/auth/refresh"), 1);
    assert_ne!(token, session.tokens.access);
    let refreshed = manager.session().unwrap();
    assert!(refreshed.tokens.expires_at > session.tokens.expires_at);
    manager.current_user().await.expect("current user");
    assert!(
        log.seen().iter().all(|s| s.status != 401),
        "a proactive refresh must come before any 401"
    );
    log.assert_no_authorization_on_auth();
}

/// Refresh after a 401 on a really expired token, with 50 concurrent requests, then 50
/// more on a token the manager knows is expired: one `/auth/refresh` each time, the old
/// refresh token is dead, and the manager never sends a refresh token twice.
async fn refresh_after_401_and_single_flight(test: &str, mode: DirectusMode) {
    let Some(live) = Live::from_env(test) else {
        return;
    };
    let Some(ttl) = live.access_ttl.filter(|t| *t <= Duration::from_secs(30)) else {
        skip(
            test,
            "AUTHMUX_DIRECTUS_ACCESS_TTL_SECS is unset or over 30 s",
        );
        return;
    };
    let admin = live.admin().await;
    let user = admin.create_user("rotation").await;
    let log = Logging::new(reqwest_transport());
    // A frozen clock: the manager believes the token is fresh, the server does not.
    let clock = Arc::new(ManualClock::starting_now());
    let provider = Arc::new(live.provider(mode, log.clone()).with_clock(clock.clone()));
    let manager = SessionManager::builder(provider.clone())
        .clock(clock.clone())
        .build();
    let first = sign_in(&manager, &user).await;
    // JWT `exp` has whole seconds: wait until the server surely says TOKEN_EXPIRED.
    tokio::time::sleep(ttl + Duration::from_millis(1200)).await;

    let requests = (0..50).map(|_| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.send(get_me()).await })
    });
    for answer in futures_join(requests).await {
        assert_eq!(answer.expect("sent").status(), 200);
    }
    assert_eq!(
        log.count("/auth/refresh"),
        1,
        "50 requests after 401 caused one refresh"
    );
    assert!(
        log.seen().iter().any(|s| s.status == 401),
        "the server never said 401"
    );
    let second = manager.session().unwrap();
    let old = first.tokens.refresh.as_ref().unwrap().expose_secret();
    assert_ne!(second.tokens.refresh, first.tokens.refresh);
    // The old refresh token is dead: sent by hand, the server refuses it.
    assert_eq!(
        raw_refresh(&live, mode, old).await,
        (401, Some("INVALID_CREDENTIALS".to_owned()))
    );

    // Now the manager knows the token expired: 50 more requests, one more refresh.
    clock.advance(ttl + Duration::from_secs(1));
    let requests = (0..50).map(|_| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.send(get_me()).await })
    });
    for answer in futures_join(requests).await {
        assert_eq!(answer.expect("sent").status(), 200);
    }
    assert_eq!(log.count("/auth/refresh"), 2);
    let sent = log.refresh_credentials();
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        sent.len(),
        "the manager sent a refresh token twice"
    );
    assert_eq!(sent[0], old);
    assert_eq!(
        sent[1],
        second.tokens.refresh.as_ref().unwrap().expose_secret()
    );
    manager.current_user().await.expect("still signed in");
    log.assert_no_authorization_on_auth();
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn live_refresh_after_401_and_single_flight_json() {
    refresh_after_401_and_single_flight(
        "live_refresh_after_401_and_single_flight_json",
        DirectusMode::Json,
    )
    .await;
}

#[tokio::test]
async fn live_refresh_after_401_and_single_flight_cookie() {
    refresh_after_401_and_single_flight(
        "live_refresh_after_401_and_single_flight_cookie",
        DirectusMode::Cookie,
    )
    .await;
}

#[tokio::test]
async fn live_wrong_password_and_suspended_user() {
    let Some(live) = Live::from_env("live_wrong_password_and_suspended_user") else {
        return;
    };
    let admin = live.admin().await;
    let user = admin.create_user("wrong").await;
    let provider = live.provider(DirectusMode::Json, reqwest_transport());
    for credentials in [
        Credentials::new(user.email.clone(), "definitely-not-it"),
        Credentials::new(common::unique_email("nobody"), "definitely-not-it"),
    ] {
        let err = provider.login(&credentials).await.unwrap_err();
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("definitely-not-it"));
    }

    // Suspended after signing in. Directus 12.4's users service deletes the sessions
    // of a user whose status leaves `active`, so the refresh token is simply dead
    // (INVALID_CREDENTIALS; `USER_SUSPENDED` only comes when the status changes
    // without that service, e.g. the login-attempt lockout), and a login says only
    // "invalid credentials", as for any inactive user.
    let manager = SessionManager::new(Arc::new(
        live.provider(DirectusMode::Json, reqwest_transport()),
    ));
    sign_in(&manager, &user).await;
    admin.set_status(&user, "suspended").await;
    let refused = manager.refresh().await;
    assert!(
        matches!(refused, Err(AuthError::RefreshRejected)),
        "{refused:?}"
    );
    assert_eq!(manager.phase(), Phase::SignedOut);
    assert!(matches!(
        provider.login(&user.credentials()).await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn live_rate_limited_instance() {
    let Some(live) = Live::from_env("live_rate_limited_instance") else {
        return;
    };
    let Some(url) = live.rate_limited_url.clone() else {
        skip(
            "live_rate_limited_instance",
            "AUTHMUX_DIRECTUS_RATE_LIMITED_URL is not set",
        );
        return;
    };
    let points = live.rate_limit_points.unwrap_or(5);
    let window = live.rate_limit_window.unwrap_or(Duration::from_secs(60));
    let limited = Live { url, ..live };
    let provider = limited.provider(DirectusMode::Json, reqwest_transport());
    let credentials = Credentials::new(common::unique_email("limited"), "wrong-password");
    let mut retry_after = None;
    for _ in 0..=points + 1 {
        match provider.login(&credentials).await {
            Err(AuthError::InvalidCredentials) => {}
            Err(AuthError::RateLimited { retry_after: after }) => {
                retry_after = Some(after);
                break;
            }
            other => panic!("expected InvalidCredentials or RateLimited, got {other:?}"),
        }
    }
    let after = retry_after
        .unwrap_or_else(|| panic!("no 429 after {} logins with {points} points", points + 2))
        .expect("Directus sends Retry-After with 429");
    assert!(
        after > Duration::ZERO && after <= window,
        "retry after {after:?}"
    );
}

#[tokio::test]
async fn live_password_reset_by_mail() {
    let Some(live) = Live::from_env("live_password_reset_by_mail") else {
        return;
    };
    if live.mail_file.is_none() {
        skip(
            "live_password_reset_by_mail",
            "AUTHMUX_DIRECTUS_MAIL_FILE is not set",
        );
        return;
    }
    let admin = live.admin().await;
    let user = admin.create_user("reset").await;
    let provider = live.provider(DirectusMode::Json, reqwest_transport());
    let reset = provider
        .password_reset()
        .expect("Directus has password reset");

    // Unknown users get the same answer; a reset_url off the allow list is refused.
    reset
        .request_reset(&common::unique_email("nobody"), None)
        .await
        .expect("unknown email is not revealed");
    let elsewhere = url::Url::parse("https://evil.example/reset").unwrap();
    assert!(matches!(
        reset.request_reset(&user.email, Some(&elsewhere)).await,
        Err(AuthError::Validation { .. })
    ));

    reset
        .request_reset(&user.email, live.reset_url.as_ref())
        .await
        .expect("request");
    let token = ResetToken::new(live.reset_token_for(&user.email).await);
    let new_password = Password::new(format!("{}-new", user.password));
    assert!(matches!(
        reset
            .complete_reset(&ResetToken::new("not-a-token"), &new_password)
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    reset
        .complete_reset(&token, &new_password)
        .await
        .expect("reset");
    assert!(matches!(
        provider.login(&user.credentials()).await,
        Err(AuthError::InvalidCredentials)
    ));
    let renewed = Credentials::new(user.email.clone(), new_password.clone());
    assert!(matches!(
        provider.login(&renewed).await,
        Ok(LoginOutcome::Authenticated(_))
    ));
    // The token is single-use (it is bound to the old password's hash).
    let again = reset
        .complete_reset(&token, &Password::new("yet-another-password"))
        .await
        .unwrap_err();
    assert!(matches!(again, AuthError::InvalidCredentials), "{again:?}");
}

#[tokio::test]
async fn live_oauth_providers_and_callback() {
    let Some(live) = Live::from_env("live_oauth_providers_and_callback") else {
        return;
    };
    let admin = live.admin().await;
    let user = admin.create_user("oauth").await;
    let log = Logging::new(reqwest_transport());
    let provider = live.provider(DirectusMode::Cookie, log.clone());
    let oauth = provider.oauth().expect("Directus has OAuth");
    // The test server has no SSO provider configured: `GET /auth` lists none.
    assert_eq!(oauth.providers().await.expect("providers"), vec![]);
    assert_eq!(
        log.count("/auth/oauth"),
        0,
        "12.4 has GET /auth; no fallback needed"
    );
    let start = oauth
        .start_url("github", live.reset_url.as_ref())
        .expect("start URL");
    assert!(start.path().ends_with("/auth/login/github"));

    // A callback carries no token: a typed error. One carrying a refresh token (a
    // redirect page forwarding the cookie) becomes a session.
    let bare = live.reset_url.clone().unwrap_or_else(|| live.url.clone());
    assert!(matches!(
        oauth.complete(&bare).await,
        Err(AuthError::Validation { field: Some(f), .. }) if f == "callback"
    ));
    let session = match provider.login(&user.credentials()).await.unwrap() {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => unreachable!(),
    };
    let mut callback = bare.clone();
    callback.query_pairs_mut().append_pair(
        "refresh_token",
        session.tokens.refresh.as_ref().unwrap().expose_secret(),
    );
    let bridged = oauth
        .complete(&callback)
        .await
        .expect("callback with a refresh token");
    assert_eq!(
        provider
            .current_user(&bridged)
            .await
            .unwrap()
            .email
            .as_deref(),
        Some(user.email.as_str())
    );
    log.assert_no_authorization_on_auth();
}
