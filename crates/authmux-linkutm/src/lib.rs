#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod config;
pub mod provider;
pub mod validate;
pub mod wire;

pub use config::LinkUtmConfig;
pub use provider::{
    DIALECT, GOOGLE, LinkUtmProvider, SIGN_IN_EXTRA, WORKSPACE_EXTRA, WORKSPACE_HEADER,
};
