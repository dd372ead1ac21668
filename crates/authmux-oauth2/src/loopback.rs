//! [`LoopbackListener`]: receives the authorization code redirect of a native app on
//! `http://127.0.0.1:<port><path>` (RFC 8252 §7.3).
//!
//! It binds the IPv4 loopback address only (never a public interface), on a free port
//! unless one is given, answers the browser's redirect with a short page saying the
//! window can be closed, and hands the full callback URL to
//! [`OAuth2Provider::complete_authorization`](crate::OAuth2Provider::complete_authorization),
//! which checks the `state`. Requests for other paths (a browser's `/favicon.ico`) get
//! a 404 and the listener keeps waiting.

use std::net::{Ipv4Addr, SocketAddr};

use authmux_core::{AuthError, TransportErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::config::DEFAULT_REDIRECT_PATH;

/// The largest request head the listener reads.
const MAX_HEAD: usize = 16 * 1024;

const DONE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Signed in</title></head>\
<body><p>authmux received the sign-in. You can close this window.</p></body></html>";

/// A loopback HTTP listener for one authorization redirect.
///
/// ```no_run
/// # async fn demo(provider: authmux_oauth2::OAuth2Provider) -> Result<(), authmux_core::AuthError> {
/// use authmux_oauth2::LoopbackListener;
///
/// let listener = LoopbackListener::bind("/callback", 0).await?;
/// let request = provider.authorization_request(listener.redirect_uri()).await?;
/// println!("open {}", request.url());
/// let callback = listener.wait_for_callback().await?;
/// let session = provider.complete_authorization(&request, &callback).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    redirect_uri: Url,
}

impl LoopbackListener {
    /// Listens on `127.0.0.1:<port>` (0: a free port) for a redirect to `path`
    /// (default [`DEFAULT_REDIRECT_PATH`] when empty).
    pub async fn bind(path: &str, port: u16) -> Result<Self, AuthError> {
        let path = if path.is_empty() {
            DEFAULT_REDIRECT_PATH
        } else {
            path
        };
        if !path.starts_with('/') {
            return Err(AuthError::validation(
                "redirect_path",
                "the redirect path must start with `/`",
            ));
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|e| io_error("cannot listen on the loopback address", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_error("cannot read the loopback port", e))?
            .port();
        let redirect_uri = Url::parse(&format!("http://127.0.0.1:{port}{path}"))
            .map_err(|_| AuthError::validation("redirect_path", "not a valid URL path"))?;
        Ok(Self {
            listener,
            redirect_uri,
        })
    }

    /// The redirect URI to put in the authorization request.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// Waits for the browser's request to the redirect path and returns its full URL
    /// (with `code` and `state`, or `error`). Wrap it in a timeout: a user may never
    /// come back.
    pub async fn wait_for_callback(self) -> Result<Url, AuthError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| io_error("the loopback listener failed", e))?;
            let Some(target) = read_target(&mut stream).await else {
                continue;
            };
            let Ok(url) = self.redirect_uri.join(&target) else {
                respond(&mut stream, "400 Bad Request", "bad request").await;
                continue;
            };
            if url.path() != self.redirect_uri.path() {
                respond(&mut stream, "404 Not Found", "not found").await;
                continue;
            }
            respond(&mut stream, "200 OK", DONE_PAGE).await;
            return Ok(url);
        }
    }
}

/// The request target of a `GET` request head, or `None` for anything else.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Some(target.to_owned()),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn io_error(what: &str, e: std::io::Error) -> AuthError {
    AuthError::Transport {
        kind: TransportErrorKind::Connect,
        source: Some(std::sync::Arc::new(std::io::Error::new(
            e.kind(),
            format!("{what}: {e}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_the_redirect_and_ignores_other_paths() {
        let listener = LoopbackListener::bind("/callback", 0).await.unwrap();
        let redirect = listener.redirect_uri().clone();
        assert_eq!(redirect.host_str(), Some("127.0.0.1"));
        assert_eq!(redirect.path(), "/callback");
        let port = redirect.port().unwrap();
        let waiting = tokio::spawn(listener.wait_for_callback());
        let get = |path: &'static str| async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        assert!(get("/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(
            get("/callback?code=c&state=s")
                .await
                .starts_with("HTTP/1.1 200")
        );
        let url = waiting.await.unwrap().unwrap();
        assert_eq!(url.query(), Some("code=c&state=s"));
    }
}
