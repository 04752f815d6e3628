//! The host on its uplinks: neighbor advertisements and echo replies for its underlay addresses, and
//! finding and keeping the router's MAC (advertisements, periodic solicitations).
//! Reference frames: tests/scapy/underlay.py.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_packet::MacAddr;
use dp_pipeline::DropReason;
use dp_tables::RouteTarget;

const SECOND_MS: u64 = 1000;

fn solicited(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

fn mcast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// An ND message (ICMPv6 type `ty`, `body` after the checksum) from `src` to `dst`.
fn nd(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    ty: u8,
    body: &[u8],
) -> Vec<u8> {
    let m = icmpv6(src, dst, ty, 0, body);
    eth(dst_mac, src_mac, ETH_IPV6, &ipv6(src, dst, 58, hop, &m))
}

/// The router's neighbor solicitation for `target` (multicast, with its MAC option).
fn router_ns(p: u16, target: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&router_mac(p));
    let group = solicited(target);
    nd(
        router_mac(p),
        mcast_mac(group),
        router_ll(),
        group,
        255,
        135,
        &body,
    )
}

/// A neighbor advertisement for `target` with the given target link-layer address option.
fn na(p: u16, from_mac: [u8; 6], target: Ipv6Addr, tlla: Option<[u8; 6]>) -> Vec<u8> {
    let mut body = vec![0x60, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    if let Some(m) = tlla {
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&m);
    }
    nd(
        from_mac,
        own_mac(p),
        target,
        own_link_local(p),
        255,
        136,
        &body,
    )
}

/// A router advertisement from `src` with lifetime `lifetime` and a source link-layer option.
fn ra(src: Ipv6Addr, mac: [u8; 6], lifetime: u16) -> Vec<u8> {
    let mut body = vec![64, 0];
    body.extend_from_slice(&lifetime.to_be_bytes());
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&mac);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    nd(mac, mcast_mac(all_nodes), src, all_nodes, 255, 134, &body)
}

fn echo(p: u16, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let m = icmpv6(src, dst, 128, 0, b"\x42\x42\x00\x01ping");
    eth(
        own_mac(p),
        router_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 58, 64, &m),
    )
}

fn router_known(h: &Harness, p: u16) -> Option<MacAddr> {
    h.ports.get(p).unwrap().peer_mac()
}

// ---------------------------------------------------------------------------------------------
// Answering for our addresses.

#[test]
fn solicitation_for_the_host_underlay_gets_an_advertisement() {
    let mut h = Harness::new();
    let out = h.run1(PF0, router_ns(PF0, host_underlay()));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PF0);
    // scapy NA_HOST: from fc00:1::1 to the solicitor, S and O set (not R), our MAC on pf0.
    assert_frame(
        &out[0].1,
        &hex("52540000ff0022222222220086dd6000000000203afffc000001000000000000000000000001fe80000000000000000000000000ffff8800b8d860000000fc0000010000000000000000000000010201222222222200"),
    );
    h.assert_conservation();
}

#[test]
fn solicitations_for_interface_underlays_and_our_link_local_are_answered() {
    let mut h = Harness::new();
    for (p, target) in [
        (PF0, vm_underlay(VM1)),
        (PF1, vm_underlay(VM3)),
        (PF1, own_link_local(PF1)),
        (PF1, host_underlay()),
    ] {
        let out = h.run1(p, router_ns(p, target));
        assert_eq!(out.len(), 1, "{target}");
        let f = &out[0].1;
        assert_eq!(out[0].0, p);
        assert_eq!(&f[0..6], &router_mac(p)[..]);
        assert_eq!(&f[6..12], &own_mac(p)[..]);
        assert_eq!(&f[22..38], &target.octets(), "from the target address");
        assert_eq!(f[54], 136);
        assert_eq!(&f[62..78], &target.octets());
        assert_eq!(&f[78..86], &[&[2u8, 1][..], &own_mac(p)[..]].concat()[..]);
        // Checksum over the pseudo header.
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&(f.len() as u32 - 54).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(inet_checksum(&[&pseudo, &f[54..]]), 0);
    }
    h.assert_conservation();
}

#[test]
fn duplicate_address_detection_is_answered_to_all_nodes() {
    let mut h = Harness::new();
    let target = vm_underlay(VM1);
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    let group = solicited(target);
    let frame = nd(
        ROUTER_MAC0,
        mcast_mac(group),
        Ipv6Addr::UNSPECIFIED,
        group,
        255,
        135,
        &body,
    );
    let out = h.run1(PF0, frame);
    assert_eq!(out.len(), 1);
    // scapy NA_DAD
    assert_frame(
        &out[0].1,
        &hex("33330000000122222222220086dd6000000000203afffc000001000000000000000000000002ff0200000000000000000000000000018800f85320000000fc0000010000000000000000000000020201222222222200"),
    );
}

#[test]
fn echo_to_our_underlay_addresses_is_answered() {
    let mut h = Harness::new();
    let pinger: Ipv6Addr = "fc00::ffff".parse().unwrap();
    let out = h.run1(PF0, echo(PF0, pinger, host_underlay()));
    assert_eq!(out.len(), 1);
    // scapy ECHO_HOST
    assert_frame(
        &out[0].1,
        &hex("52540000ff0022222222220086dd60000000000c3a40fc000001000000000000000000000001fc00000000000000000000000000ffff810065a14242000170696e67"),
    );
    let out = h.run1(PF1, echo(PF1, pinger, vm_underlay(VM2)));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PF1);
    assert_eq!(&out[0].1[22..38], &vm_underlay(VM2).octets());
    assert_eq!(out[0].1[54], 129);
    h.assert_conservation();
}

#[test]
fn what_is_not_ours_or_not_valid_is_dropped_with_its_reason() {
    let not_ours: Ipv6Addr = "fc00:1::77".parse().unwrap();
    let pinger: Ipv6Addr = "fc00::ffff".parse().unwrap();
    let mut low_hop = router_ns(PF0, host_underlay());
    low_hop[14 + 7] = 254;
    let mut bad_sum = router_ns(PF0, host_underlay());
    bad_sum[14 + 40 + 2] ^= 1;
    let mut rs_body = vec![0; 4];
    rs_body.extend_from_slice(&[1, 1]);
    rs_body.extend_from_slice(&ROUTER_MAC0);
    let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
    let mld = {
        let m = icmpv6(router_ll(), "ff02::1".parse().unwrap(), 130, 0, &[0; 20]);
        eth(
            [0x33, 0x33, 0, 0, 0, 1],
            ROUTER_MAC0,
            ETH_IPV6,
            &ipv6(router_ll(), "ff02::1".parse().unwrap(), 58, 1, &m),
        )
    };
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "NS for another address",
            router_ns(PF0, not_ours),
            DropReason::UnderlayNotForUs,
        ),
        (
            "NS for the overlay gateway",
            router_ns(PF0, "fe80::1".parse().unwrap()),
            DropReason::UnderlayNotForUs,
        ),
        ("NS with hop limit 254", low_hop, DropReason::NdMalformed),
        ("NS with a bad checksum", bad_sum, DropReason::L4BadChecksum),
        (
            "echo to another address",
            echo(PF0, pinger, not_ours),
            DropReason::UnderlayNotForUs,
        ),
        (
            "router solicitation",
            nd(
                ROUTER_MAC0,
                mcast_mac(all_routers),
                router_ll(),
                all_routers,
                255,
                133,
                &rs_body,
            ),
            DropReason::NdUnhandled,
        ),
        ("MLD query", mld, DropReason::IcmpUnhandled),
        (
            "NA for someone else",
            na(
                PF0,
                ROUTER_MAC0,
                "fe80::77".parse().unwrap(),
                Some(ROUTER_MAC0),
            ),
            DropReason::NdUnhandled,
        ),
        (
            "RA with lifetime 0",
            ra(router_ll(), ROUTER_MAC0, 0),
            DropReason::NdUnhandled,
        ),
        (
            "RA from another router",
            ra("fe80::abcd".parse().unwrap(), ROUTER_MAC0, 1800),
            DropReason::NdUnhandled,
        ),
        (
            "RA from a global address",
            ra("fc00::ffff".parse().unwrap(), ROUTER_MAC0, 1800),
            DropReason::NdMalformed,
        ),
        (
            "truncated ICMPv6",
            {
                let f = router_ns(PF0, host_underlay());
                let mut cut = f[..14 + 40 + 3].to_vec();
                cut[18..20].copy_from_slice(&3u16.to_be_bytes());
                cut
            },
            DropReason::L4Malformed,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        let out = h.run1(PF0, frame);
        assert!(out.is_empty(), "{what}: {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        // Only a valid solicitation from the router teaches its MAC (see below).
        let from_router = what.starts_with("NS for");
        assert_eq!(
            router_known(&h, PF0).is_some(),
            from_router,
            "{what}: learned?"
        );
        h.assert_conservation();
    }
}

// ---------------------------------------------------------------------------------------------
// Learning the router's MAC.

#[test]
fn router_mac_is_learned_from_its_advertisement() {
    let mut h = Harness::new();
    h.now_ns = 5;
    let out = h.run1(PF0, ra(router_ll(), ROUTER_MAC0, 1800));
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::NdConsumed);
    assert_eq!(router_known(&h, PF0), Some(MacAddr(ROUTER_MAC0)));
    assert_eq!(h.ports.get(PF0).unwrap().peer_confirmed_ns(), 5);
    assert_eq!(router_known(&h, PF1), None, "per uplink");
}

#[test]
fn router_mac_is_learned_from_a_neighbor_advertisement() {
    let mut h = Harness::new();
    h.run1(PF1, na(PF1, ROUTER_MAC1, router_ll(), Some(ROUTER_MAC1)));
    assert_eq!(router_known(&h, PF1), Some(MacAddr(ROUTER_MAC1)));
    // Without the option, the frame's source MAC.
    let other = [0x52, 0x54, 0, 0, 0xee, 0x01];
    h.run1(PF0, na(PF0, other, router_ll(), None));
    assert_eq!(router_known(&h, PF0), Some(MacAddr(other)));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::NdConsumed, 2)]);
}

#[test]
fn router_mac_is_learned_from_its_own_solicitations() {
    let mut h = Harness::new();
    // The router resolving one of our addresses tells its MAC on the way.
    h.run1(PF0, router_ns(PF0, vm_underlay(VM1)));
    assert_eq!(router_known(&h, PF0), Some(MacAddr(ROUTER_MAC0)));
    // Even when it asks for someone else; a solicitation from another address teaches nothing.
    h.run1(PF1, router_ns(PF1, "fc00:1::77".parse().unwrap()));
    assert_eq!(router_known(&h, PF1), Some(MacAddr(ROUTER_MAC1)));
    let mut h = Harness::with(|_, c| c.router = Some("fe80::1234".parse().unwrap()));
    h.run1(PF0, router_ns(PF0, vm_underlay(VM1)));
    assert_eq!(router_known(&h, PF0), None);
}

#[test]
fn without_router_option_the_advertising_router_is_used() {
    let mut h = Harness::with(|_, c| c.router = None);
    let rtr: Ipv6Addr = "fe80::5054:ff:fe00:ff00".parse().unwrap();
    // First the dataplane asks for routers.
    let out = h.tick();
    assert_eq!(out.len(), 2, "a router solicitation per uplink");
    // scapy RS
    assert_frame(
        &out[0].1,
        &hex("33330000000222222222220086dd6000000000103afffe80000000000000202222fffe222200ff0200000000000000000000000000028500b2a5000000000101222222222200"),
    );
    assert!(
        h.tick_after_ms(SECOND_MS).is_empty(),
        "every 4 s, not every second"
    );
    assert_eq!(h.tick_after_ms(3 * SECOND_MS).len(), 2);
    h.run1(PF0, ra(rtr, ROUTER_MAC0, 1800));
    assert_eq!(router_known(&h, PF0), Some(MacAddr(ROUTER_MAC0)));
    // Its advertisements' source is the address re-validated later.
    let out = h.tick_after_ms(10 * SECOND_MS);
    let ns: Vec<_> = out.iter().filter(|(p, _)| *p == PF0).collect();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].1[54], 135);
    assert_eq!(&ns[0].1[62..78], &rtr.octets());
    assert_eq!(&ns[0].1[0..6], &ROUTER_MAC0[..], "unicast to the known MAC");
}

// ---------------------------------------------------------------------------------------------
// Periodic discovery and re-validation.

#[test]
fn solicitations_go_out_every_second_until_the_router_answers() {
    let mut h = Harness::new();
    let out = h.tick();
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].0, out[1].0), (PF0, PF1));
    // scapy NS_MCAST: from our link-local to fe80::ffff's solicited-node group.
    assert_frame(
        &out[0].1,
        &hex("3333ff00ffff22222222220086dd6000000000203afffe80000000000000202222fffe222200ff0200000000000000000001ff00ffff8700b31400000000fe80000000000000000000000000ffff0101222222222200"),
    );
    assert!(h.tick_after_ms(100).is_empty());
    assert!(h.tick_after_ms(800).is_empty());
    assert_eq!(h.tick_after_ms(100).len(), 2, "again after a second");
    // pf0's router answers: only pf1 keeps asking.
    h.run1(PF0, na(PF0, ROUTER_MAC0, router_ll(), Some(ROUTER_MAC0)));
    let out = h.tick_after_ms(SECOND_MS);
    assert_eq!(out.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![PF1]);
    h.assert_conservation();
}

#[test]
fn a_known_router_is_revalidated_then_forgotten_when_silent() {
    let mut h = Harness::new();
    h.tick();
    h.now_ns = 1_000_000;
    h.run1(PF0, na(PF0, ROUTER_MAC0, router_ll(), Some(ROUTER_MAC0)));
    h.run1(PF1, na(PF1, ROUTER_MAC1, router_ll(), Some(ROUTER_MAC1)));
    // Fresh for 10 s: silence.
    for _ in 0..99 {
        assert!(h.tick_after_ms(100).is_empty());
    }
    // Then a unicast solicitation per uplink, every second.
    let out = h.tick_after_ms(100);
    assert_eq!(out.len(), 2);
    // scapy NS_UCAST
    assert_frame(
        &out[0].1,
        &hex("52540000ff0022222222220086dd6000000000203afffe80000000000000202222fffe222200fe80000000000000000000000000ffff8700b29800000000fe80000000000000000000000000ffff0101222222222200"),
    );
    // pf1's router answers; pf0's stays silent.
    h.run1(PF1, na(PF1, ROUTER_MAC1, router_ll(), Some(ROUTER_MAC1)));
    for _ in 0..2 {
        let out = h.tick_after_ms(SECOND_MS);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, &out[0].1[0..6]), (PF0, &ROUTER_MAC0[..]));
    }
    assert_eq!(
        router_known(&h, PF0),
        Some(MacAddr(ROUTER_MAC0)),
        "still used while probing"
    );
    // Third probe unanswered: forgotten, back to multicast discovery.
    let out = h.tick_after_ms(SECOND_MS);
    assert_eq!(router_known(&h, PF0), None);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &mcast_mac(solicited(router_ll()))[..]);
    assert_eq!(router_known(&h, PF1), Some(MacAddr(ROUTER_MAC1)));
    // Encapsulated traffic now avoids pf0 (and drops if pf1 goes too).
    h.add_route_v4(
        100,
        Ipv4Addr::new(10, 100, 2, 0),
        24,
        RouteTarget::Remote {
            vni: 100,
            underlay: remote_underlay(),
            public: false,
        },
    );
    let u = udp_v4(vm_ipv4(VM1), Ipv4Addr::new(10, 100, 2, 1), 1, 2, b"x");
    let frame = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(vm_ipv4(VM1), Ipv4Addr::new(10, 100, 2, 1), 17, 64, &u),
    );
    assert_eq!(h.run1(VM1, frame.clone())[0].0, PF1);
    h.ports.get(PF1).unwrap().forget_peer();
    assert!(h.run1(VM1, frame).is_empty());
    assert_eq!(h.drops(DropReason::NoRouterMac), 1);
    h.assert_conservation();
}

#[test]
fn link_down_keeps_the_router_and_probes_at_once_when_back() {
    let mut h = Harness::new().with_routers();
    h.tick();
    let pf0 = h.ports.get(PF0).unwrap();
    pf0.set_link_up(false);
    // Down for a minute: a multicast solicitation a second (the write tells a TAP whether the
    // link is back), the MAC kept.
    let mut probes = 0;
    for _ in 0..600 {
        probes += h
            .tick_after_ms(100)
            .iter()
            .filter(|(p, _)| *p == PF0)
            .count();
    }
    assert!((59..=61).contains(&probes), "{probes} probes in 60 s");
    assert_eq!(router_known(&h, PF0), Some(MacAddr(ROUTER_MAC0)));
    // Back: a unicast probe at the very next tick, and the MAC is used meanwhile.
    h.ports.get(PF0).unwrap().set_link_up(true);
    let out = h.tick_after_ms(1);
    let back: Vec<_> = out.iter().filter(|(p, _)| *p == PF0).collect();
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0].1[0..6], &ROUTER_MAC0[..]);
    assert_eq!(router_known(&h, PF0), Some(MacAddr(ROUTER_MAC0)));
    h.assert_conservation();
}

#[test]
fn tick_without_free_buffers_sends_nothing() {
    let mut h = Harness::new();
    let mut held = Vec::new();
    while let Some(b) = h.pool.alloc() {
        held.push(b);
    }
    assert!(h.tick().is_empty());
    for b in held {
        h.pool.free(b);
    }
    // The next second it tries again.
    assert_eq!(h.tick_after_ms(SECOND_MS).len(), 2);
    h.assert_conservation();
}

// ---------------------------------------------------------------------------------------------
// The router's MAC from the kernel's neighbour table (TAP uplinks without --router).

fn kernel_mode() -> Harness {
    Harness::with(|_, c| {
        c.router = None;
        c.router_mac_from_kernel = true;
    })
}

fn remote_udp(h: &mut Harness) -> Vec<u8> {
    h.add_route_v4(
        100,
        Ipv4Addr::new(10, 100, 2, 0),
        24,
        RouteTarget::Remote {
            vni: 100,
            underlay: remote_underlay(),
            public: false,
        },
    );
    let u = udp_v4(vm_ipv4(VM1), Ipv4Addr::new(10, 100, 2, 1), 1, 2, b"x");
    eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(vm_ipv4(VM1), Ipv4Addr::new(10, 100, 2, 1), 17, 64, &u),
    )
}

#[test]
fn with_the_kernels_router_mac_nothing_is_solicited_nor_learned() {
    let mut h = kernel_mode();
    for _ in 0..50 {
        assert!(h.tick_after_ms(100).is_empty(), "no RS, no NS");
    }
    let rtr: Ipv6Addr = "fe80::5054:ff:fe00:ff00".parse().unwrap();
    assert!(h.run1(PF0, ra(rtr, ROUTER_MAC0, 1800)).is_empty());
    assert!(h
        .run1(PF0, router_ns(PF0, "fc00:1::77".parse().unwrap()))
        .is_empty());
    assert!(h
        .run1(PF1, na(PF1, ROUTER_MAC1, router_ll(), Some(ROUTER_MAC1)))
        .is_empty());
    assert_eq!((router_known(&h, PF0), router_known(&h, PF1)), (None, None));
    // Our own addresses are still answered.
    assert_eq!(h.run1(PF0, router_ns(PF0, host_underlay())).len(), 1);
    h.assert_conservation();
}

#[test]
fn with_the_kernels_router_mac_an_up_uplink_is_used_before_the_kernel_knows_one() {
    let mut h = kernel_mode();
    let frame = remote_udp(&mut h);
    // Nothing in the kernel's table yet: out of pf0 to 00:00:00:00:00:00, as dpservice.
    let out = h.run1(VM1, frame.clone());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PF0);
    assert_eq!(&out[0].1[0..6], &[0u8; 6][..]);
    assert_eq!(&out[0].1[6..12], &own_mac(PF0)[..]);
    // The daemon found the kernel's entry: that MAC from the next batch on.
    h.learn_router(PF0, ROUTER_MAC0);
    let out = h.run1(VM1, frame.clone());
    assert_eq!(&out[0].1[0..6], &ROUTER_MAC0[..]);
    // Link state still decides.
    h.ports.get(PF0).unwrap().set_link_up(false);
    h.ports.get(PF1).unwrap().set_link_up(false);
    assert!(h.run1(VM1, frame).is_empty());
    assert_eq!(h.drops(DropReason::UplinkDown), 1);
    h.assert_conservation();
}
