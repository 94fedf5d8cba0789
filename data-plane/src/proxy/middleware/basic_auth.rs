//! `basic_auth`: asks for HTTP basic credentials and checks them against htpasswd lines.
//!
//! For: Traefik's BasicAuth: `Authorization: Basic <base64 user:password>` (scheme name in any
//! case) is checked against the user's hash (see `htpasswd`); an unknown user costs a hash check
//! too (against the first user's hash), so timing does not tell users apart. Failure is answered
//! as Traefik does: 401, `WWW-Authenticate: Basic realm="<realm>"` (realm `traefik` by default),
//! `Content-Type: text/plain`, body `401 Unauthorized\n`. On success the user's name goes in
//! `header_field` when set, and `Authorization` is removed when `remove_header` is set. bcrypt
//! checks run on the blocking pool.
//! Not for: digest or forward auth (not in the route model).

use std::sync::Arc;

use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::htpasswd::Hash;
use super::Flow;
use crate::proxy::context::RequestContext;
use crate::proxy::Body;

#[derive(Debug)]
pub(crate) struct BasicAuth {
    /// By user name; a later line for the same user replaces an earlier one, as in Traefik.
    users: Arc<std::collections::HashMap<String, Hash>>,
    /// Checked for unknown users, so they cost as much as known ones.
    decoy: Hash,
    challenge: HeaderValue,
    remove_header: bool,
    header_field: Option<HeaderName>,
}

impl BasicAuth {
    pub(crate) fn compile(config: &berth_proto::v1::BasicAuth) -> Result<Self, String> {
        let mut users = std::collections::HashMap::with_capacity(config.users.len());
        let mut decoy = None;
        for line in &config.users {
            let mut parts = line.split(':');
            let (Some(user), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("user line {:?} is not user:hash", redact(line)));
            };
            let hash = Hash::parse(hash);
            decoy.get_or_insert_with(|| hash.clone());
            users.insert(user.to_owned(), hash);
        }
        let Some(decoy) = decoy else {
            return Err("no users".into());
        };
        let realm = if config.realm.is_empty() {
            "traefik"
        } else {
            config.realm.as_str()
        };
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
            .map_err(|_| format!("realm {realm:?} cannot be sent in a header"))?;
        let header_field = match config.header_field.as_str() {
            "" => None,
            name => Some(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("header_field {name:?} is not a header name"))?,
            ),
        };
        Ok(Self {
            users: Arc::new(users),
            decoy,
            challenge,
            remove_header: config.remove_header,
            header_field,
        })
    }

    pub(crate) async fn request(&self, _ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let Some((user, password)) = credentials(head) else {
            return Flow::Answer(self.unauthorized());
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let matched = if hash.is_slow() {
            tokio::task::spawn_blocking(move || hash.matches(password.as_bytes()))
                .await
                .unwrap_or(false)
        } else {
            hash.matches(password.as_bytes())
        };
        if !(known && matched) {
            return Flow::Answer(self.unauthorized());
        }
        if let Some(field) = &self.header_field {
            if let Ok(value) = HeaderValue::from_str(&user) {
                head.headers.insert(field.clone(), value);
            }
        }
        if self.remove_header {
            head.headers.remove(AUTHORIZATION);
        }
        Flow::Next
    }

    fn unauthorized(&self) -> Response<Body> {
        let mut response = Response::new(Body::text("401 Unauthorized\n"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, self.challenge.clone());
        response
    }
}

/// The user and password of `Authorization: Basic ...` (Go's `Request.BasicAuth`).
fn credentials(head: &Parts) -> Option<(String, String)> {
    let value = head.headers.get(AUTHORIZATION)?.as_bytes();
    const PREFIX: &[u8] = b"basic ";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[PREFIX.len()..])
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A user line without its hash, for error messages.
fn redact(line: &str) -> String {
    match line.split_once(':') {
        Some((user, _)) => format!("{user}:…"),
        None => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head};

    const TEST_APR1: &str = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/";

    fn auth(users: &[&str], realm: &str, remove: bool, field: &str) -> BasicAuth {
        BasicAuth::compile(&berth_proto::v1::BasicAuth {
            users: users.iter().map(|u| u.to_string()).collect(),
            realm: realm.into(),
            remove_header: remove,
            header_field: field.into(),
        })
        .expect("compiles")
    }

    fn basic(user_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    }

    async fn run(mw: &BasicAuth, authorization: Option<&str>) -> (Flow, Parts) {
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        let mut head = head("GET", "/");
        if let Some(a) = authorization {
            head.headers
                .insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        let flow = mw.request(&mut ctx, &mut head).await;
        (flow, head)
    }

    #[tokio::test]
    async fn challenge_exactly_as_traefik() {
        let mw = auth(&[TEST_APR1], "", false, "");
        let (flow, _) = run(&mw, None).await;
        let Flow::Answer(r) = flow else {
            panic!("expected 401")
        };
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"traefik\"");
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(body_text(r).await, "401 Unauthorized\n");

        let mw = auth(&[TEST_APR1], "my realm", false, "");
        let (Flow::Answer(r), _) = run(&mw, Some(&basic("test:wrong"))).await else {
            panic!("expected 401")
        };
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"my realm\"");
    }

    #[tokio::test]
    async fn accepts_good_credentials() {
        let mw = auth(&[TEST_APR1], "", false, "");
        let (flow, head) = run(&mw, Some(&basic("test:test"))).await;
        assert!(matches!(flow, Flow::Next));
        assert!(
            head.headers.contains_key(AUTHORIZATION),
            "kept unless remove_header"
        );
        let lower = basic("test:test").replacen("Basic", "bAsIc", 1);
        assert!(matches!(run(&mw, Some(&lower)).await.0, Flow::Next));
        for bad in [
            basic("test:nope"),
            basic("nobody:test"),
            basic("test"),
            "Bearer x".into(),
            "Basic !!!".into(),
        ] {
            assert!(matches!(run(&mw, Some(&bad)).await.0, Flow::Answer(_)), "{bad}");
        }
    }

    #[tokio::test]
    async fn header_field_and_remove_header() {
        let mw = auth(
            &[TEST_APR1, "other:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="],
            "",
            true,
            "X-WebAuth-User",
        );
        let (flow, head) = run(&mw, Some(&basic("other:test"))).await;
        assert!(matches!(flow, Flow::Next));
        assert_eq!(head.headers["x-webauth-user"], "other");
        assert!(!head.headers.contains_key(AUTHORIZATION));
    }

    #[tokio::test]
    async fn bcrypt_users() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let mw = auth(&[&format!("bob:{hash}")], "", false, "");
        assert!(matches!(run(&mw, Some(&basic("bob:s3cret"))).await.0, Flow::Next));
        assert!(matches!(
            run(&mw, Some(&basic("bob:nope"))).await.0,
            Flow::Answer(_)
        ));
    }

    #[test]
    fn bad_user_lines() {
        for users in [vec![], vec!["justuser"], vec!["a:b:c"]] {
            let err = BasicAuth::compile(&berth_proto::v1::BasicAuth {
                users: users.iter().map(|u| u.to_string()).collect(),
                ..Default::default()
            })
            .expect_err("refused");
            assert!(!err.contains(":b:c"), "hashes stay out of errors: {err}");
        }
    }
}
