//! Choosing the uplink an encapsulated packet leaves by, and the flow hash behind that choice and
//! behind the outer flow label.
//!
//! # Flow hash
//! A 64-bit hash of the inner packet's flow: addresses, protocol and — for TCP, UDP, UDP-Lite and
//! SCTP when the packet is not a fragment — ports. Fragments and other protocols hash on addresses
//! and protocol only, so every piece of a datagram takes the same path. The hash is deterministic
//! (no per-process seed): a flow keeps its uplink and its flow label across restarts and workers.
//! It is built from folded 64×64→128-bit multiplies (as foldhash does): two per IPv4 flow, where the
//! MurmurHash3-style mixing it replaced took four multiplies and twice the instructions.
//!
//! # Uplink choice (dpservice's `dp_multipath_get_pf`, with finer steps)
//! With one uplink everything goes out of pf0. With two, `--wcmp PERCENT` is pf0's share of the
//! flows: a flow whose hash bucket (0..100, from the hash's low 32 bits) is below the percentage
//! prefers pf0, the others pf1. dpservice rounds the share to tenths (a 10-entry table); here it
//! is exact to the percent, and the same for every multiple of 10. 100, the default as in
//! dpservice, keeps everything on pf0 with pf1 as the fail-over.
//!
//! An uplink is usable when its link is up and its router's MAC is known. A flow whose preferred
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

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;

#[inline]
fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE)
}

/// Seeds: arbitrary odd constants (the fractional digits of π). `PORTS_SEED` has bits above
/// bit 40, so a protocol-and-ports word (at most 40 bits) never cancels it to zero.
const ADDR_SEED: u64 = 0x243f_6a88_85a3_08d3;
const PORTS_SEED: u64 = 0x1319_8a2e_0370_7345;
const FINAL_SEED: u64 = 0xa409_3822_299f_31d1;

/// The high and low halves of the 128-bit product, folded together: every bit of either input
/// moves many bits of the output.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The hash of the addresses (already folded to one word) and the protocol-and-ports word.
#[inline(always)]
fn finish(addrs: u64, proto_ports: u64) -> u64 {
    fold_mul(
        fold_mul(addrs ^ ADDR_SEED, proto_ports ^ PORTS_SEED),
        FINAL_SEED,
    )
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, |a| u64::from(u32::from_be_bytes(a)))
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The flow hash of an IPv4 packet (`ip` starts at its header, already validated).
#[inline]
pub(crate) fn flow_hash_v4(ip: &[u8]) -> u64 {
    let Some(h) = ip.first_chunk::<20>() else {
        return 0;
    };
    let proto = h[9];
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    let ports = if has_ports(proto) && !fragment {
        u32_at(ip, ihl)
    } else {
        0
    };
    let addrs = u64::from_be_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    finish(addrs, (u64::from(proto) << 32) | ports)
}

/// The flow hash of an IPv6 packet (`ip` starts at its header, already validated). Extension
/// headers are not walked: a packet with one hashes on addresses and its first next header.
#[inline]
pub(crate) fn flow_hash_v6(ip: &[u8]) -> u64 {
    let proto = ip.get(6).copied().unwrap_or(0);
    let ports = if has_ports(proto) { u32_at(ip, 40) } else { 0 };
    // The four address words folded pairwise into one; the version is in the ports word (bit 40)
    // so an IPv6 flow never hashes like an IPv4 one by construction.
    let src = fold_mul(u64_at(ip, 8) ^ ADDR_SEED, u64_at(ip, 16) ^ PORTS_SEED);
    let dst = fold_mul(u64_at(ip, 24) ^ FINAL_SEED, u64_at(ip, 32) ^ PORTS_SEED);
    finish(
        src ^ dst.rotate_left(32),
        (1 << 40) | (u64::from(proto) << 32) | ports,
    )
}

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
    Some(Uplink::new(port, e.own_mac, e.peer_mac()?))
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
        for i in 0..10_000u64 {
            let h = finish(i, i >> 3);
            let l = flow_label(h);
            assert!(l != 0 && l < (1 << 20));
            assert!(wcmp_bucket(h) < 100);
        }
        assert_eq!(flow_label(0), 1);
        assert_eq!(wcmp_bucket(u64::MAX), 99);
    }

    #[test]
    fn fragments_and_portless_protocols_ignore_ports() {
        let mut udp = vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        udp.extend_from_slice(&[0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0]);
        let base = flow_hash_v4(&udp);
        let mut other_port = udp.clone();
        other_port[21] ^= 1;
        assert_ne!(flow_hash_v4(&other_port), base);
        // As a first fragment (MF set) the ports no longer count.
        let mut frag = udp.clone();
        frag[6] = 0x20;
        let mut frag_other = other_port.clone();
        frag_other[6] = 0x20;
        assert_eq!(flow_hash_v4(&frag), flow_hash_v4(&frag_other));
        // DF alone is not a fragment.
        let mut df = udp.clone();
        df[6] = 0x40;
        assert_eq!(flow_hash_v4(&df), base);
    }
}
