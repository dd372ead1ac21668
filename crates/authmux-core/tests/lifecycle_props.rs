//! Property tests of the session lifecycle: first the pure machine under arbitrary
//! inputs, then the real `SessionManager` driven by arbitrary scripts of time steps,
//! refresh answers and concurrent callers against a scripted provider and a manual
//! clock. Properties:
//! - no expired token is ever handed out;
//! - at most one refresh is in flight per session;
//! - a rotated refresh token is never sent again;
//! - after logout or a definitive rejection, no token is handed out and the store is
//!   empty;
//! - a transient refresh failure never loses a still-valid session;
//! - sessions round-trip through serde, and `Debug` of a session shows no secret;
//! - callers cancelled mid-refresh never leave the session stuck (every later call
//!   still gets a token or a typed, expected error).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authmux_core::lifecycle::{Action, Input, Lifecycle, Phase, RefreshWindow};
use authmux_core::strategies::{LifecycleOp, RefreshAnswer, lifecycle_script, session};
use authmux_core::{
    AccessToken, AuthError, Credentials, Expiry, ManualClock, MemoryStore, RefreshToken, Session,
    SessionManager, SessionStore, TokenSet,
};
use bytes::Bytes;
use proptest::prelude::*;
use url::Url;

// ----- the pure machine ---------------------------------------------------------

#[derive(Debug, Clone)]
enum MachineOp {
    SignIn {
        lifetime: Option<u64>,
        refresh: bool,
    },
    Advance(u64),
    TokenWanted,
    Unauthorized {
        current: bool,
    },
    BeginRefresh {
        forced: bool,
    },
    Succeed {
        rotate: bool,
        lifetime: Option<u64>,
    },
    Fail {
        rejected: bool,
    },
    Adopt,
    SignOut,
}

fn machine_op() -> impl Strategy<Value = MachineOp> {
    prop_oneof![
        1 => (proptest::option::of(1u64..3_600), any::<bool>()).prop_map(|(lifetime, refresh)| MachineOp::SignIn { lifetime, refresh }),
        3 => (0u64..2_000).prop_map(MachineOp::Advance),
        4 => Just(MachineOp::TokenWanted),
        2 => any::<bool>().prop_map(|current| MachineOp::Unauthorized { current }),
        3 => any::<bool>().prop_map(|forced| MachineOp::BeginRefresh { forced }),
        3 => (any::<bool>(), proptest::option::of(prop_oneof![Just(0u64), 1u64..3_600])).prop_map(|(rotate, lifetime)| MachineOp::Succeed { rotate, lifetime }),
        2 => any::<bool>().prop_map(|rejected| MachineOp::Fail { rejected }),
        1 => Just(MachineOp::Adopt),
        1 => Just(MachineOp::SignOut),
    ]
}

struct Model {
    now: SystemTime,
    n: u64,
    expiry: HashMap<String, Option<SystemTime>>,
}

impl Model {
    fn session(&mut self, lifetime: Option<u64>, refresh: Option<RefreshToken>) -> Session {
        self.n += 1;
        let access = AccessToken::new(format!("a{}", self.n));
        let tokens = TokenSet::new(
            access,
            refresh,
            lifetime.map_or(Expiry::Unstated, |s| Expiry::In(Duration::from_secs(s))),
            self.now,
        );
        self.expiry
            .insert(tokens.access.expose_secret().to_owned(), tokens.expires_at);
        Session::new("m", Url::parse("https://m.example").unwrap(), tokens)
    }
    fn refresh_token(&mut self) -> RefreshToken {
        self.n += 1;
        RefreshToken::new(format!("r{}", self.n))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_pure_machine_keeps_its_invariants(ops in proptest::collection::vec(machine_op(), 1..60), can_refresh in any::<bool>()) {
        let mut m = Lifecycle::new(can_refresh, RefreshWindow::default());
        let mut model = Model { now: UNIX_EPOCH + Duration::from_secs(1_800_000_000), n: 0, expiry: HashMap::new() };
        let mut rotated_away: HashSet<String> = HashSet::new();
        for op in ops {
            let phase_before = m.phase();
            let session_before = m.session().cloned();
            let input = match op {
                MachineOp::SignIn { lifetime, refresh } => {
                    let r = refresh.then(|| model.refresh_token());
                    Input::SignedIn { session: model.session(lifetime, r), jitter: 0.5, persist: true }
                }
                MachineOp::Advance(s) => { model.now += Duration::from_secs(s); continue; }
                MachineOp::TokenWanted => Input::TokenWanted { now: model.now },
                MachineOp::Unauthorized { current } => {
                    let rejected = match (&session_before, current) {
                        (Some(s), true) => s.tokens.access.fingerprint(),
                        _ => AccessToken::new("stale").fingerprint(),
                    };
                    Input::Unauthorized { now: model.now, rejected }
                }
                MachineOp::BeginRefresh { forced } => Input::BeginRefresh { now: model.now, forced },
                MachineOp::Succeed { rotate, lifetime } => {
                    let old = session_before.as_ref().and_then(|s| s.tokens.refresh.clone());
                    let refresh = match (rotate, old) {
                        (false, Some(old)) => Some(old),
                        _ => Some(model.refresh_token()),
                    };
                    let new = model.session(lifetime, refresh);
                    Input::RefreshSucceeded { session: new, now: model.now, jitter: 0.5 }
                }
                MachineOp::Fail { rejected } => Input::RefreshFailed {
                    error: if rejected { AuthError::RefreshRejected } else { AuthError::Timeout },
                    now: model.now, jitter: 0.5
                },
                MachineOp::Adopt => {
                    let r = Some(model.refresh_token());
                    Input::Adopt { session: model.session(Some(900), r), now: model.now, jitter: 0.5 }
                }
                MachineOp::SignOut => Input::SignOut,
            };
            let is_sign_out = matches!(input, Input::SignOut);
            let is_rejection = matches!(&input, Input::RefreshFailed { error: AuthError::RefreshRejected, .. }) && phase_before == Phase::Refreshing;
            let is_transient = matches!(&input, Input::RefreshFailed { error: AuthError::Timeout, .. }) && phase_before == Phase::Refreshing;
            let actions = m.step(input);
            for action in &actions {
                match action {
                    Action::HandOut(t) => {
                        let expiry = model.expiry[t.expose_secret()];
                        prop_assert!(expiry.is_none_or(|e| model.now < e), "expired token handed out");
                    }
                    Action::StartRefresh(s) => {
                        prop_assert_ne!(phase_before, Phase::Refreshing, "two refreshes in flight");
                        let r = s.tokens.refresh.as_ref().expect("refresh without a refresh token");
                        prop_assert!(!rotated_away.contains(r.expose_secret()), "spent refresh token sent again");
                    }
                    _ => {}
                }
            }
            // Track rotations the way a server sees them.
            if let (Some(before), Some(after)) = (&session_before, m.session())
                && let Some(old) = &before.tokens.refresh
                && after.tokens.refresh.as_ref() != Some(old)
            {
                rotated_away.insert(old.expose_secret().to_owned());
            }
            if is_sign_out || is_rejection {
                prop_assert!(m.session().is_none());
                prop_assert!(actions.iter().any(|a| matches!(a, Action::ClearStore)));
                let again = m.step(Input::TokenWanted { now: model.now });
                prop_assert!(matches!(again[..], [Action::Fail(_)]));
            }
            if is_transient {
                let was_valid = session_before.as_ref().is_some_and(|s| !s.tokens.is_expired_at(model.now));
                if was_valid {
                    prop_assert!(m.session().is_some(), "transient failure lost a valid session");
                }
            }
        }
    }

    #[test]
    fn sessions_round_trip_and_never_print_secrets(s in session()) {
        let json = serde_json::to_string(&s).unwrap();
        let back: Session = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &s);
        let debug = format!("{s:?}");
        prop_assert!(!debug.contains(s.tokens.access.expose_secret()));
        if let Some(r) = &s.tokens.refresh {
            prop_assert!(!debug.contains(r.expose_secret()));
        }
    }
}

// ----- the real manager, concurrently ------------------------------------------

fn run_script(script: Vec<LifecycleOp>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let clock = ManualClock::at_unix(1_800_000_000);
        let provider = support::Scripted::new(clock.clone());
        let store = MemoryStore::new();
        let manager = SessionManager::builder(Arc::new(provider.clone()))
            .store(store.clone())
            .clock(clock.clone())
            .build();
        let credentials = Credentials::new("u@example.test", "right");
        manager.login(&credentials).await.unwrap();
        // Whether the session may legitimately be gone: signed out, or rejected.
        let mut may_be_gone = false;
        for op in script {
            let now = authmux_core::Clock::now(&clock);
            let valid_before = manager
                .session()
                .is_some_and(|s| !s.tokens.is_expired_at(now));
            let mut results = Vec::new();
            let rejections_before = provider.record().rejections;
            match op {
                LifecycleOp::Advance(d) => clock.advance(d),
                LifecycleOp::WantToken { callers } => {
                    let tasks: Vec<_> = (0..callers)
                        .map(|_| {
                            let m = manager.clone();
                            tokio::spawn(async move { m.access_token().await })
                        })
                        .collect();
                    for t in tasks {
                        results.push(t.await.unwrap());
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
                                m.send(http::Request::get("/r").body(Bytes::new()).unwrap())
                                    .await
                                    .map(|_| ())
                            })
                        })
                        .collect();
                    for t in tasks {
                        if let Err(e) = t.await.unwrap() {
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
                    may_be_gone = true;
                    prop_assert!(store.load().await.unwrap().is_none());
                    prop_assert!(manager.access_token().await.is_err());
                }
                LifecycleOp::SignIn => {
                    manager.login(&credentials).await.unwrap();
                    may_be_gone = false;
                }
            }
            // A background refresh (refresh-ahead) may still run: let it land, and
            // note a rejection it met (its callers got the still-valid token).
            manager.idle().await;
            if provider.record().rejections > rejections_before {
                may_be_gone = true;
            }
            let now = authmux_core::Clock::now(&clock);
            for result in &results {
                match result {
                    Ok(token) => {
                        let expiry = provider.record().issued_access[token.expose_secret()];
                        prop_assert!(expiry.is_none_or(|e| now < e), "expired token handed out");
                    }
                    Err(AuthError::RefreshRejected) => may_be_gone = true,
                    Err(
                        AuthError::NotSignedIn
                        | AuthError::Timeout
                        | AuthError::Unauthorized { .. },
                    ) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
            }
            {
                let record = provider.record();
                prop_assert!(
                    record.max_in_flight <= 1,
                    "{} refreshes in flight",
                    record.max_in_flight
                );
                prop_assert_eq!(
                    record.spent_presented,
                    0,
                    "a rotated refresh token was sent again"
                );
            }
            if manager.session().is_none() {
                prop_assert!(
                    may_be_gone || !valid_before,
                    "session lost without sign-out or rejection"
                );
                prop_assert!(store.load().await.unwrap().is_none(), "store not cleared");
                prop_assert!(manager.access_token().await.is_err());
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_manager_keeps_its_invariants_under_concurrency(script in lifecycle_script(30)) {
        run_script(script)?;
    }
}

#[test]
fn a_rejection_script_ends_the_session() {
    run_script(vec![
        LifecycleOp::Answer(RefreshAnswer::Reject),
        LifecycleOp::Advance(Duration::from_secs(895)),
        LifecycleOp::WantToken { callers: 4 },
        LifecycleOp::WantToken { callers: 1 },
    ])
    .unwrap();
}
