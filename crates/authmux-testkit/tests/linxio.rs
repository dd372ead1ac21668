//! `FakeLinxio` over real HTTP with a plain client: happy paths, quirks, faults.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use authmux_testkit::jwt::decode_unverified;
use authmux_testkit::linxio::{
    ExpiryStyle, FakeLinxio, LogoutStyle, OtpFlag, RefreshTokenPolicy, endpoints,
};
use authmux_testkit::users::{
    ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL, OTP_CODE, OTP_EMAIL, SUSPENDED_EMAIL, User,
};
use authmux_testkit::{Fault, ManualClock};
use common::{Resp, client, get_bearer, post_json, send, with_json};
use serde_json::json;

const T0: u64 = 1_700_000_000;

async fn login(fake: &FakeLinxio, email: &str, password: &str) -> Resp {
    post_json(
        &fake.url("/login"),
        &json!({ "email": email, "password": password }),
    )
    .await
}

async fn login_alice(fake: &FakeLinxio) -> (String, String) {
    let r = login(fake, ALICE_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    (
        j["token"].as_str().unwrap().to_owned(),
        j["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(fake: &FakeLinxio, token: &str) -> Resp {
    post_json(
        &fake.url("/token/refresh"),
        &json!({ "refreshToken": token }),
    )
    .await
}

fn manual() -> (ManualClock, FakeLinxio) {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder().clock(clock.clone()).start().unwrap();
    (clock, fake)
}

#[tokio::test]
async fn login_returns_top_level_tokens_with_team_fields_and_iso_expiry() {
    let (_, fake) = manual();
    let r = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert!(j.get("data").is_none(), "no data wrapper on the wire");
    assert_eq!(j["teamType"], "client");
    assert_eq!(j["roleId"], 3);
    assert_eq!(j["refreshToken"].as_str().unwrap().len(), 48);
    // 15 minutes after T0 (2023-11-14T22:13:20Z).
    assert_eq!(j["expireAt"], "2023-11-14T22:28:20.000Z");
    let claims = decode_unverified(j["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.iat, T0);
    assert_eq!(claims.exp, Some(T0 + 900));
    assert_eq!(claims.sub, "1");
    assert!(!claims.jti.is_empty());
    assert_eq!(claims.extra["email"], ALICE_EMAIL);
    assert!(
        fake.jwt_keys()
            .verify(j["token"].as_str().unwrap(), fake.now())
            .is_ok()
    );
}

#[tokio::test]
async fn login_accepts_domain_and_rejects_bad_input() {
    let fake = FakeLinxio::start().unwrap();
    let r = post_json(
        &fake.url("/login"),
        &json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD, "domain": "acme" }),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_json(&fake.url("/login"), &json!({ "email": ALICE_EMAIL })).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({ "message": "password is required", "error": "validation_failed" })
    );
    let r = send(client().post(fake.url("/login")).body("not json")).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("validation_failed"))
    );
    let r = post_json(&fake.url("/login"), &json!({ "email": 5, "password": "x" })).await;
    assert_eq!(r.json()["message"], "email must be a string");
}

#[tokio::test]
async fn wrong_credentials_forbidden_and_suspended_users() {
    let fake = FakeLinxio::start().unwrap();
    let r = login(&fake, ALICE_EMAIL, "wrong").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_credentials");
    assert_eq!(
        login(&fake, "nobody@example.com", DEFAULT_PASSWORD)
            .await
            .status,
        401
    );
    let r = login(&fake, FORBIDDEN_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (403, json!("forbidden"))
    );
    let r = login(&fake, SUSPENDED_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (403, json!("user_suspended"))
    );
    // A forbidden user with a wrong password learns nothing more than anyone else.
    assert_eq!(login(&fake, FORBIDDEN_EMAIL, "wrong").await.status, 401);
}

#[tokio::test]
async fn otp_user_gets_flag_without_token_then_verifies() {
    let (clock, fake) = manual();
    let r = login(&fake, OTP_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "otp_required": true }));
    let otp_url = fake.url("/login/otp");
    let r = post_json(&otp_url, &json!({ "email": OTP_EMAIL, "code": "000000" })).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_otp"))
    );
    let r = post_json(&otp_url, &json!({ "email": OTP_EMAIL })).await;
    assert_eq!(r.status, 400);
    assert_eq!(fake.otp_code(OTP_EMAIL).as_deref(), Some(OTP_CODE));
    let r = post_json(&otp_url, &json!({ "email": OTP_EMAIL, "code": OTP_CODE })).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert!(j["token"].is_string() && j["refreshToken"].is_string() && j["expireAt"].is_string());
    assert!(
        j.get("teamType").is_none(),
        "the OTP answer carries only token fields"
    );
    // The challenge is used up, and a new one expires after five minutes.
    let r = post_json(&otp_url, &json!({ "email": OTP_EMAIL, "code": OTP_CODE })).await;
    assert_eq!(r.json()["error"], "otp_not_requested");
    login(&fake, OTP_EMAIL, DEFAULT_PASSWORD).await;
    clock.advance(Duration::from_secs(301));
    let r = post_json(&otp_url, &json!({ "email": OTP_EMAIL, "code": OTP_CODE })).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("otp_not_requested"))
    );
}

#[tokio::test]
async fn otp_flag_spelling_is_configurable() {
    let fake = FakeLinxio::builder()
        .otp_flag(OtpFlag::Camel)
        .start()
        .unwrap();
    let r = login(&fake, OTP_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(r.json(), json!({ "otpRequired": true }));
    fake.update_settings(|s| s.otp_flag = OtpFlag::Snake);
    assert_eq!(
        login(&fake, OTP_EMAIL, DEFAULT_PASSWORD).await.json(),
        json!({ "otp_required": true })
    );
}

#[tokio::test]
async fn refresh_rotates_and_retires_the_old_token() {
    let fake = FakeLinxio::start().unwrap();
    let (_, rt1) = login_alice(&fake).await;
    let r = refresh(&fake, &rt1).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    let rt2 = j["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert!(j["expireAt"].is_string());
    let r = refresh(&fake, &rt1).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_refresh_token"))
    );
    // Without reuse detection the family survives: the new token works.
    assert_eq!(refresh(&fake, &rt2).await.status, 200);
    assert_eq!(
        fake.recorder().refresh_tokens(),
        vec![rt1.clone(), rt1, rt2]
    );
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 3);
    assert_eq!(refresh(&fake, "made-up").await.status, 401);
    assert_eq!(
        post_json(&fake.url("/token/refresh"), &json!({}))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn refresh_can_omit_or_echo_the_refresh_token() {
    let fake = FakeLinxio::builder()
        .refresh_token(RefreshTokenPolicy::Omit)
        .start()
        .unwrap();
    let (_, rt) = login_alice(&fake).await;
    for _ in 0..2 {
        let r = refresh(&fake, &rt).await;
        assert_eq!(r.status, 200);
        assert!(r.json().get("refreshToken").is_none());
    }
    fake.update_settings(|s| s.refresh_token = RefreshTokenPolicy::Echo);
    let r = refresh(&fake, &rt).await;
    assert_eq!(r.json()["refreshToken"], rt.as_str());
}

#[tokio::test]
async fn reuse_detection_revokes_the_whole_family() {
    let fake = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let (access1, rt1) = login_alice(&fake).await;
    let (other_access, _) = login_alice(&fake).await;
    let j = refresh(&fake, &rt1).await.json();
    let access2 = j["token"].as_str().unwrap().to_owned();
    let rt2 = j["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(get_bearer(&fake.url("/me"), &access2).await.status, 200);
    // Replaying the retired token: refused, and every token of that sign-in dies.
    let r = refresh(&fake, &rt1).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["message"].as_str().unwrap().contains("reuse"));
    assert_eq!(refresh(&fake, &rt2).await.status, 401);
    for token in [&access1, &access2] {
        let r = get_bearer(&fake.url("/me"), token).await;
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (401, json!("invalid_token"))
        );
    }
    // Another sign-in of the same user is untouched.
    assert_eq!(
        get_bearer(&fake.url("/me"), &other_access).await.status,
        200
    );
}

#[tokio::test]
async fn expiry_styles_change_expire_at_and_exp() {
    let (clock, fake) = manual();
    fake.update_settings(|s| s.expiry = ExpiryStyle::ExpOnly);
    let j = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await.json();
    assert!(j.get("expireAt").is_none());
    assert_eq!(
        decode_unverified(j["token"].as_str().unwrap()).unwrap().exp,
        Some(T0 + 900)
    );
    let j = refresh(&fake, j["refreshToken"].as_str().unwrap())
        .await
        .json();
    assert!(j.get("expireAt").is_none());

    fake.update_settings(|s| s.expiry = ExpiryStyle::NoExpiry);
    let j = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await.json();
    assert!(j.get("expireAt").is_none());
    let token = j["token"].as_str().unwrap();
    assert_eq!(decode_unverified(token).unwrap().exp, None);
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    assert_eq!(get_bearer(&fake.url("/me"), token).await.status, 200);
}

#[tokio::test]
async fn access_token_expires_on_the_injected_clock_and_refresh_recovers() {
    let (clock, fake) = manual();
    fake.update_settings(|s| s.access_lifetime = Duration::from_secs(60));
    let (access, rt) = login_alice(&fake).await;
    clock.advance(Duration::from_secs(59));
    assert_eq!(get_bearer(&fake.url("/me"), &access).await.status, 200);
    clock.advance(Duration::from_secs(1));
    let r = get_bearer(&fake.url("/me"), &access).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("token_expired"))
    );
    let fresh = refresh(&fake, &rt).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get_bearer(&fake.url("/me"), &fresh).await.status, 200);
}

#[tokio::test]
async fn refresh_token_lifetime_is_enforced() {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder()
        .clock(clock.clone())
        .refresh_lifetime(Some(Duration::from_secs(3600)))
        .start()
        .unwrap();
    let (_, rt) = login_alice(&fake).await;
    clock.advance(Duration::from_secs(3600));
    let r = refresh(&fake, &rt).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("refresh_token_expired"))
    );
}

#[tokio::test]
async fn server_clock_offset_shifts_timestamps_and_expiry() {
    let (_, fake) = manual();
    fake.set_clock_ahead(Duration::from_secs(600));
    let j = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await.json();
    let claims = decode_unverified(j["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.iat, T0 + 600);
    assert_eq!(j["expireAt"], "2023-11-14T22:38:20.000Z");
    // A token the client thinks is fresh is already expired on a server 15 minutes ahead.
    fake.set_clock_offset_millis(0);
    let (access, _) = login_alice(&fake).await;
    fake.set_clock_ahead(Duration::from_secs(900));
    assert_eq!(
        get_bearer(&fake.url("/me"), &access).await.json()["error"],
        "token_expired"
    );
    fake.set_clock_behind(Duration::from_secs(60));
    assert_eq!(get_bearer(&fake.url("/me"), &access).await.status, 200);
}

#[tokio::test]
async fn me_projects_with_bracketed_fields() {
    let fake = FakeLinxio::start().unwrap();
    let (access, _) = login_alice(&fake).await;
    let full = get_bearer(&fake.url("/me"), &access).await.json();
    assert_eq!(full["id"], 1);
    assert_eq!(full["email"], ALICE_EMAIL);
    assert_eq!(full["fullName"], "Alice Example");
    assert_eq!(full["teamType"], "client");
    assert_eq!(full["permissions"], json!(["vehicle.view", "vehicle.edit"]));
    assert_eq!(full["team"]["type"], "client");
    let r = get_bearer(
        &fake.url("/me?fields[]=id&fields[]=email&fields[]=nonsense"),
        &access,
    )
    .await;
    assert_eq!(r.json(), json!({ "id": 1, "email": ALICE_EMAIL }));
    let r = get_bearer(&fake.url("/me?fields%5B%5D=fullName"), &access).await;
    assert_eq!(r.json(), json!({ "fullName": "Alice Example" }));
    // Without brackets it is not a projection.
    assert_eq!(
        get_bearer(&fake.url("/me?fields=id"), &access).await.json(),
        full
    );
}

#[tokio::test]
async fn protected_endpoints_need_a_valid_bearer() {
    let fake = FakeLinxio::start().unwrap();
    let r = send(client().get(fake.url("/me"))).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("missing_token"))
    );
    let r = get_bearer(&fake.url("/api/vehicles"), "garbage").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_token"))
    );
    let (access, _) = login_alice(&fake).await;
    let r = get_bearer(&fake.url("/api/vehicles"), &access).await;
    assert_eq!(r.json()["total"], 2);
    let r = send(with_json(
        client()
            .post(fake.url("/api/vehicles"))
            .bearer_auth(&access),
        &json!({ "name": "Bus" }),
    ))
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), json!({ "id": 3, "name": "Bus" }));
    assert!(
        fake.recorder()
            .last(endpoints::VEHICLES)
            .unwrap()
            .had_bearer()
    );
}

#[tokio::test]
async fn logout_is_204_and_kills_the_session() {
    let fake = FakeLinxio::start().unwrap();
    let (access, rt) = login_alice(&fake).await;
    let r = send(client().post(fake.url("/logout")).bearer_auth(&access)).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert_eq!(get_bearer(&fake.url("/me"), &access).await.status, 401);
    assert_eq!(refresh(&fake, &rt).await.status, 401);
    // With an empty JSON object and the JSON style.
    fake.update_settings(|s| s.logout = LogoutStyle::Json);
    let (access, _) = login_alice(&fake).await;
    let r = send(with_json(
        client().post(fake.url("/logout")).bearer_auth(&access),
        &json!({}),
    ))
    .await;
    assert_eq!((r.status, r.json()), (200, json!({ "success": true })));
    assert_eq!(send(client().post(fake.url("/logout"))).await.status, 401);
}

#[tokio::test]
async fn faults_render_the_linxio_envelope() {
    let fake = FakeLinxio::start().unwrap();
    fake.faults().push(endpoints::LOGIN, Fault::Status(503));
    fake.faults().push(
        endpoints::LOGIN,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let r = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        json!({ "message": "Service Unavailable", "error": "service_unavailable" })
    );
    let r = login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("30")));
    assert_eq!(r.json()["error"], "too_many_requests");
    assert_eq!(
        login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await.status,
        200
    );
    assert_eq!(fake.recorder().count(endpoints::LOGIN), 3);
    let r = send(client().get(fake.url("/nowhere"))).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );
}

#[tokio::test]
async fn records_user_agents_and_absent_bearers_on_auth_calls() {
    let fake = FakeLinxio::start().unwrap();
    let body = json!({ "email": ALICE_EMAIL, "password": DEFAULT_PASSWORD });
    send(with_json(
        client()
            .post(fake.url("/login"))
            .header("user-agent", "authmux/0.1.0"),
        &body,
    ))
    .await;
    login(&fake, ALICE_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(
        fake.recorder().user_agents(endpoints::LOGIN),
        vec![
            Some("authmux/0.1.0".to_owned()),
            Some("testkit-tests/1.0".to_owned())
        ]
    );
    let last = fake.recorder().last(endpoints::LOGIN).unwrap();
    assert!(!last.had_bearer() && !last.had_cookie());
    assert_eq!(last.json().unwrap(), body);
}

#[tokio::test]
async fn hydration_helpers_and_extra_users() {
    let fake = FakeLinxio::builder()
        .user(
            User::new("bob@example.com", "hunter22hunter")
                .name("Bob")
                .team_type("reseller"),
        )
        .start()
        .unwrap();
    let r = login(&fake, "bob@example.com", "hunter22hunter").await;
    assert_eq!(r.json()["teamType"], "reseller");
    let tokens = fake.issue_tokens(ALICE_EMAIL).unwrap();
    assert!(tokens.expires_at.unwrap() > UNIX_EPOCH);
    assert_eq!(
        get_bearer(&fake.url("/me"), &tokens.token).await.status,
        200
    );
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 200);
    assert_eq!(fake.revoke_user(ALICE_EMAIL), 1);
    assert_eq!(
        get_bearer(&fake.url("/me"), &tokens.token).await.status,
        401
    );
    assert!(fake.issue_tokens("nobody@example.com").is_none());
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_succeed_once_under_rotation() {
    let fake = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let (_, rt) = login_alice(&fake).await;
    let url = fake.url("/token/refresh");
    let calls = (0..8).map(|_| {
        let (url, rt) = (url.clone(), rt.clone());
        async move { post_json(&url, &json!({ "refreshToken": rt })).await }
    });
    let statuses: Vec<u16> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        7,
        "{statuses:?}"
    );
    // The replays revoked the family: even the winner's new token is dead.
    assert_eq!(fake.recorder().refresh_tokens(), vec![rt; 8]);
    assert!(fake.families().all().iter().all(|f| f.revoked));
}

/// Runs futures concurrently on the test runtime (no extra dependency).
async fn join_all<F: std::future::Future<Output = Resp> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Resp> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
