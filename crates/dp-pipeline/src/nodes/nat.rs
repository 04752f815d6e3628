//! Address translation of a tracked flow's packets: VIP (1:1 source and destination NAT), NAT
//! (address and port) and NAT64, in both directions, as [`Conntrack`](super::Conntrack) decided
//! when it made the flow.
//!
//! The flow's two keys say everything: a packet that matched one of them leaves looking like the
//! *other* key reversed (dpservice's `flow_key[DP_FLOW_DIR_REPLY]` rule). So an outbound packet
//! of a NAT'd flow leaves with the NAT address and port as its source, and its reply, which
//! arrives for them, leaves for the VM's own address and port. Checksums are patched
//! incrementally (`dp_packet::nat`); NAT64 rebuilds the IP header (`dp_packet::nat64`, RFC 7915).
//!
//! ICMP errors about a translated flow are translated back to the inside flow: the outer
//! destination and the quoted packet's source address, port and checksum
//! (`dp_packet::nat::rewrite_icmp_error_v4`).
//!
//! Routing after the translation: a destination-translated packet (to a VIP) is routed again
//! in its VNI for its new destination; the reply of a source-translated flow (arriving from the
//! underlay for the NAT or VIP address) goes to the VM that started the flow.
//!
//! Checksum offload: a VM's packet may carry a *partial* TCP/UDP checksum (its TAP's virtio-net
//! request: the field holds the pseudo-header sum, the rest is summed on transmit). The
//! incremental updates are for complete checksums, so a partial one is finished first (what the
//! encapsulation does anyway); a TCP superframe keeps its request — its segments' checksums are
//! computed from scratch on transmit, and a receiving kernel uses the field as the pseudo-header
//! sum — so only that sum is moved to the translated addresses ([`move_pseudo_sum`]).
//!
//! Before translating, the node checks that the VIP or NAT the flow was made for still exists on
//! the interface: a flow whose translation was removed is closed and its packet dropped
//! (`nat_gone`); the conntrack sweep closes such flows too.

use dp_packet::bytes::read_u16_be;
use dp_packet::{checksum, nat, nat64, IpProtocol, Ipv4Addr, Ipv6Addr};
use dp_tables::{ConnKey, Direction, Flow, PublicTarget, RouteTarget, Snapshot, Translation};

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::ETH_HEADER_LEN;
use super::conntrack::go_on;
use super::icmp_error::{packet_too_big_v6, Offender6};

/// Largest IP packet NAT64 translates (an IPv4 datagram plus the IPv6 header's 20 more bytes).
const SCRATCH_LEN: usize = 65_535 + 40;

#[derive(Debug)]
pub struct Nat {
    /// Where NAT64 writes the translated header and payload (allocated once).
    scratch: Vec<u8>,
}

impl Default for Nat {
    fn default() -> Self {
        Nat {
            scratch: vec![0; SCRATCH_LEN],
        }
    }
}

impl Node for Nat {
    const NAME: &'static str = "nat";
    const NEXT: &'static [NodeId] = &[NodeId::IpipEncap, NodeId::L2Rewrite];
    // ICMPv6 Packet Too Big back to a VM whose IPv6 packet would not fit once NAT64 made it
    // IPv4 and the encapsulation added its header.
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        let Some((id, dir)) = pkt.parsed.flow_ref.get() else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        // Borrowed, not copied: a copy of the flow cost 43 instructions per packet.
        let Some(flow) = worker.flows.get(id) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        if !still_valid(flow, ctx.tables) {
            worker.flows.close(id);
            return Verdict::Drop(DropReason::NatGone);
        }
        // A partial checksum updated as a complete one comes out wrong (the server's kernel
        // dropped every SNAT'd TCP SYN of a VM behind a TAP with checksum offload).
        if pkt.meta.offload.is_set() {
            if let Err(e) = crate::offload::finish_checksum(pkt) {
                return Verdict::Drop(e.into());
            }
        }
        if flow.translation == Translation::Nat64 && dir == Direction::Original {
            if let Some(verdict) = too_big_for_nat64(pkt, ctx) {
                return verdict;
            }
        }
        match self.translate(pkt, flow, dir) {
            Ok(()) => route(pkt, flow, dir, ctx),
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

impl Nat {
    fn translate(
        &mut self,
        pkt: &mut PacketBuf,
        flow: &Flow,
        dir: Direction,
    ) -> Result<(), DropReason> {
        if self.translate_fast(pkt, flow, dir) {
            return Ok(());
        }
        let current = *flow.key(dir);
        let other = match dir {
            Direction::Original => flow.reply,
            Direction::Reply => flow.original,
        };
        let wanted = other.reversed();
        let l3_offset = usize::from(pkt.parsed.l3_offset);
        let l3_end = l3_offset + pkt.parsed.l3_len as usize;
        let vni = pkt.parsed.vni;
        let header_len = usize::from(pkt.parsed.l4_offset).saturating_sub(l3_offset);
        match (current.is_v6, wanted.is_v6) {
            (false, false) => {
                // A superframe (finish_checksum left it partial): its field must end up
                // holding the pseudo-header sum of the new addresses, not what the complete
                // checksum's update of addresses and ports makes of it.
                let off = pkt.meta.offload;
                let field = usize::from(off.csum_start) + usize::from(off.csum_offset);
                let partial = off
                    .needs_csum()
                    .then(|| read_u16_be(pkt.data(), field))
                    .flatten();
                let l3 = pkt
                    .data_mut()
                    .get_mut(l3_offset..l3_end)
                    .ok_or(DropReason::NatUnsupported)?;
                if is_icmpv4_error(l3) {
                    return translate_icmp_error(l3, &current, &wanted, dir);
                }
                rewrite_v4(l3, header_len, &current, &wanted)
                    .map_err(|_| DropReason::NatUnsupported)?;
                if let Some(sum) = partial {
                    let moved = move_pseudo_sum(sum, &current, &wanted).to_be_bytes();
                    if let Some(f) = pkt.data_mut().get_mut(field..field + 2) {
                        f.copy_from_slice(&moved);
                    }
                }
                // The key cached in the packet is the old one.
                let l4 = usize::from(pkt.parsed.l4_offset);
                pkt.parsed
                    .set_validated(l3_offset, l4, l3_end - l3_offset, vni);
                Ok(())
            }
            (true, false) => {
                let l3 = pkt
                    .data()
                    .get(l3_offset..l3_end)
                    .ok_or(DropReason::NatUnsupported)?;
                let port = (current.src_port != wanted.src_port).then_some(wanted.src_port);
                let n = nat64::v6_to_v4(l3, v4(wanted.src), port, &mut self.scratch)
                    .map_err(|_| DropReason::NatUnsupported)?;
                self.replace_ip(pkt, n, dp_packet::EtherType::IPV4, 20, vni)
            }
            (false, true) => {
                let l3 = pkt
                    .data()
                    .get(l3_offset..l3_end)
                    .ok_or(DropReason::NatUnsupported)?;
                let port = (current.dst_port != wanted.dst_port).then_some(wanted.dst_port);
                let n = nat64::v4_to_v6(
                    l3,
                    Ipv6Addr::from(wanted.src),
                    Ipv6Addr::from(wanted.dst),
                    port,
                    &mut self.scratch,
                )
                .map_err(|_| DropReason::NatUnsupported)?;
                self.replace_ip(pkt, n, dp_packet::EtherType::IPV6, 40, vni)
            }
            (true, true) => Err(DropReason::NatUnsupported),
        }
    }

    /// The common case without comparing keys: an IPv4 TCP or UDP packet of a VIP or NAT flow
    /// (not an ICMP error) has exactly one end translated, which the flow's translation and
    /// the direction name. Returns whether it was done (else the general path runs).
    #[inline]
    fn translate_fast(&mut self, pkt: &mut PacketBuf, flow: &Flow, dir: Direction) -> bool {
        let (orig, reply) = (&flow.original, &flow.reply);
        // A superframe keeps its partial checksum: the general path moves it.
        if orig.is_v6
            || !matches!(orig.proto, IpProtocol::TCP | IpProtocol::UDP)
            || pkt.meta.offload.needs_csum()
        {
            return false;
        }
        let (end, addr, port) = match (flow.translation, dir) {
            (Translation::SnatNat | Translation::SnatVip, Direction::Original) => {
                (nat::End::Source, reply.dst, reply.dst_port)
            }
            (Translation::SnatNat | Translation::SnatVip, Direction::Reply) => {
                (nat::End::Destination, orig.src, orig.src_port)
            }
            (Translation::DnatVip, Direction::Original) => {
                (nat::End::Destination, reply.src, reply.src_port)
            }
            (Translation::DnatVip, Direction::Reply) => (nat::End::Source, orig.dst, orig.dst_port),
            _ => return false,
        };
        let l3_offset = usize::from(pkt.parsed.l3_offset);
        let l4_offset = usize::from(pkt.parsed.l4_offset);
        let l3_len = pkt.parsed.l3_len as usize;
        let vni = pkt.parsed.vni;
        let Some(l3) = pkt.data_mut().get_mut(l3_offset..l3_offset + l3_len) else {
            return false;
        };
        let header_len = l4_offset.saturating_sub(l3_offset);
        if nat::rewrite_tcp_udp_v4(l3, header_len, end, v4(addr), port).is_err() {
            return false;
        }
        // The flow key cached in the packet is the old one.
        pkt.parsed.set_validated(l3_offset, l4_offset, l3_len, vni);
        true
    }

    /// Puts the `n` translated bytes of `self.scratch` in place of the packet's IP packet, with
    /// the Ethernet header's type changed.
    fn replace_ip(
        &mut self,
        pkt: &mut PacketBuf,
        n: usize,
        ethertype: dp_packet::EtherType,
        header_len: usize,
        vni: u32,
    ) -> Result<(), DropReason> {
        let old = pkt.parsed.l3_len as usize;
        let old_header_len =
            usize::from(pkt.parsed.l4_offset).saturating_sub(usize::from(pkt.parsed.l3_offset));
        let mut eth = [0u8; ETH_HEADER_LEN];
        eth.copy_from_slice(
            pkt.data()
                .get(..ETH_HEADER_LEN)
                .ok_or(DropReason::EthTruncated)?,
        );
        eth[12..].copy_from_slice(&ethertype.0.to_be_bytes());
        pkt.truncate(ETH_HEADER_LEN + old);
        if n >= old {
            pkt.prepend(n - old).map_err(|_| DropReason::NoRoom)?;
        } else {
            pkt.strip_front(old - n)
                .map_err(|_| DropReason::NatUnsupported)?;
        }
        let translated = self.scratch.get(..n).ok_or(DropReason::NoRoom)?;
        let frame = pkt.data_mut();
        frame
            .get_mut(..ETH_HEADER_LEN)
            .ok_or(DropReason::NoRoom)?
            .copy_from_slice(&eth);
        frame
            .get_mut(ETH_HEADER_LEN..ETH_HEADER_LEN + n)
            .ok_or(DropReason::NoRoom)?
            .copy_from_slice(translated);
        pkt.parsed
            .set_validated(ETH_HEADER_LEN, ETH_HEADER_LEN + header_len, n, vni);
        if pkt.meta.offload.is_set() {
            retarget_offload(&mut pkt.meta.offload, old_header_len, header_len, ethertype);
        }
        Ok(())
    }
}

/// A TCP superframe's offload request after NAT64 changed its IP header (its checksum was left
/// partial to be computed per segment): the checksum start and the header length move by the
/// difference of the headers, and the segmentation type follows the new family. Without this
/// the request pointed 20 bytes off the TCP header, the encapsulation refused to segment it,
/// and bulk TCP through NAT64 stalled (found by the stateful system test).
fn retarget_offload(
    off: &mut dp_buffer::Offload,
    old_header_len: usize,
    new_header_len: usize,
    ethertype: dp_packet::EtherType,
) {
    let move_by = |v: u16| -> u16 {
        let moved = usize::from(v) + new_header_len;
        u16::try_from(moved.saturating_sub(old_header_len)).unwrap_or(v)
    };
    if off.needs_csum() {
        off.csum_start = move_by(off.csum_start);
    }
    if off.hdr_len != 0 {
        off.hdr_len = move_by(off.hdr_len);
    }
    if off.is_tcp_gso() {
        let ecn = off.gso_type & dp_buffer::Offload::GSO_ECN;
        off.gso_type = ecn
            | if ethertype == dp_packet::EtherType::IPV4 {
                dp_buffer::Offload::GSO_TCPV4
            } else {
                dp_buffer::Offload::GSO_TCPV6
            };
    }
}

/// An IPv6 packet from a VM that NAT64 would make into an IPv4 packet too long for the
/// underlay once encapsulated: answered with ICMPv6 Packet Too Big (the MTU that fits, the 20
/// bytes NAT64 saves counted), as the encapsulation answers an IPv6 packet that does not fit —
/// after the translation it could only answer in ICMPv4, which an IPv6-only VM cannot take,
/// and bulk TCP stalled (found by the stateful system test). A superframe is segmented instead.
#[cold]
fn too_big_for_nat64(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Option<Verdict> {
    let v6_len = pkt.parsed.l3_len as usize;
    let mtu = ctx.config.overlay_mtu();
    if pkt.meta.offload.is_gso() || v6_len.saturating_sub(20) <= mtu {
        return None;
    }
    let own_mac = ctx.ports.get(pkt.meta.in_port)?.own_mac;
    let l3 = pkt.data().get(ETH_HEADER_LEN..)?;
    let ip = dp_packet::Ipv6Packet::new_checked(l3).ok()?;
    let offender = Offender6 {
        vm_mac: dp_packet::EthernetFrame::new_unchecked(pkt.data()).src_addr(),
        own_mac,
        src: ip.src_addr(),
        packet_len: v6_len,
    };
    let fits = u32::try_from(mtu + 20).unwrap_or(u32::MAX);
    Some(match packet_too_big_v6(pkt, &offender, fits) {
        Ok(()) => Verdict::Tx(pkt.meta.in_port),
        Err(reason) => Verdict::Drop(reason),
    })
}

#[inline]
fn v4(a: u128) -> Ipv4Addr {
    Ipv4Addr::from(a as u32)
}

fn is_icmp(key: &ConnKey) -> bool {
    matches!(key.proto, IpProtocol::ICMP | IpProtocol::ICMPV6)
}

/// Rewrites an IPv4 packet matching `current` to match `wanted` (addresses, ports or the echo
/// identifier, which an ICMP key holds in both ports). The common case — TCP or UDP, one end
/// translated — takes the fast rewrite for validated headers (`header_len` from the lookup);
/// the rest the general one.
fn rewrite_v4(
    l3: &mut [u8],
    header_len: usize,
    current: &ConnKey,
    wanted: &ConnKey,
) -> Result<(), nat::NatError> {
    let icmp = is_icmp(current);
    let src_changed = current.src != wanted.src || current.src_port != wanted.src_port;
    let dst_changed = current.dst != wanted.dst || (current.dst_port != wanted.dst_port && !icmp);
    if !icmp && src_changed != dst_changed {
        let (end, addr, port) = if src_changed {
            (nat::End::Source, wanted.src, wanted.src_port)
        } else {
            (nat::End::Destination, wanted.dst, wanted.dst_port)
        };
        if nat::rewrite_tcp_udp_v4(l3, header_len, end, v4(addr), port).is_ok() {
            return Ok(());
        }
    }
    if src_changed {
        let port = (current.src_port != wanted.src_port).then_some(wanted.src_port);
        nat::rewrite_src_v4(l3, v4(wanted.src), port)?;
    }
    if dst_changed {
        let port_changed = current.dst_port != wanted.dst_port && !icmp;
        nat::rewrite_dst_v4(l3, v4(wanted.dst), port_changed.then_some(wanted.dst_port))?;
    }
    Ok(())
}

/// A partial checksum field (the pseudo-header sum, not complemented) after the addresses
/// changed from `current`'s to `wanted`'s: the complement of the RFC 1624 update of its
/// complement. Ports are not part of it (they are in the data summed on transmit).
fn move_pseudo_sum(sum: u16, current: &ConnKey, wanted: &ConnKey) -> u16 {
    let c = checksum::update_u32(!sum, current.src as u32, wanted.src as u32);
    !checksum::update_u32(c, current.dst as u32, wanted.dst as u32)
}

/// Whether an IPv4 packet is an ICMP error.
fn is_icmpv4_error(l3: &[u8]) -> bool {
    let header_len = usize::from(l3.first().map_or(0, |b| b & 0x0f)) * 4;
    l3.get(9) == Some(&IpProtocol::ICMP.0)
        && l3.get(header_len).is_some_and(|&t| nat::is_icmpv4_error(t))
}

/// An ICMP error travelling direction `dir` of a translated flow: translated as its flow's
/// packets are — the outer destination, and the quoted packet (which went the other way) back
/// to what it was on this side.
fn translate_icmp_error(
    l3: &mut [u8],
    current: &ConnKey,
    wanted: &ConnKey,
    dir: Direction,
) -> Result<(), DropReason> {
    let _ = dir;
    // The quoted packet is the reverse of `current`'s flow key as translated: its source is
    // `current.dst` (port `current.dst_port`), to become `wanted.dst` (`wanted.dst_port`).
    if current.dst != wanted.dst || current.dst_port != wanted.dst_port {
        let port = (current.dst_port != wanted.dst_port).then_some(wanted.dst_port);
        nat::rewrite_icmp_error_v4(l3, v4(wanted.dst), v4(wanted.dst), port)
            .map_err(|_| DropReason::NatUnsupported)?;
    }
    if current.src != wanted.src {
        // An error sent from inside a VIP'd VM: only the outer source is translated.
        nat::rewrite_src_v4(l3, v4(wanted.src), None).map_err(|_| DropReason::NatUnsupported)?;
    }
    Ok(())
}

/// Where a translated packet goes: routed again for a new destination, to the VM that started
/// the flow for a translated reply, else as the lookup decided.
fn route(pkt: &mut PacketBuf, flow: &Flow, dir: Direction, ctx: &Ctx<'_>) -> Verdict {
    match (flow.translation, dir) {
        (Translation::DnatVip, Direction::Original) => {
            let dst = v4(flow.reply.src);
            let target = ctx
                .tables
                .vni(pkt.parsed.vni)
                .and_then(|t| t.lookup_v4(dst).copied());
            match target {
                Some(RouteTarget::Local { port }) => {
                    pkt.meta.out_port = port;
                    pkt.meta.underlay_dst = Ipv6Addr::UNSPECIFIED;
                    Verdict::Next(NodeId::L2Rewrite)
                }
                Some(RouteTarget::Remote { underlay, .. }) => {
                    pkt.meta.underlay_dst = underlay;
                    Verdict::Next(NodeId::IpipEncap)
                }
                None => Verdict::Drop(DropReason::NoRoute),
            }
        }
        (Translation::SnatNat | Translation::SnatVip | Translation::Nat64, Direction::Reply) => {
            pkt.meta.out_port = flow.ports[0];
            pkt.meta.underlay_dst = Ipv6Addr::UNSPECIFIED;
            Verdict::Next(NodeId::L2Rewrite)
        }
        _ => go_on(pkt),
    }
}

/// Whether what a flow was translated by (and the VMs at its ends) still exist: the VIP or NAT
/// range of the interface that started it, or the VIP it was sent to.
pub(crate) fn still_valid(flow: &Flow, tables: &Snapshot) -> bool {
    let ends_exist = flow
        .ports
        .iter()
        .all(|&p| p == dp_tables::NO_PORT || tables.iface(p).is_some());
    if !ends_exist {
        return false;
    }
    let (orig, reply) = (&flow.original, &flow.reply);
    let inside = || tables.iface(flow.ports[0]).map(|i| &i.services);
    match flow.translation {
        Translation::None => true,
        Translation::Lb => super::lb::target_still_valid(flow, tables),
        Translation::SnatVip => inside().and_then(|s| s.vip) == Some(v4(reply.dst)),
        Translation::SnatNat | Translation::Nat64 => inside()
            .and_then(|s| s.nat)
            .is_some_and(|r| r.ip == v4(reply.dst) && r.contains(reply.dst_port)),
        Translation::DnatVip => {
            tables.public_target(orig.vni, v4(orig.dst))
                == Some(PublicTarget::Vip {
                    port: flow.ports[1],
                    private: v4(reply.src),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> ConnKey {
        ConnKey {
            src: u128::from(u32::from(src)),
            dst: u128::from(u32::from(dst)),
            vni: 100,
            src_port: sport,
            dst_port: dport,
            proto: IpProtocol::TCP,
            is_v6: false,
        }
    }

    /// The moved sum is the pseudo-header sum of the new addresses (ports play no part).
    #[test]
    fn a_partial_checksum_follows_the_addresses() {
        let (vm, server) = (
            Ipv4Addr::new(10, 100, 1, 1),
            Ipv4Addr::new(198, 51, 100, 10),
        );
        let (nat_ip, vip) = (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(10, 100, 1, 2));
        for len in [20u32, 1480, 65_000] {
            let p =
                |s: &Ipv4Addr, d: &Ipv4Addr| checksum::pseudo_header_v4(s, d, IpProtocol::TCP, len);
            // Source NAT with a port change; destination NAT.
            let moved = move_pseudo_sum(
                p(&vm, &server),
                &key(vm, server, 40000, 80),
                &key(nat_ip, server, 1500, 80),
            );
            assert_eq!(moved, p(&nat_ip, &server));
            let moved = move_pseudo_sum(
                p(&server, &nat_ip),
                &key(server, nat_ip, 80, 1500),
                &key(server, vip, 80, 40000),
            );
            assert_eq!(moved, p(&server, &vip));
        }
    }
}
