//! Compiles the routing tags of one Consul service instance into a [`Frontend`]: which host names
//! (and optional path prefix) on which entrypoints should reach that instance.
//!
//! Berth reads the Traefik v1 Consul Catalog dialect that the article's containers carry, so they
//! work unchanged:
//!
//! | tag (with the default prefix `traefik`)          | meaning                                         |
//! |--------------------------------------------------|-------------------------------------------------|
//! | `traefik.enable=true\|false`                      | expose the instance (default: `exposed_by_default`) |
//! | `traefik.frontend.rule=Host:a.example,b.example` | host names; `;PathPrefix:/api` adds a path prefix |
//! | `traefik.frontend.entryPoints=http,https`        | entrypoints to serve on (default: all)          |
//! | `traefik.weight=N`                               | share of requests this instance gets (default 1) |
//!
//! An exposed instance without a rule gets Traefik's default rule `Host:{service}.{domain}`.
//! Other `traefik.*` tags (backend settings, TLS, ...) are not interpreted yet and are ignored;
//! tags without the prefix are never looked at.
//!
//! This crate is pure: it knows nothing of Consul's API, of snapshots or of proxies. It is not
//! where instances are grouped into routes or checked for conflicts (that is the control plane's
//! compile step); it only answers "what does this instance ask for, or what is wrong with it".

mod rule;

pub use rule::{parse_rule, Rule};

/// How tags are read; mirrors Traefik's Consul Catalog provider options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Tag prefix, `traefik` by default.
    pub prefix: String,
    /// Whether an instance without an `enable` tag is exposed.
    pub exposed_by_default: bool,
    /// Domain of the default rule `Host:{service}.{domain}`; without one, an exposed instance
    /// needs an explicit rule.
    pub domain: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "traefik".into(),
            exposed_by_default: false,
            domain: None,
        }
    }
}

/// What an exposed instance asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// Lowercase host names, sorted, without duplicates; never empty.
    pub hosts: Vec<String>,
    /// `""` or a prefix starting with `/`.
    pub path_prefix: String,
    /// Entrypoint names, sorted; empty means every entrypoint.
    pub entrypoints: Vec<String>,
}

/// An exposed instance: its frontend and its load-balancing weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub frontend: Frontend,
    pub weight: u32,
}

/// A tag that could not be used, and why. The instance it belongs to is not routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {tag:?}: {problem}")]
pub struct TagError {
    /// The offending tag as registered (or, for a missing rule, a description of the tag needed).
    pub tag: String,
    pub problem: Problem,
}

/// What is wrong with a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{value:?} is not a boolean (use true or false)")]
    NotABoolean { value: String },
    #[error("{value:?} is not a positive whole number")]
    BadWeight { value: String },
    #[error("entrypoint list is empty or has an empty name")]
    BadEntrypoints,
    #[error("given twice with different values ({first:?} and {second:?})")]
    Conflicting { first: String, second: String },
    #[error("no frontend rule and no --domain to build the default rule Host:{{service}}.{{domain}}")]
    NoRule,
    #[error("default host {host:?} built from the service name is not a valid host name")]
    BadDefaultHost { host: String },
    #[error(transparent)]
    Rule(#[from] rule::RuleError),
}

/// Compiles the tags of one instance of `service`. `Ok(None)`: not exposed.
pub fn compile(service: &str, tags: &[String], settings: &Settings) -> Result<Option<Exposure>, TagError> {
    let mut enable: Option<(&str, bool)> = None;
    let mut rule: Option<&str> = None;
    let mut entrypoints: Option<&str> = None;
    let mut weight: Option<&str> = None;
    let mut rule_tag = "";
    let mut entrypoints_tag = "";
    let mut weight_tag = "";

    for tag in tags {
        let Some(rest) = tag
            .strip_prefix(settings.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "enable" => {
                let parsed = parse_bool(value).ok_or_else(|| TagError {
                    tag: tag.clone(),
                    problem: Problem::NotABoolean { value: value.into() },
                })?;
                if let Some((first, before)) = enable {
                    if before != parsed {
                        return Err(conflict(tag, first, value));
                    }
                }
                enable = Some((value, parsed));
            }
            "frontend.rule" => {
                set_once(&mut rule, value, tag)?;
                rule_tag = tag;
            }
            "frontend.entryPoints" | "frontend.entrypoints" => {
                set_once(&mut entrypoints, value, tag)?;
                entrypoints_tag = tag;
            }
            "weight" | "backend.weight" => {
                set_once(&mut weight, value, tag)?;
                weight_tag = tag;
            }
            _ => {}
        }
    }

    let exposed = enable.map_or(settings.exposed_by_default, |(_, on)| on);
    if !exposed {
        return Ok(None);
    }

    let (hosts, path_prefix) = match rule {
        Some(text) => {
            let parsed = parse_rule(text).map_err(|e| TagError {
                tag: rule_tag.into(),
                problem: e.into(),
            })?;
            (parsed.hosts, parsed.path_prefix)
        }
        None => {
            let missing = format!("{}.frontend.rule", settings.prefix);
            let domain = settings.domain.as_deref().filter(|d| !d.is_empty());
            let domain = domain.ok_or_else(|| TagError {
                tag: missing.clone(),
                problem: Problem::NoRule,
            })?;
            let host = format!("{}.{}", normalize(service), domain.trim_matches('.')).to_ascii_lowercase();
            if !rule::is_host_name(&host) {
                return Err(TagError {
                    tag: missing,
                    problem: Problem::BadDefaultHost { host },
                });
            }
            (vec![host], String::new())
        }
    };

    let entrypoints = match entrypoints {
        None => Vec::new(),
        Some(list) => {
            let mut names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                return Err(TagError {
                    tag: entrypoints_tag.into(),
                    problem: Problem::BadEntrypoints,
                });
            }
            names.sort();
            names.dedup();
            names
        }
    };

    let weight = match weight {
        None => 1,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| TagError {
                tag: weight_tag.into(),
                problem: Problem::BadWeight { value: text.into() },
            })?,
    };

    Ok(Some(Exposure {
        frontend: Frontend {
            hosts,
            path_prefix,
            entrypoints,
        },
        weight,
    }))
}

fn set_once<'a>(slot: &mut Option<&'a str>, value: &'a str, tag: &str) -> Result<(), TagError> {
    match slot {
        Some(first) if *first != value => Err(conflict(tag, first, value)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn conflict(tag: &str, first: &str, second: &str) -> TagError {
    TagError {
        tag: tag.into(),
        problem: Problem::Conflicting {
            first: first.into(),
            second: second.into(),
        },
    }
}

/// Go's `strconv.ParseBool`, which Traefik uses for `enable`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Traefik's service-name normalisation for default rules: every character that is not a letter
/// or a digit becomes `-` (so `web_go` becomes `web-go`).
pub fn normalize(service: &str) -> String {
    service
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn exposed(service: &str, list: &[&str], settings: &Settings) -> Exposure {
        compile(service, &tags(list), settings)
            .expect("valid tags")
            .expect("exposed")
    }

    #[test]
    fn the_articles_tags_compile() {
        let e = exposed(
            "web_go",
            &[
                "traefik.enable=true",
                "traefik.frontend.entryPoints=http",
                "traefik.frontend.rule=Host:go.traefix.example.localhost",
            ],
            &Settings::default(),
        );
        assert_eq!(e.frontend.hosts, vec!["go.traefix.example.localhost"]);
        assert_eq!(e.frontend.entrypoints, vec!["http"]);
        assert_eq!(e.frontend.path_prefix, "");
        assert_eq!(e.weight, 1);
    }

    #[test]
    fn not_exposed_without_enable_unless_exposed_by_default() {
        let list = ["traefik.frontend.rule=Host:a.example"];
        assert_eq!(compile("a", &tags(&list), &Settings::default()), Ok(None));
        let by_default = Settings {
            exposed_by_default: true,
            ..Settings::default()
        };
        assert_eq!(exposed("a", &list, &by_default).frontend.hosts, vec!["a.example"]);
        assert_eq!(
            compile("a", &tags(&["traefik.enable=false"]), &by_default),
            Ok(None)
        );
    }

    #[test]
    fn default_rule_uses_the_normalised_service_name_and_domain() {
        let settings = Settings {
            domain: Some("localhost".into()),
            ..Settings::default()
        };
        let e = exposed("web_go", &["traefik.enable=true"], &settings);
        assert_eq!(e.frontend.hosts, vec!["web-go.localhost"]);
    }

    #[test]
    fn exposed_without_rule_or_domain_is_an_error() {
        let err = compile("a", &tags(&["traefik.enable=true"]), &Settings::default()).unwrap_err();
        assert_eq!(err.problem, Problem::NoRule);
        assert_eq!(err.tag, "traefik.frontend.rule");
    }

    #[test]
    fn custom_prefix() {
        let settings = Settings {
            prefix: "berth".into(),
            ..Settings::default()
        };
        let e = exposed(
            "a",
            &[
                "berth.enable=true",
                "berth.frontend.rule=Host:a.example",
                "traefik.enable=false",
            ],
            &settings,
        );
        assert_eq!(e.frontend.hosts, vec!["a.example"]);
        assert_eq!(compile("a", &tags(&["traefik.enable=true"]), &settings), Ok(None));
    }

    #[test]
    fn bad_values_name_the_tag() {
        let err = compile("a", &tags(&["traefik.enable=yes"]), &Settings::default()).unwrap_err();
        assert_eq!(err.tag, "traefik.enable=yes");
        assert!(err.to_string().contains("not a boolean"), "{err}");

        let err = compile(
            "a",
            &tags(&["traefik.enable=true", "traefik.frontend.rule=Host:"]),
            &Settings::default(),
        )
        .unwrap_err();
        assert_eq!(err.tag, "traefik.frontend.rule=Host:");

        let list = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.weight=0",
        ];
        let err = compile("a", &tags(&list), &Settings::default()).unwrap_err();
        assert_eq!(err.problem, Problem::BadWeight { value: "0".into() });

        let list = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.frontend.entryPoints=http,",
        ];
        let err = compile("a", &tags(&list), &Settings::default()).unwrap_err();
        assert_eq!(err.problem, Problem::BadEntrypoints);
    }

    #[test]
    fn contradicting_tags_are_an_error_but_repeats_are_not() {
        let list = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.frontend.rule=Host:b.example",
        ];
        let err = compile("a", &tags(&list), &Settings::default()).unwrap_err();
        assert!(matches!(err.problem, Problem::Conflicting { .. }), "{err}");
        let list = [
            "traefik.enable=true",
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
        ];
        assert!(compile("a", &tags(&list), &Settings::default()).is_ok());
    }

    #[test]
    fn weight_and_entrypoints_are_read() {
        let list = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.weight=5",
            "traefik.frontend.entryPoints=https, http,http",
        ];
        let e = exposed("a", &list, &Settings::default());
        assert_eq!(e.weight, 5);
        assert_eq!(e.frontend.entrypoints, vec!["http", "https"]);
    }

    #[test]
    fn unrelated_tags_are_ignored() {
        let list = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:a.example",
            "traefik.backend.loadbalancer=drr",
            "v1",
            "x=y",
        ];
        assert!(compile("a", &tags(&list), &Settings::default()).is_ok());
    }
}
