//! Address translation as configured: an interface's VIP and NAT range, the public addresses of
//! a VNI that translate back to an interface, and the neighbor NAT ranges of other hypervisors.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::firewall::FirewallRules;
use crate::PortId;

/// A share of a NAT address: ports `min_port..max_port` (the upper bound excluded, as in
/// dpservice) of `ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    pub ip: Ipv4Addr,
    pub min_port: u16,
    /// Exclusive.
    pub max_port: u16,
}

impl NatRange {
    /// How many ports the range holds.
    #[inline]
    pub fn len(&self) -> u16 {
        self.max_port.saturating_sub(self.min_port)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.min_port <= port && port < self.max_port
    }
}

/// The stateful services of one interface (its part of the snapshot's interface entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceServices {
    /// CreateVip: the interface's 1:1 public IPv4 address.
    pub vip: Option<Ipv4Addr>,
    /// CreateNat: the interface's share of a NAT address (also used for NAT64).
    pub nat: Option<NatRange>,
    /// The interface's firewall rules.
    pub firewall: Arc<FirewallRules>,
}

/// What a public IPv4 address of a VNI (a VIP or a NAT address) translates back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicTarget {
    /// A VIP: traffic to it is for this interface's own address.
    Vip { port: PortId, private: Ipv4Addr },
    /// A NAT address: only replies of flows started from inside (found in the flow table), or
    /// ranges of other hypervisors (neighbor NATs), are delivered.
    Nat,
}

/// CreateNeighborNat: ports `min_port..max_port` of a NAT address are used on the hypervisor at
/// `underlay`; return traffic arriving here for them is relayed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighborNat {
    pub min_port: u16,
    /// Exclusive.
    pub max_port: u16,
    pub underlay: Ipv6Addr,
}
