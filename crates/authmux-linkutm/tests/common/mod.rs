//! Shared set-up for the end-to-end tests: a `FakeLinkUtm` and a provider on the
//! default (reqwest) transport, sharing one `ManualClock`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use authmux_core::{AuthProvider, ClientOptions, Credentials, LoginOutcome, ManualClock, Session};
use authmux_linkutm::{LinkUtmConfig, LinkUtmProvider};
use authmux_testkit::FakeLinkUtm;
use authmux_testkit::linkutm::LinkUtmBuilder;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};

/// The fake, the provider and their shared clock.
pub struct Rig {
    pub fake: FakeLinkUtm,
    pub provider: Arc<LinkUtmProvider>,
    pub clock: ManualClock,
}

/// A clock at a fixed, recent time.
pub fn clock() -> ManualClock {
    ManualClock::at_unix(1_760_000_000)
}

/// The config pointing at `fake`.
pub fn config_for(fake: &FakeLinkUtm) -> LinkUtmConfig {
    LinkUtmConfig::new(fake.base_url().clone())
}

/// A rig with the fake's defaults (no rate limit) and `adjust` applied to the config.
pub fn rig_with(
    build: impl FnOnce(LinkUtmBuilder) -> LinkUtmBuilder,
    adjust: impl FnOnce(LinkUtmConfig) -> LinkUtmConfig,
) -> Rig {
    let clock = clock();
    let fake = build(
        FakeLinkUtm::builder()
            .clock(clock.clone())
            .rate_limit_per_minute(None),
    )
    .start()
    .expect("fake LinkUTM starts");
    let provider = LinkUtmProvider::new(adjust(config_for(&fake))).expect("provider builds");
    Rig {
        fake,
        provider: Arc::new(provider.with_clock(clock.clone())),
        clock,
    }
}

/// The default rig.
pub fn rig() -> Rig {
    rig_with(|b| b, |c| c)
}

/// A rig whose sessions act in `workspace`.
pub fn rig_in_workspace(workspace: &str) -> Rig {
    rig_with(|b| b, |c| c.with_workspace(workspace))
}

/// A config with a custom User-Agent.
pub fn with_user_agent(config: LinkUtmConfig, user_agent: &str) -> LinkUtmConfig {
    config.with_client(ClientOptions {
        user_agent: Some(user_agent.to_owned()),
        ..ClientOptions::default()
    })
}

/// Signs Alice in through the provider.
pub async fn login_alice(provider: &LinkUtmProvider) -> Session {
    match provider
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .expect("alice signs in")
    {
        LoginOutcome::Authenticated(session) => session,
        LoginOutcome::OtpRequired(_) => panic!("LinkUTM never asks for a login code"),
    }
}
