//! Reading the catalog: which services exist, and each one's instances with their health.
//!
//! Both calls are blocking queries (see [`crate::next_index`]): the caller passes the index it
//! last saw and Consul answers when something changed or `wait` elapsed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::{Client, Error, Indexed};

/// One instance of a service as `/v1/health/service/:name` describes it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: Service,
    #[serde(default)]
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    pub node: String,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    pub status: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub output: String,
}

impl ServiceEntry {
    /// The address to send traffic to: the service's own address, or its node's when unset.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// True when every check that applies to this instance (its own and its node's) passes.
    pub fn is_passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == "passing")
    }
}

impl Client {
    /// `GET /v1/catalog/services`: every service name with the union of its instances' tags.
    pub async fn catalog_services(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<BTreeMap<String, Vec<String>>>, Error> {
        let raw: Indexed<BTreeMap<String, Option<Vec<String>>>> = self
            .get_blocking("/v1/catalog/services", &[], index, wait)
            .await?;
        Ok(Indexed {
            index: raw.index,
            value: raw
                .value
                .into_iter()
                .map(|(name, tags)| (name, tags.unwrap_or_default()))
                .collect(),
        })
    }

    /// `GET /v1/health/service/:name`: every instance of `service`, healthy or not, with checks.
    pub async fn health_service(
        &self,
        service: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Vec<ServiceEntry>>, Error> {
        let path = format!("/v1/health/service/{}", encode_segment(service));
        self.get_blocking(&path, &[], index, wait).await
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
    fn decodes_a_health_entry_with_nulls() {
        let json = r#"[{"Node":{"Node":"n1","Address":"10.0.0.1"},
            "Service":{"ID":"web-1","Service":"web","Tags":null,"Address":"","Port":9090,"Meta":null},
            "Checks":[{"CheckID":"serfHealth","Name":"Serf","Status":"passing","ServiceID":"","Output":""},
                      {"CheckID":"service:web-1","Name":"x","Status":"critical","ServiceID":"web-1","Output":"down"}]}]"#;
        let entries: Vec<ServiceEntry> = serde_json::from_str(json).expect("valid json");
        assert_eq!(entries[0].address(), "10.0.0.1");
        assert!(entries[0].service.tags.is_empty());
        assert!(!entries[0].is_passing());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("web_go"), "web_go");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
