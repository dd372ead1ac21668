//! Helpers adapters share to build requests and read answers, so that no adapter
//! writes its own JSON plumbing, `Retry-After` parsing or URL joining.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use http::{Method, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::AuthError;

/// Joins `path` (e.g. `"/auth/login"`) onto `base`, keeping any path prefix of the base
/// (`https://x.example/api` + `/auth/login` = `https://x.example/api/auth/login`).
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url.set_query(None);
    url
}

/// A request with a JSON body and `Accept: application/json`.
pub fn json_request(
    method: Method,
    url: &Url,
    body: &impl Serialize,
) -> Result<Request<Bytes>, AuthError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| AuthError::protocol(format!("cannot encode request: {e}")))?;
    Request::builder()
        .method(method)
        .uri(url.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(Bytes::from(body))
        .map_err(|e| AuthError::protocol(format!("cannot build request: {e}")))
}

/// A request without a body and `Accept: application/json`.
pub fn empty_request(method: Method, url: &Url) -> Result<Request<Bytes>, AuthError> {
    Request::builder()
        .method(method)
        .uri(url.as_str())
        .header(ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| AuthError::protocol(format!("cannot build request: {e}")))
}

/// Decodes a JSON body. A body that is not the expected JSON is a
/// [`AuthError::Protocol`] naming `what`, never including the body itself (it may hold
/// tokens).
pub fn parse_json<T: DeserializeOwned>(
    response: &Response<Bytes>,
    what: &str,
) -> Result<T, AuthError> {
    serde_json::from_slice(response.body()).map_err(|e| {
        AuthError::protocol(format!(
            "{what}: expected JSON ({} at line {} column {})",
            classify(&e),
            e.line(),
            e.column()
        ))
    })
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// The body as loose JSON, or `Null` if it is empty or not JSON (for error envelopes,
/// which must be read leniently).
pub fn loose_json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null)
}

/// The `Retry-After` header as a duration: delta-seconds, or an HTTP date relative to
/// `now` in any of the three forms RFC 9110 §5.6.7 requires recipients to accept
/// (IMF-fixdate, RFC 850, asctime; parsed by `httpdate`), or a numeric-offset RFC 2822
/// date some servers send. A date in the past means "now".
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok().or_else(|| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822)
            .ok()
            .map(SystemTime::from)
    })?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_base_prefix() {
        let base = Url::parse("https://x.example/api/").unwrap();
        assert_eq!(
            endpoint(&base, "/auth/login").as_str(),
            "https://x.example/api/auth/login"
        );
        let root = Url::parse("https://x.example").unwrap();
        assert_eq!(endpoint(&root, "me").as_str(), "https://x.example/me");
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, "12".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(12)));
        headers.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:47 +0000".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(10)));
        // The three forms of RFC 9110 §5.6.7.
        for date in [
            "Sun, 06 Nov 1994 08:49:47 GMT",
            "Sunday, 06-Nov-94 08:49:47 GMT",
            "Sun Nov  6 08:49:47 1994",
        ] {
            headers.insert(RETRY_AFTER, date.parse().unwrap());
            assert_eq!(
                retry_after(&headers, now),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
        // A date in the past: retry now.
        headers.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn parse_errors_never_echo_the_body() {
        let response = Response::new(Bytes::from_static(b"{\"token\": \"secret-tok"));
        let err = parse_json::<serde_json::Value>(&response, "login").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret-tok"));
    }
}
