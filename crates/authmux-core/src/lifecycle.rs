//! The session lifecycle as a pure state machine: no I/O, no clock, no randomness.
//! Time and jitter come in with each [`Input`]; the new [`Phase`] and a list of
//! [`Action`]s come out. The [`SessionManager`](crate::SessionManager) is a thin
//! driver that performs the actions (calls the provider, writes the store, sends
//! events), so every rule here can be property-tested without a network.
//!
//! ```text
//!               SignedIn                 TokenWanted (in window / expired)
//! Anonymous ───────────────▶ Active ─────────────────────────▶ (refresh needed)
//!     │ OtpRequired           ▲  │ BeginRefresh                      │
//!     ▼                       │  ▼                                   │
//! AwaitingOtp ──SignedIn──▶   │ Refreshing ──RefreshFailed(rejected)──▶ SignedOut
//!                             │  │                                       ▲
//!          RefreshSucceeded / │  │ RefreshFailed(transient): back to     │ SignOut
//!          RefreshFailed(transient)  Active, session kept                │
//! Active ── expired, cannot refresh ──▶ Expired ─────────────────────────┘
//! ```
//!
//! Refresh-ahead: from the refresh point (the [`RefreshWindow`]) until expiry, a token
//! wanted is handed out at once together with [`Action::RefreshAhead`] (start one
//! refresh in the background); only callers whose token has expired (or was rejected
//! by a 401) wait for a refresh. After a transient refresh failure, while the token is
//! still valid, the next background attempt waits a jittered, growing delay
//! ([`RefreshBackoff`]); once the token has expired, callers wait for one attempt and
//! get its error.
//!
//! Rules the machine enforces (each is a property test in `tests/lifecycle_props.rs`):
//! - An access token is handed out only before its expiry.
//! - At most one refresh is in flight: `StartRefresh` is never emitted in `Refreshing`.
//! - A refresh token that was rotated away is never sent again (the machine remembers
//!   fingerprints of spent tokens and refuses to start a refresh with one).
//! - After sign-out or a definitive refresh rejection, no token is handed out and the
//!   store is cleared.
//! - A transient refresh failure keeps the session.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::AuthError;
use crate::secret::{AccessToken, Fingerprint};
use crate::session::Session;
use crate::token::TokenSet;

/// When to refresh proactively: `lead` before expiry, where `lead` is the larger of
/// `min_lead` and `fraction` of the token's lifetime, stretched by up to `jitter`
/// (a fraction of `lead`), and never more than half the lifetime (so a 5-second token
/// is refreshed after 2.5 s, not on every call).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshWindow {
    /// The smallest lead. Default 60 s.
    pub min_lead: Duration,
    /// The lead as a fraction of the lifetime. Default 0.10.
    pub fraction: f64,
    /// Up to this fraction of `lead` is added at random, so that many clients do not
    /// refresh in the same instant. Default 0.10.
    pub jitter: f64,
}

impl Default for RefreshWindow {
    fn default() -> Self {
        Self {
            min_lead: Duration::from_secs(60),
            fraction: 0.10,
            jitter: 0.10,
        }
    }
}

impl RefreshWindow {
    /// When to start refreshing `tokens`, given a jitter draw in `[0, 1)`. `None` when
    /// the expiry is unknown (refresh only on 401).
    pub fn refresh_at(&self, tokens: &TokenSet, jitter_draw: f64) -> Option<SystemTime> {
        let expires_at = tokens.expires_at?;
        let lifetime = tokens.lifetime().unwrap_or(Duration::ZERO);
        let lead = self
            .min_lead
            .max(lifetime.mul_f64(self.fraction.clamp(0.0, 1.0)));
        let lead = lead.mul_f64(1.0 + self.jitter.clamp(0.0, 1.0) * jitter_draw.clamp(0.0, 1.0));
        let lead = lead.min(lifetime / 2);
        Some(expires_at.checked_sub(lead).unwrap_or(expires_at))
    }
}

/// How long to wait before the next background refresh after transient failures,
/// while the token is still valid: the `n`-th consecutive failure waits
/// `min(max, base * 2^(n-1))`, scaled by a jitter draw into `[50 %, 100 %]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBackoff {
    /// The first delay. Default 1 s.
    pub base: Duration,
    /// No delay is longer. Default 60 s.
    pub max: Duration,
}

impl Default for RefreshBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RefreshBackoff {
    /// The delay after `failures` consecutive failures (at least 1), given a jitter
    /// draw in `[0, 1)`.
    pub fn delay(&self, failures: u32, jitter_draw: f64) -> Duration {
        let doubled = self
            .base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(31)));
        doubled
            .min(self.max)
            .mul_f64(0.5 + 0.5 * jitter_draw.clamp(0.0, 1.0))
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Never signed in (or nothing was restored).
    Anonymous,
    /// A login is waiting for its one-time code.
    AwaitingOtp,
    /// Signed in.
    Active,
    /// Signed in, and one refresh is in flight.
    Refreshing,
    /// The token expired and could not be refreshed: sign in again.
    Expired,
    /// Signed out, or the server ended the session.
    SignedOut,
}

/// How a refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshFailure {
    /// Network, timeout, 5xx, 429: the session may still be good; try again later.
    Transient,
    /// The server refused the refresh token: the session is over.
    Rejected,
}

impl RefreshFailure {
    /// Classifies a provider error.
    pub fn of(error: &AuthError) -> Self {
        match error {
            AuthError::RefreshRejected
            | AuthError::InvalidCredentials
            | AuthError::AccountDisabled
            | AuthError::SessionExpired
            | AuthError::NotSignedIn
            | AuthError::Unauthorized { .. }
            | AuthError::Forbidden { .. } => RefreshFailure::Rejected,
            _ => RefreshFailure::Transient,
        }
    }
}

/// What happens to the session, for subscribers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session began (login, OTP, signup, OAuth, or restored tokens).
    SignedIn {
        /// The dialect.
        dialect: String,
        /// The user's id, when known.
        user_id: Option<String>,
    },
    /// A login is waiting for a one-time code.
    OtpRequired,
    /// New tokens arrived.
    Refreshed {
        /// Their expiry, when known.
        expires_at: Option<SystemTime>,
    },
    /// Another process refreshed the shared session; its tokens were adopted.
    Adopted,
    /// A refresh failed; `session_kept` says whether the session survived it.
    RefreshFailed {
        /// The error.
        error: AuthError,
        /// True for transient failures: the session is still there.
        session_kept: bool,
    },
    /// The token expired and cannot be refreshed.
    Expired,
    /// The session ended (sign-out or rejected refresh).
    SignedOut,
}

/// What happened, fed into the machine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A session began (login, OTP, hydration, restore). `jitter` is a draw in `[0, 1)`.
    SignedIn {
        /// The session.
        session: Session,
        /// Jitter draw for the refresh window.
        jitter: f64,
        /// Whether to persist it (false when it was just loaded from the store).
        persist: bool,
    },
    /// A login asked for a one-time code.
    OtpRequired,
    /// A caller wants a token at `now`.
    TokenWanted {
        /// The current time.
        now: SystemTime,
    },
    /// The server answered 401 to a request authorized with `rejected`.
    Unauthorized {
        /// The current time.
        now: SystemTime,
        /// Fingerprint of the access token the server rejected.
        rejected: Fingerprint,
    },
    /// The one refresh pipeline is about to refresh (only the single-flight owner sends
    /// this). `forced` is set for an explicit `refresh()` or a 401.
    BeginRefresh {
        /// The current time.
        now: SystemTime,
        /// Refresh even though the token is still fresh.
        forced: bool,
    },
    /// The refresh answered with a session.
    RefreshSucceeded {
        /// The refreshed session.
        session: Session,
        /// The current time: a token already expired on arrival is kept (its refresh
        /// token may be the only live one) but never handed out.
        now: SystemTime,
        /// Jitter draw for the refresh window.
        jitter: f64,
    },
    /// The refresh failed.
    RefreshFailed {
        /// The error.
        error: AuthError,
        /// The current time.
        now: SystemTime,
        /// Jitter draw in `[0, 1)` for the backoff before the next background attempt.
        jitter: f64,
    },
    /// Another process stored a newer session (read after taking the store lock, or
    /// found when a write lost its compare-and-swap).
    Adopt {
        /// The stored session.
        session: Session,
        /// The current time: an expired access token is adopted (for its refresh
        /// token) but not handed out.
        now: SystemTime,
        /// Jitter draw for the refresh window.
        jitter: f64,
    },
    /// The shared store was emptied by another process (a sign-out elsewhere): the
    /// session ends here too, without touching the store.
    EndedElsewhere,
    /// The user signs out (the server call, if any, is the driver's business).
    SignOut,
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Give this token to the caller.
    HandOut(AccessToken),
    /// A refresh is needed before a token can be handed out: go through the single
    /// refresh pipeline and wait for it.
    NeedRefresh,
    /// The token handed out is in its refresh window: start one refresh in the
    /// background (through the same single pipeline); nobody waits for it.
    RefreshAhead,
    /// Call the provider's refresh with this session (the pipeline owner only).
    StartRefresh(Session),
    /// Save this session to the store.
    Persist(Session),
    /// Remove the session from the store.
    ClearStore,
    /// Tell subscribers.
    Emit(SessionEvent),
    /// Return this error to the caller.
    Fail(AuthError),
}

/// The state machine. Cheap to clone; holds the current session.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: Phase,
    session: Option<Arc<Session>>,
    refresh_at: Option<SystemTime>,
    /// No background refresh before this (backing off after transient failures).
    retry_at: Option<SystemTime>,
    /// Consecutive transient refresh failures.
    failures: u32,
    can_refresh: bool,
    tokenless_refresh: bool,
    window: RefreshWindow,
    backoff: RefreshBackoff,
    spent: BTreeSet<Fingerprint>,
}

impl Lifecycle {
    /// A machine with no session. `can_refresh` is the provider's
    /// [`Capabilities::refresh`](crate::Capabilities::refresh).
    pub fn new(can_refresh: bool, window: RefreshWindow) -> Self {
        Self {
            phase: Phase::Anonymous,
            session: None,
            refresh_at: None,
            retry_at: None,
            failures: 0,
            can_refresh,
            tokenless_refresh: false,
            window,
            backoff: RefreshBackoff::default(),
            spent: BTreeSet::new(),
        }
    }

    /// The same machine with another backoff after transient refresh failures.
    #[must_use]
    pub fn with_backoff(mut self, backoff: RefreshBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Lets a session without a refresh token refresh too (the provider's
    /// [`Capabilities::refresh_without_token`](crate::Capabilities::refresh_without_token)).
    #[must_use]
    pub fn with_tokenless_refresh(mut self, allowed: bool) -> Self {
        self.tokenless_refresh = allowed;
        self
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current session, if signed in.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_deref()
    }

    /// The current session, shared (no copy).
    pub fn session_arc(&self) -> Option<&Arc<Session>> {
        self.session.as_ref()
    }

    /// No background refresh is started before this time (after transient failures).
    pub fn retry_at(&self) -> Option<SystemTime> {
        self.retry_at
    }

    /// When a proactive refresh becomes due (`None`: never proactively).
    pub fn refresh_at(&self) -> Option<SystemTime> {
        self.refresh_at
    }

    /// Until when the current token may be handed out without asking the machine
    /// again: the point where a background refresh becomes due (the refresh point, or
    /// later while backing off), capped at the expiry; the expiry when no refresh can
    /// start (none possible, or one already in flight). `None` means "no limit known"
    /// (unknown expiry). Used by the manager's lock-free hot path.
    pub fn fresh_until(&self) -> Option<SystemTime> {
        let expires_at = self.usable_until();
        if self.phase == Phase::Refreshing || !self.can_refresh_now() {
            return expires_at;
        }
        let due = match (self.refresh_at, self.retry_at) {
            (Some(at), Some(retry)) => Some(at.max(retry)),
            (at, None) => at,
            (None, Some(_)) => None,
        };
        match (due, expires_at) {
            (Some(due), Some(exp)) => Some(due.min(exp)),
            (due, None) => due,
            (None, exp) => exp,
        }
    }

    /// Until when the current token may be handed out at all (its expiry); between
    /// [`Lifecycle::fresh_until`] and this, it is handed out with a background refresh.
    pub fn usable_until(&self) -> Option<SystemTime> {
        self.session.as_ref().and_then(|s| s.tokens.expires_at)
    }

    /// Whether `fingerprint` belongs to a refresh token that was rotated away.
    pub fn is_spent(&self, fingerprint: Fingerprint) -> bool {
        self.spent.contains(&fingerprint)
    }

    /// Whether the session has a refresh token that may still be sent (or needs none).
    fn can_refresh_now(&self) -> bool {
        self.can_refresh
            && self
                .session
                .as_ref()
                .is_some_and(|s| match &s.tokens.refresh {
                    Some(r) => !self.spent.contains(&r.fingerprint()),
                    None => self.tokenless_refresh,
                })
    }

    fn install(&mut self, session: Session, jitter: f64) {
        self.refresh_at = self.window.refresh_at(&session.tokens, jitter);
        self.session = Some(Arc::new(session));
        self.phase = Phase::Active;
        self.retry_at = None;
        self.failures = 0;
    }

    fn end(&mut self, phase: Phase) -> Vec<Action> {
        self.session = None;
        self.refresh_at = None;
        self.retry_at = None;
        self.failures = 0;
        self.phase = phase;
        vec![
            Action::ClearStore,
            Action::Emit(if phase == Phase::Expired {
                SessionEvent::Expired
            } else {
                SessionEvent::SignedOut
            }),
        ]
    }

    fn no_session_error(&self) -> AuthError {
        match self.phase {
            Phase::Expired => AuthError::SessionExpired,
            Phase::AwaitingOtp => AuthError::OtpRequired,
            _ => AuthError::NotSignedIn,
        }
    }

    /// Feeds one input; returns the actions to perform, in order.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::SignedIn {
                session,
                jitter,
                persist,
            } => {
                let event = SessionEvent::SignedIn {
                    dialect: session.dialect.clone(),
                    user_id: session.user.as_ref().and_then(|u| u.id.clone()),
                };
                self.install(session.clone(), jitter);
                let mut actions = Vec::new();
                if persist {
                    actions.push(Action::Persist(session));
                }
                actions.push(Action::Emit(event));
                actions
            }
            Input::OtpRequired => {
                self.session = None;
                self.refresh_at = None;
                self.retry_at = None;
                self.failures = 0;
                self.phase = Phase::AwaitingOtp;
                vec![Action::Emit(SessionEvent::OtpRequired)]
            }
            Input::TokenWanted { now } => self.token_wanted(now),
            Input::Unauthorized { now, rejected } => {
                let Some(session) = &self.session else {
                    return vec![Action::Fail(self.no_session_error())];
                };
                if session.tokens.access.fingerprint() != rejected {
                    // Another refresh already replaced the rejected token: use the new one.
                    return self.token_after_unauthorized(now);
                }
                if self.phase == Phase::Refreshing || self.can_refresh_now() {
                    vec![Action::NeedRefresh]
                } else {
                    let mut actions = self.end(Phase::Expired);
                    actions.push(Action::Fail(AuthError::SessionExpired));
                    actions
                }
            }
            Input::BeginRefresh { now, forced } => {
                if self.phase == Phase::Refreshing {
                    // Never two at once: the driver must wait for the one in flight.
                    return vec![Action::NeedRefresh];
                }
                let Some(session) = &self.session else {
                    return vec![Action::Fail(self.no_session_error())];
                };
                let valid = !session.tokens.is_expired_at(now);
                let backing_off = self.retry_at.is_some_and(|at| now < at);
                if !forced && valid && (self.fresh_at(now) || backing_off) {
                    return vec![Action::HandOut(session.tokens.access.clone())];
                }
                if !self.can_refresh {
                    return vec![Action::Fail(AuthError::Unsupported {
                        capability: "refresh",
                    })];
                }
                if !self.can_refresh_now() {
                    // No refresh token, or only a spent one: it must never be sent again.
                    if session.tokens.is_expired_at(now) || forced {
                        let mut actions = self.end(Phase::Expired);
                        actions.push(Action::Fail(AuthError::SessionExpired));
                        return actions;
                    }
                    return vec![Action::HandOut(session.tokens.access.clone())];
                }
                let session = Session::clone(session);
                self.phase = Phase::Refreshing;
                vec![Action::StartRefresh(session)]
            }
            Input::RefreshSucceeded {
                session,
                now,
                jitter,
            } => {
                if self.phase != Phase::Refreshing {
                    // Signed out (or restarted) while the refresh was in flight: drop it.
                    return vec![Action::Fail(self.no_session_error())];
                }
                if let Some(old) = self
                    .session
                    .as_ref()
                    .and_then(|s| s.tokens.refresh.as_ref())
                {
                    let rotated = session.tokens.refresh.as_ref() != Some(old);
                    if rotated {
                        self.spent.insert(old.fingerprint());
                    }
                }
                let expires_at = session.tokens.expires_at;
                let token = session.tokens.access.clone();
                let expired = session.tokens.is_expired_at(now);
                self.install(session.clone(), jitter);
                vec![
                    Action::Persist(session),
                    Action::Emit(SessionEvent::Refreshed { expires_at }),
                    if expired {
                        // Kept (the new refresh token may be the only live one), never
                        // handed out; the next call decides again.
                        Action::Fail(expired_on_arrival())
                    } else {
                        Action::HandOut(token)
                    },
                ]
            }
            Input::RefreshFailed { error, now, jitter } => {
                if self.phase != Phase::Refreshing {
                    return vec![Action::Fail(self.no_session_error())];
                }
                match RefreshFailure::of(&error) {
                    RefreshFailure::Rejected => {
                        if let Some(old) = self
                            .session
                            .as_ref()
                            .and_then(|s| s.tokens.refresh.as_ref())
                        {
                            self.spent.insert(old.fingerprint());
                        }
                        let mut actions = vec![Action::Emit(SessionEvent::RefreshFailed {
                            error: error.clone(),
                            session_kept: false,
                        })];
                        actions.extend(self.end(Phase::SignedOut));
                        actions.push(Action::Fail(AuthError::RefreshRejected));
                        actions
                    }
                    RefreshFailure::Transient => {
                        self.phase = Phase::Active;
                        self.failures = self.failures.saturating_add(1);
                        self.retry_at = Some(now + self.backoff.delay(self.failures, jitter));
                        let mut actions = vec![Action::Emit(SessionEvent::RefreshFailed {
                            error: error.clone(),
                            session_kept: true,
                        })];
                        match &self.session {
                            // Still valid: the caller can carry on with it; the next call
                            // will try to refresh again (no failure is cached).
                            Some(s) if !s.tokens.is_expired_at(now) => {
                                actions.push(Action::HandOut(s.tokens.access.clone()));
                            }
                            _ => actions.push(Action::Fail(error)),
                        }
                        actions
                    }
                }
            }
            Input::Adopt {
                session,
                now,
                jitter,
            } => {
                if let Some(old) = self
                    .session
                    .as_ref()
                    .and_then(|s| s.tokens.refresh.as_ref())
                    && session.tokens.refresh.as_ref() != Some(old)
                {
                    // The other process used (and rotated away) our refresh token.
                    self.spent.insert(old.fingerprint());
                }
                let token = session.tokens.access.clone();
                let expired = session.tokens.is_expired_at(now);
                self.install(session, jitter);
                let mut actions = vec![Action::Emit(SessionEvent::Adopted)];
                if !expired {
                    actions.push(Action::HandOut(token));
                }
                actions
            }
            Input::EndedElsewhere => {
                if let Some(old) = self
                    .session
                    .as_ref()
                    .and_then(|s| s.tokens.refresh.as_ref())
                {
                    self.spent.insert(old.fingerprint());
                }
                let mut actions = self.end(Phase::SignedOut);
                actions.retain(|a| !matches!(a, Action::ClearStore));
                actions
            }
            Input::SignOut => {
                if let Some(old) = self
                    .session
                    .as_ref()
                    .and_then(|s| s.tokens.refresh.as_ref())
                {
                    self.spent.insert(old.fingerprint());
                }
                self.end(Phase::SignedOut)
            }
        }
    }

    fn fresh_at(&self, now: SystemTime) -> bool {
        self.fresh_until().is_none_or(|until| now < until)
            && !self
                .session
                .as_ref()
                .is_some_and(|s| s.tokens.is_expired_at(now))
    }

    /// For a caller the server just refused (401) whose token was replaced since: the
    /// new token when it is fresh. One already in its refresh window is not handed to
    /// that caller (it may well be refused too: the window is where the local expiry's
    /// margin of error lies, see [`crate::token`]); the caller waits for the refresh
    /// instead, when one can run. Otherwise as [`Lifecycle::token_wanted`].
    fn token_after_unauthorized(&mut self, now: SystemTime) -> Vec<Action> {
        let backing_off = self.retry_at.is_some_and(|at| now < at);
        let refreshable = self.phase == Phase::Refreshing || self.can_refresh_now();
        if !self.fresh_at(now) && refreshable && !backing_off {
            return vec![Action::NeedRefresh];
        }
        self.token_wanted(now)
    }

    fn token_wanted(&mut self, now: SystemTime) -> Vec<Action> {
        let Some(session) = &self.session else {
            return vec![Action::Fail(self.no_session_error())];
        };
        if session.tokens.is_expired_at(now) {
            if self.phase == Phase::Refreshing || self.can_refresh_now() {
                return vec![Action::NeedRefresh];
            }
            let mut actions = self.end(Phase::Expired);
            actions.push(Action::Fail(AuthError::SessionExpired));
            return actions;
        }
        let token = Action::HandOut(session.tokens.access.clone());
        if self.fresh_until().is_none_or(|until| now < until) {
            return vec![token];
        }
        // In the refresh window, still valid: hand it out, and refresh in the
        // background unless one is running, none is possible, or it is backing off.
        let backing_off = self.retry_at.is_some_and(|at| now < at);
        if self.phase == Phase::Refreshing || !self.can_refresh_now() || backing_off {
            return vec![token];
        }
        vec![token, Action::RefreshAhead]
    }
}

/// The error for a token that was already expired when it arrived (a zero lifetime, or
/// an absolute expiry from a server whose clock is behind): typed and transient, never a
/// loop and never an expired token.
pub fn expired_on_arrival() -> AuthError {
    AuthError::Protocol {
        message: "the server issued an access token that was already expired on arrival".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::RefreshToken;
    use crate::token::Expiry;
    use std::time::UNIX_EPOCH;
    use url::Url;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn session(access: &str, refresh: Option<&str>, issued: u64, lifetime: u64) -> Session {
        let tokens = TokenSet::new(
            AccessToken::new(access),
            refresh.map(RefreshToken::new),
            Expiry::In(Duration::from_secs(lifetime)),
            t(issued),
        );
        Session::new("test", Url::parse("https://x.example").unwrap(), tokens)
    }

    fn handed_out(actions: &[Action]) -> Option<&str> {
        actions.iter().find_map(|a| match a {
            Action::HandOut(t) => Some(t.expose_secret()),
            _ => None,
        })
    }

    #[test]
    fn window_is_later_of_60s_or_10_percent_and_at_most_half_the_lifetime() {
        let w = RefreshWindow {
            jitter: 0.0,
            ..RefreshWindow::default()
        };
        // 15 min token: lead = max(60 s, 90 s) = 90 s.
        assert_eq!(
            w.refresh_at(&session("a", None, 0, 900).tokens, 0.5),
            Some(t(810))
        );
        // 5 min token: lead = 60 s.
        assert_eq!(
            w.refresh_at(&session("a", None, 0, 300).tokens, 0.5),
            Some(t(240))
        );
        // 5 s token: lead capped at half the lifetime.
        assert_eq!(
            w.refresh_at(&session("a", None, 0, 5).tokens, 0.5),
            Some(UNIX_EPOCH + Duration::from_millis(2_500))
        );
        let jittered = RefreshWindow::default()
            .refresh_at(&session("a", None, 0, 900).tokens, 0.999)
            .unwrap();
        assert!(jittered < t(810) && jittered >= t(801));
    }

    #[test]
    fn happy_path_proactive_refresh_with_rotation() {
        let mut m = Lifecycle::new(
            true,
            RefreshWindow {
                jitter: 0.0,
                ..RefreshWindow::default()
            },
        );
        let s1 = session("a1", Some("r1"), 0, 900);
        let r1 = s1.tokens.refresh.clone().unwrap();
        m.step(Input::SignedIn {
            session: s1,
            jitter: 0.0,
            persist: true,
        });
        assert_eq!(
            handed_out(&m.step(Input::TokenWanted { now: t(100) })),
            Some("a1")
        );
        // In the window: the still-valid token at once, and one background refresh.
        let actions = m.step(Input::TokenWanted { now: t(850) });
        assert_eq!(handed_out(&actions), Some("a1"));
        assert!(matches!(
            actions[..],
            [Action::HandOut(_), Action::RefreshAhead]
        ));
        // Past expiry, callers wait for a refresh.
        assert!(matches!(
            m.step(Input::TokenWanted { now: t(900) })[..],
            [Action::NeedRefresh]
        ));
        let actions = m.step(Input::BeginRefresh {
            now: t(850),
            forced: false,
        });
        assert!(matches!(&actions[..], [Action::StartRefresh(_)]));
        assert_eq!(m.phase(), Phase::Refreshing);
        // A second begin while one is in flight does not start another.
        assert!(matches!(
            m.step(Input::BeginRefresh {
                now: t(850),
                forced: true
            })[..],
            [Action::NeedRefresh]
        ));
        let actions = m.step(Input::RefreshSucceeded {
            session: session("a2", Some("r2"), 850, 900),
            now: t(850),
            jitter: 0.0,
        });
        assert_eq!(handed_out(&actions), Some("a2"));
        assert!(m.is_spent(r1.fingerprint()));
        assert_eq!(m.phase(), Phase::Active);
    }

    #[test]
    fn transient_failure_keeps_a_valid_session_and_rejection_ends_it() {
        let mut m = Lifecycle::new(true, RefreshWindow::default());
        m.step(Input::SignedIn {
            session: session("a1", Some("r1"), 0, 900),
            jitter: 0.0,
            persist: false,
        });
        m.step(Input::BeginRefresh {
            now: t(850),
            forced: false,
        });
        let actions = m.step(Input::RefreshFailed {
            error: AuthError::Timeout,
            now: t(850),
            jitter: 0.5,
        });
        assert_eq!(handed_out(&actions), Some("a1"));
        assert_eq!(m.phase(), Phase::Active);
        // Past expiry, the transient error is returned, the session still kept.
        m.step(Input::BeginRefresh {
            now: t(901),
            forced: false,
        });
        let actions = m.step(Input::RefreshFailed {
            error: AuthError::Timeout,
            now: t(901),
            jitter: 0.5,
        });
        assert!(matches!(
            actions.last(),
            Some(Action::Fail(AuthError::Timeout))
        ));
        assert!(m.session().is_some());
        m.step(Input::BeginRefresh {
            now: t(902),
            forced: false,
        });
        let actions = m.step(Input::RefreshFailed {
            error: AuthError::RefreshRejected,
            now: t(902),
            jitter: 0.5,
        });
        assert!(actions.iter().any(|a| matches!(a, Action::ClearStore)));
        assert!(matches!(
            actions.last(),
            Some(Action::Fail(AuthError::RefreshRejected))
        ));
        assert_eq!(m.phase(), Phase::SignedOut);
        assert!(matches!(
            m.step(Input::TokenWanted { now: t(903) })[..],
            [Action::Fail(AuthError::NotSignedIn)]
        ));
    }

    #[test]
    fn without_refresh_expiry_is_final_and_typed() {
        let mut m = Lifecycle::new(false, RefreshWindow::default());
        m.step(Input::SignedIn {
            session: session("a1", None, 0, 900),
            jitter: 0.0,
            persist: false,
        });
        // Inside the window there is nothing to do but use the token.
        assert_eq!(
            handed_out(&m.step(Input::TokenWanted { now: t(899) })),
            Some("a1")
        );
        let actions = m.step(Input::TokenWanted { now: t(900) });
        assert!(matches!(
            actions.last(),
            Some(Action::Fail(AuthError::SessionExpired))
        ));
        assert_eq!(m.phase(), Phase::Expired);
        assert!(matches!(
            m.step(Input::TokenWanted { now: t(901) })[..],
            [Action::Fail(AuthError::SessionExpired)]
        ));
    }

    #[test]
    fn unauthorized_with_an_already_replaced_token_uses_the_new_one() {
        let mut m = Lifecycle::new(true, RefreshWindow::default());
        let s1 = session("a1", Some("r1"), 0, 900);
        let old = s1.tokens.access.fingerprint();
        m.step(Input::SignedIn {
            session: s1,
            jitter: 0.0,
            persist: false,
        });
        assert!(matches!(
            m.step(Input::Unauthorized {
                now: t(10),
                rejected: old
            })[..],
            [Action::NeedRefresh]
        ));
        m.step(Input::BeginRefresh {
            now: t(10),
            forced: true,
        });
        m.step(Input::RefreshSucceeded {
            session: session("a2", Some("r2"), 10, 900),
            now: t(10),
            jitter: 0.0,
        });
        assert_eq!(
            handed_out(&m.step(Input::Unauthorized {
                now: t(11),
                rejected: old
            })),
            Some("a2")
        );
        // The replacement in its window (900 s lifetime, refreshed ahead at 840 s at
        // the latest): the refused caller waits for a refresh instead of taking it ...
        assert!(matches!(
            m.step(Input::Unauthorized {
                now: t(890),
                rejected: old
            })[..],
            [Action::NeedRefresh]
        ));
        // ... unless a refresh just failed (backing off): then the valid token it is.
        m.step(Input::BeginRefresh {
            now: t(890),
            forced: false,
        });
        m.step(Input::RefreshFailed {
            error: AuthError::Transport {
                kind: crate::error::TransportErrorKind::Connect,
                source: None,
            },
            now: t(890),
            jitter: 0.0,
        });
        assert_eq!(
            handed_out(&m.step(Input::Unauthorized {
                now: t(890),
                rejected: old
            })),
            Some("a2")
        );
    }
}
