//! A fleet of OS processes (`authmux-fleet-worker`) sharing one session through a REAL
//! `redis-server` (`$AUTHMUX_REDIS_URL` from `cargo xtask ci`, else one started here;
//! with neither, the tests say loudly that they skip):
//!
//! - on the Linxio fake with reuse detection (a refresh token sent twice revokes the
//!   whole sign-in) and on the real Directus (which keeps only the last rotation), 4
//!   processes x 8 tasks over 3 expiries: exactly one refresh per expiry (no refresh
//!   token is ever sent twice), zero failed calls;
//! - the lock holder SIGKILLed mid-refresh: its lease expires, another process takes
//!   over, and the session survives (the server had not rotated the token yet); and
//!   killed after the server rotated but before it saved: the session is lost (nothing
//!   on the client side can prevent it), and every caller is told to sign in again.
#![allow(
    clippy::print_stdout,
    reason = "the workers' reports are printed for the test log"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authmux_core::{Credentials, LoginOutcome, SessionManager};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_redis::RedisStore;
use authmux_testkit::Fault;
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::redis::redis_url;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_authmux-fleet-worker");

fn unique_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("authmux-fleet:{test}:{nanos:x}-{}", std::process::id())
}

/// A started worker; killed on drop if still running.
struct Worker {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Worker {
    fn start(env: &[(&str, String)]) -> Worker {
        let mut child = Command::new(WORKER)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut worker = Worker { child, lines };
        let ready = worker.line();
        assert!(ready.get("ready").is_some(), "{ready}");
        worker
    }

    fn line(&mut self) -> Value {
        let line = self
            .lines
            .next()
            .expect("the worker printed a line")
            .expect("readable");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Waits for the worker's report.
    fn report(mut self) -> Value {
        let report = self.line();
        assert!(self.child.wait().unwrap().success());
        report
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(
    redis: &str,
    key: &str,
    dialect: &str,
    base_url: &str,
    seconds: u64,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("FLEET_REDIS", redis.to_owned()),
        ("FLEET_KEY", key.to_owned()),
        ("FLEET_DIALECT", dialect.to_owned()),
        ("FLEET_BASE_URL", base_url.to_owned()),
        ("FLEET_TASKS", "8".to_owned()),
        ("FLEET_SECONDS", seconds.to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// Sums the reports' counters; prints them for the log.
fn totals(reports: &[Value]) -> (u64, u64, u64, Vec<String>) {
    let mut ok = 0;
    let mut failed = 0;
    let mut refreshed = 0;
    let mut errors = Vec::new();
    for report in reports {
        println!("worker: {report}");
        ok += report["ok"].as_u64().unwrap();
        failed += report["failed"].as_u64().unwrap();
        refreshed += report["refreshed"].as_u64().unwrap();
        errors.extend(
            report["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned()),
        );
    }
    (ok, failed, refreshed, errors)
}

async fn sign_in_linxio(fake: &FakeLinxio, redis: &str, key: &str) {
    let provider =
        Arc::new(LinxioProvider::new(LinxioConfig::new(fake.base_url().clone())).unwrap());
    let store = RedisStore::connect(redis, key).await.unwrap();
    let manager = SessionManager::builder(provider).store(store).build();
    let outcome = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(matches!(outcome, LoginOutcome::Authenticated(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_on_linxio_with_reuse_detection_refreshes_once_per_expiry() {
    let test = "a_fleet_on_linxio_with_reuse_detection_refreshes_once_per_expiry";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let lifetime = Duration::from_secs(4);
    let fake = FakeLinxio::builder()
        .access_lifetime(lifetime)
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key("linxio");
    sign_in_linxio(&fake, &redis.url(), &key).await;
    let run = Duration::from_secs(8);
    let started = Instant::now();
    let workers: Vec<Worker> = (0..4)
        .map(|_| {
            Worker::start(&env(
                &redis.url(),
                &key,
                "linxio",
                fake.base_url().as_str(),
                run.as_secs(),
                &[],
            ))
        })
        .collect();
    let reports: Vec<Value> = workers.into_iter().map(Worker::report).collect();
    let elapsed = started.elapsed();
    let (ok, failed, refreshed, errors) = totals(&reports);
    let refreshes = fake.recorder().count(endpoints::REFRESH);
    let presented = fake.recorder().refresh_tokens();
    println!("{ok} calls, {refreshes} refreshes in {elapsed:?}");
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 100, "the fleet made calls: {ok}");
    // Every refresh the server saw was made by exactly one worker, with a refresh
    // token never presented before (a second use would revoke the sign-in).
    assert_eq!(usize::try_from(refreshed).unwrap(), refreshes);
    let distinct: std::collections::HashSet<_> = presented.iter().collect();
    assert_eq!(
        distinct.len(),
        presented.len(),
        "a refresh token was sent twice"
    );
    // One refresh per expiry: the tokens expire every 3 s on the local clock (4 s, less
    // the second the server's whole-second `Date` and `iat` may lag it:
    // `authmux_core::token`) and are refreshed 1 to 1.2 s before; over the run that is
    // at least 3 and at most one per 1.8 s.
    let local_lifetime = lifetime - Duration::from_secs(1);
    let most = elapsed.as_secs_f64() / (local_lifetime.as_secs_f64() - 1.2);
    assert!(
        refreshes >= 3 && refreshes as f64 <= most.ceil(),
        "{refreshes} refreshes in {elapsed:?} (expected 3..={})",
        most.ceil()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_on_the_real_directus_refreshes_once_per_expiry() {
    let test = "a_fleet_on_the_real_directus_refreshes_once_per_expiry";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let vars = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(url) = vars("AUTHMUX_DIRECTUS_URL") else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n########\n# SKIPPED {test}: AUTHMUX_DIRECTUS_URL is not set (cargo xtask directus start; cargo xtask ci does it)\n########"
        );
        return;
    };
    let ttl = Duration::from_secs(
        vars("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS")
            .map_or(5, |v| v.parse().expect("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS")),
    );
    let key = unique_key("directus");
    let provider = Arc::new(
        DirectusProvider::new(
            DirectusConfig::new(url.parse().unwrap()).with_mode(DirectusMode::Json),
        )
        .unwrap(),
    );
    let store = RedisStore::connect(&redis.url(), &key).await.unwrap();
    let manager = SessionManager::builder(provider).store(store).build();
    let credentials = Credentials::new(
        vars("AUTHMUX_DIRECTUS_ADMIN_EMAIL").expect("admin email"),
        vars("AUTHMUX_DIRECTUS_ADMIN_PASSWORD")
            .expect("admin password")
            .as_str(),
    );
    assert!(matches!(
        manager.login(&credentials).await.unwrap(),
        LoginOutcome::Authenticated(_)
    ));
    // Three lifetimes: each token refreshed 1 to 1.2 s before its local expiry, which
    // is a second before the stated one (the JWT's `exp` counts from a whole-second
    // `iat`: `authmux_core::token`).
    let run = ttl * 3 - Duration::from_millis(500);
    let started = Instant::now();
    let workers: Vec<Worker> = (0..4)
        .map(|_| {
            Worker::start(&env(
                &redis.url(),
                &key,
                "directus",
                &url,
                run.as_secs(),
                &[("FLEET_PAUSE_MS", "50".into())],
            ))
        })
        .collect();
    let reports: Vec<Value> = workers.into_iter().map(Worker::report).collect();
    let elapsed = started.elapsed();
    let (ok, failed, refreshed, errors) = totals(&reports);
    println!("{ok} calls, {refreshed} refreshes in {elapsed:?}");
    // Directus keeps only the last rotation: a refresh token sent twice ends the
    // session, and every later call fails. Zero failures means it never happened.
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 50, "{ok}");
    let per_refresh = ttl.as_secs_f64() - 1.0 - 1.2;
    let most = (elapsed.as_secs_f64() / per_refresh).ceil();
    assert!(
        refreshed >= 2 && refreshed as f64 <= most,
        "{refreshed} refreshes in {elapsed:?} (expected 2..={most})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_holder_killed_mid_refresh_is_taken_over_after_its_lease() {
    let test = "a_lock_holder_killed_mid_refresh_is_taken_over_after_its_lease";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(2))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key("sigkill");
    sign_in_linxio(&fake, &redis.url(), &key).await;
    let family = fake.families().all()[0].id;
    // The first refresh hangs (far longer than the test): its answer never comes.
    fake.faults()
        .push(endpoints::REFRESH, Fault::Delay(Duration::from_secs(120)));
    let lease = [("FLEET_LEASE_MS", "1000".to_owned())];
    let holder = Worker::start(&env(
        &redis.url(),
        &key,
        "linxio",
        fake.base_url().as_str(),
        30,
        &lease,
    ));
    let waiting = Instant::now();
    while fake.recorder().count(endpoints::REFRESH) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "no refresh began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The holder is mid-refresh, holding the lock: SIGKILL.
    let mut holder = holder;
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let killed = Instant::now();

    let others: Vec<Worker> = (0..3)
        .map(|_| {
            Worker::start(&env(
                &redis.url(),
                &key,
                "linxio",
                fake.base_url().as_str(),
                5,
                &lease,
            ))
        })
        .collect();
    let reports: Vec<Value> = others.into_iter().map(Worker::report).collect();
    let (ok, failed, refreshed, errors) = totals(&reports);
    // The server never answered the killed refresh, so it never rotated: the others
    // take over once the lease expires and refresh with the same token.
    assert!(
        !fake.families().is_revoked(family),
        "the sign-in was revoked"
    );
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 0);
    assert!(refreshed >= 1, "another process took over the refresh");
    assert!(fake.recorder().count(endpoints::REFRESH) > 1);
    println!(
        "taken over; the survivors ran {:?} after the kill",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_holder_killed_after_the_server_rotated_loses_the_session_with_a_clear_error() {
    let test = "a_lock_holder_killed_after_the_server_rotated_loses_the_session_with_a_clear_error";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(2))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key("rotated");
    sign_in_linxio(&fake, &redis.url(), &key).await;
    let family = fake.families().all()[0].id;
    // The server rotates at once but its answer never reaches the holder.
    fake.faults().push(
        endpoints::REFRESH,
        Fault::DelayAnswer(Duration::from_secs(120)),
    );
    let lease = [("FLEET_LEASE_MS", "1000".to_owned())];
    let mut holder = Worker::start(&env(
        &redis.url(),
        &key,
        "linxio",
        fake.base_url().as_str(),
        30,
        &lease,
    ));
    let waiting = Instant::now();
    while fake.recorder().count(endpoints::REFRESH) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "no refresh began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();

    let others: Vec<Worker> = (0..2)
        .map(|_| {
            Worker::start(&env(
                &redis.url(),
                &key,
                "linxio",
                fake.base_url().as_str(),
                4,
                &lease,
            ))
        })
        .collect();
    let reports: Vec<Value> = others.into_iter().map(Worker::report).collect();
    let (_, failed, _, errors) = totals(&reports);
    // The store still held the token the server had already rotated away: the next
    // refresh presents it, the server revokes the sign-in, and every caller is told to
    // sign in again (never a silent failure, never a token of another sign-in).
    assert!(
        fake.families().is_revoked(family),
        "the spent token was not refused"
    );
    assert!(failed > 0);
    assert!(
        errors
            .iter()
            .all(|e| e.contains("sign in again") || e.contains("not signed in")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("refresh token rejected: sign in again")),
        "{errors:?}"
    );
}
