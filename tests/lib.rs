//! Cross-crate integration tests live in `tests/`. This crate's documentation is the
//! repository's README, so that its examples compile as doc tests.
#![doc = include_str!("../README.md")]

#[path = "bench_helpers.rs"]
pub mod bench;
