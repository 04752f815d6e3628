//! Load balancers as the packet path reads them: a VIP of a VNI with the protocol/port pairs it
//! serves and the underlay addresses of its targets, with their Maglev table.
//!
//! A flow balanced to a target on another host carries the target in its reply key (see
//! [`lb_reply_key`]): the target answers the client itself, from its own hypervisor, so no
//! packet ever travels such a flow's reply direction here, and the flow needs no field of its
//! own for the target (the flow is two cache lines with little room left). A flow to a target on this
//! host keeps the usual reply key (its VM's answers are the flow's replies) and the VM's port.

use std::net::{IpAddr, Ipv6Addr};

use dp_packet::IpProtocol;

use crate::conntrack::ConnKey;
use crate::maglev::Maglev;
use crate::Vni;

/// One protocol/port pair a load balancer serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LbPort {
    pub proto: IpProtocol,
    pub port: u16,
}

/// A load balancer (CreateLoadBalancer) with its targets (CreateLoadBalancerTarget).
#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub id: String,
    pub vni: Vni,
    pub ip: IpAddr,
    pub ports: Vec<LbPort>,
    /// The LB's underlay address (what the underlay sends its traffic to).
    pub underlay: Ipv6Addr,
    /// The targets' underlay addresses, sorted (so that the Maglev table depends on the set of
    /// targets only, not on the order they were added in).
    pub targets: Vec<Ipv6Addr>,
    /// Built from `targets`; `None` while there is none.
    pub maglev: Option<Maglev>,
}

impl LoadBalancer {
    /// A balancer with no targets.
    pub fn new(id: String, vni: Vni, ip: IpAddr, ports: Vec<LbPort>, underlay: Ipv6Addr) -> Self {
        LoadBalancer {
            id,
            vni,
            ip,
            ports,
            underlay,
            targets: Vec::new(),
            maglev: None,
        }
    }

    /// Replaces the targets (sorted, deduplicated) and rebuilds the Maglev table (control
    /// plane only: it allocates).
    pub fn set_targets(&mut self, mut targets: Vec<Ipv6Addr>) {
        targets.sort_unstable();
        targets.dedup();
        self.maglev = Maglev::build(&targets);
        self.targets = targets;
    }

    /// Whether the balancer serves this protocol and destination port.
    #[inline]
    pub fn serves(&self, proto: IpProtocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|p| p.proto == proto && p.port == port)
    }

    /// The target of a new flow with this (directional, host-independent) flow hash: every
    /// host with the same targets picks the same one.
    #[inline]
    pub fn pick(&self, flow_hash: u64) -> Option<Ipv6Addr> {
        let maglev = self.maglev.as_ref()?;
        self.targets.get(maglev.pick(flow_hash)).copied()
    }

    /// Whether `addr` is one of the targets.
    #[inline]
    pub fn has_target(&self, addr: Ipv6Addr) -> bool {
        self.targets.binary_search(&addr).is_ok()
    }
}

/// The key of a load balancer in the snapshot: VNI, address (IPv4 in the low 32 bits, as in
/// [`ConnKey`]) and whether it is IPv6.
pub type LbKey = (Vni, u128, bool);

/// The snapshot key of a balancer of `vni` at `ip`.
#[inline]
pub fn lb_key(vni: Vni, ip: IpAddr) -> LbKey {
    match ip {
        IpAddr::V4(a) => (vni, u128::from(u32::from(a)), false),
        IpAddr::V6(a) => (vni, u128::from(a), true),
    }
}

/// Marks a reply key as a load-balanced flow's: VNIs are 24 bits, so no packet has this bit.
const LB_REPLY_MARK: u32 = 1 << 31;

/// The reply key of a load-balanced flow from `original` to `target`: the original key
/// reversed, in a VNI no packet has (bit 31 set above the 24 VNI bits), with the target's
/// underlay address as its source. Unique per original key, so it never collides with another
/// flow's, and never met by a packet.
#[inline]
pub fn lb_reply_key(original: &ConnKey, target: Ipv6Addr) -> ConnKey {
    ConnKey {
        src: u128::from(target),
        vni: original.vni | LB_REPLY_MARK,
        ..original.reversed()
    }
}

/// The target a load-balanced flow's reply key holds.
#[inline]
pub fn lb_target_of(reply: &ConnKey) -> Ipv6Addr {
    Ipv6Addr::from(reply.src)
}

/// The stamp of balancers' generation `generation` (what [`crate::Flow::lb_stamp`] holds).
#[inline]
pub fn lb_stamp(generation: u64) -> u8 {
    generation as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn balancer(targets: &[&str]) -> LoadBalancer {
        let mut lb = LoadBalancer::new(
            "lb".into(),
            100,
            "10.20.30.40".parse().unwrap(),
            vec![LbPort {
                proto: IpProtocol::TCP,
                port: 80,
            }],
            v6("fc00:1::d000:1:0:9"),
        );
        lb.set_targets(targets.iter().map(|t| v6(t)).collect());
        lb
    }

    #[test]
    fn targets_are_a_sorted_set_and_the_pick_ignores_their_order() {
        let a = balancer(&["fc00:2::1", "fc00:1::1", "fc00:2::1", "fc00:3::1"]);
        let b = balancer(&["fc00:3::1", "fc00:2::1", "fc00:1::1"]);
        assert_eq!(
            a.targets,
            [v6("fc00:1::1"), v6("fc00:2::1"), v6("fc00:3::1")]
        );
        for h in 0..10_000u64 {
            let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(a.pick(h), b.pick(h));
            assert!(a.has_target(a.pick(h).unwrap()));
        }
        assert!(!a.has_target(v6("fc00:4::1")));
    }

    #[test]
    fn no_target_no_pick_and_ports_are_exact() {
        let lb = balancer(&[]);
        assert_eq!(lb.pick(7), None);
        assert!(lb.serves(IpProtocol::TCP, 80));
        assert!(!lb.serves(IpProtocol::UDP, 80));
        assert!(!lb.serves(IpProtocol::TCP, 81));
    }

    #[test]
    fn reply_key_carries_the_target_and_no_packet_has_it() {
        let original = ConnKey {
            src: u128::from(u32::from(std::net::Ipv4Addr::new(1, 2, 3, 4))),
            dst: u128::from(u32::from(std::net::Ipv4Addr::new(10, 20, 30, 40))),
            vni: 0xff_ffff,
            src_port: 5555,
            dst_port: 80,
            proto: IpProtocol::TCP,
            is_v6: false,
        };
        let target = v6("fc00:2::d000:1:0:7");
        let reply = lb_reply_key(&original, target);
        assert_eq!(lb_target_of(&reply), target);
        // The VNI bits are kept, the mark is above any 24-bit VNI.
        assert_eq!(reply.vni & 0xff_ffff, 0xff_ffff);
        assert!(reply.vni > 0xff_ffff);
        assert_eq!((reply.src_port, reply.dst_port), (80, 5555));
        assert_eq!(reply.dst, original.src);
    }
}
