//! The Consul side: reading what the local Consul agent holds, and applying a plan of
//! [`Action`]s to it, with a log line for each change.
//!
//! It decides nothing (that is [`crate::reconcile`]) and does not retry: a transient failure
//! (Consul down, no leader) stops the apply and is returned, so the caller can retry the whole
//! round; a refusal of one request (a registration Consul rejects) is reported and the rest of
//! the plan goes on.

use berth_consul::{Client, Error};

use crate::reconcile::{Action, Actual};

/// A handle on the Consul agent the services are registered with.
#[derive(Clone)]
pub(crate) struct Registry {
    client: Client,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub registered: usize,
    pub deregistered: usize,
    pub checks_updated: usize,
    /// Requests Consul refused, one message each (naming the service and container).
    pub refused: Vec<String>,
    /// A check update found no such check: reconcile again to register it.
    pub check_missing: bool,
}

impl Registry {
    pub fn new(client: Client) -> Registry {
        Registry { client }
    }

    pub fn address(&self) -> &str {
        self.client.address()
    }

    /// The services and checks registered on the Consul agent now.
    pub async fn actual(&self) -> Result<Actual, Error> {
        let services = self.client.agent_services().await?;
        let checks = self.client.agent_checks().await?;
        Ok(Actual { services, checks })
    }

    /// Applies `actions` in order. Returns early with the error when Consul cannot be reached.
    pub async fn apply(&self, actions: Vec<Action>) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        for action in actions {
            match action {
                Action::Register { registration, reason } => {
                    let s = &registration.service;
                    match self.client.agent_register(s).await {
                        Ok(()) => {
                            applied.registered += 1;
                            tracing::info!(
                                service = %s.name, id = %s.id, address = %format!("{}:{}", s.address, s.port),
                                tags = ?s.tags, container = %registration.container_name, reason,
                                "registered {} for container {}", s.id, registration.container_name
                            );
                        }
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => applied.refused.push(format!(
                            "Consul refused to register {} (port {} of container {}): {e}",
                            s.id, registration.port_label, registration.container_name
                        )),
                    }
                }
                Action::Deregister {
                    service_id,
                    service_name,
                    container_id,
                } => match self.client.agent_deregister(&service_id).await {
                    Ok(()) => {
                        applied.deregistered += 1;
                        let container = container_id
                            .as_deref()
                            .map(|c| c.get(..12).unwrap_or(c))
                            .unwrap_or("?");
                        tracing::info!(
                            service = %service_name, id = %service_id, container,
                            "deregistered {service_id}: its container {container} no longer calls for it"
                        );
                    }
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => applied
                        .refused
                        .push(format!("Consul refused to deregister {service_id}: {e}")),
                },
                Action::UpdateCheck {
                    check_id,
                    service_id,
                    status,
                    output,
                } => match self.client.agent_update_check(&check_id, status, &output).await {
                    Ok(()) => {
                        applied.checks_updated += 1;
                        tracing::debug!(check = %check_id, service = %service_id, status, %output, "check updated");
                    }
                    Err(e) if e.is_unknown_check() => {
                        tracing::debug!(check = %check_id, "check not found in Consul; will register again");
                        applied.check_missing = true;
                    }
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => applied
                        .refused
                        .push(format!("Consul refused to update check {check_id}: {e}")),
                },
            }
        }
        Ok(applied)
    }
}
