//! Scripted fault injection, per endpoint, applied to the next matching requests.
//!
//! Each endpoint (named as in its handler's pattern, e.g. `"POST /login"`, or `"*"` for
//! any request) has a FIFO queue of faults. A request takes the head of its endpoint's
//! queue; when that is empty, the head of the `"*"` queue; when both are empty, the
//! endpoint's "always" fault if one is set (then the `"*"` one); otherwise it is
//! answered normally.
//!
//! ```
//! use authmux_testkit::faults::{Fault, Faults};
//! use std::time::Duration;
//!
//! let faults = Faults::default();
//! faults.push("POST /login", Fault::Status(503));
//! faults.push_n("POST /token/refresh", Fault::Delay(Duration::from_millis(50)), 2);
//! faults.always("GET /me", Fault::DropConnection);
//! assert_eq!(faults.pending("POST /login"), 1);
//! faults.clear_all();
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use http::header::RETRY_AFTER;

use crate::server::FakeResponse;

/// The endpoint name that matches every request.
pub const ANY_ENDPOINT: &str = "*";

/// One injected misbehaviour.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and the dialect's error envelope (e.g. 500, 502, 503).
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Handle the request at once (a refresh rotates its tokens, a logout revokes),
    /// but send the answer only after this long: the window in which the client has
    /// not yet heard of a change the server already made.
    DelayAnswer(Duration),
    /// Close the connection without answering.
    DropConnection,
    /// `200` with a JSON content type and a body that is not valid JSON, cut off after
    /// a token-shaped string ([`crate::server::MALFORMED_JSON_MARKER`]) that no error
    /// may echo.
    MalformedJson,
    /// The normal answer, with a `Content-Length` of the full body but only half the
    /// bytes sent before the connection is aborted.
    TruncatedBody,
    /// The normal answer padded with trailing spaces to at least this many bytes (still
    /// valid JSON, so only a response-size limit can refuse it). A `204` becomes `200`.
    OversizedBody(usize),
    /// `429` in the dialect's error envelope with `Retry-After: <secs>`.
    RateLimited {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// `503` in the dialect's error envelope with `Retry-After: <secs>` (the server
    /// says it did not act, and when to come back).
    Unavailable {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// Answer with exactly this response.
    Respond(FakeResponse),
    /// This status with an HTML page for a body (`text/html`), as a reverse proxy or a
    /// load balancer answers (`Html(502)`), or as a captive portal or a web app's index
    /// page answers an API path (`Html(200)`). The request is not processed.
    Html(u16),
    /// `200` with a JSON content type and an empty body. The request is not processed.
    EmptyOk,
    /// Never answer and never process the request: the connection stays open until the
    /// client gives up (its timeout) or the server shuts down.
    Hang,
    /// The normal answer (the request is processed: a refresh rotates) with one value of
    /// its JSON body edited, e.g. the access token removed, `null` or of the wrong type.
    /// Bodies that are not JSON, or lack the value, are sent unchanged.
    EditJson {
        /// Where the value is, as a JSON pointer (RFC 6901), e.g. `"/data/access_token"`.
        pointer: String,
        /// What to do to it.
        edit: JsonEdit,
    },
}

/// How [`Fault::EditJson`] changes one value of an answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JsonEdit {
    /// Remove the member.
    Remove,
    /// Replace the value with `null`.
    Null,
    /// Replace the value with this one (e.g. a number where a string belongs).
    Replace(serde_json::Value),
}

impl Fault {
    /// Whether the server may process the request although the client gets no good
    /// answer (so a refresh it hits may have rotated the refresh token): truncated,
    /// oversized and edited answers, and the delays (a `Delay` is handled when it ends,
    /// whether or not the client still waits).
    pub fn is_processed(&self) -> bool {
        matches!(
            self,
            Fault::TruncatedBody
                | Fault::OversizedBody(_)
                | Fault::EditJson { .. }
                | Fault::DelayAnswer(_)
                | Fault::Delay(_)
        )
    }
}

/// The answer `fault` gives by itself, without the request being handled: `Ok` with
/// the response for the faults that replace the answer (statuses in the dialect's
/// `error` envelope, 429/503 with `Retry-After`, HTML, empty and malformed bodies,
/// [`Fault::Respond`]); `Err` giving the fault back for those that act on the real
/// answer or the connection (delays, drops, hangs, truncated, oversized and edited
/// bodies). The fake servers and the fault proxy both answer through it, so a fault
/// looks the same in front of a fake and in front of a real server.
pub fn canned_answer(
    fault: Fault,
    error: impl Fn(StatusCode, &str) -> FakeResponse,
) -> Result<FakeResponse, Fault> {
    let with_retry_after =
        |resp: FakeResponse, secs: u64| resp.with_header(RETRY_AFTER.as_str(), &secs.to_string());
    Ok(match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, status.canonical_reason().unwrap_or("Error"))
        }
        Fault::RateLimited { retry_after_secs } => with_retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests, please try again later.",
            ),
            retry_after_secs,
        ),
        Fault::Unavailable { retry_after_secs } => with_retry_after(
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            retry_after_secs,
        ),
        Fault::Html(code) => FakeResponse::raw(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
            "text/html",
            html_page(code),
        ),
        Fault::EmptyOk => FakeResponse::raw(
            StatusCode::OK,
            "application/json; charset=utf-8",
            bytes::Bytes::new(),
        ),
        Fault::MalformedJson => FakeResponse::raw(
            StatusCode::OK,
            "application/json; charset=utf-8",
            crate::server::MALFORMED_JSON_BODY.as_bytes(),
        ),
        Fault::Respond(resp) => resp,
        other => return Err(other),
    })
}

/// The HTML page [`Fault::Html`] answers with, like a proxy's error page.
pub fn html_page(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

/// Applies a [`Fault::EditJson`] to a body: `None` when the body is not JSON or has no
/// value at `pointer` (the answer is then sent unchanged). Public so that a proxy in
/// front of a real server can apply the same fault to the real answer.
pub fn edit_json(body: &[u8], pointer: &str, edit: &JsonEdit) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match edit {
        JsonEdit::Remove => {
            let (parent, key) = pointer.rsplit_once('/')?;
            let key = key.replace("~1", "/").replace("~0", "~");
            value.pointer_mut(parent)?.as_object_mut()?.remove(&key)?;
        }
        JsonEdit::Null => *value.pointer_mut(pointer)? = serde_json::Value::Null,
        JsonEdit::Replace(new) => *value.pointer_mut(pointer)? = new.clone(),
    }
    serde_json::to_vec(&value).ok()
}

#[derive(Debug, Default)]
struct Queues {
    queued: HashMap<String, VecDeque<Fault>>,
    always: HashMap<String, Fault>,
}

/// Per-endpoint fault queues. Thread-safe; reach it with `handle.faults()`.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Queues>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `fault` to the next request to `endpoint`.
    pub fn push(&self, endpoint: &str, fault: Fault) {
        self.push_n(endpoint, fault, 1);
    }

    /// Applies `fault` to each of the next `n` requests to `endpoint`.
    pub fn push_n(&self, endpoint: &str, fault: Fault, n: usize) {
        let mut q = self.lock();
        let queue = q.queued.entry(endpoint.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, n));
    }

    /// Applies `fault` to every request to `endpoint` once its queue is empty, until
    /// [`Faults::clear`].
    pub fn always(&self, endpoint: &str, fault: Fault) {
        self.lock().always.insert(endpoint.to_owned(), fault);
    }

    /// Removes the queued and the "always" faults of one endpoint.
    pub fn clear(&self, endpoint: &str) {
        let mut q = self.lock();
        q.queued.remove(endpoint);
        q.always.remove(endpoint);
    }

    /// Removes every fault.
    pub fn clear_all(&self) {
        let mut q = self.lock();
        q.queued.clear();
        q.always.clear();
    }

    /// How many queued (not "always") faults are still waiting for `endpoint`.
    pub fn pending(&self, endpoint: &str) -> usize {
        self.lock().queued.get(endpoint).map_or(0, VecDeque::len)
    }

    /// Takes the fault for the next request to `endpoint` (see the module docs for the
    /// order). The server calls this; tests rarely need to.
    pub fn next_for(&self, endpoint: &str) -> Option<Fault> {
        let mut q = self.lock();
        for key in [endpoint, ANY_ENDPOINT] {
            if let Some(f) = q.queued.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(f);
            }
        }
        [endpoint, ANY_ENDPOINT]
            .iter()
            .find_map(|key| q.always.get(*key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_edits_reach_nested_values_and_leave_other_bodies_alone() {
        let body = br#"{"data":{"access_token":"abc","expires":900}}"#;
        let edited = |edit| {
            let out = edit_json(body, "/data/access_token", &edit).unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        assert_eq!(
            edited(JsonEdit::Remove),
            serde_json::json!({"data": {"expires": 900}})
        );
        assert_eq!(
            edited(JsonEdit::Null)["data"]["access_token"],
            serde_json::Value::Null
        );
        assert_eq!(
            edited(JsonEdit::Replace(serde_json::json!(7)))["data"]["access_token"],
            7
        );
        assert!(edit_json(b"<html>", "/token", &JsonEdit::Null).is_none());
        assert!(edit_json(body, "/token", &JsonEdit::Remove).is_none());
        assert!(html_page(502).contains("502 Bad Gateway"));
    }

    #[test]
    fn queue_then_any_then_always() {
        let f = Faults::default();
        f.push("A", Fault::Status(500));
        f.push(ANY_ENDPOINT, Fault::Status(502));
        f.always("A", Fault::Status(503));
        assert!(matches!(f.next_for("A"), Some(Fault::Status(500))));
        assert!(matches!(f.next_for("A"), Some(Fault::Status(502))));
        assert!(matches!(f.next_for("A"), Some(Fault::Status(503))));
        assert!(matches!(f.next_for("A"), Some(Fault::Status(503))));
        assert!(f.next_for("B").is_none());
        f.clear("A");
        assert!(f.next_for("A").is_none());
    }
}
