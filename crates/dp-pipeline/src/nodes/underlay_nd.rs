//! The host's side of neighbor discovery and ping on the uplinks: it answers for the underlay
//! addresses it owns, and finds (and keeps finding) the MAC of the underlay router on each uplink.
//!
//! dpservice leaves both to the Linux kernel on its PF (it reads the router's MAC from the kernel's
//! neighbour table by netlink, retrying with a back-off until there is one). Here the dataplane owns
//! the uplinks, so it does the work itself:
//!
//! # Answering (this node)
//! Our addresses on an uplink are the host's `--ipv6`, every underlay address in the table
//! snapshot (interfaces and their alias prefixes) and our link-local address there (EUI-64 of our
//! MAC on the uplink). For any of them:
//! * a neighbor solicitation gets a neighbor advertisement (solicited and override flags, not the
//!   router flag, target link-layer address = our MAC on the uplink), unicast to the solicitor —
//!   or to ff02::1 for duplicate address detection (unspecified source, S clear, RFC 4861 §7.2.4);
//! * an ICMPv6 echo request gets an echo reply (hop limit 64), straight back to the sender's MAC.
//!
//! So a plain Linux router reaches every underlay address of the host with on-link routes.
//! Messages are validated as RFC 4861 §7.1 asks (hop limit 255, code 0, checksum, options).
//!
//! # The router's MAC (this node and [`UnderlayNd::tick`])
//! The router is `--router ADDR6` (typically a link-local such as fe80::ffff, the same on every
//! uplink link), or else whoever sends router advertisements with a non-zero router lifetime on
//! that uplink. Its MAC is learned from:
//! * a neighbor advertisement for the router's address (target link-layer address option, else
//!   the frame's source MAC),
//! * a router advertisement from it (source link-layer address option, else the frame's source),
//! * a neighbor solicitation from the router's address (its source link-layer address option),
//!
//! and stored with the time it was confirmed in the [`PortTable`](crate::PortTable), where the
//! encapsulation reads it. Until it is known, nothing is sent out of that uplink: packets for it
//! fail over to the other uplink or are dropped (`no_router_mac`) — never sent to a guessed MAC.
//! The tick keeps it fresh the way Linux's neighbour reachability detection does:
//! * unknown: a multicast neighbor solicitation (to the router's solicited-node group) every
//!   [`PROBE_INTERVAL_NS`] (1 s) — or, with no router address yet, a router solicitation every
//!   [`RS_INTERVAL_NS`] (4 s);
//! * known and confirmed less than [`REACHABLE_NS`] (10 s) ago: nothing;
//! * older: a unicast solicitation to the router every second; after [`MAX_UNANSWERED`] (3) of
//!   them unanswered, the MAC is forgotten and discovery starts over (so a replaced router is
//!   found within about 13 s, and one that stopped answering is no longer sent to);
//! * while the uplink's link is down: the MAC is kept (the router is probably still there when
//!   the link returns) and a multicast solicitation still goes out every second — for a TAP whose
//!   other side is in another namespace, a successful write is how the port notices the link is
//!   back; when the link returns, a probe goes out at once.
//!
//! Our solicitations come from our link-local address with a source link-layer address option.
//!
//! # From the kernel instead ([`DpConfig::router_mac_from_kernel`](crate::DpConfig))
//! With TAP uplinks and no `--router`, the daemon does what dpservice does: it reads the router's
//! MAC from the kernel's IPv6 neighbour table for the TAP (`dp_ports::neighbor`, off the packet
//! path) and writes it into the port table. This node then neither solicits nor learns (no RS,
//! no NS, router advertisements and advertisements for a router are `nd_unhandled`); it still
//! answers solicitations for our addresses and echo requests. Until the kernel has a router
//! entry, the uplink is used with the all-zero MAC, as dpservice's (see
//! [`uplink`](super::uplink)).

use dp_packet::icmpv6::Icmpv6Type;
use dp_packet::ipv6::{is_link_local, is_solicited_node, multicast_mac, solicited_node, ALL_NODES};
use dp_packet::{
    checksum, Error, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet, IpProtocol, Ipv6Addr,
    Ipv6Packet, Ipv6Repr, MacAddr, NdiscRepr,
};
use dp_tables::PortId;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::port_table::{PortEntry, PortKind};
use crate::worker_ctx::WorkerCtx;

use super::common::{link_local, ETH_HEADER_LEN, IPV6_HEADER_LEN, REPLY_TTL};
use super::uplink::MAX_UPLINKS;

/// RFC 4861: ND messages are sent, and must arrive, with hop limit 255.
const ND_HOP_LIMIT: u8 = 255;
/// ff02::2, all routers.
const ALL_ROUTERS: Ipv6Addr = dp_packet::ipv6::ALL_ROUTERS;

/// How long a confirmed router MAC is used without asking again (Linux: `base_reachable_time`
/// 30 s, randomised to 15–45 s; shorter here so a silent router is noticed sooner).
pub const REACHABLE_NS: u64 = 10_000_000_000;
/// Time between two solicitations (RFC 4861 `RETRANS_TIMER`).
pub const PROBE_INTERVAL_NS: u64 = 1_000_000_000;
/// Unicast solicitations left unanswered before the MAC is forgotten (RFC 4861
/// `MAX_UNICAST_SOLICIT`).
pub const MAX_UNANSWERED: u8 = 3;
/// Time between two router solicitations while no router address is known (RFC 4861
/// `RTR_SOLICITATION_INTERVAL`).
pub const RS_INTERVAL_NS: u64 = 4_000_000_000;

/// Per-uplink discovery state of one worker.
#[derive(Clone, Copy, Debug, Default)]
struct Neighbour {
    /// The router's address from its advertisements (used when `--router` is not given).
    learned_router: Option<Ipv6Addr>,
    next_probe_ns: u64,
    next_rs_ns: u64,
    /// Unicast solicitations sent since the MAC was last confirmed.
    unanswered: u8,
    /// The link state at the previous tick (starts "down", so the first tick probes at once).
    was_up: bool,
}

#[derive(Debug, Default)]
pub struct UnderlayNd {
    uplinks: [Neighbour; MAX_UPLINKS],
}

impl Node for UnderlayNd {
    const NAME: &'static str = "underlay_nd";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        match self.answer(pkt, ctx) {
            Ok(verdict) => verdict,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Due at every tick: when a probe is due depends on the uplinks' links and the router
    /// seen, which change between ticks; a tick looks at the two uplinks (a few compares).
    fn poll_timeout(&self) -> Option<u64> {
        Some(0)
    }

    /// Router discovery is shared by all workers (the router's MAC goes to the port table):
    /// the leader alone probes.
    fn handle_timeout(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx, emit: &mut Emit<'_>) {
        if worker.is_leader() {
            self.probe(ctx, emit);
        }
    }
}

fn uplink_entry<'a>(ctx: &Ctx<'a>, port: PortId) -> Option<&'a PortEntry> {
    ctx.ports.get(port).filter(|e| e.kind == PortKind::Uplink)
}

/// Whether `addr` is one of our addresses on the uplink `entry`.
fn owns(ctx: &Ctx<'_>, entry: &PortEntry, addr: &Ipv6Addr) -> bool {
    (*addr == ctx.config.underlay_ipv6 && !addr.is_unspecified())
        || ctx.tables.owns_underlay(*addr)
        || ctx.config.virtual_services.is_underlay(*addr)
        || *addr == link_local(entry.own_mac)
}

impl UnderlayNd {
    /// The router's address on an uplink: `--router`, or the source of its advertisements.
    pub fn router(&self, ctx: &Ctx<'_>, port: PortId) -> Option<Ipv6Addr> {
        ctx.config.router.or_else(|| {
            self.uplinks
                .get(usize::from(port))
                .and_then(|n| n.learned_router)
        })
    }

    fn confirmed(&mut self, entry: &PortEntry, port: PortId, mac: MacAddr, now_ns: u64) {
        entry.confirm_peer(mac, now_ns);
        if let Some(n) = self.uplinks.get_mut(usize::from(port)) {
            n.unanswered = 0;
        }
    }

    fn answer(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<Verdict, DropReason> {
        let in_port = pkt.meta.in_port;
        let entry = uplink_entry(ctx, in_port).ok_or(DropReason::NoInterface)?;
        let frame = EthernetFrame::new_checked(pkt.data()).map_err(|_| DropReason::EthTruncated)?;
        let eth_src = frame.src_addr();
        let ip =
            Ipv6Packet::new_checked(frame.payload()).map_err(|_| DropReason::UnderlayMalformed)?;
        let src = ip.src_addr();
        let dst = ip.dst_addr();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| DropReason::L4Malformed)?;
        if !icmp.verify_checksum(&src, &dst) {
            return Err(DropReason::L4BadChecksum);
        }
        let ty = icmp.msg_type();

        if ty == Icmpv6Type::ECHO_REQUEST {
            if icmp.msg_code() != 0 {
                return Err(DropReason::IcmpUnhandled);
            }
            if !owns(ctx, entry, &dst) {
                return Err(DropReason::UnderlayNotForUs);
            }
            if src.is_multicast() || src.is_unspecified() {
                return Err(DropReason::UnderlayMalformed);
            }
            let icmp_len = ip.payload().len();
            let old_check = icmp.checksum();
            echo_reply(pkt, entry.own_mac, eth_src, dst, src, icmp_len, old_check)?;
            return Ok(Verdict::Tx(in_port));
        }
        if !(Icmpv6Type::ROUTER_SOLICIT.0..=Icmpv6Type::REDIRECT.0).contains(&ty.0) {
            return Err(DropReason::IcmpUnhandled);
        }
        if ip.hop_limit() != ND_HOP_LIMIT {
            return Err(DropReason::NdMalformed);
        }
        let msg = NdiscRepr::parse(&icmp).map_err(|e| match e {
            Error::Unsupported => DropReason::NdUnhandled,
            _ => DropReason::NdMalformed,
        })?;
        let now = ctx.now_ns;
        match msg {
            NdiscRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => {
                let unspecified = src.is_unspecified();
                if unspecified && (source_lladdr.is_some() || !is_solicited_node(&dst)) {
                    return Err(DropReason::NdMalformed);
                }
                // A solicitation from the router carries its MAC (RFC 4861 §7.2.3): proof enough
                // that it is there, whoever it is asking for.
                if let Some(mac) = source_lladdr.filter(|m| m.is_unicast() && !m.is_zero()) {
                    if !ctx.config.router_mac_from_kernel && self.router(ctx, in_port) == Some(src)
                    {
                        self.confirmed(entry, in_port, mac, now);
                    }
                }
                if !owns(ctx, entry, &target_addr) {
                    return Err(DropReason::UnderlayNotForUs);
                }
                let reply = NdiscRepr::NeighborAdvert {
                    router: false,
                    solicited: !unspecified,
                    override_: true,
                    target_addr,
                    target_lladdr: Some(entry.own_mac),
                };
                let (to, to_mac) = if unspecified {
                    (ALL_NODES, multicast_mac(&ALL_NODES))
                } else {
                    (src, source_lladdr.unwrap_or(eth_src))
                };
                write_nd(pkt, &reply, entry.own_mac, to_mac, target_addr, to)?;
                Ok(Verdict::Tx(in_port))
            }
            NdiscRepr::NeighborAdvert {
                target_addr,
                target_lladdr,
                ..
            } => {
                if ctx.config.router_mac_from_kernel
                    || self.router(ctx, in_port) != Some(target_addr)
                {
                    return Err(DropReason::NdUnhandled);
                }
                let mac = target_lladdr.unwrap_or(eth_src);
                if !mac.is_unicast() || mac.is_zero() {
                    return Err(DropReason::NdMalformed);
                }
                self.confirmed(entry, in_port, mac, now);
                Err(DropReason::NdConsumed)
            }
            NdiscRepr::RouterAdvert {
                router_lifetime,
                source_lladdr,
                ..
            } => {
                if !is_link_local(&src) {
                    return Err(DropReason::NdMalformed);
                }
                if ctx.config.router_mac_from_kernel
                    || ctx.config.router.is_some_and(|r| r != src)
                    || router_lifetime == 0
                {
                    return Err(DropReason::NdUnhandled);
                }
                let mac = source_lladdr.unwrap_or(eth_src);
                if !mac.is_unicast() || mac.is_zero() {
                    return Err(DropReason::NdMalformed);
                }
                if ctx.config.router.is_none() {
                    if let Some(n) = self.uplinks.get_mut(usize::from(in_port)) {
                        n.learned_router = Some(src);
                    }
                }
                self.confirmed(entry, in_port, mac, now);
                Err(DropReason::NdConsumed)
            }
            NdiscRepr::RouterSolicit { .. } => Err(DropReason::NdUnhandled),
        }
    }

    /// Periodic discovery of the router on every uplink (see the module docs). Frames go to
    /// `emit(port, frame, pool)`.
    fn probe(&mut self, ctx: &Ctx<'_>, emit: &mut Emit<'_>) {
        if ctx.config.router_mac_from_kernel {
            return;
        }
        let now = ctx.now_ns;
        for index in 0..MAX_UPLINKS {
            let port = index as PortId;
            let Some(entry) = uplink_entry(ctx, port) else {
                continue;
            };
            let router = self.router(ctx, port);
            let Some(n) = self.uplinks.get_mut(index) else {
                continue;
            };
            let up = entry.link_up();
            if up && !n.was_up {
                n.next_probe_ns = now;
                n.next_rs_ns = now;
            }
            n.was_up = up;
            let own = entry.own_mac;
            let ll = link_local(own);

            let Some(router) = router else {
                if now >= n.next_rs_ns {
                    n.next_rs_ns = now.saturating_add(RS_INTERVAL_NS);
                    let rs = NdiscRepr::RouterSolicit {
                        source_lladdr: Some(own),
                    };
                    let to_mac = multicast_mac(&ALL_ROUTERS);
                    send(emit, port, &rs, own, to_mac, ll, ALL_ROUTERS);
                }
                continue;
            };
            if now < n.next_probe_ns {
                continue;
            }
            let ns = NdiscRepr::NeighborSolicit {
                target_addr: router,
                source_lladdr: Some(own),
            };
            let group = solicited_node(&router);
            match entry.peer_mac() {
                Some(mac) if up => {
                    if now.saturating_sub(entry.peer_confirmed_ns()) < REACHABLE_NS {
                        n.unanswered = 0;
                        continue;
                    }
                    if n.unanswered >= MAX_UNANSWERED {
                        entry.forget_peer();
                        n.unanswered = 0;
                        send(emit, port, &ns, own, multicast_mac(&group), ll, group);
                    } else {
                        n.unanswered += 1;
                        send(emit, port, &ns, own, mac, ll, router);
                    }
                }
                // Unknown, or the link is down (the write tells a TAP whether it is back).
                _ => send(emit, port, &ns, own, multicast_mac(&group), ll, group),
            }
            n.next_probe_ns = now.saturating_add(PROBE_INTERVAL_NS);
        }
    }
}

/// Builds an ND message in a fresh buffer and hands it to `emit`; without a free buffer the
/// probe is skipped (the next tick tries again).
#[allow(clippy::too_many_arguments)]
fn send(
    emit: &mut Emit<'_>,
    port: PortId,
    msg: &NdiscRepr,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    let Some(mut pkt) = emit.alloc() else {
        return;
    };
    pkt.meta.in_port = port;
    pkt.meta.out_port = port;
    let sent = match write_nd(&mut pkt, msg, src_mac, dst_mac, src, dst) {
        Ok(()) => emit.send(pkt, Verdict::Tx(port)),
        Err(_) => Err(pkt),
    };
    if let Err(pkt) = sent {
        emit.pool().free(pkt);
    }
}

/// Makes the frame an ND message from scratch.
fn write_nd(
    pkt: &mut PacketBuf,
    msg: &NdiscRepr,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Result<(), DropReason> {
    let icmp_len = msg.buffer_len();
    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    pkt.set_len(icmp_at + icmp_len)
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(src, dst, IpProtocol::ICMPV6, icmp_len, ND_HOP_LIMIT)
        .emit_into(l3)
        .map_err(|_| DropReason::NoRoom)?;
    let body = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    msg.emit_into(body, &src, &dst)
        .map_err(|_| DropReason::NoRoom)?;
    Ok(())
}

/// Turns an echo request into its reply in place.
fn echo_reply(
    pkt: &mut PacketBuf,
    own_mac: MacAddr,
    to_mac: MacAddr,
    from: Ipv6Addr,
    to: Ipv6Addr,
    icmp_len: usize,
    old_check: u16,
) -> Result<(), DropReason> {
    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    pkt.truncate(icmp_at + icmp_len);
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: own_mac,
        dst_addr: to_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(from, to, IpProtocol::ICMPV6, icmp_len, REPLY_TTL)
        .emit_into(l3)
        .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    let mut icmp = Icmpv6Packet::new_unchecked(msg);
    icmp.set_msg_type(Icmpv6Type::ECHO_REPLY);
    // Source and destination swapped: the pseudo header's sum is unchanged.
    icmp.set_checksum(checksum::update_u16(
        old_check,
        u16::from(Icmpv6Type::ECHO_REQUEST.0) << 8,
        u16::from(Icmpv6Type::ECHO_REPLY.0) << 8,
    ));
    Ok(())
}
