//! Last node of the local path: gives a routed packet the Ethernet header of its destination port
//! (our MAC on that port as source, the VM's MAC as destination) and sends it.
//!
//! dpservice fills the Ethernet header in its lookup nodes (`dp_fill_ether_hdr`); the checks here are
//! the ones it makes implicitly by only routing to started ports.

use dp_tables::PortId;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{decide_by_runs, Ctx, Node, Verdict};
use crate::port_table::PortKind;
use crate::worker_ctx::WorkerCtx;

use super::common::ETH_HEADER_LEN;

#[derive(Debug, Default)]
pub struct L2Rewrite;

impl Node for L2Rewrite {
    const NAME: &'static str = "l2_rewrite";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        let out = pkt.meta.out_port;
        match destination(ctx, out) {
            Ok(eth) => rewrite(pkt, &eth, out),
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// The destination port's state is read once per run of packets to the same port.
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        // The MACs are used in place, not copied out: a copy of the header bytes through the
        // stack per packet stalls on store forwarding.
        decide_by_runs(
            pkts,
            verdicts,
            |pkt| pkt.meta.out_port,
            |out| (out, destination(ctx, out)),
            |pkt, (out, macs)| match macs {
                Ok(macs) => rewrite(pkt, macs, *out),
                Err(reason) => Verdict::Drop(*reason),
            },
        );
    }
}

/// The two MACs of a frame out of `out` (the VM's, ours), or why nothing goes there.
/// The two MAC addresses of the Ethernet header, as the words they are written with: bytes 0–7
/// and 8–11 (two stores; a `[u8; 12]` was kept byte by byte on the stack and written with twelve).
#[derive(Clone, Copy, Debug)]
struct Macs {
    head: [u8; 8],
    tail: [u8; 4],
}

#[inline]
fn destination(ctx: &Ctx<'_>, out: PortId) -> Result<Macs, DropReason> {
    let port = ctx.ports.get(out).ok_or(DropReason::DstPortDown)?;
    if port.kind != PortKind::Vf || !port.link_up() || ctx.tables.iface(out).is_none() {
        return Err(DropReason::DstPortDown);
    }
    let peer = port.peer_mac().ok_or(DropReason::NoPeerMac)?;
    let [d0, d1, d2, d3, d4, d5] = peer.0;
    let [s0, s1, s2, s3, s4, s5] = port.own_mac.0;
    Ok(Macs {
        head: [d0, d1, d2, d3, d4, d5, s0, s1],
        tail: [s2, s3, s4, s5],
    })
}

#[inline(always)]
fn rewrite(pkt: &mut PacketBuf, macs: &Macs, out: PortId) -> Verdict {
    match pkt.data_mut().first_chunk_mut::<ETH_HEADER_LEN>() {
        Some(eth) => {
            let (head, rest) = eth.split_at_mut(8);
            head.copy_from_slice(&macs.head);
            if let Some(tail) = rest.first_chunk_mut::<4>() {
                *tail = macs.tail;
            }
            Verdict::Tx(out)
        }
        None => Verdict::Drop(DropReason::EthTruncated),
    }
}
