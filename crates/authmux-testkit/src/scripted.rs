//! [`ScriptedProvider`]: an in-memory [`AuthProvider`] whose refresh answers are
//! scripted, for testing session managers, stores and lifecycle logic without a network.
//!
//! It issues opaque tokens (`access-N`, `refresh-N`) with a configurable lifetime on an
//! injected [`ManualClock`], answers refreshes as scripted ([`RefreshAnswer`]: rotate,
//! keep, transient failure, rejection; [`RefreshAnswer::Rotate`] when the script is
//! empty), acts as the resource server behind its own transport (200 for a live,
//! unexpired access token, else 401), and records everything a property needs in
//! [`Record`]: refresh calls, how many ran at once, every refresh token presented and
//! whether it was already spent, every access token issued with its expiry.
//!
//! Clones share the server state, so several managers (or a manager and a test) can
//! talk to one "server". It is [`Send`] + [`Sync`] and needs a tokio runtime for its
//! optional delays.
//!
//! - `login` accepts any email with the password `"right"`.
//! - `refresh` with a refresh token that is not live is [`AuthError::RefreshRejected`];
//!   with [`ScriptedProvider::reuse_detection`] on, presenting a spent refresh token
//!   also revokes every live token (as Linxio-style servers revoke the whole family).
//! - `logout` revokes the session's tokens.

#![allow(
    missing_docs,
    reason = "the record's fields are self-describing counters"
)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use authmux_core::strategies::RefreshAnswer;
use authmux_core::transport::Transport;
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, Expiry, LoginOutcome,
    LogoutOutcome, ManualClock, RefreshToken, Session, TokenSet, UserProfile, async_trait,
};
use bytes::Bytes;
use http::{Request, Response};
use url::Url;

/// What the scripted server saw and holds.
#[derive(Debug, Default)]
pub struct Record {
    pub refresh_calls: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Refresh tokens presented after they were rotated away or revoked.
    pub spent_presented: usize,
    pub presented: Vec<String>,
    pub answers: VecDeque<RefreshAnswer>,
    /// Access tokens the server accepts, with their expiry.
    pub live_access: HashMap<String, Option<SystemTime>>,
    /// Every access token ever issued, with its expiry.
    pub issued_access: HashMap<String, Option<SystemTime>>,
    /// Refresh tokens the server accepts.
    pub live_refresh: HashSet<String>,
    pub dead_refresh: HashSet<String>,
    pub logouts: usize,
    /// Refreshes answered with a definitive refusal (scripted, or a dead token).
    pub rejections: usize,
    pub api_calls: usize,
    /// Access tokens the resource server must answer 401 to once.
    pub reject_once: HashSet<String>,
}

/// The scripted provider (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    /// The clock tokens are issued and checked on.
    pub clock: ManualClock,
    /// Lifetime of issued access tokens (`None`: unstated expiry).
    pub lifetime: Option<Duration>,
    /// Whether it has a refresh endpoint.
    pub can_refresh: bool,
    /// How long a refresh takes.
    pub refresh_delay: Duration,
    /// How long the answer to a refresh takes to arrive after the server has
    /// processed it (rotated the tokens): the window in which another process can sign
    /// out while this one's new tokens are still on the wire.
    pub refresh_answer_delay: Duration,
    /// Presenting a spent refresh token revokes every live token (the whole family).
    pub reuse_detection: bool,
    /// How long the server takes to answer a logout.
    pub logout_delay: Duration,
    /// The resource server answers 401 to everything.
    pub api_always_401: Arc<AtomicBool>,
    pub record: Arc<Mutex<Record>>,
    counter: Arc<AtomicUsize>,
    url: Url,
}

impl ScriptedProvider {
    /// A provider on `clock` issuing 900-second tokens, refreshing with rotation.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            lifetime: Some(Duration::from_secs(900)),
            can_refresh: true,
            refresh_delay: Duration::from_millis(0),
            refresh_answer_delay: Duration::ZERO,
            reuse_detection: false,
            logout_delay: Duration::from_millis(0),
            api_always_401: Arc::default(),
            record: Arc::default(),
            counter: Arc::default(),
            url: Url::parse("https://api.example.test/").unwrap(),
        }
    }

    /// The server's record (locked; do not hold it across an await).
    pub fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }

    /// Queues refresh answers, used in order.
    pub fn script(&self, answers: impl IntoIterator<Item = RefreshAnswer>) {
        self.record().answers.extend(answers);
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    fn issue(&self, refresh: Option<RefreshToken>) -> TokenSet {
        let n = self.next();
        let access = AccessToken::new(format!("access-{n}"));
        let now = self.clock.now();
        let expiry = self.lifetime.map_or(Expiry::Unstated, Expiry::In);
        let tokens = TokenSet::new(access, refresh, expiry, now);
        let mut record = self.record();
        record
            .live_access
            .insert(tokens.access.expose_secret().to_owned(), tokens.expires_at);
        record
            .issued_access
            .insert(tokens.access.expose_secret().to_owned(), tokens.expires_at);
        if let Some(r) = &tokens.refresh {
            record.live_refresh.insert(r.expose_secret().to_owned());
        }
        tokens
    }

    /// A new signed-in session (what `login` returns).
    pub fn new_session(&self) -> Session {
        let refresh = self
            .can_refresh
            .then(|| RefreshToken::new(format!("refresh-{}", self.next())));
        let tokens = self.issue(refresh);
        Session::new("scripted", self.url.clone(), tokens).with_user(Some(UserProfile::from_json(
            serde_json::json!({"id": "u1", "email": "u@example.test"}),
            &[],
        )))
    }

    /// Makes the resource server reject `token` once (as if revoked server-side and
    /// then restored), to drive refresh-on-401.
    pub fn revoke_access(&self, token: &str) {
        self.record().live_access.remove(token);
    }
}

#[async_trait]
impl AuthProvider for ScriptedProvider {
    fn dialect(&self) -> &str {
        "scripted"
    }

    fn base_url(&self) -> &Url {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: self.can_refresh,
            rotating_refresh: true,
            server_logout: true,
            ..Capabilities::default()
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        let me = self.clone();
        Arc::new(authmux_core::transport::from_fn(
            move |req: Request<Bytes>| {
                let me = me.clone();
                async move { Ok(me.serve(&req)) }
            },
        ))
    }

    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        if credentials.password.expose_secret() != "right" {
            return Err(AuthError::InvalidCredentials);
        }
        Ok(LoginOutcome::Authenticated(self.new_session()))
    }

    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        let presented = session
            .tokens
            .refresh
            .clone()
            .ok_or(AuthError::RefreshRejected)?;
        let answer = {
            let mut record = self.record();
            record.refresh_calls += 1;
            record.in_flight += 1;
            record.max_in_flight = record.max_in_flight.max(record.in_flight);
            record.presented.push(presented.expose_secret().to_owned());
            if record.dead_refresh.contains(presented.expose_secret()) {
                record.spent_presented += 1;
                if self.reuse_detection {
                    // A replayed refresh token: the family is compromised, revoke it all.
                    let live: Vec<String> = record.live_refresh.drain().collect();
                    record.dead_refresh.extend(live);
                    record.live_access.clear();
                }
            }
            record.answers.pop_front().unwrap_or(RefreshAnswer::Rotate)
        };
        if self.refresh_delay > Duration::ZERO {
            tokio::time::sleep(self.refresh_delay).await;
        } else {
            tokio::task::yield_now().await;
        }
        let result = {
            let live = self
                .record()
                .live_refresh
                .contains(presented.expose_secret());
            if !live || matches!(answer, RefreshAnswer::Reject) {
                self.record().rejections += 1;
            }
            match answer {
                _ if !live => Err(AuthError::RefreshRejected),
                RefreshAnswer::Transient => Err(AuthError::Timeout),
                RefreshAnswer::Reject => {
                    let mut record = self.record();
                    record.live_refresh.remove(presented.expose_secret());
                    record
                        .dead_refresh
                        .insert(presented.expose_secret().to_owned());
                    Err(AuthError::RefreshRejected)
                }
                RefreshAnswer::Keep => Ok(session.with_tokens(self.issue(Some(presented.clone())))),
                RefreshAnswer::Rotate => {
                    {
                        let mut record = self.record();
                        record.live_refresh.remove(presented.expose_secret());
                        record
                            .dead_refresh
                            .insert(presented.expose_secret().to_owned());
                    }
                    let fresh = RefreshToken::new(format!("refresh-{}", self.next()));
                    Ok(session.with_tokens(self.issue(Some(fresh))))
                }
            }
        };
        if self.refresh_answer_delay > Duration::ZERO {
            tokio::time::sleep(self.refresh_answer_delay).await;
        }
        self.record().in_flight -= 1;
        result
    }

    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        tokio::time::sleep(self.logout_delay).await;
        let mut record = self.record();
        record.logouts += 1;
        record
            .live_access
            .remove(session.tokens.access.expose_secret());
        if let Some(r) = &session.tokens.refresh {
            record.live_refresh.remove(r.expose_secret());
            record.dead_refresh.insert(r.expose_secret().to_owned());
        }
        Ok(LogoutOutcome::Revoked)
    }

    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        if self.accepts(session.tokens.access.expose_secret()) {
            Ok(session.user.clone().unwrap_or_default())
        } else {
            Err(AuthError::Unauthorized { message: None })
        }
    }
}

impl ScriptedProvider {
    fn accepts(&self, token: &str) -> bool {
        let now = self.clock.now();
        let record = self.record();
        matches!(record.live_access.get(token), Some(expiry) if expiry.is_none_or(|e| now < e))
    }

    fn serve(&self, req: &Request<Bytes>) -> Response<Bytes> {
        self.record().api_calls += 1;
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        let status = if self.accepts(&token) && !self.api_always_401.load(Ordering::SeqCst) {
            200
        } else {
            401
        };
        Response::builder()
            .status(status)
            .body(Bytes::from(format!(
                "{{\"path\":\"{}\"}}",
                req.uri().path()
            )))
            .unwrap()
    }
}
