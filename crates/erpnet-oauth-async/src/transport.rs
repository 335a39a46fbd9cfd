//! How bytes move: the [`HttpSend`] trait, its settings, and the default client on reqwest.

use crate::Error;
pub use erpnet_oauth_core::HttpOptions;
use std::future::Future;
use std::pin::Pin;

/// A boxed future that can move between threads (what [`HttpSend`] and [`crate::TokenStore`] return, so
/// that they can be used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one HTTP request and reads its response. Plug your own client by implementing it; the session
/// sends through it the requests the core builds (token, JWKS, userinfo, revocation) and your API calls.
///
/// A conforming implementation:
/// - sends the request as is and **follows no redirect** (a 3xx is returned as the response);
/// - returns error statuses (4xx, 5xx) as responses, not as errors, so that RFC 6749 §5.2 bodies are read;
/// - reads at most `limit` body bytes, failing with [`Error::BodyTooLarge`] beyond;
/// - times out ([`Error::Timeout`]) rather than waiting forever;
/// - maps failures to [`Error::Dns`], [`Error::Connect`], [`Error::Timeout`], [`Error::Io`] (the
///   connection broke: retryable) or [`Error::Http`] (anything else) without quoting headers or bodies
///   (they may hold tokens).
pub trait HttpSend: Send + Sync {
    /// Sends `request`, reading at most `limit` body bytes.
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        limit: u64,
    ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, Error>>;
}

impl<H: HttpSend + ?Sized> HttpSend for std::sync::Arc<H> {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        limit: u64,
    ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, Error>> {
        (**self).send(request, limit)
    }
}

/// The default [`HttpSend`]: a reqwest client (rustls) that follows no redirect (catalogue C5, H1), returns
/// error statuses as responses, times out (H2) and reads bodies up to a limit (H3).
#[cfg(feature = "reqwest")]
#[derive(Debug, Clone)]
pub struct ReqwestClient {
    client: reqwest::Client,
}

#[cfg(feature = "reqwest")]
impl ReqwestClient {
    /// A client with `options`' timeouts and pool size.
    pub fn new(options: &HttpOptions) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(options.max_idle_connections_per_host)
            .user_agent(concat!("erpnet-oauth-async/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http(format!("the HTTP client could not be built: {e}")))?;
        Ok(ReqwestClient { client })
    }

    /// A client around your own `reqwest::Client` (configure it with `redirect::Policy::none()` and
    /// timeouts: the session relies on both).
    pub fn from_client(client: reqwest::Client) -> Self {
        ReqwestClient { client }
    }

    /// The reqwest client, for requests of your own.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn run(
        &self,
        request: http::Request<Vec<u8>>,
        limit: u64,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        let request = reqwest::Request::try_from(request).map_err(map_reqwest)?;
        let mut response = self.client.execute(request).await.map_err(map_reqwest)?;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(Error::BodyTooLarge { limit });
        }
        let mut builder = http::Response::builder().status(response.status()).version(response.version());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
            if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(Error::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|e| Error::Http(e.to_string()))
    }
}

#[cfg(feature = "reqwest")]
impl HttpSend for ReqwestClient {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        limit: u64,
    ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, Error>> {
        Box::pin(async move {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            let result = self.run(request, limit).await;
            // Tokens travel in headers and bodies only (catalogue F1), never in URIs: the URI and the
            // status are safe to log; headers and bodies are not logged.
            match &result {
                Ok(r) => {
                    tracing::debug!(%method, %uri, status = r.status().as_u16(), bytes = r.body().len(), "HTTP exchange")
                }
                Err(e) => tracing::debug!(%method, %uri, error = %e, "HTTP request failed"),
            }
            result
        })
    }
}

/// reqwest's error without its URL (ours carry no secret, but keep messages short).
#[cfg(feature = "reqwest")]
fn map_reqwest(e: reqwest::Error) -> Error {
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout {
        Error::Timeout(message)
    } else if connect {
        Error::Connect(message)
    } else if e.is_request() || e.is_body() {
        // Sent (or being sent) and no complete answer came: the connection broke, as ureq's I/O errors.
        Error::Io(message)
    } else {
        Error::Http(message)
    }
}
