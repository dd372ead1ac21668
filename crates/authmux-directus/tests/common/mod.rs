//! Helpers shared by the integration tests: a request-logging transport, and the
//! connection to a real Directus (`AUTHMUX_DIRECTUS_*`, exported by
//! `eval "$(cargo xtask directus env)"` and by `cargo xtask ci`) with an admin that
//! creates one fresh user per test.
#![allow(
    dead_code,
    reason = "each test file uses a different part of these helpers"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authmux_core::wire::json_request;
use authmux_core::{
    AuthError, AuthProvider, Credentials, LoginOutcome, OtpCode, Password, ReqwestTransport,
    SessionManager, Transport, async_trait,
};
use authmux_directus::{
    DirectusConfig, DirectusMode, DirectusProvider, REFRESH_COOKIE, SESSION_COOKIE,
};
use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::{Value, json};
use url::Url;

/// The default transport, as `DirectusProvider::new` builds it.
pub(crate) fn reqwest_transport() -> Arc<dyn Transport> {
    Arc::new(ReqwestTransport::new().expect("reqwest client builds"))
}

/// One request as the [`Logging`] transport saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// The method.
    pub(crate) method: Method,
    /// The path, without the query.
    pub(crate) path: String,
    /// Whether an `Authorization` header was sent.
    pub(crate) authorization: bool,
    /// The refresh credential sent to `/auth/refresh`: `refresh_token` from the body,
    /// else the refresh or session cookie.
    pub(crate) refresh_credential: Option<String>,
    /// The answer's status (0 when the transport failed).
    pub(crate) status: u16,
}

/// A transport that forwards to another and logs every request: counts refreshes at
/// the transport, and shows what went to `/auth/*`.
#[derive(Debug)]
pub(crate) struct Logging {
    inner: Arc<dyn Transport>,
    seen: Mutex<Vec<Seen>>,
}

impl Logging {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Everything seen so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests went to `path` (exactly).
    pub(crate) fn count(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.ends_with(path))
            .count()
    }

    /// The refresh credentials sent to `/auth/refresh`, in order.
    pub(crate) fn refresh_credentials(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|s| s.refresh_credential)
            .collect()
    }

    /// Panics if any `/auth/*` request carried an `Authorization` header.
    pub(crate) fn assert_no_authorization_on_auth(&self) {
        let offending: Vec<String> = self
            .seen()
            .iter()
            .filter(|s| s.authorization && s.path.contains("/auth"))
            .map(|s| format!("{} {}", s.method, s.path))
            .collect();
        assert!(
            offending.is_empty(),
            "Authorization sent on /auth/*: {offending:?}"
        );
    }
}

fn cookie_value(request: &Request<Bytes>, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[async_trait]
impl Transport for Logging {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        let path = request.uri().path().to_owned();
        let refresh_credential = path.ends_with("/auth/refresh").then(|| {
            serde_json::from_slice::<Value>(request.body())
                .ok()
                .and_then(|b| {
                    b.get("refresh_token")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .or_else(|| cookie_value(&request, REFRESH_COOKIE))
                .or_else(|| cookie_value(&request, SESSION_COOKIE))
                .unwrap_or_default()
        });
        let mut seen = Seen {
            method: request.method().clone(),
            path,
            authorization: request.headers().contains_key(http::header::AUTHORIZATION),
            refresh_credential,
            status: 0,
        };
        let result = self.inner.send(request).await;
        if let Ok(response) = &result {
            seen.status = response.status().as_u16();
        }
        self.seen.lock().unwrap().push(seen);
        result
    }
}

/// A real Directus to test against, from the environment.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    /// `AUTHMUX_DIRECTUS_URL`.
    pub(crate) url: Url,
    /// `AUTHMUX_DIRECTUS_ADMIN_EMAIL`.
    pub(crate) admin_email: String,
    /// `AUTHMUX_DIRECTUS_ADMIN_PASSWORD`.
    pub(crate) admin_password: String,
    /// `AUTHMUX_DIRECTUS_MAIL_FILE`: where the server's sendmail appends mails.
    pub(crate) mail_file: Option<String>,
    /// `AUTHMUX_DIRECTUS_MAIL_SEPARATOR`: printed after each mail.
    pub(crate) mail_separator: String,
    /// `AUTHMUX_DIRECTUS_RESET_URL`: a `reset_url` on the server's allow list.
    pub(crate) reset_url: Option<Url>,
    /// `AUTHMUX_DIRECTUS_ACCESS_TTL_SECS`.
    pub(crate) access_ttl: Option<Duration>,
    /// `AUTHMUX_DIRECTUS_RATE_LIMITED_URL`: a server with the rate limiter on.
    pub(crate) rate_limited_url: Option<Url>,
    /// `AUTHMUX_DIRECTUS_RATE_LIMIT_POINTS`.
    pub(crate) rate_limit_points: Option<u32>,
    /// `AUTHMUX_DIRECTUS_RATE_LIMIT_DURATION_SECS`.
    pub(crate) rate_limit_window: Option<Duration>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Says loudly on stderr that `test` did not run and why. Written to the process's
/// stderr directly, not through `eprintln!`, so the test harness does not capture it:
/// the notice shows in a plain `cargo test` run.
pub(crate) fn skip(test: &str, why: &str) {
    use std::io::Write as _;
    let notice = format!(
        "\n************************************************************************\n\
         SKIPPED {test}: {why}\n\
         This live test needs a real Directus 12: run `cargo xtask directus start` and\n\
         `eval \"$(cargo xtask directus env)\"` (cargo xtask ci does this for you).\n\
         ************************************************************************\n"
    );
    let _ = std::io::stderr().lock().write_all(notice.as_bytes());
}

impl Live {
    /// The server from `AUTHMUX_DIRECTUS_*`, or `None` (after a loud skip notice on
    /// stderr) when `AUTHMUX_DIRECTUS_URL` is not set.
    pub(crate) fn from_env(test: &str) -> Option<Live> {
        let Some(url) = var("AUTHMUX_DIRECTUS_URL") else {
            skip(test, "AUTHMUX_DIRECTUS_URL is not set");
            return None;
        };
        let parse = |name: &str, text: String| {
            Url::parse(&text).unwrap_or_else(|e| panic!("{name}={text:?} is not a URL: {e}"))
        };
        let secs = |name: &str| {
            var(name).map(|v| {
                Duration::from_secs(v.parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
            })
        };
        Some(Live {
            url: parse("AUTHMUX_DIRECTUS_URL", url),
            admin_email: var("AUTHMUX_DIRECTUS_ADMIN_EMAIL")
                .expect("AUTHMUX_DIRECTUS_URL is set, so AUTHMUX_DIRECTUS_ADMIN_EMAIL must be too"),
            admin_password: var("AUTHMUX_DIRECTUS_ADMIN_PASSWORD").expect(
                "AUTHMUX_DIRECTUS_URL is set, so AUTHMUX_DIRECTUS_ADMIN_PASSWORD must be too",
            ),
            mail_file: var("AUTHMUX_DIRECTUS_MAIL_FILE"),
            mail_separator: var("AUTHMUX_DIRECTUS_MAIL_SEPARATOR")
                .unwrap_or_else(|| "--- end of mail (authmux sendmail) ---".into()),
            reset_url: var("AUTHMUX_DIRECTUS_RESET_URL")
                .map(|u| parse("AUTHMUX_DIRECTUS_RESET_URL", u)),
            access_ttl: secs("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS"),
            rate_limited_url: var("AUTHMUX_DIRECTUS_RATE_LIMITED_URL")
                .map(|u| parse("AUTHMUX_DIRECTUS_RATE_LIMITED_URL", u)),
            rate_limit_points: var("AUTHMUX_DIRECTUS_RATE_LIMIT_POINTS")
                .and_then(|p| p.parse().ok()),
            rate_limit_window: secs("AUTHMUX_DIRECTUS_RATE_LIMIT_DURATION_SECS"),
        })
    }

    /// A provider for this server in `mode`, sending through `transport`.
    pub(crate) fn provider(
        &self,
        mode: DirectusMode,
        transport: Arc<dyn Transport>,
    ) -> DirectusProvider {
        DirectusProvider::with_transport(
            DirectusConfig::new(self.url.clone())
                .with_mode(mode)
                .with_fields(["id", "email", "first_name", "last_name", "role", "status"]),
            transport,
        )
        .expect("the live URL is accepted")
    }

    /// Signs the admin in (json mode) and prepares a role for test users.
    pub(crate) async fn admin(&self) -> Admin {
        let provider = Arc::new(self.provider(DirectusMode::Json, reqwest_transport()));
        let manager = SessionManager::new(provider);
        let credentials = Credentials::new(self.admin_email.clone(), self.admin_password.as_str());
        match manager.login(&credentials).await {
            Ok(LoginOutcome::Authenticated(_)) => {}
            other => panic!("the admin cannot sign in: {other:?}"),
        }
        let mut admin = Admin {
            manager,
            role: String::new(),
        };
        admin.role = admin.create_role().await;
        admin
    }

    /// Turns two-factor on for `user` through the API (`tfa/generate` + `tfa/enable`,
    /// with a code computed by totp-rs) and returns the base32 secret.
    pub(crate) async fn enable_two_factor(&self, user: &TestUser) -> String {
        let provider = self.provider(DirectusMode::Json, reqwest_transport());
        let session = match provider.login(&user.credentials()).await {
            Ok(LoginOutcome::Authenticated(session)) => session,
            other => panic!(
                "{} cannot sign in to set up two-factor: {other:?}",
                user.email
            ),
        };
        let (secret, url) = provider
            .tfa_generate(&session, &Password::new(user.password.as_str()))
            .await
            .expect("tfa/generate");
        assert!(url.expose_secret().starts_with("otpauth://totp/"));
        let code = OtpCode::new(totp_now(secret.expose_secret()));
        provider
            .tfa_enable(&session, &secret, &code)
            .await
            .expect("tfa/enable with the current code");
        secret.expose_secret().to_owned()
    }

    /// Waits for the password-reset mail to `email` in the mails file (up to 10 s) and
    /// returns the reset token from its link.
    pub(crate) async fn reset_token_for(&self, email: &str) -> String {
        let file = self
            .mail_file
            .clone()
            .expect("AUTHMUX_DIRECTUS_MAIL_FILE is needed to read reset mails");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let token = text
                .split(self.mail_separator.as_str())
                .filter(|mail| {
                    mail.lines()
                        .any(|l| l.trim().eq_ignore_ascii_case(&format!("To: {email}")))
                })
                .filter_map(|mail| reset_token_in(&decode_quoted_printable(mail)))
                .last();
            if let Some(token) = token {
                return token;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no reset mail to {email} in {file} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Undoes quoted-printable: soft line breaks (`=\n`) and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = joined.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the first `token=` in a mail.
fn reset_token_in(mail: &str) -> Option<String> {
    let start = mail.find("token=")? + "token=".len();
    let token: String = mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The current RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret, computed by
/// totp-rs. Directus checks codes with no clock tolerance, so when the current step
/// ends in under 3 s this waits for the next one rather than hand out a code that may
/// expire in flight.
pub(crate) fn totp_now(secret: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("a base32 TOTP secret");
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(0)
        .with_secret(secret.as_bytes().to_vec())
        // Directus secrets are 80 bits; the RFC-compliant builder wants 128.
        .build_noncompliant();
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = 30 - now().as_secs() % 30;
    if left < 3 {
        std::thread::sleep(Duration::from_secs(left) + Duration::from_millis(100));
    }
    totp.generate(now().as_secs()).to_string()
}

/// A unique email for one test user.
pub(crate) fn unique_email(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "authmux-{tag}-{}-{nanos}-{}@example.com",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A user created for one test.
#[derive(Debug, Clone)]
pub(crate) struct TestUser {
    /// The user's id.
    pub(crate) id: String,
    /// A unique email.
    pub(crate) email: String,
    /// The password.
    pub(crate) password: String,
}

impl TestUser {
    /// Email and password.
    pub(crate) fn credentials(&self) -> Credentials {
        Credentials::new(self.email.clone(), self.password.as_str())
    }
}

/// The admin of a live server, signed in through a session manager (which keeps its
/// short-lived token fresh).
pub(crate) struct Admin {
    manager: SessionManager,
    role: String,
}

impl Admin {
    /// Sends an authorized JSON request and returns the answer's `data`.
    pub(crate) async fn call(&self, method: Method, path: &str, body: &Value) -> Value {
        let request = json_request(
            method.clone(),
            &Url::parse("http://relative.invalid").unwrap(),
            body,
        )
        .expect("request builds");
        let (mut parts, body) = request.into_parts();
        parts.uri = path.parse().expect("relative path");
        let response = self
            .manager
            .send(Request::from_parts(parts, body))
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e:?}"));
        let text = String::from_utf8_lossy(response.body()).into_owned();
        assert!(
            response.status().is_success(),
            "admin {method} {path}: {} {text}",
            response.status()
        );
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("data").cloned())
            .unwrap_or(Value::Null)
    }

    /// A role without app access whose policy lets its users read all users and update
    /// their own profile and two-factor secret: exactly Directus's "recommended app
    /// permissions" for `directus_users`, the only rules the free licence allows
    /// (custom rules are `RESOURCE_RESTRICTED`), and no app access, so test users do not
    /// count against the licence's 3 seats.
    async fn create_role(&self) -> String {
        let name = unique_email("role");
        let role = self
            .call(
                Method::POST,
                "/roles",
                &json!({
                    "name": name,
                    "policies": [{"policy": {
                        "name": name,
                        "app_access": false,
                        "admin_access": false,
                        "permissions": [
                            {"collection": "directus_users", "action": "read",
                             "permissions": {}, "fields": ["*"]},
                            {"collection": "directus_users", "action": "update",
                             "permissions": {"id": {"_eq": "$CURRENT_USER"}},
                             "fields": ["first_name", "last_name", "email", "password",
                                        "location", "title", "description", "avatar",
                                        "language", "appearance", "theme_light",
                                        "theme_dark", "theme_light_overrides",
                                        "theme_dark_overrides", "tfa_secret"]}
                        ]
                    }}]
                }),
            )
            .await;
        role.get("id")
            .and_then(Value::as_str)
            .expect("the new role has an id")
            .to_owned()
    }

    /// Creates an active user named Ann Lee with a unique email.
    pub(crate) async fn create_user(&self, tag: &str) -> TestUser {
        let email = unique_email(tag);
        let password = format!("pw-{}", unique_email("x").replace(['@', '.'], "-"));
        let user = self
            .call(
                Method::POST,
                "/users",
                &json!({
                    "email": email,
                    "password": password,
                    "first_name": "Ann",
                    "last_name": "Lee",
                    "role": self.role,
                }),
            )
            .await;
        TestUser {
            id: user
                .get("id")
                .and_then(Value::as_str)
                .expect("the new user has an id")
                .to_owned(),
            email,
            password,
        }
    }

    /// Sets a user's status (e.g. `suspended`).
    pub(crate) async fn set_status(&self, user: &TestUser, status: &str) {
        self.call(
            Method::PATCH,
            &format!("/users/{}", user.id),
            &json!({ "status": status }),
        )
        .await;
    }
}
