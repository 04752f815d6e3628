//! One line per record: when, which worker, where in the graph, where it went, and what the frame
//! is (addresses, protocol, ports; the inner packet of an underlay frame).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use dp_packet::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet};
use dp_pipeline::trace::{Event, Record};
use dp_pipeline::Verdict;

use crate::client::SessionInfo;

/// Where the record was taken and what happened: `rx vm1`, `classify -> ipv4_lookup`,
/// `ipv4_lookup DROP spoofed`, `tx pf0`.
pub fn place(r: &Record<'_>, info: &SessionInfo) -> String {
    let node = r.node.map_or("?", |n| n.name());
    match (r.event, r.verdict) {
        (Event::Rx, _) => format!("rx {}", info.port_name(r.port)),
        (Event::Tx, _) => format!("tx {}", info.port_name(r.port)),
        (Event::Node, Some(Verdict::Next(next))) => format!("{node} -> {}", next.name()),
        (Event::Node, Some(Verdict::Tx(port))) => format!("{node} -> tx {}", info.port_name(port)),
        (Event::Node, Some(Verdict::Drop(reason))) => format!("{node} DROP {}", reason.name()),
        (Event::Node, Some(Verdict::Handoff(w))) => format!("{node} -> worker {w}"),
        (Event::Node, None) => node.to_string(),
    }
}

/// The comment a pcapng packet carries: the place and the receiving port.
pub fn comment(r: &Record<'_>, info: &SessionInfo) -> String {
    let mut s = format!("worker={} {}", r.worker, place(r, info));
    if r.event == Event::Node {
        let _ = write!(s, " in_port={}", info.port_name(r.port));
    }
    if let Some(Verdict::Drop(reason)) = r.verdict {
        let _ = write!(s, " reason={}", reason.name());
    }
    s
}

/// The line `dpservice-dump` prints for a record.
pub fn line(r: &Record<'_>, info: &SessionInfo) -> String {
    let secs = (info.epoch_ns + r.now_ns) / 1_000_000_000;
    let micros = ((info.epoch_ns + r.now_ns) / 1_000) % 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut out = format!(
        "{h:02}:{m:02}:{s:02}.{micros:06} w{} {:<30} {}",
        r.worker,
        place(r, info),
        frame(r.data)
    );
    if r.event == Event::Node {
        let _ = write!(out, " (in {})", info.port_name(r.port));
    }
    let _ = write!(out, ", length {}", r.orig_len);
    out
}

/// What an Ethernet frame carries, briefly.
pub fn frame(data: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return format!("runt frame ({} bytes)", data.len());
    };
    let payload = data.get(14..).unwrap_or_default();
    match eth.ethertype() {
        EtherType::IPV4 => ipv4(payload),
        EtherType::IPV6 => ipv6(payload),
        EtherType::ARP => arp(payload),
        other => format!(
            "{} > {} ethertype {:#06x}",
            eth.src_addr(),
            eth.dst_addr(),
            u16::from(other)
        ),
    }
}

fn arp(p: &[u8]) -> String {
    let ip = |at: usize| {
        p.get(at..at + 4).map_or_else(
            || "?".to_string(),
            |b| Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        )
    };
    match p.get(6..8) {
        Some([0, 1]) => format!("ARP who-has {} tell {}", ip(24), ip(14)),
        Some([0, 2]) => format!("ARP reply {} is-at", ip(14)),
        _ => "ARP".to_string(),
    }
}

fn ipv4(p: &[u8]) -> String {
    let Ok(ip) = Ipv4Packet::new_checked(p) else {
        return "truncated IPv4".into();
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    l4(
        ip.protocol(),
        p.get(ip.header_len()..).unwrap_or_default(),
        &src.to_string(),
        &dst.to_string(),
        false,
    )
}

fn ipv6(p: &[u8]) -> String {
    let Ok(ip) = Ipv6Packet::new_checked(p) else {
        return "truncated IPv6".into();
    };
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
    let rest = p.get(40..).unwrap_or_default();
    match ip.next_header() {
        // An underlay frame: the outer addresses, then the packet inside.
        IpProtocol::IPV4_IN_IP => format!("{src} > {dst} ipip: {}", ipv4(rest)),
        IpProtocol::IPV6_IN_IP => format!("{src} > {dst} ip6ip6: {}", ipv6(rest)),
        proto => l4(proto, rest, &src.to_string(), &dst.to_string(), true),
    }
}

fn l4(proto: IpProtocol, p: &[u8], src: &str, dst: &str, v6: bool) -> String {
    let port = |at: usize| {
        p.get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    match proto {
        IpProtocol::TCP => {
            let flags = p.get(13).copied().unwrap_or(0);
            let names: String = [
                (0x02, 'S'),
                (0x10, '.'),
                (0x01, 'F'),
                (0x04, 'R'),
                (0x08, 'P'),
            ]
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, c)| *c)
            .collect();
            format!("{src}.{} > {dst}.{} TCP [{names}]", port(0), port(2))
        }
        IpProtocol::UDP => format!("{src}.{} > {dst}.{} UDP", port(0), port(2)),
        IpProtocol::ICMP if !v6 => {
            let what = match p.first() {
                Some(8) => "echo request".to_string(),
                Some(0) => "echo reply".to_string(),
                Some(3) => "destination unreachable".to_string(),
                Some(11) => "time exceeded".to_string(),
                Some(t) => format!("type {t}"),
                None => "truncated".to_string(),
            };
            format!("{src} > {dst} ICMP {what}")
        }
        IpProtocol::ICMPV6 => {
            let what = match p.first() {
                Some(128) => "echo request".to_string(),
                Some(129) => "echo reply".to_string(),
                Some(133) => "router solicitation".to_string(),
                Some(134) => "router advertisement".to_string(),
                Some(135) => "neighbor solicitation".to_string(),
                Some(136) => "neighbor advertisement".to_string(),
                Some(t) => format!("type {t}"),
                None => "truncated".to_string(),
            };
            format!("{src} > {dst} ICMPv6 {what}")
        }
        other => format!("{src} > {dst} protocol {}", u8::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn frames_are_summarised_with_addresses_and_ports() {
        let icmp = ipv4_header(1, [10, 0, 0, 1], [10, 0, 0, 2], &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(
            frame(&eth(0x0800, &icmp)),
            "10.0.0.1 > 10.0.0.2 ICMP echo request"
        );
        let udp = ipv4_header(
            17,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &[0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0],
        );
        assert_eq!(
            frame(&eth(0x0800, &udp)),
            "10.0.0.1.40000 > 10.0.0.2.5000 UDP"
        );
        // An underlay frame shows both layers.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 4, 64];
        v6[4..6].copy_from_slice(&(udp.len() as u16).to_be_bytes());
        v6.extend_from_slice(&"fc00::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fc00::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&udp);
        assert_eq!(
            frame(&eth(0x86dd, &v6)),
            "fc00::1 > fc00::2 ipip: 10.0.0.1.40000 > 10.0.0.2.5000 UDP"
        );
        assert_eq!(frame(&[1, 2, 3]), "runt frame (3 bytes)");
        assert_eq!(frame(&eth(0x0800, &[0x45, 0])), "truncated IPv4");
    }
}
