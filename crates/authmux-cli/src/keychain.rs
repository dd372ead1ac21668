//! `--store keyring`: a profile's tokens in the OS keychain (keyring-core with the
//! platform's store: Linux kernel keyutils, macOS Keychain, Windows Credential Manager),
//! everything else in the profile folder.
//!
//! [`KeyringStore`] is a [`SessionStore`] built on the profile's [`FileStore`]:
//! - `session.json` keeps the session without its secrets (dialect, URL, user,
//!   expiry, extras) plus the name of the keychain entry holding the tokens, so the
//!   file's version, its compare-and-swap and its cross-process refresh lock work
//!   exactly as with `--store file`.
//! - Every save writes the tokens to a NEW keychain entry first, then swaps the file to
//!   point at it; the entry the file pointed at before is deleted after a successful
//!   swap, and the new one after a lost swap. So two processes saving at once never see
//!   each other's half-written state, and a reader always finds the tokens the file
//!   names (it re-reads the file if a writer replaced them meanwhile).
//! - A session file whose keychain entry is gone (keyutils forgets everything at
//!   reboot) is a signed-out profile: the file is removed and `load` says "no session".
//! - A plain session file (tokens inside, from `--store file`) is read as it is; the
//!   next save moves its tokens into the keychain.

use std::path::Path;
#[cfg(feature = "keyring")]
use std::sync::Arc;

use authmux::store::{StoreLock, Swap};
use authmux::{AccessToken, AuthError, FileStore, Session, SessionStore, TokenSet, Versioned};
use zeroize::Zeroizing;

/// The keychain service name of every authmux entry.
#[cfg(feature = "keyring")]
pub(crate) const SERVICE: &str = "authmux";
/// The session extra naming the keychain entry that holds the tokens.
const ENTRY_EXTRA: &str = "authmux_keychain_entry";
/// The stand-in access token written to the file in place of the real one.
const PLACEHOLDER: &str = "(in the OS keychain)";

/// The platform's keychain: a name for people and the keyring-core store.
#[derive(Clone)]
pub(crate) struct Keychain {
    name: &'static str,
    #[cfg(feature = "keyring")]
    store: Arc<keyring_core::CredentialStore>,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keychain")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Keychain {
    /// The platform's keychain, or why there is none.
    pub(crate) fn platform() -> Result<Self, String> {
        #[cfg(all(feature = "keyring", target_os = "linux"))]
        {
            let store = crate::keyutils::Store::new()
                .map_err(|e| format!("the Linux keyutils keychain cannot be opened: {e}"))?;
            Ok(Self {
                name: "the Linux kernel keyutils keychain",
                store,
            })
        }
        #[cfg(all(feature = "keyring", target_os = "macos"))]
        {
            let store = apple_native_keyring_store::keychain::Store::new()
                .map_err(|e| format!("the macOS Keychain cannot be opened: {e}"))?;
            Ok(Self {
                name: "the macOS Keychain",
                store,
            })
        }
        #[cfg(all(feature = "keyring", windows))]
        {
            let store = windows_native_keyring_store::Store::new()
                .map_err(|e| format!("the Windows Credential Manager cannot be opened: {e}"))?;
            Ok(Self {
                name: "the Windows Credential Manager",
                store,
            })
        }
        #[cfg(not(all(
            feature = "keyring",
            any(target_os = "linux", target_os = "macos", windows)
        )))]
        {
            Err("this authmux was built without OS keychain support (feature `keyring`)".into())
        }
    }

    /// The keychain's name, for people (`status`).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Writes, reads back and deletes a throwaway entry: whether the keychain works here
    /// (a sandbox may forbid the keyutils system calls; a desktop keychain may be
    /// locked).
    pub(crate) fn probe(&self, account: &str) -> Result<(), String> {
        let account = format!("{account}#probe-{:016x}", fastrand_u64());
        let written = b"authmux keychain probe";
        let set = self.set(&account, written);
        let read = set.and_then(|()| self.get(&account));
        // Whatever failed, nothing is left behind (a failed set may have written).
        let _ = self.delete(&account);
        match read? {
            Some(bytes) if bytes.as_slice() == written => Ok(()),
            Some(_) => Err(format!("{} gave back something else", self.name)),
            None => Err(format!("{} did not keep an entry", self.name)),
        }
    }

    #[cfg(feature = "keyring")]
    fn entry(&self, account: &str) -> Result<keyring_core::Entry, String> {
        keyring_core::Entry::new_in_store(&self.store, SERVICE, account)
            .map_err(|e| describe(self.name, &e))
    }

    fn set(&self, account: &str, secret: &[u8]) -> Result<(), String> {
        #[cfg(feature = "keyring")]
        {
            self.entry(account)?
                .set_secret(secret)
                .map_err(|e| describe(self.name, &e))
        }
        #[cfg(not(feature = "keyring"))]
        {
            let _ = (account, secret);
            Err(format!("{} is not available", self.name))
        }
    }

    /// The entry's bytes; `None` when there is no such entry.
    fn get(&self, account: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        #[cfg(feature = "keyring")]
        {
            match self.entry(account)?.get_secret() {
                Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
                Err(keyring_core::Error::NoEntry) => Ok(None),
                Err(e) => Err(describe(self.name, &e)),
            }
        }
        #[cfg(not(feature = "keyring"))]
        {
            let _ = account;
            Err(format!("{} is not available", self.name))
        }
    }

    fn delete(&self, account: &str) -> Result<(), String> {
        #[cfg(feature = "keyring")]
        {
            match self.entry(account)?.delete_credential() {
                Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                Err(e) => Err(describe(self.name, &e)),
            }
        }
        #[cfg(not(feature = "keyring"))]
        {
            let _ = account;
            Ok(())
        }
    }
}

/// A keyring error in words that never repeat a secret (the `BadEncoding` and
/// `BadDataFormat` variants carry the entry's bytes, so their `Display` is not used).
#[cfg(feature = "keyring")]
fn describe(keychain: &str, error: &keyring_core::Error) -> String {
    use keyring_core::Error;
    match error {
        Error::PlatformFailure(e) => format!("{keychain} failed: {e}"),
        Error::NoStorageAccess(e) => format!("{keychain} is not accessible: {e}"),
        Error::NoEntry => format!("{keychain} has no such entry"),
        Error::BadEncoding(_) | Error::BadDataFormat(..) => {
            format!("{keychain} holds an entry authmux cannot read")
        }
        Error::TooLong(what, max) => format!("{keychain}: {what} is longer than {max}"),
        Error::Invalid(what, why) => format!("{keychain}: invalid {what}: {why}"),
        other => format!("{keychain}: {other}"),
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A session store keeping the tokens in the OS keychain and the rest in a
/// [`FileStore`] (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct KeyringStore {
    file: FileStore,
    keychain: Keychain,
    /// The keychain account prefix: the profile folder's path, so that profiles of
    /// different homes never share entries.
    account: String,
}

impl KeyringStore {
    /// The store for the session file at `path`, with its tokens in `keychain`.
    pub(crate) fn new(path: &Path, keychain: Keychain) -> Self {
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self {
            file: FileStore::new(path),
            keychain,
            account: dir.display().to_string(),
        }
    }

    fn account_of(&self, entry: &str) -> String {
        format!("{}#{entry}", self.account)
    }

    fn error(message: String) -> AuthError {
        AuthError::Store {
            message,
            source: None,
        }
    }

    /// The keychain entry a stored (stripped) session points at, if any.
    fn entry_of(session: &Session) -> Option<String> {
        session.extra_str(ENTRY_EXTRA).map(str::to_owned)
    }

    /// Writes `session`'s tokens to a new keychain entry; returns the entry's name and
    /// the session as the file keeps it.
    fn stash(&self, session: &Session) -> Result<(String, Session), AuthError> {
        let entry = format!("{:016x}{:016x}", fastrand_u64(), fastrand_u64());
        let secret = Zeroizing::new(
            serde_json::to_vec(&session.tokens)
                .map_err(|e| Self::error(format!("cannot encode the tokens: {e}")))?,
        );
        self.keychain
            .set(&self.account_of(&entry), &secret)
            .map_err(Self::error)?;
        let mut stripped = session.with_tokens(TokenSet {
            access: AccessToken::new(PLACEHOLDER),
            refresh: None,
            expires_at: session.tokens.expires_at,
            issued_at: session.tokens.issued_at,
        });
        stripped
            .extras
            .insert(ENTRY_EXTRA.to_owned(), entry.clone().into());
        Ok((entry, stripped))
    }

    fn forget(&self, entry: Option<String>) {
        if let Some(entry) = entry {
            // A leftover entry holds dead tokens only; nothing more to do if this fails.
            let _ = self.keychain.delete(&self.account_of(&entry));
        }
    }
}

#[authmux::async_trait]
impl SessionStore for KeyringStore {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        // A writer may replace the entry between our reading the file and the entry:
        // read the file again then (a few times at most).
        for _ in 0..5 {
            let Some(mut stored) = self.file.load().await? else {
                return Ok(None);
            };
            let Some(entry) = Self::entry_of(&stored.session) else {
                // A plain session file (from --store file): used as it is.
                return Ok(Some(stored));
            };
            let keychain = self.keychain.clone();
            let account = self.account_of(&entry);
            let secret = tokio::task::spawn_blocking(move || keychain.get(&account))
                .await
                .map_err(|e| Self::error(format!("keychain task failed: {e}")))?
                .map_err(Self::error)?;
            match secret {
                Some(bytes) => {
                    let tokens: TokenSet = serde_json::from_slice(&bytes).map_err(|_| {
                        Self::error(format!(
                            "{} holds tokens authmux cannot read for {}",
                            self.keychain.name(),
                            self.file.path().display()
                        ))
                    })?;
                    stored.session.tokens = tokens;
                    stored.session.extras.remove(ENTRY_EXTRA);
                    return Ok(Some(stored));
                }
                None => {
                    let again = self.file.load().await?;
                    if again.as_ref().map(|v| v.version) != Some(stored.version) {
                        continue;
                    }
                    // The keychain forgot the tokens (keyutils does at reboot): the
                    // session is over. Remove the file that points at nothing.
                    self.file
                        .compare_and_swap(Some(stored.version), None)
                        .await?;
                    return Ok(None);
                }
            }
        }
        Err(Self::error(
            "the session kept changing while it was read; try again".to_owned(),
        ))
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        let before = self.file.load().await?;
        let old_entry = before
            .as_ref()
            .filter(|v| Some(v.version) == expected)
            .and_then(|v| Self::entry_of(&v.session));
        let (new_entry, stripped) = match new {
            Some(session) => {
                let me = self.clone();
                let session = session.clone();
                let (entry, stripped) = tokio::task::spawn_blocking(move || me.stash(&session))
                    .await
                    .map_err(|e| Self::error(format!("keychain task failed: {e}")))??;
                (Some(entry), Some(stripped))
            }
            None => (None, None),
        };
        match self
            .file
            .compare_and_swap(expected, stripped.as_ref())
            .await
        {
            Ok(Swap::Done(version)) => {
                self.forget(old_entry);
                Ok(Swap::Done(version))
            }
            Ok(Swap::Conflict(_)) => {
                self.forget(new_entry);
                Ok(Swap::Conflict(self.load().await?.map(Box::new)))
            }
            Err(e) => {
                self.forget(new_entry);
                Err(e)
            }
        }
    }

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        self.file.lock().await
    }
}

#[cfg(all(test, feature = "keyring"))]
mod tests {
    use super::*;
    use authmux::{RefreshToken, TokenSet};
    use std::time::{Duration, SystemTime};

    fn mock() -> Keychain {
        Keychain {
            name: "the mock keychain",
            store: keyring_core::mock::Store::new().unwrap(),
        }
    }

    fn session(access: &str, refresh: &str) -> Session {
        let now = SystemTime::now();
        Session::new(
            "linxio",
            "https://api.example.com".parse().unwrap(),
            TokenSet {
                access: AccessToken::new(access),
                refresh: Some(RefreshToken::new(refresh)),
                expires_at: Some(now + Duration::from_secs(900)),
                issued_at: now,
            },
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn tokens_live_in_the_keychain_and_never_in_the_file() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("session.json");
            let keychain = mock();
            let store = KeyringStore::new(&path, keychain.clone());
            assert_eq!(store.load().await.unwrap(), None);

            let first = session("access-one-secret", "refresh-one-secret");
            let Swap::Done(v1) = store.compare_and_swap(None, Some(&first)).await.unwrap() else {
                panic!("the first write conflicted");
            };
            let file = std::fs::read_to_string(&path).unwrap();
            assert!(!file.contains("one-secret"), "{file}");
            let loaded = store.load().await.unwrap().unwrap();
            assert_eq!(loaded.version, v1);
            assert_eq!(loaded.session, first);

            // A second store on the same file and keychain (another process) sees it.
            let other = KeyringStore::new(&path, keychain.clone());
            assert_eq!(other.load().await.unwrap().unwrap().session, first);

            // A stale writer loses and leaves nothing behind; the winner's entry
            // replaces the old one, which is deleted.
            let second = session("access-two-secret", "refresh-two-secret");
            let Swap::Done(v2) = store
                .compare_and_swap(Some(v1), Some(&second))
                .await
                .unwrap()
            else {
                panic!("the second write conflicted");
            };
            assert_ne!(v2, v1);
            let stale = session("access-three-secret", "refresh-three-secret");
            match other
                .compare_and_swap(Some(v1), Some(&stale))
                .await
                .unwrap()
            {
                Swap::Conflict(Some(current)) => assert_eq!(current.session, second),
                lost => panic!("expected a conflict, got {lost:?}"),
            }
            assert_eq!(other.load().await.unwrap().unwrap().session, second);
            let live: Vec<_> = keychain
                .store
                .search(&std::collections::HashMap::from([("service", SERVICE)]))
                .unwrap()
                .into_iter()
                .filter(|e| e.get_secret().is_ok())
                .collect();
            assert_eq!(
                live.len(),
                1,
                "only the current tokens stay in the keychain"
            );

            // Deleting removes the file and the entry.
            assert_eq!(
                store.compare_and_swap(Some(v2), None).await.unwrap(),
                Swap::Done(0)
            );
            assert_eq!(store.load().await.unwrap(), None);
            let left = keychain
                .store
                .search(&std::collections::HashMap::from([("service", SERVICE)]))
                .unwrap()
                .into_iter()
                .filter(|e| e.get_secret().is_ok())
                .count();
            assert_eq!(left, 0);
        });
    }

    #[test]
    fn keyring_store_passes_the_store_conformance_suite() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            // One keychain for every handle, as one machine has.
            let keychain = mock();
            let report = authmux_testkit::store_conformance::run(|location: String| {
                let path = dir.path().join(format!("{location}/session.json"));
                let keychain = keychain.clone();
                async move { Arc::new(KeyringStore::new(&path, keychain)) as Arc<dyn SessionStore> }
            })
            .await;
            report.assert_passed();
            assert_eq!(report.passed(), report.results.len(), "{report:?}");
        });
    }

    /// The same suite on this machine's real keychain (keyutils on Linux): entries
    /// written, swapped and deleted by concurrent handles for real.
    #[test]
    fn platform_keyring_store_passes_the_store_conformance_suite() {
        let keychain = match Keychain::platform().and_then(|k| k.probe("conformance").map(|()| k)) {
            Ok(keychain) => keychain,
            Err(why) => {
                // The keyutils system calls refused outright (`EPERM`/`ENOSYS`: a
                // seccomp sandbox) is a machine without a keychain.
                let sandboxed = why.contains("PermissionDenied") || why.contains("Unknown(38)");
                assert!(
                    sandboxed || std::env::var_os("AUTHMUX_NO_KEYCHAIN").is_some(),
                    "the OS keychain is unavailable: {why} (set AUTHMUX_NO_KEYCHAIN=1 on a machine without one)"
                );
                // Loudly, past the harness's capture: this check did not run.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr().lock(),
                    format!(
                        "\n##### KEYCHAIN STORE CONFORMANCE NOT RUN: no OS keychain here: {why}\n"
                    )
                    .as_bytes(),
                );
                return;
            }
        };
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let report = authmux_testkit::store_conformance::run(|location: String| {
                let path = dir.path().join(format!("{location}/session.json"));
                let keychain = keychain.clone();
                async move { Arc::new(KeyringStore::new(&path, keychain)) as Arc<dyn SessionStore> }
            })
            .await;
            report.assert_passed();
            assert_eq!(report.passed(), report.results.len(), "{report:?}");
        });
    }

    #[test]
    fn a_forgotten_entry_means_signed_out_and_a_plain_file_is_adopted() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("session.json");
            let store = KeyringStore::new(&path, mock());
            store
                .compare_and_swap(None, Some(&session("a-secret", "r-secret")))
                .await
                .unwrap();
            // A new keychain with the same file: as after a reboot with keyutils.
            let rebooted = KeyringStore::new(&path, mock());
            assert_eq!(rebooted.load().await.unwrap(), None);
            assert_eq!(
                FileStore::new(&path).load().await.unwrap(),
                None,
                "the session pointing at nothing is removed"
            );

            // A session written by --store file is read as it is, and moved on save.
            let plain = FileStore::new(&path);
            let old = session("plain-access-secret", "plain-refresh-secret");
            plain.compare_and_swap(None, Some(&old)).await.unwrap();
            let loaded = rebooted.load().await.unwrap().unwrap();
            assert_eq!(loaded.session, old);
            rebooted
                .compare_and_swap(Some(loaded.version), Some(&old))
                .await
                .unwrap();
            let file = std::fs::read_to_string(&path).unwrap();
            assert!(!file.contains("plain-access-secret"), "{file}");
            assert_eq!(rebooted.load().await.unwrap().unwrap().session, old);
        });
    }
}
