//! One Traefik v2/v3 router from its labels (`<prefix>.http.routers.<name>.<option>`): its rule
//! parsed into a matcher in the router's rule syntax, its priority (Traefik's default is the
//! length of the rule), entrypoints, the middleware and service names it refers to.
//!
//! A TLS router (`tls=true`, or any `tls.*` option) becomes a route served only on the proxy's
//! TLS entrypoints, as Traefik serves a TLS router only to requests that came over TLS; its
//! certificate options are reported as not used, since the proxy's certificates come from its
//! `--cert-dir`. A router Berth cannot serve as Traefik would is an error; options that change
//! nothing about routing (observability) are reported as ignored.
//!
//! Not for: resolving the names a router refers to (see the module root).

use berth_proto::v1::Matcher;

use crate::labels::{Fields, Leaf, Node};
use crate::traefik_rule::{self, RuleSyntax};
use crate::values::{self, ValueError};

/// Traefik refuses priorities above this (`math.MaxInt - 1000`), keeping the rest for itself.
const MAX_USER_PRIORITY: i128 = i64::MAX as i128 - 1000;

/// A router read from its labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Router {
    pub matcher: Matcher,
    pub syntax: RuleSyntax,
    pub priority: i64,
    /// Sorted, without duplicates; empty means every entrypoint.
    pub entrypoints: Vec<String>,
    /// Middleware references as written (`auth`, `auth@consulcatalog`).
    pub middlewares: Vec<(String, Option<String>)>,
    /// The service reference as written, and its tag (none when linked by default).
    pub service: (String, Option<String>),
    /// A TLS router: served only to requests that came over TLS.
    pub tls: bool,
}

/// What a router's labels say besides the router: options ignored on purpose.
pub(crate) use crate::labels::Note;

/// Why a router cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct RouterError {
    pub tag: Option<String>,
    pub position: Option<usize>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("rule: {0}")]
    Rule(String),
    #[error("{0}")]
    DefaultRule(String),
    #[error("the default rule template gives an empty rule")]
    EmptyDefaultRule,
    #[error("{option}: {error}")]
    Value { option: &'static str, error: ValueError },
    #[error("priority {0} exceeds the highest priority Traefik allows ({MAX_USER_PRIORITY})")]
    PriorityTooHigh(i128),
    #[error("entrypoints has an empty name")]
    EmptyEntrypoint,
    #[error("middlewares has an empty name")]
    EmptyMiddleware,
    #[error("tls has no option {0:?} (Traefik knows certResolver, options and domains)")]
    UnknownTlsOption(String),
    #[error("router has no option {0:?}")]
    UnknownOption(String),
    #[error("given twice with different values ({first:?} and {second:?})")]
    Clash { first: String, second: String },
    #[error("{0}")]
    Service(String),
}

fn fail<T>(leaf: Option<&Leaf>, problem: Problem) -> Result<T, RouterError> {
    Err(RouterError {
        tag: leaf.map(|l| l.tag.clone()),
        position: None,
        problem,
    })
}

/// The parts of a router that come from the instance rather than from its labels: the rule the
/// default-rule template gave (when the router has none), and the service it is linked to when
/// it names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub rule: Option<Result<String, String>>,
    pub service: Option<Result<String, String>>,
}

/// Reads the router `node` (absent for Traefik's default router).
pub(crate) fn read(
    node: Option<&Node>,
    defaults: &Defaults,
    default_syntax: RuleSyntax,
) -> Result<(Router, Vec<Note>), RouterError> {
    let empty = Node::default();
    let node = node.unwrap_or(&empty);
    if let Some((leaf, first, second)) = node.clash_values() {
        return fail(Some(leaf), Problem::Clash { first, second });
    }
    let mut fields = Fields::new(node);
    let mut notes = Vec::new();

    let rule_leaf = fields.value("rule").filter(|l| !l.value.is_empty());
    let syntax_leaf = fields.value("rulesyntax");
    let (syntax, syntax_note) = match syntax_leaf.map(|l| l.value.as_str()) {
        Some("v2") => (RuleSyntax::V2, None),
        Some("v3") | Some("default") => (RuleSyntax::V3, None),
        // Traefik parses a rule of unknown syntax as v3, silently.
        Some(other) if !other.is_empty() => (
            RuleSyntax::V3,
            Some(format!(
                "ruleSyntax {other:?} is not v2 or v3; the rule is read as v3, as Traefik does"
            )),
        ),
        // A router given its rule by the default-rule template keeps Traefik's v3 syntax; the
        // configured default syntax applies to rules written on the router.
        _ if rule_leaf.is_none() => (RuleSyntax::V3, None),
        _ => (default_syntax, None),
    };
    if let (Some(message), Some(leaf)) = (syntax_note, syntax_leaf) {
        notes.push(Note {
            tag: leaf.tag.clone(),
            message,
        });
    }

    let rule = match rule_leaf {
        Some(leaf) => leaf.value.clone(),
        None => match &defaults.rule {
            Some(Ok(rule)) if !rule.is_empty() => rule.clone(),
            Some(Ok(_)) | None => return fail(None, Problem::EmptyDefaultRule),
            Some(Err(e)) => return fail(None, Problem::DefaultRule(e.clone())),
        },
    };
    let matcher = traefik_rule::parse(&rule, syntax).map_err(|e| RouterError {
        tag: rule_leaf.map(|l| l.tag.clone()),
        position: Some(e.position),
        problem: Problem::Rule(e.to_string()),
    })?;

    let priority = match fields.value("priority") {
        Some(leaf) => match values::parse_int(&leaf.value, i128::from(i64::MIN), i128::from(i64::MAX)) {
            Ok(p) if p > MAX_USER_PRIORITY => return fail(Some(leaf), Problem::PriorityTooHigh(p)),
            Ok(0) => traefik_rule::default_priority(&rule),
            Ok(p) => p as i64,
            Err(error) => {
                return fail(
                    Some(leaf),
                    Problem::Value {
                        option: "priority",
                        error,
                    },
                )
            }
        },
        None => traefik_rule::default_priority(&rule),
    };

    let mut entrypoints = Vec::new();
    if let Some(leaf) = fields.value("entrypoints") {
        let list = values::split_list(&leaf.value);
        if list.iter().any(String::is_empty) {
            return fail(Some(leaf), Problem::EmptyEntrypoint);
        }
        entrypoints = list;
        entrypoints.sort();
        entrypoints.dedup();
    }

    let mut middlewares = Vec::new();
    if let Some(leaf) = fields.value("middlewares") {
        let list = values::split_list(&leaf.value);
        if list.iter().any(String::is_empty) {
            return fail(Some(leaf), Problem::EmptyMiddleware);
        }
        middlewares = list.into_iter().map(|m| (m, Some(leaf.tag.clone()))).collect();
    }

    let service = match fields.value("service").filter(|l| !l.value.is_empty()) {
        Some(leaf) => (leaf.value.clone(), Some(leaf.tag.clone())),
        None => match &defaults.service {
            Some(Ok(name)) => (name.clone(), None),
            Some(Err(e)) => return fail(None, Problem::Service(e.clone())),
            None => return fail(None, Problem::Service("the router names no service".into())),
        },
    };

    let tls = match fields.take("tls") {
        Some(node) => read_tls(node, &mut notes)?,
        None => false,
    };
    if let Some(observability) = fields.take("observability") {
        for leaf in observability.leaves() {
            notes.push(Note {
                tag: leaf.tag.clone(),
                message: "observability options are ignored: Berth records every request the same way".into(),
            });
        }
    }
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(unknown.first_leaf(), Problem::UnknownOption(unknown.name.clone()));
    }
    Ok((
        Router {
            matcher,
            syntax,
            priority,
            entrypoints,
            middlewares,
            service,
            tls,
        },
        notes,
    ))
}

/// Whether the router's `tls` node makes it a TLS router, as Traefik reads it: `tls=true`, or
/// any option under it (`tls=false` alone: a plain router). Its options choose certificates,
/// which the proxy takes from its `--cert-dir` instead: noted as not used.
fn read_tls(node: &Node, notes: &mut Vec<Note>) -> Result<bool, RouterError> {
    const NOT_USED: &str =
        "certificates come from the proxy's --cert-dir, chosen by SNI, not from the router; \
         the router is still served over TLS only";
    let mut fields = Fields::new(node);
    fields.note_ignored(
        &[
            ("certresolver", NOT_USED),
            ("options", NOT_USED),
            ("domains", NOT_USED),
        ],
        notes,
    );
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::UnknownTlsOption(unknown.name.clone()),
        );
    }
    Ok(match &node.leaf {
        Some(leaf) => leaf.value.eq_ignore_ascii_case("true") || !node.children.is_empty(),
        None => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct;
    use crate::labels;

    fn router_from(tags: &[&str], defaults: &Defaults) -> Result<(Router, Vec<Note>), RouterError> {
        let tags: Vec<String> = tags.iter().map(|t| format!("traefik.r.{t}")).collect();
        let labels = labels::parse(&tags, "traefik");
        read(labels.root.child("r"), defaults, RuleSyntax::V3)
    }

    fn linked() -> Defaults {
        Defaults {
            rule: Some(Ok("Host(`default`)".into())),
            service: Some(Ok("svc".into())),
        }
    }

    #[test]
    fn a_full_router() {
        let (router, notes) = router_from(
            &[
                "rule=Host(`a.example`)",
                "entrypoints=web, websecure,web",
                "priority=42",
                "middlewares=strip, auth@consulcatalog",
                "service=api",
            ],
            &linked(),
        )
        .expect("router");
        assert_eq!(router.matcher, construct::host_exact("a.example"));
        assert_eq!(router.priority, 42);
        assert_eq!(router.entrypoints, ["web", "websecure"]);
        assert_eq!(
            router
                .middlewares
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>(),
            ["strip", "auth@consulcatalog"]
        );
        assert_eq!(router.service.0, "api");
        assert!(notes.is_empty());
    }

    #[test]
    fn defaults_rule_priority_and_service() {
        let (router, _) = router_from(&[], &linked()).expect("default router");
        assert_eq!(router.matcher, construct::host_exact("default"));
        assert_eq!(router.priority, "Host(`default`)".len() as i64);
        assert_eq!(router.service, ("svc".into(), None));
        let (router, _) = router_from(&["rule=Host(`abc`)", "priority=0"], &linked()).expect("router");
        assert_eq!(router.priority, 11);
        let (router, _) = router_from(&["rule=Host(`abc`)", "priority=-5"], &linked()).expect("router");
        assert_eq!(router.priority, -5);
    }

    #[test]
    fn rule_syntax() {
        let (router, _) = router_from(&["rule=Host(`a`)", "ruleSyntax=v2"], &linked()).expect("v2");
        assert_eq!(router.syntax, RuleSyntax::V2);
        let (router, notes) = router_from(&["rule=Host(`a`)", "ruleSyntax=v9"], &linked()).expect("v9");
        assert_eq!(router.syntax, RuleSyntax::V3);
        assert_eq!(notes.len(), 1);
        let tags = vec!["traefik.r.rule=Host(`a`)".to_string()];
        let labels = labels::parse(&tags, "traefik");
        let (router, _) = read(labels.root.child("r"), &linked(), RuleSyntax::V2).expect("default v2");
        assert_eq!(router.syntax, RuleSyntax::V2);
        let (router, _) = read(None, &linked(), RuleSyntax::V2).expect("default rule");
        assert_eq!(router.syntax, RuleSyntax::V3, "a default rule is read as v3");
    }

    #[test]
    fn errors() {
        let err = router_from(&["rule=Host(`a`"], &linked()).expect_err("unbalanced");
        assert!(err.position.is_some());
        assert_eq!(err.tag.as_deref(), Some("traefik.r.rule=Host(`a`"));
        let cases: [(&[&str], &str); 6] = [
            (&["rule=Host(`a`)", "priority=high"], "not a whole number"),
            (&["rule=Host(`a`)", "priority=9223372036854775000"], "exceeds"),
            (&["rule=Host(`a`)", "entrypoints=web,"], "empty name"),
            (
                &["rule=Host(`a`)", "tls.certresolvr=le"],
                "tls has no option \"certresolvr\"",
            ),
            (&["rule=Host(`a`)", "rulle=x"], "no option \"rulle\""),
            (&["rule=Host(`a`)", "Rule=Host(`b`)"], "given twice"),
        ];
        for (tags, expected) in cases {
            let err = router_from(tags, &linked()).expect_err(expected);
            assert!(err.to_string().contains(expected), "{tags:?}: {err}");
        }
        let unlinked = Defaults {
            rule: None,
            service: Some(Err("cannot be linked automatically".into())),
        };
        let err = router_from(&["rule=Host(`a`)"], &unlinked).expect_err("unlinked");
        assert!(err.to_string().contains("linked automatically"));
    }

    #[test]
    fn tls_routers_are_served_over_tls_only() {
        let (router, notes) = router_from(&["rule=Host(`a`)", "tls=true"], &linked()).expect("tls=true");
        assert!(router.tls);
        assert!(notes.is_empty(), "{notes:?}");
        let (router, _) = router_from(&["rule=Host(`a`)", "TLS=True"], &linked()).expect("TLS=True");
        assert!(router.tls);
        let (router, _) = router_from(&["rule=Host(`a`)", "tls=false"], &linked()).expect("tls=false");
        assert!(!router.tls, "tls=false is a plain router");
        let (router, _) = router_from(&["rule=Host(`a`)"], &linked()).expect("no tls");
        assert!(!router.tls);
    }

    #[test]
    fn tls_certificate_options_make_a_tls_router_and_are_noted() {
        let (router, notes) = router_from(
            &[
                "rule=Host(`a`)",
                "tls.certresolver=le",
                "tls.options=modern@file",
                "tls.domains[0].main=a.example",
                "tls.domains[0].sans=b.example,c.example",
            ],
            &linked(),
        )
        .expect("tls options");
        assert!(
            router.tls,
            "tls.* without tls=true is a TLS router, as in Traefik"
        );
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(
            notes.iter().all(|n| n.message.contains("--cert-dir")),
            "{notes:?}"
        );
        assert_eq!(notes[0].tag, "traefik.r.tls.certresolver=le");
        let (router, notes) =
            router_from(&["rule=Host(`a`)", "tls=true", "tls.certresolver=le"], &linked()).expect("both");
        assert!(router.tls);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn observability_is_reported_not_fatal() {
        let (_, notes) =
            router_from(&["rule=Host(`a`)", "observability.accesslogs=false"], &linked()).expect("router");
        assert_eq!(notes.len(), 1);
    }
}
