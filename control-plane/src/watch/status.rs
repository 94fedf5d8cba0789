//! What the watch is doing, for the admin API: synced or waiting (and for what), and counters of
//! the requests it made to Consul and the services it re-read and recompiled.
//!
//! Written by the watch and the compiler, read by `/api/watch` and `/healthz`. Counters are
//! cumulative since start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

/// The kinds of request the watch makes to Consul.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request {
    CatalogServices,
    HealthChecks,
    CatalogService,
    UiServices,
    CatalogNodes,
    CatalogNode,
}

const REQUESTS: [(Request, &str); 6] = [
    (Request::CatalogServices, "catalog_services"),
    (Request::HealthChecks, "health_checks"),
    (Request::CatalogService, "catalog_service"),
    (Request::UiServices, "ui_services"),
    (Request::CatalogNodes, "catalog_nodes"),
    (Request::CatalogNode, "catalog_node"),
];

/// The parts of the watch whose Consul requests can fail.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    /// The blocking query of the service list.
    Services,
    /// The blocking query of the failing checks.
    Checks,
    /// The reads of services and nodes.
    Reads,
    /// Consul's service summary (used to find what changed).
    Summary,
    /// The blocking query of the nodes (for a node's new address).
    Nodes,
}

const PARTS: [(Part, &str); 5] = [
    (Part::Services, "services"),
    (Part::Checks, "checks"),
    (Part::Reads, "reads"),
    (Part::Summary, "summary"),
    (Part::Nodes, "nodes"),
];

#[derive(Debug, Default)]
pub(crate) struct WatchStatus {
    synced: AtomicBool,
    /// What each part of the watch waits for, by part (service list, checks, reads).
    waiting_for: Mutex<BTreeMap<&'static str, String>>,
    consul: Mutex<String>,
    services: AtomicUsize,
    requests: [AtomicU64; 6],
    errors: [AtomicU64; 5],
    service_reads: AtomicU64,
    compiled_services: AtomicU64,
    full_reads: AtomicU64,
    /// Blocking queries that returned (with an index), by part (services, checks, nodes): how
    /// many, and their total and last duration in microseconds.
    blocking: [[AtomicU64; 3]; 3],
}

/// The blocking queries, as `/metrics` labels them, each at its slot in `blocking`.
pub(crate) const BLOCKING: [(Part, usize, &str); 3] = [
    (Part::Services, 0, "services"),
    (Part::Checks, 1, "checks"),
    (Part::Nodes, 2, "nodes"),
];

impl WatchStatus {
    pub(crate) fn request(&self, kind: Request) {
        self.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A blocking query of `part` (services or checks) asked with an index returned after
    /// `took`: Consul held it until something changed or its wait ran out.
    pub(crate) fn blocked(&self, part: Part, took: std::time::Duration) {
        let Some(&(_, at, _)) = BLOCKING.iter().find(|(p, _, _)| *p as usize == part as usize) else {
            return;
        };
        let slot = &self.blocking[at];
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        slot[0].fetch_add(1, Ordering::Relaxed);
        slot[1].fetch_add(micros, Ordering::Relaxed);
        slot[2].store(micros, Ordering::Relaxed);
    }

    /// For each blocking query: (label, count, total seconds, last seconds).
    pub(crate) fn blocking(&self) -> impl Iterator<Item = (&'static str, u64, f64, f64)> + '_ {
        BLOCKING.iter().map(|(_, at, name)| {
            let slot = &self.blocking[*at];
            let load = |i: usize| slot[i].load(Ordering::Relaxed);
            (*name, load(0), load(1) as f64 / 1e6, load(2) as f64 / 1e6)
        })
    }

    /// A request of `part` failed.
    pub(crate) fn error(&self, part: Part) {
        self.errors[part as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The requests made so far, by kind.
    pub(crate) fn requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REQUESTS
            .iter()
            .map(|(kind, name)| (*name, self.requests[*kind as usize].load(Ordering::Relaxed)))
    }

    /// The requests that failed so far, by part of the watch.
    pub(crate) fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PARTS
            .iter()
            .map(|(part, name)| (*name, self.errors[*part as usize].load(Ordering::Relaxed)))
    }

    /// Services in the catalog as last read.
    pub(crate) fn services(&self) -> usize {
        self.services.load(Ordering::Relaxed)
    }

    pub(crate) fn service_reads_total(&self) -> u64 {
        self.service_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn compiled_services_total(&self) -> u64 {
        self.compiled_services.load(Ordering::Relaxed)
    }

    pub(crate) fn full_reads_total(&self) -> u64 {
        self.full_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn service_reads(&self, n: usize) {
        self.service_reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn compiled_services(&self, n: usize) {
        self.compiled_services.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn full_read(&self) {
        self.full_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_services(&self, n: usize) {
        self.services.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_consul(&self, address: &str) {
        if let Ok(mut consul) = self.consul.lock() {
            address.clone_into(&mut consul);
        }
    }

    /// The watch has read the whole catalog once.
    pub(crate) fn synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    /// `part` of the watch cannot make progress until `what` answers (`None`: it no longer
    /// waits). The last catalog stays published meanwhile.
    pub(crate) fn set_waiting(&self, part: &'static str, what: Option<String>) {
        if let Ok(mut waiting) = self.waiting_for.lock() {
            match what {
                Some(what) => waiting.insert(part, what),
                None => waiting.remove(part),
            };
        }
    }

    /// Why the catalog is not (yet, or no longer) current; `None` when it is.
    pub(crate) fn waiting_for(&self) -> Option<String> {
        let waiting = self.waiting_for.lock().ok()?;
        (!waiting.is_empty()).then(|| waiting.values().cloned().collect::<Vec<_>>().join("; "))
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub(crate) fn to_json(&self) -> Value {
        let waiting_for = self.waiting_for();
        let state = if self.is_synced() && waiting_for.is_none() {
            "synced"
        } else {
            "waiting"
        };
        let requests: serde_json::Map<String, Value> = REQUESTS
            .iter()
            .map(|(kind, name)| {
                (
                    name.to_string(),
                    json!(self.requests[*kind as usize].load(Ordering::Relaxed)),
                )
            })
            .collect();
        json!({
            "state": state,
            "waiting_for": waiting_for,
            "consul": self.consul.lock().map(|c| c.clone()).unwrap_or_default(),
            "services": self.services.load(Ordering::Relaxed),
            "requests": requests,
            "service_reads": self.service_reads.load(Ordering::Relaxed),
            "compiled_services": self.compiled_services.load(Ordering::Relaxed),
            "full_reads": self.full_reads.load(Ordering::Relaxed),
        })
    }
}
