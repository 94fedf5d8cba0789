//! Traefik's default-rule template (`defaultRule`, `Host(`{{ normalize .Name }}`)` by default):
//! the few forms of Go's `text/template` that operators write in it, evaluated for one instance.
//!
//! Understood: literal text; actions `{{ ... }}` (with `{{-` / `-}}` trimming white space); the
//! fields `.Name` (the Consul service name) and `.Labels` (the instance's labels, keys in the
//! generic `traefik.` form), `.Labels.key`; string literals; parentheses; pipelines `x | f`; and
//! the functions `normalize` (Traefik's), `lower`, `upper` (sprig's) and `index`. Anything else
//! (other sprig functions, `if`, `range`, variables) is refused with a message naming it, rather
//! than evaluated differently from Traefik.
//!
//! Not for: parsing the rule the template produces (see `traefik_rule`).

use std::collections::BTreeMap;

/// A template that Berth cannot evaluate, with the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("default rule template {template:?}, at position {position}: {problem}")]
pub(crate) struct TemplateError {
    pub template: String,
    pub position: usize,
    pub problem: String,
}

/// What a template sees.
pub(crate) struct Model<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Traefik's `provider.Normalize`: runs of characters that are neither letters nor digits become
/// one '-', and none is left at either end (`web_go` → `web-go`, `_a__b_` → `a-b`).
pub(crate) fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Evaluates `template` for one instance.
pub(crate) fn render(template: &str, model: &Model<'_>) -> Result<String, TemplateError> {
    let fail = |position: usize, problem: String| TemplateError {
        template: template.to_string(),
        position,
        problem,
    };
    let mut out = String::new();
    let mut rest = 0;
    while let Some(open) = template[rest..].find("{{").map(|i| i + rest) {
        let mut text = &template[rest..open];
        let mut start = open + 2;
        if template[start..].starts_with("- ") || template[start..].starts_with("-\t") {
            text = text.trim_end();
            start += 1;
        }
        out.push_str(text);
        let close = template[start..]
            .find("}}")
            .map(|i| i + start)
            .ok_or_else(|| fail(open, "unclosed action (missing }})".into()))?;
        let mut end = close;
        let mut trim_after = false;
        if template[start..close].ends_with(" -") || template[start..close].ends_with("\t-") {
            end -= 1;
            trim_after = true;
        }
        let action = &template[start..end];
        let value = Evaluator {
            src: action,
            at: 0,
            base: start,
            model,
        }
        .action()
        .map_err(|(position, problem)| fail(position, problem))?;
        match value {
            Value::Text(text) => out.push_str(&text),
            Value::Labels => return Err(fail(start, "the action prints .Labels, a map, not text".into())),
        }
        rest = close + 2;
        if trim_after {
            let after = &template[rest..];
            rest += after.len() - after.trim_start().len();
        }
    }
    out.push_str(&template[rest..]);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Labels,
}

type Failure = (usize, String);

struct Evaluator<'a> {
    src: &'a str,
    at: usize,
    /// Offset of `src` in the whole template.
    base: usize,
    model: &'a Model<'a>,
}

const FUNCTIONS: &str = "normalize, lower, upper, index";

impl Evaluator<'_> {
    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, Failure> {
        Err((self.base + self.at, problem.into()))
    }

    fn skip_space(&mut self) {
        let rest = &self.src[self.at..];
        self.at += rest.len() - rest.trim_start().len();
    }

    fn action(mut self) -> Result<Value, Failure> {
        self.skip_space();
        if self.src[self.at..].starts_with("/*") {
            return self.fail("comments are not supported in the default rule template");
        }
        let value = self.pipeline()?;
        self.skip_space();
        if self.at < self.src.len() {
            return self.fail(format!("unexpected {:?}", &self.src[self.at..]));
        }
        Ok(value)
    }

    fn pipeline(&mut self) -> Result<Value, Failure> {
        let mut value = self.command(None)?;
        loop {
            self.skip_space();
            if !self.src[self.at..].starts_with('|') {
                return Ok(value);
            }
            self.at += 1;
            self.skip_space();
            value = self.command(Some(value))?;
        }
    }

    /// An operand, or a function call with its arguments (and `piped` as the last one).
    fn command(&mut self, piped: Option<Value>) -> Result<Value, Failure> {
        self.skip_space();
        let start = self.at;
        let word: String = self.src[self.at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            if piped.is_some() {
                return self.fail("expected a function after '|'");
            }
            return self.operand();
        }
        self.at += word.len();
        let mut args = Vec::new();
        loop {
            self.skip_space();
            let rest = &self.src[self.at..];
            if rest.is_empty() || rest.starts_with('|') || rest.starts_with(')') {
                break;
            }
            args.push(self.operand()?);
        }
        args.extend(piped);
        let position = start;
        let text = |v: &Value| match v {
            Value::Text(t) => Ok(t.clone()),
            Value::Labels => Err((self.base + position, format!("{word} takes text, not .Labels"))),
        };
        match (word.as_str(), args.as_slice()) {
            ("normalize", [v]) => Ok(Value::Text(normalize(&text(v)?))),
            ("lower", [v]) => Ok(Value::Text(text(v)?.to_lowercase())),
            ("upper", [v]) => Ok(Value::Text(text(v)?.to_uppercase())),
            ("index", [Value::Labels, key]) => Ok(Value::Text(
                self.model.labels.get(&text(key)?).cloned().unwrap_or_default(),
            )),
            ("normalize" | "lower" | "upper" | "index", _) => {
                self.at = start;
                self.fail(format!("wrong arguments for {word}"))
            }
            _ => {
                self.at = start;
                self.fail(format!(
                    "function {word:?} is not supported in Berth's default rule template (supported: {FUNCTIONS})"
                ))
            }
        }
    }

    fn operand(&mut self) -> Result<Value, Failure> {
        self.skip_space();
        let rest = &self.src[self.at..];
        if rest.starts_with('(') {
            self.at += 1;
            let value = self.pipeline()?;
            self.skip_space();
            if !self.src[self.at..].starts_with(')') {
                return self.fail("expected ')'");
            }
            self.at += 1;
            return Ok(value);
        }
        if rest.starts_with('"') {
            return self.string();
        }
        if let Some(raw) = rest.strip_prefix('`') {
            let Some(end) = raw.find('`') else {
                return self.fail("unterminated raw string");
            };
            self.at += end + 2;
            return Ok(Value::Text(raw[..end].to_string()));
        }
        if rest.starts_with('.') {
            let field: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let parts: Vec<&str> = field[1..].split('.').collect();
            let value = match parts.as_slice() {
                ["Name"] => Value::Text(self.model.name.to_string()),
                ["Labels"] => Value::Labels,
                ["Labels", key] if !key.is_empty() => {
                    // Go prints "<no value>" for a missing map key reached as a field.
                    Value::Text(
                        self.model
                            .labels
                            .get(*key)
                            .cloned()
                            .unwrap_or_else(|| "<no value>".to_string()),
                    )
                }
                _ => {
                    return self.fail(format!(
                        "field {field:?} is not available (the template sees .Name and .Labels)"
                    ))
                }
            };
            self.at += field.len();
            return Ok(value);
        }
        if rest.starts_with('$') {
            return self.fail("variables are not supported in Berth's default rule template");
        }
        self.fail(format!("unexpected {rest:?}"))
    }

    fn string(&mut self) -> Result<Value, Failure> {
        let mut out = String::new();
        let mut chars = self.src[self.at + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 2;
                    return Ok(Value::Text(out));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    _ => return self.fail("unsupported escape in string"),
                },
                c => out.push(c),
            }
        }
        self.fail("unterminated string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(template: &str, name: &str, labels: &[(&str, &str)]) -> Result<String, TemplateError> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        render(
            template,
            &Model {
                name,
                labels: &labels,
            },
        )
    }

    #[test]
    fn normalize_as_traefik() {
        let table = [
            ("web_go", "web-go"),
            ("web.go", "web-go"),
            ("_a__b_", "a-b"),
            ("ÄbC", "ÄbC"),
            ("a--b", "a-b"),
            ("", ""),
        ];
        for (input, expected) in table {
            assert_eq!(normalize(input), expected, "{input}");
        }
    }

    #[test]
    fn the_forms_operators_use() {
        let labels = [("traefik.domain", "example.com")];
        let table = [
            ("Host(`{{ normalize .Name }}`)", "Host(`web-go`)"),
            ("Host(`{{ .Name }}`)", "Host(`web_go`)"),
            ("Host(`{{ .Name | normalize }}.x`)", "Host(`web-go.x`)"),
            (
                "Host(`{{ normalize .Name }}.{{ index .Labels \"traefik.domain\" }}`)",
                "Host(`web-go.example.com`)",
            ),
            ("Host(`{{ index .Labels \"missing\" }}`)", "Host(``)"),
            ("Host(`{{ .Labels.missing }}`)", "Host(`<no value>`)"),
            ("Host(`{{ upper (normalize .Name) }}`)", "Host(`WEB-GO`)"),
            ("Host(`{{- .Name -}}  `)", "Host(`web_go`)"),
            ("PathPrefix(`/`)", "PathPrefix(`/`)"),
        ];
        for (template, expected) in table {
            assert_eq!(
                run(template, "web_go", &labels).as_deref(),
                Ok(expected),
                "{template}"
            );
        }
    }

    #[test]
    fn other_forms_are_refused_clearly() {
        let table = [
            ("Host(`{{ .Name`)", "unclosed action"),
            (
                "Host(`{{ trimPrefix \"a\" .Name }}`)",
                "\"trimPrefix\" is not supported",
            ),
            ("Host(`{{ .Foo }}`)", "field \".Foo\" is not available"),
            ("Host(`{{ .Labels }}`)", "a map"),
            ("Host(`{{ if .Name }}x{{ end }}`)", "\"if\" is not supported"),
            ("Host(`{{ $x := 1 }}`)", "variables"),
            ("Host(`{{ normalize }}`)", "wrong arguments"),
        ];
        for (template, expected) in table {
            let err = run(template, "web", &[]).expect_err(template);
            assert!(err.to_string().contains(expected), "{template}: {err}");
        }
    }

    #[test]
    fn positions_point_into_the_template() {
        let err = run("Host(`{{ nope .Name }}`)", "web", &[]).expect_err("nope");
        assert_eq!(err.position, 9);
    }
}

#[cfg(test)]
mod proptests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{render, Model};

    proptest! {
        #[test]
        fn any_template_renders_or_fails_inside_it(template in "(\\PC|\\{\\{|\\}\\}| \\.Name| normalize| index| \\.Labels| \"x\"){0,20}") {
            let labels = BTreeMap::from([("x".to_string(), "y".to_string())]);
            if let Err(e) = render(&template, &Model { name: "web_go", labels: &labels }) {
                prop_assert!(e.position <= template.len());
            }
        }
    }
}
