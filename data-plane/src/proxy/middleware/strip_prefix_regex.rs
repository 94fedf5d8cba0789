//! `strip_prefix_regex`: removes the part of the path the first matching regexp finds at its
//! start.
//!
//! For: Traefik's StripPrefixRegex, exactly: each regexp is tried in order against the decoded
//! path; the first whose (leftmost) match is non-empty and begins the path wins; that text is
//! added to `X-Forwarded-Prefix` and removed (from the raw form too), the rest gets a leading `/`
//! unless empty, and a rest that sanitizing would change is answered with 400.
//! Not for: literal prefixes (see `strip_prefix`).

use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::strip_prefix::X_FORWARDED_PREFIX;
use super::{compile_bytes_regex, reply, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::path::{encoded_prefix_len, leading_slash_bytes, UrlPath};

#[derive(Debug)]
pub(crate) struct StripPrefixRegex {
    regexps: Box<[regex::bytes::Regex]>,
}

impl StripPrefixRegex {
    pub(crate) fn compile(config: &berth_proto::v1::StripPrefixRegex) -> Result<Self, String> {
        let regexps = config
            .regexps
            .iter()
            .map(|r| compile_bytes_regex(r.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            regexps: regexps.into_boxed_slice(),
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let Ok(url) = ctx.url_path() else {
            return Flow::Next;
        };
        let Some(prefix) = self.regexps.iter().find_map(|re| {
            let found = re.find(&url.path)?;
            let text = found.as_bytes();
            (!text.is_empty() && url.path.starts_with(text)).then_some(text)
        }) else {
            return Flow::Next;
        };
        let path = leading_slash_bytes(&url.path[prefix.len()..]);
        let raw = if url.raw.is_empty() {
            String::new()
        } else {
            let rest = url
                .raw
                .get(encoded_prefix_len(&url.raw, prefix.len())..)
                .unwrap_or("");
            String::from_utf8_lossy(&leading_slash_bytes(rest.as_bytes())).into_owned()
        };
        let header = HeaderValue::from_bytes(prefix).ok();
        let Some(stripped) = (UrlPath { path, raw }).sanitized() else {
            return Flow::Answer(reply::http_error(StatusCode::BAD_REQUEST, "Bad Request"));
        };
        if let Some(value) = header {
            head.headers.append(X_FORWARDED_PREFIX, value);
        }
        ctx.set_url_path(stripped);
        Flow::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;

    fn strip(regexps: &[&str], path: &str) -> (Option<u16>, String, Option<String>) {
        let mw = StripPrefixRegex::compile(&berth_proto::v1::StripPrefixRegex {
            regexps: regexps.iter().map(|r| r.to_string()).collect(),
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test("GET", path, "h", "10.0.0.1:1");
        let mut head = head("GET", path);
        let status = match mw.request(&mut ctx, &mut head) {
            Flow::Next => None,
            Flow::Answer(r) => Some(r.status().as_u16()),
        };
        let header = head
            .headers
            .get(X_FORWARDED_PREFIX)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, ctx.request_uri(), header)
    }

    #[test]
    fn traefik_cases() {
        let re = &["/a/api/", "/b/([a-z0-9]+)/", "/c/[0-9a-z]+/[0-9]+/"];
        assert_eq!(strip(re, "/a/test"), (None, "/a/test".into(), None));
        assert_eq!(strip(re, "/a/test/"), (None, "/a/test/".into(), None));
        assert_eq!(strip(re, "/a/api/"), (None, "/".into(), Some("/a/api/".into())));
        assert_eq!(
            strip(re, "/a/api/test"),
            (None, "/test".into(), Some("/a/api/".into()))
        );
        assert_eq!(
            strip(re, "/b/api/test"),
            (None, "/test".into(), Some("/b/api/".into()))
        );
        assert_eq!(strip(re, "/b/api"), (None, "/b/api".into(), None));
        assert_eq!(
            strip(re, "/c/api/123/test3"),
            (None, "/test3".into(), Some("/c/api/123/".into()))
        );
        assert_eq!(
            strip(re, "/c/api/abc/test4"),
            (None, "/c/api/abc/test4".into(), None)
        );
        assert_eq!(strip(&["/t"], "/test"), (None, "/est".into(), Some("/t".into())));
        assert_eq!(
            strip(&["/t"], "/test/a%2Fb"),
            (None, "/est/a%2Fb".into(), Some("/t".into()))
        );
    }

    #[test]
    fn a_match_that_does_not_start_the_path_is_skipped() {
        assert_eq!(strip(&["api"], "/x/api/y"), (None, "/x/api/y".into(), None));
        assert_eq!(
            strip(&["api", "^/x"], "/x/api"),
            (None, "/api".into(), Some("/x".into()))
        );
    }

    #[test]
    fn dots_are_refused() {
        assert_eq!(strip(&["/api"], "/api./foo").0, Some(400));
        assert_eq!(strip(&["/api"], "/api../foo").0, Some(400));
    }
}
