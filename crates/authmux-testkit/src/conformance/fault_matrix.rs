//! The fault matrix: every endpoint an adapter has x every way a server or the network
//! can fail, each driven through a [`SessionManager`] with a [`FileStore`], for any
//! adapter (the bundled ones and yours).
//!
//! For each cell the matrix signs in, injects one [`Fault`] on the endpoint (through
//! the target's [`Faults`] handle: a fake's, or a fault proxy's in front of a real
//! server), makes the call, and asserts:
//! - **a typed error of the right kind**: every fault here is *transient* (the server
//!   or the network failed; nobody refused the credentials), so a definitive error
//!   ([`AuthError::needs_sign_in`], or one [`RefreshFailure::of`] calls `Rejected`)
//!   would end a good session or tell a user their password is wrong when a proxy is
//!   down. The kind is precise per fault (see [`MatrixFault::expected`]). Idempotent
//!   reads (current user, [`SessionManager::send`] of a `GET`) may instead recover
//!   inside the call by retrying; a refresh must recover inside the call exactly when
//!   the retry rule ([`authmux_core::retry::RefreshRetry`]) says the server did not
//!   process it (here: 429 or 503 with a 1 s `Retry-After`), and must not be retried otherwise
//!   (the fake's recorder counts the refresh requests);
//! - **the session kept**: the same sign-in is still there (for a login, the one
//!   signed in before; for a one-time code, the pending challenge); a logout ends the
//!   local session whatever the server says;
//! - **the store holds valid JSON or is untouched**;
//! - **no secret** (password, code, any token of the session) in the error's `Display`
//!   or `Debug`, and no HTML page dumped into it;
//! - **each call returns within the client timeout plus a small margin** (plus the
//!   `Retry-After` a recovered call waited);
//! - **the next call recovers** once the fault is gone. One exception, which the table
//!   shows: a refresh the server processed but whose answer was lost (truncated,
//!   oversized, edited) has rotated the refresh token on a server that rotates without
//!   a grace period, so the next refresh is rightly refused (`RefreshRejected`, the
//!   session ended and the store cleared); the matrix demands exactly that there.
//!
//! ```no_run
//! # async fn demo(provider: std::sync::Arc<dyn authmux_core::AuthProvider>) {
//! use authmux_testkit::conformance::fault_matrix::{self, FaultTarget};
//! use authmux_testkit::FakeLinxio;
//! use std::time::Duration;
//!
//! let fake = FakeLinxio::start().unwrap();
//! // ... build `provider` at `fake.base_url()` with a 400 ms client timeout ...
//! let target = FaultTarget::linxio(&fake, Duration::from_millis(400));
//! let matrix = fault_matrix::run(provider, &target).await;
//! matrix.assert_passed("linxio"); // prints the table, panics listing every failed cell
//! # }
//! ```

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authmux_core::lifecycle::RefreshFailure;
use authmux_core::{
    AuthError, AuthProvider, Credentials, FileStore, LoginOutcome, OtpCode, SessionEvent,
    SessionManager, TransportErrorKind,
};
use bytes::Bytes;
use serde_json::json;

use super::Target;
use crate::faults::{Fault, Faults, JsonEdit};

/// The `Retry-After` of the matrix's 429: within the manager's default bound for
/// retrying a refresh (2 s), so a refresh must recover from it inside the call.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The body size of the oversized answer: above the default 4 MiB response cap.
pub const OVERSIZED_BYTES: usize = 5 * 1024 * 1024;

/// An endpoint kind, as the manager reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// [`SessionManager::login`] (with a session already signed in).
    Login,
    /// [`SessionManager::verify_otp`] after a login that asked for a code.
    Otp,
    /// [`SessionManager::refresh`].
    Refresh,
    /// [`SessionManager::current_user`].
    CurrentUser,
    /// [`SessionManager::logout`].
    Logout,
    /// [`SessionManager::send`] of an authorized `GET`.
    Send,
}

impl EndpointKind {
    /// Every kind, in table order.
    pub const ALL: [EndpointKind; 6] = [
        EndpointKind::Login,
        EndpointKind::Otp,
        EndpointKind::Refresh,
        EndpointKind::CurrentUser,
        EndpointKind::Logout,
        EndpointKind::Send,
    ];

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            EndpointKind::Login => "login",
            EndpointKind::Otp => "otp",
            EndpointKind::Refresh => "refresh",
            EndpointKind::CurrentUser => "current user",
            EndpointKind::Logout => "logout",
            EndpointKind::Send => "send (GET)",
        }
    }

    /// Whether the answer carries the session's tokens (so the token faults apply).
    fn issues_tokens(self) -> bool {
        matches!(
            self,
            EndpointKind::Login | EndpointKind::Otp | EndpointKind::Refresh
        )
    }
}

/// One fault of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixFault {
    /// `500` in the dialect's error envelope.
    Status500,
    /// `502` with an HTML page, as a reverse proxy answers.
    Html502,
    /// `503` in the dialect's error envelope, without `Retry-After`.
    Status503,
    /// `504` in the dialect's error envelope.
    Status504,
    /// No answer until the client's timeout.
    Hang,
    /// The connection closed without an answer.
    Drop,
    /// Half the answer, then the connection aborted.
    Truncated,
    /// An answer over the response cap ([`OVERSIZED_BYTES`]).
    Oversized,
    /// `200` with an empty body.
    Empty200,
    /// `200` JSON without the access token.
    NoToken,
    /// `200` JSON with the access token `null`.
    NullToken,
    /// `200` JSON with the access token a number.
    WrongTypeToken,
    /// `429` with `Retry-After: 1`.
    RateLimited,
    /// `503` with `Retry-After: 1` (not in the issue's list: it proves the adapter keeps
    /// the `Retry-After` of a 503, which the refresh retry rule needs).
    Unavailable,
    /// `200` with an HTML page.
    NonJson200,
}

impl MatrixFault {
    /// Every fault, in table order.
    pub const ALL: [MatrixFault; 15] = [
        MatrixFault::Status500,
        MatrixFault::Html502,
        MatrixFault::Status503,
        MatrixFault::Status504,
        MatrixFault::Hang,
        MatrixFault::Drop,
        MatrixFault::Truncated,
        MatrixFault::Oversized,
        MatrixFault::Empty200,
        MatrixFault::NoToken,
        MatrixFault::NullToken,
        MatrixFault::WrongTypeToken,
        MatrixFault::RateLimited,
        MatrixFault::Unavailable,
        MatrixFault::NonJson200,
    ];

    /// The column label.
    pub fn label(self) -> &'static str {
        match self {
            MatrixFault::Status500 => "500",
            MatrixFault::Html502 => "502 html",
            MatrixFault::Status503 => "503",
            MatrixFault::Status504 => "504",
            MatrixFault::Hang => "hang",
            MatrixFault::Drop => "drop",
            MatrixFault::Truncated => "truncated",
            MatrixFault::Oversized => "oversized",
            MatrixFault::Empty200 => "empty 200",
            MatrixFault::NoToken => "no token",
            MatrixFault::NullToken => "null token",
            MatrixFault::WrongTypeToken => "token type",
            MatrixFault::RateLimited => "429+RA",
            MatrixFault::Unavailable => "503+RA",
            MatrixFault::NonJson200 => "200 html",
        }
    }

    /// Whether an idempotent read may retry past it (and so succeed inside the call):
    /// 5xx, 429, a timeout, a dropped or truncated answer.
    pub fn is_retryable_read(self) -> bool {
        matches!(
            self,
            MatrixFault::Status500
                | MatrixFault::Html502
                | MatrixFault::Status503
                | MatrixFault::Status504
                | MatrixFault::Hang
                | MatrixFault::Drop
                | MatrixFault::Truncated
                | MatrixFault::RateLimited
                | MatrixFault::Unavailable
        )
    }

    /// Whether the answer says the server did not act, and when to come back (429 or
    /// 503 with `Retry-After`): the one kind of answer after which a refresh is retried.
    pub fn says_not_processed(self) -> bool {
        matches!(self, MatrixFault::RateLimited | MatrixFault::Unavailable)
    }

    /// The status the fault answers with, when it is an error status.
    pub fn status(self) -> Option<u16> {
        match self {
            MatrixFault::Status500 => Some(500),
            MatrixFault::Html502 => Some(502),
            MatrixFault::Status503 => Some(503),
            MatrixFault::Status504 => Some(504),
            MatrixFault::RateLimited => Some(429),
            MatrixFault::Unavailable => Some(503),
            _ => None,
        }
    }

    fn is_token_fault(self) -> bool {
        matches!(
            self,
            MatrixFault::NoToken | MatrixFault::NullToken | MatrixFault::WrongTypeToken
        )
    }

    /// The injected fault; `None` when it needs a token pointer the target lacks.
    pub fn fault(self, token_pointer: Option<&str>) -> Option<Fault> {
        let edit = |edit| {
            token_pointer.map(|pointer| Fault::EditJson {
                pointer: pointer.to_owned(),
                edit,
            })
        };
        Some(match self {
            MatrixFault::Status500 => Fault::Status(500),
            MatrixFault::Html502 => Fault::Html(502),
            MatrixFault::Status503 => Fault::Status(503),
            MatrixFault::Status504 => Fault::Status(504),
            MatrixFault::Hang => Fault::Hang,
            MatrixFault::Drop => Fault::DropConnection,
            MatrixFault::Truncated => Fault::TruncatedBody,
            MatrixFault::Oversized => Fault::OversizedBody(OVERSIZED_BYTES),
            MatrixFault::Empty200 => Fault::EmptyOk,
            MatrixFault::NoToken => return edit(JsonEdit::Remove),
            MatrixFault::NullToken => return edit(JsonEdit::Null),
            MatrixFault::WrongTypeToken => return edit(JsonEdit::Replace(json!(4242))),
            MatrixFault::RateLimited => Fault::RateLimited {
                retry_after_secs: RETRY_AFTER_SECS,
            },
            MatrixFault::Unavailable => Fault::Unavailable {
                retry_after_secs: RETRY_AFTER_SECS,
            },
            MatrixFault::NonJson200 => Fault::Html(200),
        })
    }

    /// What the error must be, for messages and the check. All of them are transient.
    ///
    /// | fault | error |
    /// |---|---|
    /// | 500, 502 (HTML), 503, 504 | `Server { status }` |
    /// | hang | `Timeout` |
    /// | drop | `Transport { Io }` (not `Connect`: the request was sent) |
    /// | truncated | `Transport { Io }` or `Protocol` |
    /// | oversized | `Transport { BodyTooLarge }` |
    /// | empty 200, 200 HTML, no/null/mistyped token | `Protocol` |
    /// | 429 | `RateLimited { retry_after: 1 s }` |
    /// | 503 with `Retry-After` | `Server { status: 503, retry_after: 1 s }` |
    pub fn expected(self) -> (&'static str, fn(&AuthError) -> bool) {
        match self {
            MatrixFault::Status500 => ("Server(500)", |e| server(e, 500)),
            MatrixFault::Html502 => ("Server(502)", |e| server(e, 502)),
            MatrixFault::Status503 => ("Server(503)", |e| server(e, 503)),
            MatrixFault::Status504 => ("Server(504)", |e| server(e, 504)),
            MatrixFault::Hang => ("Timeout", |e| matches!(e, AuthError::Timeout)),
            MatrixFault::Drop => ("Transport(Io)", |e| transport(e, TransportErrorKind::Io)),
            MatrixFault::Truncated => ("Transport(Io) or Protocol", |e| {
                transport(e, TransportErrorKind::Io) || matches!(e, AuthError::Protocol { .. })
            }),
            MatrixFault::Oversized => ("Transport(BodyTooLarge)", |e| {
                transport(e, TransportErrorKind::BodyTooLarge)
            }),
            MatrixFault::Empty200
            | MatrixFault::NoToken
            | MatrixFault::NullToken
            | MatrixFault::WrongTypeToken
            | MatrixFault::NonJson200 => ("Protocol", |e| matches!(e, AuthError::Protocol { .. })),
            MatrixFault::RateLimited => ("RateLimited(1s)", |e| {
                matches!(e, AuthError::RateLimited { retry_after: Some(d) }
                    if *d == Duration::from_secs(RETRY_AFTER_SECS))
            }),
            MatrixFault::Unavailable => ("Server(503, Retry-After 1s)", |e| {
                matches!(e, AuthError::Server { status: 503, retry_after: Some(d), .. }
                    if *d == Duration::from_secs(RETRY_AFTER_SECS))
            }),
        }
    }
}

fn server(e: &AuthError, status: u16) -> bool {
    matches!(e, AuthError::Server { status: s, .. } if *s == status)
}

fn transport(e: &AuthError, want: TransportErrorKind) -> bool {
    matches!(e, AuthError::Transport { kind, .. } if *kind == want)
}

/// Whether an error is transient for a session: it neither asks for a new sign-in nor
/// would end the session if a refresh returned it.
pub fn is_transient(error: &AuthError) -> bool {
    !error.needs_sign_in() && RefreshFailure::of(error) == RefreshFailure::Transient
}

/// What the matrix needs beyond a conformance [`Target`]: the endpoints of the OTP
/// step, the logout and an authorized `GET`, where the access token sits in the
/// token answers (for the token faults), and the client timeout the provider was built
/// with.
///
/// Fault injection comes from `target.faults`: a fake's [`Faults`], or the handle of a
/// fault proxy in front of a real server. `target.recorder`, when present, lets the
/// matrix count refresh requests (that a refresh was retried, or not).
#[derive(Debug, Clone)]
pub struct FaultTarget<'a> {
    /// The users, the fault handle, the recorder, the login / current-user / refresh
    /// endpoint names.
    pub target: Target<'a>,
    /// The endpoint of the one-time-code step (`None`: the dialect has none, or it is
    /// the login endpoint, then name that one).
    pub otp: Option<String>,
    /// The endpoint the server-side logout calls (`None`: no server logout).
    pub logout: Option<String>,
    /// The endpoint name and path of an authorized `GET` for [`SessionManager::send`]
    /// (`None`: the current-user endpoint).
    pub send: Option<(String, String)>,
    /// The JSON pointer of the access token in the login, OTP and refresh answers
    /// (`None`: the token faults are skipped).
    pub token_pointer: Option<String>,
    /// The provider's client timeout (its transport's); the manager's `send` gets the
    /// same.
    pub timeout: Duration,
    /// How late past the timeout a call may return. Default 750 ms.
    pub margin: Duration,
}

impl<'a> FaultTarget<'a> {
    /// A target with no OTP, logout or token pointer: add them with the `with_*`
    /// methods.
    pub fn new(target: Target<'a>, timeout: Duration) -> Self {
        Self {
            target,
            otp: None,
            logout: None,
            send: None,
            token_pointer: None,
            timeout,
            margin: Duration::from_millis(750),
        }
    }

    /// The endpoint of the one-time-code step.
    #[must_use]
    pub fn with_otp(mut self, endpoint: &str) -> Self {
        self.otp = Some(endpoint.to_owned());
        self
    }

    /// The endpoint the server-side logout calls.
    #[must_use]
    pub fn with_logout(mut self, endpoint: &str) -> Self {
        self.logout = Some(endpoint.to_owned());
        self
    }

    /// The endpoint and the path of the authorized `GET` sent through the manager.
    #[must_use]
    pub fn with_send(mut self, endpoint: &str, path: &str) -> Self {
        self.send = Some((endpoint.to_owned(), path.to_owned()));
        self
    }

    /// The JSON pointer of the access token in the token answers, e.g. `"/token"`.
    #[must_use]
    pub fn with_token_pointer(mut self, pointer: &str) -> Self {
        self.token_pointer = Some(pointer.to_owned());
        self
    }

    /// [`crate::FakeLinxio`].
    pub fn linxio(fake: &'a crate::FakeLinxio, timeout: Duration) -> Self {
        use crate::linxio::endpoints as e;
        Self::new(Target::linxio(fake), timeout)
            .with_otp(e::LOGIN_OTP)
            .with_logout(e::LOGOUT)
            .with_send(e::VEHICLES, "/api/vehicles")
            .with_token_pointer("/token")
    }

    /// [`crate::FakeLinkUtm`] (no OTP login, no refresh; the logout revokes the
    /// session's own sign-in).
    pub fn linkutm(fake: &'a crate::FakeLinkUtm, timeout: Duration) -> Self {
        use crate::linkutm::endpoints as e;
        Self::new(Target::linkutm(fake), timeout)
            .with_logout(e::REVOKE_SESSION)
            .with_send(e::PROFILE, "/api/v1/auth/profile")
            .with_token_pointer("/token")
    }

    /// [`crate::directus::FakeDirectus`] in JSON mode (the code goes to the login
    /// endpoint).
    pub fn directus(fake: &'a crate::directus::FakeDirectus, timeout: Duration) -> Self {
        use crate::directus::endpoints as e;
        Self::new(Target::directus(fake), timeout)
            .with_otp(e::LOGIN)
            .with_logout(e::LOGOUT)
            .with_send(e::ME, "/users/me")
            .with_token_pointer("/data/access_token")
    }

    /// [`crate::FakeOAuth2`] with a password-grant provider (revocation at logout).
    pub fn oauth2(fake: &'a crate::FakeOAuth2, timeout: Duration) -> Self {
        use crate::oauth2::endpoints as e;
        Self::new(Target::oauth2(fake), timeout)
            .with_logout(e::REVOKE)
            .with_send(e::USERINFO, "/userinfo")
            .with_token_pointer("/access_token")
    }

    fn endpoint(&self, kind: EndpointKind) -> Option<String> {
        let e = &self.target.endpoints;
        let named = |s: &String| (!s.is_empty()).then(|| s.clone());
        match kind {
            EndpointKind::Login => named(&e.login),
            EndpointKind::Otp => self.otp.clone(),
            EndpointKind::Refresh => e.refresh.clone(),
            EndpointKind::CurrentUser => named(&e.current_user),
            EndpointKind::Logout => self.logout.clone(),
            EndpointKind::Send => self.send_target().map(|(endpoint, _)| endpoint),
        }
    }

    fn send_target(&self) -> Option<(String, String)> {
        if let Some(send) = &self.send {
            return Some(send.clone());
        }
        let (method, path) = self.target.endpoints.current_user.split_once(' ')?;
        (method == "GET" && !path.contains(':'))
            .then(|| (self.target.endpoints.current_user.clone(), path.to_owned()))
    }
}

/// How one cell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cell does not apply (the reason says why).
    NotApplicable(String),
    /// A transient error of the expected kind (its short name).
    Transient(String),
    /// The call succeeded anyway: retried inside the call.
    Recovered,
    /// The call succeeded: the adapter accepted the answer (a logout's `200`, whatever
    /// its body; the local session ends either way).
    Accepted,
    /// The cell failed before an outcome was known.
    Unknown,
    /// [`SessionManager::send`] returned the server's answer with this status.
    Response(u16),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotApplicable(_) => f.write_str("n/a"),
            Outcome::Transient(kind) => write!(f, "T:{kind}"),
            Outcome::Recovered => f.write_str("ok(retry)"),
            Outcome::Accepted => f.write_str("ok"),
            Outcome::Unknown => f.write_str("?"),
            Outcome::Response(status) => write!(f, "resp {status}"),
        }
    }
}

/// One cell: an endpoint, a fault, what happened and whether the contract held.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The endpoint.
    pub endpoint: EndpointKind,
    /// The fault.
    pub fault: MatrixFault,
    /// What the faulted call did.
    pub outcome: Outcome,
    /// What the next call (without the fault) did, in a word.
    pub next: &'static str,
    /// How long the faulted call took.
    pub elapsed: Duration,
    /// Why the contract does not hold, when it does not.
    pub failure: Option<String>,
}

/// The results of [`run`].
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// Every cell, row by row.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// The failed cells.
    pub fn failures(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| c.failure.is_some()).collect()
    }

    /// How many cells applied and held.
    pub fn passed(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| c.failure.is_none() && !matches!(c.outcome, Outcome::NotApplicable(_)))
            .count()
    }

    /// The cell of one endpoint and fault.
    pub fn cell(&self, endpoint: EndpointKind, fault: MatrixFault) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.endpoint == endpoint && c.fault == fault)
    }

    /// The matrix as a text table: a row per endpoint, a column per fault; each cell
    /// is the outcome (`T:<error>` a transient error, `ok(retry)` recovered inside the
    /// call, `ok` a logout that accepted the answer, `resp <status>` an answer `send`
    /// returned, `n/a`), then `/` and what the
    /// next call did when it was not a plain success (`lost`: a refresh rotated by a
    /// server whose answer was lost, rightly refused), and `!!` when the cell failed.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["endpoint \\ fault".to_owned()];
        header.extend(MatrixFault::ALL.iter().map(|f| f.label().to_owned()));
        rows.push(header);
        for endpoint in EndpointKind::ALL {
            let mut row = vec![endpoint.label().to_owned()];
            for fault in MatrixFault::ALL {
                let text = self.cell(endpoint, fault).map_or_else(
                    || "-".to_owned(),
                    |c| {
                        let mut t = c.outcome.to_string();
                        if c.next != "ok" && !matches!(c.outcome, Outcome::NotApplicable(_)) {
                            let _ = write!(t, "/{}", c.next);
                        }
                        if c.failure.is_some() {
                            t.push_str(" !!");
                        }
                        t
                    },
                );
                row.push(text);
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if n == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
            }
        }
        out
    }

    /// Prints the table (and each not-applicable cell's reason) to stderr, then panics
    /// listing every failed cell.
    #[allow(
        clippy::print_stderr,
        reason = "the matrix table belongs in the test output"
    )]
    pub fn assert_passed(&self, name: &str) {
        eprintln!("fault matrix ({name}):\n{}", self.table());
        let mut reasons: Vec<String> = self
            .cells
            .iter()
            .filter_map(|c| match &c.outcome {
                Outcome::NotApplicable(why) => Some(format!("{}: {why}", c.endpoint.label())),
                _ => None,
            })
            .collect();
        reasons.dedup();
        for reason in reasons {
            eprintln!("  n/a {reason}");
        }
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{} fault-matrix cell(s) failed ({name}):\n{}",
            failures.len(),
            failures
                .iter()
                .map(|c| format!(
                    "  - {} x {}: {}",
                    c.endpoint.label(),
                    c.fault.label(),
                    c.failure.as_deref().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(self.passed() > 0, "no fault-matrix cell applied ({name})");
    }
}

/// Runs the whole matrix: every [`EndpointKind`] x every [`MatrixFault`].
pub async fn run(provider: Arc<dyn AuthProvider>, target: &FaultTarget<'_>) -> Matrix {
    let mut matrix = Matrix::default();
    let dir = ScratchDir::new();
    let mut n = 0;
    for endpoint in EndpointKind::ALL {
        for fault in MatrixFault::ALL {
            n += 1;
            let store = dir.path.join(format!("cell-{n}.json"));
            matrix
                .cells
                .push(run_cell(&provider, target, endpoint, fault, &store).await);
        }
    }
    matrix
}

/// A folder of its own under the system's temporary folder, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "authmux-fault-matrix-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::create_dir_all(&path);
        Self { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Why a cell does not apply, or `None` when it does.
fn not_applicable(
    provider: &dyn AuthProvider,
    target: &FaultTarget<'_>,
    endpoint: EndpointKind,
    fault: MatrixFault,
) -> Option<String> {
    let caps = provider.capabilities();
    if target.target.faults.is_none() {
        return Some("the target cannot inject faults".into());
    }
    if target.endpoint(endpoint).is_none() {
        return Some("the target names no endpoint for it".into());
    }
    match endpoint {
        EndpointKind::Otp if !caps.otp_login || target.target.otp_user.is_none() => {
            return Some("no one-time-code login".into());
        }
        EndpointKind::Refresh if !caps.refresh => return Some("no refresh".into()),
        EndpointKind::Logout if !caps.server_logout => return Some("no server logout".into()),
        _ => {}
    }
    if fault.is_token_fault() {
        if !endpoint.issues_tokens() {
            return Some("token faults apply to the answers that issue tokens".into());
        }
        if target.token_pointer.is_none() {
            return Some("the target names no token pointer".into());
        }
    }
    None
}

/// The secrets no error may show.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_owned());
        }
    }

    fn add_session(&mut self, session: Option<&authmux_core::Session>) {
        if let Some(s) = session {
            self.add(s.tokens.access.expose_secret());
            if let Some(r) = &s.tokens.refresh {
                self.add(r.expose_secret());
            }
        }
    }

    fn check(&self, error: &AuthError) -> Result<(), String> {
        let text = format!("{error} {error:?}");
        for secret in &self.0 {
            ensure!(
                !text.contains(secret.as_str()),
                "the error shows a secret: {error:?}"
            );
        }
        ensure!(
            !text.contains("<html") && !text.contains("<h1>"),
            "the error dumps the HTML page: {error}"
        );
        Ok(())
    }
}

/// A manager of its own for one cell, on a fresh `FileStore`.
fn manager(
    provider: &Arc<dyn AuthProvider>,
    target: &FaultTarget<'_>,
    store: &Path,
) -> SessionManager {
    SessionManager::builder(Arc::clone(provider))
        .store(FileStore::new(store))
        .request_timeout(target.timeout)
        .send_timeout(target.timeout * 10 + Duration::from_secs(5))
        .build()
}

/// What a call left in the store: the file's bytes (`None`: no file).
fn stored(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

fn store_valid(before: Option<&[u8]>, path: &Path) -> Result<(), String> {
    let after = stored(path);
    if after.as_deref() == before {
        return Ok(());
    }
    if let Some(bytes) = &after {
        ensure!(
            serde_json::from_slice::<serde_json::Value>(bytes).is_ok(),
            "the store holds a file that is not valid JSON"
        );
    }
    Ok(())
}

async fn sign_in(
    manager: &SessionManager,
    credentials: &Credentials,
) -> Result<authmux_core::Session, String> {
    match manager.login(credentials).await {
        Ok(LoginOutcome::Authenticated(session)) => Ok(session),
        Ok(LoginOutcome::OtpRequired(_)) => Err("the plain user was asked for a code".into()),
        Err(e) => Err(format!("sign-in without a fault failed: {e:?}")),
    }
}

async fn run_cell(
    provider: &Arc<dyn AuthProvider>,
    target: &FaultTarget<'_>,
    endpoint: EndpointKind,
    fault: MatrixFault,
    store: &Path,
) -> Cell {
    let mut cell = Cell {
        endpoint,
        fault,
        outcome: Outcome::Unknown,
        next: "ok",
        elapsed: Duration::ZERO,
        failure: None,
    };
    if let Some(why) = not_applicable(provider.as_ref(), target, endpoint, fault) {
        cell.outcome = Outcome::NotApplicable(why);
        return cell;
    }
    if let Err(failure) = drive(provider, target, &mut cell, store).await {
        cell.failure = Some(failure);
    }
    if let Some(faults) = target.target.faults {
        faults.clear_all();
    }
    cell
}

/// The result of the faulted call, reduced to what the checks need.
enum Called {
    Failed(AuthError),
    Succeeded,
    Answered(u16),
}

#[allow(
    clippy::too_many_lines,
    reason = "one cell's script reads best in one piece"
)]
async fn drive(
    provider: &Arc<dyn AuthProvider>,
    target: &FaultTarget<'_>,
    cell: &mut Cell,
    store: &Path,
) -> Result<(), String> {
    let (endpoint, fault) = (cell.endpoint, cell.fault);
    let faults: &Faults = target.target.faults.ok_or("no fault handle")?;
    let name = target.endpoint(endpoint).ok_or("no endpoint")?;
    let injected = fault
        .fault(target.token_pointer.as_deref())
        .ok_or("no token pointer")?;
    let processed = injected.is_processed();
    let user = &target.target.user;
    let manager = manager(provider, target, store);
    let mut secrets = Secrets::default();
    secrets.add(user.password.expose_secret());

    // Set up: a signed-in session (or, for the code step, a pending challenge).
    let mut code = None;
    let before = match endpoint {
        EndpointKind::Otp => {
            let otp = target.target.otp_user.as_ref().ok_or("no OTP user")?;
            secrets.add(otp.credentials.password.expose_secret());
            match manager.login(&otp.credentials).await {
                Ok(LoginOutcome::OtpRequired(_)) => {}
                other => return Err(format!("the OTP user's login gave {other:?}")),
            }
            let c = (otp.code)();
            secrets.add(&c);
            code = Some(c);
            None
        }
        _ => Some(sign_in(&manager, user).await?),
    };
    secrets.add_session(before.as_ref());
    let stored_before = stored(store);
    let refreshes_before = refresh_count(target);

    // The faulted call.
    faults.clear_all();
    faults.push(&name, injected);
    let started = Instant::now();
    let called = call(&manager, target, endpoint, user, code.as_deref()).await;
    cell.elapsed = started.elapsed();
    faults.clear_all();
    secrets.add_session(manager.session().as_ref());

    // The kind of the result.
    let (expectation, matches_kind) = fault.expected();
    let mut budget = target.timeout + target.margin;
    match &called {
        Called::Failed(error) => {
            secrets.check(error)?;
            ensure!(
                is_transient(error),
                "a transient fault gave a definitive error: {error:?}"
            );
            // A logout's 200 is of no interest past its status: an adapter may accept
            // it, or refuse a status it did not expect; any transient error will do.
            let any_will_do = endpoint == EndpointKind::Logout
                && matches!(fault, MatrixFault::Empty200 | MatrixFault::NonJson200);
            ensure!(
                any_will_do || matches_kind(error),
                "expected {expectation}, got {error:?}"
            );
            ensure!(
                !(endpoint == EndpointKind::Refresh && fault.says_not_processed()),
                "a refresh answered with Retry-After {RETRY_AFTER_SECS}s must be retried \
                 inside the call (RefreshRetry), got {error:?}"
            );
            cell.outcome = Outcome::Transient(short(error));
        }
        Called::Succeeded => {
            let allowed = match endpoint {
                // Idempotent reads may be retried by the provider.
                EndpointKind::CurrentUser => fault.is_retryable_read(),
                // The server said 200 (perhaps with a body the adapter need not read).
                EndpointKind::Logout => true,
                // Retried only when the server did not process the first request.
                EndpointKind::Refresh => fault.says_not_processed(),
                _ => false,
            };
            ensure!(allowed, "expected {expectation}, but the call succeeded");
            cell.outcome = if endpoint == EndpointKind::Logout {
                Outcome::Accepted
            } else {
                Outcome::Recovered
            };
        }
        Called::Answered(status) => {
            // `send` hands back what the server said (its own status, or a 200 after
            // retrying an idempotent GET, or a 200 whose body is the application's
            // business); an answer over the cap is never handed back.
            let own = fault.status().is_some_and(|s| s == *status);
            let retried = *status == 200 && fault.is_retryable_read();
            let passed_through =
                *status == 200 && matches!(fault, MatrixFault::Empty200 | MatrixFault::NonJson200);
            ensure!(
                own || retried || passed_through,
                "send answered {status} to the fault (expected its own status, a retry, \
                 or {expectation})"
            );
            cell.outcome = Outcome::Response(*status);
        }
    }
    if matches!(called, Called::Succeeded | Called::Answered(_)) && fault.says_not_processed() {
        budget += Duration::from_secs(RETRY_AFTER_SECS);
    }
    if endpoint == EndpointKind::Send && fault == MatrixFault::Hang {
        // One hung attempt, then the retry of the idempotent GET.
        budget += target.timeout;
    }
    ensure!(
        cell.elapsed <= budget,
        "the call took {:?}, over the timeout plus margin ({budget:?})",
        cell.elapsed
    );

    // How many refresh requests went out: two only when the rule allows the retry.
    if endpoint == EndpointKind::Refresh
        && let (Some(b), Some(a)) = (refreshes_before, refresh_count(target))
    {
        let want = if matches!(called, Called::Succeeded) {
            2
        } else {
            1
        };
        ensure!(
            a - b == want,
            "the server received {} refresh request(s), expected {want}",
            a - b
        );
    }

    // Session kept (a logout ends it locally whatever the server says).
    match endpoint {
        EndpointKind::Logout => {
            ensure!(
                manager.session().is_none(),
                "the local session outlived the logout"
            );
            if let Some(bytes) = stored(store) {
                ensure!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                    "the store holds a file that is not valid JSON after logout"
                );
            }
        }
        EndpointKind::Otp => {
            ensure!(
                manager.pending_challenge().is_some() || manager.session().is_some(),
                "the pending challenge was dropped"
            );
            store_valid(stored_before.as_deref(), store)?;
        }
        _ => {
            let now = manager.session().ok_or("the session was lost")?;
            let was = before.as_ref().ok_or("no session before")?;
            ensure!(
                now.same_sign_in(was),
                "the session is not the same sign-in any more"
            );
            ensure!(stored(store).is_some(), "the store was cleared");
            store_valid(stored_before.as_deref(), store)?;
        }
    }

    // The next call, without the fault.
    cell.next = next_call(&manager, target, endpoint, processed, code.as_deref())
        .await
        .map_err(|e| format!("the next call did not recover: {e}"))?;
    Ok(())
}

/// The faulted call.
async fn call(
    manager: &SessionManager,
    target: &FaultTarget<'_>,
    endpoint: EndpointKind,
    user: &Credentials,
    code: Option<&str>,
) -> Called {
    let result: Result<Option<u16>, AuthError> = match endpoint {
        EndpointKind::Login => manager.login(user).await.map(|_| None),
        EndpointKind::Otp => manager
            .verify_otp(&OtpCode::new(code.unwrap_or_default()))
            .await
            .map(|_| None),
        EndpointKind::Refresh => {
            // A transient failure with a still-valid token hands the old token out
            // (the session carries on); the failure itself is in the event.
            let mut events = manager.subscribe();
            let result = manager.refresh().await;
            let mut failed = None;
            while let Ok(event) = events.try_recv() {
                if let SessionEvent::RefreshFailed { error, .. } = event {
                    failed = Some(error);
                }
            }
            match failed {
                Some(error) => Err(error),
                None => result.map(|_| None),
            }
        }
        EndpointKind::CurrentUser => manager.current_user().await.map(|_| None),
        EndpointKind::Logout => manager.logout().await.map(|_| None),
        EndpointKind::Send => match target.send_target() {
            Some((_, path)) => match http::Request::get(path.as_str()).body(Bytes::new()) {
                Ok(request) => manager
                    .send(request)
                    .await
                    .map(|r| Some(r.status().as_u16())),
                Err(e) => Err(AuthError::protocol(format!("bad request: {e}"))),
            },
            None => Err(AuthError::protocol("no send target")),
        },
    };
    match result {
        Ok(Some(status)) => Called::Answered(status),
        Ok(None) => Called::Succeeded,
        Err(e) => Called::Failed(e),
    }
}

/// The same call again without the fault; returns a word for the table.
async fn next_call(
    manager: &SessionManager,
    target: &FaultTarget<'_>,
    endpoint: EndpointKind,
    processed: bool,
    code: Option<&str>,
) -> Result<&'static str, String> {
    let user = &target.target.user;
    match endpoint {
        EndpointKind::Login => {
            sign_in(manager, user).await?;
            Ok("ok")
        }
        EndpointKind::Otp => {
            if manager.session().is_some() {
                return Err("the faulted code step signed in".into());
            }
            // The code as the user would type it now: a time-based code from before a
            // fault that took seconds (a hang until the timeout) may have expired.
            let code = match target.target.otp_user.as_ref() {
                Some(otp) => OtpCode::new((otp.code)()),
                None => OtpCode::new(code.unwrap_or_default()),
            };
            match manager.verify_otp(&code).await {
                Ok(_) => Ok("ok"),
                // The server consumed the challenge with the spoiled answer: a new
                // sign-in must work.
                Err(first) if processed => {
                    let otp = target.target.otp_user.as_ref().ok_or("no OTP user")?;
                    match manager.login(&otp.credentials).await {
                        Ok(LoginOutcome::OtpRequired(_)) => {}
                        other => return Err(format!("login again gave {other:?}")),
                    }
                    let fresh = OtpCode::new((otp.code)());
                    manager.verify_otp(&fresh).await.map_err(|e| {
                        format!("code again gave {first:?}, a new sign-in gave {e:?}")
                    })?;
                    Ok("relogin")
                }
                Err(e) => Err(format!("the code again gave {e:?}")),
            }
        }
        EndpointKind::Refresh => match manager.refresh().await {
            Ok(_) => Ok("ok"),
            Err(AuthError::RefreshRejected) if processed && rotates_without_grace(target) => {
                // The server rotated on the request whose answer was lost: the old
                // refresh token is rightly dead. The session must end cleanly.
                ensure!(
                    manager.session().is_none(),
                    "a rejected refresh left the session in place"
                );
                Ok("lost")
            }
            Err(e) => Err(format!("refresh gave {e:?}")),
        },
        EndpointKind::CurrentUser => manager
            .current_user()
            .await
            .map(|_| "ok")
            .map_err(|e| format!("current_user gave {e:?}")),
        EndpointKind::Logout => {
            sign_in(manager, user).await?;
            manager
                .logout()
                .await
                .map(|_| "ok")
                .map_err(|e| format!("sign in and logout gave {e:?}"))
        }
        EndpointKind::Send => {
            let (_, path) = target.send_target().ok_or("no send target")?;
            let request = http::Request::get(path.as_str())
                .body(Bytes::new())
                .map_err(|e| e.to_string())?;
            let response = manager
                .send(request)
                .await
                .map_err(|e| format!("send gave {e:?}"))?;
            ensure!(
                response.status().is_success(),
                "send answered {}",
                response.status()
            );
            Ok("ok")
        }
    }
}

/// Whether a server may have rotated the refresh token for good on a processed
/// request: the target declares no grace period for a rotated-away token. (Whether it
/// rotates at all is the server's setting, not the adapter's capability: a server that
/// does not rotate simply lets the next refresh succeed.)
fn rotates_without_grace(target: &FaultTarget<'_>) -> bool {
    target.target.rotation_grace.is_none()
}

fn refresh_count(target: &FaultTarget<'_>) -> Option<usize> {
    let recorder = target.target.recorder?;
    let endpoint = target.target.endpoints.refresh.as_deref()?;
    Some(recorder.count(endpoint))
}

/// A short name of an error for the table.
fn short(error: &AuthError) -> String {
    match error {
        AuthError::Server {
            status,
            retry_after: Some(_),
            ..
        } => format!("{status}+RA"),
        AuthError::Server { status, .. } => format!("{status}"),
        AuthError::Transport { kind, .. } => match kind {
            TransportErrorKind::Io => "io".into(),
            TransportErrorKind::Connect => "connect".into(),
            TransportErrorKind::BodyTooLarge => "too-large".into(),
            TransportErrorKind::Request => "request".into(),
            _ => "transport".into(),
        },
        AuthError::Timeout => "timeout".into(),
        AuthError::Protocol { .. } => "protocol".into(),
        AuthError::RateLimited { .. } => "429".into(),
        other => format!("{other}"),
    }
}
