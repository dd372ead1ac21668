//! Secret newtypes: [`AccessToken`], [`RefreshToken`], [`Password`], [`OtpCode`],
//! [`ResetToken`], [`TotpSecret`].
//!
//! Each wraps its text so that it cannot be printed by accident: `Debug` prints
//! `AccessToken(** redacted **)`, there is no `Display`, and the text is reachable only
//! through an explicit [`expose_secret`](AccessToken::expose_secret) call. The text is
//! zeroized when the last clone is dropped. Clones share one allocation, so handing a
//! token out of the session manager's hot path costs one reference-count increment.
//!
//! Tokens serialize (stores must persist them); passwords and one-time codes do not.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::HeaderValue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A short, non-reversible fingerprint of a secret, for bookkeeping such as "this
/// refresh token was already spent". Keyed per process, never persisted, never printed
/// as anything but a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(u64);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:04x}…)", self.0 >> 48)
    }
}

fn fingerprint_of(text: &str) -> Fingerprint {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    Fingerprint(KEY.get_or_init(RandomState::new).hash_one(text))
}

/// What every secret newtype shares between its clones: the text, and (used by
/// [`AccessToken::bearer_header`] only) its `Authorization` header value, built once.
struct SecretText {
    text: Zeroizing<String>,
    bearer: OnceLock<Option<HeaderValue>>,
}

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(Arc<SecretText>);

        impl $name {
            #[doc = concat!("Wraps `text` as a `", stringify!($name), "`.")]
            pub fn new(text: impl Into<String>) -> Self {
                Self(Arc::new(SecretText {
                    text: Zeroizing::new(text.into()),
                    bearer: OnceLock::new(),
                }))
            }

            /// The secret text. Every call site is a place where the secret leaves its
            /// wrapper: keep them few and never log what this returns.
            pub fn expose_secret(&self) -> &str {
                self.0.text.as_str()
            }

            /// A per-process fingerprint of the secret (see [`Fingerprint`]).
            pub fn fingerprint(&self) -> Fingerprint {
                fingerprint_of(self.expose_secret())
            }

            /// Whether the secret is the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.text.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(** redacted **)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.expose_secret() == other.expose_secret()
            }
        }

        impl Eq for $name {}

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self::new(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self::new(text)
            }
        }
    };
}

macro_rules! serde_secret {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.expose_secret())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Zeroizing::new(String::deserialize(deserializer)?);
                Ok(Self::new(text.as_str()))
            }
        }
    };
}

secret_type! {
    /// A bearer access token (usually a JWT).
    ///
    /// ```
    /// use authmux_core::AccessToken;
    /// let token = AccessToken::new("eyJhbGciOi.secret.sig");
    /// assert_eq!(format!("{token:?}"), "AccessToken(** redacted **)");
    /// assert_eq!(token.expose_secret(), "eyJhbGciOi.secret.sig");
    /// ```
    AccessToken
}
impl AccessToken {
    /// `Bearer <token>` as an `Authorization` header value, marked sensitive; `None`
    /// when the token holds characters a header cannot carry. Built on first use and
    /// shared by every clone of this token (a reference-count increment per request),
    /// in memory that is zeroized when the last copy of the value is dropped.
    ///
    /// ```
    /// use authmux_core::AccessToken;
    /// let value = AccessToken::new("abc.def").bearer_header().unwrap();
    /// assert_eq!(value, "Bearer abc.def");
    /// assert!(value.is_sensitive());
    /// assert!(AccessToken::new("new\nline").bearer_header().is_none());
    /// ```
    pub fn bearer_header(&self) -> Option<HeaderValue> {
        self.0
            .bearer
            .get_or_init(|| {
                let token = self.expose_secret().as_bytes();
                // Sized once: a growing Vec would leave unzeroized copies behind.
                let mut text = Zeroizing::new(Vec::with_capacity(PREFIX.len() + token.len()));
                text.extend_from_slice(PREFIX);
                text.extend_from_slice(token);
                let mut value = HeaderValue::from_maybe_shared(Bytes::from_owner(text)).ok()?;
                value.set_sensitive(true);
                Some(value)
            })
            .clone()
    }
}

/// The scheme of [`AccessToken::bearer_header`].
const PREFIX: &[u8] = b"Bearer ";

secret_type! {
    /// A refresh token. Once a server rotates it, it must never be sent again.
    RefreshToken
}
secret_type! {
    /// A password. Never serialized, never printed.
    Password
}
secret_type! {
    /// A one-time code (email OTP or TOTP).
    OtpCode
}
secret_type! {
    /// A password-reset token from an email link.
    ResetToken
}
secret_type! {
    /// A TOTP shared secret (base32) or an `otpauth://` URL that embeds one.
    TotpSecret
}

serde_secret!(AccessToken);
serde_secret!(RefreshToken);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_for_every_secret_type() {
        let text = "hunter2-very-secret";
        assert!(!format!("{:?}", AccessToken::new(text)).contains(text));
        assert!(!format!("{:?}", RefreshToken::new(text)).contains(text));
        assert!(!format!("{:?}", Password::new(text)).contains(text));
        assert!(!format!("{:?}", OtpCode::new(text)).contains(text));
        assert!(!format!("{:?}", AccessToken::new(text).fingerprint()).contains(text));
    }

    #[test]
    fn tokens_round_trip_through_serde() {
        let token = RefreshToken::new("r1");
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"r1\"");
        let back: RefreshToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, token);
        assert_eq!(back.fingerprint(), token.fingerprint());
        assert_ne!(RefreshToken::new("r2").fingerprint(), token.fingerprint());
    }
}
