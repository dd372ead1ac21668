//! The shared conformance suite (`authmux_testkit::conformance`) once per grant: against
//! `FakeOAuth2` (with fault injection) and against the real, OpenID Certified
//! `oidc-provider` when `AUTHMUX_OIDC_ISSUER` is set (`cargo xtask ci` sets it; see
//! `tests/common` for what a skip looks like).
//!
//! The suite signs in with `login(credentials)`; for the grants that are not a password
//! login, a [`Driven`] provider signs in through that grant instead: PKCE with the user
//! played in a browser and the redirect received on a real loopback listener, the
//! device flow with the user played at the verification URI, and client credentials
//! with the credentials' password as the client secret. `oidc-provider` has no password
//! grant (OAuth 2.1 drops it), so that grant runs against the fake only.
#![allow(
    clippy::print_stderr,
    reason = "the report of what each conformance run proved belongs in the test output"
)]

mod common;

use authmux_core::{AuthProvider, Credentials};
use authmux_oauth2::{OAuth2Config, OAuth2Provider};
use std::sync::Arc;
use std::time::Duration;

use authmux_testkit::FakeOAuth2;
use authmux_testkit::conformance::{self, Endpoints, Target};
use authmux_testkit::oauth2::OAuth2Settings;
use authmux_testkit::oauth2::{CLIENT_SECRET, CONFIDENTIAL_CLIENT_ID, PUBLIC_CLIENT_ID, endpoints};
use authmux_testkit::users::Users;
use common::{Driven, Live, Way, reqwest_transport};

const USER_SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

fn fake_config(fake: &FakeOAuth2, client_id: &str) -> OAuth2Config {
    OAuth2Config::new(fake.base_url().clone(), client_id).with_scopes(USER_SCOPES)
}

async fn run(name: &str, provider: &dyn AuthProvider, target: &Target<'_>) {
    let report = conformance::run_all(provider, target).await;
    eprintln!("conformance ({name}): {} checks passed", report.passed());
    report.assert_passed();
}

#[tokio::test]
async fn conformance_against_the_fake_password_grant() {
    // One manual clock far from the system clock, so `injected_clock` runs.
    let clock = conformance::far_clock();
    let fake = FakeOAuth2::start_with(
        Users::default_list(),
        OAuth2Settings::default(),
        Arc::new(clock.clone()),
    )
    .expect("fake starts");
    let provider = OAuth2Provider::with_transport(
        fake_config(&fake, PUBLIC_CLIENT_ID).with_password_grant(true),
        reqwest_transport(),
    )
    .unwrap()
    .with_clock(clock);
    run("password grant, fake", &provider, &Target::oauth2(&fake)).await;
}

#[tokio::test]
async fn conformance_against_the_fake_pkce() {
    let fake = FakeOAuth2::start().expect("fake starts");
    let provider = Driven::new(fake_config(&fake, PUBLIC_CLIENT_ID), Way::Pkce);
    run(
        "authorization code + PKCE, fake",
        &provider,
        &Target::oauth2(&fake),
    )
    .await;
}

#[tokio::test]
async fn conformance_against_the_fake_device_flow() {
    let fake = FakeOAuth2::start().expect("fake starts");
    let provider = Driven::new(fake_config(&fake, PUBLIC_CLIENT_ID), Way::Device);
    run("device flow, fake", &provider, &Target::oauth2(&fake)).await;
}

#[tokio::test]
async fn conformance_against_the_fake_client_credentials() {
    let fake = FakeOAuth2::start().expect("fake starts");
    let provider = Driven::new(
        OAuth2Config::new(fake.base_url().clone(), CONFIDENTIAL_CLIENT_ID)
            .with_scopes(["api"])
            .with_client_secret(CLIENT_SECRET),
        Way::ClientCredentials,
    );
    let target = Target::new(Credentials::new(CONFIDENTIAL_CLIENT_ID, CLIENT_SECRET)).with_server(
        fake.server(),
        Endpoints {
            login: endpoints::TOKEN.into(),
            // A client credentials session is the client itself: no userinfo call.
            current_user: String::new(),
            refresh: Some(endpoints::TOKEN.into()),
        },
    );
    run("client credentials, fake", &provider, &target).await;
}

#[tokio::test]
async fn conformance_against_the_real_server_pkce() {
    let Some(live) = Live::from_env("conformance_against_the_real_server_pkce") else {
        return;
    };
    let provider = Driven::new(live.cli_config(), Way::Pkce);
    // The xtask's provider grants AUTHMUX_OIDC_ACCESS_TTL_SECS.
    let target = Target::new(live.user(common::LIVE_USER))
        .with_lifetime(Duration::from_secs(live.access_ttl_secs));
    run(
        "authorization code + PKCE, oidc-provider",
        &provider,
        &target,
    )
    .await;
}

#[tokio::test]
async fn conformance_against_the_real_server_device_flow() {
    let Some(live) = Live::from_env("conformance_against_the_real_server_device_flow") else {
        return;
    };
    let provider = Driven::new(live.cli_config(), Way::Device);
    // The xtask's provider grants AUTHMUX_OIDC_ACCESS_TTL_SECS.
    let target = Target::new(live.user(common::LIVE_USER))
        .with_lifetime(Duration::from_secs(live.access_ttl_secs));
    run("device flow, oidc-provider", &provider, &target).await;
}

#[tokio::test]
async fn conformance_against_the_real_server_client_credentials() {
    let Some(live) = Live::from_env("conformance_against_the_real_server_client_credentials")
    else {
        return;
    };
    let provider = Driven::new(
        OAuth2Config::new(live.issuer.clone(), "authmux-service")
            .with_scopes(["api"])
            .with_client_secret(live.client_secret.as_str()),
        Way::ClientCredentials,
    );
    let target = Target::new(Credentials::new(
        "authmux-service",
        live.client_secret.as_str(),
    ))
    .with_lifetime(Duration::from_secs(live.access_ttl_secs));
    run("client credentials, oidc-provider", &provider, &target).await;
}
