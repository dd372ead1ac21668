//! The lifecycle driver: applies a generated script to the pure
//! [`Lifecycle`] ([`check_lifecycle`]) or to a real
//! [`SessionManager`] over a [`ScriptedProvider`] ([`check_manager`]) and checks the
//! documented invariants after every step, the way tower-test's `mock::pair` hands a
//! middleware author both ends of a service. A script is a list of
//! [`LifecycleOp`]s; [`lifecycle_script`] generates them.
//!
//! Both drivers start signed in (tokens with [`DriverConfig::lifetime`] at a manual
//! clock's Unix time 1 800 000 000) and then apply each operation:
//!
//! | operation | what it does |
//! |---|---|
//! | [`Advance(d)`](LifecycleOp::Advance) | moves the manual clock forward by `d` |
//! | [`WantToken { callers }`](LifecycleOp::WantToken) | `callers` ask for a token at once (`access_token()`); on the pure machine, the first starts any refresh and the others arrive while it is in flight |
//! | [`Unauthorized { callers }`](LifecycleOp::Unauthorized) | the server revokes the current access token, then `callers` send a request with it at once: each gets a 401 and goes through refresh-and-replay |
//! | [`Refresh`](LifecycleOp::Refresh) | one explicit, forced refresh |
//! | [`Cancelled { callers }`](LifecycleOp::Cancelled) | `callers` start a forced refresh and give up (their tasks are aborted) at once |
//! | [`Answer(a)`](LifecycleOp::Answer) | the server answers the next refresh with `a`: rotate, keep the refresh token, a transient failure (timeout), or a definitive rejection |
//! | [`SignOut`](LifecycleOp::SignOut) | signs out |
//! | [`SignIn`](LifecycleOp::SignIn) | signs in again (fresh tokens) |
//!
//! The invariants ([`Invariant`]), checked after every operation (a run stops at the
//! first [`Violation`]):
//! - no access token is handed out at or after its expiry;
//! - at most one refresh is in flight;
//! - a refresh token that was rotated away, rejected or signed out is never sent again;
//! - after a sign-out or a definitive rejection no token is handed out and the store is
//!   empty;
//! - a transient refresh failure never drops a session whose token is still valid;
//! - every call ends (no refresh loop, no hang), with a token or an expected typed
//!   error (signed out, rejected, a transient failure once the token has expired, a
//!   token expired on arrival).
//!
//! ```
//! use authmux_testkit::driver::{self, DriverConfig};
//! use authmux_core::strategies::{LifecycleOp, RefreshAnswer, lifecycle_script};
//! use authmux_core::proptest::prelude::*;
//! use std::time::Duration;
//!
//! // A fixed script: a transient failure inside the refresh window keeps the session.
//! let script = [
//!     LifecycleOp::Answer(RefreshAnswer::Transient),
//!     LifecycleOp::Advance(Duration::from_secs(850)),
//!     LifecycleOp::WantToken { callers: 3 },
//!     LifecycleOp::Advance(Duration::from_secs(100)),
//!     LifecycleOp::WantToken { callers: 1 },
//! ];
//! let config = DriverConfig::default();
//! let outcome = driver::check_lifecycle(&script, &config).unwrap();
//! assert!(outcome.refreshes >= 2);
//! driver::check_manager_blocking(&script, &config).unwrap();
//!
//! // Generated scripts, against the pure machine and the manager.
//! proptest!(ProptestConfig::with_cases(16), |(script in lifecycle_script(20))| {
//!     driver::check_lifecycle(&script, &config)?;
//!     driver::check_manager_blocking(&script, &config)?;
//! });
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authmux_core::lifecycle::{Action, Input, Lifecycle, Phase, RefreshWindow, expired_on_arrival};
use authmux_core::proptest::prelude::*;
pub use authmux_core::strategies::{LifecycleOp, RefreshAnswer, lifecycle_script};
use authmux_core::strategies::{lifetime, refresh_window};
use authmux_core::{
    AccessToken, AuthError, Clock, Credentials, Expiry, ManualClock, MemoryStore, RefreshToken,
    Session, SessionManager, SessionStore, TokenSet,
};
use bytes::Bytes;
use url::Url;

use crate::scripted::ScriptedProvider;

/// The Unix time both drivers start at.
pub const START_UNIX: u64 = 1_800_000_000;

/// How the scripted server behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// Lifetime of every access token issued (`None`: unstated). Zero and sub-second
    /// lifetimes are allowed: such tokens are expired on arrival, never handed out.
    pub lifetime: Option<Duration>,
    /// The refresh window of the machine or manager.
    pub window: RefreshWindow,
    /// A spent refresh token presented to the server revokes the whole family.
    pub reuse_detection: bool,
    /// How long each refresh takes at the server (manager only; real time).
    pub refresh_delay: Duration,
}

impl Default for DriverConfig {
    /// 900-second tokens, the default window, no reuse detection, no delay.
    fn default() -> Self {
        Self {
            lifetime: Some(Duration::from_secs(900)),
            window: RefreshWindow::default(),
            reuse_detection: false,
            refresh_delay: Duration::ZERO,
        }
    }
}

/// A [`DriverConfig`] to generate: mostly long-lived tokens, sometimes zero,
/// sub-second or unknown lifetimes (the core's [`lifetime`] strategy), any
/// [`refresh_window`], reuse detection on or off, no delay.
pub fn driver_config() -> impl Strategy<Value = DriverConfig> {
    (
        prop_oneof![
            3 => Just(Some(Duration::from_secs(900))),
            2 => lifetime().prop_map(Some),
            1 => Just(None),
        ],
        refresh_window(),
        any::<bool>(),
    )
        .prop_map(|(lifetime, window, reuse_detection)| DriverConfig {
            lifetime,
            window,
            reuse_detection,
            refresh_delay: Duration::ZERO,
        })
}

/// The invariant a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// An access token was handed out at or after its expiry.
    ExpiredTokenHandedOut,
    /// Two refreshes were in flight at once.
    TwoRefreshesInFlight,
    /// A refresh token that was rotated away, rejected or signed out was sent again.
    SpentRefreshTokenSent,
    /// After a sign-out or a rejection, a token was handed out or the store kept the
    /// session.
    SessionOutlivedItsEnd,
    /// A transient refresh failure dropped a session whose token was still valid.
    ValidSessionLost,
    /// A call did not end (a refresh loop, a hang).
    NoProgress,
    /// A call failed with an error the script cannot explain.
    UnexpectedError,
}

/// Where and how a run broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The index of the operation in the script.
    pub step: usize,
    /// The operation.
    pub op: LifecycleOp,
    /// The invariant broken.
    pub invariant: Invariant,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} broken at step {} ({:?}): {}",
            self.invariant, self.step, self.op, self.detail
        )
    }
}

/// An error, so that `driver::check_lifecycle(..)?` works inside `proptest!` (proptest
/// turns any error into a failed case).
impl std::error::Error for Violation {}

/// What a run did, to check that a script exercised something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Tokens handed out to callers.
    pub tokens_handed_out: usize,
    /// Refreshes the server answered.
    pub refreshes: usize,
    /// Calls that ended with an (expected) error.
    pub errors: usize,
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(START_UNIX)
}

/// Whether `error` is one a script can explain: signed out, rejected, a transient
/// failure (only reaching a caller once the token expired), a token expired on arrival.
fn expected_error(error: &AuthError) -> bool {
    matches!(
        error,
        AuthError::NotSignedIn
            | AuthError::RefreshRejected
            | AuthError::SessionExpired
            | AuthError::Timeout
            | AuthError::Unauthorized { .. }
    ) || error.to_string() == expired_on_arrival().to_string()
}

// ----- the pure machine ---------------------------------------------------------

/// The scripted server as the pure driver sees it.
#[derive(Debug)]
struct Server {
    now: SystemTime,
    n: u64,
    lifetime: Option<Duration>,
    reuse_detection: bool,
    answers: VecDeque<RefreshAnswer>,
    expiry: HashMap<String, Option<SystemTime>>,
    live_refresh: HashSet<String>,
    dead_refresh: HashSet<String>,
    refreshes: usize,
}

impl Server {
    fn session(&mut self, refresh: Option<RefreshToken>) -> Session {
        self.n += 1;
        let access = AccessToken::new(format!("access-{}", self.n));
        let expiry = self.lifetime.map_or(Expiry::Unstated, Expiry::In);
        let tokens = TokenSet::new(access, refresh, expiry, self.now);
        self.expiry
            .insert(tokens.access.expose_secret().to_owned(), tokens.expires_at);
        if let Some(r) = &tokens.refresh {
            self.live_refresh.insert(r.expose_secret().to_owned());
        }
        Session::new(
            "scripted",
            Url::parse("https://api.example.test/").unwrap(),
            tokens,
        )
    }

    fn sign_in(&mut self) -> Session {
        self.n += 1;
        let refresh = RefreshToken::new(format!("refresh-{}", self.n));
        self.session(Some(refresh))
    }

    fn kill(&mut self, token: &str) {
        self.live_refresh.remove(token);
        self.dead_refresh.insert(token.to_owned());
    }

    fn refresh(&mut self, session: &Session) -> Result<Session, AuthError> {
        self.refreshes += 1;
        let presented = session
            .tokens
            .refresh
            .clone()
            .ok_or(AuthError::RefreshRejected)?;
        let token = presented.expose_secret().to_owned();
        if !self.live_refresh.contains(&token) {
            if self.reuse_detection && self.dead_refresh.contains(&token) {
                let live: Vec<String> = self.live_refresh.drain().collect();
                self.dead_refresh.extend(live);
            }
            return Err(AuthError::RefreshRejected);
        }
        match self.answers.pop_front().unwrap_or(RefreshAnswer::Rotate) {
            RefreshAnswer::Transient => Err(AuthError::Timeout),
            RefreshAnswer::Reject => {
                self.kill(&token);
                Err(AuthError::RefreshRejected)
            }
            RefreshAnswer::Keep => Ok(session.with_tokens(self.session(Some(presented)).tokens)),
            RefreshAnswer::Rotate => {
                self.kill(&token);
                self.n += 1;
                let fresh = RefreshToken::new(format!("refresh-{}", self.n));
                Ok(session.with_tokens(self.session(Some(fresh)).tokens))
            }
        }
    }
}

/// The pure driver: the machine, the server, and what the invariants need.
struct Pure {
    machine: Lifecycle,
    server: Server,
    outcome: Outcome,
    step: usize,
    op: LifecycleOp,
    /// A caller stopped waiting (sign-out or rejection happened).
    ended: bool,
}

/// What one caller ended with.
enum Ended {
    Token,
    Error(AuthError),
    /// Waiting for the refresh in flight.
    Waiting,
}

impl Pure {
    fn violation(&self, invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            step: self.step,
            op: self.op.clone(),
            invariant,
            detail: detail.into(),
        }
    }

    /// Performs the actions of one step; returns how the caller ended, refreshing in
    /// place when the caller owns the pipeline and `run_refresh` is set.
    fn perform(&mut self, actions: Vec<Action>) -> Result<Ended, Violation> {
        let mut ended = Ended::Waiting;
        let mut refresh_ahead = false;
        for action in actions {
            match action {
                Action::HandOut(token) => {
                    let expiry = self
                        .server
                        .expiry
                        .get(token.expose_secret())
                        .copied()
                        .flatten();
                    if expiry.is_some_and(|e| self.server.now >= e) {
                        return Err(self.violation(
                            Invariant::ExpiredTokenHandedOut,
                            format!("{token:?} expires at {expiry:?}, now {:?}", self.server.now),
                        ));
                    }
                    self.outcome.tokens_handed_out += 1;
                    ended = Ended::Token;
                }
                Action::Fail(e) => ended = Ended::Error(e),
                Action::RefreshAhead => refresh_ahead = true,
                Action::NeedRefresh
                | Action::Persist(_)
                | Action::ClearStore
                | Action::Emit(_)
                | Action::StartRefresh(_) => {}
            }
        }
        if refresh_ahead {
            // The background refresh: nobody waits for its answer.
            let _ = self.pipeline(false, None)?;
        }
        Ok(ended)
    }

    /// The single refresh pipeline: `BeginRefresh`, and, when this caller owns it, the
    /// server's answer (unless `hold` keeps it in flight for the concurrent callers).
    fn pipeline(
        &mut self,
        forced: bool,
        hold: Option<&mut Option<Session>>,
    ) -> Result<Ended, Violation> {
        let refreshing_before = self.machine.phase() == Phase::Refreshing;
        let actions = self.machine.step(Input::BeginRefresh {
            now: self.server.now,
            forced,
        });
        let mut start = None;
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::StartRefresh(session) => start = Some(session),
                Action::NeedRefresh => return Ok(Ended::Waiting),
                other => rest.push(other),
            }
        }
        let Some(session) = start else {
            return self.perform(rest);
        };
        if refreshing_before {
            return Err(self.violation(
                Invariant::TwoRefreshesInFlight,
                "StartRefresh while Refreshing",
            ));
        }
        if let Some(r) = &session.tokens.refresh
            && self.server.dead_refresh.contains(r.expose_secret())
        {
            return Err(self.violation(Invariant::SpentRefreshTokenSent, format!("{r:?}")));
        }
        if let Some(slot) = hold {
            *slot = Some(session);
            return Ok(Ended::Waiting);
        }
        self.finish_refresh(&session)
    }

    fn finish_refresh(&mut self, session: &Session) -> Result<Ended, Violation> {
        let valid_before = !session.tokens.is_expired_at(self.server.now);
        let answer = self.server.refresh(session);
        let transient = matches!(&answer, Err(e) if !matches!(e, AuthError::RefreshRejected));
        let rejected = matches!(answer, Err(AuthError::RefreshRejected));
        let input = match answer {
            Ok(session) => Input::RefreshSucceeded {
                session,
                now: self.server.now,
                jitter: 0.5,
            },
            Err(error) => Input::RefreshFailed {
                error,
                now: self.server.now,
                jitter: 0.5,
            },
        };
        let actions = self.machine.step(input);
        let cleared = actions.iter().any(|a| matches!(a, Action::ClearStore));
        let ended = self.perform(actions)?;
        if transient && valid_before && self.machine.session().is_none() {
            return Err(self.violation(
                Invariant::ValidSessionLost,
                "a transient failure ended the session",
            ));
        }
        if rejected {
            self.ended = true;
            if self.machine.session().is_some() || !cleared {
                return Err(self.violation(
                    Invariant::SessionOutlivedItsEnd,
                    "a rejection left the session or the store",
                ));
            }
        }
        Ok(ended)
    }

    /// One caller's `access_token()`: at most a few rounds, else no progress.
    fn want_token(&mut self) -> Result<Ended, Violation> {
        for _ in 0..4 {
            let actions = self.machine.step(Input::TokenWanted {
                now: self.server.now,
            });
            if actions.iter().any(|a| matches!(a, Action::NeedRefresh)) {
                match self.pipeline(false, None)? {
                    Ended::Waiting => continue,
                    ended => return Ok(ended),
                }
            }
            return self.perform(actions);
        }
        Err(self.violation(
            Invariant::NoProgress,
            "a caller asked four times without an answer",
        ))
    }

    fn check_ended(&mut self, ended: Ended) -> Result<(), Violation> {
        match ended {
            Ended::Token | Ended::Waiting => Ok(()),
            Ended::Error(e) if expected_error(&e) => {
                self.outcome.errors += 1;
                Ok(())
            }
            Ended::Error(e) => Err(self.violation(Invariant::UnexpectedError, format!("{e:?}"))),
        }
    }

    /// `callers` at once: the first may start a refresh, held in flight while the
    /// others arrive, then answered; then the waiting callers ask again.
    fn concurrent(
        &mut self,
        callers: u8,
        first: impl Fn(&mut Self, Option<&mut Option<Session>>) -> Result<Ended, Violation>,
    ) -> Result<(), Violation> {
        let mut held = None;
        let mut waiting = 0;
        match first(self, Some(&mut held))? {
            Ended::Waiting => waiting += 1,
            ended => self.check_ended(ended)?,
        }
        for _ in 1..callers {
            // The others arrive while the first one's refresh (if any) is in flight.
            match first(self, None)? {
                Ended::Waiting => waiting += 1,
                ended => self.check_ended(ended)?,
            }
        }
        if let Some(session) = held {
            let ended = self.finish_refresh(&session)?;
            self.check_ended(ended)?;
        }
        for _ in 0..waiting {
            let ended = self.want_token()?;
            self.check_ended(ended)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &LifecycleOp) -> Result<(), Violation> {
        match *op {
            LifecycleOp::Advance(d) => self.server.now += d,
            LifecycleOp::WantToken { callers } => {
                self.concurrent(callers, |me, hold| {
                    let actions = me.machine.step(Input::TokenWanted { now: me.server.now });
                    if actions.iter().any(|a| matches!(a, Action::NeedRefresh)) {
                        me.pipeline(false, hold)
                    } else {
                        me.perform(actions)
                    }
                })?;
            }
            LifecycleOp::Unauthorized { callers } => {
                let Some(rejected) = self
                    .machine
                    .session()
                    .map(|s| s.tokens.access.fingerprint())
                else {
                    return Ok(());
                };
                self.concurrent(callers, |me, hold| {
                    let actions = me.machine.step(Input::Unauthorized {
                        now: me.server.now,
                        rejected,
                    });
                    if actions.iter().any(|a| matches!(a, Action::NeedRefresh)) {
                        me.pipeline(true, hold)
                    } else {
                        me.perform(actions)
                    }
                })?;
            }
            LifecycleOp::Refresh | LifecycleOp::Cancelled { .. } => {
                let ended = self.pipeline(true, None)?;
                self.check_ended(ended)?;
            }
            LifecycleOp::Answer(a) => self.server.answers.push_back(a),
            LifecycleOp::SignOut => {
                if let Some(r) = self
                    .machine
                    .session()
                    .and_then(|s| s.tokens.refresh.clone())
                {
                    self.server.kill(r.expose_secret());
                }
                let actions = self.machine.step(Input::SignOut);
                if !actions.iter().any(|a| matches!(a, Action::ClearStore)) {
                    return Err(
                        self.violation(Invariant::SessionOutlivedItsEnd, "sign-out left the store")
                    );
                }
                self.ended = true;
            }
            LifecycleOp::SignIn => {
                let session = self.server.sign_in();
                self.machine.step(Input::SignedIn {
                    session,
                    jitter: 0.5,
                    persist: true,
                });
                self.ended = false;
            }
        }
        if self.ended && self.machine.session().is_none() {
            let again = self.machine.step(Input::TokenWanted {
                now: self.server.now,
            });
            if again.iter().any(|a| matches!(a, Action::HandOut(_))) {
                return Err(
                    self.violation(Invariant::SessionOutlivedItsEnd, "a token after the end")
                );
            }
        }
        Ok(())
    }
}

/// Applies `script` to the pure [`Lifecycle`] and a synchronous model of the scripted
/// server, checking every invariant in the [module docs](self) after each operation.
pub fn check_lifecycle(
    script: &[LifecycleOp],
    config: &DriverConfig,
) -> Result<Outcome, Violation> {
    let mut server = Server {
        now: start(),
        n: 0,
        lifetime: config.lifetime,
        reuse_detection: config.reuse_detection,
        answers: VecDeque::new(),
        expiry: HashMap::new(),
        live_refresh: HashSet::new(),
        dead_refresh: HashSet::new(),
        refreshes: 0,
    };
    let mut machine = Lifecycle::new(true, config.window);
    machine.step(Input::SignedIn {
        session: server.sign_in(),
        jitter: 0.5,
        persist: true,
    });
    let mut pure = Pure {
        machine,
        server,
        outcome: Outcome::default(),
        step: 0,
        op: LifecycleOp::SignIn,
        ended: false,
    };
    for (step, op) in script.iter().enumerate() {
        pure.step = step;
        pure.op = op.clone();
        pure.apply(op)?;
    }
    pure.outcome.refreshes = pure.server.refreshes;
    Ok(pure.outcome)
}

// ----- the session manager ---------------------------------------------------------

/// How long one operation may take before the run reports [`Invariant::NoProgress`].
const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// Applies `script` to a [`SessionManager`] over a [`ScriptedProvider`], a
/// [`MemoryStore`] and a [`ManualClock`], with concurrent callers as tokio tasks,
/// checking every invariant in the [module docs](self) after each operation. Needs a
/// multi-threaded tokio runtime (see [`check_manager_blocking`]).
pub async fn check_manager(
    script: &[LifecycleOp],
    config: &DriverConfig,
) -> Result<Outcome, Violation> {
    let clock = ManualClock::at_unix(START_UNIX);
    let mut provider = ScriptedProvider::new(clock.clone());
    provider.lifetime = config.lifetime;
    provider.reuse_detection = config.reuse_detection;
    provider.refresh_delay = config.refresh_delay;
    let store = MemoryStore::new();
    let manager = SessionManager::builder(Arc::new(provider.clone()))
        .store(store.clone())
        .clock(clock.clone())
        .refresh_window(config.window)
        .build();
    let credentials = Credentials::new("u@example.test", "right");
    let mut outcome = Outcome::default();
    let fail = |step: usize, op: &LifecycleOp, invariant, detail: String| Violation {
        step,
        op: op.clone(),
        invariant,
        detail,
    };
    manager.login(&credentials).await.map_err(|e| {
        fail(
            0,
            &LifecycleOp::SignIn,
            Invariant::UnexpectedError,
            format!("login: {e:?}"),
        )
    })?;
    // Whether the session may legitimately be gone: signed out, or rejected.
    let mut may_be_gone = false;
    for (step, op) in script.iter().enumerate() {
        let fail = |invariant, detail: String| fail(step, op, invariant, detail);
        let now = clock.now();
        let valid_before = manager
            .session()
            .is_some_and(|s| !s.tokens.is_expired_at(now));
        let rejections_before = provider.record().rejections;
        let run = async {
            let mut results: Vec<Result<AccessToken, AuthError>> = Vec::new();
            match *op {
                LifecycleOp::Advance(d) => clock.advance(d),
                LifecycleOp::WantToken { callers } => {
                    let tasks: Vec<_> = (0..callers)
                        .map(|_| {
                            let m = manager.clone();
                            tokio::spawn(async move { m.access_token().await })
                        })
                        .collect();
                    for t in tasks {
                        results.push(t.await.expect("caller task"));
                    }
                }
                LifecycleOp::Unauthorized { callers } => {
                    if let Some(s) = manager.session() {
                        provider.revoke_access(s.tokens.access.expose_secret());
                    }
                    let tasks: Vec<_> = (0..callers)
                        .map(|_| {
                            let m = manager.clone();
                            tokio::spawn(async move {
                                m.send(
                                    http::Request::get("/r")
                                        .body(Bytes::new())
                                        .expect("request"),
                                )
                                .await
                                .map(|_| ())
                            })
                        })
                        .collect();
                    for t in tasks {
                        if let Err(e) = t.await.expect("caller task") {
                            results.push(Err(e));
                        }
                    }
                }
                LifecycleOp::Refresh => results.push(manager.refresh().await),
                LifecycleOp::Cancelled { callers } => {
                    let tasks: Vec<_> = (0..callers)
                        .map(|_| {
                            let m = manager.clone();
                            tokio::spawn(async move { m.refresh().await })
                        })
                        .collect();
                    tokio::task::yield_now().await;
                    for task in &tasks {
                        task.abort();
                    }
                    for task in tasks {
                        if let Ok(result) = task.await {
                            results.push(result);
                        }
                    }
                }
                LifecycleOp::Answer(a) => provider.script([a]),
                LifecycleOp::SignOut => {
                    let _ = manager.logout().await;
                }
                LifecycleOp::SignIn => {
                    let _ = manager.login(&credentials).await;
                }
            }
            // A background refresh (refresh-ahead) may still run: let it land.
            manager.idle().await;
            results
        };
        let results = tokio::time::timeout(OP_TIMEOUT, run).await.map_err(|_| {
            fail(
                Invariant::NoProgress,
                format!("no answer within {OP_TIMEOUT:?}"),
            )
        })?;
        match op {
            LifecycleOp::SignOut => {
                may_be_gone = true;
                let stored = store
                    .load()
                    .await
                    .map_err(|e| fail(Invariant::UnexpectedError, format!("{e:?}")))?;
                if stored.is_some() || manager.access_token().await.is_ok() {
                    return Err(fail(
                        Invariant::SessionOutlivedItsEnd,
                        "after sign-out".into(),
                    ));
                }
            }
            LifecycleOp::SignIn => may_be_gone = false,
            _ => {}
        }
        if provider.record().rejections > rejections_before {
            may_be_gone = true;
        }
        let now = clock.now();
        for result in &results {
            match result {
                Ok(token) => {
                    let expiry = provider
                        .record()
                        .issued_access
                        .get(token.expose_secret())
                        .copied()
                        .flatten();
                    if expiry.is_some_and(|e| now >= e) {
                        return Err(fail(
                            Invariant::ExpiredTokenHandedOut,
                            format!("expires at {expiry:?}, now {now:?}"),
                        ));
                    }
                    outcome.tokens_handed_out += 1;
                }
                Err(AuthError::RefreshRejected) => {
                    may_be_gone = true;
                    outcome.errors += 1;
                }
                Err(e) if expected_error(e) => outcome.errors += 1,
                Err(e) => return Err(fail(Invariant::UnexpectedError, format!("{e:?}"))),
            }
        }
        {
            let record = provider.record();
            if record.max_in_flight > 1 {
                return Err(fail(
                    Invariant::TwoRefreshesInFlight,
                    format!("{} refreshes in flight", record.max_in_flight),
                ));
            }
            if record.spent_presented > 0 {
                return Err(fail(
                    Invariant::SpentRefreshTokenSent,
                    format!(
                        "{} spent refresh token(s) presented",
                        record.spent_presented
                    ),
                ));
            }
        }
        if manager.session().is_none() {
            if !may_be_gone && valid_before {
                return Err(fail(
                    Invariant::ValidSessionLost,
                    "the session is gone without a sign-out or a rejection".into(),
                ));
            }
            let stored = store
                .load()
                .await
                .map_err(|e| fail(Invariant::UnexpectedError, format!("{e:?}")))?;
            if stored.is_some() || manager.access_token().await.is_ok() {
                return Err(fail(
                    Invariant::SessionOutlivedItsEnd,
                    "the store kept the session".into(),
                ));
            }
        }
    }
    outcome.refreshes = provider.record().refresh_calls;
    Ok(outcome)
}

/// [`check_manager`] on a fresh two-worker tokio runtime (for `proptest!` bodies and
/// plain `#[test]`s).
pub fn check_manager_blocking(
    script: &[LifecycleOp],
    config: &DriverConfig,
) -> Result<Outcome, Violation> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(check_manager(script, config))
}
