//! The store conformance suite against the core's stores: `MemoryStore` (clones of one
//! store are the "handles" of one location) and `FileStore` (separate handles on one
//! file, as separate processes have).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use authmux_core::{FileStore, MemoryStore, SessionStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_store_conformance_suite() {
    let locations: Mutex<HashMap<String, MemoryStore>> = Mutex::default();
    let report = authmux_testkit::store_conformance::run(|location: String| {
        let store = locations
            .lock()
            .unwrap()
            .entry(location)
            .or_default()
            .clone();
        async move { Arc::new(store) as Arc<dyn SessionStore> }
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed(), report.results.len(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let report = authmux_testkit::store_conformance::run(|location: String| {
        let path = dir.path().join(format!("{location}/session.json"));
        async move { Arc::new(FileStore::new(path)) as Arc<dyn SessionStore> }
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed(), report.results.len(), "{report:?}");
}
