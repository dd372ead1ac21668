#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(not(any(
    feature = "linxio",
    feature = "linkutm",
    feature = "directus",
    feature = "oauth2"
)))]
compile_error!(
    "authmux needs at least one dialect feature (linxio, linkutm, directus, oauth2); \
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
/// Standard OAuth 2.0 / OpenID Connect (feature `oauth2`): [`oauth2::OAuth2Config`],
/// [`oauth2::OAuth2Provider`].
#[cfg(feature = "oauth2")]
#[doc(inline)]
pub use authmux_oauth2 as oauth2;

/// authmux inside a reqwest-middleware client (feature `reqwest-middleware`):
/// [`reqwest_middleware::AuthMiddleware`].
#[cfg(feature = "reqwest-middleware")]
#[doc(inline)]
pub use authmux_reqwest as reqwest_middleware;
/// authmux inside a tower or hyper client stack (feature `tower`):
/// [`tower::AuthLayer`], [`tower::AuthService`].
#[cfg(feature = "tower")]
#[doc(inline)]
pub use authmux_tower as tower;

pub use config::{BuildOptions, DIALECTS, ProviderConfig};
