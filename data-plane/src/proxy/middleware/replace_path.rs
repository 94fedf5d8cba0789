//! `replace_path`: replaces the whole path.
//!
//! For: Traefik's ReplacePath: the current path (raw form) is added to `X-Replaced-Path` and the
//! configured path, taken as raw, becomes the path; a configured path with a bad `%` escape is
//! answered with 500 and Go's error text, as Traefik does.
//! Not for: rewriting part of a path (see `replace_path_regex`).

use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{reply, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::path::UrlPath;

pub(crate) const X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

#[derive(Debug)]
pub(crate) struct ReplacePath {
    /// `Err`: the path's escape error, answered with 500 at request time like Traefik.
    path: Result<UrlPath, String>,
}

impl ReplacePath {
    pub(crate) fn compile(config: &berth_proto::v1::ReplacePath) -> Result<Self, String> {
        let path = match crate::proxy::path::decode(&config.path) {
            Ok(decoded) => Ok(UrlPath {
                path: decoded.into_owned(),
                raw: config.path.clone(),
            }),
            Err(e) => Err(e.to_string()),
        };
        Ok(Self { path })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let current = match ctx.url_path() {
            Ok(url) => url.current().into_owned(),
            Err(_) => ctx.path().to_owned(),
        };
        if let Ok(value) = HeaderValue::from_str(&current) {
            head.headers.append(X_REPLACED_PATH, value);
        }
        match &self.path {
            Ok(url) => {
                ctx.set_url_path(url.clone());
                Flow::Next
            }
            Err(text) => Flow::Answer(reply::http_error(StatusCode::INTERNAL_SERVER_ERROR, text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head};

    fn replace(with: &str, path: &str) -> (Flow, RequestContext, Parts) {
        let mw = ReplacePath::compile(&berth_proto::v1::ReplacePath { path: with.into() }).expect("compiles");
        let mut ctx = RequestContext::for_test("GET", path, "h", "10.0.0.1:1");
        let mut head = head("GET", path);
        let flow = mw.request(&mut ctx, &mut head);
        (flow, ctx, head)
    }

    #[test]
    fn replaces_and_keeps_the_old_path() {
        let (flow, ctx, head) = replace("/foo", "/bar?x=1");
        assert!(matches!(flow, Flow::Next));
        assert_eq!(ctx.request_uri(), "/foo?x=1");
        assert_eq!(head.headers[X_REPLACED_PATH], "/bar");

        let (_, ctx, head) = replace("/foo%2Fbar", "/a%2Fb");
        assert_eq!(ctx.path(), "/foo%2Fbar");
        assert_eq!(head.headers[X_REPLACED_PATH], "/a%2Fb");

        let (_, ctx, _) = replace("/foo bar", "/");
        assert_eq!(ctx.path(), "/foo%20bar");
    }

    #[tokio::test]
    async fn bad_escape_is_a_500() {
        let (flow, _, _) = replace("/foo%zz", "/");
        let Flow::Answer(r) = flow else {
            panic!("expected an answer")
        };
        assert_eq!(r.status(), 500);
        assert_eq!(body_text(r).await, "invalid URL escape \"%zz\"\n");
    }
}
