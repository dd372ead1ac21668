//! The Linux kernel keyutils keychain, as a keyring-core store.
//!
//! A secret is a `user` key in the user's keyring (`@u`): one per uid, shared by every
//! login session of the user (terminals, SSH, cron), kept in kernel memory until the
//! user's last process ends or the machine reboots (the store then finds no entry and
//! the profile is signed out). Its permissions give everything to its possessor and to
//! its owner's uid, so any process of the user finds it without needing to possess it.
//!
//! Why not `linux-keyutils-keyring-store`: it keeps secrets in the session keyring and
//! insists on linking them into the persistent keyring. Where that keyring belongs to
//! an unmapped owner (containers), the link fails with `EACCES`, and once it is linked
//! into the session keyring, searches fail too: the whole keychain became unusable.
//! The key description is the one that crate uses (`keyring:<account>@<service>`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::{CredentialApi, CredentialPersistence, CredentialStoreApi};
use keyring_core::{Credential, Entry, Error, Result};
use linux_keyutils::{KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};

/// The keyutils keychain (see the module docs).
#[derive(Debug)]
pub(crate) struct Store;

impl Store {
    /// The store, after checking that this process can reach the user's keyring.
    pub(crate) fn new() -> Result<Arc<Self>> {
        user_keyring()?;
        Ok(Arc::new(Self))
    }
}

impl CredentialStoreApi for Store {
    fn vendor(&self) -> String {
        "authmux: Linux kernel keyutils (the user keyring)".into()
    }

    fn id(&self) -> String {
        "authmux-keyutils".into()
    }

    fn build(
        &self,
        service: &str,
        user: &str,
        _modifiers: Option<&HashMap<&str, &str>>,
    ) -> Result<Entry> {
        let description = format!("keyring:{user}@{service}");
        Ok(Entry::new_with_credential(Arc::new(Cred {
            description,
            specifiers: (service.to_owned(), user.to_owned()),
        })))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn persistence(&self) -> CredentialPersistence {
        CredentialPersistence::UntilReboot
    }
}

/// One entry: a key description in the user keyring.
#[derive(Debug)]
struct Cred {
    description: String,
    specifiers: (String, String),
}

impl CredentialApi for Cred {
    fn set_secret(&self, secret: &[u8]) -> Result<()> {
        if secret.is_empty() {
            return Err(Error::Invalid(
                "secret".into(),
                "keyutils keys cannot be empty".into(),
            ));
        }
        let key = user_keyring()?
            .add_key(&self.description, secret)
            .map_err(to_keyring)?;
        let owner_only = KeyPermissionsBuilder::builder()
            .posessor(Permission::ALL)
            .user(Permission::ALL)
            .build();
        if let Err(e) = key.set_perms(owner_only) {
            let _ = key.invalidate();
            return Err(to_keyring(e));
        }
        Ok(())
    }

    fn get_secret(&self) -> Result<Vec<u8>> {
        let key = user_keyring()?
            .search(&self.description)
            .map_err(to_keyring)?;
        key.read_to_vec().map_err(to_keyring)
    }

    fn delete_credential(&self) -> Result<()> {
        let key = user_keyring()?
            .search(&self.description)
            .map_err(to_keyring)?;
        key.invalidate().map_err(to_keyring)
    }

    fn get_credential(&self) -> Result<Option<Arc<Credential>>> {
        user_keyring()?
            .search(&self.description)
            .map_err(to_keyring)?;
        Ok(None)
    }

    fn get_specifiers(&self) -> Option<(String, String)> {
        Some(self.specifiers.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The user's keyring (`@u`), created by the kernel on first use.
fn user_keyring() -> Result<KeyRing> {
    KeyRing::from_special_id(KeyRingIdentifier::User, true)
        .map_err(|e| Error::NoStorageAccess(boxed(&e)))
}

/// keyutils errors as keyring-core's (several errors mean "no such key", depending on
/// where in its invalidation the kernel is).
fn to_keyring(error: KeyError) -> Error {
    match error {
        KeyError::KeyDoesNotExist | KeyError::KeyRevoked | KeyError::KeyExpired => Error::NoEntry,
        KeyError::AccessDenied => Error::NoStorageAccess(boxed(&error)),
        other => Error::PlatformFailure(boxed(&other)),
    }
}

/// A keyutils error as the boxed error keyring-core carries (its name, e.g.
/// `AccessDenied`; keyutils errors never hold key contents).
fn boxed(error: &KeyError) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{error:?}").into()
}
