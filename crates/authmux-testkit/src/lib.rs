#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod conformance;
pub mod directus;
pub mod families;
pub mod faults;
pub mod jwt;
pub mod linkutm;
pub mod linxio;
pub mod recorder;
pub mod server;
pub mod users;

pub use authmux_core::clock::{Clock, ManualClock, SystemClock};
pub use faults::Fault;
pub use linkutm::FakeLinkUtm;
pub use linxio::FakeLinxio;
pub use server::{FakeRequest, FakeResponse, RateLimit, ServerHandle};
