//! Benchmark of a session shared through a REAL Redis (run with `cargo bench -p
//! authmux-integration-tests --bench redis`; needs `$AUTHMUX_REDIS_URL` or
//! `redis-server` on `PATH`):
//!
//! - a cross-process refresh storm: 4 `authmux-fleet-worker` processes x 250 tasks make
//!   one call each, all at the same instant, on an expired token of the Linxio fake
//!   (reuse detection on): refresh calls the server saw (must be 1) and wall time;
//! - the hot path (`access_token()` on a fresh token) with a `RedisStore` behind the
//!   manager against the same with a `MemoryStore`, measured in the same run (ratio),
//!   and how many commands Redis received meanwhile (must be 0).
//!
//! Writes its section of `docs/benchmarks.md` (between the `redis-bench` markers).
//! `cargo test --benches` runs a quick check instead (a small storm, no file written).

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary reports on stdout"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authmux_core::{Credentials, LoginOutcome, MemoryStore, SessionManager, SessionStore};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_redis::RedisStore;
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::redis::redis_url;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};

const WORKER: &str = env!("CARGO_BIN_EXE_authmux-fleet-worker");
const HOT_ITERS: u32 = 500_000;
const ROUNDS: usize = 9;
const START: &str = "<!-- redis-bench:start -->";
const END: &str = "<!-- redis-bench:end -->";

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn signed_in(fake: &FakeLinxio, store: impl SessionStore + 'static) -> SessionManager {
    let provider =
        Arc::new(LinxioProvider::new(LinxioConfig::new(fake.base_url().clone())).unwrap());
    let manager = SessionManager::builder(provider).store(store).build();
    let outcome = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(matches!(outcome, LoginOutcome::Authenticated(_)));
    manager
}

/// The storm: returns (refresh calls, wall ms, failed calls).
async fn storm(redis: &str, processes: usize, tasks: usize) -> (usize, f64, u64) {
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(1))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = format!("authmux-bench:storm:{}", unix_ms());
    signed_in(
        &fake,
        RedisStore::connect(redis, key.clone()).await.unwrap(),
    )
    .await;
    // Expired before anyone calls; the refreshed token lives long (one expiry only).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.update_settings(|s| s.access_lifetime = Duration::from_secs(600));
    let start_at = unix_ms() + 1500;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            let mut child = Command::new(WORKER)
                .env("FLEET_REDIS", redis)
                .env("FLEET_KEY", &key)
                .env("FLEET_DIALECT", "linxio")
                .env("FLEET_BASE_URL", fake.base_url().as_str())
                .env("FLEET_TASKS", tasks.to_string())
                .env("FLEET_CALLS", "1")
                .env("FLEET_START_AT_MS", start_at.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let lines = BufReader::new(child.stdout.take().unwrap()).lines();
            (child, lines)
        })
        .collect();
    let mut wall: f64 = 0.0;
    let mut failed = 0;
    for (mut child, mut lines) in children {
        let _ready = lines.next().unwrap().unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(child.wait().unwrap().success());
        wall = wall.max(report["elapsed_ms"].as_f64().unwrap());
        failed += report["failed"].as_u64().unwrap();
        if report["failed"].as_u64().unwrap() > 0 {
            eprintln!("worker errors: {}", report["errors"]);
        }
    }
    (fake.recorder().count(endpoints::REFRESH), wall, failed)
}

/// ns per `access_token()`, one caller in a loop of `HOT_ITERS` calls.
async fn hot_round(manager: &SessionManager) -> f64 {
    let started = Instant::now();
    for _ in 0..HOT_ITERS {
        std::hint::black_box(manager.access_token().await.unwrap());
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(HOT_ITERS)
}

/// Medians of ns per call for `a` and `b`, measured in alternating rounds so that the
/// machine's other load weighs on both alike.
async fn hot_paths(a: &SessionManager, b: &SessionManager) -> (f64, f64) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        xs.push(hot_round(a).await);
        ys.push(hot_round(b).await);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(xs), median(ys))
}

/// Calls of the commands a `RedisStore` sends, from `INFO commandstats`.
async fn store_commands(redis: &str) -> u64 {
    let mut conn = redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter(|line| {
            ["hmget", "evalsha", "eval", "set", "get", "pexpire"]
                .iter()
                .any(|c| line.starts_with(&format!("cmdstat_{c}:")))
        })
        .filter_map(|line| {
            line.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let Some(redis) = redis_url("the Redis benchmark") else {
        return;
    };
    let url = redis.url();
    if quick {
        let (calls, wall, failed) = storm(&url, 2, 20).await;
        println!(
            "quick check (run `cargo bench -p authmux-integration-tests --bench redis` to measure): storm refresh calls {calls}, {wall:.1} ms"
        );
        assert_eq!((calls, failed), (1, 0));
        return;
    }
    let (storm_calls, storm_ms, storm_failed) = storm(&url, 4, 250).await;

    let fake = FakeLinxio::start().unwrap();
    let memory = signed_in(&fake, MemoryStore::new()).await;
    let key = format!("authmux-bench:hot:{}", unix_ms());
    let redis_manager = signed_in(&fake, RedisStore::connect(&url, key).await.unwrap()).await;
    let before = store_commands(&url).await;
    let (memory_ns, redis_ns) = hot_paths(&memory, &redis_manager).await;
    let redis_commands = store_commands(&url).await - before;
    let ratio = redis_ns / memory_ns;

    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let section = format!(
        "{START}\n## A session shared through Redis\n\n\
         Written by `cargo bench -p authmux-integration-tests --bench redis` \
         (`tests/benches/redis.rs`) on its last run, against a real `redis-server` on \
         loopback and the Linxio fake (reuse detection on). The storm runs 4 OS processes \
         (`authmux-fleet-worker`), each with 250 tasks making one call at the same instant \
         on an expired token; its wall time is from that instant until the last process's \
         last call returned. The hot path is `access_token()` on a fresh token, one caller \
         in a loop, median of {ROUNDS} rounds of {HOT_ITERS} calls, with each store behind \
         the manager, rounds alternating between the two in the same run. The ratio moves \
         with the machine's other load (this machine is shared); what shows that the hot \
         path never touches Redis is the command count.\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | cross-process storm: 4 processes x 250 tasks, expired token | {storm_calls} refresh call(s), {storm_failed} failed call(s) | exactly 1, none failed ({}) |\n\
         | cross-process storm wall time | {storm_ms:.0} ms | |\n\
         | hot path, `MemoryStore` behind the manager | {memory_ns:.1} ns | baseline |\n\
         | hot path, `RedisStore` behind the manager | {redis_ns:.1} ns | equal to the baseline: {ratio:.2}x ({}) |\n\
         | Redis commands during the {} hot-path calls (both stores) | {redis_commands} | 0 ({}) |\n\
         {END}\n",
        verdict(storm_calls == 1 && storm_failed == 0),
        verdict(ratio <= 1.2),
        2 * u64::from(HOT_ITERS) * ROUNDS as u64,
        verdict(redis_commands == 0),
    );
    println!("{section}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let doc = match (doc.find(START), doc.find(END)) {
        (Some(start), Some(end)) => {
            format!("{}{section}{}", &doc[..start], &doc[end + END.len() + 1..])
        }
        _ => format!("{}\n{section}", doc.trim_end()),
    };
    std::fs::write(&path, doc).unwrap();
}
