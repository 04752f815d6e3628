//! Property: whatever a VM sends, the graph never panics, every frame is either transmitted or
//! counted under exactly one drop reason, no buffer leaks, and nothing leaves through an uplink.

mod common;

use common::*;
use proptest::prelude::*;

/// A frame: a valid template with random byte mutations, a random truncation or extension, or
/// plain random bytes behind a plausible Ethernet header.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let templates: Vec<Vec<u8>> = templates(VM1).into_iter().map(|(_, f)| f).collect();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn every_frame_is_sent_or_counted(
        batch in proptest::collection::vec((prop_oneof![Just(VM1), Just(VM2), Just(VM4), Just(VF_UNBOUND), Just(PF0)], frame()), 1..8),
        overlay in any::<bool>(),
    ) {
        let mut h = Harness::with(|ifaces, c| {
            c.ipv6_overlay = overlay;
            c.dhcp_dns = vec![std::net::Ipv4Addr::new(8, 8, 8, 8)];
            c.dhcpv6_dns = vec!["2001:4860:4860::8888".parse().unwrap()];
            ifaces[0].hostname = Some("vm1".into());
            ifaces[0].pxe = Some(dp_tables::PxeConfig {
                next_server: Some(std::net::Ipv4Addr::new(192, 168, 1, 1)),
                boot_filename: "/boot.ipxe".into(),
            });
        });
        let out = h.run(&batch);
        h.assert_conservation();
        for (port, f) in &out {
            prop_assert!(*port != PF0 && *port != PF1, "sent to an uplink");
            prop_assert!(f.len() >= 14);
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
