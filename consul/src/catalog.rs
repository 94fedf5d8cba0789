//! Reading the catalog: which services exist, their instances, and the checks that are not passing.
//!
//! These are the reads a control plane needs to follow a catalog of any size with a handful of
//! connections:
//!
//! - [`Client::catalog_services`]: every service name with its tags (blocking; moves when any
//!   service registration changes).
//! - [`Client::failing_checks`]: every check whose status is not `passing` (blocking; moves when
//!   any check changes). An instance is healthy exactly when none of its checks, nor its node's,
//!   is listed, so the full list of checks is never needed.
//! - [`Client::catalog_service`]: one service's instances, read when that service changed.
//! - [`Client::catalog_nodes`]: every node and its address (blocking; moves when a node is added,
//!   removed or given a new address).
//! - [`Client::catalog_node`]: one node's instances, read for every node in turn: a full read (at
//!   start, and as a safety net), or for a node whose answer changed.
//! - [`Client::catalog_node_digest`]: only the digest of that answer, hashed as it arrives: to
//!   find an instance changed in place by comparing each node's answer with the last one.
//! - [`Client::service_summaries`]: per service, how many instances on which nodes, in one
//!   answer (Consul's UI endpoint), to find which service a registration changed.
//!
//! The blocking ones take the index last seen (see [`crate::next_index`]); Consul answers when
//! something changed or `wait` elapsed. Consul's wire names stay in this module: callers get
//! [`Instance`] and [`FailingCheck`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::scan::{self, expect, skip_whitespace, unexpected};
use crate::{Client, Error, Indexed};

/// One instance of a service, wherever it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The Consul node it is registered on.
    pub node: String,
    /// That node's address, used when the instance has no address of its own.
    pub node_address: String,
    /// The service ID, unique on its node.
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    /// The instance's own address; may be empty.
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    /// Raft index of the instance's registration: which of two instances came first.
    pub create_index: u64,
    /// Raft index of the instance's last change.
    pub modify_index: u64,
}

impl Instance {
    /// The address to send traffic to: the instance's own, or its node's when unset.
    pub fn target_address(&self) -> &str {
        if self.address.is_empty() {
            &self.node_address
        } else {
            &self.address
        }
    }
}

/// A check whose status is `warning` or `critical` (maintenance mode is a critical check).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailingCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub status: String,
    /// The instance the check belongs to; empty for a node check (which applies to every
    /// instance on the node).
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
}

/// Per service: how many instances, on which nodes (Consul's UI summary). Borrows its text from
/// the [`Summaries`] it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary<'a> {
    pub name: Cow<'a, str>,
    pub instance_count: usize,
    /// One entry per instance, sorted.
    pub nodes: Vec<Cow<'a, str>>,
}

/// One service of a [`ServiceList`]: its name, borrowed from the list, and a digest of its tags.
pub type ListedService<'a> = (Cow<'a, str>, TagsDigest);

/// A digest of a set of tags that does not depend on their order: the wrapping sum of each
/// tag's 128-bit XXH3. Consul writes a service's tags (the union of its instances') in a
/// different order from one answer to the next, so two answers are compared by these digests
/// rather than byte for byte or by sorting every service's tags. The union never repeats a tag;
/// a tag listed twice would count twice (a spurious difference, never a missed one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TagsDigest(u128);

impl TagsDigest {
    /// The digest of `tags`, in any order.
    pub fn of<'t>(tags: impl IntoIterator<Item = &'t str>) -> TagsDigest {
        tags.into_iter()
            .fold(TagsDigest::default(), |sum, tag| sum.with(tag))
    }

    fn with(self, tag: &str) -> TagsDigest {
        self.with_bytes(tag.as_bytes())
    }

    fn with_bytes(self, tag: &[u8]) -> TagsDigest {
        TagsDigest(self.0.wrapping_add(xxhash_rust::xxh3::xxh3_128(tag)))
    }
}

/// Consul's service list as it came over the wire. It names every service of the catalog and is
/// read again on every change (over a megabyte at 10,000 services), so
/// [`ServiceList::services`] borrows the names from the answer and keeps only a digest of each
/// service's tags: a caller that compares it with the last list allocates only for what changed.
#[derive(Debug, Clone)]
pub struct ServiceList {
    body: Bytes,
}

impl ServiceList {
    /// A list from a body in Consul's format (`{"name": ["tag", ...], ...}`); checked when read
    /// ([`ServiceList::services`]).
    pub fn from_json(body: impl Into<Bytes>) -> ServiceList {
        ServiceList { body: body.into() }
    }

    /// Every service, sorted by name, with the digest of its tags. Read with `scan`, not
    /// serde_json: the names are borrowed (decoded only when they hold escapes) and each tag is
    /// hashed where it lies, so a list of 10,000 services costs one pass over its bytes.
    pub fn services(&self) -> Result<Vec<ListedService<'_>>, serde_json::Error> {
        // The number of entries is not known before the end: guess from the length (a service
        // takes well over this many bytes with its tags), rather than growing the list ten times
        // over at 10,000 services.
        const BYTES_PER_SERVICE: usize = 96;
        let body = &self.body[..];
        let mut services = Vec::with_capacity(body.len() / BYTES_PER_SERVICE);
        let mut at = skip_whitespace(body, 0);
        at = skip_whitespace(body, expect(body, at, b'{', "'{' (the service list)")?);
        if body.get(at) == Some(&b'}') {
            at += 1;
        } else {
            loop {
                let (name, after) = scan::string(body, at, "a service's name")?;
                at = skip_whitespace(body, after);
                at = skip_whitespace(body, expect(body, at, b':', "':' after a service's name")?);
                let (digest, after) = read_tags(body, at)?;
                services.push((name.text(body)?, digest));
                at = skip_whitespace(body, after);
                match body.get(at) {
                    Some(b',') => at = skip_whitespace(body, at + 1),
                    Some(b'}') => {
                        at += 1;
                        break;
                    }
                    _ => return Err(unexpected(body, at, "',' or '}' after a service's tags")),
                }
            }
        }
        let end = skip_whitespace(body, at);
        if end != body.len() {
            return Err(unexpected(body, end, "the end of the answer"));
        }
        // Consul (Go) writes an object's keys in byte order; sort anyway if it ever does not.
        if !services.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            services.sort_by(|a, b| a.0.cmp(&b.0));
            services.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(services)
    }
}

/// A service's tags at `at` (a list of strings, or `null`: none): their digest, and the position
/// after them. A tag without escapes is hashed as it lies in the answer.
fn read_tags(body: &[u8], mut at: usize) -> Result<(TagsDigest, usize), serde_json::Error> {
    let mut digest = TagsDigest::default();
    if scan::is_at(body, at, b"null") {
        return Ok((digest, at + 4));
    }
    at = skip_whitespace(body, expect(body, at, b'[', "a list of tags or null")?);
    if body.get(at) == Some(&b']') {
        return Ok((digest, at + 1));
    }
    loop {
        let (tag, after) = scan::string(body, at, "a tag (a string)")?;
        digest = if tag.escaped {
            digest.with(&tag.text(body)?)
        } else {
            digest.with_bytes(tag.raw)
        };
        at = skip_whitespace(body, after);
        match body.get(at) {
            Some(b',') => at = skip_whitespace(body, at + 1),
            Some(b']') => return Ok((digest, at + 1)),
            _ => return Err(unexpected(body, at, "',' or ']' after a tag")),
        }
    }
}

/// Consul's per-service summary as it came over the wire, read through
/// [`crate::summaries::SummaryIndex`].
#[derive(Debug, Clone)]
pub struct Summaries {
    pub(crate) body: Bytes,
}

impl Summaries {
    /// Summaries from a body in Consul's format (`/v1/internal/ui/services`); checked when read.
    pub fn from_json(body: impl Into<Bytes>) -> Summaries {
        Summaries { body: body.into() }
    }

    /// Every service's summary, borrowing names from the answer; nodes sorted. (The watch reads
    /// the summary through [`crate::summaries::SummaryIndex`]; this whole read is what its tests
    /// compare it with.)
    #[cfg(test)]
    pub(crate) fn entries(&self) -> Result<Vec<ServiceSummary<'_>>, serde_json::Error> {
        let raw: Vec<RawSummary<'_>> = serde_json::from_slice(&self.body)?;
        Ok(raw.into_iter().map(RawSummary::into_summary).collect())
    }
}

/// A string read from a JSON answer, borrowed unless it holds escapes.
#[derive(Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// One node's instances as Consul sent them. Consul writes the same node the same way each time
/// (its services are an object, whose keys Go writes sorted), and the answer carries the node's and
/// every instance's `ModifyIndex`, which only grow: so two answers that are the same bytes mean
/// that nothing on the node changed in between, not even a change and its undoing. A caller can
/// keep an answer's [`NodeServices::digest`] and compare it with the next one's, without reading
/// either.
#[derive(Debug, Clone)]
pub struct NodeServices {
    url: String,
    body: Bytes,
}

impl NodeServices {
    /// An answer in Consul's format (`{"Node": {...}, "Services": {...}}` or `null`), as if read
    /// from `url`.
    pub fn from_json(url: impl Into<String>, body: impl Into<Bytes>) -> NodeServices {
        NodeServices {
            url: url.into(),
            body: body.into(),
        }
    }

    /// A 128-bit digest of the answer's bytes (XXH3): equal for equal answers, and different
    /// for different ones but with a chance far below that of any other failure.
    pub fn digest(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(&self.body)
    }

    /// Every instance on the node (none when the node has left the catalog).
    pub fn instances(&self) -> Result<Vec<Instance>, Error> {
        let raw: Option<RawNodeServices> = crate::client::decode_str(&self.url, &self.body)?;
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let RawNode { node, address } = raw.node;
        Ok(raw
            .services
            .into_values()
            .map(|s| Instance {
                node: node.clone(),
                node_address: address.clone(),
                id: s.id,
                service: s.service,
                tags: s.tags,
                address: s.address,
                port: s.port,
                meta: s.meta,
                create_index: s.create_index,
                modify_index: s.modify_index,
            })
            .collect())
    }
}

/// A node of the catalog: its name and address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeName {
    pub node: String,
    /// The address of an instance that has none of its own.
    #[serde(default)]
    pub address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawCatalogService {
    node: String,
    #[serde(default)]
    address: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    service_tags: Vec<String>,
    #[serde(default)]
    service_address: String,
    #[serde(default)]
    service_port: u16,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    service_meta: BTreeMap<String, String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

impl From<RawCatalogService> for Instance {
    fn from(raw: RawCatalogService) -> Instance {
        Instance {
            node: raw.node,
            node_address: raw.address,
            id: raw.service_id,
            service: raw.service_name,
            tags: raw.service_tags,
            address: raw.service_address,
            port: raw.service_port,
            meta: raw.service_meta,
            create_index: raw.create_index,
            modify_index: raw.modify_index,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNodeServices {
    node: RawNode,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    services: BTreeMap<String, RawNodeService>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNode {
    node: String,
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNodeService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    tags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

/// One entry of Consul's summary, as written.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawSummary<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default)]
    instance_count: usize,
    #[serde(borrow, default)]
    nodes: Option<Vec<Text<'a>>>,
}

impl<'a> RawSummary<'a> {
    /// The summary with its nodes sorted.
    pub(crate) fn into_summary(self) -> ServiceSummary<'a> {
        let mut nodes: Vec<Cow<'a, str>> = self.nodes.unwrap_or_default().into_iter().map(|n| n.0).collect();
        nodes.sort();
        ServiceSummary {
            name: self.name.0,
            instance_count: self.instance_count,
            nodes,
        }
    }
}

impl Client {
    /// `GET /v1/catalog/services`: every service name with the union of its instances' tags.
    /// The index moves with any change to any service registration.
    pub async fn catalog_services(&self, index: u64, wait: Duration) -> Result<Indexed<ServiceList>, Error> {
        let (_, raw) = self.get_recycled_raw("/v1/catalog/services", index, wait).await?;
        // Read once, by the caller ([`ServiceList::services`]): at 10,000 services the answer is
        // over a megabyte, and it comes again after every change.
        Ok(Indexed {
            index: raw.index,
            value: ServiceList { body: raw.value },
        })
    }

    /// `GET /v1/health/state/any` filtered to checks that are not passing.
    pub async fn failing_checks(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Vec<FailingCheck>>, Error> {
        self.get_blocking(
            "/v1/health/state/any",
            &[("filter", "Status != \"passing\"")],
            index,
            wait,
        )
        .await
    }

    /// `GET /v1/catalog/service/:name`: every instance of `service` (without health). The index
    /// returned is the service's own: the raft index of its last change (for a service that is
    /// gone, the service list's index).
    pub async fn catalog_service(&self, service: &str) -> Result<Indexed<Vec<Instance>>, Error> {
        let path = format!("/v1/catalog/service/{}", encode_segment(service));
        let raw: Indexed<Vec<RawCatalogService>> = self.get_blocking(&path, &[], 0, Duration::ZERO).await?;
        Ok(Indexed {
            index: raw.index,
            value: raw.value.into_iter().map(Instance::from).collect(),
        })
    }

    /// `GET /v1/catalog/nodes`: every node's name and address (blocking when `index` is not 0).
    /// Its index moves when a node is added, removed or changed (a new address, for one), which
    /// moves no other index the watch follows.
    pub async fn catalog_nodes(&self, index: u64, wait: Duration) -> Result<Indexed<Vec<NodeName>>, Error> {
        self.get_blocking("/v1/catalog/nodes", &[], index, wait).await
    }

    /// `GET /v1/catalog/node/:node`: every instance registered on `node` (none when the node has
    /// left the catalog), as Consul sent it: see [`NodeServices`].
    pub async fn catalog_node(&self, node: &str) -> Result<Indexed<NodeServices>, Error> {
        let path = format!("/v1/catalog/node/{}", encode_segment(node));
        let (url, raw) = self.get_blocking_raw(&path, &[], 0, Duration::ZERO).await?;
        Ok(Indexed {
            index: raw.index,
            value: NodeServices {
                url: url.to_string(),
                body: raw.value,
            },
        })
    }

    /// `GET /v1/catalog/node/:node`, keeping only the answer's digest: the same value as
    /// [`NodeServices::digest`] of the answer read whole, computed as the answer arrives. Compares
    /// a node with its last answer without gathering (or parsing) one.
    pub async fn catalog_node_digest(&self, node: &str) -> Result<Indexed<u128>, Error> {
        let path = format!("/v1/catalog/node/{}", encode_segment(node));
        self.get_digest(&path).await
    }

    /// `GET /v1/internal/ui/services`: per service, the number of instances and their nodes.
    /// This is the endpoint Consul's own UI uses; it is not part of Consul's stable API, so a
    /// caller must treat an error here as "unknown" and fall back to [`Client::catalog_node`].
    pub async fn service_summaries(&self) -> Result<Summaries, Error> {
        let (_, raw) = self
            .get_recycled_raw("/v1/internal/ui/services", 0, Duration::ZERO)
            .await?;
        // Checked when read (`SummaryIndex::update`): the caller reads it once.
        Ok(Summaries { body: raw.value })
    }

    /// `GET /v1/status/leader`: the cluster's leader address, empty while there is none.
    pub async fn leader(&self) -> Result<String, Error> {
        self.get("/v1/status/leader").await
    }
}

/// Percent-encodes a service name for use as one path segment.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_catalog_instances_with_nulls() {
        let json = r#"[{"Node":"n1","Address":"10.0.0.1","ServiceID":"web-1","ServiceName":"web",
            "ServiceTags":null,"ServiceAddress":"","ServicePort":9090,"ServiceMeta":null,
            "ModifyIndex":17}]"#;
        let raw: Vec<RawCatalogService> = serde_json::from_str(json).expect("valid json");
        let instance = Instance::from(raw.into_iter().next().expect("one"));
        assert_eq!(instance.target_address(), "10.0.0.1");
        assert!(instance.tags.is_empty());
        assert_eq!((instance.port, instance.modify_index), (9090, 17));
    }

    #[test]
    fn decodes_a_node_listing_and_a_missing_node() {
        let json = r#"{"Node":{"Node":"n1","Address":"10.0.0.1"},
            "Services":{"a":{"ID":"a","Service":"web","Tags":["x"],"Address":"10.0.0.9","Port":1,
            "Meta":null,"ModifyIndex":5}}}"#;
        let answer = NodeServices::from_json("http://consul/v1/catalog/node/n1", json);
        let instances = answer.instances().expect("valid json");
        assert_eq!(
            (instances[0].node.as_str(), instances[0].target_address()),
            ("n1", "10.0.0.9")
        );
        assert_eq!(
            answer.digest(),
            NodeServices::from_json("elsewhere", json).digest()
        );
        let missing = NodeServices::from_json("http://consul/v1/catalog/node/n2", "null");
        assert!(missing.instances().expect("null").is_empty());
        assert_ne!(missing.digest(), answer.digest());
        let err = NodeServices::from_json("http://consul/v1/catalog/node/n3", "[1]")
            .instances()
            .expect_err("not a node");
        assert!(err.to_string().contains("/v1/catalog/node/n3"), "{err}");
    }

    #[test]
    fn decodes_failing_checks() {
        let json = r#"[{"Node":"n1","CheckID":"serfHealth","Status":"critical","ServiceID":"",
            "ServiceName":"","ModifyIndex":3}]"#;
        let checks: Vec<FailingCheck> = serde_json::from_str(json).expect("valid json");
        assert_eq!(checks[0].check_id, "serfHealth");
        assert!(checks[0].service_id.is_empty());
    }

    #[test]
    fn reads_the_service_list_sorted_borrowed_with_digests_of_its_tag_sets() {
        let list = ServiceList::from_json(r#"{"web":["b","a"],"consul":null,"api\u0041":[]}"#);
        let services = list.services().expect("valid list");
        let names: Vec<&str> = services.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["apiA", "consul", "web"]);
        assert!(
            matches!(services[2].0, Cow::Borrowed(_)),
            "names without escapes are not copied"
        );
        // Consul writes a service's tags in any order: the digest is the set's.
        assert_eq!(services[2].1, TagsDigest::of(["a", "b"]));
        let reordered = ServiceList::from_json(r#"{"web":["a","b"]}"#);
        assert_eq!(reordered.services().expect("valid list")[0].1, services[2].1);
        // No tags, whether `null` or `[]`, is the empty set; any other set differs from it and
        // from each other.
        assert_eq!(services[0].1, TagsDigest::default());
        assert_eq!(services[1].1, TagsDigest::default());
        for other in [&["a"][..], &["b"], &["a", "b", "c"], &["a", "c"]] {
            assert_ne!(TagsDigest::of(other.iter().copied()), services[2].1, "{other:?}");
        }
        // An escaped tag is read as its text.
        let escaped = ServiceList::from_json(r#"{"web":["\u0061","b"]}"#);
        assert_eq!(escaped.services().expect("valid list")[0].1, services[2].1);
        assert!(ServiceList::from_json("[1]").services().is_err());
        assert!(ServiceList::from_json(r#"{"web":[1]}"#).services().is_err());
        let unsorted = ServiceList::from_json(r#"{"web":[],"api":[]}"#);
        let names: Vec<String> = unsorted
            .services()
            .expect("valid")
            .into_iter()
            .map(|(n, _)| n.into_owned())
            .collect();
        assert_eq!(names, ["api", "web"]);
    }

    mod list_properties {
        use super::*;
        use proptest::prelude::*;

        /// A service list: names and tags with the characters JSON escapes or that separate
        /// entries, control characters and text beyond ASCII; a tag list may be `null`.
        fn list() -> impl Strategy<Value = BTreeMap<String, Option<Vec<String>>>> {
            let text = "[a-c\"\\{},:\\[\\] é\n\t\u{1}\u{1F600}]{0,6}";
            prop::collection::btree_map(text, prop::option::of(prop::collection::vec(text, 0..4)), 0..10)
        }

        fn expected(list: &BTreeMap<String, Option<Vec<String>>>) -> Vec<(String, TagsDigest)> {
            list.iter()
                .map(|(name, tags)| {
                    let digest = TagsDigest::of(tags.iter().flatten().map(String::as_str));
                    (name.clone(), digest)
                })
                .collect()
        }

        proptest! {
            /// Whatever the list and however it is written (compact, indented), the reader
            /// gives what decoding it with serde_json gives: every name, sorted, with the digest
            /// of its tags.
            #[test]
            fn reads_any_list_as_serde_json_does(list in list(), pretty in any::<bool>()) {
                let text = if pretty {
                    serde_json::to_string_pretty(&list)
                } else {
                    serde_json::to_string(&list)
                }
                .expect("serializable");
                let answer = ServiceList::from_json(text.clone());
                let read: Vec<(String, TagsDigest)> = answer
                    .services()
                    .expect("a valid list")
                    .into_iter()
                    .map(|(n, d)| (n.into_owned(), d))
                    .collect();
                prop_assert_eq!(read, expected(&list));
                // Cut anywhere before its closing brace, it is an error, never a shorter list.
                let close = text.rfind('}').expect("an object");
                for cut in (0..close).step_by(3) {
                    prop_assert!(ServiceList::from_json(text.as_bytes()[..cut].to_vec()).services().is_err());
                }
            }

            /// Any bytes at all are read or refused without a panic.
            #[test]
            fn never_panics(bytes in prop::collection::vec(prop::sample::select(b"{}[]:,\"\\ na\xff".to_vec()), 0..40)) {
                let _ = ServiceList::from_json(bytes).services();
            }
        }
    }

    #[test]
    fn reads_summaries_with_sorted_nodes() {
        let summaries = Summaries::from_json(
            r#"[{"Name":"web","InstanceCount":2,"Nodes":["n2","n1"],"ChecksPassing":3},
                {"Name":"db","Nodes":null}]"#,
        );
        let entries = summaries.entries().expect("valid summaries");
        assert_eq!(entries[0].name, "web");
        assert_eq!(
            (entries[0].instance_count, entries[0].nodes.clone()),
            (2, vec!["n1".into(), "n2".into()])
        );
        assert!(entries[1].nodes.is_empty());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("web_go"), "web_go");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
