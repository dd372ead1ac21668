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
//! Across processes (the [store contract](crate::store)):
//! - The pipeline takes the store's refresh lock (waiting at most
//!   [`ManagerConfig::store_lock_timeout`]) and re-reads the store before refreshing:
//!   if another process already refreshed, its tokens are adopted and the (rotated)
//!   refresh token is never sent twice. If the lock stays busy, the store is re-read
//!   and what another process wrote is adopted; the manager never refreshes without the
//!   lock. While the current token is still valid, nobody waits for another process's
//!   lock: the valid token is handed out.
//! - A compare-and-swap conflict is never settled by overwriting: an emptied store
//!   means "signed out elsewhere" and ends the session here; another session means
//!   "refreshed or signed in elsewhere" and is adopted. A sign-in (login, OTP,
//!   hydration) replaces whatever is stored.
//! - A refreshed session that could not be saved stays "dirty": the manager keeps the
//!   store's refresh lock (so no other process can send the refresh token it just spent),
//!   retries the save on the next calls and before any later refresh, and
//!   [`SessionManager::refresh`] and [`SessionManager::flush`] return the error.
//! - Waiters never take another run's session as-is: after a run completes they decide
//!   again from the current state, so an expired token or a session of another sign-in
//!   ([`Session::lineage`]) is never handed to them.
//!
//! The manager needs a tokio runtime for everything but the hot path; called outside
//! one, its methods return [`AuthError::Unsupported`] before changing anything.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use tokio::sync::broadcast;

use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::lifecycle::{
    Action, Input, Lifecycle, Phase, RefreshBackoff, RefreshWindow, SessionEvent,
};
use crate::provider::AuthProvider;
use crate::retry::{RefreshRetry, RetryPolicy, clone_request, send_attempts};
use crate::secret::{AccessToken, Fingerprint, OtpCode};
use crate::session::{
    Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, Session, UserProfile,
};
use crate::store::{MemoryStore, SessionStore, StoreLock, Swap, Versioned};
use crate::token::TokenSet;
use crate::transport::{DEFAULT_MAX_RESPONSE_BYTES, RequestLimits, Transport, within};

/// Settings of a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// When to refresh proactively (in the background: nobody waits while the token
    /// is valid).
    pub refresh_window: RefreshWindow,
    /// How long to wait between background refresh attempts after transient failures
    /// while the token is still valid.
    pub backoff: RefreshBackoff,
    /// Retries of idempotent authorized requests.
    pub retry: RetryPolicy,
    /// When a refresh is retried inside the same call (only when the server certainly
    /// did not process it: a refused connection, 429 or 503 with a `Retry-After` of at
    /// most 2 s by default). See [`RefreshRetry`].
    pub refresh_retry: RefreshRetry,
    /// How many events a slow subscriber may fall behind before it misses some.
    pub event_capacity: usize,
    /// How long a refresh waits for the store's refresh lock held by another process
    /// before re-reading the store and adopting what it holds (or failing with
    /// [`AuthError::Store`]). Default 35 s: a few seconds beyond the default request
    /// timeout, so a peer's refresh that is merely slow is waited for.
    pub store_lock_timeout: Duration,
    /// The deadline of one [`SessionManager::send`] call, everything included (the
    /// request, its retries, a refresh after 401 and the replay). Default 90 s.
    pub send_timeout: Duration,
    /// The timeout of each application request attempt [`SessionManager::send`] makes,
    /// connect to last byte (`None`, the default: the provider's transport's own
    /// timeout, 30 s unless configured). Requests to the auth endpoints are not
    /// affected.
    pub request_timeout: Option<Duration>,
    /// The largest response body [`SessionManager::send`] accepts (it buffers the
    /// whole answer); default 4 MiB. Auth endpoints keep the transport's own cap. To
    /// stream large answers, use the `authmux-reqwest` middleware or the
    /// `authmux-tower` layer instead.
    pub max_response_bytes: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            refresh_window: RefreshWindow::default(),
            backoff: RefreshBackoff::default(),
            retry: RetryPolicy::default(),
            refresh_retry: RefreshRetry::default(),
            event_capacity: 64,
            store_lock_timeout: Duration::from_secs(35),
            send_timeout: Duration::from_secs(90),
            request_timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// What the hot path reads: the session and until when its token is good to hand out.
#[derive(Debug)]
struct Hot {
    session: Arc<Session>,
    /// Before this, hand the token out; from it until `usable_until`, hand it out and
    /// start one background refresh.
    fresh_until: Option<SystemTime>,
    /// The token's expiry: from here on, only the slow path decides.
    usable_until: Option<SystemTime>,
}

impl Hot {
    /// Whether the token may be handed out at `now`, and whether a background refresh
    /// is due.
    fn judge(&self, now: SystemTime) -> Option<bool> {
        if self.fresh_until.is_none_or(|until| now < until) {
            Some(false)
        } else if self.usable_until.is_none_or(|until| now < until) {
            Some(true)
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct State {
    lifecycle: Lifecycle,
    /// The store version this process last read or wrote.
    version: Option<u64>,
    /// A login waiting for its one-time code.
    challenge: Option<OtpChallenge>,
    /// The store's refresh lock, kept while the session is dirty (refreshed but not
    /// saved), so no other process refreshes with the token this one spent.
    dirty_lock: Option<StoreLock>,
    /// The session a step just ended, for clearing it (and only it) from the store.
    ended: Option<Session>,
}

/// One thread's copy of one manager's current session (see `cached_session`).
struct CachedSession {
    /// The manager's process-unique id (not its address: a new manager may reuse a
    /// dropped one's memory).
    manager: u64,
    generation: u64,
    /// A private copy: its `Arc`, its access token's and its cached bearer header's
    /// reference counts are touched by this thread only. Weak: the manager holds the
    /// copies (`Inner::copies`) and drops them all when the session changes, so a
    /// thread that makes no more calls does not keep an ended session (its refresh
    /// token included) alive.
    session: std::sync::Weak<Session>,
    fresh_until: Option<SystemTime>,
    /// The session's base URL in `http`'s types, for resolving relative requests
    /// (`None` if it is not an HTTP URI: the shared path reports that).
    base: Option<BaseParts>,
}

/// Source of manager ids.
static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// A one-slot cache: the last manager used on this thread. Several managers on one
    /// thread still work, they just take the shared path more often.
    static HOT_CACHE: std::cell::RefCell<Option<CachedSession>> = const { std::cell::RefCell::new(None) };
}

/// Why the pipeline is asked to refresh.
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// The token is in its refresh window or expired.
    Due,
    /// A background refresh in the window (nobody waits for it).
    Ahead,
    /// The caller asked explicitly.
    Explicit,
    /// The server rejected this access token with 401.
    Unauthorized(Fingerprint),
}

/// How a caller's wait in the pipeline ended.
#[allow(
    clippy::large_enum_variant,
    reason = "lives on the stack for one call; boxing would allocate per refresh"
)]
enum Run {
    /// This caller owned the run; here is its result.
    Owned(Result<Session, AuthError>),
    /// Another run completed while this caller waited: decide again from the current
    /// state (or take its error).
    Joined,
}

/// How saving a refreshed session went.
#[allow(
    clippy::large_enum_variant,
    reason = "lives on the stack for one call; boxing would allocate per refresh"
)]
enum Persisted {
    Saved,
    /// The store changed meanwhile; the conflict was settled (adopted or ended).
    Settled(Result<Session, AuthError>),
    /// The store failed; the session is dirty and the lock must be kept.
    Failed(AuthError, StoreLock),
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
    /// The provider's transport, taken once: `send` uses it without cloning an `Arc`
    /// (whose count every concurrent caller would otherwise bump).
    transport: Arc<dyn Transport>,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    hot: ArcSwapOption<Hot>,
    /// Bumped after every publish of `hot`; per-thread caches compare against it.
    generation: AtomicU64,
    /// The per-thread private copies of the current session (see `CachedSession`),
    /// one per thread (a refill replaces its thread's), dropped at every publish of
    /// `hot`.
    copies: Mutex<Vec<(std::thread::ThreadId, Arc<Session>)>>,
    /// Process-unique identity for the per-thread caches.
    id: u64,
    state: Mutex<State>,
    /// Held by whoever changes the session: the refresh owner, sign-in, sign-out.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Completed pipeline runs (refreshes, sign-ins, sign-outs).
    completed: AtomicU64,
    /// The error of the last completed run if it failed, for the callers that waited
    /// for it (so one failure is not repeated by each of them).
    last_error: Mutex<Option<AuthError>>,
    /// The session in memory is newer than the store (a failed save).
    dirty: AtomicBool,
    /// A background save of a dirty session is running.
    flushing: AtomicBool,
    /// Created on the first `subscribe`, so an idle manager allocates no event buffer.
    events: std::sync::OnceLock<broadcast::Sender<SessionEvent>>,
    /// The base URL in `http`'s types, made on the first relative `send`.
    base: std::sync::OnceLock<BaseParts>,
    /// A background (refresh-ahead) run is in flight.
    ahead: AtomicBool,
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

/// The keep-fresh task of [`SessionManager::keep_fresh`]; dropping this stops it.
#[derive(Debug)]
pub struct KeepFresh {
    task: tokio::task::JoinHandle<()>,
}

impl KeepFresh {
    /// Whether the task still runs (it ends when the session ends).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for KeepFresh {
    fn drop(&mut self) {
        self.task.abort();
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

    /// When a refresh is retried inside the same call (see [`RefreshRetry`]).
    #[must_use]
    pub fn refresh_retry(mut self, rule: RefreshRetry) -> Self {
        self.config.refresh_retry = rule;
        self
    }

    /// The retry policy for idempotent authorized requests.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// How long a refresh waits for another process's store lock (see
    /// [`ManagerConfig::store_lock_timeout`]).
    #[must_use]
    pub fn store_lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_lock_timeout = timeout;
        self
    }

    /// The deadline of one `send` call (see [`ManagerConfig::send_timeout`]).
    #[must_use]
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_timeout = timeout;
        self
    }

    /// The timeout of each application request attempt sent with
    /// [`SessionManager::send`] (see [`ManagerConfig::request_timeout`]).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = Some(timeout);
        self
    }

    /// The largest response body [`SessionManager::send`] accepts (see
    /// [`ManagerConfig::max_response_bytes`]).
    #[must_use]
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.config.max_response_bytes = max;
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
        let capabilities = self.provider.capabilities();
        SessionManager {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    lifecycle: Lifecycle::new(capabilities.refresh, self.config.refresh_window)
                        .with_backoff(self.config.backoff)
                        .with_tokenless_refresh(capabilities.refresh_without_token),
                    version: None,
                    challenge: None,
                    dirty_lock: None,
                    ended: None,
                }),
                transport: self.provider.transport(),
                provider: self.provider,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                config: self.config,
                hot: ArcSwapOption::empty(),
                generation: AtomicU64::new(0),
                copies: Mutex::new(Vec::new()),
                id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
                gate: Arc::new(tokio::sync::Mutex::new(())),
                completed: AtomicU64::new(0),
                last_error: Mutex::new(None),
                dirty: AtomicBool::new(false),
                flushing: AtomicBool::new(false),
                events: std::sync::OnceLock::new(),
                base: std::sync::OnceLock::new(),
                ahead: AtomicBool::new(false),
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
        self.inner
            .events
            .get_or_init(|| broadcast::channel(self.inner.config.event_capacity.max(1)).0)
            .subscribe()
    }

    /// Sends an event to subscribers, if any ever subscribed.
    fn emit(&self, event: SessionEvent) {
        if let Some(events) = self.inner.events.get() {
            // No receivers is fine; the channel never blocks.
            let _ = events.send(event);
        }
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
        require_runtime()?;
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
        self.sign_in_with(session).await
    }

    /// Starts a session obtained elsewhere (signup, OAuth callback). It replaces
    /// whatever the store holds. Returns the session as installed (with its
    /// [`Session::lineage`]).
    pub async fn sign_in_with(&self, session: Session) -> Result<Session, AuthError> {
        require_runtime()?;
        let _gate = self.inner.gate.lock().await;
        self.install(session, true).await
    }

    /// Signs in. On [`LoginOutcome::OtpRequired`], finish with
    /// [`SessionManager::verify_otp`].
    pub async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        require_runtime()?;
        let outcome = self.inner.provider.login(credentials).await?;
        let _gate = self.inner.gate.lock().await;
        match outcome {
            LoginOutcome::Authenticated(session) => {
                let session = self.install(session, true).await?;
                Ok(LoginOutcome::Authenticated(session))
            }
            LoginOutcome::OtpRequired(challenge) => {
                let actions = {
                    let mut state = lock(&self.inner.state);
                    state.challenge = Some(challenge.clone());
                    state.dirty_lock = None;
                    self.inner.dirty.store(false, Ordering::Release);
                    let actions = state.lifecycle.step(Input::OtpRequired);
                    self.publish_hot(&state.lifecycle);
                    actions
                };
                self.perform(actions).await;
                Ok(LoginOutcome::OtpRequired(challenge))
            }
        }
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
        require_runtime()?;
        let session = self.inner.provider.verify_otp(challenge, code).await?;
        let _gate = self.inner.gate.lock().await;
        lock(&self.inner.state).challenge = None;
        self.install(session, true).await
    }

    /// Installs a session (caller holds the gate). A new sign-in (`persist`) gets a
    /// fresh lineage and replaces whatever the store holds. The session is live in
    /// memory even if saving it fails; the save error is returned so the caller knows
    /// it will not survive this process yet, and the save is retried on later calls.
    async fn install(&self, mut session: Session, persist: bool) -> Result<Session, AuthError> {
        if persist && session.lineage.is_none() {
            session.lineage = Some(new_lineage());
        }
        let actions = {
            let mut state = lock(&self.inner.state);
            // A new sign-in supersedes any unsaved refresh of the previous one.
            state.dirty_lock = None;
            self.inner.dirty.store(false, Ordering::Release);
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
                Action::Persist(session) => {
                    saved = match self.inner.store.save(&session).await {
                        Ok(version) => {
                            lock(&self.inner.state).version = Some(version);
                            Ok(())
                        }
                        Err(error) => {
                            tracing::error!(%error, "could not save the new session");
                            self.inner.dirty.store(true, Ordering::Release);
                            Err(error)
                        }
                    }
                }
                other => rest.push(other),
            }
        }
        self.perform(rest).await;
        self.complete_run(None);
        saved.map(|()| session)
    }

    // ----- tokens --------------------------------------------------------------

    /// A valid access token, refreshing first when it is due.
    ///
    /// The hot path (a token that is not yet in its refresh window) takes no lock and
    /// awaits nothing.
    pub async fn access_token(&self) -> Result<AccessToken, AuthError> {
        Ok(self.usable_session().await?.tokens.access.clone())
    }

    /// The hot path: a thread-private copy of the current session, valid while the
    /// manager's generation is unchanged and the clock is before `fresh_until`. It reads
    /// one shared atomic (never written on the hot path, so it does not bounce between
    /// cores) and the clock, and clones an `Arc` no other thread touches. A miss falls
    /// back to the shared snapshot and refills the cache.
    fn cached_session(&self) -> Option<Arc<Session>> {
        let key = self.inner.id;
        let generation = self.inner.generation.load(Ordering::Acquire);
        let hit = HOT_CACHE.with(|cache| {
            let cache = cache.borrow();
            let slot = cache
                .as_ref()
                .filter(|slot| slot.manager == key && slot.generation == generation)?;
            let now = self.inner.clock.now();
            if slot.fresh_until.is_none_or(|until| now < until) {
                return slot.session.upgrade();
            }
            None
        });
        if hit.is_some() {
            return hit;
        }
        let hot = self.inner.hot.load_full()?;
        let ahead = hot.judge(self.inner.clock.now())?;
        if ahead {
            // In the refresh window: the token is still good; one refresh starts in the
            // background and nobody waits for it.
            self.refresh_ahead();
            return Some(Arc::clone(&hot.session));
        }
        // A private copy, so clones on this thread touch only this thread's reference
        // counts. Its token is zeroized when the copy is replaced or the thread ends.
        let mut private = Session::clone(&hot.session);
        private.tokens.access = AccessToken::new(hot.session.tokens.access.expose_secret());
        let private = Arc::new(private);
        {
            // Kept only while the session is the one this generation published (else
            // `publish_hot` has already dropped the copies, and this one would outlive
            // its session): the check and the push under the lock that publishing
            // takes to drop them.
            let mut copies = lock(&self.inner.copies);
            if self.inner.generation.load(Ordering::Acquire) != generation {
                return Some(private);
            }
            // This thread's earlier copy goes (its slot was taken by another manager,
            // or its token entered the window): one copy per thread, however often a
            // thread refills.
            let thread = std::thread::current().id();
            match copies.iter_mut().find(|(owner, _)| *owner == thread) {
                Some((_, copy)) => *copy = Arc::clone(&private),
                None => copies.push((thread, Arc::clone(&private))),
            }
        }
        HOT_CACHE.with(|cache| {
            *cache.borrow_mut() = Some(CachedSession {
                manager: key,
                generation,
                session: Arc::downgrade(&private),
                fresh_until: hot.fresh_until,
                base: BaseParts::new(&private.base_url).ok(),
            });
        });
        Some(private)
    }

    /// Starts one background refresh (refresh-ahead) unless one is running. Needs a
    /// tokio runtime; without one, nothing starts (the token is still valid, and the
    /// next call on a runtime starts it).
    fn refresh_ahead(&self) {
        if self.inner.ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.ahead.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            let observed = me.inner.completed.load(Ordering::SeqCst);
            // Its outcome reaches callers through the state (new tokens, or a backoff
            // after a failure, reported as an event).
            let _ = me.run_or_join(observed, Reason::Ahead).await;
            me.inner.ahead.store(false, Ordering::Release);
        });
    }

    /// Keeps the session fresh with no calls at all (for long idle periods): a task
    /// that refreshes at the refresh window, as a call would, and follows the session
    /// (adoptions, backoff after failures). It stops when the returned handle is dropped
    /// or the session ends (sign-out, rejection, expiry). Needs a tokio runtime.
    pub fn keep_fresh(&self) -> Result<KeepFresh, AuthError> {
        /// The longest sleep, so the task follows changes it is not woken for (a
        /// session adopted from another process, a clock that jumps).
        const POLL: Duration = Duration::from_secs(1);
        require_runtime()?;
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                if matches!(me.phase(), Phase::SignedOut | Phase::Expired) {
                    return;
                }
                let now = me.inner.clock.now();
                let hot = me.inner.hot.load_full();
                let wait = match hot.as_deref().map(|hot| (hot.judge(now), hot.fresh_until)) {
                    Some((Some(false), until)) => {
                        until.map_or(POLL, |until| until.duration_since(now).unwrap_or_default())
                    }
                    // Due (in the window, or expired): refresh now.
                    Some((_, _)) => {
                        let observed = me.inner.completed.load(Ordering::SeqCst);
                        let _ = me.run_or_join(observed, Reason::Ahead).await;
                        let state = lock(&me.inner.state);
                        // After a failure, wait for the backoff instead of retrying at once.
                        state.lifecycle.retry_at().map_or(Duration::ZERO, |at| {
                            at.duration_since(me.inner.clock.now()).unwrap_or_default()
                        })
                    }
                    // Not signed in yet, or refreshing: look again shortly.
                    None => POLL,
                };
                tokio::time::sleep(wait.min(POLL)).await;
            }
        });
        Ok(KeepFresh { task })
    }

    /// Waits until no refresh runs, in the background or otherwise (for tests and
    /// orderly shutdowns: a background refresh's outcome is then in the state, and
    /// saved unless the save failed: [`SessionManager::flush`] tells).
    ///
    /// A process should call it before it exits: a runtime shut down mid-refresh loses
    /// the server's answer, and with it a refresh token the server may already have
    /// rotated. Every step of a refresh has its own bound (the store lock's wait, the
    /// request timeout, one retry, the store's own timeouts), so it returns.
    pub async fn idle(&self) {
        loop {
            if !self.inner.ahead.load(Ordering::Acquire) {
                drop(self.inner.gate.lock().await);
                if !self.inner.ahead.load(Ordering::Acquire) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Refreshes now (joining a refresh already in flight) and returns the new token.
    ///
    /// A failed refresh is this call's error even when the session is kept (a transient
    /// failure while the token is still valid: other callers go on with it, and
    /// [`SessionEvent`]s report the failure too). Durable: if the refreshed session could not be saved to the store, this returns
    /// the store's error (the session stays live in memory, and the save is retried).
    pub async fn refresh(&self) -> Result<AccessToken, AuthError> {
        require_runtime()?;
        let observed = self.inner.completed.load(Ordering::SeqCst);
        let session = match self.run_or_join(observed, Reason::Explicit).await {
            Run::Owned(result) => result?,
            Run::Joined => match self.joined_error() {
                Some(error) => return Err(error),
                None => Session::clone(&*self.decide(Reason::Explicit).await?),
            },
        };
        self.flush().await?;
        Ok(session.tokens.access)
    }

    /// Saves a session the store does not hold yet (after a failed save), and returns
    /// the store's error if it still cannot. `Ok` when there is nothing to save. Call
    /// it before exiting a process that must not lose a rotated refresh token.
    pub async fn flush(&self) -> Result<(), AuthError> {
        if !self.inner.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        require_runtime()?;
        let _gate = self.inner.gate.lock().await;
        self.flush_owned().await
    }

    /// Saves the dirty session (the caller holds the gate).
    async fn flush_owned(&self) -> Result<(), AuthError> {
        if !self.inner.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let (expected, session) = {
            let state = lock(&self.inner.state);
            (state.version, state.lifecycle.session().cloned())
        };
        let Some(session) = session else {
            self.set_clean();
            return Ok(());
        };
        let swap = if expected.is_none() {
            // Never saved (a failed save at sign-in): a sign-in replaces what is there.
            self.inner.store.save(&session).await.map(Swap::Done)
        } else {
            self.inner
                .store
                .compare_and_swap(expected, Some(&session))
                .await
        };
        match swap {
            Ok(Swap::Done(version)) => {
                lock(&self.inner.state).version = Some(version);
                self.set_clean();
                tracing::info!("saved the session the store was missing");
                Ok(())
            }
            Ok(Swap::Conflict(current)) => {
                // Signed in or out elsewhere meanwhile: that wins.
                self.set_clean();
                self.settle_conflict(current).await.map(|_| ())
            }
            Err(error) => Err(error),
        }
    }

    /// Marks the session saved and releases a refresh lock kept for it.
    fn set_clean(&self) {
        let held = {
            let mut state = lock(&self.inner.state);
            self.inner.dirty.store(false, Ordering::Release);
            state.dirty_lock.take()
        };
        drop(held);
    }

    /// When the session is dirty, starts one background save (the hot path's way of
    /// retrying "on the next calls" without waiting for the store).
    fn flush_if_dirty(&self) {
        if !self.inner.dirty.load(Ordering::Relaxed)
            || self.inner.flushing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.flushing.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            if let Err(error) = me.flush().await {
                tracing::warn!(%error, "the session is still not saved");
            }
            me.inner.flushing.store(false, Ordering::Release);
        });
    }

    /// The current session, whose token may be used now: refreshed first when due.
    /// What an integration (a middleware, a proxy) authorizes a request with, through
    /// [`AuthProvider::authorize`]; the hot path (a fresh token) takes no lock.
    pub async fn usable_session(&self) -> Result<Arc<Session>, AuthError> {
        if let Some(session) = self.try_usable_session() {
            return Ok(session);
        }
        require_runtime()?;
        self.decide(Reason::Due).await
    }

    /// The hot path of [`SessionManager::usable_session`], without awaiting: the
    /// session if its token may be handed out now (starting the background refresh
    /// when one is due), `None` when only `usable_session` can decide (no session,
    /// an expired token, a refresh to wait for).
    ///
    /// For integrations that keep their own futures small: the pipeline behind
    /// `usable_session` is a large future, which they can box on the rare path only.
    pub fn try_usable_session(&self) -> Option<Arc<Session>> {
        let session = self.cached_session()?;
        self.flush_if_dirty();
        Some(session)
    }

    /// After the server answered 401 to a request authorized with `rejected` (a
    /// session from [`SessionManager::usable_session`]): a session whose token differs,
    /// because a refresh ran meanwhile (joined, never repeated) or runs now. At most
    /// one refresh runs however many callers report the same rejected token. Replay
    /// the request once with the returned session; a second 401 is final.
    ///
    /// Never a session of another sign-in: if the session was signed out (or replaced
    /// by another sign-in) meanwhile, this is [`AuthError::NotSignedIn`].
    pub async fn session_after_unauthorized(
        &self,
        rejected: &Session,
    ) -> Result<Arc<Session>, AuthError> {
        require_runtime()?;
        let session = self
            .decide(Reason::Unauthorized(rejected.tokens.access.fingerprint()))
            .await?;
        if !session.same_sign_in(rejected) {
            return Err(AuthError::NotSignedIn);
        }
        Ok(session)
    }

    /// Decides from the current state what a caller gets, running or joining the one
    /// refresh when one is needed. Callers that joined another run decide again
    /// (bounded), so they never take a stale or foreign result.
    async fn decide(&self, reason: Reason) -> Result<Arc<Session>, AuthError> {
        for _ in 0..4 {
            let observed = self.inner.completed.load(Ordering::SeqCst);
            let now = self.inner.clock.now();
            let input = match reason {
                Reason::Unauthorized(rejected) => Input::Unauthorized { now, rejected },
                Reason::Due | Reason::Ahead | Reason::Explicit => Input::TokenWanted { now },
            };
            let actions = self.step(input);
            match self.perform(actions).await {
                Next::Token => return self.current_arc(),
                Next::Fail(e) => return Err(e),
                Next::Refresh | Next::Start(_) => {}
            }
            match self.run_or_join(observed, reason).await {
                Run::Owned(result) => return result.map(Arc::new),
                Run::Joined => {
                    if let Some(error) = self.joined_error() {
                        return Err(error);
                    }
                    // The run this caller joined carried on without refreshing (the
                    // store's lock was busy in another process) and the token is still
                    // valid: take it, rather than queue for the lock again and again.
                    if matches!(reason, Reason::Due)
                        && let Some(session) = self.session()
                        && !session.tokens.is_expired_at(self.inner.clock.now())
                    {
                        return self.current_arc();
                    }
                }
            }
        }
        // The session kept changing under this caller (sign-ins, sign-outs and
        // refreshes completing one after the other): a transient condition.
        Err(did_not_complete("the wait for a usable session"))
    }

    /// The published session, or [`AuthError::NotSignedIn`].
    fn current_arc(&self) -> Result<Arc<Session>, AuthError> {
        match self.inner.hot.load_full() {
            Some(hot) => Ok(Arc::clone(&hot.session)),
            None => self.session().map(Arc::new).ok_or(AuthError::NotSignedIn),
        }
    }

    /// After the server answered 401 to a request made with `session`: a session of
    /// the same sign-in whose token differs (refreshed meanwhile), or one refreshed now.
    async fn after_unauthorized(&self, session: &Session) -> Result<Arc<Session>, AuthError> {
        self.session_after_unauthorized(session).await
    }

    /// Runs the one refresh (single flight), or waits for the run in flight. `observed`
    /// is the number of completed runs the caller saw before it decided a refresh was
    /// needed.
    async fn run_or_join(&self, observed: u64, reason: Reason) -> Run {
        let mut done = self.inner.done.subscribe();
        let gate = loop {
            if self.inner.completed.load(Ordering::SeqCst) != observed {
                return Run::Joined;
            }
            // Either we get the gate (and own the next refresh), or the run in flight
            // completes and wakes every waiter at once (no queueing through the gate).
            tokio::select! {
                biased;
                guard = Arc::clone(&self.inner.gate).lock_owned() => break guard,
                changed = done.wait_for(|completed| *completed != observed) => {
                    if changed.is_err() {
                        return Run::Owned(Err(AuthError::NotSignedIn));
                    }
                }
            }
        };
        if self.inner.completed.load(Ordering::SeqCst) != observed {
            return Run::Joined;
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
            me.complete_run(result.as_ref().err().cloned());
            result
        });
        Run::Owned(match task.await {
            Ok(result) => result,
            Err(_) => Err(did_not_complete("the refresh")),
        })
    }

    /// The error of the last completed run, if it failed.
    fn joined_error(&self) -> Option<AuthError> {
        lock(&self.inner.last_error).clone()
    }

    /// Runs one refresh; the caller holds the gate. The store's refresh lock is held
    /// throughout, and kept afterwards if the refreshed session could not be saved.
    async fn refresh_owned(&self, reason: Reason) -> Result<Session, AuthError> {
        let mut store_lock = match self.take_store_lock(reason).await? {
            Some(store_lock) => Some(store_lock),
            // Busy elsewhere, and this caller can carry on without waiting: after
            // re-reading the store, the current (valid) session.
            None => return self.session().ok_or(AuthError::NotSignedIn),
        };
        let result = self.refresh_locked(reason, &mut store_lock).await;
        if let Some(held) = store_lock
            && self.inner.dirty.load(Ordering::Acquire)
        {
            // Still unsaved: keep the lock so no other process refreshes with the
            // refresh token this process already spent.
            lock(&self.inner.state).dirty_lock = Some(held);
        }
        result
    }

    /// The refresh proper, holding the store lock in `store_lock` (taken by the save).
    async fn refresh_locked(
        &self,
        reason: Reason,
        store_lock: &mut Option<StoreLock>,
    ) -> Result<Session, AuthError> {
        if let Err(error) = self.flush_owned().await {
            // The refresh goes on (this process holds the lock and the newest tokens);
            // its own save is tried next.
            tracing::warn!(%error, "could not save the session before refreshing");
        }
        self.sync_from_store().await?;
        let forced = match reason {
            Reason::Due | Reason::Ahead => false,
            Reason::Explicit => true,
            Reason::Unauthorized(rejected) => match self.session() {
                // Adopted or refreshed since: the rejected token is already replaced,
                // and the replacement is taken unless it is itself due (in its window:
                // a token the caller's server may refuse too).
                Some(s) if s.tokens.access.fingerprint() != rejected => false,
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
        let input = match self.provider_refresh(&session).await {
            Ok(mut new) => {
                // The same sign-in, whatever the adapter built.
                new.lineage.clone_from(&session.lineage);
                Input::RefreshSucceeded {
                    session: new,
                    now: self.inner.clock.now(),
                    jitter: fastrand::f64(),
                }
            }
            Err(error) => {
                if matches!(error, AuthError::RefreshRejected)
                    && let Some(successor) = self.successor_after_rejection(&session).await
                {
                    // Another process rotated the token this one presented: its session
                    // (adopted above) is the answer, and the store keeps it.
                    return if successor.tokens.is_expired_at(self.inner.clock.now()) {
                        Err(crate::lifecycle::expired_on_arrival())
                    } else {
                        Ok(successor)
                    };
                }
                tracing::warn!(%error, "refresh failed");
                Input::RefreshFailed {
                    error,
                    now: self.inner.clock.now(),
                    jitter: fastrand::f64(),
                }
            }
        };
        // What an explicit refresh reports even when the still-valid session is kept.
        let failure = match &input {
            Input::RefreshFailed { error, .. } => Some(error.clone()),
            _ => None,
        };
        let actions = self.step(input);
        let mut rest = Vec::new();
        let mut saved: Result<(), AuthError> = Ok(());
        for action in actions {
            match action {
                Action::Persist(new) => {
                    let held = store_lock.take().unwrap_or_else(StoreLock::none);
                    match self.persist_refreshed(&new, held).await {
                        Persisted::Saved => {}
                        Persisted::Settled(result) => return result,
                        Persisted::Failed(error, held) => {
                            *store_lock = Some(held);
                            saved = Err(error);
                        }
                    }
                }
                other => rest.push(other),
            }
        }
        let result = match self.perform(rest).await {
            Next::Token => self.session().ok_or(AuthError::NotSignedIn),
            Next::Fail(e) => Err(e),
            Next::Refresh | Next::Start(_) => {
                Err(AuthError::protocol("refresh pipeline re-entered"))
            }
        };
        match (result, saved, failure, reason) {
            // A refresh was asked for: the caller learns it failed, even though the
            // still-valid session is kept for everyone else.
            (Ok(_), _, Some(error), Reason::Explicit) => Err(error),
            // The server refused this caller's token and no other came: the caller
            // learns why (a transient failure, to retry), rather than getting the
            // refused token back to be refused again. The session is kept: its token
            // may still be good for the server's other endpoints, and its refresh
            // token is.
            (Ok(session), _, Some(error), Reason::Unauthorized(rejected))
                if session.tokens.access.fingerprint() == rejected =>
            {
                Err(error)
            }
            // Durability was asked for: the caller learns the save failed.
            (Ok(_), Err(error), None, Reason::Explicit) => Err(error),
            (result, _, _, _) => result,
        }
    }

    /// After the server refused the refresh token `presented` carried: the session
    /// another process stored meanwhile (the same sign-in with another refresh token:
    /// it rotated ours first), adopted into this manager. `None` when the store holds
    /// nothing newer, and the rejection stands. This is what keeps a fleet whose lock
    /// was lost (a lease that expired while its holder stalled) from ending, and
    /// clearing from the store, a sign-in that is alive.
    async fn successor_after_rejection(&self, presented: &Session) -> Option<Session> {
        if let Err(error) = self.sync_from_store().await {
            tracing::warn!(%error, "could not re-read the store after a refused refresh");
            return None;
        }
        let current = self.session()?;
        (current.same_sign_in(presented) && current.tokens.refresh != presented.tokens.refresh)
            .then_some(current)
    }

    /// The refresh request, retried once when the server certainly did not process the
    /// first (a refused connection; 429 or 503 with a short `Retry-After`), so its
    /// refresh token is not spent; never after a timeout, a broken answer or a 5xx
    /// without `Retry-After` (the rule is [`RefreshRetry`]).
    async fn provider_refresh(&self, session: &Session) -> Result<Session, AuthError> {
        let first = self.inner.provider.refresh(session).await;
        let wait = match &first {
            Err(error) => self.inner.config.refresh_retry.delay_for(error),
            Ok(_) => None,
        };
        let Some(wait) = wait else {
            return first;
        };
        tracing::debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "the server did not process the refresh; retrying it once"
        );
        tokio::time::sleep(wait).await;
        self.inner.provider.refresh(session).await
    }

    /// Takes the store's refresh lock for a refresh (or the one kept while dirty).
    /// `Ok(None)`: the lock is busy and the current token is still valid, so the
    /// caller is not made to wait (after the store was re-read and anything newer
    /// adopted).
    async fn take_store_lock(&self, reason: Reason) -> Result<Option<StoreLock>, AuthError> {
        if let Some(held) = lock(&self.inner.state).dirty_lock.take() {
            return Ok(Some(held));
        }
        let valid = self
            .session()
            .is_some_and(|s| !s.tokens.is_expired_at(self.inner.clock.now()));
        let mut wait = match reason {
            // A background refresh-ahead too: holding out for the lock would only keep
            // the manager busy (and an exiting process waiting in `idle`); the next
            // call in the window tries again, or finds what the holder wrote.
            Reason::Due | Reason::Ahead if valid => {
                DUE_LOCK_WAIT.min(self.inner.config.store_lock_timeout)
            }
            _ => self.inner.config.store_lock_timeout,
        };
        loop {
            match tokio::time::timeout(wait, self.inner.store.lock()).await {
                Ok(Ok(store_lock)) => return Ok(Some(store_lock)),
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    // Another process is refreshing (or stuck). Never refresh without
                    // the lock: adopt what it wrote, if anything.
                    self.sync_from_store().await?;
                    let now = self.inner.clock.now();
                    match self.session() {
                        Some(s) if !s.tokens.is_expired_at(now) => {
                            let adopted_new = match reason {
                                Reason::Unauthorized(rejected) => {
                                    s.tokens.access.fingerprint() != rejected
                                }
                                _ => true,
                            };
                            // A caller whose token the server refused carries on
                            // only with another token.
                            let refused = matches!(reason, Reason::Unauthorized(_));
                            if adopted_new || (valid && !refused) {
                                return Ok(None);
                            }
                            return Err(lock_busy(wait));
                        }
                        // The token expired during the short wait of a caller that
                        // still had a valid one: wait as long as any expired caller.
                        Some(_) if wait < self.inner.config.store_lock_timeout => {
                            wait = self.inner.config.store_lock_timeout;
                        }
                        Some(_) => return Err(lock_busy(wait)),
                        None => return Err(AuthError::NotSignedIn),
                    }
                }
            }
        }
    }

    /// Saves a refreshed session with a compare-and-swap on the version this process
    /// last saw, holding `store_lock`. A conflict is settled (adopt or end), never
    /// overwritten; a failure keeps the session dirty and the lock held.
    async fn persist_refreshed(&self, session: &Session, store_lock: StoreLock) -> Persisted {
        let expected = lock(&self.inner.state).version;
        let swap = if expected.is_none() {
            // This process never had the session in the store (a save at sign-in
            // failed, or a memory-only start): write it if the store is still empty.
            self.inner.store.compare_and_swap(None, Some(session)).await
        } else {
            self.inner
                .store
                .compare_and_swap(expected, Some(session))
                .await
        };
        match swap {
            Ok(Swap::Done(version)) => {
                lock(&self.inner.state).version = Some(version);
                drop(store_lock);
                Persisted::Saved
            }
            Ok(Swap::Conflict(current)) => {
                tracing::warn!("the session store changed while refreshing; not overwriting it");
                drop(store_lock);
                Persisted::Settled(self.settle_conflict(current).await)
            }
            Err(error) => {
                tracing::error!(%error, "could not save the refreshed session; will retry");
                self.inner.dirty.store(true, Ordering::Release);
                Persisted::Failed(error, store_lock)
            }
        }
    }

    /// Settles a lost compare-and-swap from what the store holds now: an empty store
    /// ends the session here (signed out elsewhere); another session is adopted
    /// (refreshed or signed in elsewhere). Never overwrites.
    async fn settle_conflict(&self, current: Option<Box<Versioned>>) -> Result<Session, AuthError> {
        match current {
            None => {
                let ended = self.session();
                lock(&self.inner.state).version = None;
                let actions = self.step(Input::EndedElsewhere);
                self.perform(actions).await;
                // The tokens this process holds outlive the sign-out elsewhere only on
                // the server: tell it, where the dialect can, without waiting.
                if let Some(ended) = ended
                    && self.inner.provider.capabilities().server_logout
                {
                    let provider = Arc::clone(&self.inner.provider);
                    tokio::spawn(async move {
                        let _ = provider.logout(&ended).await;
                    });
                }
                Err(AuthError::NotSignedIn)
            }
            Some(current) => {
                let adoptable = current.session.dialect == self.inner.provider.dialect()
                    && current.session.base_url.origin() == self.inner.provider.base_url().origin();
                if !adoptable {
                    lock(&self.inner.state).version = Some(current.version);
                    let actions = self.step(Input::EndedElsewhere);
                    self.perform(actions).await;
                    return Err(AuthError::NotSignedIn);
                }
                let actions = {
                    let mut state = lock(&self.inner.state);
                    state.version = Some(current.version);
                    let actions = state.lifecycle.step(Input::Adopt {
                        session: current.session,
                        now: self.inner.clock.now(),
                        jitter: fastrand::f64(),
                    });
                    self.publish_hot(&state.lifecycle);
                    actions
                };
                self.perform(actions).await;
                match self.session() {
                    Some(s) if !s.tokens.is_expired_at(self.inner.clock.now()) => Ok(s),
                    // Adopted with an expired access token: the next call refreshes.
                    Some(_) => Err(crate::lifecycle::expired_on_arrival()),
                    None => Err(AuthError::NotSignedIn),
                }
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
                if stored.session.tokens == current.tokens && current.same_sign_in(&stored.session)
                {
                    lock(&self.inner.state).version = Some(stored.version);
                    return Ok(());
                }
                match self.settle_conflict(Some(Box::new(stored))).await {
                    Ok(_) => Ok(()),
                    // Adopted with an expired access token: the refresh goes on with
                    // the adopted refresh token.
                    Err(AuthError::Protocol { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            None if known.is_some() => self.settle_conflict(None).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    fn complete_run(&self, error: Option<AuthError>) {
        *lock(&self.inner.last_error) = error;
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
    pub fn send(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>, AuthError>> + Send + '_ {
        self.send_with(request, false)
    }

    /// Like [`SessionManager::send`], but retries the request even if its method is not
    /// idempotent (for a POST the caller knows is safe to repeat).
    pub fn send_idempotent(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>, AuthError>> + Send + '_ {
        self.send_with(request, true)
    }

    // Not an `async fn`: its arguments would be stored twice in the future (as
    // arguments, then moved into the body's locals); the block uses the request in place.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would store the request twice in its future"
    )]
    fn send_with(
        &self,
        mut request: Request<Bytes>,
        idempotent: bool,
    ) -> impl Future<Output = Result<Response<Bytes>, AuthError>> + Send + '_ {
        async move {
            require_runtime()?;
            // One deadline for the whole call; a refresh it started goes on in its own
            // task. Each wait holds it: the transport's (with its own timeout, one timer),
            // a retry's, a refresh's. Nothing waits on the hot path but the transport.
            let deadline = tokio::time::Instant::now() + self.inner.config.send_timeout;
            // This future is part of every caller's, polled at every step of the exchange:
            // it holds one request, the session and the exchange's future. The slow paths
            // (waiting for a session, the replay after a 401) are boxed, taken only when
            // needed.
            // (Futures are bound before they are awaited: a statement's temporaries would
            // live across the await, in this future.)
            let session = match self.try_usable_session() {
                Some(session) => session,
                None => {
                    let waiting = Box::pin(within(deadline, self.usable_session()));
                    waiting.await?
                }
            };
            self.resolve_against(&mut request, &session)?;
            let pending = self.send_authorized(&request, &session, idempotent, deadline);
            let response = pending.await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            drop(response);
            let replay =
                Box::pin(self.replay_after_unauthorized(request, session, idempotent, deadline));
            replay.await
        }
    }

    /// After a 401 to `request` sent with `session`: a refreshed session (joining a
    /// refresh in flight), then one replay; a second 401 is [`AuthError::Unauthorized`].
    async fn replay_after_unauthorized(
        &self,
        request: Request<Bytes>,
        session: Arc<Session>,
        idempotent: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Bytes>, AuthError> {
        let refreshed = within(deadline, self.after_unauthorized(&session)).await?;
        let response = self
            .send_authorized(&request, &refreshed, idempotent, deadline)
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
        template: &Request<Bytes>,
        session: &Session,
        idempotent: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Bytes>, AuthError> {
        let config = &self.inner.config;
        let provider = self.inner.provider.as_ref();
        // Application traffic gets the manager's limits; the auth endpoints, sent
        // without them, keep the transport's own.
        let limits = RequestLimits {
            timeout: config.request_timeout,
            max_response_bytes: Some(config.max_response_bytes),
            deadline: Some(deadline),
        };
        // One copy of the template per attempt: the template itself stays unauthorized
        // for a replay with the refreshed session.
        let attempt = || {
            let mut request = clone_request(template);
            crate::provider::authorize_request(provider, session, &mut request)?;
            Ok(request)
        };
        let transport = self.inner.transport.as_ref();
        let send = |request| transport.send_with_limits(request, limits);
        let retryable = idempotent || crate::retry::is_idempotent(template.method());
        // (The futures are bound before they are awaited: a statement's temporaries,
        // `attempt()?`'s included, would live across the await, in this future.)
        let response = if retryable && config.retry.retries > 0 {
            let clock = &self.inner.clock;
            let attempts =
                send_attempts(send, attempt, &config.retry, || clock.now(), Some(deadline));
            attempts.await?
        } else {
            let request = attempt()?;
            let pending = send(request);
            pending.await?
        };
        // The cap holds even through a transport that ignores `RequestLimits`.
        if response.body().len() > config.max_response_bytes {
            return Err(AuthError::Transport {
                kind: crate::error::TransportErrorKind::BodyTooLarge,
                source: Some(Arc::new(std::io::Error::other(format!(
                    "response body larger than {} bytes",
                    config.max_response_bytes
                )))),
            });
        }
        Ok(response)
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
                call(Session::clone(&session)).await
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
    /// when the dialect can. The local session is gone even if a call fails. A store
    /// that could not be cleared is returned as [`AuthError::Store`] (the stored session
    /// would otherwise come back at the next restore); else a failed server call is
    /// returned, so the caller knows the server was not told. Once it has started, a
    /// cancelled caller does not stop it: the store is still cleared and the server
    /// still told. A session signed in elsewhere meanwhile (another lineage) is left in
    /// the store.
    pub async fn logout(&self) -> Result<LogoutOutcome, AuthError> {
        require_runtime()?;
        let gate = Arc::clone(&self.inner.gate).lock_owned().await;
        let session = self.session();
        let (actions, held) = {
            let mut state = lock(&self.inner.state);
            state.challenge = None;
            let held = state.dirty_lock.take();
            self.inner.dirty.store(false, Ordering::Release);
            let actions = state.lifecycle.step(Input::SignOut);
            self.publish_hot(&state.lifecycle);
            (actions, held)
        };
        self.complete_run(None);
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut cleared = Ok(());
            for action in actions {
                match action {
                    Action::ClearStore => cleared = me.clear_store(session.as_ref()).await,
                    Action::Emit(event) => {
                        me.emit(event);
                    }
                    _ => {}
                }
            }
            drop(held);
            drop(gate);
            let session = session.ok_or(AuthError::NotSignedIn)?;
            let told = me.inner.provider.logout(&session).await;
            cleared.and(told)
        });
        task.await
            .unwrap_or_else(|_| Err(did_not_complete("the logout")))
    }

    // ----- driving the machine -------------------------------------------------

    /// Feeds the machine one input; when it ends the session (and asks for the store
    /// to be cleared), the ended session is noted so the store is cleared only of it.
    fn step(&self, input: Input) -> Vec<Action> {
        let mut state = lock(&self.inner.state);
        let before = state.lifecycle.session().cloned();
        let actions = state.lifecycle.step(input);
        if actions.iter().any(|a| matches!(a, Action::ClearStore)) {
            state.ended = before;
        }
        self.publish_hot(&state.lifecycle);
        actions
    }

    /// Keeps the hot-path snapshot equal to the machine's state (called under the state
    /// lock, so snapshots are published in order).
    fn publish_hot(&self, lifecycle: &Lifecycle) {
        let hot = match (lifecycle.phase(), lifecycle.session_arc()) {
            (Phase::Active | Phase::Refreshing, Some(session)) => Some(Arc::new(Hot {
                session: Arc::clone(session),
                fresh_until: lifecycle.fresh_until(),
                usable_until: lifecycle.usable_until(),
            })),
            _ => None,
        };
        self.inner.hot.store(hot);
        // After the store, so a cache tagged with the new generation never holds an
        // older snapshot; the threads' private copies of the old session are dropped
        // with it (under their lock: a copy being made now is either dropped here or
        // sees the new generation and is not kept).
        let old = {
            let mut copies = lock(&self.inner.copies);
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *copies)
        };
        drop(old);
    }

    /// Performs store writes and events; returns what the caller should do next.
    async fn perform(&self, actions: Vec<Action>) -> Next {
        let mut next = Next::Token;
        for action in actions {
            match action {
                // Sign-ins and refreshes save their sessions themselves (each with its
                // own rule); anything else asking to persist is saved by the next flush.
                Action::Persist(_) => self.inner.dirty.store(true, Ordering::Release),
                Action::ClearStore => {
                    let ended = lock(&self.inner.state).ended.take();
                    if let Err(error) = self.clear_store(ended.as_ref()).await {
                        tracing::error!(%error, "could not clear the session store");
                    }
                }
                Action::Emit(event) => {
                    self.emit(event);
                }
                Action::HandOut(_) => next = Next::Token,
                Action::NeedRefresh => next = Next::Refresh,
                Action::RefreshAhead => self.refresh_ahead(),
                Action::StartRefresh(session) => next = Next::Start(Box::new(session)),
                Action::Fail(e) => next = Next::Fail(e),
            }
        }
        next
    }

    /// Removes `ended` from the store with compare-and-swap: what the store holds is
    /// deleted only if it is the same sign-in (perhaps refreshed by another process);
    /// another sign-in stored meanwhile is left alone.
    async fn clear_store(&self, ended: Option<&Session>) -> Result<(), AuthError> {
        let mut expected = lock(&self.inner.state).version;
        for _ in 0..8 {
            if expected.is_none() {
                match self.inner.store.load().await? {
                    None => return Ok(()),
                    Some(stored) if ended.is_some_and(|e| e.same_sign_in(&stored.session)) => {
                        expected = Some(stored.version);
                    }
                    Some(_) => return Ok(()),
                }
            }
            match self.inner.store.compare_and_swap(expected, None).await? {
                Swap::Done(_) | Swap::Conflict(None) => {
                    lock(&self.inner.state).version = None;
                    return Ok(());
                }
                Swap::Conflict(Some(current)) => {
                    if ended.is_some_and(|e| e.same_sign_in(&current.session)) {
                        expected = Some(current.version);
                    } else {
                        tracing::info!("the store holds another sign-in now; leaving it");
                        lock(&self.inner.state).version = None;
                        return Ok(());
                    }
                }
            }
        }
        Err(AuthError::Store {
            message: "the session store kept changing while it was being cleared".into(),
            source: None,
        })
    }
}

/// Fails before anything changes when there is no tokio runtime to run refreshes,
/// saves and logouts on.
fn require_runtime() -> Result<(), AuthError> {
    // Inside a task there is a runtime: a read of the task's id, where `try_current`
    // would clone (and drop) the runtime's handle, an `Arc` every worker shares.
    if tokio::task::try_id().is_some() {
        return Ok(());
    }
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| AuthError::Unsupported {
            capability: "calling the session manager outside a tokio runtime",
        })
}

/// A fresh [`Session::lineage`]: 128 random bits in hex.
fn new_lineage() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// How long a caller whose token is due but still valid (or a background refresh-ahead)
/// waits for the store's refresh lock before carrying on with its valid token: long
/// enough for a networked store's lock (a Redis `SET NX` is one round trip, which a
/// zero wait never allows), short enough that a busy or hung peer does not noticeably
/// block callers.
const DUE_LOCK_WAIT: Duration = Duration::from_millis(100);

/// The error when another process keeps the store's refresh lock past the deadline.
fn lock_busy(waited: Duration) -> AuthError {
    AuthError::Store {
        message: format!(
            "another process has held the session store's refresh lock for more than {} ms and the stored session is not newer; not refreshing without it",
            waited.as_millis()
        ),
        source: None,
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
            jitter: fastrand::f64(),
        }) {
            // A transient failure changes no store; only events remain to be sent.
            if let Action::Emit(event) = action {
                manager.emit(event);
            }
        }
        manager.complete_run(Some(error));
    }
}

/// The session's base URL in `http`'s types, kept so that a relative request URI is
/// resolved without formatting and parsing the base each time.
#[derive(Debug, Clone)]
struct BaseParts {
    url: url::Url,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base's path without its trailing `/` (empty for a base at the root); the
    /// base's own query is dropped.
    prefix: String,
}

impl BaseParts {
    fn new(url: &url::Url) -> Result<Self, AuthError> {
        let invalid = || AuthError::validation("uri", "the session's base URL is not an HTTP URI");
        let scheme = url.scheme().parse().map_err(|_| invalid())?;
        let authority = url[url::Position::BeforeUsername..url::Position::AfterPort]
            .parse()
            .map_err(|_| invalid())?;
        Ok(Self {
            url: url.clone(),
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `relative` (a path and query) on this base: the base's origin and path prefix,
    /// then the request's path and query as given.
    fn resolve(&self, relative: &Uri) -> Result<Uri, AuthError> {
        let invalid = || AuthError::validation("uri", "invalid request URI");
        let path_and_query = match relative.path_and_query().cloned() {
            Some(pq) if self.prefix.is_empty() && pq.as_str().starts_with('/') => pq,
            pq => {
                let rest = pq.as_ref().map_or("/", |p| p.as_str());
                let mut joined = String::with_capacity(self.prefix.len() + rest.len() + 1);
                joined.push_str(&self.prefix);
                if !rest.starts_with('/') {
                    joined.push('/');
                }
                joined.push_str(rest);
                http::uri::PathAndQuery::from_maybe_shared(joined).map_err(|_| invalid())?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|_| invalid())
    }
}

impl SessionManager {
    /// `relative` on `base_url`, with the manager's shared copy of its parts (made on
    /// first use), or parts made now for a session with another base URL.
    fn resolve_shared(&self, base_url: &url::Url, relative: &Uri) -> Result<Uri, AuthError> {
        if self.inner.base.get().is_none() {
            let _ = self.inner.base.set(BaseParts::new(base_url)?);
        }
        match self.inner.base.get() {
            Some(base) if base.url == *base_url => base.resolve(relative),
            _ => BaseParts::new(base_url)?.resolve(relative),
        }
    }

    /// Resolves a relative request URI (`/items`) against the session's base URL, and
    /// refuses an absolute one outside the session's origin.
    fn resolve_against(
        &self,
        request: &mut Request<Bytes>,
        session: &Session,
    ) -> Result<(), AuthError> {
        let uri = request.uri();
        if uri.scheme().is_none() && uri.authority().is_none() {
            let relative = std::mem::take(request.uri_mut());
            // This thread's copy first: the URI shares its authority's bytes, whose
            // reference count other threads then do not touch.
            let id = self.inner.id;
            let local = HOT_CACHE.with(|cache| {
                let cache = cache.borrow();
                let base = cache
                    .as_ref()
                    .filter(|slot| slot.manager == id)?
                    .base
                    .as_ref()?;
                (base.url == session.base_url).then(|| base.resolve(&relative))
            });
            *request.uri_mut() = match local {
                Some(uri) => uri?,
                None => self.resolve_shared(&session.base_url, &relative)?,
            };
            return Ok(());
        }
        if !session.is_same_origin_uri(uri) {
            return Err(AuthError::InsecureTransport {
                reason: format!(
                    "request to {} is outside the session's origin {}; credentials are only sent there",
                    uri.host().unwrap_or("?"),
                    session.base_url.origin().ascii_serialization()
                ),
            });
        }
        Ok(())
    }
}
