//! `strip_prefix`: removes the first listed prefix the path starts with.
//!
//! For: Traefik's StripPrefix, exactly: prefixes are compared with the decoded path and tried in
//! order, the first that matches is removed (from the raw form too, counting a `%XX` as one
//! character), the rest gets a leading `/` unless empty (with `force_slash`, Traefik v2's default,
//! the rest always starts with `/`), the prefix is added to `X-Forwarded-Prefix`, and a rest that
//! sanitizing would change (`/api./x` less `/api`) is answered with 400. An empty rest goes out
//! as `/`.
//! Not for: regexps (see `strip_prefix_regex`).

use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{reply, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::path::{encoded_prefix_len, leading_slash_bytes, UrlPath};

pub(crate) const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

#[derive(Debug)]
pub(crate) struct StripPrefix {
    /// Trimmed of spaces, as Traefik does, each with its `X-Forwarded-Prefix` value.
    prefixes: Box<[(String, HeaderValue)]>,
    force_slash: bool,
}

impl StripPrefix {
    pub(crate) fn compile(config: &berth_proto::v1::StripPrefix) -> Result<Self, String> {
        let prefixes = config
            .prefixes
            .iter()
            .map(|p| {
                let p = p.trim();
                HeaderValue::from_str(p)
                    .map(|value| (p.to_owned(), value))
                    .map_err(|_| format!("prefix {p:?} cannot be sent in X-Forwarded-Prefix"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            prefixes: prefixes.into_boxed_slice(),
            force_slash: config.force_slash,
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let Ok(url) = ctx.url_path() else {
            return Flow::Next;
        };
        let Some((prefix, header)) = self
            .prefixes
            .iter()
            .find(|(p, _)| url.path.starts_with(p.as_bytes()))
        else {
            return Flow::Next;
        };
        let Some(stripped) = strip_url_prefix(&url, prefix.len(), |rest| self.rest(rest)) else {
            return Flow::Answer(reply::http_error(StatusCode::BAD_REQUEST, "Bad Request"));
        };
        head.headers.append(X_FORWARDED_PREFIX, header.clone());
        ctx.set_url_path(stripped);
        Flow::Next
    }

    fn rest(&self, rest: &[u8]) -> Vec<u8> {
        if self.force_slash {
            let mut out = vec![b'/'];
            out.extend_from_slice(rest.strip_prefix(b"/").unwrap_or(rest));
            out
        } else {
            leading_slash_bytes(rest)
        }
    }
}

/// `url` less its first `prefix_len` decoded bytes, and less the same text of its raw form (where
/// a `%XX` counts as one), each rest shaped by `rest`; `None` when sanitizing would change the
/// result. What `strip_prefix` and `strip_prefix_regex` do once they know the prefix.
pub(super) fn strip_url_prefix(
    url: &UrlPath,
    prefix_len: usize,
    rest: impl Fn(&[u8]) -> Vec<u8>,
) -> Option<UrlPath> {
    let path = rest(&url.path[prefix_len..]);
    let raw = if url.raw.is_empty() {
        String::new()
    } else {
        let raw_rest = url
            .raw
            .get(encoded_prefix_len(&url.raw, prefix_len)..)
            .unwrap_or("");
        String::from_utf8_lossy(&rest(raw_rest.as_bytes())).into_owned()
    };
    (UrlPath { path, raw }).sanitized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head, step_get};

    fn strip(prefixes: &[&str], force_slash: bool, path: &str) -> (Option<u16>, String, String, Vec<String>) {
        let mw = StripPrefix::compile(&berth_proto::v1::StripPrefix {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            force_slash,
        })
        .expect("compiles");
        let after = step_get(path, |ctx, head| mw.request(ctx, head));
        let prefixes = after.headers(&X_FORWARDED_PREFIX);
        (
            after.status,
            after.ctx.path().to_owned(),
            after.ctx.request_uri(),
            prefixes,
        )
    }

    #[test]
    fn traefik_cases() {
        // (prefixes, path) → (path after, request URI, X-Forwarded-Prefix): Traefik's own table.
        let ok =
            |prefixes: &[&str], path: &str, expected_path: &str, expected_uri: &str, header: Option<&str>| {
                let (status, after, uri, headers) = strip(prefixes, false, path);
                assert_eq!(status, None, "{path}");
                assert_eq!(after, expected_path, "{prefixes:?} {path}");
                assert_eq!(uri, expected_uri, "{prefixes:?} {path}");
                assert_eq!(headers.first().map(String::as_str), header, "{prefixes:?} {path}");
            };
        ok(&[], "/noprefixes", "/noprefixes", "/noprefixes", None);
        ok(&["/"], "/", "", "/", Some("/"));
        ok(&["/stat"], "/stat", "", "/", Some("/stat"));
        ok(&["/stat/"], "/stat/", "", "/", Some("/stat/"));
        ok(&["/stat/"], "/stat/us", "/us", "/us", Some("/stat/"));
        ok(&["/stat/"], "/status", "/status", "/status", None);
        ok(&["/stat"], "/stat/", "/", "/", Some("/stat"));
        ok(&["/stat", "/stat/us"], "/stat/us", "/us", "/us", Some("/stat"));
        ok(&["/mismatch", "/stat"], "/stat", "", "/", Some("/stat"));
        ok(&["/stat"], "/status", "/us", "/us", Some("/stat"));
        ok(&["/stat"], "/stat/a%2Fb", "/a%2Fb", "/a%2Fb", Some("/stat"));
        ok(&[" /stat "], "/stat/x?q=1", "/x", "/x?q=1", Some("/stat"));
        ok(&["/api/"], "/ap%69/a%2Fb", "/a%2Fb", "/a%2Fb", Some("/api/"));
    }

    #[test]
    fn dots_left_by_the_prefix_are_refused() {
        assert_eq!(strip(&["/api"], false, "/api./foo").0, Some(400));
        assert_eq!(strip(&["/api"], false, "/api../foo").0, Some(400));
        assert_eq!(strip(&["/api"], true, "/api../foo").0, Some(400));
        assert_eq!(strip(&["/api"], false, "/api//foo").0, Some(400));
    }

    #[test]
    fn force_slash() {
        assert_eq!(strip(&["/stat"], true, "/stat").1, "/");
        assert_eq!(strip(&["/stat/"], true, "/stat/us").1, "/us");
        assert_eq!(strip(&["/stat"], true, "/stat/us").1, "/us");
    }

    #[tokio::test]
    async fn the_400_is_go_http_error() {
        let mw = StripPrefix::compile(&berth_proto::v1::StripPrefix {
            prefixes: vec!["/api".into()],
            force_slash: false,
        })
        .unwrap();
        let mut ctx = RequestContext::for_test("GET", "/api./x", "h", "10.0.0.1:1");
        let Flow::Answer(r) = mw.request(&mut ctx, &mut head("GET", "/api./x")) else {
            panic!("expected an answer");
        };
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(body_text(r).await, "Bad Request\n");
    }
}
