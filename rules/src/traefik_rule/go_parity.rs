//! Parity with Go, on data recorded from Go itself: rules whose verdict Go's expression parser
//! and `regexp` package, driven as Traefik drives them (a throw-away harness that replays
//! Traefik's parser and matcher checks; not part of this repository), gave for each syntax; and
//! Go patterns with the answers `regexp.MatchString` gave on a dozen strings each. The rules were
//! generated from the fuzz seeds and random matcher expressions; rows on which Berth differs on
//! purpose (see the module docs: non-UTF-8 escapes, v2 query names) are not in the data. The Go
//! used was 1.19, so nothing here depends on what later Go versions added (`(?<name>)`, loose
//! Unicode class names).

use berth_proto::v1::{matcher, path_matcher};

use super::{parse, RuleSyntax};

const RULES: &str = include_str!("testdata/go_rule_verdicts.jsonl");
const REGEXPS: &str = include_str!("testdata/go_regexp_answers.jsonl");

#[test]
fn rule_verdicts_match_go() {
    let mut checked = 0;
    for line in RULES.lines() {
        let (rule, v3, v2): (String, bool, bool) =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        for (syntax, go_accepts) in [(RuleSyntax::V3, v3), (RuleSyntax::V2, v2)] {
            let ours = parse(&rule, syntax);
            assert_eq!(
                ours.is_ok(),
                go_accepts,
                "{syntax:?} {rule:?}: Go accepts: {go_accepts}, Berth: {ours:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3000);
}

/// The route model's path regexp for a Go pattern, through the v3 parser.
fn path_regexp(go: &str) -> Option<regex::Regex> {
    let rule = format!("PathRegexp({})", super::render::quote(go));
    let m = parse(&rule, RuleSyntax::V3).ok()?;
    match m.kind? {
        matcher::Kind::Path(p) => match p.kind? {
            path_matcher::Kind::Regexp(r) => {
                Some(regex::Regex::new(&r).unwrap_or_else(|e| panic!("{r:?}: {e}")))
            }
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn regexp_answers_match_go() {
    for line in REGEXPS.lines() {
        let (go, answers, subjects): (String, String, Vec<String>) =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let ours = path_regexp(&go).map(|re| {
            subjects
                .iter()
                .map(|s| if re.is_match(s) { '1' } else { '0' })
                .collect::<String>()
        });
        let ours = ours.unwrap_or_else(|| "E".to_string());
        assert_eq!(ours, answers, "{go:?} on {subjects:?}");
    }
}
