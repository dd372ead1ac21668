//! Helpers shared by the integration tests:
//! - the test kit's [`Browser`] plays the user (re-exported here with its types);
//! - [`Driven`]: an [`AuthProvider`] whose `login(credentials)` signs in through one
//!   grant (PKCE in the browser, device flow, client credentials), so the shared
//!   conformance suite can run once per grant;
//! - [`Live`]: the real OpenID provider from `AUTHMUX_OIDC_*` (`cargo xtask oidc start`,
//!   `cargo xtask ci`), with a loud skip when it is absent.
#![allow(
    dead_code,
    clippy::print_stderr,
    reason = "each test file uses a different part of these helpers; skips are reported on stderr"
)]

use std::sync::{Arc, Mutex};

use authmux_core::{
    AuthError, AuthProvider, Capabilities, Credentials, LoginOutcome, LogoutOutcome, OtpChallenge,
    OtpCode, ReqwestTransport, Session, Transport, UserProfile, async_trait,
};
use authmux_oauth2::{DeviceAuthorization, OAuth2Config, OAuth2Provider};
use bytes::Bytes;
use http::Request;
use url::Url;

pub(crate) use authmux_testkit::browser::{Browser, BrowserError, Decision};

/// The default transport.
pub(crate) fn reqwest_transport() -> Arc<dyn Transport> {
    Arc::new(ReqwestTransport::new().expect("reqwest client builds"))
}

/// How a [`Driven`] provider signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// Authorization code with PKCE, the user played by a [`Browser`], the redirect
    /// received by a real [`authmux_oauth2::LoopbackListener`].
    Pkce,
    /// Device authorization, the user played by a [`Browser`] at the verification URI.
    Device,
    /// Client credentials: the credentials' email is ignored, the password is the client
    /// secret.
    ClientCredentials,
}

/// An [`OAuth2Provider`] whose `login` signs in through one grant, so the conformance
/// suite (which signs in with `login`) runs once per grant. Everything else is the
/// provider's own.
#[derive(Debug, Clone)]
pub(crate) struct Driven {
    pub(crate) inner: OAuth2Provider,
    pub(crate) way: Way,
}

impl Driven {
    pub(crate) fn new(config: OAuth2Config, way: Way) -> Self {
        let inner = OAuth2Provider::with_transport(config, reqwest_transport())
            .expect("loopback issuer is accepted");
        Self { inner, way }
    }
}

/// Signs in through the PKCE flow with a loopback listener, `user` played in a browser.
pub(crate) async fn pkce_sign_in(
    provider: &OAuth2Provider,
    user: &Credentials,
    decision: Decision,
) -> Result<Session, AuthError> {
    let listener =
        authmux_oauth2::LoopbackListener::bind(&provider.config().redirect_path, 0).await?;
    let request = provider
        .authorization_request(listener.redirect_uri())
        .await?;
    let redirect = listener.redirect_uri().clone();
    let waiting = tokio::spawn(listener.wait_for_callback());
    let browser = Browser::new(reqwest_transport());
    let callback = browser
        .run(request.url(), Some(&redirect), user, decision, None)
        .await
        .map_err(BrowserError::into_auth_error)?
        .ok_or_else(|| AuthError::protocol("the browser never came back to the redirect URI"))?;
    // The browser stops at the redirect; deliver it to the listener as a real one would.
    let delivered = reqwest_transport()
        .send(Request::get(callback.as_str()).body(Bytes::new()).unwrap())
        .await?;
    assert_eq!(
        delivered.status(),
        200,
        "the loopback listener answers the redirect"
    );
    let received = waiting.await.expect("listener task")?;
    assert_eq!(received, callback);
    provider.complete_authorization(&request, &received).await
}

/// Signs in through the device flow, `user` played in a browser.
pub(crate) async fn device_sign_in(
    provider: &OAuth2Provider,
    user: &Credentials,
    decision: Decision,
) -> Result<Session, AuthError> {
    let device = provider.start_device_authorization().await?;
    play_device_user(&device, user, decision).await?;
    provider.wait_for_device_authorization(&device).await
}

/// The user enters the device's code at its verification URI and signs in.
pub(crate) async fn play_device_user(
    device: &DeviceAuthorization,
    user: &Credentials,
    decision: Decision,
) -> Result<(), AuthError> {
    Browser::new(reqwest_transport())
        .run(
            &device.verification_uri,
            None,
            user,
            decision,
            Some(&device.user_code),
        )
        .await
        .map_err(BrowserError::into_auth_error)?;
    Ok(())
}

#[async_trait]
impl AuthProvider for Driven {
    fn dialect(&self) -> &str {
        self.inner.dialect()
    }
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn transport(&self) -> Arc<dyn Transport> {
        self.inner.transport()
    }
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError> {
        let session = match self.way {
            Way::Pkce => pkce_sign_in(&self.inner, credentials, Decision::Allow).await?,
            Way::Device => device_sign_in(&self.inner, credentials, Decision::Allow).await?,
            Way::ClientCredentials => {
                let config = self
                    .inner
                    .config()
                    .clone()
                    .with_client_secret(credentials.password.expose_secret());
                OAuth2Provider::with_transport(config, self.inner.transport())?
                    .client_credentials()
                    .await?
            }
        };
        Ok(LoginOutcome::Authenticated(session))
    }
    async fn verify_otp(&self, c: &OtpChallenge, code: &OtpCode) -> Result<Session, AuthError> {
        self.inner.verify_otp(c, code).await
    }
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError> {
        self.inner.refresh(session).await
    }
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError> {
        self.inner.logout(session).await
    }
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError> {
        self.inner.current_user(session).await
    }
}

/// The real OpenID provider the live tests use.
pub(crate) struct Live {
    /// The issuer URL.
    pub(crate) issuer: Url,
    /// The confidential client's secret (`authmux-service`, `authmux-post`).
    pub(crate) client_secret: String,
    /// The users' password.
    pub(crate) password: String,
    /// The access token lifetime the server was started with.
    pub(crate) access_ttl_secs: u64,
}

/// A user of the real server.
pub(crate) const LIVE_USER: &str = "alice@example.com";
/// Another user of the real server.
pub(crate) const LIVE_OTHER_USER: &str = "bob@example.com";

impl Live {
    /// The server from `AUTHMUX_OIDC_*`, or `None` after saying loudly that `test` is
    /// skipped.
    pub(crate) fn from_env(test: &str) -> Option<Self> {
        let Some(issuer) = std::env::var("AUTHMUX_OIDC_ISSUER")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            skip(test);
            return None;
        };
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} must be set with AUTHMUX_OIDC_ISSUER"))
        };
        Some(Self {
            issuer: issuer.parse().expect("AUTHMUX_OIDC_ISSUER is a URL"),
            client_secret: var("AUTHMUX_OIDC_CLIENT_SECRET"),
            password: var("AUTHMUX_OIDC_PASSWORD"),
            access_ttl_secs: var("AUTHMUX_OIDC_ACCESS_TTL_SECS")
                .parse()
                .expect("a number"),
        })
    }

    /// The public native client with the user scopes and a refresh token.
    pub(crate) fn cli_config(&self) -> OAuth2Config {
        OAuth2Config::new(self.issuer.clone(), "authmux-cli").with_scopes([
            "openid",
            "email",
            "profile",
            "offline_access",
        ])
    }

    /// A user's credentials.
    pub(crate) fn user(&self, email: &str) -> Credentials {
        Credentials::new(email, self.password.as_str())
    }
}

/// Says loudly on stderr that a live test did not run.
pub(crate) fn skip(test: &str) {
    eprintln!(
        "\n*** SKIPPED {test}: AUTHMUX_OIDC_ISSUER is not set, so the real OpenID provider \
         (oidc-provider) was not tested. Run `cargo xtask oidc start` and \
         `eval \"$(cargo xtask oidc env)\"`, or `cargo xtask ci`. ***\n"
    );
}

/// A transport that forwards to another and counts token requests by grant type.
#[derive(Debug)]
pub(crate) struct Counting {
    inner: Arc<dyn Transport>,
    grants: Mutex<Vec<String>>,
}

impl Counting {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: reqwest_transport(),
            grants: Mutex::new(Vec::new()),
        })
    }

    /// How many token requests had this `grant_type`.
    pub(crate) fn grants(&self, grant_type: &str) -> usize {
        self.grants
            .lock()
            .unwrap()
            .iter()
            .filter(|g| *g == grant_type)
            .count()
    }
}

#[async_trait]
impl Transport for Counting {
    async fn send(&self, request: Request<Bytes>) -> Result<http::Response<Bytes>, AuthError> {
        if let Some((_, grant)) =
            url::form_urlencoded::parse(request.body()).find(|(k, _)| k == "grant_type")
        {
            self.grants.lock().unwrap().push(grant.into_owned());
        }
        self.inner.send(request).await
    }
}

/// A manager over `provider` on `clock`, refreshing only in the last second of a token's
/// life (the real server's tokens live 10 s; the default 60 s lead would make every
/// token due at once).
pub(crate) fn manager(
    provider: OAuth2Provider,
    clock: authmux_core::ManualClock,
) -> authmux_core::SessionManager {
    authmux_core::SessionManager::builder(Arc::new(provider))
        .clock(clock)
        .refresh_window(authmux_core::RefreshWindow {
            min_lead: std::time::Duration::from_secs(1),
            fraction: 0.0,
            jitter: 0.0,
        })
        .build()
}

/// Sends `n` concurrent `usable_session` calls after moving `clock` past the session's
/// expiry; returns the access tokens they got.
pub(crate) async fn concurrent_after_expiry(
    manager: &authmux_core::SessionManager,
    clock: &authmux_core::ManualClock,
    n: usize,
) -> Vec<String> {
    let session = manager.session().expect("signed in");
    let lifetime = session
        .tokens
        .lifetime()
        .expect("the server states a lifetime");
    clock.advance(lifetime + std::time::Duration::from_secs(1));
    let calls = (0..n).map(|_| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.usable_session().await })
    });
    let mut tokens = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let session = call
            .await
            .expect("task")
            .expect("a usable session after expiry");
        tokens.push(session.tokens.access.expose_secret().to_owned());
    }
    tokens
}
