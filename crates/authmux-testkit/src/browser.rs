//! [`Browser`]: plays a user in a web browser over plain HTTP, for tests of OAuth 2.0
//! sign-ins (authorization code, device flow) against [`crate::FakeOAuth2`]'s login
//! pages and a real OpenID provider's interactions alike.
//!
//! It keeps a cookie jar (every cookie of the host, whatever its path), follows
//! redirects by hand, and fills and submits the first HTML form of each page: `login`,
//! `email` or `username` get the user's email, `password` the password, an empty
//! `user_code` the device's code; to deny, the first form that can abort gets
//! `action=abort` (or `abort=yes`). It stops at a redirect to the given URL (the
//! client's redirect URI) or at a page without a form. A login form that comes back
//! after being submitted is [`BrowserError::WrongPassword`].
//!
//! ```no_run
//! # async fn demo(transport: std::sync::Arc<dyn authmux_core::Transport>, start: url::Url, redirect: url::Url) {
//! use authmux_core::Credentials;
//! use authmux_testkit::browser::{Browser, Decision};
//!
//! let user = Credentials::new("alice@example.com", "correct horse battery");
//! let callback = Browser::new(transport)
//!     .run(&start, Some(&redirect), &user, Decision::Allow, None)
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use authmux_core::{AuthError, Credentials, Transport};
use bytes::Bytes;
use http::{Method, Request};
use url::Url;

/// What the user does at the consent step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Signs in and allows.
    Allow,
    /// Aborts at the first form that can (its `action` becomes `abort`, or `abort=yes`
    /// is added); a form that only asks for the device's user code is filled first.
    Deny,
}

/// How a browser session ended.
#[derive(Debug)]
pub enum BrowserError {
    /// The login form came back after submitting it: wrong email or password.
    WrongPassword,
    /// Anything else (what happened).
    Stuck(String),
}

impl BrowserError {
    /// The error a sign-in that ended this way stands for: a wrong password is
    /// [`AuthError::InvalidCredentials`].
    pub fn into_auth_error(self) -> AuthError {
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
pub struct Browser {
    transport: Arc<dyn Transport>,
    cookies: Mutex<HashMap<String, String>>,
}

impl Browser {
    /// A browser with an empty cookie jar, sending through `transport` (one that does
    /// not follow redirects, such as authmux's `ReqwestTransport`).
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
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
    pub async fn run(
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
