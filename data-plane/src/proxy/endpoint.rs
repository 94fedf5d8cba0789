//! Step 2, pick endpoint: which backend of the route's cluster gets this request.
//!
//! For: asking the cluster's precomputed weighted round robin for the next endpoint, and turning
//! an empty cluster into a 503.
//! Not for: building the rotation (see `balance`) or connecting (see `forward`).

use super::ProxyError;
use crate::table::{Endpoint, Route};

#[inline]
pub(crate) fn pick(route: &Route) -> Result<&Endpoint, ProxyError> {
    route.cluster.pick().ok_or_else(|| ProxyError::NoEndpoints {
        route: route.name.clone(),
        cluster: route.cluster.name.clone(),
    })
}
