//! `dp-bench`: the benchmarks of the dpservice-rs daemon, binaries `dpservice-bench` (the packet
//! path on memory ports) and `dpservice-cp-bench` (the gRPC control plane while a worker
//! forwards). They drive the daemon's own worker loop through the `dpservice` library.
//!
//! This library is what both binaries share: test frames and the thread CPU clock.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::net::Ipv4Addr;

use dp_packet::checksum;
use dp_packet::{IpProtocol, MacAddr};

/// A UDP frame of `size` bytes (Ethernet included, at least 42) from `src_mac`/`src`:`src_port`
/// to `dst_mac`/`dst` port 9, TTL 64, both checksums filled, payload zero.
pub fn udp_frame(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    size: usize,
) -> Vec<u8> {
    let size = size.clamp(HEADERS_LEN, 14 + usize::from(u16::MAX));
    let payload = vec![0u8; size - HEADERS_LEN];
    udp_datagram(dst_mac, src_mac, (src, src_port), (dst, 9), &payload)
}

/// Ethernet, IPv4 (no options) and UDP headers.
const HEADERS_LEN: usize = 14 + 20 + 8;

/// A UDP datagram carrying `payload` from `src_mac`/`src` to `dst_mac`/`dst` (address, port),
/// in an Ethernet frame; TTL 64, both checksums filled. The payload must leave the IPv4 total
/// length within 16 bits (it is cut to fit).
pub fn udp_datagram(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    (src, src_port): (Ipv4Addr, u16),
    (dst, dst_port): (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let payload = payload.get(..usize::from(u16::MAX) - 28).unwrap_or(payload);
    let mut f = vec![0u8; HEADERS_LEN];
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (20 + 8 + payload.len()) as u16; // ≤ u16::MAX by the cut above
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum::finish(checksum::data(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    f[34..36].copy_from_slice(&src_port.to_be_bytes());
    f[36..38].copy_from_slice(&dst_port.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(payload);
    let c = checksum::transport_v4(&src, &dst, IpProtocol::UDP, &f[34..]);
    let c = if c == 0 { 0xffff } else { c };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

/// CPU time of the calling thread in nanoseconds (0 if the clock cannot be read).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; the result is checked.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_is_valid() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let f = udp_frame(MacAddr([2; 6]), MacAddr([4; 6]), src, dst, 1000, 64);
        assert_eq!(f.len(), 64);
        assert_eq!(checksum::finish(checksum::data(&f[14..34])), 0);
        assert_eq!(
            checksum::transport_v4(&src, &dst, IpProtocol::UDP, &f[34..]),
            0,
            "a filled UDP checksum verifies to 0"
        );
        assert!(thread_cpu_ns() > 0);
    }

    #[test]
    fn udp_datagram_carries_its_payload_and_ports() {
        let (src, dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        let f = udp_datagram(
            MacAddr([0xff; 6]),
            MacAddr([2; 6]),
            (src, 68),
            (dst, 67),
            b"hi!",
        );
        assert_eq!(f.len(), 42 + 3);
        assert_eq!(&f[42..], b"hi!");
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 20 + 8 + 3); // IPv4 total length
        assert_eq!(&f[34..40], &[0, 68, 0, 67, 0, 11]); // ports, UDP length
        assert_eq!(checksum::finish(checksum::data(&f[14..34])), 0);
        assert_eq!(
            checksum::transport_v4(&src, &dst, IpProtocol::UDP, &f[34..]),
            0
        );
        // udp_frame is the same with a zero payload to port 9.
        let g = udp_frame(MacAddr([0xff; 6]), MacAddr([2; 6]), src, dst, 68, 45);
        let zeros = udp_datagram(
            MacAddr([0xff; 6]),
            MacAddr([2; 6]),
            (src, 68),
            (dst, 9),
            &[0; 3],
        );
        assert_eq!(g, zeros);
    }
}
