//! The core's tests use the test kit's scripted provider (the same one adapter authors
//! and property testers get): it issues opaque tokens, answers refreshes as scripted,
//! acts as the resource server behind its own transport, and records everything the
//! properties need.

#![allow(unused_imports, unreachable_pub)]

pub use authmux_testkit::scripted::{Record, ScriptedProvider as Scripted};
