//! The flow a packet belongs to: its addresses, protocol and ports (or ICMP echo identifier), read
//! once from the headers by the pipeline's input and carried in the packet's metadata, and the two
//! hashes the dataplane derives from it.
//!
//! * [`FlowKey::hash`] is the *directional* hash that picks an uplink and the outer flow label. It
//!   is deterministic (no per-process seed): a flow keeps its uplink and label across restarts and
//!   workers. It is built from folded 64×64→128-bit multiplies (as foldhash does): two per IPv4
//!   flow, where the MurmurHash3-style mixing it replaced took four multiplies and twice the
//!   instructions. Ports count for TCP, UDP, UDP-Lite and SCTP only, so every piece of a
//!   fragmented datagram (whose key has no ports) and every ICMP packet of a pair of hosts takes
//!   one path.
//! * [`FlowKey::symmetric_hash`] is the same for both directions of a flow (the endpoints are
//!   ordered before they are mixed) and counts ICMP echo identifiers: it chooses the worker that
//!   owns a flow's state, so that a request from a VM and the reply from the underlay meet there.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::ip::IpProtocol;

/// What identifies a flow. IPv4 addresses are kept in the low 32 bits of the 128-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address (IPv4 in the low 32 bits).
    pub src: u128,
    /// Destination address (IPv4 in the low 32 bits).
    pub dst: u128,
    /// The L4 protocol (IPv6: the first next header; extension headers are not walked).
    pub proto: IpProtocol,
    /// IPv6 rather than IPv4.
    pub is_v6: bool,
    /// TCP/UDP/UDP-Lite/SCTP source port; the identifier of an ICMP/ICMPv6 echo; else 0 (and 0
    /// in every fragment of a fragmented IPv4 datagram).
    pub src_port: u16,
    /// Destination port; the echo identifier again for ICMP echo; else 0.
    pub dst_port: u16,
}

/// Whether the protocol has 16-bit source and destination ports as the first L4 word.
#[inline(always)]
pub fn has_ports(proto: IpProtocol) -> bool {
    matches!(
        proto,
        IpProtocol::TCP | IpProtocol::UDP | PROTO_SCTP | PROTO_UDPLITE
    )
}

const PROTO_SCTP: IpProtocol = IpProtocol(132);
const PROTO_UDPLITE: IpProtocol = IpProtocol(136);

/// ICMP echo request/reply, ICMPv6 echo request/reply: the types whose identifier names a flow.
const ICMPV4_ECHO: [u8; 2] = [8, 0];
const ICMPV6_ECHO: [u8; 2] = [128, 129];

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

/// The big-endian u32 at `at` as a u64, or 0 past the end.
#[inline(always)]
fn word32(b: &[u8], at: usize) -> u64 {
    crate::bytes::read_u32_be(b, at).map_or(0, u64::from)
}

/// The big-endian u64 at `at`, or 0 past the end.
#[inline(always)]
fn word64(b: &[u8], at: usize) -> u64 {
    crate::bytes::read_u64_be(b, at).unwrap_or(0)
}

/// The first L4 word (two big-endian u16s), or 0 when the payload is shorter.
#[inline(always)]
fn l4_word(l4: &[u8]) -> (u16, u16) {
    match l4.first_chunk::<4>() {
        Some(w) => (
            u16::from_be_bytes([w[0], w[1]]),
            u16::from_be_bytes([w[2], w[3]]),
        ),
        None => (0, 0),
    }
}

/// The ports of a flow key: the protocol's ports, the echo identifier, or none.
#[inline(always)]
fn ports_of(proto: IpProtocol, l4: &[u8], echo_types: [u8; 2]) -> (u16, u16) {
    if has_ports(proto) {
        return l4_word(l4);
    }
    let icmp = if echo_types == ICMPV4_ECHO {
        IpProtocol::ICMP
    } else {
        IpProtocol::ICMPV6
    };
    match l4.first_chunk::<6>() {
        Some(h) if proto == icmp && echo_types.contains(&h[0]) => {
            let id = u16::from_be_bytes([h[4], h[5]]);
            (id, id)
        }
        _ => (0, 0),
    }
}

impl FlowKey {
    /// The key of an IPv4 packet: `l4` is what follows its header; `fragment` says whether the
    /// datagram is a fragment (MF set or an offset), whose pieces have no ports.
    #[inline(always)]
    pub fn ipv4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: IpProtocol,
        fragment: bool,
        l4: &[u8],
    ) -> FlowKey {
        let (src_port, dst_port) = if fragment {
            (0, 0)
        } else {
            ports_of(proto, l4, ICMPV4_ECHO)
        };
        FlowKey {
            src: u128::from(u32::from(src)),
            dst: u128::from(u32::from(dst)),
            proto,
            is_v6: false,
            src_port,
            dst_port,
        }
    }

    /// The key of an IPv6 packet: `l4` is what follows the fixed header, `next_header` its next
    /// header (extension headers are not walked).
    #[inline(always)]
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, l4: &[u8]) -> FlowKey {
        let (src_port, dst_port) = ports_of(next_header, l4, ICMPV6_ECHO);
        FlowKey {
            src: u128::from(src),
            dst: u128::from(dst),
            proto: next_header,
            is_v6: true,
            src_port,
            dst_port,
        }
    }

    /// The key of the validated IP header at the start of `l3` (its version says which):
    /// addresses, protocol and the ports after it, within the length its header gives.
    #[inline]
    pub fn of_header(l3: &[u8]) -> FlowKey {
        match l3.first().map(|b| b >> 4) {
            Some(6) => {
                let ip = crate::Ipv6Packet::new_unchecked(l3);
                let end = crate::ipv6::HEADER_LEN + usize::from(ip.payload_len());
                let l4 = l3.get(crate::ipv6::HEADER_LEN..end).unwrap_or_default();
                FlowKey::ipv6(ip.src_addr(), ip.dst_addr(), ip.next_header(), l4)
            }
            _ => {
                let Some(h) = l3.first_chunk::<20>() else {
                    return FlowKey::default();
                };
                let header_len = usize::from(h[0] & 0x0f) * 4;
                let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
                let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
                let l4 = l3.get(header_len..total_len).unwrap_or_default();
                FlowKey::ipv4(
                    Ipv4Addr::new(h[12], h[13], h[14], h[15]),
                    Ipv4Addr::new(h[16], h[17], h[18], h[19]),
                    IpProtocol(h[9]),
                    fragment,
                    l4,
                )
            }
        }
    }

    /// [`FlowKey::hash`] of [`FlowKey::of_header`]`(l3)`, read straight from the validated
    /// header without building the key: what the stateless paths need (the encapsulation's
    /// uplink and flow label), for 46 instructions where building the key first took 100.
    /// `l3` is the IP packet, cut to the length its header gives (no Ethernet padding).
    #[inline]
    pub fn hash_of_header(l3: &[u8]) -> u64 {
        if l3.first().map(|b| b >> 4) == Some(6) {
            Self::hash_of_ipv6_header(l3)
        } else {
            Self::hash_of_ipv4_header(l3)
        }
    }

    /// [`FlowKey::hash_of_header`] of a validated IPv4 header.
    #[inline(always)]
    pub fn hash_of_ipv4_header(l3: &[u8]) -> u64 {
        let Some(h) = l3.first_chunk::<20>() else {
            return FlowKey::default().hash();
        };
        let proto = h[9];
        let header_len = usize::from(h[0] & 0x0f) * 4;
        let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
        // `l3` ends where the datagram does: ports past it read as none, as in `of_header`.
        let ports = if has_ports(IpProtocol(proto)) && !fragment {
            word32(l3, header_len)
        } else {
            0
        };
        let addrs = u64::from_be_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
        finish(addrs, (u64::from(proto) << 32) | ports)
    }

    /// [`FlowKey::hash_of_header`] of a validated IPv6 header.
    #[inline(always)]
    pub fn hash_of_ipv6_header(l3: &[u8]) -> u64 {
        let proto = l3.get(6).copied().unwrap_or(0);
        let ports = if has_ports(IpProtocol(proto)) {
            word32(l3, crate::ipv6::HEADER_LEN)
        } else {
            0
        };
        let src = fold_mul(word64(l3, 8) ^ ADDR_SEED, word64(l3, 16) ^ PORTS_SEED);
        let dst = fold_mul(word64(l3, 24) ^ FINAL_SEED, word64(l3, 32) ^ PORTS_SEED);
        finish(
            src ^ dst.rotate_left(32),
            (1 << 40) | (u64::from(proto) << 32) | ports,
        )
    }

    /// The source as an IPv4 address (the low 32 bits).
    #[inline(always)]
    pub fn src_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src as u32)
    }

    /// The destination as an IPv4 address (the low 32 bits).
    #[inline(always)]
    pub fn dst_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst as u32)
    }

    /// The source as an IPv6 address.
    #[inline(always)]
    pub fn src_v6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src)
    }

    /// The destination as an IPv6 address.
    #[inline(always)]
    pub fn dst_v6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst)
    }

    /// The key of the other direction.
    #[inline]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The directional flow hash (see the module docs).
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let ports = if has_ports(self.proto) {
            (u64::from(self.src_port) << 16) | u64::from(self.dst_port)
        } else {
            0
        };
        let proto_ports = (u64::from(self.proto.0) << 32) | ports;
        if !self.is_v6 {
            let addrs = (u64::from(self.src as u32) << 32) | u64::from(self.dst as u32);
            return finish(addrs, proto_ports);
        }
        // The four address words folded pairwise into one; the version is in the ports word
        // (bit 40) so an IPv6 flow never hashes like an IPv4 one by construction.
        let src = fold_mul(
            ((self.src >> 64) as u64) ^ ADDR_SEED,
            (self.src as u64) ^ PORTS_SEED,
        );
        let dst = fold_mul(
            ((self.dst >> 64) as u64) ^ FINAL_SEED,
            (self.dst as u64) ^ PORTS_SEED,
        );
        finish(src ^ dst.rotate_left(32), (1 << 40) | proto_ports)
    }

    /// The hash both directions of the flow share (see the module docs).
    #[inline]
    pub fn symmetric_hash(&self) -> u64 {
        // Order the endpoints (address, then port) so that a key and its reverse agree.
        let (lo, hi) = if (self.src, self.src_port) <= (self.dst, self.dst_port) {
            ((self.src, self.src_port), (self.dst, self.dst_port))
        } else {
            ((self.dst, self.dst_port), (self.src, self.src_port))
        };
        let fold = |a: u128| ((a >> 64) as u64) ^ (a as u64).rotate_left(17);
        let addrs = fold_mul(fold(lo.0) ^ ADDR_SEED, fold(hi.0) ^ FINAL_SEED);
        let ports = (u64::from(self.is_v6) << 40)
            | (u64::from(self.proto.0) << 32)
            | (u64::from(lo.1) << 16)
            | u64::from(hi.1);
        finish(addrs, ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src_port: u16, dst_port: u16) -> FlowKey {
        let l4 = [src_port.to_be_bytes(), dst_port.to_be_bytes()].concat();
        FlowKey::ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::UDP,
            false,
            &l4,
        )
    }

    #[test]
    fn keys_read_ports_and_echo_identifiers() {
        let k = udp4(40000, 5000);
        assert_eq!((k.src_port, k.dst_port), (40000, 5000));
        assert_eq!(k.src_v4(), Ipv4Addr::new(10, 0, 0, 1));
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let k = FlowKey::ipv4(a, a, IpProtocol::ICMP, false, &echo);
        assert_eq!((k.src_port, k.dst_port), (0x1234, 0x1234));
        // Not an echo (time exceeded), a fragment, a truncated header: no ports.
        let te = [11, 0, 0, 0, 0x12, 0x34];
        assert_eq!(
            FlowKey::ipv4(a, a, IpProtocol::ICMP, false, &te).src_port,
            0
        );
        let l4 = [0x9c, 0x40, 0x13, 0x88];
        assert_eq!(FlowKey::ipv4(a, a, IpProtocol::UDP, true, &l4).dst_port, 0);
        assert_eq!(
            FlowKey::ipv4(a, a, IpProtocol::UDP, false, &l4[..3]).dst_port,
            0
        );
        let v6 = Ipv6Addr::LOCALHOST;
        let k = FlowKey::ipv6(v6, v6, IpProtocol::ICMPV6, &[129, 0, 0, 0, 0, 7]);
        assert_eq!((k.src_port, k.dst_port, k.is_v6), (7, 7, true));
        assert_eq!(k.dst_v6(), v6);
    }

    #[test]
    fn directional_hash_counts_ports_of_port_protocols_only() {
        let base = udp4(40000, 5000).hash();
        assert_ne!(udp4(40001, 5000).hash(), base);
        assert_ne!(udp4(40000, 5000).reversed().hash(), base);
        let mut icmp_a = udp4(1, 1);
        icmp_a.proto = IpProtocol::ICMP;
        let mut icmp_b = icmp_a;
        icmp_b.src_port = 2;
        icmp_b.dst_port = 2;
        assert_eq!(icmp_a.hash(), icmp_b.hash());
        let mut v6 = udp4(40000, 5000);
        v6.is_v6 = true;
        assert_ne!(v6.hash(), base);
    }

    /// The header hash is the key's hash, for IPv4 and IPv6 headers of every protocol, length
    /// and fragment state (the label an encapsulated flow gets must not depend on the path).
    #[test]
    fn header_hash_is_the_hash_of_the_headers_key() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000u32 {
            let mut v4 = vec![0u8; 20 + (i as usize % 12)];
            for b in v4.iter_mut() {
                *b = next() as u8;
            }
            v4[0] = 0x45 + (i % 3) as u8; // IHL 5..7
            v4[9] = [6, 17, 1, 132, 136, 47][i as usize % 6];
            let total = (20 + next() % 16) as u16;
            v4[2..4].copy_from_slice(&total.to_be_bytes());
            v4.truncate(usize::from(total));
            if i % 4 == 0 {
                v4[6] &= 0xc0; // not a fragment
                v4[7] = 0;
            }
            if i % 7 == 0 {
                let at = 20.min(v4.len() - 1);
                v4[at] = 8; // an echo request, if ICMP
            }
            assert_eq!(
                FlowKey::hash_of_header(&v4),
                FlowKey::of_header(&v4).hash(),
                "IPv4 {v4:02x?}"
            );
            let mut v6 = vec![0u8; 40 + (i as usize % 10)];
            for b in v6.iter_mut() {
                *b = next() as u8;
            }
            v6[0] = 0x60;
            v6[6] = [6, 17, 58, 132, 44][i as usize % 5];
            let payload = (next() % (v6.len() as u64 - 39)) as u16; // within the buffer
            v6[4..6].copy_from_slice(&payload.to_be_bytes());
            v6.truncate(40 + usize::from(payload));
            assert_eq!(
                FlowKey::hash_of_header(&v6),
                FlowKey::of_header(&v6).hash(),
                "IPv6 {v6:02x?}"
            );
        }
    }

    #[test]
    fn symmetric_hash_is_the_same_both_ways_and_tells_flows_apart() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u16 {
            let k = udp4(10_000 + i, 80);
            assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
            seen.insert(k.symmetric_hash());
            let v6 = FlowKey::ipv6(
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i),
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, 1),
                IpProtocol::TCP,
                &[0, 1, 0, 2],
            );
            assert_eq!(v6.symmetric_hash(), v6.reversed().symmetric_hash());
        }
        assert_eq!(seen.len(), 1000);
        // Two workers: the flows split roughly evenly.
        let on_first = (0..1000u16)
            .filter(|&i| udp4(10_000 + i, 80).symmetric_hash().is_multiple_of(2))
            .count();
        assert!((400..600).contains(&on_first), "{on_first}");
    }
}
