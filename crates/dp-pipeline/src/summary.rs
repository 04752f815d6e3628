//! What a frame is, in one line: addresses, protocol, ports, and the packet inside an underlay
//! frame — as `dpservice-dump` prints it and `--graphtrace-loglevel` logs it. A `Display`
//! that writes straight into the formatter: logging a summary allocates nothing.

use std::fmt;
use std::net::Ipv4Addr;

use dp_packet::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet};

/// `frame`'s summary, e.g. `10.0.0.1.40000 > 10.0.0.2.5000 UDP`.
#[derive(Clone, Copy, Debug)]
pub struct FrameSummary<'a>(pub &'a [u8]);

impl fmt::Display for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.0;
        let Ok(eth) = EthernetFrame::new_checked(data) else {
            return write!(f, "runt frame ({} bytes)", data.len());
        };
        let payload = data.get(14..).unwrap_or_default();
        match eth.ethertype() {
            EtherType::IPV4 => ipv4(f, payload),
            EtherType::IPV6 => ipv6(f, payload),
            EtherType::ARP => arp(f, payload),
            other => write!(
                f,
                "{} > {} ethertype {:#06x}",
                eth.src_addr(),
                eth.dst_addr(),
                u16::from(other)
            ),
        }
    }
}

fn ipv4_at(p: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn arp(f: &mut fmt::Formatter<'_>, p: &[u8]) -> fmt::Result {
    match (p.get(6..8), ipv4_at(p, 14), ipv4_at(p, 24)) {
        (Some([0, 1]), Some(sender), Some(target)) => {
            write!(f, "ARP who-has {target} tell {sender}")
        }
        (Some([0, 2]), Some(sender), _) => write!(f, "ARP reply {sender}"),
        _ => f.write_str("ARP"),
    }
}

fn ipv4(f: &mut fmt::Formatter<'_>, p: &[u8]) -> fmt::Result {
    let Ok(ip) = Ipv4Packet::new_checked(p) else {
        return f.write_str("truncated IPv4");
    };
    let rest = p.get(ip.header_len()..).unwrap_or_default();
    l4(
        f,
        ip.protocol(),
        rest,
        &ip.src_addr(),
        &ip.dst_addr(),
        false,
    )
}

fn ipv6(f: &mut fmt::Formatter<'_>, p: &[u8]) -> fmt::Result {
    let Ok(ip) = Ipv6Packet::new_checked(p) else {
        return f.write_str("truncated IPv6");
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let rest = p.get(40..).unwrap_or_default();
    match ip.next_header() {
        // An underlay frame: the outer addresses, then the packet inside.
        IpProtocol::IPV4_IN_IP => {
            write!(f, "{src} > {dst} ipip: ")?;
            ipv4(f, rest)
        }
        IpProtocol::IPV6_IN_IP => {
            write!(f, "{src} > {dst} ip6ip6: ")?;
            ipv6(f, rest)
        }
        proto => l4(f, proto, rest, &src, &dst, true),
    }
}

fn l4(
    f: &mut fmt::Formatter<'_>,
    proto: IpProtocol,
    p: &[u8],
    src: &dyn fmt::Display,
    dst: &dyn fmt::Display,
    v6: bool,
) -> fmt::Result {
    let port = |at: usize| {
        p.get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_be_bytes)
    };
    match proto {
        IpProtocol::TCP => {
            write!(f, "{src}.{} > {dst}.{} TCP [", port(0), port(2))?;
            let flags = p.get(13).copied().unwrap_or(0);
            for (bit, c) in [
                (0x02, "S"),
                (0x10, "."),
                (0x01, "F"),
                (0x04, "R"),
                (0x08, "P"),
            ] {
                if flags & bit != 0 {
                    f.write_str(c)?;
                }
            }
            f.write_str("]")
        }
        IpProtocol::UDP => write!(f, "{src}.{} > {dst}.{} UDP", port(0), port(2)),
        IpProtocol::ICMP if !v6 => {
            write!(f, "{src} > {dst} ICMP ")?;
            match p.first() {
                Some(8) => f.write_str("echo request"),
                Some(0) => f.write_str("echo reply"),
                Some(3) => f.write_str("destination unreachable"),
                Some(11) => f.write_str("time exceeded"),
                Some(t) => write!(f, "type {t}"),
                None => f.write_str("truncated"),
            }
        }
        IpProtocol::ICMPV6 => {
            write!(f, "{src} > {dst} ICMPv6 ")?;
            match p.first() {
                Some(128) => f.write_str("echo request"),
                Some(129) => f.write_str("echo reply"),
                Some(133) => f.write_str("router solicitation"),
                Some(134) => f.write_str("router advertisement"),
                Some(135) => f.write_str("neighbor solicitation"),
                Some(136) => f.write_str("neighbor advertisement"),
                Some(t) => write!(f, "type {t}"),
                None => f.write_str("truncated"),
            }
        }
        other => write!(f, "{src} > {dst} protocol {}", u8::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::FrameSummary;
    use std::net::Ipv6Addr;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4_header(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        let total = (20 + payload.len()) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }

    fn show(frame: &[u8]) -> String {
        FrameSummary(frame).to_string()
    }

    #[test]
    fn frames_are_summarised_with_addresses_and_ports() {
        let icmp = ipv4_header(1, [10, 0, 0, 1], [10, 0, 0, 2], &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(
            show(&eth(0x0800, &icmp)),
            "10.0.0.1 > 10.0.0.2 ICMP echo request"
        );
        let udp = ipv4_header(
            17,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &[0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0],
        );
        assert_eq!(
            show(&eth(0x0800, &udp)),
            "10.0.0.1.40000 > 10.0.0.2.5000 UDP"
        );
        let mut syn = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02];
        syn.extend_from_slice(&[0; 6]);
        let tcp = ipv4_header(6, [10, 0, 0, 1], [10, 0, 0, 2], &syn);
        assert_eq!(
            show(&eth(0x0800, &tcp)),
            "10.0.0.1.40000 > 10.0.0.2.80 TCP [S]"
        );
        // An underlay frame shows both layers.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 4, 64];
        v6[4..6].copy_from_slice(&(udp.len() as u16).to_be_bytes());
        v6.extend_from_slice(&"fc00::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fc00::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&udp);
        assert_eq!(
            show(&eth(0x86dd, &v6)),
            "fc00::1 > fc00::2 ipip: 10.0.0.1.40000 > 10.0.0.2.5000 UDP"
        );
        assert_eq!(show(&[1, 2, 3]), "runt frame (3 bytes)");
        assert_eq!(show(&eth(0x0800, &[0x45, 0])), "truncated IPv4");
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        assert_eq!(
            show(&eth(0x0806, &arp)),
            "ARP who-has 10.0.0.2 tell 10.0.0.1"
        );
    }
}
