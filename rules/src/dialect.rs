//! What every Traefik dialect shares: reading an instance's tags into labels, whether the
//! instance is exposed (`<prefix>.enable`, Consul Connect), which dialect a service's tags are
//! read in, and turning an instance into an endpoint.
//!
//! The choice of dialect is made once per service: if any instance has a `<prefix>.http.`,
//! `.tcp.` or `.udp.` tag, the service is read as Traefik v2/v3 and its v1 tags are reported as
//! ignored; otherwise, if any instance has a Traefik v1 tag, as v1. A service with neither (only
//! `enable`, or no tag at all) gets Traefik v1's default frontend `Host:{service}.{domain}` when
//! a domain is configured, and Traefik 3's default router (the default rule template) otherwise.
//!
//! Not for: the vocabulary of a dialect.

use berth_proto::v1::Endpoint;
use sha1::{Digest, Sha1};

use crate::error::{Fault, Output};
use crate::labels::{self, Labels};
use crate::values;
use crate::{traefik_v1, traefik_v3, Instance, Settings};

/// An instance with its labels read.
pub(crate) struct Tagged<'a> {
    pub instance: &'a Instance,
    pub labels: Labels,
    /// Whether Traefik would expose it (`enable`, `exposed_by_default`, not a Connect service).
    pub enabled: bool,
    /// `<prefix>.consulcatalog.canary=true` (Traefik v3 names its default router and service
    /// differently).
    pub canary: bool,
}

/// The Traefik dialect a service's tags are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    V1,
    V3,
}

/// Reads every instance's tags, in instance ID order, reporting malformed tags and bad `enable`
/// values (an instance whose `enable` cannot be read is not exposed).
pub(crate) fn tag<'a>(instances: &'a [Instance], settings: &Settings, out: &mut Output) -> Vec<Tagged<'a>> {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted
        .into_iter()
        .map(|instance| {
            let labels = labels::parse(&instance.tags, &settings.prefix);
            for tag in &labels.malformed {
                out.fault(
                    Fault::new("ignored: a tag under the prefix must be key=value with no empty key segment")
                        .tag(tag)
                        .instance(&instance.id),
                );
            }
            let enabled = flag(&labels, &["enable"], instance, out).unwrap_or(settings.exposed_by_default);
            let connect = flag(&labels, &["consulcatalog", "connect"], instance, out).unwrap_or(false);
            let canary = flag(&labels, &["consulcatalog", "canary"], instance, out).unwrap_or(false);
            let enabled = enabled && !connect;
            if connect {
                out.fault(
                    Fault::new(
                        "not exposed: a Consul Connect service (consulcatalog.connect=true) is reached through its sidecar, which Berth does not do (as Traefik without connectAware)",
                    )
                    .instance(&instance.id),
                );
            }
            Tagged {
                instance,
                labels,
                enabled,
                canary,
            }
        })
        .collect()
}

/// A boolean label at `path`; `None` when absent, reported and `Some(false)` when unreadable.
fn flag(labels: &Labels, path: &[&str], instance: &Instance, out: &mut Output) -> Option<bool> {
    let mut node = &labels.root;
    for part in path {
        node = node.child(part)?;
    }
    let leaf = node.leaf.as_ref()?;
    if let Some(second) = &node.clash {
        out.fault(
            Fault::new(format!(
                "given twice with different values ({:?} and {:?}); the instance is not exposed",
                leaf.value, second.value
            ))
            .tag(&second.tag)
            .instance(&instance.id),
        );
        return Some(false);
    }
    match values::parse_bool(&leaf.value) {
        Ok(value) => Some(value),
        Err(e) => {
            out.fault(
                Fault::new(format!("{e}; the instance is not exposed"))
                    .tag(&leaf.tag)
                    .instance(&instance.id),
            );
            Some(false)
        }
    }
}

/// Which dialect the service's tags are in (see the module doc).
pub(crate) fn choose(tagged: &[Tagged<'_>], settings: &Settings) -> Dialect {
    if tagged.iter().any(|t| traefik_v3::is_used_by(&t.labels)) {
        return Dialect::V3;
    }
    if tagged.iter().any(|t| traefik_v1::is_used_by(&t.labels)) {
        return Dialect::V1;
    }
    match settings.domain.as_deref() {
        Some(domain) if !domain.trim_matches('.').is_empty() => Dialect::V1,
        _ => Dialect::V3,
    }
}

/// The endpoint an instance contributes to a cluster: none when Consul's health keeps it from
/// traffic or its weight is 0; none, reported, when it has no usable address or port.
pub(crate) fn endpoint(
    instance: &Instance,
    port: Option<u16>,
    weight: u32,
    out: &mut Output,
) -> Option<Endpoint> {
    if !instance.routable || weight == 0 {
        return None;
    }
    let port = port.unwrap_or(instance.port);
    if instance.address.is_empty() || port == 0 {
        out.fault(
            Fault::new(format!(
                "registered without a usable address and port ({:?}:{port}); not routed",
                instance.address
            ))
            .instance(&instance.id),
        );
        return None;
    }
    if let Err(e) = berth_model::parse_address(&instance.address) {
        out.fault(Fault::new(format!("{e}; not routed")).instance(&instance.id));
        return None;
    }
    Some(Endpoint {
        address: instance.address.clone(),
        port: u32::from(port),
        weight,
        id: instance.id.clone(),
    })
}

/// Traefik's sticky cookie name (v1 and v3 alike): the configured name with characters a cookie
/// name may not hold replaced by '_', or, when none is configured, `_` and the first 5 hex digits
/// of the SHA-1 of `_TRAEFIK_BACKEND_<backend>` (v3: `<service>@<provider>`, v1:
/// `backend-<service>`).
pub(crate) fn cookie_name(configured: &str, backend: &str) -> String {
    if configured.is_empty() {
        let digest = Sha1::digest(format!("_TRAEFIK_BACKEND_{backend}").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return format!("_{}", &hex[..5]);
    }
    configured
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-.^`|~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_as_traefik() {
        // "_" and the first 5 hex digits of sha1("_TRAEFIK_BACKEND_" + backend).
        assert_eq!(cookie_name("", "backend-web"), "_40e28");
        assert_eq!(cookie_name("", "web@consulcatalog"), "_79351");
        assert_eq!(cookie_name("my cookie;", "x"), "my_cookie_");
        assert_eq!(cookie_name("a.b-c~", "x"), "a.b-c~");
    }
}
