//! `headers`: sets request headers before forwarding and response headers before answering.
//!
//! For: Traefik's Headers middleware, custom headers part: each request header is set (replacing
//! every value) or, when its value is empty, removed; `Host` sets the host the backend gets;
//! `X-Forwarded-For` set to "" (spelled exactly so, as Traefik compares it) means no
//! `X-Forwarded-For` at all. Response headers likewise, on every response that passes back
//! through this middleware: the backend's, the proxy's errors, and answers of middlewares after
//! it in the chain.
//! Not for: CORS or the security headers of Traefik's Headers (not in the route model).

use http::request::Parts;
use http::{response, HeaderName, HeaderValue};

use super::Flow;
use crate::http1::wire::KeptHead;
use crate::proxy::context::{ForwardedFor, RequestContext};

/// One header to set (`Some`) or remove (`None`).
#[derive(Debug)]
struct Change {
    name: HeaderName,
    value: Option<HeaderValue>,
}

#[derive(Debug)]
enum RequestChange {
    Header(Change),
    /// `Host`: replaces the host passed to the backend.
    Host(HeaderValue),
    /// `X-Forwarded-For: ""`: no X-Forwarded-For.
    NoForwardedFor,
}

#[derive(Debug)]
pub(crate) struct Headers {
    request: Box<[RequestChange]>,
    response: Box<[Change]>,
}

fn change(name: &str, value: &str) -> Result<Change, String> {
    let header =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    let value = if value.is_empty() {
        None
    } else {
        Some(
            HeaderValue::from_str(value)
                .map_err(|_| format!("header {name}: {value:?} is not a header value"))?,
        )
    };
    Ok(Change { name: header, value })
}

impl Headers {
    pub(crate) fn compile(config: &berth_proto::v1::Headers) -> Result<Self, String> {
        let mut request = Vec::with_capacity(config.request.len());
        for h in &config.request {
            if h.value.is_empty() && h.name == "X-Forwarded-For" {
                request.push(RequestChange::NoForwardedFor);
            } else if !h.value.is_empty() && h.name.eq_ignore_ascii_case("host") {
                let value = HeaderValue::from_str(&h.value)
                    .map_err(|_| format!("Host: {:?} is not a header value", h.value))?;
                request.push(RequestChange::Host(value));
            } else {
                request.push(RequestChange::Header(change(&h.name, &h.value)?));
            }
        }
        let response = config
            .response
            .iter()
            .map(|h| change(&h.name, &h.value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            request: request.into_boxed_slice(),
            response: response.into_boxed_slice(),
        })
    }

    /// The names of the request fields the request changes touch; `None` when one changes more
    /// than a field (`Host`, the entrypoint's `X-Forwarded-For`).
    pub(crate) fn request_fields(&self) -> Option<Vec<HeaderName>> {
        self.request
            .iter()
            .map(|c| match c {
                RequestChange::Header(Change { name, .. }) => Some(name.clone()),
                RequestChange::Host(_) | RequestChange::NoForwardedFor => None,
            })
            .collect()
    }

    /// Whether the response changes may be made to a backend's head kept as it came: none is to
    /// a field its writer decides (`KeptHead::manages`).
    pub(crate) fn keeps_heads(&self) -> bool {
        !self.response.iter().any(|c| KeptHead::manages(&c.name))
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        for change in self.request.iter() {
            match change {
                RequestChange::Header(Change { name, value: Some(v) }) => {
                    head.headers.insert(name.clone(), v.clone());
                }
                RequestChange::Header(Change { name, value: None }) => {
                    head.headers.remove(name);
                }
                RequestChange::Host(host) => ctx.host = host.clone(),
                RequestChange::NoForwardedFor => {
                    head.headers.remove(HeaderName::from_static("x-forwarded-for"));
                    ctx.forwarded_for = ForwardedFor::Omit;
                }
            }
        }
        Flow::Next
    }

    /// `kept`: the backend's head as it came (its fields not in `head`); a header set or removed
    /// loses its values there too.
    pub(crate) fn response(&self, head: &mut response::Parts, mut kept: Option<&mut KeptHead>) {
        for Change { name, value } in self.response.iter() {
            if let Some(kept) = kept.as_deref_mut() {
                kept.remove(name);
            }
            match value {
                Some(v) => {
                    head.headers.insert(name.clone(), v.clone());
                }
                None => {
                    head.headers.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;
    use berth_proto::v1::HeaderValue as H;

    fn h(name: &str, value: &str) -> H {
        H {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn request_headers() {
        let mw = Headers::compile(&berth_proto::v1::Headers {
            request: vec![
                h("X-Custom", "one"),
                h("X-Gone", ""),
                h("host", "backend.example"),
                h("X-Forwarded-For", ""),
            ],
            response: vec![],
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test("GET", "/", "front.example", "10.0.0.1:1");
        let mut head = head("GET", "/");
        head.headers.append("x-custom", HeaderValue::from_static("a"));
        head.headers.append("x-custom", HeaderValue::from_static("b"));
        head.headers.insert("x-gone", HeaderValue::from_static("x"));
        head.headers
            .insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        assert!(matches!(mw.request(&mut ctx, &mut head), Flow::Next));
        assert_eq!(
            head.headers.get_all("x-custom").iter().collect::<Vec<_>>(),
            ["one"]
        );
        assert!(!head.headers.contains_key("x-gone"));
        assert!(!head.headers.contains_key("x-forwarded-for"));
        assert_eq!(ctx.host, "backend.example");
        assert_eq!(ctx.forwarded_for, ForwardedFor::Omit);
    }

    #[test]
    fn lower_case_x_forwarded_for_only_removes_the_header() {
        let mw = Headers::compile(&berth_proto::v1::Headers {
            request: vec![h("x-forwarded-for", ""), h("Host", "")],
            response: vec![],
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test("GET", "/", "front.example", "10.0.0.1:1");
        let mut head = head("GET", "/");
        head.headers
            .insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        mw.request(&mut ctx, &mut head);
        assert!(!head.headers.contains_key("x-forwarded-for"));
        assert_eq!(ctx.forwarded_for, ForwardedFor::Append);
        assert_eq!(ctx.host, "front.example", "an empty Host changes nothing");
    }

    #[test]
    fn response_headers() {
        let mw = Headers::compile(&berth_proto::v1::Headers {
            request: vec![],
            response: vec![h("X-Frame-Options", "DENY"), h("Server", "")],
        })
        .expect("compiles");
        let (mut parts, ()) = http::Response::builder()
            .header("server", "backend")
            .header("x-frame-options", "SAMEORIGIN")
            .body(())
            .unwrap()
            .into_parts();
        mw.response(&mut parts, None);
        assert_eq!(parts.headers["x-frame-options"], "DENY");
        assert!(!parts.headers.contains_key("server"));
    }

    #[test]
    fn bad_names_are_refused() {
        let err = Headers::compile(&berth_proto::v1::Headers {
            request: vec![h("bad name", "x")],
            response: vec![],
        })
        .expect_err("bad name");
        assert!(err.contains("bad name"), "{err}");
    }
}
