//! The local agent's service registry: register, list and deregister services and their checks,
//! and report the status of TTL checks.
//!
//! Used by `berth-agent`, which owns the registrations of one Docker host. These endpoints act on
//! the Consul agent the client talks to (`/v1/agent/...`), which syncs them to the catalog; they
//! are not for reading the cluster-wide catalog (see [`crate::catalog`] for that). Calls are
//! single attempts: retrying is the caller's policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::encode_segment;
use crate::{Client, Error};

/// A service definition for `PUT /v1/agent/service/register`, in Consul's JSON form.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDefinition>,
}

/// One health check attached to a [`ServiceRegistration`]. Exactly one of `http`, `tcp`, `grpc`
/// or `ttl` should be set; Consul rejects a registration otherwise.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CheckDefinition {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// A full URL, e.g. `http://10.0.0.5:8080/health`.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    /// `host:port`.
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// `host:port[/service]`.
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
    /// A Go duration (`30s`): the check goes critical unless updated within it.
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Initial status: `passing`, `warning` or `critical` (Consul's default is critical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<String>,
}

/// A service registered on the local agent, as `GET /v1/agent/services` describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub address: String,
}

/// A check registered on the local agent, as `GET /v1/agent/checks` describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
}

/// Body of `PUT /v1/agent/check/update/:id`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CheckUpdate<'a> {
    status: &'a str,
    output: &'a str,
}

impl Client {
    /// `PUT /v1/agent/service/register?replace-existing-checks=true`: registers `service`, or
    /// replaces its definition (checks included) when one with the same ID exists. Idempotent.
    pub async fn agent_register(&self, service: &ServiceRegistration) -> Result<(), Error> {
        self.put_with_query(
            "/v1/agent/service/register",
            &[("replace-existing-checks", "true")],
            Some(service),
        )
        .await
    }

    /// `PUT /v1/agent/service/deregister/:id`: removes the service and its checks. A service the
    /// agent does not know counts as removed, so this is idempotent too.
    pub async fn agent_deregister(&self, service_id: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/service/deregister/{}", encode_segment(service_id));
        match self.put(&path, None::<&()>).await {
            Err(e) if is_unknown(&e, "service") => Ok(()),
            other => other,
        }
    }

    /// `GET /v1/agent/services`: every service registered on this agent, by ID.
    pub async fn agent_services(&self) -> Result<BTreeMap<String, AgentService>, Error> {
        let raw: Option<BTreeMap<String, AgentService>> = self.get("/v1/agent/services").await?;
        Ok(raw.unwrap_or_default())
    }

    /// `GET /v1/agent/checks`: every check registered on this agent, by check ID.
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, AgentCheck>, Error> {
        let raw: Option<BTreeMap<String, AgentCheck>> = self.get("/v1/agent/checks").await?;
        Ok(raw.unwrap_or_default())
    }

    /// `PUT /v1/agent/check/update/:id`: sets a TTL check's `status` (`passing`, `warning` or
    /// `critical`) and `output`, and restarts its TTL. Fails when the check does not exist or is
    /// not a TTL check (see [`Error::is_unknown_check`]).
    pub async fn agent_update_check(&self, check_id: &str, status: &str, output: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/check/update/{}", encode_segment(check_id));
        self.put(&path, Some(&CheckUpdate { status, output })).await
    }
}

impl Error {
    /// True when Consul refused a check update because it has no such TTL check (it was removed,
    /// or the agent restarted without its state): the caller should register it again.
    /// Consul answers 404 or, in older versions, 500 with a message naming the check.
    pub fn is_unknown_check(&self) -> bool {
        is_unknown(self, "check")
    }
}

/// Consul's "no such service/check" answers: 404, or 500 with "Unknown ..." / "does not have
/// associated TTL" in older versions.
fn is_unknown(error: &Error, what: &str) -> bool {
    match error {
        Error::Status { status: 404, .. } => true,
        Error::Status {
            status: 500, body, ..
        } => {
            let body = body.to_ascii_lowercase();
            body.contains(&format!("unknown {what}")) || body.contains("does not have associated ttl")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_serializes_in_consul_form_without_empty_fields() {
        let reg = ServiceRegistration {
            id: "host:web:80".into(),
            name: "web".into(),
            tags: vec!["a".into()],
            address: "10.0.0.1".into(),
            port: 32768,
            meta: BTreeMap::from([("berth-agent-id".to_string(), "host".to_string())]),
            checks: vec![CheckDefinition {
                check_id: "service:host:web:80".into(),
                name: "web http".into(),
                http: Some("http://10.0.0.1:32768/health".into()),
                interval: Some("10s".into()),
                ..CheckDefinition::default()
            }],
        };
        let json = serde_json::to_value(&reg).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "ID": "host:web:80", "Name": "web", "Tags": ["a"], "Address": "10.0.0.1", "Port": 32768,
                "Meta": {"berth-agent-id": "host"},
                "Checks": [{"CheckID": "service:host:web:80", "Name": "web http",
                            "HTTP": "http://10.0.0.1:32768/health", "Interval": "10s"}]
            })
        );
    }

    #[test]
    fn decodes_agent_services_and_checks_with_nulls() {
        let services =
            r#"{"a:b:80":{"ID":"a:b:80","Service":"b","Tags":null,"Meta":null,"Port":80,"Address":""}}"#;
        let services: BTreeMap<String, AgentService> = serde_json::from_str(services).expect("valid json");
        assert!(services["a:b:80"].tags.is_empty());
        assert!(services["a:b:80"].meta.is_empty());
        let checks = r#"{"c1":{"Node":"n","CheckID":"c1","Name":"x","Status":"critical","Notes":"",
            "Output":"TTL expired","ServiceID":"a:b:80","ServiceName":"b","ServiceTags":[],"Type":"ttl"}}"#;
        let checks: BTreeMap<String, AgentCheck> = serde_json::from_str(checks).expect("valid json");
        assert_eq!(checks["c1"].service_id, "a:b:80");
        assert_eq!(checks["c1"].output, "TTL expired");
    }

    #[test]
    fn recognises_unknown_check_answers() {
        let status = |status: u16, body: &str| Error::Status {
            method: "PUT",
            url: "http://x/v1/agent/check/update/c".into(),
            status,
            body: body.into(),
        };
        assert!(status(404, "Unknown check ID \"c\"").is_unknown_check());
        assert!(status(500, "CheckID \"c\" does not have associated TTL").is_unknown_check());
        assert!(!status(500, "rpc error: No cluster leader").is_unknown_check());
        assert!(!status(403, "Permission denied").is_unknown_check());
    }
}
