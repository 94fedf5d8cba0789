//! The HTTP plumbing shared by every endpoint: addresses and failover, ACL token, datacenter and
//! read mode, blocking-query parameters, TLS, timeouts.
//!
//! Requests go to the current address. A transport error (refused, reset, timed out), a TLS
//! failure, or an answer of 5xx or 429 moves the client to the next address for the next request
//! and is returned as is: retrying is the caller's policy. Clones share the current address.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::config::{env, Config, ReadMode, TlsConfig};
use crate::Error;

/// A value read from Consul together with the `X-Consul-Index` it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed<T> {
    pub index: u64,
    pub value: T,
}

type Http = hyper_util::client::legacy::Client<ConnectTimeout<HttpsConnector<HttpConnector>>, Full<Bytes>>;

/// A handle on Consul's HTTP API, at one or more addresses. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// Base URLs, and the same without the trailing slash (for logs).
    bases: Vec<(Url, String)>,
    current: AtomicUsize,
    token: Option<HeaderValue>,
    datacenter: Option<String>,
    read_mode: ReadMode,
    /// To explain TLS failures in terms of the settings.
    tls: TlsConfig,
    /// The last answer from each path: its length, and for some paths the answer itself.
    last_answers: LastAnswers,
}

/// The length of the last answer from each path, so that the next answer is gathered into a
/// buffer of about the right size: an answer of the whole catalog comes again after every change
/// (megabytes at 10,000 services), and growing a buffer to that size copies it and touches
/// fresh memory again and again. For the answers read with [`Keep::Recycled`], also the last two
/// answers themselves: once nobody else holds one, the next answer is gathered into it, so those
/// megabytes are not taken fresh from the system (and faulted in page by page) after every change.
#[derive(Debug, Default)]
struct LastAnswers(Mutex<HashMap<String, Remembered>>);

/// What is remembered of one path's answers.
#[derive(Debug, Default)]
struct Remembered {
    len: usize,
    /// The last answers kept for reuse, newest last.
    kept: Vec<Bytes>,
}

impl LastAnswers {
    /// At most this many paths are remembered (one per node is read): past it, all are forgotten.
    const PATHS: usize = 4096;
    /// Room beyond the last length, for an answer that grew a little.
    const SLACK: usize = 8;
    /// Answers kept per recycled path: the caller still holds the last one while the next is
    /// read (to compare them), so the one before it is the one free for reuse.
    const KEPT: usize = 2;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer for the next answer from `path`: a kept answer nobody holds any more when
    /// `recycle` and there is one, else a new one of about the last answer's size.
    fn buffer_for(&self, path: &str, recycle: bool) -> BytesMut {
        let mut paths = self.lock();
        let Some(last) = paths.get_mut(path) else {
            return BytesMut::new();
        };
        let capacity = last.len + last.len / Self::SLACK;
        if recycle {
            if let Some(free) = last.kept.iter().position(Bytes::is_unique) {
                if let Ok(mut buffer) = last.kept.remove(free).try_into_mut() {
                    buffer.clear();
                    buffer.reserve(capacity);
                    return buffer;
                }
            }
        }
        BytesMut::with_capacity(capacity)
    }

    /// Remembers the answer from `path`: its length, and the answer itself when `recycle`.
    fn remember(&self, path: &str, answer: &Bytes, recycle: bool) {
        let mut paths = self.lock();
        if paths.len() >= Self::PATHS && !paths.contains_key(path) {
            paths.clear();
        }
        let last = match paths.get_mut(path) {
            Some(last) => last,
            None => paths.entry(path.to_string()).or_default(),
        };
        last.len = answer.len();
        if recycle {
            if last.kept.len() >= Self::KEPT {
                last.kept.remove(0);
            }
            last.kept.push(answer.clone());
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addresses", &self.addresses())
            .field("current", &self.address())
            .finish_non_exhaustive()
    }
}

/// What Consul answered: headers and the whole body, or only the body's digest.
struct Answer {
    headers: HeaderMap,
    body: Kept,
}

/// What to keep of a successful answer's body (an error's is always kept, to explain it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Body,
    /// The body, gathered into the buffer of an earlier answer from the same path when nobody
    /// holds that any more (see [`LastAnswers`]): for the whole-catalog answers read after every
    /// change.
    Recycled,
    /// Only its 128-bit XXH3, computed as it arrives: nothing is gathered.
    Digest,
}

/// A body as kept.
enum Kept {
    Body(Bytes),
    Digest(u128),
}

impl Kept {
    /// The body; empty when only a digest was asked for (which callers never do then).
    fn into_body(self) -> Bytes {
        match self {
            Kept::Body(body) => body,
            Kept::Digest(_) => Bytes::new(),
        }
    }
}

impl Client {
    /// A client for the Consul agent at `address` (for example `http://127.0.0.1:8500`; a bare
    /// `host:port` is taken as http). `token` is sent as `X-Consul-Token` when set. Everything
    /// else is [`Config::default`]'s.
    pub fn new(address: &str, token: Option<String>) -> Result<Client, Error> {
        Client::from_config(Config::with_address(address, token))
    }

    /// A client for `config`: checks the addresses, reads the token file and the TLS files.
    /// Opens no connection.
    pub fn from_config(config: Config) -> Result<Client, Error> {
        let urls = config.urls()?;
        let https = urls.iter().any(|u| u.scheme() == "https");
        let token = match &config.token_file {
            Some(path) => Some(read_token_file(path)?),
            None => config.token.clone().filter(|t| !t.is_empty()),
        };
        let token = token
            .map(|t| {
                let mut value = HeaderValue::from_str(&t).map_err(|_| Error::Setting {
                    name: env::HTTP_TOKEN,
                    value: "<redacted>".into(),
                    reason: "the token holds characters not allowed in an HTTP header".into(),
                })?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;

        let tls = crate::tls::client_config(&config.tls, https)?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        tcp.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match &config.tls.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|e| Error::Setting {
                    name: env::TLS_SERVER_NAME,
                    value: name.clone(),
                    reason: e.to_string(),
                })?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = ConnectTimeout {
            inner: builder.enable_http1().wrap_connector(tcp),
            timeout: config.connect_timeout,
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_connections)
            .pool_idle_timeout(config.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let bases = urls
            .into_iter()
            .map(|url| {
                let label = url.as_str().trim_end_matches('/').to_string();
                (url, label)
            })
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                bases,
                current: AtomicUsize::new(0),
                token,
                datacenter: config.datacenter.filter(|dc| !dc.is_empty()),
                read_mode: config.read_mode,
                tls: config.tls,
                last_answers: LastAnswers::default(),
            }),
        })
    }

    /// The address requests go to now, for logs.
    pub fn address(&self) -> &str {
        &self.inner.bases[self.current()].1
    }

    /// Every configured address, in order.
    pub fn addresses(&self) -> Vec<&str> {
        self.inner.bases.iter().map(|(_, label)| label.as_str()).collect()
    }

    fn current(&self) -> usize {
        self.inner.current.load(Ordering::Relaxed) % self.inner.bases.len()
    }

    /// Moves to the address after `from`, unless another request already moved on from it.
    fn rotate(&self, from: usize) {
        let next = (from + 1) % self.inner.bases.len();
        let _ = self
            .inner
            .current
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The URL of `path` at the current address, and that address's index.
    fn url_at(&self, path: &str) -> (usize, Url) {
        let index = self.current();
        let mut url = self.inner.bases[index].0.clone();
        url.set_path(path);
        (index, url)
    }

    /// The parameters every read of the catalog or health carries: datacenter and read mode.
    /// The local agent's own endpoints (`/v1/agent/...`) take neither.
    fn read_params(&self, path: &str) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if path.starts_with("/v1/agent/") {
            return params;
        }
        if let Some(dc) = &self.inner.datacenter {
            params.push(("dc", dc.clone()));
        }
        if let Some(mode) = self.inner.read_mode.query_param() {
            params.push((mode, String::new()));
        }
        params
    }

    /// A GET that may block server-side: `index` 0 returns at once, otherwise Consul holds the
    /// request until the result changes past `index` or `wait` elapses.
    pub(crate) async fn get_blocking<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<T>, Error> {
        let (url, answer) = self.get_blocking_raw(path, query, index, wait).await?;
        Ok(Indexed {
            index: answer.index,
            value: decode(&url, &answer.value)?,
        })
    }

    /// [`Client::get_blocking`] without decoding: the body as Consul sent it, and the URL asked
    /// (for errors).
    pub(crate) async fn get_blocking_raw(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: u64,
        wait: Duration,
    ) -> Result<(Url, Indexed<Bytes>), Error> {
        let kept = self.get_kept(path, query, index, wait, Keep::Body).await?;
        Ok(with_body(kept))
    }

    /// [`Client::get_blocking_raw`] for an answer that comes again and again (the whole
    /// catalog's, after every change): gathered into an earlier answer's buffer once nobody holds
    /// it (see [`LastAnswers`]).
    pub(crate) async fn get_recycled_raw(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Url, Indexed<Bytes>), Error> {
        let kept = self.get_kept(path, &[], index, wait, Keep::Recycled).await?;
        Ok(with_body(kept))
    }

    /// A GET that keeps only the digest of the body (see [`crate::catalog::NodeServices::digest`]):
    /// the same value as a digest of the whole body, without gathering it.
    pub(crate) async fn get_digest(&self, path: &str) -> Result<Indexed<u128>, Error> {
        let (url, answer) = self.get_kept(path, &[], 0, Duration::ZERO, Keep::Digest).await?;
        match answer.value {
            Kept::Digest(digest) => Ok(Indexed {
                index: answer.index,
                value: digest,
            }),
            Kept::Body(_) => Err(Error::Decode {
                url: url.to_string(),
                reason: "no digest of the answer".into(),
            }),
        }
    }

    async fn get_kept(
        &self,
        path: &str,
        query: &[(&str, &str)],
        index: u64,
        wait: Duration,
        keep: Keep,
    ) -> Result<(Url, Indexed<Kept>), Error> {
        let (at, mut url) = self.url_at(path);
        let mut params: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        params.extend(self.read_params(path));
        if index > 0 {
            params.push(("index", index.to_string()));
            params.push(("wait", format!("{}ms", wait.as_millis())));
        }
        append_query(&mut url, &params);
        // Consul adds up to wait/16 of jitter to a blocking query; allow for it and for a slow answer.
        let timeout = wait + wait / 16 + Duration::from_secs(5);
        let answer = self
            .send(at, Method::GET, url.clone(), None, timeout, keep)
            .await?;
        let index = answer
            .headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Decode {
                url: url.to_string(),
                reason: "no X-Consul-Index header".into(),
            })?;
        Ok((
            url,
            Indexed {
                index,
                value: answer.body,
            },
        ))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (at, mut url) = self.url_at(path);
        append_query(&mut url, &self.read_params(path));
        let answer = self
            .send(
                at,
                Method::GET,
                url.clone(),
                None,
                Duration::from_secs(10),
                Keep::Body,
            )
            .await?;
        decode(&url, &answer.body.into_body())
    }

    pub(crate) async fn put<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<(), Error> {
        self.put_with_query(path, &[], body).await
    }

    /// Like [`Client::put`], with query parameters appended to `path`.
    pub(crate) async fn put_with_query<B: Serialize>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(), Error> {
        let (at, mut url) = self.url_at(path);
        let params: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        append_query(&mut url, &params);
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Decode {
                url: url.to_string(),
                reason: format!("cannot encode the request body: {e}"),
            })?;
        self.send(at, Method::PUT, url, body, Duration::from_secs(10), Keep::Body)
            .await?;
        Ok(())
    }

    /// One request to the address at index `at`; moves to the next address when the answer says
    /// this one is not usable now.
    async fn send(
        &self,
        at: usize,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
        keep: Keep,
    ) -> Result<Answer, Error> {
        let result = self.exchange(method, &url, body, timeout, keep).await;
        if let Err(error) = &result {
            if moves_on(error) {
                self.rotate(at);
            }
        }
        result
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
        keep: Keep,
    ) -> Result<Answer, Error> {
        let method_name = if method == Method::PUT { "PUT" } else { "GET" };
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::InvalidAddress {
                address: url.to_string(),
                reason: e.to_string(),
            })?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(USER_AGENT, concat!("berth-consul/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.inner.token {
            request = request.header("X-Consul-Token", token.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::InvalidAddress {
                address: url.to_string(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let response = self
                .inner
                .http
                .request(request)
                .await
                .map_err(|e| self.transport_error(url, &e))?;
            let (parts, body) = response.into_parts();
            let fail = |e: hyper::Error| self.transport_error(url, &e);
            if keep == Keep::Digest && parts.status.is_success() {
                let mut digest = xxhash_rust::xxh3::Xxh3::new();
                each_chunk(body, |data| digest.update(data)).await.map_err(fail)?;
                return Ok::<_, Error>((parts, Kept::Digest(digest.digest128())));
            }
            // Gathered as it arrives, so that each of hyper's read buffers is free again for the
            // next read instead of being held until the answer is complete.
            let recycle = keep == Keep::Recycled && parts.status.is_success();
            let mut gathered = self.inner.last_answers.buffer_for(url.path(), recycle);
            each_chunk(body, |data| gathered.extend_from_slice(data))
                .await
                .map_err(fail)?;
            let gathered = gathered.freeze();
            self.inner.last_answers.remember(url.path(), &gathered, recycle);
            Ok::<_, Error>((parts, Kept::Body(gathered)))
        };
        let (parts, body) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Unreachable {
                    url: url.to_string(),
                    reason: format!("timed out after {timeout:?}"),
                })??;
        if !parts.status.is_success() {
            let body = body.into_body();
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if parts.status == http::StatusCode::BAD_REQUEST
                && text.contains("HTTP request to an HTTPS server")
            {
                let host_port = match (url.host_str(), url.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (Some(host), None) => host.to_string(),
                    (None, _) => String::new(),
                };
                return Err(Error::InvalidAddress {
                    address: format!("{}://{host_port}", url.scheme()),
                    reason: format!(
                        "Consul serves https on this port: write the address as https://{host_port} \
                         (or set {}=true)",
                        env::HTTP_SSL
                    ),
                });
            }
            return Err(Error::Status {
                method: method_name,
                url: url.to_string(),
                status: parts.status.as_u16(),
                body: text,
            });
        }
        Ok(Answer {
            headers: parts.headers,
            body,
        })
    }

    /// A transport failure as an [`Error`]: a TLS failure explained, or the whole cause chain
    /// (hyper's own message alone says only "client error (Connect)").
    fn transport_error(&self, url: &Url, error: &(dyn std::error::Error + 'static)) -> Error {
        if let Some(tls) = find_rustls_error(error) {
            return Error::Tls {
                url: url.to_string(),
                reason: crate::tls::explain(tls, &self.inner.tls),
            };
        }
        let mut reason = String::new();
        let mut next = Some(error);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !reason.ends_with(&text) {
                if !reason.is_empty() {
                    reason.push_str(": ");
                }
                reason.push_str(&text);
            }
            next = cause_of(cause);
        }
        Error::Unreachable {
            url: url.to_string(),
            reason,
        }
    }
}

/// Whether the next request should go to the next address after `error`.
fn moves_on(error: &Error) -> bool {
    error.is_transient() || matches!(error, Error::InvalidAddress { .. })
}

fn append_query(url: &mut Url, params: &[(&str, String)]) {
    if params.is_empty() {
        return;
    }
    let mut pairs = url.query_pairs_mut();
    for (key, value) in params {
        if value.is_empty() {
            // Consul's flags (`?stale`, `?consistent`) are written without a value.
            pairs.append_key_only(key);
        } else {
            pairs.append_pair(key, value);
        }
    }
}

/// The next error in a cause chain. An `io::Error` wrapping another error reports that error's
/// *source* as its own, skipping the wrapped error itself; step into it instead.
fn cause_of<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner);
        }
    }
    error.source()
}

fn find_rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = cause_of(cause);
    }
    None
}

fn read_token_file(path: &std::path::Path) -> Result<String, Error> {
    let file_error = |reason: String| Error::File {
        setting: env::HTTP_TOKEN_FILE,
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot read the file: {e}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(file_error("the file is empty".into()));
    }
    Ok(token.to_string())
}

/// An answer kept whole, as its body.
fn with_body((url, answer): (Url, Indexed<Kept>)) -> (Url, Indexed<Bytes>) {
    let body = Indexed {
        index: answer.index,
        value: answer.value.into_body(),
    };
    (url, body)
}

/// Hands every chunk of `body` to `take`, as it arrives.
async fn each_chunk(
    mut body: hyper::body::Incoming,
    mut take: impl FnMut(&[u8]),
) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            take(data);
        }
    }
    Ok(())
}

pub(crate) fn decode<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, Error> {
    decode_str(url.as_str(), body)
}

/// [`decode`] for a URL kept as text.
pub(crate) fn decode_str<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Bounds connecting (TCP and the TLS handshake) in time; hyper's connector bounds TCP only.
#[derive(Clone)]
struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {timeout:?}"),
                )) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn client(addresses: &[&str]) -> Client {
        Client::from_config(Config {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Config::default()
        })
        .expect("valid config")
    }

    /// An address nothing listens on (bound, then closed).
    fn closed_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        format!("127.0.0.1:{port}")
    }

    #[test]
    fn new_keeps_taking_one_address_and_a_token() {
        let c = Client::new("127.0.0.1:8500", Some("t".into())).expect("valid");
        assert_eq!(c.address(), "http://127.0.0.1:8500");
        assert_eq!(
            Client::new("https://c.example:8501", None)
                .expect("valid")
                .address(),
            "https://c.example:8501"
        );
        assert!(matches!(
            Client::new("ftp://x", None),
            Err(Error::InvalidAddress { .. })
        ));
    }

    #[test]
    fn read_parameters_go_on_catalog_reads_only() {
        let c = Client::from_config(Config {
            datacenter: Some("dc2".into()),
            read_mode: ReadMode::Stale,
            ..Config::default()
        })
        .expect("valid");
        let (_, mut url) = c.url_at("/v1/health/service/web");
        append_query(&mut url, &c.read_params("/v1/health/service/web"));
        assert_eq!(url.query(), Some("dc=dc2&stale"));
        assert!(c.read_params("/v1/agent/services").is_empty());
        let c = Client::from_config(Config {
            read_mode: ReadMode::Consistent,
            ..Config::default()
        })
        .expect("valid");
        assert_eq!(
            c.read_params("/v1/catalog/services"),
            [("consistent", String::new())]
        );
    }

    #[test]
    fn token_file_is_read_once_and_must_hold_a_token() {
        let dir = std::env::temp_dir().join(format!("berth-consul-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("token");
        std::fs::write(&good, "  abc-123\n").expect("write");
        assert_eq!(read_token_file(&good).expect("valid"), "abc-123");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let config = |path: &std::path::Path| Config {
            token_file: Some(path.to_path_buf()),
            ..Config::default()
        };
        let err = Client::from_config(config(&empty)).expect_err("empty");
        assert_eq!(
            err.to_string(),
            format!("CONSUL_HTTP_TOKEN_FILE {}: the file is empty", empty.display())
        );
        let err = Client::from_config(config(&dir.join("missing"))).expect_err("missing");
        assert!(err.to_string().contains("cannot read the file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_refused_connection_moves_to_the_next_address() {
        let first = closed_address();
        let second = closed_address();
        let c = client(&[&first, &second]);
        assert_eq!(
            c.addresses(),
            [format!("http://{first}"), format!("http://{second}")]
        );
        assert_eq!(c.address(), format!("http://{first}"));
        let err = c
            .get::<String>("/v1/status/leader")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(c.address(), format!("http://{second}"));
        // Clones share the current address; the list wraps around.
        let clone = c.clone();
        clone
            .get::<String>("/v1/status/leader")
            .await
            .expect_err("nothing listens");
        assert_eq!(c.address(), format!("http://{first}"));
    }

    #[tokio::test]
    async fn an_error_status_moves_on_only_when_transient() {
        // A server answering 500 to the first request and 404 to the second.
        let answers = ["500 Internal Server Error", "404 Not Found"]
            .map(|status| answer(status, "", b"no cluster leader"))
            .to_vec();
        let address = answering(answers).await;
        let c = client(&[&address, &address]);
        let err = c.get::<String>("/v1/status/leader").await.expect_err("500");
        assert!(matches!(err, Error::Status { status: 500, .. }), "{err}");
        assert!(err.is_transient());
        assert_eq!(c.current(), 1);
        let err = c.get::<String>("/v1/status/leader").await.expect_err("404");
        assert!(matches!(err, Error::Status { status: 404, .. }), "{err}");
        assert_eq!(c.current(), 1, "a 404 is about the request, not the server");
    }

    #[tokio::test]
    async fn a_digest_kept_as_the_answer_arrives_equals_the_digest_of_the_whole_answer() {
        // A body larger than any one read, sent in chunks of odd sizes (twice); then a 403 whose
        // text must still reach the error.
        let body: String = (0..40_000).map(|i| format!("{{\"n\":{i}}},")).collect();
        let mut chunked = String::from(
            "HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        );
        let mut rest = body.as_str();
        let mut size = 1;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
            rest = after;
            size = size * 7 % 65_521 + 1;
        }
        chunked.push_str("0\r\n\r\n");
        let denied = answer("403 Forbidden", "", b"Permission denied");
        let address = answering(vec![chunked.clone().into_bytes(), chunked.into_bytes(), denied]).await;
        let c = client(&[&address]);
        let whole = c
            .get_blocking_raw("/v1/catalog/node/n1", &[], 0, Duration::ZERO)
            .await
            .expect("whole answer");
        assert_eq!(whole.1.value, body.as_bytes());
        let digest = c.get_digest("/v1/catalog/node/n1").await.expect("digest");
        assert_eq!(digest.index, 42);
        assert_eq!(digest.value, xxhash_rust::xxh3::xxh3_128(body.as_bytes()));
        let err = c.get_digest("/v1/catalog/node/n1").await.expect_err("403");
        assert!(
            matches!(&err, Error::Status { status: 403, body, .. } if body == "Permission denied"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_recycled_answer_is_gathered_into_a_buffer_nobody_holds_any_more() {
        // Each answer its own bytes, a little longer than the last.
        let answers = (0..4u8)
            .map(|round| {
                answer(
                    "200 OK",
                    "X-Consul-Index: 7\r\n",
                    &vec![b'a' + round; 100_000 + usize::from(round)],
                )
            })
            .collect();
        let address = answering(answers).await;
        let c = client(&[&address]);
        let read = |c: Client| async move {
            let (_, answer) = c
                .get_recycled_raw("/v1/catalog/services", 0, Duration::ZERO)
                .await
                .expect("an answer");
            answer.value
        };
        let first = read(c.clone()).await;
        let first_at = first.as_ptr();
        // While the first answer is held, the second goes into a buffer of its own.
        let second = read(c.clone()).await;
        assert_ne!(second.as_ptr(), first_at);
        // Once nobody holds the first, the third is gathered into its buffer.
        drop(first);
        // Memory freed by the first would go to this, not to the third answer.
        let squatter = vec![1u8; 100_003];
        let third = read(c.clone()).await;
        assert_eq!(third.as_ptr(), first_at);
        assert_eq!(third.len(), 100_002);
        assert!(third.iter().all(|&b| b == b'c'), "the answer, not the old bytes");
        // A buffer still held is never written over.
        let fourth = read(c.clone()).await;
        assert!(fourth.as_ptr() != second.as_ptr() && fourth.as_ptr() != third.as_ptr());
        assert!(second.iter().all(|&b| b == b'b'));
        assert!(third.iter().all(|&b| b == b'c'));
        assert!(fourth.iter().all(|&b| b == b'd'));
        drop(squatter);
    }

    /// A whole HTTP/1.1 answer with `status`, the extra `headers` (each ending in CRLF) and
    /// `body`, after which the connection closes.
    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    /// A server on 127.0.0.1 that answers its n-th connection with `answers[n]` (written as is,
    /// after reading the request) and closes it; its address.
    async fn answering(answers: Vec<Vec<u8>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(&answer).await;
            }
        });
        address
    }
}
