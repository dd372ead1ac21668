//! The provider traits: [`AuthProvider`], which every dialect implements, and the
//! optional capabilities ([`Signup`], [`PasswordReset`], [`PasswordChange`],
//! [`SignInSessions`], [`OAuth`]) reachable from a `dyn AuthProvider` through accessors
//! that return `None` by default. A custom adapter implements only what its backend has.
//!
//! Providers are stateless with respect to sessions: every call takes the
//! [`Session`] it acts on and returns a new one. Holding the current session, deciding
//! when to refresh and making sure only one refresh runs at a time is the
//! [`SessionManager`](crate::SessionManager)'s job, never an adapter's.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue, PROXY_AUTHORIZATION};
use http::{HeaderMap, Method, Request};
use url::Url;

use crate::error::AuthError;
use crate::secret::{OtpCode, Password, ResetToken};
use crate::session::{
    Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, Session, UserProfile,
};
use crate::token::TokenSet;
use crate::transport::Transport;

/// A shared, type-erased provider: what `ProviderConfig` builds and the manager holds.
pub type DynAuthProvider = Arc<dyn AuthProvider>;

/// What a provider can do. Build with struct-update syntax:
/// `Capabilities { refresh: true, ..Capabilities::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Has a refresh endpoint ([`AuthProvider::refresh`] works).
    pub refresh: bool,
    /// Refresh tokens rotate: a used refresh token is dead.
    pub rotating_refresh: bool,
    /// A session without a refresh token can refresh too (OAuth 2.0 client
    /// credentials: a refresh fetches a new token with the client's own credentials).
    pub refresh_without_token: bool,
    /// Login may ask for a one-time code.
    pub otp_login: bool,
    /// Logout ends the session on the server.
    pub server_logout: bool,
    /// [`AuthProvider::signup`] is available.
    pub signup: bool,
    /// [`AuthProvider::password_reset`] is available.
    pub password_reset: bool,
    /// [`AuthProvider::password_change`] is available.
    pub password_change: bool,
    /// [`AuthProvider::sign_in_sessions`] is available.
    pub sign_in_sessions: bool,
    /// [`AuthProvider::oauth`] is available.
    pub oauth: bool,
}

/// One backend dialect's authentication API.
///
/// Object-safe: use it as `Arc<dyn AuthProvider>`. Every method maps the dialect's
/// errors onto [`AuthError`]; none may panic on any server answer.
#[async_trait]
pub trait AuthProvider: Send + Sync + fmt::Debug {
    /// The dialect's name, e.g. `"linxio"`. Stored in sessions.
    fn dialect(&self) -> &str;

    /// The backend's base URL.
    fn base_url(&self) -> &Url;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// The transport this provider sends through; the session manager sends
    /// authorized requests through the same one.
    fn transport(&self) -> Arc<dyn Transport>;

    /// Signs in. Returns [`LoginOutcome::OtpRequired`] when the backend asks for a
    /// one-time code.
    async fn login(&self, credentials: &Credentials) -> Result<LoginOutcome, AuthError>;

    /// Finishes a login that asked for a one-time code. A wrong code is
    /// [`AuthError::InvalidOtp`] and leaves the challenge usable for another try.
    ///
    /// The default, for dialects without one-time codes (whose `login` never answers
    /// [`LoginOutcome::OtpRequired`]), is [`AuthError::Unsupported`] `{ capability:
    /// "otp" }`.
    async fn verify_otp(
        &self,
        challenge: &OtpChallenge,
        code: &OtpCode,
    ) -> Result<Session, AuthError> {
        let _ = (challenge, code);
        Err(AuthError::Unsupported { capability: "otp" })
    }

    /// Exchanges the session's refresh token for new tokens. A definitive refusal is
    /// [`AuthError::RefreshRejected`]; a dialect without refresh returns
    /// [`AuthError::Unsupported`] (and says so in [`Capabilities::refresh`]).
    async fn refresh(&self, session: &Session) -> Result<Session, AuthError>;

    /// Ends the session on the server, when the dialect can, and says what it did.
    async fn logout(&self, session: &Session) -> Result<LogoutOutcome, AuthError>;

    /// The signed-in user.
    async fn current_user(&self, session: &Session) -> Result<UserProfile, AuthError>;

    /// Adds the session's credentials to the headers of an outgoing request to the
    /// session's origin. The default sends `Authorization: Bearer <access token>`;
    /// dialects add what else they need, and may look at the request's method and path
    /// to decide (LinkUTM sends its workspace header to API routes but never to
    /// `/api/v1/auth/*`).
    ///
    /// It sees only the method, the path and the headers, so every way of sending a
    /// request (the manager's `send`, the reqwest middleware, the tower layer, a
    /// streaming body) authorizes the same way. [`authorize_request`] applies it to a
    /// whole `http::Request`.
    fn authorize(
        &self,
        session: &Session,
        target: RequestTarget<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(), AuthError> {
        let _ = target;
        headers.insert(AUTHORIZATION, bearer(&session.tokens)?);
        Ok(())
    }

    /// Builds a session from tokens the caller kept (hydration, as linxio-js
    /// `createClient({token, refreshToken})`), with this provider's dialect, URL and
    /// settings.
    fn session_from_tokens(&self, tokens: TokenSet) -> Session {
        Session::new(self.dialect(), self.base_url().clone(), tokens)
    }

    /// Signup with an emailed one-time code, if the dialect has it.
    fn signup(&self) -> Option<&dyn Signup> {
        None
    }

    /// Password reset by email, if the dialect has it.
    fn password_reset(&self) -> Option<&dyn PasswordReset> {
        None
    }

    /// Password change for a signed-in user, if the dialect has it.
    fn password_change(&self) -> Option<&dyn PasswordChange> {
        None
    }

    /// Listing and revoking sign-ins, if the dialect has it.
    fn sign_in_sessions(&self) -> Option<&dyn SignInSessions> {
        None
    }

    /// OAuth / SSO sign-in, if the dialect has it.
    fn oauth(&self) -> Option<&dyn OAuth> {
        None
    }
}

/// `Bearer <token>` as a sensitive header value (hyper and reqwest keep sensitive
/// values out of their own debug output).
pub fn bearer(tokens: &TokenSet) -> Result<HeaderValue, AuthError> {
    tokens.access.bearer_header().ok_or_else(|| {
        AuthError::protocol("access token contains characters not allowed in a header")
    })
}

/// What an authorized request is for: enough for a dialect to decide which credentials
/// it carries (see [`AuthProvider::authorize`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path (no query), e.g. `/items/articles`.
    pub path: &'a str,
}

/// Authorizes a whole request: [`authorize_headers`] on its method, path and headers.
/// The caller is responsible for sending it only to the session's origin (see
/// [`Session::is_same_origin`]).
pub fn authorize_request<B, P: AuthProvider + ?Sized>(
    provider: &P,
    session: &Session,
    request: &mut Request<B>,
) -> Result<(), AuthError> {
    authorize_in_place(
        provider,
        session,
        request,
        Request::headers_mut,
        |request| RequestTarget {
            method: request.method(),
            path: request.uri().path(),
        },
    )
}

/// [`authorize_headers`] on a request of any type (an `http::Request`, a
/// `reqwest::Request`), given how to reach its headers and what it is for: the
/// headers are taken out for the call (no allocation), so the method and path can be
/// read beside them, then put back.
pub fn authorize_in_place<R: ?Sized, P: AuthProvider + ?Sized>(
    provider: &P,
    session: &Session,
    request: &mut R,
    headers: fn(&mut R) -> &mut HeaderMap,
    target: fn(&R) -> RequestTarget<'_>,
) -> Result<(), AuthError> {
    let mut taken = std::mem::take(headers(request));
    let result = authorize_headers(provider, session, target(request), &mut taken);
    *headers(request) = taken;
    result
}

/// [`AuthProvider::authorize`], then marks every credential header (`Authorization`,
/// `Proxy-Authorization`, `Cookie`) sensitive, whatever the provider put there, so
/// HTTP stacks (hyper, reqwest, h2's header compression) treat them as secrets. What
/// every integration (the manager's `send`, the reqwest middleware, the tower layer)
/// calls.
pub fn authorize_headers<P: AuthProvider + ?Sized>(
    provider: &P,
    session: &Session,
    target: RequestTarget<'_>,
    headers: &mut HeaderMap,
) -> Result<(), AuthError> {
    provider.authorize(session, target, headers)?;
    // One pass over the (few) headers: cheaper than looking each name up, which
    // hashes it and reserves room in the map.
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION || name == PROXY_AUTHORIZATION || name == COOKIE {
            value.set_sensitive(true);
        }
    }
    Ok(())
}

/// What a new account is created with.
#[derive(Debug, Clone)]
pub struct SignupRequest {
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Password.
    pub password: Password,
}

/// Signup in two steps: a code is emailed, then verified.
#[async_trait]
pub trait Signup: Send + Sync {
    /// Asks the server to email a code. Nothing is created yet.
    async fn send_code(&self, request: &SignupRequest) -> Result<(), AuthError>;
    /// Verifies the code; creates the account and signs in.
    async fn verify_code(&self, email: &str, code: &OtpCode) -> Result<Session, AuthError>;
    /// Sends the code again.
    async fn resend_code(&self, email: &str) -> Result<(), AuthError>;
}

/// Password reset by email.
#[async_trait]
pub trait PasswordReset: Send + Sync {
    /// Asks the server to email a reset link. `reset_url` is where the link should lead,
    /// for dialects that accept one.
    async fn request_reset(&self, email: &str, reset_url: Option<&Url>) -> Result<(), AuthError>;
    /// Sets a new password with the token from the email.
    async fn complete_reset(
        &self,
        token: &ResetToken,
        new_password: &Password,
    ) -> Result<(), AuthError>;
}

/// Password change for the signed-in user.
#[async_trait]
pub trait PasswordChange: Send + Sync {
    /// Changes the password, proving the current one.
    async fn change_password(
        &self,
        session: &Session,
        current: &Password,
        new: &Password,
    ) -> Result<(), AuthError>;
}

/// One sign-in of the user, as the server lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignInRecord {
    /// The server's id for it.
    pub id: String,
    /// The User-Agent recorded at sign-in.
    pub user_agent: Option<String>,
    /// When it was created, as the server wrote it.
    pub created_at: Option<String>,
    /// Whether it is the sign-in of the session used to ask, when known.
    pub current: Option<bool>,
    /// The server's whole record.
    pub raw: serde_json::Value,
}

/// Listing and revoking the user's sign-ins.
#[async_trait]
pub trait SignInSessions: Send + Sync {
    /// The user's active sign-ins.
    async fn list(&self, session: &Session) -> Result<Vec<SignInRecord>, AuthError>;
    /// Revokes one sign-in.
    async fn revoke(&self, session: &Session, id: &str) -> Result<(), AuthError>;
    /// Revokes every sign-in of the user, this one included.
    async fn revoke_all(&self, session: &Session) -> Result<(), AuthError>;
}

/// An OAuth/SSO provider the backend offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OAuthProvider {
    /// Its key, used in URLs (e.g. `"github"`).
    pub name: String,
    /// A label to show, when the server gives one.
    pub label: Option<String>,
}

/// OAuth/SSO sign-in through a browser redirect.
#[async_trait]
pub trait OAuth: Send + Sync {
    /// The providers the backend offers.
    async fn providers(&self) -> Result<Vec<OAuthProvider>, AuthError>;
    /// The URL to open in a browser to start signing in with `provider`.
    fn start_url(&self, provider: &str, redirect: Option<&Url>) -> Result<Url, AuthError>;
    /// Turns the URL the browser was redirected to at the end of the flow into a
    /// session. A callback without a usable token is a typed error.
    async fn complete(&self, callback: &Url) -> Result<Session, AuthError>;
}
