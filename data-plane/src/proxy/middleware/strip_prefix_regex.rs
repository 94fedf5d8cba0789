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

use super::strip_prefix::{strip_url_prefix, X_FORWARDED_PREFIX};
use super::{compile_bytes_regex, reply, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::path::leading_slash_bytes;

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
        let header = HeaderValue::from_bytes(prefix).ok();
        let Some(stripped) = strip_url_prefix(&url, prefix.len(), leading_slash_bytes) else {
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
    use crate::proxy::middleware::testing::step_get;

    fn strip(regexps: &[&str], path: &str) -> (Option<u16>, String, Option<String>) {
        let mw = StripPrefixRegex::compile(&berth_proto::v1::StripPrefixRegex {
            regexps: regexps.iter().map(|r| r.to_string()).collect(),
        })
        .expect("compiles");
        let after = step_get(path, |ctx, head| mw.request(ctx, head));
        (
            after.status,
            after.ctx.request_uri(),
            after.header(&X_FORWARDED_PREFIX),
        )
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
