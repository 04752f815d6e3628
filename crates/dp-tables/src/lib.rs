//! Dataplane tables, the contract between the control plane and the packet path.
//!
//! The control plane owns the authoritative configuration and, after each change, publishes an
//! immutable [`Snapshot`] through a [`Publisher`]. Workers load the current snapshot once per batch
//! (one atomic load, no lock) and read it without synchronisation. Per-VNI tables are behind `Arc`s
//! so that publishing a change copies only what changed.

// One exception, a prefetch hint in the flow table (`conntrack::prefetch_read`).
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod capture;
pub mod conntrack;
mod firewall;
mod iface;
pub mod lb;
mod lpm;
mod lpm4;
pub mod maglev;
pub mod meter;
mod nat;
mod snapshot;
pub mod virtsvc;
mod vni;

pub use capture::{CaptureConfig, CaptureDirections, CAPTURE_MAX_PORTS};
pub use conntrack::{
    next_firewall_generation, ConnKey, Direction, FirewallVerdict, Flow, FlowId, FlowStats,
    FlowTable, HashSeeds, InsertError, TcpSegment, TcpState, Timeouts, Translation, NO_PORT,
};
pub use firewall::{
    FirewallAction, FirewallRule, FirewallRules, FlowMatch, IpNet, PortRange, ProtocolFilter,
    TrafficDirection,
};
pub use iface::{Iface, PxeConfig};
pub use lb::{LbPort, LoadBalancer};
pub use lpm::{Lpm, LpmKey};
pub use lpm4::Lpm4;
pub use maglev::{Maglev, MAGLEV_TABLE_SIZE};
pub use meter::{MeterConfig, TokenBucket};
pub use nat::{IfaceServices, NatRange, NeighborNat, PublicTarget};
pub use snapshot::{Publisher, Snapshot, SnapshotReader, UnderlayTarget};
pub use virtsvc::{
    virtsvc_underlay, PortMap, PortMapError, PortMapStats, VirtsvcConn, VirtsvcError,
    VirtsvcTables, VirtsvcTcpState, VirtualService, VirtualServices, VIRTSVC_MAX,
    VIRTSVC_PORT_COUNT,
};
pub use vni::{RouteTarget, VniTable};

/// Index of a port in the daemon's port list: pf0, pf1, then the VFs.
pub type PortId = u16;

/// A tenant network identifier (24 bits on the wire, held in a u32 as dpservice does).
pub type Vni = u32;
