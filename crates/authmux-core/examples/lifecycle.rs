//! The session lifecycle, end to end, against a tiny in-process provider and a manual
//! clock: sign in, use the token, enter the refresh window (proactive refresh), a 401
//! (refresh and replay), a storm of concurrent callers (one refresh), sign out.
//!
//! Run with `cargo run -p authmux-core --example lifecycle`.

#![allow(clippy::print_stdout, reason = "an example prints what it does")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authmux_core::lifecycle::SessionEvent;
use authmux_core::transport::Transport;
use authmux_core::{
    AccessToken, AuthError, AuthProvider, Capabilities, Clock, Credentials, Expiry, LoginOutcome,
    LogoutOutcome, ManualClock, RefreshToken, Session, SessionManager, TokenSet, UserProfile,
    async_trait,
};
use bytes::Bytes;
use url::Url;

/// A provider that issues numbered tokens valid for 15 minutes and rotates refresh
/// tokens; its "resource server" accepts only the newest access token.
#[derive(Debug)]
struct Demo {
    url: Url,
    clock: ManualClock,
    issued: AtomicUsize,
    refreshes: Arc<AtomicUsize>,
    live_access: Arc<Mutex<String>>,
}

impl Demo {
    fn tokens(&self) -> TokenSet {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        *self.live_access.lock().unwrap() = format!("access-{n}");
        TokenSet::new(
            AccessToken::new(format!("access-{n}")),
            Some(RefreshToken::new(format!("refresh-{n}"))),
            Expiry::In(Duration::from_secs(900)),
            self.clock.now(),
        )
    }
}

#[async_trait]
impl AuthProvider for Demo {
    fn dialect(&self) -> &str {
        "demo"
    }
    fn base_url(&self) -> &Url {
        &self.url
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            refresh: true,
            rotating_refresh: true,
            server_logout: true,
            ..Capabilities::default()
        }
    }
    fn transport(&self) -> Arc<dyn Transport> {
        let live = self.live_access.clone();
        Arc::new(authmux_core::transport::from_fn(
            move |req: http::Request<Bytes>| {
                let ok = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {}", live.lock().unwrap()));
                async move {
                    Ok(http::Response::builder()
                        .status(if ok { 200 } else { 401 })
                        .body(Bytes::new())
                        .unwrap())
                }
            },
        ))
    }
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        if credentials.password.expose_secret() != "demo password" {
            return Err(AuthError::InvalidCredentials);
        }
        let session = Session::new("demo", self.url.clone(), self.tokens());
        Ok(LoginOutcome::Authenticated(session.with_user(Some(
            UserProfile {
                email: Some(credentials.email.clone()),
                ..UserProfile::default()
            },
        ))))
    }
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(session.with_tokens(self.tokens()))
    }
    async fn logout(&self, _: &Session) -> Result<LogoutOutcome, AuthError> {
        self.live_access.lock().unwrap().clear();
        Ok(LogoutOutcome::Revoked)
    }
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        Ok(session.user.clone().unwrap_or_default())
    }
}

#[tokio::main]
async fn main() -> Result<(), AuthError> {
    let clock = ManualClock::starting_now();
    let refreshes = Arc::new(AtomicUsize::new(0));
    let provider = Arc::new(Demo {
        url: Url::parse("https://demo.example").unwrap(),
        clock: clock.clone(),
        issued: AtomicUsize::new(1),
        refreshes: refreshes.clone(),
        live_access: Arc::default(),
    });
    let manager = SessionManager::builder(provider.clone())
        .clock(clock.clone())
        .build();
    let mut events = manager.subscribe();
    let fingerprint = |t: &AccessToken| format!("{:?}", t.fingerprint());
    let step = |what: &str, detail: String| println!("{what:<44} {detail}");

    manager
        .login(&Credentials::new("ann@demo.example", "demo password"))
        .await?;
    let first = manager.access_token().await?;
    step("signed in; token", fingerprint(&first));

    clock.advance(Duration::from_secs(600));
    step(
        "10 min later (outside the window): token",
        fingerprint(&manager.access_token().await?),
    );

    clock.advance(Duration::from_secs(230));
    let second = manager.access_token().await?;
    step(
        "70 s before expiry (in the window): token",
        format!("{} (refreshed proactively)", fingerprint(&second)),
    );

    provider.live_access.lock().unwrap().push_str("-revoked");
    let response = manager
        .send(http::Request::get("/things").body(Bytes::new()).unwrap())
        .await?;
    step(
        "server revoked the token; GET /things",
        format!("{} after one refresh and replay", response.status()),
    );

    clock.advance(Duration::from_secs(3_600));
    let before = refreshes.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.access_token().await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task")?;
    }
    step(
        "1 h later, 1000 concurrent callers",
        format!(
            "{} refresh request(s)",
            refreshes.load(Ordering::SeqCst) - before
        ),
    );

    manager.logout().await?;
    step(
        "signed out; next token request",
        format!("{:?}", manager.access_token().await.unwrap_err()),
    );

    print!("events:");
    while let Ok(event) = events.try_recv() {
        let name = match event {
            SessionEvent::SignedIn { .. } => "signed-in",
            SessionEvent::Refreshed { .. } => "refreshed",
            SessionEvent::SignedOut => "signed-out",
            _ => "other",
        };
        print!(" {name}");
    }
    println!();
    Ok(())
}
