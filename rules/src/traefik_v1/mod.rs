//! The Traefik v1 Consul Catalog dialect, the one of the 2019 article:
//! `traefik.frontend.rule=Host:go.traefix.example.localhost`, `traefik.frontend.entryPoints=http`,
//! and the rest of v1's frontend and backend vocabulary.
//!
//! Each instance's tags are read on their own; instances that ask for the same frontends and
//! backend form one group, served by one cluster. The first group (in a stable order) is named
//! after the service, further groups `<service>#2`, `<service>#3`...; each frontend of a group is
//! a route: the main frontend `<group>`, a segment `<prefix>.frontends.<name>.*` `<group>/<name>`.
//! (Traefik v1 merged the tags of all instances into one; grouping keeps instances that
//! disagree apart instead of letting one of them win at random.)
//!
//! A frontend without a rule gets v1's default rule `Host:{service}.{domain}` (a segment:
//! `Host:{service}-{segment}.{domain}`), the service name normalized (`web_go` → `web-go`), when
//! a domain is configured. A frontend's priority is `frontend.priority` when above 0, otherwise
//! the length of its rule, as Traefik v1 ordered them.
//!
//! Files: [`rule`] parses rules, [`frontend`] and [`backend`] read their options. Not for:
//! Traefik v2/v3 tags (see `traefik_v3`).

mod backend;
mod frontend;
pub(crate) mod rule;

use berth_proto::v1::{Balancing, Cluster, HostHeader, Route, StickyCookie};

use crate::dialect::Tagged;
use crate::error::{Fault, Output};
use crate::labels::{Labels, Node};
use crate::traefik_v3::template::normalize;
use crate::Settings;

use frontend::Frontend;

/// First key segments that belong to Traefik v1.
const V1_KEYS: &[&str] = &["frontend", "frontends", "backend", "weight", "protocol"];

/// Whether a service's tags use this dialect: any v1 key.
pub(crate) fn is_used_by(labels: &Labels) -> bool {
    V1_KEYS.iter().any(|k| labels.has(k))
}

/// What one instance asks for: its frontends (by name: `frontend` or `frontends.<segment>`) and
/// the cluster settings its backend tags give.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    frontends: Vec<(String, Frontend)>,
    scheme: String,
    sticky: Option<StickyCookie>,
}

struct Group<'a> {
    shape: Shape,
    members: Vec<(&'a Tagged<'a>, u32)>,
}

/// The default rule's host for a frontend: `{service}.{domain}` (segment: `{service}-{segment}`).
fn default_host(service: &str, segment: Option<&str>, settings: &Settings) -> Option<String> {
    let domain = settings.domain.as_deref()?.trim_matches('.');
    if domain.is_empty() {
        return None;
    }
    let name = match segment {
        Some(segment) => format!("{service}-{segment}"),
        None => service.to_string(),
    };
    Some(format!("{}.{domain}", normalize(&name)).to_ascii_lowercase())
}

/// Reads one instance; `None` when its instance-level tags are unusable (reported).
fn shape(service: &str, tagged: &Tagged<'_>, settings: &Settings, out: &mut Output) -> Option<(Shape, u32)> {
    let id = tagged.instance.id.as_str();
    let root = &tagged.labels.root;
    let report = |out: &mut Output, router: Option<&str>, tag: Option<&String>, message: String| {
        let mut fault = Fault::new(message).instance(id);
        if let Some(router) = router {
            fault = fault.router(router);
        }
        if let Some(tag) = tag {
            fault = fault.tag(tag.clone());
        }
        out.fault(fault);
    };
    for child in &root.children {
        let lower = child.name.to_ascii_lowercase();
        if lower == "enable" || lower == "consulcatalog" || V1_KEYS.contains(&lower.as_str()) {
            continue;
        }
        let message = if lower == "tags" {
            "ignored: Berth has no constraints; every service with an exposed instance is routed".to_string()
        } else {
            format!("ignored: {:?} is not a Traefik v1 Consul Catalog tag", child.name)
        };
        for leaf in child.leaves() {
            report(out, None, Some(&leaf.tag), message.clone());
        }
    }
    let unusable = |out: &mut Output, tag: Option<String>, message: String| {
        report(
            out,
            None,
            tag.as_ref(),
            format!("{message}; the instance is not routed"),
        );
    };
    let scheme = match backend::protocol(root) {
        Ok(scheme) => scheme,
        Err(e) => {
            let message = e.to_string();
            unusable(out, e.tag, message);
            return None;
        }
    };
    let weight = match backend::weight(root) {
        Ok(weight) => weight,
        Err(e) => {
            let message = e.to_string();
            unusable(out, e.tag, message);
            return None;
        }
    };
    let backend_name = format!("backend-{}", service.to_ascii_lowercase());
    let (backend, notes) = match backend::read(root.child("backend"), &backend_name) {
        Ok(read) => read,
        Err(e) => {
            let message = e.to_string();
            unusable(out, e.tag, message);
            return None;
        }
    };
    for note in notes {
        report(out, None, Some(&note.tag), format!("ignored: {}", note.message));
    }

    let mut frontends = Vec::new();
    let mut read = |name: String, node: Option<&Node>, segment: Option<&str>, out: &mut Output| {
        let host = default_host(service, segment, settings);
        match frontend::read(node, host, &backend.middlewares) {
            Ok((frontend, notes)) => {
                for note in notes {
                    report(
                        out,
                        Some(&name),
                        Some(&note.tag),
                        format!("ignored: {}", note.message),
                    );
                }
                frontends.push((name, frontend));
            }
            Err(e) => {
                let mut fault = Fault::new(format!("frontend rejected: {e}"))
                    .instance(id)
                    .router(name);
                if let Some(tag) = e.tag {
                    fault = fault.tag(tag);
                }
                if let Some(position) = e.position {
                    fault = fault.position(position);
                }
                out.fault(fault);
            }
        }
    };
    read("frontend".to_string(), root.child("frontend"), None, out);
    if let Some(segments) = root.child("frontends") {
        for segment in &segments.children {
            read(
                format!("frontends.{}", segment.name),
                Some(segment),
                Some(&segment.name),
                out,
            );
        }
    }
    Some((
        Shape {
            frontends,
            scheme,
            sticky: backend.sticky,
        },
        weight,
    ))
}

/// Compiles the service's v1 tags.
pub(crate) fn compile(service: &str, tagged: &[Tagged<'_>], settings: &Settings, out: &mut Output) {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for t in tagged.iter().filter(|t| t.enabled) {
        let Some((shape, weight)) = self::shape(service, t, settings, out) else {
            continue;
        };
        if shape.frontends.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|g| g.shape == shape) {
            Some(group) => group.members.push((t, weight)),
            None => groups.push(Group {
                shape,
                members: vec![(t, weight)],
            }),
        }
    }
    // A stable order that does not depend on which instance registered first.
    groups.sort_by_cached_key(|g| {
        let first_rule = g
            .shape
            .frontends
            .first()
            .map(|(_, f)| f.rule.clone())
            .unwrap_or_default();
        (first_rule, format!("{:?}", g.shape))
    });
    let several = groups.len() > 1;
    for (index, group) in groups.into_iter().enumerate() {
        let base = if several && index > 0 {
            format!("{service}#{}", index + 1)
        } else {
            service.to_string()
        };
        let endpoints: Vec<_> = group
            .members
            .iter()
            .filter_map(|(t, weight)| crate::dialect::endpoint(t.instance, None, *weight, out))
            .collect();
        let first_pass = group
            .shape
            .frontends
            .first()
            .is_none_or(|(_, f)| f.pass_host_header);
        for (name, frontend) in group.shape.frontends {
            let route_name = match name.strip_prefix("frontends.") {
                Some(segment) => format!("{base}/{segment}"),
                None => base.clone(),
            };
            let cluster_name = if frontend.pass_host_header == first_pass {
                base.clone()
            } else {
                route_name.clone()
            };
            out.cluster(Cluster {
                name: cluster_name.clone(),
                endpoints: endpoints.clone(),
                scheme: group.shape.scheme.clone(),
                host_header: if frontend.pass_host_header {
                    HostHeader::Pass as i32
                } else {
                    HostHeader::Endpoint as i32
                },
                sticky: group.shape.sticky.clone(),
                balancing: Balancing::WeightedRoundRobin as i32,
                requires: Vec::new(),
                ..Default::default()
            });
            out.route(Route {
                name: route_name,
                entrypoints: frontend.entrypoints,
                cluster: cluster_name,
                service: service.to_string(),
                matcher: Some(frontend.matcher),
                priority: frontend.priority,
                order: 0,
                middlewares: frontend.middlewares,
                requires: Vec::new(),
                origin: format!("traefik/v1 {name}"),
                tls: false,
            });
        }
    }
}

#[cfg(test)]
mod tests;
