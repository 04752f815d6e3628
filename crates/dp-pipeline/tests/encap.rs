//! VM → another hypervisor: IPv4/IPv6-in-IPv6 encapsulation, the uplink choice (WCMP, fail-over,
//! router MAC), and path-MTU errors. Reference frames: tests/scapy/underlay.py.
mod common;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;
use dp_tables::RouteTarget;

fn remote(vni: u32) -> RouteTarget {
    RouteTarget::Remote {
        vni,
        underlay: remote_underlay(),
        public: false,
    }
}

const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(10, 100, 2, 1);
fn remote_v6() -> Ipv6Addr {
    "2000:100:2::1".parse().unwrap()
}

/// The standard harness with both routers known and remote routes for 10.100.2.0/24 and
/// 2000:100:2::/64 in VNI 100.
fn harness() -> Harness {
    let mut h = Harness::new().with_routers();
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote(100));
    h.add_route_v6(100, "2000:100:2::".parse().unwrap(), 64, remote(100));
    h
}

/// An IPv4 packet with the given TOS byte, DF flag and ident 1 (checksum filled).
fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    df: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4(src, dst, proto, ttl, payload);
    p[1] = tos;
    if df {
        p[6] = 0x40;
    }
    p[10] = 0;
    p[11] = 0;
    let c = inet_checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// VM `p` sends UDP sport→5000 to `dst` with a TOS byte.
fn udp4_from(p: u16, dst: Ipv4Addr, sport: u16, tos: u8, df: bool, payload: &[u8]) -> Vec<u8> {
    let u = udp_v4(vm_ipv4(p), dst, sport, 5000, payload);
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV4,
        &ipv4_with(vm_ipv4(p), dst, 17, 64, tos, df, &u),
    )
}

fn udp6_from(p: u16, dst: Ipv6Addr, sport: u16, payload: &[u8]) -> Vec<u8> {
    let u = udp_v6(vm_ipv6(p), dst, sport, 5000, payload);
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV6,
        &ipv6(vm_ipv6(p), dst, 17, 64, &u),
    )
}

fn flow_label(frame: &[u8]) -> u32 {
    u32::from_be_bytes([0, frame[15] & 0x0f, frame[16], frame[17]])
}

/// Hex followed by `n` bytes of b"x" (how the reference script prints long frames).
fn hex_x(prefix: &str, n: usize) -> Vec<u8> {
    let mut v = hex(prefix);
    v.extend(std::iter::repeat_n(b'x', n));
    v
}

#[test]
fn ipv4_in_ipv6_exact_bytes() {
    let mut h = harness();
    let out = h.run1(VM1, udp4_from(VM1, REMOTE_V4, 40000, 0xb9, false, b"hello"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PF0);
    // scapy ENCAP4: to the router's MAC from ours on pf0; outer fc00:1::2 (VM1's underlay) →
    // fc00:2::d000:1:0:1, next header 4, hop limit 64, traffic class = inner TOS 0xb9, flow label
    // 0x51c2e; the inner packet as routed (TTL 63).
    assert_frame(
        &out[0].1,
        &hex("52540000ff0022222222220086dd6b951c2e00210440fc000001000000000000000000000002fc00000200000000d00000010000000145b90021000100003f1163490a6401010a6402019c401388000df46f68656c6c6f"),
    );
    h.assert_conservation();
}

#[test]
fn ipv6_in_ipv6_exact_bytes() {
    let mut h = harness();
    let out = h.run1(VM1, udp6_from(VM1, remote_v6(), 40000, b"hello"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PF0);
    // scapy ENCAP6: next header 41, flow label 0x964db, inner hop limit 63.
    assert_frame(
        &out[0].1,
        &hex("52540000ff0022222222220086dd600964db00352940fc000001000000000000000000000002fc00000200000000d00000010000000160000000000d113f20000100000100000000000000000001200001000002000000000000000000019c401388000dca3468656c6c6f"),
    );
    h.assert_conservation();
}

#[test]
fn flow_labels_are_per_flow_and_deterministic() {
    let mut h = harness();
    let frame = |sport| udp4_from(VM1, REMOTE_V4, sport, 0, false, b"x");
    let a = h.run1(VM1, frame(40000));
    let b = h.run1(VM1, frame(40000));
    assert_eq!(flow_label(&a[0].1), 0x51c2e);
    assert_eq!(
        flow_label(&a[0].1),
        flow_label(&b[0].1),
        "same flow, same label"
    );
    let mut labels = HashSet::new();
    for sport in 1000..2000 {
        let out = h.run1(VM1, frame(sport));
        let label = flow_label(&out[0].1);
        assert_ne!(label, 0);
        labels.insert(label);
    }
    // 1000 flows over 2^20 labels: a handful of collisions at most.
    assert!(labels.len() > 990, "{} distinct labels", labels.len());
    // The destination port and the protocol count too.
    let other_dport = {
        let u = udp_v4(vm_ipv4(VM1), REMOTE_V4, 40000, 5001, b"x");
        eth(
            own_mac(VM1),
            vm_mac(VM1),
            ETH_IPV4,
            &ipv4(vm_ipv4(VM1), REMOTE_V4, 17, 64, &u),
        )
    };
    let out = h.run1(VM1, other_dport);
    assert_ne!(flow_label(&out[0].1), 0x51c2e);
    h.assert_conservation();
}

#[test]
fn default_routes_encapsulate() {
    let mut h = Harness::new().with_routers();
    h.add_route_v4(100, Ipv4Addr::UNSPECIFIED, 0, remote(100));
    h.add_route_v6(100, Ipv6Addr::UNSPECIFIED, 0, remote(100));
    let out = h.run(&[
        (
            VM1,
            udp4_from(VM1, Ipv4Addr::new(8, 8, 8, 8), 40000, 0, false, b"out"),
        ),
        (
            VM1,
            udp6_from(VM1, "2001:db8::1".parse().unwrap(), 40000, b"out"),
        ),
        // Local destinations still win (longer prefixes).
        (VM1, udp4_from(VM1, vm_ipv4(VM2), 40000, 0, false, b"local")),
    ]);
    assert_eq!(out.len(), 3);
    assert_eq!((out[0].0, out[1].0, out[2].0), (PF0, PF0, VM2));
    assert_eq!(out[0].1[20], 4);
    assert_eq!(out[1].1[20], 41);
    assert_eq!(&out[0].1[38..54], &remote_underlay().octets());
    h.assert_conservation();
}

#[test]
fn vni_peering_route_leaves_with_the_senders_underlay() {
    // VM3 is in VNI 200; its VNI routes 10.100.2.0/24 to a VNI 100 interface on another host. The
    // VNI is not on the wire: the receiver knows it from the outer destination.
    let mut h = Harness::new().with_routers();
    let frame = udp4_from(VM3, REMOTE_V4, 40000, 0, false, b"peer");
    let out = h.run1(VM3, frame.clone());
    assert!(out.is_empty());
    assert_eq!(h.drops(DropReason::NoRoute), 1);
    h.add_route_v4(200, Ipv4Addr::new(10, 100, 2, 0), 24, remote(100));
    let out = h.run1(VM3, frame);
    assert_eq!(out.len(), 1);
    let f = &out[0].1;
    assert_eq!(out[0].0, PF0);
    assert_eq!(
        &f[22..38],
        &vm_underlay(VM3).octets(),
        "outer source: VM3's underlay"
    );
    assert_eq!(&f[38..54], &remote_underlay().octets());
    let inner = ipv4_with(
        vm_ipv4(VM3),
        REMOTE_V4,
        17,
        63,
        0,
        false,
        &udp_v4(vm_ipv4(VM3), REMOTE_V4, 40000, 5000, b"peer"),
    );
    assert_eq!(&f[54..], &inner[..]);
    h.assert_conservation();
}

#[test]
fn no_router_mac_means_no_encapsulation() {
    let mut h = Harness::new();
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote(100));
    let out = h.run1(VM1, udp4_from(VM1, REMOTE_V4, 40000, 0, false, b"x"));
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::NoRouterMac);
    // Links down too: the reason says so.
    h.ports.get(PF0).unwrap().set_link_up(false);
    h.ports.get(PF1).unwrap().set_link_up(false);
    h.run1(VM1, udp4_from(VM1, REMOTE_V4, 40000, 0, false, b"x"));
    assert_eq!(h.drops(DropReason::UplinkDown), 1);
    // A router MAC on a down link does not help.
    h.learn_router(PF0, ROUTER_MAC0);
    h.run1(VM1, udp4_from(VM1, REMOTE_V4, 40000, 0, false, b"x"));
    assert_eq!(h.drops(DropReason::UplinkDown), 2);
    h.assert_conservation();
}

/// Sends `n` flows (different source ports) and counts them per uplink.
fn spread(h: &mut Harness, n: u16) -> HashMap<u16, usize> {
    let frames: Vec<_> = (0..n)
        .map(|i| (VM1, udp4_from(VM1, REMOTE_V4, 10000 + i, 0, false, b"w")))
        .collect();
    let mut per_port = HashMap::new();
    for chunk in frames.chunks(200) {
        for (port, f) in h.run(chunk) {
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            assert_eq!(
                &f[0..6],
                &router_mac(port)[..],
                "to the router of the uplink used"
            );
            assert_eq!(&f[6..12], &own_mac(port)[..]);
            *per_port.entry(port).or_insert(0) += 1;
        }
    }
    per_port
}

#[test]
fn wcmp_splits_flows_by_percentage() {
    for (percent, lo, hi) in [
        (100, 2000, 2000),
        (0, 0, 0),
        (50, 900, 1100),
        (30, 500, 700),
        (90, 1720, 1880),
    ] {
        let mut h = harness();
        h.config.wcmp_percent = percent;
        let per = spread(&mut h, 2000);
        let pf0 = per.get(&PF0).copied().unwrap_or(0);
        let pf1 = per.get(&PF1).copied().unwrap_or(0);
        assert_eq!(pf0 + pf1, 2000);
        assert!(
            (lo..=hi).contains(&pf0),
            "--wcmp {percent}: {pf0} of 2000 flows on pf0"
        );
        h.assert_conservation();
    }
}

#[test]
fn a_flow_keeps_its_uplink() {
    let mut h = harness();
    h.config.wcmp_percent = 50;
    let frame = udp4_from(VM1, REMOTE_V4, 40000, 0, false, b"x");
    let first = h.run1(VM1, frame.clone())[0].0;
    for _ in 0..20 {
        assert_eq!(h.run1(VM1, frame.clone())[0].0, first);
    }
}

#[test]
fn link_down_moves_every_flow_to_the_other_uplink_and_back() {
    let mut h = harness();
    h.config.wcmp_percent = 50;
    let before = spread(&mut h, 1000);
    assert!(before[&PF0] > 400 && before[&PF1] > 400);

    h.ports.get(PF0).unwrap().set_link_up(false);
    let down = spread(&mut h, 1000);
    assert_eq!(
        down.get(&PF1),
        Some(&1000),
        "all flows on pf1 while pf0 is down"
    );

    h.ports.get(PF0).unwrap().set_link_up(true);
    assert_eq!(
        spread(&mut h, 1000),
        before,
        "flows return to where they were"
    );

    h.ports.get(PF1).unwrap().set_link_up(false);
    assert_eq!(spread(&mut h, 1000).get(&PF0), Some(&1000));
    h.assert_conservation();
}

#[test]
fn unknown_router_mac_on_one_uplink_moves_its_flows_to_the_other() {
    let mut h = harness();
    h.config.wcmp_percent = 50;
    h.ports.get(PF1).unwrap().forget_peer();
    assert_eq!(spread(&mut h, 500).get(&PF0), Some(&500));
    // wcmp 0 prefers pf1 for every flow; with pf1's router unknown they all take pf0.
    h.config.wcmp_percent = 0;
    assert_eq!(spread(&mut h, 500).get(&PF0), Some(&500));
    h.assert_conservation();
}

#[test]
fn a_single_uplink_takes_everything() {
    // A host without pf1: whatever --wcmp says, pf0.
    let mut h = harness();
    h.config.wcmp_percent = 0;
    let mut ports: Vec<_> = Vec::new();
    for (id, e) in h.ports.iter() {
        let kind = if id == PF1 {
            dp_pipeline::PortKind::Vf
        } else {
            e.kind
        };
        let n = dp_pipeline::PortEntry::new(kind, e.name.clone(), e.own_mac);
        if let Some(m) = e.peer_mac() {
            n.confirm_peer(m, 0);
        }
        ports.push(n);
    }
    h.ports = dp_pipeline::PortTable::new(ports);
    assert_eq!(spread(&mut h, 300).get(&PF0), Some(&300));
}

#[test]
fn ttl_expiring_towards_a_remote_route_gets_time_exceeded() {
    let mut h = harness();
    let u = udp_v4(vm_ipv4(VM1), REMOTE_V4, 40000, 5000, b"x");
    let frame = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(vm_ipv4(VM1), REMOTE_V4, 17, 1, &u),
    );
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    assert_eq!(out[0].1[14 + 20], 11, "ICMP time exceeded");
    h.assert_conservation();
}

fn small_mtu() -> Harness {
    let mut h = harness();
    h.config.underlay_mtu = 1300;
    h
}

#[test]
fn ipv4_with_df_too_big_gets_fragmentation_needed() {
    let mut h = small_mtu();
    // 1260 bytes of inner packet fit exactly; 1261 do not.
    let fits = udp4_from(VM1, REMOTE_V4, 40000, 0, true, &[b'x'; 1232]);
    let out = h.run1(VM1, fits);
    assert_eq!((out.len(), out[0].0, out[0].1.len()), (1, PF0, 14 + 1300));

    let big = udp4_from(VM1, REMOTE_V4, 40000, 0, true, &[b'x'; 1272]);
    let out = h.run1(VM1, big);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy FRAGNEEDED: from 169.254.0.1 to the VM, type 3 code 4, next-hop MTU 1260, quoting
    // the first 548 bytes of the datagram (as routed: TTL 63).
    assert_frame(
        &out[0].1,
        &hex_x("666666666602222222222202080045000240000000004001c359a9fe00010a640101030405dc000004ec45000514000140003f111f0f0a6401010a6402019c4013880500e310", 520),
    );
    h.assert_conservation();
}

#[test]
fn ipv6_too_big_gets_packet_too_big() {
    let mut h = small_mtu();
    let out = h.run1(VM1, udp6_from(VM1, remote_v6(), 40000, &[b'x'; 1252]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy PTB: from fe80::1, MTU 1260, quoting the first 1232 bytes (hop limit 63).
    assert_frame(
        &out[0].1,
        &hex_x("66666666660222222222220286dd6000000004d83a40fe800000000000000000000000000001200001000001000000000000000000010200634f000004ec6000000004ec113f20000100000100000000000000000001200001000002000000000000000000019c40138804ec6db2", 1184),
    );
    // One byte less fits.
    let out = h.run1(VM1, udp6_from(VM1, remote_v6(), 40000, &[b'x'; 1212]));
    assert_eq!((out[0].0, out[0].1.len()), (PF0, 14 + 1300));
    h.assert_conservation();
}

#[test]
fn ipv4_without_df_is_fragmented_then_encapsulated() {
    let mut h = small_mtu();
    let out = h.run1(
        VM1,
        udp4_from(VM1, REMOTE_V4, 40000, 0, false, &[b'x'; 1272]),
    );
    assert_eq!(out.len(), 2);
    // The whole datagram's flow (ports included) decides label and uplink for every fragment.
    let label = flow_label(&out[0].1);
    assert_eq!(label, 0x51c2e);
    let plain = h.run1(VM1, udp4_from(VM1, REMOTE_V4, 40000, 0, false, b"small"));
    assert_eq!(
        flow_label(&plain[0].1),
        label,
        "fragments share the flow's label"
    );
    // scapy INNERFRAG0/1 (fragment(..., fragsize=1240)), each behind the outer header.
    let outer = |len: u16| {
        let mut o = hex("52540000ff0022222222220086dd");
        o.extend_from_slice(&((6u32 << 28) | label).to_be_bytes());
        o.extend_from_slice(&len.to_be_bytes());
        o.extend_from_slice(&[4, 64]);
        o.extend_from_slice(&vm_underlay(VM1).octets());
        o.extend_from_slice(&remote_underlay().octets());
        o
    };
    let mut want0 = outer(1260);
    want0.extend(hex_x(
        "450004ec000120003f113f370a6401010a6402019c4013880500e310",
        1232,
    ));
    let mut want1 = outer(60);
    want1.extend(hex_x("4500003c0001009b3f11634c0a6401010a640201", 40));
    assert_eq!((out[0].0, out[1].0), (PF0, PF0));
    assert_frame(&out[0].1, &want0);
    assert_frame(&out[1].1, &want1);
    assert_eq!(h.counters.originated(), 1);
    h.assert_conservation();
}

/// In a batch, the fragments of a datagram leave right after their first piece, between the
/// packets sent before and after it (the graph's whole-batch hand-over must not reorder).
#[test]
fn fragments_keep_their_place_in_the_batch() {
    let mut h = small_mtu();
    let frames = vec![
        (VM1, udp4_from(VM1, REMOTE_V4, 40001, 0, false, b"first")),
        (
            VM1,
            udp4_from(VM1, REMOTE_V4, 40000, 0, false, &[b'x'; 1272]),
        ),
        (VM1, udp4_from(VM1, REMOTE_V4, 40002, 0, false, b"last")),
    ];
    let out = h.run(&frames);
    assert_eq!(out.len(), 4);
    let inner_len = |f: &[u8]| u16::from_be_bytes([f[18], f[19]]);
    let lens: Vec<u16> = out.iter().map(|(_, f)| inner_len(f)).collect();
    // 20 + 8 + 5, then the two fragments (1260 and 60 bytes of inner packet), then 20 + 8 + 4.
    assert_eq!(lens, vec![33, 1260, 60, 32]);
    assert_eq!(h.counters.originated(), 1);
    h.assert_conservation();
}

/// A whole batch of DF-clear datagrams that each need two fragments: 128 packets out of 64,
/// twice what a transmit batch holds. The full batch is flushed to the port in the middle of
/// the run (the graph's transmit sink), none is lost as `queue_full`, and the order holds.
#[test]
fn a_full_batch_of_fragmented_datagrams_loses_nothing() {
    let mut h = small_mtu();
    let frames: Vec<_> = (0..dp_pipeline::BATCH_SIZE as u16)
        .map(|i| {
            (
                VM1,
                udp4_from(VM1, REMOTE_V4, 40000 + i, 0, false, &[b'x'; 1272]),
            )
        })
        .collect();
    assert_eq!(frames.len(), 64);
    let out = h.run(&frames);
    assert_eq!(h.nonzero_drops(), vec![]);
    assert_eq!(out.len(), 128);
    let inner_len = |f: &[u8]| u16::from_be_bytes([f[18], f[19]]);
    let inner_sport = |f: &[u8]| u16::from_be_bytes([f[74], f[75]]);
    for (i, pair) in out.chunks(2).enumerate() {
        assert_eq!((pair[0].0, pair[1].0), (PF0, PF0));
        assert_eq!((inner_len(&pair[0].1), inner_len(&pair[1].1)), (1260, 60));
        // The first pieces in the datagrams' order, each followed by its second.
        assert_eq!(inner_sport(&pair[0].1), 40000 + i as u16);
    }
    assert_eq!(h.counters.originated(), 64);
    h.assert_conservation();
}

#[test]
fn fragmenting_keeps_the_original_fragment_offset_and_mf() {
    // A fragment (offset 800, MF set) without DF, too big: its pieces keep MF and shift offsets.
    let mut h = small_mtu();
    let mut ip = ipv4(vm_ipv4(VM1), REMOTE_V4, 17, 64, &[b'y'; 1400]);
    ip[6] = 0x20 | ((800 / 8) >> 8) as u8;
    ip[7] = ((800 / 8) & 0xff) as u8;
    ip[10] = 0;
    ip[11] = 0;
    let c = inet_checksum(&[&ip[..20]]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let out = h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &ip));
    assert_eq!(out.len(), 2);
    let inner = |f: &[u8]| f[54..].to_vec();
    let (a, b) = (inner(&out[0].1), inner(&out[1].1));
    for f in [&a, &b] {
        assert_eq!(inet_checksum(&[&f[..20]]), 0, "header checksum");
        assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
        assert_eq!(
            f[6] & 0x20,
            0x20,
            "MF on every piece of a non-last fragment"
        );
    }
    assert_eq!(a.len(), 20 + 1240);
    assert_eq!(b.len(), 20 + 160);
    assert_eq!(u16::from_be_bytes([a[6], a[7]]) & 0x1fff, 100);
    assert_eq!(u16::from_be_bytes([b[6], b[7]]) & 0x1fff, 100 + 155);
    h.assert_conservation();
}

#[test]
fn no_error_about_an_icmp_error_that_is_too_big() {
    let mut h = small_mtu();
    // An ICMP destination unreachable with DF, too big: dropped, not answered.
    let m = icmpv4(3, 1, [0; 4], &[b'z'; 1300]);
    let ip = ipv4_with(vm_ipv4(VM1), REMOTE_V4, 1, 64, 0, true, &m);
    let out = h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &ip));
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::TooBig);
    h.assert_conservation();
}

#[test]
fn fragmentation_without_buffers_drops_the_datagram() {
    let mut h = small_mtu();
    // Take every buffer but one (the frame's own).
    let mut held = Vec::new();
    while h.pool.available() > 1 {
        held.push(h.pool.alloc().unwrap());
    }
    let out = h.run1(
        VM1,
        udp4_from(VM1, REMOTE_V4, 40000, 0, false, &[b'x'; 1272]),
    );
    assert!(out.is_empty());
    assert_eq!(h.drops(DropReason::NoBuffer), 1);
    for b in held {
        h.pool.free(b);
    }
    h.assert_conservation();
}

#[test]
fn a_batch_to_one_destination_from_two_vnis_takes_each_vnis_route() {
    // 10.50.0.1 is routed to another hypervisor in each VNI, 10.51.0.1 nowhere: a packet that
    // takes the route of the one before it in the batch (same destination) takes it only in
    // the same VNI.
    let mut h = harness();
    let other: Ipv6Addr = "fc00:3::d000:1:0:1".parse().unwrap();
    let dst = Ipv4Addr::new(10, 50, 0, 1);
    let unrouted = Ipv4Addr::new(10, 51, 0, 1);
    h.add_route_v4(100, Ipv4Addr::new(10, 50, 0, 0), 16, remote(100));
    h.add_route_v4(
        200,
        Ipv4Addr::new(10, 50, 0, 0),
        16,
        RouteTarget::Remote {
            vni: 200,
            underlay: other,
            public: false,
        },
    );
    let send = [
        (VM1, dst),
        (VM1, dst),
        (VM3, dst),
        (VM3, dst),
        (VM1, dst),
        (VM1, unrouted),
        (VM1, unrouted),
        (VM3, dst),
    ];
    let frames: Vec<(u16, Vec<u8>)> = send
        .iter()
        .enumerate()
        .map(|(i, &(p, d))| (p, udp4_from(p, d, 40000 + i as u16, 0, false, b"x")))
        .collect();
    let out = h.run(&frames);
    let outer_dsts: Vec<Ipv6Addr> = out
        .iter()
        .map(|(port, f)| {
            assert!(*port == PF0 || *port == PF1);
            Ipv6Addr::from(<[u8; 16]>::try_from(&f[14 + 24..14 + 40]).unwrap())
        })
        .collect();
    let want: Vec<Ipv6Addr> = send
        .iter()
        .filter(|(_, d)| *d == dst)
        .map(|(p, _)| if *p == VM3 { other } else { remote_underlay() })
        .collect();
    let (mut got_sorted, mut want_sorted) = (outer_dsts.clone(), want.clone());
    got_sorted.sort();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
    assert_eq!(h.nonzero_drops(), vec![(DropReason::NoRoute, 2)]);
    h.assert_conservation();
}
