//! Underlay → VM: decapsulation, its checks, and every malformed or foreign frame an uplink may
//! bring, each dropped and counted under its own reason.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;
use dp_tables::{RouteTarget, UnderlayTarget};

const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(10, 100, 2, 1);
fn remote_v6() -> Ipv6Addr {
    "2000:100:2::1".parse().unwrap()
}

/// An inner IPv4 UDP packet from the remote VM to `dst` (TTL 63, as the sender routed it).
fn inner4(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    ipv4(
        REMOTE_V4,
        dst,
        17,
        63,
        &udp_v4(REMOTE_V4, dst, 5000, 40000, payload),
    )
}

fn inner6(dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    ipv6(
        remote_v6(),
        dst,
        17,
        63,
        &udp_v6(remote_v6(), dst, 5000, 40000, payload),
    )
}

/// What the VM on port `p` must receive: the inner packet unchanged, from our MAC to its MAC.
fn delivered(p: u16, ethertype: u16, inner: &[u8]) -> Vec<u8> {
    eth(vm_mac(p), own_mac(p), ethertype, inner)
}

#[test]
fn ipv4_in_ipv6_is_delivered_to_the_outer_destinations_vm() {
    let mut h = Harness::new();
    for (uplink, vm) in [(PF0, VM2), (PF1, VM1), (PF0, VM4)] {
        let inner = inner4(vm_ipv4(vm), b"hi there");
        let out = h.run1(
            uplink,
            from_underlay(uplink, remote_underlay(), vm_underlay(vm), 4, &inner),
        );
        assert_eq!(out.len(), 1, "to vm on port {vm}");
        assert_eq!(out[0].0, vm);
        assert_frame(&out[0].1, &delivered(vm, ETH_IPV4, &inner));
    }
    h.assert_conservation();
}

#[test]
fn ipv6_in_ipv6_is_delivered() {
    let mut h = Harness::new();
    let inner = inner6(vm_ipv6(VM2), b"hi six");
    let out = h.run1(
        PF1,
        from_underlay(PF1, remote_underlay(), vm_underlay(VM2), 41, &inner),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM2);
    assert_frame(&out[0].1, &delivered(VM2, ETH_IPV6, &inner));
    h.assert_conservation();
}

#[test]
fn delivery_is_in_the_target_interfaces_vni() {
    // VM3 is in VNI 200: a packet for its underlay address and its overlay address arrives,
    // whatever VNI the sender routed it from (VNI peering).
    let mut h = Harness::new();
    let inner = inner4(vm_ipv4(VM3), b"peer");
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM3), 4, &inner),
    );
    assert_eq!(out.len(), 1);
    assert_frame(&out[0].1, &delivered(VM3, ETH_IPV4, &inner));
    // VM3's underlay cannot be used to reach VM1 (VNI 100): the inner destination is checked.
    let out = h.run1(
        PF0,
        from_underlay(
            PF0,
            remote_underlay(),
            vm_underlay(VM3),
            4,
            &inner4(vm_ipv4(VM1), b"x"),
        ),
    );
    assert!(out.is_empty());
    assert_eq!(h.drops(DropReason::DecapInnerNotForTarget), 1);
    h.assert_conservation();
}

#[test]
fn alias_prefixes_and_their_underlay_addresses_are_delivered() {
    let mut h = Harness::with(|ifaces, _| {
        ifaces[0]
            .prefixes_v4
            .push((Ipv4Addr::new(192, 168, 7, 0), 24));
        ifaces[0]
            .prefixes_v6
            .push(("2000:100:7::".parse().unwrap(), 64));
    });
    // An alias prefix has an underlay address of its own, delivering to the same interface.
    let prefix_ul: Ipv6Addr = "fc00:1::d000:1:0:9".parse().unwrap();
    h.snapshot.set_underlay(
        prefix_ul,
        UnderlayTarget::Iface {
            port: VM1,
            vni: 100,
        },
    );
    let a = inner4(Ipv4Addr::new(192, 168, 7, 42), b"alias");
    let b = inner6("2000:100:7::5".parse().unwrap(), b"alias6");
    let c = inner4(vm_ipv4(VM1), b"own");
    let out = h.run(&[
        (PF0, from_underlay(PF0, remote_underlay(), prefix_ul, 4, &a)),
        (
            PF0,
            from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 41, &b),
        ),
        (PF0, from_underlay(PF0, remote_underlay(), prefix_ul, 4, &c)),
    ]);
    assert_eq!(out.len(), 3);
    assert_frame(&out[0].1, &delivered(VM1, ETH_IPV4, &a));
    assert_frame(&out[1].1, &delivered(VM1, ETH_IPV6, &b));
    assert_frame(&out[2].1, &delivered(VM1, ETH_IPV4, &c));
    h.assert_conservation();
}

#[test]
fn padding_and_trailing_bytes_are_cut() {
    let mut h = Harness::new();
    let inner = inner4(vm_ipv4(VM1), b"x");
    // Bytes after the inner packet inside the outer payload, and Ethernet padding after that.
    let mut payload = inner.clone();
    payload.extend_from_slice(&[0xaa; 5]);
    let mut frame = from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &payload);
    frame.extend_from_slice(&[0; 7]);
    let out = h.run1(PF0, frame);
    assert_eq!(out.len(), 1);
    assert_frame(&out[0].1, &delivered(VM1, ETH_IPV4, &inner));
}

#[test]
fn outer_ce_is_folded_into_an_ecn_capable_inner_packet() {
    let mut h = Harness::new();
    let outer_ce = |inner: &[u8]| {
        eth(
            own_mac(PF0),
            ROUTER_MAC0,
            ETH_IPV6,
            &ipv6_tc(remote_underlay(), vm_underlay(VM1), 4, 60, 0x03, 7, inner),
        )
    };
    let mut ect0 = inner4(vm_ipv4(VM1), b"ecn");
    ect0[1] = 0x02;
    ect0[10] = 0;
    ect0[11] = 0;
    let c = inet_checksum(&[&ect0[..20]]);
    ect0[10..12].copy_from_slice(&c.to_be_bytes());
    let out = h.run1(PF0, outer_ce(&ect0));
    assert_eq!(out.len(), 1);
    // The inner packet with CE set and its header checksum recomputed.
    let mut want = ect0.clone();
    want[1] = 0x03;
    want[10] = 0;
    want[11] = 0;
    let c = inet_checksum(&[&want[..20]]);
    want[10..12].copy_from_slice(&c.to_be_bytes());
    assert_frame(&out[0].1, &delivered(VM1, ETH_IPV4, &want));
    // Not ECN-capable inside: dropped (RFC 6040).
    let out = h.run1(PF0, outer_ce(&inner4(vm_ipv4(VM1), b"no ecn")));
    assert!(out.is_empty());
    assert_eq!(h.drops(DropReason::DecapEcn), 1);
    h.assert_conservation();
}

#[test]
fn vm_side_state_still_applies() {
    let mut h = Harness::new();
    let frame = || {
        from_underlay(
            PF0,
            remote_underlay(),
            vm_underlay(VM2),
            4,
            &inner4(vm_ipv4(VM2), b"x"),
        )
    };
    h.ports.get(VM2).unwrap().set_link_up(false);
    assert!(h.run1(PF0, frame()).is_empty());
    assert_eq!(h.drops(DropReason::DstPortDown), 1);
    h.ports.get(VM2).unwrap().set_link_up(true);
    h.ports.get(VM2).unwrap().forget_peer();
    assert!(h.run1(PF0, frame()).is_empty());
    assert_eq!(h.drops(DropReason::NoPeerMac), 1);
    h.assert_conservation();
}

/// Replaces bytes of a frame.
fn patch(mut f: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    f[at..at + bytes.len()].copy_from_slice(bytes);
    f
}

#[test]
fn foreign_and_malformed_underlay_frames_are_dropped_with_their_reason() {
    let good4 = inner4(vm_ipv4(VM1), b"payload!");
    let good = from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &good4);
    let mut bad_sum = good4.clone();
    bad_sum[10] ^= 0xff;
    let mut short_ihl = good4.clone();
    short_ihl[0] = 0x44;
    let arp = {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&ROUTER_MAC0);
        a.extend_from_slice(&[192, 168, 0, 1, 0, 0, 0, 0, 0, 0, 192, 168, 0, 2]);
        eth(BROADCAST, ROUTER_MAC0, ETH_ARP, &a)
    };
    let ul =
        |dst: Ipv6Addr, nh: u8, inner: &[u8]| from_underlay(PF0, remote_underlay(), dst, nh, inner);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("ARP", arp, DropReason::FromUplink),
        (
            "IPv4",
            eth(own_mac(PF0), ROUTER_MAC0, ETH_IPV4, &good4),
            DropReason::FromUplink,
        ),
        (
            "VLAN tag",
            patch(good.clone(), 12, &[0x81, 0x00]),
            DropReason::FromUplink,
        ),
        (
            "outer cut at 20 bytes",
            good[..14 + 20].to_vec(),
            DropReason::UnderlayMalformed,
        ),
        (
            "outer cut at 39 bytes",
            good[..14 + 39].to_vec(),
            DropReason::UnderlayMalformed,
        ),
        (
            "outer version 4",
            patch(good.clone(), 14, &[0x40]),
            DropReason::UnderlayMalformed,
        ),
        (
            "outer payload length beyond the frame",
            patch(good.clone(), 18, &[0x01, 0x00]),
            DropReason::UnderlayMalformed,
        ),
        (
            "next header UDP",
            ul(vm_underlay(VM1), 17, &good4),
            DropReason::UnderlayUnhandled,
        ),
        (
            "hop-by-hop header",
            ul(vm_underlay(VM1), 0, &good4),
            DropReason::UnderlayUnhandled,
        ),
        (
            "unknown outer destination",
            ul("fc00:1::99".parse().unwrap(), 4, &good4),
            DropReason::DecapUnknownDst,
        ),
        (
            "the host's own address",
            ul(host_underlay(), 4, &good4),
            DropReason::DecapUnknownDst,
        ),
        (
            "another host's address",
            ul("fc00:3::2".parse().unwrap(), 41, &good4),
            DropReason::DecapUnknownDst,
        ),
        (
            "empty inner",
            ul(vm_underlay(VM1), 4, &[]),
            DropReason::DecapInnerMalformed,
        ),
        (
            "inner cut",
            ul(vm_underlay(VM1), 4, &good4[..good4.len() - 1]),
            DropReason::DecapInnerMalformed,
        ),
        (
            "inner header cut",
            ul(vm_underlay(VM1), 4, &good4[..19]),
            DropReason::DecapInnerMalformed,
        ),
        (
            "inner IHL 4",
            ul(vm_underlay(VM1), 4, &short_ihl),
            DropReason::DecapInnerMalformed,
        ),
        (
            "IPv6 inside next header 4",
            ul(vm_underlay(VM1), 4, &inner6(vm_ipv6(VM1), b"x")),
            DropReason::DecapInnerMalformed,
        ),
        (
            "IPv4 inside next header 41",
            ul(vm_underlay(VM1), 41, &good4),
            DropReason::DecapInnerMalformed,
        ),
        (
            "inner IPv6 cut",
            ul(vm_underlay(VM1), 41, &inner6(vm_ipv6(VM1), b"x")[..45]),
            DropReason::DecapInnerMalformed,
        ),
        (
            "inner checksum",
            ul(vm_underlay(VM1), 4, &bad_sum),
            DropReason::DecapInnerBadChecksum,
        ),
        (
            "inner destination of another VM",
            ul(vm_underlay(VM1), 4, &inner4(vm_ipv4(VM2), b"x")),
            DropReason::DecapInnerNotForTarget,
        ),
        (
            "inner broadcast",
            ul(vm_underlay(VM1), 4, &inner4(Ipv4Addr::BROADCAST, b"x")),
            DropReason::DecapInnerNotForTarget,
        ),
        (
            "inner IPv6 for another VM",
            ul(vm_underlay(VM1), 41, &inner6(vm_ipv6(VM2), b"x")),
            DropReason::DecapInnerNotForTarget,
        ),
        (
            "to an interface without IPv6",
            ul(vm_underlay(VM4), 41, &inner6(vm_ipv6(VM1), b"x")),
            DropReason::DecapInnerNotForTarget,
        ),
        (
            "frame not for our MAC",
            patch(good.clone(), 0, &[0x02, 0, 0, 0, 0, 9]),
            DropReason::EthNotForUs,
        ),
        (
            "broadcast source MAC",
            patch(good.clone(), 6, &[0xff; 6]),
            DropReason::EthBadSource,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new().with_routers();
        let out = h.run1(PF0, frame);
        assert!(out.is_empty(), "{what}: sent {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
    // And the untouched frame is delivered.
    let mut h = Harness::new();
    assert_eq!(h.run1(PF0, good.clone()).len(), 1);
    // A zero source MAC is accepted from the underlay: the answer to a frame we sent to
    // 00:00:00:00:00:00 (router MAC from the kernel's table, none there yet), addresses swapped,
    // as dpservice's test/local suite sends it.
    let mut h = Harness::new();
    assert_eq!(h.run1(PF0, patch(good.clone(), 6, &[0; 6])).len(), 1);
    h.assert_conservation();
    // So is a multicast one (dpservice checks none; its suite sends from 33:33:00:00:00:01).
    let mut h = Harness::new();
    assert_eq!(
        h.run1(PF0, patch(good, 6, &[0x33, 0x33, 0, 0, 0, 1])).len(),
        1
    );
    h.assert_conservation();
}

#[test]
fn truncating_an_encapsulated_frame_anywhere_drops_it_counted() {
    let inner = inner4(vm_ipv4(VM1), b"0123456789");
    let good = from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &inner);
    for len in 0..good.len() {
        let mut h = Harness::new();
        let out = h.run1(PF0, good[..len].to_vec());
        assert!(out.is_empty(), "cut at {len}");
        // Inside the outer header, or after it (its payload length no longer fits the frame).
        let expected = if len < 14 {
            DropReason::EthTruncated
        } else {
            DropReason::UnderlayMalformed
        };
        assert_eq!(h.nonzero_drops(), vec![(expected, 1)], "cut at {len}");
        h.assert_conservation();
    }
}

#[test]
fn inner_ipv6_needs_the_ipv6_overlay() {
    let mut h = Harness::with(|_, c| c.ipv6_overlay = false);
    let out = h.run1(
        PF0,
        from_underlay(
            PF0,
            remote_underlay(),
            vm_underlay(VM1),
            41,
            &inner6(vm_ipv6(VM1), b"x"),
        ),
    );
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::Ipv6OverlayDisabled);
}

/// Host A (this harness' defaults, fc00:1::/64) and host B (fc00:2::/64) with a VM in VNI 100 each;
/// a frame encapsulated by A, forwarded by the router, is decapsulated by B.
#[test]
fn two_hypervisors_round_trip() {
    let b_vm_v4 = Ipv4Addr::new(10, 100, 2, 1);
    let b_vm_v6: Ipv6Addr = "2000:100:2::1".parse().unwrap();
    let b_ul: Ipv6Addr = "fc00:2::2".parse().unwrap();
    let mut a = Harness::new().with_routers();
    a.add_route_v4(
        100,
        Ipv4Addr::new(10, 100, 2, 0),
        24,
        RouteTarget::Remote {
            vni: 100,
            underlay: b_ul,
            public: false,
        },
    );
    a.add_route_v6(
        100,
        "2000:100:2::".parse().unwrap(),
        64,
        RouteTarget::Remote {
            vni: 100,
            underlay: b_ul,
            public: false,
        },
    );
    let mut b = Harness::with(|ifaces, c| {
        c.underlay_ipv6 = "fc00:2::1".parse().unwrap();
        ifaces.retain(|i| i.port == VM1);
        ifaces[0].ipv4 = b_vm_v4;
        ifaces[0].ipv6 = b_vm_v6;
        ifaces[0].underlay_ipv6 = b_ul;
    });
    let sent4 = {
        let u = udp_v4(vm_ipv4(VM1), b_vm_v4, 40000, 5000, b"across");
        eth(
            own_mac(VM1),
            vm_mac(VM1),
            ETH_IPV4,
            &ipv4(vm_ipv4(VM1), b_vm_v4, 17, 64, &u),
        )
    };
    let sent6 = {
        let u = udp_v6(vm_ipv6(VM1), b_vm_v6, 40000, 5000, b"across6");
        eth(
            own_mac(VM1),
            vm_mac(VM1),
            ETH_IPV6,
            &ipv6(vm_ipv6(VM1), b_vm_v6, 17, 64, &u),
        )
    };
    for (sent, ethertype) in [(sent4, ETH_IPV4), (sent6, ETH_IPV6)] {
        let out = a.run1(VM1, sent.clone());
        assert_eq!(out.len(), 1);
        let (uplink, wire) = &out[0];
        // The router: new MACs towards B's pf1, hop limit decremented.
        let mut routed = wire.clone();
        routed[0..6].copy_from_slice(&own_mac(PF1));
        routed[6..12].copy_from_slice(&ROUTER_MAC1);
        routed[21] -= 1;
        assert_eq!(*uplink, PF0);
        let got = b.run1(PF1, routed);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, VM1);
        // B's VM gets A's VM packet as A routed it (TTL/hop limit 63).
        let mut expect_inner = sent[14..].to_vec();
        if ethertype == ETH_IPV4 {
            expect_inner[8] = 63;
            expect_inner[10] = 0;
            expect_inner[11] = 0;
            let c = inet_checksum(&[&expect_inner[..20]]);
            expect_inner[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            expect_inner[7] = 63;
        }
        assert_frame(&got[0].1, &delivered(VM1, ethertype, &expect_inner));
    }
    a.assert_conservation();
    b.assert_conservation();
}
