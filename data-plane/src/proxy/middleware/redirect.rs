//! What the two redirect middlewares share: rewrite a URL with a regexp and, when that changed
//! it, answer with a redirect to the result.
//!
//! For: Traefik's redirect core — no match or an unchanged URL lets the request through; a
//! changed one is answered with `Location` and the status Traefik picks (302, or 307 for a method
//! other than GET; 301/308 when permanent) and its reason phrase as body, without
//! `Content-Type`. A result that is not a URL (a bad `%` escape) is answered with 500, as
//! Traefik's error handler does.
//! Not for: building the URL compared (each middleware has its own; see `redirect_scheme`,
//! `redirect_regex`).

use http::header::LOCATION;
use http::{HeaderValue, Method, Response, StatusCode};

use super::reply;
use crate::proxy::path::wire;
use crate::proxy::Body;

#[derive(Debug)]
pub(crate) struct Redirect {
    regexp: regex::Regex,
    replacement: String,
    permanent: bool,
}

impl Redirect {
    pub(crate) fn new(regexp: regex::Regex, replacement: String, permanent: bool) -> Self {
        Self {
            regexp,
            replacement,
            permanent,
        }
    }

    /// The answer for a request whose URL is `url`, or `None` to let it through.
    pub(crate) fn answer(&self, url: &str, method: &Method) -> Option<Response<Body>> {
        if !self.regexp.is_match(url) {
            return None;
        }
        let target = self.regexp.replace_all(url, self.replacement.as_str());
        if target == url {
            return None;
        }
        let Some(location) = location(&target) else {
            return Some(reply::status_text(StatusCode::INTERNAL_SERVER_ERROR));
        };
        let get = method == Method::GET;
        let status = match (self.permanent, get) {
            (false, true) => StatusCode::FOUND,
            (false, false) => StatusCode::TEMPORARY_REDIRECT,
            (true, true) => StatusCode::MOVED_PERMANENTLY,
            (true, false) => StatusCode::PERMANENT_REDIRECT,
        };
        let mut response = reply::status_text(status);
        response.headers_mut().insert(LOCATION, location);
        Some(response)
    }
}

/// The `Location` for a rewritten URL, its path in the form Go's `url.URL.String()` gives it
/// (characters a path cannot carry escaped); `None` if it does not parse.
fn location(target: &str) -> Option<HeaderValue> {
    let (head, rest) = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            let path_start = after.find(['/', '?', '#']).map_or(target.len(), |p| i + 3 + p);
            target.split_at(path_start)
        }
        None => ("", target),
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    let path = wire(path).ok()?;
    if tail.bytes().any(|b| b.is_ascii_control()) || head.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    HeaderValue::from_str(&format!("{head}{path}{tail}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::body_text;

    fn redirect(re: &str, to: &str, permanent: bool) -> Redirect {
        Redirect::new(regex::Regex::new(re).unwrap(), to.into(), permanent)
    }

    #[tokio::test]
    async fn statuses_and_body() {
        let r = redirect("^http://a/(.*)", "https://b/$1", false);
        let answer = r.answer("http://a/x?y=1", &Method::GET).expect("redirects");
        assert_eq!(answer.status(), 302);
        assert_eq!(answer.headers()["location"], "https://b/x?y=1");
        assert!(answer.headers().get("content-type").is_none());
        assert_eq!(body_text(answer).await, "Found");
        assert_eq!(r.answer("http://a/x", &Method::POST).unwrap().status(), 307);
        let p = redirect("^http://a/(.*)", "https://b/$1", true);
        assert_eq!(p.answer("http://a/x", &Method::GET).unwrap().status(), 301);
        assert_eq!(p.answer("http://a/x", &Method::PUT).unwrap().status(), 308);
    }

    #[test]
    fn no_match_or_same_url_passes() {
        let r = redirect("^http://a/(.*)", "http://a/$1", false);
        assert!(r.answer("http://a/x", &Method::GET).is_none());
        assert!(r.answer("http://z/x", &Method::GET).is_none());
    }

    #[test]
    fn locations() {
        assert_eq!(location("https://b/x y?q=a b").unwrap(), "https://b/x%20y?q=a b");
        assert_eq!(location("/relative/path").unwrap(), "/relative/path");
        assert!(location("https://b/%zz").is_none());
    }
}
