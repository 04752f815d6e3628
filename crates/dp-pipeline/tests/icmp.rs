// Reference replies: tests/scapy/icmp.py.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;

const GW4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DATA: &[u8] = b"abcdefghijklmnopqrstuvwxyz012345";

fn echo4(p: u16, src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8) -> Vec<u8> {
    let m = icmpv4(ty, code, [0x12, 0x34, 0, 7], DATA);
    eth(own_mac(p), vm_mac(p), ETH_IPV4, &ipv4(src, dst, 1, 64, &m))
}

fn echo6(p: u16, src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8) -> Vec<u8> {
    let mut body = vec![0x12, 0x34, 0, 7];
    body.extend_from_slice(DATA);
    let m = icmpv6(src, dst, ty, code, &body);
    eth(own_mac(p), vm_mac(p), ETH_IPV6, &ipv6(src, dst, 58, 64, &m))
}

#[test]
fn ping_gateway_v4() {
    let mut h = Harness::new();
    let out = h.run1(VM1, echo4(VM1, vm_ipv4(VM1), GW4, 8, 0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy: Ether/IP(src=169.254.0.1, dst=10.100.1.1, ttl=64, id=0)/ICMP(type=0, id=0x1234, seq=7)/DATA
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220208004500003c000000004001c55da9fe00010a6401010000c88f123400076162636465666768696a6b6c6d6e6f707172737475767778797a303132333435"),
    );
    h.assert_conservation();
}

#[test]
fn ping_gateway_v4_with_ip_options_and_padding() {
    // A 4-byte IP option (NOP NOP NOP EOL) and trailing Ethernet padding: the reply has neither.
    let mut h = Harness::new();
    let m = icmpv4(8, 0, [0x12, 0x34, 0, 7], DATA);
    let src = vm_ipv4(VM1);
    let mut ip = vec![0x46, 0];
    ip.extend_from_slice(&((24 + m.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&GW4.octets());
    ip.extend_from_slice(&[1, 1, 1, 0]);
    let c = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&m);
    let mut frame = eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &ip);
    frame.extend_from_slice(&[0xee; 6]);
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1);
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220208004500003c000000004001c55da9fe00010a6401010000c88f123400076162636465666768696a6b6c6d6e6f707172737475767778797a303132333435"),
    );
}

#[test]
fn ping_gateway_v6_from_link_local_and_global() {
    let mut h = Harness::new();
    let out = h.run(&[
        (VM1, echo6(VM1, vm_link_local(VM1), GW6, 128, 0)),
        (VM1, echo6(VM1, vm_ipv6(VM1), GW6, 128, 0)),
    ]);
    assert_eq!(out.len(), 2);
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220286dd6000000000283a40fe800000000000000000000000000001fe80000000000000646666fffe66660281001a5b123400076162636465666768696a6b6c6d6e6f707172737475767778797a303132333435"),
    );
    assert_frame(
        &out[1].1,
        &hex("66666666660222222222220286dd6000000000283a40fe80000000000000000000000000000120000100000100000000000000000001810027a9123400076162636465666768696a6b6c6d6e6f707172737475767778797a303132333435"),
    );
    h.assert_conservation();
}

#[test]
fn other_traffic_to_gateway_is_dropped() {
    let mut bad4 = echo4(VM1, vm_ipv4(VM1), GW4, 8, 0);
    let n = bad4.len();
    bad4[n - 1] ^= 0x40;
    let mut bad6 = echo6(VM1, vm_ipv6(VM1), GW6, 128, 0);
    let n6 = bad6.len();
    bad6[n6 - 1] ^= 0x40;
    let mut frag = echo4(VM1, vm_ipv4(VM1), GW4, 8, 0);
    frag[14 + 6] = 0x20; // MF
    let c = inet_checksum(&[&{
        let mut hdr = frag[14..34].to_vec();
        hdr[10] = 0;
        hdr[11] = 0;
        hdr
    }]);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "echo reply v4",
            echo4(VM1, vm_ipv4(VM1), GW4, 0, 0),
            DropReason::IcmpUnhandled,
        ),
        (
            "echo request code 1",
            echo4(VM1, vm_ipv4(VM1), GW4, 8, 1),
            DropReason::IcmpUnhandled,
        ),
        (
            "timestamp v4",
            echo4(VM1, vm_ipv4(VM1), GW4, 13, 0),
            DropReason::IcmpUnhandled,
        ),
        ("bad ICMP checksum", bad4, DropReason::L4BadChecksum),
        ("fragmented echo", frag, DropReason::Ipv4Fragment),
        (
            "UDP to gateway",
            vm_udp4(VM1, vm_ipv4(VM1), GW4, 64, b"x"),
            DropReason::GatewayNotIcmp,
        ),
        (
            "spoofed echo",
            echo4(VM1, vm_ipv4(VM2), GW4, 8, 0),
            DropReason::Spoofed,
        ),
        (
            "echo reply v6",
            echo6(VM1, vm_ipv6(VM1), GW6, 129, 0),
            DropReason::IcmpUnhandled,
        ),
        ("bad ICMPv6 checksum", bad6, DropReason::L4BadChecksum),
        (
            "UDP to gateway v6",
            vm_udp6(VM1, vm_ipv6(VM1), GW6, 64, b"x"),
            DropReason::GatewayNotIcmp,
        ),
        (
            "spoofed echo v6",
            echo6(VM1, vm_ipv6(VM2), GW6, 128, 0),
            DropReason::Spoofed,
        ),
        (
            "truncated ICMP",
            eth(
                own_mac(VM1),
                vm_mac(VM1),
                ETH_IPV4,
                &ipv4(vm_ipv4(VM1), GW4, 1, 64, &[8, 0, 0xf7, 0xff]),
            ),
            DropReason::L4Malformed,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame);
        assert!(out.is_empty(), "{what}: sent {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
}

#[test]
fn ttl_expiring_in_transit_gets_time_exceeded_v4() {
    let mut h = Harness::new();
    let out = h.run1(VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 1, b"hello"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy: IP(src=169.254.0.1, dst=10.100.1.1, ttl=64, id=0)/ICMP(type=11, code=0)/<original datagram>
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220208004500003d000000004001c55ca9fe00010a6401010b000be90000000045000021000100000111a3010a6401010a6401029c401388000df56e68656c6c6f"),
    );
    h.assert_conservation();
}

#[test]
fn hop_limit_expiring_in_transit_gets_time_exceeded_v6() {
    let mut h = Harness::new();
    let out = h.run1(VM1, vm_udp6(VM1, vm_ipv6(VM1), vm_ipv6(VM2), 1, b"hello"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220286dd60000000003d3a40fe8000000000000000000000000000012000010000010000000000000000000103006c140000000060000000000d110120000100000100000000000000000001200001000001000000000000000000029c401388000dca3468656c6c6f"),
    );
}

#[test]
fn time_exceeded_quotes_at_most_576_bytes() {
    let mut h = Harness::new();
    let payload = vec![0x5a; 1400];
    let out = h.run1(VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 0, &payload));
    assert_eq!(out.len(), 1);
    let f = &out[0].1;
    assert_eq!(f.len(), 14 + 576);
    assert_eq!(u16::from_be_bytes([f[16], f[17]]), 576);
    assert_eq!(inet_checksum(&[&f[14..34]]), 0);
    assert_eq!(inet_checksum(&[&f[34..]]), 0);
}

#[test]
fn no_time_exceeded_for_icmp_errors() {
    let mut h = Harness::new();
    let err = icmpv4(3, 3, [0; 4], &[0x45; 28]);
    let frame = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(vm_ipv4(VM1), vm_ipv4(VM2), 1, 1, &err),
    );
    let err6 = icmpv6(vm_ipv6(VM1), vm_ipv6(VM2), 1, 4, &[0; 44]);
    let frame6 = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV6,
        &ipv6(vm_ipv6(VM1), vm_ipv6(VM2), 58, 1, &err6),
    );
    let out = h.run(&[(VM1, frame), (VM1, frame6)]);
    assert!(out.is_empty());
    assert_eq!(h.nonzero_drops(), vec![(DropReason::TtlExceeded, 2)]);
}
