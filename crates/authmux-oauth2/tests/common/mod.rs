//! Helpers shared by the integration tests:
//! - [`Browser`]: plays the user in a browser over plain HTTP (cookies, redirects, HTML
//!   forms), against the fake's login pages and the real `oidc-provider`'s
//!   interactions alike;
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use authmux_core::{
    AuthError, AuthProvider, Capabilities, Credentials, LoginOutcome, LogoutOutcome, OtpChallenge,
    OtpCode, ReqwestTransport, Session, Transport, UserProfile, async_trait,
};
use authmux_oauth2::{DeviceAuthorization, OAuth2Config, OAuth2Provider};
use bytes::Bytes;
use http::{Method, Request};
use url::Url;

/// The default transport.
pub(crate) fn reqwest_transport() -> Arc<dyn Transport> {
    Arc::new(ReqwestTransport::new().expect("reqwest client builds"))
}

/// What the user does at the consent step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Signs in and allows.
    Allow,
    /// Aborts at the first form that can (its `action` becomes `abort`, or `abort=yes`
    /// is added); a form that only asks for the device's user code is filled first.
    Deny,
}

/// How a browser session ended.
#[derive(Debug)]
pub(crate) enum BrowserError {
    /// The login form came back after submitting: wrong email or password.
    WrongPassword,
    /// Anything else (with what happened).
    Stuck(String),
}

impl BrowserError {
    pub(crate) fn into_auth_error(self) -> AuthError {
        match self {
            BrowserError::WrongPassword => AuthError::InvalidCredentials,
            BrowserError::Stuck(what) => AuthError::protocol(format!("browser: {what}")),
        }
    }
}

/// A form on a page.
#[derive(Debug, Clone)]
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

/// A minimal browser: a cookie jar (all cookies of the host, whatever their path),
/// redirects followed by hand, HTML forms filled and submitted.
pub(crate) struct Browser {
    transport: Arc<dyn Transport>,
    cookies: Mutex<HashMap<String, String>>,
}

impl Browser {
    pub(crate) fn new() -> Self {
        Self {
            transport: reqwest_transport(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    async fn request(
        &self,
        method: Method,
        url: &Url,
        form: Option<&[(String, String)]>,
    ) -> Result<(u16, Option<Url>, String), BrowserError> {
        let mut builder = Request::builder().method(method).uri(url.as_str());
        let cookie = {
            let jar = self.cookies.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie.is_empty() {
            builder = builder.header("cookie", cookie);
        }
        let body = match form {
            Some(fields) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                let mut s = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    s.append_pair(k, v);
                }
                Bytes::from(s.finish())
            }
            None => Bytes::new(),
        };
        let response = self
            .transport
            .send(builder.body(body).unwrap())
            .await
            .map_err(|e| BrowserError::Stuck(format!("request to {url} failed: {e}")))?;
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            if let Some((name, rest)) = text.split_once('=') {
                let value = rest.split(';').next().unwrap_or_default();
                let mut jar = self.cookies.lock().unwrap();
                if value.is_empty()
                    || text
                        .to_ascii_lowercase()
                        .contains("expires=thu, 01 jan 1970")
                {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok());
        let body = String::from_utf8_lossy(response.body()).into_owned();
        Ok((response.status().as_u16(), location, body))
    }

    /// Opens `start` and plays the user (log in with `user`, consent or abort per
    /// `decision`, enter `user_code` where asked) until the browser is redirected to a
    /// URL starting with `stop_at` (returned), or a page without a form is reached
    /// (`None`: the device flow's "done" page).
    pub(crate) async fn run(
        &self,
        start: &Url,
        stop_at: Option<&Url>,
        user: &Credentials,
        decision: Decision,
        user_code: Option<&str>,
    ) -> Result<Option<Url>, BrowserError> {
        let mut next = (Method::GET, start.clone(), None::<Vec<(String, String)>>);
        let mut submitted_login = false;
        let mut denied = false;
        let mut steps = Vec::new();
        for _ in 0..30 {
            let (method, url, form) = next;
            steps.push(format!("{method} {}", url.path()));
            let (status, location, body) = self.request(method, &url, form.as_deref()).await?;
            if let Some(location) = location {
                if let Some(stop) = stop_at
                    && location.as_str().starts_with(stop.as_str())
                {
                    return Ok(Some(location));
                }
                next = (Method::GET, location, None);
                continue;
            }
            if status != 200 {
                return Err(BrowserError::Stuck(format!(
                    "{url} answered {status}: {body}"
                )));
            }
            // After an abort, the next page is the server's last word (oidc-provider shows
            // the code form again, saying the sign-in was interrupted).
            if denied {
                return Ok(None);
            }
            let Some(form) = parse_form(&body) else {
                return Ok(None);
            };
            let is_login = form.fields.iter().any(|(k, _)| k == "password");
            if is_login && submitted_login {
                return Err(BrowserError::WrongPassword);
            }
            let mut fields = form.fields.clone();
            // Deny at the first form that can abort: one with an `action` field, or any
            // form but one that only asks for the device's code (an empty `user_code`).
            let has_action = fields.iter().any(|(k, _)| k == "action");
            let asks_code = fields.iter().any(|(k, v)| k == "user_code" && v.is_empty());
            let deny = decision == Decision::Deny && (has_action || !asks_code);
            for (name, value) in &mut fields {
                match name.as_str() {
                    "login" | "email" | "username" => user.email.clone_into(value),
                    "password" => user.password.expose_secret().clone_into(value),
                    "user_code" if value.is_empty() => {
                        if let Some(code) = user_code {
                            code.clone_into(value);
                        }
                    }
                    "action" if deny => {
                        "abort".clone_into(value);
                    }
                    _ => {}
                }
            }
            if decision == Decision::Deny && !is_login && !fields.iter().any(|(k, _)| k == "action")
            {
                fields.push(("abort".into(), "yes".into()));
            }
            submitted_login |= is_login;
            denied |= deny;
            let action = url
                .join(&form.action)
                .map_err(|_| BrowserError::Stuck(format!("bad form action {}", form.action)))?;
            next = (Method::POST, action, Some(fields));
        }
        Err(BrowserError::Stuck(format!(
            "too many steps: {}",
            steps.join(" -> ")
        )))
    }
}

fn unescape(text: &str) -> String {
    let mut out = text
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">");
    out = out.replace("&#38;", "&").replace("&amp;", "&");
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    for quote in ['"', '\''] {
        let needle = format!("{name}={quote}");
        if let Some(start) = tag.find(&needle) {
            let rest = &tag[start + needle.len()..];
            let end = rest.find(quote)?;
            return Some(unescape(&rest[..end]));
        }
    }
    None
}

/// The first `<form>` of a page: its action and named inputs.
fn parse_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form_html = &html[start..end];
    let tag_end = form_html.find('>')?;
    let action = attribute(&form_html[..tag_end], "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = form_html;
    while let Some(i) = rest.find("<input") {
        let tag_close = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..tag_close];
        if let Some(name) = attribute(tag, "name") {
            fields.push((name, attribute(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_close..];
    }
    Some(Form { action, fields })
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
    let browser = Browser::new();
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
    Browser::new()
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
