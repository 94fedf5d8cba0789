//! `redirect_regex`: redirects when the request's URL matches a regexp.
//!
//! For: Traefik's RedirectRegex: the URL compared is `http://<Host as sent><path>?<query>` (path
//! and query as they stand after the middlewares before it), rewritten with the replacement
//! (`$1`, `${name}`), and answered with a redirect when that changed it.
//! Not for: scheme-only redirects (see `redirect_scheme`).

use http::request::Parts;

use super::redirect::Redirect;
use super::{compile_regex, Flow};
use crate::proxy::context::RequestContext;

#[derive(Debug)]
pub(crate) struct RedirectRegex {
    redirect: Redirect,
}

impl RedirectRegex {
    pub(crate) fn compile(config: &berth_proto::v1::RedirectRegex) -> Result<Self, String> {
        Ok(Self {
            redirect: Redirect::new(
                compile_regex(&config.regexp)?,
                config.replacement.clone(),
                config.permanent,
            ),
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let scheme = if ctx.entrypoint.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}{}", ctx.host_text(), ctx.request_uri());
        match self.redirect.answer(&url, &head.method) {
            Some(response) => Flow::Answer(response),
            None => Flow::Next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{head, redirect_outcome};

    fn run(
        re: &str,
        to: &str,
        permanent: bool,
        method: &str,
        url: &str,
        host: &str,
    ) -> (u16, Option<String>) {
        let mw = RedirectRegex::compile(&berth_proto::v1::RedirectRegex {
            regexp: re.into(),
            replacement: to.into(),
            permanent,
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test(method, url, host, "10.0.0.1:1");
        redirect_outcome(mw.request(&mut ctx, &mut head(method, url)))
    }

    #[test]
    fn traefik_cases() {
        let loc = |s: &str| Some(s.to_owned());
        assert_eq!(
            run(
                r"^(?:http?:\/\/)(foo)(\.com)(:\d+)(.*)$",
                "https://${1}bar$2:443$4",
                false,
                "GET",
                "/",
                "foo.com:80"
            ),
            (302, loc("https://foobar.com:443/"))
        );
        assert_eq!(
            run(
                r"^(?:http?:\/\/)(foo)(\.com)(:\d+)(.*)$",
                "https://${1}bar$2:443$4",
                true,
                "GET",
                "/",
                "foo.com:80"
            ),
            (301, loc("https://foobar.com:443/"))
        );
        assert_eq!(
            run(
                r"^http://foo.com(.*)",
                "https://bar.com$1",
                false,
                "GET",
                "/path?q=1",
                "foo.com"
            ),
            (302, loc("https://bar.com/path?q=1"))
        );
        assert_eq!(
            run(
                r"^http://foo.com(.*)",
                "https://bar.com$1",
                false,
                "POST",
                "/path",
                "foo.com"
            ),
            (307, loc("https://bar.com/path"))
        );
        assert_eq!(
            run(
                r"^http://foo.com(.*)",
                "https://bar.com$1",
                false,
                "GET",
                "/",
                "other.com"
            ),
            (200, None)
        );
        assert_eq!(run(r"(.*)", "$1", false, "GET", "/same", "foo.com"), (200, None));
    }
}
