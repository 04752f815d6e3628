//! Last node of the local path: gives a routed packet the Ethernet header of its destination port
//! (our MAC on that port as source, the VM's MAC as destination) and sends it.
//!
//! dpservice fills the Ethernet header in its lookup nodes (`dp_fill_ether_hdr`); the checks here are
//! the ones it makes implicitly by only routing to started ports.

use dp_tables::PortId;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::node::{Ctx, Node, Verdict};
use crate::port_table::PortKind;

use super::common::ETH_HEADER_LEN;

#[derive(Debug, Default)]
pub struct L2Rewrite;

impl Node for L2Rewrite {
    const NAME: &'static str = "l2_rewrite";

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Verdict {
        let out = pkt.meta.out_port;
        match destination(ctx, out) {
            Ok(eth) => rewrite(pkt, &eth, out),
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// The destination port's state is read once per run of packets to the same port.
    #[inline]
    fn process_batch(&mut self, pkts: &mut [PacketBuf], ctx: &Ctx<'_>, verdicts: &mut [Verdict]) {
        let mut cached: Option<(PortId, Result<[u8; 12], DropReason>)> = None;
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            let out = pkt.meta.out_port;
            // Used in place, not copied out: a copy of the 12 bytes through the stack per packet
            // stalls on store forwarding.
            if cached.as_ref().is_none_or(|(port, _)| *port != out) {
                cached = Some((out, destination(ctx, out)));
            }
            *verdict = match &cached {
                Some((_, Ok(eth))) => rewrite(pkt, eth, out),
                Some((_, Err(reason))) => Verdict::Drop(*reason),
                None => Verdict::Drop(DropReason::DstPortDown),
            };
        }
    }
}

/// The two MACs of a frame out of `out` (the VM's, ours), or why nothing goes there.
#[inline]
fn destination(ctx: &Ctx<'_>, out: PortId) -> Result<[u8; 12], DropReason> {
    let port = ctx.ports.get(out).ok_or(DropReason::DstPortDown)?;
    if port.kind != PortKind::Vf || !port.link_up() || ctx.tables.iface(out).is_none() {
        return Err(DropReason::DstPortDown);
    }
    let peer = port.peer_mac().ok_or(DropReason::NoPeerMac)?;
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&peer.0);
    macs[6..].copy_from_slice(&port.own_mac.0);
    Ok(macs)
}

#[inline(always)]
fn rewrite(pkt: &mut PacketBuf, macs: &[u8; 12], out: PortId) -> Verdict {
    match pkt.data_mut().first_chunk_mut::<ETH_HEADER_LEN>() {
        Some(eth) => {
            eth[..12].copy_from_slice(macs);
            Verdict::Tx(out)
        }
        None => Verdict::Drop(DropReason::EthTruncated),
    }
}
