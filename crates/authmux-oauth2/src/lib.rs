#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod config;
pub mod device;
mod errors;
pub mod loopback;
pub mod metadata;
pub mod pkce;
pub mod provider;

pub use config::{ClientAuth, ClientSecret, DEFAULT_REDIRECT_PATH, Endpoints, OAuth2Config};
pub use device::{DeviceAuthorization, DevicePoll};
pub use loopback::LoopbackListener;
pub use metadata::ServerMetadata;
pub use pkce::AuthorizationRequest;
pub use provider::{GRANT_EXTRA, OAuth2Provider, SUBJECT_EXTRA, grant};

/// The dialect name stored in sessions created by this crate.
pub const DIALECT: &str = "oauth2";
