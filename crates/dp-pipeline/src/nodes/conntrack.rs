//! Connection tracking: every routed packet — a VM's, after the lookup, and the underlay's, after
//! the decapsulation — is matched to its flow in the worker's [`FlowTable`] (keyed on VNI and
//! 5-tuple, both directions one lookup each; see `dp_tables::conntrack`).
//!
//! * **Untracked** (`--conntrack stateful` only): a packet no stateful service can apply to —
//!   between interfaces without firewall rules, VIP or NAT — goes straight on without a flow
//!   (marked so by the node before this one: `untracked_end`, below).
//! * **Found**: the flow's TCP state and expiry are updated; a flow the firewall refused is
//!   dropped, one decided under an older firewall generation goes to [`Firewall`](super::Firewall)
//!   again, a translated one to [`Nat`](super::Nat), the rest straight on (encapsulation or
//!   rewrite): an established, untranslated flow visits no other stateful node. A flow that no
//!   longer holds after an interface change (an end deleted — a VM moved to another host — or a
//!   NAT, VIP or balancer target gone) is closed on its next packet, which starts a new flow
//!   under the current tables.
//! * **ICMP errors** are matched to the flow of the packet they quote (never a flow of their
//!   own), so they reach the VM that caused them, translated back ([`Nat`](super::Nat)).
//! * **New**: the flow is made here, with its translation decided once, as dpservice's conntrack,
//!   dnat and snat nodes decide it:
//!   - a VM's packet to a VIP of its VNI: destination NAT to the VIP's interface;
//!   - a VM's packet on a default route (`route_public`): source NAT by the interface's NAT
//!     (address and a port of its range) or else its VIP (address only); an IPv6 packet to
//!     64:ff9b::/96 is translated to IPv4 by the interface's NAT (NAT64);
//!   - a packet from the underlay for a VIP: destination NAT to the interface;
//!   - a packet from the underlay for a NAT address that is no flow's reply: to
//!     [`PacketRelay`](super::PacketRelay) (a neighbor NAT's range, or dropped) — it never
//!     starts a flow;
//!   - a packet from the underlay for a load balancer: a target chosen by Maglev, kept in the
//!     flow ([`Lb`](super::Lb)); ICMP to a balancer goes to [`Lb`](super::Lb) without a flow (an
//!     echo is answered, an error about a flow this host has not seen follows the Maglev
//!     choice for the flow it quotes).
//!
//!   Then it goes to the firewall, which decides it. A TCP RST never starts a flow, nor does a
//!   TCP segment other than a SYN when a NAT port would be allocated for it (`no_flow`). A full
//!   table drops the new flow (`flow_table_full`); live flows are never evicted.
//!
//! NAT ports: the first candidate is a stable hash of the inside address and port (so an inside
//! endpoint keeps its public port), then the next port whose reply key is free — which is
//! dpservice's rule (a port may serve many flows, one per destination). With several workers a
//! worker only takes the ports it owns ([`affinity::nat_port_owner`]), so the reply, steered by
//! its destination port, meets the flow. A range with no free port is `nat_ports_exhausted`,
//! logged at most once a second.
//!
//! Aging: every tick sweeps a bounded share of the table ([`SWEEP_PER_TICK`] slots), removing
//! expired flows and flows whose interface, VIP or NAT is gone.

use dp_packet::{nat, nat64, FlowKey, IpProtocol, Ipv4Addr, Ipv6Addr};
use dp_tables::{
    ConnKey, Direction, FirewallVerdict, Flow, FlowId, FlowTable, Iface, InsertError, NatRange,
    PublicTarget, TcpSegment, TcpState, Translation,
};

use crate::affinity;
use crate::buffer::{FlowRef, Origin, PacketBuf};
use crate::config::ConntrackMode;
use crate::drop::DropReason;
use crate::graph::{NodeId, BATCH_SIZE};
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

/// Flow slots the sweep looks at per tick (100 ms): a table of a million flows is swept in
/// under two seconds, at a few hundred microseconds of work per tick.
pub const SWEEP_PER_TICK: usize = 65_536;

/// How often the sweep runs.
pub const SWEEP_INTERVAL_NS: u64 = 100_000_000;

/// How often a full NAT range is logged (per worker).
const EXHAUSTED_LOG_INTERVAL_NS: u64 = 1_000_000_000;

/// How many packets ahead of the lookup the flow a packet will find is prefetched (its index
/// slot was prefetched for the whole batch before).
const PREFETCH_FLOW_AHEAD: usize = 4;

#[derive(Debug)]
pub struct Conntrack {
    next_sweep_ns: u64,
    tracker: Tracker,
    /// The keys of the batch being looked up and their hashes (computed and prefetched first).
    keys: Box<[ConnKey; BATCH_SIZE]>,
    hashes: [u64; BATCH_SIZE],
}

/// What the per-packet work mutates besides the flow table.
#[derive(Debug, Default)]
struct Tracker {
    last_exhausted_log_ns: Option<u64>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack {
            next_sweep_ns: 0,
            tracker: Tracker::default(),
            keys: Box::new([ConnKey::default(); BATCH_SIZE]),
            hashes: [0; BATCH_SIZE],
        }
    }
}

impl Conntrack {
    /// The batch algorithm of [`Node::process_batch`] over the packets `tracked` selects
    /// (indices below [`BATCH_SIZE`]; the others' verdicts are left as they are).
    #[inline(always)]
    fn track_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
        tracked: impl Fn(usize) -> bool,
    ) {
        let n = pkts.len().min(BATCH_SIZE);
        for (i, ((pkt, key), hash)) in pkts
            .iter()
            .zip(self.keys.iter_mut())
            .zip(self.hashes.iter_mut())
            .enumerate()
        {
            if tracked(i) {
                *hash = read_key(pkt, key, &worker.flows);
                worker.flows.prefetch(*hash);
            }
        }
        // The first packets' flows, which the loop below prefetches for no one.
        for (i, &hash) in self
            .hashes
            .iter()
            .enumerate()
            .take(n.min(PREFETCH_FLOW_AHEAD))
        {
            if tracked(i) {
                worker.flows.prefetch_flow(hash);
            }
        }
        for i in 0..n {
            if i + PREFETCH_FLOW_AHEAD < n && tracked(i + PREFETCH_FLOW_AHEAD) {
                if let Some(&ahead) = self.hashes.get(i + PREFETCH_FLOW_AHEAD) {
                    worker.flows.prefetch_flow(ahead);
                }
            }
            if !tracked(i) {
                continue;
            }
            let (Some(pkt), Some(verdict), Some(key), Some(&hash)) = (
                pkts.get_mut(i),
                verdicts.get_mut(i),
                self.keys.get(i),
                self.hashes.get(i),
            ) else {
                break;
            };
            *verdict = self.tracker.track(pkt, key, hash, ctx, worker);
        }
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()).skip(n) {
            let (key, hash) = conn_key(pkt, &worker.flows);
            *verdict = self.tracker.track(pkt, &key, hash, ctx, worker);
        }
    }
}

impl Node for Conntrack {
    const NAME: &'static str = "conntrack";
    const NEXT: &'static [NodeId] = &[
        NodeId::Firewall,
        NodeId::Nat,
        NodeId::PacketRelay,
        NodeId::Lb,
        NodeId::IpipEncap,
        NodeId::L2Rewrite,
    ];

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        if ctx.config.conntrack == ConntrackMode::Stateful && pkt.meta.stateless_ends {
            return untracked_on(pkt);
        }
        let (key, hash) = conn_key(pkt, &worker.flows);
        self.tracker.track(pkt, &key, hash, ctx, worker)
    }

    /// Keys and hashes first, for the whole batch, each lookup's index slot prefetched; then
    /// the lookups, each prefetching the flow of a packet a few places ahead: in a table of a
    /// million flows (mostly out of cache) the misses of a batch overlap instead of queueing.
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        if ctx.config.conntrack == ConntrackMode::Stateful {
            let untracked = forward_untracked(pkts, verdicts);
            let n = pkts.len();
            if (1..=BATCH_SIZE).contains(&n) && untracked == u64::MAX >> (BATCH_SIZE - n) {
                return;
            }
            if untracked != 0 {
                // Decided once per batch: with `--conntrack all` (the default) the loops below
                // are the same code as before the mode existed.
                let tracked = |i: usize| untracked >> i & 1 == 0;
                self.track_batch(pkts, ctx, worker, verdicts, tracked);
                return;
            }
        }
        self.track_batch(pkts, ctx, worker, verdicts, |_| true);
    }

    fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_sweep_ns)
    }

    fn handle_timeout(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx, _emit: &mut Emit<'_>) {
        self.next_sweep_ns = ctx.now_ns.saturating_add(SWEEP_INTERVAL_NS);
        let tables = ctx.tables;
        worker.flows.sweep(ctx.now_ns, SWEEP_PER_TICK, |flow| {
            !super::nat::still_valid(flow, tables)
        });
    }
}

// The untracked packets of a batch are a bit mask of one word.
const _: () = assert!(BATCH_SIZE <= 64);

/// `--conntrack stateful`: sends on the packets of the batch (its first [`BATCH_SIZE`]) that
/// need no flow — as an accepted, untranslated packet would go — and returns them as a bit mask
/// (bit i: packet i). Out of line: called once per batch, and only in that mode.
#[inline(never)]
fn forward_untracked(pkts: &mut [PacketBuf], verdicts: &mut [Verdict]) -> u64 {
    let mut untracked = 0u64;
    // Both cut to one length first: the zip of equal slices is a plain indexed loop (with
    // `take` on the zip the loop kept its counters on the stack: 31 → 16 instructions per packet).
    let n = pkts.len().min(verdicts.len()).min(BATCH_SIZE);
    let (pkts, verdicts) = (
        pkts.get_mut(..n).unwrap_or_default(),
        verdicts.get_mut(..n).unwrap_or_default(),
    );
    for (i, (pkt, verdict)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
        if pkt.meta.stateless_ends {
            *verdict = untracked_on(pkt);
            untracked |= 1 << i;
        }
    }
    untracked
}

/// Where a packet that needs no flow goes: on, as an accepted, untranslated one, of no flow.
#[inline]
fn untracked_on(pkt: &mut PacketBuf) -> Verdict {
    pkt.parsed.flow_ref = FlowRef::NONE;
    go_on(pkt)
}

// Untracked connections (`--conntrack stateful`). A packet needs no flow when no stateful
// service can apply to it, in either direction of its connection, so that a flow would change
// nothing of what happens to it: every interface of this host at its ends has no firewall
// rule, no VIP and no NAT ([`Iface::is_stateless`]), and
// * from a VM: it is sent from the VM's own address (not an alias or load-balancer prefix: a
//   balanced flow's replies are its reply direction) and not to a VIP of its VNI (destination
//   NAT). A public route does not matter: without a NAT or VIP there is no source NAT, and the
//   replies come back for the VM's own underlay address, untracked too;
// * from the underlay: it came for an interface's own underlay address (not a VIP, NAT or
//   load balancer's).
//
// Such a connection leaves no state: a firewall rule added later decides its next packet as it
// would a new flow's (see docs/architecture.md, "Untracked connections").
//
// The nodes that send packets here decide it, with the functions below, and record it in
// `PacketMeta::stateless_ends`: they hold the sender, the route and the receiver already, and
// keep what is per route with the route they reuse within a batch. Deciding it here instead
// (reading each packet's ports, interfaces and addresses again) cost 92 instructions per
// packet; reading the mark costs 16 (callgrind, local_untracked, one flow).

/// Whether an interface of this host at one end of a packet lets it go untracked as far as
/// that end goes: `--conntrack stateful`, and no stateful service on the interface.
#[inline]
pub(crate) fn untracked_end(ctx: &Ctx<'_>, iface: &Iface) -> bool {
    ctx.config.conntrack == ConntrackMode::Stateful && iface.is_stateless()
}

/// Whether a VM's IPv4 packet to `dst` in `vni` lets it go untracked as far as its destination
/// goes: `dst` is no VIP of the VNI (which would be destination NAT).
#[inline]
pub(crate) fn untracked_dst_v4(tables: &dp_tables::Snapshot, vni: u32, dst: Ipv4Addr) -> bool {
    tables.public.is_empty()
        || !matches!(
            tables.public_target(vni, dst),
            Some(PublicTarget::Vip { .. })
        )
}

/// Reads the packet's key in its VNI into `key`, from the validated header (the flow key is
/// not kept in the packet: a node after this one that needs it reads it again, off the fast
/// path); returns the key's hash in `flows`.
#[inline(always)]
fn read_key(pkt: &PacketBuf, key: &mut ConnKey, flows: &FlowTable) -> u64 {
    let parsed = &pkt.parsed;
    let start = usize::from(parsed.l3_offset);
    let l3 = pkt
        .data()
        .get(start..start + parsed.l3_len as usize)
        .unwrap_or_default();
    key.read_into(parsed.vni, l3, flows.seeds())
}

/// The packet's key and its hash in `flows` (one packet at a time).
#[inline]
fn conn_key(pkt: &PacketBuf, flows: &FlowTable) -> (ConnKey, u64) {
    let mut key = ConnKey::default();
    let hash = read_key(pkt, &mut key, flows);
    (key, hash)
}

impl Tracker {
    /// A packet of a known flow is decided here, inline in the batch loop; anything else goes
    /// to [`Tracker::miss`], out of line (the cold paths inlined here made the frame and the
    /// prologue of every call: 35 instructions per packet).
    #[inline(always)]
    fn track(
        &mut self,
        pkt: &mut PacketBuf,
        key: &ConnKey,
        hash: u64,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Verdict {
        let Some((id, dir, flow)) = worker.flows.find_mut(key, hash) else {
            return self.miss(pkt, key, ctx, worker);
        };
        // Decided under the current firewall generation: compared once here for the three
        // uses below (comparing at each use cost 5 instructions per packet more in callgrind).
        let decided = flow.firewall.generation == ctx.tables.firewall_generation;
        // Interfaces changed since the flow was decided: a flow whose end has gone (a VM
        // deleted or moved to another host) or whose translation no longer holds is made again
        // from this packet, which the lookup routed under the current tables. Deciding the old
        // flow would deny it until the sweep reached it.
        if !decided && !super::nat::still_valid(flow, ctx.tables) {
            return self.remake(pkt, id, key, ctx, worker);
        }
        if key.proto == IpProtocol::TCP {
            if let Some(seg) = tcp_segment(pkt) {
                flow.tcp = flow.tcp.next(dir, seg);
            }
        }
        // A refused flow is not kept alive by its packets: a scan of a firewalled VM must not
        // fill the table with flows that never pass.
        if flow.firewall.accept || !decided {
            flow.expires_ns = ctx
                .now_ns
                .saturating_add(ctx.config.flow_timeouts.of(key.proto, flow.tcp));
        }
        pkt.parsed.flow_ref = FlowRef::new(id, dir);
        next_of(pkt, flow, dir, decided)
    }

    /// A packet of no known flow: an ICMP error (about a flow), or a new flow.
    #[cold]
    #[inline(never)]
    fn miss(
        &mut self,
        pkt: &mut PacketBuf,
        key: &ConnKey,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Verdict {
        pkt.parsed.flow_ref = FlowRef::NONE;
        match icmp_error_key(pkt, key.vni) {
            Some(quoted) => self.icmp_error(pkt, &quoted, ctx, &worker.flows),
            None => self.new_flow(pkt, key, ctx, worker),
        }
    }

    /// A packet of a flow that no longer holds: the flow is closed and the packet starts a new
    /// one.
    #[cold]
    #[inline(never)]
    fn remake(
        &mut self,
        pkt: &mut PacketBuf,
        stale: FlowId,
        key: &ConnKey,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Verdict {
        worker.flows.close(stale);
        self.miss(pkt, key, ctx, worker)
    }

    /// An ICMP error: the flow of the packet it quotes, which it travels against.
    #[cold]
    fn icmp_error(
        &mut self,
        pkt: &mut PacketBuf,
        quoted_reversed: &ConnKey,
        ctx: &Ctx<'_>,
        flows: &FlowTable,
    ) -> Verdict {
        let Some((id, dir)) = flows.find(quoted_reversed, flows.hash(quoted_reversed)) else {
            if pkt.meta.origin == Origin::UnderlayLb {
                // About a flow another balancer host saw: the target is chosen as it was.
                return Verdict::Next(NodeId::Lb);
            }
            return Verdict::Drop(DropReason::IcmpErrorNoFlow);
        };
        let Some(flow) = flows.get(id) else {
            return Verdict::Drop(DropReason::IcmpErrorNoFlow);
        };
        pkt.parsed.flow_ref = FlowRef::new(id, dir);
        after_lookup(pkt, flow, dir, ctx)
    }

    #[cold]
    #[inline(never)]
    fn new_flow(
        &mut self,
        pkt: &mut PacketBuf,
        key: &ConnKey,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
    ) -> Verdict {
        let origin = pkt.meta.origin;
        if origin == Origin::UnderlayNat {
            // No flow of ours has this reply key: a neighbor's range, or nothing.
            return Verdict::Next(NodeId::PacketRelay);
        }
        let segment = if key.proto == IpProtocol::TCP {
            tcp_segment(pkt)
        } else {
            None
        };
        if segment.is_some_and(|s| s.rst) {
            return Verdict::Drop(DropReason::NoFlow);
        }
        let mut flow = Flow::new(*key, key.reversed(), 0);
        match origin {
            Origin::Vm => {
                flow.ports[0] = pkt.meta.in_port;
                if pkt.meta.underlay_dst.is_unspecified() {
                    flow.ports[1] = pkt.meta.out_port;
                }
                if let Err(reason) = self.translate_outbound(pkt, &mut flow, ctx, worker) {
                    return Verdict::Drop(reason);
                }
            }
            Origin::Underlay => flow.ports[1] = pkt.meta.out_port,
            Origin::UnderlayVip => {
                let dst = Ipv4Addr::from(key.dst as u32);
                match ctx.tables.public_target(key.vni, dst) {
                    Some(PublicTarget::Vip { port, private }) if !key.is_v6 => {
                        flow.translation = Translation::DnatVip;
                        flow.reply.src = u128::from(u32::from(private));
                        flow.ports[1] = port;
                    }
                    _ => return Verdict::Drop(DropReason::NatNoFlow),
                }
            }
            Origin::UnderlayNat => return Verdict::Drop(DropReason::NatNoFlow),
            Origin::UnderlayLb => {
                let Some(lb) = ctx.tables.load_balancer_of(key) else {
                    return Verdict::Drop(DropReason::LbNoBalancer);
                };
                if matches!(key.proto, IpProtocol::ICMP | IpProtocol::ICMPV6) {
                    // An echo request is answered, nothing else of ICMP starts a flow.
                    return Verdict::Next(NodeId::Lb);
                }
                if let Err(reason) = super::lb::balance(&mut flow, lb, ctx, &worker.flows) {
                    return Verdict::Drop(reason);
                }
            }
        }
        let rewrites = !matches!(flow.translation, Translation::None | Translation::Lb);
        if rewrites && is_fragment(pkt) {
            return Verdict::Drop(DropReason::NatUnsupported);
        }
        let allocates_port = matches!(flow.translation, Translation::SnatNat | Translation::Nat64);
        if allocates_port && segment.is_some_and(|s| !s.syn || s.ack) {
            return Verdict::Drop(DropReason::NoFlow);
        }
        if let Some(seg) = segment {
            flow.tcp = TcpState::None.next(Direction::Original, seg);
        }
        flow.expires_ns = ctx
            .now_ns
            .saturating_add(ctx.config.flow_timeouts.of(key.proto, flow.tcp));
        flow.firewall = FirewallVerdict::UNDECIDED;
        match worker.flows.insert(flow) {
            Ok(id) => {
                pkt.parsed.flow_ref = FlowRef::new(id, Direction::Original);
                Verdict::Next(NodeId::Firewall)
            }
            Err(InsertError::Full) => Verdict::Drop(DropReason::FlowTableFull),
            Err(InsertError::KeyInUse) => Verdict::Drop(DropReason::FlowKeyInUse),
        }
    }

    /// The translation of a VM's new flow (see the module docs), written into its reply key.
    fn translate_outbound(
        &mut self,
        pkt: &PacketBuf,
        flow: &mut Flow,
        ctx: &Ctx<'_>,
        worker: &WorkerCtx,
    ) -> Result<(), DropReason> {
        let key = flow.original;
        let Some(iface) = ctx.tables.iface(pkt.meta.in_port) else {
            return Ok(());
        };
        let services = &iface.services;
        if !key.is_v6 {
            let dst = Ipv4Addr::from(key.dst as u32);
            if let Some(PublicTarget::Vip { port, private }) =
                ctx.tables.public_target(key.vni, dst)
            {
                flow.translation = Translation::DnatVip;
                flow.reply.src = u128::from(u32::from(private));
                flow.ports[1] = port;
                return Ok(());
            }
            if !pkt.meta.route_public {
                return Ok(());
            }
            if let Some(range) = services.nat {
                let mut reply = flow.reply;
                reply.dst = u128::from(u32::from(range.ip));
                let port = self.allocate_port(&key, reply, range, ctx, worker)?;
                set_reply_port(&mut reply, port);
                flow.reply = reply;
                flow.translation = Translation::SnatNat;
            } else if let Some(vip) = services.vip {
                flow.reply.dst = u128::from(u32::from(vip));
                flow.translation = Translation::SnatVip;
            }
            return Ok(());
        }
        let dst = Ipv6Addr::from(key.dst);
        let Some(range) = services.nat else {
            return Ok(());
        };
        if !pkt.meta.route_public || !nat64::is_nat64(dst) {
            return Ok(());
        }
        let proto = match key.proto {
            // An echo request (identifier 0 included: the key alone cannot tell it from
            // another ICMPv6 message, whose ports are 0 too).
            IpProtocol::ICMPV6 if key.src_port == key.dst_port && is_echo_request_v6(pkt) => {
                IpProtocol::ICMP
            }
            IpProtocol::TCP | IpProtocol::UDP => key.proto,
            _ => return Err(DropReason::NatUnsupported),
        };
        let mut reply = ConnKey {
            src: u128::from(u32::from(nat64::extract(dst))),
            dst: u128::from(u32::from(range.ip)),
            vni: key.vni,
            src_port: key.dst_port,
            dst_port: key.src_port,
            proto,
            is_v6: false,
        };
        let port = self.allocate_port(&key, reply, range, ctx, worker)?;
        set_reply_port(&mut reply, port);
        flow.reply = reply;
        flow.translation = Translation::Nat64;
        Ok(())
    }

    /// A port of `range` for the inside endpoint of `inside` whose reply key (`reply` with that
    /// port) is free, owned by this worker; see the module docs.
    fn allocate_port(
        &mut self,
        inside: &ConnKey,
        reply: ConnKey,
        range: NatRange,
        ctx: &Ctx<'_>,
        worker: &WorkerCtx,
    ) -> Result<u16, DropReason> {
        let len = u32::from(range.len());
        if len == 0 {
            return Err(DropReason::NatPortsExhausted);
        }
        let endpoint = ConnKey {
            dst: 0,
            dst_port: 0,
            proto: IpProtocol(0),
            ..*inside
        };
        let start = (endpoint.hash() >> 32) as u32 % len;
        let (index, count) = (worker.index(), worker.count());
        for i in 0..len {
            let port = range.min_port + ((start + i) % len) as u16;
            if count > 1 && affinity::nat_port_owner(port, count) != index {
                continue;
            }
            let mut candidate = reply;
            set_reply_port(&mut candidate, port);
            if !worker.flows.contains(&candidate) {
                return Ok(port);
            }
        }
        let logged_recently = self
            .last_exhausted_log_ns
            .is_some_and(|t| ctx.now_ns < t.saturating_add(EXHAUSTED_LOG_INTERVAL_NS));
        if !logged_recently {
            self.last_exhausted_log_ns = Some(ctx.now_ns);
            tracing::warn!(
                nat_ip = %range.ip,
                min_port = range.min_port,
                max_port = range.max_port,
                vni = inside.vni,
                "NAT port range is full for this destination"
            );
        }
        Err(DropReason::NatPortsExhausted)
    }
}

/// Puts the NAT port into a reply key: the destination port, and for an ICMP echo (whose key
/// holds the identifier in both ports) the source port too.
#[inline]
fn set_reply_port(reply: &mut ConnKey, port: u16) {
    reply.dst_port = port;
    if matches!(reply.proto, IpProtocol::ICMP | IpProtocol::ICMPV6) {
        reply.src_port = port;
    }
}

/// What a packet of a known flow does next.
///
/// A source-NAT flow's replies are taken from the underlay (the NAT's or VIP's underlay
/// address) only: a VM of this host sending to the public address is routed as any packet (to
/// the router, which sends it back to that address), as in dpservice, where such a packet takes
/// the route too.
#[inline]
fn after_lookup(pkt: &PacketBuf, flow: &Flow, dir: Direction, ctx: &Ctx<'_>) -> Verdict {
    let decided = flow.firewall.generation == ctx.tables.firewall_generation;
    next_of(pkt, flow, dir, decided)
}

/// [`after_lookup`], told whether the flow was decided under the current firewall generation.
#[inline(always)]
fn next_of(pkt: &PacketBuf, flow: &Flow, dir: Direction, decided: bool) -> Verdict {
    if !decided {
        return Verdict::Next(NodeId::Firewall);
    }
    if !flow.firewall.accept {
        return Verdict::Drop(DropReason::FirewallDenied);
    }
    match flow.translation {
        Translation::None => go_on(pkt),
        Translation::Lb => Verdict::Next(NodeId::Lb),
        Translation::SnatNat | Translation::SnatVip | Translation::Nat64
            if dir == Direction::Reply && pkt.meta.origin == Origin::Vm =>
        {
            go_on(pkt)
        }
        _ => Verdict::Next(NodeId::Nat),
    }
}

/// Where an accepted, untranslated packet goes: encapsulated when a remote route set its
/// underlay destination, else rewritten for its VM port.
#[inline]
pub(crate) fn go_on(pkt: &PacketBuf) -> Verdict {
    if pkt.meta.underlay_dst.is_unspecified() {
        Verdict::Next(NodeId::L2Rewrite)
    } else {
        Verdict::Next(NodeId::IpipEncap)
    }
}

/// The TCP flags of a packet with a TCP header (not a later fragment).
#[inline]
fn tcp_segment(pkt: &PacketBuf) -> Option<TcpSegment> {
    let l4 = usize::from(pkt.parsed.l4_offset);
    if l4 == 0 || is_later_fragment(pkt) {
        return None;
    }
    let flags = *pkt.data().get(l4 + 13)?;
    Some(TcpSegment {
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
    })
}

/// Whether an ICMPv6 packet is an echo request.
#[inline]
fn is_echo_request_v6(pkt: &PacketBuf) -> bool {
    let l4 = usize::from(pkt.parsed.l4_offset);
    l4 != 0 && pkt.data().get(l4) == Some(&128)
}

/// Whether an IPv4 packet is a fragment (first or later).
#[inline]
fn is_fragment(pkt: &PacketBuf) -> bool {
    ipv4_frag_word(pkt).is_some_and(|w| w & 0x3fff != 0)
}

/// Whether an IPv4 packet is a fragment other than the first (no L4 header).
#[inline]
fn is_later_fragment(pkt: &PacketBuf) -> bool {
    ipv4_frag_word(pkt).is_some_and(|w| w & 0x1fff != 0)
}

/// The IPv4 flags-and-fragment-offset word, for an IPv4 packet.
#[inline]
fn ipv4_frag_word(pkt: &PacketBuf) -> Option<u16> {
    let l3 = usize::from(pkt.parsed.l3_offset);
    let data = pkt.data();
    if data.get(l3).is_none_or(|&v| v >> 4 != 4) {
        return None;
    }
    dp_packet::bytes::read_u16_be(data, l3 + 6)
}

/// For an ICMP or ICMPv6 error, the key of the flow it is about, as a packet of that flow
/// travelling the same way as the error would carry (the quoted packet, reversed).
#[inline]
pub(crate) fn icmp_error_key(pkt: &PacketBuf, vni: u32) -> Option<ConnKey> {
    let l3_offset = usize::from(pkt.parsed.l3_offset);
    let l3_end = l3_offset + pkt.parsed.l3_len as usize;
    let l3 = pkt.data().get(l3_offset..l3_end)?;
    let version = l3.first()? >> 4;
    let quoted = if version == 4 {
        let q = nat::icmp_error_quote_v4(l3)?;
        FlowKey {
            src: u128::from(u32::from(q.src)),
            dst: u128::from(u32::from(q.dst)),
            proto: q.proto,
            is_v6: false,
            src_port: q.src_port,
            dst_port: q.dst_port,
        }
    } else {
        let q = nat::icmp_error_quote_v6(l3)?;
        FlowKey {
            src: u128::from(q.src),
            dst: u128::from(q.dst),
            proto: q.proto,
            is_v6: true,
            src_port: q.src_port,
            dst_port: q.dst_port,
        }
    };
    Some(ConnKey::new(vni, &quoted).reversed())
}
