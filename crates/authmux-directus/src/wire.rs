//! Directus request bodies and the lenient reading of its success answers
//! (`{"data": {...}}`).
//!
//! Every reader here accepts any bytes without panicking: a body that is not the
//! expected shape is an [`AuthError::Protocol`] that never quotes the body (it may hold
//! tokens).

use std::time::Duration;

use authmux_core::wire::parse_json;
use authmux_core::{AuthError, Expiry};
use bytes::Bytes;
use http::Response;
use serde::Serialize;
use serde_json::{Map, Value};

/// `POST /auth/login`.
#[derive(Serialize)]
pub(crate) struct LoginBody<'a> {
    pub(crate) email: &'a str,
    pub(crate) password: &'a str,
    pub(crate) mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) otp: Option<&'a str>,
}

/// `POST /auth/refresh` and `POST /auth/logout`: the token in json mode, only the mode
/// with the cookie modes (the credential travels in the `Cookie` header).
#[derive(Serialize)]
pub(crate) struct TokenBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<&'a str>,
    pub(crate) mode: &'static str,
}

/// `POST /auth/password/request`.
#[derive(Serialize)]
pub(crate) struct ResetRequestBody<'a> {
    pub(crate) email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reset_url: Option<&'a str>,
}

/// `POST /auth/password/reset`.
#[derive(Serialize)]
pub(crate) struct ResetBody<'a> {
    pub(crate) token: &'a str,
    pub(crate) password: &'a str,
}

/// The `data` object of a success answer.
pub(crate) fn data_object(
    response: &Response<Bytes>,
    what: &str,
) -> Result<Map<String, Value>, AuthError> {
    let body: Value = parse_json(response, what)?;
    match body {
        Value::Object(mut map) => match map.remove("data") {
            Some(Value::Object(data)) => Ok(data),
            _ => Err(AuthError::protocol(format!(
                "{what}: expected a `data` object"
            ))),
        },
        _ => Err(AuthError::protocol(format!(
            "{what}: expected a JSON object"
        ))),
    }
}

/// What a login or refresh answer says about tokens, before the mode decides where
/// each one comes from.
#[derive(Debug, Default)]
pub(crate) struct TokenAnswer {
    /// `data.access_token`.
    pub(crate) access_token: Option<String>,
    /// `data.refresh_token`.
    pub(crate) refresh_token: Option<String>,
    /// `data.expires`, milliseconds of lifetime.
    pub(crate) expiry: Expiry,
}

impl TokenAnswer {
    /// Reads `{"data": {"access_token"?, "refresh_token"?, "expires"?}}`.
    pub(crate) fn read(response: &Response<Bytes>, what: &str) -> Result<Self, AuthError> {
        let data = data_object(response, what)?;
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(Self {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            expiry: data.get("expires").map_or(Expiry::Unstated, expires),
        })
    }
}

/// Directus `expires`: a lifetime in MILLISECONDS (`900000` = 15 minutes), not a
/// timestamp. Anything else (null, negative, text that is not a number) is unstated,
/// leaving the JWT's `exp` to decide.
pub(crate) fn expires(value: &Value) -> Expiry {
    let millis = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match millis {
        // Capped at ~31 years so that `now + lifetime` can never overflow.
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            Duration::try_from_secs_f64((ms / 1000.0).min(MAX_LIFETIME.as_secs_f64()))
                .map_or(Expiry::Unstated, Expiry::In)
        }
        _ => Expiry::Unstated,
    }
}

const MAX_LIFETIME: Duration = Duration::from_secs(1_000_000_000);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(body: &str) -> Response<Bytes> {
        Response::new(Bytes::from(body.to_owned()))
    }

    #[test]
    fn expires_is_milliseconds_of_lifetime() {
        assert_eq!(
            expires(&json!(900_000)),
            Expiry::In(Duration::from_secs(900))
        );
        assert_eq!(
            expires(&json!(1500.0)),
            Expiry::In(Duration::from_millis(1500))
        );
        assert_eq!(expires(&json!("5000")), Expiry::In(Duration::from_secs(5)));
        assert_eq!(expires(&json!(-1)), Expiry::Unstated);
        assert_eq!(expires(&json!(null)), Expiry::Unstated);
        assert_eq!(expires(&json!("soon")), Expiry::Unstated);
        assert_eq!(expires(&json!(u64::MAX)), Expiry::In(MAX_LIFETIME));
        assert_eq!(expires(&json!(1e300)), Expiry::In(MAX_LIFETIME));
    }

    #[test]
    fn token_answer_reads_each_mode_shape() {
        let json = TokenAnswer::read(
            &response(r#"{"data":{"access_token":"a","refresh_token":"r","expires":900000}}"#),
            "login",
        )
        .unwrap();
        assert_eq!(json.access_token.as_deref(), Some("a"));
        assert_eq!(json.refresh_token.as_deref(), Some("r"));
        assert_eq!(json.expiry, Expiry::In(Duration::from_secs(900)));
        let session =
            TokenAnswer::read(&response(r#"{"data":{"expires":900000}}"#), "login").unwrap();
        assert_eq!(session.access_token, None);
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"data":null}"#,
            r#"{"data":[1]}"#,
            "{\"data\":{\"access_token\":\"sec",
        ] {
            let err = TokenAnswer::read(&response(bad), "login").unwrap_err();
            assert!(matches!(err, AuthError::Protocol { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn bodies_serialize_as_directus_expects() {
        let login = LoginBody {
            email: "a@b.c",
            password: "pw",
            mode: "cookie",
            otp: None,
        };
        assert_eq!(
            serde_json::to_value(&login).unwrap(),
            json!({"email":"a@b.c","password":"pw","mode":"cookie"})
        );
        let refresh = TokenBody {
            refresh_token: None,
            mode: "session",
        };
        assert_eq!(
            serde_json::to_value(&refresh).unwrap(),
            json!({"mode":"session"})
        );
    }
}
