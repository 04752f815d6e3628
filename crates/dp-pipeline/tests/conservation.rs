//! Property: whatever a VM or the underlay sends, the graph never panics, every frame is either
//! transmitted or counted under exactly one drop reason, no buffer leaks, and what leaves through
//! an uplink is well-formed IPv6 from our MAC (encapsulated traffic to the router, or our neighbor
//! discovery and echo answers).

mod common;

use common::*;
use proptest::prelude::*;

/// A frame: a valid template with random byte mutations, a random truncation or extension, or
/// plain random bytes behind a plausible Ethernet header.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let mut templates: Vec<Vec<u8>> = templates(VM1).into_iter().map(|(_, f)| f).collect();
    templates.extend(underlay_templates());
    let n = templates.len();
    let mutated = (
        0..n,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        prop_oneof![Just(None), (0usize..400).prop_map(Some)],
    )
        .prop_map(move |(which, edits, resize)| {
            let mut f = templates[which].clone();
            for (at, value) in edits {
                let i = at.index(f.len());
                f[i] = value;
            }
            if let Some(len) = resize {
                f.resize(len, 0);
            }
            f
        });
    let ethertypes = prop_oneof![Just(ETH_IPV4), Just(ETH_IPV6), Just(ETH_ARP), any::<u16>()];
    let random = (
        prop_oneof![
            Just(own_mac(VM1)),
            Just(BROADCAST),
            Just([0x33, 0x33, 0, 0, 0, 1]),
            any::<[u8; 6]>()
        ],
        prop_oneof![Just(vm_mac(VM1)), any::<[u8; 6]>()],
        ethertypes,
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(dst, src, ty, body)| eth(dst, src, ty, &body));
    let raw = proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![6 => mutated, 3 => random, 1 => raw]
}

const REMOTE_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 100, 2, 1);

/// Valid frames of every kind the underlay sends (sent from pf0), and VM frames towards the
/// remote route (encapsulated, fragmented, or too big).
fn underlay_templates() -> Vec<Vec<u8>> {
    let inner4 = ipv4(
        REMOTE_V4,
        vm_ipv4(VM1),
        17,
        63,
        &udp_v4(REMOTE_V4, vm_ipv4(VM1), 1, 2, b"in"),
    );
    let inner6 = ipv6(
        "2000:100:2::1".parse().unwrap(),
        vm_ipv6(VM1),
        17,
        63,
        &udp_v6("2000:100:2::1".parse().unwrap(), vm_ipv6(VM1), 1, 2, b"in6"),
    );
    let ns = {
        let target = host_underlay();
        let mut body = vec![0; 4];
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&ROUTER_MAC0);
        let group: std::net::Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
        let m = icmpv6(router_ll(), group, 135, 0, &body);
        eth(
            [0x33, 0x33, 0xff, 0, 0, 1],
            ROUTER_MAC0,
            ETH_IPV6,
            &ipv6(router_ll(), group, 58, 255, &m),
        )
    };
    let na = {
        let mut body = vec![0x60, 0, 0, 0];
        body.extend_from_slice(&router_ll().octets());
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&ROUTER_MAC0);
        let dst = own_link_local(PF0);
        let m = icmpv6(router_ll(), dst, 136, 0, &body);
        eth(
            own_mac(PF0),
            ROUTER_MAC0,
            ETH_IPV6,
            &ipv6(router_ll(), dst, 58, 255, &m),
        )
    };
    let echo = {
        let src: std::net::Ipv6Addr = "fc00::ffff".parse().unwrap();
        let m = icmpv6(src, host_underlay(), 128, 0, b"\0\x01\0\x01ping");
        eth(
            own_mac(PF0),
            ROUTER_MAC0,
            ETH_IPV6,
            &ipv6(src, host_underlay(), 58, 64, &m),
        )
    };
    let big = |df: bool| {
        let u = udp_v4(vm_ipv4(VM1), REMOTE_V4, 7, 8, &[0x55; 1400]);
        let mut ip = ipv4(vm_ipv4(VM1), REMOTE_V4, 17, 64, &u);
        if df {
            ip[6] = 0x40;
            ip[10] = 0;
            ip[11] = 0;
            let c = inet_checksum(&[&ip[..20]]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &ip)
    };
    vec![
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &inner4),
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 41, &inner6),
        ns,
        na,
        echo,
        vm_udp4(VM1, vm_ipv4(VM1), REMOTE_V4, 64, b"remote"),
        vm_udp6(
            VM1,
            vm_ipv6(VM1),
            "2000:100:2::1".parse().unwrap(),
            64,
            b"remote6",
        ),
        big(false),
        big(true),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn every_frame_is_sent_or_counted(
        batch in proptest::collection::vec((prop_oneof![Just(VM1), Just(VM2), Just(VM4), Just(VF_UNBOUND), Just(PF0), Just(PF1)], frame()), 1..8),
        overlay in any::<bool>(),
        router_known in any::<bool>(),
        underlay_mtu in prop_oneof![Just(1500u16), Just(1320u16)],
        ticks in 0u64..3,
    ) {
        let mut h = Harness::with(|ifaces, c| {
            c.ipv6_overlay = overlay;
            c.underlay_mtu = underlay_mtu;
            c.wcmp_percent = 50;
            c.dhcp_dns = vec![std::net::Ipv4Addr::new(8, 8, 8, 8)];
            c.dhcpv6_dns = vec!["2001:4860:4860::8888".parse().unwrap()];
            ifaces[0].hostname = Some("vm1".into());
            ifaces[0].pxe = Some(dp_tables::PxeConfig {
                next_server: Some(std::net::Ipv4Addr::new(192, 168, 1, 1)),
                next_server_v6: None,
                boot_filename: "/boot.ipxe".into(),
            });
        });
        if router_known {
            h.learn_router(PF0, ROUTER_MAC0);
        }
        h.add_route_v4(100, std::net::Ipv4Addr::new(10, 100, 2, 0), 24, dp_tables::RouteTarget::Remote { vni: 100, underlay: remote_underlay(), public: false });
        h.add_route_v6(100, "2000:100:2::".parse().unwrap(), 64, dp_tables::RouteTarget::Remote { vni: 100, underlay: remote_underlay(), public: false });
        let mut out = h.run(&batch);
        for _ in 0..ticks {
            out.extend(h.tick_after_ms(700));
        }
        h.assert_conservation();
        for (port, f) in &out {
            prop_assert!(f.len() >= 14);
            if *port == PF0 || *port == PF1 {
                // IPv6 only, its payload length exact.
                prop_assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETH_IPV6);
                prop_assert!(f.len() >= 54);
                prop_assert_eq!(usize::from(u16::from_be_bytes([f[18], f[19]])), f.len() - 54);
                prop_assert!(f.len() - 14 <= usize::from(underlay_mtu), "within the underlay MTU");
                match f[20] {
                    4 => {
                        prop_assert_eq!(&f[0..6], &ROUTER_MAC0[..], "encapsulated: to the router");
                        let ihl = usize::from(f[54] & 0x0f) * 4;
                        prop_assert_eq!(inet_checksum(&[&f[54..54 + ihl]]), 0);
                        prop_assert_eq!(usize::from(u16::from_be_bytes([f[56], f[57]])), f.len() - 54);
                    }
                    41 => prop_assert_eq!(&f[0..6], &ROUTER_MAC0[..]),
                    58 => {}
                    other => prop_assert!(false, "next header {} out of an uplink", other),
                }
            }
            // Every frame leaves with our MAC on that port as its source.
            prop_assert_eq!(&f[6..12], &own_mac(*port)[..]);
            // IPv4 headers only leave with a valid checksum and length.
            if u16::from_be_bytes([f[12], f[13]]) == ETH_IPV4 {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                prop_assert!(ihl >= 20 && f.len() >= 14 + ihl);
                prop_assert_eq!(inet_checksum(&[&f[14..14 + ihl]]), 0);
                prop_assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), f.len() - 14);
            }
        }
    }
}
