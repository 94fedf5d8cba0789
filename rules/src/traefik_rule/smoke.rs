//! A short smoke run of the fuzz target for CI: the fuzz seeds and a few thousand deterministic
//! mutations of them go through both syntaxes; nothing may panic, every error must point inside
//! the rule, and whatever parses must print (`render`) as a rule that parses again, whose
//! printed form is then stable.

use super::{parse, render, RuleSyntax};

const SEEDS: &str = include_str!("../../fuzz/seeds/traefik_rule.txt");

/// Fragments spliced into the seeds.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "`",
    "\"",
    ",",
    "&&",
    "||",
    "!",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "*",
    "?",
    "+",
    "^",
    "$",
    "|",
    "\n",
    "\r",
    "\0",
    "\u{FEFF}",
    "é",
    "...",
    "/*",
    "*/",
    "//",
    "=",
    "{a:",
    "(?i)",
    "\\x",
    "\\u",
    "\\p{",
    "Host",
    "HostRegexp(`",
    "Query(`",
    "Headers(`",
    ")) || !(",
    " && Path(`/",
    "`)",
];

/// xorshift64*: enough randomness for a reproducible smoke run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s = seed.to_string();
    for _ in 0..=rng.below(3) {
        let cuts = boundaries(&s);
        let at = cuts[rng.below(cuts.len())];
        match rng.below(3) {
            0 => s.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]),
            1 => {
                let end = cuts
                    .iter()
                    .copied()
                    .filter(|&c| c >= at)
                    .nth(1 + rng.below(4))
                    .unwrap_or(s.len());
                s.replace_range(at..end, "");
            }
            _ => {
                let end = cuts.iter().copied().find(|&c| c > at).unwrap_or(s.len());
                s.replace_range(at..end, FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
        }
    }
    s
}

fn check(rule: &str) -> usize {
    let mut accepted = 0;
    for syntax in [RuleSyntax::V3, RuleSyntax::V2] {
        match parse(rule, syntax) {
            Err(e) => assert!(e.position <= rule.len(), "{syntax:?} {rule:?}: {e}"),
            Ok(m) => {
                accepted += 1;
                let text = render(&m);
                let again =
                    parse(&text, RuleSyntax::V3).unwrap_or_else(|e| panic!("{rule:?} -> {text:?}: {e}"));
                let text2 = render(&again);
                let again2 = parse(&text2, RuleSyntax::V3).unwrap_or_else(|e| panic!("{text2:?}: {e}"));
                assert_eq!(render(&again2), text2, "{rule:?}: printed form not stable");
            }
        }
    }
    accepted
}

#[test]
fn fuzz_seeds_and_mutations() {
    let seeds: Vec<&str> = SEEDS.lines().collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    let mut runs = 0;
    for seed in &seeds {
        accepted += check(seed);
        runs += 1;
    }
    for _ in 0..3000 {
        let seed = seeds[rng.below(seeds.len())];
        accepted += check(&mutate(&mut rng, seed));
        runs += 1;
    }
    // The mutations must still reach the matchers, not only the syntax errors.
    assert!(accepted > runs / 10, "only {accepted} of {runs} rules accepted");
}
