//! The tag fuzz targets' property, run on their seeds and a few thousand fixed mutations of them,
//! so CI keeps it true in seconds (the long runs are `cargo +nightly fuzz run <target>` in
//! `rules/`): the dialects never panic and never emit a route or cluster that the proxies'
//! validation refuses.

#[path = "../fuzz/fuzz_targets/common/tags.rs"]
mod tags;

use std::path::Path;

/// (target, tag prefix, tags every input carries) as the fuzz targets use them.
const TARGETS: [(&str, &str, &[&str]); 3] = [
    ("traefik_v3_tags", "traefik.http.", &["traefik.enable=true"]),
    ("traefik_v1_tags", "traefik.", &["traefik.enable=true"]),
    ("fabio_tags", "urlprefix-", &[]),
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Deterministic mutations: every line alone, every prefix of the input, and bytes replaced by
/// the characters that rules and tag values treat specially.
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![seed.to_vec()];
    for line in seed.split(|&b| b == b'\n') {
        out.push(line.to_vec());
    }
    for end in (0..seed.len()).step_by(3) {
        out.push(seed[..end].to_vec());
    }
    let specials = b"()`\"&|!,;=:./*{}[]\\$^ \t%";
    for (i, special) in (0..seed.len()).step_by(5).zip(specials.iter().cycle()) {
        let mut mutated = seed.to_vec();
        mutated[i] = *special;
        out.push(mutated);
    }
    out
}

#[test]
fn the_tag_dialects_survive_their_seeds_and_mutations() {
    let mut runs = 0;
    for (target, prefix, always) in TARGETS {
        for seed in seeds(target) {
            for input in mutations(&seed) {
                tags::run(&input, prefix, always);
                runs += 1;
            }
        }
    }
    assert!(runs > 100, "only {runs} inputs");
}
