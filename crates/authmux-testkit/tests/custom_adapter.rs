//! The worked example of `docs/writing-an-adapter.md` (`examples/toy_adapter.rs`)
//! passes the whole conformance suite, and the suite fails deliberately wrong variants
//! of it: one wrong adapter per mistake the suite must catch, each failing exactly the
//! check that names that mistake.

#[allow(
    unreachable_pub,
    reason = "the example is written as a crate of its own; here it is a module"
)]
#[path = "../examples/toy_adapter.rs"]
mod toy;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use authmux_core::transport::Transport;
use authmux_core::url::Url;
use authmux_core::wire::parse_json;
use authmux_core::{
    AuthError, AuthProvider, Capabilities, ClientOptions, Credentials, LoginOutcome, LogoutOutcome,
    ManualClock, OtpChallenge, OtpCode, Session, UserProfile, async_trait,
};
use authmux_core::{http::StatusCode, serde_json::Value, serde_json::json};
use authmux_testkit::conformance::{self, CheckResult, Report};
use authmux_testkit::server::ServerHandle;
use toy::{ToyFake, ToyProvider};

/// A toy fake and a correct provider, both on one manual clock far from the system
/// clock (as the example runs them).
fn rig(fake: ToyFake) -> (ServerHandle, ToyProvider) {
    let clock = conformance::far_clock();
    let server = toy::start(fake, clock.clone());
    let provider = ToyProvider::new(server.base_url().clone(), &ClientOptions::default())
        .unwrap()
        .with_clock(clock);
    (server, provider)
}

fn failed(report: &Report) -> Vec<&'static str> {
    report.failures().iter().map(|(name, _)| *name).collect()
}

fn message<'r>(report: &'r Report, check: &str) -> &'r str {
    report
        .failures()
        .into_iter()
        .find(|(name, _)| *name == check)
        .map(|(_, m)| m)
        .unwrap_or_default()
}

/// A wrong adapter: the toy provider with one method replaced. `$name` wraps a
/// `ToyProvider` in field `0`; the listed methods are given, the rest delegate.
macro_rules! wrong_adapter {
    ($name:ident { $($body:tt)* }) => {
        #[async_trait]
        impl AuthProvider for $name {
            fn dialect(&self) -> &str {
                "toy"
            }
            fn base_url(&self) -> &Url {
                self.0.base_url()
            }
            fn transport(&self) -> Arc<dyn Transport> {
                self.0.transport()
            }
            async fn verify_otp(
                &self,
                challenge: &OtpChallenge,
                code: &OtpCode,
            ) -> Result<Session, AuthError> {
                self.0.verify_otp(challenge, code).await
            }
            async fn logout(&self, s: &Session) -> Result<LogoutOutcome, AuthError> {
                self.0.logout(s).await
            }
            async fn current_user(&self, s: &Session) -> Result<UserProfile, AuthError> {
                self.0.current_user(s).await
            }
            $($body)*
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_passes_the_conformance_suite() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&provider, &toy::target(&fake)).await;
    report.assert_passed();
    // Everything applies to this dialect: nothing may have been skipped.
    assert_eq!(report.passed(), report.results.len(), "{report:?}");
    // Both refreshes of the rotation check, and the other checks', reached the server.
    assert!(fake.recorder().count("POST /session/renew") >= 4);
}

#[test]
fn the_example_target_runs_and_passes() {
    toy::main();
}

/// Keeps the refresh token the server rotated away, and says refresh tokens do not
/// rotate: the first refresh works, the second logs the user out.
#[derive(Debug)]
struct KeepsRotatedToken(ToyProvider);

wrong_adapter!(KeepsRotatedToken {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rotating_refresh: false,
            ..self.0.capabilities()
        }
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        self.0.login(c).await
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        let mut fresh = self.0.refresh(s).await?;
        fresh.tokens.refresh = s.tokens.refresh.clone();
        Ok(fresh)
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_a_rotated_refresh_token_fails_the_rotation_check() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&KeepsRotatedToken(provider), &toy::target(&fake)).await;
    // token_lifetime and injected_clock refresh once each (fine); logout and the
    // error mapping check refresh only under faults.
    assert_eq!(failed(&report), ["refresh_and_rotation"], "{report:?}");
    assert!(
        message(&report, "refresh_and_rotation").contains("second refresh"),
        "{report:?}"
    );
}

/// Caches the last password it signed in with, and its `Debug` shows it.
#[derive(Debug)]
struct CachesPassword(ToyProvider, Mutex<Option<String>>);

wrong_adapter!(CachesPassword {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        *self.1.lock().unwrap() = Some(c.password.expose_secret().to_owned());
        self.0.login(c).await
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await
    }
});

/// Caches the last access token it handed out, and its `Debug` shows it.
#[derive(Debug)]
struct CachesToken(ToyProvider, Mutex<Option<String>>);

wrong_adapter!(CachesToken {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        let outcome = self.0.login(c).await?;
        if let LoginOutcome::Authenticated(s) = &outcome {
            *self.1.lock().unwrap() = Some(s.tokens.access.expose_secret().to_owned());
        }
        Ok(outcome)
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_debug_that_shows_a_password_or_token_fails_every_check() {
    for leaky in [true, false] {
        let (fake, provider) = rig(ToyFake::new());
        let provider: Box<dyn AuthProvider> = if leaky {
            Box::new(CachesPassword(provider, Mutex::default()))
        } else {
            Box::new(CachesToken(provider, Mutex::default()))
        };
        let report = conformance::run_all(provider.as_ref(), &toy::target(&fake)).await;
        // Every check signs in, so every check ends with a secret in the Debug.
        assert_eq!(report.failures().len(), report.results.len(), "{report:?}");
        for (name, why) in report.failures() {
            assert!(
                why.contains("the provider's Debug contains a secret"),
                "{name}: {why}"
            );
        }
    }
}

/// Echoes the answer's body into the `Protocol` error when a login answer is not JSON.
#[derive(Debug)]
struct EchoesBody(ToyProvider);

wrong_adapter!(EchoesBody {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        let password = c.password.expose_secret();
        let body = json!({ "user": c.email, "pass": password });
        let response = self.0.post("/session", body).await?;
        if response.status() == StatusCode::OK && parse_json::<Value>(&response, "login").is_err()
        {
            let text = String::from_utf8_lossy(response.body());
            return Err(AuthError::protocol(format!("bad login answer: {text}")));
        }
        self.0.sign_in_answer(&response, &c.email, password, None)
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_echoed_into_an_error_fails_the_login_mapping() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&EchoesBody(provider), &toy::target(&fake)).await;
    // (The OTP user's login does not go through the echoing path's failure.)
    assert_eq!(failed(&report), ["login_error_mapping"], "{report:?}");
    assert!(
        message(&report, "login_error_mapping").contains("contains a secret"),
        "{report:?}"
    );
}

/// Reads the lifetime in seconds as milliseconds (a 600 s token lives 0.6 s).
#[derive(Debug)]
struct MillisLifetime(ToyProvider);

impl MillisLifetime {
    fn misread(mut session: Session) -> Session {
        let secs = session.tokens.lifetime().unwrap_or_default().as_secs();
        session.tokens.expires_at = Some(session.tokens.issued_at + Duration::from_millis(secs));
        session
    }
}

wrong_adapter!(MillisLifetime {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        Ok(match self.0.login(c).await? {
            LoginOutcome::Authenticated(s) => LoginOutcome::Authenticated(Self::misread(s)),
            other => other,
        })
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await.map(Self::misread)
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifetime_read_in_the_wrong_unit_fails_the_lifetime_check() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&MillisLifetime(provider), &toy::target(&fake)).await;
    assert_eq!(failed(&report), ["token_lifetime"], "{report:?}");
    assert!(
        message(&report, "token_lifetime").contains("wrong unit"),
        "{report:?}"
    );
}

/// Stamps tokens with the system clock, ignoring the clock it was given.
#[derive(Debug)]
struct IgnoresClock(ToyProvider);

impl IgnoresClock {
    fn restamp(mut session: Session) -> Session {
        let lifetime = session.tokens.lifetime();
        session.tokens.issued_at = SystemTime::now();
        session.tokens.expires_at = lifetime.map(|l| session.tokens.issued_at + l);
        session
    }
}

wrong_adapter!(IgnoresClock {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        Ok(match self.0.login(c).await? {
            LoginOutcome::Authenticated(s) => LoginOutcome::Authenticated(Self::restamp(s)),
            other => other,
        })
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await.map(Self::restamp)
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_ignoring_its_clock_fails_the_clock_check() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&IgnoresClock(provider), &toy::target(&fake)).await;
    assert_eq!(failed(&report), ["injected_clock"], "{report:?}");
    assert!(
        message(&report, "injected_clock").contains("ignores the clock"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_check_is_skipped_not_passed_near_the_system_clock() {
    let clock = ManualClock::starting_now();
    let fake = toy::start(ToyFake::new(), clock.clone());
    let provider = ToyProvider::new(fake.base_url().clone(), &ClientOptions::default())
        .unwrap()
        .with_clock(clock);
    let report = conformance::run_all(&IgnoresClock(provider), &toy::target(&fake)).await;
    assert!(
        matches!(
            report.results.iter().find(|(n, _)| *n == "injected_clock"),
            Some((_, CheckResult::Skipped(_)))
        ),
        "{report:?}"
    );
}

/// Reads a 429's delay from `Retry-After` only, where the toy dialect puts it in the
/// body.
#[derive(Debug)]
struct RetryAfterHeaderOnly(ToyProvider);

wrong_adapter!(RetryAfterHeaderOnly {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        let password = c.password.expose_secret();
        let body = json!({ "user": c.email, "pass": password });
        let response = self.0.post("/session", body).await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait = authmux_core::wire::retry_after(response.headers(), SystemTime::now());
            return Err(AuthError::RateLimited { retry_after: wait });
        }
        self.0.sign_in_answer(&response, &c.email, password, None)
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        self.0.refresh(s).await
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_delay_missed_where_the_dialect_puts_it_fails_the_login_mapping() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&RetryAfterHeaderOnly(provider), &toy::target(&fake)).await;
    assert_eq!(failed(&report), ["login_error_mapping"], "{report:?}");
    assert!(
        message(&report, "login_error_mapping").contains("429 -> RateLimited(7s)"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_could_not_run_is_skipped_not_passed() {
    // A fake that never records the refresh tokens it is shown: the suite cannot tell
    // whether the right one was sent, and says so.
    let mut quiet = ToyFake::new();
    quiet.record_refresh_tokens = false;
    let (fake, provider) = rig(quiet);
    let report = conformance::run_all(&provider, &toy::target(&fake)).await;
    report.assert_passed();
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|(_, r)| matches!(r, CheckResult::Skipped(_)))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(skipped, ["refresh_token_sent"], "{report:?}");
}

/// Maps every login failure to "server error", and forgets to rotate.
#[derive(Debug)]
struct Sloppy(ToyProvider);

wrong_adapter!(Sloppy {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn login(&self, c: &Credentials) -> Result<LoginOutcome, AuthError> {
        self.0.login(c).await.map_err(|_| AuthError::Server {
            status: 500,
            code: None,
            message: None,
            retry_after: None,
        })
    }
    async fn refresh(&self, s: &Session) -> Result<Session, AuthError> {
        let mut fresh = self.0.refresh(s).await?;
        fresh.tokens.refresh = s.tokens.refresh.clone();
        Ok(fresh)
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_sloppy_adapter() {
    let (fake, provider) = rig(ToyFake::new());
    let report = conformance::run_all(&Sloppy(provider), &toy::target(&fake)).await;
    let failed = failed(&report);
    assert!(failed.contains(&"wrong_password"), "{report:?}");
    assert!(failed.contains(&"login_error_mapping"), "{report:?}");
    assert!(failed.contains(&"refresh_and_rotation"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_adapter_gets_the_fault_matrix() {
    use authmux_testkit::conformance::fault_matrix::{self, EndpointKind, FaultTarget, Outcome};
    // The system clock, as the fault matrix's session manager uses.
    let fake = toy::start(ToyFake::new(), authmux_core::SystemClock);
    let timeout = Duration::from_millis(400);
    // With a client timeout of its own (the fault matrix uses a short one).
    let options = ClientOptions {
        timeout_ms: Some(400),
        ..ClientOptions::default()
    };
    let provider = Arc::new(ToyProvider::new(fake.base_url().clone(), &options).unwrap());
    let target = FaultTarget::new(toy::target(&fake), timeout)
        .with_otp("POST /session")
        .with_logout("DELETE /session")
        .with_token_pointer("/jwt");
    let matrix = fault_matrix::run(provider, &target).await;
    matrix.assert_passed("toy");
    // Every endpoint kind applies to the toy, the send going to its current-user path.
    for endpoint in EndpointKind::ALL {
        assert!(
            matrix
                .cells
                .iter()
                .filter(|c| c.endpoint == endpoint)
                .any(|c| !matches!(c.outcome, Outcome::NotApplicable(_))),
            "{endpoint:?} did not apply"
        );
    }
}
