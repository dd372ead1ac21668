//! [`ReqwestTransport`] (feature `reqwest`): a transport on reqwest with rustls, no
//! redirects, a timeout and a response-size cap. Proxies come from the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), and
//! [`ReqwestTransport::from_client`] wraps a client the caller configured (its own
//! proxies, roots, timeouts). `HyperTransport` hands it the
//! requests the environment sends through a proxy.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use url::Url;

use super::exchange::{Collector, Exchange, Failure, limits_of, race, until};
use super::{RequestLimits, Transport, TransportConfig};
use crate::error::{AuthError, TransportErrorKind};

/// A transport on reqwest with rustls, no redirects, a timeout and a response-size cap.
/// Proxies come from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`); [`ReqwestTransport::from_client`] wraps a client the caller configured
/// (its own proxies, roots, timeouts).
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    /// The timeout of each exchange (`None` for a caller's client, which keeps its
    /// own).
    timeout: Option<Duration>,
    max_response_bytes: usize,
    origins: Arc<OriginCache>,
}

impl ReqwestTransport {
    /// A transport with the default settings.
    pub fn new() -> Result<Self, AuthError> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with the given settings.
    pub fn with_config(config: TransportConfig) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(map_error)?;
        Ok(Self {
            client,
            timeout: Some(config.timeout),
            max_response_bytes: config.max_response_bytes,
            origins: Arc::default(),
        })
    }

    /// Wraps an existing client (its own timeout, proxy, TLS settings apply).
    pub fn from_client(client: reqwest::Client, max_response_bytes: usize) -> Self {
        Self {
            client,
            timeout: None,
            max_response_bytes,
            origins: Arc::default(),
        }
    }
}

/// Classifies a reqwest error (before anything is stripped from it: the
/// classification reads the error as reqwest built it), then keeps only a sanitized
/// message without the URL.
fn map_error(e: reqwest::Error) -> AuthError {
    if e.is_timeout() {
        return AuthError::Timeout;
    }
    let kind = if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_builder() {
        TransportErrorKind::Request
    } else if e.is_body() || e.is_decode() || e.is_request() {
        // A connection closed mid-answer surfaces as a request or body error.
        TransportErrorKind::Io
    } else {
        TransportErrorKind::Other
    };
    let message = crate::error::sanitize_message(&e.without_url().to_string());
    AuthError::Transport {
        kind,
        source: Some(Arc::new(std::io::Error::other(message))),
    }
}

// Written out rather than with `#[async_trait]`: the request is converted and handed
// to reqwest before the future is made, so the boxed future, allocated for every
// request, holds only what lives across its awaits (reqwest's futures, the timer)
// and stays small enough for the allocator's fast path.
impl Transport for ReqwestTransport {
    fn send<'life0, 'async_trait>(&'life0 self, request: Request<Bytes>) -> Exchange<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let limits = limits_of(&request);
        self.send_with_limits(request, limits)
    }

    fn send_with_limits<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
        limits: RequestLimits,
    ) -> Exchange<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let cap = limits.max_response_bytes.unwrap_or(self.max_response_bytes);
        // One timer for the whole exchange: the earlier of the timeout (the
        // request's own, or the transport's; a client from
        // [`ReqwestTransport::from_client`] also keeps its own) and the caller's
        // deadline. A plain `tokio` timer, armed once and raced with each step,
        // rather than reqwest's per-request timeout, which costs an allocation.
        let until = until(limits.timeout.or(self.timeout), limits.deadline);
        match to_reqwest(request, &self.origins) {
            Ok(request) => Box::pin(exchange(self.client.execute(request), until, cap)),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// The rest of one exchange once reqwest has the request: its answer, the whole
/// body (at most `cap` bytes), all before `until`.
async fn exchange(
    pending: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
    until: Option<tokio::time::Instant>,
    cap: usize,
) -> Result<Response<Bytes>, AuthError> {
    let pending = std::pin::pin!(pending);
    let mut timer = std::pin::pin!(until.map(tokio::time::sleep_until));
    let mut response = race(pending, timer.as_mut().as_pin_mut()).await?;
    let mut body = Collector::new(cap, response.content_length())?;
    // Chunk by chunk, counting. (`Response::bytes` would do the same in one call, but
    // its future alone is 568 bytes.)
    while let Some(chunk) = race(
        std::pin::pin!(response.chunk()),
        timer.as_mut().as_pin_mut(),
    )
    .await?
    {
        body.push(chunk)?;
    }
    let body = body.finish();
    let status = response.status();
    let version = response.version();
    let headers = std::mem::take(response.headers_mut());
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.version_mut() = version;
    *out.headers_mut() = headers;
    Ok(out)
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        Self(map_error(e))
    }
}

/// The origin (`scheme://authority/`) of the last request, parsed: requests to the
/// same origin (all of a session's) reuse it and only set their path and query,
/// skipping the host parsing that dominates `Url::parse`. Holds no credentials: an
/// authority with user information is never kept.
#[derive(Default)]
struct OriginCache(arc_swap::ArcSwapOption<Url>);

impl fmt::Debug for OriginCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OriginCache")
    }
}

impl OriginCache {
    /// The URL of `uri` (absolute), as `Url::parse` of its text would give.
    fn url_of(&self, uri: &http::Uri) -> Result<Url, AuthError> {
        let invalid = || AuthError::validation("uri", "invalid request URI");
        let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => (scheme, authority.as_str()),
            _ => return Err(AuthError::validation("uri", "request URI is not absolute")),
        };
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(origin) = self.0.load().as_deref()
            && origin.scheme() == scheme
            && &origin[url::Position::BeforeHost..url::Position::AfterPort] == authority
        {
            // The same origin text parses to the same origin: only the path and
            // query are new (`set_path` and `set_query` parse them as
            // `Url::parse` would).
            let mut url = origin.clone();
            let (path, query) = match path_and_query.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (path_and_query, None),
            };
            url.set_path(path);
            url.set_query(query);
            return Ok(url);
        }
        let mut text =
            String::with_capacity(scheme.len() + 3 + authority.len() + path_and_query.len());
        text.push_str(scheme);
        text.push_str("://");
        text.push_str(authority);
        text.push_str(path_and_query);
        let url = Url::parse(&text).map_err(|_| invalid())?;
        if !authority.contains('@') && !url.cannot_be_a_base() {
            let mut origin = url.clone();
            origin.set_path("/");
            origin.set_query(None);
            self.0.store(Some(Arc::new(origin)));
        }
        Ok(url)
    }
}

/// `reqwest::Request::try_from`, without its growing `String` and, for a known
/// origin, without parsing the host again (fewer allocations and instructions
/// matter on this path). The request's extensions are not carried over: reqwest
/// reads none it did not set.
fn to_reqwest(
    request: Request<Bytes>,
    origins: &OriginCache,
) -> Result<reqwest::Request, AuthError> {
    let (parts, body) = request.into_parts();
    let url = origins.url_of(&parts.uri)?;
    let mut out = reqwest::Request::new(parts.method, url);
    *out.headers_mut() = parts.headers;
    *out.version_mut() = parts.version;
    *out.body_mut() = Some(body.into());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache gives what `Url::parse` of the whole text gives, for the first
    /// request to an origin and for every later one (paths, queries, dot segments,
    /// encodings, another origin, default ports, IPv6).
    #[test]
    fn origin_cache_parses_as_url_parse_does() {
        let cache = OriginCache::default();
        let uris = [
            "http://127.0.0.1:8055/items/articles",
            "http://127.0.0.1:8055/items/articles?fields=*&limit=2",
            "http://127.0.0.1:8055/a/../b/./c",
            "http://127.0.0.1:8055/%7Euser/caf%C3%A9?q=a%20b",
            "http://127.0.0.1:8055/",
            "http://127.0.0.1:8055",
            "http://127.0.0.1:8056/other/port",
            "https://API.example.com:443/x?y",
            "https://api.example.com/x?y",
            "https://api.example.com/x?",
            "http://[::1]:9000/v6",
            "http://127.0.0.1:8055/items?a=1",
        ];
        for _ in 0..2 {
            for text in uris {
                let uri: http::Uri = text.parse().unwrap();
                let expected = Url::parse(&uri.to_string()).unwrap();
                assert_eq!(cache.url_of(&uri).unwrap(), expected, "{text}");
            }
        }
    }

    #[test]
    fn origin_cache_never_keeps_user_information() {
        let cache = OriginCache::default();
        let uri: http::Uri = "http://user:secret@127.0.0.1:1/x".parse().unwrap();
        let url = cache.url_of(&uri).unwrap();
        assert_eq!(url.password(), Some("secret"));
        assert!(cache.0.load().is_none());
    }
}
