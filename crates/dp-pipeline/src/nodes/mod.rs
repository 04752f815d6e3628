//! The graph's nodes, one per file (as dpservice's `src/nodes/`).

mod arp;
mod classify;
mod common;
mod dhcp;
mod dhcpv6;
mod gateway_icmp;
mod icmp_error;
mod ipv4_lookup;
mod ipv6_lookup;
mod ipv6_nd;
mod l2_rewrite;

pub use arp::Arp;
pub use classify::Classify;
pub use dhcp::Dhcp;
pub use dhcpv6::Dhcpv6;
pub use gateway_icmp::GatewayIcmp;
pub use ipv4_lookup::Ipv4Lookup;
pub use ipv6_lookup::Ipv6Lookup;
pub use ipv6_nd::Ipv6Nd;
pub use l2_rewrite::L2Rewrite;
