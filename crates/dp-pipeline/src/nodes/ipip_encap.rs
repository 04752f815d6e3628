//! Encapsulates a VM's packet routed to another hypervisor: IPv4-in-IPv6 (next header 4) or
//! IPv6-in-IPv6 (next header 41), out of an uplink to the underlay router.
//!
//! As dpservice's `ipip_encap_node`, the VM's Ethernet header is stripped and an Ethernet + IPv6
//! header prepended in the buffer's headroom (nothing is copied):
//! * outer source: the sending interface's underlay address; outer destination: the route's next
//!   hop ([`PacketMeta::underlay_dst`](crate::PacketMeta)). The next-hop VNI of the route is not
//!   carried: the receiving hypervisor takes the VNI of the interface the outer destination
//!   belongs to — which is how a route into another VNI (VNI peering) takes effect;
//! * hop limit 64 (dpservice's `DP_IP6_HOP_LIMIT`);
//! * traffic class: the inner DSCP and ECN bits (IPv4 TOS byte, IPv6 traffic class), where
//!   dpservice sends 0 — the underlay can honour the VM's marking, and ECN works end to end
//!   (RFC 6040 normal mode; the decapsulating side folds a CE mark back in);
//! * flow label: 20 bits of the inner flow's hash, never 0 (RFC 6438), where dpservice sends 0 —
//!   so an ECMP underlay spreads the tunnelled flows over its paths;
//! * Ethernet: to the router's MAC on the chosen uplink, from ours there (see [`super::uplink`]
//!   for the choice and fail-over).
//!
//! # MTU
//! The outer packet may be at most `--underlay-mtu` bytes, so the inner one at most 40 bytes less.
//! A larger packet gets, back from the gateway, ICMP "fragmentation needed" (IPv4 with DF) or
//! ICMPv6 "packet too big" (IPv6) carrying that inner MTU, so the VM's path-MTU discovery adapts.
//! An IPv4 packet without DF is fragmented here, as a router on the path would (RFC 791): every
//! fragment is encapsulated on its own, with the same flow hash (hence uplink and flow label) as
//! the whole datagram; options not marked "copied" go only in the first fragment. No error is
//! sent about an ICMP error or a non-first fragment: those are dropped (`too_big`).

use dp_packet::bytes::read_u16_be;
use dp_packet::{
    EtherType, EthernetFrame, FlowKey, IpProtocol, Ipv4Packet, Ipv6Addr, Ipv6Packet, MacAddr,
};
use dp_tables::PortId;

use crate::buffer::{BufferPool, PacketBuf};
use crate::drop::DropReason;
use crate::graph::{NodeId, MAX_EXTRA_PACKETS};
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::port_table::PortKind;
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use super::icmp_error::{frag_needed_v4, is_icmpv4_error, packet_too_big_v6, Offender4, Offender6};
use super::uplink::{flow_label, Uplink, UplinkChoice};

/// Hop limit of the outer header (dpservice's `DP_IP6_HOP_LIMIT`).
pub const OUTER_HOP_LIMIT: u8 = 64;

const NEXT_HEADER_IPV4: u8 = IpProtocol::IPV4_IN_IP.0;
const NEXT_HEADER_IPV6: u8 = IpProtocol::IPV6_IN_IP.0;
const ICMP: u8 = IpProtocol::ICMP.0;
const ICMPV6: u8 = IpProtocol::ICMPV6.0;

/// The node, with what it reads once per batch.
#[derive(Debug)]
pub struct IpipEncap {
    uplinks: UplinkChoice,
    /// The largest inner packet that fits the underlay MTU.
    mtu: usize,
    /// The last sender seen in this batch (packets of a batch mostly come from few ports).
    sender: Option<Sender>,
    /// The later fragments of the packet being fragmented, before they are emitted
    /// (pre-allocated: [`MAX_EXTRA_PACKETS`]).
    fragments: Vec<PacketBuf>,
}

impl Default for IpipEncap {
    fn default() -> Self {
        IpipEncap {
            uplinks: UplinkChoice::default(),
            mtu: 0,
            sender: None,
            fragments: Vec::with_capacity(MAX_EXTRA_PACKETS),
        }
    }
}

/// What the outer header needs from the sending interface.
#[derive(Clone, Copy, Debug)]
struct Sender {
    port: PortId,
    /// The interface's underlay address: the outer source.
    underlay: Ipv6Addr,
    /// Our MAC on its port (the source of ICMP errors back to the VM).
    own_mac: MacAddr,
    /// An uplink: a packet relayed to a neighbor NAT (outer source: the host's `--ipv6`; too
    /// big is a drop, there is no VM to tell).
    relayed: bool,
}

impl Node for IpipEncap {
    const NAME: &'static str = "ipip_encap";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;
    const MAKES_PACKETS: bool = true;

    fn begin_batch(&mut self, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) {
        self.uplinks = UplinkChoice::read(ctx);
        self.mtu = ctx.config.overlay_mtu();
        self.sender = None;
    }

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        // Without a pool nothing can be fragmented: what does not fit gets an ICMP error or is
        // dropped. The graph calls `process_alloc`; this is for direct callers.
        self.begin_batch(ctx, worker);
        let mut pool = BufferPool::new(0, 0);
        let fragments = std::mem::take(&mut self.fragments);
        let (verdict, _) = self.encap_or_drop(pkt, ctx, &mut pool);
        self.fragments = fragments;
        verdict
    }

    #[inline]
    fn process_alloc(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
        emit: &mut Emit<'_>,
    ) -> Verdict {
        match self.encap_or_drop(pkt, ctx, emit.pool()) {
            (verdict, false) => verdict,
            (verdict, true) => self.emit_fragments(verdict, emit),
        }
    }
}

impl IpipEncap {
    /// Encapsulates `pkt` (and the fragments it is cut into, into `self.fragments`), and says
    /// whether it was fragmented; on error, frees the fragments and drops.
    #[inline]
    fn encap_or_drop(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        pool: &mut BufferPool,
    ) -> (Verdict, bool) {
        match self.encap(pkt, ctx, pool) {
            Ok(decided) => decided,
            Err(reason) => {
                for p in self.fragments.drain(..) {
                    pool.free(p);
                }
                (Verdict::Drop(reason), false)
            }
        }
    }

    /// The later fragments go where the first goes, right after it (rare: fragmentation).
    #[cold]
    #[inline(never)]
    fn emit_fragments(&mut self, verdict: Verdict, emit: &mut Emit<'_>) -> Verdict {
        if emit.room() < self.fragments.len() {
            // Cannot happen (both hold MAX_EXTRA_PACKETS and nothing else is staged): the
            // packet is dropped whole rather than in part.
            for p in self.fragments.drain(..) {
                emit.pool().free(p);
            }
            return Verdict::Drop(DropReason::TooBig);
        }
        for p in self.fragments.drain(..) {
            if let Err(p) = emit.send(p, verdict) {
                emit.pool().free(p);
            }
        }
        verdict
    }
}

/// What the outer header needs from the inner packet.
struct Inner {
    next_header: u8,
    traffic_class: u8,
    hash: u64,
    /// Length of the inner IP packet (the frame after the Ethernet header, padding excluded).
    len: usize,
}

impl IpipEncap {
    /// Looks up the sending VM unless the previous packet came from the same port (batches
    /// mostly hold runs from one port).
    #[inline]
    fn refresh_sender(&mut self, ctx: &Ctx<'_>, in_port: PortId) -> Result<(), DropReason> {
        if self.sender.is_some_and(|s| s.port == in_port) {
            return Ok(());
        }
        self.sender = Some(match vm_port(ctx, in_port) {
            Ok((entry, iface)) => Sender {
                port: in_port,
                underlay: iface.underlay_ipv6,
                own_mac: entry.own_mac,
                relayed: false,
            },
            Err(reason) => match ctx.ports.get(in_port) {
                Some(entry) if entry.kind == PortKind::Uplink => Sender {
                    port: in_port,
                    underlay: ctx.config.underlay_ipv6,
                    own_mac: entry.own_mac,
                    relayed: true,
                },
                _ => return Err(reason),
            },
        });
        Ok(())
    }

    #[inline]
    fn encap(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        pool: &mut BufferPool,
    ) -> Result<(Verdict, bool), DropReason> {
        self.refresh_sender(ctx, pkt.meta.in_port)?;
        let Some(sender) = &self.sender else {
            return Err(DropReason::NoInterface);
        };
        let outer_dst = pkt.meta.underlay_dst;
        // No uplink takes a tunnelled offload request: a partial checksum is finished here, a TCP
        // superframe is segmented by the worker on transmit (see `crate::offload`).
        let gso = pkt.meta.offload.is_gso();
        if pkt.meta.offload.is_set() && !gso {
            crate::offload::finish_checksum(pkt)?;
        }

        // The flow hash straight from the header the lookup validated and cut to its length
        // (`FlowKey::hash_of_header`: the key's hash without building the key).
        let frame = pkt.data();
        let l3 = frame.get(ETH_HEADER_LEN..).unwrap_or(&[]);
        let inner = match read_u16_be(frame, 12).map(EtherType) {
            // The lookup nodes validated the header and cut the frame to the packet's length.
            Some(EtherType::IPV4) => Inner {
                next_header: NEXT_HEADER_IPV4,
                traffic_class: l3.get(1).copied().unwrap_or(0),
                hash: FlowKey::hash_of_ipv4_header(l3),
                len: l3.len(),
            },
            Some(EtherType::IPV6) => {
                let ip = Ipv6Packet::new_unchecked(l3);
                Inner {
                    next_header: NEXT_HEADER_IPV6,
                    traffic_class: ip.traffic_class(),
                    hash: FlowKey::hash_of_ipv6_header(l3),
                    len: l3.len(),
                }
            }
            _ => return Err(DropReason::UnknownEthertype),
        };
        // Borrowed, not copied: a copy of the 14-byte header through the stack stalled on store
        // forwarding (a quarter of this node's time in `perf annotate`).
        let uplink = self.uplinks.select(inner.hash)?;

        let mtu = self.mtu;
        // Whether `self.fragments` holds the later fragments (known here, not re-checked).
        let mut fragmented = false;
        if inner.len > mtu {
            let segments_fit = gso
                && crate::offload::gso_segment_len(frame, &pkt.meta.offload)
                    .is_some_and(|l| l <= mtu);
            // A superframe whose segments would not fit either is answered as one of them would
            // be (the ICMP error forgets the offload request, and the sender's MSS shrinks).
            if !segments_fit && sender.relayed {
                return Err(DropReason::TooBig);
            }
            if !segments_fit {
                let vm_mac = EthernetFrame::new_unchecked(frame).src_addr();
                if inner.next_header == NEXT_HEADER_IPV6 {
                    return too_big_v6(pkt, vm_mac, sender.own_mac, mtu).map(|v| (v, false));
                }
                let ip = Ipv4Packet::new_unchecked(l3);
                if ip.dont_frag() {
                    return too_big_v4(pkt, vm_mac, sender.own_mac, mtu).map(|v| (v, false));
                }
                if gso {
                    return Err(DropReason::TooBig);
                }
                fragment_v4(pkt, pool, &mut self.fragments, mtu)?;
                for p in self.fragments.iter_mut() {
                    write_outer(p, uplink, sender.underlay, outer_dst, &inner)?;
                }
                fragmented = true;
            }
        }

        write_outer(pkt, uplink, sender.underlay, outer_dst, &inner)?;
        if gso {
            pkt.meta.offload.shift(super::OUTER_HEADER_LEN)?;
        }
        Ok((Verdict::Tx(uplink.port), fragmented))
    }
}

/// Puts Ethernet + outer IPv6 in front of the inner packet: the frame grows by the 40 bytes of
/// the IPv6 header (into the headroom) and its first 54 bytes, the old Ethernet header included,
/// are rewritten. The frame must hold exactly the inner packet after its Ethernet header.
#[inline]
fn write_outer(
    pkt: &mut PacketBuf,
    uplink: &Uplink,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    inner: &Inner,
) -> Result<(), DropReason> {
    let payload_len =
        u16::try_from(pkt.len().saturating_sub(ETH_HEADER_LEN)).map_err(|_| DropReason::TooBig)?;
    if pkt.len() < ETH_HEADER_LEN {
        return Err(DropReason::EthTruncated);
    }
    pkt.prepend(IPV6_HEADER_LEN)
        .map_err(|_| DropReason::NoRoom)?;
    let Some(h) = pkt
        .data_mut()
        .first_chunk_mut::<{ ETH_HEADER_LEN + IPV6_HEADER_LEN }>()
    else {
        return Err(DropReason::NoRoom);
    };
    let vtc_flow = (6u32 << 28) | (u32::from(inner.traffic_class) << 20) | flow_label(inner.hash);
    let [l0, l1] = payload_len.to_be_bytes();
    // 16 bytes in one move; the two after the Ethernet header are rewritten just below.
    h[..16].copy_from_slice(&uplink.eth);
    h[14..18].copy_from_slice(&vtc_flow.to_be_bytes());
    h[18..22].copy_from_slice(&[l0, l1, inner.next_header, OUTER_HOP_LIMIT]);
    h[22..38].copy_from_slice(&src.octets());
    h[38..54].copy_from_slice(&dst.octets());
    Ok(())
}

fn too_big_v4(
    pkt: &mut PacketBuf,
    vm_mac: MacAddr,
    own_mac: MacAddr,
    mtu: usize,
) -> Result<Verdict, DropReason> {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = Ipv4Packet::new_unchecked(l3);
    let is_error =
        ip.protocol().0 == ICMP && ip.payload().first().is_some_and(|&t| is_icmpv4_error(t));
    if ip.frag_offset() != 0 || is_error {
        return Err(DropReason::TooBig);
    }
    let offender = Offender4 {
        vm_mac,
        own_mac,
        src: ip.src_addr(),
        datagram_len: l3.len(),
    };
    frag_needed_v4(pkt, &offender, u16::try_from(mtu).unwrap_or(u16::MAX))?;
    Ok(Verdict::Tx(pkt.meta.in_port))
}

fn too_big_v6(
    pkt: &mut PacketBuf,
    vm_mac: MacAddr,
    own_mac: MacAddr,
    mtu: usize,
) -> Result<Verdict, DropReason> {
    let l3 = pkt.data().get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = Ipv6Packet::new_unchecked(l3);
    let is_error =
        ip.next_header().0 == ICMPV6 && ip.payload().first().is_some_and(|&t| t & 0x80 == 0);
    if is_error {
        return Err(DropReason::TooBig);
    }
    let offender = Offender6 {
        vm_mac,
        own_mac,
        src: ip.src_addr(),
        packet_len: l3.len(),
    };
    packet_too_big_v6(pkt, &offender, u32::try_from(mtu).unwrap_or(u32::MAX))?;
    Ok(Verdict::Tx(pkt.meta.in_port))
}

/// Cuts an IPv4 datagram without DF into fragments of at most `mtu` bytes: the first stays in
/// `pkt`, the others are allocated from `pool` into `extra` (each with the Ethernet header of
/// `pkt`). On error, what was allocated stays in `extra` for the caller to free.
fn fragment_v4(
    pkt: &mut PacketBuf,
    pool: &mut BufferPool,
    extra: &mut Vec<PacketBuf>,
    mtu: usize,
) -> Result<(), DropReason> {
    let frame = pkt.data();
    let l3 = frame.get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let ip = Ipv4Packet::new_unchecked(l3);
    let ihl = ip.header_len();
    let payload = ip.payload();
    let base_offset = usize::from(ip.frag_offset());
    let last_has_mf = ip.more_frags();

    // The header of the later fragments: the fixed part and the options marked "copied".
    let mut later_hdr = [0u8; 60];
    let later_ihl = later_header(ip.header(), &mut later_hdr);
    let first_chunk = mtu.saturating_sub(ihl) & !7;
    let later_chunk = mtu.saturating_sub(later_ihl) & !7;
    if first_chunk == 0 || later_chunk == 0 || first_chunk >= payload.len() {
        return Err(DropReason::TooBig);
    }

    let mut at = first_chunk;
    while at < payload.len() {
        let chunk = later_chunk.min(payload.len() - at);
        if extra.len() >= extra.capacity() {
            return Err(DropReason::TooBig);
        }
        let mut frag = pool.alloc().ok_or(DropReason::NoBuffer)?;
        frag.meta = pkt.meta;
        let len = ETH_HEADER_LEN + later_ihl + chunk;
        frag.set_len(len).map_err(|_| DropReason::NoRoom)?;
        let offset = u16::try_from(base_offset + at).map_err(|_| DropReason::TooBig)?;
        let more = at + chunk < payload.len() || last_has_mf;
        {
            let out = frag.data_mut();
            let (eth, rest) = out.split_at_mut(ETH_HEADER_LEN.min(out.len()));
            eth.copy_from_slice(frame.get(..ETH_HEADER_LEN).unwrap_or(&[0; ETH_HEADER_LEN]));
            let (hdr, body) = rest.split_at_mut(later_ihl.min(rest.len()));
            hdr.copy_from_slice(later_hdr.get(..later_ihl).unwrap_or(&[]));
            let src = payload.get(at..at + chunk).ok_or(DropReason::TooBig)?;
            body.copy_from_slice(src);
            fix_fragment_header(hdr, later_ihl + chunk, offset, more)?;
        }
        extra.push(frag);
        at += chunk;
    }

    pkt.truncate(ETH_HEADER_LEN + ihl + first_chunk);
    let hdr = pkt
        .data_mut()
        .get_mut(ETH_HEADER_LEN..ETH_HEADER_LEN + ihl)
        .ok_or(DropReason::TooBig)?;
    let offset = u16::try_from(base_offset).map_err(|_| DropReason::TooBig)?;
    fix_fragment_header(hdr, ihl + first_chunk, offset, true)
}

fn fix_fragment_header(
    hdr: &mut [u8],
    total: usize,
    offset: u16,
    more: bool,
) -> Result<(), DropReason> {
    let total = u16::try_from(total).map_err(|_| DropReason::TooBig)?;
    let mut ip = Ipv4Packet::new_unchecked(hdr);
    ip.set_total_len(total);
    ip.set_frag_offset(offset);
    ip.set_more_frags(more);
    ip.fill_checksum();
    Ok(())
}

/// Writes into `out` the header for fragments after the first: the fixed 20 bytes and the options
/// whose "copied" bit is set (RFC 791), padded to a multiple of 4; returns its length.
fn later_header(header: &[u8], out: &mut [u8; 60]) -> usize {
    let fixed = header.get(..IPV4_HEADER_LEN).unwrap_or(&[]);
    let mut len = fixed.len();
    if let Some(dst) = out.get_mut(..len) {
        dst.copy_from_slice(fixed);
    }
    let options = header.get(IPV4_HEADER_LEN..).unwrap_or(&[]);
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        let opt_len = match kind {
            0 => break, // end of options
            1 => 1,     // no-operation
            _ => match options.get(i + 1) {
                Some(&l) if usize::from(l) >= 2 => usize::from(l),
                _ => break, // malformed: copy nothing more
            },
        };
        let Some(opt) = options.get(i..i + opt_len) else {
            break;
        };
        if kind & 0x80 != 0 {
            if let Some(dst) = out.get_mut(len..len + opt_len) {
                dst.copy_from_slice(opt);
                len += opt_len;
            }
        }
        i += opt_len;
    }
    while len % 4 != 0 {
        if let Some(b) = out.get_mut(len) {
            *b = 0; // end of options
        }
        len += 1;
    }
    if let Some(b) = out.first_mut() {
        *b = 0x40 | (len / 4) as u8;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_fragments_keep_only_copied_options() {
        let mut h = vec![
            0x48, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        // Record route (7, not copied, length 7) + padding NOP, then security-ish (0x82, copied, length 4).
        h.extend_from_slice(&[7, 7, 4, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x82, 4, 0xaa, 0xbb]);
        let mut out = [0u8; 60];
        let len = later_header(&h, &mut out);
        assert_eq!(len, 24);
        assert_eq!(out[0], 0x46);
        assert_eq!(&out[20..24], &[0x82, 4, 0xaa, 0xbb]);
        // No options at all: just the fixed header.
        let plain = &h[..20];
        let mut out = [0u8; 60];
        assert_eq!(later_header(plain, &mut out), 20);
        assert_eq!(out[0], 0x45);
    }
}
