//! Watching Consul with a fixed handful of connections, whatever the catalog's size.
//!
//! Three blocking queries are held open for ever:
//!
//! - `/v1/catalog/services` (names and tags; its index moves on any registration change),
//! - `/v1/health/state/any` filtered to the checks that are not passing (its index moves on any
//!   check change; an instance is healthy exactly when none of its checks, nor its node's, is in
//!   that list, so the answer stays small however many checks pass), and
//! - `/v1/catalog/nodes` (names and addresses: a node's new address moves neither of the others,
//!   and an instance without an address of its own is reached at its node's).
//!
//! Each answer says which services changed (see [`state`]); only those are read again, with
//! `/v1/catalog/service/:name`, at most `read_concurrency` at a time. A health change needs no
//! read at all. One answer of the service list can fold several changes (Consul answers with the
//! state at the time it runs the query, and one transaction, such as a node's removal, changes
//! several services at one index), and the list itself shows only names and tags: so every move
//! of the list also asks Consul's per-service summary (`/v1/internal/ui/services`), which shows
//! every service that gained, lost or moved an instance (only where it differs from the last one
//! is parsed and compared: see `berth_consul::summaries`). The whole catalog is read node by node
//! (`/v1/catalog/nodes` and `/v1/catalog/node/:node`) at start, when an index goes backwards, when
//! the summary is not available, and every `resync` period as a safety net. When neither a read
//! nor the summary explains the list's move (an instance changed in place), every node's answer
//! is asked again, but only its digest is kept (hashed as it arrives), and only the nodes whose
//! digests differ from the last ones are read whole and compared. So the
//! watch holds at most `3 + read_concurrency` connections to Consul.
//!
//! Nothing is handed to the compiler until every read it started has succeeded: a failed or
//! unfinished read never publishes a partial catalog. Reads ask Consul for consistent answers
//! unless the operator allows stale ones (a server that was just elected answers consistent
//! reads only once it has caught up). While Consul is unreachable the last catalog stays
//! published, the status says what the watch waits for, and each failing query retries with
//! capped exponential backoff and jitter.
//!
//! This module does not interpret tags; see `compile`.

pub(crate) mod state;
pub(crate) mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_consul::catalog::{Instance, NodeServices, ServiceList};
use berth_consul::{next_index, Client, Indexed};
use berth_support::backoff::Retry;
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use state::State;
pub(crate) use state::{Health, ServiceView};
pub(crate) use status::WatchStatus;
use status::{Part, Request};

/// One read of a service's instances.
type Read = Result<Indexed<Vec<Instance>>, berth_consul::Error>;

/// How long one blocking query may wait in Consul before it is re-armed.
const BLOCKING_WAIT: Duration = Duration::from_secs(60);

/// How the watch reads Consul.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// At most this many reads (of a service or a node) at once.
    pub read_concurrency: usize,
    /// Re-read the whole catalog this often to catch anything the watch missed; `None`: never.
    pub resync: Option<Duration>,
}

/// What the watch hands to the compiler: the services whose view changed (`None`: the service
/// is gone). The first update describes the whole catalog.
#[derive(Debug, Default)]
pub(crate) struct Update {
    pub changed: BTreeMap<String, Option<Arc<ServiceView>>>,
}

/// Starts the watch; it runs until the process ends or the receiver is dropped.
pub(crate) fn spawn(
    client: Client,
    options: Options,
    status: Arc<WatchStatus>,
) -> mpsc::UnboundedReceiver<Update> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(client, options, status, tx));
    rx
}

enum Event {
    Services {
        list: ServiceList,
        index: u64,
        reset: bool,
    },
    Checks(Vec<berth_consul::catalog::FailingCheck>),
    Nodes(Vec<berth_consul::catalog::NodeName>),
}

/// Work the answers asked for and that has not been done yet. Survives failed attempts.
#[derive(Debug, Default)]
struct Pending {
    /// Read every instance and replace the catalog (at start, after an index reset).
    full: bool,
    /// Read every instance and compare (the safety net, and when the summary is unavailable).
    compare: bool,
    /// Nothing explained the service list's move: an instance changed in place. Every node's
    /// answer is hashed, and the nodes whose digests differ from the last ones are read and
    /// compared.
    in_place: bool,
    /// The service list's index after its last move: the change made at that index must be
    /// found among the services read, or the nodes are compared (`in_place`).
    explain: Option<u64>,
    /// The service list moved since Consul's summary was last read: the summary must be read
    /// (it finds the changes one answer of the list folded together).
    summary: bool,
    /// The indexes the service reads of this round returned.
    read_at: BTreeSet<u64>,
    /// Services to read again.
    read: BTreeSet<String>,
    /// Services whose view must be recomputed once the reads are done.
    touched: BTreeSet<String>,
}

impl Pending {
    /// Whether a service read of this round explains the service list's move to `index`: one
    /// read at `index` or later saw the change made there (a read at a later index may hide
    /// it, but a later move of the list follows that later change and is explained the same
    /// way). Other changes folded into the same answer are found by the summary.
    fn explained(&self, index: u64) -> bool {
        self.read_at.iter().any(|&at| at >= index)
    }

    fn is_empty(&self) -> bool {
        !self.full
            && !self.compare
            && !self.in_place
            && !self.summary
            && self.explain.is_none()
            && self.read.is_empty()
            && self.touched.is_empty()
    }
}

struct Watch {
    client: Client,
    options: Options,
    status: Arc<WatchStatus>,
    state: State,
    pending: Pending,
    synced: bool,
    /// The digest of every node's answer as last compared with `state`. An answer that is still
    /// the same bytes means nothing changed on the node since (see [`NodeServices`]), so what
    /// `state` holds for it, read then or later, is still right. Refreshed by every full read, so
    /// an index reset (after which indexes may repeat) starts it over.
    nodes: BTreeMap<String, u128>,
}

async fn run(client: Client, options: Options, status: Arc<WatchStatus>, out: mpsc::UnboundedSender<Update>) {
    let (events_tx, mut events) = mpsc::channel::<Event>(16);
    tokio::spawn(follow_services(client.clone(), status.clone(), events_tx.clone()));
    tokio::spawn(follow_checks(client.clone(), status.clone(), events_tx.clone()));
    tokio::spawn(follow_nodes(client.clone(), status.clone(), events_tx));

    let mut resync = options.resync.map(|period| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let mut watch = Watch {
        client,
        options,
        status,
        state: State::default(),
        pending: Pending {
            full: true,
            ..Pending::default()
        },
        synced: false,
        nodes: BTreeMap::new(),
    };
    let (mut have_services, mut have_checks) = (false, false);
    let mut backoff = Retry::new("the catalog reads from Consul".into());
    loop {
        // Wait for news unless work is left over from a failed attempt (then retry at once: the
        // backoff already waited).
        let ready = have_services && have_checks;
        if !ready || watch.pending.is_empty() {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = tick(&mut resync), if watch.synced => {
                    watch.pending.compare = true;
                    None
                }
            };
            match event {
                Some(event) => watch.take(event, &mut have_services, &mut have_checks),
                None if events.is_closed() => return,
                None => {}
            }
        }
        while let Ok(event) = events.try_recv() {
            watch.take(event, &mut have_services, &mut have_checks);
        }
        if !(have_services && have_checks) {
            continue;
        }
        match watch.work().await {
            Ok(update) => {
                backoff.succeeded();
                watch.status.set_waiting("reads", None);
                let first = !watch.synced;
                if first {
                    watch.synced = true;
                    watch.status.synced();
                    info!(services = watch.state.len(), "read the whole catalog");
                }
                if (first || !update.changed.is_empty()) && out.send(update).is_err() {
                    return;
                }
            }
            Err(e) => {
                watch.status.error(Part::Reads);
                watch.status.set_waiting(
                    "reads",
                    Some(format!(
                        "the catalog reads from Consul at {}: {e}",
                        watch.client.address()
                    )),
                );
                backoff.failed(&e).await;
            }
        }
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Watch {
    fn take(&mut self, event: Event, have_services: &mut bool, have_checks: &mut bool) {
        match event {
            Event::Services { list, index, reset } => {
                *have_services = true;
                if reset {
                    info!("Consul's service index went backwards (a restore or a new cluster): reading the whole catalog again");
                    self.pending.full = true;
                }
                // Read once, here. An answer that cannot be read says nothing of what changed:
                // the whole catalog is compared instead (the next answer is read as usual).
                let entries = match list.services() {
                    Ok(entries) => entries,
                    Err(e) => {
                        self.status.error(Part::Services);
                        warn!(
                            index,
                            "Consul's service list at {} could not be read ({e}); comparing the whole catalog",
                            self.client.address()
                        );
                        self.pending.compare = true;
                        return;
                    }
                };
                let changed = self.state.take_service_list(&entries);
                debug!(services = changed.len(), index, "service list moved");
                self.pending.read.extend(changed);
                self.pending.explain = Some(index);
                // Any move may fold changes the list does not show.
                self.pending.summary = true;
            }
            Event::Checks(checks) => {
                *have_checks = true;
                let affected = self.state.take_failing_checks(checks);
                self.pending.touched.extend(affected);
            }
            Event::Nodes(nodes) => {
                // Before the first full read nothing is known, and that read sees every node.
                let moved = self.state.moved_nodes(&nodes);
                if !moved.is_empty() {
                    debug!(
                        services = moved.len(),
                        "nodes moved or left: reading their services"
                    );
                    self.pending.read.extend(moved);
                }
            }
        }
    }

    /// Does the pending work; on success returns the views that changed.
    ///
    /// The service list names the services that appeared, left or changed tags: those are read.
    /// The change that moved the list's index to `explain` must be among the reads (a read
    /// returns its service's own index). One answer of the list can fold several changes,
    /// though, and a read of one service that changed at the list's index says nothing of
    /// another that changed beside it: so after every move Consul's summary is asked too, and
    /// the services whose instance count or nodes differ from what the watch holds are read.
    /// When the reads explain the move, what they found is handed on first and the summary
    /// follows at once (the run loop finds it pending), so a single change is not delayed by
    /// the summary; when they do not, the summary comes first, and if even it does not explain
    /// the move, an instance changed in place and the nodes whose answers changed are compared
    /// with what the watch holds ([`Watch::find_changed_in_place`]). An in-place
    /// change folded into the same answer as another change stays hidden until the periodic
    /// full read.
    async fn work(&mut self) -> Result<Update, berth_consul::Error> {
        if self.pending.full {
            self.read_and_compare().await?;
        }
        if !self.pending.read.is_empty() {
            self.read_services().await?;
        }
        if let Some(index) = self.pending.explain {
            if !self.pending.explained(index) && self.pending.summary {
                self.summarize_and_read().await?;
            }
            if !self.pending.explained(index) {
                debug!(
                    index,
                    "no service read explains the service list's move: looking for an instance changed in place, node by node"
                );
                self.pending.in_place = true;
            }
        }
        if self.pending.compare {
            self.read_and_compare().await?;
        } else if self.pending.in_place {
            self.find_changed_in_place().await?;
            if !self.pending.read.is_empty() {
                self.read_services().await?;
            }
        }
        self.pending.explain = None;
        self.pending.read_at.clear();
        // Nothing to hand on first: what the list's answer may have folded is looked for now.
        if self.pending.summary && self.pending.touched.is_empty() {
            self.summarize_and_read().await?;
            if self.pending.compare {
                self.read_and_compare().await?;
            }
        }
        let touched = std::mem::take(&mut self.pending.touched);
        self.status.set_services(self.state.len());
        Ok(Update {
            changed: self.state.refresh_views(&touched),
        })
    }

    /// [`Watch::summarize`], then reads what it found (unless a full comparison is due).
    async fn summarize_and_read(&mut self) -> Result<(), berth_consul::Error> {
        self.summarize().await;
        self.pending.summary = false;
        if !self.pending.compare && !self.pending.read.is_empty() {
            self.read_services().await?;
        }
        Ok(())
    }

    /// Asks Consul's summary which services gained or lost instances, and queues them for
    /// reading; when the summary is not available, queues a full comparison instead.
    async fn summarize(&mut self) {
        self.status.request(Request::UiServices);
        // Read once, here: a summary Consul sent but that cannot be read counts as unavailable.
        let differing = match self.client.service_summaries().await {
            Ok(summaries) => self.state.take_summaries(&summaries).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match differing {
            Ok(differing) => self.pending.read.extend(differing),
            Err(e) => {
                self.status.error(Part::Summary);
                debug!("Consul's service summary is not available ({e}); reading the whole catalog to find what changed");
                self.pending.compare = true;
            }
        }
    }

    /// Reads every instance and takes what differs; the other pending reads are then moot.
    async fn read_and_compare(&mut self) -> Result<(), berth_consul::Error> {
        let mut full = self.read_everything().await?;
        let differing = self.state.differing_instances(&full);
        if self.pending.compare && !self.pending.full && !differing.is_empty() {
            info!(services = differing.len(), "a full read found changed services");
        }
        for name in &differing {
            self.state
                .set_instances(name, full.remove(name).unwrap_or_default());
        }
        if self.pending.full {
            self.pending.touched.extend(self.state.all_names());
        }
        self.pending.touched.extend(differing);
        self.pending.full = false;
        self.pending.compare = false;
        self.pending.in_place = false;
        self.pending.explain = None;
        self.pending.summary = false;
        self.pending.read.clear();
        Ok(())
    }

    /// Reads the services in `pending.read`; each one read is recorded and leaves the set, so a
    /// retry after a failure reads only what is left.
    async fn read_services(&mut self) -> Result<(), berth_consul::Error> {
        let names: Vec<String> = self.pending.read.iter().cloned().collect();
        let client = &self.client;
        let status = &self.status;
        let results: Vec<(String, Read)> = stream::iter(names)
            .map(|name| async move {
                status.request(Request::CatalogService);
                let result = client.catalog_service(&name).await;
                (name, result)
            })
            .buffer_unordered(self.options.read_concurrency.max(1))
            .collect()
            .await;
        let mut first_error = None;
        let mut read = 0;
        for (name, result) in results {
            match result {
                Ok(answer) => {
                    read += 1;
                    self.pending.read_at.insert(answer.index);
                    self.state.set_instances(&name, answer.value);
                    self.pending.read.remove(&name);
                    self.pending.touched.insert(name);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.status.service_reads(read);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every instance of the catalog, node by node, grouped by service and sorted. The digests of
    /// the nodes' answers are kept for [`Watch::find_changed_in_place`].
    async fn read_everything(&mut self) -> Result<BTreeMap<String, Vec<Instance>>, berth_consul::Error> {
        let answers = self.read_nodes().await?;
        let mut services: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for (_, answer) in &answers {
            for instance in answer.instances()? {
                services
                    .entry(instance.service.clone())
                    .or_default()
                    .push(instance);
            }
        }
        for instances in services.values_mut() {
            instances.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
        }
        self.nodes = answers
            .iter()
            .map(|(node, answer)| (node.clone(), answer.digest()))
            .collect();
        self.status.full_read();
        Ok(services)
    }

    /// Finds the services with an instance changed in place (or anywhere the other answers did
    /// not show): asks every node's answer, keeping only its digest (hashed as it arrives, never
    /// gathered), and reads whole, parses and compares with what is known only the nodes whose
    /// digest differs from the last one's (usually one). Queues the services that differ for
    /// reading; a node's digest is kept only once its services are queued, so a retry after a
    /// failure compares again what was left.
    async fn find_changed_in_place(&mut self) -> Result<(), berth_consul::Error> {
        let nodes = self.node_names().await?;
        let client = &self.client;
        let digests = self
            .read_each(
                nodes,
                |node| async move { client.catalog_node_digest(&node).await },
            )
            .await?;
        let mut seen = BTreeSet::new();
        let mut differ = Vec::new();
        for (node, digest) in digests {
            if self.nodes.get(&node) != Some(&digest) {
                differ.push(node.clone());
            }
            seen.insert(node);
        }
        let compared = differ.len();
        let answers = self
            .read_each(differ, |node| async move { client.catalog_node(&node).await })
            .await?;
        for (node, answer) in answers {
            // The answer compared may be newer than the digest that differed: keep its own.
            let differing = self.state.differing_on_node(&node, &answer.instances()?);
            self.pending.read.extend(differing);
            self.nodes.insert(node, answer.digest());
        }
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|node| !seen.contains(*node))
            .cloned()
            .collect();
        for node in gone {
            self.pending.read.extend(self.state.services_on(&node));
            self.nodes.remove(&node);
        }
        debug!(
            nodes = seen.len(),
            compared,
            services = self.pending.read.len(),
            "compared the nodes whose answers changed"
        );
        self.pending.in_place = false;
        Ok(())
    }

    /// Every node's answer, by node name; fails if any read fails.
    async fn read_nodes(&self) -> Result<Vec<(String, NodeServices)>, berth_consul::Error> {
        let nodes = self.node_names().await?;
        let client = &self.client;
        self.read_each(nodes, |node| async move { client.catalog_node(&node).await })
            .await
    }

    /// The names of every node of the catalog.
    async fn node_names(&self) -> Result<Vec<String>, berth_consul::Error> {
        self.status.request(Request::CatalogNodes);
        let nodes = self.client.catalog_nodes(0, Duration::ZERO).await?.value;
        Ok(nodes.into_iter().map(|node| node.node).collect())
    }

    /// `read` for each node (one request each, counted as `catalog_node`), at most
    /// `read_concurrency` at a time; fails if any read fails.
    async fn read_each<T, F, Fut>(
        &self,
        nodes: Vec<String>,
        read: F,
    ) -> Result<Vec<(String, T)>, berth_consul::Error>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Indexed<T>, berth_consul::Error>>,
    {
        let status = &self.status;
        let read = &read;
        let answers: Vec<(String, Result<Indexed<T>, berth_consul::Error>)> = stream::iter(nodes)
            .map(|node| async move {
                status.request(Request::CatalogNode);
                (node.clone(), read(node).await)
            })
            .buffer_unordered(self.options.read_concurrency.max(1))
            .collect()
            .await;
        answers
            .into_iter()
            .map(|(node, answer)| Ok((node, answer?.value)))
            .collect()
    }
}

async fn follow_services(client: Client, status: Arc<WatchStatus>, events: mpsc::Sender<Event>) {
    let what = format!("the service list from Consul at {}", client.address());
    follow(
        ("services", Part::Services),
        what,
        &client,
        &status,
        &events,
        |index| {
            status.request(Request::CatalogServices);
            client.catalog_services(index, BLOCKING_WAIT)
        },
        |list, index, reset| Event::Services { list, index, reset },
    )
    .await
}

async fn follow_checks(client: Client, status: Arc<WatchStatus>, events: mpsc::Sender<Event>) {
    let what = format!("the failing health checks from Consul at {}", client.address());
    follow(
        ("checks", Part::Checks),
        what,
        &client,
        &status,
        &events,
        |index| {
            status.request(Request::HealthChecks);
            client.failing_checks(index, BLOCKING_WAIT)
        },
        |checks, _index, _reset| Event::Checks(checks),
    )
    .await
}

async fn follow_nodes(client: Client, status: Arc<WatchStatus>, events: mpsc::Sender<Event>) {
    let what = format!("the nodes from Consul at {}", client.address());
    follow(
        ("nodes", Part::Nodes),
        what,
        &client,
        &status,
        &events,
        |index| {
            status.request(Request::CatalogNodes);
            client.catalog_nodes(index, BLOCKING_WAIT)
        },
        |nodes, _index, _reset| Event::Nodes(nodes),
    )
    .await
}

/// Runs one blocking query for ever, sending an event each time its index moves, following
/// Consul's index rules (see [`next_index`]): an index that goes backwards is reported as a
/// reset and the query starts over. An answer whose index did not move sends nothing and
/// re-arms the query. After an error the query is asked again without an index once the
/// backoff has passed, so the first answer after an outage comes at once (and says whether
/// anything moved meanwhile) instead of blocking for a whole wait.
async fn follow<T, Q, Fut>(
    part: (&'static str, Part),
    what: String,
    client: &Client,
    status: &WatchStatus,
    events: &mpsc::Sender<Event>,
    query: Q,
    event: impl Fn(T, u64, bool) -> Event,
) where
    Q: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Indexed<T>, berth_consul::Error>>,
{
    // The index of the last answer handed on (0: none yet), and the one to ask with.
    let (mut seen, mut ask) = (0, 0);
    let mut backoff = Retry::new(what.clone());
    loop {
        let (asked, asked_with) = (tokio::time::Instant::now(), ask);
        let result = query(ask).await;
        status.set_consul(client.address());
        match result {
            Ok(answer) => {
                if asked_with != 0 {
                    status.blocked(part.1, asked.elapsed());
                }
                backoff.succeeded();
                status.set_waiting(part.0, None);
                let reset = answer.index < seen;
                let moved = seen == 0 || answer.index != seen;
                ask = next_index(seen, answer.index);
                seen = ask;
                if moved {
                    if events
                        .send(event(answer.value, answer.index, reset))
                        .await
                        .is_err()
                    {
                        return;
                    }
                } else if asked_with != 0 && asked.elapsed() < BLOCKING_WAIT / 2 {
                    // Consul answered a blocking query early without a change; never spin on it.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                status.error(part.1);
                status.set_waiting(part.0, Some(format!("{what}: {e}")));
                ask = 0;
                backoff.failed(&e).await;
            }
        }
    }
}
