//! The two Directus cookies: reading them from `Set-Cookie` and sending them back in a
//! `Cookie` header.
//!
//! There is deliberately no cookie jar: the provider keeps each cookie's value in the
//! session's token set (a [`RefreshToken`](authmux_core::RefreshToken) or
//! [`AccessToken`](authmux_core::AccessToken), redacted and zeroized like any token) and
//! sends it back itself, only to the session's own origin, as a sensitive header value.

use authmux_core::AuthError;
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue, SET_COOKIE};

/// The cookie holding the refresh token in `cookie` mode (`REFRESH_TOKEN_COOKIE_NAME`).
pub const REFRESH_COOKIE: &str = "directus_refresh_token";
/// The cookie holding the access JWT in `session` mode (`SESSION_COOKIE_NAME`).
pub const SESSION_COOKIE: &str = "directus_session_token";

/// The value of the cookie `name` set by the last `Set-Cookie` header that sets it,
/// ignoring headers that clear it (empty value or `Max-Age=0`). Malformed headers are
/// skipped, never an error.
pub(crate) fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for header in headers.get_all(SET_COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        let mut parts = text.split(';');
        let Some((key, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            continue;
        };
        if key.trim() != name {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let clears = parts.any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
            })
        });
        found = (!value.is_empty() && !clears && is_cookie_value(value)).then(|| value.to_owned());
    }
    found
}

/// `Cookie: <name>=<value>` as a sensitive header value (kept out of hyper's and
/// reqwest's debug output).
pub(crate) fn cookie_header(
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, HeaderValue), AuthError> {
    if value.is_empty() || !is_cookie_value(value) {
        return Err(AuthError::protocol(format!(
            "the stored {name} cookie has characters a cookie cannot carry"
        )));
    }
    let mut header = HeaderValue::try_from(format!("{name}={value}")).map_err(|_| {
        AuthError::protocol(format!("the stored {name} cookie is not a valid header"))
    })?;
    header.set_sensitive(true);
    Ok((COOKIE, header))
}

/// RFC 6265 `cookie-octet`s: visible ASCII except `"`, `,`, `;` and `\`.
fn is_cookie_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn reads_the_named_cookie_and_skips_others_and_clearing_headers() {
        let map = headers(&[
            "other=1; Path=/",
            "directus_refresh_token=abc-DEF_123; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax",
        ]);
        assert_eq!(
            set_cookie_value(&map, REFRESH_COOKIE).as_deref(),
            Some("abc-DEF_123")
        );
        assert_eq!(set_cookie_value(&map, SESSION_COOKIE), None);
        let cleared = headers(&["directus_refresh_token=; Max-Age=0; Path=/"]);
        assert_eq!(set_cookie_value(&cleared, REFRESH_COOKIE), None);
        let zero = headers(&["directus_refresh_token=abc; Max-Age=0"]);
        assert_eq!(set_cookie_value(&zero, REFRESH_COOKIE), None);
        let quoted = headers(&["directus_session_token=\"a.b.c\"; HttpOnly"]);
        assert_eq!(
            set_cookie_value(&quoted, SESSION_COOKIE).as_deref(),
            Some("a.b.c")
        );
        let junk = headers(&["directus_refresh_token", "=x", "directus_refresh_token=a b"]);
        assert_eq!(set_cookie_value(&junk, REFRESH_COOKIE), None);
    }

    #[test]
    fn cookie_header_is_sensitive_and_refuses_bad_values() {
        let (name, value) = cookie_header(REFRESH_COOKIE, "tok-123").unwrap();
        assert_eq!(name, COOKIE);
        assert_eq!(value.to_str().unwrap(), "directus_refresh_token=tok-123");
        assert!(value.is_sensitive());
        let err = cookie_header(REFRESH_COOKIE, "bad;value-secret").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("value-secret"));
        assert!(cookie_header(REFRESH_COOKIE, "").is_err());
    }
}
