// Shared body of the tag fuzz targets: arbitrary tags under one dialect's prefix go through the
// dialects, which must never panic and must never emit a route or cluster that the proxies'
// validation would refuse (a bad tag is reported, never published).

use berth_proto::v1::Snapshot;
use berth_rules::{compile_service, middlewares_defined, Instance, Settings};

pub fn run(data: &[u8], prefix: &str, always: &[&str]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tags: Vec<String> = always.iter().map(|t| t.to_string()).collect();
    tags.extend(text.lines().take(64).map(|line| format!("{prefix}{line}")));
    let instances = [
        Instance {
            id: "fuzz-1".into(),
            address: "127.0.0.1".into(),
            port: 8080,
            tags: tags.clone(),
            meta: Default::default(),
            routable: true,
        },
        Instance {
            id: "fuzz-2".into(),
            address: "127.0.0.2".into(),
            port: 8081,
            tags,
            meta: Default::default(),
            routable: false,
        },
    ];
    let settings = Settings {
        domain: Some("fuzz.example".into()),
        ..Settings::default()
    };
    let _ = middlewares_defined("fuzz_svc", &instances, &settings);
    let out = compile_service("fuzz_svc", &instances, &settings, &|_| None);
    let snapshot = Snapshot {
        routes: out.routes,
        clusters: out.clusters,
    };
    if let Err(e) = berth_model::validate(&snapshot) {
        panic!("the dialects emitted an invalid snapshot: {e}\n{snapshot:?}");
    }
}
