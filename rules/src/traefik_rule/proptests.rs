//! Property tests of the grammar: a random well-formed matcher tree printed as a rule parses back
//! to the same tree; parsing arbitrary text never panics and points its errors inside the text.

use berth_proto::v1::Matcher;
use proptest::prelude::*;

use super::matchers as m;
use super::{go_regexp, parse, render, RuleSyntax};

/// Pieces of Go patterns; sequences of them exercise the translator's flags, classes, groups,
/// repetitions and escapes together.
fn go_pattern() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9./-]{1,4}",
        any::<char>().prop_map(|c| go_regexp::quote_meta(&c.to_string())),
        Just(".".to_string()),
        Just("^".to_string()),
        Just("$".to_string()),
        Just(r"\d+".to_string()),
        Just(r"\w*?".to_string()),
        Just(r"\S".to_string()),
        Just(r"\b".to_string()),
        Just(r"\B".to_string()),
        Just("[a-zA-Z-]".to_string()),
        Just("[^/]+".to_string()),
        Just("[[:alpha:]_]".to_string()),
        Just(r"[\x{0}-\x{7f}]".to_string()),
        Just(r"\p{Greek}".to_string()),
        Just("(?i)".to_string()),
        Just("(?s)".to_string()),
        Just("(?m)".to_string()),
        Just("(?U)".to_string()),
        Just("(?-i)".to_string()),
        Just("(a|b)".to_string()),
        Just("(?:x|)".to_string()),
        Just("(?P<name>y)".to_string()),
        Just("{".to_string()),
        Just("z{2,3}".to_string()),
        Just("q{1,}?".to_string()),
        Just(r"\Qa.b\E".to_string()),
        Just(r"\012".to_string()),
    ];
    prop::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

/// A pattern as the parser stores it: already translated.
fn rust_pattern() -> impl Strategy<Value = String> {
    go_pattern().prop_filter_map("translates", |go| {
        let rust = go_regexp::translate(&go).ok()?;
        (!rust.is_empty() && regex::Regex::new(&rust).is_ok()).then_some(rust)
    })
}

fn host_pattern() -> impl Strategy<Value = String> {
    rust_pattern().prop_filter("a v3 host regexp never matches the empty host", |r| {
        regex::Regex::new(r).is_ok_and(|re| !re.is_match(""))
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.-]{1,10}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        prop::collection::vec(
            prop::sample::select(vec!['`', '"', '\\', '\n', '\r', '\0', '\u{FEFF}', 'é', ' ']),
            1..6
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn leaf() -> impl Strategy<Value = Matcher> {
    prop_oneof![
        "[a-z0-9]{1,8}(\\.[a-z0-9-]{1,8}){0,2}".prop_map(m::host_exact),
        host_pattern().prop_map(m::host_regexp),
        text().prop_map(|p| m::path_exact(format!("/{p}"))),
        text().prop_map(|p| m::path_prefix(format!("/{p}"))),
        rust_pattern().prop_map(m::path_regexp),
        "[A-Z]{1,8}".prop_map(m::method),
        (text(), text()).prop_map(|(n, v)| m::header_exact(n, v)),
        (text(), rust_pattern()).prop_map(|(n, r)| m::header_regexp(n, r)),
        (text(), prop_oneof![Just(String::new()), text()]).prop_map(|(n, v)| m::query_exact(n, v)),
        (text(), rust_pattern()).prop_map(|(n, r)| m::query_regexp(n, r)),
        prop::sample::select(vec![
            "127.0.0.1",
            "10::10",
            "192.168.1.0/24",
            "::/0",
            "::ffff:1.2.3.4"
        ])
        .prop_map(|r| m::client_ip(vec![r.to_string()])),
        Just(m::all(vec![])),
    ]
}

fn tree() -> impl Strategy<Value = Matcher> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(m::all),
            prop::collection::vec(inner.clone(), 2..4).prop_map(m::any),
            inner.prop_map(m::not),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rendered_trees_parse_back(tree in tree()) {
        let text = render(&tree);
        let parsed = parse(&text, RuleSyntax::V3);
        prop_assert_eq!(parsed, Ok(tree), "rule: {}", text);
    }

    #[test]
    fn translated_patterns_are_fixed_points(go in go_pattern()) {
        if let Ok(rust) = go_regexp::translate(&go) {
            let again = go_regexp::translate(&go_regexp::to_go_syntax(&rust));
            prop_assert_eq!(again, Ok(rust));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(rule in any::<String>()) {
        for syntax in [RuleSyntax::V3, RuleSyntax::V2] {
            if let Err(e) = parse(&rule, syntax) {
                prop_assert!(e.position <= rule.len(), "{:?}: {}", rule, e);
            }
        }
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "Host", "HostRegexp", "Path", "PathPrefix", "PathRegexp", "Method", "Header", "HeaderRegexp",
        "Query", "QueryRegexp", "ClientIP", "Headers", "HeadersRegexp", "HostHeader", "host", "(", ")",
        ",", "&&", "||", "!", " ", "\n", "...", "/* c */", "// c", "`a`", "`/x`", "`*.a`", "\"\\x41\"",
        "`{a:[0-9]+}`", "`(`", "`^$`", "`k=v`", "`k=`", "`10.0.0.0/8`", "`\\d{2,}`", "``", "\"\\u00e9\"",
    ]), 0..24)) {
        let rule = tokens.concat();
        for syntax in [RuleSyntax::V3, RuleSyntax::V2] {
            match parse(&rule, syntax) {
                Err(e) => prop_assert!(e.position <= rule.len(), "{:?}: {}", rule, e),
                Ok(m) => {
                    // What the parser builds prints as a rule that parses again.
                    let text = render(&m);
                    prop_assert!(parse(&text, RuleSyntax::V3).is_ok(), "{:?} -> {:?}", rule, text);
                }
            }
        }
    }
}
