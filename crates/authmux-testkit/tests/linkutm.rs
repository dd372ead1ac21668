//! `FakeLinkUtm` over real HTTP with a plain client: every endpoint, errors, limits.

mod common;

use std::time::Duration;

use authmux_testkit::jwt::decode_unverified;
use authmux_testkit::linkutm::{FakeLinkUtm, Mail, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL};
use authmux_testkit::{Fault, ManualClock};
use common::{Resp, client, get_bearer, post_json, send, with_json};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000;

fn url(fake: &FakeLinkUtm, path: &str) -> String {
    fake.url(&format!("/api/v1/auth/{path}"))
}

async fn post(fake: &FakeLinkUtm, path: &str, body: &Value) -> Resp {
    post_json(&url(fake, path), body).await
}

async fn login_as(fake: &FakeLinkUtm, email: &str, password: &str, ua: &str) -> Resp {
    let body = json!({ "email": email, "password": password });
    send(with_json(
        client().post(url(fake, "login")).header("user-agent", ua),
        &body,
    ))
    .await
}

async fn alice_token(fake: &FakeLinkUtm, ua: &str) -> String {
    let r = login_as(fake, ALICE_EMAIL, DEFAULT_PASSWORD, ua).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["token"].as_str().unwrap().to_owned()
}

fn manual() -> (ManualClock, FakeLinkUtm) {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinkUtm::builder().clock(clock.clone()).start().unwrap();
    (clock, fake)
}

#[tokio::test]
async fn signup_sends_an_otp_then_verify_creates_the_account() {
    let fake = FakeLinkUtm::start().unwrap();
    let body = json!({ "email": "jane@example.com", "name": "Jane", "password": "longenough" });
    let r = post(&fake, "send-otp", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json()["message"].is_string());
    let code = fake.last_otp("jane@example.com").unwrap();
    assert_eq!(code.len(), 6);
    assert!(
        fake.users().by_email("jane@example.com").is_none(),
        "not created before verify"
    );

    let r = post(
        &fake,
        "verify-otp",
        &json!({ "email": "jane@example.com", "otp": code }),
    )
    .await;
    assert_eq!(r.status, 201);
    let j = r.json();
    assert_eq!(j["user"]["name"], "Jane");
    assert_eq!(j["user"]["email"], "jane@example.com");
    let id = j["user"]["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    let token = j["token"].as_str().unwrap();
    assert_eq!(decode_unverified(token).unwrap().sub, id);
    let r = get_bearer(&url(&fake, "profile"), token).await;
    assert_eq!(
        r.json(),
        json!({ "id": id, "name": "Jane", "email": "jane@example.com" })
    );
    // The new password signs in; the email is now taken.
    assert_eq!(
        login_as(&fake, "jane@example.com", "longenough", "x")
            .await
            .status,
        200
    );
    let r = post(&fake, "send-otp", &body).await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 409, "message": "Email already registered", "error": "Conflict" })
    );
}

#[tokio::test]
async fn wrong_resent_and_expired_codes() {
    let (clock, fake) = manual();
    let email = "kim@example.com";
    post(
        &fake,
        "send-otp",
        &json!({ "email": email, "name": "Kim", "password": "password1" }),
    )
    .await;
    let first = fake.last_otp(email).unwrap();
    let wrong = if first == "999999" {
        "111111"
    } else {
        "999999"
    };
    let r = post(
        &fake,
        "verify-otp",
        &json!({ "email": email, "otp": wrong }),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 400, "message": "Invalid OTP", "error": "Bad Request" })
    );
    // Resend replaces the code.
    let r = post(&fake, "resend-otp", &json!({ "email": email })).await;
    assert_eq!(r.status, 201);
    let second = fake.last_otp(email).unwrap();
    let mails = fake
        .mailbox()
        .into_iter()
        .filter(|m| matches!(m, Mail::SignupOtp { .. }))
        .count();
    assert_eq!(mails, 2);
    if second != first {
        let r = post(
            &fake,
            "verify-otp",
            &json!({ "email": email, "otp": first }),
        )
        .await;
        assert_eq!(r.status, 400);
    }
    // Codes expire after ten minutes on the server clock.
    clock.advance(Duration::from_secs(600));
    let r = post(
        &fake,
        "verify-otp",
        &json!({ "email": email, "otp": second }),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, json!("OTP has expired"))
    );
    let r = post(
        &fake,
        "resend-otp",
        &json!({ "email": "never@example.com" }),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(&fake, "resend-otp", &json!({ "email": ALICE_EMAIL })).await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn validation_errors_are_class_validator_arrays() {
    let fake = FakeLinkUtm::start().unwrap();
    let r = post(
        &fake,
        "send-otp",
        &json!({ "email": "a@b.co", "name": "A", "password": "short" }),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({
            "statusCode": 400,
            "message": ["password must be longer than or equal to 8 characters"],
            "error": "Bad Request",
        })
    );
    let r = post(&fake, "send-otp", &json!({})).await;
    let messages: Vec<String> = serde_json::from_value(r.json()["message"].clone()).unwrap();
    for expected in [
        "email must be an email",
        "name should not be empty",
        "password must be longer than or equal to 8 characters",
        "password must be a string",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected} missing from {messages:?}"
        );
    }
    let r = post(
        &fake,
        "verify-otp",
        &json!({ "email": "a@b.co", "otp": "12345" }),
    )
    .await;
    assert_eq!(
        r.json()["message"],
        json!(["otp must be longer than or equal to 6 characters"])
    );
    let r = post(
        &fake,
        "login",
        &json!({ "email": "not-an-email", "password": "x" }),
    )
    .await;
    assert_eq!(r.json()["message"], json!(["email must be an email"]));
    let r = send(client().post(url(&fake, "login")).body("{nope")).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].is_array());
    // Nothing was created or mailed by the failed calls.
    assert!(fake.mailbox().is_empty());
}

#[tokio::test]
async fn login_shape_wrong_credentials_and_disabled_users() {
    let fake = FakeLinkUtm::start().unwrap();
    let r = login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "ua").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["user"]["email"], ALICE_EMAIL);
    assert_eq!(j["user"]["name"], "Alice Example");
    assert!(j.get("refreshToken").is_none() && j.get("refresh_token").is_none());
    let r = login_as(&fake, ALICE_EMAIL, "wrong password", "ua").await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 401, "message": "Invalid credentials", "error": "Unauthorized" })
    );
    let r = login_as(&fake, FORBIDDEN_EMAIL, DEFAULT_PASSWORD, "ua").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (403, json!("Forbidden"))
    );
}

#[tokio::test]
async fn jwt_claims_expiry_and_clock_offset() {
    let (clock, fake) = manual();
    fake.update_settings(|s| s.access_lifetime = Duration::from_secs(3600));
    let token = alice_token(&fake, "ua").await;
    let claims = decode_unverified(&token).unwrap();
    assert_eq!((claims.iat, claims.exp), (T0, Some(T0 + 3600)));
    assert!(claims.extra["sid"].is_string());
    assert_eq!(claims.extra["email"], ALICE_EMAIL);
    clock.advance(Duration::from_secs(3599));
    assert_eq!(get_bearer(&url(&fake, "profile"), &token).await.status, 200);
    fake.set_clock_ahead(Duration::from_secs(1));
    let r = get_bearer(&url(&fake, "profile"), &token).await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 401, "message": "Token expired", "error": "Unauthorized" })
    );
    fake.set_clock_offset_millis(0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(get_bearer(&url(&fake, "profile"), &token).await.status, 401);
    assert_eq!(
        get_bearer(&url(&fake, "profile"), "junk").await.json()["message"],
        "Invalid token"
    );
    assert_eq!(send(client().get(url(&fake, "profile"))).await.status, 401);
}

#[tokio::test]
async fn forgot_and_reset_password_through_the_mailbox() {
    let (clock, fake) = manual();
    let old_session = alice_token(&fake, "ua").await;
    let r = post(
        &fake,
        "forgot-password",
        &json!({ "email": "nobody@example.com" }),
    )
    .await;
    assert_eq!(r.status, 201, "unknown emails look the same");
    assert!(fake.mailbox().is_empty());
    let r = post(&fake, "forgot-password", &json!({ "email": ALICE_EMAIL })).await;
    assert_eq!(r.status, 201);
    let token = fake.last_reset_token(ALICE_EMAIL).unwrap();
    assert!(
        matches!(&fake.mailbox()[0], Mail::PasswordReset { link, .. } if link.ends_with(&token))
    );

    let r = post(
        &fake,
        "reset-password",
        &json!({ "token": token, "newPassword": "short" }),
    )
    .await;
    assert_eq!(
        r.json()["message"],
        json!(["newPassword must be longer than or equal to 8 characters"])
    );
    let r = post(
        &fake,
        "reset-password",
        &json!({ "token": token, "newPassword": "brand new pass" }),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "ua")
            .await
            .status,
        401
    );
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, "brand new pass", "ua")
            .await
            .status,
        200
    );
    // A reset signs the user out everywhere, and the token works once.
    assert_eq!(
        get_bearer(&url(&fake, "profile"), &old_session)
            .await
            .status,
        401
    );
    let r = post(
        &fake,
        "reset-password",
        &json!({ "token": token, "newPassword": "another pass" }),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (401, json!("Invalid or expired reset token"))
    );
    // Reset tokens expire after an hour.
    post(&fake, "forgot-password", &json!({ "email": ALICE_EMAIL })).await;
    let token = fake.last_reset_token(ALICE_EMAIL).unwrap();
    clock.advance(Duration::from_secs(3600));
    let r = post(
        &fake,
        "reset-password",
        &json!({ "token": token, "newPassword": "another pass" }),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn change_password_needs_the_current_one() {
    let fake = FakeLinkUtm::start().unwrap();
    let token = alice_token(&fake, "ua").await;
    let change = |body: Value, bearer: Option<&str>| {
        let req = client().post(url(&fake, "change-password"));
        let req = match bearer {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        send(with_json(req, &body))
    };
    let body = json!({ "currentPassword": DEFAULT_PASSWORD, "newPassword": "fresh password" });
    assert_eq!(change(body.clone(), None).await.status, 401);
    let r = change(
        json!({ "currentPassword": "nope", "newPassword": "fresh password" }),
        Some(&token),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (401, json!("Current password is incorrect"))
    );
    let r = change(
        json!({ "currentPassword": DEFAULT_PASSWORD, "newPassword": "1234567" }),
        Some(&token),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(change(body, Some(&token)).await.status, 201);
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, "fresh password", "ua")
            .await
            .status,
        200
    );
    assert_eq!(
        get_bearer(&url(&fake, "profile"), &token).await.status,
        200,
        "session kept"
    );
}

#[tokio::test]
async fn sessions_record_user_agents_and_revoke_one_or_all() {
    let fake = FakeLinkUtm::start().unwrap();
    let laptop = alice_token(&fake, "authmux/0.1.0 (laptop)").await;
    let phone = alice_token(&fake, "authmux/0.1.0 (phone)").await;
    let r = get_bearer(&url(&fake, "sessions"), &laptop).await;
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["userAgent"], "authmux/0.1.0 (laptop)");
    assert_eq!(list[1]["userAgent"], "authmux/0.1.0 (phone)");
    assert_eq!(
        (list[0]["current"].clone(), list[1]["current"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(list[0]["ipAddress"], "127.0.0.1");
    assert!(list[0]["createdAt"].as_str().unwrap().ends_with('Z'));
    let phone_id = list[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        decode_unverified(&phone).unwrap().extra["sid"],
        phone_id.as_str()
    );
    assert_eq!(fake.sessions_of(ALICE_EMAIL).len(), 2);

    // Another user cannot revoke Alice's session; unknown ids are 404.
    let other = fake.issue_token(FORBIDDEN_EMAIL, None).unwrap();
    let del = |id: &str, token: &str| {
        send(
            client()
                .delete(url(&fake, &format!("sessions/{id}")))
                .bearer_auth(token),
        )
    };
    assert_eq!(del(&phone_id, &other).await.status, 404);
    let r = del("no-such-session", &laptop).await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 404, "message": "Session not found", "error": "Not Found" })
    );
    assert_eq!(del(&phone_id, &laptop).await.status, 200);
    let r = get_bearer(&url(&fake, "profile"), &phone).await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (401, json!("Session has been revoked"))
    );
    assert_eq!(
        get_bearer(&url(&fake, "sessions"), &laptop)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let tablet = alice_token(&fake, "tablet").await;
    let r = send(client().delete(url(&fake, "sessions")).bearer_auth(&laptop)).await;
    assert_eq!(
        r.json(),
        json!({ "message": "All sessions revoked", "count": 2 })
    );
    for t in [&laptop, &tablet] {
        assert_eq!(get_bearer(&url(&fake, "profile"), t).await.status, 401);
    }
    assert_eq!(
        get_bearer(&url(&fake, "profile"), &other).await.status,
        200,
        "other users untouched"
    );
    assert_eq!(fake.recorder().count(endpoints::REVOKE_SESSION), 3);
    assert_eq!(fake.recorder().count(endpoints::REVOKE_ALL_SESSIONS), 1);
}

#[tokio::test]
async fn last_active_moves_with_use() {
    let (clock, fake) = manual();
    let token = alice_token(&fake, "ua").await;
    clock.advance(Duration::from_secs(90));
    let list = get_bearer(&url(&fake, "sessions"), &token).await.json();
    assert_eq!(list[0]["createdAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(list[0]["lastActiveAt"], "2023-11-14T22:14:50.000Z");
}

#[tokio::test]
async fn google_redirect_pair() {
    let fake = FakeLinkUtm::builder()
        .frontend_url("https://app.example.test/")
        .start()
        .unwrap();
    let r = send(client().get(fake.google_start_url())).await;
    assert_eq!(r.status, 302);
    let location = url::Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("accounts.google.test"));
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    let redirect_uri = &pairs.iter().find(|(k, _)| k == "redirect_uri").unwrap().1;
    assert_eq!(redirect_uri, &url(&fake, "google/callback"));

    let code = fake.google_authorization_code("gina@example.com", "Gina");
    let r = send(client().get(format!("{}?code={code}", url(&fake, "google/callback")))).await;
    assert_eq!(r.status, 302);
    let landed = url::Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(landed.host_str(), Some("app.example.test"));
    assert_eq!(landed.path(), "/auth/google/callback");
    let token = landed
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let r = get_bearer(&url(&fake, "profile"), &token).await;
    assert_eq!(
        (r.json()["name"].clone(), r.json()["email"].clone()),
        (json!("Gina"), json!("gina@example.com"))
    );
    assert_eq!(
        fake.sessions_of("gina@example.com")[0]
            .family
            .user_agent
            .as_deref(),
        Some("testkit-tests/1.0")
    );
    // Codes are single-use; a missing one fails.
    let r = send(client().get(format!("{}?code={code}", url(&fake, "google/callback")))).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        send(client().get(url(&fake, "google/callback")))
            .await
            .status,
        401
    );

    let landed = fake
        .simulate_google_login("gina@example.com", "Gina")
        .unwrap();
    let token = landed
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(get_bearer(&url(&fake, "profile"), &token).await.status, 200);
    assert_eq!(fake.sessions_of("gina@example.com").len(), 2);
}

#[tokio::test]
async fn links_require_the_workspace_header() {
    let fake = FakeLinkUtm::start().unwrap();
    let token = alice_token(&fake, "ua").await;
    let links = fake.url("/api/v1/links");
    assert_eq!(
        send(client().get(&links).header("x-workspace-id", "acme"))
            .await
            .status,
        401
    );
    let r = get_bearer(&links, &token).await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 400, "message": "x-workspace-id header is required", "error": "Bad Request" })
    );
    let r = send(
        client()
            .get(&links)
            .bearer_auth(&token)
            .header("x-workspace-id", "acme"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["workspaceId"], "acme");
    assert_eq!(
        fake.recorder()
            .header_values(endpoints::LINKS, "x-workspace-id"),
        vec![Some("acme".to_owned()), None, Some("acme".to_owned())]
    );
}

#[tokio::test]
async fn default_rate_limit_is_100_per_minute_per_ip() {
    let (clock, fake) = manual();
    let profile = url(&fake, "profile");
    let c = client();
    for i in 0..100 {
        let status = c.get(&profile).send().await.unwrap().status().as_u16();
        assert_eq!(status, 401, "request {i}");
    }
    let r = send(c.get(&profile)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(r.json()["statusCode"], 429);
    assert_eq!(r.json()["error"], "Too Many Requests");
    // Login is limited too, and the window resets after a minute.
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "ua")
            .await
            .status,
        429
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "ua")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn rate_limit_is_configurable() {
    let fake = FakeLinkUtm::builder()
        .rate_limit_per_minute(Some(2))
        .start()
        .unwrap();
    for expected in [401, 401, 429] {
        assert_eq!(
            send(client().get(url(&fake, "profile"))).await.status,
            expected
        );
    }
    let off = FakeLinkUtm::builder()
        .rate_limit_per_minute(None)
        .start()
        .unwrap();
    for _ in 0..120 {
        assert_eq!(
            client()
                .get(url(&off, "profile"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
}

#[tokio::test]
async fn faults_use_the_nest_envelope_and_auth_calls_are_recorded() {
    let fake = FakeLinkUtm::start().unwrap();
    fake.faults().push(endpoints::LOGIN, Fault::Status(500));
    let r = login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "authmux/0.1.0").await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 500, "message": "Internal Server Error", "error": "Internal Server Error" })
    );
    fake.faults().push(endpoints::LOGIN, Fault::DropConnection);
    let body = json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD });
    assert!(
        with_json(client().post(url(&fake, "login")), &body)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        login_as(&fake, ALICE_EMAIL, DEFAULT_PASSWORD, "authmux/0.1.0")
            .await
            .status,
        200
    );
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 3);
    let last = fake.recorder().last(endpoints::LOGIN).unwrap();
    assert_eq!(last.user_agent(), Some("authmux/0.1.0"));
    assert!(!last.had_bearer() && !last.had_cookie());
    let r = send(client().get(fake.url("/api/v1/nope"))).await;
    assert_eq!(
        r.json(),
        json!({ "statusCode": 404, "message": "Cannot GET /api/v1/nope", "error": "Not Found" })
    );
}
