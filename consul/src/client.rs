//! The HTTP plumbing shared by every endpoint: base address, ACL token, blocking-query parameters.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::Error;

/// A value read from Consul together with the `X-Consul-Index` it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed<T> {
    pub index: u64,
    pub value: T,
}

/// A handle on one Consul agent's HTTP API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for the Consul agent at `address` (for example `http://127.0.0.1:8500`; a bare
    /// `host:port` is taken as http). `token` is sent as `X-Consul-Token` when set.
    pub fn new(address: &str, token: Option<String>) -> Result<Client, Error> {
        let with_scheme = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let base = Url::parse(&with_scheme).map_err(|e| Error::InvalidAddress {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(Error::InvalidAddress {
                address: address.to_string(),
                reason: format!("scheme {:?} is not http or https", base.scheme()),
            });
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(Error::InvalidAddress {
                address: address.to_string(),
                reason: "no host".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| Error::InvalidAddress {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Client { http, base, token })
    }

    /// The address this client talks to, for logs.
    pub fn address(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    pub(crate) fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.header("X-Consul-Token", token),
            None => builder,
        }
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
        let mut url = self.url(path);
        let mut params: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if index > 0 {
            params.push(("index", index.to_string()));
            params.push(("wait", format!("{}ms", wait.as_millis())));
        }
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        // Consul adds up to wait/16 of jitter to a blocking query; allow for it and for a slow answer.
        let timeout = wait + wait / 16 + Duration::from_secs(5);
        let response = self
            .send(Method::GET, url.clone(), None::<&()>, Some(timeout))
            .await?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Decode {
                url: url.to_string(),
                reason: "no X-Consul-Index header".into(),
            })?;
        let value = decode(&url, response).await?;
        Ok(Indexed { index, value })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let url = self.url(path);
        let response = self
            .send(
                Method::GET,
                url.clone(),
                None::<&()>,
                Some(Duration::from_secs(10)),
            )
            .await?;
        decode(&url, response).await
    }

    pub(crate) async fn put<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<(), Error> {
        let url = self.url(path);
        self.send(Method::PUT, url, body, Some(Duration::from_secs(10)))
            .await?;
        Ok(())
    }

    /// Like [`Client::put`], with query parameters appended to `path`.
    pub(crate) async fn put_with_query<B: Serialize>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(), Error> {
        let mut url = self.url(path);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        self.send(Method::PUT, url, body, Some(Duration::from_secs(10)))
            .await?;
        Ok(())
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, Error> {
        let method_name = if method == Method::PUT { "PUT" } else { "GET" };
        let mut builder = self.request(method, url.clone());
        if let Some(body) = body {
            builder = builder.json(body);
        }
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        let response = builder
            .send()
            .await
            .map_err(|source| Error::unreachable(&url, &source))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::Status {
                method: method_name,
                url: url.to_string(),
                status: status.as_u16(),
                body: body.trim().to_string(),
            });
        }
        Ok(response)
    }
}

async fn decode<T: DeserializeOwned>(url: &Url, response: reqwest::Response) -> Result<T, Error> {
    let bytes = response
        .bytes()
        .await
        .map_err(|source| Error::unreachable(url, &source))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}
