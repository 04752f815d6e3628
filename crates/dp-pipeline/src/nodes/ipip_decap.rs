//! Decapsulates IPv4-in-IPv6 and IPv6-in-IPv6 packets from the underlay and delivers them to the VM
//! whose underlay address is the outer destination.
//!
//! As dpservice's `ipip_decap_node`, the outer destination alone says where the packet goes: it must
//! be one of our underlay addresses (an interface's own or one of its alias prefixes', its VIP's or
//! NAT's, or a load balancer's), which names the target interface (or balancer) and its VNI — the sender's VNI is not on the wire, so a route into another
//! VNI (VNI peering) arrives in the target's VNI. Then the checks a local packet gets, on the inner
//! packet:
//! * the inner header is validated in full (version matching the outer next header, IPv4 header
//!   length and checksum, lengths within the outer payload; IPv6 only with
//!   `--enable-ipv6-overlay`);
//! * anti-spoofing on the destination: the inner destination must be the target interface's
//!   address or inside one of its alias prefixes, so a remote host cannot use one VM's underlay
//!   address to reach another VM or another VNI.
//!
//! The inner TTL / hop limit is left as it is (the sending hypervisor decremented it when routing).
//! ECN follows RFC 6040: a CE mark on the outer header is copied to an ECN-capable inner packet, and
//! a packet that is CE outside but not ECN-capable inside is dropped (`decap_ecn`).
//!
//! The outer headers are stripped in place (the buffer start moves forward) and an Ethernet header
//! for the inner packet written; [`L2Rewrite`](super::L2Rewrite) fills in the VM's and our MAC.
//! The last underlay address resolved is remembered for the rest of the batch.

use dp_packet::checksum;
use dp_packet::ipv4::{self, Ipv4Refusal};
use dp_packet::ipv6;
use dp_packet::{EtherType, Ipv4Packet, Ipv6Addr, Ipv6Packet};
use dp_tables::{Iface, PortId, UnderlayTarget, Vni, NO_PORT};
use std::net::IpAddr;

use crate::buffer::{Origin, PacketBuf};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{ETH_HEADER_LEN, IPV6_HEADER_LEN};
use super::conntrack::untracked_end;

const NEXT_HEADER_IPV4: u8 = 4;
const NEXT_HEADER_IPV6: u8 = 41;
const ECN_MASK: u8 = 0x03;
const ECN_CE: u8 = 0x03;
const ECN_NOT_ECT: u8 = 0x00;

/// The node, with the last delivery it resolved (packets of a burst mostly go to few VMs).
#[derive(Debug, Default)]
pub struct IpipDecap;

impl Node for IpipDecap {
    const NAME: &'static str = "ipip_decap";
    // `Handoff`: with several workers the graph sends the packets there first
    // (`NodeId::via_handoff`).
    const NEXT: &'static [NodeId] = &[NodeId::Handoff, NodeId::Conntrack];

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        let mut last = None;
        match decap(pkt, ctx, &mut last) {
            Ok(verdict) => verdict,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Packets of a batch mostly go to few VMs: the target of the last outer destination (its
    /// port and interface, or why there is none) is kept for the next packet.
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        let mut last = None;
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            *verdict = match decap(pkt, ctx, &mut last) {
                Ok(verdict) => verdict,
                Err(reason) => Verdict::Drop(reason),
            };
        }
    }
}

/// Where an outer destination leads: a VM's port and interface (the interface's VNI checked)
/// as its own address, its VIP or its NAT — or a load balancer of a VNI (no port yet).
#[derive(Clone, Copy)]
struct Delivery<'a> {
    port: PortId,
    vni: Vni,
    iface: Option<&'a Iface>,
    /// The balancer's address (a load balancer's underlay address; else unspecified).
    lb_ip: IpAddr,
    origin: Origin,
    /// Whether the packet goes untracked (`--conntrack stateful`): for the interface's own
    /// underlay address, and the interface has no stateful service.
    untracked: bool,
}

type Target<'a> = Result<Delivery<'a>, DropReason>;

#[inline]
fn target<'a>(ctx: &Ctx<'a>, dst: Ipv6Addr) -> Target<'a> {
    let (port, vni, origin) = match ctx
        .tables
        .underlay_target(dst)
        .ok_or(DropReason::DecapUnknownDst)?
    {
        UnderlayTarget::Iface { port, vni } => (port, vni, Origin::Underlay),
        UnderlayTarget::Vip { port, vni } => (port, vni, Origin::UnderlayVip),
        UnderlayTarget::Nat { port, vni } => (port, vni, Origin::UnderlayNat),
        UnderlayTarget::LoadBalancer { vni, ip } => {
            return Ok(Delivery {
                port: NO_PORT,
                vni,
                iface: None,
                lb_ip: ip,
                origin: Origin::UnderlayLb,
                untracked: false,
            })
        }
    };
    let iface = ctx
        .tables
        .iface(port)
        .filter(|i| i.vni == vni)
        .ok_or(DropReason::DstPortDown)?;
    Ok(Delivery {
        port,
        vni,
        iface: Some(iface),
        lb_ip: IpAddr::V4(dp_packet::Ipv4Addr::UNSPECIFIED),
        origin,
        untracked: origin == Origin::Underlay && untracked_end(ctx, iface),
    })
}

/// Whether an inner IPv4 destination is what the outer one names: the interface's address or
/// alias prefix, its VIP, its NAT address, or the balancer's address.
#[inline]
fn accepts_v4(to: &Delivery<'_>, dst: dp_packet::Ipv4Addr) -> bool {
    match (to.iface, to.origin) {
        (Some(iface), Origin::UnderlayVip) => iface.services.vip == Some(dst),
        (Some(iface), Origin::UnderlayNat) => iface.services.nat.is_some_and(|n| n.ip == dst),
        (Some(iface), _) => iface.owns_source_v4(dst),
        (None, _) => to.lb_ip == IpAddr::V4(dst),
    }
}

/// The same for an inner IPv6 destination: the interface's address or alias prefix (VIPs and
/// NATs are IPv4), or the balancer's address.
#[inline]
fn accepts_v6(to: &Delivery<'_>, dst: Ipv6Addr) -> bool {
    match (to.iface, to.origin) {
        (Some(iface), Origin::Underlay) => iface.owns_source_v6(dst),
        (Some(_), _) => false,
        (None, _) => to.lb_ip == IpAddr::V6(dst),
    }
}

#[inline]
fn decap<'a>(
    pkt: &mut PacketBuf,
    ctx: &Ctx<'a>,
    last: &mut Option<(u128, Target<'a>)>,
) -> Result<Verdict, DropReason> {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let outer = ipv6::parse_fixed(l3).ok_or(DropReason::UnderlayMalformed)?;
    let key = outer.dst;
    let to = match *last {
        Some((k, cached)) if k == key => cached,
        _ => {
            let found = target(ctx, Ipv6Addr::from(key));
            *last = Some((key, found));
            found
        }
    }?;
    let outer_ecn = outer.traffic_class & ECN_MASK;
    let inner = l3
        .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + outer.payload_len)
        .unwrap_or_default();

    let (ethertype, inner_len, inner_ecn, inner_header_len) = match outer.next_header.0 {
        NEXT_HEADER_IPV4 => {
            let ip = ipv4::parse_fields(inner).map_err(|refusal| match refusal {
                Ipv4Refusal::Malformed => DropReason::DecapInnerMalformed,
                Ipv4Refusal::BadChecksum => DropReason::DecapInnerBadChecksum,
            })?;
            if !accepts_v4(&to, ip.dst) {
                return Err(DropReason::DecapInnerNotForTarget);
            }
            (
                EtherType::IPV4,
                ip.total_len,
                ip.dscp_ecn & ECN_MASK,
                ip.header_len,
            )
        }
        NEXT_HEADER_IPV6 => {
            if !ctx.config.ipv6_overlay {
                return Err(DropReason::Ipv6OverlayDisabled);
            }
            let ip = ipv6::parse_fixed(inner).ok_or(DropReason::DecapInnerMalformed)?;
            if !accepts_v6(&to, Ipv6Addr::from(ip.dst)) {
                return Err(DropReason::DecapInnerNotForTarget);
            }
            (
                EtherType::IPV6,
                IPV6_HEADER_LEN + ip.payload_len,
                ip.traffic_class & ECN_MASK,
                IPV6_HEADER_LEN,
            )
        }
        _ => return Err(DropReason::UnderlayUnhandled),
    };
    let mark_ce = outer_ecn == ECN_CE && inner_ecn != ECN_CE;
    if mark_ce && inner_ecn == ECN_NOT_ECT {
        return Err(DropReason::DecapEcn);
    }

    // Outer Ethernet + IPv6 off, a fresh Ethernet header on: net 40 bytes stripped. Only the
    // ethertype is written here: L2Rewrite fills in both MACs.
    pkt.truncate(ETH_HEADER_LEN + IPV6_HEADER_LEN + inner_len);
    pkt.strip_front(IPV6_HEADER_LEN)
        .map_err(|_| DropReason::UnderlayMalformed)?;
    let frame = pkt.data_mut();
    if let Some(eth) = frame.first_chunk_mut::<ETH_HEADER_LEN>() {
        eth[12..].copy_from_slice(&ethertype.0.to_be_bytes());
    }
    if mark_ce {
        mark_congestion(frame, ethertype);
    }
    pkt.meta.out_port = to.port;
    pkt.meta.origin = to.origin;
    pkt.meta.stateless_ends = to.untracked;
    if matches!(to.origin, Origin::UnderlayNat | Origin::UnderlayLb) {
        // Where an echo request to the NAT address or balancer is answered (see PacketRelay
        // and Lb); a relayed or balanced packet gets the neighbor's or target's address instead.
        pkt.meta.underlay_dst = Ipv6Addr::from(outer.src);
    }
    // The inner packet is the one the later nodes see, validated here.
    pkt.parsed.set_validated(
        ETH_HEADER_LEN,
        ETH_HEADER_LEN + inner_header_len,
        inner_len,
        to.vni,
    );
    Ok(Verdict::Next(NodeId::Conntrack))
}

/// Sets CE on the inner packet (RFC 6040), patching the IPv4 header checksum.
#[cold]
fn mark_congestion(frame: &mut [u8], ethertype: EtherType) {
    let l3 = frame.get_mut(ETH_HEADER_LEN..).unwrap_or(&mut []);
    if ethertype == EtherType::IPV4 {
        let mut ip = Ipv4Packet::new_unchecked(l3);
        let old = ip.dscp_ecn();
        let new = old | ECN_CE;
        let ver_ihl = l3_first(&ip);
        ip.set_dscp_ecn(new);
        let check = checksum::update_u16(
            ip.checksum(),
            u16::from_be_bytes([ver_ihl, old]),
            u16::from_be_bytes([ver_ihl, new]),
        );
        ip.set_checksum(check);
    } else {
        let mut ip = Ipv6Packet::new_unchecked(l3);
        let tc = ip.traffic_class() | ECN_CE;
        ip.set_traffic_class(tc);
    }
}

/// The version/IHL byte of an IPv4 header (the other half of the checksummed word holding the TOS).
#[inline]
fn l3_first(ip: &Ipv4Packet<&mut [u8]>) -> u8 {
    (ip.version() << 4) | (ip.header_len() / 4) as u8
}
