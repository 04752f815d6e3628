mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;

/// The frame VM `from` sends, as VM `to` must receive it: MACs rewritten, TTL one less.
fn expect_v4(to: u16, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let u = udp_v4(src, dst, 40000, 5000, payload);
    eth(
        vm_mac(to),
        own_mac(to),
        ETH_IPV4,
        &ipv4(src, dst, 17, ttl, &u),
    )
}

fn expect_v6(to: u16, src: Ipv6Addr, dst: Ipv6Addr, hop: u8, payload: &[u8]) -> Vec<u8> {
    let u = udp_v6(src, dst, 40000, 5000, payload);
    eth(
        vm_mac(to),
        own_mac(to),
        ETH_IPV6,
        &ipv6(src, dst, 17, hop, &u),
    )
}

#[test]
fn vm_to_vm_v4() {
    let mut h = Harness::new();
    let out = h.run1(
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"payload"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM2);
    // Built independently with TTL 63: the incremental checksum update must equal a recomputation.
    assert_frame(
        &out[0].1,
        &expect_v4(VM2, vm_ipv4(VM1), vm_ipv4(VM2), 63, b"payload"),
    );
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);
}

#[test]
fn vm_to_vm_v4_both_ways_and_padding_removed() {
    let mut h = Harness::new();
    let mut padded = vm_udp4(VM2, vm_ipv4(VM2), vm_ipv4(VM1), 2, b"x");
    padded.resize(60, 0);
    let out = h.run(&[
        (VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 255, b"ping")),
        (VM2, padded),
    ]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0, VM1);
    assert_frame(
        &out[0].1,
        &expect_v4(VM1, vm_ipv4(VM2), vm_ipv4(VM1), 1, b"x"),
    );
    assert_eq!(out[1].0, VM2);
    assert_frame(
        &out[1].1,
        &expect_v4(VM2, vm_ipv4(VM1), vm_ipv4(VM2), 254, b"ping"),
    );
}

#[test]
fn vm_to_vm_v6() {
    let mut h = Harness::new();
    let out = h.run1(
        VM1,
        vm_udp6(VM1, vm_ipv6(VM1), vm_ipv6(VM2), 64, b"payload6"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM2);
    assert_frame(
        &out[0].1,
        &expect_v6(VM2, vm_ipv6(VM1), vm_ipv6(VM2), 63, b"payload6"),
    );
    h.assert_conservation();
}

#[test]
fn alias_prefix_is_a_valid_source_and_destination() {
    let mut h = Harness::with(|ifaces, _| {
        ifaces[1]
            .prefixes_v4
            .push((Ipv4Addr::new(192, 168, 50, 0), 24));
        ifaces[0]
            .prefixes_v6
            .push(("2000:100:aaaa::".parse().unwrap(), 48));
    });
    let out = h.run(&[
        (
            VM1,
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::new(192, 168, 50, 7), 64, b"a"),
        ),
        (
            VM2,
            vm_udp4(VM2, Ipv4Addr::new(192, 168, 50, 9), vm_ipv4(VM1), 64, b"b"),
        ),
        (
            VM1,
            vm_udp6(
                VM1,
                "2000:100:aaaa::5".parse().unwrap(),
                vm_ipv6(VM2),
                64,
                b"c",
            ),
        ),
    ]);
    let ports: Vec<_> = out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![VM1, VM2, VM2]);
    assert_eq!(h.total_drops(), 0);
}

fn assert_dropped(h: &mut Harness, port: u16, frame: Vec<u8>, reason: DropReason, what: &str) {
    let out = h.run1(port, frame);
    assert!(out.is_empty(), "{what}: sent {out:?}");
    assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
    h.assert_conservation();
}

#[test]
fn cross_vni_is_dropped() {
    // VM1 (VNI 100) to VM3's address (VNI 200): not in VNI 100's table.
    let mut h = Harness::new();
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM3), 64, b"x"),
        DropReason::NoRoute,
        "v4 to another VNI",
    );
    let mut h = Harness::new();
    assert_dropped(
        &mut h,
        VM1,
        vm_udp6(VM1, vm_ipv6(VM1), vm_ipv6(VM3), 64, b"x"),
        DropReason::NoRoute,
        "v6 to another VNI",
    );
    // Even a (bogus) route in VNI 100 pointing at VM3's port must not deliver into VNI 200.
    let mut h = Harness::new();
    let mut table = (**h.snapshot.vnis.get(&100).unwrap()).clone();
    table
        .v4
        .insert(
            u32::from(vm_ipv4(VM3)),
            32,
            dp_tables::RouteTarget::Local { port: VM3 },
        )
        .unwrap();
    h.snapshot.vnis.insert(100, std::sync::Arc::new(table));
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM3), 64, b"x"),
        DropReason::CrossVni,
        "route into another VNI",
    );
}

#[test]
fn spoofed_sources_are_dropped() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "v4 with VM2's source",
            vm_udp4(VM1, vm_ipv4(VM2), vm_ipv4(VM2), 64, b"x"),
        ),
        (
            "v4 unspecified source",
            vm_udp4(VM1, Ipv4Addr::UNSPECIFIED, vm_ipv4(VM2), 64, b"x"),
        ),
        (
            "v6 with VM2's source",
            vm_udp6(VM1, vm_ipv6(VM2), vm_ipv6(VM2), 64, b"x"),
        ),
        (
            "v6 link-local source",
            vm_udp6(VM1, vm_link_local(VM1), vm_ipv6(VM2), 64, b"x"),
        ),
        (
            "v6 from VM without IPv6",
            vm_udp6(VM4, Ipv6Addr::UNSPECIFIED, vm_ipv6(VM2), 64, b"x"),
        ),
    ];
    for (what, frame) in cases {
        let port = if what.contains("without IPv6") {
            VM4
        } else {
            VM1
        };
        let mut h = Harness::new();
        assert_dropped(&mut h, port, frame, DropReason::Spoofed, what);
    }
}

#[test]
fn unroutable_destinations_are_dropped() {
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "no route v4",
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::new(8, 8, 8, 8), 64, b"x"),
            DropReason::NoRoute,
        ),
        (
            "no route v6",
            vm_udp6(VM1, vm_ipv6(VM1), "2001:db8::1".parse().unwrap(), 64, b"x"),
            DropReason::NoRoute,
        ),
        (
            "broadcast",
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::BROADCAST, 64, b"x"),
            DropReason::BadDestination,
        ),
        (
            "multicast v4",
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::new(224, 0, 0, 251), 1, b"x"),
            DropReason::BadDestination,
        ),
        (
            // Looked up as any other address (dpservice routes it if a route says so).
            "loopback v4",
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::LOCALHOST, 64, b"x"),
            DropReason::NoRoute,
        ),
        (
            "link-local v4",
            vm_udp4(
                VM1,
                vm_ipv4(VM1),
                Ipv4Addr::new(169, 254, 169, 254),
                64,
                b"x",
            ),
            DropReason::BadDestination,
        ),
        (
            "zero network v4",
            vm_udp4(VM1, vm_ipv4(VM1), Ipv4Addr::new(0, 1, 2, 3), 64, b"x"),
            DropReason::NoRoute,
        ),
        (
            "multicast v6 (MLD-like)",
            vm_udp6(VM1, vm_ipv6(VM1), "ff02::16".parse().unwrap(), 1, b"x"),
            DropReason::BadDestination,
        ),
        (
            "link-local v6",
            vm_udp6(VM1, vm_ipv6(VM1), "fe80::2".parse().unwrap(), 64, b"x"),
            DropReason::BadDestination,
        ),
        (
            "loopback v6",
            vm_udp6(VM1, vm_ipv6(VM1), Ipv6Addr::LOCALHOST, 64, b"x"),
            DropReason::BadDestination,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        assert_dropped(&mut h, VM1, frame, reason, what);
    }
}

#[test]
fn loopback_and_zero_network_destinations_follow_the_routes() {
    // As dpservice: no martian check for 0/8 and 127/8, the VNI's routes decide.
    let mut h = Harness::new().with_routers();
    let underlay = remote_underlay();
    let remote = |public| dp_tables::RouteTarget::Remote {
        vni: vm_vni(VM1),
        underlay,
        public,
    };
    h.add_route_v4(vm_vni(VM1), Ipv4Addr::UNSPECIFIED, 0, remote(true));
    h.add_route_v4(vm_vni(VM1), Ipv4Addr::UNSPECIFIED, 1, remote(false));
    for dst in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(127, 255, 255, 255),
        Ipv4Addr::new(128, 0, 0, 1),
    ] {
        let out = h.run1(VM1, vm_udp4(VM1, vm_ipv4(VM1), dst, 64, b"x"));
        assert_eq!(out.len(), 1, "{dst}: {:?}", h.nonzero_drops());
        assert_eq!(out[0].0, PF0, "{dst}");
    }
}

#[test]
fn ipv6_is_dropped_when_overlay_disabled() {
    let mut h = Harness::with(|_, c| c.ipv6_overlay = false);
    assert_dropped(
        &mut h,
        VM1,
        vm_udp6(VM1, vm_ipv6(VM1), vm_ipv6(VM2), 64, b"x"),
        DropReason::Ipv6OverlayDisabled,
        "overlay off",
    );
}

#[test]
fn missing_vni_table_is_dropped() {
    let mut h = Harness::new();
    h.snapshot.vnis.remove(&100);
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x"),
        DropReason::NoVni,
        "no VNI",
    );
}

#[test]
fn destination_port_state_is_checked() {
    // Link down.
    let mut h = Harness::new();
    h.ports.get(VM2).unwrap().set_link_up(false);
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x"),
        DropReason::DstPortDown,
        "link down",
    );
    // VM's MAC never seen (fresh port table: nothing learned for VM2).
    let mut h = Harness::new();
    let fresh = dp_pipeline::PortTable::new(
        h.ports
            .iter()
            .map(|(_, e)| dp_pipeline::PortEntry::new(e.kind, e.name.clone(), e.own_mac))
            .collect(),
    );
    h.ports = fresh;
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x"),
        DropReason::NoPeerMac,
        "unknown MAC",
    );
    // Route to a port whose interface has gone.
    let mut h = Harness::new();
    h.snapshot.set_iface(VM2, None);
    assert_dropped(
        &mut h,
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x"),
        DropReason::DstPortDown,
        "interface gone",
    );
}

#[test]
fn ttl_zero_and_one_never_forwarded_ttl_two_is() {
    for (ttl, forwarded) in [(0u8, false), (1, false), (2, true)] {
        let mut h = Harness::new();
        let out = h.run1(VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), ttl, b"x"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0 == VM2, forwarded, "ttl {ttl}");
        if forwarded {
            assert_eq!(out[0].1[14 + 8], 1);
        }
    }
}

#[test]
fn frames_from_unbound_port_are_dropped() {
    let mut h = Harness::new();
    assert_dropped(
        &mut h,
        VF_UNBOUND,
        vm_udp4(
            VF_UNBOUND,
            Ipv4Addr::new(10, 100, 1, 9),
            vm_ipv4(VM2),
            64,
            b"x",
        ),
        DropReason::NoInterface,
        "unbound",
    );
}

#[test]
fn fragments_are_forwarded() {
    // A non-first fragment whose payload happens to look like a UDP header to port 67 must not be
    // mistaken for DHCP; a first fragment (MF set) is forwarded as well.
    let looks_like_dhcp = [
        0x12, 0x34, 0x00, 0x43, 0x00, 0x10, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let udp_to_5000 = [
        0x12, 0x34, 0x13, 0x88, 0x00, 0x10, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    for (flags_offset, payload) in [
        (0x0003u16, looks_like_dhcp),
        (0x2003, looks_like_dhcp),
        (0x2000, udp_to_5000),
    ] {
        let mut ip = ipv4(vm_ipv4(VM1), vm_ipv4(VM2), 17, 64, &payload);
        ip[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        ip[10] = 0;
        ip[11] = 0;
        let c = inet_checksum(&[&ip[..20]]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut h = Harness::new();
        let out = h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &ip));
        assert_eq!(out.len(), 1, "{flags_offset:#x}: {:?}", h.nonzero_drops());
        assert_eq!(out[0].0, VM2);
        assert_eq!(&out[0].1[14 + 20..], &payload);
        assert_eq!(out[0].1[14 + 8], 63);
        assert_eq!(inet_checksum(&[&out[0].1[14..34]]), 0);
    }
}
