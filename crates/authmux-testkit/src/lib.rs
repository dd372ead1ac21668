#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod browser;
pub mod child;
pub mod conformance;
pub mod deps;
pub mod directus;
pub mod driver;
pub mod families;
pub mod fault_proxy;
pub mod faults;
pub mod jwt;
pub mod linkutm;
pub mod linxio;
pub mod oauth2;
pub mod recorder;
pub mod redis;
pub mod scripted;
pub mod secret_log;
pub mod server;
pub mod skew;
pub mod store_conformance;
pub mod stream;
pub mod users;

pub use authmux_core::clock::{Clock, ManualClock, SystemClock};
/// The core's `proptest` strategies (sessions, token sets, lifecycle scripts), so that
/// one dev-dependency on the test kit is enough.
pub use authmux_core::strategies;
pub use fault_proxy::FaultProxy;
pub use faults::{Fault, JsonEdit};
pub use linkutm::FakeLinkUtm;
pub use linxio::FakeLinxio;
pub use oauth2::FakeOAuth2;
pub use scripted::ScriptedProvider;
pub use server::{FakeRequest, FakeResponse, RateLimit, ServerHandle};
pub use stream::StreamServer;

/// The worked example of `docs/writing-an-adapter.md` (`examples/toy_adapter.rs`), run
/// as a doc test: it compiles against the published API and passes the conformance
/// suite.
#[cfg(doctest)]
#[doc = concat!("```\n", include_str!("../examples/toy_adapter.rs"), "\n```")]
pub struct WorkedExample;

/// The template adapter (`examples/template.rs`), run as a doc test.
#[cfg(doctest)]
#[doc = concat!("```\n", include_str!("../examples/template.rs"), "\n```")]
pub struct TemplateAdapter;
