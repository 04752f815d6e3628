//! Decapsulates IPv4-in-IPv6 and IPv6-in-IPv6 packets from the underlay and delivers them to the VM
//! whose underlay address is the outer destination.
//!
//! As dpservice's `ipip_decap_node`, the outer destination alone says where the packet goes: it must
//! be one of our underlay addresses (an interface's own or one of its alias prefixes'), which names
//! the target interface and its VNI — the sender's VNI is not on the wire, so a route into another
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

use dp_packet::checksum;
use dp_packet::{EtherType, Ipv4Packet, Ipv6Packet};
use dp_tables::UnderlayTarget;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};

use super::common::{ipv4_checksum_ok, write_eth, ETH_HEADER_LEN, IPV6_HEADER_LEN};

const NEXT_HEADER_IPV4: u8 = 4;
const NEXT_HEADER_IPV6: u8 = 41;
const ECN_MASK: u8 = 0x03;
const ECN_CE: u8 = 0x03;
const ECN_NOT_ECT: u8 = 0x00;

#[derive(Debug, Default)]
pub struct IpipDecap;

impl Node for IpipDecap {
    const NAME: &'static str = "ipip_decap";

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Verdict {
        match decap(pkt, ctx) {
            Ok(verdict) => verdict,
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

#[inline]
fn decap(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<Verdict, DropReason> {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let outer = Ipv6Packet::new_checked(l3).map_err(|_| DropReason::UnderlayMalformed)?;
    let UnderlayTarget::Iface { port, vni } = ctx
        .tables
        .underlay_target(outer.dst_addr())
        .ok_or(DropReason::DecapUnknownDst)?;
    let target = ctx
        .tables
        .iface(port)
        .filter(|i| i.vni == vni)
        .ok_or(DropReason::DstPortDown)?;
    let outer_ecn = outer.traffic_class() & ECN_MASK;
    let inner = outer.payload();

    let (ethertype, inner_len, inner_ecn) = match outer.next_header().0 {
        NEXT_HEADER_IPV4 => {
            let ip = Ipv4Packet::new_checked(inner).map_err(|_| DropReason::DecapInnerMalformed)?;
            if !ipv4_checksum_ok(inner, ip.header_len()) {
                return Err(DropReason::DecapInnerBadChecksum);
            }
            if !target.owns_source_v4(ip.dst_addr()) {
                return Err(DropReason::DecapInnerNotForTarget);
            }
            (
                EtherType::IPV4,
                usize::from(ip.total_len()),
                ip.ecn() & ECN_MASK,
            )
        }
        NEXT_HEADER_IPV6 => {
            if !ctx.config.ipv6_overlay {
                return Err(DropReason::Ipv6OverlayDisabled);
            }
            let ip = Ipv6Packet::new_checked(inner).map_err(|_| DropReason::DecapInnerMalformed)?;
            if !target.owns_source_v6(ip.dst_addr()) {
                return Err(DropReason::DecapInnerNotForTarget);
            }
            (
                EtherType::IPV6,
                IPV6_HEADER_LEN + usize::from(ip.payload_len()),
                ip.traffic_class() & ECN_MASK,
            )
        }
        _ => return Err(DropReason::UnderlayUnhandled),
    };
    let mark_ce = outer_ecn == ECN_CE && inner_ecn != ECN_CE;
    if mark_ce && inner_ecn == ECN_NOT_ECT {
        return Err(DropReason::DecapEcn);
    }

    // Outer Ethernet + IPv6 off, a fresh Ethernet header on: net 40 bytes stripped.
    pkt.truncate(ETH_HEADER_LEN + IPV6_HEADER_LEN + inner_len);
    pkt.strip_front(IPV6_HEADER_LEN)
        .map_err(|_| DropReason::UnderlayMalformed)?;
    let own_mac = ctx.ports.get(port).ok_or(DropReason::DstPortDown)?.own_mac;
    let frame = pkt.data_mut();
    write_eth(frame, dp_packet::MacAddr::ZERO, own_mac, ethertype);
    if mark_ce {
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
    pkt.meta.out_port = port;
    Ok(Verdict::Next(NodeId::L2Rewrite))
}

/// The version/IHL byte of an IPv4 header (the other half of the checksummed word holding the TOS).
#[inline]
fn l3_first(ip: &Ipv4Packet<&mut [u8]>) -> u8 {
    (ip.version() << 4) | (ip.header_len() / 4) as u8
}
