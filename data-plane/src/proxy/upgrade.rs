//! HTTP/1.1 `Upgrade` (WebSocket and any other protocol): the request asks, the backend answers
//! `101 Switching Protocols`, and from then on the proxy copies bytes both ways between the two
//! connections until either side closes.
//!
//! For: recognizing an upgrade request (HTTP/1.1, `Connection` listing `upgrade`, an `Upgrade`
//! header; what `forwarded` keeps instead of stripping), taking the client connection's upgrade
//! handle out of the request before it is sent, and, on a 101, joining the two upgraded
//! connections in a task of their own. A backend that answers anything else gets its response
//! passed on as usual and the client's connection stays HTTP.
//! Not for: HTTP/2 extended CONNECT (RFC 8441, WebSocket over HTTP/2; not offered) or `CONNECT`
//! tunnels (Berth is no forward proxy). A tunnel does not hold up a graceful shutdown.

use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::forward::BackendBody;
use crate::http1::wire::has_token;

/// The protocol an HTTP/1.1 request asks to switch to, if it asks (its `Upgrade` value).
pub(crate) fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 || !lists_upgrade(headers) {
        return None;
    }
    headers.get(UPGRADE).filter(|v| !v.is_empty()).cloned()
}

/// Whether `Connection` lists the `upgrade` token.
pub(crate) fn lists_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"upgrade"))
}

/// The client connection's upgrade handle, taken out of an upgrade request's head (so it is not
/// sent on to the backend client); `None` for other requests.
pub(crate) fn take_client(head: &mut Parts) -> Option<OnUpgrade> {
    requested(head.version, &head.headers)?;
    head.extensions.remove::<OnUpgrade>()
}

/// Once the backend switched protocols, joins the client's connection to the backend's in a
/// task that copies bytes both ways. Call with the backend's 101 response, before it goes to the
/// client (hyper completes the client's upgrade once the 101 has been written).
pub(crate) fn tunnel(client: OnUpgrade, backend: &mut Response<BackendBody>) {
    debug_assert_eq!(backend.status(), StatusCode::SWITCHING_PROTOCOLS);
    let backend = hyper::upgrade::on(backend);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade not completed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(*n, HeaderValue::from_static(v));
            }
            h
        };
        let ws = headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(
            requested(Version::HTTP_11, &ws).as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(requested(Version::HTTP_2, &ws), None);
        assert_eq!(requested(Version::HTTP_10, &ws), None);
        assert_eq!(
            requested(Version::HTTP_11, &headers(&[("upgrade", "websocket")])),
            None
        );
        assert_eq!(
            requested(Version::HTTP_11, &headers(&[("connection", "upgrade")])),
            None
        );
        let split = headers(&[
            ("connection", "close"),
            ("connection", "UPGRADE"),
            ("upgrade", "h2c"),
        ]);
        assert!(requested(Version::HTTP_11, &split).is_some());
    }
}
