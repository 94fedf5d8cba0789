//! Fuzzes the circuit breaker's expression parser (berth_model::circuit_breaker): any UTF-8
//! text. It must never panic, an error must point inside the text (or just past its end), and a
//! parsed expression must print as one that parses to the same tree.

#![no_main]

use berth_model::circuit_breaker::Expression;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Expression::parse(text) {
        Err(e) => assert!(
            e.column >= 1 && e.column <= text.chars().count() + 1,
            "{text:?}: {e}"
        ),
        Ok(expression) => {
            let printed = expression.to_string();
            match Expression::parse(&printed) {
                Ok(again) => assert_eq!(again, expression, "{text:?} printed as {printed:?}"),
                Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
            }
        }
    }
});
