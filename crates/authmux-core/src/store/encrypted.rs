//! [`EncryptedStore`]: a wrapper that encrypts sessions (AES-256-GCM, from aws-lc-rs)
//! before they reach any other store, [`FileStore`](super::FileStore), a Redis store or
//! your own. Behind the off-by-default `encryption` feature.
//!
//! The stored value is a *carrier* session: dialect [`ENCRYPTED_DIALECT`], no tokens,
//! no user, and one extra, [`ENCRYPTED_EXTRA`], holding the algorithm, the key id, the
//! nonce and the ciphertext of the whole real session (JSON). The only thing it shows in
//! clear is when it stops being useful (`tokens.expires_at`: the refresh token's expiry
//! when it is a JWT, else the access token's when there is no refresh token), so stores
//! can expire it (the Redis store's TTL).
//!
//! Keys have ids, so they can rotate: the store writes with its current key and reads
//! with the current key or any old key added with [`EncryptedStore::with_old_key`]; the
//! next write after a rotation re-encrypts with the new key. The key id and the
//! algorithm are authenticated with the ciphertext.
//!
//! Reading fails with [`AuthError::Store`], whose `source` is a [`DecryptError`] saying
//! why (unknown key id, wrong key or tampered value, not an encrypted session), and the
//! stored value is left as it is: a failed read is never "no session", so the manager
//! never overwrites it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{SessionStore, StoreLock, Swap, Versioned};
use crate::error::AuthError;
use crate::secret::AccessToken;
use crate::session::{SESSION_FORMAT, Session};
use crate::token::TokenSet;

/// The dialect of a carrier session.
pub const ENCRYPTED_DIALECT: &str = "authmux-encrypted";
/// The carrier's extra holding the encrypted session.
pub const ENCRYPTED_EXTRA: &str = "authmux_encrypted";
/// The algorithm's name in the envelope.
const ALGORITHM: &str = "AES-256-GCM";

/// A 32-byte AES-256-GCM key and its id. The bytes are zeroized on drop and never
/// printed.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    bytes: Arc<Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({:?}, ** redacted **)", self.id)
    }
}

impl EncryptionKey {
    /// A key with an id of your choosing (e.g. `"2026-01"`).
    pub fn new(id: impl Into<String>, bytes: [u8; 32]) -> Self {
        Self {
            id: id.into(),
            bytes: Arc::new(Zeroizing::new(bytes)),
        }
    }

    /// A key whose id is derived from the key (the first 8 bytes of its SHA-256, in
    /// hex), for when keys are handed around without names.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Self::new(id, bytes)
    }

    /// A key from standard base64 of exactly 32 bytes (`openssl rand -base64 32`), its
    /// id derived as in [`EncryptionKey::from_bytes`]. The error never shows the text.
    pub fn from_base64(text: &str) -> Result<Self, AuthError> {
        let decoded = Zeroizing::new(BASE64.decode(text.trim()).map_err(|_| {
            AuthError::validation("encryption key", "not standard base64".to_owned())
        })?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            AuthError::validation(
                "encryption key",
                format!("must be 32 bytes, got {}", decoded.len()),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key (from the operating system's generator).
    pub fn generate(id: impl Into<String>) -> Result<Self, AuthError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| AuthError::store("cannot generate a key", DecryptError::Random))?;
        Ok(Self::new(id, *bytes))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always valid for AES-256-GCM.
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, self.bytes.as_ref().as_ref())
                .expect("a 32-byte AES-256 key"),
        )
    }
}

/// Why a stored session could not be decrypted (the `source` of the
/// [`AuthError::Store`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The value was encrypted under a key id this store was not given.
    #[error("encrypted with key id {0:?}, which this store does not have")]
    UnknownKey(String),
    /// Authentication failed: a wrong key with the right id, or a changed value.
    #[error("wrong key or tampered value (authentication failed)")]
    WrongKeyOrTampered,
    /// The stored session is not an encrypted session (written without encryption).
    #[error("the stored session is not encrypted")]
    NotEncrypted,
    /// The envelope is malformed (missing field, bad base64, unknown algorithm).
    #[error("malformed encrypted session: {0}")]
    Malformed(&'static str),
    /// The system's random generator failed.
    #[error("the random generator failed")]
    Random,
}

/// The envelope in the carrier's [`ENCRYPTED_EXTRA`].
#[derive(Serialize, Deserialize)]
struct Envelope {
    alg: String,
    kid: String,
    nonce: String,
    ciphertext: String,
}

/// A store that encrypts sessions (AES-256-GCM, aws-lc-rs) before they reach `inner`,
/// any other store (a [`FileStore`](super::FileStore), a Redis store, your own).
///
/// What `inner` holds is a carrier session: dialect [`ENCRYPTED_DIALECT`], no token, no
/// user, and one extra, [`ENCRYPTED_EXTRA`], with the algorithm, the key id, the nonce
/// and the ciphertext of the whole session. Its only clear field is when it stops being
/// useful (`tokens.expires_at`: the refresh token's expiry when it is a JWT, else the
/// access token's when there is no refresh token), so a store can expire it.
///
/// Writes use the current key; reads also accept the old keys given with
/// [`EncryptedStore::with_old_key`], so keys rotate (the next write re-encrypts). The
/// key id and algorithm are authenticated with the ciphertext. A value that cannot be
/// read (unknown key id, wrong key, tampered, not encrypted) is an
/// [`AuthError::Store`] whose `source` is a [`DecryptError`], and it is left untouched.
///
/// ```
/// use authmux_core::store::{EncryptedStore, EncryptionKey, MemoryStore, SessionStore};
/// # async fn demo(session: authmux_core::Session) -> Result<(), authmux_core::AuthError> {
/// let old = EncryptionKey::new("2025", [7; 32]);
/// let new = EncryptionKey::new("2026", [9; 32]);
/// let store = EncryptedStore::new(MemoryStore::new(), new).with_old_key(old);
/// store.save(&session).await?; // written under key "2026"
/// assert_eq!(store.load().await?.unwrap().session, session);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EncryptedStore<S> {
    inner: S,
    current: EncryptionKey,
    old: Vec<EncryptionKey>,
}

impl<S: SessionStore> EncryptedStore<S> {
    /// Encrypts sessions for `inner` under `key`.
    pub fn new(inner: S, key: EncryptionKey) -> Self {
        Self {
            inner,
            current: key,
            old: Vec::new(),
        }
    }

    /// Also reads values written under `key` (a key being rotated out); writes always
    /// use the current key.
    #[must_use]
    pub fn with_old_key(mut self, key: EncryptionKey) -> Self {
        self.old.push(key);
        self
    }

    /// The wrapped store (which holds only carrier sessions).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn aad(alg: &str, kid: &str) -> Vec<u8> {
        format!("authmux-encrypted-session/v1\0{alg}\0{kid}").into_bytes()
    }

    fn encrypt(&self, session: &Session) -> Result<Session, AuthError> {
        let mut buffer = Zeroizing::new(
            serde_json::to_vec(session)
                .map_err(|e| AuthError::store("cannot encode session", e))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| AuthError::store("cannot encrypt session", DecryptError::Random))?;
        let key = &self.current;
        key.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(ALGORITHM, &key.id)),
                &mut *buffer,
            )
            .map_err(|_| AuthError::store("cannot encrypt session", DecryptError::Random))?;
        let envelope = Envelope {
            alg: ALGORITHM.to_owned(),
            kid: key.id.clone(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(&*buffer),
        };
        let useless_after = match &session.tokens.refresh {
            Some(refresh) => {
                crate::token::jwt_hint(refresh.expose_secret()).and_then(|h| h.expires_at)
            }
            None => session.tokens.expires_at,
        };
        let mut carrier = Session::new(
            ENCRYPTED_DIALECT,
            url::Url::parse("authmux:encrypted").expect("a valid URL"),
            TokenSet {
                access: AccessToken::new(""),
                refresh: None,
                expires_at: useless_after,
                issued_at: SystemTime::UNIX_EPOCH,
            },
        );
        carrier.extras.insert(
            ENCRYPTED_EXTRA.to_owned(),
            serde_json::to_value(envelope).expect("plain strings serialize"),
        );
        Ok(carrier)
    }

    fn decrypt(&self, carrier: &Session) -> Result<Session, AuthError> {
        let fail = |why: DecryptError| AuthError::Store {
            message: format!("cannot decrypt the stored session: {why}; it was left untouched"),
            source: Some(Arc::new(why)),
        };
        let envelope = match carrier.extras.get(ENCRYPTED_EXTRA) {
            Some(value) if carrier.dialect == ENCRYPTED_DIALECT => {
                serde_json::from_value::<Envelope>(value.clone())
                    .map_err(|_| fail(DecryptError::Malformed("missing field")))?
            }
            _ => return Err(fail(DecryptError::NotEncrypted)),
        };
        if envelope.alg != ALGORITHM {
            return Err(fail(DecryptError::Malformed("unknown algorithm")));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == envelope.kid)
            .ok_or_else(|| fail(DecryptError::UnknownKey(envelope.kid.clone())))?;
        let nonce: [u8; NONCE_LEN] = BASE64
            .decode(&envelope.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| fail(DecryptError::Malformed("bad nonce")))?;
        let mut buffer = Zeroizing::new(
            BASE64
                .decode(&envelope.ciphertext)
                .map_err(|_| fail(DecryptError::Malformed("bad ciphertext")))?,
        );
        let plain = key
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(&envelope.alg, &envelope.kid)),
                &mut buffer,
            )
            .map_err(|_| fail(DecryptError::WrongKeyOrTampered))?;
        let session: Session = serde_json::from_slice(plain)
            .map_err(|_| fail(DecryptError::Malformed("not a session")))?;
        if session.format > SESSION_FORMAT {
            return Err(fail(DecryptError::Malformed("newer session format")));
        }
        Ok(session)
    }

    fn decrypt_versioned(&self, stored: Versioned) -> Result<Versioned, AuthError> {
        Ok(Versioned {
            version: stored.version,
            session: self.decrypt(&stored.session)?,
        })
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for EncryptedStore<S> {
    async fn load(&self) -> Result<Option<Versioned>, AuthError> {
        self.inner
            .load()
            .await?
            .map(|stored| self.decrypt_versioned(stored))
            .transpose()
    }

    async fn compare_and_swap(
        &self,
        expected: Option<u64>,
        new: Option<&Session>,
    ) -> Result<Swap, AuthError> {
        let carrier = new.map(|s| self.encrypt(s)).transpose()?;
        match self
            .inner
            .compare_and_swap(expected, carrier.as_ref())
            .await?
        {
            Swap::Done(version) => Ok(Swap::Done(version)),
            Swap::Conflict(None) => Ok(Swap::Conflict(None)),
            Swap::Conflict(Some(current)) => Ok(Swap::Conflict(Some(Box::new(
                self.decrypt_versioned(*current)?,
            )))),
        }
    }

    async fn lock(&self) -> Result<StoreLock, AuthError> {
        self.inner.lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::secret::RefreshToken;
    use crate::store::MemoryStore;
    use crate::token::Expiry;

    fn session() -> Session {
        Session::new(
            "linxio",
            "https://api.example.com".parse().unwrap(),
            TokenSet::new(
                AccessToken::new("access-secret-1"),
                Some(RefreshToken::new("refresh-secret-1")),
                Expiry::In(Duration::from_secs(900)),
                SystemTime::now(),
            ),
        )
        .with_extra("mode", "json")
    }

    fn store_with(inner: &MemoryStore, key: EncryptionKey) -> EncryptedStore<MemoryStore> {
        EncryptedStore::new(inner.clone(), key)
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
            .expect("a DecryptError")
            .clone()
    }

    #[tokio::test]
    async fn round_trip_hides_everything_secret() {
        let inner = MemoryStore::new();
        let store = store_with(&inner, EncryptionKey::new("k1", [1; 32]));
        let s = session();
        let v = store.save(&s).await.unwrap();
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!((loaded.version, &loaded.session), (v, &s));
        let carrier = inner.load().await.unwrap().unwrap().session;
        let raw = serde_json::to_string(&carrier).unwrap();
        for secret in [
            "access-secret-1",
            "refresh-secret-1",
            "api.example.com",
            "linxio",
            "json",
        ] {
            assert!(!raw.contains(secret), "{secret} in {raw}");
        }
        assert_eq!(carrier.dialect, ENCRYPTED_DIALECT);
        // Two writes of one session never produce the same ciphertext (fresh nonces).
        store.save(&s).await.unwrap();
        let again = inner.load().await.unwrap().unwrap().session;
        assert_ne!(again.extras, carrier.extras);
    }

    #[tokio::test]
    async fn a_wrong_key_is_a_typed_error_and_leaves_the_value() {
        let inner = MemoryStore::new();
        store_with(&inner, EncryptionKey::new("k1", [1; 32]))
            .save(&session())
            .await
            .unwrap();
        let before = inner.load().await.unwrap();
        // Same id, other bytes: authentication fails.
        let wrong = store_with(&inner, EncryptionKey::new("k1", [2; 32]));
        let err = wrong.load().await.unwrap_err();
        assert_eq!(decrypt_error(&err), DecryptError::WrongKeyOrTampered);
        // Another id: says which key it needs.
        let other = store_with(&inner, EncryptionKey::new("k2", [1; 32]));
        let err = other.load().await.unwrap_err();
        assert_eq!(decrypt_error(&err), DecryptError::UnknownKey("k1".into()));
        // A write over it with the wrong key fails on the conflict read and writes
        // nothing; the default save (load first) fails before writing.
        assert!(
            wrong
                .compare_and_swap(None, Some(&session()))
                .await
                .is_err()
        );
        assert!(wrong.save(&session()).await.is_err());
        assert!(wrong.delete().await.is_err());
        assert_eq!(inner.load().await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_tampered_value_is_a_typed_error_and_left_alone() {
        let inner = MemoryStore::new();
        let store = store_with(&inner, EncryptionKey::new("k1", [1; 32]));
        store.save(&session()).await.unwrap();
        let stored = inner.load().await.unwrap().unwrap();
        let envelope = stored.session.extras[ENCRYPTED_EXTRA].clone();
        let mut ciphertext = BASE64
            .decode(envelope["ciphertext"].as_str().unwrap())
            .unwrap();
        ciphertext[3] ^= 1;
        let tampered_cases = [
            (
                "ciphertext",
                serde_json::Value::from(BASE64.encode(&ciphertext)),
            ),
            (
                "nonce",
                serde_json::Value::from(BASE64.encode([0u8; NONCE_LEN])),
            ),
        ];
        for (field, value) in tampered_cases {
            let mut carrier = stored.session.clone();
            carrier.extras[ENCRYPTED_EXTRA][field] = value;
            let v = inner.save(&carrier).await.unwrap();
            let err = store.load().await.unwrap_err();
            assert_eq!(
                decrypt_error(&err),
                DecryptError::WrongKeyOrTampered,
                "{field}"
            );
            assert!(!err.to_string().contains("secret"));
            assert_eq!(inner.load().await.unwrap().unwrap().version, v);
        }
        // A relabelled key id is caught too (the id is authenticated).
        let mut carrier = stored.session.clone();
        carrier.extras[ENCRYPTED_EXTRA]["kid"] = "k0".into();
        inner.save(&carrier).await.unwrap();
        let relabelled = store
            .clone()
            .with_old_key(EncryptionKey::new("k0", [1; 32]));
        let err = relabelled.load().await.unwrap_err();
        assert_eq!(decrypt_error(&err), DecryptError::WrongKeyOrTampered);
        // A plaintext session is refused, not trusted.
        inner.save(&session()).await.unwrap();
        let err = store.load().await.unwrap_err();
        assert_eq!(decrypt_error(&err), DecryptError::NotEncrypted);
    }

    #[tokio::test]
    async fn keys_rotate_reading_old_writing_new() {
        let inner = MemoryStore::new();
        let old = EncryptionKey::new("2025", [1; 32]);
        let new = EncryptionKey::new("2026", [2; 32]);
        let s = session();
        store_with(&inner, old.clone()).save(&s).await.unwrap();
        let rotated = store_with(&inner, new.clone()).with_old_key(old.clone());
        let loaded = rotated.load().await.unwrap().unwrap();
        assert_eq!(loaded.session, s);
        // The next write uses the new key: readable without the old one from then on.
        let Swap::Done(_) = rotated
            .compare_and_swap(Some(loaded.version), Some(&loaded.session))
            .await
            .unwrap()
        else {
            panic!("no conflict");
        };
        let carrier = inner.load().await.unwrap().unwrap().session;
        assert_eq!(carrier.extras[ENCRYPTED_EXTRA]["kid"], "2026");
        assert_eq!(
            store_with(&inner, new)
                .load()
                .await
                .unwrap()
                .unwrap()
                .session,
            s
        );
        let err = store_with(&inner, old).load().await.unwrap_err();
        assert_eq!(decrypt_error(&err), DecryptError::UnknownKey("2026".into()));
    }

    #[test]
    fn keys_from_base64_check_length_and_never_print() {
        let key = EncryptionKey::from_base64(&BASE64.encode([5u8; 32])).unwrap();
        assert_eq!(key.id().len(), 16);
        assert_eq!(key.id(), EncryptionKey::from_bytes([5; 32]).id());
        assert!(!format!("{key:?}").contains("BQUF"));
        assert!(EncryptionKey::from_base64(&BASE64.encode([5u8; 16])).is_err());
        let err = EncryptionKey::from_base64("not base64 !!").unwrap_err();
        assert!(!err.to_string().contains("not base64 !!"));
        let a = EncryptionKey::generate("a").unwrap();
        let b = EncryptionKey::generate("b").unwrap();
        assert_ne!(a.bytes, b.bytes);
    }

    #[tokio::test]
    async fn the_carrier_says_when_the_session_stops_being_useful() {
        let inner = MemoryStore::new();
        let store = store_with(&inner, EncryptionKey::new("k", [1; 32]));
        // An opaque refresh token: unknown.
        store.save(&session()).await.unwrap();
        let carrier = inner.load().await.unwrap().unwrap().session;
        assert_eq!(carrier.tokens.expires_at, None);
        // No refresh token: the access token's expiry.
        let mut s = session();
        s.tokens.refresh = None;
        store.save(&s).await.unwrap();
        let carrier = inner.load().await.unwrap().unwrap().session;
        assert_eq!(carrier.tokens.expires_at, s.tokens.expires_at);
    }
}
