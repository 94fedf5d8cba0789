//! `add_prefix`: puts a prefix in front of the path.
//!
//! For: Traefik's AddPrefix: the prefix is prepended to the decoded path (and to the raw form
//! when there is one), a leading `/` added if the result lacks one. The prefix is text, so
//! characters a path cannot carry are escaped on the way out (Go's rules).
//! Not for: removing anything (see `strip_prefix`).

use http::request::Parts;

use super::Flow;
use crate::proxy::context::RequestContext;
use crate::proxy::path::{leading_slash_bytes, UrlPath};

#[derive(Debug)]
pub(crate) struct AddPrefix {
    prefix: String,
}

impl AddPrefix {
    pub(crate) fn compile(config: &berth_proto::v1::AddPrefix) -> Result<Self, String> {
        if config.prefix.is_empty() {
            // Traefik refuses the middleware too.
            return Err("prefix cannot be empty".into());
        }
        Ok(Self {
            prefix: config.prefix.clone(),
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, _head: &mut Parts) -> Flow {
        let Ok(url) = ctx.url_path() else {
            return Flow::Next;
        };
        let mut path = self.prefix.as_bytes().to_vec();
        path.extend_from_slice(&url.path);
        let raw = if url.raw.is_empty() {
            String::new()
        } else {
            String::from_utf8_lossy(&leading_slash_bytes(
                format!("{}{}", self.prefix, url.raw).as_bytes(),
            ))
            .into_owned()
        };
        let url = UrlPath {
            path: leading_slash_bytes(&path),
            raw,
        };
        ctx.set_url_path(url);
        Flow::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;

    fn add(prefix: &str, path: &str) -> String {
        let mw = AddPrefix::compile(&berth_proto::v1::AddPrefix {
            prefix: prefix.into(),
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test("GET", path, "h", "10.0.0.1:1");
        assert!(matches!(mw.request(&mut ctx, &mut head("GET", path)), Flow::Next));
        ctx.request_uri()
    }

    #[test]
    fn traefik_cases() {
        assert_eq!(add("/foo", "/bar"), "/foo/bar");
        assert_eq!(add("/foo", "/"), "/foo/");
        assert_eq!(add("foo", "/bar"), "/foo/bar");
        assert_eq!(add("/foo", "/bar%2Fbaz?q=1"), "/foo/bar%2Fbaz?q=1");
        assert_eq!(add("/a b", "/c"), "/a%20b/c");
        assert!(AddPrefix::compile(&berth_proto::v1::AddPrefix::default()).is_err());
    }
}
