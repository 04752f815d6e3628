//! The graph's nodes, one per file (as dpservice's `src/nodes/`), and the helpers they share.

mod arp;
mod classify;
mod common;
mod conntrack;
mod dhcp;
mod dhcpv6;
mod firewall;
mod gateway_icmp;
mod handoff;
mod icmp_error;
mod ipip_decap;
mod ipip_encap;
mod ipv4_lookup;
mod ipv6_lookup;
mod ipv6_nd;
mod l2_rewrite;
mod lb;
mod meter;
mod nat;
mod packet_relay;
mod underlay_nd;
pub(crate) mod uplink;
mod virtsvc;
mod vm_probe;

pub use arp::Arp;
pub use classify::Classify;
pub use common::{link_local, OUTER_HEADER_LEN};
pub use conntrack::{Conntrack, SWEEP_INTERVAL_NS, SWEEP_PER_TICK};
pub use dhcp::Dhcp;
pub use dhcpv6::Dhcpv6;
pub use firewall::Firewall;
pub use gateway_icmp::GatewayIcmp;
pub(crate) use handoff::via_handoff_all;
pub use handoff::Handoff;
pub use ipip_decap::IpipDecap;
pub use ipip_encap::{IpipEncap, OUTER_HOP_LIMIT};
pub use ipv4_lookup::Ipv4Lookup;
pub use ipv6_lookup::Ipv6Lookup;
pub use ipv6_nd::Ipv6Nd;
pub use l2_rewrite::L2Rewrite;
pub use lb::Lb;
pub(crate) use meter::via_meter_all;
pub use meter::Meter;
pub use nat::Nat;
pub use packet_relay::PacketRelay;
pub use underlay_nd::{
    UnderlayNd, MAX_UNANSWERED, PROBE_INTERVAL_NS, REACHABLE_NS, RS_INTERVAL_NS,
};
pub use virtsvc::Virtsvc;
pub use vm_probe::{
    vm_probe_wait_ns, VmProbe, VM_FAST_PROBES, VM_MAX_PROBES_PER_TICK, VM_MAX_PROBE_INTERVAL_NS,
    VM_PROBE_INTERVAL_NS,
};
