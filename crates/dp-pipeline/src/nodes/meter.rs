//! Rate limits what a VM sends: CreateInterface's `metering_parameters` (dpservice's
//! `total_flow_rate_cap` and `public_flow_rate_cap`), as token buckets
//! ([`dp_tables::TokenBucket`]) told the graph's time.
//!
//! * **Where.** Between the lookups and [`Handoff`](super::Handoff) / [`Conntrack`](super::Conntrack):
//!   every routed packet from a VM, validated, with its route known, on the worker that
//!   received it from the VM's port. The uplink's traffic never comes here.
//! * **Only when some interface is metered.** The lookups send to connection tracking as
//!   before; while any interface of the snapshot has a meter, the graph redirects those
//!   verdicts here after their batch ([`via_meter_all`], one check per batch, as the
//!   hand-off's): an unmetered dataplane never runs this node.
//! * **What.** `total` applies to all of it (VM to VM on this host included); `public`, in
//!   addition, to packets over a public route ([`PacketMeta::route_public`](crate::PacketMeta):
//!   a default route out of the VNI — what leaves through NAT or a VIP; dpservice's
//!   `DP_FLOW_SOUTH_NORTH`). A packet must fit both buckets and then spends from both; a
//!   refused one spends nothing and is dropped as `meter_total_exceeded` or
//!   `meter_public_exceeded`.
//! * **Bytes.** The IP length ([`Parsed::l3_len`](crate::buffer::Parsed), dpservice's
//!   `l3_payload_length`: the frame less its Ethernet header); a GSO superframe counts in full.
//! * **State.** A bucket pair per port, per worker (this node's fields), allocated with the
//!   graph; a port's buckets start full again when its configuration (or the number of
//!   workers) changes. No allocation, no lock, no atomic per packet.
//! * **Several workers.** A VM's TAP queues are shared out over the workers (worker k polls
//!   queue k of every port), so each worker meters its share: rate / N. A flow stays on one
//!   queue, so with N workers one flow gets at most rate / N; the VM's total never exceeds
//!   the rate (docs/compatibility.md, "Metering").

use std::sync::Arc;

use dp_tables::meter::{burst_bytes, BYTES_PER_MBIT};
use dp_tables::{MeterConfig, PortId, Snapshot, TokenBucket};

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

/// The buckets of one port on this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortMeter {
    /// The configuration and worker count the buckets were made for.
    config: MeterConfig,
    workers: usize,
    total: TokenBucket,
    public: TokenBucket,
}

impl PortMeter {
    const NONE: PortMeter = PortMeter {
        config: MeterConfig {
            total_mbps: 0,
            public_mbps: 0,
        },
        workers: 1,
        total: TokenBucket::UNLIMITED,
        public: TokenBucket::UNLIMITED,
    };

    fn new(config: MeterConfig, workers: usize, now_ns: u64) -> PortMeter {
        let bucket = |mbps: u64| {
            let rate = mbps.saturating_mul(BYTES_PER_MBIT) / workers.max(1) as u64;
            TokenBucket::new(rate, burst_bytes(rate), now_ns)
        };
        PortMeter {
            config,
            workers,
            total: bucket(config.total_mbps),
            public: bucket(config.public_mbps),
        }
    }
}

#[derive(Debug, Default)]
pub struct Meter {
    /// Per port (index: port id).
    ports: Vec<PortMeter>,
    /// Whether any interface of the snapshot with this generation and interface table is
    /// metered ([`Meter::active`]).
    seen: Option<(u64, usize)>,
    any_metered: bool,
}

impl Meter {
    /// The node of a graph of `port_count` ports: every port's buckets, allocated now.
    pub fn new(port_count: usize) -> Self {
        Meter {
            ports: vec![PortMeter::NONE; port_count],
            seen: None,
            any_metered: false,
        }
    }

    /// Whether any interface is metered in `tables`: looked at once per snapshot (per
    /// generation and interface table), then one compare per call.
    #[inline]
    pub(crate) fn active(&mut self, tables: &Snapshot) -> bool {
        let key = (
            tables.generation,
            Arc::as_ptr(&tables.ifaces_by_port) as usize,
        );
        if self.seen != Some(key) {
            self.seen = Some(key);
            self.any_metered = tables
                .ifaces_by_port
                .iter()
                .flatten()
                .any(|i| i.meter.is_metered());
        }
        self.any_metered
    }

    /// The port's buckets for this run of packets, remade when its configuration changed;
    /// `None` when it is not metered.
    #[inline]
    fn port(&mut self, ctx: &Ctx<'_>, port: PortId, workers: usize) -> Option<&mut PortMeter> {
        let config = ctx.tables.iface(port).map(|i| i.meter).unwrap_or_default();
        let slot = self.ports.get_mut(usize::from(port))?;
        if slot.config != config || slot.workers != workers {
            *slot = PortMeter::new(config, workers, ctx.now_ns);
        }
        config.is_metered().then_some(slot)
    }
}

impl Node for Meter {
    const NAME: &'static str = "meter";
    // `Handoff`: with several workers the graph sends what goes on to connection tracking
    // there first (`NodeId::via_handoff`), as it does for the lookups.
    const NEXT: &'static [NodeId] = &[NodeId::Handoff, NodeId::Conntrack];

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        let now = ctx.now_ns;
        match self.port(ctx, pkt.meta.in_port, worker.count()) {
            None => Verdict::Next(NodeId::Conntrack),
            Some(m) => meter(m, pkt, now),
        }
    }

    /// Run by run of packets from one port: its configuration is looked at once per run.
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        let now = ctx.now_ns;
        let workers = worker.count();
        let mut run: Option<(PortId, bool)> = None;
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            let port = pkt.meta.in_port;
            let metered = match run {
                Some((p, metered)) if p == port => metered,
                _ => {
                    let metered = self.port(ctx, port, workers).is_some();
                    run = Some((port, metered));
                    metered
                }
            };
            *verdict = match self.ports.get_mut(usize::from(port)).filter(|_| metered) {
                None => Verdict::Next(NodeId::Conntrack),
                Some(m) => meter(m, pkt, now),
            };
        }
    }
}

/// One packet through its port's buckets.
#[inline]
fn meter(m: &mut PortMeter, pkt: &PacketBuf, now_ns: u64) -> Verdict {
    let bytes = u64::from(pkt.parsed.l3_len);
    let public = pkt.meta.route_public && m.public.is_limited();
    m.total.refill(now_ns);
    if !m.total.covers(bytes) {
        return Verdict::Drop(DropReason::MeterTotalExceeded);
    }
    if public {
        m.public.refill(now_ns);
        if !m.public.take(bytes) {
            return Verdict::Drop(DropReason::MeterPublicExceeded);
        }
    }
    m.total.take(bytes);
    Verdict::Next(NodeId::Conntrack)
}

/// A lookup's decided verdicts, through the meter while any interface is metered: what would
/// go on to connection tracking goes to [`Meter`] first. The graph calls it after the batch of
/// a node that declares the edge to `meter` ([`NodeId::via_meter`]), before the hand-off's
/// redirect ([`super::via_handoff_all`]), which then applies to the meter's own verdicts.
#[inline(never)]
pub(crate) fn via_meter_all(verdicts: &mut [Verdict]) {
    for verdict in verdicts {
        if *verdict == Verdict::Next(NodeId::Conntrack) {
            *verdict = Verdict::Next(NodeId::Meter);
        }
    }
}
