//! A tenant network's routing tables.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lpm::Lpm;
use crate::lpm4::Lpm4;
use crate::{PortId, Vni};

/// Where a route sends matching packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// A VM on this host, reached through its VF port.
    Local { port: PortId },
    /// Another hypervisor: encapsulate towards `underlay` and deliver into `vni` there.
    /// `public`: a default route (prefix length 0), which leaves the VNI's private space —
    /// the traffic an interface's VIP or NAT translates (dpservice's "south-north" flows).
    Remote {
        vni: Vni,
        underlay: Ipv6Addr,
        public: bool,
    },
}

/// The IPv4 and IPv6 routing tables of one VNI.
#[derive(Clone, Debug, Default)]
pub struct VniTable {
    pub v4: Lpm4<RouteTarget>,
    pub v6: Lpm<u128, RouteTarget>,
}

impl VniTable {
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<&RouteTarget> {
        self.v4.lookup(u32::from(dst))
    }

    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<&RouteTarget> {
        self.v6.lookup(u128::from(dst))
    }
}
