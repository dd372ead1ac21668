//! Unit and property tests of the answer decoding: odd shapes, every error mapping,
//! and "never panics, whatever the server sends".

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;

use super::*;

const NOW_SECS: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn answer(status: u16, body: impl Into<Bytes>) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn json_answer(status: u16, value: &Value) -> Response<Bytes> {
    answer(status, serde_json::to_vec(value).unwrap())
}

/// A JWT-shaped token (unsigned; only its `exp` matters here).
fn jwt(payload: &Value) -> String {
    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
    format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(payload.to_string().as_bytes())
    )
}

fn tokens_of(login_answer: LoginAnswer) -> TokenAnswer {
    match login_answer {
        LoginAnswer::Tokens(t) => t,
        LoginAnswer::OtpRequired => panic!("expected tokens, got an OTP challenge"),
    }
}

// ----- success shapes ----------------------------------------------------------

#[test]
fn login_reads_tokens_expiry_and_team_fields() {
    let body = json!({
        "token": "tok-1", "refreshToken": "ref-1",
        "expireAt": "2027-01-15T08:00:00.000Z",
        "teamType": "reseller", "roleId": 4,
        "somethingNew": {"nested": [1, 2, 3]}
    });
    let t = tokens_of(login(&json_answer(200, &body), now()).unwrap());
    assert_eq!(t.access.expose_secret(), "tok-1");
    assert_eq!(t.refresh.unwrap().expose_secret(), "ref-1");
    assert_eq!(
        t.expiry,
        Expiry::At(authmux_core::timestamp::parse("2027-01-15T08:00:00Z").unwrap())
    );
    assert_eq!(t.team_type.as_deref(), Some("reseller"));
    assert_eq!(t.role_id.as_deref(), Some("4"));
}

#[test]
fn role_id_may_be_a_string_and_team_type_may_be_odd() {
    let body = json!({"token": "t", "roleId": "r-17", "teamType": 5});
    let t = tokens_of(login(&json_answer(200, &body), now()).unwrap());
    assert_eq!(t.role_id.as_deref(), Some("r-17"));
    assert_eq!(t.team_type, None, "a non-string teamType is ignored");
    for odd in [json!(null), json!(true), json!([1]), json!({}), json!("")] {
        let body = json!({"token": "t", "roleId": odd});
        let t = tokens_of(login(&json_answer(200, &body), now()).unwrap());
        assert_eq!(t.role_id, None, "roleId {odd}");
    }
}

#[test]
fn both_spellings_of_the_otp_flag_and_truthy_variants_ask_for_otp() {
    for key in OTP_FLAGS {
        for flag in [json!(true), json!(1), json!("true"), json!("1")] {
            let body = json!({ key: flag });
            assert!(
                matches!(
                    login(&json_answer(200, &body), now()).unwrap(),
                    LoginAnswer::OtpRequired
                ),
                "{body}"
            );
        }
        // An OTP answer carrying a token anyway: the token is not usable yet.
        let body = json!({ key: true, "token": "early", "refreshToken": "early-r" });
        assert!(matches!(
            login(&json_answer(200, &body), now()).unwrap(),
            LoginAnswer::OtpRequired
        ));
        // A false flag with a token is a normal login.
        let body = json!({ key: false, "token": "t" });
        assert!(matches!(
            login(&json_answer(200, &body), now()).unwrap(),
            LoginAnswer::Tokens(_)
        ));
    }
}

#[test]
fn login_without_token_or_otp_flag_is_a_protocol_error() {
    for body in [
        json!({}),
        json!({"otp_required": false}),
        json!({"otpRequired": "no"}),
        json!({"token": null, "refreshToken": "r"}),
        json!({"token": "", "teamType": "client"}),
    ] {
        let err = login(&json_answer(200, &body), now()).unwrap_err();
        assert!(matches!(err, AuthError::Protocol { .. }), "{body}: {err:?}");
    }
}

#[test]
fn a_token_of_the_wrong_type_is_a_protocol_error_that_names_the_field_only() {
    for (body, field) in [
        (json!({"token": 12345}), "token"),
        (json!({"token": ["a"]}), "token"),
        (
            json!({"token": "ok", "refreshToken": {"v": "x"}}),
            "refreshToken",
        ),
        (json!({"token": "bad\ntoken"}), "token"),
    ] {
        let err = refresh(&json_answer(200, &body), now()).unwrap_err();
        let AuthError::Protocol { message } = &err else {
            panic!("{body}: {err:?}")
        };
        assert!(message.contains(field), "{message}");
        assert!(!message.contains("bad\ntoken"));
    }
}

#[test]
fn expiry_absent_null_or_unparseable_falls_back_to_unstated() {
    let exp = NOW_SECS + 600;
    let token = jwt(&json!({ "exp": exp }));
    for expire_at in [
        None,
        Some(json!(null)),
        Some(json!("not a date")),
        Some(json!("")),
        Some(json!("2027-01-15T08:00:00")), // no offset: ambiguous, not guessed
        Some(json!(1_800_000_600)),
        Some(json!({"at": 1})),
    ] {
        let mut body = json!({ "token": token });
        if let Some(v) = &expire_at {
            body["expireAt"] = v.clone();
        }
        let t = refresh(&json_answer(200, &body), now()).unwrap();
        assert_eq!(t.expiry, Expiry::Unstated, "expireAt {expire_at:?}");
        // ... and the session's expiry then comes from the JWT.
        let set = authmux_core::TokenSet::new(t.access, None, t.expiry, now());
        assert_eq!(set.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
    }
}

#[test]
fn expire_at_wins_over_the_jwt_exp_and_accepts_offsets() {
    let token = jwt(&json!({ "exp": NOW_SECS + 600 }));
    let body = json!({ "token": token, "expireAt": "2027-01-15T10:00:00+02:00" });
    let t = login_otp(&json_answer(200, &body), now()).unwrap();
    let set = authmux_core::TokenSet::new(t.access, t.refresh, t.expiry, now());
    assert_eq!(
        set.expires_at,
        authmux_core::timestamp::parse("2027-01-15T08:00:00Z")
    );
}

#[test]
fn refresh_may_omit_the_refresh_token() {
    let t = refresh(&json_answer(200, &json!({"token": "t2"})), now()).unwrap();
    assert!(t.refresh.is_none());
    let t = refresh(
        &json_answer(200, &json!({"token": "t2", "refreshToken": null})),
        now(),
    )
    .unwrap();
    assert!(t.refresh.is_none());
}

#[test]
fn me_takes_the_name_from_full_name_and_keeps_everything() {
    let body = json!({
        "id": 42, "email": "a@b.c", "fullName": "Ann Example", "teamType": "client",
        "permissions": ["vehicle.view", 7], "team": {"id": 142, "name": "T"}, "roleId": "3"
    });
    let user = me(&json_answer(200, &body), now()).unwrap();
    assert_eq!(user.id.as_deref(), Some("42"));
    assert_eq!(user.email.as_deref(), Some("a@b.c"));
    assert_eq!(user.name.as_deref(), Some("Ann Example"));
    assert_eq!(user.raw, body);
    // Projected answers and odd types are fine too.
    let user = me(&json_answer(200, &json!({"email": 5, "id": [1]})), now()).unwrap();
    assert_eq!((user.id, user.email, user.name), (None, None, None));
    let user = me(&json_answer(200, &json!({})), now()).unwrap();
    assert_eq!(user.raw, json!({}));
}

#[test]
fn non_object_success_bodies_are_protocol_errors() {
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"\"token\"",
        b"42",
        b"{\"token\": \"abc",
        b"<html>oops</html>",
        b"\xff\xfe",
    ] {
        for decode in [
            |r: &Response<Bytes>| login(r, now()).map(drop),
            |r: &Response<Bytes>| login_otp(r, now()).map(drop),
            |r: &Response<Bytes>| refresh(r, now()).map(drop),
            |r: &Response<Bytes>| me(r, now()).map(drop),
        ] {
            let err = decode(&answer(200, body)).unwrap_err();
            assert!(matches!(err, AuthError::Protocol { .. }), "{err:?}");
            assert!(!err.to_string().contains("abc"), "no body in errors");
        }
    }
}

#[test]
fn logout_succeeds_on_204_and_on_any_json_success() {
    for response in [
        answer(204, ""),
        json_answer(200, &json!({"success": true})),
        answer(200, "not even json"),
    ] {
        assert_eq!(logout(&response, now()).unwrap(), LogoutOutcome::Revoked);
    }
}

// ----- error mapping -------------------------------------------------------------

#[test]
fn status_401_depends_on_the_endpoint() {
    let body = json!({"message": "nope", "error": "invalid"});
    let e = |at| error_for(at, &json_answer(401, &body), now());
    assert!(matches!(e(Endpoint::Login), AuthError::InvalidCredentials));
    assert!(matches!(e(Endpoint::LoginOtp), AuthError::InvalidOtp));
    assert!(matches!(e(Endpoint::Refresh), AuthError::RefreshRejected));
    for at in [Endpoint::Me, Endpoint::Logout] {
        assert!(
            matches!(e(at), AuthError::Unauthorized { message: Some(ref m) } if m == "nope"),
            "{at:?}"
        );
    }
}

#[test]
fn the_other_statuses_map_alike_on_every_endpoint() {
    for at in Endpoint::ALL {
        let validation = error_for(
            at,
            &json_answer(
                400,
                &json!({"message": "email is required", "field": "email"}),
            ),
            now(),
        );
        assert!(
            matches!(&validation, AuthError::Validation { field: Some(f), message } if f == "email" && message == "email is required"),
            "{validation:?}"
        );
        let forbidden = error_for(
            at,
            &json_answer(403, &json!({"message": "Access denied"})),
            now(),
        );
        if at == Endpoint::Refresh {
            assert!(
                matches!(forbidden, AuthError::RefreshRejected),
                "{forbidden:?}"
            );
        } else {
            assert!(
                matches!(&forbidden, AuthError::Forbidden { message: Some(m) } if m == "Access denied"),
                "{at:?}: {forbidden:?}"
            );
        }
        let limited = Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(Bytes::new())
            .unwrap();
        assert!(matches!(
            error_for(at, &limited, now()),
            AuthError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)
        ));
        for status in [500, 502, 503, 504, 599] {
            let e = error_for(
                at,
                &json_answer(status, &json!({"message": "boom", "error": "server_error"})),
                now(),
            );
            assert!(
                matches!(&e, AuthError::Server { status: s, code: Some(c), message: Some(m), .. } if *s == status && c == "server_error" && m == "boom"),
                "{e:?}"
            );
        }
        assert!(matches!(
            error_for(at, &answer(404, "<html/>"), now()),
            AuthError::Server { status: 404, .. }
        ));
        assert!(matches!(
            error_for(at, &answer(409, ""), now()),
            AuthError::Conflict { .. }
        ));
    }
}

#[test]
fn error_bodies_are_read_leniently() {
    let read = |v: Value| ErrorBody::read(&v);
    assert_eq!(
        read(json!({"message": ["email must be an email", "password too short"]})).message,
        Some("email must be an email; password too short".into())
    );
    assert_eq!(
        read(json!({"error": {"message": "bad", "code": "E1"}})),
        ErrorBody {
            message: Some("bad".into()),
            code: Some("E1".into()),
            field: None
        }
    );
    assert_eq!(
        read(json!({"error": "invalid_credentials"})).message,
        Some("invalid_credentials".into())
    );
    assert_eq!(
        read(json!({"violations": [{"propertyPath": "email", "message": "x"}]})).field,
        Some("email".into())
    );
    assert_eq!(
        read(json!({"errors": {"password": ["too short"]}})).field,
        Some("password".into())
    );
    assert_eq!(
        read(json!({"errors": [{"field": "domain"}]})).field,
        Some("domain".into())
    );
    assert_eq!(read(json!([1, 2])), ErrorBody::default());
    assert_eq!(read(Value::Null), ErrorBody::default());
    // A 400 with an unreadable body still is a validation error.
    assert!(matches!(
        error_for(Endpoint::Login, &answer(400, "garbage"), now()),
        AuthError::Validation { field: None, .. }
    ));
}

#[test]
fn error_messages_never_carry_tokens() {
    let leaked = jwt(&json!({"sub": "1", "exp": 2_000_000_000u64}));
    let body = json!({
        "message": format!("token {leaked} is revoked"),
        "error": leaked,
        "token": "secret-token-value",
    });
    for at in Endpoint::ALL {
        for status in [400, 401, 403, 409, 429, 500, 503] {
            let e = error_for(at, &json_answer(status, &body), now());
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(&leaked), "{shown}");
            assert!(!shown.contains("secret-token-value"), "{shown}");
        }
    }
}

// ----- never panics ----------------------------------------------------------------

/// Keys the decoders look at, so that generated objects hit them with odd types.
const KEYS: &[&str] = &[
    "token",
    "refreshToken",
    "expireAt",
    "otp_required",
    "otpRequired",
    "teamType",
    "roleId",
    "id",
    "email",
    "fullName",
    "name",
    "permissions",
    "team",
    "message",
    "error",
    "code",
    "detail",
    "field",
    "property",
    "propertyPath",
    "errors",
    "violations",
];

/// Arbitrary JSON values: every leaf type (numbers of every kind, strings with any
/// characters, timestamps and JWT-ish text), nested in arrays and objects whose keys are
/// mostly the ones the decoders read.
fn json_value() -> impl Strategy<Value = Value> {
    json_tree(4, 48)
}

/// [`json_value`] with a given depth and size.
fn json_tree(depth: u32, size: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-zA-Z0-9._-]{0,40}".prop_map(Value::String),
        (0u64..4_000_000_000).prop_map(|s| Value::String(authmux_core::timestamp::format(
            UNIX_EPOCH + Duration::from_secs(s)
        ))),
        Just(Value::String(
            "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln".into()
        )),
    ];
    leaf.prop_recursive(depth, size, 6, |inner| {
        let key = prop_oneof![
            3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Objects where each known key is present (with an arbitrary value, null included)
/// or absent.
fn plausible_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec(proptest::option::of(json_tree(2, 12)), KEYS.len()).prop_map(
        |values| {
            Value::Object(
                KEYS.iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                    .collect(),
            )
        },
    )
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(200u16),
        1 => Just(204u16),
        1 => proptest::sample::select(&[201u16, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503][..]),
        1 => 100u16..1000,
    ]
}

/// Runs every decoder on one answer and checks the invariants that hold for all of
/// them: success statuses decode or fail with `Protocol` only; error statuses always
/// fail, with the mapped variant for 401/403/429/5xx; nothing panics.
fn check_all(status: u16, body: Bytes) -> Result<(), TestCaseError> {
    let response = Response::builder()
        .status(status)
        .header("retry-after", "3")
        .body(body)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let results = [
        (Endpoint::Login, login(&response, now()).map(drop)),
        (Endpoint::LoginOtp, login_otp(&response, now()).map(drop)),
        (Endpoint::Refresh, refresh(&response, now()).map(drop)),
        (Endpoint::Me, me(&response, now()).map(drop)),
        (Endpoint::Logout, logout(&response, now()).map(drop)),
    ];
    for (at, result) in results {
        if (200..300).contains(&status) {
            if let Err(e) = result {
                prop_assert!(
                    matches!(e, AuthError::Protocol { .. }),
                    "{at:?} {status}: {e:?}"
                );
            }
            continue;
        }
        let err = match result {
            Ok(()) => return Err(TestCaseError::fail(format!("{at:?} {status} succeeded"))),
            Err(e) => e,
        };
        match status {
            401 => prop_assert!(
                matches!(
                    (at, &err),
                    (Endpoint::Login, AuthError::InvalidCredentials)
                        | (Endpoint::LoginOtp, AuthError::InvalidOtp)
                        | (Endpoint::Refresh, AuthError::RefreshRejected)
                        | (
                            Endpoint::Me | Endpoint::Logout,
                            AuthError::Unauthorized { .. }
                        )
                ),
                "{at:?}: {err:?}"
            ),
            400 | 422 => prop_assert!(matches!(err, AuthError::Validation { .. }), "{:?}", err),
            403 if at == Endpoint::Refresh => {
                prop_assert!(matches!(err, AuthError::RefreshRejected), "{:?}", err);
            }
            403 => prop_assert!(matches!(err, AuthError::Forbidden { .. }), "{:?}", err),
            429 => prop_assert!(
                matches!(
                    err,
                    AuthError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)
                ),
                "{:?}",
                err
            ),
            500..=599 => prop_assert!(
                matches!(err, AuthError::Server { status: s, .. } if s == status),
                "{:?}",
                err
            ),
            _ => {}
        }
        // Displaying and debugging an error never panics either.
        let _ = format!("{err} {err:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_json_never_panics(status in status(), value in json_value()) {
        check_all(status, Bytes::from(serde_json::to_vec(&value).unwrap()))?;
    }

    #[test]
    fn decoding_plausible_objects_never_panics(status in status(), value in plausible_object()) {
        check_all(status, Bytes::from(serde_json::to_vec(&value).unwrap()))?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        status in status(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check_all(status, Bytes::from(bytes))?;
    }

    #[test]
    fn decoding_truncated_json_never_panics(
        status in status(),
        value in plausible_object(),
        cut in 0.0f64..1.0,
    ) {
        let text = serde_json::to_vec(&value).unwrap();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, reason = "a fraction of a small length")]
        let at = (text.len() as f64 * cut) as usize;
        check_all(status, Bytes::copy_from_slice(&text[..at]))?;
    }

    /// A login answer with a usable token decodes to that token, whatever else it holds.
    #[test]
    fn a_string_token_always_decodes(token in "[A-Za-z0-9._~+/=-]{1,80}", extra in plausible_object()) {
        let mut body = extra;
        if let Value::Object(map) = &mut body {
            map.insert("token".into(), Value::String(token.clone()));
            map.remove("otp_required");
            map.remove("otpRequired");
            if map.get("refreshToken").is_some_and(|v| !v.is_string() && !v.is_null()) {
                map.remove("refreshToken");
            }
        }
        let t = tokens_of(login(&json_answer(200, &body), now()).unwrap());
        prop_assert_eq!(t.access.expose_secret(), token.as_str());
    }
}
