//! `RedisStore` on a REAL `redis-server` (`$AUTHMUX_REDIS_URL`, which `cargo xtask ci`
//! sets, else one started here from `redis-server` on `PATH`; with neither, each test
//! says loudly that it skipped): the store contract (CAS, versions that never repeat,
//! corrupt values left untouched, an exclusive lease lock across handles and
//! processes), the key layout, TTLs, and Redis being down or restarted.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use authmux_core::store::Swap;
use authmux_core::{AccessToken, AuthError, Expiry, RefreshToken, Session, SessionStore, TokenSet};
use authmux_redis::RedisStore;
use authmux_testkit::redis::{own_server, redis_url};

/// A key no other test (or run) uses.
fn unique_key(test: &str) -> String {
    format!("authmux-test:{test}:{:016x}", fastrand::u64(..))
}

fn session(access: &str, refresh: Option<&str>) -> Session {
    Session::new(
        "linxio",
        "https://api.example.com".parse().unwrap(),
        TokenSet::new(
            AccessToken::new(access),
            refresh.map(RefreshToken::new),
            Expiry::In(Duration::from_secs(900)),
            SystemTime::now(),
        ),
    )
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn store(url: &str, key: &str) -> RedisStore {
    RedisStore::connect(url, key).await.expect("connects")
}

#[tokio::test]
async fn compare_and_swap_writes_only_on_the_expected_version() {
    let Some(redis) = redis_url("compare_and_swap_writes_only_on_the_expected_version") else {
        return;
    };
    let key = unique_key("cas");
    let store = store(&redis.url(), &key).await;
    assert_eq!(store.load().await.unwrap(), None);

    let first = session("a1", Some("r1"));
    let Swap::Done(v1) = store.compare_and_swap(None, Some(&first)).await.unwrap() else {
        panic!("an empty store takes a first write");
    };
    assert_ne!(v1, 0);
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.session), (v1, &first));

    // Expecting empty, or a wrong version: a conflict that reports what is there.
    let second = session("a2", Some("r2"));
    for expected in [None, Some(v1.wrapping_add(1))] {
        match store
            .compare_and_swap(expected, Some(&second))
            .await
            .unwrap()
        {
            Swap::Conflict(Some(current)) => assert_eq!(*current, loaded),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    let Swap::Done(v2) = store
        .compare_and_swap(Some(v1), Some(&second))
        .await
        .unwrap()
    else {
        panic!("the right version writes");
    };
    assert_ne!(v2, v1);
    assert_eq!(store.load().await.unwrap().unwrap().session, second);

    // A delete on a stale version conflicts; on the current one it empties the store.
    assert!(matches!(
        store.compare_and_swap(Some(v1), None).await.unwrap(),
        Swap::Conflict(Some(_))
    ));
    assert_eq!(
        store.compare_and_swap(Some(v2), None).await.unwrap(),
        Swap::Done(0)
    );
    assert_eq!(store.load().await.unwrap(), None);
    assert_eq!(
        store
            .compare_and_swap(Some(v2), Some(&first))
            .await
            .unwrap(),
        Swap::Conflict(None)
    );
}

#[tokio::test]
async fn versions_never_repeat_even_after_deletes() {
    let Some(redis) = redis_url("versions_never_repeat_even_after_deletes") else {
        return;
    };
    let key = unique_key("versions");
    let store = store(&redis.url(), &key).await;
    let mut seen = HashSet::new();
    for round in 0..20 {
        let v = store
            .save(&session(&format!("a{round}"), None))
            .await
            .unwrap();
        assert!(
            v != 0 && seen.insert(v),
            "version {v} repeated in round {round}"
        );
        if round % 2 == 0 {
            store.delete().await.unwrap();
            assert_eq!(store.load().await.unwrap(), None);
        }
    }
    // Even when the generation counter itself is lost (a Redis that lost its data),
    // the counter restarts at a random point, not at 1.
    let mut conn = raw(&redis.url()).await;
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{key}:gen"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let v = store.save(&session("again", None)).await.unwrap();
    assert!(
        !seen.contains(&v),
        "version {v} repeated after the counter was lost"
    );
}

#[tokio::test]
async fn concurrent_writers_on_one_version_have_exactly_one_winner() {
    let Some(redis) = redis_url("concurrent_writers_on_one_version_have_exactly_one_winner") else {
        return;
    };
    let key = unique_key("race");
    let url = redis.url();
    let first = store(&url, &key).await;
    let v0 = first.save(&session("a0", None)).await.unwrap();
    let wins = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        // Separate connections, like separate processes.
        let store = store(&url, &key).await;
        let wins = Arc::clone(&wins);
        tasks.push(tokio::spawn(async move {
            let mine = session(&format!("writer{i}"), None);
            if let Swap::Done(_) = store.compare_and_swap(Some(v0), Some(&mine)).await.unwrap() {
                wins.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(wins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_corrupt_value_is_an_error_and_left_untouched() {
    let Some(redis) = redis_url("a_corrupt_value_is_an_error_and_left_untouched") else {
        return;
    };
    let url = redis.url();
    let mut conn = raw(&url).await;
    let string_key = unique_key("corrupt-type");
    let json_key = unique_key("corrupt-json");
    let field_key = unique_key("corrupt-field");
    let shape_key = unique_key("corrupt-shape");
    let _: () = redis::cmd("HSET")
        .arg(&shape_key)
        .arg("v")
        .arg("7")
        .arg("s")
        .arg(r#"{"format": 1, "something": "else"}"#)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&string_key)
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&json_key)
        .arg("v")
        .arg("7")
        .arg("s")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&field_key)
        .arg("s")
        .arg("{}")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in [&string_key, &json_key, &field_key, &shape_key] {
        let store = store(&url, key).await;
        let dump = |mut conn: redis::aio::MultiplexedConnection, key: String| async move {
            let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            dumped
        };
        let before = dump(conn.clone(), key.clone()).await;
        let err = store.load().await.unwrap_err();
        assert!(
            matches!(&err, AuthError::Store { message, .. } if message.contains("corrupt") && message.contains(key.as_str())),
            "{key}: {err:?}"
        );
        let s = session("new", None);
        for expected in [None, Some(7)] {
            assert!(
                matches!(
                    store.compare_and_swap(expected, Some(&s)).await,
                    Err(AuthError::Store { .. })
                ),
                "{key}: a write over a corrupt value must fail"
            );
        }
        assert!(store.compare_and_swap(Some(7), None).await.is_err());
        assert!(store.save(&s).await.is_err());
        assert!(store.delete().await.is_err());
        assert_eq!(
            dump(conn.clone(), key.clone()).await,
            before,
            "{key} was changed"
        );
    }
}

#[tokio::test]
async fn the_lock_excludes_other_handles_until_released() {
    let Some(redis) = redis_url("the_lock_excludes_other_handles_until_released") else {
        return;
    };
    let key = unique_key("lock");
    let a = store(&redis.url(), &key).await;
    let b = store(&redis.url(), &key).await;
    let held = a.lock().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.lock())
            .await
            .is_err(),
        "a second handle took a held lock"
    );
    // While held, the holder (and anyone) can still write: CAS never needs the lock.
    b.save(&session("during", None)).await.unwrap();
    let released = Instant::now();
    drop(held);
    let _b_holds = tokio::time::timeout(Duration::from_secs(2), b.lock())
        .await
        .expect("released promptly")
        .unwrap();
    assert!(released.elapsed() < Duration::from_secs(1));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.lock())
            .await
            .is_err(),
        "now b holds it"
    );
}

#[tokio::test]
async fn a_live_holder_keeps_its_lease_and_a_dead_one_loses_it() {
    let Some(redis) = redis_url("a_live_holder_keeps_its_lease_and_a_dead_one_loses_it") else {
        return;
    };
    let key = unique_key("lease");
    let lease = Duration::from_millis(300);
    let a = store(&redis.url(), &key).await.with_lease(lease);
    let b = store(&redis.url(), &key).await.with_lease(lease);
    // Held (and renewed) for five leases: nobody else gets it.
    let held = a.lock().await.unwrap();
    assert!(
        tokio::time::timeout(lease * 5, b.lock()).await.is_err(),
        "the lease was not renewed"
    );
    drop(held);
    drop(b.lock().await.unwrap());

    // A holder that died (took the lock, never renews, never releases): a raw SET like
    // the one a SIGKILLed process left behind. The lease expires and `b` takes over.
    let mut conn = raw(&redis.url()).await;
    let _: () = redis::cmd("SET")
        .arg(format!("{key}:lock"))
        .arg("dead-owner")
        .arg("PX")
        .arg(400)
        .query_async(&mut conn)
        .await
        .unwrap();
    let waited = Instant::now();
    let _guard = tokio::time::timeout(Duration::from_secs(3), b.lock())
        .await
        .expect("the dead holder's lease expires")
        .unwrap();
    assert!(waited.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_cancelled_lock_wait_leaves_nothing_held() {
    let Some(redis) = redis_url("a_cancelled_lock_wait_leaves_nothing_held") else {
        return;
    };
    let key = unique_key("cancel");
    let a = store(&redis.url(), &key).await;
    let b = store(&redis.url(), &key).await;
    let held = a.lock().await.unwrap();
    // b gives up waiting (the manager's deadline does this).
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b.lock())
            .await
            .is_err()
    );
    drop(held);
    // Nobody holds it now: a third handle takes it at once.
    let c = store(&redis.url(), &key).await;
    tokio::time::timeout(Duration::from_millis(500), c.lock())
        .await
        .expect("free")
        .unwrap();
}

#[tokio::test]
async fn keys_are_the_documented_ones_and_the_session_expires_with_its_refresh_token() {
    let Some(redis) =
        redis_url("keys_are_the_documented_ones_and_the_session_expires_with_its_refresh_token")
    else {
        return;
    };
    let key = unique_key("keys");
    let store = store(&redis.url(), &key).await;
    let mut conn = raw(&redis.url()).await;
    let pttl = |mut conn: redis::aio::MultiplexedConnection, key: String| async move {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        ttl
    };

    // An opaque refresh token: no TTL unless configured.
    store.save(&session("a", Some("opaque"))).await.unwrap();
    assert_eq!(pttl(conn.clone(), key.clone()).await, -1);
    let store_ttl = store.clone().with_ttl(Some(Duration::from_secs(3600)));
    store_ttl.save(&session("a", Some("opaque"))).await.unwrap();
    let ttl = pttl(conn.clone(), key.clone()).await;
    assert!((3_500_000..=3_600_000).contains(&ttl), "{ttl}");

    // A JWT refresh token that expires in 2 hours: the key lives 2 hours and a minute.
    let (jwt, _) = authmux_testkit::jwt::JwtKeys::random().issue(
        "bot",
        SystemTime::now(),
        Some(Duration::from_secs(7200)),
        serde_json::Map::new(),
    );
    store.save(&session("a", Some(&jwt))).await.unwrap();
    let ttl = pttl(conn.clone(), key.clone()).await;
    assert!((7_200_000..=7_262_000).contains(&ttl), "{ttl}");

    let _lock = store.lock().await.unwrap();
    let lock_ttl = pttl(conn.clone(), format!("{key}:lock")).await;
    assert!(lock_ttl > 0 && lock_ttl <= 10_000, "{lock_ttl}");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{key}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [key.clone(), format!("{key}:gen"), format!("{key}:lock")]
    );
    // The generation survives a delete (and has no expiry).
    store.delete().await.unwrap();
    assert_eq!(pttl(conn.clone(), format!("{key}:gen")).await, -1);
}

#[tokio::test]
async fn redis_down_at_start_is_a_clear_store_error() {
    // Nothing listens on this port (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://:s3cret@127.0.0.1:{port}/0"), "k")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret") && !format!("{err:?}").contains("s3cret"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_restarted_redis_fails_calls_with_a_store_error_then_recovers() {
    let Some(mut server) =
        own_server("a_restarted_redis_fails_calls_with_a_store_error_then_recovers")
    else {
        return;
    };
    let key = unique_key("restart");
    let store = store(&server.url(), &key).await;
    let v = store.save(&session("before", None)).await.unwrap();
    server.kill();
    let down = Instant::now();
    assert!(matches!(store.load().await, Err(AuthError::Store { .. })));
    assert!(matches!(store.lock().await, Err(AuthError::Store { .. })));
    assert!(
        down.elapsed() < Duration::from_secs(15),
        "errors come quickly"
    );
    server.restart().unwrap();
    // The connection comes back by itself, and the data was kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    let loaded = loop {
        match store.load().await {
            Ok(loaded) => break loaded,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    assert_eq!(loaded.map(|l| l.version), Some(v));
    drop(store.lock().await.unwrap());
}

#[tokio::test]
async fn debug_shows_where_but_no_password() {
    let Some(redis) = redis_url("debug_shows_where_but_no_password") else {
        return;
    };
    let store = store(&redis.url(), "authmux:debug").await;
    let text = format!("{store:?}");
    assert!(
        text.contains("authmux:debug") && text.contains("127.0.0.1"),
        "{text}"
    );
}
