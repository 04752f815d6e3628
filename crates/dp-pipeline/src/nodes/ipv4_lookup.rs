//! Routes an IPv4 packet from a VM inside its VNI.
//!
//! Order of checks: the header is validated in full (version, IHL, total length against the frame,
//! header checksum) — the one validation of a VM's IPv4 packet: a routed packet leaves with its
//! [`Parsed`](crate::buffer::Parsed) metadata recorded for the later nodes (as VPP's
//! `ip4-input`, fused with the lookup: a node of its own cost 69 instructions per packet more); the source must be the VM's address or one of its alias prefixes
//! (anti-spoofing) — except for DHCP requests, which go to [`Dhcp`](super::Dhcp) first; packets for the gateway go to [`GatewayIcmp`](super::GatewayIcmp); other
//! multicast, limited broadcast and link-local destinations are never routed (loopback and "this
//! network", 0/8 and 127/8, are looked up as any other: as in dpservice, a route decides — the
//! suite routes 0.0.0.0 and 127.255.255.255 by a /1 and a default route); then the
//! destination is looked up in the sender's VNI only (nothing crosses VNIs unless a route says so).
//!
//! Unlike dpservice, which rewrites only the Ethernet header, the TTL is decremented as a router would
//! (the header checksum is patched incrementally); a packet that would leave with TTL 0 is answered
//! with ICMP time exceeded from the gateway. Fragments are forwarded like any datagram: the local
//! path never looks past the IP header (the gateway node refuses them).
//!
//! A local route hands the packet to [`L2Rewrite`](super::L2Rewrite); a route to another
//! hypervisor (`Remote { vni, underlay }`, default routes included) to
//! [`IpipEncap`](super::IpipEncap) with the next hop in [`PacketMeta::underlay_dst`](crate::PacketMeta).

use dp_packet::bytes::read_u16_be;
use dp_packet::ipv4::{self, Ipv4Refusal};
use dp_packet::{EthernetFrame, IpProtocol, Ipv4Addr};
use dp_tables::{Iface, PortId, RouteTarget, VniTable};

use crate::buffer::PacketBuf;
use crate::config::{ConntrackMode, GATEWAY_IPV4};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{decide_by_runs, Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

const DHCP_SERVER_PORT: u16 = dp_packet::dhcpv4::SERVER_PORT;

use super::common::{vm_port, ETH_HEADER_LEN};
use super::conntrack::{untracked_dst_v4, untracked_end};
use super::icmp_error::{is_icmpv4_error, time_exceeded_v4, Offender4};

#[derive(Debug, Default)]
pub struct Ipv4Lookup;

impl Node for Ipv4Lookup {
    const NAME: &'static str = "ipv4_lookup";
    // `Handoff`: with several workers the graph sends what goes to the encapsulation or the
    // rewrite there first (`NodeId::via_handoff`); `Meter`: while an interface is metered, it
    // sends what goes to connection tracking there first (`NodeId::via_meter`).
    const NEXT: &'static [NodeId] = &[
        NodeId::Dhcp,
        NodeId::Handoff,
        NodeId::Virtsvc,
        NodeId::GatewayIcmp,
        NodeId::Conntrack,
        NodeId::Meter,
    ];
    const TRANSMITS: bool = true;

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        let sender = Sender::of(ctx, pkt.meta.in_port);
        match sender.and_then(|s| route(pkt, ctx, &s, &mut LastRoute::default())) {
            Ok(verdict) => verdict,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// The packets of a batch mostly come from few ports: the sender's port entry, interface
    /// and VNI table are looked up once per run of packets from the same port; and a packet
    /// to the previous one's destination takes its route (see `LastRoute`).
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        let mut last = LastRoute::default();
        decide_by_runs(
            pkts,
            verdicts,
            |pkt| pkt.meta.in_port,
            |in_port| Sender::of(ctx, in_port),
            |pkt, sender| match sender.and_then(|s| route(pkt, ctx, &s, &mut last)) {
                Ok(verdict) => verdict,
                Err(reason) => Verdict::Drop(reason),
            },
        );
    }
}

/// What the lookup needs about the sending VM: its port, its interface and its VNI's table (the
/// last only checked when the packet gets that far).
#[derive(Clone, Copy)]
struct Sender<'a> {
    port: &'a crate::port_table::PortEntry,
    iface: &'a Iface,
    table: Option<&'a VniTable>,
    /// Whether the sender lets its packets go untracked (`untracked_end`).
    untracked: bool,
}

impl<'a> Sender<'a> {
    #[inline]
    fn of(ctx: &Ctx<'a>, in_port: PortId) -> Result<Sender<'a>, DropReason> {
        let (port, iface) = vm_port(ctx, in_port)?;
        Ok(Sender {
            port,
            iface,
            table: ctx.tables.vni(iface.vni),
            untracked: untracked_end(ctx, iface),
        })
    }
}

/// The route the previous packet of the batch took, checked: its VNI, destination and target.
/// Kept for one batch only (one snapshot), so it can never be stale; a stream of packets to
/// one destination skips the trie walk — four dependent loads for a /32, the hottest part of
/// this node in `perf` on the vhost-user PVP run — the local target's checks, and the checks
/// of the destination itself (not the gateway, routable: −11 instructions per packet).
///
/// The VNI and destination are one word (`vni << 32 | dst`). Callgrind, one flow: local
/// 736 → 664 instructions per packet, encap 858 → 825; a batch of all different destinations
/// pays the compare and the store on top of the walk: local 718 → 730, encap 864 → 877 at
/// 100k flows.
///
/// With it, whether the route lets a packet go untracked (`--conntrack stateful`: a receiver of
/// this host without stateful services, and no VIP as destination), which the sender and the
/// source address then decide for each packet.
#[derive(Clone, Copy, Default)]
struct LastRoute<'a> {
    key: u64,
    target: Option<&'a RouteTarget>,
    untracked: bool,
}

#[inline]
fn route<'a>(
    pkt: &mut PacketBuf,
    ctx: &Ctx<'_>,
    sender: &Sender<'a>,
    last: &mut LastRoute<'a>,
) -> Result<Verdict, DropReason> {
    let iface = sender.iface;
    // One view of the frame for the checks and the TTL update.
    let l3 = pkt.data_mut().get_mut(ETH_HEADER_LEN..).unwrap_or(&mut []);
    let ip = ipv4::parse_fields(l3).map_err(|refusal| match refusal {
        Ipv4Refusal::Malformed => DropReason::Ipv4Malformed,
        Ipv4Refusal::BadChecksum => DropReason::Ipv4BadChecksum,
    })?;
    // A DHCP request (from 0.0.0.0 before the VM has its address, hence before anti-spoofing):
    // only a first fragment or a whole datagram has a UDP header to look at. Decided here, on
    // the fields at hand, rather than by a peek in classify (20 instructions per UDP packet).
    if IpProtocol(ip.protocol) == IpProtocol::UDP
        && ip.frag_offset() == 0
        && read_u16_be(l3, ip.header_len + 2) == Some(DHCP_SERVER_PORT)
    {
        return Ok(Verdict::Next(NodeId::Dhcp));
    }
    if !iface.owns_source_v4(ip.src) {
        return Err(DropReason::Spoofed);
    }
    // A virtual service's endpoint, before any routing (dpservice's classify does the same):
    // the virtual address may be anything, link-local included.
    // The fields are passed by value: a reference to `ip` made the hot path keep it on the
    // stack for every packet.
    if !ctx.config.virtual_services.is_empty() {
        if let Some(index) =
            virtual_service(l3, ctx, ip.protocol, ip.flags_frag, ip.header_len, ip.dst)
        {
            return Ok(to_virtual_service(
                pkt,
                ip.header_len,
                ip.total_len,
                index,
                iface.vni,
            ));
        }
    }
    // The previous packet's route holds for the same destination: it was not the gateway,
    // and routable.
    let key = (u64::from(iface.vni) << 32) | u64::from(u32::from(ip.dst));
    let cached = if key == last.key { last.target } else { None };
    let (target, route_untracked) = match cached {
        Some(target) => (target, last.untracked),
        None => {
            if ip.dst == GATEWAY_IPV4 {
                return Ok(Verdict::Next(NodeId::GatewayIcmp));
            }
            if !is_routable(ip.dst) {
                return Err(DropReason::BadDestination);
            }
            let table = sender.table.ok_or(DropReason::NoVni)?;
            let target = table.lookup_v4(ip.dst).ok_or(DropReason::NoRoute)?;
            let receiver_untracked = match *target {
                // Defensive: the control plane only installs local routes to interfaces of the
                // same VNI.
                RouteTarget::Local { port: out_port } => match ctx.tables.iface(out_port) {
                    None => return Err(DropReason::DstPortDown),
                    Some(t) if t.vni != iface.vni => return Err(DropReason::CrossVni),
                    Some(t) => untracked_end(ctx, t),
                },
                // No receiver here; the mode is asked so that `all` skips the VIP lookup below.
                RouteTarget::Remote { .. } => ctx.config.conntrack == ConntrackMode::Stateful,
            };
            let untracked = receiver_untracked && untracked_dst_v4(ctx.tables, iface.vni, ip.dst);
            *last = LastRoute {
                key,
                target: Some(target),
                untracked,
            };
            (target, untracked)
        }
    };
    if ip.ttl <= 1 {
        return ttl_exceeded(pkt, sender);
    }
    ipv4::decrement_ttl_in_place(l3);

    // Ethernet padding of short frames is not part of the datagram.
    pkt.truncate(ETH_HEADER_LEN + ip.total_len);
    pkt.meta.stateless_ends = sender.untracked && route_untracked && ip.src == iface.ipv4;
    // Validated and routed: what the later nodes need of the header (see `Parsed`).
    pkt.parsed.set_validated(
        ETH_HEADER_LEN,
        ETH_HEADER_LEN + ip.header_len,
        ip.total_len,
        iface.vni,
    );
    Ok(match *target {
        RouteTarget::Local { port } => {
            pkt.meta.out_port = port;
            Verdict::Next(NodeId::Conntrack)
        }
        // The next-hop VNI is not carried on the wire: the receiving hypervisor knows it from the
        // outer destination (the target interface's underlay address), as in dpservice.
        RouteTarget::Remote {
            underlay, public, ..
        } => {
            pkt.meta.underlay_dst = underlay;
            pkt.meta.route_public = public;
            Verdict::Next(NodeId::Conntrack)
        }
    })
}

/// The virtual service the VM's packet is for, if any: TCP or UDP, not a later fragment, to a
/// service's virtual address and port.
#[cold]
#[inline(never)]
fn virtual_service(
    l3: &[u8],
    ctx: &Ctx<'_>,
    protocol: u8,
    flags_frag: u16,
    header_len: usize,
    dst: Ipv4Addr,
) -> Option<usize> {
    let proto = IpProtocol(protocol);
    if !matches!(proto, IpProtocol::TCP | IpProtocol::UDP) || flags_frag & 0x1fff != 0 {
        return None;
    }
    let dst_port = read_u16_be(l3, header_len + 2)?;
    ctx.config
        .virtual_services
        .find_virtual(proto, dst, dst_port)
}

/// Hands the packet to [`Virtsvc`](super::Virtsvc) with its header recorded as validated and
/// the service marked in its metadata.
#[cold]
#[inline(never)]
fn to_virtual_service(
    pkt: &mut PacketBuf,
    header_len: usize,
    total_len: usize,
    index: usize,
    vni: u32,
) -> Verdict {
    pkt.truncate(ETH_HEADER_LEN + total_len);
    pkt.parsed
        .set_validated(ETH_HEADER_LEN, ETH_HEADER_LEN + header_len, total_len, vni);
    match u16::try_from(index + 1) {
        Ok(mark) => {
            pkt.meta.virtsvc = mark;
            Verdict::Next(NodeId::Virtsvc)
        }
        Err(_) => Verdict::Drop(DropReason::VirtsvcMalformed),
    }
}

/// A packet that would leave with TTL 0: answered with ICMP time exceeded from the gateway,
/// unless it is an ICMP error or a non-first fragment (never answered).
///
/// The header is parsed again here rather than handed over: passing its fields made the hot path
/// keep a copy of them on the stack for every packet.
#[cold]
#[inline(never)]
fn ttl_exceeded(pkt: &mut PacketBuf, sender: &Sender<'_>) -> Result<Verdict, DropReason> {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = ipv4::parse_fields(l3).map_err(|_| DropReason::Ipv4Malformed)?;
    let payload = l3.get(ip.header_len..ip.total_len).unwrap_or(&[]);
    let may_answer = ip.frag_offset() == 0
        && !(IpProtocol(ip.protocol) == IpProtocol::ICMP
            && payload.first().is_some_and(|&t| is_icmpv4_error(t)));
    if !may_answer {
        return Err(DropReason::TtlExceeded);
    }
    let vm_mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
    let offender = Offender4 {
        vm_mac,
        own_mac: sender.port.own_mac,
        src: ip.src,
        datagram_len: ip.total_len,
    };
    time_exceeded_v4(pkt, &offender)?;
    Ok(Verdict::Tx(pkt.meta.in_port))
}

/// First octets of the addresses [`is_routable`] may refuse (169 and 224–255), as a
/// 256-bit set: one lookup settles almost every destination.
const SPECIAL_FIRST_OCTETS: [u64; 4] = [
    special_octets_from(0),
    special_octets_from(64),
    special_octets_from(128),
    special_octets_from(192),
];

/// Bit i set when octet `first + i` is in [`SPECIAL_FIRST_OCTETS`].
const fn special_octets_from(first: usize) -> u64 {
    let mut word = 0;
    let mut bit = 0;
    while bit < 64 {
        if matches!(first + bit, 169 | 224..=255) {
            word |= 1 << bit;
        }
        bit += 1;
    }
    word
}

/// Whether a router may forward to `dst` at all.
#[inline(always)]
fn is_routable(dst: Ipv4Addr) -> bool {
    let first = usize::from(dst.octets()[0]);
    let special = SPECIAL_FIRST_OCTETS
        .get(first / 64)
        .is_some_and(|word| word >> (first % 64) & 1 != 0);
    !special || is_routable_special(dst)
}

#[cold]
fn is_routable_special(dst: Ipv4Addr) -> bool {
    !(dst.is_multicast() || dst.is_broadcast() || dst.is_link_local())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routable_matches_the_address_classes_for_every_first_octet() {
        for first in 0..=255u8 {
            for rest in [[0, 0, 0], [254, 0, 1], [255, 255, 255], [1, 2, 3]] {
                let dst = Ipv4Addr::new(first, rest[0], rest[1], rest[2]);
                let expected = !(dst.is_multicast() || dst.is_broadcast() || dst.is_link_local());
                assert_eq!(is_routable(dst), expected, "{dst}");
            }
        }
        assert!(is_routable(Ipv4Addr::new(169, 253, 0, 1)));
        assert!(!is_routable(Ipv4Addr::new(169, 254, 0, 1)));
        assert!(is_routable(Ipv4Addr::new(240, 0, 0, 1)));
        assert!(!is_routable(Ipv4Addr::new(255, 255, 255, 255)));
        assert!(is_routable(Ipv4Addr::new(127, 255, 255, 255)));
        assert!(is_routable(Ipv4Addr::UNSPECIFIED));
    }
}
