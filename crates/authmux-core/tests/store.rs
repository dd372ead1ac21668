//! Session stores: versions and compare-and-swap, the file store's atomic 0600 writes,
//! corrupt files reported and left untouched, and the cross-process lock.

use std::time::{Duration, UNIX_EPOCH};

use authmux_core::store::Swap;
use authmux_core::{
    AccessToken, Expiry, FileStore, MemoryStore, RefreshToken, Session, SessionStore, TokenSet,
};
use url::Url;

fn session(n: u32) -> Session {
    let tokens = TokenSet::new(
        AccessToken::new(format!("access-{n}")),
        Some(RefreshToken::new(format!("refresh-{n}"))),
        Expiry::In(Duration::from_secs(900)),
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    Session::new(
        "linxio",
        Url::parse("https://api.example.com").unwrap(),
        tokens,
    )
    .with_extra("domain", "acme")
}

/// Writes a file as a person would, but owner-only (the store refuses anything else).
fn write_private_file(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

async fn contract(store: &dyn SessionStore) {
    assert!(store.load().await.unwrap().is_none());
    // Writing into an empty store needs `expected = None`.
    assert!(matches!(
        store
            .compare_and_swap(Some(1), Some(&session(1)))
            .await
            .unwrap(),
        Swap::Conflict(None)
    ));
    let Swap::Done(v1) = store
        .compare_and_swap(None, Some(&session(1)))
        .await
        .unwrap()
    else {
        panic!("cas failed")
    };
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.session), (v1, &session(1)));
    // A stale version loses, and is told what is there.
    let Swap::Done(v2) = store
        .compare_and_swap(Some(v1), Some(&session(2)))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(v2 > v1);
    match store
        .compare_and_swap(Some(v1), Some(&session(3)))
        .await
        .unwrap()
    {
        Swap::Conflict(Some(current)) => assert_eq!(current.session, session(2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let v3 = store.save(&session(3)).await.unwrap();
    assert!(v3 > v2);
    store.delete().await.unwrap();
    assert!(store.load().await.unwrap().is_none());
    store.delete().await.unwrap();
}

#[tokio::test]
async fn memory_store_contract() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn file_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&FileStore::new(dir.path().join("nested/profile.json"))).await;
}

#[cfg(unix)]
#[tokio::test]
async fn file_store_writes_owner_only_files_and_leaves_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let store = FileStore::new(&path);
    for n in 0..5 {
        store.save(&session(n)).await.unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let nested = dir.path().join("a/b/s.json");
    FileStore::new(&nested).save(&session(1)).await.unwrap();
    for folder in [dir.path().join("a"), dir.path().join("a/b")] {
        assert_eq!(
            std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
            0o700,
            "{folder:?}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let garbage = b"{\"version\": 3, \"session\": {\"tokens\": trunc";
    write_private_file(&path, garbage);
    let store = FileStore::new(&path);
    let err = store.load().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("corrupt") && text.contains("untouched"),
        "{text}"
    );
    assert!(store.save(&session(1)).await.is_err());
    assert!(
        store
            .compare_and_swap(None, Some(&session(1)))
            .await
            .is_err()
    );
    assert!(store.delete().await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[tokio::test]
async fn a_file_from_a_newer_format_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let mut value = serde_json::json!({ "version": 1, "session": session(1) });
    value["session"]["format"] = 99.into();
    write_private_file(&path, &serde_json::to_vec(&value).unwrap());
    let err = FileStore::new(&path).load().await.unwrap_err();
    assert!(err.to_string().contains("format 99"), "{err}");
}

#[tokio::test]
async fn the_file_holds_tokens_but_the_store_debug_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("s.json"));
    store.save(&session(7)).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    let debug = format!("{store:?} {loaded:?}");
    assert!(
        !debug.contains("access-7") && !debug.contains("refresh-7"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_lock_is_exclusive_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let a = FileStore::new(&path);
    let b = FileStore::new(&path); // a second handle, as another process would have
    let guard = a.lock().await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _g = b.lock().await.unwrap();
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "second lock must wait for the first");
    drop(guard);
    let waited = waiter.await.unwrap();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
}

#[tokio::test]
async fn versions_never_repeat_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let store = FileStore::new(&path);
    let mut seen = std::collections::HashSet::new();
    for n in 0..5 {
        let v = store.save(&session(n)).await.unwrap();
        assert!(seen.insert(v), "version {v} repeated");
        store.delete().await.unwrap();
    }
    // Even with the lock file (which keeps the generation) gone, as after `rm -r`.
    std::fs::remove_file(dir.path().join("s.json.lock")).unwrap();
    let v = store.save(&session(9)).await.unwrap();
    assert!(
        seen.insert(v),
        "version {v} repeated after the lock file was removed"
    );
    // A second handle (another process) sees the same, never-repeating sequence.
    let other = FileStore::new(&path);
    other.delete().await.unwrap();
    let w = other.save(&session(10)).await.unwrap();
    assert!(seen.insert(w), "version {w} repeated");
    let memory = MemoryStore::new();
    let mut seen = std::collections::HashSet::new();
    for n in 0..5 {
        let v = memory.save(&session(n)).await.unwrap();
        assert!(seen.insert(v), "memory store version {v} repeated");
        memory.delete().await.unwrap();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_session_file_others_can_read_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let store = FileStore::new(&path);
    store.save(&session(1)).await.unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = store.load().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, authmux_core::AuthError::Store { .. })
            && text.contains("readable by group or others")
            && text.contains("chmod 600"),
        "{text}"
    );
    assert!(store.save(&session(2)).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[cfg(unix)]
#[tokio::test]
async fn lock_files_are_never_opened_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let target = dir.path().join("victim");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("s.json.lock.refresh")).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("s.json.lock")).unwrap();
    let store = FileStore::new(&path);
    assert!(store.lock().await.is_err());
    assert!(store.save(&session(1)).await.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_writer_makes_writes_fail_in_time_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let store = FileStore::new(&path).with_write_lock_timeout(Duration::from_millis(300));
    store.save(&session(1)).await.unwrap();
    // A peer that took the write lock and stopped (SIGSTOP, a debugger).
    let peer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("s.json.lock"))
        .unwrap();
    peer.lock().unwrap();
    let started = std::time::Instant::now();
    let err = store.save(&session(2)).await.unwrap_err();
    assert!(
        matches!(err, authmux_core::AuthError::Store { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("write lock"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(peer);
    store.save(&session(2)).await.unwrap();
    assert_eq!(store.load().await.unwrap().unwrap().session, session(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_wait_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let a = FileStore::new(&path);
    let b = FileStore::new(&path);
    let held = a.lock().await.unwrap();
    // b gives up waiting (a deadline, a dropped future) ...
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b.lock())
            .await
            .is_err()
    );
    drop(held);
    // ... and neither it nor anyone else is left locked out.
    let c = FileStore::new(&path);
    tokio::time::timeout(Duration::from_secs(2), c.lock())
        .await
        .expect("the lock is free once its holder is gone")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_memory_store_share_one_refresh_lock() {
    let a = MemoryStore::new();
    let b = a.clone();
    let held = a.lock().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b.lock())
            .await
            .is_err(),
        "a clone must not take the lock while it is held"
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(1), b.lock())
        .await
        .unwrap()
        .unwrap();
}
