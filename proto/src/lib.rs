//! The route discovery contract between `berth-control` and `berth-proxy`.
//!
//! The protocol itself (message order, versions, nonces, ACK/NACK, reconnect) is documented at the
//! top of `proto/berth/routes/v1/routes.proto`. This crate holds the generated messages and the one
//! piece of logic both sides must agree on: how a snapshot's version is derived from its content.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("berth.routes.v1");

    /// The encoded `FileDescriptorSet` of `routes.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/berth_routes_v1_descriptor.bin"));
}

mod version;

pub use version::{
    canonicalize_cluster, canonicalize_route, cluster_digest, route_digest, ItemDigest, VersionSum,
};
