//! Finishing TCP/UDP checksums that offload left unfinished, for frames that arrive without the
//! kernel's metadata (AF_XDP): [`ChecksumPolicy::FinishIfPartial`](super::ChecksumPolicy).
//!
//! A sender with checksum offload (Linux `CHECKSUM_PARTIAL`, e.g. a namespace's stack writing
//! through a veth) leaves the pseudo-header sum in the checksum field and expects the device
//! to finish it. Such a frame is recognised by that very value: the field equals the pseudo
//! header's sum **and** the checksum does not verify. Only frames whose field matches (cheap to
//! test: a few additions) are summed in full; a frame with a complete checksum that happens to
//! equal the pseudo-header sum verifies and is left alone. So a correct frame is never changed,
//! and a corrupt one only in the 1-in-65536 case where its field looks partial.
//!
//! Handled: Ethernet with up to two VLAN tags, IPv4 (not fragments) and IPv6 (no extension
//! headers), TCP and UDP. Anything else is left as it is. This is the one place a port looks
//! into a frame, and only for this. The checksum itself is completed by the policy's one routine
//! ([`super::finish_requested`]), as for a frame whose kernel said where it was partial.

use dp_packet::bytes::read_u16_be;
use dp_packet::checksum;
use dp_packet::{EtherType, IpProtocol};
use std::net::{Ipv4Addr, Ipv6Addr};

const ETHERTYPE_IPV4: u16 = EtherType::IPV4.0;
const ETHERTYPE_IPV6: u16 = EtherType::IPV6.0;
const ETHERTYPE_VLAN: u16 = EtherType::VLAN.0;
/// 802.1ad service tag (QinQ); dp-packet has no constant for it.
const ETHERTYPE_QINQ: u16 = 0x88a8;
const TCP: u8 = IpProtocol::TCP.0;
const UDP: u8 = IpProtocol::UDP.0;

/// Whether a folded sum equals `field` (ones' complement has two zeros).
fn same_sum(a: u16, b: u16) -> bool {
    a == b || (a == 0xffff && b == 0) || (a == 0 && b == 0xffff)
}

/// Finishes the frame's TCP/UDP checksum if it was left partial; returns whether it did.
pub fn finish_if_partial(frame: &mut [u8]) -> bool {
    let mut l3 = 12;
    let mut ethertype = read_u16_be(frame, l3).unwrap_or(0);
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        l3 += 4;
        ethertype = read_u16_be(frame, l3).unwrap_or(0);
    }
    l3 += 2;
    let Some(ip) = frame.get_mut(l3..) else {
        return false;
    };
    let (l4_start, l4_end, proto, pseudo) = match ethertype {
        ETHERTYPE_IPV4 => {
            let Some(&[ver_ihl]) = ip.get(..1) else {
                return false;
            };
            let ihl = usize::from(ver_ihl & 0x0f) * 4;
            let total = usize::from(read_u16_be(ip, 2).unwrap_or(0));
            let frag = read_u16_be(ip, 6).unwrap_or(0) & 0x3fff; // MF flag and offset
            let proto = ip.get(9).copied().unwrap_or(0);
            if ver_ihl >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || frag != 0 {
                return false;
            }
            let (Some(src), Some(dst)) = (ip.get(12..16), ip.get(16..20)) else {
                return false;
            };
            let (Ok(src), Ok(dst)) = (<[u8; 4]>::try_from(src), <[u8; 4]>::try_from(dst)) else {
                return false;
            };
            let pseudo = checksum::pseudo_header_v4(
                &Ipv4Addr::from(src),
                &Ipv4Addr::from(dst),
                IpProtocol::from(proto),
                (total - ihl) as u32,
            );
            (ihl, total, proto, pseudo)
        }
        ETHERTYPE_IPV6 => {
            let plen = usize::from(read_u16_be(ip, 4).unwrap_or(0));
            let proto = ip.get(6).copied().unwrap_or(0);
            if ip.first().map(|b| b >> 4) != Some(6) || 40 + plen > ip.len() {
                return false;
            }
            let (Some(src), Some(dst)) = (ip.get(8..24), ip.get(24..40)) else {
                return false;
            };
            let (Ok(src), Ok(dst)) = (<[u8; 16]>::try_from(src), <[u8; 16]>::try_from(dst)) else {
                return false;
            };
            let pseudo = checksum::pseudo_header_v6(
                &Ipv6Addr::from(src),
                &Ipv6Addr::from(dst),
                IpProtocol::from(proto),
                plen as u32,
            );
            (40, 40 + plen, proto, pseudo)
        }
        _ => return false,
    };
    let (offset, min_len) = match proto {
        TCP => (16, 20),
        UDP => (6, 8),
        _ => return false,
    };
    let Some(l4) = ip.get_mut(l4_start..l4_end) else {
        return false;
    };
    if l4.len() < min_len {
        return false;
    }
    let Some(field) = read_u16_be(l4, offset) else {
        return false;
    };
    if !same_sum(field, pseudo) || checksum::combine(&[pseudo, checksum::data(l4)]) == 0xffff {
        return false;
    }
    // TCP's offset (16) or UDP's (6): a computed 0 goes out as 0xffff for UDP only.
    super::finish_requested(l4, 0, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP frame with `payload`, its UDP checksum complete.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = UDP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(payload);
        let sum = checksum::transport_v4(
            &Ipv4Addr::new(10, 0, 0, 1),
            &Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::UDP,
            &f[34..],
        );
        f[40..42].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// What offload leaves: the pseudo-header sum in the field.
    fn make_partial(f: &mut [u8], l4: usize, offset: usize, pseudo: u16) {
        f[l4 + offset..l4 + offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    }

    #[test]
    fn partial_udp4_is_finished_complete_is_kept() {
        let good = udp4(b"hello, world");
        let mut f = good.clone();
        assert!(!finish_if_partial(&mut f), "complete checksum touched");
        assert_eq!(f, good);
        let pseudo = checksum::pseudo_header_v4(
            &Ipv4Addr::new(10, 0, 0, 1),
            &Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::UDP,
            8 + 12,
        );
        make_partial(&mut f, 34, 6, pseudo);
        assert_ne!(f, good);
        assert!(finish_if_partial(&mut f));
        assert_eq!(f, good);
        // Ethernet padding after the IP packet does not count.
        let mut padded = f.clone();
        make_partial(&mut padded, 34, 6, pseudo);
        padded.extend_from_slice(&[0xaa; 6]);
        assert!(finish_if_partial(&mut padded));
        assert_eq!(&padded[..good.len()], &good[..]);
    }

    #[test]
    fn vlan_tagged_and_corrupt_frames() {
        let good = udp4(b"tagged");
        let mut tagged = good.clone();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        let pseudo = checksum::pseudo_header_v4(
            &Ipv4Addr::new(10, 0, 0, 1),
            &Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::UDP,
            8 + 6,
        );
        let mut t = tagged.clone();
        make_partial(&mut t, 38, 6, pseudo);
        assert!(finish_if_partial(&mut t));
        assert_eq!(t, tagged);
        // A corrupt checksum that does not look partial is left for the pipeline to judge.
        let mut bad = good.clone();
        bad[41] ^= 0x55;
        let copy = bad.clone();
        assert!(!finish_if_partial(&mut bad));
        assert_eq!(bad, copy);
        // Not IP, too short, fragments: untouched.
        for mut f in [vec![0u8; 10], {
            let mut g = good.clone();
            g[20] = 0x20; // more fragments
            make_partial(&mut g, 34, 6, pseudo);
            g
        }] {
            let copy = f.clone();
            assert!(!finish_if_partial(&mut f));
            assert_eq!(f, copy);
        }
    }

    #[test]
    fn partial_tcp6_is_finished() {
        let src = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 2);
        let payload = b"some tcp payload";
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        f[20] = TCP;
        f[21] = 64;
        f[22..38].copy_from_slice(&src.octets());
        f[38..54].copy_from_slice(&dst.octets());
        f[54 + 12] = 5 << 4;
        f.extend_from_slice(payload);
        let sum = checksum::transport_v6(&src, &dst, IpProtocol::TCP, &f[54..]);
        f[54 + 16..54 + 18].copy_from_slice(&sum.to_be_bytes());
        let good = f.clone();
        let pseudo =
            checksum::pseudo_header_v6(&src, &dst, IpProtocol::TCP, (20 + payload.len()) as u32);
        make_partial(&mut f, 54, 16, pseudo);
        assert!(finish_if_partial(&mut f));
        assert_eq!(f, good);
        assert!(!finish_if_partial(&mut f));
    }
}
