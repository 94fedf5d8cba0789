//! Traefik v1 backend options (`<prefix>.backend.*`) and the instance-level tags `protocol` and
//! `weight`: what the cluster of an instance looks like (scheme, sticky cookie) and the
//! middlewares a backend adds to each of its frontends (`maxconn`, an in-flight limit, and
//! `circuitbreaker.expression`, a circuit breaker with oxy's defaults: v1 has no other setting).
//!
//! The load-balancing method is always weighted round robin: `drr` (v1's dynamic round robin,
//! which shifts weight towards faster servers) is reported and balanced by static weights.
//! Health checks, buffering and response forwarding are reported as ignored.
//!
//! Not for: frontends (see `frontend`).

use berth_proto::v1::{middleware::Kind, CircuitBreaker, InFlightReq, Middleware, StickyCookie};

use super::frontend::extractor_source;
use crate::construct::middleware;
use crate::labels::{Fields, Leaf, Node};
use crate::values::{self, ValueError};

/// What the instance's backend tags say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Backend {
    pub sticky: Option<StickyCookie>,
    /// Added to every frontend of the backend (`maxconn`).
    pub middlewares: Vec<Middleware>,
}

pub(crate) use crate::labels::Note;

/// Why an instance's backend tags cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct BackendError {
    pub tag: Option<String>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{option}: {error}")]
    Value { option: &'static str, error: ValueError },
    #[error("{option}: {problem}")]
    Invalid { option: &'static str, problem: String },
    #[error("given twice with different values ({first:?} and {second:?})")]
    Clash { first: String, second: String },
}

fn fail<T>(leaf: Option<&Leaf>, problem: Problem) -> Result<T, BackendError> {
    Err(BackendError {
        tag: leaf.map(|l| l.tag.clone()),
        problem,
    })
}

fn flag(leaf: Option<&Leaf>, option: &'static str) -> Result<bool, BackendError> {
    match leaf {
        None => Ok(false),
        Some(leaf) => values::parse_bool(&leaf.value)
            .or_else(|error| fail(Some(leaf), Problem::Value { option, error })),
    }
}

/// Reads `<prefix>.backend`; `backend_name` is Traefik v1's name of the backend
/// (`backend-<service>`), from which a sticky cookie without a name gets one.
pub(crate) fn read(node: Option<&Node>, backend_name: &str) -> Result<(Backend, Vec<Note>), BackendError> {
    let mut backend = Backend {
        sticky: None,
        middlewares: Vec::new(),
    };
    let mut notes = Vec::new();
    let Some(node) = node else {
        return Ok((backend, notes));
    };
    if let Some((leaf, first, second)) = node.clash_values() {
        return fail(Some(leaf), Problem::Clash { first, second });
    }
    let mut fields = Fields::new(node);
    let _weight = fields.take("weight");
    if let Some(lb) = fields.take("loadbalancer") {
        let mut lb_fields = Fields::new(lb);
        let method = lb_fields.value("method").or(lb.leaf.as_ref());
        if let Some(leaf) = method.filter(|l| !l.value.is_empty()) {
            match leaf.value.to_ascii_lowercase().as_str() {
                "wrr" => {}
                "drr" => notes.push(Note {
                    tag: leaf.tag.clone(),
                    message: "load-balancing method drr (dynamic round robin) is balanced by static weights (weighted round robin) in Berth".into(),
                }),
                _ => notes.push(Note {
                    tag: leaf.tag.clone(),
                    message: format!("{:?} is not a v1 load-balancing method; weighted round robin is used, as Traefik v1 falls back to it", leaf.value),
                }),
            }
        }
        let sticky = flag(lb_fields.value("sticky"), "loadbalancer.sticky")?;
        if let Some(stickiness) = lb_fields.take("stickiness") {
            let on = flag(stickiness.leaf.as_ref(), "loadbalancer.stickiness")?;
            let mut s = Fields::new(stickiness);
            let name = s.value("cookiename").map(|l| l.value.clone()).unwrap_or_default();
            let secure = flag(s.value("secure"), "loadbalancer.stickiness.secure")?;
            let http_only = flag(s.value("httponly"), "loadbalancer.stickiness.httpOnly")?;
            let same_site = match s.value("samesite").map(|l| l.value.to_ascii_lowercase()) {
                Some(v) if v == "none" || v == "lax" || v == "strict" => v,
                _ => String::new(),
            };
            if let Some(unknown) = s.unknown().first().copied() {
                return fail(
                    unknown.first_leaf(),
                    Problem::Invalid {
                        option: "loadbalancer.stickiness",
                        problem: format!("has no option {:?}", unknown.name),
                    },
                );
            }
            if on {
                backend.sticky = Some(StickyCookie {
                    name: crate::dialect::cookie_name(&name, backend_name),
                    secure,
                    http_only,
                    same_site,
                    max_age: 0,
                    path: "/".into(),
                });
            }
        }
        if sticky && backend.sticky.is_none() {
            // The deprecated `sticky=true` uses a fixed cookie name.
            backend.sticky = Some(StickyCookie {
                name: "_TRAEFIK_BACKEND".into(),
                path: "/".into(),
                ..StickyCookie::default()
            });
        }
        if let Some(unknown) = lb_fields.unknown().first().copied() {
            return fail(
                unknown.first_leaf(),
                Problem::Invalid {
                    option: "loadbalancer",
                    problem: format!("has no option {:?}", unknown.name),
                },
            );
        }
    }
    if let Some(cb) = fields.take("circuitbreaker") {
        backend.middlewares.push(circuit_breaker(cb)?);
    }
    if let Some(maxconn) = fields.take("maxconn") {
        let mut m = Fields::new(maxconn);
        let amount = m.value("amount");
        let extractor = m.value("extractorfunc");
        if let Some(unknown) = m.unknown().first().copied() {
            return fail(
                unknown.first_leaf(),
                Problem::Invalid {
                    option: "maxconn",
                    problem: format!("has no option {:?}", unknown.name),
                },
            );
        }
        if let Some(leaf) = amount {
            let amount = values::parse_int(&leaf.value, 1, i128::from(i64::MAX)).or_else(|error| {
                fail(
                    Some(leaf),
                    Problem::Value {
                        option: "maxconn.amount",
                        error,
                    },
                )
            })?;
            // Traefik v1 counts by request host unless told otherwise.
            let source = match extractor.filter(|l| !l.value.is_empty()) {
                None => berth_proto::v1::SourceCriterion {
                    request_host: true,
                    ..Default::default()
                },
                Some(leaf) => extractor_source(leaf, "maxconn.extractorfunc").map_err(|e| BackendError {
                    tag: e.tag,
                    problem: Problem::Invalid {
                        option: "maxconn.extractorfunc",
                        problem: e.problem.to_string(),
                    },
                })?,
            };
            backend.middlewares.push(middleware(
                "backend.maxconn",
                Kind::InFlightReq(InFlightReq {
                    amount: amount as i64,
                    source: Some(source),
                }),
            ));
        }
    }
    fields.note_ignored(
        &[
            (
                "healthcheck",
                "health checks are ignored: Berth routes to the instances Consul reports healthy",
            ),
            (
                "buffering",
                "buffering is not implemented by Berth; requests and responses are streamed",
            ),
            (
                "responseforwarding",
                "responseForwarding is ignored: Berth streams responses as they come",
            ),
        ],
        &mut notes,
    );
    fields.note_unknown("Traefik v1 backend option", &mut notes);
    Ok((backend, notes))
}

/// `backend.circuitbreaker.expression` (or the deprecated `backend.circuitbreaker`): v1's
/// breaker, with oxy's defaults (checked every 100ms, 10s fallback answering 503, 10s recovery).
fn circuit_breaker(node: &Node) -> Result<Middleware, BackendError> {
    let mut fields = Fields::new(node);
    let expression = fields.value("expression");
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::Invalid {
                option: "circuitbreaker",
                problem: format!("has no option {:?}", unknown.name),
            },
        );
    }
    let Some(leaf) = expression.or(node.leaf.as_ref()) else {
        return fail(
            node.first_leaf(),
            Problem::Invalid {
                option: "circuitbreaker.expression",
                problem: "is required".into(),
            },
        );
    };
    if let Err(e) = berth_model::circuit_breaker::Expression::parse(&leaf.value) {
        return fail(
            Some(leaf),
            Problem::Invalid {
                option: "circuitbreaker.expression",
                problem: format!("{:?} {e}", leaf.value),
            },
        );
    }
    Ok(middleware(
        "backend.circuitbreaker",
        Kind::CircuitBreaker(CircuitBreaker {
            expression: leaf.value.clone(),
            ..Default::default()
        }),
    ))
}

/// The instance's `weight` (or the deprecated `backend.weight`): a positive whole number,
/// default 1.
pub(crate) fn weight(root: &Node) -> Result<u32, BackendError> {
    let leaf = root.child("weight").and_then(|n| n.leaf.as_ref()).or_else(|| {
        root.child("backend")
            .and_then(|b| b.child("weight"))
            .and_then(|n| n.leaf.as_ref())
    });
    match leaf {
        None => Ok(1),
        Some(leaf) => values::parse_int(&leaf.value, 1, i128::from(u32::MAX))
            .map(|w| w as u32)
            .or_else(|error| {
                fail(
                    Some(leaf),
                    Problem::Value {
                        option: "weight",
                        error,
                    },
                )
            }),
    }
}

/// The instance's `protocol`: "http" (default), "https" or "h2c" (Traefik 1.7's cleartext HTTP/2
/// to the backend, for gRPC).
pub(crate) fn protocol(root: &Node) -> Result<String, BackendError> {
    match root.child("protocol").and_then(|n| n.leaf.as_ref()) {
        None => Ok("http".into()),
        Some(leaf) => match leaf.value.to_ascii_lowercase().as_str() {
            "" | "http" => Ok("http".into()),
            "https" => Ok("https".into()),
            "h2c" => Ok("h2c".into()),
            _ => fail(
                Some(leaf),
                Problem::Invalid {
                    option: "protocol",
                    problem: format!("{:?} is not http, https or h2c", leaf.value),
                },
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    fn root(tags: &[&str]) -> Node {
        let tags: Vec<String> = tags.iter().map(|t| format!("traefik.{t}")).collect();
        labels::parse(&tags, "traefik").root
    }

    fn backend(tags: &[&str]) -> Result<(Backend, Vec<Note>), BackendError> {
        let root = root(tags);
        read(root.child("backend"), "backend-web")
    }

    #[test]
    fn stickiness() {
        let (b, _) = backend(&[
            "backend.loadbalancer.stickiness=true",
            "backend.loadbalancer.stickiness.cookieName=session",
            "backend.loadbalancer.stickiness.secure=true",
        ])
        .expect("backend");
        let cookie = b.sticky.expect("sticky");
        assert_eq!(
            (cookie.name.as_str(), cookie.secure, cookie.path.as_str()),
            ("session", true, "/")
        );
        let (b, _) = backend(&["backend.loadbalancer.stickiness=true"]).expect("backend");
        assert_eq!(b.sticky.map(|c| c.name), Some("_40e28".to_string()));
        let (b, _) = backend(&["backend.loadbalancer.sticky=true"]).expect("backend");
        assert_eq!(b.sticky.map(|c| c.name), Some("_TRAEFIK_BACKEND".to_string()));
        let (b, _) = backend(&[
            "backend.loadbalancer.stickiness=false",
            "backend.loadbalancer.stickiness.cookieName=x",
        ])
        .expect("backend");
        assert_eq!(b.sticky, None);
    }

    #[test]
    fn methods_and_ignored_options() {
        let (_, notes) = backend(&[
            "backend.loadbalancer.method=drr",
            "backend.healthcheck.path=/health",
        ])
        .expect("backend");
        assert_eq!(notes.len(), 2);
        assert!(notes[0].message.contains("drr"));
        let (_, notes) = backend(&["backend.loadbalancer=drr"]).expect("deprecated method");
        assert_eq!(notes.len(), 1);
        let (_, notes) = backend(&["backend.loadbalancer.method=wrr"]).expect("wrr");
        assert!(notes.is_empty());
    }

    #[test]
    fn circuit_breaker() {
        let expression = |b: &Backend| match &b.middlewares[0].kind {
            Some(Kind::CircuitBreaker(c)) => c.expression.clone(),
            other => panic!("{other:?}"),
        };
        let (b, notes) =
            backend(&["backend.circuitbreaker.expression=NetworkErrorRatio() > 0.5"]).expect("backend");
        assert!(notes.is_empty());
        assert_eq!(expression(&b), "NetworkErrorRatio() > 0.5");
        assert_eq!(b.middlewares[0].name, "backend.circuitbreaker");
        let (b, _) = backend(&["backend.circuitbreaker=RequestThreshold() > 5"]).expect("deprecated form");
        assert_eq!(expression(&b), "RequestThreshold() > 5");
        let err = backend(&["backend.circuitbreaker.expression=NetworkErrorRatio() > 5"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "circuitbreaker.expression: \"NetworkErrorRatio() > 5\" at column 23: expected a decimal number \
             to compare a ratio with (write 5.0), found 5"
        );
        assert!(backend(&["backend.circuitbreaker.fallback=x"]).is_err());
    }

    #[test]
    fn maxconn() {
        let (b, _) = backend(&[
            "backend.maxconn.amount=10",
            "backend.maxconn.extractorfunc=client.ip",
        ])
        .expect("backend");
        assert_eq!(
            b.middlewares[0].kind,
            Some(Kind::InFlightReq(InFlightReq {
                amount: 10,
                source: Some(Default::default())
            }))
        );
        assert!(backend(&["backend.maxconn.amount=0"]).is_err());
        assert!(backend(&["backend.maxconn.amount=1", "backend.maxconn.extractorfunc=cookie"]).is_err());
    }

    #[test]
    fn weight_and_protocol() {
        assert_eq!(weight(&root(&[])), Ok(1));
        assert_eq!(weight(&root(&["weight=5"])), Ok(5));
        assert_eq!(weight(&root(&["backend.weight=7"])), Ok(7));
        assert!(weight(&root(&["weight=0"])).is_err());
        assert_eq!(protocol(&root(&["protocol=https"])).as_deref(), Ok("https"));
        assert_eq!(protocol(&root(&["protocol=H2C"])).as_deref(), Ok("h2c"));
        assert!(protocol(&root(&["protocol=h2"])).is_err());
    }
}
