//! First node, the pipeline's input: checks the Ethernet header, learns the VM's MAC, validates a
//! VM's IP header once and sorts packets by what must handle them (local responders, the IPv4 or
//! IPv6 path).
//!
//! What it read goes into the packet's [`Parsed`] metadata — L3/L4 offsets, the IP length, the
//! flow key (addresses, protocol, ports or echo identifier) and the sender's VNI — so the lookups,
//! the encapsulation and the stateful nodes read fields instead of parsing again (as VPP's
//! `ip4-input` fills the buffer's metadata for `ip4-lookup`, and dpservice carries its `dp_flow`
//! in the mbuf). The IPv4 header is checked in full here (version, IHL, lengths, checksum); the
//! IPv6 header for its version and lengths. The local responders (DHCP, DHCPv6, neighbor
//! discovery) still read their own messages with dp-packet's views: they are the slow path.
//!
//! From an uplink only IPv6 is taken (as dpservice's `cls_node`): IPv4-in-IPv6 and IPv6-in-IPv6
//! (next header 4 and 41) go to [`IpipDecap`](super::IpipDecap), ICMPv6 (neighbor discovery, echo)
//! to [`UnderlayNd`](super::UnderlayNd); anything else is dropped and counted. Extension headers are
//! not walked: encapsulating hypervisors never send them. The router's MAC is not learned from
//! its frames (only from neighbor discovery, which says which address it belongs to).

use dp_packet::bytes::read_u16_be;
use dp_packet::ipv4::{self, Ipv4Refusal};
use dp_packet::{EtherType, FlowKey, IpProtocol, Ipv6Packet};

use crate::buffer::{PacketBuf, Parsed};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{decide_by_runs, Ctx, Node, Verdict};
use crate::port_table::{pack_mac, PortEntry, PortKind};
use crate::worker_ctx::WorkerCtx;

use super::common::{ETH_HEADER_LEN, IPV6_HEADER_LEN};

const DHCP_SERVER_PORT: u16 = dp_packet::dhcpv4::SERVER_PORT;
const DHCPV6_SERVER_PORT: u16 = dp_packet::dhcpv6::SERVER_PORT;

#[derive(Debug, Default)]
pub struct Classify;

impl Node for Classify {
    const NAME: &'static str = "classify";
    const NEXT: &'static [NodeId] = &[
        NodeId::Arp,
        NodeId::Dhcp,
        NodeId::Dhcpv6,
        NodeId::Ipv6Nd,
        NodeId::UnderlayNd,
        NodeId::IpipDecap,
        NodeId::Ipv4Lookup,
        NodeId::Ipv6Lookup,
    ];

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        let in_port = pkt.meta.in_port;
        match ctx.ports.get(in_port) {
            Some(port) => classify(pkt, &Receiver::new(ctx, in_port, port)),
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
            |in_port| {
                ctx.ports
                    .get(in_port)
                    .map(|port| Receiver::new(ctx, in_port, port))
            },
            |pkt, port| match port {
                Some(port) => classify(pkt, port),
                None => Verdict::Drop(DropReason::NoInterface),
            },
        );
    }
}

/// The receiving port, with its MAC in the packed form the checks compare against and the VNI of
/// the VM behind it (looked up once per run of packets from one port).
#[derive(Clone, Copy)]
struct Receiver<'a> {
    entry: &'a PortEntry,
    own_mac: u64,
    /// The VM's VNI (0 for an uplink or a port without an interface yet).
    vni: u32,
}

impl<'a> Receiver<'a> {
    #[inline]
    fn new(ctx: &Ctx<'a>, in_port: dp_tables::PortId, entry: &'a PortEntry) -> Self {
        let vni = match entry.kind {
            PortKind::Uplink => 0,
            _ => ctx.tables.iface(in_port).map_or(0, |iface| iface.vni),
        };
        Receiver {
            entry,
            own_mac: pack_mac(entry.own_mac),
            vni,
        }
    }
}

/// The multicast (group) bit of a packed MAC: the lowest bit of its first byte.
const PACKED_GROUP_BIT: u64 = 1 << 40;
const PACKED_MAC_MASK: u64 = (1 << 48) - 1;

#[inline(always)]
fn classify(pkt: &mut PacketBuf, port: &Receiver<'_>) -> Verdict {
    let frame = pkt.data();
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
    if src & PACKED_GROUP_BIT != 0 || src == 0 {
        return Verdict::Drop(DropReason::EthBadSource);
    }
    if dst != port.own_mac && dst & PACKED_GROUP_BIT == 0 {
        return Verdict::Drop(DropReason::EthNotForUs);
    }
    let ethertype = EtherType(u16::from_be_bytes([eth[12], eth[13]]));
    if port.entry.kind == PortKind::Uplink {
        let l3 = frame.get(ETH_HEADER_LEN..).unwrap_or(&[]);
        return classify_uplink(ethertype, l3);
    }
    // In tap mode the VM's MAC is whatever its kernel side uses; keep it current.
    port.entry.learn_packed_peer_mac(src);

    match ethertype {
        EtherType::ARP => Verdict::Next(NodeId::Arp),
        EtherType::IPV4 => ipv4_input(pkt, port.vni),
        EtherType::IPV6 => ipv6_input(pkt, port.vni),
        _ => Verdict::Drop(DropReason::UnknownEthertype),
    }
}

#[inline]
fn classify_uplink(ethertype: EtherType, l3: &[u8]) -> Verdict {
    if ethertype != EtherType::IPV6 {
        return Verdict::Drop(DropReason::FromUplink);
    }
    if l3.len() < IPV6_HEADER_LEN {
        return Verdict::Drop(DropReason::UnderlayMalformed);
    }
    match l3.get(6).map(|&nh| IpProtocol(nh)) {
        Some(IpProtocol::IPV4_IN_IP | IpProtocol::IPV6_IN_IP) => Verdict::Next(NodeId::IpipDecap),
        Some(IpProtocol::ICMPV6) => Verdict::Next(NodeId::UnderlayNd),
        _ => Verdict::Drop(DropReason::UnderlayUnhandled),
    }
}

/// Flags and fragment offset: MF or an offset make a datagram a fragment (DF alone does not).
const FRAGMENT_MASK: u16 = 0x3fff;

/// Validates a VM's IPv4 header, records what it read and chooses between DHCP and routing.
#[inline(always)]
fn ipv4_input(pkt: &mut PacketBuf, vni: u32) -> Verdict {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = match ipv4::parse_fields(l3) {
        Ok(ip) => ip,
        Err(Ipv4Refusal::Malformed) => return Verdict::Drop(DropReason::Ipv4Malformed),
        Err(Ipv4Refusal::BadChecksum) => return Verdict::Drop(DropReason::Ipv4BadChecksum),
    };
    let after_header = l3.get(ip.header_len..).unwrap_or(&[]);
    let proto = IpProtocol(ip.protocol);
    let l4 = after_header
        .get(..ip.total_len.saturating_sub(ip.header_len))
        .unwrap_or(&[]);
    let flow = FlowKey::ipv4(
        ip.src,
        ip.dst,
        proto,
        ip.flags_frag & FRAGMENT_MASK != 0,
        l4,
    );
    // Only a first fragment (or a whole datagram) has a UDP header to look at.
    let next = if proto == IpProtocol::UDP
        && ip.frag_offset() == 0
        && read_u16_be(after_header, 2) == Some(DHCP_SERVER_PORT)
    {
        NodeId::Dhcp
    } else {
        NodeId::Ipv4Lookup
    };
    // The offsets fit u16: the header is at most 60 bytes.
    pkt.meta.parsed = Parsed {
        l3_offset: ETH_HEADER_LEN as u16,
        l4_offset: (ETH_HEADER_LEN + ip.header_len) as u16,
        l3_len: ip.total_len as u32,
        vni,
        flow,
        ..Parsed::default()
    };
    Verdict::Next(next)
}

/// Checks a VM's IPv6 header (version, payload length within the frame), records what it read
/// and chooses between the local responders and routing.
fn ipv6_input(pkt: &mut PacketBuf, vni: u32) -> Verdict {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let Ok(ip) = Ipv6Packet::new_checked(l3) else {
        return Verdict::Drop(DropReason::Ipv6Malformed);
    };
    let payload_len = usize::from(ip.payload_len());
    let l4 = l3
        .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)
        .unwrap_or(&[]);
    let next_header = ip.next_header();
    let flow = FlowKey::ipv6(ip.src_addr(), ip.dst_addr(), next_header, l4);
    // Extension headers are not walked: a VM's ND and DHCPv6 come without them.
    let next = match next_header {
        IpProtocol::ICMPV6 => match l3.get(IPV6_HEADER_LEN) {
            // Router solicitation .. redirect: neighbor discovery, answered locally.
            Some(133..=137) => NodeId::Ipv6Nd,
            _ => NodeId::Ipv6Lookup,
        },
        IpProtocol::UDP if read_u16_be(l3, IPV6_HEADER_LEN + 2) == Some(DHCPV6_SERVER_PORT) => {
            NodeId::Dhcpv6
        }
        _ => NodeId::Ipv6Lookup,
    };
    pkt.meta.parsed = Parsed {
        l3_offset: ETH_HEADER_LEN as u16,
        l4_offset: (ETH_HEADER_LEN + IPV6_HEADER_LEN) as u16,
        l3_len: (IPV6_HEADER_LEN + payload_len) as u32,
        vni,
        flow,
        ..Parsed::default()
    };
    Verdict::Next(next)
}
