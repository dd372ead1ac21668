#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod config;
mod cookies;
mod errors;
pub mod provider;
pub mod tfa;
mod wire;

pub use config::{DirectusConfig, DirectusMode};
pub use cookies::{REFRESH_COOKIE, SESSION_COOKIE};
pub use provider::{DirectusProvider, MODE_EXTRA};
pub use tfa::TfaSecret;

/// The dialect name stored in sessions created by this crate.
pub const DIALECT: &str = "directus";
