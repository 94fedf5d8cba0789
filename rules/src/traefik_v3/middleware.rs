//! One Traefik v2/v3 middleware from its labels (`<prefix>.http.middlewares.<name>.<kind>.<option>`)
//! to the route model's [`Middleware`], with Traefik's defaults and checks: a `chain` becomes the
//! list of middlewares it names (resolved by the caller), a rate limit with no average is no
//! middleware at all (Traefik lets everything through), and a kind or option Berth does not
//! implement is an error, so a router that uses it is rejected instead of served without it.
//!
//! Not for: resolving names (see `resolve`), or the routers that use a middleware.

use berth_proto::v1::{
    middleware::Kind, AddPrefix, BasicAuth, CircuitBreaker, HeaderValue, Headers, InFlightReq, IpAllowList,
    Middleware, RateLimit, RedirectRegex, RedirectScheme, ReplacePath, ReplacePathRegex, Retry,
    SourceCriterion, StripPrefix, StripPrefixRegex,
};

use crate::construct::middleware;
use crate::labels::{Fields, Leaf, Node};
use crate::values::{self, ValueError};

/// What a middleware's labels define.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Definition {
    /// One middleware; `None` when Traefik's would do nothing (a rate limit without average).
    One(Option<Middleware>),
    /// A `chain`: the middlewares it names, in order, as written.
    Chain(Vec<String>),
}

/// Why a middleware's labels define nothing Berth can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct MiddlewareError {
    /// The tag at fault, when one is.
    pub tag: Option<String>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("middleware {name:?} has no kind (expected e.g. {name}.stripprefix.prefixes=...)")]
    NoKind { name: String },
    #[error("middleware {name:?} has several kinds ({kinds}); Traefik refuses that too, declare one middleware per kind")]
    SeveralKinds { name: String, kinds: String },
    #[error("middleware kind {kind:?} is not implemented by Berth; routers using it are rejected rather than served without it")]
    KindNotImplemented { kind: String },
    #[error("{kind:?} is not a Traefik middleware kind")]
    UnknownKind { kind: String },
    #[error("{kind} option {option:?} is not implemented by Berth; routers using this middleware are rejected rather than served without it")]
    OptionNotImplemented { kind: &'static str, option: String },
    #[error("{kind} has no option {option:?}")]
    UnknownOption { kind: &'static str, option: String },
    #[error("{kind}.{option}: {error}")]
    Value {
        kind: &'static str,
        option: &'static str,
        error: ValueError,
    },
    #[error("{kind}.{option} is required")]
    Missing {
        kind: &'static str,
        option: &'static str,
    },
    #[error("{kind}.{option}: {problem}")]
    Invalid {
        kind: &'static str,
        option: &'static str,
        problem: String,
    },
    #[error("{kind}: {first} and {second} are mutually exclusive")]
    Exclusive {
        kind: &'static str,
        first: &'static str,
        second: &'static str,
    },
    #[error("given twice with different values ({first:?} and {second:?})")]
    Clash { first: String, second: String },
}

type Result<T> = std::result::Result<T, MiddlewareError>;

fn fail<T>(tag: Option<&Leaf>, problem: Problem) -> Result<T> {
    Err(MiddlewareError {
        tag: tag.map(|l| l.tag.clone()),
        problem,
    })
}

/// Kinds Traefik has that Berth does not run.
const NOT_IMPLEMENTED: &[&str] = &[
    "forwardauth",
    "digestauth",
    "compress",
    "buffering",
    "errors",
    "passtlsclientcert",
    "contenttype",
    "grpcweb",
    "plugin",
    "encodedcharacters",
];

/// Reads the middleware `name` (its label node, whose children are kinds).
pub(crate) fn define(name: &str, node: &Node, qualified: &str) -> Result<Definition> {
    if let Some((leaf, first, second)) = node.clash_values() {
        return fail(Some(leaf), Problem::Clash { first, second });
    }
    let kinds: Vec<&Node> = node.children.iter().collect();
    let kind = match kinds.as_slice() {
        [] => {
            return fail(
                node.leaf.as_ref(),
                Problem::NoKind {
                    name: name.to_string(),
                },
            )
        }
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|k| k.name.as_str()).collect();
            return fail(
                many.get(1).and_then(|k| k.first_leaf()),
                Problem::SeveralKinds {
                    name: name.to_string(),
                    kinds: names.join(", "),
                },
            );
        }
    };
    let lower = kind.name.to_ascii_lowercase();
    let first_leaf = kind.first_leaf();
    let make = |k: Kind| Ok(Definition::One(Some(middleware(qualified, k))));
    match lower.as_str() {
        "stripprefix" => make(strip_prefix(kind)?),
        "stripprefixregex" => make(strip_prefix_regex(kind)?),
        "addprefix" => make(add_prefix(kind)?),
        "replacepath" => make(replace_path(kind)?),
        "replacepathregex" => make(replace_path_regex(kind)?),
        "headers" => make(headers(kind)?),
        "redirectscheme" => make(redirect_scheme(kind)?),
        "redirectregex" => make(redirect_regex(kind)?),
        "basicauth" => make(basic_auth(kind)?),
        "ratelimit" => Ok(Definition::One(
            rate_limit(kind)?.map(|k| middleware(qualified, k)),
        )),
        "inflightreq" => make(in_flight_req(kind)?),
        "ipallowlist" => make(ip_allow_list(kind, "ipallowlist", true)?),
        "ipwhitelist" => make(ip_allow_list(kind, "ipwhitelist", false)?),
        "retry" => make(retry(kind)?),
        "circuitbreaker" => make(circuit_breaker(kind)?),
        "chain" => chain(kind),
        other if NOT_IMPLEMENTED.contains(&other) => fail(
            first_leaf,
            Problem::KindNotImplemented {
                kind: kind.name.clone(),
            },
        ),
        _ => fail(
            first_leaf,
            Problem::UnknownKind {
                kind: kind.name.clone(),
            },
        ),
    }
}

/// Reads the options of one kind; every option not read is reported.
struct Options<'a> {
    kind: &'static str,
    fields: Fields<'a>,
}

impl<'a> Options<'a> {
    fn new(kind: &'static str, node: &'a Node) -> Self {
        Options {
            kind,
            fields: Fields::new(node),
        }
    }

    fn leaf(&mut self, option: &str) -> Option<&'a Leaf> {
        self.fields.value(option)
    }

    fn node(&mut self, option: &str) -> Option<&'a Node> {
        self.fields.take(option)
    }

    fn string(&mut self, option: &str) -> Option<String> {
        self.leaf(option).map(|l| l.value.clone())
    }

    fn required(&mut self, option: &'static str) -> Result<(String, &'a Leaf)> {
        match self.leaf(option) {
            Some(leaf) if !leaf.value.is_empty() => Ok((leaf.value.clone(), leaf)),
            leaf => fail(
                leaf,
                Problem::Missing {
                    kind: self.kind,
                    option,
                },
            ),
        }
    }

    fn value_error<T>(&self, leaf: &Leaf, option: &'static str, error: ValueError) -> Result<T> {
        fail(
            Some(leaf),
            Problem::Value {
                kind: self.kind,
                option,
                error,
            },
        )
    }

    fn bool(&mut self, option: &'static str) -> Result<Option<bool>> {
        match self.leaf(option) {
            None => Ok(None),
            Some(leaf) => match values::parse_bool(&leaf.value) {
                Ok(b) => Ok(Some(b)),
                Err(e) => self.value_error(leaf, option, e),
            },
        }
    }

    fn int(&mut self, option: &'static str, min: i128, max: i128) -> Result<Option<i128>> {
        match self.leaf(option) {
            None => Ok(None),
            Some(leaf) => match values::parse_int(&leaf.value, min, max) {
                Ok(n) => Ok(Some(n)),
                Err(e) => self.value_error(leaf, option, e),
            },
        }
    }

    /// A Traefik duration, in nanoseconds, with its leaf (`None` when absent). `option` is the name
    /// Traefik documents (it is looked up lower-cased); a negative one is refused unless
    /// `negative_ok`.
    fn duration(&mut self, option: &'static str, negative_ok: bool) -> Result<Option<(i128, &'a Leaf)>> {
        let Some(leaf) = self.leaf(&option.to_ascii_lowercase()) else {
            return Ok(None);
        };
        match values::parse_duration(&leaf.value) {
            Ok(ns) if ns < 0 && !negative_ok => fail(
                Some(leaf),
                Problem::Invalid {
                    kind: self.kind,
                    option,
                    problem: "is negative".into(),
                },
            ),
            Ok(ns) => Ok(Some((ns, leaf))),
            Err(e) => self.value_error(leaf, option, e),
        }
    }

    fn list(&mut self, option: &str) -> Option<(Vec<String>, &'a Leaf)> {
        self.leaf(option)
            .map(|leaf| (values::split_list(&leaf.value), leaf))
    }

    fn regexp(&self, leaf: &Leaf, option: &'static str, pattern: &str) -> Result<String> {
        match berth_model::compile_regex(pattern) {
            Ok(_) => Ok(pattern.to_string()),
            Err(e) => fail(
                Some(leaf),
                Problem::Invalid {
                    kind: self.kind,
                    option,
                    problem: e.to_string(),
                },
            ),
        }
    }

    /// Reports the first option not read: unknown to Traefik, or listed in `not_implemented`.
    fn finish(self, not_implemented: &[&str]) -> Result<()> {
        if let Some(node) = self.fields.unknown().first().copied() {
            let lower = node.name.to_ascii_lowercase();
            let problem = if not_implemented.contains(&lower.as_str()) {
                Problem::OptionNotImplemented {
                    kind: self.kind,
                    option: node.name.clone(),
                }
            } else {
                Problem::UnknownOption {
                    kind: self.kind,
                    option: node.name.clone(),
                }
            };
            return fail(node.first_leaf(), problem);
        }
        Ok(())
    }
}

fn strip_prefix(node: &Node) -> Result<Kind> {
    let mut o = Options::new("stripPrefix", node);
    let prefixes = match o.list("prefixes") {
        None => Vec::new(),
        Some((list, leaf)) => {
            if list.iter().any(String::is_empty) {
                return fail(
                    Some(leaf),
                    Problem::Invalid {
                        kind: "stripPrefix",
                        option: "prefixes",
                        problem: "has an empty prefix".into(),
                    },
                );
            }
            list
        }
    };
    // Deprecated in v3 and off unless set to true (it was on by default in v2).
    let force_slash = o.bool("forceslash")?.unwrap_or(false);
    o.finish(&[])?;
    Ok(Kind::StripPrefix(StripPrefix {
        prefixes,
        force_slash,
    }))
}

fn strip_prefix_regex(node: &Node) -> Result<Kind> {
    let mut o = Options::new("stripPrefixRegex", node);
    let mut regexps = Vec::new();
    if let Some((list, leaf)) = o.list("regex") {
        for pattern in list {
            regexps.push(o.regexp(leaf, "regex", &pattern)?);
        }
    }
    o.finish(&[])?;
    Ok(Kind::StripPrefixRegex(StripPrefixRegex { regexps }))
}

fn add_prefix(node: &Node) -> Result<Kind> {
    let mut o = Options::new("addPrefix", node);
    let (prefix, _) = o.required("prefix")?;
    o.finish(&[])?;
    Ok(Kind::AddPrefix(AddPrefix { prefix }))
}

fn replace_path(node: &Node) -> Result<Kind> {
    let mut o = Options::new("replacePath", node);
    let path = o.string("path").unwrap_or_default();
    o.finish(&[])?;
    Ok(Kind::ReplacePath(ReplacePath { path }))
}

fn replace_path_regex(node: &Node) -> Result<Kind> {
    let mut o = Options::new("replacePathRegex", node);
    let (pattern, leaf) = match o.leaf("regex") {
        Some(leaf) => (leaf.value.trim().to_string(), Some(leaf)),
        None => (String::new(), None),
    };
    let regexp = match leaf {
        Some(leaf) => o.regexp(leaf, "regex", &pattern)?,
        None => pattern,
    };
    let replacement = o.string("replacement").unwrap_or_default().trim().to_string();
    o.finish(&[])?;
    Ok(Kind::ReplacePathRegex(ReplacePathRegex { regexp, replacement }))
}

/// Options of `headers` that Berth does not run (security and CORS headers).
const HEADERS_NOT_IMPLEMENTED: &[&str] = &[
    "accesscontrolallowcredentials",
    "accesscontrolallowheaders",
    "accesscontrolallowmethods",
    "accesscontrolalloworiginlist",
    "accesscontrolalloworiginlistregex",
    "accesscontrolexposeheaders",
    "accesscontrolmaxage",
    "addvaryheader",
    "allowedhosts",
    "hostsproxyheaders",
    "sslredirect",
    "ssltemporaryredirect",
    "sslhost",
    "sslproxyheaders",
    "sslforcehost",
    "stsseconds",
    "stsincludesubdomains",
    "stspreload",
    "forcestsheader",
    "framedeny",
    "customframeoptionsvalue",
    "contenttypenosniff",
    "browserxssfilter",
    "custombrowserxssvalue",
    "contentsecuritypolicy",
    "contentsecuritypolicyreportonly",
    "publickey",
    "referrerpolicy",
    "featurepolicy",
    "permissionspolicy",
    "isdevelopment",
];

fn headers(node: &Node) -> Result<Kind> {
    let mut o = Options::new("headers", node);
    let mut read = |option: &'static str| -> Result<Vec<HeaderValue>> {
        let Some(map) = o.node(option) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in &map.children {
            let Some(leaf) = &entry.leaf else {
                return fail(
                    entry.first_leaf(),
                    Problem::Invalid {
                        kind: "headers",
                        option,
                        problem: format!("header {:?} has no value", entry.name),
                    },
                );
            };
            let name = match values::header_name(&entry.name) {
                Ok(name) => name,
                Err(error) => {
                    return fail(
                        Some(leaf),
                        Problem::Value {
                            kind: "headers",
                            option,
                            error,
                        },
                    )
                }
            };
            out.push(HeaderValue {
                name,
                value: leaf.value.clone(),
            });
        }
        out.sort_by_key(|h| h.name.to_ascii_lowercase());
        Ok(out)
    };
    let request = read("customrequestheaders")?;
    let response = read("customresponseheaders")?;
    let leaf = node.first_leaf();
    o.finish(HEADERS_NOT_IMPLEMENTED)?;
    if request.is_empty() && response.is_empty() {
        return fail(
            leaf,
            Problem::Invalid {
                kind: "headers",
                option: "customrequestheaders",
                problem: "no header is set (Traefik refuses an empty headers middleware)".into(),
            },
        );
    }
    Ok(Kind::Headers(Headers { request, response }))
}

fn redirect_scheme(node: &Node) -> Result<Kind> {
    let mut o = Options::new("redirectScheme", node);
    let (scheme, scheme_leaf) = o.required("scheme")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return fail(
            Some(scheme_leaf),
            Problem::Invalid {
                kind: "redirectScheme",
                option: "scheme",
                problem: format!("{scheme:?} is neither http nor https"),
            },
        );
    }
    let mut port = String::new();
    if let Some(leaf) = o.leaf("port") {
        if !leaf.value.is_empty() {
            match values::parse_int(&leaf.value, 1, 65535) {
                Ok(_) => port = leaf.value.clone(),
                Err(e) => return o.value_error(leaf, "port", e),
            }
        }
    }
    // Traefik leaves the scheme's default port out of the new URL.
    if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
        port.clear();
    }
    let permanent = o.bool("permanent")?.unwrap_or(false);
    o.finish(&[])?;
    Ok(Kind::RedirectScheme(RedirectScheme {
        scheme,
        port,
        permanent,
    }))
}

fn redirect_regex(node: &Node) -> Result<Kind> {
    let mut o = Options::new("redirectRegex", node);
    let (pattern, leaf) = o.required("regex")?;
    let regexp = o.regexp(leaf, "regex", &pattern)?;
    let replacement = o.string("replacement").unwrap_or_default();
    let permanent = o.bool("permanent")?.unwrap_or(false);
    o.finish(&[])?;
    Ok(Kind::RedirectRegex(RedirectRegex {
        regexp,
        replacement,
        permanent,
    }))
}

fn basic_auth(node: &Node) -> Result<Kind> {
    let mut o = Options::new("basicAuth", node);
    let mut users = Vec::new();
    let users_leaf = o.leaf("users");
    if let Some(leaf) = users_leaf {
        for line in values::split_list(&leaf.value) {
            match values::htpasswd_user(&line) {
                Ok(user) => users.push(user),
                Err(e) => return o.value_error(leaf, "users", e),
            }
        }
    }
    let realm = o.string("realm").unwrap_or_default();
    let remove_header = o.bool("removeheader")?.unwrap_or(false);
    let header_field = match o.leaf("headerfield") {
        Some(leaf) if !leaf.value.is_empty() => match values::header_name(&leaf.value) {
            Ok(name) => name,
            Err(e) => return o.value_error(leaf, "headerField", e),
        },
        _ => String::new(),
    };
    o.finish(&["usersfile"])?;
    if users.is_empty() {
        return fail(
            users_leaf.or(node.first_leaf()),
            Problem::Missing {
                kind: "basicAuth",
                option: "users",
            },
        );
    }
    Ok(Kind::BasicAuth(BasicAuth {
        users,
        realm,
        remove_header,
        header_field,
    }))
}

/// `sourceCriterion` of a rate limit or in-flight limit. `None` when not given.
fn source_criterion(kind: &'static str, node: Option<&Node>) -> Result<Option<SourceCriterion>> {
    let Some(node) = node else {
        return Ok(None);
    };
    let mut o = Options::new(kind, node);
    let strategy = o.node("ipstrategy");
    let header = o.leaf("requestheadername");
    let request_header = match header {
        Some(leaf) if !leaf.value.is_empty() => match values::header_name(&leaf.value) {
            Ok(name) => name,
            Err(e) => return o.value_error(leaf, "sourceCriterion.requestHeaderName", e),
        },
        _ => String::new(),
    };
    let request_host = o.bool("requesthost")?.unwrap_or(false);
    o.finish(&[])?;
    let leaf = node.first_leaf();
    if strategy.is_some() && !request_header.is_empty() {
        return fail(
            leaf,
            Problem::Exclusive {
                kind,
                first: "ipStrategy",
                second: "requestHeaderName",
            },
        );
    }
    if strategy.is_some() && request_host {
        return fail(
            leaf,
            Problem::Exclusive {
                kind,
                first: "ipStrategy",
                second: "requestHost",
            },
        );
    }
    if !request_header.is_empty() && request_host {
        return fail(
            leaf,
            Problem::Exclusive {
                kind,
                first: "requestHost",
                second: "requestHeaderName",
            },
        );
    }
    let mut criterion = ip_strategy(kind, strategy)?;
    criterion.request_header = request_header;
    criterion.request_host = request_host;
    Ok(Some(criterion))
}

/// `ipStrategy`: `depth` (X-Forwarded-For from the right) or `excludedIPs`; `ipv6Subnet` is not
/// implemented.
fn ip_strategy(kind: &'static str, node: Option<&Node>) -> Result<SourceCriterion> {
    let mut criterion = SourceCriterion::default();
    let Some(node) = node else {
        return Ok(criterion);
    };
    let mut o = Options::new(kind, node);
    let depth = o.int("depth", 0, i128::from(u32::MAX))?.unwrap_or(0);
    let mut excluded = Vec::new();
    if let Some((list, leaf)) = o.list("excludedips") {
        for item in list {
            match values::ip_range(&item) {
                Ok(range) => excluded.push(range),
                Err(e) => return o.value_error(leaf, "ipStrategy.excludedIPs", e),
            }
        }
    }
    o.finish(&["ipv6subnet"])?;
    criterion.depth = depth as u32;
    // Traefik ignores excludedIPs when a depth is set.
    if depth == 0 {
        criterion.excluded = excluded;
    }
    Ok(criterion)
}

/// Traefik's `circuitBreaker`: `expression` (required; checked as oxy parses it, see
/// `berth_model::circuit_breaker`), `checkPeriod`, `fallbackDuration`, `recoveryDuration`
/// (Traefik durations; 0 or negative keeps the defaults of 100ms, 10s and 10s, as Traefik applies
/// only positive values; below a millisecond counts as one) and `responseCode` (503 by default).
fn circuit_breaker(node: &Node) -> Result<Kind> {
    let mut o = Options::new("circuitBreaker", node);
    let (expression, leaf) = o.required("expression")?;
    if let Err(e) = berth_model::circuit_breaker::Expression::parse(&expression) {
        return fail(
            Some(leaf),
            Problem::Invalid {
                kind: "circuitBreaker",
                option: "expression",
                problem: format!("{expression:?} {e}"),
            },
        );
    }
    let mut duration_ms = |option: &'static str| -> Result<u64> {
        Ok(match o.duration(option, true)? {
            Some((ns, _)) if ns > 0 => u64::try_from((ns + 999_999) / 1_000_000).unwrap_or(u64::MAX),
            _ => 0,
        })
    };
    let check_period_ms = duration_ms("checkPeriod")?;
    let fallback_duration_ms = duration_ms("fallbackDuration")?;
    let recovery_duration_ms = duration_ms("recoveryDuration")?;
    let response_code = o.int("responsecode", 200, 599)?.unwrap_or(503) as u32;
    o.finish(&[])?;
    Ok(Kind::CircuitBreaker(CircuitBreaker {
        expression,
        check_period_ms,
        fallback_duration_ms,
        recovery_duration_ms,
        response_code,
    }))
}

/// Traefik's `retry`: `attempts` (required, at least 1) tries in all, `initialInterval` between
/// them. Only its network-error retry exists in Berth: `status` (retry on response codes) and
/// `timeout` are refused; `disableRetryOnNetworkError=true` leaves nothing to do (Traefik then
/// requires `status`); `maxRequestBodyBytes` and `retryNonIdempotentMethod` only concern status
/// retries in Traefik and are read and checked but change nothing.
fn retry(node: &Node) -> Result<Kind> {
    let mut o = Options::new("retry", node);
    let (attempts, leaf) = o.required("attempts")?;
    let attempts = match values::parse_int(&attempts, 1, 10) {
        Ok(n) => n as u32,
        Err(e) => return o.value_error(leaf, "attempts", e),
    };
    let initial_interval_ms = o
        .duration("initialInterval", false)?
        .map_or(0, |(ns, _)| (ns / 1_000_000).min(60_000) as u64);
    if let Some(true) = o.bool("disableretryonnetworkerror")? {
        return fail(
            o.fields.value("disableretryonnetworkerror"),
            Problem::Invalid {
                kind: "retry",
                option: "disableRetryOnNetworkError",
                problem: "true leaves only retries on status codes, which Berth does not implement".into(),
            },
        );
    }
    o.bool("retrynonidempotentmethod")?;
    o.int("maxrequestbodybytes", i128::from(i64::MIN), i128::from(i64::MAX))?;
    o.finish(&["status", "timeout"])?;
    Ok(Kind::Retry(Retry {
        attempts,
        initial_interval_ms,
    }))
}

fn rate_limit(node: &Node) -> Result<Option<Kind>> {
    let mut o = Options::new("rateLimit", node);
    let average = o
        .int("average", i128::from(i64::MIN), i128::from(i64::MAX))?
        .unwrap_or(0);
    let burst = o
        .int("burst", i128::from(i64::MIN), i128::from(i64::MAX))?
        .unwrap_or(1);
    let period_ns = match o.duration("period", false)? {
        None => 0,
        Some((ns, leaf)) if ns % 1_000_000 != 0 => {
            return fail(
                Some(leaf),
                Problem::Invalid {
                    kind: "rateLimit",
                    option: "period",
                    problem: "is not a whole number of milliseconds".into(),
                },
            )
        }
        Some((ns, _)) => ns,
    };
    let source = source_criterion("rateLimit", o.node("sourcecriterion"))?;
    o.finish(&["redis"])?;
    if average <= 0 {
        // Traefik's limiter lets everything through without an average.
        return Ok(None);
    }
    let period_ms = if period_ns == 0 {
        1000
    } else {
        (period_ns / 1_000_000) as u64
    };
    Ok(Some(Kind::RateLimit(RateLimit {
        average: average as i64,
        period_ms,
        burst: burst.max(1) as i64,
        source: Some(source.unwrap_or_default()),
    })))
}

fn in_flight_req(node: &Node) -> Result<Kind> {
    let mut o = Options::new("inFlightReq", node);
    let amount = match o.leaf("amount") {
        None => {
            return fail(
                node.first_leaf(),
                Problem::Missing {
                    kind: "inFlightReq",
                    option: "amount",
                },
            )
        }
        Some(leaf) => match values::parse_int(&leaf.value, 1, i128::from(i64::MAX)) {
            Ok(n) => n as i64,
            Err(e) => return o.value_error(leaf, "amount", e),
        },
    };
    let source = source_criterion("inFlightReq", o.node("sourcecriterion"))?;
    o.finish(&[])?;
    // Without a criterion, Traefik counts requests per request host.
    let source = source.unwrap_or(SourceCriterion {
        request_host: true,
        ..SourceCriterion::default()
    });
    Ok(Kind::InFlightReq(InFlightReq {
        amount,
        source: Some(source),
    }))
}

fn ip_allow_list(node: &Node, kind: &'static str, has_reject_status: bool) -> Result<Kind> {
    let mut o = Options::new(kind, node);
    let mut ranges = Vec::new();
    let ranges_leaf = o.leaf("sourcerange");
    if let Some(leaf) = ranges_leaf {
        for item in values::split_list(&leaf.value) {
            match values::ip_range(&item) {
                Ok(range) => ranges.push(range),
                Err(e) => return o.value_error(leaf, "sourceRange", e),
            }
        }
    }
    let strategy = ip_strategy(kind, o.node("ipstrategy"))?;
    let reject_status = if has_reject_status {
        match o.int("rejectstatuscode", 0, 999)? {
            None | Some(0) => 0,
            Some(code) if values::is_known_status(code) => code as u32,
            Some(code) => {
                return fail(
                    o.fields.value("rejectstatuscode"),
                    Problem::Invalid {
                        kind,
                        option: "rejectStatusCode",
                        problem: format!("{code} is not an HTTP status code"),
                    },
                )
            }
        }
    } else {
        0
    };
    o.finish(&[])?;
    if ranges.is_empty() {
        return fail(
            ranges_leaf.or(node.first_leaf()),
            Problem::Missing {
                kind,
                option: "sourceRange",
            },
        );
    }
    Ok(Kind::IpAllowList(IpAllowList {
        ranges,
        reject_status,
        source: Some(strategy),
    }))
}

fn chain(node: &Node) -> Result<Definition> {
    let mut o = Options::new("chain", node);
    let names = match o.list("middlewares") {
        Some((list, leaf)) if list.iter().any(String::is_empty) => {
            return fail(
                Some(leaf),
                Problem::Invalid {
                    kind: "chain",
                    option: "middlewares",
                    problem: "has an empty name".into(),
                },
            )
        }
        Some((list, _)) => list,
        None => Vec::new(),
    };
    o.finish(&[])?;
    Ok(Definition::Chain(names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    /// Defines the middleware `m` from `<prefix>.m.<rest>` tags.
    fn define_from(tags: &[&str]) -> Result<Definition> {
        let tags: Vec<String> = tags.iter().map(|t| format!("traefik.m.{t}")).collect();
        let labels = labels::parse(&tags, "traefik");
        let node = labels.root.child("m").cloned().unwrap_or_default();
        define("m", &node, "m@consulcatalog")
    }

    fn kind(tags: &[&str]) -> Kind {
        match define_from(tags) {
            Ok(Definition::One(Some(m))) => m.kind.expect("kind"),
            other => panic!("{tags:?}: {other:?}"),
        }
    }

    fn problem(tags: &[&str]) -> String {
        match define_from(tags) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{tags:?} should fail, got {other:?}"),
        }
    }

    #[test]
    fn path_middlewares() {
        assert_eq!(
            kind(&["stripprefix.prefixes=/api, /v1"]),
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/api".into(), "/v1".into()],
                force_slash: false
            })
        );
        assert_eq!(
            kind(&["stripPrefix.prefixes=/a", "stripPrefix.forceSlash=true"]),
            Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/a".into()],
                force_slash: true
            })
        );
        assert_eq!(
            kind(&["stripprefixregex.regex=^/[a-z]+"]),
            Kind::StripPrefixRegex(StripPrefixRegex {
                regexps: vec!["^/[a-z]+".into()]
            })
        );
        assert_eq!(
            kind(&["addprefix.prefix=/x"]),
            Kind::AddPrefix(AddPrefix { prefix: "/x".into() })
        );
        assert_eq!(
            kind(&["replacepath.path=/y"]),
            Kind::ReplacePath(ReplacePath { path: "/y".into() })
        );
        assert_eq!(
            kind(&[
                "replacepathregex.regex= ^/a/(.*) ",
                "replacepathregex.replacement=/b/$1"
            ]),
            Kind::ReplacePathRegex(ReplacePathRegex {
                regexp: "^/a/(.*)".into(),
                replacement: "/b/$1".into()
            })
        );
    }

    #[test]
    fn headers_set_and_remove() {
        assert_eq!(
            kind(&[
                "headers.customrequestheaders.X-Script-Name=test",
                "headers.customRequestHeaders.X-Remove=",
                "headers.customresponseheaders.X-Custom=1",
            ]),
            Kind::Headers(Headers {
                request: vec![
                    HeaderValue {
                        name: "X-Remove".into(),
                        value: "".into()
                    },
                    HeaderValue {
                        name: "X-Script-Name".into(),
                        value: "test".into()
                    },
                ],
                response: vec![HeaderValue {
                    name: "X-Custom".into(),
                    value: "1".into()
                }],
            })
        );
        assert!(problem(&["headers.framedeny=true"]).contains("not implemented"));
        assert!(
            problem(&["headers.sslredirect=true", "headers.customrequestheaders.a=b"])
                .contains("not implemented")
        );
        assert!(problem(&["headers.bogus=1"]).contains("no option"));
    }

    #[test]
    fn redirects() {
        assert_eq!(
            kind(&["redirectscheme.scheme=https", "redirectscheme.permanent=true"]),
            Kind::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: "".into(),
                permanent: true
            })
        );
        assert_eq!(
            kind(&["redirectscheme.scheme=https", "redirectscheme.port=443"]),
            Kind::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: "".into(),
                permanent: false
            })
        );
        assert_eq!(
            kind(&["redirectscheme.scheme=https", "redirectscheme.port=8443"]),
            Kind::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: "8443".into(),
                permanent: false
            })
        );
        assert!(problem(&["redirectscheme.port=80"]).contains("scheme is required"));
        assert!(
            problem(&["redirectscheme.scheme=https", "redirectscheme.port=99999"]).contains("out of range")
        );
        assert!(
            problem(&["redirectscheme.scheme=https", "redirectscheme.permanent=yes"])
                .contains("not a boolean")
        );
        assert_eq!(
            kind(&[
                "redirectregex.regex=^http://(.*)",
                "redirectregex.replacement=https://$1"
            ]),
            Kind::RedirectRegex(RedirectRegex {
                regexp: "^http://(.*)".into(),
                replacement: "https://$1".into(),
                permanent: false
            })
        );
        assert!(
            problem(&["redirectregex.regex=(", "redirectregex.replacement=x"]).contains("does not compile")
        );
    }

    #[test]
    fn basic_auth_users_and_options() {
        let user = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/";
        assert_eq!(
            kind(&[
                &format!("basicauth.users={user}"),
                "basicauth.realm=r",
                "basicauth.removeheader=true",
                "basicauth.headerfield=X-User"
            ]),
            Kind::BasicAuth(BasicAuth {
                users: vec![user.into()],
                realm: "r".into(),
                remove_header: true,
                header_field: "X-User".into()
            })
        );
        assert!(problem(&["basicauth.users=test:plain"]).contains("hash"));
        assert!(problem(&["basicauth.usersfile=/etc/htpasswd"]).contains("not implemented"));
        assert!(problem(&["basicauth.realm=x"]).contains("users is required"));
    }

    #[test]
    fn rate_and_in_flight_limits() {
        assert_eq!(
            kind(&[
                "ratelimit.average=100",
                "ratelimit.period=1m",
                "ratelimit.burst=50"
            ]),
            Kind::RateLimit(RateLimit {
                average: 100,
                period_ms: 60_000,
                burst: 50,
                source: Some(SourceCriterion::default())
            })
        );
        assert_eq!(
            kind(&[
                "ratelimit.average=5",
                "ratelimit.sourcecriterion.ipstrategy.depth=2"
            ]),
            Kind::RateLimit(RateLimit {
                average: 5,
                period_ms: 1000,
                burst: 1,
                source: Some(SourceCriterion {
                    depth: 2,
                    ..SourceCriterion::default()
                })
            })
        );
        assert_eq!(define_from(&["ratelimit.burst=5"]), Ok(Definition::One(None)));
        assert!(problem(&["ratelimit.average=5", "ratelimit.period=-1s"]).contains("negative"));
        assert!(problem(&["ratelimit.average=5", "ratelimit.redis.endpoints=x"]).contains("not implemented"));
        assert!(problem(&[
            "ratelimit.average=5",
            "ratelimit.sourcecriterion.requesthost=true",
            "ratelimit.sourcecriterion.requestheadername=X-A"
        ])
        .contains("mutually exclusive"));
        assert_eq!(
            kind(&["inflightreq.amount=10"]),
            Kind::InFlightReq(InFlightReq {
                amount: 10,
                source: Some(SourceCriterion {
                    request_host: true,
                    ..SourceCriterion::default()
                })
            })
        );
        assert!(problem(&["inflightreq.amount=0"]).contains("out of range"));
    }

    #[test]
    fn allow_lists() {
        assert_eq!(
            kind(&[
                "ipallowlist.sourcerange=10.0.0.0/8, 192.168.1.7",
                "ipallowlist.ipstrategy.excludedips=10.1.0.0/16",
                "ipallowlist.rejectstatuscode=404"
            ]),
            Kind::IpAllowList(IpAllowList {
                ranges: vec!["10.0.0.0/8".into(), "192.168.1.7".into()],
                reject_status: 404,
                source: Some(SourceCriterion {
                    excluded: vec!["10.1.0.0/16".into()],
                    ..SourceCriterion::default()
                })
            })
        );
        assert!(matches!(
            kind(&["ipwhitelist.sourcerange=10.0.0.0/8"]),
            Kind::IpAllowList(_)
        ));
        assert!(problem(&["ipallowlist.sourcerange=10.0.0.0/33"]).contains("neither an IP"));
        assert!(problem(&["ipallowlist.rejectstatuscode=403"]).contains("sourceRange is required"));
        assert!(
            problem(&["ipallowlist.sourcerange=::1", "ipallowlist.rejectstatuscode=999"])
                .contains("not an HTTP status")
        );
        assert!(problem(&[
            "ipallowlist.sourcerange=::1",
            "ipallowlist.ipstrategy.ipv6subnet=64"
        ])
        .contains("not implemented"));
    }

    #[test]
    fn chains_and_kinds() {
        assert_eq!(
            define_from(&["chain.middlewares=a, b@consulcatalog"]),
            Ok(Definition::Chain(vec!["a".into(), "b@consulcatalog".into()]))
        );
        assert!(problem(&["forwardauth.address=http://auth"]).contains("not implemented by Berth"));
        assert!(problem(&["compress=true"]).contains("not implemented by Berth"));
        assert!(problem(&["stripprefx.prefixes=/a"]).contains("not a Traefik middleware kind"));
        assert!(problem(&["stripprefix.prefixes=/a", "addprefix.prefix=/b"]).contains("several kinds"));
        assert!(problem(&["addprefix.prefix=/a", "addprefix.prefx=/b"]).contains("no option"));
    }

    #[test]
    fn errors_name_the_tag() {
        let err = define_from(&["ratelimit.average=many"]).expect_err("bad");
        assert_eq!(err.tag.as_deref(), Some("traefik.m.ratelimit.average=many"));
    }
}
