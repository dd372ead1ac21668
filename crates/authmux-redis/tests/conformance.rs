//! `RedisStore` passes the store conformance suite (`authmux_testkit::store_conformance`)
//! on a REAL `redis-server` (`$AUTHMUX_REDIS_URL`, else one started here; skipped
//! loudly without either), plain and wrapped in an `EncryptedStore`. Each `open(name)`
//! is a new connection onto the key `name`, as another process would have.

use std::sync::Arc;

use authmux_core::SessionStore;
use authmux_core::store::{EncryptedStore, EncryptionKey};
use authmux_redis::RedisStore;
use authmux_testkit::redis::redis_url;

#[tokio::test(flavor = "multi_thread")]
async fn redis_store_passes_the_store_conformance_suite() {
    let Some(redis) = redis_url("redis_store_passes_the_store_conformance_suite") else {
        return;
    };
    let url = redis.url();
    let report = authmux_testkit::store_conformance::run(|location: String| {
        let url = url.clone();
        async move {
            let store = RedisStore::connect(&url, format!("authmux-conformance:{location}"))
                .await
                .expect("connects");
            Arc::new(store) as Arc<dyn SessionStore>
        }
    })
    .await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_redis_store_passes_the_store_conformance_suite() {
    let Some(redis) = redis_url("an_encrypted_redis_store_passes_the_store_conformance_suite")
    else {
        return;
    };
    let url = redis.url();
    let key = EncryptionKey::generate("conformance").unwrap();
    let report = authmux_testkit::store_conformance::run(|location: String| {
        let (url, key) = (url.clone(), key.clone());
        async move {
            let store = RedisStore::connect(&url, format!("authmux-conformance-enc:{location}"))
                .await
                .expect("connects");
            Arc::new(EncryptedStore::new(store, key)) as Arc<dyn SessionStore>
        }
    })
    .await;
    report.assert_passed();
}
