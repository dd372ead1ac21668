//! [`SessionManager`]: holds one session, hands out valid access tokens, and runs the
//! one refresh pipeline. It is a thin driver over the pure
//! [`Lifecycle`]: it feeds inputs, performs the actions
//! (provider calls, store writes, events) and owns the concurrency.
//!
//! Concurrency, in three pieces:
//! - **Hot path.** The current session and the time until which its token may be used
//!   without asking anyone sit in an [`ArcSwapOption`]. [`SessionManager::access_token`]
//!   reads it and the clock and returns: no lock, no await.
//! - **State.** The lifecycle sits behind a `std::sync::Mutex` held only for a `step`
//!   (never across an await, never while user code runs).
//! - **One refresh pipeline.** Proactive refresh, refresh after a 401 and an explicit
//!   [`SessionManager::refresh`] all go through `refresh_pipeline`, a single-flight
//!   gate (`tokio::sync::Mutex`). Each caller notes how many refreshes had completed
//!   before it queued; when it gets the gate and that count has moved, a refresh ran
//!   while it waited and it takes that refresh's result (token or error) instead of
//!   starting another. So N concurrent callers cause one refresh request, and no
//!   failure outlives the callers that were waiting for it.
//!
//! The refresh itself runs in a spawned tokio task (the manager needs a tokio runtime),
//! so cancelling a caller never cancels a refresh half-way.
//!
//! Across processes, the pipeline takes the store's lock and re-reads the store before
//! refreshing: if another process already refreshed, its tokens are adopted and the
//! (rotated) refresh token is never sent twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use tokio::sync::broadcast;

use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::lifecycle::{Action, Input, Lifecycle, Phase, RefreshWindow, SessionEvent};
use crate::provider::AuthProvider;
use crate::retry::{RetryPolicy, clone_request, send_with_retry};
use crate::secret::{AccessToken, Fingerprint, OtpCode};
use crate::session::{
    Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, Session, UserProfile,
};
use crate::store::{MemoryStore, SessionStore, Swap};
use crate::token::TokenSet;

/// Settings of a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// When to refresh proactively.
    pub refresh_window: RefreshWindow,
    /// Retries of idempotent authorized requests.
    pub retry: RetryPolicy,
    /// How many events a slow subscriber may fall behind before it misses some.
    pub event_capacity: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            refresh_window: RefreshWindow::default(),
            retry: RetryPolicy::default(),
            event_capacity: 64,
        }
    }
}

/// What the hot path reads: the session and until when its token is good to hand out.
#[derive(Debug)]
struct Hot {
    session: Arc<Session>,
    fresh_until: Option<SystemTime>,
}

#[derive(Debug)]
struct State {
    lifecycle: Lifecycle,
    /// The store version this process last read or wrote.
    version: Option<u64>,
    /// A login waiting for its one-time code.
    challenge: Option<OtpChallenge>,
}

/// One thread's copy of one manager's current token (see `cached_token`).
struct CachedToken {
    /// The manager's process-unique id (not its address: a new manager may reuse a
    /// dropped one's memory).
    manager: u64,
    generation: u64,
    token: AccessToken,
    fresh_until: Option<SystemTime>,
}

/// Source of manager ids.
static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// A one-slot cache: the last manager used on this thread. Several managers on one
    /// thread still work, they just take the shared path more often.
    static HOT_CACHE: std::cell::RefCell<Option<CachedToken>> = const { std::cell::RefCell::new(None) };
}

/// Why the pipeline is asked to refresh.
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// The token is in its refresh window or expired.
    Due,
    /// The caller asked explicitly.
    Explicit,
    /// The server rejected this access token with 401.
    Unauthorized(Fingerprint),
}

/// The driver's reading of a list of actions, once side effects are done.
enum Next {
    Token,
    Refresh,
    Start(Box<Session>),
    Fail(AuthError),
}

struct Inner {
    provider: Arc<dyn AuthProvider>,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    hot: ArcSwapOption<Hot>,
    /// Bumped after every publish of `hot`; per-thread caches compare against it.
    generation: AtomicU64,
    /// Process-unique identity for the per-thread caches.
    id: u64,
    state: Mutex<State>,
    /// Held by whoever changes the session: the refresh owner, sign-in, sign-out.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Completed pipeline runs (refreshes, sign-ins, sign-outs).
    completed: AtomicU64,
    /// The result of the last completed run, for callers that waited for it.
    last: Mutex<Option<Result<Session, AuthError>>>,
    events: broadcast::Sender<SessionEvent>,
    /// Publishes `completed` to callers waiting for a run in flight.
    done: tokio::sync::watch::Sender<u64>,
}

/// Holds a session with one provider and keeps its token valid. Cheap to clone; clones
/// share the session.
///
/// ```no_run
/// # async fn demo(provider: std::sync::Arc<dyn authmux_core::AuthProvider>) -> Result<(), authmux_core::AuthError> {
/// use authmux_core::{Credentials, FileStore, LoginOutcome, SessionManager};
///
/// let manager = SessionManager::builder(provider).store(FileStore::new("session.json")).build();
/// if manager.restore().await?.is_none() {
///     let credentials = Credentials::new("ann@example.com", std::env::var("PASSWORD").unwrap());
///     if let LoginOutcome::OtpRequired(_) = manager.login(&credentials).await? {
///         manager.verify_otp(&"123456".into()).await?;
///     }
/// }
/// let response = manager.send(http::Request::get("/items").body(bytes::Bytes::new()).unwrap()).await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("provider", &self.inner.provider)
            .field("store", &self.inner.store)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionManager`].
#[derive(Debug)]
pub struct ManagerBuilder {
    provider: Arc<dyn AuthProvider>,
    store: Option<Arc<dyn SessionStore>>,
    clock: Option<Arc<dyn Clock>>,
    config: ManagerConfig,
}

impl ManagerBuilder {
    /// Where to keep the session (default: a [`MemoryStore`]).
    #[must_use]
    pub fn store(mut self, store: impl SessionStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A shared store.
    #[must_use]
    pub fn shared_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The proactive refresh window.
    #[must_use]
    pub fn refresh_window(mut self, window: RefreshWindow) -> Self {
        self.config.refresh_window = window;
        self
    }

    /// The retry policy for idempotent authorized requests.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// All settings at once.
    #[must_use]
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// The manager, with no session yet (see [`SessionManager::restore`]).
    pub fn build(self) -> SessionManager {
        let can_refresh = self.provider.capabilities().refresh;
        let (events, _) = broadcast::channel(self.config.event_capacity.max(1));
        SessionManager {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    lifecycle: Lifecycle::new(can_refresh, self.config.refresh_window),
                    version: None,
                    challenge: None,
                }),
                provider: self.provider,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                config: self.config,
                hot: ArcSwapOption::empty(),
                generation: AtomicU64::new(0),
                id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
                gate: Arc::new(tokio::sync::Mutex::new(())),
                completed: AtomicU64::new(0),
                last: Mutex::new(None),
                events,
                done: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (every critical
    // section is one `step` or one assignment), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionManager {
    /// A manager over `provider` with a memory store and the system clock.
    pub fn new(provider: Arc<dyn AuthProvider>) -> Self {
        Self::builder(provider).build()
    }

    /// A builder for a manager over `provider`.
    pub fn builder(provider: Arc<dyn AuthProvider>) -> ManagerBuilder {
        ManagerBuilder {
            provider,
            store: None,
            clock: None,
            config: ManagerConfig::default(),
        }
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn AuthProvider> {
        &self.inner.provider
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Subscribes to session events. Events are sent after every lock is released.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        lock(&self.inner.state).lifecycle.phase()
    }

    /// A copy of the current session, if signed in.
    pub fn session(&self) -> Option<Session> {
        lock(&self.inner.state).lifecycle.session().cloned()
    }

    /// The pending one-time-code challenge, if a login is waiting for one.
    pub fn pending_challenge(&self) -> Option<OtpChallenge> {
        lock(&self.inner.state).challenge.clone()
    }

    // ----- signing in -----------------------------------------------------------

    /// Loads the session from the store, if there is one for this provider's dialect.
    /// A corrupt store is an error and is left untouched.
    pub async fn restore(&self) -> Result<Option<Session>, AuthError> {
        let _gate = self.inner.gate.lock().await;
        let Some(stored) = self.inner.store.load().await? else {
            return Ok(None);
        };
        if stored.session.dialect != self.inner.provider.dialect() {
            return Err(AuthError::Store {
                message: format!(
                    "the stored session belongs to {:?}, not {:?}",
                    stored.session.dialect,
                    self.inner.provider.dialect()
                ),
                source: None,
            });
        }
        lock(&self.inner.state).version = Some(stored.version);
        let session = stored.session.clone();
        self.install(stored.session, false).await?;
        Ok(Some(session))
    }

    /// Starts a session from tokens the caller kept (as linxio-js
    /// `createClient({token, refreshToken})`).
    pub async fn hydrate(&self, tokens: TokenSet) -> Result<Session, AuthError> {
        let session = self.inner.provider.session_from_tokens(tokens);
        self.sign_in_with(session.clone()).await?;
        Ok(session)
    }

    /// Starts a session obtained elsewhere (signup, OAuth callback).
    pub async fn sign_in_with(&self, session: Session) -> Result<(), AuthError> {
        let _gate = self.inner.gate.lock().await;
        self.install(session, true).await
    }

    /// Signs in. On [`LoginOutcome::OtpRequired`], finish with
    /// [`SessionManager::verify_otp`].
    pub async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let outcome = self.inner.provider.login(credentials).await?;
        let _gate = self.inner.gate.lock().await;
        match &outcome {
            LoginOutcome::Authenticated(session) => self.install(session.clone(), true).await?,
            LoginOutcome::OtpRequired(challenge) => {
                let actions = {
                    let mut state = lock(&self.inner.state);
                    state.challenge = Some(challenge.clone());
                    let actions = state.lifecycle.step(Input::OtpRequired);
                    self.publish_hot(&state.lifecycle);
                    actions
                };
                self.perform(actions).await;
            }
        }
        Ok(outcome)
    }

    /// Finishes the pending login with a one-time code. A wrong code leaves the
    /// challenge in place for another try.
    pub async fn verify_otp(&self, code: &OtpCode) -> Result<Session, AuthError> {
        let challenge = self.pending_challenge().ok_or(AuthError::NotSignedIn)?;
        self.verify_otp_with(&challenge, code).await
    }

    /// Finishes a login with a challenge kept by the caller (e.g. read back from disk
    /// and completed with [`OtpChallenge::with_password`]).
    pub async fn verify_otp_with(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        let session = self.inner.provider.verify_otp(challenge, code).await?;
        let _gate = self.inner.gate.lock().await;
        lock(&self.inner.state).challenge = None;
        self.install(session.clone(), true).await?;
        Ok(session)
    }

    /// Installs a session (caller holds the gate). The session is live in memory even
    /// if saving it fails; the save error is returned so the caller knows it will not
    /// survive this process.
    async fn install(&self, session: Session, persist: bool) -> Result<(), AuthError> {
        let actions = {
            let mut state = lock(&self.inner.state);
            let actions = state.lifecycle.step(Input::SignedIn {
                session: session.clone(),
                jitter: fastrand::f64(),
                persist,
            });
            self.publish_hot(&state.lifecycle);
            actions
        };
        let mut saved = Ok(());
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::Persist(session) => saved = self.persist(&session).await,
                other => rest.push(other),
            }
        }
        self.perform(rest).await;
        self.complete_run(Ok(session));
        saved
    }

    // ----- tokens --------------------------------------------------------------

    /// A valid access token, refreshing first when it is due.
    ///
    /// The hot path (a token that is not yet in its refresh window) takes no lock and
    /// awaits nothing.
    pub async fn access_token(&self) -> Result<AccessToken, AuthError> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        Ok(self.usable_session().await?.tokens.access.clone())
    }

    /// The hot path: a thread-private copy of the current token, valid while the
    /// manager's generation is unchanged and the clock is before `fresh_until`. It reads
    /// one shared atomic (never written on the hot path, so it does not bounce between
    /// cores) and the clock, and clones an `Arc` no other thread touches. A miss falls
    /// back to the shared snapshot and refills the cache.
    fn cached_token(&self) -> Option<AccessToken> {
        let key = self.inner.id;
        let generation = self.inner.generation.load(Ordering::Acquire);
        let hit = HOT_CACHE.with(|cache| {
            let cache = cache.borrow();
            let slot = cache
                .as_ref()
                .filter(|slot| slot.manager == key && slot.generation == generation)?;
            slot.fresh_until
                .is_none_or(|until| self.inner.clock.now() < until)
                .then(|| slot.token.clone())
        });
        if hit.is_some() {
            return hit;
        }
        let hot = self.inner.hot.load_full()?;
        if hot
            .fresh_until
            .is_some_and(|until| self.inner.clock.now() >= until)
        {
            return None;
        }
        let token = hot.session.tokens.access.clone();
        HOT_CACHE.with(|cache| {
            *cache.borrow_mut() = Some(CachedToken {
                manager: key,
                generation,
                // A private copy, so clones on this thread touch only this thread's
                // reference count. It is zeroized when replaced or when the thread ends.
                token: AccessToken::new(token.expose_secret()),
                fresh_until: hot.fresh_until,
            });
        });
        Some(token)
    }

    /// Refreshes now (joining a refresh already in flight) and returns the new token.
    pub async fn refresh(&self) -> Result<AccessToken, AuthError> {
        let observed = self.inner.completed.load(Ordering::SeqCst);
        Ok(self
            .refresh_pipeline(observed, Reason::Explicit)
            .await?
            .tokens
            .access)
    }

    /// The current session, whose token may be used now: refreshed first when due.
    /// What an integration (a middleware, a proxy) authorizes a request with, through
    /// [`AuthProvider::authorize`]; the hot path (a fresh token) takes no lock.
    pub async fn usable_session(&self) -> Result<Arc<Session>, AuthError> {
        if let Some(hot) = self.inner.hot.load().as_ref()
            && hot
                .fresh_until
                .is_none_or(|until| self.inner.clock.now() < until)
        {
            return Ok(Arc::clone(&hot.session));
        }
        let observed = self.inner.completed.load(Ordering::SeqCst);
        let actions = self.step(Input::TokenWanted {
            now: self.inner.clock.now(),
        });
        match self.perform(actions).await {
            Next::Token => self.current_arc(),
            Next::Refresh | Next::Start(_) => self
                .refresh_pipeline(observed, Reason::Due)
                .await
                .map(Arc::new),
            Next::Fail(e) => Err(e),
        }
    }

    /// The published session, or [`AuthError::NotSignedIn`].
    fn current_arc(&self) -> Result<Arc<Session>, AuthError> {
        match self.inner.hot.load_full() {
            Some(hot) => Ok(Arc::clone(&hot.session)),
            None => self.session().map(Arc::new).ok_or(AuthError::NotSignedIn),
        }
    }

    /// After the server answered 401 to a request authorized with `rejected` (a
    /// session from [`SessionManager::usable_session`]): a session whose token differs,
    /// because a refresh ran meanwhile (joined, never repeated) or runs now. At most
    /// one refresh runs however many callers report the same rejected token. Replay
    /// the request once with the returned session; a second 401 is final.
    pub async fn session_after_unauthorized(
        &self,
        rejected: &Session,
    ) -> Result<Arc<Session>, AuthError> {
        self.after_unauthorized(rejected).await.map(Arc::new)
    }

    /// After the server answered 401 to a request made with `session`: a session whose
    /// token differs (refreshed meanwhile), or one refreshed now.
    async fn after_unauthorized(&self, session: &Session) -> Result<Session, AuthError> {
        let observed = self.inner.completed.load(Ordering::SeqCst);
        let rejected = session.tokens.access.fingerprint();
        let actions = self.step(Input::Unauthorized {
            now: self.inner.clock.now(),
            rejected,
        });
        match self.perform(actions).await {
            Next::Token => self.session().ok_or(AuthError::NotSignedIn),
            Next::Refresh | Next::Start(_) => {
                self.refresh_pipeline(observed, Reason::Unauthorized(rejected))
                    .await
            }
            Next::Fail(e) => Err(e),
        }
    }

    /// The one refresh pipeline (single flight).
    async fn refresh_pipeline(&self, observed: u64, reason: Reason) -> Result<Session, AuthError> {
        let mut done = self.inner.done.subscribe();
        let gate = loop {
            if let Some(result) = self.result_since(observed) {
                // A refresh (or sign-in/out) completed after we looked: share its result.
                return result;
            }
            // Either we get the gate (and own the next refresh), or the run in flight
            // completes and wakes every waiter at once (no queueing through the gate).
            tokio::select! {
                biased;
                guard = Arc::clone(&self.inner.gate).lock_owned() => break guard,
                changed = done.wait_for(|completed| *completed != observed) => {
                    if changed.is_err() {
                        return Err(AuthError::NotSignedIn);
                    }
                }
            }
        };
        if let Some(result) = self.result_since(observed) {
            return result;
        }
        // The refresh runs in its own task, holding the gate: if this caller is
        // cancelled (a timeout, a dropped future), the refresh still completes, its
        // answer (perhaps a rotated refresh token the server will never accept again) is
        // kept, and every caller waiting for it gets it. If the task dies anyway (a
        // panicking provider, a runtime shutting down), `Unfinished` puts the lifecycle
        // back so the next call can try again.
        let me = self.clone();
        let task = tokio::spawn(async move {
            let _gate = gate;
            let mut unfinished = Unfinished {
                manager: &me,
                armed: true,
            };
            let result = me.refresh_owned(reason).await;
            unfinished.armed = false;
            me.complete_run(result.clone());
            result
        });
        match task.await {
            Ok(result) => result,
            Err(_) => Err(did_not_complete("the refresh")),
        }
    }

    /// The result of the last completed run, if one completed since `observed`.
    fn result_since(&self, observed: u64) -> Option<Result<Session, AuthError>> {
        if self.inner.completed.load(Ordering::SeqCst) == observed {
            return None;
        }
        lock(&self.inner.last).clone()
    }

    /// Runs one refresh; the caller holds the gate.
    async fn refresh_owned(&self, reason: Reason) -> Result<Session, AuthError> {
        let _store_lock = self.inner.store.lock().await?;
        self.sync_from_store().await?;
        let forced = match reason {
            Reason::Due => false,
            Reason::Explicit => true,
            Reason::Unauthorized(rejected) => match self.session() {
                // Adopted or refreshed since: the rejected token is already replaced.
                Some(s) if s.tokens.access.fingerprint() != rejected => return Ok(s),
                _ => true,
            },
        };
        let actions = self.step(Input::BeginRefresh {
            now: self.inner.clock.now(),
            forced,
        });
        let session = match self.perform(actions).await {
            Next::Start(session) => *session,
            Next::Token => return self.session().ok_or(AuthError::NotSignedIn),
            Next::Fail(e) => return Err(e),
            Next::Refresh => return Err(AuthError::protocol("refresh pipeline re-entered")),
        };
        tracing::debug!(dialect = %session.dialect, "refreshing session");
        let input = match self.inner.provider.refresh(&session).await {
            Ok(new) => Input::RefreshSucceeded {
                session: new,
                jitter: fastrand::f64(),
            },
            Err(error) => {
                tracing::warn!(%error, "refresh failed");
                Input::RefreshFailed {
                    error,
                    now: self.inner.clock.now(),
                }
            }
        };
        let actions = self.step(input);
        match self.perform(actions).await {
            Next::Token => self.session().ok_or(AuthError::NotSignedIn),
            Next::Fail(e) => Err(e),
            Next::Refresh | Next::Start(_) => {
                Err(AuthError::protocol("refresh pipeline re-entered"))
            }
        }
    }

    /// Re-reads the store (under its lock) and adopts what another process wrote, so a
    /// rotated refresh token is never sent twice. A store emptied elsewhere (logout in
    /// another process) ends this session too.
    async fn sync_from_store(&self) -> Result<(), AuthError> {
        let stored = self.inner.store.load().await?;
        let (known, current) = {
            let state = lock(&self.inner.state);
            (state.version, state.lifecycle.session().cloned())
        };
        let Some(current) = current else {
            return Ok(());
        };
        match stored {
            Some(stored) if Some(stored.version) != known => {
                if stored.session.dialect == current.dialect
                    && stored.session.tokens != current.tokens
                {
                    let actions = {
                        let mut state = lock(&self.inner.state);
                        state.version = Some(stored.version);
                        let actions = state.lifecycle.step(Input::Adopt {
                            session: stored.session,
                            jitter: fastrand::f64(),
                        });
                        self.publish_hot(&state.lifecycle);
                        actions
                    };
                    self.perform(actions).await;
                } else {
                    lock(&self.inner.state).version = Some(stored.version);
                }
            }
            None if known.is_some() => {
                lock(&self.inner.state).version = None;
                let actions = self.step(Input::SignOut);
                self.perform(actions).await;
                return Err(AuthError::NotSignedIn);
            }
            _ => {}
        }
        Ok(())
    }

    fn complete_run(&self, result: Result<Session, AuthError>) {
        *lock(&self.inner.last) = Some(result);
        let completed = self.inner.completed.fetch_add(1, Ordering::SeqCst) + 1;
        // Wakes every caller waiting for this run at once.
        self.inner.done.send_replace(completed);
    }

    // ----- authorized calls ----------------------------------------------------

    /// Sends a request authorized with the session, retrying it when idempotent (see
    /// [`RetryPolicy`]); on 401 refreshes once (joining any refresh in flight) and
    /// replays once. A second 401 is [`AuthError::Unauthorized`]. Other statuses are
    /// returned as responses.
    ///
    /// A relative URI (`/items`) is resolved against the session's base URL. Requests
    /// to any other origin are refused: credentials go only to the session's origin.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        self.send_with(request, false).await
    }

    /// Like [`SessionManager::send`], but retries the request even if its method is not
    /// idempotent (for a POST the caller knows is safe to repeat).
    pub async fn send_idempotent(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, AuthError> {
        self.send_with(request, true).await
    }

    async fn send_with(
        &self,
        request: Request<Bytes>,
        idempotent: bool,
    ) -> Result<Response<Bytes>, AuthError> {
        let session = self.usable_session().await?;
        let request = resolve_against(request, &session)?;
        let response = self.send_authorized(&request, &session, idempotent).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let refreshed = self.after_unauthorized(&session).await?;
        let response = self
            .send_authorized(&request, &refreshed, idempotent)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(AuthError::Unauthorized {
                message: Some("rejected again after refreshing".into()),
            });
        }
        Ok(response)
    }

    async fn send_authorized(
        &self,
        request: &Request<Bytes>,
        session: &Session,
        idempotent: bool,
    ) -> Result<Response<Bytes>, AuthError> {
        let mut request = clone_request(request);
        crate::provider::authorize_request(self.inner.provider.as_ref(), session, &mut request)?;
        let transport = self.inner.provider.transport();
        let clock = &self.inner.clock;
        send_with_retry(
            transport.as_ref(),
            request,
            &self.inner.config.retry,
            idempotent,
            || clock.now(),
        )
        .await
    }

    /// Runs a provider call that needs the session, with the same refresh-on-401 rule
    /// as [`SessionManager::send`]: if `call` fails with [`AuthError::Unauthorized`],
    /// the session is refreshed once and `call` runs once more.
    pub async fn authorized<T, F, Fut>(&self, call: F) -> Result<T, AuthError>
    where
        F: Fn(Session) -> Fut,
        Fut: Future<Output = Result<T, AuthError>>,
    {
        let session = self.usable_session().await?;
        match call(Session::clone(&session)).await {
            Err(AuthError::Unauthorized { .. }) => {
                let session = self.after_unauthorized(&session).await?;
                call(session).await
            }
            other => other,
        }
    }

    /// The signed-in user, from the server.
    pub async fn current_user(&self) -> Result<UserProfile, AuthError> {
        let provider = self.inner.provider.clone();
        self.authorized(|session| {
            let provider = provider.clone();
            async move { provider.current_user(&session).await }
        })
        .await
    }

    // ----- signing out ---------------------------------------------------------

    /// Ends the session: locally at once (store cleared, event sent), then on the server
    /// when the dialect can. The local session is gone even if the server call fails;
    /// that failure is returned so the caller knows the server was not told. Once it
    /// has started, a cancelled caller does not stop it: the store is still cleared and
    /// the server still told.
    pub async fn logout(&self) -> Result<LogoutOutcome, AuthError> {
        let gate = Arc::clone(&self.inner.gate).lock_owned().await;
        let session = self.session();
        let actions = {
            let mut state = lock(&self.inner.state);
            state.challenge = None;
            let actions = state.lifecycle.step(Input::SignOut);
            self.publish_hot(&state.lifecycle);
            actions
        };
        self.complete_run(Err(AuthError::NotSignedIn));
        let me = self.clone();
        let task = tokio::spawn(async move {
            me.perform(actions).await;
            drop(gate);
            let session = session.ok_or(AuthError::NotSignedIn)?;
            me.inner.provider.logout(&session).await
        });
        task.await
            .unwrap_or_else(|_| Err(did_not_complete("the logout")))
    }

    // ----- driving the machine -------------------------------------------------

    fn step(&self, input: Input) -> Vec<Action> {
        let mut state = lock(&self.inner.state);
        let actions = state.lifecycle.step(input);
        self.publish_hot(&state.lifecycle);
        actions
    }

    /// Keeps the hot-path snapshot equal to the machine's state (called under the state
    /// lock, so snapshots are published in order).
    fn publish_hot(&self, lifecycle: &Lifecycle) {
        let hot = match (lifecycle.phase(), lifecycle.session()) {
            (Phase::Active, Some(session)) => Some(Arc::new(Hot {
                session: Arc::new(session.clone()),
                fresh_until: lifecycle.fresh_until(),
            })),
            _ => None,
        };
        self.inner.hot.store(hot);
        // After the store, so a cache tagged with the new generation never holds an
        // older snapshot.
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Performs store writes and events; returns what the caller should do next.
    async fn perform(&self, actions: Vec<Action>) -> Next {
        let mut next = Next::Token;
        for action in actions {
            match action {
                // A failed save after a refresh is logged by `persist`; the caller
                // still gets its (valid) token.
                Action::Persist(session) => drop(self.persist(&session).await),
                Action::ClearStore => self.clear_store().await,
                Action::Emit(event) => {
                    // No receivers is fine; the channel never blocks.
                    let _ = self.inner.events.send(event);
                }
                Action::HandOut(_) => next = Next::Token,
                Action::NeedRefresh => next = Next::Refresh,
                Action::StartRefresh(session) => next = Next::Start(Box::new(session)),
                Action::Fail(e) => next = Next::Fail(e),
            }
        }
        next
    }

    async fn persist(&self, session: &Session) -> Result<(), AuthError> {
        let expected = lock(&self.inner.state).version;
        let result = match self
            .inner
            .store
            .compare_and_swap(expected, Some(session))
            .await
        {
            Ok(Swap::Done(v)) => Ok(v),
            Ok(Swap::Conflict(_)) => {
                // Another writer that does not take the store lock got in between. Our
                // tokens are the newest (a rotation just happened), so they win.
                tracing::warn!(
                    "session store changed underneath; overwriting with the newest tokens"
                );
                self.inner.store.save(session).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => {
                lock(&self.inner.state).version = Some(v);
                Ok(())
            }
            // The session in memory stays good; only persistence failed.
            Err(error) => {
                tracing::error!(%error, "could not save the session");
                Err(error)
            }
        }
    }

    async fn clear_store(&self) {
        match self.inner.store.delete().await {
            Ok(()) => lock(&self.inner.state).version = None,
            Err(error) => tracing::error!(%error, "could not clear the session store"),
        }
    }
}

/// The error of a task (a refresh, a logout) that ended without an answer. Transient:
/// after a refresh the session is kept and the next call tries again.
fn did_not_complete(what: &str) -> AuthError {
    AuthError::Transport {
        kind: crate::error::TransportErrorKind::Io,
        source: Some(Arc::new(std::io::Error::other(format!(
            "{what} did not complete"
        )))),
    }
}

/// Armed while a refresh runs; if it is dropped armed (the refresh's task panicked or
/// was torn down), it ends the refresh in the lifecycle as a transient failure and
/// wakes the waiters, so the session is never left stuck "refreshing".
struct Unfinished<'a> {
    manager: &'a SessionManager,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let manager = self.manager;
        let error = did_not_complete("the refresh");
        let now = manager.inner.clock.now();
        for action in manager.step(Input::RefreshFailed {
            error: error.clone(),
            now,
        }) {
            // A transient failure changes no store; only events remain to be sent.
            if let Action::Emit(event) = action {
                let _ = manager.inner.events.send(event);
            }
        }
        manager.complete_run(Err(error));
    }
}

/// Resolves a relative request URI against the session's base URL and refuses any
/// other origin.
fn resolve_against(
    mut request: Request<Bytes>,
    session: &Session,
) -> Result<Request<Bytes>, AuthError> {
    let base = &session.base_url;
    if request.uri().scheme().is_none() && request.uri().authority().is_none() {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let joined = crate::wire::endpoint(base, path.split('?').next().unwrap_or("/"));
        let mut joined = joined.to_string();
        if let Some(query) = request.uri().query() {
            joined.push('?');
            joined.push_str(query);
        }
        *request.uri_mut() = joined
            .parse::<Uri>()
            .map_err(|_| AuthError::validation("uri", "invalid request URI"))?;
        return Ok(request);
    }
    let uri = request.uri();
    let same_origin = session.is_same_origin_uri(uri);
    if !same_origin {
        return Err(AuthError::InsecureTransport {
            reason: format!(
                "request to {} is outside the session's origin {}; credentials are only sent there",
                uri.host().unwrap_or("?"),
                base.origin().ascii_serialization()
            ),
        });
    }
    Ok(request)
}
