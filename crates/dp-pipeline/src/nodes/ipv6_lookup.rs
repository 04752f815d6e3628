//! Routes an IPv6 packet from a VM inside its VNI (only with `--enable-ipv6-overlay`).
//!
//! The same rules as [`Ipv4Lookup`](super::Ipv4Lookup): validated header (version, payload length
//! against the frame), anti-spoofing (the VM's address or its prefixes; a link-local source is
//! accepted only towards the gateway fe80::1, which is how `ping fe80::1%eth0` talks), the gateway
//! handed to [`GatewayIcmp`](super::GatewayIcmp), multicast/link-local/loopback/unspecified
//! destinations never routed, lookup in the sender's VNI only, hop limit decremented, and an
//! expiring packet answered with ICMPv6 time exceeded from fe80::1. Extension headers are not walked:
//! forwarding does not need them. Remote routes go to [`IpipEncap`](super::IpipEncap).

use dp_packet::icmpv6::Icmpv6Type;
use dp_packet::ipv6::is_link_local;
use dp_packet::{EthernetFrame, IpProtocol, Ipv6Addr, Ipv6Packet};
use dp_tables::RouteTarget;

use crate::buffer::PacketBuf;
use crate::config::GATEWAY_IPV6;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV6_HEADER_LEN};
use super::conntrack::untracked_end;
use super::icmp_error::{time_exceeded_v6, Offender6};

#[derive(Debug, Default)]
pub struct Ipv6Lookup;

impl Node for Ipv6Lookup {
    const NAME: &'static str = "ipv6_lookup";
    // `Handoff`: with several workers the graph sends what goes to the encapsulation or the
    // rewrite there first (`NodeId::via_handoff`); `Meter`: as for IPv4 (`NodeId::via_meter`).
    const NEXT: &'static [NodeId] = &[
        NodeId::Handoff,
        NodeId::GatewayIcmp,
        NodeId::Conntrack,
        NodeId::Meter,
    ];
    const TRANSMITS: bool = true;

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        match route(pkt, ctx) {
            Ok(verdict) => verdict,
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

fn route(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<Verdict, DropReason> {
    let in_port = pkt.meta.in_port;
    let (port, iface) = vm_port(ctx, in_port)?;
    if !ctx.config.ipv6_overlay {
        return Err(DropReason::Ipv6OverlayDisabled);
    }

    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = Ipv6Packet::new_checked(l3).map_err(|_| DropReason::Ipv6Malformed)?;
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let packet_len = IPV6_HEADER_LEN + usize::from(ip.payload_len());
    let hop_limit = ip.hop_limit();

    if dst == GATEWAY_IPV6 {
        if !(is_link_local(&src) || iface.owns_source_v6(src)) {
            return Err(DropReason::Spoofed);
        }
        return Ok(Verdict::Next(NodeId::GatewayIcmp));
    }
    if !iface.owns_source_v6(src) {
        return Err(DropReason::Spoofed);
    }
    if !is_routable(&dst) {
        return Err(DropReason::BadDestination);
    }
    let may_answer = !(ip.next_header() == IpProtocol::ICMPV6
        && ip
            .payload()
            .first()
            .is_some_and(|&t| Icmpv6Type(t).is_error()));

    let table = ctx.tables.vni(iface.vni).ok_or(DropReason::NoVni)?;
    let target = *table.lookup_v6(dst).ok_or(DropReason::NoRoute)?;
    let receiver_untracked = match target {
        RouteTarget::Local { port: out_port } => match ctx.tables.iface(out_port) {
            None => return Err(DropReason::DstPortDown),
            Some(t) if t.vni != iface.vni => return Err(DropReason::CrossVni),
            Some(t) => untracked_end(ctx, t),
        },
        RouteTarget::Remote { .. } => true,
    };
    // Untracked (`--conntrack stateful`): both ends without stateful services and the VM's own
    // address as source (IPv6 has no VIPs).
    let untracked = receiver_untracked
        && untracked_end(ctx, iface)
        && !iface.ipv6.is_unspecified()
        && src == iface.ipv6;

    if hop_limit <= 1 {
        if !may_answer {
            return Err(DropReason::TtlExceeded);
        }
        let vm_mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
        let offender = Offender6 {
            vm_mac,
            own_mac: port.own_mac,
            src,
            packet_len,
        };
        time_exceeded_v6(pkt, &offender)?;
        return Ok(Verdict::Tx(in_port));
    }

    // Validated and routed: recorded for the later nodes, as ipv4_input does for IPv4.
    pkt.parsed.set_validated(
        ETH_HEADER_LEN,
        ETH_HEADER_LEN + IPV6_HEADER_LEN,
        packet_len,
        iface.vni,
    );
    pkt.truncate(ETH_HEADER_LEN + packet_len);
    if let Some(l3) = pkt.data_mut().get_mut(ETH_HEADER_LEN..) {
        Ipv6Packet::new_unchecked(l3).set_hop_limit(hop_limit - 1);
    }
    pkt.meta.stateless_ends = untracked;
    Ok(match target {
        RouteTarget::Local { port } => {
            pkt.meta.out_port = port;
            Verdict::Next(NodeId::Conntrack)
        }
        RouteTarget::Remote {
            underlay, public, ..
        } => {
            pkt.meta.underlay_dst = underlay;
            pkt.meta.route_public = public;
            Verdict::Next(NodeId::Conntrack)
        }
    })
}

/// Whether a router may forward to `dst` at all.
fn is_routable(dst: &Ipv6Addr) -> bool {
    !(dst.is_multicast() || dst.is_unspecified() || dst.is_loopback() || is_link_local(dst))
}
