//! Choosing the uplink an encapsulated packet leaves by, and the flow hash behind that choice and
//! behind the outer flow label.
//!
//! # Flow hash
//! The 64-bit hash of the inner packet's flow, [`FlowKey::hash`](dp_packet::FlowKey::hash):
//! addresses, protocol and — for TCP, UDP, UDP-Lite and SCTP when the packet is not a fragment —
//! ports, from the flow key classify read ([`PacketMeta::flow_hash`](crate::PacketMeta::flow_hash)).
//! Deterministic, so a flow keeps its uplink and its flow label across restarts and workers.
//!
//! # Uplink choice (dpservice's `dp_multipath_get_pf`, with finer steps)
//! With one uplink everything goes out of pf0. With two, `--wcmp PERCENT` is pf0's share of the
//! flows: a flow whose hash bucket (0..100, from the hash's low 32 bits) is below the percentage
//! prefers pf0, the others pf1. dpservice rounds the share to tenths (a 10-entry table); here it
//! is exact to the percent, and the same for every multiple of 10. 100, the default as in
//! dpservice, keeps everything on pf0 with pf1 as the fail-over.
//!
//! An uplink is usable when its link is up and its router's MAC is known — or, when the MAC comes
//! from the kernel's neighbour table ([`DpConfig::router_mac_from_kernel`](crate::DpConfig), TAP
//! uplinks without `--router`), whenever its link is up, as in dpservice (whose
//! `dp_multipath_get_pf` looks at link state only): until the kernel has a router entry the
//! frames go to 00:00:00:00:00:00, the MAC dpservice's zeroed port holds then. A flow whose preferred
//! uplink is unusable takes the other one; when neither is usable the packet is dropped as
//! [`NoRouterMac`](DropReason::NoRouterMac) if some link is up (its router not resolved yet) or
//! [`UplinkDown`](DropReason::UplinkDown) if none is. The state is read from the
//! [`PortTable`](crate::PortTable) once per batch ([`UplinkChoice::read`]), so flows move with the
//! first batch after the worker records a link change.

use dp_packet::MacAddr;
use dp_tables::PortId;

use crate::drop::DropReason;
use crate::node::Ctx;
use crate::port_table::{PortEntry, PortKind};

/// pf0 and pf1: the uplinks are ports 0 and 1 (see `docs/architecture.md`).
pub(crate) const MAX_UPLINKS: usize = 2;

/// The outer flow label of a flow (RFC 6437/6438: 20 bits, never zero for a tunnelled flow).
#[inline]
pub(crate) fn flow_label(hash: u64) -> u32 {
    match (hash >> 44) as u32 & 0x000f_ffff {
        0 => 1,
        label => label,
    }
}

/// The flow's bucket, 0..100, compared with `--wcmp`.
#[inline]
pub(crate) fn wcmp_bucket(hash: u64) -> u8 {
    ((u64::from(hash as u32) * 100) >> 32) as u8
}

/// The uplink chosen for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Uplink {
    pub port: PortId,
    /// The Ethernet header of a frame out of it: to the router's MAC, from ours, IPv6; padded to
    /// 16 bytes so it is written with one 16-byte move (the padding is overwritten after).
    pub eth: [u8; 16],
}

impl Uplink {
    fn new(port: PortId, own_mac: MacAddr, router_mac: MacAddr) -> Self {
        let mut eth = [0u8; 16];
        eth[..6].copy_from_slice(&router_mac.0);
        eth[6..12].copy_from_slice(&own_mac.0);
        eth[12..14].copy_from_slice(&[0x86, 0xdd]);
        Uplink { port, eth }
    }
}

#[inline]
fn uplink_entry<'a>(ctx: &Ctx<'a>, port: PortId) -> Option<&'a PortEntry> {
    ctx.ports.get(port).filter(|e| e.kind == PortKind::Uplink)
}

#[inline]
fn usable(ctx: &Ctx<'_>, port: PortId) -> Option<Uplink> {
    let e = uplink_entry(ctx, port)?;
    if !e.link_up() {
        return None;
    }
    let router_mac = match e.peer_mac() {
        Some(mac) => mac,
        // dpservice's neighbour MAC before the kernel knows a router: all zeroes.
        None if ctx.config.router_mac_from_kernel => MacAddr([0; 6]),
        None => return None,
    };
    Some(Uplink::new(port, e.own_mac, router_mac))
}

/// The uplinks' state as of one batch, to choose from per flow (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UplinkChoice {
    /// Where a flow goes that prefers pf0 (index 0) or pf1 (index 1), fail-over already applied:
    /// the per-packet choice is one comparison and one index.
    pick: [Result<Uplink, DropReason>; MAX_UPLINKS],
    /// The index into `pick` every flow takes, when the hash does not matter.
    fixed: Option<u8>,
    wcmp_percent: u8,
}

impl Default for UplinkChoice {
    fn default() -> Self {
        UplinkChoice {
            pick: [Err(DropReason::UplinkDown); MAX_UPLINKS],
            fixed: Some(0),
            wcmp_percent: 100,
        }
    }
}

impl UplinkChoice {
    /// Reads the uplinks' link state and router MACs.
    pub(crate) fn read(ctx: &Ctx<'_>) -> Self {
        let any_link_up = (0..MAX_UPLINKS as PortId)
            .filter_map(|p| uplink_entry(ctx, p))
            .any(|e| e.link_up());
        // Why a packet cannot leave when neither uplink is usable.
        let unusable = if any_link_up {
            DropReason::NoRouterMac
        } else {
            DropReason::UplinkDown
        };
        let (pf0, pf1) = (usable(ctx, 0), usable(ctx, 1));
        let pick = [pf0.or(pf1).ok_or(unusable), pf1.or(pf0).ok_or(unusable)];
        let wcmp_percent = ctx.config.wcmp_percent;
        // Buckets are 0..100: a flow prefers pf0 when its bucket is below the percentage.
        let fixed = if uplink_entry(ctx, 1).is_none() || wcmp_percent >= 100 || pick[0] == pick[1] {
            Some(0)
        } else if wcmp_percent == 0 {
            Some(1)
        } else {
            None
        };
        UplinkChoice {
            pick,
            fixed,
            wcmp_percent,
        }
    }

    /// The uplink of what is not a flow's (capture copies): pf0, or pf1 when pf0 cannot send.
    #[inline]
    pub(crate) fn primary(&self) -> Result<&Uplink, DropReason> {
        let [for_pf0, _] = &self.pick;
        for_pf0.as_ref().map_err(|&reason| reason)
    }

    /// The uplink a flow with this hash leaves by.
    #[inline]
    pub(crate) fn select(&self, hash: u64) -> Result<&Uplink, DropReason> {
        let [for_pf0, for_pf1] = &self.pick;
        // When every flow goes the same way (one uplink, --wcmp 100 or 0, or both choices alike
        // after fail-over), a predictable branch: the header write need not wait for the flow
        // hash (a data-dependent select held the encap node up in `perf annotate`).
        let pick = match self.fixed {
            Some(0) => for_pf0,
            Some(_) => for_pf1,
            None if wcmp_bucket(hash) < self.wcmp_percent => for_pf0,
            None => for_pf1,
        };
        pick.as_ref().map_err(|&reason| reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_nonzero_20_bit_and_buckets_below_100() {
        let mut key = dp_packet::FlowKey {
            proto: dp_packet::IpProtocol::UDP,
            ..Default::default()
        };
        for i in 0..10_000u16 {
            key.src_port = i;
            key.dst = u128::from(i >> 3);
            let h = key.hash();
            let l = flow_label(h);
            assert!(l != 0 && l < (1 << 20));
            assert!(wcmp_bucket(h) < 100);
        }
        assert_eq!(flow_label(0), 1);
        assert_eq!(wcmp_bucket(u64::MAX), 99);
    }
}
