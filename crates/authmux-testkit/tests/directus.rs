//! `FakeDirectus` over real HTTP with a plain client (no authmux adapter): every
//! behaviour of the Directus 12.4 dialect the fake reproduces.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use authmux_testkit::directus::{
    AuthProvider, DirectusUser, FakeDirectus, REFRESH_COOKIE, SESSION_COOKIE, SignInMode, endpoints,
};
use authmux_testkit::users::{
    ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL, OTP_EMAIL, SUSPENDED_EMAIL,
};
use authmux_testkit::{Fault, ManualClock};
use common::{Resp, client, get_bearer, post_json, send, with_json};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000;

fn manual() -> (ManualClock, FakeDirectus) {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeDirectus::builder()
        .clock(clock.clone())
        .start()
        .unwrap();
    (clock, fake)
}

async fn login(fake: &FakeDirectus, body: Value) -> Resp {
    post_json(&fake.url("/auth/login"), &body).await
}

async fn login_json(fake: &FakeDirectus, email: &str) -> (String, String) {
    let r = login(
        fake,
        json!({ "email": email, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.json()["data"];
    (
        d["access_token"].as_str().unwrap().to_owned(),
        d["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// The `Set-Cookie` headers of a response.
fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value a `Set-Cookie` for `name` sets.
fn cookie_value(r: &Resp, name: &str) -> Option<String> {
    set_cookies(r).iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn error_code(r: &Resp) -> String {
    r.json()["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn error_message(r: &Resp) -> String {
    r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn post_with_cookie(fake: &FakeDirectus, path: &str, cookie: &str, body: Value) -> Resp {
    send(with_json(client().post(fake.url(path)), &body).header("cookie", cookie)).await
}

async fn get_with_cookie(fake: &FakeDirectus, path: &str, cookie: &str) -> Resp {
    send(client().get(fake.url(path)).header("cookie", cookie)).await
}

// ----- login ---------------------------------------------------------------------------

#[tokio::test]
async fn json_login_answers_data_with_ms_expiry_and_directus_claims() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-powered-by"), Some("Directus"));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let d = &r.json()["data"];
    assert_eq!(d["expires"], 900_000, "milliseconds, not seconds");
    assert!(d["refresh_token"].as_str().unwrap().len() >= 32);
    let claims = FakeDirectus::claims(d["access_token"].as_str().unwrap()).unwrap();
    let alice = fake.user(ALICE_EMAIL).unwrap();
    assert_eq!(claims["id"], alice.user.id.as_str());
    assert_eq!(claims["role"], alice.role.unwrap().as_str());
    assert_eq!(claims["app_access"], true);
    assert_eq!(claims["admin_access"], true);
    assert_eq!(claims["iss"], "directus");
    assert_eq!(claims["iat"], T0);
    assert_eq!(claims["exp"], T0 + 900);
    assert!(claims.get("sub").is_none() && claims.get("session").is_none());
    assert!(set_cookies(&r).is_empty(), "json mode sets no cookie");
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 1);
}

#[tokio::test]
async fn cookie_login_sets_an_httponly_refresh_cookie_and_no_body_token() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "cookie" }),
    )
    .await;
    assert_eq!(r.status, 200);
    let d = &r.json()["data"];
    assert!(d["access_token"].is_string());
    assert_eq!(d["expires"], 900_000);
    assert!(d.get("refresh_token").is_none());
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1);
    let token = cookie_value(&r, REFRESH_COOKIE).unwrap();
    assert_eq!(
        cookies[0],
        format!(
            "directus_refresh_token={token}; Max-Age=604800; Path=/; \
             Expires=Tue, 21 Nov 2023 22:13:20 GMT; HttpOnly; SameSite=Lax"
        )
    );
}

#[tokio::test]
async fn session_login_sets_the_jwt_cookie_and_answers_only_expires() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "session" }),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": { "expires": 86_400_000 } }));
    let jwt = cookie_value(&r, SESSION_COOKIE).unwrap();
    let claims = FakeDirectus::claims(&jwt).unwrap();
    assert_eq!(
        claims["exp"],
        T0 + 86_400,
        "the session JWT lives SESSION_COOKIE_TTL"
    );
    assert!(claims["session"].is_string());
    let cookie = &set_cookies(&r)[0];
    assert!(
        cookie.contains("; Max-Age=86400; Path=/; Expires="),
        "{cookie}"
    );
    assert!(cookie.ends_with("; HttpOnly; SameSite=Lax"), "{cookie}");
    // The cookie alone authenticates.
    let me = get_with_cookie(&fake, "/users/me", &format!("{SESSION_COOKIE}={jwt}")).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["data"]["email"], ALICE_EMAIL);
}

#[tokio::test]
async fn login_refusals_use_directus_codes_and_messages() {
    let (_, fake) = manual();
    let cases = [
        (
            json!({ "email": ALICE_EMAIL, "password": "wrong" }),
            401,
            "INVALID_CREDENTIALS",
            "Invalid user credentials.",
        ),
        (
            json!({ "email": "nobody@example.com", "password": DEFAULT_PASSWORD }),
            401,
            "INVALID_CREDENTIALS",
            "Invalid user credentials.",
        ),
        (
            json!({ "password": DEFAULT_PASSWORD }),
            400,
            "INVALID_PAYLOAD",
            "Invalid payload. \"email\" is required.",
        ),
        (
            json!({ "email": ALICE_EMAIL }),
            400,
            "INVALID_PAYLOAD",
            "Invalid payload. \"password\" is required.",
        ),
        (
            json!({ "email": "not-an-email", "password": "x" }),
            400,
            "INVALID_PAYLOAD",
            "Invalid payload. \"email\" must be a valid email.",
        ),
        (
            json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "jwt" }),
            400,
            "INVALID_PAYLOAD",
            "Invalid payload. \"mode\" must be one of [cookie, json, session].",
        ),
        (
            json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "otp": "" }),
            400,
            "INVALID_PAYLOAD",
            "Invalid payload. \"otp\" is not allowed to be empty.",
        ),
        // Directus 12.4 answers a suspended user's login like a wrong password.
        (
            json!({ "email": SUSPENDED_EMAIL, "password": DEFAULT_PASSWORD }),
            401,
            "INVALID_CREDENTIALS",
            "Invalid user credentials.",
        ),
    ];
    for (body, status, code, message) in cases {
        let r = login(&fake, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(error_code(&r), code, "{body}");
        assert_eq!(error_message(&r), message, "{body}");
    }
    let truncated = send(
        client()
            .post(fake.url("/auth/login"))
            .header("content-type", "application/json")
            .body("{\"email\":"),
    )
    .await;
    assert_eq!(
        error_message(&truncated),
        "Invalid payload. Unexpected end of JSON input."
    );
    let array = post_json(&fake.url("/auth/login"), &json!([1])).await;
    assert_eq!(
        error_message(&array),
        "Invalid payload. \"value\" must be of type object."
    );
    // Without a JSON content type the body is not read at all.
    let plain = send(
        client()
            .post(fake.url("/auth/login"))
            .header("content-type", "text/plain")
            .body(json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }).to_string()),
    )
    .await;
    assert_eq!(
        error_message(&plain),
        "Invalid payload. \"email\" is required."
    );
    let r = login(&fake, json!({ "password": "x" })).await;
    assert_eq!(
        r.json()["errors"][0]["extensions"]["reason"],
        "\"email\" is required"
    );
}

#[tokio::test]
async fn otp_user_gets_invalid_otp_only_after_the_password_check() {
    let (_, fake) = manual();
    let wrong_pw = login(&fake, json!({ "email": OTP_EMAIL, "password": "nope" })).await;
    assert_eq!(error_code(&wrong_pw), "INVALID_CREDENTIALS");

    let missing = login(
        &fake,
        json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(missing.status, 401);
    assert_eq!(error_code(&missing), "INVALID_OTP");
    assert_eq!(error_message(&missing), "Invalid user OTP.");

    let code = fake.totp_code(OTP_EMAIL).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let bad = login(
        &fake,
        json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": wrong }),
    )
    .await;
    assert_eq!(error_code(&bad), "INVALID_OTP");

    let ok = login(
        &fake,
        json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": code }),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn totp_has_no_tolerance_window_and_follows_the_server_clock() {
    let (clock, fake) = manual();
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    // A code from the previous 30 s step is refused.
    let previous = fake.totp_code_at(OTP_EMAIL, at(T0 - 30)).unwrap();
    let current = fake.totp_code(OTP_EMAIL).unwrap();
    if previous != current {
        let r = login(
            &fake,
            json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": previous }),
        )
        .await;
        assert_eq!(error_code(&r), "INVALID_OTP");
    }
    // With the server clock 5 minutes ahead, the client's "now" code is wrong and the
    // server's is right.
    fake.set_clock_ahead(Duration::from_secs(300));
    let client_code = fake.totp_code_at(OTP_EMAIL, at(T0)).unwrap();
    let server_code = fake.totp_code(OTP_EMAIL).unwrap();
    assert_eq!(
        server_code,
        fake.totp_code_at(OTP_EMAIL, at(T0 + 300)).unwrap()
    );
    if client_code != server_code {
        let r = login(
            &fake,
            json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": client_code }),
        )
        .await;
        assert_eq!(error_code(&r), "INVALID_OTP");
    }
    let r = login(
        &fake,
        json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": server_code }),
    )
    .await;
    assert_eq!(r.status, 200);
    clock.advance(Duration::from_secs(1));
}

// ----- refresh -------------------------------------------------------------------------

#[tokio::test]
async fn json_refresh_rotates_and_the_old_token_is_dead_at_once() {
    let (clock, fake) = manual();
    let (_, r1) = login_json(&fake, ALICE_EMAIL).await;
    clock.advance(Duration::from_secs(60));
    let r = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.json()["data"];
    assert_eq!(d["expires"], 900_000);
    let r2 = d["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    let claims = FakeDirectus::claims(d["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["iat"], T0 + 60);

    let again = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    assert_eq!(again.status, 401);
    assert_eq!(error_code(&again), "INVALID_CREDENTIALS");
    // Without reuse detection (Directus has none) the new token still works.
    let next = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r2 })).await;
    assert_eq!(next.status, 200);
    assert_eq!(
        fake.refresh_tokens_presented(),
        vec![r1.clone(), r1, r2.clone()]
    );
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 3);
}

#[tokio::test]
async fn cookie_refresh_reads_and_rotates_the_cookie() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "cookie" }),
    )
    .await;
    let old = cookie_value(&r, REFRESH_COOKIE).unwrap();
    // No body: mode defaults to cookie.
    let r = send(
        client()
            .post(fake.url("/auth/refresh"))
            .header("cookie", format!("{REFRESH_COOKIE}={old}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.json()["data"];
    assert!(d["access_token"].is_string() && d.get("refresh_token").is_none());
    let new = cookie_value(&r, REFRESH_COOKIE).unwrap();
    assert_ne!(new, old);
    let stale = post_with_cookie(
        &fake,
        "/auth/refresh",
        &format!("{REFRESH_COOKIE}={old}"),
        json!({ "mode": "cookie" }),
    )
    .await;
    assert_eq!(error_code(&stale), "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn refresh_without_a_token_is_invalid_payload() {
    let (_, fake) = manual();
    for body in [
        json!({}),
        json!({ "mode": "json" }),
        json!({ "mode": "session" }),
    ] {
        let r = post_json(&fake.url("/auth/refresh"), &body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(
            error_message(&r),
            "Invalid payload. The refresh token is required in either the payload or cookie."
        );
    }
}

#[tokio::test]
async fn session_refresh_has_a_ten_second_grace_for_the_old_session() {
    let (clock, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "session" }),
    )
    .await;
    let old_jwt = cookie_value(&r, SESSION_COOKIE).unwrap();
    let old_cookie = format!("{SESSION_COOKIE}={old_jwt}");
    let r = post_with_cookie(
        &fake,
        "/auth/refresh",
        &old_cookie,
        json!({ "mode": "session" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({ "data": { "expires": 86_400_000 } }));
    let new_jwt = cookie_value(&r, SESSION_COOKIE).unwrap();
    let new_session = FakeDirectus::claims(&new_jwt).unwrap()["session"].clone();
    assert_ne!(
        new_session,
        FakeDirectus::claims(&old_jwt).unwrap()["session"]
    );

    // Within the grace period the old session still works, and refreshing it again
    // hands out the same new session.
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        get_with_cookie(&fake, "/users/me", &old_cookie)
            .await
            .status,
        200
    );
    let twice = post_with_cookie(
        &fake,
        "/auth/refresh",
        &old_cookie,
        json!({ "mode": "session" }),
    )
    .await;
    assert_eq!(twice.status, 200);
    let twice_jwt = cookie_value(&twice, SESSION_COOKIE).unwrap();
    assert_eq!(
        FakeDirectus::claims(&twice_jwt).unwrap()["session"],
        new_session
    );

    // After it, the old session is gone: 401 and the cookie is cleared.
    clock.advance(Duration::from_secs(2));
    let late = get_with_cookie(&fake, "/users/me", &old_cookie).await;
    assert_eq!(late.status, 401);
    assert_eq!(error_code(&late), "INVALID_CREDENTIALS");
    assert_eq!(cookie_value(&late, SESSION_COOKIE).as_deref(), Some(""));
    let me = get_with_cookie(&fake, "/users/me", &format!("{SESSION_COOKIE}={new_jwt}")).await;
    assert_eq!(me.status, 200);
}

#[tokio::test]
async fn a_suspended_users_session_is_refused_with_user_suspended_then_gone() {
    let (_, fake) = manual();
    let (_, refresh) = login_json(&fake, ALICE_EMAIL).await;
    assert!(fake.update_user(ALICE_EMAIL, |u| u.status = "suspended".into()));
    let r = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "USER_SUSPENDED");
    assert_eq!(error_message(&r), "User suspended.");
    let again = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(error_code(&again), "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn reuse_detection_is_off_by_default_and_revokes_the_family_when_on() {
    let fake = FakeDirectus::builder()
        .reuse_detection(true)
        .start()
        .unwrap();
    let (_, r1) = login_json(&fake, ALICE_EMAIL).await;
    let r = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    let d = &r.json()["data"];
    let (a2, r2) = (
        d["access_token"].as_str().unwrap().to_owned(),
        d["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(get_bearer(&fake.url("/users/me"), &a2).await.status, 200);
    // Presenting the retired token revokes the whole sign-in.
    let reuse = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    assert_eq!(error_code(&reuse), "INVALID_CREDENTIALS");
    let after = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r2 })).await;
    assert_eq!(error_code(&after), "INVALID_CREDENTIALS");
    let me = get_bearer(&fake.url("/users/me"), &a2).await;
    assert_eq!(me.status, 401, "access tokens of the family die too");
    assert!(fake.live_sessions(ALICE_EMAIL).is_empty());

    // It can be switched off at run time.
    fake.update_settings(|s| s.reuse_detection = false);
    assert!(!fake.settings().reuse_detection);
}

// ----- the authenticate middleware ---------------------------------------------------

#[tokio::test]
async fn an_expired_bearer_fails_auth_routes_before_they_run() {
    let (clock, fake) = manual();
    let (access, refresh) = login_json(&fake, ALICE_EMAIL).await;
    clock.advance(Duration::from_secs(901));
    let r = send(with_json(
        client()
            .post(fake.url("/auth/refresh"))
            .bearer_auth(&access),
        &json!({ "refresh_token": refresh }),
    ))
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "TOKEN_EXPIRED");
    assert_eq!(error_message(&r), "Token expired.");
    assert!(
        fake.refresh_tokens_presented().is_empty(),
        "the route never ran"
    );
    let caught = fake.auth_requests_with_bearer();
    assert_eq!(caught.len(), 1);
    assert_eq!(caught[0].endpoint, endpoints::REFRESH);

    // Without the bearer the same refresh token still works.
    let ok = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(ok.status, 200);
    // Even login fails with a stale bearer.
    let login = send(with_json(
        client().post(fake.url("/auth/login")).bearer_auth(&access),
        &json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    ))
    .await;
    assert_eq!(error_code(&login), "TOKEN_EXPIRED");
}

#[tokio::test]
async fn bad_tokens_are_invalid_token_or_invalid_credentials() {
    let (_, fake) = manual();
    let (access, _) = login_json(&fake, ALICE_EMAIL).await;
    // A Directus-issued JWT with a broken signature: 403 INVALID_TOKEN.
    let forged = format!("{}x", &access[..access.len() - 1]);
    let forged = if forged == access {
        format!("{access}x")
    } else {
        forged
    };
    let r = get_bearer(&fake.url("/users/me"), &forged).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "INVALID_TOKEN");
    assert_eq!(error_message(&r), "Invalid token.");
    // Not a Directus JWT: looked up as a static token, unknown: 401 INVALID_CREDENTIALS.
    let r = get_bearer(&fake.url("/users/me"), "opaque-garbage").await;
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "INVALID_CREDENTIALS");
    // Query token and bearer at once: 400.
    let r = get_bearer(
        &fake.url(&format!("/users/me?access_token={access}")),
        &access,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "INVALID_PAYLOAD");
    // The query token alone works.
    let r = send(client().get(fake.url(&format!("/users/me?access_token={access}")))).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_static_token_authenticates_as_its_user() {
    let fake = FakeDirectus::builder()
        .user(DirectusUser::new("static@example.com", "pw").static_token("s3cr3t-static"))
        .start()
        .unwrap();
    let r = get_bearer(&fake.url("/users/me?fields=email,token"), "s3cr3t-static").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["data"],
        json!({ "email": "static@example.com", "token": "**********" })
    );
}

// ----- logout --------------------------------------------------------------------------

#[tokio::test]
async fn logout_answers_204_kills_the_session_and_ignores_unknown_tokens() {
    let (_, fake) = manual();
    let (access, refresh) = login_json(&fake, ALICE_EMAIL).await;
    let r = post_json(
        &fake.url("/auth/logout"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    let after = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(error_code(&after), "INVALID_CREDENTIALS");
    // Directus access tokens are stateless: still valid until they expire.
    assert_eq!(
        get_bearer(&fake.url("/users/me"), &access).await.status,
        200
    );
    let unknown = post_json(
        &fake.url("/auth/logout"),
        &json!({ "refresh_token": "nope" }),
    )
    .await;
    assert_eq!(unknown.status, 204);
    let missing = post_json(&fake.url("/auth/logout"), &json!({})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        fake.refresh_tokens_presented(),
        vec![refresh.clone(), refresh, "nope".to_owned()]
    );
}

#[tokio::test]
async fn cookie_logout_clears_the_cookie_the_express_4_way() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "cookie" }),
    )
    .await;
    let token = cookie_value(&r, REFRESH_COOKIE).unwrap();
    let out = send(
        client()
            .post(fake.url("/auth/logout"))
            .header("cookie", format!("{REFRESH_COOKIE}={token}")),
    )
    .await;
    assert_eq!(out.status, 204);
    // An empty value that keeps the usual Max-Age (Express 4.22 with Directus's options).
    assert_eq!(
        set_cookies(&out),
        vec![
            "directus_refresh_token=; Max-Age=604800; Path=/; \
             Expires=Tue, 21 Nov 2023 22:13:20 GMT; HttpOnly; SameSite=Lax"
                .to_owned()
        ]
    );
    // A client that stores the empty cookie and refreshes gets a 400, not a 401.
    let r = send(
        client()
            .post(fake.url("/auth/refresh"))
            .header("cookie", format!("{REFRESH_COOKIE}=")),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn session_logout_ends_the_session() {
    let (_, fake) = manual();
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "session" }),
    )
    .await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        cookie_value(&r, SESSION_COOKIE).unwrap()
    );
    let out = post_with_cookie(&fake, "/auth/logout", &cookie, json!({ "mode": "session" })).await;
    assert_eq!(out.status, 204);
    assert_eq!(cookie_value(&out, SESSION_COOKIE).as_deref(), Some(""));
    let me = get_with_cookie(&fake, "/users/me", &cookie).await;
    assert_eq!(me.status, 401);
    assert_eq!(error_code(&me), "INVALID_CREDENTIALS");
}

// ----- /users/me -----------------------------------------------------------------------

#[tokio::test]
async fn users_me_projects_fields_and_masks_secrets() {
    let (_, fake) = manual();
    let (access, _) = login_json(&fake, ALICE_EMAIL).await;
    let all = get_bearer(&fake.url("/users/me"), &access).await.json();
    let d = &all["data"];
    assert_eq!(d["email"], ALICE_EMAIL);
    assert_eq!(d["first_name"], "Alice");
    assert_eq!(d["last_name"], "Example");
    assert_eq!(d["status"], "active");
    assert_eq!(d["password"], "**********");
    assert_eq!(d["tfa_secret"], Value::Null);

    let comma = get_bearer(&fake.url("/users/me?fields=id,email"), &access).await;
    assert_eq!(
        comma.json()["data"],
        json!({ "id": d["id"], "email": ALICE_EMAIL })
    );
    let brackets = get_bearer(
        &fake.url("/users/me?fields[]=email&fields[]=role.name"),
        &access,
    )
    .await;
    assert_eq!(
        brackets.json()["data"],
        json!({ "email": ALICE_EMAIL, "role": { "name": "Administrator" } })
    );
    let unknown = get_bearer(&fake.url("/users/me?fields=nope"), &access).await;
    assert_eq!(unknown.json()["data"], json!({ "id": d["id"] }));

    let (otp_access, _) = {
        let code = fake.totp_code(OTP_EMAIL).unwrap();
        let r = login(
            &fake,
            json!({ "email": OTP_EMAIL, "password": DEFAULT_PASSWORD, "otp": code }),
        )
        .await;
        let d = r.json()["data"].clone();
        (d["access_token"].as_str().unwrap().to_owned(), ())
    };
    let otp_me = get_bearer(&fake.url("/users/me?fields=tfa_secret"), &otp_access).await;
    assert_eq!(otp_me.json()["data"]["tfa_secret"], "**********");

    let anonymous = send(client().get(fake.url("/users/me"))).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(error_code(&anonymous), "INVALID_CREDENTIALS");
}

// ----- providers and SSO -----------------------------------------------------------------

#[tokio::test]
async fn provider_lists_in_the_12_x_and_legacy_shapes() {
    let (_, fake) = manual();
    let r = send(client().get(fake.url("/auth"))).await;
    assert_eq!(r.json(), json!({ "data": [], "disableDefault": false }));
    let legacy = send(client().get(fake.url("/auth/oauth"))).await;
    assert_eq!(legacy.json(), json!({ "data": null }));

    let fake = FakeDirectus::builder()
        .provider(
            AuthProvider::oauth2("github", ALICE_EMAIL)
                .label("GitHub")
                .icon("github"),
        )
        .provider(AuthProvider::oauth2("google", ALICE_EMAIL).driver("openid"))
        .start()
        .unwrap();
    let r = send(client().get(fake.url("/auth"))).await;
    assert_eq!(
        r.json(),
        json!({
            "data": [
                { "name": "github", "label": "GitHub", "driver": "oauth2", "icon": "github" },
                { "name": "google", "driver": "openid" },
            ],
            "disableDefault": false,
        })
    );
    let legacy = send(client().get(fake.url("/auth/oauth"))).await;
    assert_eq!(legacy.json(), json!({ "data": ["github", "google"] }));

    fake.update_settings(|s| s.legacy_oauth_route = false);
    let gone = send(client().get(fake.url("/auth/oauth"))).await;
    assert_eq!(gone.status, 404);
    assert_eq!(error_code(&gone), "ROUTE_NOT_FOUND");
    assert_eq!(error_message(&gone), "Route /auth/oauth doesn't exist.");
}

#[tokio::test]
async fn sso_redirects_to_the_provider_and_back_with_a_session_cookie() {
    let fake = FakeDirectus::builder()
        .provider(
            AuthProvider::oauth2("github", ALICE_EMAIL).allow_redirect("http://app.example/done"),
        )
        .start()
        .unwrap();
    let start =
        send(client().get(fake.url("/auth/login/github?redirect=http://app.example/done"))).await;
    assert_eq!(start.status, 302);
    let location = start.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&fake.url("/fake-sso/github/authorize?")),
        "{location}"
    );
    assert!(location.contains("redirect_uri="));
    let state_cookie = set_cookies(&start)[0].split(';').next().unwrap().to_owned();
    assert!(state_cookie.starts_with("oauth2.github="));

    // The fake provider sends the browser back to the callback with a code.
    let provider = send(client().get(&location)).await;
    assert_eq!(provider.status, 302);
    let callback = provider.header("location").unwrap().to_owned();
    assert!(callback.starts_with(&fake.url("/auth/login/github/callback?code=")));
    let done = send(client().get(&callback).header("cookie", &state_cookie)).await;
    assert_eq!(done.status, 302, "{}", done.text);
    assert_eq!(done.header("location"), Some("http://app.example/done"));
    let jwt = cookie_value(&done, SESSION_COOKIE).unwrap();
    let me = get_with_cookie(
        &fake,
        "/users/me?fields=email",
        &format!("{SESSION_COOKIE}={jwt}"),
    )
    .await;
    assert_eq!(me.json()["data"]["email"], ALICE_EMAIL);

    // Redirects off the allow list and unknown providers are refused.
    let bad =
        send(client().get(fake.url("/auth/login/github?redirect=https://evil.example/"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad), "INVALID_PAYLOAD");
    let unknown = send(client().get(fake.url("/auth/login/gitlab"))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(error_code(&unknown), "ROUTE_NOT_FOUND");
}

// ----- password reset ------------------------------------------------------------------

#[tokio::test]
async fn password_request_always_answers_204_and_captures_the_mail() {
    let fake = FakeDirectus::builder()
        .allow_reset_url("https://app.example/reset")
        .start()
        .unwrap();
    let unknown = post_json(
        &fake.url("/auth/password/request"),
        &json!({ "email": "nobody@example.com" }),
    )
    .await;
    assert_eq!(unknown.status, 204);
    assert!(fake.mails().is_empty());

    let r = post_json(
        &fake.url("/auth/password/request"),
        &json!({ "email": ALICE_EMAIL }),
    )
    .await;
    assert_eq!(r.status, 204);
    let mail = fake.last_mail().unwrap();
    assert_eq!(mail.to, ALICE_EMAIL);
    assert_eq!(mail.subject, "Password Reset Request");
    assert_eq!(
        mail.url,
        format!(
            "{}admin/reset-password?token={}",
            fake.base_url(),
            mail.token
        )
    );
    let claims = FakeDirectus::claims(&mail.token).unwrap();
    assert_eq!(claims["scope"], "password-reset");
    assert_eq!(claims["email"], ALICE_EMAIL);
    assert_eq!(
        claims["hash"].as_str().unwrap().len(),
        8,
        "getSimpleHash: 8 hex digits"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        86_400
    );

    let custom = post_json(
        &fake.url("/auth/password/request"),
        &json!({ "email": ALICE_EMAIL, "reset_url": "https://app.example/reset" }),
    )
    .await;
    assert_eq!(custom.status, 204);
    let mail = fake.last_mail().unwrap();
    assert!(mail.url.starts_with("https://app.example/reset?token="));

    let refused = post_json(
        &fake.url("/auth/password/request"),
        &json!({ "email": ALICE_EMAIL, "reset_url": "https://evil.example/reset" }),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        error_message(&refused),
        "Invalid payload. URL \"https://evil.example/reset\" can't be used to reset passwords."
    );
    let missing = post_json(&fake.url("/auth/password/request"), &json!({})).await;
    assert_eq!(missing.status, 400);
}

#[tokio::test]
async fn password_reset_is_single_use_and_ends_every_session() {
    let (_, fake) = manual();
    let (_, refresh) = login_json(&fake, ALICE_EMAIL).await;
    post_json(
        &fake.url("/auth/password/request"),
        &json!({ "email": ALICE_EMAIL }),
    )
    .await;
    let token = fake.last_reset_token().unwrap();
    let r = post_json(
        &fake.url("/auth/password/reset"),
        &json!({ "token": token, "password": "new password" }),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let old = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(
        error_code(&old),
        "INVALID_CREDENTIALS",
        "sessions were cleared"
    );
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": "new password" }),
    )
    .await;
    assert_eq!(r.status, 200);

    let reused = post_json(
        &fake.url("/auth/password/reset"),
        &json!({ "token": token, "password": "new password" }),
    )
    .await;
    assert_eq!(reused.status, 403);
    assert_eq!(error_code(&reused), "FORBIDDEN");
    let garbage = post_json(
        &fake.url("/auth/password/reset"),
        &json!({ "token": "garbage", "password": "x" }),
    )
    .await;
    assert_eq!(garbage.status, 403);
    assert_eq!(error_code(&garbage), "INVALID_TOKEN");
    let missing = post_json(
        &fake.url("/auth/password/reset"),
        &json!({ "token": token }),
    )
    .await;
    assert_eq!(missing.status, 400);
}

// ----- two-factor ----------------------------------------------------------------------

#[tokio::test]
async fn enabling_two_factor_makes_login_need_the_totp_code() {
    let (_, fake) = manual();
    let (access, _) = login_json(&fake, ALICE_EMAIL).await;
    let generate = |body: Value| {
        send(with_json(
            client()
                .post(fake.url("/users/me/tfa/generate"))
                .bearer_auth(&access),
            &body,
        ))
    };
    assert_eq!(generate(json!({})).await.status, 400);
    let wrong = generate(json!({ "password": "wrong" })).await;
    assert_eq!(error_code(&wrong), "INVALID_CREDENTIALS");
    let g = generate(json!({ "password": DEFAULT_PASSWORD })).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let secret = g.json()["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 16);
    assert_eq!(
        g.json()["data"]["otpauth_url"],
        format!(
            "otpauth://totp/Directus:alice%40example.com?secret={secret}&period=30&digits=6&algorithm=SHA1&issuer=Directus"
        )
    );

    let now = fake.now();
    let code = FakeDirectus::totp_code_for_secret(&secret, now).unwrap();
    let enable = |body: Value| {
        send(with_json(
            client()
                .post(fake.url("/users/me/tfa/enable"))
                .bearer_auth(&access),
            &body,
        ))
    };
    let bad = enable(
        json!({ "secret": secret, "otp": if code == "000000" { "111111" } else { "000000" } }),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_message(&bad), "Invalid payload. \"otp\" is invalid.");
    assert_eq!(enable(json!({ "secret": secret })).await.status, 400);
    let ok = enable(json!({ "secret": secret, "otp": code })).await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(
        fake.user(ALICE_EMAIL).unwrap().tfa_secret.as_deref(),
        Some(secret.as_str())
    );
    let twice = generate(json!({ "password": DEFAULT_PASSWORD })).await;
    assert_eq!(
        error_message(&twice),
        "Invalid payload. TFA Secret is already set for this user."
    );

    let need = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(error_code(&need), "INVALID_OTP");
    let code = fake.totp_code(ALICE_EMAIL).unwrap();
    let with = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "otp": code }),
    )
    .await;
    assert_eq!(with.status, 200);

    let disable = send(with_json(
        client()
            .post(fake.url("/users/me/tfa/disable"))
            .bearer_auth(&access),
        &json!({ "otp": code }),
    ))
    .await;
    assert_eq!(disable.status, 204, "{}", disable.text);
    let plain = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(plain.status, 200);
}

// ----- data endpoint, faults, rate limit, clock, user agent -----------------------------

#[tokio::test]
async fn items_need_a_valid_token_and_support_refresh_replay() {
    let (clock, fake) = manual();
    let anonymous = send(client().get(fake.url("/items/articles"))).await;
    assert_eq!(anonymous.status, 403);
    assert_eq!(error_code(&anonymous), "FORBIDDEN");

    let (access, refresh) = login_json(&fake, ALICE_EMAIL).await;
    let ok = get_bearer(&fake.url("/items/articles"), &access).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["data"].as_array().unwrap().len(), 2);

    clock.advance(Duration::from_secs(900));
    let expired = get_bearer(&fake.url("/items/articles"), &access).await;
    assert_eq!(expired.status, 401);
    assert_eq!(error_code(&expired), "TOKEN_EXPIRED");
    let r = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    let fresh = r.json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get_bearer(&fake.url("/items/articles"), &fresh)
            .await
            .status,
        200
    );
    assert_eq!(fake.recorder().count(endpoints::ITEMS), 4);

    let (no_app, _) = login_json(&fake, FORBIDDEN_EMAIL).await;
    assert_eq!(
        get_bearer(&fake.url("/items/articles"), &no_app)
            .await
            .status,
        403
    );
    assert_eq!(
        get_bearer(&fake.url("/items/unknown"), &fresh).await.status,
        403
    );

    // A session cookie works as well as a bearer.
    let s = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "mode": "session" }),
    )
    .await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        cookie_value(&s, SESSION_COOKIE).unwrap()
    );
    assert_eq!(
        get_with_cookie(&fake, "/items/articles", &cookie)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn faults_are_scripted_per_endpoint_in_the_directus_envelope() {
    let (_, fake) = manual();
    let (_, refresh) = login_json(&fake, ALICE_EMAIL).await;
    fake.faults().push(endpoints::REFRESH, Fault::Status(503));
    let r = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(error_code(&r), "SERVICE_UNAVAILABLE");
    // The fault answered instead of the route: the token was not consumed.
    let ok = post_json(
        &fake.url("/auth/refresh"),
        &json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 2);

    fake.faults().push(
        endpoints::LOGIN,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let limited = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(error_code(&limited), "REQUESTS_EXCEEDED");
}

#[tokio::test]
async fn the_rate_limiter_answers_429_requests_exceeded_with_retry_after() {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeDirectus::builder()
        .clock(clock.clone())
        .rate_limit(3, Duration::from_secs(10))
        .start()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            send(client().get(fake.url("/server/ping"))).await.status,
            200
        );
    }
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(error_code(&r), "REQUESTS_EXCEEDED");
    assert_eq!(r.header("retry-after"), Some("10"));
    assert_eq!(error_message(&r), "Too many requests, retry after 10s.");
    let ext = &r.json()["errors"][0]["extensions"];
    assert_eq!(ext["limit"], 3);
    assert_eq!(ext["reset"], "2023-11-14T22:13:30.000Z");
    clock.advance(Duration::from_millis(9_400));
    let r = send(client().get(fake.url("/server/ping"))).await;
    assert_eq!(
        r.header("retry-after"),
        Some("1"),
        "rounded, as Math.round does"
    );
    assert_eq!(error_message(&r), "Too many requests, retry after 600ms.");
    clock.advance(Duration::from_millis(600));
    let r = login(
        &fake,
        json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD }),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_server_clock_ahead_expires_tokens_early() {
    let (_, fake) = manual();
    let (access, _) = login_json(&fake, ALICE_EMAIL).await;
    fake.set_clock_ahead(Duration::from_secs(900));
    let r = get_bearer(&fake.url("/users/me"), &access).await;
    assert_eq!(error_code(&r), "TOKEN_EXPIRED");
    // Tokens issued now carry the server's time.
    let (fresh, _) = login_json(&fake, ALICE_EMAIL).await;
    assert_eq!(FakeDirectus::claims(&fresh).unwrap()["iat"], T0 + 900);
}

#[tokio::test]
async fn the_user_agent_and_credentials_of_each_call_are_recorded() {
    let (_, fake) = manual();
    let (access, refresh) = login_json(&fake, ALICE_EMAIL).await;
    assert_eq!(
        fake.last_user_agent(endpoints::LOGIN).as_deref(),
        Some("testkit-tests/1.0")
    );
    let family = fake.live_sessions(ALICE_EMAIL);
    assert_eq!(family[0].user_agent.as_deref(), Some("testkit-tests/1.0"));
    let custom = reqwest::Client::builder()
        .user_agent("authmux/0.1 (test)")
        .build()
        .unwrap();
    send(with_json(
        custom.post(fake.url("/auth/refresh")),
        &json!({ "refresh_token": refresh }),
    ))
    .await;
    assert_eq!(
        fake.last_user_agent(endpoints::REFRESH).as_deref(),
        Some("authmux/0.1 (test)")
    );
    get_bearer(&fake.url("/users/me"), &access).await;
    let me = fake.recorder().last(endpoints::ME).unwrap();
    assert!(me.had_bearer() && !me.had_cookie());
    assert!(fake.auth_requests_with_bearer().is_empty());
    assert_eq!(fake.auth_requests().len(), 2);
}

#[tokio::test]
async fn issued_tokens_work_without_http_sign_in() {
    let (_, fake) = manual();
    let tokens = fake.issue_tokens(ALICE_EMAIL, SignInMode::Json).unwrap();
    assert_eq!(tokens.expires_ms, 900_000);
    assert_eq!(
        get_bearer(&fake.url("/users/me"), &tokens.access_token)
            .await
            .status,
        200
    );
    let session = fake.issue_tokens(ALICE_EMAIL, SignInMode::Session).unwrap();
    assert_eq!(session.expires_ms, 86_400_000);
    let cookie = format!("{SESSION_COOKIE}={}", session.access_token);
    assert_eq!(
        get_with_cookie(&fake, "/users/me", &cookie).await.status,
        200
    );
    let stale = fake
        .access_token_at(
            ALICE_EMAIL,
            UNIX_EPOCH + Duration::from_secs(T0 - 1000),
            Duration::from_secs(900),
        )
        .unwrap();
    assert_eq!(
        error_code(&get_bearer(&fake.url("/users/me"), &stale).await),
        "TOKEN_EXPIRED"
    );
    assert_eq!(fake.revoke_user(ALICE_EMAIL), 2);
    assert_eq!(
        get_with_cookie(&fake, "/users/me", &cookie).await.status,
        401
    );
}

#[test]
fn starts_and_stops_without_a_runtime() {
    let fake = FakeDirectus::start().unwrap();
    let url = fake.base_url().clone();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    let port = fake.port();
    drop(fake);
    // The port is free again once the handle is dropped.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[tokio::test]
async fn without_an_sso_licence_providers_are_hidden_and_unreachable() {
    let fake = FakeDirectus::builder()
        .provider(AuthProvider::oauth2("github", ALICE_EMAIL))
        .configure(|s| s.sso_licensed = false)
        .start()
        .unwrap();
    let list = send(client().get(fake.url("/auth"))).await;
    assert_eq!(list.json(), json!({ "data": [], "disableDefault": false }));
    let start = send(client().get(fake.url("/auth/login/github"))).await;
    assert_eq!(start.status, 404);
    assert_eq!(error_message(&start), "Route / doesn't exist.");
    let callback = send(client().get(fake.url("/auth/login/github/callback"))).await;
    assert_eq!(error_message(&callback), "Route /callback doesn't exist.");
}

#[tokio::test]
async fn a_user_without_a_role_signs_in_but_reads_only_its_id() {
    let (_, fake) = manual();
    fake.add_user(DirectusUser::new("norole@example.com", DEFAULT_PASSWORD).without_role());
    let (access, _) = login_json(&fake, "norole@example.com").await;
    let claims = FakeDirectus::claims(&access).unwrap();
    assert_eq!(claims["role"], Value::Null);
    assert_eq!(claims["app_access"], false);
    let me = get_bearer(&fake.url("/users/me"), &access).await;
    let id = fake.user("norole@example.com").unwrap().user.id;
    assert_eq!(me.json(), json!({ "data": { "id": id } }));
    assert_eq!(
        get_bearer(&fake.url("/items/articles"), &access)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn last_access_is_set_at_sign_in_in_sqlite_format() {
    let (clock, fake) = manual();
    clock.advance(Duration::from_millis(1_500));
    let (access, _) = login_json(&fake, ALICE_EMAIL).await;
    let me = get_bearer(&fake.url("/users/me?fields=last_access"), &access).await;
    assert_eq!(me.json()["data"]["last_access"], "2023-11-14T22:13:21");
}

#[tokio::test]
async fn the_opt_in_concurrent_refresh_window_hands_out_a_dead_token() {
    let (clock, fake) = manual();
    fake.update_settings(|s| s.concurrent_refresh_window = Duration::from_millis(500));
    let (_, r1) = login_json(&fake, ALICE_EMAIL).await;
    let first = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    let second = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    assert_eq!((first.status, second.status), (200, 200));
    let token = |r: &Resp| {
        r.json()["data"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (token(&first), token(&second));
    assert_ne!(a, b);
    let access = second.json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get_bearer(&fake.url("/users/me"), &access).await.status,
        200
    );
    let dead = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": b })).await;
    assert_eq!(error_code(&dead), "INVALID_CREDENTIALS");
    let alive = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": a })).await;
    assert_eq!(alive.status, 200);
    // Past the window the old token is refused as usual.
    clock.advance(Duration::from_secs(1));
    let late = post_json(&fake.url("/auth/refresh"), &json!({ "refresh_token": r1 })).await;
    assert_eq!(error_code(&late), "INVALID_CREDENTIALS");
}
