//! Fuzzes the tag dialects with Traefik v1 frontend and backend tags (`traefik.<anything>`, the v1 vocabulary is under `traefik.` directly): the dialects must never panic, and never emit a
//! route or cluster that the proxies' validation refuses (see `common/tags.rs`).

#![no_main]

#[path = "common/tags.rs"]
mod tags;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tags::run(data, "traefik.", &["traefik.enable=true"]);
});
