//! One Traefik v1 frontend (`<prefix>.frontend.*`, or a segment `<prefix>.frontends.<name>.*`):
//! its rule, priority, entrypoints and the middlewares its options stand for, in the order
//! Traefik v1 runs them: the rule's path modifiers, the IP white list, the redirect, custom
//! headers, basic authentication, then the rate limits.
//!
//! An option that would restrict access and that Berth does not implement (digest or forward
//! authentication, a users file, a white list read from `X-Forwarded-For`, security headers,
//! unknown keys under `auth`, `whiteList`, `redirect`, `headers`) rejects the frontend. Options
//! that change nothing about who gets what (error pages, TLS client certificates) are reported.
//!
//! Not for: backend options (see `backend`) or grouping instances (see the module root).

use berth_proto::v1::{
    middleware::Kind, BasicAuth, HeaderValue, Headers, IpAllowList, Matcher, Middleware, RateLimit,
    RedirectRegex, RedirectScheme, SourceCriterion,
};

use super::rule;
use crate::construct::middleware;
use crate::labels::{Fields, Leaf, Node};
use crate::values::{self, ValueError};

/// A frontend read from its labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frontend {
    pub matcher: Matcher,
    /// The rule as written (or the default rule), whose length is the default priority.
    pub rule: String,
    pub priority: i64,
    /// Sorted, without duplicates; empty means every entrypoint.
    pub entrypoints: Vec<String>,
    pub middlewares: Vec<Middleware>,
    pub pass_host_header: bool,
}

pub(crate) use crate::labels::Note;

/// Why a frontend cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct FrontendError {
    pub tag: Option<String>,
    pub position: Option<usize>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("rule: {0}")]
    Rule(rule::Problem),
    #[error("no frontend rule and no --domain to build the default rule Host:{{service}}.{{domain}}")]
    NoRule,
    #[error("default host {host:?} built from the service name is not a valid host name")]
    BadDefaultHost { host: String },
    #[error("templates in frontend.rule are not supported by Berth")]
    RuleTemplate,
    #[error("{option}: {error}")]
    Value { option: &'static str, error: ValueError },
    #[error("entrypoint list is empty or has an empty name")]
    BadEntrypoints,
    #[error("{option} is not implemented by Berth; the frontend is rejected rather than served without it")]
    NotImplemented { option: String },
    #[error(
        "redirect.entryPoint {0:?}: Berth does not know Traefik's entrypoints; only \"https\" and \"http\" are understood (redirect to that scheme on its default port)"
    )]
    RedirectEntryPoint(String),
    #[error("{option}: {problem}")]
    Invalid { option: &'static str, problem: String },
    #[error("given twice with different values ({first:?} and {second:?})")]
    Clash { first: String, second: String },
}

fn fail<T>(leaf: Option<&Leaf>, problem: Problem) -> Result<T, FrontendError> {
    Err(FrontendError {
        tag: leaf.map(|l| l.tag.clone()),
        position: None,
        problem,
    })
}

fn bool_of(leaf: &Leaf, option: &'static str) -> Result<bool, FrontendError> {
    values::parse_bool(&leaf.value).or_else(|error| fail(Some(leaf), Problem::Value { option, error }))
}

/// Reads a frontend. `default_host` is the host of the default rule (`{service}.{domain}`), if
/// a domain is configured; `backend` holds the middlewares the backend adds (max connections).
pub(crate) fn read(
    node: Option<&Node>,
    default_host: Option<String>,
    backend: &[Middleware],
) -> Result<(Frontend, Vec<Note>), FrontendError> {
    let empty = Node::default();
    let node = node.unwrap_or(&empty);
    if let Some((leaf, first, second)) = node.clash_values() {
        return fail(Some(leaf), Problem::Clash { first, second });
    }
    let mut fields = Fields::new(node);
    let mut notes = Vec::new();

    let rule_leaf = fields.value("rule").filter(|l| !l.value.trim().is_empty());
    let rule_text = match rule_leaf {
        Some(leaf) if leaf.value.contains("{{") => return fail(Some(leaf), Problem::RuleTemplate),
        Some(leaf) => leaf.value.trim().to_string(),
        None => {
            let Some(host) = default_host else {
                return fail(None, Problem::NoRule);
            };
            if berth_model::normalize_host(&host).is_err() {
                return fail(None, Problem::BadDefaultHost { host });
            }
            format!("Host:{host}")
        }
    };
    let parsed = rule::parse(&rule_text).map_err(|e| FrontendError {
        tag: rule_leaf.map(|l| l.tag.clone()),
        position: Some(e.position),
        problem: Problem::Rule(e.problem),
    })?;

    // Traefik v1: a priority above 0 is used as is, otherwise the length of the rule.
    let priority = match fields.value("priority") {
        None => 0,
        Some(leaf) => {
            values::parse_int(&leaf.value, i128::from(i64::MIN), i128::from(i64::MAX)).or_else(|error| {
                fail(
                    Some(leaf),
                    Problem::Value {
                        option: "priority",
                        error,
                    },
                )
            })? as i64
        }
    };
    let priority = if priority > 0 {
        priority
    } else {
        rule_text.len() as i64
    };

    let mut entrypoints = Vec::new();
    if let Some(leaf) = fields.value("entrypoints") {
        let list: Vec<String> = leaf.value.split(',').map(|e| e.trim().to_string()).collect();
        if list.iter().any(String::is_empty) {
            return fail(Some(leaf), Problem::BadEntrypoints);
        }
        entrypoints = list;
        entrypoints.sort();
        entrypoints.dedup();
    }

    let pass_host_header = match fields.value("passhostheader") {
        None => true,
        Some(leaf) => bool_of(leaf, "passHostHeader")?,
    };

    let mut middlewares = parsed.modifiers;
    if let Some(m) = white_list(fields.take("whitelist"), fields.value("whitelistsourcerange"))? {
        middlewares.push(m);
    }
    if let Some(m) = redirect(fields.take("redirect"))? {
        middlewares.push(m);
    }
    if let Some(m) = headers(fields.take("headers"))? {
        middlewares.push(m);
    }
    if let Some(m) = auth(fields.take("auth"), &mut notes)? {
        middlewares.push(m);
    }
    // v1 wraps the load balancer in the circuit breaker outermost, around the rate limit and
    // the connection limit.
    let (breaker, limits): (Vec<Middleware>, Vec<Middleware>) = backend
        .iter()
        .cloned()
        .partition(|m| matches!(m.kind, Some(berth_proto::v1::middleware::Kind::CircuitBreaker(_))));
    middlewares.extend(breaker);
    middlewares.extend(rate_limit(fields.take("ratelimit"), &mut notes)?);
    middlewares.extend(limits);

    fields.note_ignored(
        &[
            (
                "errors",
                "error pages are not implemented by Berth; the backend's own error responses are passed on",
            ),
            (
                "passtlscert",
                "the proxy asks clients for no certificate (no mutual TLS), so there is none to pass",
            ),
            (
                "passtlsclientcert",
                "the proxy asks clients for no certificate (no mutual TLS), so there is none to pass",
            ),
        ],
        &mut notes,
    );
    fields.note_unknown("Traefik v1 frontend option", &mut notes);
    Ok((
        Frontend {
            matcher: parsed.matcher,
            rule: rule_text,
            priority,
            entrypoints,
            middlewares,
            pass_host_header,
        },
        notes,
    ))
}

/// `whiteList.sourceRange` (and the deprecated `whitelistSourceRange`).
fn white_list(node: Option<&Node>, deprecated: Option<&Leaf>) -> Result<Option<Middleware>, FrontendError> {
    let mut ranges_leaf = None;
    if let Some(node) = node {
        let mut fields = Fields::new(node);
        ranges_leaf = fields.value("sourcerange");
        if let Some(leaf) = fields.value("usexforwardedfor") {
            if bool_of(leaf, "whiteList.useXForwardedFor")? {
                return fail(
                    Some(leaf),
                    Problem::NotImplemented {
                        option: "whiteList.useXForwardedFor (v1 admits a request when any X-Forwarded-For address is listed)"
                            .into(),
                    },
                );
            }
        }
        if let Some(unknown) = fields.unknown().first().copied() {
            return fail(
                unknown.first_leaf(),
                Problem::NotImplemented {
                    option: format!("whiteList.{}", unknown.name),
                },
            );
        }
    }
    let Some(leaf) = ranges_leaf.filter(|l| !l.value.is_empty()).or(deprecated) else {
        return Ok(None);
    };
    let mut ranges = Vec::new();
    for item in values::split_and_trim(&leaf.value, ",") {
        // Traefik v1 lets everyone in when a range does not parse; Berth refuses the frontend.
        let range = values::ip_range(&item).or_else(|error| {
            fail(
                Some(leaf),
                Problem::Value {
                    option: "whiteList.sourceRange",
                    error,
                },
            )
        })?;
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    Ok(Some(middleware(
        "frontend.whiteList",
        Kind::IpAllowList(IpAllowList {
            ranges,
            reject_status: 0,
            source: Some(SourceCriterion::default()),
        }),
    )))
}

/// `redirect.entryPoint`, or `redirect.regex` with `redirect.replacement`; `redirect.permanent`.
fn redirect(node: Option<&Node>) -> Result<Option<Middleware>, FrontendError> {
    let Some(node) = node else { return Ok(None) };
    let mut fields = Fields::new(node);
    let entry_point = fields.value("entrypoint").filter(|l| !l.value.is_empty());
    let regex = fields.value("regex").filter(|l| !l.value.is_empty());
    let replacement = fields.value("replacement").filter(|l| !l.value.is_empty());
    let permanent = match fields.value("permanent") {
        None => false,
        Some(leaf) => bool_of(leaf, "redirect.permanent")?,
    };
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::NotImplemented {
                option: format!("redirect.{}", unknown.name),
            },
        );
    }
    if let Some(leaf) = entry_point {
        let scheme = leaf.value.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return fail(Some(leaf), Problem::RedirectEntryPoint(leaf.value.clone()));
        }
        return Ok(Some(middleware(
            "frontend.redirect",
            Kind::RedirectScheme(RedirectScheme {
                scheme,
                port: String::new(),
                permanent,
            }),
        )));
    }
    match (regex, replacement) {
        (Some(regex), Some(replacement)) => {
            berth_model::compile_regex(&regex.value).or_else(|e| {
                fail(
                    Some(regex),
                    Problem::Invalid {
                        option: "redirect.regex",
                        problem: e.to_string(),
                    },
                )
            })?;
            Ok(Some(middleware(
                "frontend.redirect",
                Kind::RedirectRegex(RedirectRegex {
                    regexp: regex.value.clone(),
                    replacement: replacement.value.clone(),
                    permanent,
                }),
            )))
        }
        (Some(leaf), None) | (None, Some(leaf)) => fail(
            Some(leaf),
            Problem::Invalid {
                option: "redirect",
                problem: "regex and replacement go together (Traefik v1 ignores one alone)".into(),
            },
        ),
        (None, None) => Ok(None),
    }
}

/// v1's map format: `Name:value||Name2:value2`, names in canonical header form.
fn header_map(leaf: &Leaf, option: &'static str) -> Result<Vec<HeaderValue>, FrontendError> {
    let mut out: Vec<HeaderValue> = Vec::new();
    for entry in leaf.value.split("||") {
        let Some((name, value)) = entry.split_once(':') else {
            return fail(
                Some(leaf),
                Problem::Invalid {
                    option,
                    problem: format!("{entry:?} is not Name:value"),
                },
            );
        };
        let name = values::header_name(name.trim())
            .or_else(|error| fail(Some(leaf), Problem::Value { option, error }))?;
        out.retain(|h: &HeaderValue| !h.name.eq_ignore_ascii_case(&name));
        out.push(HeaderValue {
            name: canonical_header(&name),
            value: value.trim().to_string(),
        });
    }
    out.sort_by_key(|h| h.name.to_ascii_lowercase());
    Ok(out)
}

/// Go's `http.CanonicalHeaderKey`: `x-custom-header` → `X-Custom-Header`.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `headers.customRequestHeaders` / `customResponseHeaders`; the security headers are refused.
fn headers(node: Option<&Node>) -> Result<Option<Middleware>, FrontendError> {
    let Some(node) = node else { return Ok(None) };
    let mut fields = Fields::new(node);
    let request = match fields
        .value("customrequestheaders")
        .filter(|l| !l.value.is_empty())
    {
        Some(leaf) => header_map(leaf, "headers.customRequestHeaders")?,
        None => Vec::new(),
    };
    let response = match fields
        .value("customresponseheaders")
        .filter(|l| !l.value.is_empty())
    {
        Some(leaf) => header_map(leaf, "headers.customResponseHeaders")?,
        None => Vec::new(),
    };
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::NotImplemented {
                option: format!("headers.{}", unknown.name),
            },
        );
    }
    if request.is_empty() && response.is_empty() {
        return Ok(None);
    }
    Ok(Some(middleware(
        "frontend.headers",
        Kind::Headers(Headers { request, response }),
    )))
}

/// `auth.basic.users` (or the deprecated `auth.basic=users`), `auth.basic.removeHeader`,
/// `auth.basic.realm`, `auth.headerField`; digest and forward authentication and users files
/// are refused.
fn auth(node: Option<&Node>, notes: &mut Vec<Note>) -> Result<Option<Middleware>, FrontendError> {
    let Some(node) = node else { return Ok(None) };
    let mut fields = Fields::new(node);
    let header_field = match fields.value("headerfield").filter(|l| !l.value.is_empty()) {
        Some(leaf) => values::header_name(&leaf.value).or_else(|error| {
            fail(
                Some(leaf),
                Problem::Value {
                    option: "auth.headerField",
                    error,
                },
            )
        })?,
        None => String::new(),
    };
    for kind in ["digest", "forward"] {
        if let Some(n) = fields.take(kind) {
            return fail(
                n.first_leaf(),
                Problem::NotImplemented {
                    option: format!("auth.{kind}"),
                },
            );
        }
    }
    let basic = fields.take("basic");
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::NotImplemented {
                option: format!("auth.{}", unknown.name),
            },
        );
    }
    let Some(basic) = basic else {
        if let Some(leaf) = node.leaves().first() {
            notes.push(Note {
                tag: leaf.tag.clone(),
                message: "auth.headerField alone sets up no authentication (as in Traefik v1)".into(),
            });
        }
        return Ok(None);
    };
    let mut fields = Fields::new(basic);
    let users_leaf = fields
        .value("users")
        .filter(|l| !l.value.is_empty())
        .or(basic.leaf.as_ref());
    let remove_header = match fields.value("removeheader") {
        None => false,
        Some(leaf) => bool_of(leaf, "auth.basic.removeHeader")?,
    };
    // Not a v1 option (v1 always says "traefik"), accepted for operators who write it.
    let realm = fields.value("realm").map(|l| l.value.clone()).unwrap_or_default();
    if let Some(leaf) = fields.value("usersfile").filter(|l| !l.value.is_empty()) {
        return fail(
            Some(leaf),
            Problem::NotImplemented {
                option: "auth.basic.usersFile (a file on Traefik's host)".into(),
            },
        );
    }
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::NotImplemented {
                option: format!("auth.basic.{}", unknown.name),
            },
        );
    }
    let mut users = Vec::new();
    if let Some(leaf) = users_leaf {
        for line in values::split_and_trim(&leaf.value, ",") {
            let user = values::htpasswd_user(&line).or_else(|error| {
                fail(
                    Some(leaf),
                    Problem::Value {
                        option: "auth.basic.users",
                        error,
                    },
                )
            })?;
            users.push(user);
        }
    }
    if users.is_empty() {
        // Traefik v1 answers 401 to everyone; an empty user list is refused by the route model.
        return fail(
            basic.first_leaf(),
            Problem::Invalid {
                option: "auth.basic",
                problem: "no users (Traefik v1 would let nobody in)".into(),
            },
        );
    }
    Ok(Some(middleware(
        "frontend.auth.basic",
        Kind::BasicAuth(BasicAuth {
            users,
            realm,
            remove_header,
            header_field,
        }),
    )))
}

/// `rateLimit.extractorFunc` with `rateLimit.rateSet.<name>.{period,average,burst}`: one rate
/// limit per set (all must admit a request, as in v1).
fn rate_limit(node: Option<&Node>, notes: &mut Vec<Note>) -> Result<Vec<Middleware>, FrontendError> {
    let Some(node) = node else { return Ok(Vec::new()) };
    let mut fields = Fields::new(node);
    let extractor = fields.value("extractorfunc").filter(|l| !l.value.is_empty());
    let sets = fields.take("rateset");
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            unknown.first_leaf(),
            Problem::Invalid {
                option: "rateLimit",
                problem: format!("has no option {:?}", unknown.name),
            },
        );
    }
    let Some(extractor) = extractor else {
        for leaf in node.leaves() {
            notes.push(Note {
                tag: leaf.tag.clone(),
                message: "rate sets without rateLimit.extractorFunc set no limit (as in Traefik v1)".into(),
            });
        }
        return Ok(Vec::new());
    };
    let source = extractor_source(extractor, "rateLimit.extractorFunc")?;
    let mut out = Vec::new();
    for set in sets.map(|s| s.children.as_slice()).unwrap_or_default() {
        let mut fields = Fields::new(set);
        let number =
            |leaf: Option<&Leaf>, option: &'static str, min: i128| -> Result<Option<i64>, FrontendError> {
                match leaf {
                    None => Ok(None),
                    Some(leaf) => values::parse_int(&leaf.value, min, i128::from(i64::MAX))
                        .map(|n| Some(n as i64))
                        .or_else(|error| fail(Some(leaf), Problem::Value { option, error })),
                }
            };
        let average = number(fields.value("average"), "rateLimit.rateSet.average", 1)?;
        let burst = number(fields.value("burst"), "rateLimit.rateSet.burst", 0)?.unwrap_or(1);
        let period_ms = match fields.value("period") {
            None => 1000,
            Some(leaf) => match values::parse_duration(&leaf.value) {
                Ok(ns) if ns >= 1_000_000 && ns % 1_000_000 == 0 => (ns / 1_000_000) as u64,
                Ok(_) => {
                    return fail(
                        Some(leaf),
                        Problem::Invalid {
                            option: "rateLimit.rateSet.period",
                            problem: "must be a positive whole number of milliseconds".into(),
                        },
                    )
                }
                Err(error) => {
                    return fail(
                        Some(leaf),
                        Problem::Value {
                            option: "rateLimit.rateSet.period",
                            error,
                        },
                    )
                }
            },
        };
        if let Some(unknown) = fields.unknown().first().copied() {
            return fail(
                unknown.first_leaf(),
                Problem::Invalid {
                    option: "rateLimit.rateSet",
                    problem: format!("has no option {:?}", unknown.name),
                },
            );
        }
        let Some(average) = average else {
            return fail(
                set.first_leaf(),
                Problem::Invalid {
                    option: "rateLimit.rateSet",
                    problem: format!("set {:?} has no average", set.name),
                },
            );
        };
        out.push(middleware(
            &format!("frontend.rateLimit.rateSet.{}", set.name),
            Kind::RateLimit(RateLimit {
                average,
                period_ms,
                burst: burst.max(1),
                source: Some(source.clone()),
            }),
        ));
    }
    Ok(out)
}

/// An oxy extractor (`client.ip`, `request.host`, `request.header.<Name>`) as a source criterion.
pub(crate) fn extractor_source(leaf: &Leaf, option: &'static str) -> Result<SourceCriterion, FrontendError> {
    let value = leaf.value.trim();
    if value == "client.ip" {
        return Ok(SourceCriterion::default());
    }
    if value == "request.host" {
        return Ok(SourceCriterion {
            request_host: true,
            ..SourceCriterion::default()
        });
    }
    if let Some(name) = value.strip_prefix("request.header.") {
        let name =
            values::header_name(name).or_else(|error| fail(Some(leaf), Problem::Value { option, error }))?;
        return Ok(SourceCriterion {
            request_header: name,
            ..SourceCriterion::default()
        });
    }
    fail(
        Some(leaf),
        Problem::Invalid {
            option,
            problem: format!("{value:?} is not client.ip, request.host or request.header.<name>"),
        },
    )
}
