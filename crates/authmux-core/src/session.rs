//! The session model: [`Session`], [`UserProfile`], [`Credentials`], [`OtpChallenge`],
//! and the outcomes of signing in and out.
//!
//! A [`Session`] is what stores persist: serde-serializable, versioned by
//! [`SESSION_FORMAT`], and safe to `Debug`-print (its secrets are redacted newtypes).
//! Dialect-specific, non-secret data (a Directus mode, a LinkUTM workspace, the id of
//! the current sign-in) lives in [`Session::extras`], so the core needs no special case
//! for any dialect.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::secret::{OtpCode, Password};
use crate::token::TokenSet;

/// The current version of the serialized session format.
pub const SESSION_FORMAT: u32 = 1;

/// A signed-in session with one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Serialized format version ([`SESSION_FORMAT`]).
    pub format: u32,
    /// The dialect that created the session (`"linxio"`, `"linkutm"`, `"directus"`, ...).
    pub dialect: String,
    /// The backend's base URL. Credentials are only ever sent to its origin.
    pub base_url: Url,
    /// The tokens.
    pub tokens: TokenSet,
    /// The signed-in user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserProfile>,
    /// Dialect-specific data that is not secret (e.g. `{"mode": "cookie"}`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extras: Map<String, Value>,
    /// Identifies one sign-in across its refreshes, in every process that shares it:
    /// the session manager draws a random one when a session begins (login, OTP,
    /// hydration) and carries it to every refreshed session. Sessions with different
    /// lineages belong to different sign-ins, so a request sent with one is never
    /// replayed with the other. Not secret. `None` for sessions stored before it
    /// existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
}

impl Session {
    /// A new session with no user and no extras.
    pub fn new(dialect: impl Into<String>, base_url: Url, tokens: TokenSet) -> Self {
        Self {
            format: SESSION_FORMAT,
            dialect: dialect.into(),
            base_url,
            tokens,
            user: None,
            extras: Map::new(),
            lineage: None,
        }
    }

    /// Sets the user.
    #[must_use]
    pub fn with_user(mut self, user: Option<UserProfile>) -> Self {
        self.user = user;
        self
    }

    /// Sets one extra.
    #[must_use]
    pub fn with_extra(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extras.insert(key.to_owned(), value.into());
        self
    }

    /// An extra as a string, if present and a string.
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extras.get(key).and_then(Value::as_str)
    }

    /// Whether `other` belongs to the same sign-in as this session (same
    /// [`Session::lineage`], or either lineage unknown, and the same dialect and origin).
    pub fn same_sign_in(&self, other: &Session) -> bool {
        let lineage = match (&self.lineage, &other.lineage) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        lineage
            && self.dialect == other.dialect
            && self.base_url.origin() == other.base_url.origin()
    }

    /// Whether `url` is on this session's origin (scheme, host and port), the only
    /// place its credentials may be sent (see [`same_origin`]).
    pub fn is_same_origin(&self, url: &Url) -> bool {
        same_origin(&self.base_url, url)
    }

    /// Whether an absolute `uri` is on this session's origin (see
    /// [`same_origin_uri`]). A relative URI (no scheme or host) is not.
    pub fn is_same_origin_uri(&self, uri: &http::Uri) -> bool {
        same_origin_uri(&self.base_url, uri)
    }

    /// A copy of this session with new tokens (user and extras kept): what a refresh
    /// produces.
    #[must_use]
    pub fn with_tokens(&self, tokens: TokenSet) -> Self {
        Self {
            tokens,
            ..self.clone()
        }
    }
}

/// Whether `url` is on `base`'s origin: the same scheme, host and port (the default
/// port of the scheme when none is written), as `url.origin() == base.origin()` decides
/// for `http`, `https`, `ws` and `wss`, without allocating. Any other scheme has an
/// opaque origin and is never the same. Integrations use it to decide, before asking
/// for a session, whether a request is for the provider at all
/// (`same_origin(provider.base_url(), url)`).
pub fn same_origin(base: &Url, url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https" | "ws" | "wss")
        && url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
}

/// Whether an absolute `uri` is on `base`'s origin (see [`same_origin`]). A relative
/// URI (no scheme or host) is not.
pub fn same_origin_uri(base: &Url, uri: &http::Uri) -> bool {
    uri_written_as(
        uri,
        base.scheme(),
        &base[url::Position::BeforeHost..url::Position::AfterPort],
    ) || uri_on_base(base, uri)
}

/// The common case, two comparisons: `uri` written with exactly `scheme` and
/// `authority` (`host[:port]`, the port only when not the scheme's default, as `Url`
/// keeps it). Anything else (another case, a written default port, user information)
/// is for [`uri_on_base`] to decide.
fn uri_written_as(uri: &http::Uri, scheme: &str, authority: &str) -> bool {
    matches!(
        (uri.scheme_str(), uri.authority()),
        (Some(s), Some(a)) if s == scheme && a.as_str() == authority
    )
}

/// The full check of [`same_origin_uri`], past its quick comparison: hosts in another
/// case or IPv6 written another way, default ports written out.
fn uri_on_base(base: &Url, uri: &http::Uri) -> bool {
    let same_host = match (uri.host(), base.host_str()) {
        (Some(a), Some(b)) => {
            let a = a.trim_start_matches('[').trim_end_matches(']');
            let b = b.trim_start_matches('[').trim_end_matches(']');
            a.eq_ignore_ascii_case(b)
                || matches!(
                    (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()),
                    (Ok(a), Ok(b)) if a == b
                )
        }
        _ => false,
    };
    same_host
        && uri.scheme_str() == Some(base.scheme())
        && uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        }) == base.port_or_known_default()
}

/// A base URL's origin, with what checking a request against it takes worked out once:
/// what an integration keeps to decide, for every request, whether it is for its
/// provider. Its answers are [`same_origin`]'s and [`same_origin_uri`]'s on the base
/// URL, without slicing or comparing the base URL's parts again for each request.
///
/// ```
/// use authmux_core::session::Origin;
///
/// let origin = Origin::new(&"https://api.example.com/v1/".parse().unwrap());
/// assert!(origin.contains_url(&"https://api.example.com/items".parse().unwrap()));
/// assert!(origin.contains_uri(&"https://api.example.com:443/items".parse().unwrap()));
/// assert!(!origin.contains_uri(&"https://evil.example.com/".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    base: Url,
    /// `scheme://host[:port]` as `base` writes it (the port only when not the scheme's
    /// default): how every URL on this origin without user information starts.
    prefix: Box<str>,
    /// Whether the base's scheme has an origin (`http`, `https`, `ws`, `wss`); any
    /// other scheme's origin is opaque, and nothing is on it.
    tuple: bool,
}

impl Origin {
    /// The origin of `base`.
    pub fn new(base: &Url) -> Self {
        let authority = &base[url::Position::BeforeHost..url::Position::AfterPort];
        Self {
            prefix: format!("{}://{authority}", base.scheme()).into(),
            tuple: matches!(base.scheme(), "http" | "https" | "ws" | "wss"),
            base: base.clone(),
        }
    }

    /// The base URL this origin is of.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Whether `url` is on this origin: `same_origin(base, url)`.
    pub fn contains_url(&self, url: &Url) -> bool {
        // The common case, one comparison: the URL starts with the base's scheme and
        // authority, and its path, query or fragment follows (not more of a port or
        // host, not user information). Anything else goes to the full check.
        if !self.tuple {
            return false;
        }
        if let Some(rest) = url.as_str().strip_prefix(&*self.prefix)
            && matches!(rest.as_bytes().first(), Some(b'/' | b'?' | b'#'))
        {
            return true;
        }
        same_origin(&self.base, url)
    }

    /// Whether an absolute `uri` is on this origin: `same_origin_uri(base, uri)`.
    pub fn contains_uri(&self, uri: &http::Uri) -> bool {
        let scheme = self.base.scheme();
        // The prefix's `host[:port]` follows its `scheme://`.
        uri_written_as(uri, scheme, &self.prefix[scheme.len() + 3..])
            || uri_on_base(&self.base, uri)
    }
}

/// The signed-in user, in the dialect-neutral shape plus the raw JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserProfile {
    /// The user's id as text (numbers are converted), when the server sent one.
    #[serde(default)]
    pub id: Option<String>,
    /// Email address, when sent.
    #[serde(default)]
    pub email: Option<String>,
    /// Display name, when sent.
    #[serde(default)]
    pub name: Option<String>,
    /// The server's whole user object, for dialect-specific fields (Linxio `teamType`,
    /// `roleId`, `permissions`, `team`; Directus `role`, ...).
    #[serde(default)]
    pub raw: Value,
}

impl UserProfile {
    /// Reads a profile from a JSON object, taking `id`, `email` and the first present of
    /// `name_keys` as the name (joined with a space when several are given as a group,
    /// see [`UserProfile::from_json_with_name`]).
    pub fn from_json(raw: Value, name_keys: &[&str]) -> Self {
        let name = name_keys
            .iter()
            .find_map(|k| raw.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        Self::from_json_with_name(raw, name)
    }

    /// Reads `id` and `email` from a JSON object and uses the given name.
    pub fn from_json_with_name(raw: Value, name: Option<String>) -> Self {
        let id = match raw.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let email = raw.get("email").and_then(Value::as_str).map(str::to_owned);
        Self {
            id,
            email,
            name,
            raw,
        }
    }

    /// A field of the raw user object.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }
}

/// What a user signs in with.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Email (or login name).
    pub email: String,
    /// Password.
    pub password: Password,
    /// A one-time code sent with the first request, for dialects that accept one
    /// (Directus `otp`).
    pub otp: Option<OtpCode>,
}

impl Credentials {
    /// Email and password, no one-time code.
    pub fn new(email: impl Into<String>, password: impl Into<Password>) -> Self {
        Self {
            email: email.into(),
            password: password.into(),
            otp: None,
        }
    }

    /// Adds a one-time code.
    #[must_use]
    pub fn with_otp(mut self, otp: impl Into<OtpCode>) -> Self {
        self.otp = Some(otp.into());
        self
    }
}

/// What a dialect needs to finish a login that asked for a one-time code.
///
/// A dialect that must resend the password (Directus) keeps it in `password`: only in
/// memory (it is never serialized), zeroized on drop. A challenge read back from disk
/// has no password; [`OtpChallenge::with_password`] supplies it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtpChallenge {
    /// The dialect that issued the challenge.
    pub dialect: String,
    /// The backend's base URL.
    pub base_url: Url,
    /// The email the login was for.
    pub email: String,
    /// The password, for dialects that resend it. Never serialized.
    #[serde(skip)]
    pub password: Option<Password>,
    /// Dialect-specific, non-secret data (e.g. a challenge id).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extras: Map<String, Value>,
    /// When the challenge was issued.
    #[serde(with = "crate::timestamp")]
    pub issued_at: SystemTime,
}

impl OtpChallenge {
    /// A challenge for `email` at `base_url`.
    pub fn new(
        dialect: impl Into<String>,
        base_url: Url,
        email: impl Into<String>,
        issued_at: SystemTime,
    ) -> Self {
        Self {
            dialect: dialect.into(),
            base_url,
            email: email.into(),
            password: None,
            extras: Map::new(),
            issued_at,
        }
    }

    /// Attaches the password (kept in memory only).
    #[must_use]
    pub fn with_password(mut self, password: Password) -> Self {
        self.password = Some(password);
        self
    }
}

/// The result of [`AuthProvider::login`](crate::AuthProvider::login).
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// Signed in.
    Authenticated(Session),
    /// A one-time code is needed: call `verify_otp` with this challenge and the code.
    OtpRequired(OtpChallenge),
}

/// What [`AuthProvider::logout`](crate::AuthProvider::logout) actually did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutOutcome {
    /// The server ended this session (its tokens are dead).
    Revoked,
    /// The server revoked the sign-in record this session belongs to (LinkUTM).
    SignInRevoked {
        /// The id of the revoked sign-in.
        id: String,
    },
    /// Nothing was revoked on the server; the session was only forgotten locally. The
    /// access token stays valid until it expires.
    LocalOnly {
        /// Why the server could not be asked.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AccessToken, RefreshToken};
    use crate::token::Expiry;

    #[test]
    fn same_origin_agrees_with_the_url_crates_origin_and_with_the_uri_check_and_origin() {
        let urls = [
            "https://api.example.com/",
            "https://api.example.com:443/x?y=1",
            "https://API.example.com/a",
            "https://api.example.com:8443/",
            "http://api.example.com/",
            "http://api.example.com:80/p",
            "https://other.example.com/",
            "https://api.example.com.evil.test/",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8081/",
            // A prefix of another base's port (8080): a URL on that one is not on this.
            "http://127.0.0.1:808/",
            "http://[::1]:8080/",
            "wss://api.example.com/",
            "file:///etc/passwd",
            "data:text/plain,hi",
        ];
        for a in urls {
            let a = Url::parse(a).unwrap();
            for b in urls {
                let b = Url::parse(b).unwrap();
                assert_eq!(same_origin(&a, &b), a.origin() == b.origin(), "{a} {b}");
                assert_eq!(
                    Origin::new(&a).contains_url(&b),
                    same_origin(&a, &b),
                    "{a} {b}"
                );
                if matches!(b.scheme(), "http" | "https") {
                    let uri: http::Uri = b.as_str().parse().unwrap();
                    assert_eq!(same_origin_uri(&a, &uri), same_origin(&a, &b), "{a} {b}");
                    assert_eq!(
                        Origin::new(&a).contains_uri(&uri),
                        same_origin(&a, &b),
                        "{a} {b}"
                    );
                }
            }
            // URIs as written, not as `Url` normalizes them: the quick comparison of
            // the authority text must never decide otherwise than the full check.
            for raw in [
                "https://api.example.com/x",
                "https://api.example.com:443/x",
                "https://API.Example.com/x",
                "https://user@api.example.com/x",
                "https://user:pw@api.example.com:443/x",
                "HTTPS://api.example.com/x",
                "http://api.example.com:80/x",
                "http://api.example.com:8080/x",
                "http://127.0.0.1:8080/x",
                "http://127.0.0.1:08080/x",
                "http://[::1]:8080/x",
                "http://[0:0:0:0:0:0:0:1]:8080/x",
                "https://api.example.com.evil.test/x",
                "https://api.example.com@evil.test/x",
                "https://api.example.com:443@evil.test/x",
                "https://api.example.com:4430/x",
                "http://127.0.0.1:8080@evil.test/x",
                "https://api.example.com?x=1",
                "https://api.example.com#top",
            ] {
                let uri: http::Uri = raw.parse().unwrap();
                let url = Url::parse(raw).unwrap();
                assert_eq!(
                    same_origin_uri(&a, &uri),
                    same_origin(&a, &url),
                    "{a} {raw}"
                );
                assert_eq!(
                    Origin::new(&a).contains_uri(&uri),
                    same_origin(&a, &url),
                    "{a} {raw}"
                );
                assert_eq!(
                    Origin::new(&a).contains_url(&url),
                    same_origin(&a, &url),
                    "{a} {raw}"
                );
            }
        }
    }
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn session_round_trips_and_debug_hides_secrets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tokens = TokenSet::new(
            AccessToken::new("access-secret-123"),
            Some(RefreshToken::new("refresh-secret-456")),
            Expiry::In(Duration::from_secs(900)),
            now,
        );
        let session = Session::new(
            "directus",
            Url::parse("https://cms.example.com").unwrap(),
            tokens,
        )
        .with_user(Some(UserProfile::from_json(
            serde_json::json!({"id": 7, "email": "a@b.c", "first_name": "Ann"}),
            &["first_name"],
        )))
        .with_extra("mode", "json");
        let json = serde_json::to_string(&session).unwrap();
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, session);
        assert_eq!(back.user.as_ref().unwrap().id.as_deref(), Some("7"));
        assert_eq!(back.extra_str("mode"), Some("json"));
        let debug = format!("{session:?}");
        assert!(!debug.contains("access-secret-123") && !debug.contains("refresh-secret-456"));
    }

    #[test]
    fn challenge_never_serializes_the_password() {
        let challenge = OtpChallenge::new(
            "directus",
            Url::parse("https://x.example").unwrap(),
            "a@b.c",
            UNIX_EPOCH,
        )
        .with_password(Password::new("pw-secret-789"));
        let json = serde_json::to_string(&challenge).unwrap();
        assert!(!json.contains("pw-secret-789"));
        assert!(!format!("{challenge:?}").contains("pw-secret-789"));
        let back: OtpChallenge = serde_json::from_str(&json).unwrap();
        assert!(back.password.is_none());
    }
}
