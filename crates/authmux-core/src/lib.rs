//! authmux-core: provider traits, token/session model, lifecycle and session manager.
#![forbid(unsafe_code)]

pub mod clock;
