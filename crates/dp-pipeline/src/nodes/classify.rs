//! First node: checks the Ethernet header, learns an unknown VM MAC, and sorts packets by what must
//! handle them: ARP to its responder, a VM's IPv4 to [`Ipv4Lookup`](super::Ipv4Lookup) (which
//! validates it once and hands DHCP requests to [`Dhcp`](super::Dhcp)), IPv6 to neighbor
//! discovery, DHCPv6 or [`Ipv6Lookup`](super::Ipv6Lookup) by a peek at its next header and
//! ports; the next node validates the headers.
//!
//! From an uplink only IPv6 is taken (as dpservice's `cls_node`): IPv4-in-IPv6 and IPv6-in-IPv6
//! (next header 4 and 41) go to [`IpipDecap`](super::IpipDecap), ICMPv6 (neighbor discovery, echo)
//! to [`UnderlayNd`](super::UnderlayNd), plain TCP and UDP — with virtual services configured —
//! to [`Virtsvc`](super::Virtsvc) (their replies); anything else is dropped and counted. Extension headers are
//! not walked: encapsulating hypervisors never send them. The router's MAC is not learned from
//! its frames (only from neighbor discovery, which says which address it belongs to).

use dp_packet::bytes::read_u16_be;
use dp_packet::{EtherType, IpProtocol};

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{decide_by_runs, Ctx, Node, Verdict};
use crate::port_table::{pack_mac, PortEntry, PortKind};
use crate::worker_ctx::WorkerCtx;

use super::common::{ETH_HEADER_LEN, IPV6_HEADER_LEN};

const DHCPV6_SERVER_PORT: u16 = dp_packet::dhcpv6::SERVER_PORT;

#[derive(Debug, Default)]
pub struct Classify;

impl Node for Classify {
    const NAME: &'static str = "classify";
    const NEXT: &'static [NodeId] = &[
        NodeId::Arp,
        NodeId::Dhcpv6,
        NodeId::Ipv6Nd,
        NodeId::UnderlayNd,
        NodeId::IpipDecap,
        NodeId::Ipv4Lookup,
        NodeId::Ipv6Lookup,
        NodeId::Virtsvc,
    ];

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        match ctx.ports.get(pkt.meta.in_port) {
            Some(port) => classify(pkt.data(), &Receiver::new(port, ctx)),
            None => Verdict::Drop(DropReason::NoInterface),
        }
    }

    /// The port entry is looked up once per run of packets from the same port.
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        decide_by_runs(
            pkts,
            verdicts,
            |pkt| pkt.meta.in_port,
            |in_port| ctx.ports.get(in_port).map(|p| Receiver::new(p, ctx)),
            |pkt, port| match port {
                Some(port) => classify(pkt.data(), port),
                None => Verdict::Drop(DropReason::NoInterface),
            },
        );
    }
}

/// The receiving port, with its MAC in the packed form the checks compare against (looked up
/// once per run of packets from one port).
#[derive(Clone, Copy)]
struct Receiver<'a> {
    entry: &'a PortEntry,
    own_mac: u64,
    /// Virtual services are configured: plain TCP and UDP from an uplink may be their replies.
    virtsvc: bool,
}

impl<'a> Receiver<'a> {
    #[inline]
    fn new(entry: &'a PortEntry, ctx: &Ctx<'_>) -> Self {
        Receiver {
            entry,
            own_mac: pack_mac(entry.own_mac),
            virtsvc: !ctx.config.virtual_services.is_empty(),
        }
    }
}

/// The multicast (group) bit of a packed MAC: the lowest bit of its first byte.
const PACKED_GROUP_BIT: u64 = 1 << 40;
const PACKED_MAC_MASK: u64 = (1 << 48) - 1;

#[inline(always)]
fn classify(frame: &[u8], port: &Receiver<'_>) -> Verdict {
    let Some(eth) = frame.first_chunk::<ETH_HEADER_LEN>() else {
        return Verdict::Drop(DropReason::EthTruncated);
    };
    // Both addresses as packed MACs from two 8-byte loads (the checks are whole-word compares,
    // not six byte compares each).
    let word = |at: usize| {
        eth.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    };
    let dst = word(0) >> 16;
    let src = word(4) & PACKED_MAC_MASK;
    // A zero source is refused from a VM (its MAC would be learned as "unknown"), not from an
    // uplink: with the router MAC from the kernel's table (TAP uplinks, no --router) our frames
    // go to 00:00:00:00:00:00 until it has one, as dpservice's do, and a peer answering them
    // swaps the addresses (dpservice's test/local suite does).
    // A group (multicast) source is taken, as dpservice checks none: on a VM's port it is the
    // VM's MAC all the same (dpservice's suite has a DHCP client use 01:02:03:04:05:06) and our
    // frames to it only go down that port; on an uplink the router's MAC is never learned from
    // frames (dpservice's suite sends from 33:33:00:00:00:01). Only broadcast is refused, and
    // zero from a VM.
    let refused = src == PACKED_MAC_MASK || (src == 0 && port.entry.kind != PortKind::Uplink);
    if refused {
        return Verdict::Drop(DropReason::EthBadSource);
    }
    let ethertype = EtherType(u16::from_be_bytes([eth[12], eth[13]]));
    let l3 = frame.get(ETH_HEADER_LEN..).unwrap_or(&[]);
    if port.entry.kind == PortKind::Uplink {
        if dst != port.own_mac && dst & PACKED_GROUP_BIT == 0 {
            return Verdict::Drop(DropReason::EthNotForUs);
        }
        return classify_uplink(ethertype, l3, port.virtsvc);
    }
    // A VM's port is promiscuous, as dpservice's VF ports are: whatever unicast MAC the VM
    // sends to, the frame is the VM's (only the uplinks are shared with other hosts).
    // The VM's MAC is learned from its first frame when there is no guess yet (an existing
    // interface); after that, as in dpservice, only an ARP reply about its own address, a DHCP
    // request that is ACKed and a neighbor solicitation for the gateway change it (the kernel
    // side of a TAP sends router solicitations and MLD reports from its own MAC, which must not
    // replace the `--vdev` MAC a VM is given).
    port.entry.learn_packed_peer_mac_if_unknown(src);

    match ethertype {
        EtherType::ARP => Verdict::Next(NodeId::Arp),
        EtherType::IPV4 => Verdict::Next(NodeId::Ipv4Lookup),
        EtherType::IPV6 => Verdict::Next(classify_ipv6(l3)),
        _ => Verdict::Drop(DropReason::UnknownEthertype),
    }
}

#[inline]
fn classify_uplink(ethertype: EtherType, l3: &[u8], virtsvc: bool) -> Verdict {
    if ethertype != EtherType::IPV6 {
        return Verdict::Drop(DropReason::FromUplink);
    }
    if l3.len() < IPV6_HEADER_LEN {
        return Verdict::Drop(DropReason::UnderlayMalformed);
    }
    match l3.get(6).map(|&nh| IpProtocol(nh)) {
        Some(IpProtocol::IPV4_IN_IP | IpProtocol::IPV6_IN_IP) => Verdict::Next(NodeId::IpipDecap),
        Some(IpProtocol::ICMPV6) => Verdict::Next(NodeId::UnderlayNd),
        // Plain TCP or UDP: a virtual service's reply, if it is one (the node checks).
        Some(IpProtocol::TCP | IpProtocol::UDP) if virtsvc => Verdict::Next(NodeId::Virtsvc),
        _ => Verdict::Drop(DropReason::UnderlayUnhandled),
    }
}

fn classify_ipv6(l3: &[u8]) -> NodeId {
    // Extension headers are not walked: a VM's ND and DHCPv6 come without them.
    match l3.get(6).map(|&nh| IpProtocol(nh)) {
        Some(IpProtocol::ICMPV6) => match l3.get(IPV6_HEADER_LEN) {
            // Router solicitation .. redirect: neighbor discovery, answered locally.
            Some(133..=137) => NodeId::Ipv6Nd,
            _ => NodeId::Ipv6Lookup,
        },
        Some(IpProtocol::UDP)
            if read_u16_be(l3, IPV6_HEADER_LEN + 2) == Some(DHCPV6_SERVER_PORT) =>
        {
            NodeId::Dhcpv6
        }
        _ => NodeId::Ipv6Lookup,
    }
}
