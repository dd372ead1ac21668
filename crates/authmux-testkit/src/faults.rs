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
    /// `200` with a JSON content type and a body that is not valid JSON.
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
    /// Answer with exactly this response.
    Respond(FakeResponse),
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
