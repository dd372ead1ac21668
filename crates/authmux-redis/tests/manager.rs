//! `SessionManager`s sharing a `RedisStore` on a REAL `redis-server` (started here from
//! `redis-server` on `PATH`, or `$AUTHMUX_REDIS_URL`; skipped loudly without either),
//! against the Linxio fake with reuse detection: Redis restarted mid-run, two managers
//! refreshing one expired session, and sessions encrypted on their way to Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authmux_core::store::{DecryptError, EncryptedStore, EncryptionKey};
use authmux_core::{
    AuthError, Credentials, LoginOutcome, ManagerConfig, RefreshWindow, SessionManager,
    SessionStore,
};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_redis::RedisStore;
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::redis::{own_server, redis_url};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use bytes::Bytes;

fn unique_key(test: &str) -> String {
    format!("authmux-test:{test}:{:016x}", fastrand::u64(..))
}

fn manager(fake: &FakeLinxio, store: impl SessionStore + 'static) -> SessionManager {
    let provider =
        Arc::new(LinxioProvider::new(LinxioConfig::new(fake.base_url().clone())).unwrap());
    SessionManager::builder(provider)
        .store(store)
        .config(ManagerConfig {
            // Refresh at expiry, not before: the test decides when tokens are stale.
            refresh_window: RefreshWindow {
                min_lead: Duration::ZERO,
                fraction: 0.0,
                jitter: 0.0,
            },
            ..ManagerConfig::default()
        })
        .build()
}

async fn get_me(manager: &SessionManager) -> Result<u16, AuthError> {
    let request = http::Request::get("/me").body(Bytes::new()).unwrap();
    manager.send(request).await.map(|r| r.status().as_u16())
}

async fn login(manager: &SessionManager) {
    let outcome = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert!(matches!(outcome, LoginOutcome::Authenticated(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restart_fails_refreshes_transiently_and_everything_recovers() {
    let Some(mut server) =
        own_server("a_redis_restart_fails_refreshes_transiently_and_everything_recovers")
    else {
        return;
    };
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(3))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key("restart");
    let a = manager(
        &fake,
        RedisStore::connect(&server.url(), &key).await.unwrap(),
    );
    let b = manager(
        &fake,
        RedisStore::connect(&server.url(), &key).await.unwrap(),
    );
    login(&a).await;
    b.restore().await.unwrap().expect("b sees a's session");
    let expires_at = a.session().unwrap().tokens.expires_at.unwrap();

    // Redis goes away while the token is fresh: calls go on (the hot path never
    // touches Redis).
    server.kill();
    for m in [&a, &b] {
        for _ in 0..10 {
            assert_eq!(get_me(m).await.unwrap(), 200);
        }
    }
    // The token expires with Redis still down: the refresh cannot take the lock, so it
    // fails with a typed Store error, and the session is kept.
    let wait = expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    for m in [&a, &b] {
        let err = get_me(m).await.unwrap_err();
        assert!(matches!(err, AuthError::Store { .. }), "{err:?}");
        assert!(m.session().is_some(), "the session was kept");
    }
    assert_eq!(
        fake.recorder().count(endpoints::REFRESH),
        0,
        "no uncoordinated refresh"
    );

    // Redis is back (with its data): both recover, and the fleet refreshes once.
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for m in [&a, &b] {
        loop {
            match get_me(m).await {
                Ok(200) => break,
                Ok(status) => panic!("status {status}"),
                Err(AuthError::Store { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("did not recover: {e:?}"),
            }
        }
    }
    let results = futures_calls(&a, &b).await;
    assert!(results.iter().all(|r| *r == 200), "{results:?}");
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    assert!(
        fake.families()
            .all()
            .iter()
            .all(|f| !fake.families().is_revoked(f.id))
    );
}

/// A burst of concurrent calls on both managers.
async fn futures_calls(a: &SessionManager, b: &SessionManager) -> Vec<u16> {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { get_me(&m).await.unwrap() }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn two_managers_on_one_expired_session_refresh_once() {
    let Some(redis) = redis_url("two_managers_on_one_expired_session_refresh_once") else {
        return;
    };
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(3))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key("two");
    let a = manager(
        &fake,
        RedisStore::connect(&redis.url(), &key).await.unwrap(),
    );
    let b = manager(
        &fake,
        RedisStore::connect(&redis.url(), &key).await.unwrap(),
    );
    login(&a).await;
    b.restore().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let results = futures_calls(&a, &b).await;
    assert!(results.iter().all(|r| *r == 200), "{results:?}");
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    assert_eq!(a.session().unwrap().tokens, b.session().unwrap().tokens);
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_sessions_in_redis_round_trip_rotate_and_refuse_wrong_keys() {
    let Some(redis) =
        redis_url("encrypted_sessions_in_redis_round_trip_rotate_and_refuse_wrong_keys")
    else {
        return;
    };
    let fake = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let key = unique_key("encrypted");
    let url = redis.url();
    let k1 = EncryptionKey::generate("k1").unwrap();
    let k2 = EncryptionKey::generate("k2").unwrap();
    let encrypted = |k: &EncryptionKey, store: RedisStore| EncryptedStore::new(store, k.clone());

    // Round trip through the manager: a second machine with the key restores it.
    let a = manager(
        &fake,
        encrypted(&k1, RedisStore::connect(&url, &key).await.unwrap()),
    );
    login(&a).await;
    let b = manager(
        &fake,
        encrypted(&k1, RedisStore::connect(&url, &key).await.unwrap()),
    );
    let restored = b.restore().await.unwrap().unwrap();
    assert_eq!(restored, a.session().unwrap());
    assert_eq!(get_me(&b).await.unwrap(), 200);

    // What Redis holds has no token, no URL, no email.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: String = redis::cmd("HGET")
        .arg(&key)
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    let session = a.session().unwrap();
    for secret in [
        session.tokens.access.expose_secret(),
        session.tokens.refresh.as_ref().unwrap().expose_secret(),
        fake.base_url().host_str().unwrap(),
        ALICE_EMAIL,
    ] {
        assert!(!raw.contains(secret), "Redis holds {secret} in clear");
    }
    // The fake's refresh tokens are opaque, so the key has no TTL (as without
    // encryption; a JWT refresh token's expiry would show through the carrier).
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1);

    // A machine with the wrong key: a typed error, and the value is untouched.
    let wrong = manager(
        &fake,
        encrypted(
            &EncryptionKey::new("k1", [0; 32]),
            RedisStore::connect(&url, &key).await.unwrap(),
        ),
    );
    let err = wrong.restore().await.unwrap_err();
    assert_eq!(decrypt_error(&err), DecryptError::WrongKeyOrTampered);
    let after: String = redis::cmd("HGET")
        .arg(&key)
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, raw);

    // Tampered in Redis: a typed error, left as it is.
    let mut value: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ciphertext = value["extras"]["authmux_encrypted"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if ciphertext.starts_with('A') {
        "B"
    } else {
        "A"
    };
    value["extras"]["authmux_encrypted"]["ciphertext"] =
        format!("{flipped}{}", &ciphertext[1..]).into();
    let tampered = value.to_string();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("s")
        .arg(&tampered)
        .query_async(&mut conn)
        .await
        .unwrap();
    let store = encrypted(&k1, RedisStore::connect(&url, &key).await.unwrap());
    let err = store.load().await.unwrap_err();
    assert_eq!(decrypt_error(&err), DecryptError::WrongKeyOrTampered);
    assert!(store.save(&session).await.is_err());
    let still: String = redis::cmd("HGET")
        .arg(&key)
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, tampered);

    // Rotation: restore the good value, then a machine with k2 (and k1 as old) reads
    // it and its next write is under k2.
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("s")
        .arg(&raw)
        .query_async(&mut conn)
        .await
        .unwrap();
    let rotated = EncryptedStore::new(RedisStore::connect(&url, &key).await.unwrap(), k2.clone())
        .with_old_key(k1.clone());
    let loaded = rotated.load().await.unwrap().unwrap();
    assert_eq!(loaded.session, session);
    rotated.save(&loaded.session).await.unwrap();
    let k2_only = encrypted(&k2, RedisStore::connect(&url, &key).await.unwrap());
    assert_eq!(k2_only.load().await.unwrap().unwrap().session, session);
    let k1_only = encrypted(&k1, RedisStore::connect(&url, &key).await.unwrap());
    assert_eq!(
        decrypt_error(&k1_only.load().await.unwrap_err()),
        DecryptError::UnknownKey("k2".into())
    );
}

fn decrypt_error(err: &AuthError) -> DecryptError {
    let AuthError::Store {
        source: Some(source),
        ..
    } = err
    else {
        panic!("not a store error with a source: {err:?}");
    };
    source
        .downcast_ref::<DecryptError>()
        .unwrap_or_else(|| panic!("not a DecryptError: {err:?}"))
        .clone()
}
