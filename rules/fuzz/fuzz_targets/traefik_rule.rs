//! Fuzzes the Traefik rule parser: any UTF-8 text, in both syntaxes. It must never panic, an
//! error must point inside the rule, and a parsed rule must print (`render`) as a rule that parses
//! again and prints the same way from then on.

#![no_main]

use berth_rules::traefik_rule::{parse, render, RuleSyntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|rule: &str| {
    for syntax in [RuleSyntax::V3, RuleSyntax::V2] {
        match parse(rule, syntax) {
            Err(e) => assert!(e.position <= rule.len(), "{syntax:?} {rule:?}: {e}"),
            Ok(matcher) => {
                let text = render(&matcher);
                let again = match parse(&text, RuleSyntax::V3) {
                    Ok(m) => m,
                    Err(e) => panic!("{rule:?} printed as {text:?}, which does not parse: {e}"),
                };
                let stable = render(&again);
                match parse(&stable, RuleSyntax::V3) {
                    Ok(m) => assert_eq!(render(&m), stable, "{rule:?}: printed form not stable"),
                    Err(e) => panic!("{stable:?} does not parse: {e}"),
                }
            }
        }
    }
});
