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
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AuthError, TransportErrorKind};
pub use lifecycle::{Phase, RefreshBackoff, RefreshWindow, SessionEvent};
pub use manager::{KeepFresh, ManagerBuilder, ManagerConfig, SessionManager};
pub use provider::{
    AuthProvider, Capabilities, DynAuthProvider, OAuth, OAuthProvider, PasswordChange,
    PasswordReset, SignInRecord, SignInSessions, Signup, SignupRequest,
};
pub use retry::{RefreshRetry, RetryPolicy};
pub use secret::{AccessToken, OtpCode, Password, RefreshToken, ResetToken, TotpSecret};
pub use session::{Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, Session, UserProfile};
pub use store::{FileStore, MemoryStore, SessionStore, Versioned};
pub use token::{Expiry, TokenSet};
#[cfg(feature = "reqwest")]
pub use transport::ReqwestTransport;
pub use transport::{ClientOptions, Transport};
