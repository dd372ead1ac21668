//! `authmux-fleet-worker`: one member of a fleet sharing a session through Redis, for
//! the fleet tests (`tests/tests/redis_fleet.rs`) and the cross-process benchmark.
//!
//! Configured by environment variables (`FLEET_*`, below); restores the session from
//! the Redis key, runs `FLEET_TASKS` tasks that each send authorized `GET`s until
//! `FLEET_SECONDS` have passed (or, with `FLEET_CALLS`, that many calls each), and
//! prints one JSON line: calls that succeeded and failed, the first errors, the
//! refreshes this process made and the sessions it adopted from others. With
//! `FLEET_START_AT_MS` the workers of one run start calling at the same instant.
#![allow(clippy::print_stdout, reason = "the report goes to the test on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authmux_core::lifecycle::SessionEvent;
use authmux_core::{AuthProvider, ManagerConfig, RefreshWindow, SessionManager};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_redis::RedisStore;
use bytes::Bytes;
use serde_json::json;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
    })
}

#[tokio::main]
async fn main() {
    let base_url: url::Url = var("FLEET_BASE_URL").parse().expect("FLEET_BASE_URL");
    let (provider, path): (Arc<dyn AuthProvider>, &str) = match var("FLEET_DIALECT").as_str() {
        "linxio" => (
            Arc::new(LinxioProvider::new(LinxioConfig::new(base_url)).expect("linxio")),
            "/me",
        ),
        "directus" => (
            Arc::new(
                DirectusProvider::new(DirectusConfig::new(base_url).with_mode(DirectusMode::Json))
                    .expect("directus"),
            ),
            "/users/me?fields=id",
        ),
        other => panic!("unknown FLEET_DIALECT {other}"),
    };
    let store = RedisStore::connect(&var("FLEET_REDIS"), var("FLEET_KEY"))
        .await
        .expect("Redis")
        .with_lease(Duration::from_millis(number("FLEET_LEASE_MS", 10_000)));
    let manager = SessionManager::builder(provider)
        .store(store)
        .config(ManagerConfig {
            refresh_window: RefreshWindow {
                min_lead: Duration::from_millis(number("FLEET_LEAD_MS", 1000)),
                fraction: 0.0,
                jitter: 0.2,
            },
            ..ManagerConfig::default()
        })
        .build();
    let refreshed = Arc::new(AtomicUsize::new(0));
    let adopted = Arc::new(AtomicUsize::new(0));
    let mut events = manager.subscribe();
    {
        let (refreshed, adopted) = (Arc::clone(&refreshed), Arc::clone(&adopted));
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                match event {
                    SessionEvent::Refreshed { .. } => refreshed.fetch_add(1, Ordering::SeqCst),
                    SessionEvent::Adopted => adopted.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
            }
        });
    }
    manager
        .restore()
        .await
        .expect("restore")
        .expect("a session in Redis");
    println!("{}", json!({"ready": std::process::id()}));

    // With FLEET_START_AT_MS (Unix ms), every worker of a run starts calling at once.
    let start_at = number("FLEET_START_AT_MS", 0);
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    if start_at > now_ms {
        tokio::time::sleep(Duration::from_millis(start_at - now_ms)).await;
    }
    let deadline = Instant::now() + Duration::from_millis(number("FLEET_SECONDS", 5) * 1000);
    let calls = number("FLEET_CALLS", 0);
    let pause = Duration::from_millis(number("FLEET_PAUSE_MS", 20));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..number("FLEET_TASKS", 8) {
        let manager = manager.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut errors) = (0u64, 0u64, Vec::new());
            let mut n = 0;
            while if calls > 0 {
                n < calls
            } else {
                Instant::now() < deadline
            } {
                n += 1;
                let request = http::Request::get(path)
                    .body(Bytes::new())
                    .expect("request");
                match manager.send(request).await {
                    Ok(response) if response.status().is_success() => ok += 1,
                    Ok(response) => {
                        failed += 1;
                        errors.push(format!("status {}", response.status()));
                    }
                    Err(e) => {
                        failed += 1;
                        errors.push(e.to_string());
                    }
                }
                if calls == 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            (ok, failed, errors)
        }));
    }
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    for task in tasks {
        let (o, f, e) = task.await.expect("task");
        ok += o;
        failed += f;
        errors.extend(e);
    }
    let elapsed_ms = started.elapsed().as_millis();
    // Let the event task count the last events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    errors.truncate(10);
    println!(
        "{}",
        json!({
            "ok": ok,
            "failed": failed,
            "errors": errors,
            "refreshed": refreshed.load(Ordering::SeqCst),
            "adopted": adopted.load(Ordering::SeqCst),
            "elapsed_ms": elapsed_ms,
        })
    );
}
