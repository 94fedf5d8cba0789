//! Small HTTP helpers for tests: every request goes to 127.0.0.1 and is bounded in time.

use std::time::Duration;

use anyhow::{Context, Result};

/// What a request through a proxy returned.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The demo backend's `x-demo-instance` header: which instance served the request.
    pub fn instance(&self) -> Option<&str> {
        self.headers.get("x-demo-instance").and_then(|v| v.to_str().ok())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("building an HTTP client")
}

pub async fn get_json(url: &str) -> Result<serde_json::Value> {
    get_json_via(&client(), url).await
}

/// GET `url` with `client` and read the answer as JSON; a non-2xx status is an error naming the
/// URL, the status and the body.
pub async fn get_json_via(client: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let body = get_text_via(client, url).await?;
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
}

/// GET `url` and return its body as text; a non-2xx status is an error naming the URL.
pub async fn get_text(url: &str) -> Result<String> {
    get_text_via(&client(), url).await
}

/// GET `url` with `client` and return its body; a non-2xx status is an error naming the URL, the
/// status and the body.
async fn get_text_via(client: &reqwest::Client, url: &str) -> Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "GET {url}: {status}: {body}");
    Ok(body)
}

pub async fn status(url: &str) -> Result<u16> {
    Ok(client()
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status()
        .as_u16())
}

pub async fn get_with_host(url: &str, host: &str) -> Result<Answer> {
    let response = client()
        .get(url)
        .header("host", host)
        .send()
        .await
        .with_context(|| format!("GET {url} (Host: {host})"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Answer {
        status,
        body,
        headers,
    })
}
