#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod clock;
pub mod error;
pub mod lifecycle;
pub mod manager;
pub mod provider;
pub mod retry;
pub mod secret;
pub mod session;
pub mod store;
pub mod timestamp;
pub mod token;
pub mod transport;
pub mod wire;

#[cfg(feature = "proptest")]
pub mod strategies;

pub use async_trait::async_trait;
/// The `bytes` crate the transport's requests and responses carry, re-exported so an
/// adapter needs no dependency of its own.
pub use bytes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AuthError, TransportErrorKind};
/// The `http` crate (requests, responses, headers, status codes) the transport and
/// [`AuthProvider::authorize`] speak, re-exported so an adapter needs no dependency of
/// its own.
pub use http;
pub use lifecycle::{Phase, RefreshBackoff, RefreshWindow, SessionEvent};
pub use manager::{KeepFresh, ManagerBuilder, ManagerConfig, SessionManager};
/// `proptest`, for the strategies in [`strategies`] (feature `proptest`).
#[cfg(feature = "proptest")]
pub use proptest;
pub use provider::{
    AuthProvider, Capabilities, DynAuthProvider, OAuth, OAuthProvider, PasswordChange,
    PasswordReset, SignInRecord, SignInSessions, Signup, SignupRequest,
};
pub use retry::{RefreshRetry, RetryPolicy};
pub use secret::{AccessToken, OtpCode, Password, RefreshToken, ResetToken, TotpSecret};
/// The `serde_json` crate [`wire`]'s helpers take and return, re-exported so an
/// adapter needs no dependency of its own.
pub use serde_json;
pub use session::{Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, Session, UserProfile};
pub use store::{FileStore, MemoryStore, SessionStore, Versioned};
pub use token::{Expiry, TokenSet};
#[cfg(feature = "hyper")]
pub use transport::HyperTransport;
#[cfg(feature = "reqwest")]
pub use transport::ReqwestTransport;
pub use transport::{ClientOptions, FnTransport, Transport};
/// The `url` crate (base URLs, endpoints), re-exported so an adapter needs no
/// dependency of its own.
pub use url;
