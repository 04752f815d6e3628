//! Virtual services (dpservice's `virtsvc` node): a VM's TCP or UDP packet to a virtual IPv4
//! endpoint leaves as a plain IPv6 packet (no encapsulation) to the service, and the service's
//! replies come back to the VM as IPv4.
//!
//! * **Request** (from [`Ipv4Lookup`](super::Ipv4Lookup), which recognised the service after
//!   validating the header and the VM's source address): the IPv4 header is replaced by an IPv6
//!   one — source the service's underlay address of ours ([`dp_tables::virtsvc_underlay`]),
//!   destination the service, hop limit the TTL (carried, as dpservice does; not decremented),
//!   traffic class the TOS, flow label 0 — the source port by the connection's mapped port and
//!   the destination port by the service's; out through the uplink the flow hash picks.
//! * **Reply** (from [`Classify`](super::Classify): plain TCP or UDP from an uplink): it must
//!   come from a service's address and port to that service's underlay address, and its
//!   destination port must be a live connection of this worker's; then the IPv6 header is
//!   replaced by an IPv4 one — source the virtual endpoint, destination the VM's address and
//!   port — and [`L2Rewrite`](super::L2Rewrite) sends it to the VM's port.
//!
//! Checksums are patched for the pseudo-header and port changes (RFC 1624), never recomputed:
//! a corrupted segment stays corrupted. An IPv4 UDP datagram without checksum (0) gets one
//! computed over IPv6, where it is mandatory; a UDP checksum that comes out 0 is sent as 0xffff.
//! The IPv4 header checksum is computed; the identification counts per worker.
//!
//! Offload: a partial checksum of a VM's packet is finished first; a TCP superframe keeps its
//! request, with the pseudo-header sum moved to the new addresses and the request retargeted
//! to IPv6 (the transmit stage segments it).
//!
//! Connections live in the worker's [`PortMap`](dp_tables::PortMap) of the service
//! (`WorkerCtx::virtsvc`). With several workers a connection belongs to one: a request to the
//! owner of its VM endpoint's hash, which only hands out mapped ports `p` with
//! `p % workers == owner`, so a reply is owned by its destination port (as NAT replies,
//! [`affinity::nat_port_owner`]); either is handed to its owner ([`Verdict::Handoff`]), and the
//! owner's [`Handoff`](super::Handoff) node sends it back here.

use dp_packet::bytes::{read_u16_be, write_u16_be};
use dp_packet::{checksum, IpProtocol, Ipv4Addr, Ipv6Addr};
use dp_tables::VirtualService;

use crate::affinity;
use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::offload::{self, Offload};
use crate::port_table::PortKind;
use crate::worker_ctx::WorkerCtx;

use super::common::{ETH_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};
use super::uplink::UplinkChoice;

const TCP_HEADER_LEN: usize = dp_packet::tcp::HEADER_LEN;
/// The TCP and UDP checksum fields' offsets in their headers.
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;
/// The TCP flags byte.
const TCP_FLAGS: usize = 13;
/// dpservice's default flow timeout: with another `--flow-timeout` the port search restarts
/// from the first port (as dpservice's test builds do, so its tests see ports reused).
const DEFAULT_TIMEOUT_NS: u64 = 30_000_000_000;

#[derive(Debug, Default)]
pub struct Virtsvc {
    /// The uplinks' state as of this batch.
    uplinks: UplinkChoice,
    /// The IPv4 identification of the next reply.
    ident: u16,
    /// When the ports in use are next counted ([`dp_tables::VirtsvcTables::count_used`]).
    next_count_ns: u64,
}

/// How often a worker goes on counting its virtual services' ports in use.
const COUNT_INTERVAL_NS: u64 = 100_000_000;
/// Port slots looked at per count (a service has 64512 per worker): a complete count of two
/// services takes under a second, at a few microseconds per call.
const COUNT_PER_TICK: usize = 16_384;

impl Node for Virtsvc {
    const NAME: &'static str = "virtsvc";
    const NEXT: &'static [NodeId] = &[NodeId::L2Rewrite];
    const TRANSMITS: bool = true;
    const HANDS_OFF: bool = true;

    #[inline]
    fn begin_batch(&mut self, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) {
        self.uplinks = UplinkChoice::read(ctx);
    }

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        let from_uplink = ctx
            .ports
            .get(pkt.meta.in_port)
            .is_some_and(|p| p.kind == PortKind::Uplink);
        let result = if from_uplink {
            self.reply(pkt, ctx, worker)
        } else {
            self.request(pkt, ctx, worker)
        };
        result.unwrap_or_else(Verdict::Drop)
    }

    fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_count_ns)
    }

    fn handle_timeout(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx, _emit: &mut Emit<'_>) {
        self.next_count_ns = ctx.now_ns.saturating_add(COUNT_INTERVAL_NS);
        let short = ctx.config.flow_timeouts.default_ns;
        worker.virtsvc.count_used(ctx.now_ns, short, COUNT_PER_TICK);
    }
}

/// Where a packet goes that another worker owns: marked, handed to it.
#[inline]
fn hand_to(pkt: &mut PacketBuf, owner: usize) -> Verdict {
    pkt.meta.handed_off = true;
    Verdict::Handoff(u16::try_from(owner).unwrap_or(u16::MAX))
}

/// `checksum` after the words summing to `old` were replaced by words summing to `new`
/// (RFC 1624 eqn. 3 for a field of any length, e.g. four IPv4 addresses' bytes by IPv6 ones).
#[inline]
fn replace_sum(csum: u16, old: u16, new: u16) -> u16 {
    !checksum::fold(u64::from(!csum) + u64::from(!old) + u64::from(new))
}

/// The ones' complement sum of two IPv4 addresses (their part of the pseudo header).
#[inline]
fn v4_sum(a: Ipv4Addr, b: Ipv4Addr) -> u16 {
    let (a, b) = (u64::from(u32::from(a)), u64::from(u32::from(b)));
    checksum::fold((a >> 16) + (a & 0xffff) + (b >> 16) + (b & 0xffff))
}

/// The L4 header's length and checksum field offset, checked against `l4_len` (the bytes
/// after the IP header): TCP's data offset within the segment, UDP's length equal to it.
#[inline]
fn l4_layout(proto: IpProtocol, l4: &[u8], l4_len: usize) -> Result<usize, DropReason> {
    let bad = DropReason::VirtsvcMalformed;
    match proto {
        IpProtocol::TCP => {
            let doff = usize::from(l4.get(12).ok_or(bad)? >> 4) * 4;
            if l4_len < TCP_HEADER_LEN || doff < TCP_HEADER_LEN || doff > l4_len {
                return Err(bad);
            }
            Ok(TCP_CHECKSUM)
        }
        IpProtocol::UDP => {
            let len = usize::from(read_u16_be(l4, 4).ok_or(bad)?);
            if l4_len < UDP_HEADER_LEN || len != l4_len {
                return Err(bad);
            }
            Ok(UDP_CHECKSUM)
        }
        _ => Err(bad),
    }
}

impl Virtsvc {
    /// A VM's packet to a virtual service (see the module docs).
    fn request(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Result<Verdict, DropReason> {
        let bad = DropReason::VirtsvcMalformed;
        let index = usize::from(pkt.meta.virtsvc).checked_sub(1).ok_or(bad)?;
        let svc: &VirtualService = ctx.config.virtual_services.get(index).ok_or(bad)?;
        let l3_at = usize::from(pkt.parsed.l3_offset);
        let l4_at = usize::from(pkt.parsed.l4_offset);
        let ip_len = pkt.parsed.l3_len as usize;
        let header_len = l4_at.checked_sub(l3_at).ok_or(bad)?;
        if l3_at != ETH_HEADER_LEN || header_len < IPV4_HEADER_LEN || ip_len < header_len {
            return Err(bad);
        }
        let l4_len = ip_len - header_len;
        // Read what the new header needs before it overwrites the old one.
        let (tos, ttl, proto, src, flags_frag) = {
            let h = pkt.data().get(l3_at..l4_at).ok_or(bad)?;
            let src = <[u8; 4]>::try_from(h.get(12..16).ok_or(bad)?).map_err(|_| bad)?;
            (
                *h.get(1).ok_or(bad)?,
                *h.get(8).ok_or(bad)?,
                IpProtocol(*h.get(9).ok_or(bad)?),
                Ipv4Addr::from(src),
                read_u16_be(h, 6).ok_or(bad)?,
            )
        };
        // A fragment: only the first has the ports, and the others would not follow it.
        if flags_frag & 0x3fff != 0 || proto != svc.proto {
            return Err(bad);
        }
        let l4 = pkt.data().get(l4_at..l4_at + l4_len).ok_or(bad)?;
        let csum_at = l4_layout(proto, l4, l4_len)?;
        let vm_l4_port = read_u16_be(l4, 0).ok_or(bad)?;
        let old_dst_port = read_u16_be(l4, 2).ok_or(bad)?;
        let tcp_flags = l4.get(TCP_FLAGS).copied().unwrap_or(0);
        let vm_port = pkt.meta.in_port;

        // One worker holds the connection: the owner of the VM endpoint.
        let count = worker.count();
        let hash = endpoint_hash(index, vm_port, src, vm_l4_port);
        if count > 1 {
            let owner = affinity::owner(hash, count);
            if owner != worker.index() {
                return Ok(hand_to(pkt, owner));
            }
        }
        let uplink = *self.uplinks.select(hash)?;

        let now = ctx.now_ns;
        let short = ctx.config.flow_timeouts.default_ns;
        let map = worker
            .virtsvc
            .get_mut(index)
            .ok_or(DropReason::VirtsvcPortsExhausted)?;
        let slot = map
            .get_or_insert(
                vm_port,
                src,
                vm_l4_port,
                now,
                short,
                short != DEFAULT_TIMEOUT_NS,
            )
            .map_err(|_| DropReason::VirtsvcPortsExhausted)?;
        let mapped = map.port_of(slot);
        if let Some(conn) = map.conn_mut(slot) {
            conn.last_ns = now;
            if proto == IpProtocol::TCP {
                conn.state = conn.state.next(tcp_flags);
            }
        }

        // The checksum: a partial one finished first, unless a superframe's (kept partial).
        if pkt.meta.offload.is_set() {
            offload::finish_checksum(pkt).map_err(DropReason::from)?;
        }
        let partial = pkt.meta.offload.needs_csum();
        let dst4 = Ipv4Addr::from(
            <[u8; 4]>::try_from(pkt.data().get(l3_at + 16..l3_at + 20).ok_or(bad)?)
                .map_err(|_| bad)?,
        );
        let field = l4_at + csum_at;
        let old = read_u16_be(pkt.data(), field).ok_or(bad)?;
        let (old_addrs, new_addrs) = (
            v4_sum(src, dst4),
            ctx.config.virtual_services.address_sum(index),
        );
        let fresh_udp = proto == IpProtocol::UDP && old == 0 && !partial;
        let new = if partial {
            // The field holds the pseudo-header sum (not complemented); the ports are summed
            // with the data later.
            !replace_sum(!old, old_addrs, new_addrs)
        } else {
            let c = replace_sum(old, old_addrs, new_addrs);
            let c = checksum::update_u16(c, vm_l4_port, mapped);
            let c = checksum::update_u16(c, old_dst_port, svc.service_port);
            if proto == IpProtocol::UDP && c == 0 {
                0xffff
            } else {
                c
            }
        };
        {
            let frame = pkt.data_mut();
            let l4 = frame.get_mut(l4_at..).ok_or(bad)?;
            write_u16_be(l4, 0, mapped);
            write_u16_be(l4, 2, svc.service_port);
            write_u16_be(l4, csum_at, new);
        }

        // The IPv6 header in place of the IPv4 one (the L4 header stays where it is).
        let new_l4_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
        pkt.truncate(l4_at + l4_len);
        if header_len < IPV6_HEADER_LEN {
            pkt.prepend(IPV6_HEADER_LEN - header_len)
                .map_err(|_| DropReason::NoRoom)?;
        } else if header_len > IPV6_HEADER_LEN {
            pkt.strip_front(header_len - IPV6_HEADER_LEN)
                .map_err(|_| bad)?;
        }
        let payload_len = u16::try_from(l4_len).map_err(|_| bad)?;
        {
            let frame = pkt.data_mut();
            let eth = frame.get_mut(..ETH_HEADER_LEN).ok_or(bad)?;
            eth.copy_from_slice(uplink.eth.get(..ETH_HEADER_LEN).ok_or(bad)?);
            let [p0, p1] = payload_len.to_be_bytes();
            let mut h = [0u8; IPV6_HEADER_LEN];
            h[..8].copy_from_slice(&[0x60 | tos >> 4, tos << 4, 0, 0, p0, p1, proto.0, ttl]);
            h[8..24].copy_from_slice(&svc.underlay_addr.octets());
            h[24..].copy_from_slice(&svc.service_addr.octets());
            frame
                .get_mut(ETH_HEADER_LEN..new_l4_at)
                .ok_or(DropReason::NoRoom)?
                .copy_from_slice(&h);
        }
        if fresh_udp {
            fill_udp_v6(pkt, new_l4_at, &svc.underlay_addr, &svc.service_addr)?;
        }
        if pkt.meta.offload.is_set() {
            retarget(&mut pkt.meta.offload, l4_at, new_l4_at);
        }
        let vni = pkt.parsed.vni;
        pkt.parsed
            .set_validated(ETH_HEADER_LEN, new_l4_at, IPV6_HEADER_LEN + l4_len, vni);
        Ok(Verdict::Tx(uplink.port))
    }

    /// A packet from the underlay that may be a virtual service's reply (see the module docs).
    fn reply(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Result<Verdict, DropReason> {
        let bad = DropReason::VirtsvcMalformed;
        let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
        let ip = dp_packet::ipv6::parse_fixed(l3).ok_or(DropReason::UnderlayMalformed)?;
        let proto = ip.next_header;
        let (src, dst) = (Ipv6Addr::from(ip.src), Ipv6Addr::from(ip.dst));
        let l4_len = ip.payload_len;
        let l4 = l3
            .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + l4_len)
            .ok_or(DropReason::UnderlayMalformed)?;
        let src_port = read_u16_be(l4, 0).ok_or(bad)?;
        let services = &ctx.config.virtual_services;
        // Not a service's: what classify drops for plain TCP/UDP without services.
        let index = services
            .find_service(proto, src, src_port, dst)
            .ok_or(DropReason::UnderlayUnhandled)?;
        let svc = services.get(index).ok_or(DropReason::UnderlayUnhandled)?;
        let csum_at = l4_layout(proto, l4, l4_len)?;
        let mapped = read_u16_be(l4, 2).ok_or(bad)?;
        let tcp_flags = l4.get(TCP_FLAGS).copied().unwrap_or(0);
        let (tc, hop_limit) = (ip.traffic_class, ip.hop_limit);
        let total_len = u16::try_from(IPV4_HEADER_LEN + l4_len).map_err(|_| bad)?;
        if pkt.meta.offload.is_gso() {
            return Err(bad);
        }
        pkt.meta.virtsvc = u16::try_from(index + 1).unwrap_or(0);

        let count = worker.count();
        if count > 1 {
            let owner = affinity::nat_port_owner(mapped, count);
            if owner != worker.index() {
                return Ok(hand_to(pkt, owner));
            }
        }
        let now = ctx.now_ns;
        let short = ctx.config.flow_timeouts.default_ns;
        let map = worker
            .virtsvc
            .get_mut(index)
            .ok_or(DropReason::VirtsvcNoConnection)?;
        let slot = map.slot_of(mapped).ok_or(DropReason::VirtsvcNoConnection)?;
        let conn = *map.conn(slot).ok_or(DropReason::VirtsvcNoConnection)?;
        if !conn.in_use || now > conn.expires_ns(short) {
            return Err(DropReason::VirtsvcNoConnection);
        }
        // The VM's interface may have gone (or changed address) since: the port is free again.
        let iface = match ctx.tables.iface(conn.vm_port) {
            Some(i) if i.owns_source_v4(conn.vm_addr) => i,
            _ => {
                map.release(slot);
                return Err(DropReason::VirtsvcNoConnection);
            }
        };
        let vni = iface.vni;
        if let Some(c) = map.conn_mut(slot) {
            c.last_ns = now;
            if proto == IpProtocol::TCP {
                c.state = c.state.next(tcp_flags);
            }
        }
        if pkt.meta.offload.is_set() {
            offload::finish_checksum(pkt).map_err(DropReason::from)?;
        }

        let l4_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
        let field = l4_at + csum_at;
        let old = read_u16_be(pkt.data(), field).ok_or(bad)?;
        let new = if proto == IpProtocol::UDP && old == 0 {
            0 // No checksum: IPv4 allows that.
        } else {
            // The reply's addresses are the service's two (the match checked them).
            let c = replace_sum(
                old,
                services.address_sum(index),
                v4_sum(svc.virtual_addr, conn.vm_addr),
            );
            let c = checksum::update_u16(c, src_port, svc.virtual_port);
            let c = checksum::update_u16(c, mapped, conn.vm_l4_port);
            if proto == IpProtocol::UDP && c == 0 {
                0xffff
            } else {
                c
            }
        };
        {
            let l4 = pkt.data_mut().get_mut(l4_at..).ok_or(bad)?;
            write_u16_be(l4, 0, svc.virtual_port);
            write_u16_be(l4, 2, conn.vm_l4_port);
            write_u16_be(l4, csum_at, new);
        }

        // The IPv4 header in place of the IPv6 one.
        pkt.truncate(l4_at + l4_len);
        pkt.strip_front(IPV6_HEADER_LEN - IPV4_HEADER_LEN)
            .map_err(|_| bad)?;
        let ident = self.ident;
        self.ident = self.ident.wrapping_add(1);
        {
            let frame = pkt.data_mut();
            // The MACs are L2Rewrite's to write.
            frame
                .get_mut(12..14)
                .ok_or(bad)?
                .copy_from_slice(&dp_packet::EtherType::IPV4.0.to_be_bytes());
            let [l0, l1] = total_len.to_be_bytes();
            let [i0, i1] = ident.to_be_bytes();
            let mut h = [0u8; IPV4_HEADER_LEN];
            h[..10].copy_from_slice(&[0x45, tc, l0, l1, i0, i1, 0, 0, hop_limit, proto.0]);
            h[12..16].copy_from_slice(&svc.virtual_addr.octets());
            h[16..].copy_from_slice(&conn.vm_addr.octets());
            let c = checksum::finish(checksum::data(&h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            frame
                .get_mut(ETH_HEADER_LEN..ETH_HEADER_LEN + IPV4_HEADER_LEN)
                .ok_or(bad)?
                .copy_from_slice(&h);
        }
        pkt.parsed.set_validated(
            ETH_HEADER_LEN,
            ETH_HEADER_LEN + IPV4_HEADER_LEN,
            usize::from(total_len),
            vni,
        );
        pkt.meta.out_port = conn.vm_port;
        Ok(Verdict::Next(NodeId::L2Rewrite))
    }
}

/// The hash of a VM endpoint of a service: which worker owns its connection and which uplink
/// it leaves by (deterministic, so an endpoint keeps both).
#[inline]
fn endpoint_hash(service: usize, port: u16, addr: Ipv4Addr, l4_port: u16) -> u64 {
    let key = (service as u64) << 56
        ^ u64::from(port) << 48
        ^ u64::from(u32::from(addr)) << 16
        ^ u64::from(l4_port);
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

/// A UDP checksum computed fresh over IPv6 (the VM sent none).
#[cold]
fn fill_udp_v6(
    pkt: &mut PacketBuf,
    l4_at: usize,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<(), DropReason> {
    let l4 = pkt
        .data_mut()
        .get_mut(l4_at..)
        .ok_or(DropReason::VirtsvcMalformed)?;
    write_u16_be(l4, UDP_CHECKSUM, 0);
    let c = match checksum::transport_v6(src, dst, IpProtocol::UDP, l4) {
        0 => 0xffff,
        c => c,
    };
    write_u16_be(l4, UDP_CHECKSUM, c);
    Ok(())
}

/// A superframe's offload request after its IPv4 header became an IPv6 one: the checksum start
/// and header length move with the L4 header, and the segmentation type is TCPv6.
fn retarget(off: &mut Offload, old_l4: usize, new_l4: usize) {
    let moved =
        |v: u16| u16::try_from((usize::from(v) + new_l4).saturating_sub(old_l4)).unwrap_or(v);
    if off.needs_csum() {
        off.csum_start = moved(off.csum_start);
    }
    if off.hdr_len != 0 {
        off.hdr_len = moved(off.hdr_len);
    }
    if off.is_tcp_gso() {
        off.gso_type = (off.gso_type & Offload::GSO_ECN) | Offload::GSO_TCPV6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_sum_matches_a_fresh_checksum() {
        let data = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc];
        let a4 = Ipv4Addr::new(10, 1, 2, 3);
        let b4 = Ipv4Addr::new(1, 2, 3, 4);
        let a6: Ipv6Addr = "fc00:1::d0ff:4000:0:0".parse().unwrap();
        let b6: Ipv6Addr = "2a00:da8:fff6::1".parse().unwrap();
        let c4 = checksum::transport_v4(&a4, &b4, IpProtocol::UDP, &data);
        let c6 = checksum::transport_v6(&a6, &b6, IpProtocol::UDP, &data);
        let s6 = checksum::combine(&[checksum::data(&a6.octets()), checksum::data(&b6.octets())]);
        assert_eq!(
            v4_sum(a4, b4),
            checksum::combine(&[checksum::data(&a4.octets()), checksum::data(&b4.octets())])
        );
        assert_eq!(replace_sum(c4, v4_sum(a4, b4), s6), c6);
        assert_eq!(replace_sum(c6, s6, v4_sum(a4, b4)), c4);
    }

    #[test]
    fn a_superframe_request_follows_the_new_header() {
        let mut off = Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: Offload::GSO_TCPV4 | Offload::GSO_ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        retarget(&mut off, 34, 54);
        assert_eq!((off.csum_start, off.hdr_len), (54, 74));
        assert_eq!(off.gso_type, Offload::GSO_TCPV6 | Offload::GSO_ECN);
    }
}
