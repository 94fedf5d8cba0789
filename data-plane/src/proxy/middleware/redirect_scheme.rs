//! `redirect_scheme`: redirects a request to the same URL with another scheme (and port).
//!
//! For: Traefik's RedirectScheme: the URL compared is rebuilt from the request as Traefik does
//! (scheme `http`, or what `X-Forwarded-Proto` says — this proxy sets it to `http` on entry unless
//! a middleware changed it; host and port from `Host`, the scheme's default port dropped; path and
//! query as they stand), rewritten to `<scheme>://<host><:port><path>` with the configured port
//! (none for the scheme's default), and answered with a redirect when that changed it.
//! Not for: anything but the scheme and port (see `redirect_regex`).

use http::request::Parts;

use super::redirect::Redirect;
use super::{compile_regex, Flow};
use crate::proxy::context::RequestContext;
use crate::proxy::hostport::split_host_port;

/// Traefik's pattern over a URL: scheme, host (IPv6 in brackets), port, rest.
const URL_PATTERN: &str = r"^(https?://)?(\[[0-9A-Za-z_:.]+\]|[0-9A-Za-z_._-]+)?(:[0-9]+)?(.*)$";

#[derive(Debug)]
pub(crate) struct RedirectScheme {
    redirect: Redirect,
}

impl RedirectScheme {
    pub(crate) fn compile(config: &berth_proto::v1::RedirectScheme) -> Result<Self, String> {
        if config.scheme.is_empty() {
            return Err("you must provide a target scheme".into());
        }
        let default_port = (config.scheme == "http" && config.port == "80")
            || (config.scheme == "https" && config.port == "443");
        let port = if config.port.is_empty() || default_port {
            String::new()
        } else {
            format!(":{}", config.port)
        };
        // `$` in the scheme or port would read as a group reference: escape it.
        let replacement = format!(
            "{}://${{2}}{}${{4}}",
            config.scheme.replace('$', "$$"),
            port.replace('$', "$$")
        );
        Ok(Self {
            redirect: Redirect::new(compile_regex(URL_PATTERN)?, replacement, config.permanent),
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let url = client_request_url(ctx, head);
        match self.redirect.answer(&url, &head.method) {
            Some(response) => Flow::Answer(response),
            None => Flow::Next,
        }
    }
}

/// The URL the client asked for, as Traefik's RedirectScheme reconstructs it.
fn client_request_url(ctx: &RequestContext, head: &Parts) -> String {
    let mut scheme = if ctx.entrypoint.tls { "https" } else { "http" };
    let host_header = ctx.host_text();
    let (host, port) = match split_host_port(host_header) {
        Some((host, port)) => (host, Some(port)),
        None => (host_header, None),
    };
    if let Some(proto) = head
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        if proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("ws") {
            scheme = "http";
        } else if proto.eq_ignore_ascii_case("https") || proto.eq_ignore_ascii_case("wss") {
            scheme = "https";
        }
    }
    let port = match port {
        Some("80") if scheme == "http" => None,
        Some("443") if scheme == "https" => None,
        other => other,
    };
    let uri = ctx.request_uri();
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{uri}"),
        None => format!("{scheme}://{host}{uri}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{head, redirect_outcome};
    use http::HeaderValue;

    fn run(
        scheme: &str,
        port: &str,
        permanent: bool,
        method: &str,
        url: &str,
        host: &str,
        proto: Option<&str>,
    ) -> (u16, Option<String>) {
        let mw = RedirectScheme::compile(&berth_proto::v1::RedirectScheme {
            scheme: scheme.into(),
            port: port.into(),
            permanent,
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test(method, url, host, "10.0.0.1:1");
        let mut head = head(method, url);
        if let Some(p) = proto {
            head.headers
                .insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap());
        }
        redirect_outcome(mw.request(&mut ctx, &mut head))
    }

    #[test]
    fn over_tls_the_scheme_is_https() {
        let mw = RedirectScheme::compile(&berth_proto::v1::RedirectScheme {
            scheme: "https".into(),
            port: String::new(),
            permanent: false,
        })
        .expect("compiles");
        let mut ctx = RequestContext::for_test("GET", "/x", "foo", "10.0.0.1:1");
        ctx.entrypoint.tls = true;
        assert_eq!(
            redirect_outcome(mw.request(&mut ctx, &mut head("GET", "/x"))),
            (200, None),
            "already https: no redirect"
        );
        ctx.entrypoint.tls = false;
        assert_eq!(
            redirect_outcome(mw.request(&mut ctx, &mut head("GET", "/x"))),
            (302, Some("https://foo/x".into()))
        );
    }

    #[test]
    fn traefik_cases() {
        let loc = |s: &str| Some(s.to_owned());
        assert_eq!(
            run("https", "", false, "GET", "/", "foo", None),
            (302, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo", Some("http")),
            (302, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo", Some("https")),
            (200, None)
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo:80", Some("http")),
            (302, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "8443", false, "GET", "/", "foo", None),
            (302, loc("https://foo:8443/"))
        );
        assert_eq!(
            run("https", "8443", false, "GET", "/", "foo:8000", None),
            (302, loc("https://foo:8443/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo:8000", None),
            (302, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "443", false, "GET", "/a/b?c=d", "foo", None),
            (302, loc("https://foo/a/b?c=d"))
        );
        assert_eq!(
            run("https", "", true, "GET", "/", "foo", None),
            (301, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "", true, "POST", "/", "foo", None),
            (308, loc("https://foo/"))
        );
        assert_eq!(
            run("https", "", false, "POST", "/", "foo", None),
            (307, loc("https://foo/"))
        );
        assert_eq!(
            run("http", "", false, "GET", "/", "foo", Some("https")),
            (302, loc("http://foo/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "[::1]", None),
            (302, loc("https://[::1]/"))
        );
        // Traefik drops the brackets with the port, and its pattern then finds no host.
        assert_eq!(
            run("https", "", false, "GET", "/", "[::1]:80", None),
            (302, loc("https://::1/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo", Some("bar")),
            (302, loc("https://foo/"))
        );
        assert_eq!(run("http", "80", false, "GET", "/", "foo:80", None), (200, None));
        assert_eq!(
            run("wss", "9443", false, "GET", "/", "foo", None),
            (302, loc("wss://foo:9443/"))
        );
        assert_eq!(
            run("http", "8181", false, "GET", "/", "foo:8080", None),
            (302, loc("http://foo:8181/"))
        );
        assert_eq!(
            run("https", "", false, "GET", "/", "foo", Some("wss")),
            (200, None)
        );
    }

    #[test]
    fn empty_scheme_is_refused() {
        assert!(RedirectScheme::compile(&berth_proto::v1::RedirectScheme::default()).is_err());
    }
}
