//! Last node of the local path: gives a routed packet the Ethernet header of its destination port
//! (our MAC on that port as source, the VM's MAC as destination) and sends it.
//!
//! dpservice fills the Ethernet header in its lookup nodes (`dp_fill_ether_hdr`); the checks here are
//! the ones it makes implicitly by only routing to started ports.

use dp_packet::EthernetFrame;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::node::{Ctx, Node, Verdict};
use crate::port_table::PortKind;

#[derive(Debug, Default)]
pub struct L2Rewrite;

impl Node for L2Rewrite {
    const NAME: &'static str = "l2_rewrite";

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Verdict {
        let out = pkt.meta.out_port;
        let Some(port) = ctx.ports.get(out) else {
            return Verdict::Drop(DropReason::DstPortDown);
        };
        if port.kind != PortKind::Vf || !port.link_up() || ctx.tables.iface(out).is_none() {
            return Verdict::Drop(DropReason::DstPortDown);
        }
        let Some(peer) = port.peer_mac() else {
            return Verdict::Drop(DropReason::NoPeerMac);
        };
        let Ok(mut frame) = EthernetFrame::new_checked(pkt.data_mut()) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        frame.set_dst_addr(peer);
        frame.set_src_addr(port.own_mac);
        Verdict::Tx(out)
    }
}
