//! `replace_path_regex`: rewrites the path with a regexp and a replacement.
//!
//! For: Traefik's ReplacePathRegex: when the regexp matches the current path (raw form), that path
//! is added to `X-Replaced-Path` and every match is replaced (`$1`, `${name}` expand, as in Go);
//! the result, taken as raw, becomes the path. A result with a bad `%` escape is answered with
//! 500, one that sanitizing would change with 400.
//! Not for: replacing the path with a constant (see `replace_path`).

use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::replace_path::X_REPLACED_PATH;
use super::{compile_regex, reply, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::path::{decode, UrlPath};

#[derive(Debug)]
pub(crate) struct ReplacePathRegex {
    regexp: regex::Regex,
    replacement: String,
}

impl ReplacePathRegex {
    pub(crate) fn compile(config: &berth_proto::v1::ReplacePathRegex) -> Result<Self, String> {
        Ok(Self {
            regexp: compile_regex(config.regexp.trim())?,
            replacement: config.replacement.trim().to_owned(),
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let current = match ctx.url_path() {
            Ok(url) => url.current().into_owned(),
            Err(_) => ctx.path().to_owned(),
        };
        if !self.regexp.is_match(&current) {
            return Flow::Next;
        }
        if let Ok(value) = HeaderValue::from_str(&current) {
            head.headers.append(X_REPLACED_PATH, value);
        }
        let raw = self
            .regexp
            .replace_all(&current, self.replacement.as_str())
            .into_owned();
        let path = match decode(&raw) {
            Ok(path) => path.into_owned(),
            Err(e) => {
                return Flow::Answer(reply::http_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &e.to_string(),
                ))
            }
        };
        match (UrlPath { path, raw }).sanitized() {
            Some(url) => {
                ctx.set_url_path(url);
                Flow::Next
            }
            None => Flow::Answer(reply::http_error(StatusCode::BAD_REQUEST, "Bad Request")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::step_get;

    fn replace(regexp: &str, replacement: &str, path: &str) -> (Option<u16>, String, Option<String>) {
        let mw = ReplacePathRegex::compile(&berth_proto::v1::ReplacePathRegex {
            regexp: regexp.into(),
            replacement: replacement.into(),
        })
        .expect("compiles");
        let after = step_get(path, |ctx, head| mw.request(ctx, head));
        (
            after.status,
            after.ctx.request_uri(),
            after.header(&X_REPLACED_PATH),
        )
    }

    #[test]
    fn traefik_cases() {
        assert_eq!(
            replace("^/whoami/(.*)", "/who-am-i/$1", "/whoami/and/whoami"),
            (
                None,
                "/who-am-i/and/whoami".into(),
                Some("/whoami/and/whoami".into())
            )
        );
        assert_eq!(
            replace("/whoami", "/who-am-i", "/whoami/and/whoami"),
            (
                None,
                "/who-am-i/and/who-am-i".into(),
                Some("/whoami/and/whoami".into())
            )
        );
        assert_eq!(
            replace("^/api/v2/(.*)", "/api/$1", "/api/v2/x?q=1"),
            (None, "/api/x?q=1".into(), Some("/api/v2/x".into()))
        );
        assert_eq!(
            replace("^/(?P<a>[a-z]+)/(?P<b>[a-z]+)$", "/${b}/${a}", "/x/y"),
            (None, "/y/x".into(), Some("/x/y".into()))
        );
        assert_eq!(replace("^/nomatch", "/x", "/foo"), (None, "/foo".into(), None));
        assert_eq!(
            replace("^/aaa/(.*)", "/foo%2Fbar/$1", "/aaa/bbb"),
            (None, "/foo%2Fbar/bbb".into(), Some("/aaa/bbb".into()))
        );
    }

    #[test]
    fn bad_results() {
        assert_eq!(replace("^/a", "/%zz", "/a").0, Some(500));
        assert_eq!(replace("^/a/(.*)", "/b/../$1", "/a/c").0, Some(400));
    }
}
