//! gorilla/mux route templates, which Traefik's v2 `Host`-less matchers use: `HostRegexp`,
//! `Path`, `PathPrefix` and the values of `Query` may hold variables `{name}` or
//! `{name:pattern}` (a Go regexp). gorilla/mux turns a template into one anchored Go regexp:
//! the text around the variables is quoted, each variable becomes a group with its pattern (or a
//! default: `[^.]+` in a host, `[^/]+` in a path, `.*` in a query value), and a host template is
//! case-insensitive.
//!
//! Checks, as gorilla/mux makes them: braces balance (nested braces belong to the pattern:
//! `{id:[0-9]{2}}`), no variable has an empty name or pattern, and each pattern compiles on its
//! own (`^pattern$`) and within the whole.
//!
//! Not for: deciding what a template becomes in the route model (`v2.rs`).

use super::go_regexp::{self, quote_meta};

/// A parsed template: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Variable { name: &'a str, pattern: &'a str },
}

/// Parses `template`, giving variables without a pattern `default_pattern`. The error is
/// gorilla/mux's reason.
pub(crate) fn parse<'a>(template: &'a str, default_pattern: &'a str) -> Result<Template<'a>, String> {
    let mut parts = Vec::new();
    let mut level = 0usize;
    let mut open = 0;
    let mut text_start = 0;
    for (i, b) in template.bytes().enumerate() {
        match b {
            b'{' => {
                level += 1;
                if level == 1 {
                    open = i;
                }
            }
            b'}' => {
                if level == 0 {
                    return Err(format!("unbalanced braces in {template:?}"));
                }
                level -= 1;
                if level == 0 {
                    if open > text_start {
                        parts.push(Part::Text(&template[text_start..open]));
                    }
                    let inner = &template[open + 1..i];
                    let (name, pattern) = match inner.split_once(':') {
                        Some((name, pattern)) => (name, pattern),
                        None => (inner, default_pattern),
                    };
                    if name.is_empty() || pattern.is_empty() {
                        return Err(format!("missing name or pattern in {:?}", &template[open..=i]));
                    }
                    if let Err(e) = go_regexp::parse(&format!("^{pattern}$")) {
                        return Err(format!("pattern of variable {name:?}: {}", e.message));
                    }
                    parts.push(Part::Variable { name, pattern });
                    text_start = i + 1;
                }
            }
            _ => {}
        }
    }
    if level != 0 {
        return Err(format!("unbalanced braces in {template:?}"));
    }
    if text_start < template.len() {
        parts.push(Part::Text(&template[text_start..]));
    }
    Ok(Template { parts })
}

impl<'a> Template<'a> {
    pub(crate) fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Variable { .. }))
    }

    pub(crate) fn variable_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { name, .. } => Some(*name),
            Part::Text(_) => None,
        })
    }

    /// The variables' patterns, parsed.
    pub(crate) fn patterns(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { pattern, .. } => Some(*pattern),
            Part::Text(_) => None,
        })
    }

    /// The template's text when it has no variables.
    pub(crate) fn literal(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => *t,
                Part::Variable { .. } => "",
            })
            .collect()
    }

    /// The Go regexp gorilla/mux builds: `prefix`, the quoted text and variable groups, `suffix`.
    pub(crate) fn go_regexp(&self, prefix: &str, suffix: &str) -> String {
        let mut out = String::from(prefix);
        let mut index = 0;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(&quote_meta(t)),
                Part::Variable { pattern, .. } => {
                    out.push_str(&format!("(?P<v{index}>{pattern})"));
                    index += 1;
                }
            }
        }
        out.push_str(suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_gorilla_regexps() {
        let t = parse("{subdomain:(foo\\.)?bar\\.com}", "[^.]+").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.go_regexp("(?i)^", "$"), r"(?i)^(?P<v0>(foo\.)?bar\.com)$");
        let t = parse("/css-{name:[0-9]?}", "[^/]+").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.go_regexp("^", ""), "^/css-(?P<v0>[0-9]?)");
        let t = parse("{a}.{b}.example.com", "[^.]+").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.go_regexp("(?i)^", "$"),
            r"(?i)^(?P<v0>[^.]+)\.(?P<v1>[^.]+)\.example\.com$"
        );
        assert_eq!(t.variable_names().collect::<Vec<_>>(), ["a", "b"]);
        let t = parse("/id/{id:[0-9]{2}}", "[^/]+").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.patterns().collect::<Vec<_>>(), ["[0-9]{2}"]);
        let t = parse("/plain", "[^/]+").unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.has_variables());
        assert_eq!(t.literal(), "/plain");
    }

    #[test]
    fn rejects_what_gorilla_rejects() {
        for bad in ["{test", "a}", "{}", "{:x}", "{a:}", "{a:(}", "{a:a)(b}"] {
            assert!(parse(bad, "[^/]+").is_err(), "{bad}");
        }
    }
}
