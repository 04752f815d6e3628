//! gRPC types and service stubs of the `dpdkironcore.v1` API, wire-compatible
//! with ironcore dpservice, plus the dpservice status codes and conversions
//! between the protocol's address messages and `std::net` types.
//!
//! The messages are generated from `proto/dpdk.proto` at build time (pure
//! Rust, no `protoc` required).
//!
//! Wire conventions of dpservice that the proto does not show:
//! * addresses in `bytes` fields are **text** (`b"10.0.0.1"`), read as C strings (up to the
//!   first NUL), see [`convert`];
//! * every response carries a `Status`; failures are reported there with a
//!   dpservice code (see [`status`]), the gRPC status itself stays OK.

#![forbid(unsafe_code)]

pub mod convert;
pub mod status;

/// Generated messages, client and server of package `dpdkironcore.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("dpdkironcore.v1");
}

pub use convert::{
    addr_from_bytes, c_str, ip_from_bytes, ip_from_proto, ip_to_bytes, ip_to_proto,
    ipv4_from_bytes, ipv6_from_bytes, prefix_from_proto, prefix_to_proto, ConvError, WireAddress,
};
pub use v1::dpd_kironcore_client::DpdKironcoreClient;
pub use v1::dpd_kironcore_server::{DpdKironcore, DpdKironcoreServer};

/// The protocol version this implementation speaks, exchanged by
/// `GetVersion` (`client_protocol` / `service_protocol`).
pub const PROTOCOL_VERSION: &str = concat!("dpservice-rs-", env!("CARGO_PKG_VERSION"));

/// Name of the gRPC service as it appears on the wire.
pub const SERVICE_NAME: &str = "dpdkironcore.v1.DPDKironcore";
