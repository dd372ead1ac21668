//! A shared Redis ([`RedisStore`]) for a profile's session, so that a fleet of
//! machines uses one session, optionally encrypted ([`EncryptedStore`]); the profile's
//! own stores (file, keychain) are in [`crate::profile`].
//!
//! A shared store is chosen by `--store redis://...`, else `$AUTHMUX_STORE`, else what
//! the profile recorded at login (`config.json`'s `shared_store`: the URL without any
//! password, the key, and the name of the variable holding the encryption key, never a
//! secret); `--store file|keyring|auto` chooses the profile's own store instead. The key is
//! `--store-key`, else the recorded one, else `authmux:<profile>`. With
//! `--store-key-env NAME` (or a recorded one), the session is encrypted with the base64
//! 32-byte key in `$NAME`.
//!
//! A machine with no local profile can use a shared session: the backend (dialect,
//! base URL, mode, workspace) is read from the stored session itself.

use std::sync::{Arc, OnceLock};

use authmux::{ProviderConfig, SessionStore};
use authmux_core::store::{EncryptedStore, EncryptionKey};
use authmux_redis::RedisStore;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::cli::StoreKind;
use crate::failure::Failure;
use crate::profile::{Profile, ProfileStore};

/// The environment variable that sets the store for a run.
pub(crate) const STORE_VAR: &str = "AUTHMUX_STORE";

/// A session store of any kind.
pub(crate) type Store = Arc<dyn SessionStore>;

/// The value of `--store`: one of the profile's own stores, or a shared one's URL.
#[derive(Debug, Clone)]
pub(crate) enum StoreArg {
    /// `file`, `keyring` or `auto`.
    Kind(StoreKind),
    /// `redis://...`.
    Shared(String),
}

/// Parses `--store`.
pub(crate) fn parse_store_arg(text: &str) -> Result<StoreArg, String> {
    if text.contains("://") {
        return Ok(StoreArg::Shared(text.to_owned()));
    }
    StoreKind::from_str(text, true)
        .map(StoreArg::Kind)
        .map_err(|_| "expected file, keyring, auto or redis://HOST:PORT/DB".to_owned())
}

/// The store flags of this run (`--store`, `--store-key`, `--store-key-env`).
#[derive(Debug, Clone, Default)]
struct StoreFlags {
    /// `--store URL`.
    url: Option<String>,
    /// `--store file|keyring|auto` was given: no shared store for this run.
    own_store: bool,
    /// `--store-key KEY`.
    key: Option<String>,
    /// `--store-key-env NAME`.
    key_env: Option<String>,
}

static FLAGS: OnceLock<StoreFlags> = OnceLock::new();

/// Sets this run's store flags (once, before any command runs); returns the profile
/// store kind `--store` named, if it named one.
pub(crate) fn configure(
    store: Option<StoreArg>,
    key: Option<String>,
    key_env: Option<String>,
) -> Option<StoreKind> {
    let (kind, url) = match store {
        Some(StoreArg::Kind(kind)) => (Some(kind), None),
        Some(StoreArg::Shared(url)) => (None, Some(url)),
        None => (None, None),
    };
    let _ = FLAGS.set(StoreFlags {
        url,
        own_store: kind.is_some(),
        key,
        key_env,
    });
    kind
}

fn flags() -> StoreFlags {
    FLAGS.get().cloned().unwrap_or_default()
}

/// The key of `config.json` that records a shared store.
const RECORD: &str = "shared_store";

/// What `config.json` records about a shared store (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreRecord {
    /// The store's URL, without user or password.
    pub(crate) url: String,
    /// The session's key in the store.
    pub(crate) key: String,
    /// The environment variable holding the encryption key, if encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_env: Option<String>,
}

/// A shared store to open: the URL as given (perhaps with a password) and the record.
struct Shared {
    url: String,
    record: StoreRecord,
}

/// The profile's recorded store, if any.
fn recorded(profile: &Profile) -> Result<Option<StoreRecord>, Failure> {
    let Some(value) = profile.read_json::<serde_json::Value>(&profile.config_path())? else {
        return Ok(None);
    };
    match value.get(RECORD) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(store) => serde_json::from_value(store.clone())
            .map(Some)
            .map_err(|e| {
                Failure::no_session(format!(
                    "corrupt `{RECORD}` in {} ({e}); it was left untouched: fix or remove it",
                    profile.config_path().display()
                ))
            }),
    }
}

/// The shared store this run uses for `profile`, if any.
fn shared(profile: &Profile) -> Result<Option<Shared>, Failure> {
    let flags = flags();
    if flags.own_store {
        return Ok(None);
    }
    let recorded = recorded(profile)?;
    let given = flags.url.clone().or_else(|| {
        std::env::var(STORE_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    let url = match (given, &recorded) {
        (Some(url), _) => url,
        (None, Some(recorded)) => recorded.url.clone(),
        (None, None) => {
            if flags.key.is_some() || flags.key_env.is_some() {
                return Err(Failure::usage(format!(
                    "--store-key and --store-key-env need a shared store: --store redis://HOST:PORT/DB or ${STORE_VAR}"
                )));
            }
            return Ok(None);
        }
    };
    let parsed =
        Url::parse(url.trim()).map_err(|e| Failure::usage(format!("invalid store URL: {e}")))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(Failure::usage(format!(
            "unsupported store {}://: use redis://HOST:PORT/DB",
            parsed.scheme()
        )));
    }
    let mut public = parsed.clone();
    let _ = public.set_username("");
    let _ = public.set_password(None);
    let key = flags
        .key
        .or_else(|| recorded.as_ref().map(|r| r.key.clone()))
        .unwrap_or_else(|| format!("authmux:{}", profile.name()));
    let key_env = flags
        .key_env
        .or_else(|| recorded.as_ref().and_then(|r| r.key_env.clone()));
    Ok(Some(Shared {
        url: url.trim().to_owned(),
        record: StoreRecord {
            url: public.to_string(),
            key,
            key_env,
        },
    }))
}

/// The shared store this run uses for `profile`, connected; `None` when the profile's
/// own store (file or keychain) is used.
pub(crate) async fn open(profile: &Profile) -> Result<Option<ProfileStore>, Failure> {
    let Some(shared) = shared(profile)? else {
        return Ok(None);
    };
    let store = open_shared(&shared).await?;
    Ok(Some(ProfileStore {
        store,
        // Nothing of the profile's own store is recorded for it.
        kind: StoreKind::File,
        location: format!(
            "{} key {}{}",
            shared.record.url,
            shared.record.key,
            if shared.record.key_env.is_some() {
                " (encrypted)"
            } else {
                ""
            }
        ),
    }))
}

async fn open_shared(shared: &Shared) -> Result<Store, Failure> {
    let redis = RedisStore::connect(&shared.url, shared.record.key.clone()).await?;
    let Some(name) = &shared.record.key_env else {
        return Ok(Arc::new(redis));
    };
    let text = std::env::var(name).map_err(|_| {
        Failure::usage(format!(
            "the encryption key variable ${name} (--store-key-env) is not set"
        ))
    })?;
    let key = EncryptionKey::from_base64(&text)
        .map_err(|e| Failure::usage(format!("${name} (--store-key-env): {e}")))?;
    Ok(Arc::new(EncryptedStore::new(redis, key)))
}

/// Records this run's shared store in the profile's `config.json` (after a sign-in), so
/// later runs use it without flags. Nothing is recorded for the file store.
pub(crate) fn record(profile: &Profile) -> Result<(), Failure> {
    let Some(shared) = shared(profile)? else {
        return Ok(());
    };
    let path = profile.config_path();
    let mut value = profile
        .read_json::<serde_json::Value>(&path)?
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert(
            RECORD.to_owned(),
            serde_json::to_value(&shared.record).expect("plain strings serialize"),
        );
    }
    profile.write_json(&path, &value)
}

/// The backend of the session in `store`, for a machine with no local profile: the
/// dialect and base URL of the stored session, and its mode (Directus) or workspace
/// (LinkUTM). `None` when the store holds no session.
pub(crate) async fn config_from_store(store: &Store) -> Result<Option<ProviderConfig>, Failure> {
    let Some(stored) = store.load().await? else {
        return Ok(None);
    };
    let session = stored.session;
    let mut config = ProviderConfig::new(&session.dialect, session.base_url.clone())?;
    match &mut config {
        ProviderConfig::Directus(c) => {
            if let Some(mode) = session.extra_str(authmux::directus::MODE_EXTRA) {
                c.mode = mode.parse()?;
            }
        }
        ProviderConfig::LinkUtm(c) => {
            if let Some(workspace) = session.extra_str(authmux::linkutm::WORKSPACE_EXTRA) {
                c.workspace = Some(workspace.to_owned());
            }
        }
        _ => {}
    }
    Ok(Some(config))
}
