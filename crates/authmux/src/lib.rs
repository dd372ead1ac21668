#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(not(any(feature = "linxio", feature = "linkutm", feature = "directus")))]
compile_error!(
    "authmux needs at least one dialect feature (linxio, linkutm, directus); \
     for the core alone, depend on authmux-core"
);

pub mod config;

#[doc(inline)]
pub use authmux_core::*;

/// The Directus dialect (feature `directus`): [`directus::DirectusConfig`],
/// [`directus::DirectusProvider`].
#[cfg(feature = "directus")]
#[doc(inline)]
pub use authmux_directus as directus;
/// The LinkUTM dialect (feature `linkutm`): [`linkutm::LinkUtmConfig`],
/// [`linkutm::LinkUtmProvider`].
#[cfg(feature = "linkutm")]
#[doc(inline)]
pub use authmux_linkutm as linkutm;
/// The Linxio dialect (feature `linxio`): [`linxio::LinxioConfig`],
/// [`linxio::LinxioProvider`].
#[cfg(feature = "linxio")]
#[doc(inline)]
pub use authmux_linxio as linxio;

pub use config::{BuildOptions, DIALECTS, ProviderConfig};
